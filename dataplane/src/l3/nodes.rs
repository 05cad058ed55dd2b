//! The L3 nodes. Each documents what metadata it reads and sets and its next
//! nodes.
//!
//! Headers are read at fixed offsets after explicit length checks, in the
//! order that gives each malformed frame its own drop reason; after those
//! checks no index below can be out of bounds. smoltcp's `wire` module parses
//! ARP and decodes frames for the packet trace.

use std::net::Ipv4Addr;

use smoltcp::wire::{ArpHardware, ArpOperation, ArpPacket, EthernetProtocol};

use super::checksum;
use super::neighbor::{Hold, Learned};
use super::L3Context;
use crate::acl::{Acl, AclAction, AclKey};
use crate::fib::Route;
use crate::graph::{Events, Next, Node, Output, Packet, PORT_TX};
use crate::Buffer;

const ETH_HLEN: usize = 14;
const BROADCAST: [u8; 6] = [0xff; 6];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// TTL of packets this host originates.
const LOCAL_TTL: u8 = 64;

/// ICMP (type, code) pairs the graph generates.
pub mod icmp {
    /// Destination unreachable: network.
    pub const NET_UNREACHABLE: (u8, u8) = (3, 0);
    /// Destination unreachable: protocol.
    pub const PROTOCOL_UNREACHABLE: (u8, u8) = (3, 2);
    /// Destination unreachable: port.
    pub const PORT_UNREACHABLE: (u8, u8) = (3, 3);
    /// Destination unreachable: fragmentation needed and DF set.
    pub const FRAG_NEEDED: (u8, u8) = (3, 4);
    /// Time exceeded in transit.
    pub const TTL_EXCEEDED: (u8, u8) = (11, 0);
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

#[inline]
fn ip4(d: &[u8], at: usize) -> [u8; 4] {
    [d[at], d[at + 1], d[at + 2], d[at + 3]]
}

fn fmt_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One-line IPv4 decode for traces (never panics on short input).
fn fmt_ip4(d: &[u8], l3: usize) -> String {
    let Some(ip) = d.get(l3..) else {
        return "truncated".into();
    };
    if ip.len() < 20 {
        return format!("IPv4 truncated ({} bytes)", ip.len());
    }
    let proto = match ip[9] {
        PROTO_ICMP => "ICMP".to_string(),
        PROTO_TCP => "TCP".to_string(),
        PROTO_UDP => "UDP".to_string(),
        p => format!("proto {p}"),
    };
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let ports = match ip[9] {
        PROTO_TCP | PROTO_UDP if ip.len() >= ihl + 4 && ihl >= 20 => {
            format!(" {} -> {}", be16(ip, ihl), be16(ip, ihl + 2))
        }
        PROTO_ICMP if ip.len() >= ihl + 2 && ihl >= 20 => {
            format!(" type {} code {}", ip[ihl], ip[ihl + 1])
        }
        _ => String::new(),
    };
    format!(
        "{proto}: {} -> {}{ports} tos 0x{:02x} ttl {} len {} checksum 0x{:04x}",
        Ipv4Addr::from(ip4(ip, 12)),
        Ipv4Addr::from(ip4(ip, 16)),
        ip[1],
        ip[8],
        be16(ip, 2),
        be16(ip, 10)
    )
}

// ---------------------------------------------------------------------------

/// `ethernet-input`: checks the frame and dispatches by ethertype.
///
/// Reads `meta.rx_port`; sets `meta.l3_offset`. Accepts frames addressed to
/// the port's MAC or broadcast on L3 ports. Next: arp-input, ip4-input.
pub struct EthernetInput;

impl EthernetInput {
    const ARP: usize = 0;
    const IP4: usize = 1;
    const E_RUNT: usize = 0;
    const E_NOT_FOR_US: usize = 1;
    const E_VLAN: usize = 2;
    const E_IP6: usize = 3;
    const E_UNKNOWN: usize = 4;
    const E_NOT_L3: usize = 5;
}

impl<B: Buffer> Node<B, L3Context<B>> for EthernetInput {
    fn name(&self) -> &'static str {
        "ethernet-input"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        &["arp-input", "ip4-input"]
    }
    fn errors(&self) -> &'static [&'static str] {
        &[
            "runt",
            "not-for-us",
            "vlan-tagged",
            "ip6-not-supported",
            "unknown-ethertype",
            "not-l3-port",
        ]
    }
    #[inline(always)]
    fn packet(&mut self, ctx: &mut L3Context<B>, pkt: &mut Packet<B>, _ev: &Events<'_>) -> Next {
        let d = pkt.buf.data();
        if d.len() < ETH_HLEN {
            return Next::drop(Self::E_RUNT);
        }
        let Some(port) = ctx
            .ports
            .get(pkt.meta.rx_port as usize)
            .filter(|p| p.address.is_some())
        else {
            return Next::drop(Self::E_NOT_L3);
        };
        if d[0..6] != port.mac && d[0..6] != BROADCAST {
            return Next::drop(Self::E_NOT_FOR_US);
        }
        let next = match be16(d, 12) {
            ETHERTYPE_IPV4 => Self::IP4,
            ETHERTYPE_ARP => Self::ARP,
            0x8100 | 0x88a8 | 0x9100 => {
                return Next::drop(Self::E_VLAN);
            }
            0x86dd => {
                return Next::drop(Self::E_IP6);
            }
            _ => {
                return Next::drop(Self::E_UNKNOWN);
            }
        };
        pkt.meta.l3_offset = ETH_HLEN as u16;
        pkt.meta.l2_broadcast = d[0] & 1 != 0;
        Next::to(next)
    }
    fn format_trace(&self, _ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        let d = pkt.buf.data();
        if d.len() < ETH_HLEN {
            return format!(
                "runt frame, {} bytes, rx port {}",
                d.len(),
                pkt.meta.rx_port
            );
        }
        format!(
            "rx port {}: {} -> {} type 0x{:04x}, {} bytes",
            pkt.meta.rx_port,
            fmt_mac(&d[6..12]),
            fmt_mac(&d[0..6]),
            be16(d, 12),
            d.len()
        )
    }
}

