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
//! Envoy's `static_resources` section goes through steps 2 and 3 in
//! [`zerohop_l7::config`], whose errors come as [`ConfigError::Envoy`]; how its
//! listeners and clusters fit the `dataplane` section is checked here, as step 3.
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
//!       mtu: 1500                  # 68 to 9000 (net_af_packet: see dpdk::af_packet)
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
//!   tcp:                           # the userspace TCP stack, per worker; defaults shown
//!     max_connections: 65536       # flow-table capacity, downstream + upstream
//!     rx_buffer: 262144            # bytes per connection (above 65535: scaled window)
//!     tx_buffer: 262144
//!     delayed_ack_ms: 10           # 0 acks at once
//!     keepalive_s: 0               # 0 = off
//!     time_wait_ms: 2000
//!     idle_release_ms: 1000        # idle connections give buffer pages back; 0 = never
//!     ephemeral_ports: 32768-60999 # local ports of upstream connections
//!     listener_connection_limit: 0 # per listener; 0 = unlimited
//! static_resources:                # Envoy v3, read by zerohop_l7::config
//!   listeners: [...]               # tcp_proxy listeners
//!   clusters: [...]                # STATIC clusters
//! ```
//!
//! A port is L2 (cross-connected) or L3 (routed): an `address` makes it L3. ACLs apply
//! to L3 ports only, and only to ports that have rules; on such a port a packet that
//! matches no rule is denied, as in VPP's and most routers' ACLs.
//!
//! `static_resources` is Envoy's own section, parsed and checked by
//! [`zerohop_l7::config::EnvoyConfig`] (its errors name the YAML path and, in the usual
//! block-style file, the line). What ties it to `dataplane` is checked here: a listener
//! binds to `0.0.0.0` or to an L3 port's address, and every cluster endpoint is on a
//! connected subnet or covered by a route. Envoy's `admin` section sets where the admin
//! API listens (a kernel socket, see `crate::admin`).

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize};
use zerohop_l7::config::{EnvoyConfig, EnvoyConfigError};

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

/// Top-level sections that Envoy-style configs carry and that zerohop will read once the
/// features behind them exist. They get their own error, so that a user who copies an
/// Envoy config learns that the section is not supported yet rather than misspelt.
const FUTURE_SECTIONS: &[&str] = &["dynamic_resources", "layered_runtime"];

/// Envoy's `admin` section (where the admin API listens), in both spellings.
const ADMIN_SECTIONS: &[&str] = &["admin"];

/// Top-level Envoy sections zerohop reads, in both spellings Envoy accepts (proto3 JSON
/// also takes lowerCamelCase); [`zerohop_l7::config::EnvoyConfig`] parses them.
const ENVOY_SECTIONS: &[&str] = &["static_resources", "staticResources"];

/// Keys of Envoy's `static_resources`; one of them at the top level means a lost indent.
const STATIC_RESOURCES_KEYS: &[&str] = &["listeners", "clusters"];

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
    "tcp",
];

/// A whole zerohop config file: zerohop's own `dataplane` section and Envoy's
/// `static_resources`.
///
/// Read it with [`Config::load`] or [`Config::from_yaml`], which parse and check both
/// sections and what ties them together. The serde derives cover `dataplane` only:
/// [`Config::envoy`] is skipped (Envoy's model has no serde form of its own), so a
/// serialized `Config` has no `static_resources`, and deserializing one directly,
/// without `from_yaml`, neither reads that section nor validates anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The DPDK side: cores, memory, ports and how packets flow between them.
    pub dataplane: DataplaneConfig,
    /// Envoy's `static_resources` (listeners and clusters; empty when the file has no
    /// such section) and `admin` (where the admin API listens; `None` without one).
    #[serde(skip)]
    pub envoy: EnvoyConfig,
}

/// What [`Config::from_yaml`] deserializes the text into: `dataplane` with
/// `serde_yaml_ng`'s paths and line numbers in its errors, and Envoy's section passed
/// over (a second pass gives it to [`EnvoyConfig`]). The two spellings of
/// `static_resources` are aliases, so writing both is a "duplicate field" error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    dataplane: DataplaneConfig,
    #[serde(default, rename = "static_resources", alias = "staticResources")]
    _static_resources: de::IgnoredAny,
    #[serde(default, rename = "admin")]
    _admin: de::IgnoredAny,
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
    /// Sizes and timers of the userspace TCP stack that terminates the listeners'
    /// connections and opens the upstream ones.
    #[serde(default)]
    pub tcp: TcpSettings,
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

/// Settings of the userspace TCP stack, per worker: each worker has its own flow table,
/// buffers and timers, and these sizes apply to each of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSettings {
    /// Flow-table capacity of each worker: downstream and upstream connections together
    /// (a proxied connection takes two entries).
    #[serde(default = "default_tcp_max_connections")]
    pub max_connections: u32,
    /// Receive buffer of each connection, in bytes; it bounds the window advertised to
    /// the peer. Above 65,535 the window is scaled (see [`DEFAULT_TCP_RX_BUFFER`]).
    #[serde(default = "default_tcp_rx_buffer")]
    pub rx_buffer: u32,
    /// Send buffer of each connection, in bytes: data accepted from the other side of
    /// the proxy and not yet acknowledged by this one.
    #[serde(default = "default_tcp_buffer")]
    pub tx_buffer: u32,
    /// How long an ACK may wait for data to ride on, in milliseconds; 0 acknowledges
    /// every segment at once.
    #[serde(default = "default_delayed_ack_ms")]
    pub delayed_ack_ms: u32,
    /// Idle time after which a connection sends keepalive probes, in seconds; 0 turns
    /// keepalives off.
    #[serde(default)]
    pub keepalive_s: u32,
    /// How long a closed connection stays in TIME-WAIT, in milliseconds, before its
    /// flow-table entry is freed (smoltcp's own TIME-WAIT is 10 s; 2 MSL would be
    /// minutes). 0 frees it at once.
    #[serde(default = "default_time_wait_ms")]
    pub time_wait_ms: u32,
    /// How long a connection's buffers must stay empty before their memory goes back
    /// to the OS, in milliseconds; 0 keeps it. An idle connection then costs under
    /// 1 KiB whatever its buffer sizes; the next data takes a page fault per page.
    #[serde(default = "default_idle_release_ms")]
    pub idle_release_ms: u32,
    /// Local ports for upstream connections, `LOW-HIGH` with 1 <= LOW <= HIGH <= 65535;
    /// read it with [`TcpSettings::ephemeral_range`]. The workers share the range.
    #[serde(default = "default_ephemeral_ports")]
    pub ephemeral_ports: String,
    /// Most downstream connections each listener accepts on each worker; 0 means no
    /// limit other than `max_connections`.
    #[serde(default)]
    pub listener_connection_limit: u32,
}

