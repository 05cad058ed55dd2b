//! `FlowTable` lookup cost against the number of live flows: the design
//! requirement is a per-segment cost that stays flat from 10 to 100 000
//! connections.
//!
//! For each size the table holds that many flows with random 4-tuples (a
//! seeded PRNG: local 10.0.0.0/16 on ports 80/443, remotes anywhere on
//! random ports) and the bench looks up existing keys:
//!
//! - `random`: a batch of 4 096 keys drawn uniformly from all live flows —
//!   at 100k flows nearly every lookup touches cold cache lines (index and
//!   slot), the worst case;
//! - `hot16`: a batch of 4 096 lookups cycling over 16 flows (a vector of
//!   packets from a few busy connections): the algorithmic cost without
//!   cache misses;
//! - `miss`: 4 096 keys that are not in the table (new SYNs, strays).
//!
//! ns per lookup = batch time / 4 096 (criterion also reports lookups/s).

use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerohop_tcpstack::rng::Rng;
use zerohop_tcpstack::{FlowKey, FlowTable};

const BATCH: usize = 4096;

fn random_key(rng: &mut Rng) -> FlowKey {
    let r = rng.next_u64();
    let s = rng.next_u64();
    FlowKey::new(
        SocketAddrV4::new(
            Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0xffff)),
            if r & (1 << 16) == 0 { 80 } else { 443 },
        ),
        SocketAddrV4::new(Ipv4Addr::from(s as u32), (s >> 32) as u16),
    )
}

/// A table with `n` random flows (value: a 64-byte connection stand-in) and
/// its keys.
fn table(n: usize) -> (FlowTable<[u64; 8]>, Vec<FlowKey>) {
    let mut rng = Rng(0xf10e_0000 + n as u64);
    let mut t = FlowTable::new(n as u32).expect("capacity");
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let k = random_key(&mut rng);
        if t.insert(k, [keys.len() as u64; 8]).is_ok() {
            keys.push(k);
        }
    }
    (t, keys)
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_lookup");
    group.throughput(Throughput::Elements(BATCH as u64));
    for n in [10usize, 1_000, 10_000, 100_000] {
        let (mut t, keys) = table(n);
        let mut rng = Rng(n as u64);
        let random: Vec<FlowKey> = (0..BATCH)
            .map(|_| keys[(rng.next_u64() % n as u64) as usize])
            .collect();
        let hot: Vec<FlowKey> = (0..BATCH).map(|i| keys[i % 16 % n]).collect();
        let miss: Vec<FlowKey> = (0..BATCH).map(|_| random_key(&mut rng)).collect();
        for (name, batch) in [("random", &random), ("hot16", &hot), ("miss", &miss)] {
            group.bench_with_input(BenchmarkId::new(name, n), batch, |b, batch| {
                b.iter(|| {
                    let mut sum = 0u64;
                    for k in batch {
                        if let Some((_, v)) = t.get_mut_by_key(black_box(k)) {
                            v[0] += 1;
                            sum += v[1];
                        }
                    }
                    sum
                })
            });
        }
    }
    group.finish();
}

/// Insert + remove of one flow with `n` live: connection setup and teardown.
fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_insert_remove");
    for n in [10usize, 100_000] {
        let (mut t, _) = table(n);
        // One free slot to churn through.
        let spare = t.iter().next().map(|(id, _, _)| id);
        if let Some(id) = spare {
            t.remove(id);
        }
        let mut rng = Rng(99);
        let fresh: Vec<FlowKey> = (0..BATCH).map(|_| random_key(&mut rng)).collect();
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut i = 0;
            b.iter(|| {
                let k = fresh[i % BATCH];
                i += 1;
                if let Ok(id) = t.insert(k, [0; 8]) {
                    black_box(t.remove(id));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookups, churn);
criterion_main!(benches);
