//! `EphemeralPorts::allocate` + `release` cost, one worker of four over
//! Linux's default range, toward one upstream with `held` connections open:
//!
//! - `none`: no RSS filter (block partition, 7 058 ports for this worker);
//! - `require`: RSS filter, Microsoft key, 128-entry round-robin RETA over
//!   4 queues (≈ 7 058 matching ports out of the whole range).
//!
//! Each iteration allocates one port and releases the oldest held one, so
//! the number held stays constant.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use zerohop_tcpstack::ports::MICROSOFT_RSS_KEY;
use zerohop_tcpstack::{EphemeralPorts, EphemeralPortsConfig, RssFilter, RssMode, RssSteering};

fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("ports_allocate_release");
    let local = Ipv4Addr::new(10, 0, 0, 1);
    let upstream = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 1), 8080);
    for (name, rss) in [("none", false), ("require", true)] {
        for held in [1usize, 1_000, 6_000] {
            let rss = rss.then(|| RssFilter {
                steering: RssSteering::round_robin(MICROSOFT_RSS_KEY, 4, 128).expect("valid"),
                queue: 1,
                mode: RssMode::Require,
            });
            let mut p = EphemeralPorts::new(EphemeralPortsConfig {
                workers: 4,
                worker: 1,
                rss,
                ..EphemeralPortsConfig::default()
            })
            .expect("valid config");
            let mut open: VecDeque<u16> = (0..held)
                .map(|_| p.allocate(local, upstream).expect("free port").port)
                .collect();
            group.bench_function(BenchmarkId::new(name, held), |b| {
                b.iter(|| {
                    let port = p.allocate(local, upstream).expect("free port").port;
                    open.push_back(port);
                    if let Some(old) = open.pop_front() {
                        p.release(SocketAddrV4::new(local, old), upstream);
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, churn);
criterion_main!(benches);
