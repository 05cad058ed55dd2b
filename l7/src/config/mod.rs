//! The Envoy v3 configuration zerohop's L4 layer reads: listeners with a `tcp_proxy`
//! filter, STATIC clusters and the admin address.
//!
//! Users bring configs written for Envoy, so the rule is: a config that works in Envoy
//! and uses only what is supported here loads unchanged, and anything else is an error
//! that names the YAML path and says what to do. Nothing Envoy would honour is silently
//! ignored, because a proxy that quietly behaves differently from the config in front of
//! the user is worse than one that refuses to start.
//!
//! Loading has the same three steps as zerohop's own `dataplane` config:
//! 1. parse the YAML ([`EnvoyConfigError::Yaml`]);
//! 2. fit it to Envoy's schema, limited to the supported fields
//!    ([`EnvoyConfigError::Schema`]: unknown field, wrong type, malformed duration,
//!    unsupported enum value or filter type);
//! 3. check what a type cannot express: required fields, ranges, uniqueness, references
//!    between listeners and clusters ([`EnvoyConfigError::Invalid`], with a
//!    [`Problem`]).
//!
//! # What is accepted
//!
//! ```yaml
//! admin:
//!   address:
//!     socket_address: { address: 127.0.0.1, port_value: 9901 }
//! static_resources:
//!   listeners:
//!   - name: listener_0                     # required, unique
//!     address:
//!       socket_address:
//!         address: 0.0.0.0                 # an IPv4 address; unique with the port
//!         port_value: 10000                # 1 to 65535
//!         protocol: TCP                    # optional; UDP is rejected
//!     filter_chains:                       # exactly one chain, no filter_chain_match
//!     - filters:                           # exactly one filter: tcp_proxy is terminal
//!       - name: envoy.filters.network.tcp_proxy   # optional; an annotation in Envoy v3
//!         typed_config:
//!           "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
//!           stat_prefix: destination       # required
//!           cluster: service_backend       # required; must name a cluster below
//!           idle_timeout: 300s             # optional; default 3600s, "0s" turns it off
//!   clusters:
//!   - name: service_backend                # required, unique
//!     type: STATIC                         # optional (STATIC is Envoy's default too)
//!     connect_timeout: 0.25s               # optional; default 5s, must be above 0
//!     lb_policy: ROUND_ROBIN               # ROUND_ROBIN (default), LEAST_REQUEST, RANDOM
//!     load_assignment:
//!       cluster_name: service_backend      # required by Envoy; not compared to `name`
//!       endpoints:
//!       - lb_endpoints:
//!         - endpoint:
//!             address:
//!               socket_address: { address: 10.0.0.2, port_value: 8080 }
//!           load_balancing_weight: 2       # optional; default 1, at least 1
//! ```
//!
//! Field names may also be written in their proto3 JSON lowerCamelCase form
//! (`portValue`), as Envoy allows. A filter is selected by the `@type` of its
//! `typed_config`, as in Envoy v3, where the filter's `name` is only an annotation; so
//! `name: tcp_proxy` or `name: my-proxy` load too.
//!
//! Where zerohop is stricter than Envoy, on purpose:
//! - a `tcp_proxy` whose `cluster` is not a static cluster is rejected; Envoy starts and
//!   then resets every connection (the cluster might come from CDS, which zerohop has
//!   not);
//! - a listener needs a `name` (Envoy would make one up) and a `port_value` other than 0
//!   (Envoy would pick an ephemeral port);
//! - a cluster needs at least one endpoint, and may not list the same endpoint twice
//!   (use `load_balancing_weight` instead);
//! - endpoint addresses must be IPv4 unicast literals; no names, no IPv6 yet (listener
//!   and admin addresses too are IPv4 only);
//! - an `admin` section needs an `address`, which no listener may also use;
//! - enum values are taken by name (`lb_policy: RANDOM`), not by number.
//!
//! YAML anchors and aliases work; merge keys (`<<`) do not, as in Envoy, where `<<`
//! becomes an unknown field.
//!
//! Where zerohop is as lenient as Envoy: `load_assignment.cluster_name` need not equal
//! the cluster's `name` (Envoy compares them only for EDS), and a cluster's endpoints may
//! be split over several `endpoints[]` entries; without localities or priorities these
//! are one group, and zerohop flattens them into [`Cluster::endpoints`].

mod build;
mod duration;
mod raw;

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Duration;

use serde_yaml_ng::Value;

