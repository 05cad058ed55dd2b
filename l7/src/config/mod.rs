//! The Envoy v3 configuration zerohop's L4/L7 layer reads: listeners with a `tcp_proxy`
//! or an `http_connection_manager` filter, STATIC clusters and the admin address.
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
//!           access_log:                    # optional; also on an http_connection_manager
//!           - name: envoy.access_loggers.file   # optional; or envoy.access_loggers.stdout
//!             typed_config:
//!               "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
//!               path: /var/log/zerohop/access.log  # required; /dev/stdout works too
//!               log_format:                # optional; default: Envoy's default format
//!                 text_format_source: { inline_string: "[%START_TIME%] %UPSTREAM_HOST%\n" }
//!                                          # or text_format: "..."; or, deprecated,
//!                                          # `format: "..."` instead of log_format
//!   clusters:
//!   - name: service_backend                # required, unique
//!     type: STATIC                         # optional (STATIC is Envoy's default too)
//!     connect_timeout: 0.25s               # optional; default 5s, must be above 0
//!     lb_policy: ROUND_ROBIN               # ROUND_ROBIN (default), LEAST_REQUEST, RANDOM,
//!                                          # RING_HASH, MAGLEV, LOAD_BALANCING_POLICY_CONFIG
//!     least_request_lb_config:             # optional, with LEAST_REQUEST only
//!       choice_count: 2                    # default 2, at least 2
//!     # or, with RING_HASH: ring_hash_lb_config: { minimum_ring_size: 1024,
//!     #   maximum_ring_size: 8388608, hash_function: XX_HASH }  # sizes 1 to 8M, XX_HASH only
//!     # or, with MAGLEV: maglev_lb_config: { table_size: 65537 }  # a prime up to 5000011
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
//! Instead of `lb_policy`, a cluster may name its policy as an extension, as newer Envoy
//! configs do. Envoy uses the first policy of the list that it knows, so the first must be
//! one zerohop knows; later ones are never used, and only their shape is checked:
//!
//! ```yaml
//!     load_balancing_policy:
//!       policies:
//!       - typed_extension_config:
//!           name: envoy.load_balancing_policies.peak_ewma   # required; any name
//!           typed_config:
//!             "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma
//!             decay_time: 10s              # default 10s: the latency EWMA's time constant
//!             default_rtt: 0.010s          # default 10ms: an idle, unmeasured endpoint's
//!             penalty_value: 1000000       # default 1e6: a busy, unmeasured endpoint's cost
//!             aggregation_interval: 0.1s   # accepted, no effect: both size Envoy's
//!             max_samples_per_host: 1000   #   cross-thread sample buffers
//! ```
//!
//! The other policies, under `type.googleapis.com/envoy.extensions.load_balancing_policies.`:
//! `round_robin.v3.RoundRobin` and `random.v3.Random` (no fields),
//! `least_request.v3.LeastRequest` (`choice_count`), `ring_hash.v3.RingHash`
//! (`hash_function: DEFAULT_HASH` or `XX_HASH`, `minimum_ring_size`, `maximum_ring_size`)
//! and `maglev.v3.Maglev` (`table_size`). Peak EWMA is an Envoy contrib extension
//! (`contrib/peak_ewma`, in Envoy's contrib builds only): it has no `lb_policy` value, so
//! `lb_policy: PEAK_EWMA` is an unknown enum value here as in Envoy.
//!
//! A listener may instead hold an HTTP connection manager (HTTP/1.1), with its route
//! table inline:
//!
//! ```yaml
//!     filter_chains:
//!     - filters:                           # exactly one filter: the HCM is terminal too
//!       - name: envoy.filters.network.http_connection_manager
//!         typed_config:
//!           "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
//!           stat_prefix: ingress_http      # required
//!           codec_type: AUTO               # AUTO (default; behaves as HTTP1) or HTTP1
//!           common_http_protocol_options:
//!             idle_timeout: 3600s          # default 3600s; "0s" turns it off
//!           request_headers_timeout: 10s   # default off ("0s")
//!           stream_idle_timeout: 300s      # default 300s; "0s" turns it off
//!           request_timeout: 0s            # default off
//!           max_request_headers_kb: 60     # default 60, 1 to 8192
//!           use_remote_address: false      # default false
//!           xff_num_trusted_hops: 0        # default 0
//!           generate_request_id: true      # default true
//!           http_filters:                  # required: the router, last
//!           - name: envoy.filters.http.buffer          # optional; before the router
//!             typed_config:
//!               "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
//!               max_request_bytes: 1048576 # required, 1 to 4294967295; a larger body: 413
//!           - name: envoy.filters.http.router          # required
//!             typed_config:                # optional for the router (found by name)
//!               "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
//!           route_config:                  # required, inline (`rds` is not supported)
//!             name: local_route            # optional
//!             most_specific_header_mutations_wins: false   # optional
//!             ignore_port_in_host_matching: false          # optional
//!             max_direct_response_body_size_bytes: 4096    # optional
//!             validate_clusters: true      # optional; zerohop always checks clusters
//!             request_headers_to_add:      # these four lists also on virtual hosts
//!             - header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS%" }
//!               append_action: APPEND_IF_EXISTS_OR_ADD  # or ADD_IF_ABSENT,
//!                                          # OVERWRITE_IF_EXISTS_OR_ADD,
//!                                          # OVERWRITE_IF_EXISTS; or `append: bool`
//!               keep_empty_value: false
//!             request_headers_to_remove: [x-internal]
//!             response_headers_to_add: []
//!             response_headers_to_remove: []
//!             virtual_hosts:
//!             - name: backend              # required
//!               domains: ["example.com", "example.com:8080", "*.example.com",
//!                         "example.*", "*"]            # required; unique; one `*`
//!               routes:
//!               - name: api                # optional
//!                 match:                   # required; one of prefix, path,
//!                   prefix: /api/          # safe_regex: { regex }, path_separated_prefix
//!                   case_sensitive: true   # default true
//!                   headers:               # all must match
//!                   - name: x-env          # or :authority, :method, :path, :scheme
//!                     string_match: { exact: prod, ignore_case: false }
//!                                          # or exact|prefix|suffix|contains|safe_regex,
//!                                          # present_match, exact_match, prefix_match,
//!                                          # suffix_match, contains_match,
//!                                          # safe_regex_match
//!                     invert_match: false
//!                     treat_missing_header_as_empty: false
//!                   query_parameters:      # all must match
//!                   - { name: v, string_match: { exact: "2" } }  # or present_match: true
//!                 route:                   # or redirect, or direct_response
//!                   cluster: service_backend    # or weighted_clusters:
//!                                          #   { clusters: [{ name, weight }], total_weight }
//!                   prefix_rewrite: /      # or regex_rewrite: { pattern: { regex },
//!                                          #   substitution: "\\1" }
//!                   host_rewrite_literal: api.internal   # or auto_host_rewrite
//!                   timeout: 15s           # default 15s; "0s" turns it off
//!                   hash_policy:           # header: { header_name }, cookie: { name,
//!                   - header: { header_name: x-user }   # ttl, path }, query_parameter:
//!                     terminal: false      # { name }, connection_properties: { source_ip }
//!                 # the four header lists may follow here too
//!               - match: { path: /old }
//!                 redirect:                # all optional
//!                   https_redirect: true   # or scheme_redirect: https
//!                   host_redirect: www.example.com
//!                   port_redirect: 8443
//!                   path_redirect: /new    # or prefix_rewrite, or regex_rewrite
//!                   response_code: MOVED_PERMANENTLY   # default; or FOUND, SEE_OTHER,
//!                                          # TEMPORARY_REDIRECT, PERMANENT_REDIRECT
//!                   strip_query: false
//!               - match: { path: /healthz }
//!                 direct_response:
//!                   status: 200            # required, 100 to 599
//!                   body: { inline_string: ok }        # optional
//! ```
//!
//! Before the router, `http_filters` may also hold `envoy.filters.http.local_ratelimit`,
//! `envoy.filters.http.fault`, `envoy.filters.http.header_mutation` and Envoy's contrib
//! `envoy.filters.http.peak_ewma` (`docs/envoy-compat.md` lists their fields).
//!
//! A cluster that HTTP routes send to may set its upstream connections' options in
//! Envoy's HTTP protocol options extension, the one key of
//! `typed_extension_protocol_options` zerohop knows:
//!
//! ```yaml
//!   clusters:
//!   - name: service_backend
//!     typed_extension_protocol_options:    # optional
//!       envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
//!         "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
//!         common_http_protocol_options:    # optional
//!           idle_timeout: 3600s            # default 3600s; "0s" turns it off
//!           max_requests_per_connection: 1000   # default (and 0): no limit; not
//!                                          # together with the cluster's own (deprecated)
//!                                          # `max_requests_per_connection`
//!         explicit_http_config:            # required, as in Envoy: HTTP/1.1 only
//!           http_protocol_options: {}      # required, and empty
//! ```
//!
//! A header value may hold Envoy's format variables `%DOWNSTREAM_REMOTE_ADDRESS%`,
//! `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`, `%DOWNSTREAM_LOCAL_ADDRESS%`,
//! `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`, `%UPSTREAM_REMOTE_ADDRESS%`, `%PROTOCOL%`,
//! `%START_TIME%` and `%REQ(name?alternative):length%`, and `%%` for a `%`; they are
//! parsed when the config loads ([`HeaderValueTemplate`]), and any other is an error.
//! Regexes use RE2 syntax, which the `regex` crate follows (no look-around, no
//! backreferences); a `safe_regex` matches the whole path or value, as in Envoy.
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
//! - enum values are taken by name (`lb_policy: RANDOM`), not by number;
//! - a route's `cluster` (and each of its `weighted_clusters`) must be a static cluster
//!   whatever `validate_clusters` says; Envoy with `validate_clusters: false` would load
//!   and answer 404;
//! - a weighted cluster needs a `weight` (Envoy takes a missing one as 0), and a
//!   `total_weight`, if given, must equal the sum of the weights (newer Envoy ignores
//!   the deprecated field);
//! - a header matcher on `host` is rejected (Envoy keeps the Host header as
//!   `:authority`, so it would never match), and so are pseudo-headers other than
//!   `:authority`, `:method`, `:path` and `:scheme`;
//! - header names must be HTTP tokens, and a domain may not be empty or hold whitespace;
//! - a query parameter matcher takes `present_match: true` only;
//! - a `regex_rewrite` substitution may only use `\0` to `\9` for groups the pattern
//!   has, and `\\` for a backslash; Envoy does not check it when it loads the config;
//! - neither `lb_policy` (other than LOAD_BALANCING_POLICY_CONFIG) nor a
//!   `ring_hash_lb_config`, `maglev_lb_config` or `least_request_lb_config` may be given
//!   with `load_balancing_policy`: Envoy ignores them then;
//! - `minimum_ring_size` and `maximum_ring_size` must be at least 1 (Envoy would build an
//!   empty ring, which picks nothing), and Peak EWMA's `penalty_value` finite and at
//!   least 0.
//!
//! Where zerohop does less than Envoy, knowingly: `codec_type: AUTO` accepts HTTP/1.1
//! only (Envoy would also detect HTTP/2 with prior knowledge); upstream connections are
//! HTTP/1.1 only (`http2_protocol_options`, `http3_protocol_options`,
//! `use_downstream_protocol_config` and `auto_config` are errors, and so is any field of
//! `http_protocol_options`); `auto_host_rewrite` has
//! no effect, as in Envoy for STATIC clusters; RING_HASH takes `XX_HASH` only (not
//! `MURMUR_HASH_2`); LEAST_REQUEST with unequal weights compares weighted random picks
//! (Envoy switches to a weighted schedule scaled by `active_request_bias`); Peak EWMA
//! keeps one latency estimate per worker, updated at each sample (Envoy merges the
//! workers' samples every `aggregation_interval`).
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
mod filters;
mod raw;
mod resilience;

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Duration;

