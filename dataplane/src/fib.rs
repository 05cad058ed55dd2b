//! The IPv4 forwarding table (FIB) that the `ip4-lookup` node consults.
//!
//! A [`Fib`] is built once per configuration generation by a [`FibBuilder`]
//! from three kinds of routes, is immutable afterwards, and is shared by every
//! worker through an `Arc`: a route change builds a new table and publishes it
//! between vectors, so lookups never take a lock or see a half-updated table.
//!
//! | kind      | source                       | prefix            | [`Route`]                |
//! |-----------|------------------------------|-------------------|--------------------------|
//! | local     | each port address            | the address, /32  | [`Route::Local`]         |
//! | connected | each port address            | its subnet        | [`Route::Connected`]     |
//! | static    | [`FibBuilder::route`]        | as given          | [`Route::Via`]           |
//!
//! The longest matching prefix wins. When two kinds install the same prefix
//! the more specific *source* wins, as a router's administrative distance
//! does: local beats connected beats static. So a port address is always
//! delivered locally, and a static route that names a connected subnet exactly
//! is shadowed by it (and not listed by [`Fib::routes`]); a static route *more
//! specific* than a connected subnet wins by length, as usual.
//!
//! # Lookup structure: a 16-8-8 multibit trie
//!
//! The table is a fixed-stride multibit trie with leaf pushing, the layout
//! of VPP's `ip4_mtrie_16`: a root array of 2^16 entries indexed by the top
//! 16 address bits, and 256-entry *plies* indexed by the next byte, one below
//! each /16 that holds a longer prefix and one below each /24 that holds a
//! longer one still. Every entry is a `u32`: `0` = no route, `PLY | i` = go
//! on in ply `i`, otherwise the index + 1 of the [`Route`] in a small
//! next-hop array. A lookup is one to three dependent loads and one into the
//! next-hop array; no comparisons against prefixes, no pointer chasing.
//!
//! Building paints prefixes shortest first, so a nested (longer) prefix
//! simply overwrites the slots of the shorter ones it lies in, and a new ply
//! starts as 256 copies of the entry it replaces. No per-slot prefix length
//! is kept: the table is never updated in place, a change builds a new one.
//!
//! Memory is 256 KiB for the root plus 1 KiB per ply: the benchmark's
//! 1 000-prefix table has 1 176 plies, 1.4 MiB in all, so the table stays
//! in L2/L3 whatever the destinations, and builds in well under a millisecond.
//!
//! # Why this and not a crate, `rte_lpm`, or DIR-24-8
//!
//! Measured with criterion (`benches/fib.rs`, release, thin LTO; the crates
//! and DIR-24-8 in a scratch harness over the same seeded workload) on the
//! 2-core KVM development VM (AMD EPYC), with other builds often running on
//! the same cores, so take ±30%. Table: 1 000 prefixes (8 connected /24s and
//! their local /32s, a default route, statics /8–/32 skewed to /16–/32).
//! ns per lookup (batch time / batch size), two runs: the first with load
//! average 2–3.8, the second all candidates back to back at ≈ 2.3:
//!
//! | candidate                                    | `random`  | `in_prefixes` | `hot16`   | build  |
//! |----------------------------------------------|----------:|--------------:|----------:|-------:|
//! | 16-8-8 trie (this module)                    | 5.2 / 3.8 |     6.3 / 4.8 | 4.1 / 3.9 | 0.3 ms |
//! | DIR-24-8, `rte_lpm`'s layout (first version) |   47 / 37 |     6.1 / 5.7 | 4.9 / 4.2 |  55 ms |
//! | `iptrie` 0.11 `LCTrieMap` (level-compressed) |   28 / 20 |       13 / 15 |   17 / 10 |        |
//! | `iptrie` 0.11 `RTrieMap` (patricia)          |   56 / 46 |       38 / 36 |   44 / 36 |        |
//! | `prefix-trie` 0.10 `PrefixMap` (tree bitmap) |   34 / 31 |       66 / 30 |   46 / 27 |        |
//! | `ip_network_table` 0.2's treebitmap 0.5      |   60 / 28 |       78 / 63 |   67 / 49 |        |
//!
//! `random` is 1 Mi addresses uniform over the address space (a scan, or a
//! flood through the default route), `in_prefixes` 4 096 addresses inside
//! the table's prefixes, `hot16` 16 destinations repeated.
//!
//! - The crates are general, mutable prefix maps (insert/remove, IPv6, set
//!   operations) and pay for it with a walk of several nodes: 10–60 ns per
//!   lookup, most of them alone over our 25 ns per-packet budget for the
//!   whole forward path. `prefix-trie` and `iptrie` are maintained (current
//!   releases on current dependencies); `ip_network_table` 0.2, on its own
//!   fork of the abandoned `treebitmap`, looks dormant.
//! - DIR-24-8 is as fast on cache-resident destinations (one load fewer;
//!   3.5–6 ns over several runs, within the noise of the trie's numbers),
//!   but its 64 MiB first level makes every lookup to a new /24 a
//!   DRAM and TLB miss: 25–47 ns on uniform destinations over several runs
//!   (≈ 30 ns with transparent huge pages), a cliff an address scan can push
//!   every packet over. It also costs 64 MiB and ~50 ms to build per config
//!   generation (a default route paints all 2^24 entries).
//! - The 16-8-8 trie gives up that one load for a footprint proportional to
//!   the routes, so it stays at a few ns on every mix. It is the layout
//!   VPP's IPv4 FIB looks up in (`ip4_mtrie_16`, next to an 8-8-8-8 one).
//! - `rte_lpm` through the binding is DIR-24-8 behind an FFI call per
//!   packet, in hugepage memory owned by EAL, which this DPDK-free crate
//!   cannot hold; it would have DIR-24-8's cliff (less the TLB misses) and
//!   could not be tested without EAL.
//!
//! If a lookup ever shows in `show runtime`, the next step is VPP's: look up
//! a few packets at once, one trie level for all of them per step, so their
//! loads overlap.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