pub use build::top_level_key_line;
pub use duration::{format_duration, parse_duration, DurationError, MAX_DURATION_SECONDS};
pub use raw::TCP_PROXY_TYPE_URL;

/// Envoy's default `connect_timeout` for a cluster.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default `idle_timeout` for a `tcp_proxy`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Top-level keys of an Envoy bootstrap that zerohop reads.
pub const SECTIONS: &[&str] = &["static_resources", "admin"];

/// The Envoy sections of a config: listeners, clusters and the admin address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvoyConfig {
    /// `static_resources.listeners`, in order.
    pub listeners: Vec<Listener>,
    /// `static_resources.clusters`, in order.
    pub clusters: Vec<Cluster>,
    /// `admin`, where given. The admin API is not built yet; the address is kept so that
    /// it can be checked against the listeners now and served later.
    pub admin: Option<Admin>,
}

/// A listener: an address to accept TCP connections on and the filter that handles them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `name`: unique among listeners; used in logs and counters.
    pub name: String,
    /// `address.socket_address`.
    pub address: SocketAddrV4,
    /// The one filter of the listener's one filter chain.
    pub filter: NetworkFilter,
}

/// A listener's network filter, selected by its `typed_config`'s `@type`.
///
/// One variant today; the HTTP connection manager will be the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkFilter {
    /// `envoy.filters.network.tcp_proxy`.
    TcpProxy(TcpProxy),
}

/// `envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`: proxy each accepted
/// connection to an endpoint of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpProxy {
    /// `stat_prefix`: the filter's counters are named `tcp.<stat_prefix>.*`, as Envoy's.
    pub stat_prefix: String,
    /// `cluster`: the name of a cluster in [`EnvoyConfig::clusters`].
    pub cluster: String,
    /// `idle_timeout`: close both sides after this long without bytes in either
    /// direction; `None` when the config sets `0s`, which turns the timeout off.
    /// [`DEFAULT_IDLE_TIMEOUT`] when the config leaves it out.
    pub idle_timeout: Option<Duration>,
}

/// A STATIC cluster: a fixed set of endpoints and how to pick one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `name`: unique among clusters; what a `tcp_proxy`'s `cluster` refers to.
    pub name: String,
    /// `connect_timeout`: how long a connection to an endpoint may take;
    /// [`DEFAULT_CONNECT_TIMEOUT`] when left out.
    pub connect_timeout: Duration,
    /// `lb_policy`.
    pub lb_policy: LbPolicy,
    /// Every `load_assignment.endpoints[].lb_endpoints[]`, in order; never empty.
    pub endpoints: Vec<Endpoint>,
}

/// `envoy.config.cluster.v3.Cluster.LbPolicy`, the values zerohop supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LbPolicy {
    /// `ROUND_ROBIN`, Envoy's default: weighted round robin over the endpoints.
    #[default]
    RoundRobin,
    /// `LEAST_REQUEST`: for TCP, fewest active connections among two random picks.
    LeastRequest,
    /// `RANDOM`: a random endpoint, weighted.
    Random,
}

impl LbPolicy {
    /// Return the name Envoy's config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "ROUND_ROBIN",
            LbPolicy::LeastRequest => "LEAST_REQUEST",
            LbPolicy::Random => "RANDOM",
        }
    }
}

impl fmt::Display for LbPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One upstream host of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `endpoint.address.socket_address`.
    pub address: SocketAddrV4,
    /// `load_balancing_weight`: at least 1, default 1. The weights of a cluster sum to at
    /// most `u32::MAX`.
    pub weight: u32,
}

/// `admin`: where the admin API will listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Admin {
    /// `admin.address.socket_address`.
    pub address: SocketAddrV4,
}

impl EnvoyConfig {
    /// Parse and check a whole Envoy config file whose top-level keys are
    /// `static_resources` and `admin`; `origin` (usually the file name) starts every
    /// error message.
    ///
    /// # Errors
    /// [`EnvoyConfigError::Yaml`] when the text is not YAML or not a mapping,
    /// [`EnvoyConfigError::Schema`] when it does not fit the supported schema (also for
    /// a top-level key other than the two), [`EnvoyConfigError::Invalid`] for a value
    /// that cannot work.
    pub fn from_yaml(text: &str, origin: &str) -> Result<EnvoyConfig, EnvoyConfigError> {
        build::from_yaml(text, origin)
    }

