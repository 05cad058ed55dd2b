//! Load and validate zerohop's YAML configuration.
//!
//! This is the one place that reads the config, so that every mistake a user can make in
//! it is caught here, before DPDK starts. A typo that reaches `rte_eal_init` or a port
//! probe costs a half-initialised EAL, pinned hugepages and a log line that names no
//! YAML key; caught here it costs one line that names the file, the YAML path
//! (`dataplane.ports[1].device`) and what to change.
//!
//! Loading has three steps, each with its own kind of error:
//! 1. read the file ([`ConfigError::Read`]);
//! 2. parse the YAML into the structs below ([`ConfigError::Parse`],
//!    [`ConfigError::UnknownSection`], [`ConfigError::Unsupported`]); `serde_yaml_ng`
//!    already prefixes its messages with the YAML path and ends them with the line and
//!    column, so no path-tracking wrapper is needed;
//! 3. check what a type cannot express: ranges, uniqueness, references between keys
//!    ([`ConfigError::Invalid`], which carries a [`Problem`]).
//!
//! [`Config::check_cores`] is separate because it depends on the machine, not on the
//! file: the runtime calls it with the CPUs this process may run on.
//!
//! The format (external tests rely on these keys):
//!
//! ```yaml
//! dataplane:
//!   cores: [1]                 # one worker per listed CPU
//!   hugepages: auto            # auto | on | off (or true / false)
//!   eal_args: ["--no-pci"]     # appended to zerohop's own EAL arguments
//!   burst: 32                  # rx burst size = vector size
//!   rx_descriptors: 1024
//!   tx_descriptors: 1024
//!   mbufs: 16383               # leave out to let the runtime size the pool
//!   trace_packets: 0           # per worker, trace the first N packets through the graph
//!   ports:
//!     - name: left
//!       device: "net_af_packet0,iface=zhl0"
//!     - name: right
//!       device: "0000:3b:00.0"
//!     - name: down                 # an L3 port: it has an address
//!       device: "net_af_packet1,iface=zhd0"
//!       address: 10.90.0.2/24
//!       mtu: 1500                  # 68 to 9000
//!     - name: up
//!       device: "net_af_packet2,iface=zhu0"
//!       address: 10.91.0.2/24
//!   xconnect: [[left, right]]      # L2 ports only
//!   routes:                        # static routes; connected subnets need none
//!     - { prefix: 10.92.0.0/16, via: 10.91.0.1 }
//!   acl:                           # per rx port, first match wins, no match = deny
//!     - { port: down, action: deny, protocol: tcp, dst_port: 23 }
//!     - { port: down, action: permit, src: 10.90.0.0/24, dst_port: "1000-2000", protocol: udp }
//!   ip4:                           # optional policy switches, defaults shown
//!     icmp_unreachable: true       # ICMP unreachable for no route / no local service
//!     ip_options: accept           # accept | drop
//!     icmp_errors_per_second: 1000 # per worker
//!     neighbour_timeout_s: 300
//! ```
//!
//! A port is L2 (cross-connected) or L3 (routed): an `address` makes it L3. ACLs apply
//! to L3 ports only, and only to ports that have rules; on such a port a packet that
//! matches no rule is denied, as in VPP's and most routers' ACLs.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize};

/// Default rx burst size, and so the default vector size of the graph.
///
/// 32 is DPDK's customary burst: large enough to amortise the per-call cost of
/// `rte_eth_rx_burst` and of each graph node, small enough to stay in L1.
pub const DEFAULT_BURST: usize = 32;
/// Largest burst: VPP's frame size. Vectors are sized for it, so a larger burst would
/// have to be split anyway, and its latency would grow without a gain in throughput.
pub const MAX_BURST: usize = 256;
/// Default size of each rx and tx descriptor ring.
pub const DEFAULT_DESCRIPTORS: u16 = 1024;
/// Smallest ring most poll-mode drivers accept; fewer descriptors drop packets on any
/// scheduling hiccup.
pub const MIN_DESCRIPTORS: u16 = 64;
/// Largest ring common NICs (ixgbe, i40e, ice) accept; larger rings only add latency
/// and cache misses.
pub const MAX_DESCRIPTORS: u16 = 4096;
/// Smallest mbuf pool accepted when `mbufs` is given: below this one default rx ring
/// (1024 descriptors) cannot even be filled, and the port fails to start.
pub const MIN_MBUFS: u32 = 1024;
/// Longest port name: names appear in logs, counters and the admin API, and this keeps
/// them readable there.
pub const MAX_PORT_NAME_LEN: usize = 32;
/// Default port MTU: Ethernet's.
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest MTU: every IPv4 host must accept 68-byte datagrams (RFC 791).
pub const MIN_MTU: u16 = 68;
/// Largest MTU: the usual jumbo frame, which common NICs and DPDK mbufs handle.
pub const MAX_MTU: u16 = 9000;
/// Most packets each worker traces: traces are kept in memory until exit, so an
/// unbounded count would grow without limit on a busy port.
pub const MAX_TRACE_PACKETS: usize = 100_000;

/// IP protocol numbers (IANA) that ACL rules may name.
const PROTOCOL_NAMES: &[(&str, u8)] = &[("icmp", 1), ("tcp", 6), ("udp", 17)];
const PROTOCOL_TCP: u8 = 6;
const PROTOCOL_UDP: u8 = 17;

/// Top-level sections that Envoy-style configs carry and that zerohop will read once its
/// L4/L7 layers exist. They get their own error, so that a user who copies an Envoy
/// config learns that the section is not supported yet rather than misspelt.
const FUTURE_SECTIONS: &[&str] = &["static_resources", "admin"];

/// Keys of [`DataplaneConfig`]; one of them at the top level means a lost indent.
const DATAPLANE_KEYS: &[&str] = &[
    "cores",
    "hugepages",
    "eal_args",
    "burst",
    "rx_descriptors",
    "tx_descriptors",
    "mbufs",
    "trace_packets",
    "ports",
    "xconnect",
    "routes",
    "acl",
    "ip4",
];

/// A whole zerohop config file.
///
/// Only `dataplane` exists so far; the L4/L7 sections will sit beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The DPDK side: cores, memory, ports and how packets flow between them.
    pub dataplane: DataplaneConfig,
}

/// The DPDK side of zerohop: which CPUs poll, which devices they poll, and the sizes of
/// the rings and pools between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// CPUs to run one poll-mode worker each on. Workers busy-poll, so each needs a CPU
    /// of its own: a duplicate would put two workers on one CPU and halve both.
    pub cores: Vec<usize>,
    /// Whether DPDK memory comes from hugepages.
    #[serde(default)]
    pub hugepages: Hugepages,
    /// Extra EAL arguments, appended after the ones zerohop derives from this config;
    /// an escape hatch for DPDK options this config does not model (`--no-pci`,
    /// `--log-level`, ...).
    #[serde(default)]
    pub eal_args: Vec<String>,
    /// Packets per `rte_eth_rx_burst` call, which is also the graph's vector size.
    #[serde(default = "default_burst")]
    pub burst: usize,
    /// Descriptors in each rx ring.
    #[serde(default = "default_descriptors")]
    pub rx_descriptors: u16,
    /// Descriptors in each tx ring.
    #[serde(default = "default_descriptors")]
    pub tx_descriptors: u16,
    /// Size of the mbuf pool; `None` lets the runtime compute it from the ports, rings
    /// and cores, which is what almost every deployment wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbufs: Option<u32>,
    /// Per worker, trace the first this many packets through the graph (printed at
    /// exit); 0 turns tracing off.
    #[serde(default)]
    pub trace_packets: usize,
    /// The devices zerohop drives, each under a name the rest of the config uses.
    pub ports: Vec<PortConfig>,
    /// Pairs of ports cross-connected at L2: every frame received on one is sent out of
    /// the other. The simplest forwarding there is, and the baseline every other feature
    /// is measured against.
    #[serde(default)]
    pub xconnect: Vec<[String; 2]>,
    /// Static IPv4 routes, beside the connected subnets of the L3 ports.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// ACL rules, in order; see [`DataplaneConfig::acl_for_port`].
    #[serde(default)]
    pub acl: Vec<AclRuleConfig>,
    /// How the IPv4 layer treats what it cannot deliver or does not expect.
    #[serde(default)]
    pub ip4: Ip4Options,
}

/// The IPv4 layer's policy switches (VPP's "by policy" knobs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ip4Options {
    /// Answer packets with no route, or for a local UDP port or protocol nobody
    /// serves, with ICMP unreachable (as a router does); `false` drops them silently
    /// (counted either way).
    #[serde(default = "default_true")]
    pub icmp_unreachable: bool,
    /// Whether IPv4 packets carrying options are forwarded.
    #[serde(default)]
    pub ip_options: IpOptionsPolicy,
    /// ICMP errors (unreachable, time exceeded, fragmentation needed) each worker
    /// sends per second at most.
    #[serde(default = "default_icmp_rate")]
    pub icmp_errors_per_second: u32,
    /// Seconds a learned neighbour stays valid without being refreshed.
    #[serde(default = "default_neighbour_timeout")]
    pub neighbour_timeout_s: u32,
}

/// What to do with IPv4 packets that carry options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpOptionsPolicy {
    /// Forward them (counted as `options-accepted`).
    #[default]
    Accept,
    /// Drop them (counted as `options-rejected`).
    Drop,
}

/// Default ICMP error rate per worker, as Linux's `icmp_msgs_per_sec`.
pub const DEFAULT_ICMP_RATE: u32 = 1000;
/// Largest ICMP error rate accepted.
pub const MAX_ICMP_RATE: u32 = 1_000_000;
/// Default neighbour lifetime in seconds.
pub const DEFAULT_NEIGHBOUR_TIMEOUT_S: u32 = 300;
/// Longest neighbour lifetime accepted (a day).
pub const MAX_NEIGHBOUR_TIMEOUT_S: u32 = 86_400;

impl Default for Ip4Options {
    fn default() -> Self {
        Self {
            icmp_unreachable: true,
            ip_options: IpOptionsPolicy::Accept,
            icmp_errors_per_second: DEFAULT_ICMP_RATE,
            neighbour_timeout_s: DEFAULT_NEIGHBOUR_TIMEOUT_S,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_icmp_rate() -> u32 {
    DEFAULT_ICMP_RATE
}

fn default_neighbour_timeout() -> u32 {
    DEFAULT_NEIGHBOUR_TIMEOUT_S
}

fn default_burst() -> usize {
    DEFAULT_BURST
}

fn default_mtu() -> u16 {
    DEFAULT_MTU
}

fn default_descriptors() -> u16 {
    DEFAULT_DESCRIPTORS
}

/// Where DPDK gets its memory.
///
/// Hugepages are what makes DPDK fast (few TLB misses, physical addresses for DMA), but a
/// laptop, a container or CI often has none; af_packet and tap ports work without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hugepages {
    /// Use hugepages where the runtime finds them, plain memory otherwise.
    #[default]
    Auto,
    /// Require hugepages: fail at start-up rather than run slowly without them.
    On,
    /// Never use hugepages (EAL `--no-huge`); enough for af_packet, tap and tests.
    Off,
}

/// Accepts `auto`, `on` and `off`, and also YAML's `true` and `false`.
///
/// YAML 1.1 read `on`/`off` as booleans, YAML 1.2 (which `serde_yaml_ng` follows) reads
/// them as strings; users write both, so both mean the same here.
impl<'de> Deserialize<'de> for Hugepages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HugepagesVisitor;

        impl Visitor<'_> for HugepagesVisitor {
            type Value = Hugepages;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`auto`, `on` or `off` (or `true` / `false`)")
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Hugepages, E> {
                Ok(if value { Hugepages::On } else { Hugepages::Off })
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Hugepages, E> {
                match value {
                    "auto" => Ok(Hugepages::Auto),
                    "on" => Ok(Hugepages::On),
                    "off" => Ok(Hugepages::Off),
                    _ => Err(E::invalid_value(Unexpected::Str(value), &self)),
                }
            }
        }

        deserializer.deserialize_any(HugepagesVisitor)
    }
}

