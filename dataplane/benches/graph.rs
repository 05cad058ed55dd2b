//! The IPv4 forward path through the real graph, in memory, 256-packet
//! vectors: ethernet-input → ip4-input → acl → ip4-lookup (1k routes) →
//! ip4-rewrite → port-tx, with 10 and 1,000 ACL rules.
//!
//! Buffers are reused: each iteration re-injects the frames the graph sent,
//! after restoring their Ethernet and IPv4 headers from a template (a 34-byte
//! copy per packet, included in the figure). The per-node split printed at
//! the end comes from the graph's own counters (ns here, since the bench's
//! clock is `Instant`; the binary uses the TSC).
//!
//! Run: `cargo bench -p zerohop-dataplane --bench graph`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zerohop_dataplane::acl::{Acl, AclAction, AclRule};
use zerohop_dataplane::fib::FibBuilder;
use zerohop_dataplane::graph::{Graph, Packet};
use zerohop_dataplane::l3::{build_graph, L3Context, L3Policy, L3Port};
use zerohop_dataplane::testing::HeapBuffer;
use zerohop_dataplane::{Buffer, PacketVector, VECTOR_SIZE};

const MAC0: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC1: [u8; 6] = [2, 0, 0, 0, 1, 1];
const NEXT_HOP: [u8; 4] = [10, 0, 1, 2];
const ROUTES: u32 = 1000;

fn nanos() -> u64 {
    thread_local!(static EPOCH: Instant = Instant::now());
    EPOCH.with(|e| e.elapsed().as_nanos() as u64)
}

/// `rules` ACL rules on port 0: all but the last deny TCP to ports nothing
/// uses (so every packet is checked against all of them), the last permits.
fn acl(rules: usize) -> Acl {
    let mut v: Vec<AclRule> = (0..rules.saturating_sub(1))
        .map(|i| AclRule {
            action: AclAction::Deny,
            protocol: Some(6),
            dst_ports: Some((10_000 + i as u16, 10_000 + i as u16)),
            ..AclRule::default()
        })
        .collect();
    v.push(AclRule {
        action: AclAction::Permit,
        ..AclRule::default()
    });
    Acl::new(v)
}

fn setup(
    rules: usize,
) -> (
    Graph<HeapBuffer, L3Context<HeapBuffer>>,
    L3Context<HeapBuffer>,
) {
    let mut fib = FibBuilder::new();
    fib.interface(0, Ipv4Addr::new(10, 0, 0, 1), 24)
        .interface(1, Ipv4Addr::new(10, 0, 1, 1), 24);
    for i in 0..ROUTES {
        // 1k distinct /24s under 100.64.0.0/10, all via the same next hop.
        fib.route(
            Ipv4Addr::from(0x6440_0000 + (i << 8)),
            24,
            Ipv4Addr::from(NEXT_HOP),
        );
    }
    let ports = vec![
        L3Port {
            mac: MAC0,
            address: Some((Ipv4Addr::new(10, 0, 0, 1), 24)),
            mtu: 1500,
        },
        L3Port {
            mac: MAC1,
            address: Some((Ipv4Addr::new(10, 0, 1, 1), 24)),
            mtu: 1500,
        },
    ];
    let mut ctx = L3Context::new(
        ports,
        Arc::new(fib.build().expect("fib")),
        vec![Some(Arc::new(acl(rules)))],
        Box::new(|| Some(HeapBuffer::empty())),
        L3Policy::default(),
    );
    let _ = ctx.neighbours.learn(1, NEXT_HOP, [2, 0, 0, 0, 1, 2], 0);
    (build_graph(2, nanos).expect("graph"), ctx)
}

/// A 64-byte TCP frame to a destination inside route `i`.
fn frame(i: u32) -> Vec<u8> {
    let dst = Ipv4Addr::from(0x6440_0000 + ((i % ROUTES) << 8) + 7).octets();
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], MAC0)
        .ipv4([10, 0, 0, 2], dst, 64)
        .tcp(40000, 80, 1, 1024)
        .write(&mut f, &[0u8; 6])
        .expect("frame");
    f
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("ip4_forward_256");
    group.throughput(Throughput::Elements(VECTOR_SIZE as u64));
    for rules in [10usize, 1000] {
        let (mut graph, mut ctx) = setup(rules);
        let entry = graph.node_index("ethernet-input").expect("entry");
        let templates: Vec<Vec<u8>> = (0..VECTOR_SIZE as u32).map(frame).collect();
        let mut bufs: Vec<HeapBuffer> =
            templates.iter().map(|t| HeapBuffer::from(&t[..])).collect();
        let mut sent: Vec<HeapBuffer> = Vec::with_capacity(VECTOR_SIZE);
        let mut one_round = |graph: &mut Graph<HeapBuffer, L3Context<HeapBuffer>>,
                             ctx: &mut L3Context<HeapBuffer>,
                             bufs: &mut Vec<HeapBuffer>| {
            for (b, t) in bufs.iter_mut().zip(&templates) {
                b.data_mut()[..34].copy_from_slice(&t[..34]);
            }
            for b in bufs.drain(..) {
                graph.enqueue(entry, Packet::new(b, 0));
            }
            graph.run(ctx, &mut |_, v: &mut PacketVector<HeapBuffer>| {
                sent.append(v.storage());
            });
            std::mem::swap(bufs, &mut sent);
        };
        one_round(&mut graph, &mut ctx, &mut bufs);
        assert_eq!(bufs.len(), VECTOR_SIZE, "every packet forwarded");
        group.bench_function(format!("acl_{rules}_rules"), |b| {
            b.iter(|| one_round(&mut graph, &mut ctx, &mut bufs))
        });
        assert_eq!(bufs.len(), VECTOR_SIZE, "every packet forwarded");
        println!("per node, acl {rules} rules (ns/packet from the graph's counters):");
        for n in &graph.stats().nodes {
            let p = n.packets.get();
            if p > 0 && n.cycles.get() > 0 {
                println!(
                    "  {:<16} {:>6.2} ns/packet  {:>6.1} vectors/call",
                    n.name,
                    n.cycles.get() as f64 / p as f64,
                    p as f64 / n.calls.get().max(1) as f64
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