    /// Parse and check the two Envoy sections of a larger config, given as YAML trees:
    /// the values of its `static_resources` and `admin` keys (`None` or YAML null where
    /// absent). Error paths start with `static_resources.` and `admin.`, as in the file.
    ///
    /// Errors carry no line numbers: a `Value` has no positions.
    ///
    /// # Errors
    /// As [`EnvoyConfig::from_yaml`], except [`EnvoyConfigError::Yaml`].
    pub fn from_value(
        static_resources: Option<&Value>,
        admin: Option<&Value>,
        origin: &str,
    ) -> Result<EnvoyConfig, EnvoyConfigError> {
        build::from_value(static_resources, admin, origin)
    }

    /// Return the cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|cluster| cluster.name == name)
    }

    /// Return the listener called `name`.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|listener| listener.name == name)
    }
}

/// Everything that can go wrong loading an Envoy config.
///
/// `Display` is the whole user-facing message: origin, YAML path, what is wrong and what
/// to do. No variant has a `source()`, so that a caller printing the chain (anyhow's
/// `{:#}`) does not repeat the YAML error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvoyConfigError {
    /// The text is not YAML, or its top level is not a mapping.
    #[error("{origin}: {message}")]
    Yaml { origin: String, message: String },
    /// The YAML does not fit the supported schema: an unknown or unsupported field, a
    /// wrong type, a malformed duration, an unsupported enum value or filter type.
    #[error(
        "{origin}: {path}: {message}{}{}",
        position(*.line, *.column),
        unknown_field_hint(.message)
    )]
    Schema {
        origin: String,
        /// The YAML path, such as `static_resources.clusters[0].connect_timeout`.
        path: String,
        message: String,
        /// 1-based line and column, where known (not for [`EnvoyConfig::from_value`],
        /// nor inside a `typed_config` whose `@type` is not its first key).
        line: Option<usize>,
        column: Option<usize>,
    },
    /// The YAML fits the schema but a value cannot work.
    #[error("{origin}: {path}: {problem}")]
    Invalid {
        origin: String,
        path: String,
        problem: Problem,
    },
}

impl EnvoyConfigError {
    /// Return the YAML path the error is about, where it has one.
    pub fn path(&self) -> Option<&str> {
        match self {
            EnvoyConfigError::Yaml { .. } => None,
            EnvoyConfigError::Schema { path, .. } | EnvoyConfigError::Invalid { path, .. } => {
                Some(path)
            }
        }
    }
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line} column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// serde says "unknown field" for fields Envoy has but zerohop does not support as well
/// as for typos; say which it may be, and why it is not just ignored.
fn unknown_field_hint(message: &str) -> &'static str {
    if message.starts_with("unknown field") {
        " (zerohop supports only part of Envoy's v3 API so far, and rejects a field it does \
         not support rather than ignore it: check the spelling, or remove the field)"
    } else {
        ""
    }
}

/// Which kind of address a [`Problem`] is about; the advice differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRole {
    /// A listener's address: zerohop binds to it.
    Listener,
    /// A cluster endpoint's address: zerohop connects to it.
    Endpoint,
    /// The admin address: zerohop binds to it.
    Admin,
}

