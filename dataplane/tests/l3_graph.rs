//! The L3 graph end to end in memory: frames crafted with etherparse (an
//! independent implementation), run through the real graph, outputs parsed
//! back with etherparse.

use std::net::Ipv4Addr;
use std::sync::Arc;

use etherparse::{Ipv4Header, PacketBuilder, SlicedPacket};

use zerohop_dataplane::acl::{Acl, AclAction, AclRule};
use zerohop_dataplane::fib::FibBuilder;
use zerohop_dataplane::graph::{format_trace, Graph, Packet};
use zerohop_dataplane::l3::{build_graph, checksum, L3Context, L3Policy, L3Port};
use zerohop_dataplane::testing::HeapBuffer;
use zerohop_dataplane::{Buffer, PacketVector};

const MAC0: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC1: [u8; 6] = [2, 0, 0, 0, 1, 1];
const PEER0: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER1: [u8; 6] = [2, 0, 0, 0, 1, 2];
const IP0: [u8; 4] = [10, 0, 0, 1];
const IP1: [u8; 4] = [10, 0, 1, 1];
const HOST0: [u8; 4] = [10, 0, 0, 2];
const HOST1: [u8; 4] = [10, 0, 1, 2];

fn clock() -> u64 {
    0
}

struct Rig {
    graph: Graph<HeapBuffer, L3Context<HeapBuffer>>,
    ctx: L3Context<HeapBuffer>,
    input: usize,
}

impl Rig {
    fn new(acl0: Option<Vec<AclRule>>, mtu1: u16) -> Self {
        Self::with_policy(acl0, mtu1, L3Policy::default())
    }

    fn with_policy(acl0: Option<Vec<AclRule>>, mtu1: u16, policy: L3Policy) -> Self {
        let mut fib = FibBuilder::new();
        fib.interface(0, Ipv4Addr::from(IP0), 24)
            .interface(1, Ipv4Addr::from(IP1), 24)
            .route(Ipv4Addr::new(192, 168, 0, 0), 16, Ipv4Addr::from(HOST1));
        let ports = vec![
            L3Port {
                mac: MAC0,
                address: Some((Ipv4Addr::from(IP0), 24)),
                mtu: 1500,
            },
            L3Port {
                mac: MAC1,
                address: Some((Ipv4Addr::from(IP1), 24)),
                mtu: mtu1,
            },
            L3Port {
                mac: [2, 0, 0, 0, 2, 1],
                address: None,
                mtu: 1500,
            },
        ];
        let acls = vec![acl0.map(|r| Arc::new(Acl::new(r)))];
        let ctx = L3Context::new(
            ports,
            Arc::new(fib.build().expect("fib")),
            acls,
            Box::new(|| Some(HeapBuffer::empty())),
            policy,
        );
        let graph = build_graph::<HeapBuffer>(3, clock).expect("graph");
        let input = graph.node_index("ethernet-input").expect("entry");
        Rig { graph, ctx, input }
    }

    /// Feed frames received on `port`; return (tx port, frame) sent.
    fn run(&mut self, port: u16, frames: Vec<Vec<u8>>) -> Vec<(u16, Vec<u8>)> {
        for f in frames {
            self.graph
                .enqueue(self.input, Packet::new(HeapBuffer::from(&f[..]), port));
        }
        let mut sent = Vec::new();
        self.graph.run(
            &mut self.ctx,
            &mut |p: u16, v: &mut PacketVector<HeapBuffer>| {
                for b in v.as_slice() {
                    sent.push((p, b.data().to_vec()));
                }
                v.clear();
            },
        );
        sent
    }

    fn errors(&self, node: &str, reason: &str) -> u64 {
        self.graph.stats().error_count(node, reason)
    }

    /// Teach the rig both hosts' MACs through real ARP requests.
    fn learn_hosts(&mut self) {
        assert_eq!(self.run(0, vec![arp_request(PEER0, HOST0, IP0)]).len(), 1);
        assert_eq!(self.run(1, vec![arp_request(PEER1, HOST1, IP1)]).len(), 1);
    }
}

fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    arp(1, mac, ip, [0; 6], target, [0xff; 6])
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4], dst: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

fn icmp_echo(dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(PEER0, dst_mac)
        .ipv4(src, dst, ttl)
        .icmpv4_echo_request(7, 1)
        .write(&mut f, b"zerohop-ping-payload")
        .expect("build");
    f
}