use serde_yaml_ng::Value;

pub use build::top_level_key_line;
pub(crate) use build::{anchored, is_prime, rust_substitution};
pub use duration::{format_duration, parse_duration, DurationError, MAX_DURATION_SECONDS};
pub use filters::{
    BufferFilter, FaultFilter, FractionalPercent, HeaderMutationFilter, HeaderMutationOp,
    LocalRateLimitFilter,
};
pub use raw::{
    HTTP_CONNECTION_MANAGER_TYPE_URL, ROUTER_FILTER_NAME, ROUTER_TYPE_URL, TCP_PROXY_TYPE_URL,
};
pub use resilience::*;

pub use raw::{FILE_ACCESS_LOG_TYPE_URL, STDERR_ACCESS_LOG_TYPE_URL, STDOUT_ACCESS_LOG_TYPE_URL};

/// Envoy's default `connect_timeout` for a cluster.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default `idle_timeout` for a `tcp_proxy`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default `common_http_protocol_options.idle_timeout` for an
/// `http_connection_manager`.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default `common_http_protocol_options.idle_timeout` of a cluster's
/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`: how long a pooled upstream
/// connection may stay without a request.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default `stream_idle_timeout` for an `http_connection_manager`.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's default `timeout` of a route's `route` action.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's default `max_request_headers_kb`.
pub const DEFAULT_MAX_REQUEST_HEADERS_KB: u32 = 60;
/// The largest `max_request_headers_kb` Envoy takes.
pub const MAX_REQUEST_HEADERS_KB: u32 = 8192;
/// Envoy's default `max_direct_response_body_size_bytes`.
pub const DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE: u32 = 4096;
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

/// A listener's network filter, selected by its `typed_config`'s `@type`. Both are
/// terminal: each is the one filter of its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
// An HttpConnectionManager is much larger than a TcpProxy; there is one per listener,
// built once, so boxing it would only add a step for every reader.
#[allow(clippy::large_enum_variant)]
pub enum NetworkFilter {
    /// `envoy.filters.network.tcp_proxy`.
    TcpProxy(TcpProxy),
    /// `envoy.filters.network.http_connection_manager`.
    HttpConnectionManager(HttpConnectionManager),
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
    /// `access_log`: one line per connection, when it ends.
    pub access_log: Vec<AccessLog>,
}

/// An `access_log` entry of an http_connection_manager or a tcp_proxy: Envoy's file
/// logger (`envoy.access_loggers.file`), or its stdout/stderr logger as a file logger
/// on [`crate::access_log::STDOUT_PATH`] / [`crate::access_log::STDERR_PATH`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// `path`: the file to append to (created if missing).
    pub path: String,
    /// The text format (`log_format.text_format_source.inline_string`,
    /// `log_format.text_format` or the deprecated `format`), checked when the config
    /// loads; [`crate::access_log::DEFAULT_FORMAT`] (Envoy's) when none is given.
    pub format: String,
}

/// `envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`:
/// parse HTTP/1.1 requests on each accepted connection, route each by its
/// [`RouteConfig`] and proxy it to a cluster (or answer it locally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConnectionManager {
    /// `stat_prefix`: the manager's counters are named `http.<stat_prefix>.*`, as Envoy's.
    pub stat_prefix: String,
    /// `codec_type`.
    pub codec_type: CodecType,
    /// `route_config`: the inline route table.
    pub route_config: RouteConfig,
    /// `http_filters`, in order; never empty, and the last one is the router.
    pub http_filters: Vec<HttpFilter>,
    /// `common_http_protocol_options.idle_timeout`: close a connection after this long
    /// without an active request; [`DEFAULT_HTTP_IDLE_TIMEOUT`] when left out, `None` when
    /// the config sets `0s`.
    pub idle_timeout: Option<Duration>,
    /// `request_headers_timeout`: how long the request head may take to arrive from its
    /// first byte; `None` (Envoy's default) turns it off.
    pub request_headers_timeout: Option<Duration>,
    /// `stream_idle_timeout`: reset a request after this long without activity;
    /// [`DEFAULT_STREAM_IDLE_TIMEOUT`] when left out, `None` when the config sets `0s`.
    pub stream_idle_timeout: Option<Duration>,
    /// `request_timeout`: how long the whole request may take to arrive; `None` (Envoy's
    /// default) turns it off.
    pub request_timeout: Option<Duration>,
    /// `max_request_headers_kb`: a request head larger than this many KiB is answered with
    /// 431; 1 to [`MAX_REQUEST_HEADERS_KB`], default [`DEFAULT_MAX_REQUEST_HEADERS_KB`].
    pub max_request_headers_kb: u32,
    /// `use_remote_address`: take the client's address from the connection (and append
    /// it to `x-forwarded-for`) rather than from `x-forwarded-for`. Default false.
    pub use_remote_address: bool,
    /// `xff_num_trusted_hops`: how many proxies' entries at the end of
    /// `x-forwarded-for` to trust. Default 0.
    pub xff_num_trusted_hops: u32,
    /// `generate_request_id`: add an `x-request-id` to requests without one. Default true.
    pub generate_request_id: bool,
    /// `access_log`: one line per request, when it ends.
    pub access_log: Vec<AccessLog>,
}

/// `HttpConnectionManager.CodecType`, the values zerohop supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CodecType {
    /// `AUTO`, Envoy's default. Envoy would also detect HTTP/2 with prior knowledge;
    /// zerohop speaks HTTP/1.1 only, so AUTO behaves as HTTP1.
    #[default]
    Auto,
    /// `HTTP1`.
    Http1,
}

/// An entry of `http_filters`, selected by its `typed_config`'s `@type` (or, for the
/// router, by its `name` when it has no `typed_config`).
///
/// Each HTTP filter zerohop knows is a variant holding its own config struct and
/// `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpFilter {
    /// `envoy.filters.http.router`: the terminal filter that forwards a request along its
    /// route; always the last.
    Router(RouterFilter),
    /// `envoy.filters.http.local_ratelimit`: a token bucket; 429 when empty.
    LocalRateLimit(LocalRateLimitFilter),
    /// `envoy.filters.http.fault`: injected delays and aborts.
    Fault(FaultFilter),
    /// `envoy.filters.http.header_mutation`: header changes both ways.
    HeaderMutation(HeaderMutationFilter),
    /// Envoy's contrib `envoy.filters.http.peak_ewma` (empty config): marks that the
    /// peak EWMA load balancer gets latency samples (zerohop takes them always).
    PeakEwma(RouterFilter),
    /// `envoy.filters.http.buffer`: the request body is read whole before the request
    /// goes on.
    Buffer(BufferFilter),
}