/// One device zerohop drives, and the name the config refers to it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Name used by `xconnect` (and later by listeners), in logs and in counters.
    pub name: String,
    /// A DPDK virtual device spec (`net_tap0,iface=zh0`) or a PCI address
    /// (`0000:3b:00.0`); see [`Device`].
    pub device: String,
    /// The port's own address and, by its length, the subnet connected to it. A port
    /// with an address is an L3 (routed) port; one without is an L2 port for `xconnect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Cidr>,
    /// Largest IP packet the port sends, in bytes, not counting the Ethernet header.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

impl PortConfig {
    /// Return the device this port opens.
    ///
    /// Exact for a config that passed validation (every [`Config`] from
    /// [`Config::load`] or [`Config::from_yaml`]). For an unvalidated port whose device
    /// is neither form, this does not panic: it returns a `Vdev` split at the first
    /// comma, which DPDK will then reject with its own error.
    pub fn device(&self) -> Device<'_> {
        Device::parse(&self.device).unwrap_or_else(|_| {
            let (name, args) = self
                .device
                .split_once(',')
                .unwrap_or((self.device.as_str(), ""));
            Device::Vdev { name, args }
        })
    }
}

/// A port's device, split the way DPDK wants it.
///
/// Virtual devices are created with `--vdev name,args` and found again by `name`;
/// physical NICs are allowed with `-a addr` and found by their PCI address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device<'a> {
    /// A virtual device such as `net_tap0` or `net_af_packet1`, with its driver
    /// arguments (`iface=zh0`, possibly empty).
    Vdev { name: &'a str, args: &'a str },
    /// A PCI device, as written in the config (`0000:3b:00.0` or `3b:00.0`).
    Pci { addr: &'a str },
}

impl<'a> Device<'a> {
    /// Parse a device spec: `net_<driver><N>[,args]` or a PCI address.
    ///
    /// # Errors
    /// [`Problem::BadDevice`] with the reason, when `spec` is neither form.
    pub fn parse(spec: &'a str) -> Result<Self, Problem> {
        let bad = |reason: String| Problem::BadDevice {
            device: spec.to_owned(),
            reason,
        };
        if spec.is_empty() {
            return Err(bad("it is empty".to_owned()));
        }
        if spec.chars().any(char::is_whitespace) {
            return Err(bad(
                "it contains whitespace, which DPDK does not strip".to_owned()
            ));
        }
        let (name, args) = spec.split_once(',').unwrap_or((spec, ""));
        if let Some(rest) = name.strip_prefix("net_") {
            let driver = rest.trim_end_matches(|c: char| c.is_ascii_digit());
            if driver.is_empty() {
                return Err(bad(format!("`{name}` names no driver after `net_`")));
            }
            if !driver
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(bad(format!(
                    "driver name `{driver}` may contain only letters, digits and `_`"
                )));
            }
            if driver.len() == rest.len() {
                return Err(bad(format!(
                    "`{name}` has no instance number; DPDK needs one, e.g. `{name}0`"
                )));
            }
            return Ok(Device::Vdev { name, args });
        }
        if pci_canonical(name).is_some() {
            if spec.contains(',') {
                return Err(bad(
                    "PCI device arguments are not supported yet; remove everything from the comma on"
                        .to_owned(),
                ));
            }
            return Ok(Device::Pci { addr: spec });
        }
        if name.contains(':') {
            return Err(bad(format!(
                "`{name}` is not a valid PCI address (device must be 00-1f, function 0-7)"
            )));
        }
        Err(bad(
            "it is neither a DPDK virtual device nor a PCI address".to_owned()
        ))
    }

    /// Return the identity DPDK knows this device by, so that two spellings of one
    /// device (`3b:00.0` and `0000:3B:00.0`) compare equal.
    fn identity(&self) -> String {
        match *self {
            Device::Vdev { name, .. } => name.to_owned(),
            Device::Pci { addr } => pci_canonical(addr).unwrap_or_else(|| addr.to_owned()),
        }
    }
}

/// Return `addr` as `dddd:bb:dd.f` in lower case if it is a PCI address in the form
/// `DDDD:BB:DD.F` or `BB:DD.F` (hex), else `None`.
fn pci_canonical(addr: &str) -> Option<String> {
    fn hex(s: &str, len: usize) -> Option<u32> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            u32::from_str_radix(s, 16).ok()
        } else {
            None
        }
    }
    let parts: Vec<&str> = addr.split(':').collect();
    let (domain, bus, rest) = match parts.as_slice() {
        [bus, rest] => (0, *bus, *rest),
        [domain, bus, rest] => (hex(domain, 4)?, *bus, *rest),
        _ => return None,
    };
    let bus = hex(bus, 2)?;
    let (dev, func) = rest.split_once('.')?;
    let dev = hex(dev, 2)?;
    let func = hex(func, 1)?;
    // PCI gives a bus 32 devices of 8 functions each.
    if dev > 0x1f || func > 7 {
        return None;
    }
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

/// An IPv4 address with a prefix length: `10.90.0.2/24`.
///
/// One type serves both uses the config has for it: a port's address (where `addr` is
/// the port's own host address and `len` sizes the connected subnet) and a prefix to
/// match (routes, ACLs), where validation requires the host bits to be zero. Written and
/// read as `a.b.c.d/len`.
///
/// A value built in code may have `len` over 32; the helpers then treat it as 32 and
/// validation rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address, host bits included.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub len: u8,
}

impl Ipv4Cidr {
    /// Return the netmask: `len` one bits, then zeros (`255.255.255.0` for /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// Return the network address: `addr` with the host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// Return the broadcast address: `addr` with the host bits set.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Return whether `ip` lies in this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Return whether this prefix and `other` share any address (one contains the
    /// other, since prefixes nest).
    fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// Return this prefix with the host bits cleared.
    fn subnet(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: self.network(),
            len: self.len.min(32),
        }
    }

    fn mask(&self) -> u32 {
        match self.len {
            0 => 0,
            len => u32::MAX << (32 - u32::from(len.min(32))),
        }
    }

    /// Parse `a.b.c.d/len`, or also a bare `a.b.c.d` (as /32) where `host_ok`.
    fn parse(text: &str, host_ok: bool) -> Result<Ipv4Cidr, Problem> {
        let bad = |reason: String| Problem::BadPrefix {
            prefix: text.to_owned(),
            reason,
        };
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr = Ipv4Addr::from_str(addr)
            .map_err(|_| bad(format!("`{addr}` is not an IPv4 address; {}", ADDRESS_FORM)))?;
        let len = match len {
            None if host_ok => 32,
            None => {
                return Err(bad(format!(
                    "it has no prefix length; write address/length, e.g. {addr}/24"
                )))
            }
            Some(len) => {
                // u8::from_str would also take `+24`; only plain digits are a length.
                let value =
                    if (1..=2).contains(&len.len()) && len.bytes().all(|b| b.is_ascii_digit()) {
                        len.parse::<u8>().ok()
                    } else {
                        None
                    };
                match value {
                    Some(value) if value <= 32 => value,
                    _ => {
                        return Err(bad(format!(
                            "prefix length `{len}` is not a number from 0 to 32"
                        )))
                    }
                }
            }
        };
        Ok(Ipv4Cidr { addr, len })
    }
}

/// How an IPv4 address is written, for messages.
const ADDRESS_FORM: &str =
    "write four numbers from 0 to 255 separated by dots, without leading zeros";

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Parses `a.b.c.d/len`; the length is required.
impl FromStr for Ipv4Cidr {
    type Err = Problem;

    fn from_str(text: &str) -> Result<Self, Problem> {
        Ipv4Cidr::parse(text, false)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Reads `a.b.c.d/len`; the length is required, because a port address or a route
/// without one is more likely a forgotten `/24` than a meant `/32`.
impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CidrVisitor { host_ok: false })
    }
}

struct CidrVisitor {
    host_ok: bool,
}

impl Visitor<'_> for CidrVisitor {
    type Value = Ipv4Cidr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host_ok {
            f.write_str("an IPv4 prefix such as 10.0.0.0/8, or an address such as 10.0.0.1")
        } else {
            f.write_str("an IPv4 prefix such as 10.0.0.1/24")
        }
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Ipv4Cidr, E> {
        Ipv4Cidr::parse(value, self.host_ok).map_err(E::custom)
    }
}

/// An ACL `src` / `dst`: a prefix, or a bare address meaning that one host (/32).
struct MatchPrefix(Ipv4Cidr);

impl<'de> Deserialize<'de> for MatchPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(CidrVisitor { host_ok: true })
            .map(MatchPrefix)
    }
}

fn deserialize_match_prefix<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Ipv4Cidr>, D::Error> {
    Ok(Option::<MatchPrefix>::deserialize(deserializer)?.map(|m| m.0))
}

/// Read an IPv4 address, with a message that quotes it (serde's own says only "invalid
/// IPv4 address syntax").
fn deserialize_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Ipv4Addr, D::Error> {
    struct AddressVisitor;

    impl Visitor<'_> for AddressVisitor {
        type Value = Ipv4Addr;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IPv4 address such as 10.0.0.1")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Ipv4Addr, E> {
            Ipv4Addr::from_str(value).map_err(|_| {
                let reason = match value.split_once('/') {
                    Some((addr, len)) if Ipv4Addr::from_str(addr).is_ok() => {
                        format!("a next hop is one address, not a prefix; remove `/{len}`")
                    }
                    _ => ADDRESS_FORM.to_owned(),
                };
                E::custom(Problem::BadAddress {
                    address: value.to_owned(),
                    reason,
                })
            })
        }
    }

    deserializer.deserialize_str(AddressVisitor)
}

/// A static route: packets to `prefix` go to the neighbour `via`, which must be on the
/// subnet of one of the L3 ports; that port is the one they leave by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destinations this route covers; host bits must be zero. `0.0.0.0/0` is the
    /// default route.
    pub prefix: Ipv4Cidr,
    /// The next hop: a neighbour's address on a connected subnet.
    #[serde(deserialize_with = "deserialize_address")]
    pub via: Ipv4Addr,
}

/// What an ACL rule does with a packet it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    /// Let the packet on into the router.
    Permit,
    /// Drop the packet (counted).
    Deny,
}

/// An inclusive range of TCP or UDP ports; a single port is a range of one.
///
/// Written as a number (`23`) or a string (`"1000-2000"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// Lowest port matched.
    pub first: u16,
    /// Highest port matched, `>= first` after validation.
    pub last: u16,
}

impl PortRange {
    /// Return whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            serializer.serialize_u16(self.first)
        } else {
            serializer.collect_str(self)
        }
    }
}

/// Accepts a port number, or a string holding one or `first-last`; a reversed range
/// parses, and validation reports it with its YAML path.
impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortRangeVisitor;

        impl Visitor<'_> for PortRangeVisitor {
            type Value = PortRange;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number from 0 to 65535, or a range such as \"1000-2000\"")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<PortRange, E> {
                let port = u16::try_from(value)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))?;
                Ok(PortRange {
                    first: port,
                    last: port,
                })
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<PortRange, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(value), &self)),
                }
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<PortRange, E> {
                let port = |text: &str| -> Option<u16> {
                    let text = text.trim();
                    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                        text.parse().ok()
                    } else {
                        None
                    }
                };
                let range = match value.split_once('-') {
                    Some((first, last)) => port(first).zip(port(last)),
                    None => port(value).map(|p| (p, p)),
                };
                match range {
                    Some((first, last)) => Ok(PortRange { first, last }),
                    None => Err(E::invalid_value(Unexpected::Str(value), &self)),
                }
            }
        }

        deserializer.deserialize_any(PortRangeVisitor)
    }
}