// ---------------------------------------------------------------------------

/// `arp-input`: answers requests for the port's address, learns neighbours,
/// releases packets waiting for them.
///
/// Reads `meta.rx_port`, `meta.l3_offset`; sets `meta.tx_port`. Next: port-tx.
pub struct ArpInput;

impl ArpInput {
    const TX: usize = 0;
    const E_MALFORMED: usize = 0;
    const E_UNSUPPORTED: usize = 1;
    const E_NOT_FOR_US: usize = 2;
    const E_REPLY_LEARNED: usize = 3;
    const C_REQUEST_ANSWERED: usize = 4;
    const C_RELEASED: usize = 5;
    const C_SYNC_FULL: usize = 6;
}

impl<B: Buffer> Node<B, L3Context<B>> for ArpInput {
    fn name(&self) -> &'static str {
        "arp-input"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        &[PORT_TX]
    }
    fn errors(&self) -> &'static [&'static str] {
        &[
            "malformed",
            "unsupported-hardware-or-protocol",
            "not-for-us",
            "reply-learned",
            "request-answered",
            "held-packets-released",
            "peer-inbox-full",
        ]
    }
    fn owns_packets(&self) -> bool {
        true
    }
    fn process_owned(
        &mut self,
        ctx: &mut L3Context<B>,
        input: &mut Vec<Packet<B>>,
        out: &mut Output<'_, B>,
    ) {
        for mut pkt in input.drain(..) {
            let port = pkt.meta.rx_port;
            let l3 = pkt.meta.l3_offset as usize;
            let (Some(my_ip), Some(my)) =
                (ctx.port_ip(port), ctx.ports.get(port as usize).copied())
            else {
                out.drop(pkt, Self::E_UNSUPPORTED);
                continue;
            };
            let parsed = {
                let Some(body) = pkt.buf.data().get(l3..) else {
                    out.drop(pkt, Self::E_MALFORMED);
                    continue;
                };
                match ArpPacket::new_checked(body) {
                    Ok(a) => {
                        if a.hardware_type() != ArpHardware::Ethernet
                            || a.protocol_type() != EthernetProtocol::Ipv4
                            || a.hardware_len() != 6
                            || a.protocol_len() != 4
                        {
                            None
                        } else {
                            let mut sha = [0u8; 6];
                            sha.copy_from_slice(a.source_hardware_addr());
                            let mut spa = [0u8; 4];
                            spa.copy_from_slice(a.source_protocol_addr());
                            let mut tpa = [0u8; 4];
                            tpa.copy_from_slice(a.target_protocol_addr());
                            Some((a.operation(), sha, spa, tpa))
                        }
                    }
                    Err(_) => {
                        out.drop(pkt, Self::E_MALFORMED);
                        continue;
                    }
                }
            };
            let Some((op, sha, spa, tpa)) = parsed else {
                out.drop(pkt, Self::E_UNSUPPORTED);
                continue;
            };
            // Learn only plausible neighbours: a unicast MAC that is not
            // ours, and a host address of the port's subnet that is not ours.
            let in_subnet = my.address.is_some_and(|(a, len)| {
                same_subnet(a.octets(), spa, len) && !is_subnet_edge(a.octets(), spa, len)
            }) && spa != my_ip
                && sha[0] & 1 == 0
                && sha != my.mac;
            let for_us = tpa == my_ip;
            if in_subnet && (for_us || ctx.neighbours.contains(port, spa)) && sha != [0; 6] {
                let now = ctx.now_ms;
                let released = ctx.neighbours.learn(port, spa, sha, now);
                if let Some(sync) = &ctx.sync {
                    let full = sync.publish(Learned {
                        port,
                        ip: spa,
                        mac: sha,
                    });
                    if full > 0 {
                        out.count(Self::C_SYNC_FULL);
                    }
                }
                for mut held in released {
                    out.count(Self::C_RELEASED);
                    if set_macs(held.buf.data_mut(), sha, my.mac) {
                        held.meta.tx_port = port;
                        out.next(Self::TX, held);
                    } else {
                        out.drop(held, Self::E_MALFORMED);
                    }
                }
            }
            if !for_us {
                out.drop(pkt, Self::E_NOT_FOR_US);
                continue;
            }
            match op {
                ArpOperation::Request => {
                    // Turn the request into the reply in place.
                    let d = pkt.buf.data_mut();
                    d[0..6].copy_from_slice(&sha);
                    d[6..12].copy_from_slice(&my.mac);
                    let a = &mut d[l3..];
                    a[6..8].copy_from_slice(&2u16.to_be_bytes());
                    a[8..14].copy_from_slice(&my.mac);
                    a[14..18].copy_from_slice(&my_ip);
                    a[18..24].copy_from_slice(&sha);
                    a[24..28].copy_from_slice(&spa);
                    pkt.meta.tx_port = port;
                    out.count(Self::C_REQUEST_ANSWERED);
                    out.next(Self::TX, pkt);
                }
                _ => out.drop(pkt, Self::E_REPLY_LEARNED),
            }
        }
    }
    fn format_trace(&self, _ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        let body = pkt
            .buf
            .data()
            .get(pkt.meta.l3_offset as usize..)
            .unwrap_or(&[]);
        match ArpPacket::new_checked(body) {
            Ok(a) if a.hardware_len() == 6 && a.protocol_len() == 4 => format!(
                "ARP {:?}: who has {} tell {} ({})",
                a.operation(),
                Ipv4Addr::from(ip4(a.target_protocol_addr(), 0)),
                Ipv4Addr::from(ip4(a.source_protocol_addr(), 0)),
                fmt_mac(a.source_hardware_addr())
            ),
            _ => format!("malformed ARP, {} bytes", body.len()),
        }
    }
}