impl HttpFilter {
    /// Return the filter's `name`, which keys its per-route config in Envoy.
    pub fn name(&self) -> &str {
        match self {
            HttpFilter::Router(router) => &router.name,
            HttpFilter::LocalRateLimit(f) => &f.name,
            HttpFilter::Fault(f) => &f.name,
            HttpFilter::HeaderMutation(f) => &f.name,
            HttpFilter::PeakEwma(f) => &f.name,
            HttpFilter::Buffer(f) => &f.name,
        }
    }
}

/// `envoy.extensions.filters.http.router.v3.Router`. None of its fields is supported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterFilter {
    /// The filter's `name` (Envoy requires one).
    pub name: String,
}

/// `envoy.config.route.v3.RouteConfiguration`, inline in an `http_connection_manager`.
///
/// Regexes are kept as the validated text (so that the config stays comparable);
/// [`crate::http::route::RouteTable`] compiles them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// `name`; empty when left out.
    pub name: String,
    /// `virtual_hosts`, in order.
    pub virtual_hosts: Vec<VirtualHost>,
    /// The header mutations of the route configuration level, applied to every request
    /// and response routed by it.
    pub headers: HeaderMutations,
    /// `most_specific_header_mutations_wins`: apply route configuration level mutations
    /// first and route level last (default false: route level first).
    pub most_specific_header_mutations_wins: bool,
    /// `ignore_port_in_host_matching`: drop the port of the `Host` header before looking
    /// up a virtual host (default false: `example.com:8080` does not match the domain
    /// `example.com`).
    pub ignore_port_in_host_matching: bool,
}