/// An IP protocol: `tcp`, `udp`, `icmp` or a number from 0 to 255.
struct Protocol(u8);

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProtocolVisitor;

        impl Visitor<'_> for ProtocolVisitor {
            type Value = Protocol;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`tcp`, `udp`, `icmp` or an IP protocol number from 0 to 255")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Protocol, E> {
                u8::try_from(value)
                    .map(Protocol)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Protocol, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(value), &self)),
                }
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Protocol, E> {
                let number = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                    value.parse().ok()
                } else {
                    PROTOCOL_NAMES
                        .iter()
                        .find(|(name, _)| *name == value)
                        .map(|&(_, number)| number)
                };
                number
                    .map(Protocol)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(value), &self))
            }
        }

        deserializer.deserialize_any(ProtocolVisitor)
    }
}

fn deserialize_protocol<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u8>, D::Error> {
    Ok(Option::<Protocol>::deserialize(deserializer)?.map(|p| p.0))
}

/// Write a protocol by name where it has one, so that a serialized config reads as
/// the user wrote it.
fn serialize_protocol<S: serde::Serializer>(
    protocol: &Option<u8>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match protocol.and_then(protocol_name) {
        Some(name) => serializer.serialize_str(name),
        None => protocol.serialize(serializer),
    }
}

fn protocol_name(number: u8) -> Option<&'static str> {
    PROTOCOL_NAMES
        .iter()
        .find(|&&(_, n)| n == number)
        .map(|&(name, _)| name)
}

/// One ACL rule: a packet received on `port` that matches every field given gets
/// `action`. A field left out matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleConfig {
    /// The rx port the rule applies to; it must be an L3 port.
    pub port: String,
    /// What to do with a matching packet.
    pub action: AclAction,
    /// IP protocol number; the config also takes `tcp`, `udp` and `icmp`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_protocol",
        serialize_with = "serialize_protocol"
    )]
    pub protocol: Option<u8>,
    /// Source prefix; a bare address in the config means that one host.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_match_prefix"
    )]
    pub src: Option<Ipv4Cidr>,
    /// Destination prefix; a bare address in the config means that one host.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_match_prefix"
    )]
    pub dst: Option<Ipv4Cidr>,
    /// TCP or UDP source ports; needs `protocol` tcp or udp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<PortRange>,
    /// TCP or UDP destination ports; needs `protocol` tcp or udp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<PortRange>,
}

/// What is wrong with a value that parsed but cannot work; [`ConfigError::Invalid`]
/// adds the file and the YAML path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("no cores listed; list at least one CPU to run a worker on, e.g. `cores: [1]`")]
    NoCores,
    #[error(
        "CPU {cpu} is listed twice (first at {first}); each core runs one busy-polling \
         worker, so list it once"
    )]
    DuplicateCore { cpu: usize, first: String },
    #[error(
        "{value} is out of range; use {min} to {max}, or leave it out for the default {default}"
    )]
    OutOfRange {
        value: u64,
        min: u64,
        max: u64,
        default: u64,
    },
    #[error(
        "{value} mbufs are too few to fill even one rx ring; use at least {MIN_MBUFS}, or \
         leave `mbufs` out to let zerohop size the pool"
    )]
    TooFewMbufs { value: u32 },
    #[error(
        "no ports listed; add at least one, e.g. `- {{ name: left, device: \"net_tap0,iface=zh0\" }}`"
    )]
    NoPorts,
    #[error(
        "invalid port name `{name}`; use 1 to {MAX_PORT_NAME_LEN} characters from A-Z, a-z, \
         0-9, `_` and `-`"
    )]
    BadPortName { name: String },
    #[error("duplicate port name `{name}` (first at {first}); give each port its own name")]
    DuplicatePortName { name: String, first: String },
    #[error(
        "invalid device `{device}`: {reason}. Accepted forms: a DPDK virtual device \
         `net_<driver><N>[,<key>=<value>,...]` such as `net_tap0,iface=zh0` or \
         `net_af_packet0,iface=eth1`, or a PCI address `DDDD:BB:DD.F` or `BB:DD.F` (hex) \
         such as `0000:3b:00.0`"
    )]
    BadDevice { device: String, reason: String },
    #[error("device `{device}` is already used by {first}; {hint}")]
    DuplicateDevice {
        device: String,
        first: String,
        hint: String,
    },
    #[error("unknown port `{name}` (ports are: {})", .known.join(", "))]
    UnknownPort { name: String, known: Vec<String> },
    #[error("pairs port `{name}` with itself; an xconnect pair needs two different ports")]
    SelfXconnect { name: String },
    #[error("port `{name}` is already cross-connected at {first}; a port can be in only one pair")]
    PortInTwoPairs { name: String, first: String },
    #[error("invalid IPv4 prefix \"{prefix}\": {reason}")]
    BadPrefix { prefix: String, reason: String },
    #[error("invalid IPv4 address \"{address}\": {reason}")]
    BadAddress { address: String, reason: String },
    #[error(
        "{address} is the {kind} address of {subnet}, not a host address; use one from \
         {first} to {last}"
    )]
    NotAHost {
        address: Ipv4Addr,
        kind: &'static str,
        subnet: Ipv4Cidr,
        first: Ipv4Addr,
        last: Ipv4Addr,
    },
    #[error(
        "subnet {subnet} overlaps {other_subnet}, the subnet of port `{other}` \
         (dataplane.ports[{other_index}].address); give each L3 port a subnet of its own, \
         so that every address is reached through one port"
    )]
    OverlappingSubnets {
        subnet: Ipv4Cidr,
        other: String,
        other_subnet: Ipv4Cidr,
        /// Index of `other` in `dataplane.ports`.
        other_index: usize,
    },
    #[error(
        "port `{name}` has an address ({at}), which makes it an L3 port, and L3 ports are \
         routed, not cross-connected; remove its address or this pair"
    )]
    L3PortInXconnect { name: String, at: String },
    #[error("{prefix} has host bits set; a prefix ends in zero bits, did you mean {network}?")]
    HostBitsSet { prefix: Ipv4Cidr, network: Ipv4Cidr },
    #[error(
        "{prefix} is the connected subnet of port `{name}` ({at}), which zerohop already \
         reaches directly; remove this route"
    )]
    RouteToConnected {
        prefix: Ipv4Cidr,
        name: String,
        at: String,
    },
    #[error(
        "a route to {prefix} is already at {first}; a prefix has one next hop, so remove \
         one of them"
    )]
    DuplicateRoute { prefix: Ipv4Cidr, first: String },
    #[error(
        "next hop {via} is not on any connected subnet ({}); a next hop must be a \
         neighbour on the subnet of an L3 port",
        connected_list(.connected)
    )]
    NextHopNotConnected {
        via: Ipv4Addr,
        /// Each L3 port's subnet and name.
        connected: Vec<(Ipv4Cidr, String)>,
    },
    #[error(
        "next hop {via} is the address of port `{name}` ({at}), zerohop itself; use the \
         address of a neighbour on that subnet"
    )]
    NextHopIsOwnAddress {
        via: Ipv4Addr,
        name: String,
        at: String,
    },
    #[error(
        "port `{name}` has no address, and ACLs apply to L3 ports; give port `{name}` an \
         address ({at}.address) or remove this rule"
    )]
    AclOnL2Port { name: String, at: String },
    #[error(
        "port range {first}-{last} is empty: the first port is above the last; write \
         \"{last}-{first}\""
    )]
    ReversedPortRange { first: u16, last: u16 },
    #[error(
        "`{key}` needs `protocol: tcp` or `protocol: udp` (ports exist only in TCP and UDP \
         headers), but this rule has {protocol}"
    )]
    PortsNeedTcpOrUdp { key: &'static str, protocol: String },
}

/// Format connected subnets as `10.90.0.0/24 (port down), ...`, or say there are none.
fn connected_list(connected: &[(Ipv4Cidr, String)]) -> String {
    if connected.is_empty() {
        return "no port has an `address`".to_owned();
    }
    let list: Vec<String> = connected
        .iter()
        .map(|(subnet, name)| format!("{subnet} on port `{name}`"))
        .collect();
    format!("connected: {}", list.join(", "))
}

/// Everything that can go wrong loading a config.
///
/// `Display` is the whole user-facing message: file, YAML path, what is wrong and what
/// to do. No variant has a `source()`, so that a caller printing the chain (anyhow's
/// `{:#}`) does not print the OS or YAML error a second time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The text is not YAML, or does not fit the schema (unknown key, wrong type,
    /// missing key). `message` starts with the YAML path and ends with the line and
    /// column where `serde_yaml_ng` can tell them.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// A top-level section zerohop will support but does not yet.
    #[error(
        "{origin}: {key}{}: not supported yet: zerohop configures only the `dataplane` \
         section so far (its L4/L7 layers are still being built); remove `{key}` from \
         this file",
        at_line(*.line)
    )]
    Unsupported {
        origin: String,
        key: String,
        line: Option<usize>,
    },
    /// A top-level key zerohop does not know.
    #[error("{origin}: unknown top-level key `{key}`{}, expected `dataplane`{}", at_line(*.line), misplaced_hint(.key))]
    UnknownSection {
        origin: String,
        key: String,
        line: Option<usize>,
    },
    /// The YAML parsed but a value cannot work.
    #[error("{origin}: {path}: {problem}")]
    Invalid {
        origin: String,
        path: String,
        problem: Problem,
    },
    /// A configured core is outside this process's CPU affinity (from
    /// [`Config::check_cores`], which does not know the file name).
    #[error(
        "{path}: CPU {cpu} is not available to this process (available: {}); list only \
         available CPUs, or widen the process's CPU affinity (taskset, cgroup cpuset)",
        cpu_list(.available)
    )]
    CoreUnavailable {
        path: String,
        cpu: usize,
        available: Vec<usize>,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

fn misplaced_hint(key: &str) -> &'static str {
    if DATAPLANE_KEYS.contains(&key) {
        " (this key belongs under `dataplane:`; indent it)"
    } else {
        " (check the spelling)"
    }
}

/// Format CPUs as `0, 1, 4-7`: sorted, runs of three or more collapsed, so that a
/// 128-CPU machine gives a short line.
fn cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    // Strictly ascending from here, so the subtraction below cannot underflow.
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = i;
        while end + 1 < sorted.len() && sorted[end + 1] - sorted[end] == 1 {
            end += 1;
        }
        match end - i {
            0 => parts.push(start.to_string()),
            1 => parts.push(format!("{start}, {}", sorted[end])),
            _ => parts.push(format!("{start}-{}", sorted[end])),
        }
        i = end + 1;
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