fn same_subnet(a: [u8; 4], b: [u8; 4], len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from_be_bytes(a) & mask == u32::from_be_bytes(b) & mask
}

/// Return true when `ip` is the network or broadcast address of the subnet
/// `net/len` it belongs to (/31 and /32 have no such addresses).
fn is_subnet_edge(net: [u8; 4], ip: [u8; 4], len: u8) -> bool {
    if len >= 31 || !same_subnet(net, ip, len) {
        return false;
    }
    let host_mask = u32::MAX >> u32::from(len);
    let host = u32::from_be_bytes(ip) & host_mask;
    host == 0 || host == host_mask
}

/// Write the Ethernet header of an IPv4 packet: destination and source MACs
/// and ethertype IPv4; false if the frame is too short. The ethertype too:
/// packets of local origin (the TCP stack's segments) come in fresh buffers
/// whose headroom holds whatever the mbuf held last (zeros, or an ARP frame's
/// 0x0806), and the kernel drops a frame with the wrong ethertype.
#[inline]
fn set_macs(d: &mut [u8], dst: [u8; 6], src: [u8; 6]) -> bool {
    if d.len() < ETH_HLEN {
        return false;
    }
    d[0..6].copy_from_slice(&dst);
    d[6..12].copy_from_slice(&src);
    d[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    true
}

// ---------------------------------------------------------------------------

/// `ip4-input`: validates the IPv4 header and trims Ethernet padding.
///
/// Reads `meta.l3_offset`, `meta.rx_port`. Next: ip4-lookup, or acl when
/// the rx port has an ACL.
pub struct Ip4Input;

impl Ip4Input {
    const LOOKUP: usize = 0;
    const ACL: usize = 1;
    const E_SHORT: usize = 0;
    const E_VERSION: usize = 1;
    const E_IHL: usize = 2;
    const E_LENGTH: usize = 3;
    const E_CHECKSUM: usize = 4;
    const E_TTL: usize = 5;
    const E_FRAGMENT: usize = 6;
    const E_OPTIONS: usize = 7;
    const C_OPTIONS: usize = 8;
    const E_MARTIAN_SRC: usize = 9;
    const E_MARTIAN_DST: usize = 10;
}

impl<B: Buffer> Node<B, L3Context<B>> for Ip4Input {
    fn name(&self) -> &'static str {
        "ip4-input"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        &["ip4-lookup", "acl"]
    }
    fn errors(&self) -> &'static [&'static str] {
        &[
            "too-short",
            "bad-version",
            "bad-ihl",
            "bad-length",
            "bad-checksum",
            "ttl-expired",
            "fragment",
            "options-rejected",
            "options-accepted",
            "martian-source",
            "martian-destination",
        ]
    }
    #[inline(always)]
    fn packet(&mut self, ctx: &mut L3Context<B>, pkt: &mut Packet<B>, ev: &Events<'_>) -> Next {
        let l3 = pkt.meta.l3_offset as usize;
        let d = pkt.buf.data();
        let avail = d.len().saturating_sub(l3);
        if avail < 20 {
            return Next::drop(Self::E_SHORT);
        }
        let ip = &d[l3..];
        if ip[0] >> 4 != 4 {
            return Next::drop(Self::E_VERSION);
        }
        let ihl = usize::from(ip[0] & 0xf) * 4;
        if ihl < 20 {
            return Next::drop(Self::E_IHL);
        }
        if ihl > avail {
            return Next::drop(Self::E_SHORT);
        }
        let total = usize::from(be16(ip, 2));
        if total < ihl || total > avail {
            return Next::drop(Self::E_LENGTH);
        }
        if checksum::sum(&ip[..ihl]) != 0xffff {
            return Next::drop(Self::E_CHECKSUM);
        }
        if ip[8] == 0 {
            return Next::drop(Self::E_TTL);
        }
        // Martians (RFC 1812 5.3.7): sources that cannot be a host, and
        // destinations that are never on a wire.
        let (src0, dst0) = (ip[12], ip[16]);
        if src0 == 0 || src0 == 127 || src0 >= 224 {
            return Next::drop(Self::E_MARTIAN_SRC);
        }
        if dst0 == 0 || dst0 == 127 {
            return Next::drop(Self::E_MARTIAN_DST);
        }
        // MF set or a non-zero offset: reassembly is not supported yet.
        if be16(ip, 6) & 0x3fff != 0 {
            return Next::drop(Self::E_FRAGMENT);
        }
        if ihl > 20 {
            if !ctx.policy.accept_ip_options {
                return Next::drop(Self::E_OPTIONS);
            }
            ev.count(Self::C_OPTIONS);
        }
        if avail > total {
            pkt.buf.truncate(l3 + total);
        }
        let has_acl = ctx
            .acls
            .get(pkt.meta.rx_port as usize)
            .is_some_and(|a| a.is_some());
        Next::to(if has_acl { Self::ACL } else { Self::LOOKUP })
    }
    fn format_trace(&self, _ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        fmt_ip4(pkt.buf.data(), pkt.meta.l3_offset as usize)
    }
}