/// A level's `request_headers_to_add`, `request_headers_to_remove`,
/// `response_headers_to_add` and `response_headers_to_remove`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderMutations {
    /// `request_headers_to_add`, in order.
    pub request_headers_to_add: Vec<HeaderValueOption>,
    /// `request_headers_to_remove`, lowercased.
    pub request_headers_to_remove: Vec<String>,
    /// `response_headers_to_add`, in order.
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// `response_headers_to_remove`, lowercased.
    pub response_headers_to_remove: Vec<String>,
}

impl HeaderMutations {
    /// Whether there is nothing to add or remove.
    pub fn is_empty(&self) -> bool {
        self.request_headers_to_add.is_empty()
            && self.request_headers_to_remove.is_empty()
            && self.response_headers_to_add.is_empty()
            && self.response_headers_to_remove.is_empty()
    }
}

/// `envoy.config.core.v3.HeaderValueOption`: a header to add, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValueOption {
    /// `header.key`, lowercased.
    pub key: String,
    /// `header.value`, parsed into literal text and format variables.
    pub value: HeaderValueTemplate,
    /// `append_action` (or the deprecated `append`).
    pub append_action: HeaderAppendAction,
    /// `keep_empty_value`: add the header even when its value comes out empty (by default
    /// Envoy drops it, e.g. for a `%REQ(x)%` of a missing header).
    pub keep_empty_value: bool,
}

/// `HeaderValueOption.HeaderAppendAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HeaderAppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD`, the default (and `append: true`): add another field.
    #[default]
    AppendIfExistsOrAdd,
    /// `ADD_IF_ABSENT`: add the field only if the message has none of that name.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD` (and `append: false`): replace every field of that
    /// name with this one.
    OverwriteIfExistsOrAdd,
    /// `OVERWRITE_IF_EXISTS`: replace the fields of that name, if there are any.
    OverwriteIfExists,
}

/// A header value as configured: literal text and Envoy format variables
/// (`%DOWNSTREAM_REMOTE_ADDRESS%`), parsed when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderValueTemplate {
    /// The pieces in order; adjacent literals are merged.
    pub parts: Vec<ValuePart>,
}

impl HeaderValueTemplate {
    /// Return the value when it has no variables.
    pub fn as_literal(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|part| match part {
                ValuePart::Literal(text) => Some(text.as_str()),
                ValuePart::Variable(_) => None,
            })
            .collect()
    }
}

/// A piece of a [`HeaderValueTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePart {
    /// Text copied as it is (`%%` in the config is one `%` here).
    Literal(String),
    /// A `%VARIABLE%`, filled in per request.
    Variable(FormatVariable),
}