fn tcp(dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(PEER0, dst_mac)
        .ipv4(src, dst, 64)
        .tcp(40000, dport, 1, 1024)
        .write(&mut f, b"x")
        .expect("build");
    f
}

fn udp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(PEER0, MAC0)
        .ipv4(src, dst, 64)
        .udp(5000, 53)
        .write(&mut f, payload)
        .expect("build");
    f
}

/// Parse a sent frame with etherparse and check every checksum.
fn parse_ip(frame: &[u8]) -> (Ipv4Header, Vec<u8>) {
    let sliced = SlicedPacket::from_ethernet(frame).expect("valid frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
        panic!("not IPv4: {frame:?}");
    };
    let header = ip.header().to_header();
    assert_eq!(
        header.header_checksum,
        header.calc_header_checksum(),
        "IPv4 checksum"
    );
    let payload = ip.payload().payload.to_vec();
    if header.protocol == etherparse::IpNumber::ICMP {
        let sum = checksum::sum(&payload);
        assert_eq!(sum, 0xffff, "ICMP checksum");
    }
    (header, payload)
}

#[test]
fn arp_request_for_our_address_is_answered_and_sender_learned() {
    let mut r = Rig::new(None, 1500);
    let out = r.run(0, vec![arp_request(PEER0, HOST0, IP0)]);
    assert_eq!(out.len(), 1);
    let (port, f) = &out[0];
    assert_eq!(*port, 0);
    assert_eq!(&f[0..6], &PEER0, "to the asker");
    assert_eq!(&f[6..12], &MAC0);
    assert_eq!(&f[20..22], &[0, 2], "reply");
    assert_eq!(&f[22..28], &MAC0, "sender hw = us");
    assert_eq!(&f[28..32], &IP0);
    assert_eq!(&f[32..38], &PEER0);
    assert_eq!(&f[38..42], &HOST0);
    assert_eq!(r.ctx.neighbours.lookup(0, HOST0, 0), Some(PEER0));
    assert_eq!(r.errors("arp-input", "request-answered"), 1);
    // Requests for someone else are not answered and teach nothing.
    let out = r.run(0, vec![arp_request(PEER0, [10, 0, 0, 7], [10, 0, 0, 9])]);
    assert!(out.is_empty());
    assert_eq!(r.errors("arp-input", "not-for-us"), 1);
    assert!(!r.ctx.neighbours.contains(0, [10, 0, 0, 7]));
}

#[test]
fn ping_our_address_gets_a_valid_echo_reply() {
    let mut r = Rig::new(None, 1500);
    r.learn_hosts();
    let out = r.run(0, vec![icmp_echo(MAC0, HOST0, IP0, 64)]);
    assert_eq!(out.len(), 1);
    let (port, f) = &out[0];
    assert_eq!(*port, 0);
    assert_eq!(&f[0..6], &PEER0);
    assert_eq!(&f[6..12], &MAC0);
    let (ip, icmp) = parse_ip(f);
    assert_eq!(ip.source, IP0);
    assert_eq!(ip.destination, HOST0);
    assert_eq!(ip.time_to_live, 64);
    assert_eq!(icmp[0], 0, "echo reply");
    assert_eq!(&icmp[8..], b"zerohop-ping-payload");
    // Pinging the other port's address from this side is local too.
    let out = r.run(0, vec![icmp_echo(MAC0, HOST0, IP1, 64)]);
    assert_eq!(parse_ip(&out[0].1).0.source, IP1);
    assert_eq!(r.errors("ip4-local", "icmp-echo-replied"), 2);
}

#[test]
fn forwarding_resolves_the_next_hop_then_sends_held_packets() {
    let mut r = Rig::new(None, 1500);
    assert_eq!(r.run(0, vec![arp_request(PEER0, HOST0, IP0)]).len(), 1);
    // HOST1 is unknown: the packet is held and an ARP request goes out.
    let out = r.run(0, vec![tcp(MAC0, HOST0, HOST1, 80)]);
    assert_eq!(out.len(), 1);
    let (port, req) = &out[0];
    assert_eq!(*port, 1);
    assert_eq!(&req[0..6], &[0xff; 6]);
    assert_eq!(&req[12..14], &[0x08, 0x06]);
    assert_eq!(&req[28..32], &IP1, "asked from our address");
    assert_eq!(&req[38..42], &HOST1);
    assert_eq!(r.ctx.neighbours.held(), 1);
    // A second packet waits without a second request.
    assert!(r.run(0, vec![tcp(MAC0, HOST0, HOST1, 81)]).is_empty());
    // The reply releases both, rewritten.
    let out = r.run(1, vec![arp(2, PEER1, HOST1, MAC1, IP1, MAC1)]);
    assert_eq!(out.len(), 2);
    for (port, f) in &out {
        assert_eq!(*port, 1);
        assert_eq!(&f[0..6], &PEER1);
        assert_eq!(&f[6..12], &MAC1);
        let (ip, _) = parse_ip(f);
        assert_eq!(ip.time_to_live, 63);
        assert_eq!(ip.destination, HOST1);
    }
    assert_eq!(r.errors("arp-input", "reply-learned"), 1);
    // From now on packets go straight out.
    let out = r.run(0, vec![tcp(MAC0, HOST0, HOST1, 82)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 1);
    // A static route via HOST1 uses HOST1's MAC.
    let out = r.run(0, vec![tcp(MAC0, HOST0, [192, 168, 3, 4], 82)]);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[0..6], &PEER1);
    assert_eq!(parse_ip(&out[0].1).0.destination, [192, 168, 3, 4]);
}