// ---------------------------------------------------------------------------

/// `acl`: the rx port's ordered rules, first match wins, no match = deny.
///
/// Reads `meta.rx_port`, `meta.l3_offset` (a header ip4-input validated).
/// Next: ip4-lookup.
pub struct AclNode;

impl AclNode {
    const LOOKUP: usize = 0;
    const E_DENY: usize = 0;
    const E_DEFAULT_DENY: usize = 1;
}

/// Return the ACL key of a validated IPv4 packet at `ip`.
#[inline]
fn acl_key(ip: &[u8]) -> AclKey {
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(be16(ip, 2)).min(ip.len());
    let proto = ip[9];
    let (src_port, dst_port) = match proto {
        PROTO_TCP | PROTO_UDP if total >= ihl + 4 => (be16(ip, ihl), be16(ip, ihl + 2)),
        _ => (0, 0),
    };
    AclKey {
        src: Ipv4Addr::from(ip4(ip, 12)),
        dst: Ipv4Addr::from(ip4(ip, 16)),
        protocol: proto,
        src_port,
        dst_port,
    }
}

impl<B: Buffer> Node<B, L3Context<B>> for AclNode {
    fn name(&self) -> &'static str {
        "acl"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        &["ip4-lookup"]
    }
    fn errors(&self) -> &'static [&'static str] {
        &["deny", "default-deny"]
    }
    /// A worker runs the graph once per received vector, so a vector's
    /// packets share their rx port: the port's ACL is looked up once per run
    /// of packets from the same port, not per packet.
    fn process(
        &mut self,
        ctx: &mut L3Context<B>,
        pkts: &mut [Packet<B>],
        nexts: &mut [Next],
        _ev: &Events<'_>,
    ) {
        let mut current: Option<usize> = None;
        let mut acl: Option<&Acl> = None;
        for (pkt, next) in pkts.iter().zip(nexts.iter_mut()) {
            let port = pkt.meta.rx_port as usize;
            if current != Some(port) {
                current = Some(port);
                acl = ctx.acls.get(port).and_then(|a| a.as_deref());
            }
            let Some(acl) = acl else {
                *next = Next::to(Self::LOOKUP);
                continue;
            };
            let ip = pkt
                .buf
                .data()
                .get(pkt.meta.l3_offset as usize..)
                .unwrap_or(&[]);
            let verdict = if ip.len() < 20 {
                None
            } else {
                acl.classify(&acl_key(ip))
            };
            *next = match verdict {
                Some(rule) => {
                    if let Some(c) = ctx.acl_stats.hits.get(port).and_then(|h| h.get(rule)) {
                        c.add(1);
                    }
                    match acl.rules().get(rule).map(|r| r.action) {
                        Some(AclAction::Permit) => Next::to(Self::LOOKUP),
                        _ => Next::drop(Self::E_DENY),
                    }
                }
                None => {
                    if let Some(c) = ctx.acl_stats.default_deny.get(port) {
                        c.add(1);
                    }
                    Next::drop(Self::E_DEFAULT_DENY)
                }
            };
        }
    }
    fn format_trace(&self, ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        let port = pkt.meta.rx_port as usize;
        let ip = pkt
            .buf
            .data()
            .get(pkt.meta.l3_offset as usize..)
            .unwrap_or(&[]);
        match (ctx.acls.get(port).and_then(|a| a.as_ref()), ip.len() >= 20) {
            (Some(acl), true) => match acl.classify(&acl_key(ip)) {
                Some(rule) => format!("port {port}: rule {rule} {:?}", acl.rules()[rule].action),
                None => format!("port {port}: no rule matched, deny"),
            },
            _ => format!("port {port}: no ACL"),
        }
    }
}

// ---------------------------------------------------------------------------

/// `ip4-lookup`: longest-prefix match in the FIB.
///
/// Reads `meta.l3_offset`; sets `meta.tx_port`, `meta.next_hop` (and
/// `meta.icmp_error` on no route). Next: ip4-local, ip4-rewrite, icmp-error.
pub struct Ip4Lookup;