/// The Envoy format variables zerohop can fill in a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatVariable {
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`: the client's address and port.
    DownstreamRemoteAddress,
    /// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`.
    DownstreamRemoteAddressWithoutPort,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`: the address and port the client connected to.
    DownstreamLocalAddress,
    /// `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`.
    DownstreamLocalAddressWithoutPort,
    /// `%UPSTREAM_REMOTE_ADDRESS%`: the upstream endpoint's address and port, once known.
    UpstreamRemoteAddress,
    /// `%PROTOCOL%`: `HTTP/1.1` or `HTTP/1.0`.
    Protocol,
    /// `%START_TIME%`: when the request started, as Envoy's default
    /// `2024-05-01T12:00:00.000Z`.
    StartTime,
    /// `%REQ(name?alternative):max_length%`: the first value of a request header (or of
    /// `alternative` when `name` is absent), cut to `max_length` bytes.
    RequestHeader {
        /// The header, lowercased; may be `:authority`, `:path`, `:method` or `:scheme`.
        name: String,
        /// The header to use when `name` is absent.
        alternative: Option<String>,
        /// Cut the value to this many bytes.
        max_length: Option<usize>,
    },
}

/// `envoy.config.route.v3.VirtualHost`: the routes for a set of domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    /// `domains`, lowercased as Envoy does; never empty. Each is exact (`example.com`,
    /// `example.com:8080`), a suffix wildcard (`*.example.com`), a prefix wildcard
    /// (`example.*`) or `*`.
    pub domains: Vec<String>,
    /// `routes`, in order: the first that matches is taken.
    pub routes: Vec<Route>,
    /// The virtual host level header mutations.
    pub headers: HeaderMutations,
    /// `retry_policy`: for the routes that have none (already copied into their
    /// [`RouteAction::retry_policy`]).
    pub retry_policy: Option<RetryPolicy>,
}

/// `envoy.config.route.v3.Route`: a match and what to do with what matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `name`; empty when left out.
    pub name: String,
    /// `match`.
    pub route_match: RouteMatch,
    /// `route`, `redirect` or `direct_response`.
    pub action: Action,
    /// The route level header mutations.
    pub headers: HeaderMutations,
}

/// `envoy.config.route.v3.RouteMatch`: every part must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// `prefix`, `path`, `safe_regex` or `path_separated_prefix`.
    pub path: PathMatch,
    /// `case_sensitive` (default true); applies to `prefix`, `path` and
    /// `path_separated_prefix`, not to `safe_regex`, as in Envoy.
    pub case_sensitive: bool,
    /// `headers`: every one must match.
    pub headers: Vec<HeaderMatcher>,
    /// `query_parameters`: every one must match.
    pub query_parameters: Vec<QueryParameterMatcher>,
}

/// How a route matches the path (the request target without its query string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `prefix`: the path starts with it.
    Prefix(String),
    /// `path`: the path is exactly it.
    Path(String),
    /// `safe_regex.regex`: the regex matches the whole path (RE2 syntax, which the
    /// `regex` crate follows).
    SafeRegex(String),
    /// `path_separated_prefix`: the path is it, or starts with it followed by `/`.
    PathSeparatedPrefix(String),
}

/// `envoy.config.route.v3.HeaderMatcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatcher {
    /// `name`, lowercased; may be `:authority`, `:method`, `:path` or `:scheme`.
    pub name: String,
    /// How the value is matched.
    pub rule: HeaderMatchRule,
    /// `invert_match`: match when the rule does not. A missing header still does not
    /// match a value rule, inverted or not (unless `treat_missing_header_as_empty`).
    pub invert_match: bool,
    /// `treat_missing_header_as_empty`: match a value rule against "" when the header is
    /// missing.
    pub treat_missing_header_as_empty: bool,
}

/// What a [`HeaderMatcher`] checks. A header sent several times is matched as its values
/// joined by `,`, as Envoy does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatchRule {
    /// `present_match` (and a matcher with no rule, or the legacy `exact_match: ""`):
    /// true matches when the header is present, false when it is absent.
    Present(bool),
    /// `string_match`, or one of the legacy `exact_match`, `prefix_match`,
    /// `suffix_match`, `contains_match`, `safe_regex_match`.
    Value(StringMatcher),
}

/// `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringMatcher {
    /// The pattern.
    pub pattern: StringPattern,
    /// `ignore_case`: ASCII case-insensitive; no effect on `safe_regex`, as in Envoy.
    pub ignore_case: bool,
}

/// The pattern of a [`StringMatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringPattern {
    /// `exact`.
    Exact(String),
    /// `prefix` (not empty).
    Prefix(String),
    /// `suffix` (not empty).
    Suffix(String),
    /// `contains` (not empty).
    Contains(String),
    /// `safe_regex.regex`: matches the whole value.
    SafeRegex(String),
}

/// `envoy.config.route.v3.QueryParameterMatcher`. The query string is split at `&` and
/// each part at its first `=`, without percent-decoding, and only the first value of a
/// name counts, as in Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParameterMatcher {
    /// `name`, case-sensitive.
    pub name: String,
    /// `string_match`; `None` for `present_match: true` (or no rule): the parameter
    /// must be present.
    pub value: Option<StringMatcher>,
}

/// What a route does with a request it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `route`: proxy it to a cluster.
    Route(RouteAction),
    /// `redirect`: answer with a redirect.
    Redirect(RedirectAction),
    /// `direct_response`: answer with a fixed response.
    DirectResponse(DirectResponseAction),
}

/// `envoy.config.route.v3.RouteAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAction {
    /// `cluster` or `weighted_clusters`.
    pub cluster: ClusterSpecifier,
    /// `prefix_rewrite`: replace the matched prefix (or path) with this; `None` when left
    /// out or empty.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite`: substitute every match in the path (the query string is kept).
    pub regex_rewrite: Option<RegexRewrite>,
    /// `host_rewrite_literal` or `auto_host_rewrite`.
    pub host_rewrite: Option<HostRewrite>,
    /// `timeout`: for the whole upstream exchange; [`DEFAULT_ROUTE_TIMEOUT`] when left
    /// out, `None` when the config sets `0s`.
    pub timeout: Option<Duration>,
    /// `hash_policy`, in order. Only hashing load balancers use it, and zerohop has none
    /// yet; it is kept so that it can be checked now and used later.
    pub hash_policy: Vec<HashPolicy>,
    /// `retry_policy`, or the virtual host's when the route has none.
    pub retry_policy: Option<RetryPolicy>,
    /// `idle_timeout`: replaces the connection manager's `stream_idle_timeout`
    /// for this route; `None` when left out, [`Duration::ZERO`] when the config
    /// sets `0s` (off).
    pub idle_timeout: Option<Duration>,
}

/// Which cluster a [`RouteAction`] sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterSpecifier {
    /// `cluster`: one cluster, by name.
    Cluster(String),
    /// `weighted_clusters.clusters`: one of several, by weight; the weights add up to
    /// more than 0 and at most `u32::MAX`.
    WeightedClusters(Vec<ClusterWeight>),
}

/// `WeightedCluster.ClusterWeight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterWeight {
    /// `name`: a cluster in [`EnvoyConfig::clusters`].
    pub name: String,
    /// `weight`; 0 means never picked.
    pub weight: u32,
}

/// `envoy.type.matcher.v3.RegexMatchAndSubstitute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexRewrite {
    /// `pattern.regex`, as written.
    pub pattern: String,
    /// `substitution`, as written: RE2 syntax, `\1` for the first group.
    pub substitution: String,
}

/// How a [`RouteAction`] rewrites the `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRewrite {
    /// `host_rewrite_literal`.
    Literal(String),
    /// `auto_host_rewrite: true`: use the upstream host's name. Envoy does this only for
    /// DNS clusters; with STATIC clusters (zerohop's only kind) it has no effect.
    Auto,
}

/// `RouteAction.HashPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPolicy {
    /// What the hash is computed from.
    pub source: HashSource,
    /// `terminal`: stop at this policy when it produced a hash.
    pub terminal: bool,
}

