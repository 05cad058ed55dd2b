//! ACL classification: ns per classify for 10 and 1,000 rules, with keys whose
//! first match is the first rule, the last rule, or no rule at all; a
//! precomputed linear first-match scan (iptables' walk) for comparison; and a
//! batch of 256 keys aimed at random rules (ns per key).
//!
//! The rule sets are built so that the "last" and "none" keys are the worst
//! case for the classifier: rule *i* matches the key's source address only
//! when *i* is even and its destination only when *i* is odd, so every 64-rule
//! word is a candidate field by field and none holds a match until the last.
//!
//! Run: `cargo bench -p zerohop-dataplane --bench acl`.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerohop_dataplane::acl::{Acl, AclAction, AclKey, AclRule};
use zerohop_dataplane::testing::Rng;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// A prefix inside `net/min_len`: a quarter of them the whole network, the
/// rest random and longer.
fn prefix(rng: &mut Rng, net: u32, min_len: u8) -> (Ipv4Addr, u8) {
    if rng.below(4) == 0 {
        return (Ipv4Addr::from(net), min_len);
    }
    let len = [16, 20, 24, 24, 28, 32][rng.below(6) as usize].max(min_len);
    let host = u32::MAX >> min_len;
    (Ipv4Addr::from(net | (rng.next_u64() as u32 & host)), len)
}

/// `n - 1` rules that each miss the bench keys on the source or on the
/// destination, then one that the "last" key matches.
fn rules(n: usize) -> Vec<AclRule> {
    let mut rng = Rng(0x00ac_1000 + n as u64);
    let mut rules: Vec<AclRule> = (0..n - 1)
        .map(|i| {
            let (src, dst) = if i % 2 == 0 {
                (
                    prefix(&mut rng, 0x0a00_0000, 8),
                    prefix(&mut rng, 0xc0a8_0000, 16),
                )
            } else {
                (
                    prefix(&mut rng, 0x0b00_0000, 8),
                    prefix(&mut rng, 0xac10_0000, 12),
                )
            };
            let protocol = [None, Some(TCP), Some(TCP), Some(UDP)][rng.below(4) as usize];
            let dst_ports = match rng.below(4) {
                0 => None,
                1 => Some((1024, 65535)),
                _ => {
                    let port = [22, 53, 80, 443, 8080][rng.below(5) as usize];
                    Some((port, port + rng.below(2) as u16))
                }
            };
            AclRule {
                action: if rng.below(2) == 0 {
                    AclAction::Permit
                } else {
                    AclAction::Deny
                },
                src: Some(src),
                dst: Some(dst),
                protocol: protocol.or(dst_ports.map(|_| TCP)),
                src_ports: None,
                dst_ports,
            }
        })
        .collect();
    rules.push(AclRule {
        action: AclAction::Deny,
        src: Some((Ipv4Addr::new(10, 0, 0, 0), 8)),
        dst: Some((Ipv4Addr::new(172, 16, 0, 0), 12)),
        protocol: Some(TCP),
        src_ports: None,
        dst_ports: Some((9443, 9443)),
    });
    rules
}

/// A key that matches `rule` (at the low end of each of its ranges).
fn key_for(rule: &AclRule) -> AclKey {
    AclKey {
        src: rule.src.map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| a),
        dst: rule.dst.map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| a),
        protocol: rule.protocol.unwrap_or(TCP),
        src_port: rule.src_ports.map_or(40000, |(lo, _)| lo),
        dst_port: rule.dst_ports.map_or(80, |(lo, _)| lo),
    }
}

/// The source 10.x matches even rules only, the destination 172.16.x odd
/// rules only; port 9443 decides whether the last rule matches.
fn worst_key(dst_port: u16) -> AclKey {
    AclKey {
        src: Ipv4Addr::new(10, 77, 3, 9),
        dst: Ipv4Addr::new(172, 20, 1, 2),
        protocol: TCP,
        src_port: 40000,
        dst_port,
    }
}

/// iptables' walk, with each rule's ranges precomputed.
struct Linear(Vec<[(u32, u32); 5]>);

impl Linear {
    fn new(rules: &[AclRule]) -> Self {
        let prefix = |p: Option<(Ipv4Addr, u8)>| {
            p.map_or((0, u32::MAX), |(a, l)| {
                let host = u32::MAX.checked_shr(u32::from(l)).unwrap_or(0);
                (u32::from(a) & !host, u32::from(a) | host)
            })
        };
        let ports = |p: Option<(u16, u16)>| p.map_or((0, 65535), |(l, h)| (l.into(), h.into()));
        Self(
            rules
                .iter()
                .map(|r| {
                    let proto = r.protocol.map_or((0, 255), |p| (p.into(), p.into()));
                    [
                        prefix(r.src),
                        prefix(r.dst),
                        proto,
                        ports(r.src_ports),
                        ports(r.dst_ports),
                    ]
                })
                .collect(),
        )
    }

    fn classify(&self, key: &AclKey) -> Option<usize> {
        let k = [
            u32::from(key.src),
            u32::from(key.dst),
            key.protocol.into(),
            key.src_port.into(),
            key.dst_port.into(),
        ];
        self.0
            .iter()
            .position(|r| r.iter().zip(k).all(|(&(lo, hi), v)| lo <= v && v <= hi))
    }
}

fn classify(c: &mut Criterion) {
    let mut group = c.benchmark_group("acl_classify");
    for n in [10, 1000] {
        let rules = rules(n);
        let linear = Linear::new(&rules);
        let acl = Acl::new(rules.clone());
        group.throughput(Throughput::Elements(1));
        eprintln!("acl: {n} rules, {} bytes compiled", acl.memory_bytes());
        let cases = [
            ("first", key_for(&rules[0]), Some(0)),
            ("last", worst_key(9443), Some(n - 1)),
            ("none", worst_key(80), None),
        ];
        for (name, key, want) in cases {
            assert_eq!(acl.classify(&key), want, "{n} rules, {name}");
            assert_eq!(linear.classify(&key), want, "{n} rules, {name} (linear)");
            group.bench_with_input(BenchmarkId::new(name, n), &key, |b, key| {
                b.iter(|| acl.classify(black_box(key)))
            });
        }
        group.bench_with_input(
            BenchmarkId::new("linear_none", n),
            &worst_key(80),
            |b, key| b.iter(|| linear.classify(black_box(key))),
        );

        // A mix: keys aimed at random rules (or just off them), one batch.
        let mut rng = Rng(7);
        let mix: Vec<AclKey> = (0..256)
            .map(|_| {
                let mut key = key_for(&rules[rng.below(n as u64) as usize]);
                key.src_port = rng.next_u64() as u16;
                if rng.below(2) == 0 {
                    key.dst = Ipv4Addr::from(u32::from(key.dst) ^ (rng.next_u64() as u32 & 0xffff));
                }
                key
            })
            .collect();
        for key in &mix {
            assert_eq!(acl.classify(key), linear.classify(key));
        }
        group.throughput(Throughput::Elements(mix.len() as u64));
        group.bench_with_input(BenchmarkId::new("mix256", n), &mix, |b, mix| {
            b.iter(|| {
                black_box(mix)
                    .iter()
                    .map(|k| acl.classify(k).map_or(0, |i| i + 1))
                    .sum::<usize>()
            })
        });
        group.bench_with_input(BenchmarkId::new("linear_mix256", n), &mix, |b, mix| {
            b.iter(|| {
                black_box(mix)
                    .iter()
                    .map(|k| linear.classify(k).map_or(0, |i| i + 1))
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
