//! The L2 cross-connect poll loop between two real DPDK `net_ring` ports:
//! ns per packet at burst 32 and 256.
//!
//! Each `net_ring` port loops its tx ring back to its rx ring, so frames
//! injected once circulate A → B → A forever and every iteration moves a full
//! burst on each port: this measures rx_burst + forwarding + tx_burst + counter
//! updates with no kernel and no wire in the way.
//!
//! Run: `cargo bench --bench xconnect` (no root or hugepages needed).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zerohop::dpdk::{DpdkQueue, Eal, Mempool, Port, PortConfig};
use zerohop_dataplane::worker::{PortMode, Worker};
use zerohop_dataplane::{PacketVector, PortQueue, WorkerStats};

/// Frames in flight per port: more than the largest burst, less than a ring.
const IN_FLIGHT: usize = 512;

fn ring_port(name: &str, vdev: &str, pool: &Mempool) -> Port {
    let mut port = Port::probe_vdev(name, vdev).expect("probe net_ring");
    port.configure(
        &PortConfig {
            queues: 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            rss_key: None,
        },
        pool,
    )
    .expect("configure");
    port.start().expect("start");
    port
}

fn inject(q: &mut DpdkQueue, pool: &Mempool, frames: usize) {
    let mut v = PacketVector::new();
    let mut left = frames;
    while left > 0 {
        let n = left.min(64);
        for _ in 0..n {
            let mut m = pool.alloc().expect("alloc");
            m.append(64).expect("append").fill(0xab);
            v.push(m).expect("room");
        }
        assert_eq!(q.tx_burst(&mut v), n, "ring accepts the injected frames");
        left -= n;
    }
}

fn xconnect(c: &mut Criterion) {
    let eal = Eal::init(&[
        "xconnect_bench",
        "-l",
        "0",
        "--no-huge",
        "-m",
        "512",
        "--no-shconf",
        "--no-pci",
        "--log-level=lib.eal:error",
    ])
    .expect("EAL init");
    let pool = Mempool::new("bench_pool", 8191, 256, Mempool::DEFAULT_DATA_ROOM, 0).expect("pool");
    let mut a = ring_port("a", "net_ring0", &pool);
    let mut b = ring_port("b", "net_ring1", &pool);
    let mut qa = a.take_queues().pop().expect("queue");
    let mut qb = b.take_queues().pop().expect("queue");
    inject(&mut qa, &pool, IN_FLIGHT);
    inject(&mut qb, &pool, IN_FLIGHT);
    let mut queues = Some(vec![qa, qb]);

    let mut group = c.benchmark_group("xconnect_net_ring");
    for burst in [32usize, 256] {
        let stats = Arc::new(WorkerStats::new(2));
        // Each burst size gets the queues in turn (one owner at a time).
        let owned = queues.take().expect("queues");
        let modes = vec![
            PortMode::Xconnect { peer: 1 },
            PortMode::Xconnect { peer: 0 },
        ];
        let mut worker = Worker::new(owned, modes, burst, stats.clone(), None);
        // Every iteration must move a full burst on both ports, or the
        // per-packet figure would be wrong.
        for _ in 0..100 {
            assert_eq!(worker.poll_once(), 2 * burst);
        }
        group.throughput(Throughput::Elements(2 * burst as u64));
        group.bench_function(format!("burst_{burst}"), |bench| {
            bench.iter(|| worker.poll_once())
        });
        assert_eq!(
            stats.ports[0].tx_dropped.get() + stats.ports[1].tx_dropped.get(),
            0
        );
        queues = Some(worker.into_queues());
    }
    group.finish();
    // The ports only stop and close once no queue of theirs is alive.
    drop(queues);
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0, "every mbuf returned");
    drop(pool);
    drop(eal);
}

criterion_group!(benches, xconnect);
criterion_main!(benches);