/// The `policy_specifier` of a [`HashPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashSource {
    /// `header.header_name`, lowercased.
    Header(String),
    /// `cookie`.
    Cookie {
        /// `name`.
        name: String,
        /// `ttl`: generate the cookie with this lifetime when absent (`0s`: a session
        /// cookie); `None`: do not generate it.
        ttl: Option<Duration>,
        /// `path` of a generated cookie.
        path: Option<String>,
    },
    /// `connection_properties.source_ip`: hash the client's address (when true).
    SourceIp(bool),
    /// `query_parameter.name`.
    QueryParameter(String),
}

/// `envoy.config.route.v3.RedirectAction`: what the `Location` of the redirect is made
/// of. What is not set here comes from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectAction {
    /// `scheme_redirect`, or `https` for `https_redirect: true`.
    pub scheme: Option<String>,
    /// `host_redirect`.
    pub host: Option<String>,
    /// `port_redirect`.
    pub port: Option<u16>,
    /// `path_redirect`, `prefix_rewrite` or `regex_rewrite`.
    pub path: Option<RedirectPath>,
    /// `response_code`.
    pub response_code: RedirectResponseCode,
    /// `strip_query`: drop the request's query string (not one in `path_redirect`).
    pub strip_query: bool,
}

/// The path part of a [`RedirectAction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectPath {
    /// `path_redirect`: the whole path; its own query string, if it has one, replaces
    /// the request's.
    Path(String),
    /// `prefix_rewrite`: replace the matched prefix.
    PrefixRewrite(String),
    /// `regex_rewrite`.
    RegexRewrite(RegexRewrite),
}

/// `RedirectAction.RedirectResponseCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RedirectResponseCode {
    /// `MOVED_PERMANENTLY`, 301, the default.
    #[default]
    MovedPermanently,
    /// `FOUND`, 302.
    Found,
    /// `SEE_OTHER`, 303.
    SeeOther,
    /// `TEMPORARY_REDIRECT`, 307.
    TemporaryRedirect,
    /// `PERMANENT_REDIRECT`, 308.
    PermanentRedirect,
}

impl RedirectResponseCode {
    /// Return the HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            RedirectResponseCode::MovedPermanently => 301,
            RedirectResponseCode::Found => 302,
            RedirectResponseCode::SeeOther => 303,
            RedirectResponseCode::TemporaryRedirect => 307,
            RedirectResponseCode::PermanentRedirect => 308,
        }
    }
}

/// `envoy.config.route.v3.DirectResponseAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponseAction {
    /// `status`, 100 to 599.
    pub status: u16,
    /// `body.inline_string`; at most the route configuration's
    /// `max_direct_response_body_size_bytes` (default
    /// [`DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE`]).
    pub body: Option<String>,
}

/// A STATIC cluster: a fixed set of endpoints and how to pick one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `name`: unique among clusters; what a `tcp_proxy`'s `cluster` refers to.
    pub name: String,
    /// `connect_timeout`: how long a connection to an endpoint may take;
    /// [`DEFAULT_CONNECT_TIMEOUT`] when left out.
    pub connect_timeout: Duration,
    /// `lb_policy` with its `*_lb_config`, or the first of `load_balancing_policy.policies`.
    pub lb_policy: LbPolicy,
    /// Every `load_assignment.endpoints[].lb_endpoints[]`, in order; never empty.
    pub endpoints: Vec<Endpoint>,
    /// `max_requests_per_connection`, or (not both) the
    /// `common_http_protocol_options.max_requests_per_connection` of its
    /// `typed_extension_protocol_options`' HttpProtocolOptions: an upstream HTTP
    /// connection serves at most this many requests; `None` (absent or 0): no limit.
    pub max_requests_per_connection: Option<u32>,
    /// `common_http_protocol_options.idle_timeout` of its
    /// `typed_extension_protocol_options`' HttpProtocolOptions: a pooled upstream HTTP
    /// connection without a request for this long is closed;
    /// [`DEFAULT_UPSTREAM_IDLE_TIMEOUT`] when left out (or with no protocol options),
    /// `None` when the config sets `0s`.
    pub upstream_idle_timeout: Option<Duration>,
    /// `health_checks`: at most one (zerohop runs one active check per cluster).
    pub health_check: Option<HealthCheck>,
    /// `outlier_detection`; `None` when left out (no passive ejection).
    pub outlier_detection: Option<OutlierDetection>,
    /// `circuit_breakers.thresholds[]` of priority `DEFAULT`; Envoy's defaults
    /// when left out.
    pub circuit_breakers: CircuitBreakers,
    /// `common_lb_config.healthy_panic_threshold.value`: below this percentage of
    /// healthy endpoints, every endpoint takes traffic; default
    /// [`DEFAULT_HEALTHY_PANIC_THRESHOLD`], 0 turns panic mode off.
    pub healthy_panic_threshold: Percent,
}

/// Envoy's default `least_request_lb_config.choice_count`.
pub const DEFAULT_CHOICE_COUNT: u32 = 2;
/// Envoy's default `ring_hash_lb_config.minimum_ring_size`.
pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
/// The largest ring Envoy builds (8M entries), and its default `maximum_ring_size`.
pub const MAX_RING_SIZE: u64 = 8_388_608;
/// Envoy's default `maglev_lb_config.table_size`.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65_537;
/// The largest Maglev `table_size` Envoy takes.
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;
/// Envoy's (and Finagle's) default Peak EWMA `decay_time`.
pub const DEFAULT_PEAK_EWMA_DECAY_TIME: Duration = Duration::from_secs(10);
/// Envoy's default Peak EWMA `default_rtt`.
pub const DEFAULT_PEAK_EWMA_RTT: Duration = Duration::from_millis(10);
/// Envoy's default Peak EWMA `penalty_value`.
pub const DEFAULT_PEAK_EWMA_PENALTY: f64 = 1_000_000.0;