/// Default [`TcpSettings::max_connections`].
pub const DEFAULT_TCP_MAX_CONNECTIONS: u32 = 65_536;
/// Largest [`TcpSettings::max_connections`]: a million flows per worker.
pub const MAX_TCP_MAX_CONNECTIONS: u32 = 1_048_576;
/// Default [`TcpSettings::tx_buffer`]: 256 KiB, as the receive buffer.
pub const DEFAULT_TCP_BUFFER: u32 = 262_144;
/// Default [`TcpSettings::rx_buffer`]: 256 KiB, a scaled window (the bytes a
/// scaled window's retreating edge cuts are held and fed back: the stack's
/// `beyond_window_held`). 65,535, the largest window without scaling, caps
/// one connection at 0.5 Gbit/s per millisecond of round trip; 256 KiB
/// carried 20-30% more than it here (iperf3, HTTP 1 MiB responses, with the
/// larger af_packet ring zerohop then gives those ports) for about 3% of
/// keep-alive requests/s (README, "TCP proxy"). Buffers cost address space;
/// their pages are resident only while data moves (`idle_release_ms`).
pub const DEFAULT_TCP_RX_BUFFER: u32 = 262_144;
/// Smallest [`TcpSettings::rx_buffer`] and [`TcpSettings::tx_buffer`]: 1 KiB.
pub const MIN_TCP_BUFFER: u32 = 1024;
/// Largest [`TcpSettings::rx_buffer`] and [`TcpSettings::tx_buffer`]: 16 MiB.
pub const MAX_TCP_BUFFER: u32 = 16_777_216;
/// Default [`TcpSettings::delayed_ack_ms`].
pub const DEFAULT_DELAYED_ACK_MS: u32 = 10;
/// Largest [`TcpSettings::delayed_ack_ms`]: RFC 1122 allows at most 500 ms.
pub const MAX_DELAYED_ACK_MS: u32 = 500;
/// Largest [`TcpSettings::keepalive_s`]: two hours, Linux's default idle time.
pub const MAX_KEEPALIVE_S: u32 = 7200;
/// Default [`TcpSettings::time_wait_ms`].
pub const DEFAULT_TIME_WAIT_MS: u32 = 2000;
/// Largest [`TcpSettings::time_wait_ms`]: smoltcp's own TIME-WAIT.
pub const MAX_TIME_WAIT_MS: u32 = 10_000;
/// Default [`TcpSettings::idle_release_ms`].
pub const DEFAULT_IDLE_RELEASE_MS: u32 = 1000;
/// Largest [`TcpSettings::idle_release_ms`]: one hour.
pub const MAX_IDLE_RELEASE_MS: u32 = 3_600_000;
/// Default [`TcpSettings::ephemeral_ports`]: Linux's `ip_local_port_range`.
pub const DEFAULT_EPHEMERAL_PORTS: &str = "32768-60999";
/// [`DEFAULT_EPHEMERAL_PORTS`] as a range.
const DEFAULT_EPHEMERAL_RANGE: std::ops::RangeInclusive<u16> = 32768..=60999;
/// Most L3 ports that may have an address while listeners are configured: the TCP
/// stack is built with smoltcp's 8-address interface limit.
pub const MAX_L3_PORTS_WITH_LISTENERS: usize = 8;

impl Default for TcpSettings {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
            rx_buffer: DEFAULT_TCP_RX_BUFFER,
            tx_buffer: DEFAULT_TCP_BUFFER,
            delayed_ack_ms: DEFAULT_DELAYED_ACK_MS,
            keepalive_s: 0,
            time_wait_ms: DEFAULT_TIME_WAIT_MS,
            idle_release_ms: DEFAULT_IDLE_RELEASE_MS,
            ephemeral_ports: DEFAULT_EPHEMERAL_PORTS.to_owned(),
            listener_connection_limit: 0,
        }
    }
}

impl TcpSettings {
    /// Return [`TcpSettings::ephemeral_ports`] as a range.
    ///
    /// Exact for a validated config (every [`Config`] from [`Config::load`] or
    /// [`Config::from_yaml`]). On an unvalidated one whose `ephemeral_ports` does not
    /// parse, this does not panic: it returns the default range, 32768-60999.
    pub fn ephemeral_range(&self) -> std::ops::RangeInclusive<u16> {
        parse_ephemeral_ports(&self.ephemeral_ports).unwrap_or(DEFAULT_EPHEMERAL_RANGE)
    }

    /// Return the first problem with its YAML path.
    fn validate(&self) -> Result<(), (String, Problem)> {
        check_range(
            "dataplane.tcp.max_connections",
            self.max_connections.into(),
            1,
            MAX_TCP_MAX_CONNECTIONS.into(),
            DEFAULT_TCP_MAX_CONNECTIONS.into(),
        )?;
        for (key, value, default) in [
            (
                "dataplane.tcp.rx_buffer",
                self.rx_buffer,
                DEFAULT_TCP_RX_BUFFER,
            ),
            (
                "dataplane.tcp.tx_buffer",
                self.tx_buffer,
                DEFAULT_TCP_BUFFER,
            ),
        ] {
            check_range(
                key,
                value.into(),
                MIN_TCP_BUFFER.into(),
                MAX_TCP_BUFFER.into(),
                default.into(),
            )?;
        }
        for (key, value, max, default) in [
            (
                "dataplane.tcp.delayed_ack_ms",
                self.delayed_ack_ms,
                MAX_DELAYED_ACK_MS,
                DEFAULT_DELAYED_ACK_MS,
            ),
            (
                "dataplane.tcp.keepalive_s",
                self.keepalive_s,
                MAX_KEEPALIVE_S,
                0,
            ),
            (
                "dataplane.tcp.time_wait_ms",
                self.time_wait_ms,
                MAX_TIME_WAIT_MS,
                DEFAULT_TIME_WAIT_MS,
            ),
            (
                "dataplane.tcp.idle_release_ms",
                self.idle_release_ms,
                MAX_IDLE_RELEASE_MS,
                DEFAULT_IDLE_RELEASE_MS,
            ),
        ] {
            check_range(key, value.into(), 0, max.into(), default.into())?;
        }
        parse_ephemeral_ports(&self.ephemeral_ports)
            .map(|_| ())
            .map_err(|problem| ("dataplane.tcp.ephemeral_ports".to_owned(), problem))
    }
}