/// A packet of local origin (a TCP stack segment) as the stack hands it to
/// ip4-lookup: a fresh buffer whose Ethernet header is whatever the buffer held
/// (here: zeros, as in a never-used mbuf).
fn local_segment(dst: [u8; 4]) -> Packet<HeapBuffer> {
    let mut f = tcp(MAC1, IP1, dst, 9001);
    f[..14].fill(0);
    let mut p = Packet::new(HeapBuffer::from(&f[..]), 0);
    p.meta.l3_offset = 14;
    p.meta.local_origin = true;
    p
}

#[test]
fn locally_originated_packets_get_a_whole_ethernet_header() {
    let mut r = Rig::new(None, 1500);
    let lookup = r.graph.node_index("ip4-lookup").expect("ip4-lookup");
    // Unresolved next hop: held by ip4-arp, released by arp-input.
    r.graph.enqueue(lookup, local_segment(HOST1));
    let out = r.run(1, vec![]);
    assert_eq!(out.len(), 1, "the ARP request");
    let out = r.run(1, vec![arp(2, PEER1, HOST1, MAC1, IP1, MAC1)]);
    // Resolved next hop: ip4-rewrite.
    r.graph.enqueue(lookup, local_segment(HOST1));
    let out = [out, r.run(1, vec![])].concat();
    assert_eq!(out.len(), 2);
    for (port, f) in &out {
        assert_eq!(*port, 1);
        assert_eq!(&f[0..6], &PEER1);
        assert_eq!(&f[6..12], &MAC1);
        assert_eq!(&f[12..14], &[0x08, 0x00], "ethertype IPv4");
        assert_eq!(parse_ip(f).0.time_to_live, 64, "no TTL decrement");
    }
}

#[test]
fn ttl_one_gets_time_exceeded_from_the_rx_port_address() {
    let mut r = Rig::new(None, 1500);
    r.learn_hosts();
    let orig = icmp_echo(MAC0, HOST0, HOST1, 1);
    let out = r.run(0, vec![orig.clone()]);
    assert_eq!(out.len(), 1);
    let (port, f) = &out[0];
    assert_eq!(*port, 0);
    let (ip, icmp) = parse_ip(f);
    assert_eq!(ip.source, IP0);
    assert_eq!(ip.destination, HOST0);
    assert_eq!((icmp[0], icmp[1]), (11, 0));
    // The quote is the original IP header + 8 bytes.
    assert_eq!(&icmp[8..], &orig[14..14 + 28]);
    assert_eq!(r.errors("ip4-rewrite", "ttl-expired"), 1);
    assert_eq!(r.errors("icmp-error", "sent"), 1);
}

#[test]
fn oversize_df_gets_fragmentation_needed_and_non_df_is_dropped() {
    let mut r = Rig::new(None, 100);
    r.learn_hosts();
    let mut big = Vec::new();
    PacketBuilder::ethernet2(PEER0, MAC0)
        .ipv4(HOST0, HOST1, 64)
        .udp(1, 2)
        .write(&mut big, &[0u8; 200])
        .expect("build");
    // etherparse sets DF by default.
    let out = r.run(0, vec![big.clone()]);
    assert_eq!(out.len(), 1);
    let (_, icmp) = parse_ip(&out[0].1);
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 100, "next-hop MTU");
    // Clear DF (and fix the header checksum): dropped, counted.
    big[20] = 0;
    big[24] = 0;
    big[25] = 0;
    let c = checksum::checksum(&big[14..34]);
    big[24..26].copy_from_slice(&c.to_be_bytes());
    assert!(r.run(0, vec![big]).is_empty());
    assert_eq!(
        r.errors("ip4-rewrite", "mtu-exceeded-fragmentation-not-supported"),
        1
    );
}

