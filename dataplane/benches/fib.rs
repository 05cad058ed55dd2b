//! `ip4-lookup`'s FIB: ns per lookup over 1 000 prefixes, and the build time.
//!
//! Destination mixes over one table (8 connected /24s, a default route and
//! static routes /8–/32 skewed toward /16–/32):
//!
//! - `random`: 1 Mi addresses uniform over the address space. Nearly every
//!   lookup reads a cold `tbl24` line (64 MiB table): the worst case, bound
//!   by DRAM and TLB misses.
//! - `in_prefixes`: 4 096 addresses, each inside a random prefix of the
//!   table: the populated part, cache-resident after the first pass.
//! - `hot16`: 16 destinations repeated (a few busy flows): all in L1.
//!
//! Criterion reports the time per batch and lookups/s; ns per lookup is the
//! batch time divided by the batch size. The workload is deterministic
//! (seeded), so runs compare.

use std::net::Ipv4Addr;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerohop_dataplane::fib::{Fib, FibBuilder};

/// Prefixes in the table, connected and local ones included.
pub const ROUTES: usize = 1000;
/// Ports, each with one address in its own /24.
pub const PORTS: u16 = 8;

/// SplitMix64: a small seeded PRNG, so every run sees the same workload.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }
}

/// Return the netmask of a prefix length.
pub fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The table and the destination mixes every candidate is measured on.
pub struct Workload {
    /// (port, address, prefix length) of each port.
    pub interfaces: Vec<(u16, Ipv4Addr, u8)>,
    /// (prefix, length, via) of each static route, default route included.
    pub statics: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Named destination batches.
    pub mixes: Vec<(&'static str, Vec<Ipv4Addr>)>,
}

/// Build the seeded workload: `ROUTES` prefixes and three destination mixes.
pub fn workload() -> Workload {
    let mut rng = SplitMix64(0x00f1_b0f1_b000);
    let interfaces: Vec<(u16, Ipv4Addr, u8)> = (0..PORTS)
        .map(|p| (p, Ipv4Addr::new(10, p as u8, 0, 1), 24))
        .collect();
    let mut statics = vec![(Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(10, 0, 0, 254))];
    let mut seen = std::collections::HashSet::new();
    for &(_, addr, len) in &interfaces {
        seen.insert((u32::from(addr) & mask(len), len));
        seen.insert((u32::from(addr), 32));
    }
    // Two prefixes per port (local /32 and connected /24) plus the statics.
    while statics.len() + 2 * interfaces.len() < ROUTES {
        let len = match rng.below(100) {
            0..=14 => 8 + rng.below(8) as u8,
            _ => 16 + rng.below(17) as u8,
        };
        let net = rng.next_u32() & mask(len);
        if !seen.insert((net, len)) {
            continue;
        }
        let via = Ipv4Addr::new(
            10,
            rng.below(u32::from(PORTS)) as u8,
            0,
            2 + rng.below(250) as u8,
        );
        statics.push((Ipv4Addr::from(net), len, via));
    }

    let mut prefixes: Vec<(u32, u8)> = statics.iter().map(|&(p, l, _)| (u32::from(p), l)).collect();
    prefixes.extend(
        interfaces
            .iter()
            .map(|&(_, a, l)| (u32::from(a) & mask(l), l)),
    );
    prefixes.extend(interfaces.iter().map(|&(_, a, _)| (u32::from(a), 32)));
    let random: Vec<Ipv4Addr> = (0..1 << 20)
        .map(|_| Ipv4Addr::from(rng.next_u32()))
        .collect();
    let in_prefixes: Vec<Ipv4Addr> = (0..4096)
        .map(|_| {
            let (net, len) = prefixes[rng.below(prefixes.len() as u32) as usize];
            Ipv4Addr::from(net | (rng.next_u32() & !mask(len)))
        })
        .collect();
    let hot16: Vec<Ipv4Addr> = (0..4096).map(|i| in_prefixes[i % 16]).collect();
    Workload {
        interfaces,
        statics,
        mixes: vec![
            ("random", random),
            ("in_prefixes", in_prefixes),
            ("hot16", hot16),
        ],
    }
}

/// Build the workload's table.
pub fn build_fib(w: &Workload) -> Fib {
    let mut b = FibBuilder::new();
    for &(port, addr, len) in &w.interfaces {
        b.interface(port, addr, len);
    }
    for &(prefix, len, via) in &w.statics {
        b.route(prefix, len, via);
    }
    match b.build() {
        Ok(fib) => fib,
        Err(e) => panic!("benchmark table does not build: {e}"),
    }
}

fn lookup(c: &mut Criterion) {
    let w = workload();
    let fib = build_fib(&w);
    assert_eq!(fib.len(), ROUTES);
    let mut group = c.benchmark_group("fib_lookup");
    for (name, dsts) in &w.mixes {
        group.throughput(Throughput::Elements(dsts.len() as u64));
        group.bench_with_input(BenchmarkId::new("mtrie_16_8_8", name), dsts, |b, dsts| {
            b.iter(|| {
                let mut acc = 0u32;
                for &dst in dsts {
                    if let Some(route) = fib.lookup(black_box(dst)) {
                        acc = acc.wrapping_add(u32::from(route.port()));
                    }
                }
                acc
            })
        });
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let w = workload();
    let mut group = c.benchmark_group("fib_build");
    group.sample_size(10);
    group.bench_function("mtrie_16_8_8", |b| b.iter(|| build_fib(&w)));
    group.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