/// Parse `LOW-HIGH` with 1 <= LOW <= HIGH <= 65535.
fn parse_ephemeral_ports(text: &str) -> Result<std::ops::RangeInclusive<u16>, Problem> {
    let bad = |reason: String| Problem::BadEphemeralPorts {
        value: text.to_owned(),
        reason,
    };
    let Some((low, high)) = text.split_once('-') else {
        return Err(bad("it is not a range LOW-HIGH".to_owned()));
    };
    let port = |part: &str| -> Result<u16, Problem> {
        let part = part.trim();
        let value = if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse::<u16>().ok()
        } else {
            None
        };
        match value {
            None if part.is_empty() => Err(bad(
                "a port number is missing on one side of the `-`".to_owned()
            )),
            Some(0) => Err(bad(
                "port 0 cannot be a local port; start the range at 1 or above".to_owned(),
            )),
            Some(port) => Ok(port),
            None => Err(bad(format!(
                "`{part}` is not a port number from 1 to 65535"
            ))),
        }
    };
    let (low, high) = (port(low)?, port(high)?);
    if low > high {
        return Err(Problem::ReversedPortRange {
            first: low,
            last: high,
        });
    }
    Ok(low..=high)
}

fn default_tcp_max_connections() -> u32 {
    DEFAULT_TCP_MAX_CONNECTIONS
}

fn default_tcp_buffer() -> u32 {
    DEFAULT_TCP_BUFFER
}

fn default_tcp_rx_buffer() -> u32 {
    DEFAULT_TCP_RX_BUFFER
}

fn default_delayed_ack_ms() -> u32 {
    DEFAULT_DELAYED_ACK_MS
}

fn default_time_wait_ms() -> u32 {
    DEFAULT_TIME_WAIT_MS
}

fn default_idle_release_ms() -> u32 {
    DEFAULT_IDLE_RELEASE_MS
}

fn default_ephemeral_ports() -> String {
    DEFAULT_EPHEMERAL_PORTS.to_owned()
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
    /// On `net_af_packet`, above 1,500 zerohop sizes the driver's ring slots and sets
    /// the kernel interface's MTU itself ([`crate::dpdk::af_packet`]).
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
    #[error("{reason}")]
    AfPacketSlot { reason: String },
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
    #[error(
        "invalid port range \"{value}\": {reason}; write LOW-HIGH with 1 <= LOW <= HIGH <= \
         65535, or leave it out for the default {DEFAULT_EPHEMERAL_PORTS}"
    )]
    BadEphemeralPorts { value: String, reason: String },
    #[error(
        "listeners need an L3 port, and no port has an address: zerohop accepts TCP \
         connections only for its own addresses; give a port an address \
         (dataplane.ports[].address, e.g. `address: 10.0.0.1/24`)"
    )]
    ListenersNeedL3Port,
    #[error(
        "port `{name}` is the {}th port with an address, and while listeners are \
         configured at most {MAX_L3_PORTS_WITH_LISTENERS} ports may have one (zerohop's TCP \
         stack is built with smoltcp's limit of {MAX_L3_PORTS_WITH_LISTENERS} addresses); \
         remove the address of this port or of another one",
        MAX_L3_PORTS_WITH_LISTENERS + 1
    )]
    TooManyL3Ports { name: String },
    #[error(
        "{address} is not an address of zerohop's, which receives packets only for its own \
         addresses; a listener binds to 0.0.0.0 (every L3 port) or to an L3 port's address \
         ({})",
        local_list(.local)
    )]
    ListenerAddressNotLocal {
        address: Ipv4Addr,
        /// Each L3 port's address and name.
        local: Vec<(Ipv4Addr, String)>,
    },
    #[error(
        "endpoint {address} is unreachable: it is on no connected subnet ({}) and no \
         route in dataplane.routes covers it; add a route to it, e.g. `- {{ prefix: \
         {address}/32, via: <a neighbour> }}`, or use an endpoint on a connected subnet",
        connected_list(.connected)
    )]
    EndpointUnreachable {
        address: Ipv4Addr,
        /// Each L3 port's subnet and name.
        connected: Vec<(Ipv4Cidr, String)>,
    },
    #[error(
        "endpoint {address} is the address of port `{name}` ({at}), zerohop itself; a \
         cluster's endpoints are the upstream hosts zerohop connects to"
    )]
    EndpointIsOwnAddress {
        address: Ipv4Addr,
        name: String,
        at: String,
    },
}