/// Where `ip4-lookup` sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Destination is one of our own addresses (deliver to ip4-local). `port` = the port owning the address.
    Local { port: u16 },
    /// Destination is on a connected subnet of `port`: next hop is the destination itself.
    Connected { port: u16 },
    /// Forward via `next_hop` (on a connected subnet of `port`).
    Via { port: u16, next_hop: Ipv4Addr },
}

impl Route {
    /// Return the port the packet leaves by (or, for [`Route::Local`], arrived for).
    pub fn port(&self) -> u16 {
        match *self {
            Route::Local { port } | Route::Connected { port } | Route::Via { port, .. } => port,
        }
    }
}

/// Why a [`FibBuilder`] could not build a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FibError {
    /// A prefix length above 32.
    #[error("prefix length /{len} of {prefix} is invalid: an IPv4 prefix length is 0 to 32")]
    PrefixLength { prefix: Ipv4Addr, len: u8 },
    /// A static route's prefix has bits set beyond its length.
    #[error("static route {prefix}/{len} has host bits set: did you mean {network}/{len}?")]
    HostBits {
        prefix: Ipv4Addr,
        len: u8,
        network: Ipv4Addr,
    },
    /// A static route's next hop is not on any connected subnet.
    #[error(
        "next hop {via} of static route {prefix}/{len} is not on any connected subnet: \
         give a port an address in its subnet, or route via a neighbour that is"
    )]
    ViaNotConnected {
        prefix: Ipv4Addr,
        len: u8,
        via: Ipv4Addr,
    },
    /// A static route's next hop is one of our own addresses.
    #[error(
        "next hop {via} of static route {prefix}/{len} is our own address on port {port}: \
         route via a neighbour's address"
    )]
    ViaIsLocal {
        prefix: Ipv4Addr,
        len: u8,
        via: Ipv4Addr,
        port: u16,
    },
    /// Two static routes for the same prefix.
    #[error("static route {prefix}/{len} is given twice (via {first} and via {second}): keep one")]
    DuplicateRoute {
        prefix: Ipv4Addr,
        len: u8,
        first: Ipv4Addr,
        second: Ipv4Addr,
    },
    /// The same address on two ports.
    #[error("address {addr} is on both port {first} and port {second}")]
    DuplicateAddress {
        addr: Ipv4Addr,
        first: u16,
        second: u16,
    },
    /// The same subnet connected to two ports.
    #[error("subnet {prefix}/{len} is connected on both port {first} and port {second}")]
    SubnetConflict {
        prefix: Ipv4Addr,
        len: u8,
        first: u16,
        second: u16,
    },
    /// More prefixes than the table can index (2^30).
    #[error("{count} prefixes is more than the FIB can hold")]
    TooManyRoutes { count: usize },
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    port: u16,
    addr: Ipv4Addr,
    len: u8,
}

#[derive(Debug, Clone, Copy)]
struct StaticRoute {
    prefix: Ipv4Addr,
    len: u8,
    via: Ipv4Addr,
}

/// Collects port addresses and static routes, then builds a [`Fib`].
///
/// Nothing is checked until [`FibBuilder::build`], so a caller can add a whole
/// configuration and get the first mistake in configuration order.
#[derive(Debug, Default, Clone)]
pub struct FibBuilder {
    interfaces: Vec<Interface>,
    statics: Vec<StaticRoute>,
}

impl FibBuilder {
    /// Create an empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The port's own address with its subnet: adds Local /32 and Connected /len.
    pub fn interface(&mut self, port: u16, addr: Ipv4Addr, prefix_len: u8) -> &mut Self {
        self.interfaces.push(Interface {
            port,
            addr,
            len: prefix_len,
        });
        self
    }