impl Ip4Lookup {
    const LOCAL: usize = 0;
    const REWRITE: usize = 1;
    const ICMP_ERROR: usize = 2;
    const E_NO_ROUTE: usize = 0;
    const E_BROADCAST: usize = 1;
    const E_L2_BROADCAST: usize = 2;
    const E_DIRECTED_BROADCAST: usize = 3;
}

impl<B: Buffer> Node<B, L3Context<B>> for Ip4Lookup {
    fn name(&self) -> &'static str {
        "ip4-lookup"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        &["ip4-local", "ip4-rewrite", "icmp-error"]
    }
    fn errors(&self) -> &'static [&'static str] {
        &[
            "no-route",
            "broadcast-or-multicast",
            "l2-broadcast-not-routed",
            "directed-broadcast",
        ]
    }
    #[inline(always)]
    fn packet(&mut self, ctx: &mut L3Context<B>, pkt: &mut Packet<B>, ev: &Events<'_>) -> Next {
        let at = pkt.meta.l3_offset as usize + 16;
        let Some(dst) = pkt.buf.data().get(at..at + 4).map(|s| ip4(s, 0)) else {
            return Next::drop(Self::E_NO_ROUTE);
        };
        // Limited broadcast, multicast and class E are not routed (no
        // multicast routing); neither is anything that arrived as an L2
        // broadcast unless it is for us.
        if dst == [255; 4] || dst[0] >= 224 {
            return Next::drop(Self::E_BROADCAST);
        }
        let route = ctx.fib.lookup(Ipv4Addr::from(dst));
        if pkt.meta.l2_broadcast && !matches!(route, Some(Route::Local { .. })) {
            return Next::drop(Self::E_L2_BROADCAST);
        }
        match route {
            Some(Route::Local { .. }) => Next::to(Self::LOCAL),
            Some(Route::Connected { port }) => {
                // The subnet's network and broadcast addresses are not hosts:
                // directed broadcasts are not forwarded (RFC 2644).
                if let Some((addr, len)) = ctx.ports.get(port as usize).and_then(|p| p.address) {
                    if is_subnet_edge(addr.octets(), dst, len) {
                        return Next::drop(Self::E_DIRECTED_BROADCAST);
                    }
                }
                pkt.meta.tx_port = port;
                pkt.meta.next_hop = dst;
                Next::to(Self::REWRITE)
            }
            Some(Route::Via { port, next_hop }) => {
                pkt.meta.tx_port = port;
                pkt.meta.next_hop = next_hop.octets();
                Next::to(Self::REWRITE)
            }
            None => {
                if ctx.policy.icmp_unreachable && !pkt.meta.local_origin {
                    ev.count(Self::E_NO_ROUTE);
                    pkt.meta.icmp_error = icmp::NET_UNREACHABLE;
                    Next::to(Self::ICMP_ERROR)
                } else {
                    Next::drop(Self::E_NO_ROUTE)
                }
            }
        }
    }
    fn format_trace(&self, ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        let at = pkt.meta.l3_offset as usize + 16;
        match pkt.buf.data().get(at..at + 4) {
            Some(s) => {
                let dst = Ipv4Addr::from(ip4(s, 0));
                format!("fib lookup {dst}: {:?}", ctx.fib.lookup(dst))
            }
            None => "truncated".into(),
        }
    }
}

// ---------------------------------------------------------------------------

/// `ip4-local`: packets for our own addresses. ICMP echo requests are
/// answered; TCP goes to `tcp-input` where the graph has one (else it is a
/// counted drop); UDP and other protocols get ICMP unreachable by policy.
///
/// Reads `meta.l3_offset`; sets `meta.local_origin`, `meta.icmp_error`.
/// Next: ip4-lookup (replies), icmp-error, tcp-input (with TCP).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ip4Local {
    /// The graph has a `tcp-input` node to hand TCP segments to.
    pub tcp: bool,
}

impl Ip4Local {
    const LOOKUP: usize = 0;
    const ICMP_ERROR: usize = 1;
    const TCP_INPUT: usize = 2;
    const C_ECHO: usize = 0;
    const E_ICMP_CHECKSUM: usize = 1;
    const E_ICMP_OTHER: usize = 2;
    const E_TCP: usize = 3;
    const E_UDP: usize = 4;
    const E_PROTO: usize = 5;
    const E_SHORT: usize = 6;
}