/// Format L3 port addresses as `10.0.0.1 on port a, ...`.
fn local_list(local: &[(Ipv4Addr, String)]) -> String {
    let list: Vec<String> = local
        .iter()
        .map(|(address, name)| format!("{address} on port `{name}`"))
        .collect();
    format!("zerohop's addresses: {}", list.join(", "))
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
        "{origin}: {key}{}: not supported yet: zerohop reads only the `dataplane`, \
         `static_resources` and `admin` sections so far; remove `{key}` from this file",
        at_line(*.line)
    )]
    Unsupported {
        origin: String,
        key: String,
        line: Option<usize>,
    },
    /// A top-level key zerohop does not know.
    #[error(
        "{origin}: unknown top-level key `{key}`{}, expected `dataplane` or \
         `static_resources`{}",
        at_line(*.line),
        misplaced_hint(.key)
    )]
    UnknownSection {
        origin: String,
        key: String,
        line: Option<usize>,
    },
    /// Envoy's `static_resources` section does not parse or cannot work; the message
    /// starts with the origin and names the YAML path (`static_resources.clusters[0]...`).
    #[error("{0}")]
    Envoy(EnvoyConfigError),
    /// The YAML parsed but a value cannot work; also for a listener or cluster that does
    /// not fit the `dataplane` section (`path` then starts with `static_resources.`).
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
    } else if STATIC_RESOURCES_KEYS.contains(&key) {
        " (this key belongs under `static_resources:`; indent it)"
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
    /// other than `dataplane` and `static_resources`, [`ConfigError::Envoy`] for a
    /// `static_resources` section that does not parse or cannot work,
    /// [`ConfigError::Invalid`] for a `dataplane` value that cannot work or a listener or
    /// cluster that does not fit the ports and routes.
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
            if key == "dataplane"
                || ENVOY_SECTIONS.contains(&key.as_str())
                || ADMIN_SECTIONS.contains(&key.as_str())
            {
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
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        let invalid = |(path, problem)| ConfigError::Invalid {
            origin: origin.to_owned(),
            path,
            problem,
        };
        raw.dataplane.validate().map_err(invalid)?;
        let envoy = load_envoy(text, top, origin).map_err(ConfigError::Envoy)?;
        let config = Config {
            dataplane: raw.dataplane,
            envoy,
        };
        let static_resources = ENVOY_SECTIONS.iter().find_map(|key| top.get(*key));
        config
            .check_envoy(&|cluster, n| endpoint_location(static_resources, cluster, n))
            .map_err(invalid)?;
        Ok(config)
    }

    /// Check what the types cannot: ranges, uniqueness, that `xconnect` names existing
    /// ports, and that the listeners and clusters fit the ports and routes.
    /// [`Config::load`] and [`Config::from_yaml`] call this; call it yourself for a
    /// config built in code.
    ///
    /// [`Config::envoy`] itself is taken as checked: [`EnvoyConfig`] checks itself as it
    /// is built from YAML. The paths of endpoint errors assume each cluster lists its
    /// endpoints in one `load_assignment.endpoints[0]` entry.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first problem in document order.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.dataplane
            .validate()
            .and_then(|()| self.check_envoy(&|_, n| (0, n)))
            .map_err(|(path, problem)| ConfigError::Invalid {
                origin: origin.to_owned(),
                path,
                problem,
            })
    }

    /// Check that the listeners and clusters fit the `dataplane` section: zerohop must
    /// own each listener's address, and reach each endpoint through a port.
    ///
    /// `endpoint_at(cluster, n)` says where the `n`th endpoint of a cluster is written:
    /// `(j, k)` for `load_assignment.endpoints[j].lb_endpoints[k]`.
    fn check_envoy(
        &self,
        endpoint_at: &dyn Fn(usize, usize) -> (usize, usize),
    ) -> Result<(), (String, Problem)> {
        let dp = &self.dataplane;
        let l3 = dp.l3_ports();
        let envoy = &self.envoy;
        if !envoy.listeners.is_empty() {
            if l3.is_empty() {
                return Err((
                    "static_resources.listeners".to_owned(),
                    Problem::ListenersNeedL3Port,
                ));
            }
            if let Some(&(port, _)) = l3.get(MAX_L3_PORTS_WITH_LISTENERS) {
                return Err((
                    format!("dataplane.ports[{port}].address"),
                    Problem::TooManyL3Ports {
                        name: dp.ports[port].name.clone(),
                    },
                ));
            }
        }
        for (i, listener) in envoy.listeners.iter().enumerate() {
            let address = *listener.address.ip();
            if address.is_unspecified() || l3.iter().any(|(_, cidr)| cidr.addr == address) {
                continue;
            }
            return Err((
                format!("static_resources.listeners[{i}].address.socket_address.address"),
                Problem::ListenerAddressNotLocal {
                    address,
                    local: l3
                        .iter()
                        .map(|&(port, cidr)| (cidr.addr, dp.ports[port].name.clone()))
                        .collect(),
                },
            ));
        }
        for (i, cluster) in envoy.clusters.iter().enumerate() {
            for (n, endpoint) in cluster.endpoints.iter().enumerate() {
                let (j, k) = endpoint_at(i, n);
                let path = format!(
                    "static_resources.clusters[{i}].load_assignment.endpoints[{j}]\
                     .lb_endpoints[{k}].endpoint.address.socket_address.address"
                );
                dp.check_reachable(&path, *endpoint.address.ip(), &l3)?;
            }
        }
        Ok(())
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

/// Parse the Envoy sections of a config file whose top-level mapping is `top`.
///
/// [`EnvoyConfig::from_yaml`] gives line numbers but reads a whole file, and would
/// reject `dataplane`; so it gets the text with every line outside the Envoy sections
/// blanked, which leaves the Envoy lines where they were. That works for the usual
/// block-style file; where it does not (a flow-style top level, an alias into
/// `dataplane`), the blanked text reads differently from the Envoy sections of `top`,
/// and [`EnvoyConfig::from_value`] parses those instead, with paths but no lines.
fn load_envoy(
    text: &str,
    top: &serde_yaml_ng::Mapping,
    origin: &str,
) -> Result<EnvoyConfig, EnvoyConfigError> {
    let mut envoy = serde_yaml_ng::Mapping::new();
    for (key, value) in top {
        if key
            .as_str()
            .is_some_and(|key| ENVOY_SECTIONS.contains(&key) || ADMIN_SECTIONS.contains(&key))
        {
            envoy.insert(key.clone(), value.clone());
        }
    }
    if envoy.is_empty() {
        return Ok(EnvoyConfig::default());
    }
    // One section at most: serde has said "duplicate field" for both spellings already.
    let static_resources = ENVOY_SECTIONS.iter().find_map(|key| envoy.get(*key));
    let admin = ADMIN_SECTIONS.iter().find_map(|key| envoy.get(*key));
    let blanked = envoy_lines_only(text);
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&blanked) {
        Ok(serde_yaml_ng::Value::Mapping(tree)) if tree == envoy => {
            EnvoyConfig::from_yaml(&blanked, origin)
        }
        _ => EnvoyConfig::from_value(static_resources, admin, origin),
    }
}