    /// A static route; `via` must lie in a connected subnet (resolved at build).
    pub fn route(&mut self, prefix: Ipv4Addr, prefix_len: u8, via: Ipv4Addr) -> &mut Self {
        self.statics.push(StaticRoute {
            prefix,
            len: prefix_len,
            via,
        });
        self
    }

    /// Resolve next hops and build the table.
    ///
    /// # Errors
    ///
    /// The first of, in configuration order: a prefix length above 32
    /// ([`FibError::PrefixLength`]); one address on two ports or one subnet on
    /// two ports; a static prefix with host bits set, given twice, or whose
    /// `via` is not on a connected subnet or is our own address.
    pub fn build(&self) -> Result<Fib, FibError> {
        let mut locals: BTreeMap<u32, u16> = BTreeMap::new();
        let mut connected: BTreeMap<(u32, u8), u16> = BTreeMap::new();
        for i in &self.interfaces {
            if i.len > 32 {
                return Err(FibError::PrefixLength {
                    prefix: i.addr,
                    len: i.len,
                });
            }
            let addr = u32::from(i.addr);
            if let Some(&first) = locals.get(&addr) {
                if first != i.port {
                    return Err(FibError::DuplicateAddress {
                        addr: i.addr,
                        first,
                        second: i.port,
                    });
                }
            }
            locals.insert(addr, i.port);
            let net = addr & mask(i.len);
            if let Some(&first) = connected.get(&(net, i.len)) {
                if first != i.port {
                    return Err(FibError::SubnetConflict {
                        prefix: Ipv4Addr::from(net),
                        len: i.len,
                        first,
                        second: i.port,
                    });
                }
            }
            connected.insert((net, i.len), i.port);
        }

        let mut statics: BTreeMap<(u32, u8), Route> = BTreeMap::new();
        let mut vias: HashMap<(u32, u8), Ipv4Addr> = HashMap::new();
        for r in &self.statics {
            if r.len > 32 {
                return Err(FibError::PrefixLength {
                    prefix: r.prefix,
                    len: r.len,
                });
            }
            let prefix = u32::from(r.prefix);
            let network = prefix & mask(r.len);
            if network != prefix {
                return Err(FibError::HostBits {
                    prefix: r.prefix,
                    len: r.len,
                    network: Ipv4Addr::from(network),
                });
            }
            if let Some(&first) = vias.get(&(prefix, r.len)) {
                return Err(FibError::DuplicateRoute {
                    prefix: r.prefix,
                    len: r.len,
                    first,
                    second: r.via,
                });
            }
            let via = u32::from(r.via);
            if let Some(&port) = locals.get(&via) {
                return Err(FibError::ViaIsLocal {
                    prefix: r.prefix,
                    len: r.len,
                    via: r.via,
                    port,
                });
            }
            // The most specific connected subnet holding the next hop decides
            // the port, as it would for a packet addressed to the next hop.
            let port = connected
                .iter()
                .filter(|(&(net, len), _)| via & mask(len) == net)
                .max_by_key(|(&(_, len), _)| len)
                .map(|(_, &port)| port)
                .ok_or(FibError::ViaNotConnected {
                    prefix: r.prefix,
                    len: r.len,
                    via: r.via,
                })?;
            vias.insert((prefix, r.len), r.via);
            statics.insert(
                (prefix, r.len),
                Route::Via {
                    port,
                    next_hop: r.via,
                },
            );
        }

        // Same prefix from several sources: later inserts win, so insert in
        // order of increasing precedence (static, connected, local).
        let mut table = statics;
        table.extend(
            connected
                .into_iter()
                .map(|(key, port)| (key, Route::Connected { port })),
        );
        table.extend(
            locals
                .into_iter()
                .map(|(addr, port)| ((addr, 32), Route::Local { port })),
        );
        Fib::from_table(table)
    }
}

/// Entries in the first level: one per /16 block.
const ROOT_LEN: usize = 1 << 16;
/// Entry flag: the low 31 bits index a ply instead of a next hop.
const PLY: u32 = 1 << 31;

/// An immutable IPv4 longest-prefix-match table; see the [module docs](self).
pub struct Fib {
    /// First level, indexed by `dst >> 16`; `ROOT_LEN` entries.
    root: Box<[u32]>,
    /// 256-entry plies below the root, indexed by the next address byte:
    /// one per /16 holding a longer prefix, one per /24 holding one longer still.
    plies: Vec<[u32; 256]>,
    /// Distinct routes; entry `n` (n ≥ 1) means `next_hops[n - 1]`.
    next_hops: Vec<Route>,
    /// Every installed prefix, sorted by address then length.
    routes: Vec<(Ipv4Addr, u8, Route)>,
}