/// What is wrong with a value that fits the schema but cannot work;
/// [`EnvoyConfigError::Invalid`] adds the origin and the YAML path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("`{field}` is missing; {hint}")]
    Missing { field: &'static str, hint: String },
    #[error("`{field}` is empty; {hint}")]
    Empty { field: &'static str, hint: String },
    #[error("duplicate {what} name `{name}` (first at {first}); give each {what} its own name")]
    DuplicateName {
        what: &'static str,
        name: String,
        first: String,
    },
    #[error(
        "{address} is already the address of {first}; two listeners cannot bind one address \
         and port"
    )]
    DuplicateListenerAddress {
        address: SocketAddrV4,
        first: String,
    },
    #[error(
        "{address} is also the address of {listener}; give the admin interface a port of \
         its own"
    )]
    AdminAddressInUse {
        address: SocketAddrV4,
        listener: String,
    },
    #[error("`{address}` is not an IPv4 address; {}", address_hint(*.role))]
    NotIpv4 { address: String, role: AddressRole },
    #[error(
        "`{address}` is an IPv6 address, and zerohop's dataplane is IPv4-only so far; use \
         an IPv4 address"
    )]
    Ipv6 { address: String },
    #[error(
        "{address} is not a host an endpoint can be (it is {kind}); use the unicast IPv4 \
         address of the upstream host"
    )]
    NotAUnicastHost {
        address: std::net::Ipv4Addr,
        kind: &'static str,
    },
    #[error("port {port} {}", port_hint(*.port, *.role))]
    BadPort { port: u64, role: AddressRole },
    #[error(
        "protocol UDP is not supported: tcp_proxy and zerohop's upstream connections are \
         TCP; remove `protocol` or write `protocol: TCP`"
    )]
    Udp,
    #[error(
        "a listener needs one filter chain with a tcp_proxy filter, e.g. `filter_chains: \
         [{{ filters: [{{ name: envoy.filters.network.tcp_proxy, typed_config: {{ \"@type\": \
         {TCP_PROXY_TYPE_URL}, stat_prefix: ..., cluster: ... }} }}] }}]`"
    )]
    NoFilterChains,
    #[error(
        "zerohop supports one filter chain per listener so far (filter_chain_match is not \
         supported, so a second chain could never be chosen); move this chain to a \
         listener of its own"
    )]
    SecondFilterChain,
    #[error(
        "a filter chain needs a tcp_proxy filter: `- name: envoy.filters.network.tcp_proxy` \
         with a `typed_config` whose `\"@type\"` is {TCP_PROXY_TYPE_URL}"
    )]
    NoFilters,
    #[error(
        "tcp_proxy ({previous}) is a terminal filter: it must be the last in its chain, so \
         no filter can follow it; remove this one"
    )]
    FilterAfterTerminal { previous: String },
    #[error(
        "the filter has no `typed_config`; Envoy v3 selects a filter by the `\"@type\"` of \
         its typed_config, e.g. `typed_config: {{ \"@type\": {TCP_PROXY_TYPE_URL}, \
         stat_prefix: ..., cluster: ... }}`"
    )]
    MissingTypedConfig,
    #[error(
        "typed_config has no `\"@type\"`; Envoy v3 selects the filter by it: add \
         `\"@type\": {TCP_PROXY_TYPE_URL}`"
    )]
    MissingTypeUrl,
    #[error(
        "weighted_clusters is not supported yet; send all connections to one cluster with \
         `cluster`, and weight its endpoints with `load_balancing_weight`"
    )]
    WeightedClusters,
    #[error(
        "unknown cluster `{name}` ({}); a tcp_proxy's `cluster` must name a cluster in \
         static_resources.clusters",
        cluster_list(.known)
    )]
    UnknownCluster { name: String, known: Vec<String> },
    #[error(
        "connect_timeout must be above 0s (Envoy rejects 0s too); leave it out for the \
         default 5s"
    )]
    ZeroConnectTimeout,
    #[error(
        "the cluster has no endpoints; list at least one under \
         `load_assignment.endpoints[].lb_endpoints[]`, e.g. `- endpoint: {{ address: {{ \
         socket_address: {{ address: 10.0.0.2, port_value: 8080 }} }} }}`"
    )]
    NoEndpoints,
    #[error(
        "endpoint {address} is already listed at {first}; list each endpoint once, and use \
         `load_balancing_weight` to send it more connections"
    )]
    DuplicateEndpoint {
        address: SocketAddrV4,
        first: String,
    },
    #[error("{weight} is out of range; use 1 to 4294967295, or leave it out for the default 1")]
    BadWeight { weight: u64 },
    #[error(
        "the endpoint weights of this cluster add up to more than 4294967295, which Envoy \
         rejects; scale them down"
    )]
    WeightSumTooLarge,
}

fn address_hint(role: AddressRole) -> &'static str {
    match role {
        AddressRole::Listener => {
            "a listener binds to an IP address, such as 0.0.0.0 (every address) or 10.0.0.1"
        }
        AddressRole::Endpoint => {
            "the endpoints of a STATIC cluster are IP addresses, and zerohop does not resolve \
             names (STRICT_DNS and LOGICAL_DNS clusters are not supported yet)"
        }
        AddressRole::Admin => "the admin interface binds to an IP address, such as 127.0.0.1",
    }
}

fn port_hint(port: u64, role: AddressRole) -> &'static str {
    match (port, role) {
        (0, AddressRole::Endpoint) => {
            "cannot be connected to; use the port the upstream host listens on, 1 to 65535"
        }
        (0, _) => {
            "would make Envoy pick an ephemeral port, which zerohop does not; use a fixed \
             port from 1 to 65535"
        }
        _ => "is out of range; use 1 to 65535",
    }
}

fn cluster_list(known: &[String]) -> String {
    if known.is_empty() {
        "no clusters are defined".to_owned()
    } else {
        format!("clusters are: {}", known.join(", "))
    }
}