impl Config {
    /// Read, parse and validate the config file at `path`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] if the file cannot be read; otherwise as
    /// [`Config::from_yaml`], with the path as origin.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_yaml(&text, &path.display().to_string())
    }

    /// Parse and validate config text; `origin` (usually the file name) starts every
    /// error message.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for YAML that does not parse or fit the schema,
    /// [`ConfigError::UnknownSection`] / [`ConfigError::Unsupported`] for a top-level key
    /// other than `dataplane`, [`ConfigError::Invalid`] for a value that cannot work.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let parse_error = |error: serde_yaml_ng::Error| ConfigError::Parse {
            origin: origin.to_owned(),
            message: error.to_string(),
        };
        // A first pass over the generic tree looks at the top-level keys, so that an
        // unknown section gets a message of its own instead of serde's generic
        // "unknown field". Configs are small; parsing twice costs nothing.
        let tree: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        let top = match &tree {
            serde_yaml_ng::Value::Mapping(top) => top,
            serde_yaml_ng::Value::Null => {
                return Err(ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: "the config is empty; it needs a `dataplane:` section with \
                              `cores` and `ports` (see configs/*.yaml for examples)"
                        .to_owned(),
                })
            }
            other => {
                return Err(ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: format!(
                        "the top level is {}; it must be a mapping with a `dataplane:` key",
                        describe(other)
                    ),
                })
            }
        };
        for key in top.keys() {
            let key = match key {
                serde_yaml_ng::Value::String(key) => key.clone(),
                other => serde_yaml_ng::to_string(other)
                    .map(|s| s.trim_end().to_owned())
                    .unwrap_or_else(|_| format!("{other:?}")),
            };
            if key == "dataplane" {
                continue;
            }
            let line = zerohop_l7::config::top_level_key_line(text, &key);
            let origin = origin.to_owned();
            return Err(if FUTURE_SECTIONS.contains(&key.as_str()) {
                ConfigError::Unsupported { origin, key, line }
            } else {
                ConfigError::UnknownSection { origin, key, line }
            });
        }
        let config: Config = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Check what the types cannot: ranges, uniqueness, and that `xconnect` names
    /// existing ports. [`Config::load`] and [`Config::from_yaml`] call this; call it
    /// yourself for a config built in code.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first problem in document order.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.dataplane
            .validate()
            .map_err(|(path, problem)| ConfigError::Invalid {
                origin: origin.to_owned(),
                path,
                problem,
            })
    }

    /// Check that every configured core is one this process may run on.
    ///
    /// Separate from validation because it depends on the machine: `available` is the
    /// process's CPU affinity (a container or `taskset` narrows it). A worker pinned
    /// outside it would fail only once DPDK is up.
    ///
    /// # Errors
    /// [`ConfigError::CoreUnavailable`] for the first core not in `available`.
    pub fn check_cores(&self, available: &[usize]) -> Result<(), ConfigError> {
        for (i, &cpu) in self.dataplane.cores.iter().enumerate() {
            if !available.contains(&cpu) {
                return Err(ConfigError::CoreUnavailable {
                    path: format!("dataplane.cores[{i}]"),
                    cpu,
                    available: available.to_vec(),
                });
            }
        }
        Ok(())
    }
}

/// Name a YAML value's kind for a message.
fn describe(value: &serde_yaml_ng::Value) -> &'static str {
    match value {
        serde_yaml_ng::Value::Null => "empty",
        serde_yaml_ng::Value::Bool(_) => "a boolean",
        serde_yaml_ng::Value::Number(_) => "a number",
        serde_yaml_ng::Value::String(_) => "a string",
        serde_yaml_ng::Value::Sequence(_) => "a list",
        serde_yaml_ng::Value::Mapping(_) => "a mapping",
        serde_yaml_ng::Value::Tagged(_) => "a tagged value",
    }
}