#[test]
fn acl_denies_one_port_and_permits_the_rest_with_hit_counters() {
    let rules = vec![
        AclRule {
            action: AclAction::Deny,
            protocol: Some(6),
            dst_ports: Some((23, 23)),
            ..AclRule::default()
        },
        AclRule {
            action: AclAction::Permit,
            ..AclRule::default()
        },
    ];
    let mut r = Rig::new(Some(rules), 1500);
    r.learn_hosts();
    assert!(r.run(0, vec![tcp(MAC0, HOST0, HOST1, 23)]).is_empty());
    assert_eq!(r.run(0, vec![tcp(MAC0, HOST0, HOST1, 80)]).len(), 1);
    assert_eq!(r.errors("acl", "deny"), 1);
    assert_eq!(r.ctx.acl_stats.hits[0][0].get(), 1);
    assert_eq!(r.ctx.acl_stats.hits[0][1].get(), 1);
    // Port 1 has no ACL: its traffic skips the node.
    let before = r.graph.stats().node("acl").map(|n| n.packets.get());
    let mut back = tcp(MAC1, HOST1, HOST0, 23);
    back[6..12].copy_from_slice(&PEER1);
    assert_eq!(r.run(1, vec![back]).len(), 1);
    assert_eq!(r.graph.stats().node("acl").map(|n| n.packets.get()), before);
}

#[test]
fn acl_without_a_match_denies() {
    let rules = vec![AclRule {
        action: AclAction::Permit,
        protocol: Some(17),
        ..AclRule::default()
    }];
    let mut r = Rig::new(Some(rules), 1500);
    r.learn_hosts();
    assert!(r.run(0, vec![tcp(MAC0, HOST0, HOST1, 80)]).is_empty());
    assert_eq!(r.errors("acl", "default-deny"), 1);
    assert_eq!(r.ctx.acl_stats.default_deny[0].get(), 1);
}

#[test]
fn local_udp_gets_port_unreachable_and_tcp_is_a_counted_drop() {
    let mut r = Rig::new(None, 1500);
    r.learn_hosts();
    let out = r.run(0, vec![udp(HOST0, IP0, b"dns?")]);
    assert_eq!(out.len(), 1);
    let (_, icmp) = parse_ip(&out[0].1);
    assert_eq!((icmp[0], icmp[1]), (3, 3));
    assert!(r.run(0, vec![tcp(MAC0, HOST0, IP0, 80)]).is_empty());
    assert_eq!(r.errors("ip4-local", "tcp-no-listener"), 1);
}

#[test]
fn no_route_gets_net_unreachable() {
    let mut r = Rig::new(None, 1500);
    r.learn_hosts();
    let out = r.run(0, vec![tcp(MAC0, HOST0, [8, 8, 8, 8], 80)]);
    assert_eq!(out.len(), 1);
    let (ip, icmp) = parse_ip(&out[0].1);
    assert_eq!(ip.destination, HOST0);
    assert_eq!((icmp[0], icmp[1]), (3, 0));
    assert_eq!(r.errors("ip4-lookup", "no-route"), 1);
}