impl<B: Buffer> Node<B, L3Context<B>> for Ip4Local {
    fn name(&self) -> &'static str {
        "ip4-local"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        if self.tcp {
            &["ip4-lookup", "icmp-error", "tcp-input"]
        } else {
            &["ip4-lookup", "icmp-error"]
        }
    }
    fn errors(&self) -> &'static [&'static str] {
        &[
            "icmp-echo-replied",
            "icmp-bad-checksum",
            "icmp-type-not-handled",
            "tcp-no-listener",
            "udp-port-unreachable",
            "protocol-unreachable",
            "too-short",
        ]
    }
    #[inline(always)]
    fn packet(&mut self, ctx: &mut L3Context<B>, pkt: &mut Packet<B>, ev: &Events<'_>) -> Next {
        let l3 = pkt.meta.l3_offset as usize;
        let d = pkt.buf.data();
        let Some(ip) = d.get(l3..).filter(|ip| ip.len() >= 20) else {
            return Next::drop(Self::E_SHORT);
        };
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total = usize::from(be16(ip, 2)).min(ip.len());
        match ip[9] {
            PROTO_ICMP => {
                if total < ihl + 8 {
                    return Next::drop(Self::E_SHORT);
                }
                if checksum::sum(&ip[ihl..total]) != 0xffff {
                    return Next::drop(Self::E_ICMP_CHECKSUM);
                }
                if ip[ihl] != 8 || ip[ihl + 1] != 0 {
                    return Next::drop(Self::E_ICMP_OTHER);
                }
                echo_reply(&mut pkt.buf.data_mut()[l3..], ihl);
                pkt.meta.local_origin = true;
                // The reply is ours, unicast, whatever MAC the request had.
                pkt.meta.l2_broadcast = false;
                ev.count(Self::C_ECHO);
                Next::to(Self::LOOKUP)
            }
            PROTO_TCP if self.tcp => Next::to(Self::TCP_INPUT),
            PROTO_TCP => Next::drop(Self::E_TCP),
            proto => {
                let reason = if proto == PROTO_UDP {
                    Self::E_UDP
                } else {
                    Self::E_PROTO
                };
                if ctx.policy.icmp_unreachable {
                    ev.count(reason);
                    pkt.meta.icmp_error = if proto == PROTO_UDP {
                        icmp::PORT_UNREACHABLE
                    } else {
                        icmp::PROTOCOL_UNREACHABLE
                    };
                    Next::to(Self::ICMP_ERROR)
                } else {
                    Next::drop(reason)
                }
            }
        }
    }
    fn format_trace(&self, _ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        fmt_ip4(pkt.buf.data(), pkt.meta.l3_offset as usize)
    }
}

/// Turn an ICMP echo request (IPv4 header of `ihl` bytes at the start of
/// `ip`) into its reply in place.
fn echo_reply(ip: &mut [u8], ihl: usize) {
    let (src, dst) = (ip4(ip, 12), ip4(ip, 16));
    ip[12..16].copy_from_slice(&dst);
    ip[16..20].copy_from_slice(&src);
    ip[8] = LOCAL_TTL;
    checksum::fill_ipv4(&mut ip[..ihl]);
    // Type 8 → 0 changes one 16-bit word of the ICMP header.
    let icmp = &mut ip[ihl..];
    let old = be16(icmp, 0);
    icmp[0] = 0;
    let hc = checksum::update(be16(icmp, 2), old, be16(icmp, 0));
    icmp[2..4].copy_from_slice(&hc.to_be_bytes());
}

// ---------------------------------------------------------------------------

/// `icmp-error`: turns the packet into the ICMP error `meta.icmp_error`
/// about it (RFC 792/1812: IP header + 8 bytes quoted), from the address of
/// the port it arrived on. Never answers ICMP errors, broadcasts or
/// unspecified sources; rate-limited.
///
/// Reads `meta.icmp_error`, `meta.icmp_param`, `meta.rx_port`; sets
/// `meta.local_origin`. Next: ip4-lookup.
pub struct IcmpError;

impl IcmpError {
    const LOOKUP: usize = 0;
    const C_SENT: usize = 0;
    const E_RATE: usize = 1;
    const E_NO_SOURCE: usize = 2;
    const E_SUPPRESSED: usize = 3;
    const E_NO_ROOM: usize = 4;
}

impl<B: Buffer> Node<B, L3Context<B>> for IcmpError {
    fn name(&self) -> &'static str {
        "icmp-error"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        &["ip4-lookup"]
    }
    fn errors(&self) -> &'static [&'static str] {
        &[
            "sent",
            "rate-limited",
            "no-source-address",
            "suppressed",
            "no-buffer-room",
        ]
    }
    #[inline(always)]
    fn packet(&mut self, ctx: &mut L3Context<B>, pkt: &mut Packet<B>, ev: &Events<'_>) -> Next {
        let l3 = pkt.meta.l3_offset as usize;
        let d = pkt.buf.data();
        let Some(ip) = d.get(l3..).filter(|ip| ip.len() >= 20) else {
            return Next::drop(Self::E_SUPPRESSED);
        };
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total = usize::from(be16(ip, 2)).min(ip.len());
        let orig_src = ip4(ip, 12);
        let is_icmp_error = ip[9] == PROTO_ICMP
            && total > ihl
            && !matches!(ip[ihl], 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18);
        let orig_dst = ip4(ip, 16);
        if is_icmp_error
            || pkt.meta.l2_broadcast
            || orig_dst[0] >= 224
            || orig_dst == [255; 4]
            || orig_src == [0; 4]
            || orig_src == [255; 4]
            || (orig_src[0] & 0xf0) == 0xe0
        {
            return Next::drop(Self::E_SUPPRESSED);
        }
        let src = ctx.port_ip(pkt.meta.rx_port).or_else(|| {
            ctx.ports
                .iter()
                .find_map(|p| p.address)
                .map(|(a, _)| a.octets())
        });
        let Some(src) = src else {
            return Next::drop(Self::E_NO_SOURCE);
        };
        if !ctx.icmp_tokens.take(ctx.now_ms) {
            return Next::drop(Self::E_RATE);
        }
        let quote = total.min(ihl + 8);
        let needed = l3 + 28 + quote;
        let have = pkt.buf.len();
        if needed > have && !pkt.buf.grow(needed - have) {
            return Next::drop(Self::E_NO_ROOM);
        }
        pkt.buf.truncate(needed);
        let (ty, code) = pkt.meta.icmp_error;
        let param = pkt.meta.icmp_param;
        let d = pkt.buf.data_mut();
        d.copy_within(l3..l3 + quote, l3 + 28);
        let ip = &mut d[l3..];
        let len = (28 + quote) as u16;
        ip[..20].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 0, 0, 0, LOCAL_TTL, PROTO_ICMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        ip[2..4].copy_from_slice(&len.to_be_bytes());
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&orig_src);
        checksum::fill_ipv4(&mut ip[..20]);
        let icmp = &mut ip[20..];
        icmp[..8].copy_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
        if (ty, code) == icmp::FRAG_NEEDED {
            icmp[6..8].copy_from_slice(&param.to_be_bytes());
        }
        let c = checksum::checksum(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        pkt.meta.local_origin = true;
        ev.count(Self::C_SENT);
        Next::to(Self::LOOKUP)
    }
    fn format_trace(&self, _ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        let (t, c) = pkt.meta.icmp_error;
        format!(
            "ICMP type {t} code {c} about {}",
            fmt_ip4(pkt.buf.data(), pkt.meta.l3_offset as usize)
        )
    }
}