impl DataplaneConfig {
    /// Return the index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|port| port.name == name)
    }

    /// For each port index, return `Some(peer port index)` if the port is in an
    /// `xconnect` pair, `None` otherwise.
    ///
    /// Pairs naming unknown ports are skipped, so this never panics, even on an
    /// unvalidated config.
    pub fn xconnect_peers(&self) -> Vec<Option<usize>> {
        let mut peers = vec![None; self.ports.len()];
        for [a, b] in &self.xconnect {
            if let (Some(a), Some(b)) = (self.port_index(a), self.port_index(b)) {
                peers[a] = Some(b);
                peers[b] = Some(a);
            }
        }
        peers
    }

    /// Ports with an address (L3), in port order: (port index, address).
    pub fn l3_ports(&self) -> Vec<(usize, Ipv4Cidr)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, port)| port.address.map(|address| (i, address)))
            .collect()
    }

    /// ACL rules of one port (by port index), in order.
    ///
    /// An empty list means the port has no ACL and lets everything in; a non-empty one
    /// ends in an implicit deny. Rules naming unknown ports are skipped, so this never
    /// panics, even on an unvalidated config.
    pub fn acl_for_port(&self, port: usize) -> Vec<&AclRuleConfig> {
        let Some(name) = self.ports.get(port).map(|p| p.name.as_str()) else {
            return Vec::new();
        };
        self.acl.iter().filter(|rule| rule.port == name).collect()
    }

    /// Return the first problem, in document order, with its YAML path.
    fn validate(&self) -> Result<(), (String, Problem)> {
        self.validate_cores()?;
        check_range(
            "dataplane.burst",
            u64::try_from(self.burst).unwrap_or(u64::MAX),
            1,
            MAX_BURST as u64,
            DEFAULT_BURST as u64,
        )?;
        for (key, value) in [
            ("dataplane.rx_descriptors", self.rx_descriptors),
            ("dataplane.tx_descriptors", self.tx_descriptors),
        ] {
            check_range(
                key,
                value.into(),
                MIN_DESCRIPTORS.into(),
                MAX_DESCRIPTORS.into(),
                DEFAULT_DESCRIPTORS.into(),
            )?;
        }
        if let Some(value) = self.mbufs {
            if value < MIN_MBUFS {
                return Err(("dataplane.mbufs".to_owned(), Problem::TooFewMbufs { value }));
            }
        }
        check_range(
            "dataplane.trace_packets",
            u64::try_from(self.trace_packets).unwrap_or(u64::MAX),
            0,
            MAX_TRACE_PACKETS as u64,
            0,
        )?;
        check_range(
            "dataplane.ip4.icmp_errors_per_second",
            self.ip4.icmp_errors_per_second.into(),
            1,
            MAX_ICMP_RATE.into(),
            DEFAULT_ICMP_RATE.into(),
        )?;
        check_range(
            "dataplane.ip4.neighbour_timeout_s",
            self.ip4.neighbour_timeout_s.into(),
            1,
            MAX_NEIGHBOUR_TIMEOUT_S.into(),
            DEFAULT_NEIGHBOUR_TIMEOUT_S.into(),
        )?;
        self.validate_ports()?;
        self.validate_xconnect()?;
        self.validate_routes()?;
        self.validate_acl()
    }

    fn validate_cores(&self) -> Result<(), (String, Problem)> {
        if self.cores.is_empty() {
            return Err(("dataplane.cores".to_owned(), Problem::NoCores));
        }
        let mut seen: HashMap<usize, usize> = HashMap::new();
        for (i, &cpu) in self.cores.iter().enumerate() {
            if let Some(first) = seen.insert(cpu, i) {
                return Err((
                    format!("dataplane.cores[{i}]"),
                    Problem::DuplicateCore {
                        cpu,
                        first: format!("dataplane.cores[{first}]"),
                    },
                ));
            }
        }
        Ok(())
    }

    fn validate_ports(&self) -> Result<(), (String, Problem)> {
        if self.ports.is_empty() {
            return Err(("dataplane.ports".to_owned(), Problem::NoPorts));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut devices: HashMap<String, usize> = HashMap::new();
        for (i, port) in self.ports.iter().enumerate() {
            let path = format!("dataplane.ports[{i}]");
            if !valid_port_name(&port.name) {
                return Err((
                    format!("{path}.name"),
                    Problem::BadPortName {
                        name: port.name.clone(),
                    },
                ));
            }
            if let Some(first) = names.insert(&port.name, i) {
                return Err((
                    format!("{path}.name"),
                    Problem::DuplicatePortName {
                        name: port.name.clone(),
                        first: format!("dataplane.ports[{first}]"),
                    },
                ));
            }
            let device = Device::parse(&port.device)
                .map_err(|problem| (format!("{path}.device"), problem))?;
            let identity = device.identity();
            if let Some(&first) = devices.get(&identity) {
                let hint = match device {
                    Device::Vdev { name, .. } => {
                        let driver = name.trim_end_matches(|c: char| c.is_ascii_digit());
                        format!(
                            "DPDK creates each virtual device once, so give each port its own \
                             instance number ({driver}0, {driver}1, ...)"
                        )
                    }
                    Device::Pci { .. } => {
                        "a PCI device can back only one port; remove one of them".to_owned()
                    }
                };
                return Err((
                    format!("{path}.device"),
                    Problem::DuplicateDevice {
                        device: identity,
                        first: format!("dataplane.ports[{first}]"),
                        hint,
                    },
                ));
            }
            devices.insert(identity, i);
            check_range(
                &format!("{path}.mtu"),
                port.mtu.into(),
                MIN_MTU.into(),
                MAX_MTU.into(),
                DEFAULT_MTU.into(),
            )?;
            if let Some(address) = port.address {
                self.validate_port_address(i, address)?;
            }
        }
        Ok(())
    }

    /// Check port `i`'s address: a host address, on a subnet no earlier port has.
    fn validate_port_address(&self, i: usize, address: Ipv4Cidr) -> Result<(), (String, Problem)> {
        let path = format!("dataplane.ports[{i}].address");
        check_prefix_len(&path, address)?;
        check_host(&path, address.addr, address)?;
        for (j, other) in self.ports.iter().enumerate().take(i) {
            if let Some(other_address) = other.address {
                if address.overlaps(&other_address) {
                    return Err((
                        path,
                        Problem::OverlappingSubnets {
                            subnet: address.subnet(),
                            other: other.name.clone(),
                            other_subnet: other_address.subnet(),
                            other_index: j,
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_routes(&self) -> Result<(), (String, Problem)> {
        let l3 = self.l3_ports();
        let mut prefixes: HashMap<Ipv4Cidr, usize> = HashMap::new();
        for (i, route) in self.routes.iter().enumerate() {
            let path = format!("dataplane.routes[{i}].prefix");
            check_prefix_len(&path, route.prefix)?;
            check_no_host_bits(&path, route.prefix)?;
            if let Some(&(port, _)) = l3
                .iter()
                .find(|(_, address)| address.subnet() == route.prefix)
            {
                return Err((
                    path,
                    Problem::RouteToConnected {
                        prefix: route.prefix,
                        name: self.ports[port].name.clone(),
                        at: format!("dataplane.ports[{port}].address"),
                    },
                ));
            }
            if let Some(first) = prefixes.insert(route.prefix, i) {
                return Err((
                    path,
                    Problem::DuplicateRoute {
                        prefix: route.prefix,
                        first: format!("dataplane.routes[{first}]"),
                    },
                ));
            }
            let path = format!("dataplane.routes[{i}].via");
            if let Some(&(port, _)) = l3.iter().find(|(_, address)| address.addr == route.via) {
                return Err((
                    path,
                    Problem::NextHopIsOwnAddress {
                        via: route.via,
                        name: self.ports[port].name.clone(),
                        at: format!("dataplane.ports[{port}].address"),
                    },
                ));
            }
            match l3.iter().find(|(_, address)| address.contains(route.via)) {
                Some(&(_, address)) => check_host(&path, route.via, address)?,
                None => {
                    return Err((
                        path,
                        Problem::NextHopNotConnected {
                            via: route.via,
                            connected: l3
                                .iter()
                                .map(|&(port, address)| {
                                    (address.subnet(), self.ports[port].name.clone())
                                })
                                .collect(),
                        },
                    ))
                }
            }
        }
        Ok(())
    }

    fn validate_acl(&self) -> Result<(), (String, Problem)> {
        for (i, rule) in self.acl.iter().enumerate() {
            let path = format!("dataplane.acl[{i}]");
            let port = self.port_index(&rule.port).ok_or_else(|| {
                (
                    format!("{path}.port"),
                    Problem::UnknownPort {
                        name: rule.port.clone(),
                        known: self.ports.iter().map(|p| p.name.clone()).collect(),
                    },
                )
            })?;
            if self.ports[port].address.is_none() {
                return Err((
                    format!("{path}.port"),
                    Problem::AclOnL2Port {
                        name: rule.port.clone(),
                        at: format!("dataplane.ports[{port}]"),
                    },
                ));
            }
            for (key, prefix) in [("src", rule.src), ("dst", rule.dst)] {
                if let Some(prefix) = prefix {
                    let path = format!("{path}.{key}");
                    check_prefix_len(&path, prefix)?;
                    check_no_host_bits(&path, prefix)?;
                }
            }
            for (key, range) in [("src_port", rule.src_port), ("dst_port", rule.dst_port)] {
                let Some(range) = range else { continue };
                let path = format!("{path}.{key}");
                if range.first > range.last {
                    return Err((
                        path,
                        Problem::ReversedPortRange {
                            first: range.first,
                            last: range.last,
                        },
                    ));
                }
                if !matches!(rule.protocol, Some(PROTOCOL_TCP | PROTOCOL_UDP)) {
                    let protocol = match rule.protocol {
                        None => "no `protocol`".to_owned(),
                        Some(number) => match protocol_name(number) {
                            Some(name) => format!("`protocol: {name}`"),
                            None => format!("`protocol: {number}`"),
                        },
                    };
                    return Err((path, Problem::PortsNeedTcpOrUdp { key, protocol }));
                }
            }
        }
        Ok(())
    }

    fn validate_xconnect(&self) -> Result<(), (String, Problem)> {
        // Port index -> the pair it was first seen in.
        let mut paired: HashMap<usize, usize> = HashMap::new();
        for (i, pair) in self.xconnect.iter().enumerate() {
            let mut indices = [0; 2];
            for (j, name) in pair.iter().enumerate() {
                indices[j] = self.port_index(name).ok_or_else(|| {
                    (
                        format!("dataplane.xconnect[{i}][{j}]"),
                        Problem::UnknownPort {
                            name: name.clone(),
                            known: self.ports.iter().map(|p| p.name.clone()).collect(),
                        },
                    )
                })?;
            }
            if indices[0] == indices[1] {
                return Err((
                    format!("dataplane.xconnect[{i}]"),
                    Problem::SelfXconnect {
                        name: pair[0].clone(),
                    },
                ));
            }
            for (j, &port) in indices.iter().enumerate() {
                if self.ports[port].address.is_some() {
                    return Err((
                        format!("dataplane.xconnect[{i}][{j}]"),
                        Problem::L3PortInXconnect {
                            name: pair[j].clone(),
                            at: format!("dataplane.ports[{port}].address"),
                        },
                    ));
                }
                if let Some(first) = paired.insert(port, i) {
                    return Err((
                        format!("dataplane.xconnect[{i}][{j}]"),
                        Problem::PortInTwoPairs {
                            name: pair[j].clone(),
                            first: format!("dataplane.xconnect[{first}]"),
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_range(
    path: &str,
    value: u64,
    min: u64,
    max: u64,
    default: u64,
) -> Result<(), (String, Problem)> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((
            path.to_owned(),
            Problem::OutOfRange {
                value,
                min,
                max,
                default,
            },
        ))
    }
}

/// Reject a prefix length over 32, which only a config built in code can have.
fn check_prefix_len(path: &str, prefix: Ipv4Cidr) -> Result<(), (String, Problem)> {
    if prefix.len <= 32 {
        Ok(())
    } else {
        Err((
            path.to_owned(),
            Problem::BadPrefix {
                prefix: prefix.to_string(),
                reason: format!(
                    "prefix length `{}` is not a number from 0 to 32",
                    prefix.len
                ),
            },
        ))
    }
}

/// Reject a prefix to match that has host bits set (`10.92.1.0/16`): it is ambiguous
/// whether the length or the address is the typo, so the user decides.
fn check_no_host_bits(path: &str, prefix: Ipv4Cidr) -> Result<(), (String, Problem)> {
    if prefix.addr == prefix.network() {
        Ok(())
    } else {
        Err((
            path.to_owned(),
            Problem::HostBitsSet {
                prefix,
                network: prefix.subnet(),
            },
        ))
    }
}

/// Reject `address` if it is the network or broadcast address of `subnet`, which no
/// host can have; /31 (RFC 3021) and /32 subnets have no such addresses.
fn check_host(path: &str, address: Ipv4Addr, subnet: Ipv4Cidr) -> Result<(), (String, Problem)> {
    if subnet.len > 30 {
        return Ok(());
    }
    let kind = if address == subnet.network() {
        "network"
    } else if address == subnet.broadcast() {
        "broadcast"
    } else {
        return Ok(());
    };
    Err((
        path.to_owned(),
        Problem::NotAHost {
            address,
            kind,
            subnet: subnet.subnet(),
            first: Ipv4Addr::from(u32::from(subnet.network()) + 1),
            last: Ipv4Addr::from(u32::from(subnet.broadcast()) - 1),
        },
    ))
}

/// Port names go into logs, counter names and admin API paths, so they are kept to
/// characters that need no quoting anywhere.
fn valid_port_name(name: &str) -> bool {
    (1..=MAX_PORT_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "/x/y.yaml";

    /// A valid config with two tap ports cross-connected; tests edit it into invalid ones.
    const BASE: &str = "\
dataplane:
  cores: [1]
  ports:
    - name: left
      device: \"net_tap0,iface=zhl0\"
    - name: right
      device: \"net_tap1,iface=zhr0\"
  xconnect: [[left, right]]
";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, ORIGIN)
    }

    fn error(text: &str) -> ConfigError {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?} from:\n{text}"),
            Err(e) => e,
        }
    }

    /// The message of the error for `text`, which must start with the origin and contain
    /// every one of `parts`.
    fn message(text: &str, parts: &[&str]) -> String {
        let msg = error(text).to_string();
        assert!(msg.starts_with(&format!("{ORIGIN}: ")), "{msg}");
        for part in parts {
            assert!(msg.contains(part), "`{part}` not in: {msg}");
        }
        msg
    }

    #[test]
    fn ip4_options_default_parse_and_check_ranges() {
        let dp = parse(&with_ports("", &[("p", "net_null0")]))
            .unwrap()
            .dataplane;
        assert_eq!(dp.ip4, Ip4Options::default());
        assert!(dp.ip4.icmp_unreachable);
        let text = with_ports(
            "  ip4: { icmp_unreachable: false, ip_options: drop, icmp_errors_per_second: 50, neighbour_timeout_s: 30 }\n",
            &[("p", "net_null0")],
        );
        let ip4 = parse(&text).unwrap().dataplane.ip4;
        assert!(!ip4.icmp_unreachable);
        assert_eq!(ip4.ip_options, IpOptionsPolicy::Drop);
        assert_eq!(
            (ip4.icmp_errors_per_second, ip4.neighbour_timeout_s),
            (50, 30)
        );
        for (extra, path) in [
            (
                "  ip4: { icmp_errors_per_second: 0 }\n",
                "dataplane.ip4.icmp_errors_per_second",
            ),
            (
                "  ip4: { neighbour_timeout_s: 86401 }\n",
                "dataplane.ip4.neighbour_timeout_s",
            ),
        ] {
            let (p, _) = invalid(&with_ports(extra, &[("p", "net_null0")]));
            assert_eq!(p, path);
        }
        let msg = error(&with_ports(
            "  ip4: { ip_options: maybe }\n",
            &[("p", "net_null0")],
        ))
        .to_string();
        assert!(msg.contains("dataplane.ip4.ip_options"), "{msg}");
        let msg = error(&with_ports("  ip4: { icmp: 1 }\n", &[("p", "net_null0")])).to_string();
        assert!(
            msg.contains("dataplane.ip4") && msg.contains("icmp"),
            "{msg}"
        );
    }

    fn with_ports(extra: &str, ports: &[(&str, &str)]) -> String {
        let mut text = format!("dataplane:\n  cores: [1]\n{extra}  ports:\n");
        for (name, device) in ports {
            text.push_str(&format!("    - name: {name}\n      device: \"{device}\"\n"));
        }
        text
    }

    fn invalid(text: &str) -> (String, Problem) {
        match error(text) {
            ConfigError::Invalid { path, problem, .. } => (path, problem),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let config = parse(&with_ports("", &[("p0", "net_null0")])).unwrap();
        let dp = &config.dataplane;
        assert_eq!(dp.cores, vec![1]);
        assert_eq!(dp.hugepages, Hugepages::Auto);
        assert!(dp.eal_args.is_empty());
        assert_eq!(dp.burst, 32);
        assert_eq!(dp.rx_descriptors, 1024);
        assert_eq!(dp.tx_descriptors, 1024);
        assert_eq!(dp.mbufs, None);
        assert!(dp.xconnect.is_empty());
        assert_eq!(dp.xconnect_peers(), vec![None]);
    }

    #[test]
    fn every_key() {
        let text = "\
dataplane:
  cores: [1, 3]
  hugepages: off
  eal_args: [\"--no-pci\", \"--log-level=8\"]
  burst: 64
  rx_descriptors: 512
  tx_descriptors: 2048
  mbufs: 16383
  ports:
    - name: left
      device: \"net_af_packet0,iface=zhl0\"
    - name: right
      device: \"net_tap0,iface=zhr0\"
    - name: nic
      device: \"0000:3b:00.0\"
  xconnect: [[left, right]]
";
        let config = parse(text).unwrap();
        let dp = &config.dataplane;
        assert_eq!(dp.cores, vec![1, 3]);
        assert_eq!(dp.hugepages, Hugepages::Off);
        assert_eq!(dp.eal_args, vec!["--no-pci", "--log-level=8"]);
        assert_eq!(dp.burst, 64);
        assert_eq!(dp.rx_descriptors, 512);
        assert_eq!(dp.tx_descriptors, 2048);
        assert_eq!(dp.mbufs, Some(16383));
        assert_eq!(
            dp.ports[0].device(),
            Device::Vdev {
                name: "net_af_packet0",
                args: "iface=zhl0"
            }
        );
        assert_eq!(
            dp.ports[2].device(),
            Device::Pci {
                addr: "0000:3b:00.0"
            }
        );
        assert_eq!(dp.port_index("right"), Some(1));
        assert_eq!(dp.port_index("nope"), None);
        assert_eq!(dp.xconnect_peers(), vec![Some(1), Some(0), None]);
    }

    #[test]
    fn serialize_round_trips() {
        for mbufs in ["", "  mbufs: 4095\n"] {
            let config = parse(&with_ports(mbufs, &[("a", "net_tap0"), ("b", "3b:00.0")])).unwrap();
            let yaml = serde_yaml_ng::to_string(&config).unwrap();
            assert_eq!(parse(&yaml).unwrap(), config, "{yaml}");
        }
    }

    #[test]
    fn hugepages_forms() {
        for (text, want) in [
            ("auto", Hugepages::Auto),
            ("on", Hugepages::On),
            ("off", Hugepages::Off),
            ("true", Hugepages::On),
            ("false", Hugepages::Off),
            ("\"on\"", Hugepages::On),
        ] {
            let config = parse(&with_ports(
                &format!("  hugepages: {text}\n"),
                &[("p", "net_null0")],
            ))
            .unwrap();
            assert_eq!(config.dataplane.hugepages, want, "{text}");
        }
        for bad in ["yes", "1", "On", "[on]"] {
            message(
                &with_ports(&format!("  hugepages: {bad}\n"), &[("p", "net_null0")]),
                &["dataplane.hugepages: ", "`auto`, `on` or `off`", "line 3"],
            );
        }
    }

    #[test]
    fn missing_file() {
        let path = std::env::temp_dir().join("zerohop-no-such-dir/no-such-config.yaml");
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read config file {}: No such file or directory (os error 2)",
                path.display()
            )
        );
    }

    #[test]
    fn unknown_key_names_path_and_line() {
        let text = BASE.replace("device: \"net_tap0", "devcie: \"net_tap0");
        let msg = message(
            &text,
            &["dataplane.ports[0]: unknown field `devcie`, expected one of `name`, `device`, `address`, `mtu` at line 5 column 7"],
        );
        assert_eq!(
            msg,
            "/x/y.yaml: dataplane.ports[0]: unknown field `devcie`, expected one of `name`, \
             `device`, `address`, `mtu` at line 5 column 7"
        );
        message(
            &BASE.replace("  cores:", "  cpus: [2]\n  cores:"),
            &["dataplane: unknown field `cpus`", "line 2"],
        );
    }

    #[test]
    fn wrong_types_name_path() {
        message(
            &BASE.replace("[1]", "[1, x]"),
            &["dataplane.cores[1]: invalid type"],
        );
        message(
            &BASE.replace("[1]", "1"),
            &["dataplane.cores: invalid type"],
        );
        message(
            &with_ports("  burst: -1\n", &[("p", "net_null0")]),
            &["dataplane.burst: invalid type", "line 3"],
        );
        message(
            &with_ports("  rx_descriptors: 70000\n", &[("p", "net_null0")]),
            &["dataplane.rx_descriptors: invalid value: integer `70000`"],
        );
        message(
            &BASE.replace("[[left, right]]", "[[left]]"),
            &["dataplane.xconnect[0]: invalid length 1, expected an array of length 2"],
        );
        message(
            &BASE.replace("  ports:", "  mbufs: lots\n  ports:"),
            &["dataplane.mbufs: invalid type"],
        );
        message(
            "dataplane:\n  cores: [1]\n",
            &["dataplane: missing field `ports`"],
        );
        message(
            "dataplane: 3\n",
            &["invalid type: integer `3`, expected struct DataplaneConfig"],
        );
    }

    #[test]
    fn yaml_syntax_error_names_line() {
        message("dataplane:\n  cores: [1\n", &["line 3", "flow sequence"]);
        message("dataplane:\n\tcores: [1]\n", &["line 2"]);
    }

    #[test]
    fn top_level_sections() {
        for key in ["static_resources", "admin"] {
            let text = format!("{BASE}{key}:\n  address: x\n");
            let err = error(&text);
            assert!(matches!(err, ConfigError::Unsupported { .. }), "{err:?}");
            message(&text, &[&format!("{key} at line 9: not supported yet")]);
        }
        let text = format!("listeners: []\n{BASE}");
        let err = error(&text);
        assert!(matches!(err, ConfigError::UnknownSection { .. }), "{err:?}");
        message(
            &text,
            &["unknown top-level key `listeners` at line 1, expected `dataplane`"],
        );
        // A lost indent puts a dataplane key at the top level.
        message(
            &format!("{BASE}burst: 64\n"),
            &["unknown top-level key `burst` at line 9", "indent it"],
        );
        message("{dataplane: {}, 7: x}", &["unknown top-level key `7`"]);
    }

    #[test]
    fn empty_or_not_a_mapping() {
        for text in ["", "# nothing\n", "---\n"] {
            message(text, &["the config is empty", "dataplane:"]);
        }
        message(
            "- dataplane\n",
            &["the top level is a list", "`dataplane:`"],
        );
        message("dataplane\n", &["the top level is a string"]);
    }

    #[test]
    fn xconnect_unknown_port() {
        let msg = message(&BASE.replace("[[left, right]]", "[[left, rigth]]"), &[]);
        assert_eq!(
            msg,
            "/x/y.yaml: dataplane.xconnect[0][1]: unknown port `rigth` (ports are: left, right)"
        );
    }

    #[test]
    fn xconnect_pair_with_itself() {
        let (path, problem) = invalid(&BASE.replace("[[left, right]]", "[[left, left]]"));
        assert_eq!(path, "dataplane.xconnect[0]");
        assert!(matches!(problem, Problem::SelfXconnect { .. }));
        message(
            &BASE.replace("[[left, right]]", "[[left, left]]"),
            &["dataplane.xconnect[0]: pairs port `left` with itself"],
        );
    }

    #[test]
    fn xconnect_port_in_two_pairs() {
        let text = with_ports(
            "  xconnect: [[a, b], [c, a]]\n",
            &[("a", "net_tap0"), ("b", "net_tap1"), ("c", "net_tap2")],
        );
        message(
            &text,
            &["dataplane.xconnect[1][1]: port `a` is already cross-connected at dataplane.xconnect[0]"],
        );
    }

    #[test]
    fn duplicate_port_name() {
        let text = with_ports(
            "",
            &[
                ("left", "net_tap0"),
                ("right", "net_tap1"),
                ("left", "net_tap2"),
            ],
        );
        let msg = message(&text, &[]);
        assert!(
            msg.starts_with(
                "/x/y.yaml: dataplane.ports[2].name: duplicate port name `left` (first at dataplane.ports[0])"
            ),
            "{msg}"
        );
    }

    #[test]
    fn bad_port_names() {
        let long = "x".repeat(33);
        for name in ["\"\"", "a.b", "\"a b\"", "café", long.as_str()] {
            let text = with_ports("", &[("ok", "net_tap0"), (name, "net_tap1")]);
            message(
                &text,
                &[
                    "dataplane.ports[1].name: invalid port name",
                    "A-Z, a-z, 0-9",
                ],
            );
        }
        let ok = "x".repeat(32);
        parse(&with_ports(
            "",
            &[(ok.as_str(), "net_tap0"), ("A_b-9", "net_tap1")],
        ))
        .unwrap();
    }

    #[test]
    fn duplicate_devices() {
        let text = with_ports("", &[("a", "net_tap0,iface=x"), ("b", "net_tap0,iface=y")]);
        message(
            &text,
            &["dataplane.ports[1].device: device `net_tap0` is already used by dataplane.ports[0]", "net_tap1"],
        );
        // Two spellings of one PCI address are one device.
        let text = with_ports("", &[("a", "0000:3b:00.0"), ("b", "3B:00.0")]);
        message(
            &text,
            &["dataplane.ports[1].device: device `0000:3b:00.0` is already used by dataplane.ports[0]"],
        );
        // Different instances of one driver are different devices.
        parse(&with_ports(
            "",
            &[("a", "net_tap0"), ("b", "net_tap1"), ("c", "3b:00.1")],
        ))
        .unwrap();
    }

    #[test]
    fn bad_devices() {
        for (device, reason) in [
            ("", "it is empty"),
            (
                "eth0",
                "it is neither a DPDK virtual device nor a PCI address",
            ),
            ("net_tap", "has no instance number"),
            ("net_0", "names no driver"),
            ("net_t.p0", "may contain only letters"),
            ("net_tap0, iface=x", "whitespace"),
            ("0000:3b:00", "not a valid PCI address"),
            ("0000:3b:20.0", "not a valid PCI address"),
            ("0000:3b:00.8", "not a valid PCI address"),
            ("00000:3b:00.0", "not a valid PCI address"),
            ("3b:0.0", "not a valid PCI address"),
            (
                "3b:00.0,foo=1",
                "PCI device arguments are not supported yet",
            ),
        ] {
            let text = with_ports("", &[("a", device)]);
            message(
                &text,
                &[
                    &format!("dataplane.ports[0].device: invalid device `{device}`: "),
                    reason,
                    "net_<driver><N>",
                    "DDDD:BB:DD.F",
                ],
            );
        }
    }

    #[test]
    fn device_forms() {
        for (spec, want) in [
            (
                "net_tap0",
                Device::Vdev {
                    name: "net_tap0",
                    args: "",
                },
            ),
            (
                "net_af_packet12,iface=zhl0,qpairs=1",
                Device::Vdev {
                    name: "net_af_packet12",
                    args: "iface=zhl0,qpairs=1",
                },
            ),
            (
                "0000:3b:00.0",
                Device::Pci {
                    addr: "0000:3b:00.0",
                },
            ),
            ("AF:1f.7", Device::Pci { addr: "AF:1f.7" }),
        ] {
            assert_eq!(Device::parse(spec), Ok(want), "{spec}");
        }
        // An unvalidated port still gives an answer rather than a panic.
        let port = PortConfig {
            name: "p".into(),
            device: "bogus,x=1".into(),
            address: None,
            mtu: DEFAULT_MTU,
        };
        assert_eq!(
            port.device(),
            Device::Vdev {
                name: "bogus",
                args: "x=1"
            }
        );
    }

    #[test]
    fn cores() {
        let (path, problem) = invalid(&BASE.replace("[1]", "[]"));
        assert_eq!(
            (path.as_str(), problem),
            ("dataplane.cores", Problem::NoCores)
        );
        message(
            &BASE.replace("[1]", "[]"),
            &["dataplane.cores: no cores listed"],
        );
        message(
            &BASE.replace("[1]", "[1, 2, 1]"),
            &["dataplane.cores[2]: CPU 1 is listed twice (first at dataplane.cores[0])"],
        );
    }

    #[test]
    fn no_ports() {
        message(
            "dataplane:\n  cores: [1]\n  ports: []\n",
            &["dataplane.ports: no ports listed"],
        );
    }

    #[test]
    fn ranges() {
        let cases: [(&str, &[u64], &[u64]); 4] = [
            ("burst", &[0, 257, 100_000], &[1, 32, 256]),
            ("rx_descriptors", &[0, 63, 4097, 65535], &[64, 4096]),
            ("tx_descriptors", &[63, 4097], &[64, 4096]),
            ("mbufs", &[0, 1023], &[1024, 4_294_967_295]),
        ];
        for (key, bad, good) in cases {
            for value in bad {
                let text = with_ports(&format!("  {key}: {value}\n"), &[("p", "net_null0")]);
                message(&text, &[&format!("dataplane.{key}: {value} ")]);
            }
            for value in good {
                let text = with_ports(&format!("  {key}: {value}\n"), &[("p", "net_null0")]);
                parse(&text).unwrap();
            }
        }
        message(
            &with_ports("  burst: 0\n", &[("p", "net_null0")]),
            &["dataplane.burst: 0 is out of range; use 1 to 256, or leave it out for the default 32"],
        );
    }

    #[test]
    fn check_cores() {
        let config = parse(&BASE.replace("[1]", "[1, 7]")).unwrap();
        config.check_cores(&[0, 1, 7]).unwrap();
        let err = config.check_cores(&[0, 1]).unwrap_err();
        assert!(err.to_string().starts_with(
            "dataplane.cores[1]: CPU 7 is not available to this process (available: 0, 1)"
        ));
        let err = parse(&BASE.replace("[1]", "[7]"))
            .unwrap()
            .check_cores(&[1, 0])
            .unwrap_err();
        assert!(err.to_string().starts_with(
            "dataplane.cores[0]: CPU 7 is not available to this process (available: 0, 1)"
        ));
        let err = config.check_cores(&[]).unwrap_err();
        assert!(err.to_string().contains("(available: none)"), "{err}");
    }

    #[test]
    fn cpu_lists_collapse_runs() {
        assert_eq!(cpu_list(&[]), "none");
        assert_eq!(cpu_list(&[3]), "3");
        assert_eq!(cpu_list(&[1, 0]), "0, 1");
        assert_eq!(cpu_list(&[0, 1, 2, 3, 8, 10, 11, 12, 2]), "0-3, 8, 10-12");
        assert_eq!(cpu_list(&(0..128).collect::<Vec<_>>()), "0-127");
    }

    #[test]
    fn shipped_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                if let Err(e) = Config::load(&path) {
                    panic!("{e}");
                }
                loaded += 1;
            }
        }
        assert!(loaded >= 2, "only {loaded} configs in {}", dir.display());
    }

    /// Cut and corrupt a valid config at every byte: each result must be Ok or Err,
    /// never a panic or a stack overflow.
    #[test]
    fn never_panics() {
        let full = format!("{BASE}  burst: 8\n  mbufs: 2048\n  hugepages: on\n");
        for end in 0..=full.len() {
            let _ = parse(&full[..end]);
        }
        for i in 0..full.len() {
            for replacement in ["", "\t", ":", "[", "-", "'", "&a", "*a", "!!", "0"] {
                let mut text = full.clone();
                text.replace_range(i..=i, replacement);
                let _ = parse(&text);
            }
        }
        for text in [
            "[".repeat(100_000),
            "{".repeat(100_000),
            "- ".repeat(10_000),
            "\u{0}\u{1}\u{feff}".to_owned(),
            "dataplane: &a [*a]".to_owned(),
            "dataplane:\n  cores: [18446744073709551616]\n".to_owned(),
            "? [a]\n: b\n".to_owned(),
            "a: 1\n---\nb: 2\n".to_owned(),
        ] {
            let _ = parse(&text);
        }
    }

    /// A valid L3 config: two routed ports, one L2 port, a route and an ACL; tests edit
    /// it into invalid ones.
    const L3: &str = "\
dataplane:
  cores: [1]
  ports:
    - name: down
      device: \"net_af_packet0,iface=zhd0\"
      address: 10.90.0.2/24
    - name: up
      device: \"net_af_packet1,iface=zhu0\"
      address: 10.91.0.2/24
      mtu: 9000
    - name: l2
      device: \"net_tap0\"
  routes:
    - { prefix: 10.92.0.0/16, via: 10.91.0.1 }
  acl:
    - { port: down, action: deny, protocol: tcp, dst_port: 23 }
    - { port: down, action: permit }
";

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn l3_parses() {
        let config = parse(L3).unwrap();
        let dp = &config.dataplane;
        assert_eq!(dp.ports[0].address, Some(cidr("10.90.0.2/24")));
        assert_eq!(dp.ports[0].mtu, DEFAULT_MTU);
        assert_eq!(dp.ports[1].mtu, 9000);
        assert_eq!(dp.ports[2].address, None);
        assert_eq!(
            dp.l3_ports(),
            vec![(0, cidr("10.90.0.2/24")), (1, cidr("10.91.0.2/24"))]
        );
        assert_eq!(
            dp.routes,
            vec![RouteConfig {
                prefix: cidr("10.92.0.0/16"),
                via: ip("10.91.0.1"),
            }]
        );
        assert_eq!(dp.trace_packets, 0);
        let down = dp.acl_for_port(0);
        assert_eq!(down.len(), 2);
        assert_eq!(
            *down[0],
            AclRuleConfig {
                port: "down".into(),
                action: AclAction::Deny,
                protocol: Some(6),
                src: None,
                dst: None,
                src_port: None,
                dst_port: Some(PortRange {
                    first: 23,
                    last: 23
                }),
            }
        );
        assert_eq!(down[1].action, AclAction::Permit);
        assert_eq!(down[1].protocol, None);
        assert!(dp.acl_for_port(1).is_empty());
        assert!(dp.acl_for_port(2).is_empty());
        // Out of range on an unvalidated config: empty, not a panic.
        assert!(dp.acl_for_port(99).is_empty());
    }

    #[test]
    fn acl_forms() {
        let text = L3.replace(
            "    - { port: down, action: permit }\n",
            "    - { port: down, action: permit, protocol: udp, src: 10.0.0.0/8, \
             dst: 10.91.0.7, src_port: \"1000-2000\", dst_port: 53 }
    - { port: down, action: deny, protocol: icmp, dst: 0.0.0.0/0 }
    - { port: down, action: deny, protocol: 47, src: 10.1.2.3/32 }
    - { port: up, action: permit, protocol: \"17\", dst_port: 1000-1000 }
    - port: up
      action: deny
      protocol: 0
      dst: 10.90.0.0/24
    - { port: up, action: permit, protocol: tcp, src_port: 0, dst_port: \" 1 - 65535 \" }
",
        );
        let config = parse(&text).unwrap();
        let dp = &config.dataplane;
        let down = dp.acl_for_port(0);
        assert_eq!(down.len(), 4);
        assert_eq!(down[1].protocol, Some(17));
        assert_eq!(down[1].src, Some(cidr("10.0.0.0/8")));
        // A bare address is one host.
        assert_eq!(down[1].dst, Some(cidr("10.91.0.7/32")));
        assert_eq!(
            down[1].src_port,
            Some(PortRange {
                first: 1000,
                last: 2000
            })
        );
        assert!(down[1].src_port.unwrap().contains(1000));
        assert!(down[1].src_port.unwrap().contains(2000));
        assert!(!down[1].src_port.unwrap().contains(2001));
        assert_eq!(
            down[1].dst_port,
            Some(PortRange {
                first: 53,
                last: 53
            })
        );
        assert_eq!(down[2].protocol, Some(1));
        assert_eq!(down[2].dst, Some(cidr("0.0.0.0/0")));
        assert_eq!(down[3].protocol, Some(47));
        let up = dp.acl_for_port(1);
        assert_eq!(up.len(), 3);
        assert_eq!(up[0].protocol, Some(17));
        assert_eq!(
            up[0].dst_port,
            Some(PortRange {
                first: 1000,
                last: 1000
            })
        );
        assert_eq!(up[1].protocol, Some(0));
        assert_eq!(up[1].dst, Some(cidr("10.90.0.0/24")));
        assert_eq!(up[2].src_port, Some(PortRange { first: 0, last: 0 }));
        assert_eq!(
            up[2].dst_port,
            Some(PortRange {
                first: 1,
                last: 65535
            })
        );
        // Serialized and read back, the rules are the same.
        let yaml = serde_yaml_ng::to_string(&config).unwrap();
        assert!(yaml.contains("protocol: udp"), "{yaml}");
        assert!(yaml.contains("src_port: 1000-2000"), "{yaml}");
        assert!(yaml.contains("dst: 10.91.0.7/32"), "{yaml}");
        assert_eq!(parse(&yaml).unwrap(), config, "{yaml}");
    }

    #[test]
    fn l3_defaults() {
        let text = "dataplane:\n  cores: [1]\n  ports:\n    - { name: a, device: net_tap0, address: 10.0.0.1/8 }\n";
        let config = parse(text).unwrap();
        let dp = &config.dataplane;
        assert_eq!(dp.ports[0].mtu, 1500);
        assert!(dp.routes.is_empty());
        assert!(dp.acl.is_empty());
        assert_eq!(dp.trace_packets, 0);
        assert_eq!(dp.l3_ports(), vec![(0, cidr("10.0.0.1/8"))]);
        // An L2-only config has no L3 ports.
        assert!(parse(BASE).unwrap().dataplane.l3_ports().is_empty());
        let text = with_ports("  trace_packets: 100000\n", &[("p", "net_null0")]);
        assert_eq!(parse(&text).unwrap().dataplane.trace_packets, 100_000);
    }

    #[test]
    fn ipv4_cidr() {
        let c = cidr("10.90.3.2/22");
        assert_eq!(c.addr, ip("10.90.3.2"));
        assert_eq!(c.len, 22);
        assert_eq!(c.to_string(), "10.90.3.2/22");
        assert_eq!(c.network(), ip("10.90.0.0"));
        assert_eq!(c.netmask(), ip("255.255.252.0"));
        assert_eq!(c.broadcast(), ip("10.90.3.255"));
        assert!(c.contains(ip("10.90.0.0")));
        assert!(c.contains(ip("10.90.3.255")));
        assert!(!c.contains(ip("10.90.4.0")));
        assert!(!c.contains(ip("10.89.255.255")));
        let all = cidr("0.0.0.0/0");
        assert_eq!(all.netmask(), ip("0.0.0.0"));
        assert!(all.contains(ip("255.255.255.255")));
        let host = cidr("192.0.2.1/32");
        assert_eq!(host.netmask(), ip("255.255.255.255"));
        assert!(host.contains(ip("192.0.2.1")));
        assert!(!host.contains(ip("192.0.2.0")));
        // Out of range in code: treated as /32, never a shift overflow.
        let wide = Ipv4Cidr {
            addr: ip("192.0.2.1"),
            len: 200,
        };
        assert_eq!(wide.netmask(), ip("255.255.255.255"));
        assert!(wide.contains(ip("192.0.2.1")));
        for bad in [
            "10.0.0.1",
            "10.1.2/24",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0.1/+4",
            "10.0.0.1/024",
            "010.0.0.1/8",
            "10.0.0.1 /8",
            "/8",
            "",
        ] {
            assert!(
                matches!(bad.parse::<Ipv4Cidr>(), Err(Problem::BadPrefix { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_port_addresses() {
        for (address, reason) in [
            (
                "10.1.2/24",
                "`10.1.2` is not an IPv4 address; write four numbers",
            ),
            (
                "10.90.0.2",
                "it has no prefix length; write address/length, e.g. 10.90.0.2/24",
            ),
            (
                "10.90.0.2/33",
                "prefix length `33` is not a number from 0 to 32",
            ),
            ("10.90.0.2/x", "prefix length `x`"),
            ("10.90.0.256/24", "`10.90.0.256` is not an IPv4 address"),
        ] {
            let text = L3.replace("10.90.0.2/24", address);
            message(
                &text,
                &[
                    &format!(
                        "dataplane.ports[0].address: invalid IPv4 prefix \"{address}\": {reason}"
                    ),
                    "line 6",
                ],
            );
        }
        message(
            &L3.replace("10.90.0.2/24", "10"),
            &["dataplane.ports[0].address: invalid IPv4 prefix \"10\": `10` is not an IPv4 address"],
        );
    }

    #[test]
    fn port_address_not_a_host() {
        let (path, problem) = invalid(&L3.replace("10.90.0.2/24", "10.90.0.0/24"));
        assert_eq!(path, "dataplane.ports[0].address");
        assert!(matches!(problem, Problem::NotAHost { .. }), "{problem:?}");
        message(
            &L3.replace("10.90.0.2/24", "10.90.0.0/24"),
            &["dataplane.ports[0].address: 10.90.0.0 is the network address of 10.90.0.0/24, not a host address; use one from 10.90.0.1 to 10.90.0.254"],
        );
        message(
            &L3.replace("10.91.0.2/24", "10.91.3.255/22"),
            &["dataplane.ports[1].address: 10.91.3.255 is the broadcast address of 10.91.0.0/22, not a host address; use one from 10.91.0.1 to 10.91.3.254"],
        );
        // /31 (point-to-point) and /32 have no network or broadcast address to avoid.
        for address in [
            "10.90.0.0/31",
            "10.90.0.1/31",
            "10.90.0.0/32",
            "10.90.0.255/32",
        ] {
            parse(&L3.replace("10.90.0.2/24", address)).unwrap();
        }
    }

    #[test]
    fn overlapping_subnets() {
        let text = L3.replace("10.91.0.2/24", "10.90.7.1/16");
        let msg = message(
            &text,
            &["dataplane.ports[1].address: subnet 10.90.0.0/16 overlaps 10.90.0.0/24, the subnet of port `down` (dataplane.ports[0].address)"],
        );
        assert!(
            msg.contains("give each L3 port a subnet of its own"),
            "{msg}"
        );
        message(
            &L3.replace("10.91.0.2/24", "10.90.0.3/32"),
            &["dataplane.ports[1].address: subnet 10.90.0.3/32 overlaps 10.90.0.0/24, the subnet of port `down`"],
        );
        // Adjacent subnets do not overlap.
        parse(
            &L3.replace("10.90.0.2/24", "10.90.0.1/25")
                .replace("10.91.0.2/24", "10.90.0.129/25")
                .replace("via: 10.91.0.1", "via: 10.90.0.130"),
        )
        .unwrap();
    }

    #[test]
    fn l3_port_in_xconnect() {
        let text = format!("{L3}  xconnect: [[l2, up]]\n");
        let (path, problem) = invalid(&text);
        assert_eq!(path, "dataplane.xconnect[0][1]");
        assert!(matches!(problem, Problem::L3PortInXconnect { .. }));
        message(
            &text,
            &["dataplane.xconnect[0][1]: port `up` has an address (dataplane.ports[1].address), which makes it an L3 port", "remove its address or this pair"],
        );
    }

    #[test]
    fn mtu_and_trace_ranges() {
        for bad in [0, 67, 9001, 65535] {
            message(
                &L3.replace("mtu: 9000", &format!("mtu: {bad}")),
                &[&format!("dataplane.ports[1].mtu: {bad} is out of range; use 68 to 9000, or leave it out for the default 1500")],
            );
        }
        for good in [68, 1500, 9000] {
            parse(&L3.replace("mtu: 9000", &format!("mtu: {good}"))).unwrap();
        }
        message(
            &L3.replace("mtu: 9000", "mtu: 70000"),
            &["dataplane.ports[1].mtu: invalid value: integer `70000`"],
        );
        message(
            &with_ports("  trace_packets: 100001\n", &[("p", "net_null0")]),
            &["dataplane.trace_packets: 100001 is out of range; use 0 to 100000, or leave it out for the default 0"],
        );
        message(
            &with_ports("  trace_packets: -1\n", &[("p", "net_null0")]),
            &["dataplane.trace_packets: invalid type"],
        );
    }

    #[test]
    fn route_host_bits() {
        let text = L3.replace("10.92.0.0/16", "10.92.1.0/16");
        let (path, problem) = invalid(&text);
        assert_eq!(path, "dataplane.routes[0].prefix");
        assert!(matches!(problem, Problem::HostBitsSet { .. }));
        message(
            &text,
            &["dataplane.routes[0].prefix: 10.92.1.0/16 has host bits set; a prefix ends in zero bits, did you mean 10.92.0.0/16?"],
        );
        // A default route is fine.
        parse(&L3.replace("10.92.0.0/16", "0.0.0.0/0")).unwrap();
    }

    #[test]
    fn bad_route_strings() {
        message(
            &L3.replace("10.92.0.0/16", "10.92.0.0"),
            &["dataplane.routes[0].prefix: invalid IPv4 prefix \"10.92.0.0\": it has no prefix length", "line 14"],
        );
        message(
            &L3.replace("via: 10.91.0.1", "via: 10.91.0"),
            &["dataplane.routes[0].via: invalid IPv4 address \"10.91.0\": write four numbers from 0 to 255"],
        );
        message(
            &L3.replace("via: 10.91.0.1", "via: 10.91.0.1/24"),
            &["dataplane.routes[0].via: invalid IPv4 address \"10.91.0.1/24\": a next hop is one address, not a prefix; remove `/24`"],
        );
        message(
            &L3.replace("via: 10.91.0.1 }", "via: 10.91.0.1, dev: up }"),
            &["dataplane.routes[0]: unknown field `dev`, expected `prefix` or `via`"],
        );
        message(
            &L3.replace("prefix: 10.92.0.0/16, ", ""),
            &["dataplane.routes[0]: missing field `prefix`"],
        );
    }

    #[test]
    fn route_via_not_connected() {
        let text = L3.replace("via: 10.91.0.1", "via: 10.93.0.1");
        let (path, problem) = invalid(&text);
        assert_eq!(path, "dataplane.routes[0].via");
        assert!(matches!(problem, Problem::NextHopNotConnected { .. }));
        message(
            &text,
            &["dataplane.routes[0].via: next hop 10.93.0.1 is not on any connected subnet (connected: 10.90.0.0/24 on port `down`, 10.91.0.0/24 on port `up`); a next hop must be a neighbour on the subnet of an L3 port"],
        );
        let text = format!("{BASE}  routes: [{{ prefix: 0.0.0.0/0, via: 10.0.0.1 }}]\n");
        message(
            &text,
            &["dataplane.routes[0].via: next hop 10.0.0.1 is not on any connected subnet (no port has an `address`)"],
        );
    }

    #[test]
    fn route_via_own_address() {
        let text = L3.replace("via: 10.91.0.1", "via: 10.91.0.2");
        message(
            &text,
            &["dataplane.routes[0].via: next hop 10.91.0.2 is the address of port `up` (dataplane.ports[1].address), zerohop itself; use the address of a neighbour"],
        );
        // Even on a /32 port, where it is the whole connected subnet.
        let text = L3
            .replace("10.91.0.2/24", "10.91.0.2/32")
            .replace("via: 10.91.0.1", "via: 10.91.0.2");
        message(
            &text,
            &["dataplane.routes[0].via: next hop 10.91.0.2 is the address of port `up`"],
        );
    }

    #[test]
    fn route_via_not_a_host() {
        message(
            &L3.replace("via: 10.91.0.1", "via: 10.91.0.255"),
            &["dataplane.routes[0].via: 10.91.0.255 is the broadcast address of 10.91.0.0/24, not a host address; use one from 10.91.0.1 to 10.91.0.254"],
        );
        message(
            &L3.replace("via: 10.91.0.1", "via: 10.91.0.0"),
            &["dataplane.routes[0].via: 10.91.0.0 is the network address of 10.91.0.0/24"],
        );
    }

    #[test]
    fn duplicate_and_connected_routes() {
        let text = L3.replace(
            "  acl:\n",
            "    - { prefix: 10.93.0.0/16, via: 10.90.0.1 }\n    - { prefix: 10.92.0.0/16, via: 10.90.0.1 }\n  acl:\n",
        );
        let (path, problem) = invalid(&text);
        assert_eq!(path, "dataplane.routes[2].prefix");
        assert!(matches!(problem, Problem::DuplicateRoute { .. }));
        message(
            &text,
            &["dataplane.routes[2].prefix: a route to 10.92.0.0/16 is already at dataplane.routes[0]; a prefix has one next hop"],
        );
        message(
            &L3.replace("10.92.0.0/16", "10.90.0.0/24"),
            &["dataplane.routes[0].prefix: 10.90.0.0/24 is the connected subnet of port `down` (dataplane.ports[0].address), which zerohop already reaches directly; remove this route"],
        );
        // A more specific route inside a connected subnet is allowed (a host behind a
        // neighbour, say).
        parse(&L3.replace("10.92.0.0/16", "10.90.0.128/25")).unwrap();
    }

    #[test]
    fn acl_unknown_port() {
        let text = L3.replace("port: down, action: permit", "port: dwon, action: permit");
        let (path, problem) = invalid(&text);
        assert_eq!(path, "dataplane.acl[1].port");
        assert!(matches!(problem, Problem::UnknownPort { .. }));
        message(
            &text,
            &["dataplane.acl[1].port: unknown port `dwon` (ports are: down, up, l2)"],
        );
    }

    #[test]
    fn acl_on_l2_port() {
        let text = L3.replace("port: down, action: permit", "port: l2, action: permit");
        let (path, problem) = invalid(&text);
        assert_eq!(path, "dataplane.acl[1].port");
        assert!(matches!(problem, Problem::AclOnL2Port { .. }));
        message(
            &text,
            &["dataplane.acl[1].port: port `l2` has no address, and ACLs apply to L3 ports; give port `l2` an address (dataplane.ports[2].address) or remove this rule"],
        );
    }

    #[test]
    fn acl_port_ranges() {
        let text = L3.replace("dst_port: 23", "dst_port: \"2000-1000\"");
        let (path, problem) = invalid(&text);
        assert_eq!(
            (path.as_str(), problem),
            (
                "dataplane.acl[0].dst_port",
                Problem::ReversedPortRange {
                    first: 2000,
                    last: 1000
                }
            )
        );
        message(
            &text,
            &["dataplane.acl[0].dst_port: port range 2000-1000 is empty: the first port is above the last; write \"1000-2000\""],
        );
        for bad in [
            "65536",
            "-1",
            "\"1000-\"",
            "\"-5\"",
            "\"1-2-3\"",
            "x",
            "\"\"",
            "[1, 2]",
            "1.5",
        ] {
            message(
                &L3.replace("dst_port: 23", &format!("dst_port: {bad}")),
                &[
                    "dataplane.acl[0].dst_port: invalid ",
                    "a port number from 0 to 65535, or a range such as \"1000-2000\"",
                ],
            );
        }
    }

    #[test]
    fn acl_ports_need_tcp_or_udp() {
        let text = L3.replace("protocol: tcp, dst_port: 23", "dst_port: 23");
        let (path, problem) = invalid(&text);
        assert_eq!(path, "dataplane.acl[0].dst_port");
        assert!(matches!(problem, Problem::PortsNeedTcpOrUdp { .. }));
        message(
            &text,
            &["dataplane.acl[0].dst_port: `dst_port` needs `protocol: tcp` or `protocol: udp` (ports exist only in TCP and UDP headers), but this rule has no `protocol`"],
        );
        message(
            &L3.replace(
                "protocol: tcp, dst_port: 23",
                "protocol: icmp, src_port: 23",
            ),
            &[
                "dataplane.acl[0].src_port: `src_port` needs",
                "but this rule has `protocol: icmp`",
            ],
        );
        message(
            &L3.replace("protocol: tcp, dst_port: 23", "protocol: 132, dst_port: 23"),
            &[
                "dataplane.acl[0].dst_port: ",
                "but this rule has `protocol: 132`",
            ],
        );
        // Protocol numbers of TCP and UDP count as TCP and UDP.
        parse(&L3.replace("protocol: tcp", "protocol: 6")).unwrap();
        parse(&L3.replace("protocol: tcp", "protocol: 17")).unwrap();
    }

    #[test]
    fn acl_bad_values() {
        for bad in [
            "gre", "TCP", "256", "-1", "\"\"", "\"256\"", "\"+6\"", "[6]",
        ] {
            message(
                &L3.replace("protocol: tcp", &format!("protocol: {bad}")),
                &[
                    "dataplane.acl[0].protocol: invalid ",
                    "`tcp`, `udp`, `icmp` or an IP protocol number from 0 to 255",
                ],
            );
        }
        message(
            &L3.replace("action: permit", "action: allow"),
            &["dataplane.acl[1].action: unknown variant `allow`, expected `permit` or `deny`"],
        );
        message(
            &L3.replace("{ port: down, action: permit }", "{ port: down }"),
            &["dataplane.acl[1]: missing field `action`"],
        );
        message(
            &L3.replace("{ port: down, action: permit }", "{ action: permit }"),
            &["dataplane.acl[1]: missing field `port`"],
        );
        message(
            &L3.replace("action: permit }", "action: permit, dport: 80 }"),
            &["dataplane.acl[1]: unknown field `dport`, expected one of `port`, `action`, `protocol`, `src`, `dst`, `src_port`, `dst_port`"],
        );
        message(
            &L3.replace("action: permit }", "action: permit, src: 10.1.0/8 }"),
            &["dataplane.acl[1].src: invalid IPv4 prefix \"10.1.0/8\": `10.1.0` is not an IPv4 address"],
        );
        message(
            &L3.replace("action: permit }", "action: permit, dst: 10.1.0.0/8 }"),
            &["dataplane.acl[1].dst: 10.1.0.0/8 has host bits set; a prefix ends in zero bits, did you mean 10.0.0.0/8?"],
        );
    }

    #[test]
    fn l3_keys_belong_under_dataplane() {
        for key in ["routes", "acl", "trace_packets"] {
            message(
                &format!("{BASE}{key}: []\n"),
                &[&format!("unknown top-level key `{key}`"), "indent it"],
            );
        }
        message(
            &L3.replace("  routes:", "  route:"),
            &["dataplane: unknown field `route`"],
        );
    }

    #[test]
    fn validate_catches_code_built_prefixes() {
        let mut config = parse(L3).unwrap();
        config.dataplane.ports[0].address = Some(Ipv4Cidr {
            addr: ip("10.90.0.2"),
            len: 40,
        });
        let err = config.validate(ORIGIN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/x/y.yaml: dataplane.ports[0].address: invalid IPv4 prefix \"10.90.0.2/40\": \
             prefix length `40` is not a number from 0 to 32"
        );
        let mut config = parse(L3).unwrap();
        config.dataplane.acl[0].src = Some(Ipv4Cidr {
            addr: ip("0.0.0.0"),
            len: 33,
        });
        let err = config.validate(ORIGIN).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/x/y.yaml: dataplane.acl[0].src: invalid IPv4 prefix"),
            "{err}"
        );
    }

    /// As `never_panics`, for the L3 keys.
    #[test]
    fn never_panics_l3() {
        let full = L3.replace("dst_port: 23", "dst_port: \"1-2\", src: 10.0.0.1");
        for end in 0..=full.len() {
            let _ = parse(&full[..end]);
        }
        for i in 0..full.len() {
            for replacement in ["", "/", ".", "-", "9", "{"] {
                let mut text = full.clone();
                text.replace_range(i..=i, replacement);
                let _ = parse(&text);
            }
        }
    }
}