/// Return `text` with the lines of every top-level entry other than the Envoy sections
/// made empty, line count and line ends kept. A top-level entry starts at a line whose
/// first character begins a key (not a space, tab, comment, list item or document
/// marker) and runs to the next such line.
fn envoy_lines_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut keep = true;
    for line in text.split_inclusive('\n') {
        let starts_key = line
            .chars()
            .next()
            .is_some_and(|c| !matches!(c, ' ' | '\t' | '\r' | '\n' | '#' | '-' | '.' | '%'));
        if starts_key {
            let key = line.split(':').next().unwrap_or("").trim();
            let key = key.trim_matches(|c| c == '"' || c == '\'');
            keep = ENVOY_SECTIONS.contains(&key) || ADMIN_SECTIONS.contains(&key);
        }
        if keep {
            out.push_str(line);
        } else if line.ends_with("\r\n") {
            out.push_str("\r\n");
        } else if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Where the `n`th endpoint of cluster `cluster` is written in `static_resources`:
/// `(j, k)` for `load_assignment.endpoints[j].lb_endpoints[k]`, the same flattening
/// as [`zerohop_l7::config::Cluster::endpoints`]; `(0, n)` where the tree does not
/// say.
fn endpoint_location(
    static_resources: Option<&serde_yaml_ng::Value>,
    cluster: usize,
    n: usize,
) -> (usize, usize) {
    fn get<'a>(
        value: &'a serde_yaml_ng::Value,
        snake: &str,
        camel: &str,
    ) -> Option<&'a serde_yaml_ng::Value> {
        value.get(snake).or_else(|| value.get(camel))
    }
    let groups = static_resources
        .and_then(|sr| sr.get("clusters"))
        .and_then(|clusters| clusters.get(cluster))
        .and_then(|c| get(c, "load_assignment", "loadAssignment"))
        .and_then(|la| la.get("endpoints"));
    let Some(serde_yaml_ng::Value::Sequence(groups)) = groups else {
        return (0, n);
    };
    let mut before = 0;
    for (j, group) in groups.iter().enumerate() {
        let len = match get(group, "lb_endpoints", "lbEndpoints") {
            Some(serde_yaml_ng::Value::Sequence(list)) => list.len(),
            _ => 0,
        };
        if n < before + len {
            return (j, n - before);
        }
        before += len;
    }
    (0, n)
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
        self.tcp.validate()?;
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
            if let Err(reason) = crate::dpdk::af_packet::spec_for_mtu(&port.device, port.mtu) {
                return Err((format!("{path}.device"), Problem::AfPacketSlot { reason }));
            }
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

    /// Check that zerohop can reach `address` (an upstream endpoint at `path`): on a
    /// connected subnet, as a host other than zerohop itself, or through a route.
    fn check_reachable(
        &self,
        path: &str,
        address: Ipv4Addr,
        l3: &[(usize, Ipv4Cidr)],
    ) -> Result<(), (String, Problem)> {
        if let Some(&(port, _)) = l3.iter().find(|(_, cidr)| cidr.addr == address) {
            return Err((
                path.to_owned(),
                Problem::EndpointIsOwnAddress {
                    address,
                    name: self.ports[port].name.clone(),
                    at: format!("dataplane.ports[{port}].address"),
                },
            ));
        }
        if let Some(&(_, cidr)) = l3.iter().find(|(_, cidr)| cidr.contains(address)) {
            return check_host(path, address, cidr);
        }
        if self
            .routes
            .iter()
            .any(|route| route.prefix.contains(address))
        {
            return Ok(());
        }
        Err((
            path.to_owned(),
            Problem::EndpointUnreachable {
                address,
                connected: l3
                    .iter()
                    .map(|&(port, cidr)| (cidr.subnet(), self.ports[port].name.clone()))
                    .collect(),
            },
        ))
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
        assert_eq!(dp.tcp, TcpSettings::default());
        assert_eq!(config.envoy, EnvoyConfig::default());
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
        let text = format!("{BASE}layered_runtime:\n  layers: []\n");
        let err = error(&text);
        assert!(matches!(err, ConfigError::Unsupported { .. }), "{err:?}");
        message(
            &text,
            &[
                "layered_runtime at line 9: not supported yet",
                "remove `layered_runtime`",
            ],
        );
        // static_resources is read now; an empty one is no listeners and no clusters.
        for section in ["static_resources", "staticResources"] {
            let config = parse(&format!("{BASE}{section}: {{}}\n")).unwrap();
            assert_eq!(config.envoy, EnvoyConfig::default());
        }
        let text = format!("foo: []\n{BASE}");
        let err = error(&text);
        assert!(matches!(err, ConfigError::UnknownSection { .. }), "{err:?}");
        message(
            &text,
            &["unknown top-level key `foo` at line 1, expected `dataplane` or `static_resources` (check the spelling)"],
        );
        // Envoy's keys one level up belong under static_resources.
        for key in ["listeners", "clusters"] {
            message(
                &format!("{key}: []\n{BASE}"),
                &[
                    &format!("unknown top-level key `{key}` at line 1"),
                    "belongs under `static_resources:`",
                ],
            );
        }
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
    fn af_packet_ring_slots_must_hold_the_mtu() {
        // zerohop sizes the slots itself when the device names none.
        parse(L3).unwrap();
        let small = L3.replace(
            "net_af_packet1,iface=zhu0",
            "net_af_packet1,iface=zhu0,framesz=8192,blocksz=8192",
        );
        message(
            &small,
            &[
                "dataplane.ports[1].device: framesz=8192 cannot hold the frames of mtu 9000",
                "framesz=9088 or more",
            ],
        );
        parse(&small.replace("mtu: 9000", "mtu: 8000")).unwrap();
        let bad = L3.replace(
            "net_af_packet1,iface=zhu0",
            "net_af_packet1,iface=zhu0,framesz=x",
        );
        message(
            &bad,
            &["dataplane.ports[1].device: framesz=x is not a number"],
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
    #[test]
    fn tcp_defaults() {
        let tcp = parse(BASE).unwrap().dataplane.tcp;
        assert_eq!(tcp.max_connections, 65_536);
        assert_eq!(tcp.rx_buffer, 262_144);
        assert_eq!(tcp.tx_buffer, 262_144);
        assert_eq!(tcp.delayed_ack_ms, 10);
        assert_eq!(tcp.keepalive_s, 0);
        assert_eq!(tcp.time_wait_ms, 2000);
        assert_eq!(tcp.idle_release_ms, 1000);
        assert_eq!(tcp.ephemeral_ports, "32768-60999");
        assert_eq!(tcp.ephemeral_range(), 32768..=60999);
        assert_eq!(
            parse_ephemeral_ports(DEFAULT_EPHEMERAL_PORTS),
            Ok(DEFAULT_EPHEMERAL_RANGE)
        );
        assert_eq!(tcp.listener_connection_limit, 0);
        assert_eq!(tcp, TcpSettings::default());
        // An empty section is all defaults too.
        let config = parse(&format!("{BASE}  tcp: {{}}\n")).unwrap();
        assert_eq!(config.dataplane.tcp, TcpSettings::default());
    }

    #[test]
    fn tcp_every_key() {
        let text = format!(
            "{BASE}  tcp:
    max_connections: 1000
    rx_buffer: 1024
    tx_buffer: 16777216
    delayed_ack_ms: 0
    keepalive_s: 7200
    time_wait_ms: 0
    idle_release_ms: 0
    ephemeral_ports: 1024-2047
    listener_connection_limit: 500
"
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.dataplane.tcp,
            TcpSettings {
                max_connections: 1000,
                rx_buffer: 1024,
                tx_buffer: 16_777_216,
                delayed_ack_ms: 0,
                keepalive_s: 7200,
                time_wait_ms: 0,
                idle_release_ms: 0,
                ephemeral_ports: "1024-2047".into(),
                listener_connection_limit: 500,
            }
        );
        assert_eq!(config.dataplane.tcp.ephemeral_range(), 1024..=2047);
        let yaml = serde_yaml_ng::to_string(&config).unwrap();
        assert!(yaml.contains("ephemeral_ports: 1024-2047"), "{yaml}");
        assert_eq!(parse(&yaml).unwrap(), config, "{yaml}");
    }

    #[test]
    fn tcp_ranges() {
        let cases: [(&str, &[u64], &[u64], &str); 7] = [
            (
                "max_connections",
                &[0, 1_048_577],
                &[1, 1_048_576],
                "use 1 to 1048576, or leave it out for the default 65536",
            ),
            (
                "rx_buffer",
                &[0, 1023, 16_777_217],
                &[1024, 16_777_216],
                "use 1024 to 16777216, or leave it out for the default 262144",
            ),
            (
                "tx_buffer",
                &[1023, 16_777_217],
                &[1024, 16_777_216],
                "use 1024 to 16777216, or leave it out for the default 262144",
            ),
            (
                "delayed_ack_ms",
                &[501],
                &[0, 500],
                "use 0 to 500, or leave it out for the default 10",
            ),
            (
                "keepalive_s",
                &[7201],
                &[0, 7200],
                "use 0 to 7200, or leave it out for the default 0",
            ),
            (
                "time_wait_ms",
                &[10_001],
                &[0, 10_000],
                "use 0 to 10000, or leave it out for the default 2000",
            ),
            ("listener_connection_limit", &[], &[0, 1, 4_294_967_295], ""),
        ];
        for (key, bad, good, advice) in cases {
            for value in bad {
                let text = format!("{BASE}  tcp: {{ {key}: {value} }}\n");
                let (path, problem) = invalid(&text);
                assert_eq!(path, format!("dataplane.tcp.{key}"));
                assert!(matches!(problem, Problem::OutOfRange { .. }), "{problem:?}");
                message(
                    &text,
                    &[&format!(
                        "dataplane.tcp.{key}: {value} is out of range; {advice}"
                    )],
                );
            }
            for value in good {
                parse(&format!("{BASE}  tcp: {{ {key}: {value} }}\n")).unwrap();
            }
        }
        message(
            &format!("{BASE}  tcp: {{ rx_buffer: -1 }}\n"),
            &[
                "dataplane.tcp.rx_buffer: invalid type: integer `-1`",
                "line 9",
            ],
        );
        message(
            &format!("{BASE}  tcp: {{ max_conections: 5 }}\n"),
            &["dataplane.tcp: unknown field `max_conections`, expected one of `max_connections`"],
        );
        message(
            &format!("{BASE}tcp: {{}}\n"),
            &[
                "unknown top-level key `tcp` at line 9",
                "belongs under `dataplane:`",
            ],
        );
    }

    #[test]
    fn ephemeral_ports() {
        for (text, want) in [
            ("1-65535", 1..=65535),
            ("40000-40000", 40000..=40000),
            ("\" 1024 - 2048 \"", 1024..=2048),
            ("\"32768-60999\"", 32768..=60999),
        ] {
            let config = parse(&format!("{BASE}  tcp: {{ ephemeral_ports: {text} }}\n")).unwrap();
            assert_eq!(config.dataplane.tcp.ephemeral_range(), want, "{text}");
        }
        for (bad, reason) in [
            ("32768", "it is not a range LOW-HIGH"),
            ("0-100", "port 0 cannot be a local port"),
            ("1-65536", "`65536` is not a port number from 1 to 65535"),
            ("a-b", "`a` is not a port number"),
            ("\"\"", "it is not a range LOW-HIGH"),
            ("1-2-3", "`2-3` is not a port number"),
            ("\"-5\"", "a port number is missing on one side of the `-`"),
            ("\"5- \"", "a port number is missing"),
        ] {
            let text = format!("{BASE}  tcp: {{ ephemeral_ports: {bad} }}\n");
            let (path, problem) = invalid(&text);
            assert_eq!(path, "dataplane.tcp.ephemeral_ports");
            assert!(
                matches!(problem, Problem::BadEphemeralPorts { .. }),
                "{problem:?}"
            );
            message(
                &text,
                &[
                    "dataplane.tcp.ephemeral_ports: invalid port range",
                    reason,
                    "write LOW-HIGH with 1 <= LOW <= HIGH <= 65535, or leave it out for the \
                     default 32768-60999",
                ],
            );
        }
        let text = format!("{BASE}  tcp: {{ ephemeral_ports: 60999-32768 }}\n");
        assert_eq!(
            invalid(&text),
            (
                "dataplane.tcp.ephemeral_ports".to_owned(),
                Problem::ReversedPortRange {
                    first: 60999,
                    last: 32768
                }
            )
        );
        // A bare number reads as the string "40000": one port is not a range.
        message(
            &format!("{BASE}  tcp: {{ ephemeral_ports: 40000 }}\n"),
            &["dataplane.tcp.ephemeral_ports: invalid port range \"40000\": it is not a range"],
        );
        message(
            &format!("{BASE}  tcp: {{ ephemeral_ports: [1, 2] }}\n"),
            &["dataplane.tcp.ephemeral_ports: invalid type: sequence, expected a string"],
        );
        // Unvalidated and unparsable: the default range, not a panic.
        let tcp = TcpSettings {
            ephemeral_ports: "junk".into(),
            ..TcpSettings::default()
        };
        assert_eq!(tcp.ephemeral_range(), 32768..=60999);
    }

    /// A valid config with a tcp_proxy listener and a three-endpoint cluster; tests edit
    /// it into invalid ones.
    const PROXY: &str = "\
dataplane:
  cores: [1]
  ports:
    - { name: down, device: \"net_af_packet0,iface=zhd0\", address: 10.0.0.1/24 }
    - { name: up, device: \"net_af_packet1,iface=zhu0\", address: 10.0.1.1/24 }
  routes:
    - { prefix: 10.5.0.0/16, via: 10.0.1.254 }
  tcp:
    max_connections: 4096
static_resources:
  listeners:
  - name: proxy
    address:
      socket_address: { address: 0.0.0.0, port_value: 8000 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: proxy
          cluster: backend
  clusters:
  - name: backend
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.1.2, port_value: 9001 } } }
        - endpoint: { address: { socket_address: { address: 10.0.1.3, port_value: 9002 } } }
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.1.4, port_value: 9003 } } }
";

    #[test]
    fn proxy_config_loads() {
        use zerohop_l7::config::{LbPolicy, NetworkFilter};
        let config = parse(PROXY).unwrap();
        assert_eq!(config.dataplane.ports.len(), 2);
        assert_eq!(config.dataplane.tcp.max_connections, 4096);
        assert_eq!(config.dataplane.tcp.rx_buffer, DEFAULT_TCP_RX_BUFFER);
        let envoy = &config.envoy;
        assert_eq!(envoy.listeners.len(), 1);
        assert_eq!(envoy.clusters.len(), 1);
        assert_eq!(envoy.admin, None);
        let listener = &envoy.listeners[0];
        assert_eq!(listener.name, "proxy");
        assert_eq!(listener.address, "0.0.0.0:8000".parse().unwrap());
        let NetworkFilter::TcpProxy(tcp_proxy) = &listener.filter else {
            panic!("not a tcp_proxy: {:?}", listener.filter)
        };
        assert_eq!(tcp_proxy.cluster, "backend");
        let backend = envoy.cluster("backend").unwrap();
        assert_eq!(backend.lb_policy, LbPolicy::RoundRobin);
        let endpoints: Vec<String> = backend
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(
            endpoints,
            ["10.0.1.2:9001", "10.0.1.3:9002", "10.0.1.4:9003"]
        );
        // Config::validate accepts what from_yaml built.
        config.validate(ORIGIN).unwrap();
        // The serde form covers dataplane only.
        let yaml = serde_yaml_ng::to_string(&config).unwrap();
        assert!(!yaml.contains("static_resources"), "{yaml}");
        assert_eq!(parse(&yaml).unwrap().dataplane, config.dataplane);
        // The Envoy section may come first, and may be spelt in lowerCamelCase.
        let (dataplane, envoy_part) = PROXY.split_at(PROXY.find("static_resources").unwrap());
        let swapped = parse(&format!("{envoy_part}{dataplane}")).unwrap();
        assert_eq!(swapped, config);
        let camel = parse(&PROXY.replace("static_resources:", "staticResources:")).unwrap();
        assert_eq!(camel, config);
    }

    #[test]
    fn proxy_config_with_admin_sets_the_admin_address() {
        let text = format!("{PROXY}admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9901 }} }}\n");
        let config = parse(&text).unwrap();
        let admin = config.envoy.admin.expect("an admin section");
        assert_eq!(admin.address, "127.0.0.1:9901".parse().unwrap());
        // First in the file too.
        let first = parse(&format!(
            "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9901 }} }}\n{PROXY}"
        ))
        .unwrap();
        assert_eq!(first.envoy.admin, Some(admin));
        let err = error(&format!("{PROXY}admin:\n  address: x\n"));
        assert!(matches!(err, ConfigError::Envoy(_)), "{err:?}");
    }

    #[test]
    fn both_spellings_of_static_resources() {
        message(
            &format!("{PROXY}staticResources: {{}}\n"),
            &["duplicate field `static_resources`"],
        );
    }

    #[test]
    fn envoy_errors_name_path_and_line() {
        let text = PROXY.replace("connect_timeout: 1s", "conect_timeout: 1s");
        let err = error(&text);
        assert!(matches!(err, ConfigError::Envoy(_)), "{err:?}");
        let msg = message(
            &text,
            &[
                "static_resources.clusters[0].conect_timeout: unknown field `conect_timeout`",
                "at line 24 column 5",
            ],
        );
        assert!(!msg.contains("dataplane"), "{msg}");
        message(
            &PROXY.replace("cluster: backend", "cluster: backnd"),
            &["static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster: unknown cluster `backnd`"],
        );
        message(
            &PROXY.replace("port_value: 9002", "port_value: 0"),
            &["static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[1].endpoint.address.socket_address.port_value: port 0"],
        );
        message(
            &PROXY.replace("connect_timeout: 1s", "connect_timeout: 1"),
            &["static_resources.clusters[0].connect_timeout", "line 24"],
        );
        // The same error from a flow-style file: the path, without a line.
        let flow = "{dataplane: {cores: [1], ports: [{name: a, device: net_tap0, address: 10.0.0.1/24}]}, \
                    static_resources: {clusters: [{name: c, conect_timeout: 1s}]}}";
        let msg = message(
            flow,
            &["static_resources.clusters[0].conect_timeout: unknown field `conect_timeout`"],
        );
        assert!(!msg.contains(" line "), "{msg}");
    }

    #[test]
    fn envoy_alias_into_dataplane_falls_back_to_tree() {
        // An alias whose anchor sits in `dataplane` cannot be read from the Envoy lines
        // alone; the tree is read instead, and the config still loads.
        let text = PROXY
            .replace("name: up,", "name: &up up,")
            .replace("stat_prefix: proxy", "stat_prefix: *up");
        let config = parse(&text).unwrap();
        let zerohop_l7::config::NetworkFilter::TcpProxy(tcp_proxy) =
            &config.envoy.listeners[0].filter
        else {
            panic!("not a tcp_proxy")
        };
        assert_eq!(tcp_proxy.stat_prefix, "up");
    }

    #[test]
    fn envoy_lines_only_keeps_line_numbers() {
        let text = "a:\n  b: 1\nstatic_resources:\n  x: 1\n# c\n\"dataplane\": 2\n- 3\nstaticResources: 4\r\n";
        assert_eq!(
            envoy_lines_only(text),
            "\n\nstatic_resources:\n  x: 1\n# c\n\n\nstaticResources: 4\r\n"
        );
    }

    #[test]
    fn listeners_need_an_l3_port() {
        let text = PROXY
            .replace(", address: 10.0.0.1/24", "")
            .replace(", address: 10.0.1.1/24", "")
            .replace(
                "  routes:\n    - { prefix: 10.5.0.0/16, via: 10.0.1.254 }\n",
                "",
            );
        assert_eq!(
            invalid(&text),
            (
                "static_resources.listeners".to_owned(),
                Problem::ListenersNeedL3Port
            )
        );
        message(
            &text,
            &["static_resources.listeners: listeners need an L3 port, and no port has an address"],
        );
    }

    #[test]
    fn listener_address_must_be_local() {
        let text = PROXY.replace("address: 0.0.0.0", "address: 10.0.0.7");
        let (path, problem) = invalid(&text);
        assert_eq!(
            path,
            "static_resources.listeners[0].address.socket_address.address"
        );
        assert!(
            matches!(problem, Problem::ListenerAddressNotLocal { .. }),
            "{problem:?}"
        );
        message(
            &text,
            &["static_resources.listeners[0].address.socket_address.address: 10.0.0.7 is not an address of zerohop's", "a listener binds to 0.0.0.0 (every L3 port) or to an L3 port's address (zerohop's addresses: 10.0.0.1 on port `down`, 10.0.1.1 on port `up`)"],
        );
        for good in ["10.0.0.1", "10.0.1.1", "0.0.0.0"] {
            parse(&PROXY.replace("address: 0.0.0.0", &format!("address: {good}"))).unwrap();
        }
    }

    #[test]
    fn endpoints_must_be_reachable() {
        // Off every connected subnet and route, in the second endpoints group.
        let text = PROXY.replace("10.0.1.4", "10.6.0.4");
        let (path, problem) = invalid(&text);
        assert_eq!(
            path,
            "static_resources.clusters[0].load_assignment.endpoints[1].lb_endpoints[0].endpoint.address.socket_address.address"
        );
        assert!(
            matches!(problem, Problem::EndpointUnreachable { .. }),
            "{problem:?}"
        );
        message(
            &text,
            &["endpoint 10.6.0.4 is unreachable: it is on no connected subnet (connected: 10.0.0.0/24 on port `down`, 10.0.1.0/24 on port `up`) and no route in dataplane.routes covers it"],
        );
        let (path, _) = invalid(&PROXY.replace("10.0.1.3", "10.6.0.3"));
        assert!(
            path.starts_with(
                "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[1]."
            ),
            "{path}"
        );
        // A route covers it; a default route covers everything.
        parse(&PROXY.replace("10.0.1.4", "10.5.7.4")).unwrap();
        parse(&text.replace("prefix: 10.5.0.0/16", "prefix: 0.0.0.0/0")).unwrap();
        // Either connected subnet will do.
        parse(&PROXY.replace("10.0.1.4", "10.0.0.4")).unwrap();
    }

    #[test]
    fn endpoint_is_a_host_other_than_zerohop() {
        let text = PROXY.replace("10.0.1.3", "10.0.1.1");
        let (path, problem) = invalid(&text);
        assert!(path.ends_with("lb_endpoints[1].endpoint.address.socket_address.address"));
        assert!(
            matches!(problem, Problem::EndpointIsOwnAddress { .. }),
            "{problem:?}"
        );
        message(
            &text,
            &["endpoint 10.0.1.1 is the address of port `up` (dataplane.ports[1].address), zerohop itself"],
        );
        message(
            &PROXY.replace("10.0.1.3", "10.0.1.255"),
            &["lb_endpoints[1].endpoint.address.socket_address.address: 10.0.1.255 is the broadcast address of 10.0.1.0/24"],
        );
    }

    #[test]
    fn at_most_eight_l3_ports_with_listeners() {
        let ports = |n: usize| -> String {
            (0..n)
                .map(|i| {
                    format!(
                        "    - {{ name: p{i}, device: net_tap{i}, address: 10.0.{}.1/24 }}\n",
                        i + 1
                    )
                })
                .collect()
        };
        let start = PROXY.find("  ports:\n").unwrap() + "  ports:\n".len();
        let end = PROXY.find("  routes:").unwrap();
        let with = |n: usize| format!("{}{}{}", &PROXY[..start], ports(n), &PROXY[end..]);
        parse(&with(8)).unwrap();
        let text = with(9);
        assert_eq!(
            invalid(&text),
            (
                "dataplane.ports[8].address".to_owned(),
                Problem::TooManyL3Ports { name: "p8".into() }
            )
        );
        message(
            &text,
            &["dataplane.ports[8].address: port `p8` is the 9th port with an address, and while listeners are configured at most 8 ports may have one"],
        );
        // Without listeners there is no such limit.
        let no_listeners = {
            let text = with(9);
            let start = text.find("  listeners:").unwrap();
            let end = text.find("  clusters:").unwrap();
            format!("{}{}", &text[..start], &text[end..])
        };
        parse(&no_listeners).unwrap();
    }

    #[test]
    fn validate_cross_checks_code_built_configs() {
        let mut config = parse(PROXY).unwrap();
        config.envoy.listeners[0].address = "192.0.2.1:8000".parse().unwrap();
        let err = config.validate(ORIGIN).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/x/y.yaml: static_resources.listeners[0].address.socket_address.address: 192.0.2.1 is not"
            ),
            "{err}"
        );
        let mut config = parse(PROXY).unwrap();
        config.envoy.clusters[0].endpoints[2].address = "192.0.2.1:80".parse().unwrap();
        let err = config.validate(ORIGIN).unwrap_err();
        // Code-built: the path assumes one endpoints group.
        assert!(
            err.to_string().starts_with(
                "/x/y.yaml: static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[2]"
            ),
            "{err}"
        );
        let mut config = parse(PROXY).unwrap();
        config.dataplane.tcp.ephemeral_ports = "9-8".into();
        let err = config.validate(ORIGIN).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/x/y.yaml: dataplane.tcp.ephemeral_ports: port range 9-8 is empty"),
            "{err}"
        );
    }

    /// As `never_panics`, for a config with static_resources.
    #[test]
    fn never_panics_proxy() {
        for end in 0..=PROXY.len() {
            let _ = parse(&PROXY[..end]);
        }
        for i in 0..PROXY.len() {
            for replacement in ["", ":", "-", "{"] {
                let mut text = PROXY.to_owned();
                text.replace_range(i..=i, replacement);
                let _ = parse(&text);
            }
        }
    }
}
