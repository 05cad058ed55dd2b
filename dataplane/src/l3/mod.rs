//! The IPv4 layer as graph nodes: Ethernet, ARP, IPv4 input, ACL, FIB
//! lookup, local delivery (ICMP echo), ICMP errors and rewrite.
//!
//! ```text
//! ethernet-input ─► arp-input ─────────────────────────────► port-tx
//!               └─► ip4-input ─► [acl] ─► ip4-lookup ─► ip4-rewrite ─► port-tx
//!                                             │   ▲          ├─► ip4-arp ─► port-tx
//!                                             │   │          └─► icmp-error ─┐
//!                                             ▼   └──────────────────────────┘
//!                                          ip4-local ─► (echo reply) ip4-lookup
//!                                                   └─► icmp-error (unreachable)
//! ```
//! Every node reads `meta.l3_offset` (set by ethernet-input); ip4-lookup sets
//! `meta.tx_port` and `meta.next_hop`; nodes that generate packets (echo
//! replies, ICMP errors) set `meta.local_origin` so rewrite leaves their TTL.

pub mod checksum;
pub mod neighbor;
pub mod nodes;

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::acl::Acl;
use crate::fib::Fib;
use crate::graph::{Graph, GraphBuilder, GraphError, Node};
use crate::stats::Counter;
use crate::Buffer;
use neighbor::{NeighbourSync, NeighbourTable};

/// What the L3 layer knows about one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L3Port {
    /// The port's MAC address.
    pub mac: [u8; 6],
    /// Its IPv4 address and prefix length; None for ports outside the L3
    /// layer (L2 cross-connect or unused), whose frames are dropped here.
    pub address: Option<(Ipv4Addr, u8)>,
    /// Largest IPv4 packet it sends.
    pub mtu: u16,
}

/// Behaviour switches ("by policy" in the design).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L3Policy {
    /// Answer undeliverable packets with ICMP unreachable (else drop).
    pub icmp_unreachable: bool,
    /// Accept IPv4 packets carrying options (else drop them).
    pub accept_ip_options: bool,
    /// ICMP errors generated per second per worker, at most.
    pub icmp_rate_per_s: u32,
    /// Lifetime of an unrefreshed neighbour entry.
    pub neighbour_reachable_ms: u64,
}

impl Default for L3Policy {
    fn default() -> Self {
        Self {
            icmp_unreachable: true,
            accept_ip_options: true,
            icmp_rate_per_s: 1000,
            neighbour_reachable_ms: neighbor::DEFAULT_REACHABLE_MS,
        }
    }
}

/// Per-rule hit counters of one worker's ACLs.
#[derive(Debug, Default)]
pub struct AclStats {
    /// Per port (index), per rule (index): packets matched.
    pub hits: Vec<Vec<Counter>>,
    /// Per port: packets that matched no rule (implicit deny).
    pub default_deny: Vec<Counter>,
}

impl AclStats {
    /// Zeroed counters for the given ACLs (one slot per port).
    pub fn new(acls: &[Option<Arc<Acl>>]) -> Self {
        Self {
            hits: acls
                .iter()
                .map(|a| {
                    (0..a.as_ref().map_or(0, |a| a.len()))
                        .map(|_| Counter::default())
                        .collect()
                })
                .collect(),
            default_deny: acls.iter().map(|_| Counter::default()).collect(),
        }
    }
}

/// A token bucket for ICMP error generation, counted in thousandths of a
/// token so that rates that are not a multiple of 1000/s keep their
/// fractions (1500/s must not behave like 1000/s).
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    milli_tokens: u64,
    burst_milli: u64,
    rate_per_s: u32,
    last_ms: u64,
}

impl TokenBucket {
    /// Allow `rate_per_s` tokens per second with bursts of `rate_per_s / 10`
    /// (at least 10).
    pub fn new(rate_per_s: u32) -> Self {
        let burst_milli = u64::from((rate_per_s / 10).max(10)) * 1000;
        Self {
            milli_tokens: burst_milli,
            burst_milli,
            rate_per_s,
            last_ms: 0,
        }
    }

    /// Take one token at time `now_ms`; false when the bucket is empty.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed > 0 {
            // rate tokens per 1000 ms = rate milli-tokens per ms.
            let refill = elapsed.saturating_mul(u64::from(self.rate_per_s));
            self.milli_tokens = self
                .milli_tokens
                .saturating_add(refill)
                .min(self.burst_milli);
            self.last_ms = now_ms;
        }
        if self.milli_tokens < 1000 {
            return false;
        }
        self.milli_tokens -= 1000;
        true
    }
}