// ---------------------------------------------------------------------------

/// (tx port, next hop, MAC, clock ms, neighbour-table generation).
type ResolvedHop = (u16, [u8; 4], [u8; 6], u64, u64);

/// `ip4-rewrite`: TTL, MTU and the Ethernet header for the next hop.
///
/// Reads `meta.tx_port`, `meta.next_hop`, `meta.local_origin`; sets
/// `meta.icmp_error`/`icmp_param` on TTL expiry and oversize DF packets.
/// Next: port-tx, icmp-error, ip4-arp (next hop unresolved).
#[derive(Default)]
pub struct Ip4Rewrite {
    /// The last resolved (tx port, next hop, MAC, at ms, table generation):
    /// packets of a vector mostly share a next hop, so this skips the hash
    /// lookup until the clock ticks or the table changes.
    last: Option<ResolvedHop>,
}

impl Ip4Rewrite {
    const TX: usize = 0;
    const ICMP_ERROR: usize = 1;
    const ARP: usize = 2;
    const C_TTL: usize = 0;
    const C_FRAG_NEEDED: usize = 1;
    const E_FRAG: usize = 2;
    const E_NO_PORT: usize = 3;
    const E_SHORT: usize = 4;
}

impl<B: Buffer> Node<B, L3Context<B>> for Ip4Rewrite {
    fn name(&self) -> &'static str {
        "ip4-rewrite"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        &[PORT_TX, "icmp-error", "ip4-arp"]
    }
    fn errors(&self) -> &'static [&'static str] {
        &[
            "ttl-expired",
            "mtu-exceeded-df",
            "mtu-exceeded-fragmentation-not-supported",
            "no-tx-port",
            "too-short",
        ]
    }
    #[inline(always)]
    fn packet(&mut self, ctx: &mut L3Context<B>, pkt: &mut Packet<B>, ev: &Events<'_>) -> Next {
        let l3 = pkt.meta.l3_offset as usize;
        let tx = pkt.meta.tx_port;
        let Some(port) = ctx.ports.get(tx as usize).copied() else {
            return Next::drop(Self::E_NO_PORT);
        };
        let local = pkt.meta.local_origin;
        let d = pkt.buf.data_mut();
        if d.len() < l3 + 20 || l3 < ETH_HLEN {
            return Next::drop(Self::E_SHORT);
        }
        let ip = &mut d[l3..];
        if !local && ip[8] <= 1 {
            ev.count(Self::C_TTL);
            pkt.meta.icmp_error = icmp::TTL_EXCEEDED;
            return Next::to(Self::ICMP_ERROR);
        }
        let total = be16(ip, 2);
        if total > port.mtu {
            if be16(ip, 6) & 0x4000 != 0 && !local {
                ev.count(Self::C_FRAG_NEEDED);
                pkt.meta.icmp_error = icmp::FRAG_NEEDED;
                pkt.meta.icmp_param = port.mtu;
                return Next::to(Self::ICMP_ERROR);
            }
            return Next::drop(Self::E_FRAG);
        }
        if !local {
            let old = be16(ip, 8);
            ip[8] -= 1;
            let hc = checksum::update(be16(ip, 10), old, be16(ip, 8));
            ip[10..12].copy_from_slice(&hc.to_be_bytes());
        }
        let nh = pkt.meta.next_hop;
        let generation = ctx.neighbours.generation();
        let mac = match self.last {
            Some((p, ip, mac, at, g))
                if p == tx && ip == nh && at == ctx.now_ms && g == generation =>
            {
                Some(mac)
            }
            _ => {
                let found = ctx.neighbours.lookup(tx, nh, ctx.now_ms);
                self.last = found.map(|mac| (tx, nh, mac, ctx.now_ms, generation));
                found
            }
        };
        match mac {
            Some(mac) => {
                set_macs(d, mac, port.mac);
                Next::to(Self::TX)
            }
            None => Next::to(Self::ARP),
        }
    }
    fn format_trace(&self, ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        let nh = Ipv4Addr::from(pkt.meta.next_hop);
        match ctx
            .neighbours
            .lookup(pkt.meta.tx_port, pkt.meta.next_hop, ctx.now_ms)
        {
            Some(mac) => format!("tx port {} via {nh} ({})", pkt.meta.tx_port, fmt_mac(&mac)),
            None => format!("tx port {} via {nh} (unresolved)", pkt.meta.tx_port),
        }
    }
}