/// How a cluster picks an endpoint: `envoy.config.cluster.v3.Cluster.LbPolicy` with its
/// settings, whether written as `lb_policy` (and `*_lb_config`) or as the
/// `load_balancing_policy` extension that stands for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LbPolicy {
    /// `ROUND_ROBIN`, Envoy's default: weighted round robin over the endpoints.
    #[default]
    RoundRobin,
    /// `LEAST_REQUEST`: the least loaded of `choice_count` weighted random picks (open
    /// connections for TCP, requests in flight for HTTP).
    LeastRequest {
        /// `least_request_lb_config.choice_count`: at least 2, default
        /// [`DEFAULT_CHOICE_COUNT`].
        choice_count: u32,
    },
    /// `RANDOM`: a random endpoint, weighted.
    Random,
    /// `RING_HASH`: consistent hashing of the route's `hash_policy` on a Ketama ring.
    RingHash(RingHashConfig),
    /// `MAGLEV`: consistent hashing of the route's `hash_policy` in a Maglev table.
    Maglev {
        /// `maglev_lb_config.table_size`: a prime up to [`MAX_MAGLEV_TABLE_SIZE`],
        /// default [`DEFAULT_MAGLEV_TABLE_SIZE`].
        table_size: u64,
    },
    /// `envoy.load_balancing_policies.peak_ewma` (an Envoy contrib extension, given in
    /// `load_balancing_policy`): the cheaper of two random endpoints, the cost being the
    /// peak EWMA of its latency × (requests in flight + 1).
    PeakEwma(PeakEwmaConfig),
}

impl LbPolicy {
    /// Return the name Envoy's config uses: the `lb_policy` value, or for Peak EWMA
    /// (which has none) the extension's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "ROUND_ROBIN",
            LbPolicy::LeastRequest { .. } => "LEAST_REQUEST",
            LbPolicy::Random => "RANDOM",
            LbPolicy::RingHash(_) => "RING_HASH",
            LbPolicy::Maglev { .. } => "MAGLEV",
            LbPolicy::PeakEwma(_) => "envoy.load_balancing_policies.peak_ewma",
        }
    }
}

/// `ring_hash_lb_config` (or the `ring_hash` extension's fields). The hash function is
/// always xxHash (`XX_HASH`, Envoy's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingHashConfig {
    /// `minimum_ring_size`: 1 to [`MAX_RING_SIZE`], default
    /// [`DEFAULT_MINIMUM_RING_SIZE`].
    pub minimum_ring_size: u64,
    /// `maximum_ring_size`: `minimum_ring_size` to [`MAX_RING_SIZE`], default
    /// [`MAX_RING_SIZE`].
    pub maximum_ring_size: u64,
}

impl Default for RingHashConfig {
    fn default() -> RingHashConfig {
        RingHashConfig {
            minimum_ring_size: DEFAULT_MINIMUM_RING_SIZE,
            maximum_ring_size: MAX_RING_SIZE,
        }
    }
}

/// `envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma`, the fields
/// that change how zerohop picks (`aggregation_interval` and `max_samples_per_host`
/// size Envoy's cross-thread sample buffers, which zerohop has not).
#[derive(Debug, Clone, Copy)]
pub struct PeakEwmaConfig {
    /// `decay_time`: the EWMA's time constant; default [`DEFAULT_PEAK_EWMA_DECAY_TIME`].
    pub decay_time: Duration,
    /// `default_rtt`: the latency of an idle endpoint not measured yet; default
    /// [`DEFAULT_PEAK_EWMA_RTT`].
    pub default_rtt: Duration,
    /// `penalty_value`: the cost of an endpoint not measured yet that has requests in
    /// flight (it may be hanging); finite and at least 0, default
    /// [`DEFAULT_PEAK_EWMA_PENALTY`].
    pub penalty_value: f64,
}

impl Default for PeakEwmaConfig {
    fn default() -> PeakEwmaConfig {
        PeakEwmaConfig {
            decay_time: DEFAULT_PEAK_EWMA_DECAY_TIME,
            default_rtt: DEFAULT_PEAK_EWMA_RTT,
            penalty_value: DEFAULT_PEAK_EWMA_PENALTY,
        }
    }
}

// `penalty_value` is finite (the config rejects NaN and infinities), so comparing its
// bits is an equivalence.
impl PartialEq for PeakEwmaConfig {
    fn eq(&self, other: &PeakEwmaConfig) -> bool {
        self.decay_time == other.decay_time
            && self.default_rtt == other.default_rtt
            && self.penalty_value.to_bits() == other.penalty_value.to_bits()
    }
}

impl Eq for PeakEwmaConfig {}