/// Return the ply that `entry` points to, first creating it (every slot
/// inheriting the entry's route) if the entry holds a route instead.
fn ply_below(plies: &mut Vec<[u32; 256]>, entry: &mut u32) -> usize {
    if *entry & PLY != 0 {
        return (*entry & !PLY) as usize;
    }
    plies.push([*entry; 256]);
    // At most two plies per prefix, and `from_table` caps prefixes below 2^30.
    *entry = PLY | (plies.len() - 1) as u32;
    plies.len() - 1
}

impl Fib {
    /// Paint `table` (one route per prefix, no host bits) into the trie.
    fn from_table(table: BTreeMap<(u32, u8), Route>) -> Result<Fib, FibError> {
        if table.len() >= 1 << 30 {
            return Err(FibError::TooManyRoutes { count: table.len() });
        }
        let mut next_hops: Vec<Route> = Vec::new();
        let mut next_hop_entry: HashMap<Route, u32> = HashMap::new();
        let mut paint: Vec<(u32, u8, u32)> = Vec::with_capacity(table.len());
        for (&(prefix, len), &route) in &table {
            // No more distinct next hops than prefixes, so entries stay below `PLY`.
            let entry = *next_hop_entry.entry(route).or_insert_with(|| {
                next_hops.push(route);
                next_hops.len() as u32
            });
            paint.push((prefix, len, entry));
        }
        // Shortest first, so a nested (longer) prefix overwrites its parents'
        // slots, and a range being painted never holds a ply yet: plies are
        // only made by longer prefixes, which come later.
        paint.sort_by_key(|&(_, len, _)| len);

        let mut root = vec![0u32; ROOT_LEN].into_boxed_slice();
        let mut plies: Vec<[u32; 256]> = Vec::new();
        for (prefix, len, entry) in paint {
            let i1 = (prefix >> 16) as usize;
            if len <= 16 {
                root[i1..i1 + (1 << (16 - len))].fill(entry);
                continue;
            }
            let p2 = ply_below(&mut plies, &mut root[i1]);
            let i2 = ((prefix >> 8) & 0xff) as usize;
            if len <= 24 {
                plies[p2][i2..i2 + (1 << (24 - len))].fill(entry);
                continue;
            }
            let mut slot = plies[p2][i2];
            let p3 = ply_below(&mut plies, &mut slot);
            plies[p2][i2] = slot;
            let i3 = (prefix & 0xff) as usize;
            plies[p3][i3..i3 + (1 << (32 - len))].fill(entry);
        }

        let routes = table
            .into_iter()
            .map(|((prefix, len), route)| (Ipv4Addr::from(prefix), len, route))
            .collect();
        Ok(Fib {
            root,
            plies,
            next_hops,
            routes,
        })
    }

    /// Return the route of the longest prefix that holds `dst`, or `None` if
    /// no prefix does (the caller drops the packet as "no route").
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Route> {
        let addr = u32::from(dst);
        let mut entry = *self.root.get((addr >> 16) as usize)?;
        if entry & PLY != 0 {
            entry = self.plies.get((entry & !PLY) as usize)?[((addr >> 8) & 0xff) as usize];
            if entry & PLY != 0 {
                entry = self.plies.get((entry & !PLY) as usize)?[(addr & 0xff) as usize];
            }
        }
        self.next_hops.get(entry.checked_sub(1)? as usize).copied()
    }

    /// Return the number of prefixes in the table.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Return whether the table has no prefix (every lookup misses).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Return every prefix with its route, sorted by address then length.
    pub fn routes(&self) -> Vec<(Ipv4Addr, u8, Route)> {
        self.routes.clone()
    }
}

impl fmt::Debug for Fib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fib")
            .field("prefixes", &self.routes.len())
            .field("next_hops", &self.next_hops.len())
            .field("plies", &self.plies.len())
            .finish()
    }
}