/// Mutate a valid echo request into each malformed shape.
fn malformed_cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let good = icmp_echo(MAC0, HOST0, HOST1, 64);
    let fix = |f: &mut Vec<u8>| {
        f[24] = 0;
        f[25] = 0;
        let c = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    };
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    fix(&mut ihl);
    let mut long = good.clone();
    long[16..18].copy_from_slice(&2000u16.to_be_bytes());
    fix(&mut long);
    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff;
    let mut ttl0 = good.clone();
    ttl0[22] = 0;
    fix(&mut ttl0);
    let mut frag = good.clone();
    frag[20] = 0x20; // MF
    fix(&mut frag);
    let mut offset = good.clone();
    offset[20] = 0;
    offset[21] = 8;
    fix(&mut offset);
    let mut version = good.clone();
    version[14] = 0x65;
    fix(&mut version);
    let mut vlan = good.clone();
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    let mut unknown = good.clone();
    unknown[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut ip6 = good.clone();
    ip6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut other_mac = good.clone();
    other_mac[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    vec![
        ("ethernet-input", "runt", good[..10].to_vec()),
        ("ip4-input", "too-short", good[..14 + 10].to_vec()),
        ("ip4-input", "bad-ihl", ihl),
        ("ip4-input", "bad-length", long),
        ("ip4-input", "bad-checksum", bad_sum),
        ("ip4-input", "ttl-expired", ttl0),
        ("ip4-input", "fragment", frag),
        ("ip4-input", "fragment", offset),
        ("ip4-input", "bad-version", version),
        ("ethernet-input", "vlan-tagged", vlan),
        ("ethernet-input", "unknown-ethertype", unknown),
        ("ethernet-input", "ip6-not-supported", ip6),
        ("ethernet-input", "not-for-us", other_mac),
        (
            "arp-input",
            "malformed",
            arp_request(PEER0, HOST0, IP0)[..30].to_vec(),
        ),
    ]
}

#[test]
fn each_malformed_frame_is_dropped_with_its_reason() {
    for (node, reason, frame) in malformed_cases() {
        let mut r = Rig::new(None, 1500);
        r.learn_hosts();
        let out = r.run(0, vec![frame]);
        assert!(out.is_empty(), "{node}/{reason}: sent {out:?}");
        assert_eq!(
            r.errors(node, reason),
            1,
            "{node}/{reason}: {:?}",
            r.graph.stats().errors()
        );
    }
}

#[test]
fn frames_on_non_l3_ports_are_dropped() {
    let mut r = Rig::new(None, 1500);
    assert!(r.run(2, vec![icmp_echo(MAC0, HOST0, IP0, 64)]).is_empty());
    assert_eq!(r.errors("ethernet-input", "not-l3-port"), 1);
}

#[test]
fn garbage_never_panics() {
    // Deterministic xorshift: truncations and byte flips of good frames.
    let mut r = Rig::new(None, 1500);
    r.learn_hosts();
    let seeds = [
        icmp_echo(MAC0, HOST0, HOST1, 64),
        icmp_echo(MAC0, HOST0, IP0, 2),
        tcp(MAC0, HOST0, HOST1, 80),
        udp(HOST0, IP0, b"abc"),
        arp_request(PEER0, HOST0, IP0),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let mut f = seeds[i % seeds.len()].clone();
        let cut = (next() as usize) % (f.len() + 1);
        if i % 3 == 0 {
            f.truncate(cut);
        }
        for _ in 0..(next() % 4) {
            if !f.is_empty() {
                let at = (next() as usize) % f.len();
                f[at] = next() as u8;
            }
        }
        r.run((next() % 3) as u16, vec![f]);
    }
}

#[test]
fn trace_records_each_node_of_the_first_packets() {
    let mut r = Rig::new(None, 1500);
    r.learn_hosts();
    r.graph.trace(1);
    r.run(
        0,
        vec![
            icmp_echo(MAC0, HOST0, IP0, 64),
            icmp_echo(MAC0, HOST0, IP0, 64),
        ],
    );
    let trace = r.graph.stats().trace.lock().expect("lock").clone();
    let nodes: Vec<&str> = trace.iter().map(|t| t.node).collect();
    assert_eq!(
        nodes,
        [
            "ethernet-input",
            "ip4-input",
            "ip4-lookup",
            "ip4-local",
            "ip4-lookup",
            "ip4-rewrite",
            "port-tx"
        ]
    );
    assert!(trace.iter().all(|t| t.packet == 0), "only the first packet");
    let text = format_trace(&trace);
    assert!(
        text.contains("ICMP: 10.0.0.2 -> 10.0.0.1 type 8 code 0"),
        "{text}"
    );
}

#[test]
fn runtime_counters_count_calls_and_packets() {
    let mut r = Rig::new(None, 1500);
    r.learn_hosts();
    let frames = (0..10).map(|_| tcp(MAC0, HOST0, HOST1, 80)).collect();
    assert_eq!(r.run(0, frames).len(), 10);
    let s = r.graph.stats();
    let eth = s.node("ethernet-input").expect("node");
    assert_eq!(eth.packets.get(), 12, "2 ARP + 10 TCP");
    assert_eq!(eth.calls.get(), 3);
    assert_eq!(s.node("port-tx").expect("node").packets.get(), 12);
}

#[test]
fn policy_can_silence_unreachables_and_refuse_ip_options() {
    let policy = L3Policy {
        icmp_unreachable: false,
        accept_ip_options: false,
        ..L3Policy::default()
    };
    let mut r = Rig::with_policy(None, 1500, policy);
    r.learn_hosts();
    assert!(r
        .run(0, vec![tcp(MAC0, HOST0, [8, 8, 8, 8], 80)])
        .is_empty());
    assert_eq!(r.errors("ip4-lookup", "no-route"), 1);
    assert!(r.run(0, vec![udp(HOST0, IP0, b"dns?")]).is_empty());
    assert_eq!(r.errors("ip4-local", "udp-port-unreachable"), 1);
    assert_eq!(r.errors("icmp-error", "sent"), 0);
    // An IPv4 header with one 4-byte option (NOP x3 + EOL), checksum fixed.
    let plain = icmp_echo(MAC0, HOST0, IP0, 64);
    let mut f = plain[..14].to_vec();
    f.push(0x46);
    f.extend_from_slice(&plain[15..34]);
    f.extend_from_slice(&[1, 1, 1, 0]);
    f.extend_from_slice(&plain[34..]);
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24] = 0;
    f[25] = 0;
    let c = checksum::checksum(&f[14..38]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert!(r.run(0, vec![f.clone()]).is_empty());
    assert_eq!(r.errors("ip4-input", "options-rejected"), 1);
    // Accepted by default, and answered.
    let mut d = Rig::new(None, 1500);
    d.learn_hosts();
    assert_eq!(d.run(0, vec![f]).len(), 1);
    assert_eq!(d.errors("ip4-input", "options-accepted"), 1);
}

#[test]
fn broadcasts_multicast_and_martians_are_neither_routed_nor_answered() {
    let mut r = Rig::new(None, 1500);
    r.learn_hosts();
    // An L2 broadcast frame with a unicast IP destination elsewhere, TTL 1:
    // not routed, and no ICMP time-exceeded back.
    assert!(r
        .run(0, vec![icmp_echo([0xff; 6], HOST0, HOST1, 1)])
        .is_empty());
    assert_eq!(r.errors("ip4-lookup", "l2-broadcast-not-routed"), 1);
    // ... but an L2 broadcast to our own address is still answered.
    assert_eq!(
        r.run(0, vec![icmp_echo([0xff; 6], HOST0, IP0, 64)]).len(),
        1
    );
    // Multicast and subnet-directed broadcast destinations.
    assert!(r
        .run(0, vec![udp(HOST0, [224, 0, 0, 5], b"ospf")])
        .is_empty());
    assert_eq!(r.errors("ip4-lookup", "broadcast-or-multicast"), 1);
    assert!(r
        .run(0, vec![icmp_echo(MAC0, HOST0, [10, 0, 1, 255], 64)])
        .is_empty());
    assert!(r
        .run(0, vec![icmp_echo(MAC0, HOST0, [10, 0, 1, 0], 64)])
        .is_empty());
    assert_eq!(r.errors("ip4-lookup", "directed-broadcast"), 2);
    // Martian sources and destinations.
    for src in [[127, 0, 0, 1], [0, 0, 0, 0], [224, 1, 1, 1]] {
        assert!(r.run(0, vec![icmp_echo(MAC0, src, IP0, 64)]).is_empty());
    }
    assert_eq!(r.errors("ip4-input", "martian-source"), 3);
    assert!(r
        .run(0, vec![icmp_echo(MAC0, HOST0, [127, 0, 0, 1], 64)])
        .is_empty());
    assert_eq!(r.errors("ip4-input", "martian-destination"), 1);
    assert_eq!(
        r.errors("icmp-error", "sent"),
        0,
        "no ICMP about any of them"
    );
}

#[test]
fn arp_does_not_learn_broadcast_macs_or_edge_addresses() {
    let mut r = Rig::new(None, 1500);
    // A request for our address from a broadcast MAC, and from the subnet's
    // broadcast address: answered or not, never learned.
    r.run(0, vec![arp_request([0xff; 6], [10, 0, 0, 7], IP0)]);
    r.run(0, vec![arp_request(PEER0, [10, 0, 0, 255], IP0)]);
    r.run(0, vec![arp_request(MAC0, [10, 0, 0, 8], IP0)]);
    assert!(!r.ctx.neighbours.contains(0, [10, 0, 0, 7]));
    assert!(!r.ctx.neighbours.contains(0, [10, 0, 0, 255]));
    assert!(!r.ctx.neighbours.contains(0, [10, 0, 0, 8]));
    // A plausible neighbour is learned.
    r.run(0, vec![arp_request(PEER0, HOST0, IP0)]);
    assert_eq!(r.ctx.neighbours.lookup(0, HOST0, 0), Some(PEER0));
}