// ---------------------------------------------------------------------------

/// `ip4-arp`: holds packets whose next hop is unresolved and sends ARP
/// requests for it (rate-limited per next hop).
///
/// Reads `meta.tx_port`, `meta.next_hop`. Next: port-tx (requests, and
/// packets whose neighbour was learned meanwhile).
pub struct Ip4Arp;

impl Ip4Arp {
    const TX: usize = 0;
    /// Reason index of held packets dropped by the resolution timeout
    /// (counted by the worker's timer).
    pub const E_TIMEOUT: usize = 0;
    const E_QUEUE_FULL: usize = 1;
    /// Reason index of "no buffer for an ARP request" (also counted by the
    /// worker for its gratuitous ARPs).
    pub const E_NO_BUFFER: usize = 2;
    const E_NO_SOURCE: usize = 3;
    const C_REQUEST: usize = 4;
    const C_HELD: usize = 5;
    /// Reason index of the gratuitous ARPs a worker sends when it starts
    /// (counted by the worker).
    pub const C_ANNOUNCED: usize = 6;
}

impl<B: Buffer> Node<B, L3Context<B>> for Ip4Arp {
    fn name(&self) -> &'static str {
        "ip4-arp"
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        &[PORT_TX]
    }
    fn errors(&self) -> &'static [&'static str] {
        &[
            "resolution-timeout",
            "hold-queue-full",
            "no-buffer-for-request",
            "no-source-address",
            "request-sent",
            "held",
            "gratuitous-sent",
        ]
    }
    fn owns_packets(&self) -> bool {
        true
    }
    fn process_owned(
        &mut self,
        ctx: &mut L3Context<B>,
        input: &mut Vec<Packet<B>>,
        out: &mut Output<'_, B>,
    ) {
        for mut pkt in input.drain(..) {
            let tx = pkt.meta.tx_port;
            let nh = pkt.meta.next_hop;
            let (Some(my_ip), Some(port)) = (ctx.port_ip(tx), ctx.ports.get(tx as usize).copied())
            else {
                out.drop(pkt, Self::E_NO_SOURCE);
                continue;
            };
            if let Some(mac) = ctx.neighbours.lookup(tx, nh, ctx.now_ms) {
                set_macs(pkt.buf.data_mut(), mac, port.mac);
                out.next(Self::TX, pkt);
                continue;
            }
            let request = match ctx.neighbours.hold(tx, nh, pkt, ctx.now_ms) {
                Hold::Overflow(p, request) => {
                    out.drop(p, Self::E_QUEUE_FULL);
                    request
                }
                Hold::Queued { request } => {
                    out.count(Self::C_HELD);
                    request
                }
            };
            if !request {
                continue;
            }
            let Some(mut req) = (ctx.alloc)() else {
                out.count(Self::E_NO_BUFFER);
                continue;
            };
            if !build_arp_request(&mut req, port.mac, my_ip, nh) {
                out.count(Self::E_NO_BUFFER);
                continue;
            }
            let mut p = Packet::new(req, tx);
            p.meta.tx_port = tx;
            out.count(Self::C_REQUEST);
            out.next(Self::TX, p);
        }
    }
    fn format_trace(&self, _ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        format!(
            "resolve {} on port {}",
            Ipv4Addr::from(pkt.meta.next_hop),
            pkt.meta.tx_port
        )
    }
}

/// Write a gratuitous ARP (a broadcast request for our own address `ip`)
/// into the empty buffer `buf`: neighbours that know `ip` update its MAC
/// (RFC 826's merge rule, which `arp-input` follows too), so a peer that
/// cached the MAC of a previous process on this address (random per start
/// on memif and tap ports) stops sending to it.
pub fn build_gratuitous_arp<B: Buffer>(buf: &mut B, mac: [u8; 6], ip: [u8; 4]) -> bool {
    build_arp_request(buf, mac, ip, ip)
}

/// Write a broadcast ARP request for `target` into the empty buffer `buf`.
fn build_arp_request<B: Buffer>(buf: &mut B, mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> bool {
    const LEN: usize = ETH_HLEN + 28;
    let have = buf.len();
    if have < LEN && !buf.grow(LEN - have) {
        return false;
    }
    buf.truncate(LEN);
    let d = buf.data_mut();
    d[0..6].copy_from_slice(&BROADCAST);
    d[6..12].copy_from_slice(&mac);
    d[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = &mut d[ETH_HLEN..];
    a[0..8].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    a[8..14].copy_from_slice(&mac);
    a[14..18].copy_from_slice(&ip);
    a[18..24].copy_from_slice(&[0; 6]);
    a[24..28].copy_from_slice(&target);
    true
}