/// Allocates an empty buffer for packets the graph originates (ARP requests).
pub type Allocator<B> = Box<dyn FnMut() -> Option<B> + Send>;

/// The state every L3 node of one worker's graph shares.
pub struct L3Context<B> {
    /// Milliseconds on the worker's clock (updated by the worker loop).
    pub now_ms: u64,
    /// Per port index.
    pub ports: Vec<L3Port>,
    /// The FIB, shared read-only by all workers.
    pub fib: Arc<Fib>,
    /// Per port index: its input ACL, if any.
    pub acls: Vec<Option<Arc<Acl>>>,
    /// This worker's ACL hit counters.
    pub acl_stats: Arc<AclStats>,
    /// This worker's neighbours.
    pub neighbours: NeighbourTable<B>,
    /// Exchange of learned neighbours with the other workers (None with one
    /// worker).
    pub sync: Option<NeighbourSync>,
    /// Buffers for ARP requests.
    pub alloc: Allocator<B>,
    /// ICMP error rate limit.
    pub icmp_tokens: TokenBucket,
    /// Behaviour switches.
    pub policy: L3Policy,
}

impl<B> L3Context<B> {
    /// Build a context for `ports` with the given FIB, ACLs and allocator.
    pub fn new(
        ports: Vec<L3Port>,
        fib: Arc<Fib>,
        acls: Vec<Option<Arc<Acl>>>,
        alloc: Allocator<B>,
        policy: L3Policy,
    ) -> Self {
        let mut acls = acls;
        acls.resize(ports.len(), None);
        Self {
            now_ms: 0,
            acl_stats: Arc::new(AclStats::new(&acls)),
            ports,
            fib,
            acls,
            neighbours: NeighbourTable::new(policy.neighbour_reachable_ms),
            sync: None,
            alloc,
            icmp_tokens: TokenBucket::new(policy.icmp_rate_per_s),
            policy,
        }
    }

    /// Return the address of port `port` as octets, if it has one.
    #[inline]
    pub fn port_ip(&self, port: u16) -> Option<[u8; 4]> {
        self.ports
            .get(port as usize)
            .and_then(|p| p.address)
            .map(|(a, _)| a.octets())
    }
}

/// Build the IPv4 graph (node order = dispatch order).
///
/// # Errors
/// Only if the node wiring itself is inconsistent (a bug, reported at start).
pub fn build_graph<B: Buffer + 'static>(
    ports: usize,
    cycles: fn() -> u64,
) -> Result<Graph<B, L3Context<B>>, GraphError> {
    build_graph_with_tcp(ports, cycles, None)
}

/// Build the IPv4 graph with a `tcp-input` node after `ip4-local`, which
/// then hands it every TCP segment for a local address (see
/// [`build_graph`]). The node must be called `tcp-input`; what it emits
/// goes to `ip4-lookup`.
///
/// # Errors
/// As [`build_graph`], and when the node is not called `tcp-input`.
pub fn build_graph_with_tcp<B: Buffer + 'static>(
    ports: usize,
    cycles: fn() -> u64,
    tcp: Option<Box<dyn Node<B, L3Context<B>>>>,
) -> Result<Graph<B, L3Context<B>>, GraphError> {
    use nodes::*;
    let mut g = GraphBuilder::new()
        .node(Box::new(EthernetInput))
        .node(Box::new(ArpInput))
        .node(Box::new(Ip4Input))
        .node(Box::new(AclNode))
        .node(Box::new(Ip4Lookup))
        .node(Box::new(Ip4Local { tcp: tcp.is_some() }));
    if let Some(tcp) = tcp {
        if tcp.name() != "tcp-input" {
            return Err(GraphError(format!(
                "the TCP node is called `{}`, not `tcp-input`",
                tcp.name()
            )));
        }
        g = g.node(tcp);
    }
    g.node(Box::new(IcmpError))
        .node(Box::new(Ip4Rewrite::default()))
        .node(Box::new(Ip4Arp))
        .build(ports, cycles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_limits_rate() {
        let mut b = TokenBucket::new(100);
        let mut ok = 0;
        for _ in 0..50 {
            ok += usize::from(b.take(0));
        }
        assert_eq!(ok, 10, "burst");
        assert!(!b.take(5));
        assert!(b.take(20), "2 tokens after 20 ms at 100/s");
        assert!(b.take(20));
        assert!(!b.take(20));
    }

    #[test]
    fn token_bucket_keeps_fractions() {
        let mut b = TokenBucket::new(1500);
        while b.take(0) {}
        let mut sent = 0;
        for ms in 1..=10_000u64 {
            while b.take(ms) {
                sent += 1;
            }
        }
        assert!((14_900..=15_100).contains(&sent), "{sent}");
    }
}