/// Return the netmask of a prefix length (0..=32).
fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn via(port: u16, next_hop: &str) -> Option<Route> {
        Some(Route::Via {
            port,
            next_hop: ip(next_hop),
        })
    }

    fn connected(port: u16) -> Option<Route> {
        Some(Route::Connected { port })
    }

    fn local(port: u16) -> Option<Route> {
        Some(Route::Local { port })
    }

    /// Two ports: 10.0.0.1/24 on 0 and 192.168.1.1/30 on 1.
    fn two_ports() -> FibBuilder {
        let mut b = FibBuilder::new();
        b.interface(0, ip("10.0.0.1"), 24)
            .interface(1, ip("192.168.1.1"), 30);
        b
    }

    #[test]
    fn fib_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Fib>();
    }

    #[test]
    fn empty_table_has_no_route() {
        let fib = FibBuilder::new().build().unwrap();
        assert!(fib.is_empty());
        assert_eq!(fib.len(), 0);
        assert_eq!(fib.lookup(ip("0.0.0.0")), None);
        assert_eq!(fib.lookup(ip("10.0.0.1")), None);
        assert_eq!(fib.lookup(ip("255.255.255.255")), None);
    }

    #[test]
    fn interface_adds_local_and_connected() {
        let fib = two_ports().build().unwrap();
        assert_eq!(fib.len(), 4);
        assert_eq!(fib.lookup(ip("10.0.0.1")), local(0));
        assert_eq!(fib.lookup(ip("10.0.0.2")), connected(0));
        // First and last address of the subnet, and just outside it.
        assert_eq!(fib.lookup(ip("10.0.0.0")), connected(0));
        assert_eq!(fib.lookup(ip("10.0.0.255")), connected(0));
        assert_eq!(fib.lookup(ip("9.255.255.255")), None);
        assert_eq!(fib.lookup(ip("10.0.1.0")), None);
        // A /30 lives in a third-level ply.
        assert_eq!(fib.lookup(ip("192.168.1.1")), local(1));
        assert_eq!(fib.lookup(ip("192.168.1.0")), connected(1));
        assert_eq!(fib.lookup(ip("192.168.1.3")), connected(1));
        assert_eq!(fib.lookup(ip("192.168.0.255")), None);
        assert_eq!(fib.lookup(ip("192.168.1.4")), None);
        assert_eq!(fib.lookup(ip("192.168.1.255")), None);
    }

    #[test]
    fn default_route_catches_everything_else() {
        let mut b = two_ports();
        b.route(ip("0.0.0.0"), 0, ip("10.0.0.254"));
        let fib = b.build().unwrap();
        assert_eq!(fib.lookup(ip("0.0.0.0")), via(0, "10.0.0.254"));
        assert_eq!(fib.lookup(ip("8.8.8.8")), via(0, "10.0.0.254"));
        assert_eq!(fib.lookup(ip("255.255.255.255")), via(0, "10.0.0.254"));
        assert_eq!(fib.lookup(ip("192.168.1.4")), via(0, "10.0.0.254"));
        assert_eq!(fib.lookup(ip("10.0.0.7")), connected(0));
        assert_eq!(fib.lookup(ip("10.0.0.1")), local(0));
    }

    #[test]
    fn nested_prefixes_longest_wins_at_every_boundary() {
        let mut b = FibBuilder::new();
        b.interface(0, ip("192.0.2.1"), 24)
            .interface(1, ip("198.51.100.1"), 24)
            .route(ip("172.0.0.0"), 8, ip("192.0.2.8"))
            .route(ip("172.16.0.0"), 16, ip("192.0.2.16"))
            .route(ip("172.16.5.0"), 24, ip("198.51.100.24"))
            .route(ip("172.16.5.128"), 25, ip("192.0.2.25"))
            .route(ip("172.16.5.160"), 28, ip("198.51.100.28"))
            .route(ip("172.16.5.170"), 32, ip("192.0.2.32"));
        let fib = b.build().unwrap();
        let cases = [
            ("171.255.255.255", None),
            ("172.0.0.0", via(0, "192.0.2.8")),
            ("172.15.255.255", via(0, "192.0.2.8")),
            ("172.16.0.0", via(0, "192.0.2.16")),
            ("172.16.4.255", via(0, "192.0.2.16")),
            ("172.16.5.0", via(1, "198.51.100.24")),
            ("172.16.5.127", via(1, "198.51.100.24")),
            ("172.16.5.128", via(0, "192.0.2.25")),
            ("172.16.5.159", via(0, "192.0.2.25")),
            ("172.16.5.160", via(1, "198.51.100.28")),
            ("172.16.5.169", via(1, "198.51.100.28")),
            ("172.16.5.170", via(0, "192.0.2.32")),
            ("172.16.5.171", via(1, "198.51.100.28")),
            ("172.16.5.175", via(1, "198.51.100.28")),
            ("172.16.5.176", via(0, "192.0.2.25")),
            ("172.16.5.255", via(0, "192.0.2.25")),
            ("172.16.6.0", via(0, "192.0.2.16")),
            ("172.16.255.255", via(0, "192.0.2.16")),
            ("172.17.0.0", via(0, "192.0.2.8")),
            ("172.255.255.255", via(0, "192.0.2.8")),
            ("173.0.0.0", None),
        ];
        for (dst, want) in cases {
            assert_eq!(fib.lookup(ip(dst)), want, "{dst}");
        }
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut a = FibBuilder::new();
        a.interface(0, ip("10.0.0.1"), 24)
            .route(ip("172.16.5.128"), 25, ip("10.0.0.25"))
            .route(ip("172.16.0.0"), 16, ip("10.0.0.16"))
            .route(ip("0.0.0.0"), 0, ip("10.0.0.99"));
        let mut b = FibBuilder::new();
        b.route(ip("0.0.0.0"), 0, ip("10.0.0.99"))
            .route(ip("172.16.0.0"), 16, ip("10.0.0.16"))
            .route(ip("172.16.5.128"), 25, ip("10.0.0.25"))
            .interface(0, ip("10.0.0.1"), 24);
        let (a, b) = (a.build().unwrap(), b.build().unwrap());
        assert_eq!(a.routes(), b.routes());
        for dst in [
            "172.16.5.127",
            "172.16.5.128",
            "172.16.5.255",
            "172.16.6.1",
            "1.2.3.4",
        ] {
            assert_eq!(a.lookup(ip(dst)), b.lookup(ip(dst)), "{dst}");
        }
        assert_eq!(a.lookup(ip("172.16.5.200")), via(0, "10.0.0.25"));
    }

    #[test]
    fn host_routes_at_both_ends_of_the_address_space() {
        let mut b = FibBuilder::new();
        b.interface(0, ip("10.0.0.1"), 8)
            .route(ip("0.0.0.0"), 32, ip("10.1.1.1"))
            .route(ip("255.255.255.255"), 32, ip("10.2.2.2"));
        let fib = b.build().unwrap();
        assert_eq!(fib.lookup(ip("0.0.0.0")), via(0, "10.1.1.1"));
        assert_eq!(fib.lookup(ip("0.0.0.1")), None);
        assert_eq!(fib.lookup(ip("255.255.255.255")), via(0, "10.2.2.2"));
        assert_eq!(fib.lookup(ip("255.255.255.254")), None);
    }

    #[test]
    fn static_more_specific_than_connected_wins() {
        let mut b = two_ports();
        b.route(ip("10.0.0.128"), 25, ip("192.168.1.2"));
        let fib = b.build().unwrap();
        assert_eq!(fib.lookup(ip("10.0.0.127")), connected(0));
        assert_eq!(fib.lookup(ip("10.0.0.128")), via(1, "192.168.1.2"));
        assert_eq!(fib.lookup(ip("10.0.0.255")), via(1, "192.168.1.2"));
        assert_eq!(fib.lookup(ip("10.0.0.1")), local(0));
    }

    #[test]
    fn connected_more_specific_than_static_wins() {
        let mut b = two_ports();
        b.route(ip("10.0.0.0"), 8, ip("192.168.1.2"));
        let fib = b.build().unwrap();
        assert_eq!(fib.lookup(ip("10.0.0.9")), connected(0));
        assert_eq!(fib.lookup(ip("10.0.1.0")), via(1, "192.168.1.2"));
        assert_eq!(fib.lookup(ip("9.255.255.255")), None);
    }

    #[test]
    fn same_prefix_local_beats_connected_beats_static() {
        let mut b = two_ports();
        b.route(ip("10.0.0.0"), 24, ip("192.168.1.2"))
            .route(ip("10.0.0.1"), 32, ip("192.168.1.2"))
            .interface(2, ip("172.31.0.5"), 32);
        let fib = b.build().unwrap();
        assert_eq!(fib.lookup(ip("10.0.0.1")), local(0));
        assert_eq!(fib.lookup(ip("10.0.0.2")), connected(0));
        assert_eq!(fib.lookup(ip("172.31.0.5")), local(2));
        assert_eq!(fib.lookup(ip("172.31.0.4")), None);
        // Shadowed routes are not listed.
        assert_eq!(
            fib.routes(),
            vec![
                (ip("10.0.0.0"), 24, Route::Connected { port: 0 }),
                (ip("10.0.0.1"), 32, Route::Local { port: 0 }),
                (ip("172.31.0.5"), 32, Route::Local { port: 2 }),
                (ip("192.168.1.0"), 30, Route::Connected { port: 1 }),
                (ip("192.168.1.1"), 32, Route::Local { port: 1 }),
            ]
        );
        assert_eq!(fib.len(), 5);
    }

    #[test]
    fn via_resolves_to_most_specific_connected_subnet() {
        let mut b = FibBuilder::new();
        b.interface(0, ip("10.0.0.1"), 16)
            .interface(1, ip("10.0.7.1"), 24)
            .route(ip("203.0.113.0"), 24, ip("10.0.7.9"))
            .route(ip("198.51.100.0"), 24, ip("10.0.8.9"));
        let fib = b.build().unwrap();
        assert_eq!(fib.lookup(ip("203.0.113.1")), via(1, "10.0.7.9"));
        assert_eq!(fib.lookup(ip("198.51.100.1")), via(0, "10.0.8.9"));
    }

    #[test]
    fn secondary_addresses_on_one_port() {
        let mut b = FibBuilder::new();
        b.interface(3, ip("10.0.0.1"), 24)
            .interface(3, ip("10.0.0.2"), 24)
            .interface(3, ip("10.0.0.2"), 24);
        let fib = b.build().unwrap();
        assert_eq!(fib.len(), 3);
        assert_eq!(fib.lookup(ip("10.0.0.1")), local(3));
        assert_eq!(fib.lookup(ip("10.0.0.2")), local(3));
        assert_eq!(fib.lookup(ip("10.0.0.3")), connected(3));
    }

    #[test]
    fn routes_are_sorted_by_address_then_length() {
        let mut b = two_ports();
        b.route(ip("10.0.0.0"), 8, ip("10.0.0.9"))
            .route(ip("0.0.0.0"), 0, ip("10.0.0.9"))
            .route(ip("10.0.0.0"), 25, ip("10.0.0.9"));
        let fib = b.build().unwrap();
        let routes = fib.routes();
        assert_eq!(routes.len(), fib.len());
        let keys: Vec<(Ipv4Addr, u8)> = routes.iter().map(|&(p, l, _)| (p, l)).collect();
        assert_eq!(
            keys,
            vec![
                (ip("0.0.0.0"), 0),
                (ip("10.0.0.0"), 8),
                (ip("10.0.0.0"), 24),
                (ip("10.0.0.0"), 25),
                (ip("10.0.0.1"), 32),
                (ip("192.168.1.0"), 30),
                (ip("192.168.1.1"), 32),
            ]
        );
        assert_eq!(
            routes[0].2,
            Route::Via {
                port: 0,
                next_hop: ip("10.0.0.9")
            }
        );
        assert_eq!(Route::Local { port: 4 }.port(), 4);
    }

    #[test]
    fn errors() {
        let err = |b: &mut FibBuilder| b.build().unwrap_err();

        let e = err(two_ports().route(ip("10.1.0.0"), 33, ip("10.0.0.9")));
        assert_eq!(
            e,
            FibError::PrefixLength {
                prefix: ip("10.1.0.0"),
                len: 33
            }
        );
        let e = err(FibBuilder::new().interface(0, ip("10.0.0.1"), 40));
        assert_eq!(
            e,
            FibError::PrefixLength {
                prefix: ip("10.0.0.1"),
                len: 40
            }
        );

        let e = err(two_ports().route(ip("10.1.2.3"), 16, ip("10.0.0.9")));
        assert_eq!(
            e,
            FibError::HostBits {
                prefix: ip("10.1.2.3"),
                len: 16,
                network: ip("10.1.0.0")
            }
        );
        assert!(e.to_string().contains("10.1.0.0/16"), "{e}");
        let e = err(two_ports().route(ip("1.0.0.0"), 0, ip("10.0.0.9")));
        assert!(matches!(e, FibError::HostBits { .. }), "{e}");

        let e = err(two_ports().route(ip("10.9.0.0"), 16, ip("10.0.1.1")));
        assert_eq!(
            e,
            FibError::ViaNotConnected {
                prefix: ip("10.9.0.0"),
                len: 16,
                via: ip("10.0.1.1")
            }
        );
        assert!(e.to_string().contains("10.0.1.1"), "{e}");
        // A route via a static-only address is not resolved recursively.
        let e = err(two_ports()
            .route(ip("172.16.0.0"), 12, ip("10.0.0.9"))
            .route(ip("10.9.0.0"), 16, ip("172.16.0.1")));
        assert!(matches!(e, FibError::ViaNotConnected { .. }), "{e}");
        // No interfaces at all.
        let e = err(FibBuilder::new().route(ip("0.0.0.0"), 0, ip("10.0.0.9")));
        assert!(matches!(e, FibError::ViaNotConnected { .. }), "{e}");

        let e = err(two_ports().route(ip("10.9.0.0"), 16, ip("192.168.1.1")));
        assert_eq!(
            e,
            FibError::ViaIsLocal {
                prefix: ip("10.9.0.0"),
                len: 16,
                via: ip("192.168.1.1"),
                port: 1
            }
        );

        let e = err(two_ports().route(ip("10.9.0.0"), 16, ip("10.0.0.9")).route(
            ip("10.9.0.0"),
            16,
            ip("192.168.1.2"),
        ));
        assert_eq!(
            e,
            FibError::DuplicateRoute {
                prefix: ip("10.9.0.0"),
                len: 16,
                first: ip("10.0.0.9"),
                second: ip("192.168.1.2")
            }
        );
        // Same address, different lengths: different prefixes, fine.
        two_ports()
            .route(ip("10.9.0.0"), 16, ip("10.0.0.9"))
            .route(ip("10.9.0.0"), 17, ip("10.0.0.9"))
            .build()
            .unwrap();

        let e = err(two_ports().interface(2, ip("10.0.0.1"), 24));
        assert_eq!(
            e,
            FibError::DuplicateAddress {
                addr: ip("10.0.0.1"),
                first: 0,
                second: 2
            }
        );
        let e = err(two_ports().interface(2, ip("10.0.0.7"), 24));
        assert_eq!(
            e,
            FibError::SubnetConflict {
                prefix: ip("10.0.0.0"),
                len: 24,
                first: 0,
                second: 2
            }
        );
        assert!(e.to_string().contains("10.0.0.0/24"), "{e}");
    }

    /// SplitMix64: a small deterministic PRNG, enough to spread test inputs.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn u32(&mut self) -> u32 {
            (self.next() >> 32) as u32
        }

        fn below(&mut self, n: u32) -> u32 {
            (self.next() % u64::from(n)) as u32
        }
    }

    /// A prefix length skewed like a real table: mostly /16–/32, a few short.
    fn random_len(rng: &mut SplitMix64) -> u8 {
        match rng.below(100) {
            0..=2 => rng.below(8) as u8,
            3..=14 => 8 + rng.below(8) as u8,
            _ => 16 + rng.below(17) as u8,
        }
    }

    /// Longest match by linear scan, with the source precedence
    /// (local 2 > connected 1 > static 0) breaking ties of equal length.
    fn naive_lookup(table: &[(u32, u8, u8, Route)], dst: u32) -> Option<Route> {
        table
            .iter()
            .filter(|&&(net, len, _, _)| dst & mask(len) == net)
            .max_by_key(|&&(_, len, rank, _)| (len, rank))
            .map(|&(_, _, _, route)| route)
    }

    #[test]
    fn randomized_against_linear_longest_match() {
        let mut rng = SplitMix64(0x5eed_f1b0);
        let mut b = FibBuilder::new();
        let mut naive: Vec<(u32, u8, u8, Route)> = Vec::new();
        let mut interfaces: Vec<(u32, u8, u16)> = Vec::new();
        for port in 0..8u16 {
            let addr = rng.u32();
            let len = 8 + rng.below(23) as u8; // /8–/30
            b.interface(port, Ipv4Addr::from(addr), len);
            interfaces.push((addr, len, port));
            naive.push((addr, 32, 2, Route::Local { port }));
            naive.push((addr & mask(len), len, 1, Route::Connected { port }));
        }
        let locals: Vec<u32> = interfaces.iter().map(|&(a, _, _)| a).collect();
        let mut seen = std::collections::HashSet::new();
        while naive.len() < 1000 {
            let len = random_len(&mut rng);
            let net = rng.u32() & mask(len);
            if !seen.insert((net, len)) {
                continue;
            }
            let (iaddr, ilen, _) = interfaces[rng.below(8) as usize];
            let next_hop = (iaddr & mask(ilen)) | (rng.u32() & !mask(ilen));
            if locals.contains(&next_hop) {
                continue;
            }
            b.route(Ipv4Addr::from(net), len, Ipv4Addr::from(next_hop));
            // Resolve the port independently: longest interface subnet.
            let port = interfaces
                .iter()
                .filter(|&&(a, l, _)| next_hop & mask(l) == a & mask(l))
                .max_by_key(|&&(_, l, _)| l)
                .map(|&(_, _, p)| p)
                .unwrap();
            let next_hop = Ipv4Addr::from(next_hop);
            naive.push((net, len, 0, Route::Via { port, next_hop }));
        }
        let fib = b.build().unwrap();

        let mut distinct: Vec<(u32, u8)> = naive.iter().map(|&(n, l, _, _)| (n, l)).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(fib.len(), distinct.len());
        for (prefix, len, route) in fib.routes() {
            let winner = naive
                .iter()
                .filter(|&&(n, l, _, _)| (n, l) == (u32::from(prefix), len))
                .max_by_key(|&&(_, _, rank, _)| rank)
                .map(|&(_, _, _, r)| r);
            assert_eq!(winner, Some(route), "{prefix}/{len}");
        }

        for i in 0..100_000u32 {
            let dst = match i % 4 {
                // Anywhere.
                0 => rng.u32(),
                // Inside a random prefix.
                1 => {
                    let (net, len, _, _) = naive[rng.below(naive.len() as u32) as usize];
                    net | (rng.u32() & !mask(len))
                }
                // First address of a prefix, or the one before it.
                2 => {
                    let (net, _, _, _) = naive[rng.below(naive.len() as u32) as usize];
                    net.wrapping_sub(rng.below(2))
                }
                // Last address of a prefix, or the one after it.
                _ => {
                    let (net, len, _, _) = naive[rng.below(naive.len() as u32) as usize];
                    (net | !mask(len)).wrapping_add(rng.below(2))
                }
            };
            assert_eq!(
                fib.lookup(Ipv4Addr::from(dst)),
                naive_lookup(&naive, dst),
                "{}",
                Ipv4Addr::from(dst)
            );
        }
    }
}