impl std::hash::Hash for PeakEwmaConfig {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.decay_time.hash(state);
        self.default_rtt.hash(state);
        self.penalty_value.to_bits().hash(state);
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
        "a listener needs one filter chain with a tcp_proxy filter (or an \
         http_connection_manager), e.g. `filter_chains: [{{ filters: [{{ name: \
         envoy.filters.network.tcp_proxy, typed_config: {{ \"@type\": \
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
         with a `typed_config` whose `\"@type\"` is {TCP_PROXY_TYPE_URL}; or an \
         http_connection_manager filter, whose `\"@type\"` is \
         {HTTP_CONNECTION_MANAGER_TYPE_URL}"
    )]
    NoFilters,
    #[error(
        "{filter} ({previous}) is a terminal filter: it must be the last in its chain, so \
         no filter can follow it; remove this one"
    )]
    FilterAfterTerminal {
        /// `tcp_proxy` or `http_connection_manager`.
        filter: &'static str,
        previous: String,
    },
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
        "unknown cluster `{name}` ({}); {referrer} must name a cluster in \
         static_resources.clusters",
        cluster_list(.known)
    )]
    UnknownCluster {
        name: String,
        known: Vec<String>,
        /// What refers to the cluster: "a tcp_proxy's `cluster`", "a route's `cluster`".
        referrer: &'static str,
    },
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
    #[error(
        "`{field}` configures lb_policy {policy}, but this cluster's lb_policy is {actual}; \
         set `lb_policy: {policy}`, or remove `{field}`"
    )]
    LbConfigWithoutPolicy {
        /// `ring_hash_lb_config`, `maglev_lb_config` or `least_request_lb_config`.
        field: &'static str,
        /// The policy the field configures.
        policy: &'static str,
        /// The cluster's `lb_policy`.
        actual: String,
    },
    #[error(
        "`{field}` has no effect when `load_balancing_policy` is set (Envoy then ignores it): \
         the policy and its settings come from `load_balancing_policy`; remove `{field}`"
    )]
    LbPolicyOverridden { field: &'static str },
    #[error(
        "table_size {value} is not a prime number, which Maglev needs (Envoy rejects it too); \
         use a prime such as 65537 (the default), 131071, 1048573 or 5000011"
    )]
    NotPrime { value: u64 },
    #[error(
        "minimum_ring_size {minimum} is above maximum_ring_size {maximum}, which Envoy \
         rejects; lower the minimum or raise the maximum"
    )]
    RingSizes { minimum: u64, maximum: u64 },
    #[error(
        "penalty_value {value} is not a finite number of at least 0; leave it out for the \
         default 1000000"
    )]
    BadPenalty { value: String },
    #[error("`{field}` is not supported yet; {hint}")]
    NotSupported { field: &'static str, hint: String },
    #[error("one of {fields} is required; {hint}")]
    NoneOf { fields: &'static str, hint: String },
    #[error(
        "`{field}` cannot be set together with `{other}`: Envoy takes only one of {fields}; \
         remove one"
    )]
    Conflict {
        field: &'static str,
        other: &'static str,
        fields: &'static str,
    },
    #[error("{value} is out of range; use {min} to {max}{hint}")]
    OutOfRange {
        value: u64,
        min: u64,
        max: u64,
        hint: &'static str,
    },
    #[error(
        "an http_connection_manager needs the router as its last HTTP filter: add `- name: \
         envoy.filters.http.router, typed_config: {{ \"@type\": {ROUTER_TYPE_URL} }}` at the \
         end of `http_filters`"
    )]
    NoRouter,
    #[error(
        "the router ({router}) is a terminal HTTP filter: it must be the last in \
         `http_filters`, so no filter can follow it; move it to the end"
    )]
    FilterAfterRouter { router: String },
    #[error(
        "duplicate domain `{domain}` (first at {first}); Envoy requires each domain to be \
         unique across the virtual hosts of a route configuration (domains are compared in \
         lowercase)"
    )]
    DuplicateDomain { domain: String, first: String },
    #[error(
        "a second `*` domain (the first is at {first}); only one virtual host may match \
         every host"
    )]
    SecondWildcardDomain { first: String },
    #[error("`{domain}` is not a domain a virtual host can match: {reason}")]
    BadDomain {
        domain: String,
        reason: &'static str,
    },
    #[error("invalid regex `{regex}`: {error}")]
    BadRegex { regex: String, error: String },
    #[error("invalid substitution `{substitution}`: {reason}")]
    BadSubstitution {
        substitution: String,
        reason: String,
    },
    #[error("`{name}` cannot be used here: {reason}")]
    BadHeaderName { name: String, reason: String },
    #[error("invalid header value `{value}`: {reason}")]
    BadHeaderValue { value: String, reason: String },
    #[error("`{value}` cannot be used here: {reason}")]
    BadPath { value: String, reason: &'static str },
    #[error("status {status} is out of range; a direct response's status is 100 to 599")]
    BadStatus { status: u64 },
    #[error(
        "the body is {size} bytes, more than the route configuration's \
         max_direct_response_body_size_bytes ({max}); shorten it or raise the limit"
    )]
    DirectResponseBodyTooLarge { size: usize, max: u32 },
    #[error(
        "the cluster weights add up to {sum}, not to total_weight {total}; make them add \
         up, or remove the deprecated `total_weight` (Envoy now uses the sum)"
    )]
    ClusterWeightSum { sum: u64, total: u64 },
    #[error("the cluster weights add up to 0; Envoy requires at least one weight above 0")]
    ZeroClusterWeights,
    #[error(
        "the cluster weights add up to more than 4294967295, which Envoy rejects; scale \
         them down"
    )]
    ClusterWeightsTooLarge,
    #[error(
        "the cluster sets the deprecated `max_requests_per_connection` too, and Envoy \
         rejects both (\"Only one of max_requests_per_connection from Cluster or \
         HttpProtocolOptions can be specified\"); remove the cluster's"
    )]
    MaxRequestsPerConnectionTwice,
    #[error(
        "zerohop runs one health check per cluster (the first is at {first}); remove this \
         one, or check what it checks in the first"
    )]
    SecondHealthCheck { first: String },
    #[error("`{field}` must be above 0s (Envoy rejects 0s too); {hint}")]
    ZeroDuration {
        field: &'static str,
        hint: &'static str,
    },
    #[error(
        "[{start}, {end}) is not a range of statuses: {reason}; a range is half-open, from \
         `start` (at least 100) up to but not including `end` (at most 600), e.g. `{{ start: \
         200, end: 300 }}` for every 2xx"
    )]
    BadStatusRange {
        start: i64,
        end: i64,
        reason: &'static str,
    },
    #[error("invalid payload `{value}`: {reason}")]
    BadPayload { value: String, reason: &'static str },
    #[error("{value} is not a percentage from 0 to 100{hint}")]
    BadPercent { value: String, hint: &'static str },
    #[error(
        "a second threshold for priority {priority} (the first is at {first}); list each \
         priority once"
    )]
    DuplicatePriority {
        priority: &'static str,
        first: String,
    },
    #[error(
        "unknown retry condition `{condition}`; zerohop supports {}, separated by commas, \
         e.g. `retry_on: 5xx,reset,connect-failure`",
        retry_on_list()
    )]
    UnknownRetryOn { condition: String },
    #[error(
        "{field} {} is below {base_field} {}, which Envoy rejects; make {field} at least \
         {base_field}",
        format_duration(*.max),
        format_duration(*.base),
        base_field = field.replacen("max_", "base_", 1)
    )]
    MaxBelowBase {
        /// `max_interval` or `max_ejection_time`; the base is its `base_` field.
        field: &'static str,
        max: Duration,
        base: Duration,
    },
    #[error("invalid access log format: {reason}")]
    BadAccessLogFormat { reason: String },
}

/// The `retry_on` conditions: `a, b and c`.
fn retry_on_list() -> String {
    let names: Vec<&str> = RetryOn::NAMES.iter().map(|(name, _)| *name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(", "),
    }
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
