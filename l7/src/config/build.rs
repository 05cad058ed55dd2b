//! From the raw YAML structs to [`EnvoyConfig`]: required fields, ranges, uniqueness and
//! references, each error with its YAML path.
//!
//! Checks run in document order within each part: listeners, then clusters, then the
//! references from listeners (and routes) to clusters, then admin; the first problem is
//! reported. Within one message, fields are checked in the order of Envoy's proto.

use super::raw::{
    DenominatorName, RawBuffer, RawFault, RawFractionalPercent, RawHeaderMutation,
    RawLocalRateLimit, RawMutationOp, RawRuntimeFractionalPercent,
};
use super::{
    BufferFilter, FaultFilter, FractionalPercent, HeaderMutationFilter, HeaderMutationOp,
    LocalRateLimitFilter,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::raw::{
    filter_type, http_filter_type, AppendActionName, CodecTypeName, FilterType, HttpFilterType,
    LbPolicyName, RawAddress, RawAdmin, RawBootstrap, RawCluster, RawDirectResponseAction,
    RawFilterChain, RawHashPolicy, RawHeaderMatcher, RawHeaderMutations, RawHeaderValueOption,
    RawHttpConnectionManager, RawHttpFilter, RawHttpTypedConfig, RawListener, RawLoadAssignment,
    RawQueryParameterMatcher, RawRedirectAction, RawRegexMatchAndSubstitute, RawRegexMatcher,
    RawRoute, RawRouteAction, RawRouteConfiguration, RawRouteMatch, RawRouter, RawStaticResources,
    RawStringMatcher, RawTcpProxy, RawTypedConfig, RawVirtualHost, RawWeightedCluster,
    RedirectCodeName, SocketProtocol, TYPE_KEY,
};
use super::{
    Action, AddressRole, Admin, Cluster, ClusterSpecifier, ClusterWeight, CodecType,
    DirectResponseAction, Endpoint, EnvoyConfig, EnvoyConfigError, FormatVariable, HashPolicy,
    HashSource, HeaderAppendAction, HeaderMatchRule, HeaderMatcher, HeaderMutations,
    HeaderValueOption, HeaderValueTemplate, HostRewrite, HttpConnectionManager, HttpFilter,
    LbPolicy, Listener, NetworkFilter, PathMatch, Problem, QueryParameterMatcher, RedirectAction,
    RedirectPath, RedirectResponseCode, RegexRewrite, Route, RouteAction, RouteConfig, RouteMatch,
    RouterFilter, StringMatcher, StringPattern, TcpProxy, ValuePart, VirtualHost,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_HTTP_IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE, DEFAULT_MAX_REQUEST_HEADERS_KB, DEFAULT_ROUTE_TIMEOUT,
    DEFAULT_STREAM_IDLE_TIMEOUT, MAX_REQUEST_HEADERS_KB, ROUTER_FILTER_NAME, ROUTER_TYPE_URL,
};

// Load balancing policies (imported apart, as they are checked apart).
use super::raw::{
    lb_extension_type, unsupported_lb_extension, Double, LbExtensionType, RawLbTypedConfig,
    RawLeastRequestLbConfig, RawLoadBalancingPolicy, RawMaglevLbConfig, RawPeakEwmaLb, RawRandomLb,
    RawRingHashLbConfig, RawRoundRobinLb, Unsigned,
};
use super::{
    PeakEwmaConfig, RingHashConfig, DEFAULT_CHOICE_COUNT, DEFAULT_MAGLEV_TABLE_SIZE,
    DEFAULT_MINIMUM_RING_SIZE, DEFAULT_PEAK_EWMA_DECAY_TIME, DEFAULT_PEAK_EWMA_PENALTY,
    DEFAULT_PEAK_EWMA_RTT, MAX_MAGLEV_TABLE_SIZE, MAX_RING_SIZE,
};

// A cluster's upstream HTTP protocol options.
use super::raw::{
    protocol_options_type, RawExplicitHttpConfig, RawHttp1ProtocolOptions,
    RawHttpUpstreamProtocolOptions, RawProtocolOptionsTypedConfig,
    RawTypedExtensionProtocolOptions, HTTP_PROTOCOL_OPTIONS_KEY, HTTP_PROTOCOL_OPTIONS_TYPE_URL,
};
use super::DEFAULT_UPSTREAM_IDLE_TIMEOUT;

// Resilience: a cluster's health check, outlier detection, circuit breakers and panic
// threshold, and a route's retry policy.
use super::duration::ProtoDuration;
use super::raw::{
    retry_host_predicate_type, RawCircuitBreakers, RawHealthCheck, RawHttpHealthCheck,
    RawOutlierDetection, RawPayload, RawPercent, RawPreviousHostsPredicate,
    RawRetryHostTypedConfig, RawRetryPolicy, RawTcpHealthCheck, RawThresholds, RoutingPriorityName,
    Signed, PREVIOUS_HOSTS_PREDICATE_NAME, PREVIOUS_HOSTS_PREDICATE_TYPE_URL,
};
use super::resilience::{decode_base64, decode_hex};
use super::{
    CircuitBreakers, HealthCheck, HealthCheckKind, HttpHealthCheck, OutlierDetection, Percent,
    RetryBudget, RetryOn, RetryPolicy, TcpHealthCheck, DEFAULT_HEALTHY_PANIC_THRESHOLD,
    DEFAULT_MIN_RETRY_CONCURRENCY, DEFAULT_NO_TRAFFIC_INTERVAL, DEFAULT_RETRY_BASE_INTERVAL,
    DEFAULT_RETRY_BUDGET_PERCENT,
};

// Access logs of an http_connection_manager or a tcp_proxy.
use super::raw::{
    access_logger_type, AccessLoggerType, RawAccessLog, RawAccessLogTypedConfig, RawDataSource,
    RawFileAccessLog, RawStreamAccessLog, RawSubstitutionFormatString, FILE_ACCESS_LOG_NAME,
    FILE_ACCESS_LOG_TYPE_URL, STDERR_ACCESS_LOG_NAME, STDOUT_ACCESS_LOG_NAME,
};
use super::AccessLog;
use crate::access_log::{check_format, DEFAULT_FORMAT, STDERR_PATH, STDOUT_PATH};

/// Accepted spellings of the top-level keys ([`super::SECTIONS`]): proto3 JSON also takes
/// lowerCamelCase.
const SECTION_SPELLINGS: &[&str] = &["static_resources", "staticResources", "admin"];

pub(super) fn from_yaml(text: &str, origin: &str) -> Result<EnvoyConfig, EnvoyConfigError> {
    // A first pass over the generic tree catches YAML syntax errors and looks at the
    // top-level keys, so that an Envoy section zerohop does not read (`node`,
    // `dynamic_resources`, ...) gets a message of its own.
    let tree: Value = serde_yaml_ng::from_str(text).map_err(|error| EnvoyConfigError::Yaml {
        origin: origin.to_owned(),
        message: error.to_string(),
    })?;
    check_top_level(&tree, text, origin)?;
    // The second pass reads the text itself, so that errors carry line numbers.
    let raw: RawBootstrap =
        serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
            .map_err(|error| text_schema_error(&error, origin))?;
    Builder { origin }.build(raw.static_resources, raw.admin)
}

pub(super) fn from_value(
    static_resources: Option<&Value>,
    admin: Option<&Value>,
    origin: &str,
) -> Result<EnvoyConfig, EnvoyConfigError> {
    let builder = Builder { origin };
    let static_resources = match static_resources {
        None | Some(Value::Null) => None,
        Some(value) => Some(builder.deserialize::<RawStaticResources>(value, "static_resources")?),
    };
    let admin = match admin {
        None | Some(Value::Null) => None,
        Some(value) => Some(builder.deserialize::<RawAdmin>(value, "admin")?),
    };
    builder.build(static_resources, admin)
}

/// Check that the document is a mapping whose keys are sections zerohop reads.
fn check_top_level(tree: &Value, text: &str, origin: &str) -> Result<(), EnvoyConfigError> {
    let yaml_error = |message: String| EnvoyConfigError::Yaml {
        origin: origin.to_owned(),
        message,
    };
    let top = match tree {
        Value::Mapping(top) => top,
        Value::Null => {
            return Err(yaml_error(
                "the config is empty; an Envoy config needs `static_resources` with \
                 `listeners` and `clusters`"
                    .to_owned(),
            ))
        }
        other => {
            return Err(yaml_error(format!(
                "the top level is {}; it must be a mapping with `static_resources` and \
                 `admin` keys",
                describe(other)
            )))
        }
    };
    for key in top.keys() {
        let name = match key {
            Value::String(name) => name.clone(),
            other => serde_yaml_ng::to_string(other)
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_else(|_| format!("{other:?}")),
        };
        if SECTION_SPELLINGS.contains(&name.as_str()) {
            continue;
        }
        let message = format!(
            "not supported: zerohop reads only the `static_resources` and `admin` sections \
             of an Envoy bootstrap so far; remove `{name}`{}",
            if name == "dataplane" {
                " (it is zerohop's own section, read by zerohop's config, not here)"
            } else {
                ""
            }
        );
        return Err(EnvoyConfigError::Schema {
            origin: origin.to_owned(),
            line: top_level_key_line(text, &name),
            column: None,
            path: name,
            message,
        });
    }
    Ok(())
}

/// Name a YAML value's kind for a message.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Return the 1-based line where top-level `key:` is written, for block-style YAML;
/// `None` (flow style, odd quoting) just leaves the line out of the message.
pub fn top_level_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
                .iter()
                .any(|k| {
                    line.strip_prefix(k.as_str())
                        .is_some_and(|rest| rest.trim_start().starts_with(':'))
                })
        })
        .map(|i| i + 1)
}

/// Turn an error from reading the text into [`EnvoyConfigError::Schema`].
///
/// `serde_yaml_ng` writes its own copy of the path in front of its message and the
/// position after it; the path comes from `serde_path_to_error` (which also sees inside
/// `typed_config`) and the position from the error, so both are cut from the message.
fn text_schema_error(
    error: &serde_path_to_error::Error<serde_yaml_ng::Error>,
    origin: &str,
) -> EnvoyConfigError {
    let path = error.path().to_string();
    let inner = error.inner();
    let location = inner.location();
    let mut message = inner.to_string();
    if let Some(location) = &location {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    // serde_yaml_ng's path is the same or an ancestor (it names the mapping, where
    // serde_path_to_error names the key in it): cut the longest one that matches.
    if let Some(stripped) =
        ancestors(&path).find_map(|ancestor| message.strip_prefix(&format!("{ancestor}: ")))
    {
        message = stripped.to_owned();
    }
    EnvoyConfigError::Schema {
        origin: origin.to_owned(),
        path,
        message,
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
    }
}

/// Return `path` and its ancestors, longest first: `a.b[0].c`, `a.b[0]`, `a.b`, `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let cuts = path
        .char_indices()
        .filter(|&(i, c)| i > 0 && (c == '.' || c == '['))
        .map(|(i, _)| i)
        .rev();
    std::iter::once(path).chain(cuts.map(move |i| &path[..i]))
}

/// Join a path and a path relative to it: `a.b` + `c[0]` → `a.b.c[0]`, `a` + `[1]` →
/// `a[1]`, `a` + `.` (serde_path_to_error's root) → `a`.
fn join(base: &str, relative: &str) -> String {
    if relative == "." || relative.is_empty() {
        base.to_owned()
    } else if relative.starts_with('[') {
        format!("{base}{relative}")
    } else {
        format!("{base}.{relative}")
    }
}

/// What a cluster's HTTP upstream protocol options set.
struct UpstreamHttpOptions {
    /// `common_http_protocol_options.idle_timeout`, its default applied.
    idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.max_requests_per_connection`, where given (`None`
    /// inside for 0: no limit).
    max_requests_per_connection: Option<Option<u32>>,
}

/// A cluster's load balancing fields, as written.
struct RawLbFields {
    lb_policy: Option<LbPolicyName>,
    ring_hash_lb_config: Option<RawRingHashLbConfig>,
    least_request_lb_config: Option<RawLeastRequestLbConfig>,
    load_balancing_policy: Option<RawLoadBalancingPolicy>,
    maglev_lb_config: Option<RawMaglevLbConfig>,
}

/// Return whether `n` is a prime (Maglev's table size must be one).
pub(crate) fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n % 2 == 0 {
        return false;
    }
    let mut divisor = 3u64;
    while divisor.saturating_mul(divisor) <= n {
        if n % divisor == 0 {
            return false;
        }
        divisor += 2;
    }
    true
}

/// Builds an [`EnvoyConfig`] from raw sections; knows the origin for its errors.
struct Builder<'a> {
    origin: &'a str,
}

impl Builder<'_> {
    fn invalid(&self, path: String, problem: Problem) -> EnvoyConfigError {
        EnvoyConfigError::Invalid {
            origin: self.origin.to_owned(),
            path,
            problem,
        }
    }

    fn schema(&self, path: String, message: String) -> EnvoyConfigError {
        EnvoyConfigError::Schema {
            origin: self.origin.to_owned(),
            path,
            message,
            line: None,
            column: None,
        }
    }

    /// Deserialize a YAML tree that sits at `path`, with paths in errors.
    fn deserialize<T: for<'de> Deserialize<'de>>(
        &self,
        value: &Value,
        path: &str,
    ) -> Result<T, EnvoyConfigError> {
        serde_path_to_error::deserialize(value).map_err(|error| {
            self.schema(
                join(path, &error.path().to_string()),
                error.into_inner().to_string(),
            )
        })
    }

    fn build(
        &self,
        static_resources: Option<RawStaticResources>,
        admin: Option<RawAdmin>,
    ) -> Result<EnvoyConfig, EnvoyConfigError> {
        let static_resources = static_resources.unwrap_or_default();
        let listeners = self.listeners(static_resources.listeners.unwrap_or_default())?;
        let clusters = self.clusters(static_resources.clusters.unwrap_or_default())?;
        for (i, listener) in listeners.iter().enumerate() {
            let typed_config =
                format!("static_resources.listeners[{i}].filter_chains[0].filters[0].typed_config");
            let references = match &listener.filter {
                NetworkFilter::TcpProxy(tcp_proxy) => vec![ClusterReference {
                    path: format!("{typed_config}.cluster"),
                    name: &tcp_proxy.cluster,
                    referrer: "a tcp_proxy's `cluster`",
                }],
                NetworkFilter::HttpConnectionManager(hcm) => {
                    cluster_references(&hcm.route_config, &format!("{typed_config}.route_config"))
                }
            };
            for reference in references {
                if !clusters.iter().any(|c| c.name == reference.name) {
                    return Err(self.invalid(
                        reference.path,
                        Problem::UnknownCluster {
                            name: reference.name.to_owned(),
                            known: clusters.iter().map(|c| c.name.clone()).collect(),
                            referrer: reference.referrer,
                        },
                    ));
                }
            }
        }
        let admin = match admin {
            None => None,
            Some(admin) => Some(self.admin(admin, &listeners)?),
        };
        Ok(EnvoyConfig {
            listeners,
            clusters,
            admin,
        })
    }

    fn listeners(&self, raw: Vec<RawListener>) -> Result<Vec<Listener>, EnvoyConfigError> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut addresses: HashMap<SocketAddrV4, usize> = HashMap::new();
        let mut listeners = Vec::with_capacity(raw.len());
        for (i, listener) in raw.into_iter().enumerate() {
            let path = format!("static_resources.listeners[{i}]");
            let name = self.name(
                listener.name,
                &path,
                "give each listener a unique name, e.g. `name: listener_0` (Envoy would \
                 make one up; zerohop uses it in logs and counters)",
            )?;
            if let Some(first) = names.insert(name.clone(), i) {
                return Err(self.invalid(
                    format!("{path}.name"),
                    Problem::DuplicateName {
                        what: "listener",
                        name,
                        first: format!("static_resources.listeners[{first}]"),
                    },
                ));
            }
            let address =
                self.socket_address(listener.address, &path, "address", AddressRole::Listener)?;
            if let Some(&first) = addresses.get(&address) {
                return Err(self.invalid(
                    format!("{path}.address"),
                    Problem::DuplicateListenerAddress {
                        address,
                        first: format!("static_resources.listeners[{first}]"),
                    },
                ));
            }
            addresses.insert(address, i);
            let filter = self.filter_chains(listener.filter_chains, &path)?;
            listeners.push(Listener {
                name,
                address,
                filter,
            });
        }
        Ok(listeners)
    }

    /// Check a required, non-empty name at `{path}.name`.
    fn name(
        &self,
        name: Option<String>,
        path: &str,
        hint: &str,
    ) -> Result<String, EnvoyConfigError> {
        match name {
            None => Err(self.invalid(
                path.to_owned(),
                Problem::Missing {
                    field: "name",
                    hint: hint.to_owned(),
                },
            )),
            Some(name) if name.is_empty() => Err(self.invalid(
                format!("{path}.name"),
                Problem::Empty {
                    field: "name",
                    hint: hint.to_owned(),
                },
            )),
            Some(name) => Ok(name),
        }
    }

    /// Check the `Address` at `{parent}.{key}`: a `socket_address` with an IPv4 address
    /// and a port from 1 to 65535, over TCP.
    fn socket_address(
        &self,
        address: Option<RawAddress>,
        parent: &str,
        key: &'static str,
        role: AddressRole,
    ) -> Result<SocketAddrV4, EnvoyConfigError> {
        let example = match role {
            AddressRole::Listener => "0.0.0.0, port_value: 10000",
            AddressRole::Endpoint => "10.0.0.2, port_value: 8080",
            AddressRole::Admin => "127.0.0.1, port_value: 9901",
        };
        let Some(address) = address else {
            return Err(self.invalid(
                parent.to_owned(),
                Problem::Missing {
                    field: key,
                    hint: format!("add `{key}: {{ socket_address: {{ address: {example} }} }}`"),
                },
            ));
        };
        let path = format!("{parent}.{key}");
        let Some(socket) = address.socket_address else {
            return Err(self.invalid(
                path,
                Problem::Missing {
                    field: "socket_address",
                    hint: format!(
                        "zerohop supports socket addresses only: `socket_address: {{ address: \
                         {example} }}`"
                    ),
                },
            ));
        };
        let path = format!("{path}.socket_address");
        if socket.protocol == Some(SocketProtocol::Udp) {
            return Err(self.invalid(format!("{path}.protocol"), Problem::Udp));
        }
        let Some(ip) = socket.address else {
            return Err(self.invalid(
                path,
                Problem::Missing {
                    field: "address",
                    hint: format!("write the IPv4 address, e.g. `address: {example}`"),
                },
            ));
        };
        let ip = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ip,
            Ok(IpAddr::V6(_)) => {
                return Err(self.invalid(format!("{path}.address"), Problem::Ipv6 { address: ip }))
            }
            Err(_) => {
                return Err(self.invalid(
                    format!("{path}.address"),
                    Problem::NotIpv4 { address: ip, role },
                ))
            }
        };
        if role == AddressRole::Endpoint {
            if let Some(kind) = not_unicast(ip) {
                return Err(self.invalid(
                    format!("{path}.address"),
                    Problem::NotAUnicastHost { address: ip, kind },
                ));
            }
        }
        let Some(port) = socket.port_value else {
            return Err(self.invalid(
                path,
                Problem::Missing {
                    field: "port_value",
                    hint: "set the port, 1 to 65535 (`named_port` is not supported)".to_owned(),
                },
            ));
        };
        match u16::try_from(port.0) {
            Ok(port) if port != 0 => Ok(SocketAddrV4::new(ip, port)),
            _ => Err(self.invalid(
                format!("{path}.port_value"),
                Problem::BadPort { port: port.0, role },
            )),
        }
    }

    /// Check a listener's filter chains: one chain with one filter, a tcp_proxy or an
    /// http_connection_manager.
    fn filter_chains(
        &self,
        chains: Option<Vec<RawFilterChain>>,
        listener: &str,
    ) -> Result<NetworkFilter, EnvoyConfigError> {
        let path = format!("{listener}.filter_chains");
        let mut chains = chains.unwrap_or_default().into_iter();
        let Some(chain) = chains.next() else {
            return Err(self.invalid(path, Problem::NoFilterChains));
        };
        if chains.next().is_some() {
            return Err(self.invalid(format!("{path}[1]"), Problem::SecondFilterChain));
        }
        let path = format!("{path}[0].filters");
        let mut filters = chain.filters.unwrap_or_default().into_iter();
        let Some(filter) = filters.next() else {
            return Err(self.invalid(path, Problem::NoFilters));
        };
        let filter_path = format!("{path}[0]");
        let Some(typed_config) = filter.typed_config else {
            return Err(self.invalid(filter_path, Problem::MissingTypedConfig));
        };
        let typed_config_path = format!("{filter_path}.typed_config");
        let typed_config = match typed_config {
            RawTypedConfig::Deferred(mut mapping) => {
                let Some(url) = mapping.remove(TYPE_KEY) else {
                    return Err(self.invalid(typed_config_path, Problem::MissingTypeUrl));
                };
                let url_path = format!("{typed_config_path}.{TYPE_KEY}");
                let url: String = self.deserialize(&url, &url_path)?;
                let mapping = Value::Mapping(mapping);
                match filter_type(&url) {
                    Ok(FilterType::TcpProxy) => RawTypedConfig::TcpProxy(
                        self.deserialize::<RawTcpProxy>(&mapping, &typed_config_path)?,
                    ),
                    Ok(FilterType::HttpConnectionManager) => RawTypedConfig::HttpConnectionManager(
                        Box::new(self.deserialize::<RawHttpConnectionManager>(
                            &mapping,
                            &typed_config_path,
                        )?),
                    ),
                    Err(message) => return Err(self.schema(url_path, message)),
                }
            }
            read => read,
        };
        let (filter, kind) = match typed_config {
            RawTypedConfig::TcpProxy(raw) => (
                NetworkFilter::TcpProxy(self.tcp_proxy(raw, &typed_config_path)?),
                "tcp_proxy",
            ),
            RawTypedConfig::HttpConnectionManager(raw) => (
                NetworkFilter::HttpConnectionManager(
                    self.http_connection_manager(*raw, &typed_config_path)?,
                ),
                "http_connection_manager",
            ),
            // Resolved above.
            RawTypedConfig::Deferred(_) => {
                return Err(self.invalid(typed_config_path, Problem::MissingTypeUrl))
            }
        };
        if filters.next().is_some() {
            return Err(self.invalid(
                format!("{path}[1]"),
                Problem::FilterAfterTerminal {
                    filter: kind,
                    previous: format!("{path}[0]"),
                },
            ));
        }
        Ok(filter)
    }

    fn tcp_proxy(&self, raw: RawTcpProxy, path: &str) -> Result<TcpProxy, EnvoyConfigError> {
        let stat_prefix_hint = "Envoy requires it: the filter's counters are named \
                                tcp.<stat_prefix>.*; e.g. `stat_prefix: destination`";
        let stat_prefix = self.required(raw.stat_prefix, path, "stat_prefix", stat_prefix_hint)?;
        if raw.weighted_clusters.is_some() {
            return Err(self.invalid(
                format!("{path}.weighted_clusters"),
                Problem::WeightedClusters,
            ));
        }
        let cluster_hint = "set it to the name of a cluster in static_resources.clusters";
        let cluster = self.required(raw.cluster, path, "cluster", cluster_hint)?;
        let access_log = self.access_logs(raw.access_log, path)?;
        let idle_timeout = match raw.idle_timeout {
            None => Some(DEFAULT_IDLE_TIMEOUT),
            Some(timeout) if timeout.0 == Duration::ZERO => None,
            Some(timeout) => Some(timeout.0),
        };
        Ok(TcpProxy {
            stat_prefix,
            cluster,
            idle_timeout,
            access_log,
        })
    }

    fn clusters(&self, raw: Vec<RawCluster>) -> Result<Vec<Cluster>, EnvoyConfigError> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut clusters = Vec::with_capacity(raw.len());
        for (i, cluster) in raw.into_iter().enumerate() {
            let path = format!("static_resources.clusters[{i}]");
            let name = self.name(
                cluster.name,
                &path,
                "give each cluster a unique name, e.g. `name: service_backend`; a tcp_proxy \
                 refers to it by that name",
            )?;
            if let Some(first) = names.insert(name.clone(), i) {
                return Err(self.invalid(
                    format!("{path}.name"),
                    Problem::DuplicateName {
                        what: "cluster",
                        name,
                        first: format!("static_resources.clusters[{first}]"),
                    },
                ));
            }
            let connect_timeout = match cluster.connect_timeout {
                None => DEFAULT_CONNECT_TIMEOUT,
                Some(timeout) if timeout.0 == Duration::ZERO => {
                    return Err(self.invalid(
                        format!("{path}.connect_timeout"),
                        Problem::ZeroConnectTimeout,
                    ))
                }
                Some(timeout) => timeout.0,
            };
            let lb_policy = self.lb_policy(
                RawLbFields {
                    lb_policy: cluster.lb_policy,
                    ring_hash_lb_config: cluster.ring_hash_lb_config,
                    least_request_lb_config: cluster.least_request_lb_config,
                    load_balancing_policy: cluster.load_balancing_policy,
                    maglev_lb_config: cluster.maglev_lb_config,
                },
                &path,
            )?;
            let endpoints = self.endpoints(cluster.load_assignment, &path)?;
            let mut max_requests_per_connection = self.max_requests_per_connection(
                cluster.max_requests_per_connection,
                &format!("{path}.max_requests_per_connection"),
            )?;
            let mut upstream_idle_timeout = Some(DEFAULT_UPSTREAM_IDLE_TIMEOUT);
            if let Some(options) = cluster.typed_extension_protocol_options {
                let at = format!("{path}.typed_extension_protocol_options");
                if let Some(http) = self.protocol_options(options, &at)? {
                    let at =
                        format!("{at}.{HTTP_PROTOCOL_OPTIONS_KEY}.common_http_protocol_options");
                    upstream_idle_timeout = http.idle_timeout;
                    if let Some(max) = http.max_requests_per_connection {
                        if cluster.max_requests_per_connection.is_some() {
                            return Err(self.invalid(
                                format!("{at}.max_requests_per_connection"),
                                Problem::MaxRequestsPerConnectionTwice,
                            ));
                        }
                        max_requests_per_connection = max;
                    }
                }
            }
            let health_check = self.health_checks(cluster.health_checks, &path)?;
            let circuit_breakers = match cluster.circuit_breakers {
                None => CircuitBreakers::default(),
                Some(raw) => self.circuit_breakers(raw, &format!("{path}.circuit_breakers"))?,
            };
            let outlier_detection = match cluster.outlier_detection {
                None => None,
                Some(raw) => {
                    Some(self.outlier_detection(raw, &format!("{path}.outlier_detection"))?)
                }
            };
            let healthy_panic_threshold = match cluster
                .common_lb_config
                .and_then(|config| config.healthy_panic_threshold)
            {
                None => Percent(DEFAULT_HEALTHY_PANIC_THRESHOLD),
                Some(raw) => self.envoy_percent(
                    raw,
                    &format!("{path}.common_lb_config.healthy_panic_threshold"),
                    "; 0 turns panic mode off, or leave it out for the default 50",
                )?,
            };
            clusters.push(Cluster {
                name,
                connect_timeout,
                lb_policy,
                endpoints,
                max_requests_per_connection,
                upstream_idle_timeout,
                health_check,
                outlier_detection,
                circuit_breakers,
                healthy_panic_threshold,
            });
        }
        Ok(clusters)
    }

    /// Check a `max_requests_per_connection` (at `path`): 0 or absent is no limit.
    fn max_requests_per_connection(
        &self,
        raw: Option<Unsigned>,
        path: &str,
    ) -> Result<Option<u32>, EnvoyConfigError> {
        match raw {
            None | Some(Unsigned(0)) => Ok(None),
            Some(Unsigned(n)) if n <= u64::from(u32::MAX) => Ok(Some(n as u32)),
            Some(Unsigned(n)) => Err(self.invalid(
                path.to_owned(),
                Problem::OutOfRange {
                    value: n,
                    min: 0,
                    max: u64::from(u32::MAX),
                    hint: "",
                },
            )),
        }
    }

    /// Check a cluster's `typed_extension_protocol_options` (at `path`); return its HTTP
    /// protocol options, where given.
    fn protocol_options(
        &self,
        raw: RawTypedExtensionProtocolOptions,
        path: &str,
    ) -> Result<Option<UpstreamHttpOptions>, EnvoyConfigError> {
        let Some(typed_config) = raw.http else {
            return Ok(None);
        };
        let path = format!("{path}.{HTTP_PROTOCOL_OPTIONS_KEY}");
        let example = format!(
            "e.g. `{HTTP_PROTOCOL_OPTIONS_KEY}: {{ \"@type\": {HTTP_PROTOCOL_OPTIONS_TYPE_URL}, \
             explicit_http_config: {{ http_protocol_options: {{}} }} }}`"
        );
        let raw = match typed_config {
            RawProtocolOptionsTypedConfig::Http(raw) => raw,
            RawProtocolOptionsTypedConfig::Deferred(mut mapping) => {
                let Some(url) = mapping.remove(TYPE_KEY) else {
                    return Err(self.invalid(
                        path,
                        Problem::Missing {
                            field: "@type",
                            hint: format!("Envoy requires it; {example}"),
                        },
                    ));
                };
                let url_path = format!("{path}.{TYPE_KEY}");
                let url: String = self.deserialize(&url, &url_path)?;
                if let Err(message) = protocol_options_type(&url) {
                    return Err(self.schema(url_path, message));
                }
                self.deserialize(&Value::Mapping(mapping), &path)?
            }
        };
        self.upstream_http_protocol_options(raw, &path).map(Some)
    }

    /// Check `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` (at `path`).
    fn upstream_http_protocol_options(
        &self,
        raw: RawHttpUpstreamProtocolOptions,
        path: &str,
    ) -> Result<UpstreamHttpOptions, EnvoyConfigError> {
        let common = raw.common_http_protocol_options.unwrap_or_default();
        let idle_timeout = Self::timeout(common.idle_timeout, Some(DEFAULT_UPSTREAM_IDLE_TIMEOUT));
        let max_requests_per_connection = match common.max_requests_per_connection {
            None => None,
            max => Some(self.max_requests_per_connection(
                max,
                &format!("{path}.common_http_protocol_options.max_requests_per_connection"),
            )?),
        };
        let http1_only = "zerohop speaks HTTP/1.1 to upstreams: write `explicit_http_config: { \
                          http_protocol_options: {} }`";
        let protocol = self.one_of(
            path,
            "`explicit_http_config`, `use_downstream_protocol_config` and `auto_config`",
            &[
                ("explicit_http_config", raw.explicit_http_config.is_some()),
                (
                    "use_downstream_protocol_config",
                    raw.use_downstream_protocol_config.is_some(),
                ),
                ("auto_config", raw.auto_config.is_some()),
            ],
        )?;
        match protocol {
            Some("explicit_http_config") => {}
            Some(field) => {
                return Err(self.invalid(
                    format!("{path}.{field}"),
                    Problem::NotSupported {
                        field,
                        hint: http1_only.to_owned(),
                    },
                ))
            }
            None => {
                return Err(self.invalid(
                    path.to_owned(),
                    Problem::NoneOf {
                        fields: "`explicit_http_config`, `use_downstream_protocol_config` and \
                                 `auto_config`",
                        hint: format!("Envoy requires one; {http1_only}"),
                    },
                ))
            }
        }
        let explicit = raw.explicit_http_config.unwrap_or_default();
        let explicit_path = format!("{path}.explicit_http_config");
        let RawExplicitHttpConfig {
            http_protocol_options,
            http2_protocol_options,
            http3_protocol_options,
        } = explicit;
        for (field, set) in [
            ("http2_protocol_options", http2_protocol_options.is_some()),
            ("http3_protocol_options", http3_protocol_options.is_some()),
        ] {
            if set {
                return Err(self.invalid(
                    format!("{explicit_path}.{field}"),
                    Problem::NotSupported {
                        field,
                        hint: "zerohop speaks HTTP/1.1 to upstreams: write \
                               `http_protocol_options: {}`"
                            .to_owned(),
                    },
                ));
            }
        }
        let Some(RawHttp1ProtocolOptions {}) = http_protocol_options else {
            return Err(self.invalid(
                explicit_path,
                Problem::NoneOf {
                    fields: "`http_protocol_options`, `http2_protocol_options` and \
                             `http3_protocol_options`",
                    hint: "Envoy requires one; zerohop speaks HTTP/1.1 to upstreams: write \
                           `http_protocol_options: {}`"
                        .to_owned(),
                },
            ));
        };
        Ok(UpstreamHttpOptions {
            idle_timeout,
            max_requests_per_connection,
        })
    }

    /// Check a cluster's load balancing fields: `lb_policy` with the one `*_lb_config`
    /// that goes with it, or `load_balancing_policy`, which overrides them in Envoy.
    fn lb_policy(&self, raw: RawLbFields, cluster: &str) -> Result<LbPolicy, EnvoyConfigError> {
        let configs = [
            ("ring_hash_lb_config", raw.ring_hash_lb_config.is_some()),
            (
                "least_request_lb_config",
                raw.least_request_lb_config.is_some(),
            ),
            ("maglev_lb_config", raw.maglev_lb_config.is_some()),
        ];
        // The `lb_config` oneof.
        let config = self.one_of(
            cluster,
            "ring_hash_lb_config, maglev_lb_config, original_dst_lb_config and \
             least_request_lb_config",
            &configs,
        )?;
        if raw.load_balancing_policy.is_some()
            || raw.lb_policy == Some(LbPolicyName::LoadBalancingPolicyConfig)
        {
            if raw
                .lb_policy
                .is_some_and(|p| p != LbPolicyName::LoadBalancingPolicyConfig)
            {
                return Err(self.invalid(
                    format!("{cluster}.lb_policy"),
                    Problem::LbPolicyOverridden { field: "lb_policy" },
                ));
            }
            if let Some(field) = config {
                return Err(self.invalid(
                    format!("{cluster}.{field}"),
                    Problem::LbPolicyOverridden { field },
                ));
            }
            let Some(policy) = raw.load_balancing_policy else {
                return Err(self.invalid(
                    cluster.to_owned(),
                    Problem::Missing {
                        field: "load_balancing_policy",
                        hint: "lb_policy LOAD_BALANCING_POLICY_CONFIG takes the policy from it, \
                               e.g. `load_balancing_policy: { policies: [{ \
                               typed_extension_config: { name: \
                               envoy.load_balancing_policies.ring_hash, typed_config: { \
                               \"@type\": type.googleapis.com/envoy.extensions.\
                               load_balancing_policies.ring_hash.v3.RingHash } } }] }`"
                            .to_owned(),
                    },
                ));
            };
            return self.load_balancing_policy(policy, &format!("{cluster}.load_balancing_policy"));
        }
        let policy = raw.lb_policy.unwrap_or(LbPolicyName::RoundRobin);
        let expected = match policy {
            LbPolicyName::RingHash => Some("ring_hash_lb_config"),
            LbPolicyName::LeastRequest => Some("least_request_lb_config"),
            LbPolicyName::Maglev => Some("maglev_lb_config"),
            _ => None,
        };
        if let Some(field) = config.filter(|field| Some(*field) != expected) {
            return Err(self.invalid(
                format!("{cluster}.{field}"),
                Problem::LbConfigWithoutPolicy {
                    field,
                    policy: match field {
                        "ring_hash_lb_config" => "RING_HASH",
                        "maglev_lb_config" => "MAGLEV",
                        _ => "LEAST_REQUEST",
                    },
                    actual: policy.as_str().to_owned(),
                },
            ));
        }
        Ok(match policy {
            LbPolicyName::RoundRobin | LbPolicyName::LoadBalancingPolicyConfig => {
                LbPolicy::RoundRobin
            }
            LbPolicyName::Random => LbPolicy::Random,
            LbPolicyName::LeastRequest => {
                let raw = raw.least_request_lb_config.unwrap_or_default();
                LbPolicy::LeastRequest {
                    choice_count: self.choice_count(
                        raw.choice_count,
                        &format!("{cluster}.least_request_lb_config"),
                    )?,
                }
            }
            LbPolicyName::RingHash => {
                let raw = raw.ring_hash_lb_config.unwrap_or_default();
                LbPolicy::RingHash(self.ring_sizes(
                    raw.minimum_ring_size,
                    raw.maximum_ring_size,
                    &format!("{cluster}.ring_hash_lb_config"),
                )?)
            }
            LbPolicyName::Maglev => {
                let raw = raw.maglev_lb_config.unwrap_or_default();
                LbPolicy::Maglev {
                    table_size: self
                        .table_size(raw.table_size, &format!("{cluster}.maglev_lb_config"))?,
                }
            }
        })
    }

    /// Check `load_balancing_policy` (at `path`): Envoy uses the first policy it knows,
    /// so zerohop needs the first to be one it knows too; the others are never used, and
    /// only their shape is checked.
    fn load_balancing_policy(
        &self,
        raw: RawLoadBalancingPolicy,
        path: &str,
    ) -> Result<LbPolicy, EnvoyConfigError> {
        let example = "e.g. `policies: [{ typed_extension_config: { name: \
                       envoy.load_balancing_policies.maglev, typed_config: { \"@type\": \
                       type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.\
                       Maglev } } }]`";
        let policies = raw.policies.unwrap_or_default();
        if policies.is_empty() {
            return Err(self.invalid(
                path.to_owned(),
                Problem::Empty {
                    field: "policies",
                    hint: format!("list at least one policy, {example}"),
                },
            ));
        }
        let mut first = None;
        for (i, policy) in policies.into_iter().enumerate() {
            let policy_path = format!("{path}.policies[{i}]");
            let Some(extension) = policy.typed_extension_config else {
                return Err(self.invalid(
                    policy_path,
                    Problem::Missing {
                        field: "typed_extension_config",
                        hint: format!("Envoy requires it; {example}"),
                    },
                ));
            };
            let extension_path = format!("{policy_path}.typed_extension_config");
            self.name(
                extension.name,
                &extension_path,
                "Envoy requires a name for each policy, e.g. `name: \
                 envoy.load_balancing_policies.round_robin`",
            )?;
            let Some(typed_config) = extension.typed_config else {
                return Err(self.invalid(
                    extension_path,
                    Problem::Missing {
                        field: "typed_config",
                        hint: format!("Envoy selects the policy by its \"@type\"; {example}"),
                    },
                ));
            };
            if first.is_none() {
                first = Some((typed_config, format!("{extension_path}.typed_config")));
            }
        }
        let Some((typed_config, path)) = first else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::NoneOf {
                    fields: "policies",
                    hint: example.to_owned(),
                },
            ));
        };
        let typed_config = match typed_config {
            RawLbTypedConfig::Deferred(mut mapping) => {
                let Some(url) = mapping.remove(TYPE_KEY) else {
                    return Err(self.invalid(
                        path,
                        Problem::Missing {
                            field: "@type",
                            hint: format!("Envoy selects the policy by it; {example}"),
                        },
                    ));
                };
                let url_path = format!("{path}.{TYPE_KEY}");
                let url: String = self.deserialize(&url, &url_path)?;
                let mapping = Value::Mapping(mapping);
                match lb_extension_type(&url) {
                    LbExtensionType::RoundRobin => {
                        RawLbTypedConfig::RoundRobin(self.deserialize(&mapping, &path)?)
                    }
                    LbExtensionType::LeastRequest => {
                        RawLbTypedConfig::LeastRequest(self.deserialize(&mapping, &path)?)
                    }
                    LbExtensionType::Random => {
                        RawLbTypedConfig::Random(self.deserialize(&mapping, &path)?)
                    }
                    LbExtensionType::RingHash => {
                        RawLbTypedConfig::RingHash(self.deserialize(&mapping, &path)?)
                    }
                    LbExtensionType::Maglev => {
                        RawLbTypedConfig::Maglev(self.deserialize(&mapping, &path)?)
                    }
                    LbExtensionType::PeakEwma => {
                        RawLbTypedConfig::PeakEwma(self.deserialize(&mapping, &path)?)
                    }
                    LbExtensionType::Other(url) => RawLbTypedConfig::Other(url),
                }
            }
            read => read,
        };
        Ok(match typed_config {
            RawLbTypedConfig::RoundRobin(RawRoundRobinLb {}) => LbPolicy::RoundRobin,
            RawLbTypedConfig::Random(RawRandomLb {}) => LbPolicy::Random,
            RawLbTypedConfig::LeastRequest(raw) => LbPolicy::LeastRequest {
                choice_count: self.choice_count(raw.choice_count, &path)?,
            },
            RawLbTypedConfig::RingHash(raw) => LbPolicy::RingHash(self.ring_sizes(
                raw.minimum_ring_size,
                raw.maximum_ring_size,
                &path,
            )?),
            RawLbTypedConfig::Maglev(raw) => LbPolicy::Maglev {
                table_size: self.table_size(raw.table_size, &path)?,
            },
            RawLbTypedConfig::PeakEwma(raw) => LbPolicy::PeakEwma(self.peak_ewma(raw, &path)?),
            RawLbTypedConfig::Other(url) => {
                return Err(
                    self.schema(format!("{path}.{TYPE_KEY}"), unsupported_lb_extension(&url))
                )
            }
            // Resolved above.
            RawLbTypedConfig::Deferred(_) => {
                return Err(self.invalid(
                    path,
                    Problem::Missing {
                        field: "@type",
                        hint: format!("Envoy selects the policy by it; {example}"),
                    },
                ))
            }
        })
    }

    /// Check LEAST_REQUEST's `choice_count` (in the config at `path`).
    fn choice_count(&self, raw: Option<Unsigned>, path: &str) -> Result<u32, EnvoyConfigError> {
        let Some(Unsigned(value)) = raw else {
            return Ok(DEFAULT_CHOICE_COUNT);
        };
        match u32::try_from(value) {
            Ok(count) if count >= 2 => Ok(count),
            _ => Err(self.invalid(
                format!("{path}.choice_count"),
                Problem::OutOfRange {
                    value,
                    min: 2,
                    max: u64::from(u32::MAX),
                    hint: ", or leave it out for the default 2 (the number of random endpoints \
                           compared; Envoy requires at least 2)",
                },
            )),
        }
    }

    /// Check RING_HASH's `minimum_ring_size` and `maximum_ring_size` (in the config at
    /// `path`).
    fn ring_sizes(
        &self,
        minimum: Option<Unsigned>,
        maximum: Option<Unsigned>,
        path: &str,
    ) -> Result<RingHashConfig, EnvoyConfigError> {
        let size = |raw: Option<Unsigned>, field: &str, default: u64| match raw {
            None => Ok(default),
            Some(Unsigned(value)) if (1..=MAX_RING_SIZE).contains(&value) => Ok(value),
            Some(Unsigned(value)) => Err(self.invalid(
                format!("{path}.{field}"),
                Problem::OutOfRange {
                    value,
                    min: 1,
                    max: MAX_RING_SIZE,
                    hint: " (Envoy limits a ring to 8M entries, and an empty ring would pick \
                           no endpoint); leave it out for the default",
                },
            )),
        };
        let minimum_ring_size = size(minimum, "minimum_ring_size", DEFAULT_MINIMUM_RING_SIZE)?;
        let maximum_ring_size = size(maximum, "maximum_ring_size", MAX_RING_SIZE)?;
        if minimum_ring_size > maximum_ring_size {
            return Err(self.invalid(
                format!("{path}.minimum_ring_size"),
                Problem::RingSizes {
                    minimum: minimum_ring_size,
                    maximum: maximum_ring_size,
                },
            ));
        }
        Ok(RingHashConfig {
            minimum_ring_size,
            maximum_ring_size,
        })
    }

    /// Check MAGLEV's `table_size` (in the config at `path`).
    fn table_size(&self, raw: Option<Unsigned>, path: &str) -> Result<u64, EnvoyConfigError> {
        let Some(Unsigned(value)) = raw else {
            return Ok(DEFAULT_MAGLEV_TABLE_SIZE);
        };
        let path = format!("{path}.table_size");
        if !(2..=MAX_MAGLEV_TABLE_SIZE).contains(&value) {
            return Err(self.invalid(
                path,
                Problem::OutOfRange {
                    value,
                    min: 2,
                    max: MAX_MAGLEV_TABLE_SIZE,
                    hint: ", a prime (Envoy's limit); leave it out for the default 65537",
                },
            ));
        }
        if !is_prime(value) {
            return Err(self.invalid(path, Problem::NotPrime { value }));
        }
        Ok(value)
    }

    /// Check the Peak EWMA policy's config (at `path`).
    fn peak_ewma(
        &self,
        raw: RawPeakEwmaLb,
        path: &str,
    ) -> Result<PeakEwmaConfig, EnvoyConfigError> {
        if let Some(Unsigned(value)) = raw.max_samples_per_host {
            if u32::try_from(value).is_err() {
                return Err(self.invalid(
                    format!("{path}.max_samples_per_host"),
                    Problem::OutOfRange {
                        value,
                        min: 0,
                        max: u64::from(u32::MAX),
                        hint: "",
                    },
                ));
            }
        }
        let penalty_value = match raw.penalty_value {
            None => DEFAULT_PEAK_EWMA_PENALTY,
            Some(Double(value)) if value.is_finite() && value >= 0.0 => value,
            Some(Double(value)) => {
                return Err(self.invalid(
                    format!("{path}.penalty_value"),
                    Problem::BadPenalty {
                        value: value.to_string(),
                    },
                ))
            }
        };
        Ok(PeakEwmaConfig {
            decay_time: raw.decay_time.map_or(DEFAULT_PEAK_EWMA_DECAY_TIME, |d| d.0),
            default_rtt: raw.default_rtt.map_or(DEFAULT_PEAK_EWMA_RTT, |d| d.0),
            penalty_value,
        })
    }

    /// Check a cluster's `load_assignment` and flatten its endpoints.
    fn endpoints(
        &self,
        load_assignment: Option<RawLoadAssignment>,
        cluster: &str,
    ) -> Result<Vec<Endpoint>, EnvoyConfigError> {
        let Some(load_assignment) = load_assignment else {
            return Err(self.invalid(cluster.to_owned(), Problem::NoEndpoints));
        };
        let path = format!("{cluster}.load_assignment");
        let cluster_name_hint = "Envoy requires it; write the cluster's name, e.g. \
                                 `cluster_name: service_backend`";
        match load_assignment.cluster_name.as_deref() {
            None => {
                return Err(self.invalid(
                    path,
                    Problem::Missing {
                        field: "cluster_name",
                        hint: cluster_name_hint.to_owned(),
                    },
                ))
            }
            Some("") => {
                return Err(self.invalid(
                    format!("{path}.cluster_name"),
                    Problem::Empty {
                        field: "cluster_name",
                        hint: cluster_name_hint.to_owned(),
                    },
                ))
            }
            Some(_) => {}
        }
        let mut endpoints = Vec::new();
        let mut seen: HashMap<SocketAddrV4, String> = HashMap::new();
        let mut weight_sum: u64 = 0;
        for (l, locality) in load_assignment
            .endpoints
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            for (e, lb_endpoint) in locality
                .lb_endpoints
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                let path = format!("{path}.endpoints[{l}].lb_endpoints[{e}]");
                let Some(endpoint) = lb_endpoint.endpoint else {
                    return Err(self.invalid(
                        path,
                        Problem::Missing {
                            field: "endpoint",
                            hint: "add `endpoint: { address: { socket_address: { address: \
                                   10.0.0.2, port_value: 8080 } } }`"
                                .to_owned(),
                        },
                    ));
                };
                let address = self.socket_address(
                    endpoint.address,
                    &format!("{path}.endpoint"),
                    "address",
                    AddressRole::Endpoint,
                )?;
                if let Some(first) = seen.get(&address) {
                    return Err(self.invalid(
                        format!("{path}.endpoint.address"),
                        Problem::DuplicateEndpoint {
                            address,
                            first: first.clone(),
                        },
                    ));
                }
                seen.insert(address, path.clone());
                let weight = match lb_endpoint.load_balancing_weight {
                    None => 1,
                    Some(weight) => match u32::try_from(weight.0) {
                        Ok(weight) if weight != 0 => weight,
                        _ => {
                            return Err(self.invalid(
                                format!("{path}.load_balancing_weight"),
                                Problem::BadWeight { weight: weight.0 },
                            ))
                        }
                    },
                };
                weight_sum += u64::from(weight);
                if weight_sum > u64::from(u32::MAX) {
                    return Err(self.invalid(
                        format!("{path}.load_balancing_weight"),
                        Problem::WeightSumTooLarge,
                    ));
                }
                endpoints.push(Endpoint { address, weight });
            }
        }
        if endpoints.is_empty() {
            return Err(self.invalid(format!("{path}.endpoints"), Problem::NoEndpoints));
        }
        Ok(endpoints)
    }

    fn admin(&self, admin: RawAdmin, listeners: &[Listener]) -> Result<Admin, EnvoyConfigError> {
        let address = self.socket_address(admin.address, "admin", "address", AddressRole::Admin)?;
        if let Some(i) = listeners.iter().position(|l| l.address == address) {
            return Err(self.invalid(
                "admin.address".to_owned(),
                Problem::AdminAddressInUse {
                    address,
                    listener: format!(
                        "listener `{}` (static_resources.listeners[{i}])",
                        listeners[i].name
                    ),
                },
            ));
        }
        Ok(Admin { address })
    }
}

/// The fields of a route's `match` that choose how the path is matched.
const PATH_SPECIFIERS: &str = "`prefix`, `path`, `safe_regex` and `path_separated_prefix`";
/// The actions a route may have.
const ROUTE_ACTIONS: &str = "`route`, `redirect` and `direct_response`";
/// The pseudo-headers a header matcher or `%REQ(...)%` may name; Envoy keeps the HTTP/1
/// request line and `Host` in them.
const PSEUDO_HEADERS: &[&str] = &[":authority", ":method", ":path", ":scheme"];

/// A place in the config that names a cluster.
struct ClusterReference<'c> {
    path: String,
    name: &'c str,
    referrer: &'static str,
}

/// Return every cluster a route configuration at `base` names, with its YAML path.
fn cluster_references<'c>(route_config: &'c RouteConfig, base: &str) -> Vec<ClusterReference<'c>> {
    let mut references = Vec::new();
    for (v, virtual_host) in route_config.virtual_hosts.iter().enumerate() {
        for (r, route) in virtual_host.routes.iter().enumerate() {
            let Action::Route(action) = &route.action else {
                continue;
            };
            let path = format!("{base}.virtual_hosts[{v}].routes[{r}].route");
            match &action.cluster {
                ClusterSpecifier::Cluster(name) => references.push(ClusterReference {
                    path: format!("{path}.cluster"),
                    name,
                    referrer: "a route's `cluster`",
                }),
                ClusterSpecifier::WeightedClusters(weights) => {
                    for (w, weight) in weights.iter().enumerate() {
                        references.push(ClusterReference {
                            path: format!("{path}.weighted_clusters.clusters[{w}].name"),
                            name: &weight.name,
                            referrer: "each of a route's `weighted_clusters`",
                        });
                    }
                }
            }
        }
    }
    references
}

/// A required value that can be present but empty.
trait Emptiable {
    fn is_empty_value(&self) -> bool;
}

impl Emptiable for String {
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}

impl<T> Emptiable for Vec<T> {
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}

/// The HTTP connection manager and its route configuration.
impl Builder<'_> {
    /// Check a required string or list at `{parent}.{field}`: present and not empty.
    fn required<T: Emptiable>(
        &self,
        value: Option<T>,
        parent: &str,
        field: &'static str,
        hint: &str,
    ) -> Result<T, EnvoyConfigError> {
        match value {
            None => Err(self.invalid(
                parent.to_owned(),
                Problem::Missing {
                    field,
                    hint: hint.to_owned(),
                },
            )),
            Some(value) if value.is_empty_value() => Err(self.invalid(
                format!("{parent}.{field}"),
                Problem::Empty {
                    field,
                    hint: hint.to_owned(),
                },
            )),
            Some(value) => Ok(value),
        }
    }

    /// Check that at most one of the fields of a oneof (`fields` names them all) is set;
    /// return the one that is. A second one is reported at its own path.
    fn one_of(
        &self,
        parent: &str,
        fields: &'static str,
        set: &[(&'static str, bool)],
    ) -> Result<Option<&'static str>, EnvoyConfigError> {
        let mut found = None;
        for &(field, is_set) in set {
            if !is_set {
                continue;
            }
            if let Some(other) = found {
                return Err(self.invalid(
                    format!("{parent}.{field}"),
                    Problem::Conflict {
                        field,
                        other,
                        fields,
                    },
                ));
            }
            found = Some(field);
        }
        Ok(found)
    }

    /// Read an optional duration where `0s` turns the timeout off and absence means
    /// `default` (`None`: off).
    fn timeout(
        value: Option<super::duration::ProtoDuration>,
        default: Option<Duration>,
    ) -> Option<Duration> {
        match value {
            None => default,
            Some(timeout) if timeout.0 == Duration::ZERO => None,
            Some(timeout) => Some(timeout.0),
        }
    }

    fn http_connection_manager(
        &self,
        raw: RawHttpConnectionManager,
        path: &str,
    ) -> Result<HttpConnectionManager, EnvoyConfigError> {
        let stat_prefix = self.required(
            raw.stat_prefix,
            path,
            "stat_prefix",
            "Envoy requires it: the manager's counters are named http.<stat_prefix>.*; e.g. \
             `stat_prefix: ingress_http`",
        )?;
        let codec_type = match raw.codec_type {
            None | Some(CodecTypeName::Auto) => CodecType::Auto,
            Some(CodecTypeName::Http1) => CodecType::Http1,
        };
        let inline_hint = "use an inline `route_config`: zerohop has no xDS, so the routes \
                           come from the config file";
        if raw.rds.is_some() {
            return Err(self.invalid(
                format!("{path}.rds"),
                Problem::NotSupported {
                    field: "rds",
                    hint: inline_hint.to_owned(),
                },
            ));
        }
        if raw.scoped_routes.is_some() {
            return Err(self.invalid(
                format!("{path}.scoped_routes"),
                Problem::NotSupported {
                    field: "scoped_routes",
                    hint: inline_hint.to_owned(),
                },
            ));
        }
        let Some(route_config) = raw.route_config else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::Missing {
                    field: "route_config",
                    hint: "write the route table inline, e.g. `route_config: { virtual_hosts: \
                           [{ name: backend, domains: [\"*\"], routes: [{ match: { prefix: \
                           \"/\" }, route: { cluster: backend } }] }] }`"
                        .to_owned(),
                },
            ));
        };
        let route_config = self.route_config(route_config, &format!("{path}.route_config"))?;
        let http_filters = self.http_filters(raw.http_filters, path)?;
        let access_log = self.access_logs(raw.access_log, path)?;
        let idle_timeout = Self::timeout(
            raw.common_http_protocol_options
                .and_then(|o| o.idle_timeout),
            Some(DEFAULT_HTTP_IDLE_TIMEOUT),
        );
        let request_headers_timeout = Self::timeout(raw.request_headers_timeout, None);
        let stream_idle_timeout =
            Self::timeout(raw.stream_idle_timeout, Some(DEFAULT_STREAM_IDLE_TIMEOUT));
        let request_timeout = Self::timeout(raw.request_timeout, None);
        let max_request_headers_kb = match raw.max_request_headers_kb {
            None => DEFAULT_MAX_REQUEST_HEADERS_KB,
            Some(kb) => match u32::try_from(kb.0) {
                Ok(kb) if (1..=MAX_REQUEST_HEADERS_KB).contains(&kb) => kb,
                _ => {
                    return Err(self.invalid(
                        format!("{path}.max_request_headers_kb"),
                        Problem::OutOfRange {
                            value: kb.0,
                            min: 1,
                            max: u64::from(MAX_REQUEST_HEADERS_KB),
                            hint: ", as Envoy, or leave it out for the default 60",
                        },
                    ))
                }
            },
        };
        let xff_num_trusted_hops = match raw.xff_num_trusted_hops {
            None => 0,
            Some(hops) => u32::try_from(hops.0).map_err(|_| {
                self.invalid(
                    format!("{path}.xff_num_trusted_hops"),
                    Problem::OutOfRange {
                        value: hops.0,
                        min: 0,
                        max: u64::from(u32::MAX),
                        hint: "",
                    },
                )
            })?,
        };
        Ok(HttpConnectionManager {
            stat_prefix,
            codec_type,
            route_config,
            http_filters,
            idle_timeout,
            request_headers_timeout,
            stream_idle_timeout,
            request_timeout,
            max_request_headers_kb,
            use_remote_address: raw.use_remote_address.unwrap_or(false),
            xff_num_trusted_hops,
            generate_request_id: raw.generate_request_id.unwrap_or(true),
            access_log,
        })
    }

    /// Check `http_filters`: known filters, the router last.
    fn http_filters(
        &self,
        raw: Option<Vec<RawHttpFilter>>,
        hcm: &str,
    ) -> Result<Vec<HttpFilter>, EnvoyConfigError> {
        let path = format!("{hcm}.http_filters");
        let mut filters = Vec::new();
        let mut router: Option<String> = None;
        for (i, filter) in raw.unwrap_or_default().into_iter().enumerate() {
            let filter_path = format!("{path}[{i}]");
            if let Some(router) = router {
                return Err(self.invalid(filter_path, Problem::FilterAfterRouter { router }));
            }
            let name = self.required(
                filter.name,
                &filter_path,
                "name",
                "Envoy requires a name for each HTTP filter, e.g. `name: \
                 envoy.filters.http.router`",
            )?;
            let typed_config_path = format!("{filter_path}.typed_config");
            let config = match filter.typed_config {
                Some(RawHttpTypedConfig::Deferred(mut mapping)) if !mapping.is_empty() => {
                    let Some(url) = mapping.remove(TYPE_KEY) else {
                        return Err(self.invalid(
                            typed_config_path,
                            Problem::Missing {
                                field: "@type",
                                hint: format!(
                                    "Envoy v3 selects an HTTP filter by it: add `\"@type\": \
                                     {ROUTER_TYPE_URL}` for the router"
                                ),
                            },
                        ));
                    };
                    let url_path = format!("{typed_config_path}.{TYPE_KEY}");
                    let url: String = self.deserialize(&url, &url_path)?;
                    let rest = Value::Mapping(mapping);
                    let at = &typed_config_path;
                    match http_filter_type(&url) {
                        Ok(HttpFilterType::Router) => {
                            RawHttpTypedConfig::Router(self.deserialize(&rest, at)?)
                        }
                        Ok(HttpFilterType::LocalRateLimit) => {
                            RawHttpTypedConfig::LocalRateLimit(self.deserialize(&rest, at)?)
                        }
                        Ok(HttpFilterType::Fault) => {
                            RawHttpTypedConfig::Fault(self.deserialize(&rest, at)?)
                        }
                        Ok(HttpFilterType::HeaderMutation) => {
                            RawHttpTypedConfig::HeaderMutation(self.deserialize(&rest, at)?)
                        }
                        Ok(HttpFilterType::PeakEwma) => {
                            RawHttpTypedConfig::PeakEwma(self.deserialize(&rest, at)?)
                        }
                        Ok(HttpFilterType::Buffer) => {
                            RawHttpTypedConfig::Buffer(self.deserialize(&rest, at)?)
                        }
                        Err(message) => return Err(self.schema(url_path, message)),
                    }
                }
                Some(RawHttpTypedConfig::Deferred(_)) | None => {
                    // No typed_config (or an empty one): Envoy finds the filter by its
                    // name.
                    if name != ROUTER_FILTER_NAME {
                        return Err(self.schema(
                            format!("{filter_path}.name"),
                            format!(
                                "HTTP filter `{name}` needs a typed_config with its \"@type\" \
                                 (only the router ({ROUTER_FILTER_NAME}) may go without)"
                            ),
                        ));
                    }
                    RawHttpTypedConfig::Router(RawRouter {})
                }
                Some(config) => config,
            };
            match config {
                RawHttpTypedConfig::Router(RawRouter {}) => {
                    router = Some(filter_path);
                    filters.push(HttpFilter::Router(RouterFilter { name }));
                }
                RawHttpTypedConfig::LocalRateLimit(raw) => {
                    filters.push(self.local_rate_limit(name, raw, &typed_config_path)?);
                }
                RawHttpTypedConfig::Fault(raw) => {
                    filters.push(self.fault(name, raw, &typed_config_path)?);
                }
                RawHttpTypedConfig::HeaderMutation(raw) => {
                    filters.push(self.header_mutation(name, raw, &typed_config_path)?);
                }
                RawHttpTypedConfig::PeakEwma(RawRouter {}) => {
                    filters.push(HttpFilter::PeakEwma(RouterFilter { name }));
                }
                RawHttpTypedConfig::Buffer(raw) => {
                    filters.push(self.buffer(name, raw, &typed_config_path)?);
                }
                RawHttpTypedConfig::Deferred(_) => {}
            }
        }
        if router.is_none() {
            return Err(self.invalid(path, Problem::NoRouter));
        }
        Ok(filters)
    }

    /// A `FractionalPercent` (absent: `default`).
    fn percent(
        &self,
        raw: Option<RawFractionalPercent>,
        path: &str,
        default: FractionalPercent,
    ) -> Result<FractionalPercent, EnvoyConfigError> {
        let Some(raw) = raw else {
            return Ok(default);
        };
        let denominator = raw.denominator.unwrap_or(DenominatorName::Hundred).value();
        let numerator = raw.numerator.map_or(0, |n| n.0);
        if numerator > u64::from(u32::MAX) {
            return Err(self.invalid(
                format!("{path}.numerator"),
                Problem::OutOfRange {
                    hint: "",
                    value: numerator,
                    min: 0,
                    max: u64::from(u32::MAX),
                },
            ));
        }
        // Envoy caps a numerator above the denominator at 100%.
        Ok(FractionalPercent {
            numerator: (numerator as u32).min(denominator),
            denominator,
        })
    }

    fn local_rate_limit(
        &self,
        name: String,
        raw: RawLocalRateLimit,
        path: &str,
    ) -> Result<HttpFilter, EnvoyConfigError> {
        let stat_prefix = self.required(
            raw.stat_prefix,
            path,
            "stat_prefix",
            "Envoy requires it: the counters are <stat_prefix>.http_local_rate_limit.*",
        )?;
        let Some(bucket) = raw.token_bucket else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::Missing {
                    field: "token_bucket",
                    hint: "e.g. `token_bucket: { max_tokens: 100, fill_interval: 1s }`".to_owned(),
                },
            ));
        };
        let bucket_path = format!("{path}.token_bucket");
        let bounded = |field: &'static str, value: Option<u64>, default: Option<u64>| {
            let value = value.or(default).ok_or_else(|| {
                self.invalid(
                    bucket_path.clone(),
                    Problem::Missing {
                        field,
                        hint: "the bucket's size, e.g. `max_tokens: 100`".to_owned(),
                    },
                )
            })?;
            if value == 0 || value > u64::from(u32::MAX) {
                return Err(self.invalid(
                    format!("{bucket_path}.{field}"),
                    Problem::OutOfRange {
                        hint: "",
                        value,
                        min: 1,
                        max: u64::from(u32::MAX),
                    },
                ));
            }
            Ok(value as u32)
        };
        let max_tokens = bounded("max_tokens", bucket.max_tokens.map(|n| n.0), None)?;
        let tokens_per_fill = bounded(
            "tokens_per_fill",
            bucket.tokens_per_fill.map(|n| n.0),
            Some(1),
        )?;
        let Some(fill_interval) = bucket.fill_interval.map(|d| d.0) else {
            return Err(self.invalid(
                bucket_path,
                Problem::Missing {
                    field: "fill_interval",
                    hint: "how often tokens_per_fill are added, e.g. `fill_interval: 1s`"
                        .to_owned(),
                },
            ));
        };
        if fill_interval < Duration::from_millis(50) {
            return Err(self.invalid(
                format!("{bucket_path}.fill_interval"),
                Problem::OutOfRange {
                    hint: " (milliseconds; Envoy's token bucket refills at most every 50 ms)",
                    value: fill_interval.as_millis() as u64,
                    min: 50,
                    max: u64::MAX,
                },
            ));
        }
        let runtime = |raw: Option<RawRuntimeFractionalPercent>, field: &str| {
            // No runtime in zerohop: the default value is the value; absent, Envoy's
            // default is 0% ("for safety").
            let value = raw.and_then(|r| r.default_value);
            self.percent(
                value,
                &format!("{path}.{field}.default_value"),
                FractionalPercent::NONE,
            )
        };
        let filter_enabled = runtime(raw.filter_enabled, "filter_enabled")?;
        let filter_enforced = runtime(raw.filter_enforced, "filter_enforced")?;
        let status = match raw.status.and_then(|s| s.code).map(|c| c.0) {
            None => 429,
            Some(code @ 400..=599) => code as u16,
            Some(code) => {
                return Err(self.invalid(
                    format!("{path}.status.code"),
                    Problem::BadStatus { status: code },
                ))
            }
        };
        let mut response_headers_to_add = Vec::new();
        for (i, option) in raw
            .response_headers_to_add
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let at = format!("{path}.response_headers_to_add[{i}]");
            let option = self.header_value_option(option, &at)?;
            let Some(value) = option.value.as_literal() else {
                return Err(self.invalid(
                    format!("{at}.header.value"),
                    Problem::NotSupported {
                        field: "a %VARIABLE% here",
                        hint: "the rate limiter's headers are literal in zerohop".to_owned(),
                    },
                ));
            };
            response_headers_to_add.push((option.key, value));
        }
        Ok(HttpFilter::LocalRateLimit(LocalRateLimitFilter {
            name,
            stat_prefix,
            max_tokens,
            tokens_per_fill,
            fill_interval,
            filter_enabled,
            filter_enforced,
            status,
            response_headers_to_add,
        }))
    }

    fn fault(
        &self,
        name: String,
        raw: RawFault,
        path: &str,
    ) -> Result<HttpFilter, EnvoyConfigError> {
        let delay = match raw.delay {
            None => None,
            Some(d) => {
                let at = format!("{path}.delay");
                let Some(fixed) = d.fixed_delay.map(|d| d.0) else {
                    return Err(self.invalid(
                        at,
                        Problem::Missing {
                            field: "fixed_delay",
                            hint: "e.g. `fixed_delay: 0.5s` (header_delay is not supported)"
                                .to_owned(),
                        },
                    ));
                };
                Some((
                    fixed,
                    self.percent(
                        d.percentage,
                        &format!("{at}.percentage"),
                        FractionalPercent::NONE,
                    )?,
                ))
            }
        };
        let abort = match raw.abort {
            None => None,
            Some(a) => {
                let at = format!("{path}.abort");
                let status = match a.http_status.map(|s| s.0) {
                    Some(code @ 200..=599) => code as u16,
                    Some(code) => {
                        return Err(self.invalid(
                            format!("{at}.http_status"),
                            Problem::BadStatus { status: code },
                        ))
                    }
                    None => {
                        return Err(self.invalid(
                            at,
                            Problem::Missing {
                                field: "http_status",
                                hint: "e.g. `http_status: 503` (grpc_status and header_abort \
                                       are not supported)"
                                    .to_owned(),
                            },
                        ))
                    }
                };
                Some((
                    status,
                    self.percent(
                        a.percentage,
                        &format!("{at}.percentage"),
                        FractionalPercent::NONE,
                    )?,
                ))
            }
        };
        Ok(HttpFilter::Fault(FaultFilter { name, delay, abort }))
    }

    fn buffer(
        &self,
        name: String,
        raw: RawBuffer,
        path: &str,
    ) -> Result<HttpFilter, EnvoyConfigError> {
        let Some(Unsigned(max_request_bytes)) = raw.max_request_bytes else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::Missing {
                    field: "max_request_bytes",
                    hint: "Envoy requires it: the largest request body the filter buffers \
                           (a larger one is answered 413), e.g. `max_request_bytes: 1048576`"
                        .to_owned(),
                },
            ));
        };
        let Some(max_request_bytes) = u32::try_from(max_request_bytes)
            .ok()
            .filter(|&bytes| bytes > 0)
        else {
            return Err(self.invalid(
                format!("{path}.max_request_bytes"),
                Problem::OutOfRange {
                    value: max_request_bytes,
                    min: 1,
                    max: u64::from(u32::MAX),
                    hint: " bytes (Envoy requires more than 0)",
                },
            ));
        };
        Ok(HttpFilter::Buffer(BufferFilter {
            name,
            max_request_bytes,
        }))
    }

    fn header_mutation(
        &self,
        name: String,
        raw: RawHeaderMutation,
        path: &str,
    ) -> Result<HttpFilter, EnvoyConfigError> {
        let mutations = raw.mutations;
        let (request, response) = match mutations {
            Some(m) => (m.request_mutations, m.response_mutations),
            None => (None, None),
        };
        let ops = |list: Option<Vec<RawMutationOp>>, field: &str| {
            let mut out = Vec::new();
            for (i, op) in list.unwrap_or_default().into_iter().enumerate() {
                let at = format!("{path}.mutations.{field}[{i}]");
                self.one_of(
                    &at,
                    "`remove` or `append`",
                    &[
                        ("remove", op.remove.is_some()),
                        ("append", op.append.is_some()),
                    ],
                )?;
                match (op.remove, op.append) {
                    (Some(name), _) => {
                        out.push(HeaderMutationOp::Remove(self.header_name(
                            name,
                            format!("{at}.remove"),
                            false,
                        )?));
                    }
                    (None, Some(option)) => {
                        let at = format!("{at}.append");
                        out.push(HeaderMutationOp::Append(
                            self.header_value_option(option, &at)?,
                        ));
                    }
                    (None, None) => {
                        return Err(self.invalid(
                            at,
                            Problem::NoneOf {
                                fields: "`remove` or `append`",
                                hint: "e.g. `remove: x-internal`".to_owned(),
                            },
                        ))
                    }
                }
            }
            Ok::<_, EnvoyConfigError>(out)
        };
        Ok(HttpFilter::HeaderMutation(HeaderMutationFilter {
            name,
            request_mutations: ops(request, "request_mutations")?,
            response_mutations: ops(response, "response_mutations")?,
        }))
    }

    fn route_config(
        &self,
        mut raw: RawRouteConfiguration,
        path: &str,
    ) -> Result<RouteConfig, EnvoyConfigError> {
        let headers = raw.take_headers();
        let max_body = match raw.max_direct_response_body_size_bytes {
            None => DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE,
            Some(size) => u32::try_from(size.0).map_err(|_| {
                self.invalid(
                    format!("{path}.max_direct_response_body_size_bytes"),
                    Problem::OutOfRange {
                        value: size.0,
                        min: 0,
                        max: u64::from(u32::MAX),
                        hint: "",
                    },
                )
            })?,
        };
        // Domain (lowercased) → where it was first listed.
        let mut domains: HashMap<String, String> = HashMap::new();
        let mut wildcard: Option<String> = None;
        let mut virtual_hosts = Vec::new();
        for (v, virtual_host) in raw
            .virtual_hosts
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let virtual_host = self.virtual_host(
                virtual_host,
                &format!("{path}.virtual_hosts[{v}]"),
                max_body,
                &mut domains,
                &mut wildcard,
            )?;
            virtual_hosts.push(virtual_host);
        }
        let headers = self.header_mutations(headers, path)?;
        Ok(RouteConfig {
            name: raw.name.unwrap_or_default(),
            virtual_hosts,
            headers,
            most_specific_header_mutations_wins: raw
                .most_specific_header_mutations_wins
                .unwrap_or(false),
            ignore_port_in_host_matching: raw.ignore_port_in_host_matching.unwrap_or(false),
        })
    }

    fn virtual_host(
        &self,
        mut raw: RawVirtualHost,
        path: &str,
        max_body: u32,
        seen: &mut HashMap<String, String>,
        wildcard: &mut Option<String>,
    ) -> Result<VirtualHost, EnvoyConfigError> {
        let headers = raw.take_headers();
        let name = self.required(
            raw.name,
            path,
            "name",
            "Envoy requires it (it names the virtual host in counters), e.g. `name: backend`",
        )?;
        let domains_hint = "list the hosts it serves, e.g. `domains: [\"example.com\", \
                            \"*.example.com\"]`, or `[\"*\"]` for every host";
        let domains = self.required(raw.domains, path, "domains", domains_hint)?;
        let mut lowercased = Vec::with_capacity(domains.len());
        for (d, domain) in domains.into_iter().enumerate() {
            let domain_path = format!("{path}.domains[{d}]");
            if domain.is_empty() {
                return Err(self.invalid(
                    domain_path,
                    Problem::BadDomain {
                        domain,
                        reason: "it is empty; write a host name, or `*` for every host",
                    },
                ));
            }
            if domain.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(self.invalid(
                    domain_path,
                    Problem::BadDomain {
                        domain,
                        reason: "it contains whitespace or a control character",
                    },
                ));
            }
            let domain = domain.to_ascii_lowercase();
            if domain == "*" {
                if let Some(first) = wildcard.as_ref() {
                    return Err(self.invalid(
                        domain_path,
                        Problem::SecondWildcardDomain {
                            first: first.clone(),
                        },
                    ));
                }
                *wildcard = Some(domain_path);
            } else if let Some(first) = seen.get(&domain) {
                return Err(self.invalid(
                    domain_path,
                    Problem::DuplicateDomain {
                        domain,
                        first: first.clone(),
                    },
                ));
            } else {
                seen.insert(domain.clone(), domain_path);
            }
            lowercased.push(domain);
        }
        let mut routes = Vec::new();
        for (r, route) in raw.routes.unwrap_or_default().into_iter().enumerate() {
            routes.push(self.route(route, &format!("{path}.routes[{r}]"), max_body)?);
        }
        let retry_policy = match raw.retry_policy {
            None => None,
            Some(policy) => Some(self.retry_policy(policy, &format!("{path}.retry_policy"))?),
        };
        // Envoy takes a route's own policy whole, or else the virtual host's: the two are
        // not merged.
        if let Some(policy) = &retry_policy {
            for route in &mut routes {
                if let Action::Route(action) = &mut route.action {
                    if action.retry_policy.is_none() {
                        action.retry_policy = Some(policy.clone());
                    }
                }
            }
        }
        let headers = self.header_mutations(headers, path)?;
        Ok(VirtualHost {
            name,
            domains: lowercased,
            routes,
            headers,
            retry_policy,
        })
    }

    fn route(
        &self,
        mut raw: RawRoute,
        path: &str,
        max_body: u32,
    ) -> Result<Route, EnvoyConfigError> {
        let headers = raw.take_headers();
        let Some(route_match) = raw.route_match else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::Missing {
                    field: "match",
                    hint: "every route needs one, e.g. `match: { prefix: \"/\" }`".to_owned(),
                },
            ));
        };
        let route_match = self.route_match(route_match, &format!("{path}.match"))?;
        self.one_of(
            path,
            ROUTE_ACTIONS,
            &[
                ("route", raw.route.is_some()),
                ("redirect", raw.redirect.is_some()),
                ("direct_response", raw.direct_response.is_some()),
            ],
        )?;
        let action = if let Some(action) = raw.route {
            Action::Route(self.route_action(action, &format!("{path}.route"))?)
        } else if let Some(redirect) = raw.redirect {
            Action::Redirect(self.redirect(redirect, &format!("{path}.redirect"))?)
        } else if let Some(direct) = raw.direct_response {
            Action::DirectResponse(self.direct_response(
                direct,
                &format!("{path}.direct_response"),
                max_body,
            )?)
        } else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::NoneOf {
                    fields: ROUTE_ACTIONS,
                    hint: "e.g. `route: { cluster: backend }`".to_owned(),
                },
            ));
        };
        let headers = self.header_mutations(headers, path)?;
        Ok(Route {
            name: raw.name.unwrap_or_default(),
            route_match,
            action,
            headers,
        })
    }

    fn route_match(&self, raw: RawRouteMatch, path: &str) -> Result<RouteMatch, EnvoyConfigError> {
        self.one_of(
            path,
            PATH_SPECIFIERS,
            &[
                ("prefix", raw.prefix.is_some()),
                ("path", raw.path.is_some()),
                ("safe_regex", raw.safe_regex.is_some()),
                ("path_separated_prefix", raw.path_separated_prefix.is_some()),
            ],
        )?;
        let path_match = if let Some(prefix) = raw.prefix {
            PathMatch::Prefix(prefix)
        } else if let Some(exact) = raw.path {
            PathMatch::Path(exact)
        } else if let Some(regex) = raw.safe_regex {
            PathMatch::SafeRegex(self.regex(regex, &format!("{path}.safe_regex"))?)
        } else if let Some(prefix) = raw.path_separated_prefix {
            // Envoy's rule: ^[^?#]+[^?#/]$.
            if prefix.len() < 2 || prefix.contains(['?', '#']) || prefix.ends_with('/') {
                return Err(self.invalid(
                    format!("{path}.path_separated_prefix"),
                    Problem::BadPath {
                        value: prefix,
                        reason: "a path_separated_prefix is at least two characters long, has \
                                 no `?` or `#` and does not end in `/` (Envoy's rule); to match \
                                 every path write `prefix: \"/\"`",
                    },
                ));
            }
            PathMatch::PathSeparatedPrefix(prefix)
        } else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::NoneOf {
                    fields: PATH_SPECIFIERS,
                    hint: "e.g. `prefix: \"/\"` to match every path".to_owned(),
                },
            ));
        };
        let mut headers = Vec::new();
        for (h, header) in raw.headers.unwrap_or_default().into_iter().enumerate() {
            headers.push(self.header_matcher(header, &format!("{path}.headers[{h}]"))?);
        }
        let mut query_parameters = Vec::new();
        for (q, parameter) in raw
            .query_parameters
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            query_parameters.push(
                self.query_parameter_matcher(parameter, &format!("{path}.query_parameters[{q}]"))?,
            );
        }
        Ok(RouteMatch {
            path: path_match,
            case_sensitive: raw.case_sensitive.unwrap_or(true),
            headers,
            query_parameters,
        })
    }

    /// Check a `RegexMatcher` at `path` and return its regex.
    fn regex(&self, raw: RawRegexMatcher, path: &str) -> Result<String, EnvoyConfigError> {
        let regex = self.required(
            raw.regex,
            path,
            "regex",
            "write the regular expression (RE2 syntax), e.g. `regex: \"/api/v[0-9]+/.*\"`",
        )?;
        if let Err(error) = check_regex(&regex) {
            return Err(self.invalid(format!("{path}.regex"), Problem::BadRegex { regex, error }));
        }
        Ok(regex)
    }

    /// Check a header name at `path`, for a matcher (`matcher`: pseudo-headers allowed) or
    /// for a header to add or remove; return it lowercased.
    fn header_name(
        &self,
        name: String,
        path: String,
        matcher: bool,
    ) -> Result<String, EnvoyConfigError> {
        let lower = name.to_ascii_lowercase();
        let reason = if lower.starts_with(':') {
            if matcher && PSEUDO_HEADERS.contains(&lower.as_str()) {
                return Ok(lower);
            }
            if matcher {
                "the pseudo-headers zerohop knows are :authority, :method, :path and :scheme"
                    .to_owned()
            } else {
                "Envoy does not let headers_to_add and headers_to_remove change pseudo-headers \
                 (`:`-prefixed)"
                    .to_owned()
            }
        } else if lower == "host" {
            if matcher {
                "Envoy keeps the Host header as `:authority`, so a matcher on `host` never \
                 matches; write `name: \":authority\"`"
                    .to_owned()
            } else {
                "Envoy does not let headers_to_add and headers_to_remove change `host`; \
                 rewrite it with a route's `host_rewrite_literal`"
                    .to_owned()
            }
        } else if !is_token(&lower) {
            "a header name is a token: letters, digits and !#$%&'*+-.^_`|~".to_owned()
        } else {
            return Ok(lower);
        };
        Err(self.invalid(path, Problem::BadHeaderName { name, reason }))
    }

    fn header_matcher(
        &self,
        raw: RawHeaderMatcher,
        path: &str,
    ) -> Result<HeaderMatcher, EnvoyConfigError> {
        let name = self.required(
            raw.name,
            path,
            "name",
            "the header to match, e.g. `name: x-canary` (`:method` for the method)",
        )?;
        let name = self.header_name(name, format!("{path}.name"), true)?;
        self.one_of(
            path,
            "`exact_match`, `safe_regex_match`, `present_match`, `prefix_match`, \
             `suffix_match`, `contains_match` and `string_match`",
            &[
                ("exact_match", raw.exact_match.is_some()),
                ("safe_regex_match", raw.safe_regex_match.is_some()),
                ("present_match", raw.present_match.is_some()),
                ("prefix_match", raw.prefix_match.is_some()),
                ("suffix_match", raw.suffix_match.is_some()),
                ("contains_match", raw.contains_match.is_some()),
                ("string_match", raw.string_match.is_some()),
            ],
        )?;
        let not_empty = |value: String, field: &'static str| {
            if value.is_empty() {
                Err(self.invalid(
                    format!("{path}.{field}"),
                    Problem::Empty {
                        field,
                        hint: "Envoy requires at least one character; use `present_match: \
                               true` to match any value"
                            .to_owned(),
                    },
                ))
            } else {
                Ok(value)
            }
        };
        let value = |pattern| {
            HeaderMatchRule::Value(StringMatcher {
                pattern,
                ignore_case: false,
            })
        };
        let rule = if let Some(exact) = raw.exact_match {
            // Envoy: an empty exact_match matches any value.
            if exact.is_empty() {
                HeaderMatchRule::Present(true)
            } else {
                value(StringPattern::Exact(exact))
            }
        } else if let Some(regex) = raw.safe_regex_match {
            value(StringPattern::SafeRegex(
                self.regex(regex, &format!("{path}.safe_regex_match"))?,
            ))
        } else if let Some(present) = raw.present_match {
            HeaderMatchRule::Present(present)
        } else if let Some(prefix) = raw.prefix_match {
            value(StringPattern::Prefix(not_empty(prefix, "prefix_match")?))
        } else if let Some(suffix) = raw.suffix_match {
            value(StringPattern::Suffix(not_empty(suffix, "suffix_match")?))
        } else if let Some(contains) = raw.contains_match {
            value(StringPattern::Contains(not_empty(
                contains,
                "contains_match",
            )?))
        } else if let Some(matcher) = raw.string_match {
            HeaderMatchRule::Value(self.string_matcher(matcher, &format!("{path}.string_match"))?)
        } else {
            // Envoy: no rule is a presence check.
            HeaderMatchRule::Present(true)
        };
        Ok(HeaderMatcher {
            name,
            rule,
            invert_match: raw.invert_match.unwrap_or(false),
            treat_missing_header_as_empty: raw.treat_missing_header_as_empty.unwrap_or(false),
        })
    }

    fn string_matcher(
        &self,
        raw: RawStringMatcher,
        path: &str,
    ) -> Result<StringMatcher, EnvoyConfigError> {
        const FIELDS: &str = "`exact`, `prefix`, `suffix`, `contains` and `safe_regex`";
        self.one_of(
            path,
            FIELDS,
            &[
                ("exact", raw.exact.is_some()),
                ("prefix", raw.prefix.is_some()),
                ("suffix", raw.suffix.is_some()),
                ("contains", raw.contains.is_some()),
                ("safe_regex", raw.safe_regex.is_some()),
            ],
        )?;
        let not_empty = |value: String, field: &'static str| {
            if value.is_empty() {
                Err(self.invalid(
                    format!("{path}.{field}"),
                    Problem::Empty {
                        field,
                        hint: "Envoy requires at least one character".to_owned(),
                    },
                ))
            } else {
                Ok(value)
            }
        };
        let pattern = if let Some(exact) = raw.exact {
            StringPattern::Exact(exact)
        } else if let Some(prefix) = raw.prefix {
            StringPattern::Prefix(not_empty(prefix, "prefix")?)
        } else if let Some(suffix) = raw.suffix {
            StringPattern::Suffix(not_empty(suffix, "suffix")?)
        } else if let Some(contains) = raw.contains {
            StringPattern::Contains(not_empty(contains, "contains")?)
        } else if let Some(regex) = raw.safe_regex {
            StringPattern::SafeRegex(self.regex(regex, &format!("{path}.safe_regex"))?)
        } else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::NoneOf {
                    fields: FIELDS,
                    hint: "e.g. `string_match: { exact: \"yes\" }`".to_owned(),
                },
            ));
        };
        Ok(StringMatcher {
            pattern,
            ignore_case: raw.ignore_case.unwrap_or(false),
        })
    }

    fn query_parameter_matcher(
        &self,
        raw: RawQueryParameterMatcher,
        path: &str,
    ) -> Result<QueryParameterMatcher, EnvoyConfigError> {
        let name = self.required(
            raw.name,
            path,
            "name",
            "the query parameter to match, e.g. `name: debug`",
        )?;
        self.one_of(
            path,
            "`string_match` and `present_match`",
            &[
                ("string_match", raw.string_match.is_some()),
                ("present_match", raw.present_match.is_some()),
            ],
        )?;
        if raw.present_match == Some(false) {
            return Err(self.invalid(
                format!("{path}.present_match"),
                Problem::NotSupported {
                    field: "present_match: false",
                    hint: "a query parameter matcher matches a parameter that is present; \
                           write `present_match: true`, or match its value with \
                           `string_match`"
                        .to_owned(),
                },
            ));
        }
        let value = match raw.string_match {
            None => None,
            Some(matcher) => Some(self.string_matcher(matcher, &format!("{path}.string_match"))?),
        };
        Ok(QueryParameterMatcher { name, value })
    }

    /// Check a `RegexMatchAndSubstitute` at `path`.
    fn regex_rewrite(
        &self,
        raw: RawRegexMatchAndSubstitute,
        path: &str,
    ) -> Result<RegexRewrite, EnvoyConfigError> {
        let Some(pattern) = raw.pattern else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::Missing {
                    field: "pattern",
                    hint: "e.g. `pattern: { regex: \"^/service/([^/]+)(/.*)$\" }, substitution: \
                           \"\\\\2/instance/\\\\1\"`"
                        .to_owned(),
                },
            ));
        };
        let pattern = self.regex(pattern, &format!("{path}.pattern"))?;
        let substitution = raw.substitution.unwrap_or_default();
        if let Err(reason) = check_substitution(&pattern, &substitution) {
            return Err(self.invalid(
                format!("{path}.substitution"),
                Problem::BadSubstitution {
                    substitution,
                    reason,
                },
            ));
        }
        Ok(RegexRewrite {
            pattern,
            substitution,
        })
    }

    /// Check a value that goes into a header or a URL as it is: no control characters.
    fn plain_value(&self, value: String, path: String) -> Result<String, EnvoyConfigError> {
        if value.chars().any(char::is_control) {
            return Err(self.invalid(
                path,
                Problem::BadHeaderValue {
                    value,
                    reason: "it contains a control character (such as a line break)".to_owned(),
                },
            ));
        }
        Ok(value)
    }

    fn route_action(
        &self,
        raw: RawRouteAction,
        path: &str,
    ) -> Result<RouteAction, EnvoyConfigError> {
        const CLUSTER_SPECIFIERS: &str = "`cluster` and `weighted_clusters`";
        if raw.cluster_header.is_some() {
            return Err(self.invalid(
                format!("{path}.cluster_header"),
                Problem::NotSupported {
                    field: "cluster_header",
                    hint: "name the cluster with `cluster`, or split the traffic with \
                           `weighted_clusters`"
                        .to_owned(),
                },
            ));
        }
        self.one_of(
            path,
            CLUSTER_SPECIFIERS,
            &[
                ("cluster", raw.cluster.is_some()),
                ("weighted_clusters", raw.weighted_clusters.is_some()),
            ],
        )?;
        let cluster = if let Some(cluster) = raw.cluster {
            if cluster.is_empty() {
                return Err(self.invalid(
                    format!("{path}.cluster"),
                    Problem::Empty {
                        field: "cluster",
                        hint: "set it to the name of a cluster in static_resources.clusters"
                            .to_owned(),
                    },
                ));
            }
            ClusterSpecifier::Cluster(cluster)
        } else if let Some(weighted) = raw.weighted_clusters {
            ClusterSpecifier::WeightedClusters(
                self.weighted_clusters(weighted, &format!("{path}.weighted_clusters"))?,
            )
        } else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::NoneOf {
                    fields: CLUSTER_SPECIFIERS,
                    hint: "e.g. `cluster: backend`".to_owned(),
                },
            ));
        };
        self.one_of(
            path,
            "`prefix_rewrite` and `regex_rewrite`",
            &[
                ("prefix_rewrite", raw.prefix_rewrite.is_some()),
                ("regex_rewrite", raw.regex_rewrite.is_some()),
            ],
        )?;
        let prefix_rewrite = match raw.prefix_rewrite {
            // proto3: an empty string is no rewrite.
            Some(rewrite) if !rewrite.is_empty() => {
                Some(self.plain_value(rewrite, format!("{path}.prefix_rewrite"))?)
            }
            _ => None,
        };
        let regex_rewrite = match raw.regex_rewrite {
            None => None,
            Some(rewrite) => Some(self.regex_rewrite(rewrite, &format!("{path}.regex_rewrite"))?),
        };
        self.one_of(
            path,
            "`host_rewrite_literal` and `auto_host_rewrite`",
            &[
                ("host_rewrite_literal", raw.host_rewrite_literal.is_some()),
                ("auto_host_rewrite", raw.auto_host_rewrite.is_some()),
            ],
        )?;
        let host_rewrite = match (raw.host_rewrite_literal, raw.auto_host_rewrite) {
            (Some(host), _) if !host.is_empty() => Some(HostRewrite::Literal(
                self.plain_value(host, format!("{path}.host_rewrite_literal"))?,
            )),
            (_, Some(true)) => Some(HostRewrite::Auto),
            _ => None,
        };
        let timeout = Self::timeout(raw.timeout, Some(DEFAULT_ROUTE_TIMEOUT));
        let mut hash_policy = Vec::new();
        for (h, policy) in raw.hash_policy.unwrap_or_default().into_iter().enumerate() {
            hash_policy.push(self.hash_policy(policy, &format!("{path}.hash_policy[{h}]"))?);
        }
        let retry_policy = match raw.retry_policy {
            None => None,
            Some(policy) => Some(self.retry_policy(policy, &format!("{path}.retry_policy"))?),
        };
        // Unlike the other timeouts, `0s` is kept: it turns the connection manager's
        // stream_idle_timeout off for this route, where `None` keeps it.
        let idle_timeout = raw.idle_timeout.map(|timeout| timeout.0);
        Ok(RouteAction {
            cluster,
            prefix_rewrite,
            regex_rewrite,
            host_rewrite,
            timeout,
            hash_policy,
            retry_policy,
            idle_timeout,
        })
    }

    fn weighted_clusters(
        &self,
        raw: RawWeightedCluster,
        path: &str,
    ) -> Result<Vec<ClusterWeight>, EnvoyConfigError> {
        let hint = "list the clusters and their weights, e.g. `clusters: [{ name: v1, weight: \
                    90 }, { name: v2, weight: 10 }]`";
        let clusters = self.required(raw.clusters, path, "clusters", hint)?;
        let mut weights = Vec::with_capacity(clusters.len());
        let mut sum: u64 = 0;
        for (c, cluster) in clusters.into_iter().enumerate() {
            let cluster_path = format!("{path}.clusters[{c}]");
            let name = self.required(
                cluster.name,
                &cluster_path,
                "name",
                "set it to the name of a cluster in static_resources.clusters",
            )?;
            let Some(weight) = cluster.weight else {
                return Err(self.invalid(
                    cluster_path,
                    Problem::Missing {
                        field: "weight",
                        hint: "Envoy would take it as 0 and never pick this cluster; write the \
                               weight, e.g. `weight: 10`"
                            .to_owned(),
                    },
                ));
            };
            let Ok(weight) = u32::try_from(weight.0) else {
                return Err(self.invalid(
                    format!("{cluster_path}.weight"),
                    Problem::OutOfRange {
                        value: weight.0,
                        min: 0,
                        max: u64::from(u32::MAX),
                        hint: "",
                    },
                ));
            };
            sum += u64::from(weight);
            weights.push(ClusterWeight { name, weight });
        }
        if sum > u64::from(u32::MAX) {
            return Err(self.invalid(format!("{path}.clusters"), Problem::ClusterWeightsTooLarge));
        }
        if sum == 0 {
            return Err(self.invalid(format!("{path}.clusters"), Problem::ZeroClusterWeights));
        }
        if let Some(total) = raw.total_weight {
            if total.0 == 0 || total.0 > u64::from(u32::MAX) {
                return Err(self.invalid(
                    format!("{path}.total_weight"),
                    Problem::OutOfRange {
                        value: total.0,
                        min: 1,
                        max: u64::from(u32::MAX),
                        hint: ", or leave the deprecated `total_weight` out",
                    },
                ));
            }
            if total.0 != sum {
                return Err(self.invalid(
                    format!("{path}.total_weight"),
                    Problem::ClusterWeightSum {
                        sum,
                        total: total.0,
                    },
                ));
            }
        }
        Ok(weights)
    }

    fn hash_policy(&self, raw: RawHashPolicy, path: &str) -> Result<HashPolicy, EnvoyConfigError> {
        const SOURCES: &str = "`header`, `cookie`, `connection_properties` and `query_parameter`";
        self.one_of(
            path,
            SOURCES,
            &[
                ("header", raw.header.is_some()),
                ("cookie", raw.cookie.is_some()),
                ("connection_properties", raw.connection_properties.is_some()),
                ("query_parameter", raw.query_parameter.is_some()),
            ],
        )?;
        let source = if let Some(header) = raw.header {
            let header_path = format!("{path}.header");
            let name = self.required(
                header.header_name,
                &header_path,
                "header_name",
                "the request header to hash, e.g. `header_name: x-user-id`",
            )?;
            HashSource::Header(self.header_name(
                name,
                format!("{header_path}.header_name"),
                true,
            )?)
        } else if let Some(cookie) = raw.cookie {
            let name = self.required(
                cookie.name,
                &format!("{path}.cookie"),
                "name",
                "the cookie to hash, e.g. `name: session`",
            )?;
            HashSource::Cookie {
                name,
                ttl: cookie.ttl.map(|ttl| ttl.0),
                path: cookie.path.filter(|path| !path.is_empty()),
            }
        } else if let Some(properties) = raw.connection_properties {
            HashSource::SourceIp(properties.source_ip.unwrap_or(false))
        } else if let Some(parameter) = raw.query_parameter {
            HashSource::QueryParameter(self.required(
                parameter.name,
                &format!("{path}.query_parameter"),
                "name",
                "the query parameter to hash, e.g. `name: user`",
            )?)
        } else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::NoneOf {
                    fields: SOURCES,
                    hint: "e.g. `header: { header_name: x-user-id }`".to_owned(),
                },
            ));
        };
        Ok(HashPolicy {
            source,
            terminal: raw.terminal.unwrap_or(false),
        })
    }

    fn redirect(
        &self,
        raw: RawRedirectAction,
        path: &str,
    ) -> Result<RedirectAction, EnvoyConfigError> {
        self.one_of(
            path,
            "`https_redirect` and `scheme_redirect`",
            &[
                ("https_redirect", raw.https_redirect.is_some()),
                ("scheme_redirect", raw.scheme_redirect.is_some()),
            ],
        )?;
        let scheme = match (raw.https_redirect, raw.scheme_redirect) {
            (Some(true), _) => Some("https".to_owned()),
            (_, Some(scheme)) if !scheme.is_empty() => {
                let mut chars = scheme.chars();
                let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                    && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
                if !valid {
                    return Err(self.invalid(
                        format!("{path}.scheme_redirect"),
                        Problem::BadPath {
                            value: scheme,
                            reason: "a scheme is a letter followed by letters, digits, `+`, \
                                     `-` or `.`, such as `https`",
                        },
                    ));
                }
                Some(scheme)
            }
            _ => None,
        };
        let host = match raw.host_redirect {
            Some(host) if !host.is_empty() => {
                if host.contains(['/', '?', '#', ' ']) {
                    return Err(self.invalid(
                        format!("{path}.host_redirect"),
                        Problem::BadPath {
                            value: host,
                            reason: "a host has no `/`, `?`, `#` or spaces; put the path in \
                                     `path_redirect`",
                        },
                    ));
                }
                Some(self.plain_value(host, format!("{path}.host_redirect"))?)
            }
            _ => None,
        };
        let port = match raw.port_redirect {
            None => None,
            Some(port) if port.0 == 0 => None,
            Some(port) => Some(u16::try_from(port.0).map_err(|_| {
                self.invalid(
                    format!("{path}.port_redirect"),
                    Problem::OutOfRange {
                        value: port.0,
                        min: 1,
                        max: 65535,
                        hint: "",
                    },
                )
            })?),
        };
        self.one_of(
            path,
            "`path_redirect`, `prefix_rewrite` and `regex_rewrite`",
            &[
                ("path_redirect", raw.path_redirect.is_some()),
                ("prefix_rewrite", raw.prefix_rewrite.is_some()),
                ("regex_rewrite", raw.regex_rewrite.is_some()),
            ],
        )?;
        let redirect_path = if let Some(redirect) = raw.path_redirect.filter(|p| !p.is_empty()) {
            Some(RedirectPath::Path(
                self.plain_value(redirect, format!("{path}.path_redirect"))?,
            ))
        } else if let Some(rewrite) = raw.prefix_rewrite.filter(|p| !p.is_empty()) {
            Some(RedirectPath::PrefixRewrite(
                self.plain_value(rewrite, format!("{path}.prefix_rewrite"))?,
            ))
        } else if let Some(rewrite) = raw.regex_rewrite {
            Some(RedirectPath::RegexRewrite(
                self.regex_rewrite(rewrite, &format!("{path}.regex_rewrite"))?,
            ))
        } else {
            None
        };
        let response_code = match raw.response_code {
            None | Some(RedirectCodeName::MovedPermanently) => {
                RedirectResponseCode::MovedPermanently
            }
            Some(RedirectCodeName::Found) => RedirectResponseCode::Found,
            Some(RedirectCodeName::SeeOther) => RedirectResponseCode::SeeOther,
            Some(RedirectCodeName::TemporaryRedirect) => RedirectResponseCode::TemporaryRedirect,
            Some(RedirectCodeName::PermanentRedirect) => RedirectResponseCode::PermanentRedirect,
        };
        Ok(RedirectAction {
            scheme,
            host,
            port,
            path: redirect_path,
            response_code,
            strip_query: raw.strip_query.unwrap_or(false),
        })
    }

    fn direct_response(
        &self,
        raw: RawDirectResponseAction,
        path: &str,
        max_body: u32,
    ) -> Result<DirectResponseAction, EnvoyConfigError> {
        let Some(status) = raw.status else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::Missing {
                    field: "status",
                    hint: "the response's status code, e.g. `status: 200`".to_owned(),
                },
            ));
        };
        let status = match u16::try_from(status.0) {
            Ok(status) if (100..=599).contains(&status) => status,
            _ => {
                return Err(self.invalid(
                    format!("{path}.status"),
                    Problem::BadStatus { status: status.0 },
                ))
            }
        };
        let body = match raw.body {
            None => None,
            Some(body) => {
                let body_path = format!("{path}.body");
                let inline_hint = "write the body inline, e.g. `body: { inline_string: \"ok\" }`";
                for (field, set) in [
                    ("filename", body.filename.is_some()),
                    ("inline_bytes", body.inline_bytes.is_some()),
                    ("environment_variable", body.environment_variable.is_some()),
                ] {
                    if set {
                        return Err(self.invalid(
                            format!("{body_path}.{field}"),
                            Problem::NotSupported {
                                field,
                                hint: inline_hint.to_owned(),
                            },
                        ));
                    }
                }
                let Some(text) = body.inline_string else {
                    return Err(self.invalid(
                        body_path,
                        Problem::Missing {
                            field: "inline_string",
                            hint: inline_hint.to_owned(),
                        },
                    ));
                };
                if text.len() > max_body as usize {
                    return Err(self.invalid(
                        format!("{body_path}.inline_string"),
                        Problem::DirectResponseBodyTooLarge {
                            size: text.len(),
                            max: max_body,
                        },
                    ));
                }
                Some(text)
            }
        };
        Ok(DirectResponseAction { status, body })
    }

    /// Check the four header mutation lists of the level at `path`.
    fn header_mutations(
        &self,
        raw: RawHeaderMutations,
        path: &str,
    ) -> Result<HeaderMutations, EnvoyConfigError> {
        Ok(HeaderMutations {
            request_headers_to_add: self.headers_to_add(
                raw.request_headers_to_add,
                &format!("{path}.request_headers_to_add"),
            )?,
            request_headers_to_remove: self.headers_to_remove(
                raw.request_headers_to_remove,
                &format!("{path}.request_headers_to_remove"),
            )?,
            response_headers_to_add: self.headers_to_add(
                raw.response_headers_to_add,
                &format!("{path}.response_headers_to_add"),
            )?,
            response_headers_to_remove: self.headers_to_remove(
                raw.response_headers_to_remove,
                &format!("{path}.response_headers_to_remove"),
            )?,
        })
    }

    fn headers_to_add(
        &self,
        raw: Option<Vec<RawHeaderValueOption>>,
        path: &str,
    ) -> Result<Vec<HeaderValueOption>, EnvoyConfigError> {
        let mut options = Vec::new();
        for (i, option) in raw.unwrap_or_default().into_iter().enumerate() {
            options.push(self.header_value_option(option, &format!("{path}[{i}]"))?);
        }
        Ok(options)
    }

    fn header_value_option(
        &self,
        raw: RawHeaderValueOption,
        path: &str,
    ) -> Result<HeaderValueOption, EnvoyConfigError> {
        let Some(header) = raw.header else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::Missing {
                    field: "header",
                    hint: "e.g. `header: { key: x-served-by, value: zerohop }`".to_owned(),
                },
            ));
        };
        let header_path = format!("{path}.header");
        let key = self.required(
            header.key,
            &header_path,
            "key",
            "the header's name, e.g. `key: x-served-by`",
        )?;
        let key = self.header_name(key, format!("{header_path}.key"), false)?;
        let text = header.value.unwrap_or_default();
        let value = parse_header_value(&text).map_err(|reason| {
            self.invalid(
                format!("{header_path}.value"),
                Problem::BadHeaderValue {
                    value: text.clone(),
                    reason,
                },
            )
        })?;
        self.one_of(
            path,
            "`append` and `append_action` (`append` is deprecated)",
            &[
                ("append", raw.append.is_some()),
                ("append_action", raw.append_action.is_some()),
            ],
        )?;
        let append_action = match (raw.append, raw.append_action) {
            (Some(false), _) => HeaderAppendAction::OverwriteIfExistsOrAdd,
            (_, Some(AppendActionName::AddIfAbsent)) => HeaderAppendAction::AddIfAbsent,
            (_, Some(AppendActionName::OverwriteIfExistsOrAdd)) => {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            }
            (_, Some(AppendActionName::OverwriteIfExists)) => HeaderAppendAction::OverwriteIfExists,
            _ => HeaderAppendAction::AppendIfExistsOrAdd,
        };
        Ok(HeaderValueOption {
            key,
            value,
            append_action,
            keep_empty_value: raw.keep_empty_value.unwrap_or(false),
        })
    }

    fn headers_to_remove(
        &self,
        raw: Option<Vec<String>>,
        path: &str,
    ) -> Result<Vec<String>, EnvoyConfigError> {
        let mut names = Vec::new();
        for (i, name) in raw.unwrap_or_default().into_iter().enumerate() {
            let name_path = format!("{path}[{i}]");
            if name.is_empty() {
                return Err(self.invalid(
                    name_path,
                    Problem::BadHeaderName {
                        name,
                        reason: "a header name is not empty".to_owned(),
                    },
                ));
            }
            names.push(self.header_name(name, name_path, false)?);
        }
        Ok(names)
    }
}

/// The fields of a health check that say what it does per endpoint.
const HEALTH_CHECK_KINDS: &str =
    "`http_health_check`, `tcp_health_check`, `grpc_health_check` and `custom_health_check`";
/// Why a success rate or failure percentage field of `outlier_detection` is refused.
const CONSECUTIVE_ONLY: &str = "zerohop implements only the consecutive-failure detectors \
                                (consecutive_5xx, consecutive_gateway_failure and \
                                consecutive_local_origin_failure); remove it";

/// Resilience: a cluster's health check, outlier detection, circuit breakers and panic
/// threshold, and a route's retry policy.
impl Builder<'_> {
    /// Check a duration that must be above 0 where given (`gt: 0` in Envoy's proto).
    fn positive_duration(
        &self,
        raw: Option<ProtoDuration>,
        parent: &str,
        field: &'static str,
        hint: &'static str,
    ) -> Result<Option<Duration>, EnvoyConfigError> {
        match raw {
            Some(ProtoDuration(duration)) if duration == Duration::ZERO => Err(self.invalid(
                format!("{parent}.{field}"),
                Problem::ZeroDuration { field, hint },
            )),
            raw => Ok(raw.map(|duration| duration.0)),
        }
    }

    /// Check a required duration that must be above 0.
    fn required_duration(
        &self,
        raw: Option<ProtoDuration>,
        parent: &str,
        field: &'static str,
        hint: &'static str,
    ) -> Result<Duration, EnvoyConfigError> {
        match self.positive_duration(raw, parent, field, hint)? {
            Some(duration) => Ok(duration),
            None => Err(self.invalid(
                parent.to_owned(),
                Problem::Missing {
                    field,
                    hint: format!("Envoy requires it: {hint}"),
                },
            )),
        }
    }

    /// Check a `uint32` (or `UInt32Value`) at `{parent}.{field}` that must be in
    /// `min..=max`; `default` where left out.
    fn bounded(
        &self,
        raw: Option<Unsigned>,
        parent: &str,
        field: &str,
        (min, max): (u32, u32),
        default: u32,
        hint: &'static str,
    ) -> Result<u32, EnvoyConfigError> {
        let Some(Unsigned(value)) = raw else {
            return Ok(default);
        };
        match u32::try_from(value) {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(self.invalid(
                format!("{parent}.{field}"),
                Problem::OutOfRange {
                    value,
                    min: u64::from(min),
                    max: u64::from(max),
                    hint,
                },
            )),
        }
    }

    /// Check an `envoy.type.v3.Percent` (at `path`): 0 to 100; `value` left out is 0,
    /// as in proto3.
    fn envoy_percent(
        &self,
        raw: RawPercent,
        path: &str,
        hint: &'static str,
    ) -> Result<Percent, EnvoyConfigError> {
        match raw.value {
            None => Ok(Percent(0.0)),
            Some(Double(value)) if (0.0..=100.0).contains(&value) => Ok(Percent(value)),
            Some(Double(value)) => Err(self.invalid(
                format!("{path}.value"),
                Problem::BadPercent {
                    value: value.to_string(),
                    hint,
                },
            )),
        }
    }

    /// Check a cluster's `health_checks`: at most one.
    fn health_checks(
        &self,
        raw: Option<Vec<RawHealthCheck>>,
        cluster: &str,
    ) -> Result<Option<HealthCheck>, EnvoyConfigError> {
        let mut raw = raw.unwrap_or_default().into_iter();
        let Some(first) = raw.next() else {
            return Ok(None);
        };
        let first_path = format!("{cluster}.health_checks[0]");
        let health_check = self.health_check(first, &first_path)?;
        if raw.next().is_some() {
            return Err(self.invalid(
                format!("{cluster}.health_checks[1]"),
                Problem::SecondHealthCheck { first: first_path },
            ));
        }
        Ok(Some(health_check))
    }

    /// Check one `envoy.config.core.v3.HealthCheck` (at `path`).
    fn health_check(
        &self,
        raw: RawHealthCheck,
        path: &str,
    ) -> Result<HealthCheck, EnvoyConfigError> {
        let timeout = self.required_duration(
            raw.timeout,
            path,
            "timeout",
            "a check not answered within it fails, e.g. `timeout: 1s`",
        )?;
        let interval = self.required_duration(
            raw.interval,
            path,
            "interval",
            "the time between two checks of an endpoint, e.g. `interval: 5s`",
        )?;
        let initial_jitter = raw.initial_jitter.map_or(Duration::ZERO, |d| d.0);
        let interval_jitter = raw.interval_jitter.map_or(Duration::ZERO, |d| d.0);
        let interval_jitter_percent = self.bounded(
            raw.interval_jitter_percent,
            path,
            "interval_jitter_percent",
            (0, u32::MAX),
            0,
            "",
        )?;
        let threshold = |raw: Option<Unsigned>, field: &'static str, example: &str| {
            let hint = format!("Envoy requires it; e.g. `{field}: {example}`");
            match raw {
                None => Err(self.invalid(path.to_owned(), Problem::Missing { field, hint })),
                raw => self.bounded(
                    raw,
                    path,
                    field,
                    (1, u32::MAX),
                    1,
                    " (the number of checks in a row that change an endpoint's health)",
                ),
            }
        };
        let unhealthy_threshold = threshold(raw.unhealthy_threshold, "unhealthy_threshold", "3")?;
        let healthy_threshold = threshold(raw.healthy_threshold, "healthy_threshold", "2")?;
        let kind = self.one_of(
            path,
            HEALTH_CHECK_KINDS,
            &[
                ("http_health_check", raw.http_health_check.is_some()),
                ("tcp_health_check", raw.tcp_health_check.is_some()),
                ("grpc_health_check", raw.grpc_health_check.is_some()),
                ("custom_health_check", raw.custom_health_check.is_some()),
            ],
        )?;
        let kind = if let Some(http) = raw.http_health_check {
            HealthCheckKind::Http(
                self.http_health_check(http, &format!("{path}.http_health_check"))?,
            )
        } else if let Some(tcp) = raw.tcp_health_check {
            HealthCheckKind::Tcp(self.tcp_health_check(tcp, &format!("{path}.tcp_health_check"))?)
        } else if let Some(field) = kind {
            return Err(self.invalid(
                format!("{path}.{field}"),
                Problem::NotSupported {
                    field,
                    hint: "zerohop checks endpoints over HTTP/1.1 or plain TCP: use \
                           `http_health_check` or `tcp_health_check`"
                        .to_owned(),
                },
            ));
        } else {
            return Err(self.invalid(
                path.to_owned(),
                Problem::NoneOf {
                    fields: HEALTH_CHECK_KINDS,
                    hint: "Envoy requires one; e.g. `http_health_check: { path: /healthz }`, \
                           or `tcp_health_check: {}` to check that the endpoint accepts \
                           connections"
                        .to_owned(),
                },
            ));
        };
        let interval_hint = "leave it out for the default";
        let no_traffic_interval = self
            .positive_duration(
                raw.no_traffic_interval,
                path,
                "no_traffic_interval",
                "leave it out for the default 60s",
            )?
            .unwrap_or(DEFAULT_NO_TRAFFIC_INTERVAL);
        let unhealthy_interval = self.positive_duration(
            raw.unhealthy_interval,
            path,
            "unhealthy_interval",
            interval_hint,
        )?;
        let unhealthy_edge_interval = self.positive_duration(
            raw.unhealthy_edge_interval,
            path,
            "unhealthy_edge_interval",
            interval_hint,
        )?;
        let healthy_edge_interval = self.positive_duration(
            raw.healthy_edge_interval,
            path,
            "healthy_edge_interval",
            interval_hint,
        )?;
        Ok(HealthCheck {
            timeout,
            interval,
            interval_jitter,
            interval_jitter_percent,
            initial_jitter,
            unhealthy_threshold,
            healthy_threshold,
            no_traffic_interval,
            unhealthy_interval,
            healthy_edge_interval,
            unhealthy_edge_interval,
            kind,
        })
    }

    /// Check `HealthCheck.HttpHealthCheck` (at `path`).
    fn http_health_check(
        &self,
        raw: RawHttpHealthCheck,
        path: &str,
    ) -> Result<HttpHealthCheck, EnvoyConfigError> {
        let host = match raw.host {
            // proto3: empty is left out; the runtime then sends the cluster's name.
            Some(host) if !host.is_empty() => Some(self.plain_value(host, format!("{path}.host"))?),
            _ => None,
        };
        let request_path = self.required(
            raw.path,
            path,
            "path",
            "Envoy requires it: the path each check requests, e.g. `path: /healthz`",
        )?;
        let reason = if !request_path.starts_with('/') {
            Some("a health check's path starts with `/`, e.g. `/healthz`")
        } else if request_path
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            Some("it contains whitespace or a control character; percent-encode them")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(self.invalid(
                format!("{path}.path"),
                Problem::BadPath {
                    value: request_path,
                    reason,
                },
            ));
        }
        let mut request_headers = Vec::new();
        for (i, option) in raw
            .request_headers_to_add
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let option_path = format!("{path}.request_headers_to_add[{i}]");
            let Some(header) = option.header else {
                return Err(self.invalid(
                    option_path,
                    Problem::Missing {
                        field: "header",
                        hint: "e.g. `header: { key: x-health-check, value: zerohop }`".to_owned(),
                    },
                ));
            };
            let header_path = format!("{option_path}.header");
            let key = self.required(
                header.key,
                &header_path,
                "key",
                "the header's name, e.g. `key: x-health-check`",
            )?;
            let lower = key.to_ascii_lowercase();
            let reason = if lower.starts_with(':') {
                Some("a health check request is HTTP/1.1, which has no pseudo-headers")
            } else if lower == "host" {
                Some("set the Host header with the health check's `host`")
            } else if !is_token(&lower) {
                Some("a header name is a token: letters, digits and !#$%&'*+-.^_`|~")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(self.invalid(
                    format!("{header_path}.key"),
                    Problem::BadHeaderName {
                        name: key,
                        reason: reason.to_owned(),
                    },
                ));
            }
            let text = header.value.unwrap_or_default();
            let value_path = format!("{header_path}.value");
            let bad_value = |reason: String| {
                self.invalid(
                    value_path.clone(),
                    Problem::BadHeaderValue {
                        value: text.clone(),
                        reason,
                    },
                )
            };
            let template = parse_header_value(&text).map_err(bad_value)?;
            let mut value = String::new();
            for part in template.parts {
                match part {
                    ValuePart::Literal(literal) => value.push_str(&literal),
                    ValuePart::Variable(_) => {
                        return Err(bad_value(
                            "a health check's headers are sent as written, with no format \
                             variables (there is no downstream request to take them from); \
                             write `%%` for a `%`"
                                .to_owned(),
                        ))
                    }
                }
            }
            request_headers.push((lower, value));
        }
        let mut expected_statuses = Vec::new();
        for (i, range) in raw
            .expected_statuses
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let range_path = format!("{path}.expected_statuses[{i}]");
            let hint = "a range is `{ start: 200, end: 300 }`, from start up to but not \
                        including end";
            let (Some(Signed(start)), Some(Signed(end))) = (range.start, range.end) else {
                return Err(self.invalid(
                    range_path,
                    Problem::Missing {
                        field: if range.start.is_none() {
                            "start"
                        } else {
                            "end"
                        },
                        hint: hint.to_owned(),
                    },
                ));
            };
            let reason = if start < 100 {
                Some("start is below 100")
            } else if end > 600 {
                Some("end is above 600")
            } else if start >= end {
                Some("start is not below end, so no status is in it")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(
                    self.invalid(range_path, Problem::BadStatusRange { start, end, reason })
                );
            }
            // 100 <= start < end <= 600: both fit.
            expected_statuses.push((start as u16, end as u16));
        }
        if expected_statuses.is_empty() {
            // proto3: an empty list is left out; Envoy then expects 200.
            expected_statuses.push((200, 201));
        }
        Ok(HttpHealthCheck {
            host,
            path: request_path,
            method: raw.method.map_or("GET", |method| method.0).to_owned(),
            expected_statuses,
            request_headers,
        })
    }

    /// Check `HealthCheck.TcpHealthCheck` (at `path`).
    fn tcp_health_check(
        &self,
        raw: RawTcpHealthCheck,
        path: &str,
    ) -> Result<TcpHealthCheck, EnvoyConfigError> {
        let send = match raw.send {
            None => None,
            Some(payload) => Some(self.payload(payload, &format!("{path}.send"))?),
        };
        let mut receive = Vec::new();
        for (i, payload) in raw.receive.unwrap_or_default().into_iter().enumerate() {
            receive.push(self.payload(payload, &format!("{path}.receive[{i}]"))?);
        }
        Ok(TcpHealthCheck { send, receive })
    }

    /// Check and decode a `HealthCheck.Payload` (at `path`).
    fn payload(&self, raw: RawPayload, path: &str) -> Result<Vec<u8>, EnvoyConfigError> {
        const PAYLOADS: &str = "`text` and `binary`";
        self.one_of(
            path,
            PAYLOADS,
            &[
                ("text", raw.text.is_some()),
                ("binary", raw.binary.is_some()),
            ],
        )?;
        let (field, value, decoded) = match (raw.text, raw.binary) {
            (Some(text), _) => {
                let decoded = decode_hex(&text);
                ("text", text, decoded)
            }
            (_, Some(binary)) => {
                let decoded = decode_base64(&binary);
                ("binary", binary, decoded)
            }
            (None, None) => {
                return Err(self.invalid(
                    path.to_owned(),
                    Problem::NoneOf {
                        fields: PAYLOADS,
                        hint: "Envoy requires one; e.g. `text: \"000000FF\"` (hex) or \
                               `binary: AAAA/w==` (base64)"
                            .to_owned(),
                    },
                ))
            }
        };
        decoded.map_err(|reason| {
            self.invalid(
                format!("{path}.{field}"),
                Problem::BadPayload { value, reason },
            )
        })
    }

    /// Check `envoy.config.cluster.v3.OutlierDetection` (at `path`); Envoy's defaults
    /// where a field is left out.
    fn outlier_detection(
        &self,
        raw: RawOutlierDetection,
        path: &str,
    ) -> Result<OutlierDetection, EnvoyConfigError> {
        for (field, set) in [
            (
                "success_rate_minimum_hosts",
                raw.success_rate_minimum_hosts.is_some(),
            ),
            (
                "success_rate_request_volume",
                raw.success_rate_request_volume.is_some(),
            ),
            (
                "success_rate_stdev_factor",
                raw.success_rate_stdev_factor.is_some(),
            ),
            (
                "failure_percentage_threshold",
                raw.failure_percentage_threshold.is_some(),
            ),
            (
                "failure_percentage_minimum_hosts",
                raw.failure_percentage_minimum_hosts.is_some(),
            ),
            (
                "failure_percentage_request_volume",
                raw.failure_percentage_request_volume.is_some(),
            ),
        ] {
            if set {
                return Err(self.invalid(
                    format!("{path}.{field}"),
                    Problem::NotSupported {
                        field,
                        hint: CONSECUTIVE_ONLY.to_owned(),
                    },
                ));
            }
        }
        // The enforcing percentages of the detectors zerohop lacks: 0 (off) says what
        // zerohop does anyway.
        for (field, value) in [
            ("enforcing_success_rate", raw.enforcing_success_rate),
            (
                "enforcing_local_origin_success_rate",
                raw.enforcing_local_origin_success_rate,
            ),
            (
                "enforcing_failure_percentage",
                raw.enforcing_failure_percentage,
            ),
            (
                "enforcing_failure_percentage_local_origin",
                raw.enforcing_failure_percentage_local_origin,
            ),
        ] {
            if value.is_some_and(|value| value.0 != 0) {
                return Err(self.invalid(
                    format!("{path}.{field}"),
                    Problem::NotSupported {
                        field,
                        hint: format!("{CONSECUTIVE_ONLY}, or set it to 0 (the detector off)"),
                    },
                ));
            }
        }
        let defaults = OutlierDetection::default();
        let count = |raw: Option<Unsigned>, field: &'static str, default: u32| {
            self.bounded(
                raw,
                path,
                field,
                (1, u32::MAX),
                default,
                " (failures in a row that eject an endpoint), or leave it out for the \
                 default 5",
            )
        };
        let percent = |raw: Option<Unsigned>, field: &'static str, default: u32| {
            self.bounded(raw, path, field, (0, 100), default, " (a percentage)")
        };
        let consecutive_5xx = count(raw.consecutive_5xx, "consecutive_5xx", 5)?;
        let interval = self
            .positive_duration(
                raw.interval,
                path,
                "interval",
                "leave it out for the default 10s",
            )?
            .unwrap_or(defaults.interval);
        let base_ejection_time = self
            .positive_duration(
                raw.base_ejection_time,
                path,
                "base_ejection_time",
                "leave it out for the default 30s",
            )?
            .unwrap_or(defaults.base_ejection_time);
        let max_ejection_percent = percent(
            raw.max_ejection_percent,
            "max_ejection_percent",
            defaults.max_ejection_percent,
        )?;
        let enforcing_consecutive_5xx = percent(
            raw.enforcing_consecutive_5xx,
            "enforcing_consecutive_5xx",
            defaults.enforcing_consecutive_5xx,
        )?;
        let consecutive_gateway_failure = count(
            raw.consecutive_gateway_failure,
            "consecutive_gateway_failure",
            defaults.consecutive_gateway_failure,
        )?;
        let enforcing_consecutive_gateway_failure = percent(
            raw.enforcing_consecutive_gateway_failure,
            "enforcing_consecutive_gateway_failure",
            defaults.enforcing_consecutive_gateway_failure,
        )?;
        let consecutive_local_origin_failure = count(
            raw.consecutive_local_origin_failure,
            "consecutive_local_origin_failure",
            defaults.consecutive_local_origin_failure,
        )?;
        let enforcing_consecutive_local_origin_failure = percent(
            raw.enforcing_consecutive_local_origin_failure,
            "enforcing_consecutive_local_origin_failure",
            defaults.enforcing_consecutive_local_origin_failure,
        )?;
        let max_ejection_time = self
            .positive_duration(
                raw.max_ejection_time,
                path,
                "max_ejection_time",
                "leave it out for the default 300s",
            )?
            .unwrap_or(defaults.max_ejection_time);
        if max_ejection_time < base_ejection_time {
            return Err(self.invalid(
                format!(
                    "{path}.{}",
                    if raw.max_ejection_time.is_some() {
                        "max_ejection_time"
                    } else {
                        "base_ejection_time"
                    }
                ),
                Problem::MaxBelowBase {
                    field: "max_ejection_time",
                    max: max_ejection_time,
                    base: base_ejection_time,
                },
            ));
        }
        Ok(OutlierDetection {
            consecutive_5xx,
            consecutive_gateway_failure,
            consecutive_local_origin_failure,
            interval,
            base_ejection_time,
            max_ejection_time,
            max_ejection_percent,
            enforcing_consecutive_5xx,
            enforcing_consecutive_gateway_failure,
            enforcing_consecutive_local_origin_failure,
            split_external_local_origin_errors: raw
                .split_external_local_origin_errors
                .unwrap_or(false),
        })
    }

    /// Check `envoy.config.cluster.v3.CircuitBreakers` (at `path`); return the DEFAULT
    /// priority's thresholds. zerohop routes every request at DEFAULT priority, so HIGH
    /// thresholds are checked and never used, as in Envoy for a config whose routes set
    /// no `priority`.
    fn circuit_breakers(
        &self,
        raw: RawCircuitBreakers,
        path: &str,
    ) -> Result<CircuitBreakers, EnvoyConfigError> {
        let mut default = CircuitBreakers::default();
        // Where each priority was first listed: DEFAULT, HIGH.
        let mut seen: [Option<String>; 2] = [None, None];
        for (i, thresholds) in raw.thresholds.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{path}.thresholds[{i}]");
            let priority = thresholds.priority.unwrap_or(RoutingPriorityName::Default);
            let slot = &mut seen[usize::from(priority == RoutingPriorityName::High)];
            if let Some(first) = slot {
                return Err(self.invalid(
                    at,
                    Problem::DuplicatePriority {
                        priority: priority.as_str(),
                        first: first.clone(),
                    },
                ));
            }
            *slot = Some(at.clone());
            let checked = self.thresholds(thresholds, &at)?;
            if priority == RoutingPriorityName::Default {
                default = checked;
            }
        }
        if raw.per_host_thresholds.is_some() {
            return Err(self.invalid(
                format!("{path}.per_host_thresholds"),
                Problem::NotSupported {
                    field: "per_host_thresholds",
                    hint: "zerohop's circuit breakers count for the whole cluster: use \
                           `thresholds`"
                        .to_owned(),
                },
            ));
        }
        Ok(default)
    }

    /// Check one `CircuitBreakers.Thresholds` (at `path`).
    fn thresholds(
        &self,
        raw: RawThresholds,
        path: &str,
    ) -> Result<CircuitBreakers, EnvoyConfigError> {
        let defaults = CircuitBreakers::default();
        let limit = |raw: Option<Unsigned>, field: &'static str, default: u32| {
            self.bounded(raw, path, field, (0, u32::MAX), default, "")
        };
        let max_connections = limit(
            raw.max_connections,
            "max_connections",
            defaults.max_connections,
        )?;
        let max_pending_requests = limit(
            raw.max_pending_requests,
            "max_pending_requests",
            defaults.max_pending_requests,
        )?;
        let max_requests = limit(raw.max_requests, "max_requests", defaults.max_requests)?;
        let max_retries = limit(raw.max_retries, "max_retries", defaults.max_retries)?;
        let retry_budget = match raw.retry_budget {
            None => None,
            Some(budget) => {
                let budget_path = format!("{path}.retry_budget");
                let budget_percent = match budget.budget_percent {
                    None => Percent(DEFAULT_RETRY_BUDGET_PERCENT),
                    Some(percent) => self.envoy_percent(
                        percent,
                        &format!("{budget_path}.budget_percent"),
                        ", or leave it out for the default 20",
                    )?,
                };
                let min_retry_concurrency = self.bounded(
                    budget.min_retry_concurrency,
                    &budget_path,
                    "min_retry_concurrency",
                    (0, u32::MAX),
                    DEFAULT_MIN_RETRY_CONCURRENCY,
                    "",
                )?;
                Some(RetryBudget {
                    budget_percent,
                    min_retry_concurrency,
                })
            }
        };
        Ok(CircuitBreakers {
            max_connections,
            max_pending_requests,
            max_requests,
            max_retries,
            retry_budget,
        })
    }

    /// Check `envoy.config.route.v3.RetryPolicy` (at `path`).
    fn retry_policy(
        &self,
        raw: RawRetryPolicy,
        path: &str,
    ) -> Result<RetryPolicy, EnvoyConfigError> {
        let mut retry_on = RetryOn::default();
        // Envoy splits on commas, trims each condition and skips empty ones.
        for condition in raw
            .retry_on
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|condition| !condition.is_empty())
        {
            let Some(bit) = RetryOn::bit(condition) else {
                return Err(self.invalid(
                    format!("{path}.retry_on"),
                    Problem::UnknownRetryOn {
                        condition: condition.to_owned(),
                    },
                ));
            };
            retry_on.0 |= bit;
        }
        let num_retries =
            self.bounded(raw.num_retries, path, "num_retries", (0, u32::MAX), 1, "")?;
        let per_try_timeout = Self::timeout(raw.per_try_timeout, None);
        let mut previous_hosts = false;
        for (i, predicate) in raw
            .retry_host_predicate
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            self.retry_host_predicate(
                predicate.name,
                predicate.typed_config,
                &format!("{path}.retry_host_predicate[{i}]"),
            )?;
            previous_hosts = true;
        }
        let host_selection_retry_max_attempts = self.bounded(
            raw.host_selection_retry_max_attempts,
            path,
            "host_selection_retry_max_attempts",
            (0, u32::MAX),
            1,
            "",
        )?;
        let mut retriable_status_codes = Vec::new();
        let codes = if retry_on.has(RetryOn::RETRIABLE_STATUS_CODES) {
            self.required(
                raw.retriable_status_codes,
                path,
                "retriable_status_codes",
                "`retry_on` has retriable-status-codes, which retries the statuses listed \
                 there; e.g. `retriable_status_codes: [503]`",
            )?
        } else {
            raw.retriable_status_codes.unwrap_or_default()
        };
        for (i, code) in codes.into_iter().enumerate() {
            let code = self.bounded(
                Some(code),
                path,
                &format!("retriable_status_codes[{i}]"),
                (100, 599),
                0,
                " (an HTTP status)",
            )?;
            // 100..=599 fits.
            retriable_status_codes.push(code as u16);
        }
        let (base_interval, max_interval) = match raw.retry_back_off {
            None => (
                DEFAULT_RETRY_BASE_INTERVAL,
                DEFAULT_RETRY_BASE_INTERVAL * 10,
            ),
            Some(back_off) => {
                let at = format!("{path}.retry_back_off");
                let base = self.required_duration(
                    back_off.base_interval,
                    &at,
                    "base_interval",
                    "the first retry waits up to it, e.g. `base_interval: 0.025s`",
                )?;
                let max = self
                    .positive_duration(
                        back_off.max_interval,
                        &at,
                        "max_interval",
                        "leave it out for 10 times base_interval",
                    )?
                    .unwrap_or(base.saturating_mul(10));
                if max < base {
                    return Err(self.invalid(
                        format!("{at}.max_interval"),
                        Problem::MaxBelowBase {
                            field: "max_interval",
                            max,
                            base,
                        },
                    ));
                }
                (base, max)
            }
        };
        Ok(RetryPolicy {
            retry_on,
            num_retries,
            per_try_timeout,
            base_interval,
            max_interval,
            retriable_status_codes,
            previous_hosts,
            host_selection_retry_max_attempts,
        })
    }

    /// Check one `RetryPolicy.RetryHostPredicate` (at `path`): previous_hosts is the one
    /// zerohop has.
    fn retry_host_predicate(
        &self,
        name: Option<String>,
        typed_config: Option<RawRetryHostTypedConfig>,
        path: &str,
    ) -> Result<(), EnvoyConfigError> {
        let example = format!(
            "e.g. `{{ name: {PREVIOUS_HOSTS_PREDICATE_NAME}, typed_config: {{ \"@type\": \
             {PREVIOUS_HOSTS_PREDICATE_TYPE_URL} }} }}`"
        );
        let name = self.required(
            name,
            path,
            "name",
            &format!("Envoy requires a name for each predicate; {example}"),
        )?;
        if name != PREVIOUS_HOSTS_PREDICATE_NAME {
            return Err(self.schema(
                format!("{path}.name"),
                format!(
                    "unsupported retry host predicate `{name}`: zerohop supports only \
                     {PREVIOUS_HOSTS_PREDICATE_NAME} so far (a retry avoids the endpoints \
                     tried before)"
                ),
            ));
        }
        let typed_config_path = format!("{path}.typed_config");
        match typed_config {
            None | Some(RawRetryHostTypedConfig::PreviousHosts(RawPreviousHostsPredicate {})) => {}
            // Envoy then finds the predicate by its name, as with HTTP filters.
            Some(RawRetryHostTypedConfig::Deferred(mapping)) if mapping.is_empty() => {}
            Some(RawRetryHostTypedConfig::Deferred(mut mapping)) => {
                let Some(url) = mapping.remove(TYPE_KEY) else {
                    return Err(self.invalid(
                        typed_config_path,
                        Problem::Missing {
                            field: "@type",
                            hint: format!("Envoy v3 selects the predicate by it; {example}"),
                        },
                    ));
                };
                let url_path = format!("{typed_config_path}.{TYPE_KEY}");
                let url: String = self.deserialize(&url, &url_path)?;
                if let Err(message) = retry_host_predicate_type(&url) {
                    return Err(self.schema(url_path, message));
                }
                let RawPreviousHostsPredicate {} =
                    self.deserialize(&Value::Mapping(mapping), &typed_config_path)?;
            }
        }
        Ok(())
    }
}

/// Access logs.
impl Builder<'_> {
    /// Check the `access_log` list of the http_connection_manager or tcp_proxy at
    /// `parent`.
    fn access_logs(
        &self,
        raw: Option<Vec<RawAccessLog>>,
        parent: &str,
    ) -> Result<Vec<AccessLog>, EnvoyConfigError> {
        let mut logs = Vec::new();
        for (i, log) in raw.unwrap_or_default().into_iter().enumerate() {
            logs.push(self.access_log(log, &format!("{parent}.access_log[{i}]"))?);
        }
        Ok(logs)
    }

    /// Check one `AccessLog` (at `path`).
    fn access_log(&self, raw: RawAccessLog, path: &str) -> Result<AccessLog, EnvoyConfigError> {
        let example = format!(
            "e.g. `{{ name: {FILE_ACCESS_LOG_NAME}, typed_config: {{ \"@type\": \
             {FILE_ACCESS_LOG_TYPE_URL}, path: /var/log/zerohop/access.log }} }}`"
        );
        if raw.filter.is_some() {
            return Err(self.invalid(
                format!("{path}.filter"),
                Problem::NotSupported {
                    field: "filter",
                    hint: "zerohop logs every request (every connection, for a tcp_proxy); \
                           remove `filter`"
                        .to_owned(),
                },
            ));
        }
        let typed_config_path = format!("{path}.typed_config");
        let typed_config = match raw.typed_config {
            Some(RawAccessLogTypedConfig::Deferred(mapping)) if mapping.is_empty() => None,
            Some(RawAccessLogTypedConfig::Deferred(mut mapping)) => {
                let Some(url) = mapping.remove(TYPE_KEY) else {
                    return Err(self.invalid(
                        typed_config_path,
                        Problem::Missing {
                            field: "@type",
                            hint: format!("Envoy v3 selects the logger by it; {example}"),
                        },
                    ));
                };
                let url_path = format!("{typed_config_path}.{TYPE_KEY}");
                let url: String = self.deserialize(&url, &url_path)?;
                let rest = Value::Mapping(mapping);
                let at = &typed_config_path;
                match access_logger_type(&url) {
                    Ok(AccessLoggerType::File) => {
                        Some(RawAccessLogTypedConfig::File(self.deserialize(&rest, at)?))
                    }
                    Ok(stream) => Some(RawAccessLogTypedConfig::Stream(
                        stream,
                        self.deserialize(&rest, at)?,
                    )),
                    Err(message) => return Err(self.schema(url_path, message)),
                }
            }
            other => other,
        };
        match typed_config {
            Some(RawAccessLogTypedConfig::File(raw)) => {
                self.file_access_log(raw, &typed_config_path)
            }
            Some(RawAccessLogTypedConfig::Stream(kind, raw)) => {
                self.stream_access_log(kind, raw, &typed_config_path)
            }
            // Resolved above.
            Some(RawAccessLogTypedConfig::Deferred(_)) | None => {
                // Without a typed_config, Envoy finds the logger by its name, with an
                // empty config: the stream loggers work so, the file logger lacks its
                // path.
                let kind = match raw.name.as_deref() {
                    Some(STDOUT_ACCESS_LOG_NAME) => AccessLoggerType::Stdout,
                    Some(STDERR_ACCESS_LOG_NAME) => AccessLoggerType::Stderr,
                    Some(FILE_ACCESS_LOG_NAME) | None => {
                        return Err(self.invalid(
                            path.to_owned(),
                            Problem::Missing {
                                field: "typed_config",
                                hint: format!("the file logger needs its `path` there; {example}"),
                            },
                        ))
                    }
                    Some(name) => {
                        return Err(self.schema(
                            format!("{path}.name"),
                            format!(
                                "unsupported access logger `{name}`: zerohop supports \
                                 {FILE_ACCESS_LOG_NAME}, {STDOUT_ACCESS_LOG_NAME} and \
                                 {STDERR_ACCESS_LOG_NAME} so far; {example}"
                            ),
                        ))
                    }
                };
                self.stream_access_log(kind, RawStreamAccessLog::default(), &typed_config_path)
            }
        }
    }

    /// Check a `FileAccessLog` (at `path`, its typed_config).
    fn file_access_log(
        &self,
        raw: RawFileAccessLog,
        path: &str,
    ) -> Result<AccessLog, EnvoyConfigError> {
        let file = self.required(
            raw.path,
            path,
            "path",
            "the file to append the log to, e.g. `path: /var/log/zerohop/access.log` (or \
             /dev/stdout)",
        )?;
        let formats = "format, json_format, typed_json_format and log_format";
        self.one_of(
            path,
            formats,
            &[
                ("format", raw.format.is_some()),
                ("json_format", raw.json_format.is_some()),
                ("typed_json_format", raw.typed_json_format.is_some()),
                ("log_format", raw.log_format.is_some()),
            ],
        )?;
        for (field, set) in [
            ("json_format", raw.json_format.is_some()),
            ("typed_json_format", raw.typed_json_format.is_some()),
        ] {
            if set {
                return Err(self.invalid(format!("{path}.{field}"), json_not_supported(field)));
            }
        }
        let format = match (raw.format, raw.log_format) {
            // An empty `format` is proto3's unset string: Envoy's default.
            (Some(format), _) if !format.is_empty() => {
                self.access_log_format(format, &format!("{path}.format"))?
            }
            (_, Some(log_format)) => {
                self.substitution_format_string(log_format, &format!("{path}.log_format"))?
            }
            _ => DEFAULT_FORMAT.to_owned(),
        };
        Ok(AccessLog { path: file, format })
    }

    /// Check a `StdoutAccessLog` or `StderrAccessLog` (at `path`).
    fn stream_access_log(
        &self,
        kind: AccessLoggerType,
        raw: RawStreamAccessLog,
        path: &str,
    ) -> Result<AccessLog, EnvoyConfigError> {
        let format = match raw.log_format {
            Some(log_format) => {
                self.substitution_format_string(log_format, &format!("{path}.log_format"))?
            }
            None => DEFAULT_FORMAT.to_owned(),
        };
        let path = if kind == AccessLoggerType::Stderr {
            STDERR_PATH
        } else {
            STDOUT_PATH
        };
        Ok(AccessLog {
            path: path.to_owned(),
            format,
        })
    }

    /// Check a `SubstitutionFormatString` (at `path`): one of its text formats.
    fn substitution_format_string(
        &self,
        raw: RawSubstitutionFormatString,
        path: &str,
    ) -> Result<String, EnvoyConfigError> {
        let fields = "text_format, json_format and text_format_source";
        let hint = "write the line's format, e.g. `text_format_source: { inline_string: \
                    \"[%START_TIME%] %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\\n\" }`";
        let set = self.one_of(
            path,
            fields,
            &[
                ("text_format", raw.text_format.is_some()),
                ("json_format", raw.json_format.is_some()),
                ("text_format_source", raw.text_format_source.is_some()),
            ],
        )?;
        if raw.json_format.is_some() {
            return Err(self.invalid(
                format!("{path}.json_format"),
                json_not_supported("json_format"),
            ));
        }
        if raw.omit_empty_values == Some(true) {
            return Err(self.invalid(
                format!("{path}.omit_empty_values"),
                Problem::NotSupported {
                    field: "omit_empty_values",
                    hint: "a missing value is written `-`; remove `omit_empty_values`".to_owned(),
                },
            ));
        }
        if raw.formatters.is_some() {
            return Err(self.invalid(
                format!("{path}.formatters"),
                Problem::NotSupported {
                    field: "formatters",
                    hint: "zerohop has no formatter extensions; use the built-in commands"
                        .to_owned(),
                },
            ));
        }
        if let Some(text) = raw.text_format {
            let text = self.required(Some(text), path, "text_format", hint)?;
            return self.access_log_format(text, &format!("{path}.text_format"));
        }
        let Some(source) = raw.text_format_source else {
            debug_assert!(set.is_none());
            return Err(self.invalid(
                path.to_owned(),
                Problem::NoneOf {
                    fields,
                    hint: hint.to_owned(),
                },
            ));
        };
        let text = self.inline_string(source, &format!("{path}.text_format_source"), hint)?;
        self.access_log_format(text, &format!("{path}.text_format_source.inline_string"))
    }

    /// Read a `DataSource` (at `path`) that must be an `inline_string`, not empty.
    fn inline_string(
        &self,
        raw: RawDataSource,
        path: &str,
        hint: &str,
    ) -> Result<String, EnvoyConfigError> {
        let inline_hint = format!("write the text inline; {hint}");
        for (field, set) in [
            ("filename", raw.filename.is_some()),
            ("inline_bytes", raw.inline_bytes.is_some()),
            ("environment_variable", raw.environment_variable.is_some()),
        ] {
            if set {
                return Err(self.invalid(
                    format!("{path}.{field}"),
                    Problem::NotSupported {
                        field,
                        hint: inline_hint,
                    },
                ));
            }
        }
        self.required(raw.inline_string, path, "inline_string", &inline_hint)
    }

    /// Check an access log format (at `path`).
    fn access_log_format(&self, text: String, path: &str) -> Result<String, EnvoyConfigError> {
        match check_format(&text) {
            Ok(()) => Ok(text),
            Err(reason) => {
                Err(self.invalid(path.to_owned(), Problem::BadAccessLogFormat { reason }))
            }
        }
    }
}

/// Why a JSON access log format is refused.
fn json_not_supported(field: &'static str) -> Problem {
    Problem::NotSupported {
        field,
        hint: "JSON access logs are not supported yet; write a text format, e.g. \
               `log_format: { text_format_source: { inline_string: \"[%START_TIME%] \
               %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\\n\" } }`"
            .to_owned(),
    }
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), as header names are.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Return `regex` made to match a whole string, as Envoy's `safe_regex` does.
pub(crate) fn anchored(regex: &str) -> String {
    format!("^(?:{regex})$")
}

/// Check that `regex` compiles; return the `regex` crate's reason when not, on one line.
fn check_regex(regex: &str) -> Result<(), String> {
    // The regex as written first, so that the message shows the user's text.
    let error = match regex::Regex::new(regex).and_then(|_| regex::Regex::new(&anchored(regex))) {
        Ok(_) => return Ok(()),
        Err(error) => error.to_string(),
    };
    Err(error
        .lines()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(&error)
        .trim()
        .to_owned())
}

/// Turn an RE2 substitution (`\1` for a group, `\\` for a backslash) into the `regex`
/// crate's replacement syntax (`${1}`, `$$` for a dollar sign).
///
/// # Errors
/// What is wrong with `substitution`: a backslash before anything but a digit or a
/// backslash, or a group the pattern does not have.
pub(crate) fn rust_substitution(substitution: &str, groups: usize) -> Result<String, String> {
    let mut out = String::with_capacity(substitution.len() + 4);
    let mut chars = substitution.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(digit @ '0'..='9') => {
                    let group = digit as usize - '0' as usize;
                    if group >= groups {
                        return Err(format!(
                            "it refers to group \\{group}, but the pattern has {} group{}",
                            groups.saturating_sub(1),
                            if groups == 2 { "" } else { "s" }
                        ));
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some(other) => {
                    return Err(format!(
                        "`\\{other}` is not a substitution: write `\\1` to `\\9` for a group \
                         of the pattern, `\\0` for the whole match, `\\\\` for a backslash"
                    ))
                }
                None => {
                    return Err("it ends with a lone `\\`; write `\\\\` for a backslash".to_owned())
                }
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Check a substitution against its (valid) pattern.
fn check_substitution(pattern: &str, substitution: &str) -> Result<(), String> {
    let groups = regex::Regex::new(pattern)
        .map(|regex| regex.captures_len())
        .map_err(|error| error.to_string())?;
    rust_substitution(substitution, groups).map(|_| ())
}

/// The format variables zerohop fills in, for messages.
const FORMAT_VARIABLES: &str = "%DOWNSTREAM_REMOTE_ADDRESS%, \
    %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, %DOWNSTREAM_LOCAL_ADDRESS%, \
    %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%, %UPSTREAM_REMOTE_ADDRESS%, %PROTOCOL%, \
    %START_TIME% and %REQ(header)%";

/// Parse a header value with Envoy's format variables (`%NAME%`, `%REQ(x-a?x-b):10%`;
/// `%%` is a literal `%`).
///
/// # Errors
/// What is wrong, for a message: an unknown variable, a `%` that starts no variable, a
/// control character.
pub(crate) fn parse_header_value(text: &str) -> Result<HeaderValueTemplate, String> {
    if text.chars().any(|c| matches!(c, '\0' | '\r' | '\n')) {
        return Err("it contains a line break or a NUL character".to_owned());
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        literal.push_str(&rest[..start]);
        rest = &rest[start + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            literal.push('%');
            rest = after;
            continue;
        }
        let name_end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err(format!(
                "a `%` starts a variable such as %DOWNSTREAM_REMOTE_ADDRESS%; write `%%` for a \
                 literal percent sign (zerohop supports {FORMAT_VARIABLES})"
            ));
        }
        rest = &rest[name_end..];
        let mut argument = None;
        if let Some(after) = rest.strip_prefix('(') {
            let Some(close) = after.find(')') else {
                return Err(format!("`%{name}(` has no closing `)`"));
            };
            argument = Some(&after[..close]);
            rest = &after[close + 1..];
        }
        let mut max_length = None;
        if let Some(after) = rest.strip_prefix(':') {
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let Ok(length) = after[..digits].parse::<usize>() else {
                return Err(format!(
                    "`%{name}...:` must be followed by a length in bytes, e.g. `:10`"
                ));
            };
            max_length = Some(length);
            rest = &after[digits..];
        }
        let Some(after) = rest.strip_prefix('%') else {
            return Err(format!(
                "the variable %{name} is not closed with `%`; write `%%` for a literal percent \
                 sign"
            ));
        };
        rest = after;
        let simple = match name {
            "DOWNSTREAM_REMOTE_ADDRESS" => Some(FormatVariable::DownstreamRemoteAddress),
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Some(FormatVariable::DownstreamRemoteAddressWithoutPort)
            }
            "DOWNSTREAM_LOCAL_ADDRESS" => Some(FormatVariable::DownstreamLocalAddress),
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
                Some(FormatVariable::DownstreamLocalAddressWithoutPort)
            }
            "UPSTREAM_REMOTE_ADDRESS" => Some(FormatVariable::UpstreamRemoteAddress),
            "PROTOCOL" => Some(FormatVariable::Protocol),
            "START_TIME" => Some(FormatVariable::StartTime),
            _ => None,
        };
        let variable = match (simple, name) {
            (Some(_), "START_TIME") if argument.is_some() => {
                return Err(
                    "%START_TIME(format)% is not supported yet; write %START_TIME% for Envoy's \
                     default format (2024-05-01T12:00:00.000Z)"
                        .to_owned(),
                )
            }
            (Some(variable), _) => {
                if argument.is_some() || max_length.is_some() {
                    return Err(format!(
                        "%{name}% takes no argument and no length; write %{name}%"
                    ));
                }
                variable
            }
            (None, "REQ") => {
                let Some(argument) = argument.filter(|a| !a.is_empty()) else {
                    return Err("%REQ% needs a header name, e.g. %REQ(x-request-id)%".to_owned());
                };
                let (name, alternative) = match argument.split_once('?') {
                    Some((name, alternative)) => (name, Some(alternative)),
                    None => (argument, None),
                };
                let check = |header: &str| {
                    let lower = header.to_ascii_lowercase();
                    if is_token(&lower) || PSEUDO_HEADERS.contains(&lower.as_str()) {
                        Ok(lower)
                    } else {
                        Err(format!(
                            "`{header}` in %REQ({argument})% is not a header name (a token, \
                             or one of :authority, :method, :path, :scheme)"
                        ))
                    }
                };
                FormatVariable::RequestHeader {
                    name: check(name)?,
                    alternative: alternative.map(check).transpose()?,
                    max_length,
                }
            }
            (None, _) => {
                return Err(format!(
                    "zerohop does not support the variable %{name}% (yet); it supports \
                     {FORMAT_VARIABLES}, and `%%` for a literal percent sign"
                ))
            }
        };
        if !literal.is_empty() {
            parts.push(ValuePart::Literal(std::mem::take(&mut literal)));
        }
        parts.push(ValuePart::Variable(variable));
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(ValuePart::Literal(literal));
    }
    Ok(HeaderValueTemplate { parts })
}

/// Return what `ip` is when it cannot be an upstream host, else `None`.
fn not_unicast(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    //! The HTTP connection manager part of the config: a real Envoy config loads, and
    //! each mistake is an error that names its YAML path. (The TCP part is tested in
    //! `l7/tests/envoy_config.rs`.)

    use super::*;

    const ORIGIN: &str = "envoy.yaml";

    /// zerohop's example HTTP config: a `dataplane` section (read by zerohop's own
    /// config) and the Envoy sections.
    const EXAMPLE: &str = include_str!("../../../configs/http-proxy.yaml");

    /// The smallest HTTP config that works: one listener, one route, two clusters.
    const BASE: &str = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 0.0.0.0, port_value: 8080 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - { match: { prefix: / }, route: { cluster: c } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: c
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.0.2, port_value: 80 } } }
  - name: d
    load_assignment:
      cluster_name: d
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.0.3, port_value: 80 } } }
"#;

    const TC: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

    fn path(rest: &str) -> String {
        format!("{TC}{rest}")
    }

    /// The path of the first route.
    fn route_path(rest: &str) -> String {
        path(&format!(".route_config.virtual_hosts[0].routes[0]{rest}"))
    }

    fn load(text: &str) -> Result<EnvoyConfig, EnvoyConfigError> {
        EnvoyConfig::from_yaml(text, ORIGIN)
    }

    /// Load `text` from its text and from its YAML tree; both must agree (errors: same
    /// path and message, positions aside).
    fn load_both(text: &str) -> Result<EnvoyConfig, EnvoyConfigError> {
        let from_text = load(text);
        let tree: Value = serde_yaml_ng::from_str(text).unwrap();
        let from_value =
            EnvoyConfig::from_value(tree.get("static_resources"), tree.get("admin"), ORIGIN);
        let strip = |error: &EnvoyConfigError| {
            let mut error = error.clone();
            if let EnvoyConfigError::Schema { line, column, .. } = &mut error {
                *line = None;
                *column = None;
            }
            error
        };
        match (&from_text, &from_value) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(strip(a), strip(b), "{text}"),
            _ => panic!("from_yaml: {from_text:?}\nfrom_value: {from_value:?}"),
        }
        from_text
    }

    fn edit(base: &str, from: &str, to: &str) -> String {
        assert!(base.contains(from), "`{from}` is not in the config");
        base.replacen(from, to, 1)
    }

    /// BASE with its one route replaced by `route` (flow style).
    fn with_route(route: &str) -> String {
        with_routes(&[route])
    }

    fn with_routes(routes: &[&str]) -> String {
        let routes: String = routes
            .iter()
            .map(|route| format!("              - {route}\n"))
            .collect();
        edit(
            BASE,
            "              - { match: { prefix: / }, route: { cluster: c } }\n",
            &routes,
        )
    }

    /// BASE with its virtual hosts replaced by `virtual_hosts` (flow style).
    fn with_virtual_hosts(virtual_hosts: &[&str]) -> String {
        let list: String = virtual_hosts
            .iter()
            .map(|vh| format!("            - {vh}\n"))
            .collect();
        edit(
            BASE,
            "            - name: vh\n              domains: [\"*\"]\n              routes:\n              - { match: { prefix: / }, route: { cluster: c } }\n",
            &list,
        )
    }

    /// BASE with `line` added to the http_connection_manager.
    fn with_hcm(line: &str) -> String {
        edit(
            BASE,
            "          stat_prefix: http\n",
            &format!("          stat_prefix: http\n          {line}\n"),
        )
    }

    fn hcm(config: &EnvoyConfig) -> &HttpConnectionManager {
        match &config.listeners[0].filter {
            NetworkFilter::HttpConnectionManager(hcm) => hcm,
            other => panic!("not an http_connection_manager: {other:?}"),
        }
    }

    fn first_route(config: &EnvoyConfig) -> &Route {
        &hcm(config).route_config.virtual_hosts[0].routes[0]
    }

    fn route_action(config: &EnvoyConfig) -> &RouteAction {
        match &first_route(config).action {
            Action::Route(action) => action,
            other => panic!("not a route action: {other:?}"),
        }
    }

    /// Assert that `text` fails to load at `path` with every one of `expected` in the
    /// message; return the message.
    fn error_at(text: &str, path: &str, expected: &[&str]) -> String {
        let error = match load_both(text) {
            Ok(config) => panic!("loaded: {config:?}\n{text}"),
            Err(error) => error,
        };
        let message = error.to_string();
        assert_eq!(error.path(), Some(path), "{message}");
        assert!(
            message.starts_with(&format!("{ORIGIN}: {path}: ")),
            "{message}"
        );
        for part in expected {
            assert!(message.contains(part), "expected `{part}` in:\n{message}");
        }
        message
    }

    /// Assert that `text` fails the checks after parsing at `path`; return the problem.
    fn problem_at(text: &str, path: &str) -> Problem {
        match load_both(text) {
            Err(EnvoyConfigError::Invalid {
                path: got, problem, ..
            }) => {
                assert_eq!(got, path, "{problem}");
                problem
            }
            other => panic!("expected an Invalid error at {path}, got {other:?}"),
        }
    }

    fn literal(text: &str) -> HeaderValueTemplate {
        HeaderValueTemplate {
            parts: vec![ValuePart::Literal(text.to_owned())],
        }
    }

    #[test]
    fn example_config_loads() {
        // zerohop's config loader (src/config.rs) reads the `dataplane` section and hands
        // the Envoy sections over as trees; from_yaml reads the Envoy part as text.
        let tree: Value = serde_yaml_ng::from_str(EXAMPLE).unwrap();
        let from_tree = EnvoyConfig::from_value(tree.get("static_resources"), None, ORIGIN)
            .unwrap_or_else(|e| panic!("{e}"));
        let envoy_part = &EXAMPLE[EXAMPLE.find("\nstatic_resources:").unwrap()..];
        let config = load(envoy_part).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config, from_tree);

        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].address, "0.0.0.0:8080".parse().unwrap());
        let names: Vec<_> = config.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["api-v1", "api-v2", "static"]);
        for (cluster, port) in config.clusters.iter().zip([9001, 9002, 9003]) {
            assert_eq!(
                cluster.endpoints[0].address,
                SocketAddrV4::new(Ipv4Addr::new(10, 201, 2, 1), port)
            );
        }
        let hcm = hcm(&config);
        assert_eq!(hcm.stat_prefix, "ingress_http");
        assert_eq!(hcm.codec_type, CodecType::Http1);
        assert_eq!(hcm.request_headers_timeout, Some(Duration::from_secs(10)));
        assert!(hcm.use_remote_address);
        assert_eq!(
            hcm.http_filters,
            [HttpFilter::Router(RouterFilter {
                name: "envoy.filters.http.router".to_owned()
            })]
        );
        let routes = &hcm.route_config;
        assert_eq!(routes.name, "local_routes");
        assert_eq!(routes.virtual_hosts.len(), 2);
        let api = &routes.virtual_hosts[0];
        assert_eq!(
            api.domains,
            ["api.example.com", "api.example.com:8080", "api.*"]
        );
        assert_eq!(
            api.headers.request_headers_to_add[0].value.parts,
            [ValuePart::Variable(
                FormatVariable::DownstreamRemoteAddressWithoutPort
            )]
        );
        let names: Vec<_> = api.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["canary", "users-by-id", "debug", "v1"]);
        let Action::Route(split) = &api.routes[1].action else {
            panic!("users-by-id is not a route");
        };
        assert_eq!(
            split.cluster,
            ClusterSpecifier::WeightedClusters(vec![
                ClusterWeight {
                    name: "api-v1".to_owned(),
                    weight: 90
                },
                ClusterWeight {
                    name: "api-v2".to_owned(),
                    weight: 10
                },
            ])
        );
        let www = &routes.virtual_hosts[1];
        assert_eq!(www.domains, ["*"]);
        assert_eq!(
            www.routes[0].action,
            Action::DirectResponse(DirectResponseAction {
                status: 200,
                body: Some("ok\n".to_owned())
            })
        );
        assert!(matches!(www.routes[1].action, Action::Redirect(_)));
        assert_eq!(
            www.routes[2].route_match.path,
            PathMatch::PathSeparatedPrefix("/static".to_owned())
        );
        assert!(!www.routes[2].route_match.case_sensitive);
    }

    #[test]
    fn full_hcm_config_loads() {
        let text = edit(
            BASE,
            "          route_config:\n            virtual_hosts:\n            - name: vh\n              domains: [\"*\"]\n              routes:\n              - { match: { prefix: / }, route: { cluster: c } }\n",
            r#"          codec_type: AUTO
          common_http_protocol_options: { idle_timeout: 60s }
          request_headers_timeout: 2s
          stream_idle_timeout: 30s
          request_timeout: 120s
          max_request_headers_kb: 96
          use_remote_address: true
          xff_num_trusted_hops: 1
          generate_request_id: false
          route_config:
            name: routes
            most_specific_header_mutations_wins: true
            ignore_port_in_host_matching: true
            validate_clusters: true
            max_direct_response_body_size_bytes: 16
            request_headers_to_add:
            - header: { key: X-Global, value: "1%%" }
              append: false
            request_headers_to_remove: [X-Drop]
            response_headers_to_add:
            - header: { key: x-via, value: "zerohop %PROTOCOL%" }
              keep_empty_value: true
            response_headers_to_remove: [server]
            virtual_hosts:
            - name: vh
              domains: ["Example.COM", "*.example.com", "example.*"]
              request_headers_to_add:
              - header: { key: x-vh, value: "%REQ(x-a?x-b):8%" }
                append_action: ADD_IF_ABSENT
              routes:
              - name: r
                match:
                  prefix: /api
                  case_sensitive: false
                  headers:
                  - { name: X-Env, string_match: { prefix: pro, ignore_case: true } }
                  - { name: ":method", exact_match: GET }
                  - { name: x-debug, present_match: false }
                  - { name: x-skip, suffix_match: "1", invert_match: true, treat_missing_header_as_empty: true }
                  - { name: x-any }
                  - { name: x-re, safe_regex_match: { google_re2: {}, regex: "[a-z]+" } }
                  query_parameters:
                  - { name: v, string_match: { exact: "2" } }
                  - { name: trace, present_match: true }
                route:
                  weighted_clusters:
                    total_weight: 10
                    clusters: [{ name: c, weight: 7 }, { name: d, weight: 3 }]
                  regex_rewrite: { pattern: { regex: "^/api/(.*)$" }, substitution: "/\\1" }
                  host_rewrite_literal: backend.internal
                  timeout: 0s
                  hash_policy:
                  - { header: { header_name: X-User }, terminal: true }
                  - cookie: { name: s, ttl: 0s, path: / }
                  - connection_properties: { source_ip: true }
                  - query_parameter: { name: u }
                response_headers_to_add:
                - header: { key: x-route, value: r }
                  append_action: OVERWRITE_IF_EXISTS
              - match: { path: /old }
                redirect:
                  https_redirect: true
                  host_redirect: new.example.com
                  port_redirect: 8443
                  path_redirect: /new
                  response_code: PERMANENT_REDIRECT
                  strip_query: true
              - match: { path_separated_prefix: /health }
                direct_response: { status: 503, body: { inline_string: down } }
"#,
        );
        let config = load_both(&text).unwrap_or_else(|e| panic!("{e}"));
        let hcm = hcm(&config);
        assert_eq!(hcm.codec_type, CodecType::Auto);
        assert_eq!(hcm.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(hcm.request_headers_timeout, Some(Duration::from_secs(2)));
        assert_eq!(hcm.stream_idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(hcm.request_timeout, Some(Duration::from_secs(120)));
        assert_eq!(hcm.max_request_headers_kb, 96);
        assert!(hcm.use_remote_address);
        assert_eq!(hcm.xff_num_trusted_hops, 1);
        assert!(!hcm.generate_request_id);
        let routes = &hcm.route_config;
        assert_eq!(routes.name, "routes");
        assert!(routes.most_specific_header_mutations_wins);
        assert!(routes.ignore_port_in_host_matching);
        assert_eq!(
            routes.headers,
            HeaderMutations {
                request_headers_to_add: vec![HeaderValueOption {
                    key: "x-global".to_owned(),
                    value: literal("1%"),
                    append_action: HeaderAppendAction::OverwriteIfExistsOrAdd,
                    keep_empty_value: false,
                }],
                request_headers_to_remove: vec!["x-drop".to_owned()],
                response_headers_to_add: vec![HeaderValueOption {
                    key: "x-via".to_owned(),
                    value: HeaderValueTemplate {
                        parts: vec![
                            ValuePart::Literal("zerohop ".to_owned()),
                            ValuePart::Variable(FormatVariable::Protocol),
                        ]
                    },
                    append_action: HeaderAppendAction::AppendIfExistsOrAdd,
                    keep_empty_value: true,
                }],
                response_headers_to_remove: vec!["server".to_owned()],
            }
        );
        let vh = &routes.virtual_hosts[0];
        assert_eq!(vh.domains, ["example.com", "*.example.com", "example.*"]);
        assert_eq!(
            vh.headers.request_headers_to_add[0].value.parts,
            [ValuePart::Variable(FormatVariable::RequestHeader {
                name: "x-a".to_owned(),
                alternative: Some("x-b".to_owned()),
                max_length: Some(8),
            })]
        );
        assert_eq!(
            vh.headers.request_headers_to_add[0].append_action,
            HeaderAppendAction::AddIfAbsent
        );
        let route = &vh.routes[0];
        assert_eq!(route.name, "r");
        let exact = |text: &str| {
            HeaderMatchRule::Value(StringMatcher {
                pattern: StringPattern::Exact(text.to_owned()),
                ignore_case: false,
            })
        };
        assert_eq!(
            route.route_match,
            RouteMatch {
                path: PathMatch::Prefix("/api".to_owned()),
                case_sensitive: false,
                headers: vec![
                    HeaderMatcher {
                        name: "x-env".to_owned(),
                        rule: HeaderMatchRule::Value(StringMatcher {
                            pattern: StringPattern::Prefix("pro".to_owned()),
                            ignore_case: true,
                        }),
                        invert_match: false,
                        treat_missing_header_as_empty: false,
                    },
                    HeaderMatcher {
                        name: ":method".to_owned(),
                        rule: exact("GET"),
                        invert_match: false,
                        treat_missing_header_as_empty: false,
                    },
                    HeaderMatcher {
                        name: "x-debug".to_owned(),
                        rule: HeaderMatchRule::Present(false),
                        invert_match: false,
                        treat_missing_header_as_empty: false,
                    },
                    HeaderMatcher {
                        name: "x-skip".to_owned(),
                        rule: HeaderMatchRule::Value(StringMatcher {
                            pattern: StringPattern::Suffix("1".to_owned()),
                            ignore_case: false,
                        }),
                        invert_match: true,
                        treat_missing_header_as_empty: true,
                    },
                    HeaderMatcher {
                        name: "x-any".to_owned(),
                        rule: HeaderMatchRule::Present(true),
                        invert_match: false,
                        treat_missing_header_as_empty: false,
                    },
                    HeaderMatcher {
                        name: "x-re".to_owned(),
                        rule: HeaderMatchRule::Value(StringMatcher {
                            pattern: StringPattern::SafeRegex("[a-z]+".to_owned()),
                            ignore_case: false,
                        }),
                        invert_match: false,
                        treat_missing_header_as_empty: false,
                    },
                ],
                query_parameters: vec![
                    QueryParameterMatcher {
                        name: "v".to_owned(),
                        value: Some(StringMatcher {
                            pattern: StringPattern::Exact("2".to_owned()),
                            ignore_case: false,
                        }),
                    },
                    QueryParameterMatcher {
                        name: "trace".to_owned(),
                        value: None,
                    },
                ],
            }
        );
        assert_eq!(
            route.action,
            Action::Route(RouteAction {
                cluster: ClusterSpecifier::WeightedClusters(vec![
                    ClusterWeight {
                        name: "c".to_owned(),
                        weight: 7
                    },
                    ClusterWeight {
                        name: "d".to_owned(),
                        weight: 3
                    },
                ]),
                prefix_rewrite: None,
                regex_rewrite: Some(RegexRewrite {
                    pattern: "^/api/(.*)$".to_owned(),
                    substitution: "/\\1".to_owned(),
                }),
                host_rewrite: Some(HostRewrite::Literal("backend.internal".to_owned())),
                timeout: None,
                hash_policy: vec![
                    HashPolicy {
                        source: HashSource::Header("x-user".to_owned()),
                        terminal: true,
                    },
                    HashPolicy {
                        source: HashSource::Cookie {
                            name: "s".to_owned(),
                            ttl: Some(Duration::ZERO),
                            path: Some("/".to_owned()),
                        },
                        terminal: false,
                    },
                    HashPolicy {
                        source: HashSource::SourceIp(true),
                        terminal: false,
                    },
                    HashPolicy {
                        source: HashSource::QueryParameter("u".to_owned()),
                        terminal: false,
                    },
                ],
                retry_policy: None,
                idle_timeout: None,
            })
        );
        assert_eq!(
            route.headers.response_headers_to_add[0].append_action,
            HeaderAppendAction::OverwriteIfExists
        );
        assert_eq!(
            vh.routes[1].action,
            Action::Redirect(RedirectAction {
                scheme: Some("https".to_owned()),
                host: Some("new.example.com".to_owned()),
                port: Some(8443),
                path: Some(RedirectPath::Path("/new".to_owned())),
                response_code: RedirectResponseCode::PermanentRedirect,
                strip_query: true,
            })
        );
        assert_eq!(
            vh.routes[2].action,
            Action::DirectResponse(DirectResponseAction {
                status: 503,
                body: Some("down".to_owned()),
            })
        );
    }

    #[test]
    fn defaults_are_envoys() {
        let config = load_both(BASE).unwrap();
        let hcm = hcm(&config);
        assert_eq!(hcm.codec_type, CodecType::Auto);
        assert_eq!(hcm.idle_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(hcm.request_headers_timeout, None);
        assert_eq!(hcm.stream_idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(hcm.request_timeout, None);
        assert_eq!(hcm.max_request_headers_kb, 60);
        assert!(!hcm.use_remote_address);
        assert_eq!(hcm.xff_num_trusted_hops, 0);
        assert!(hcm.generate_request_id);
        let routes = &hcm.route_config;
        assert_eq!(routes.name, "");
        assert!(!routes.most_specific_header_mutations_wins);
        assert!(!routes.ignore_port_in_host_matching);
        assert!(routes.headers.is_empty());
        let route = first_route(&config);
        assert!(route.route_match.case_sensitive);
        assert_eq!(
            route_action(&config),
            &RouteAction {
                cluster: ClusterSpecifier::Cluster("c".to_owned()),
                prefix_rewrite: None,
                regex_rewrite: None,
                host_rewrite: None,
                timeout: Some(Duration::from_secs(15)),
                hash_policy: vec![],
                retry_policy: None,
                idle_timeout: None,
            }
        );
        let redirect = load_both(&with_route("{ match: { path: /a }, redirect: {} }")).unwrap();
        assert_eq!(
            first_route(&redirect).action,
            Action::Redirect(RedirectAction {
                scheme: None,
                host: None,
                port: None,
                path: None,
                response_code: RedirectResponseCode::MovedPermanently,
                strip_query: false,
            })
        );
    }

    #[test]
    fn zero_turns_timeouts_off() {
        let config = load_both(&with_hcm(
            "stream_idle_timeout: 0s\n          request_timeout: 0s\n          \
             request_headers_timeout: 0s\n          \
             common_http_protocol_options: { idle_timeout: 0s }",
        ))
        .unwrap();
        let hcm = hcm(&config);
        assert_eq!(hcm.idle_timeout, None);
        assert_eq!(hcm.stream_idle_timeout, None);
        assert_eq!(hcm.request_timeout, None);
        assert_eq!(hcm.request_headers_timeout, None);
        let config = load_both(&with_route(
            "{ match: { prefix: / }, route: { cluster: c, timeout: 0s } }",
        ))
        .unwrap();
        assert_eq!(route_action(&config).timeout, None);
    }

    #[test]
    fn camel_case_names_load_as_envoy_allows() {
        let snake = with_hcm("max_request_headers_kb: 10\n          use_remote_address: true");
        let camel = with_hcm("maxRequestHeadersKb: 10\n          useRemoteAddress: true")
            .replace("stat_prefix", "statPrefix")
            .replace("route_config", "routeConfig")
            .replace("virtual_hosts", "virtualHosts")
            .replace("http_filters", "httpFilters")
            .replace("typed_config", "typedConfig");
        assert_eq!(load_both(&camel).unwrap(), load_both(&snake).unwrap());
        let snake = with_route(
            "{ match: { safe_regex: { regex: /a }, case_sensitive: false }, direct_response: { status: 200, body: { inline_string: x } } }",
        );
        let camel = snake
            .replace("safe_regex", "safeRegex")
            .replace("case_sensitive", "caseSensitive")
            .replace("direct_response", "directResponse")
            .replace("inline_string", "inlineString");
        assert_eq!(load_both(&camel).unwrap(), load_both(&snake).unwrap());
    }

    #[test]
    fn type_url_anywhere_in_typed_config() {
        let text = edit(
            BASE,
            "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          stat_prefix: http\n",
            "          stat_prefix: http\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n",
        );
        assert_eq!(load_both(&text).unwrap(), load(BASE).unwrap());
        let text = edit(
            BASE,
            "            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n",
            "            typed_config: { x: 1, \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }\n",
        );
        error_at(
            &text,
            &path(".http_filters[0].typed_config.x"),
            &["unknown field `x`"],
        );
    }

    #[test]
    fn unsupported_values_name_their_path() {
        for codec in ["HTTP2", "HTTP3"] {
            error_at(
                &with_hcm(&format!("codec_type: {codec}")),
                &path(".codec_type"),
                &[
                    &format!("codec type {codec} is not supported"),
                    "HTTP/1.1 only",
                ],
            );
        }
        error_at(
            &with_hcm("codec_type: http1"),
            &path(".codec_type"),
            &["Envoy's enum names are upper case: write HTTP1"],
        );
        error_at(
            &with_hcm("rds: { route_config_name: r }"),
            &path(".rds"),
            &["`rds` is not supported yet; use an inline `route_config`"],
        );
        error_at(
            &with_hcm("scoped_routes: {}"),
            &path(".scoped_routes"),
            &["not supported"],
        );
        let no_route_config = edit(
            &with_hcm("rds: { route_config_name: r }"),
            "          route_config:\n            virtual_hosts:\n            - name: vh\n              domains: [\"*\"]\n              routes:\n              - { match: { prefix: / }, route: { cluster: c } }\n",
            "",
        );
        error_at(&no_route_config, &path(".rds"), &["use an inline"]);
        let message = error_at(
            &with_hcm("server_name: zerohop"),
            &path(".server_name"),
            &[
                "unknown field `server_name`",
                "rejects a field it does not support",
            ],
        );
        assert!(message.contains(" at line "), "{message}");
        error_at(
            &with_hcm("common_http_protocol_options: { max_connection_duration: 1s }"),
            &path(".common_http_protocol_options.max_connection_duration"),
            &["unknown field `max_connection_duration`"],
        );
        error_at(
            &with_hcm("max_request_headers_kb: 0"),
            &path(".max_request_headers_kb"),
            &["0 is out of range; use 1 to 8192"],
        );
        error_at(
            &with_hcm("max_request_headers_kb: 8193"),
            &path(".max_request_headers_kb"),
            &["8193 is out of range; use 1 to 8192"],
        );
        assert_eq!(
            hcm(&load_both(&with_hcm("max_request_headers_kb: 8192")).unwrap())
                .max_request_headers_kb,
            8192
        );
        error_at(
            &with_hcm("xff_num_trusted_hops: 4294967296"),
            &path(".xff_num_trusted_hops"),
            &["out of range"],
        );
        error_at(
            &with_hcm("stream_idle_timeout: 5m"),
            &path(".stream_idle_timeout"),
            &["write \"300s\""],
        );
        for (route, at, expected) in [
            (
                "{ match: { prefix: / }, route: { cluster: c, hedge_policy: {} } }",
                ".route.hedge_policy",
                "unknown field `hedge_policy`",
            ),
            (
                "{ match: { prefix: /, grpc: {} }, route: { cluster: c } }",
                ".match.grpc",
                "unknown field `grpc`",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: x, range_match: { start: 1, end: 2 } }] }, route: { cluster: c } }",
                ".match.headers[0].range_match",
                "unknown field `range_match`",
            ),
            (
                "{ match: { safe_regex: { google_re2: { max_program_size: 100 }, regex: a } }, route: { cluster: c } }",
                ".match.safe_regex.google_re2.max_program_size",
                "unknown field `max_program_size`",
            ),
            (
                "{ match: { prefix: / }, route: { cluster_header: x-cluster } }",
                ".route.cluster_header",
                "`cluster_header` is not supported yet",
            ),
            (
                "{ match: { prefix: / }, direct_response: { status: 200, body: { filename: /etc/motd } } }",
                ".direct_response.body.filename",
                "`filename` is not supported yet; write the body inline",
            ),
            (
                "{ match: { prefix: / }, redirect: { response_code: GONE } }",
                ".redirect.response_code",
                "unknown redirect response code `GONE`",
            ),
            (
                "{ match: { prefix: /, query_parameters: [{ name: a, present_match: false }] }, route: { cluster: c } }",
                ".match.query_parameters[0].present_match",
                "`present_match: false` is not supported yet",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c }, request_headers_to_add: [{ header: { key: x-a, value: \"%HOSTNAME%\" } }] }",
                ".request_headers_to_add[0].header.value",
                "zerohop does not support the variable %HOSTNAME% (yet)",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c }, request_headers_to_add: [{ header: { key: x-a, value: \"%START_TIME(%s)%\" } }] }",
                ".request_headers_to_add[0].header.value",
                "%START_TIME(format)% is not supported yet",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c }, request_headers_to_add: [{ header: { key: x-a, value: v }, append_action: APPEND } ] }",
                ".request_headers_to_add[0].append_action",
                "unknown header append action `APPEND`",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c }, typed_per_filter_config: {} }",
                ".typed_per_filter_config",
                "unknown field `typed_per_filter_config`",
            ),
        ] {
            error_at(&with_route(route), &route_path(at), &[expected]);
        }
    }

    #[test]
    fn http_filters_end_with_the_router() {
        let filters = |list: &str| {
            edit(
                BASE,
                "          http_filters:\n          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n",
                &format!("          http_filters: {list}\n"),
            )
        };
        const ROUTER: &str = "{ name: envoy.filters.http.router, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }";
        let base = load(BASE).unwrap();
        // The router's typed_config may be left out or empty: Envoy finds it by name.
        for list in [
            "[{ name: envoy.filters.http.router }]",
            "[{ name: envoy.filters.http.router, typed_config: {} }]",
        ] {
            assert_eq!(load_both(&filters(list)).unwrap(), base, "{list}");
        }
        // ...and by its @type whatever its name.
        let named = load_both(&filters(
            "[{ name: router, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]",
        ))
        .unwrap();
        assert_eq!(hcm(&named).http_filters[0].name(), "router");

        let at = path(".http_filters");
        for list in ["[]", "~"] {
            let problem = problem_at(&filters(list), &at);
            assert_eq!(problem, Problem::NoRouter);
            assert!(problem
                .to_string()
                .contains("needs the router as its last HTTP filter"));
        }
        let text = edit(&filters("[]"), "          http_filters: []\n", "");
        assert_eq!(problem_at(&text, &at), Problem::NoRouter);
        error_at(
            &filters(&format!("[{ROUTER}, {ROUTER}]")),
            &format!("{at}[1]"),
            &[&format!("the router ({at}[0]) is a terminal HTTP filter")],
        );
        // A local rate limit without its token bucket, a filter zerohop lacks, and
        // filters after the router.
        error_at(
            &filters(&format!(
                "[{{ name: rl, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl }} }}, {ROUTER}]"
            )),
            &format!("{at}[0].typed_config"),
            &["`token_bucket` is missing"],
        );
        error_at(
            &filters(&format!(
                "[{{ name: c, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }} }}, {ROUTER}]"
            )),
            &format!("{at}[0].typed_config.@type"),
            &["this HTTP filter is not supported yet"],
        );
        error_at(
            &filters(&format!(
                "[{{ name: f, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {{ http_status: 700 }} }} }}, {ROUTER}]"
            )),
            &format!("{at}[0].typed_config.abort.http_status"),
            &["700"],
        );
        let three = load_both(&filters(&format!(
            "[{{ name: m, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation, mutations: {{ request_mutations: [{{ remove: X-A }}, {{ append: {{ header: {{ key: x-b, value: \"%PROTOCOL%\" }} }} }}] }} }} }}, \
             {{ name: rl, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl, token_bucket: {{ max_tokens: 10, fill_interval: 1s }}, filter_enabled: {{ runtime_key: k, default_value: {{ numerator: 50, denominator: TEN_THOUSAND }} }} }} }}, \
             {{ name: f, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, delay: {{ fixed_delay: 0.2s, percentage: {{ numerator: 5 }} }} }} }}, {ROUTER}]"
        )))
        .unwrap();
        let list = &hcm(&three).http_filters;
        assert_eq!(list.len(), 4);
        match &list[0] {
            HttpFilter::HeaderMutation(m) => {
                assert_eq!(
                    m.request_mutations[0],
                    HeaderMutationOp::Remove("x-a".into())
                );
                assert_eq!(m.request_mutations.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        match &list[1] {
            HttpFilter::LocalRateLimit(l) => {
                assert_eq!((l.max_tokens, l.tokens_per_fill, l.status), (10, 1, 429));
                assert_eq!(l.fill_interval, Duration::from_secs(1));
                assert_eq!(
                    (l.filter_enabled.numerator, l.filter_enabled.denominator),
                    (50, 10_000)
                );
                assert_eq!(
                    l.filter_enforced,
                    FractionalPercent::NONE,
                    "Envoy's default: 0%"
                );
            }
            other => panic!("{other:?}"),
        }
        match &list[2] {
            HttpFilter::Fault(f) => {
                let (delay, p) = f.delay.expect("delay");
                assert_eq!(
                    (delay, p.numerator, p.denominator),
                    (Duration::from_millis(200), 5, 100)
                );
                assert_eq!(f.abort, None);
            }
            other => panic!("{other:?}"),
        }
        error_at(
            &filters(&format!(
                "[{{ name: rl, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl, token_bucket: {{ max_tokens: 1, fill_interval: 0.01s }} }} }}, {ROUTER}]"
            )),
            &format!("{at}[0].typed_config.token_bucket.fill_interval"),
            &["50 ms"],
        );
        error_at(
            &filters("[{ name: envoy.filters.http.cors }]"),
            &format!("{at}[0].name"),
            &["HTTP filter `envoy.filters.http.cors` needs a typed_config"],
        );
        error_at(
            &filters("[{ name: r, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy } }]"),
            &format!("{at}[0].typed_config.@type"),
            &["this is a network filter"],
        );
        error_at(
            &filters("[{ name: r, typed_config: { \"@type\": envoy.extensions.filters.http.router.v3.Router } }]"),
            &format!("{at}[0].typed_config.@type"),
            &["a type URL starts with `type.googleapis.com/`"],
        );
        error_at(
            &filters("[{ name: r, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, suppress_envoy_headers: true } }]"),
            &format!("{at}[0].typed_config.suppress_envoy_headers"),
            &["unknown field `suppress_envoy_headers`"],
        );
        error_at(
            &filters("[{ name: r, typed_config: { dynamic_stats: true } }]"),
            &format!("{at}[0].typed_config"),
            &["`@type` is missing"],
        );
        error_at(
            &filters("[{ typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]"),
            &format!("{at}[0]"),
            &["`name` is missing; Envoy requires a name for each HTTP filter"],
        );
        error_at(
            &filters("[{ name: r, is_optional: true }]"),
            &format!("{at}[0].is_optional"),
            &["unknown field `is_optional`"],
        );
    }

    #[test]
    fn access_logs_on_the_hcm() {
        assert!(hcm(&load_both(BASE).unwrap()).access_log.is_empty());
        let config = load_both(&with_hcm(
            "access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: /var/log/access.log\n              log_format:\n                text_format_source:\n                  inline_string: \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% %REQ(X-REQUEST-ID)%\\n\"\n          - name: envoy.access_loggers.stdout\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: /var/log/default.log",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            hcm(&config).access_log,
            vec![
                AccessLog {
                    path: "/var/log/access.log".to_owned(),
                    format: "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% \
                             %REQ(X-REQUEST-ID)%\n"
                        .to_owned(),
                },
                AccessLog {
                    path: STDOUT_PATH.to_owned(),
                    format: DEFAULT_FORMAT.to_owned(),
                },
                AccessLog {
                    path: "/var/log/default.log".to_owned(),
                    format: DEFAULT_FORMAT.to_owned(),
                },
            ]
        );
        // camelCase, and `@type` after the other keys.
        let config = load_both(&with_hcm(
            "accessLog: [{ typedConfig: { path: /a, format: \"%DURATION%\", \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog } }]",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            hcm(&config).access_log,
            vec![AccessLog {
                path: "/a".to_owned(),
                format: "%DURATION%".to_owned(),
            }]
        );
    }

    #[test]
    fn access_log_errors_on_the_hcm_name_their_path() {
        let file =
            "\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
        error_at(
            &with_hcm(&format!(
                "access_log: [{{ typed_config: {{ {file}, path: /a, log_format: {{ text_format: \"%REQ(:METHOD)% %FOO%\" }} }} }}]"
            )),
            &path(".access_log[0].typed_config.log_format.text_format"),
            &["invalid access log format: unknown command %FOO%; zerohop supports %START_TIME%"],
        );
        error_at(
            &with_hcm(&format!(
                "access_log: [{{ typed_config: {{ {file}, path: /a }} }}, {{ typed_config: {{ {file}, path: /b, json_format: {{ a: \"%DURATION%\" }} }} }}]"
            )),
            &path(".access_log[1].typed_config.json_format"),
            &["`json_format` is not supported yet; JSON access logs are not supported yet"],
        );
        error_at(
            &with_hcm(
                "access_log: [{ name: grpc, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig, common_config: {} } }]",
            ),
            &path(".access_log[0].typed_config.@type"),
            &["unsupported access logger type `type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig`: this access logger is not supported yet"],
        );
        let problem = problem_at(
            &with_hcm(&format!(
                "access_log: [{{ filter: {{ status_code_filter: {{}} }}, typed_config: {{ {file}, path: /a }} }}]"
            )),
            &path(".access_log[0].filter"),
        );
        assert!(
            matches!(
                problem,
                Problem::NotSupported {
                    field: "filter",
                    ..
                }
            ),
            "{problem}"
        );
        let problem = problem_at(
            &with_hcm(&format!("access_log: [{{ typed_config: {{ {file} }} }}]")),
            &path(".access_log[0].typed_config"),
        );
        assert!(
            matches!(problem, Problem::Missing { field: "path", .. }),
            "{problem}"
        );
    }

    #[test]
    fn buffer_and_upstream_options_example_loads() {
        let example = include_str!("../../../configs/http-buffer-upstream-options.yaml");
        let tree: Value = serde_yaml_ng::from_str(example).unwrap();
        let from_tree = EnvoyConfig::from_value(tree.get("static_resources"), None, ORIGIN)
            .unwrap_or_else(|e| panic!("{e}"));
        let envoy_part = &example[example.find("\nstatic_resources:").unwrap()..];
        let config = load(envoy_part).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config, from_tree);
        assert_eq!(
            hcm(&config).http_filters,
            [
                HttpFilter::Buffer(BufferFilter {
                    name: "envoy.filters.http.buffer".to_owned(),
                    max_request_bytes: 1 << 20,
                }),
                HttpFilter::Router(RouterFilter {
                    name: "envoy.filters.http.router".to_owned()
                }),
            ]
        );
        let cluster = &config.clusters[0];
        assert_eq!(cluster.upstream_idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(cluster.max_requests_per_connection, Some(1000));
    }

    #[test]
    fn buffer_filter() {
        let filters = |list: &str| {
            edit(
                BASE,
                "          http_filters:\n          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n",
                &format!("          http_filters: {list}\n"),
            )
        };
        const ROUTER: &str = "{ name: envoy.filters.http.router }";
        const BUFFER: &str =
            "\"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";
        let buffer = |fields: &str| {
            filters(&format!(
                "[{{ name: envoy.filters.http.buffer, typed_config: {{ {BUFFER}{fields} }} }}, {ROUTER}]"
            ))
        };
        let loaded = |text: &str| {
            let config = load_both(text).unwrap();
            let list = &hcm(&config).http_filters;
            assert_eq!(list.len(), 2);
            assert!(matches!(list[1], HttpFilter::Router(_)), "{list:?}");
            list[0].clone()
        };
        assert_eq!(
            loaded(&buffer(", max_request_bytes: 1048576")),
            HttpFilter::Buffer(BufferFilter {
                name: "envoy.filters.http.buffer".to_owned(),
                max_request_bytes: 1_048_576,
            })
        );
        // The largest UInt32Value; lowerCamelCase and a string of digits, as Envoy takes.
        for (fields, bytes) in [
            (", max_request_bytes: 4294967295", u32::MAX),
            (", maxRequestBytes: \"1\"", 1),
        ] {
            match loaded(&buffer(fields)) {
                HttpFilter::Buffer(b) => assert_eq!(b.max_request_bytes, bytes, "{fields}"),
                other => panic!("{other:?}"),
            }
        }
        // `@type` after the fields, and any name.
        let late = filters(&format!(
            "[{{ name: buf, typed_config: {{ max_request_bytes: 64, {BUFFER} }} }}, {ROUTER}]"
        ));
        assert_eq!(
            loaded(&late),
            HttpFilter::Buffer(BufferFilter {
                name: "buf".to_owned(),
                max_request_bytes: 64,
            })
        );

        let at = path(".http_filters[0].typed_config");
        let problem = problem_at(&buffer(""), &at);
        assert!(
            matches!(
                problem,
                Problem::Missing {
                    field: "max_request_bytes",
                    ..
                }
            ),
            "{problem:?}"
        );
        error_at(
            &buffer(""),
            &at,
            &[
                "`max_request_bytes` is missing; Envoy requires it",
                "answered 413",
            ],
        );
        for bytes in [0u64, 1 << 32] {
            let text = buffer(&format!(", max_request_bytes: {bytes}"));
            let field = format!("{at}.max_request_bytes");
            assert_eq!(
                problem_at(&text, &field),
                Problem::OutOfRange {
                    value: bytes,
                    min: 1,
                    max: u64::from(u32::MAX),
                    hint: " bytes (Envoy requires more than 0)",
                }
            );
            error_at(
                &text,
                &field,
                &[&format!(
                    "{bytes} is out of range; use 1 to 4294967295 bytes (Envoy requires more \
                     than 0)"
                )],
            );
        }
        error_at(
            &buffer(", max_request_bytes: -1"),
            &format!("{at}.max_request_bytes"),
            &["invalid value", "a whole number"],
        );
        // Unknown fields, with `@type` first or not (Envoy v2's `max_request_time` is gone).
        error_at(
            &buffer(", max_request_bytes: 10, max_request_time: 5s"),
            &format!("{at}.max_request_time"),
            &[
                "unknown field `max_request_time`, expected `maxRequestBytes` or \
                 `max_request_bytes`",
                "rejects a field it does not support",
            ],
        );
        error_at(
            &filters(&format!(
                "[{{ name: b, typed_config: {{ max_request_bytes: 10, disabled: true, {BUFFER} }} }}, {ROUTER}]"
            )),
            &path(".http_filters[0].typed_config.disabled"),
            &["unknown field `disabled`"],
        );
        // Like every filter but the router, it comes before the router.
        error_at(
            &filters(&format!(
                "[{ROUTER}, {{ name: b, typed_config: {{ {BUFFER}, max_request_bytes: 10 }} }}]"
            )),
            &path(".http_filters[1]"),
            &[&format!(
                "the router ({}) is a terminal HTTP filter",
                path(".http_filters[0]")
            )],
        );
        // It needs its typed_config: only the router is found by name.
        error_at(
            &filters(&format!(
                "[{{ name: envoy.filters.http.buffer }}, {ROUTER}]"
            )),
            &path(".http_filters[0].name"),
            &["HTTP filter `envoy.filters.http.buffer` needs a typed_config"],
        );
        // A v2 or misspelt type URL is not this filter.
        error_at(
            &filters(&format!(
                "[{{ name: b, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute, max_request_bytes: 10 }} }}, {ROUTER}]"
            )),
            &path(".http_filters[0].typed_config.@type"),
            &[
                "this HTTP filter is not supported yet",
                "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            ],
        );
    }

    #[test]
    fn route_config_is_required() {
        let text = edit(
            BASE,
            "          route_config:\n            virtual_hosts:\n            - name: vh\n              domains: [\"*\"]\n              routes:\n              - { match: { prefix: / }, route: { cluster: c } }\n",
            "",
        );
        let problem = problem_at(&text, TC);
        assert!(matches!(
            problem,
            Problem::Missing {
                field: "route_config",
                ..
            }
        ));
        // An empty route table loads (every request gets a 404), as in Envoy.
        let text = with_virtual_hosts(&[]).replace("virtual_hosts:\n", "virtual_hosts: []\n");
        let config = load_both(&text).unwrap();
        assert!(hcm(&config).route_config.virtual_hosts.is_empty());
        let problem = problem_at(&edit(BASE, "          stat_prefix: http\n", ""), TC);
        assert!(matches!(
            problem,
            Problem::Missing {
                field: "stat_prefix",
                ..
            }
        ));
    }

    #[test]
    fn route_clusters_must_exist() {
        error_at(
            &with_route("{ match: { prefix: / }, route: { cluster: nope } }"),
            &route_path(".route.cluster"),
            &["unknown cluster `nope` (clusters are: c, d); a route's `cluster` must name a cluster in static_resources.clusters"],
        );
        error_at(
            &with_route(
                "{ match: { prefix: / }, route: { weighted_clusters: { clusters: [{ name: c, weight: 1 }, { name: e, weight: 1 }] } } }",
            ),
            &route_path(".route.weighted_clusters.clusters[1].name"),
            &["unknown cluster `e`", "each of a route's `weighted_clusters`"],
        );
        // A cluster only a redirect or a direct response would need is not checked.
        load_both(&with_route(
            "{ match: { prefix: / }, redirect: { host_redirect: nope } }",
        ))
        .unwrap();
        let problem = problem_at(
            &with_route("{ match: { prefix: / }, route: { cluster: \"\" } }"),
            &route_path(".route.cluster"),
        );
        assert!(matches!(
            problem,
            Problem::Empty {
                field: "cluster",
                ..
            }
        ));
    }

    #[test]
    fn bad_regexes_are_config_errors() {
        let message = error_at(
            &with_route(
                "{ match: { safe_regex: { regex: \"/api/(v1\" } }, route: { cluster: c } }",
            ),
            &route_path(".match.safe_regex.regex"),
            &["invalid regex `/api/(v1`: unclosed group"],
        );
        assert!(!message.contains('\n'), "{message}");
        error_at(
            &with_route("{ match: { prefix: /, headers: [{ name: x, string_match: { safe_regex: { regex: \"[a\" } } }] }, route: { cluster: c } }"),
            &route_path(".match.headers[0].string_match.safe_regex.regex"),
            &["invalid regex `[a`: unclosed character class"],
        );
        error_at(
            &with_route("{ match: { prefix: /, headers: [{ name: x, safe_regex_match: { regex: \"(?<\" } }] }, route: { cluster: c } }"),
            &route_path(".match.headers[0].safe_regex_match.regex"),
            &["invalid regex"],
        );
        // RE2 has no look-around; neither has the regex crate.
        error_at(
            &with_route("{ match: { safe_regex: { regex: \"/a(?=b)\" } }, route: { cluster: c } }"),
            &route_path(".match.safe_regex.regex"),
            &["look-around"],
        );
        error_at(
            &with_route("{ match: { safe_regex: {} }, route: { cluster: c } }"),
            &route_path(".match.safe_regex"),
            &["`regex` is missing"],
        );
        let rewrite = |pattern: &str, substitution: &str| {
            with_route(&format!(
                "{{ match: {{ prefix: / }}, route: {{ cluster: c, regex_rewrite: {{ pattern: {{ regex: \"{pattern}\" }}, substitution: \"{substitution}\" }} }} }}"
            ))
        };
        error_at(
            &rewrite("^/(a)$", "\\\\2"),
            &route_path(".route.regex_rewrite.substitution"),
            &["invalid substitution `\\2`: it refers to group \\2, but the pattern has 1 group"],
        );
        error_at(
            &rewrite("^/a$", "\\\\q"),
            &route_path(".route.regex_rewrite.substitution"),
            &["`\\q` is not a substitution"],
        );
        error_at(
            &rewrite("^/(a$", "x"),
            &route_path(".route.regex_rewrite.pattern.regex"),
            &["unclosed group"],
        );
        load_both(&rewrite("^/service/([^/]+)(/.*)$", "\\\\2/instance/\\\\1")).unwrap();
        error_at(
            &with_route("{ match: { prefix: / }, redirect: { regex_rewrite: { pattern: { regex: \"(\" } } } }"),
            &route_path(".redirect.regex_rewrite.pattern.regex"),
            &["invalid regex"],
        );
    }

    #[test]
    fn domains() {
        let vh = |name: &str, domains: &str| {
            format!(
                "{{ name: {name}, domains: {domains}, routes: [{{ match: {{ prefix: / }}, route: {{ cluster: c }} }}] }}"
            )
        };
        let at = path(".route_config.virtual_hosts");
        let problem = problem_at(
            &with_virtual_hosts(&[&vh("a", "[a.com, b.com]"), &vh("b", "[c.com, B.COM]")]),
            &format!("{at}[1].domains[1]"),
        );
        assert_eq!(
            problem,
            Problem::DuplicateDomain {
                domain: "b.com".to_owned(),
                first: format!("{at}[0].domains[1]"),
            }
        );
        assert!(problem
            .to_string()
            .contains("unique across the virtual hosts"));
        let problem = problem_at(
            &with_virtual_hosts(&[&vh("a", "[\"*.a.com\", \"*.a.com\"]")]),
            &format!("{at}[0].domains[1]"),
        );
        assert!(matches!(problem, Problem::DuplicateDomain { .. }));
        let problem = problem_at(
            &with_virtual_hosts(&[&vh("a", "[\"*\"]"), &vh("b", "[x.com, \"*\"]")]),
            &format!("{at}[1].domains[1]"),
        );
        assert_eq!(
            problem,
            Problem::SecondWildcardDomain {
                first: format!("{at}[0].domains[0]")
            }
        );
        // Different kinds of the same text are different domains, as in Envoy.
        load_both(&with_virtual_hosts(&[
            &vh("a", "[a.com, \"*a.com\", \"a.com*\", \"a.com:80\"]"),
            &vh("b", "[\"*\"]"),
        ]))
        .unwrap();
        let problem = problem_at(
            &with_virtual_hosts(&[&vh("a", "[]")]),
            &format!("{at}[0].domains"),
        );
        assert!(matches!(
            problem,
            Problem::Empty {
                field: "domains",
                ..
            }
        ));
        let problem = problem_at(
            &with_virtual_hosts(&["{ name: a, routes: [] }"]),
            &format!("{at}[0]"),
        );
        assert!(matches!(
            problem,
            Problem::Missing {
                field: "domains",
                ..
            }
        ));
        error_at(
            &with_virtual_hosts(&[&vh("a", "[\"\"]")]),
            &format!("{at}[0].domains[0]"),
            &["it is empty"],
        );
        error_at(
            &with_virtual_hosts(&[&vh("a", "[\"a b\"]")]),
            &format!("{at}[0].domains[0]"),
            &["whitespace"],
        );
        let problem = problem_at(
            &with_virtual_hosts(&["{ domains: [\"*\"] }"]),
            &format!("{at}[0]"),
        );
        assert!(matches!(problem, Problem::Missing { field: "name", .. }));
    }

    #[test]
    fn exactly_one_of() {
        for (route, at, expected) in [
            (
                "{ match: { prefix: /, path: /a }, route: { cluster: c } }",
                ".match.path",
                "`path` cannot be set together with `prefix`",
            ),
            (
                "{ match: { case_sensitive: true }, route: { cluster: c } }",
                ".match",
                "one of `prefix`, `path`, `safe_regex` and `path_separated_prefix` is required",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c }, direct_response: { status: 200 } }",
                ".direct_response",
                "`direct_response` cannot be set together with `route`",
            ),
            (
                "{ match: { prefix: / } }",
                "",
                "one of `route`, `redirect` and `direct_response` is required",
            ),
            (
                "{ route: { cluster: c } }",
                "",
                "`match` is missing",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c, weighted_clusters: { clusters: [{ name: c, weight: 1 }] } } }",
                ".route.weighted_clusters",
                "`weighted_clusters` cannot be set together with `cluster`",
            ),
            (
                "{ match: { prefix: / }, route: { timeout: 1s } }",
                ".route",
                "one of `cluster` and `weighted_clusters` is required",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c, prefix_rewrite: /a, regex_rewrite: { pattern: { regex: a }, substitution: b } } }",
                ".route.regex_rewrite",
                "`regex_rewrite` cannot be set together with `prefix_rewrite`",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c, host_rewrite_literal: a, auto_host_rewrite: false } }",
                ".route.auto_host_rewrite",
                "cannot be set together with `host_rewrite_literal`",
            ),
            (
                "{ match: { prefix: / }, redirect: { https_redirect: true, scheme_redirect: ftp } }",
                ".redirect.scheme_redirect",
                "cannot be set together with `https_redirect`",
            ),
            (
                "{ match: { prefix: / }, redirect: { path_redirect: /a, prefix_rewrite: /b } }",
                ".redirect.prefix_rewrite",
                "cannot be set together with `path_redirect`",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: x, exact_match: a, prefix_match: b }] }, route: { cluster: c } }",
                ".match.headers[0].prefix_match",
                "cannot be set together with `exact_match`",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: x, string_match: { exact: a, contains: b } }] }, route: { cluster: c } }",
                ".match.headers[0].string_match.contains",
                "cannot be set together with `exact`",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: x, string_match: { ignore_case: true } }] }, route: { cluster: c } }",
                ".match.headers[0].string_match",
                "one of `exact`, `prefix`, `suffix`, `contains` and `safe_regex` is required",
            ),
            (
                "{ match: { prefix: /, query_parameters: [{ name: a, present_match: true, string_match: { exact: b } }] }, route: { cluster: c } }",
                ".match.query_parameters[0].present_match",
                "cannot be set together with `string_match`",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c, hash_policy: [{ header: { header_name: a }, cookie: { name: b } }] } }",
                ".route.hash_policy[0].cookie",
                "cannot be set together with `header`",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c, hash_policy: [{ terminal: true }] } }",
                ".route.hash_policy[0]",
                "one of `header`, `cookie`, `connection_properties` and `query_parameter` is required",
            ),
            (
                "{ match: { prefix: / }, route: { cluster: c }, request_headers_to_add: [{ header: { key: a, value: b }, append: true, append_action: ADD_IF_ABSENT }] }",
                ".request_headers_to_add[0].append_action",
                "cannot be set together with `append`",
            ),
        ] {
            error_at(&with_route(route), &route_path(at), &[expected]);
        }
    }

    #[test]
    fn matcher_values() {
        for (route, at, expected) in [
            (
                "{ match: { path_separated_prefix: / }, route: { cluster: c } }",
                ".match.path_separated_prefix",
                "at least two characters long",
            ),
            (
                "{ match: { path_separated_prefix: /api/ }, route: { cluster: c } }",
                ".match.path_separated_prefix",
                "does not end in `/`",
            ),
            (
                "{ match: { path_separated_prefix: \"/a?b\" }, route: { cluster: c } }",
                ".match.path_separated_prefix",
                "no `?` or `#`",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: x, prefix_match: \"\" }] }, route: { cluster: c } }",
                ".match.headers[0].prefix_match",
                "`prefix_match` is empty; Envoy requires at least one character; use `present_match: true`",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: x, string_match: { contains: \"\" } }] }, route: { cluster: c } }",
                ".match.headers[0].string_match.contains",
                "`contains` is empty",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: host, exact_match: a }] }, route: { cluster: c } }",
                ".match.headers[0].name",
                "write `name: \":authority\"`",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: \":status\" }] }, route: { cluster: c } }",
                ".match.headers[0].name",
                "the pseudo-headers zerohop knows are :authority, :method, :path and :scheme",
            ),
            (
                "{ match: { prefix: /, headers: [{ name: \"x y\" }] }, route: { cluster: c } }",
                ".match.headers[0].name",
                "a header name is a token",
            ),
            (
                "{ match: { prefix: /, headers: [{ exact_match: a }] }, route: { cluster: c } }",
                ".match.headers[0]",
                "`name` is missing",
            ),
            (
                "{ match: { prefix: /, query_parameters: [{ string_match: { exact: a } }] }, route: { cluster: c } }",
                ".match.query_parameters[0]",
                "`name` is missing",
            ),
        ] {
            error_at(&with_route(route), &route_path(at), &[expected]);
        }
        let config = load_both(&with_route(
            "{ match: { path_separated_prefix: /api, headers: [{ name: x, exact_match: \"\" }, { name: \":Method\", exact_match: GET }] }, route: { cluster: c } }",
        ))
        .unwrap();
        let route_match = &first_route(&config).route_match;
        assert_eq!(route_match.headers[0].rule, HeaderMatchRule::Present(true));
        assert_eq!(route_match.headers[1].name, ":method");
    }

    #[test]
    fn weighted_clusters() {
        let weighted = |clusters: &str| {
            with_route(&format!(
                "{{ match: {{ prefix: / }}, route: {{ weighted_clusters: {clusters} }} }}"
            ))
        };
        let at = route_path(".route.weighted_clusters");
        // Without total_weight any positive sum works, as in today's Envoy.
        load_both(&weighted(
            "{ clusters: [{ name: c, weight: 1 }, { name: d, weight: 0 }] }",
        ))
        .unwrap();
        load_both(&weighted(
            "{ total_weight: 100, clusters: [{ name: c, weight: 60 }, { name: d, weight: 40 }] }",
        ))
        .unwrap();
        assert_eq!(
            problem_at(
                &weighted("{ total_weight: 100, clusters: [{ name: c, weight: 60 }, { name: d, weight: 30 }] }"),
                &format!("{at}.total_weight"),
            ),
            Problem::ClusterWeightSum { sum: 90, total: 100 }
        );
        assert_eq!(
            problem_at(
                &weighted("{ clusters: [{ name: c, weight: 0 }] }"),
                &format!("{at}.clusters"),
            ),
            Problem::ZeroClusterWeights
        );
        assert_eq!(
            problem_at(
                &weighted(
                    "{ clusters: [{ name: c, weight: 4294967295 }, { name: d, weight: 1 }] }"
                ),
                &format!("{at}.clusters"),
            ),
            Problem::ClusterWeightsTooLarge
        );
        error_at(
            &weighted("{ clusters: [{ name: c, weight: 4294967296 }] }"),
            &format!("{at}.clusters[0].weight"),
            &["4294967296 is out of range"],
        );
        error_at(
            &weighted("{ clusters: [{ name: c }] }"),
            &format!("{at}.clusters[0]"),
            &["`weight` is missing; Envoy would take it as 0"],
        );
        error_at(
            &weighted("{ clusters: [] }"),
            &format!("{at}.clusters"),
            &["`clusters` is empty"],
        );
        error_at(
            &weighted("{ total_weight: 0, clusters: [{ name: c, weight: 1 }] }"),
            &format!("{at}.total_weight"),
            &["0 is out of range; use 1 to 4294967295"],
        );
        error_at(
            &weighted("{ clusters: [{ name: c, weight: 1, request_headers_to_add: [] }] }"),
            &format!("{at}.clusters[0].request_headers_to_add"),
            &["unknown field"],
        );
    }

    #[test]
    fn direct_responses_and_redirects() {
        for status in [99, 600] {
            error_at(
                &with_route(&format!(
                    "{{ match: {{ prefix: / }}, direct_response: {{ status: {status} }} }}"
                )),
                &route_path(".direct_response.status"),
                &[&format!("status {status} is out of range")],
            );
        }
        error_at(
            &with_route("{ match: { prefix: / }, direct_response: {} }"),
            &route_path(".direct_response"),
            &["`status` is missing"],
        );
        let config = load_both(&with_route(
            "{ match: { prefix: / }, direct_response: { status: 204 } }",
        ))
        .unwrap();
        assert_eq!(
            first_route(&config).action,
            Action::DirectResponse(DirectResponseAction {
                status: 204,
                body: None
            })
        );
        let big = format!(
            "{{ match: {{ prefix: / }}, direct_response: {{ status: 200, body: {{ inline_string: \"{}\" }} }} }}",
            "x".repeat(4097)
        );
        error_at(
            &with_route(&big),
            &route_path(".direct_response.body.inline_string"),
            &["the body is 4097 bytes, more than the route configuration's max_direct_response_body_size_bytes (4096)"],
        );
        let raised = edit(
            &with_route(&big),
            "          route_config:\n",
            "          route_config:\n            max_direct_response_body_size_bytes: 5000\n",
        );
        load_both(&raised).unwrap();
        error_at(
            &with_route("{ match: { prefix: / }, redirect: { port_redirect: 65536 } }"),
            &route_path(".redirect.port_redirect"),
            &["65536 is out of range; use 1 to 65535"],
        );
        error_at(
            &with_route("{ match: { prefix: / }, redirect: { scheme_redirect: \"1http\" } }"),
            &route_path(".redirect.scheme_redirect"),
            &["a scheme is a letter"],
        );
        error_at(
            &with_route("{ match: { prefix: / }, redirect: { host_redirect: a.com/b } }"),
            &route_path(".redirect.host_redirect"),
            &["put the path in `path_redirect`"],
        );
        // proto3 zero values are "not set".
        let config = load_both(&with_route(
            "{ match: { prefix: / }, redirect: { port_redirect: 0, https_redirect: false, host_redirect: \"\", path_redirect: \"\" } }",
        ))
        .unwrap();
        assert_eq!(
            first_route(&config).action,
            Action::Redirect(RedirectAction {
                scheme: None,
                host: None,
                port: None,
                path: None,
                response_code: RedirectResponseCode::MovedPermanently,
                strip_query: false,
            })
        );
        for (code, status) in [
            ("MOVED_PERMANENTLY", 301),
            ("FOUND", 302),
            ("SEE_OTHER", 303),
            ("TEMPORARY_REDIRECT", 307),
            ("PERMANENT_REDIRECT", 308),
        ] {
            let config = load_both(&with_route(&format!(
                "{{ match: {{ prefix: / }}, redirect: {{ response_code: {code} }} }}"
            )))
            .unwrap();
            let Action::Redirect(redirect) = &first_route(&config).action else {
                panic!("not a redirect");
            };
            assert_eq!(redirect.response_code.status(), status);
        }
    }

    #[test]
    fn headers_to_add_and_remove() {
        let add = |option: &str| {
            with_route(&format!(
                "{{ match: {{ prefix: / }}, route: {{ cluster: c }}, request_headers_to_add: [{option}] }}"
            ))
        };
        let at = route_path(".request_headers_to_add[0]");
        for key in [":path", "Host"] {
            error_at(
                &add(&format!("{{ header: {{ key: \"{key}\", value: a }} }}")),
                &format!("{at}.header.key"),
                &["Envoy does not let headers_to_add and headers_to_remove change"],
            );
        }
        error_at(
            &add("{ header: { key: \"a b\", value: a } }"),
            &format!("{at}.header.key"),
            &["a header name is a token"],
        );
        error_at(&add("{ append: true }"), &at, &["`header` is missing"]);
        error_at(
            &add("{ header: { value: a } }"),
            &format!("{at}.header"),
            &["`key` is missing"],
        );
        error_at(
            &add("{ header: { key: a, value: \"50%\" } }"),
            &format!("{at}.header.value"),
            &[
                "invalid header value `50%`",
                "write `%%` for a literal percent sign",
            ],
        );
        let config = load_both(&add("{ header: { key: X-A } }")).unwrap();
        let option = &first_route(&config).headers.request_headers_to_add[0];
        assert_eq!(option.key, "x-a");
        assert_eq!(option.value, HeaderValueTemplate::default());
        let remove = |names: &str| {
            with_route(&format!(
                "{{ match: {{ prefix: / }}, route: {{ cluster: c }}, response_headers_to_remove: {names} }}"
            ))
        };
        error_at(
            &remove("[x-a, \":status\"]"),
            &route_path(".response_headers_to_remove[1]"),
            &["pseudo-headers"],
        );
        error_at(
            &remove("[\"\"]"),
            &route_path(".response_headers_to_remove[0]"),
            &["not empty"],
        );
        let config = load_both(&remove("[X-Powered-By]")).unwrap();
        assert_eq!(
            first_route(&config).headers.response_headers_to_remove,
            ["x-powered-by"]
        );
        // The virtual host and route configuration levels are checked the same way.
        error_at(
            &edit(
                BASE,
                "              domains: [\"*\"]\n",
                "              domains: [\"*\"]\n              request_headers_to_remove: [host]\n",
            ),
            &path(".route_config.virtual_hosts[0].request_headers_to_remove[0]"),
            &["change `host`"],
        );
        error_at(
            &edit(
                BASE,
                "          route_config:\n",
                "          route_config:\n            response_headers_to_add: [{ header: { key: a, value: \"%REQ()%\" } }]\n",
            ),
            &path(".route_config.response_headers_to_add[0].header.value"),
            &["%REQ% needs a header name"],
        );
    }

    #[test]
    fn header_value_templates() {
        let parse = |text: &str| parse_header_value(text).map(|t| t.parts);
        let lit = |text: &str| ValuePart::Literal(text.to_owned());
        let var = ValuePart::Variable;
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("plain"), Ok(vec![lit("plain")]));
        assert_eq!(parse("100%%"), Ok(vec![lit("100%")]));
        assert_eq!(parse("%%%%"), Ok(vec![lit("%%")]));
        assert_eq!(
            parse("for=%DOWNSTREAM_REMOTE_ADDRESS%;by=%DOWNSTREAM_LOCAL_ADDRESS%"),
            Ok(vec![
                lit("for="),
                var(FormatVariable::DownstreamRemoteAddress),
                lit(";by="),
                var(FormatVariable::DownstreamLocalAddress),
            ])
        );
        assert_eq!(
            parse("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%%UPSTREAM_REMOTE_ADDRESS%%PROTOCOL%%START_TIME%%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"),
            Ok(vec![
                var(FormatVariable::DownstreamRemoteAddressWithoutPort),
                var(FormatVariable::UpstreamRemoteAddress),
                var(FormatVariable::Protocol),
                var(FormatVariable::StartTime),
                var(FormatVariable::DownstreamLocalAddressWithoutPort),
            ])
        );
        assert_eq!(
            parse("id=%REQ(X-Request-ID)%, host=%REQ(:authority):10%"),
            Ok(vec![
                lit("id="),
                var(FormatVariable::RequestHeader {
                    name: "x-request-id".to_owned(),
                    alternative: None,
                    max_length: None,
                }),
                lit(", host="),
                var(FormatVariable::RequestHeader {
                    name: ":authority".to_owned(),
                    alternative: None,
                    max_length: Some(10),
                }),
            ])
        );
        assert_eq!(
            parse("%REQ(x-a?x-b)%"),
            Ok(vec![var(FormatVariable::RequestHeader {
                name: "x-a".to_owned(),
                alternative: Some("x-b".to_owned()),
                max_length: None,
            })])
        );
        for (text, expected) in [
            ("50%", "a `%` starts a variable"),
            ("%", "a `%` starts a variable"),
            ("a % b", "a `%` starts a variable"),
            ("%PROTOCOL", "%PROTOCOL is not closed with `%`"),
            (
                "%HOSTNAME%",
                "zerohop does not support the variable %HOSTNAME% (yet)",
            ),
            ("%RESP(x)%", "does not support the variable %RESP%"),
            ("%REQ%", "%REQ% needs a header name"),
            ("%REQ(x%", "`%REQ(` has no closing `)`"),
            ("%REQ(x):%", "must be followed by a length"),
            ("%REQ(a b)%", "`a b` in %REQ(a b)% is not a header name"),
            (
                "%PROTOCOL(x)%",
                "%PROTOCOL% takes no argument and no length",
            ),
            ("%PROTOCOL:3%", "%PROTOCOL% takes no argument and no length"),
            (
                "%START_TIME(%s)%",
                "%START_TIME(format)% is not supported yet",
            ),
            ("a\r\nb", "line break"),
        ] {
            match parse_header_value(text) {
                Ok(template) => panic!("{text:?} parsed as {template:?}"),
                Err(message) => assert!(message.contains(expected), "{text:?}: {message}"),
            }
        }
    }

    #[test]
    fn substitutions_become_the_regex_crates() {
        assert_eq!(
            rust_substitution("\\2/instance/\\1", 3).as_deref(),
            Ok("${2}/instance/${1}")
        );
        assert_eq!(
            rust_substitution("$1\\\\\\0", 1).as_deref(),
            Ok("$$1\\${0}")
        );
        assert!(rust_substitution("\\1", 1).is_err());
        assert!(rust_substitution("\\", 1).is_err());
        assert!(rust_substitution("\\n", 1).is_err());
    }

    #[test]
    fn listener_holds_one_terminal_filter() {
        let text = edit(
            BASE,
            "          http_filters:\n",
            "          http_filters:\n",
        );
        let second = edit(
            &text,
            "  clusters:\n",
            "      - name: second\n        typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c }\n  clusters:\n",
        );
        error_at(
            &second,
            "static_resources.listeners[0].filter_chains[0].filters[1]",
            &["http_connection_manager (static_resources.listeners[0].filter_chains[0].filters[0]) is a terminal filter"],
        );
        error_at(
            &edit(
                BASE,
                "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "type.googleapis.com/envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager",
            ),
            &path(".@type"),
            &["this is the v2 API, which Envoy has removed"],
        );
    }

    /// Truncate the config at every byte and replace each byte of the route
    /// configuration in turn: loading must return an error or a config, never panic.
    #[test]
    fn never_panics() {
        let text = with_route(
            "{ match: { safe_regex: { regex: \"/a(b)\" }, headers: [{ name: x, exact_match: y }] }, route: { weighted_clusters: { clusters: [{ name: c, weight: 1 }] }, regex_rewrite: { pattern: { regex: \"(a)\" }, substitution: \"\\\\1\" } }, request_headers_to_add: [{ header: { key: k, value: \"%REQ(a):2%\" } }] }",
        );
        for end in 0..=text.len() {
            if text.is_char_boundary(end) {
                let _ = load(&text[..end]);
            }
        }
        let block = text.find("          route_config:").unwrap()
            ..text.find("          http_filters:").unwrap();
        for i in block {
            for replacement in ["", " ", "0", ":", "{", "\"", "%", "\\"] {
                let mut changed = text.clone();
                changed.replace_range(i..=i, replacement);
                let _ = load(&changed);
            }
        }
    }

    const CLUSTER: &str = "static_resources.clusters[0]";

    fn cluster_path(rest: &str) -> String {
        format!("{CLUSTER}{rest}")
    }

    /// BASE with `lines` (each a key, flow style) added to cluster `c`.
    fn with_cluster(lines: &str) -> String {
        let lines: String = lines.lines().map(|line| format!("    {line}\n")).collect();
        edit(BASE, "  - name: c\n", &format!("  - name: c\n{lines}"))
    }

    /// The required fields of a health check.
    const HC: &str = "timeout: 1s, interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2";

    /// BASE with one health check of `fields` on cluster `c`.
    fn with_health_check(fields: &str) -> String {
        with_cluster(&format!("health_checks: [{{ {fields} }}]"))
    }

    /// BASE with one HTTP health check on cluster `c`, with `fields` in its
    /// `http_health_check`.
    fn with_http_check(fields: &str) -> String {
        with_health_check(&format!("{HC}, http_health_check: {{ {fields} }}"))
    }

    /// BASE whose route has a retry policy of `fields`.
    fn with_retry_policy(fields: &str) -> String {
        with_route(&format!(
            "{{ match: {{ prefix: / }}, route: {{ cluster: c, retry_policy: {{ {fields} }} }} }}"
        ))
    }

    fn retry_policy(config: &EnvoyConfig) -> &RetryPolicy {
        route_action(config)
            .retry_policy
            .as_ref()
            .expect("a retry policy")
    }

    /// Every resilience field set, on two clusters and two routes.
    const RESILIENT: &str = r#"
    health_checks:
    - timeout: 2s
      interval: 10s
      initial_jitter: 1s
      interval_jitter: 0.5s
      interval_jitter_percent: 10
      unhealthy_threshold: 3
      healthy_threshold: "2"
      http_health_check:
        host: health.internal
        path: /healthz
        method: HEAD
        codec_client_type: HTTP1
        expected_statuses: [{ start: 200, end: 300 }, { start: "404", end: 405 }]
        request_headers_to_add:
        - header: { key: X-Health, value: "zerohop 100%%" }
      no_traffic_interval: 30s
      unhealthy_interval: 20s
      unhealthy_edge_interval: 1s
      healthy_edge_interval: 2s
    circuit_breakers:
      thresholds:
      - priority: HIGH
        max_connections: 1
      - max_connections: 100
        max_pending_requests: 50
        max_requests: 200
        max_retries: 5
        retry_budget: { budget_percent: { value: 25.5 }, min_retry_concurrency: 2 }
        track_remaining: true
    outlier_detection:
      consecutive_5xx: 3
      interval: 5s
      base_ejection_time: 15s
      max_ejection_percent: 50
      enforcing_consecutive_5xx: 90
      enforcing_success_rate: 0
      consecutive_gateway_failure: 4
      enforcing_consecutive_gateway_failure: 80
      split_external_local_origin_errors: true
      consecutive_local_origin_failure: 6
      enforcing_consecutive_local_origin_failure: 70
      enforcing_local_origin_success_rate: 0
      enforcing_failure_percentage: 0
      enforcing_failure_percentage_local_origin: 0
      max_ejection_time: 120s
    common_lb_config:
      healthy_panic_threshold: { value: 25 }
"#;

    fn resilient() -> String {
        let text = edit(BASE, "  - name: c\n", &format!("  - name: c{RESILIENT}"));
        let text = edit(
            &text,
            "  - name: d\n",
            "  - name: d\n    health_checks:\n    - { timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: { send: { text: \"0102fF\" }, receive: [{ binary: \"aGVsbG8=\" }, { text: \"0A\" }] } }\n",
        );
        let text = edit(
            &text,
            "            - name: vh\n",
            "            - name: vh\n              retry_policy: { retry_on: gateway-error, num_retries: 2 }\n",
        );
        edit(
            &text,
            "              - { match: { prefix: / }, route: { cluster: c } }\n",
            r#"              - match: { prefix: / }
                route:
                  cluster: c
                  idle_timeout: 30s
                  retry_policy:
                    retry_on: " 5xx, reset,connect-failure ,,retriable-status-codes"
                    num_retries: 3
                    per_try_timeout: 0.5s
                    retry_back_off: { base_interval: 0.1s, max_interval: 2s }
                    retriable_status_codes: [503, "429"]
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 5
              - { match: { prefix: /other }, route: { cluster: d, idle_timeout: 0s } }
              - { match: { prefix: /direct }, direct_response: { status: 200 } }
"#,
        )
    }

    #[test]
    fn resilience_config_loads() {
        let config = load_both(&resilient()).unwrap_or_else(|e| panic!("{e}"));
        let c = &config.clusters[0];
        assert_eq!(
            c.health_check,
            Some(HealthCheck {
                timeout: Duration::from_secs(2),
                interval: Duration::from_secs(10),
                interval_jitter: Duration::from_millis(500),
                interval_jitter_percent: 10,
                initial_jitter: Duration::from_secs(1),
                unhealthy_threshold: 3,
                healthy_threshold: 2,
                no_traffic_interval: Duration::from_secs(30),
                unhealthy_interval: Some(Duration::from_secs(20)),
                healthy_edge_interval: Some(Duration::from_secs(2)),
                unhealthy_edge_interval: Some(Duration::from_secs(1)),
                kind: HealthCheckKind::Http(HttpHealthCheck {
                    host: Some("health.internal".to_owned()),
                    path: "/healthz".to_owned(),
                    method: "HEAD".to_owned(),
                    expected_statuses: vec![(200, 300), (404, 405)],
                    request_headers: vec![("x-health".to_owned(), "zerohop 100%".to_owned())],
                }),
            })
        );
        assert_eq!(
            c.circuit_breakers,
            CircuitBreakers {
                max_connections: 100,
                max_pending_requests: 50,
                max_requests: 200,
                max_retries: 5,
                retry_budget: Some(RetryBudget {
                    budget_percent: Percent(25.5),
                    min_retry_concurrency: 2,
                }),
            }
        );
        assert_eq!(
            c.outlier_detection,
            Some(OutlierDetection {
                consecutive_5xx: 3,
                consecutive_gateway_failure: 4,
                consecutive_local_origin_failure: 6,
                interval: Duration::from_secs(5),
                base_ejection_time: Duration::from_secs(15),
                max_ejection_time: Duration::from_secs(120),
                max_ejection_percent: 50,
                enforcing_consecutive_5xx: 90,
                enforcing_consecutive_gateway_failure: 80,
                enforcing_consecutive_local_origin_failure: 70,
                split_external_local_origin_errors: true,
            })
        );
        assert_eq!(c.healthy_panic_threshold, Percent(25.0));
        let d = &config.clusters[1];
        assert_eq!(
            d.health_check.as_ref().map(|check| &check.kind),
            Some(&HealthCheckKind::Tcp(TcpHealthCheck {
                send: Some(vec![1, 2, 255]),
                receive: vec![b"hello".to_vec(), vec![10]],
            }))
        );
        let vh = &hcm(&config).route_config.virtual_hosts[0];
        let vh_policy = RetryPolicy {
            retry_on: RetryOn(RetryOn::GATEWAY_ERROR),
            num_retries: 2,
            ..RetryPolicy::default()
        };
        assert_eq!(vh.retry_policy, Some(vh_policy.clone()));
        let own = retry_policy(&config);
        assert_eq!(
            own,
            &RetryPolicy {
                retry_on: RetryOn(
                    RetryOn::FIVE_XX
                        | RetryOn::RESET
                        | RetryOn::CONNECT_FAILURE
                        | RetryOn::RETRIABLE_STATUS_CODES
                ),
                num_retries: 3,
                per_try_timeout: Some(Duration::from_millis(500)),
                base_interval: Duration::from_millis(100),
                max_interval: Duration::from_secs(2),
                retriable_status_codes: vec![503, 429],
                previous_hosts: true,
                host_selection_retry_max_attempts: 5,
            }
        );
        assert_eq!(
            route_action(&config).idle_timeout,
            Some(Duration::from_secs(30))
        );
        // A route without a policy of its own takes the virtual host's, whole.
        let Action::Route(other) = &vh.routes[1].action else {
            panic!("not a route action: {:?}", vh.routes[1].action);
        };
        assert_eq!(other.retry_policy, Some(vh_policy));
        assert_eq!(other.idle_timeout, Some(Duration::ZERO));
    }

    #[test]
    fn resilience_camel_case_names_load() {
        let text = with_cluster(
            "healthChecks: [{ timeout: 1s, interval: 5s, intervalJitter: 1s, \
             intervalJitterPercent: 5, initialJitter: 1s, unhealthyThreshold: 3, \
             healthyThreshold: 2, noTrafficInterval: 9s, unhealthyInterval: 9s, \
             unhealthyEdgeInterval: 9s, healthyEdgeInterval: 9s, httpHealthCheck: { path: /, \
             expectedStatuses: [{ start: 200, end: 204 }], codecClientType: HTTP1, \
             requestHeadersToAdd: [{ header: { key: a, value: b } }] } }]\n\
             circuitBreakers: { thresholds: [{ maxConnections: 1, maxPendingRequests: 2, \
             maxRequests: 3, maxRetries: 4, trackRemaining: false, retryBudget: { budgetPercent: \
             { value: 5 }, minRetryConcurrency: 6 } }], perHostThresholds: null }\n\
             outlierDetection: { consecutive5xx: 7, baseEjectionTime: 8s, maxEjectionPercent: 9, \
             enforcingConsecutive5xx: 10, consecutiveGatewayFailure: 11, \
             enforcingConsecutiveGatewayFailure: 12, splitExternalLocalOriginErrors: true, \
             consecutiveLocalOriginFailure: 13, enforcingConsecutiveLocalOriginFailure: 14, \
             maxEjectionTime: 15s }\ncommonLbConfig: { healthyPanicThreshold: { value: 16 } }",
        );
        let text = edit(
            &text,
            "route: { cluster: c }",
            "route: { cluster: c, idleTimeout: 1s, retryPolicy: { retryOn: retriable-4xx, \
             numRetries: 0, perTryTimeout: 1s, retryBackOff: { baseInterval: 1s, maxInterval: \
             1s }, retriableStatusCodes: [500], retryHostPredicate: [{ name: \
             envoy.retry_host_predicates.previous_hosts, typedConfig: {} }], \
             hostSelectionRetryMaxAttempts: 0 } }",
        );
        let config = load_both(&text).unwrap_or_else(|e| panic!("{e}"));
        let c = &config.clusters[0];
        let check = c.health_check.as_ref().unwrap();
        assert_eq!(check.interval_jitter_percent, 5);
        assert_eq!(check.unhealthy_edge_interval, Some(Duration::from_secs(9)));
        assert_eq!(c.circuit_breakers.max_retries, 4);
        assert_eq!(
            c.circuit_breakers
                .retry_budget
                .map(|b| b.min_retry_concurrency),
            Some(6)
        );
        let outlier = c.outlier_detection.as_ref().unwrap();
        assert_eq!(outlier.consecutive_5xx, 7);
        assert_eq!(outlier.enforcing_consecutive_local_origin_failure, 14);
        assert_eq!(c.healthy_panic_threshold, Percent(16.0));
        let policy = retry_policy(&config);
        assert_eq!(policy.retry_on, RetryOn(RetryOn::RETRIABLE_4XX));
        assert_eq!(policy.num_retries, 0);
        assert_eq!(policy.max_interval, Duration::from_secs(1));
        assert!(policy.previous_hosts);
        assert_eq!(policy.host_selection_retry_max_attempts, 0);
        assert_eq!(
            route_action(&config).idle_timeout,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn resilience_defaults_are_envoys() {
        // Left out.
        let config = load_both(BASE).unwrap();
        let c = &config.clusters[0];
        assert_eq!(c.health_check, None);
        assert_eq!(c.outlier_detection, None);
        assert_eq!(c.circuit_breakers, CircuitBreakers::default());
        assert_eq!(
            c.circuit_breakers,
            CircuitBreakers {
                max_connections: 1024,
                max_pending_requests: 1024,
                max_requests: 1024,
                max_retries: 3,
                retry_budget: None,
            }
        );
        assert_eq!(c.healthy_panic_threshold, Percent(50.0));
        assert_eq!(route_action(&config).retry_policy, None);
        assert_eq!(route_action(&config).idle_timeout, None);
        assert_eq!(
            hcm(&config).route_config.virtual_hosts[0].retry_policy,
            None
        );

        // Written empty.
        let config = load_both(&with_cluster(
            "outlier_detection: {}\ncircuit_breakers: { thresholds: [{}, { priority: HIGH, \
             max_requests: 1 }] }\ncommon_lb_config: {}",
        ))
        .unwrap();
        let c = &config.clusters[0];
        assert_eq!(c.outlier_detection, Some(OutlierDetection::default()));
        assert_eq!(
            OutlierDetection::default(),
            OutlierDetection {
                consecutive_5xx: 5,
                consecutive_gateway_failure: 5,
                consecutive_local_origin_failure: 5,
                interval: Duration::from_secs(10),
                base_ejection_time: Duration::from_secs(30),
                max_ejection_time: Duration::from_secs(300),
                max_ejection_percent: 10,
                enforcing_consecutive_5xx: 100,
                enforcing_consecutive_gateway_failure: 0,
                enforcing_consecutive_local_origin_failure: 100,
                split_external_local_origin_errors: false,
            }
        );
        // HIGH is checked, never used.
        assert_eq!(c.circuit_breakers, CircuitBreakers::default());
        assert_eq!(c.healthy_panic_threshold, Percent(50.0));
        let config = load_both(&with_cluster(
            "circuit_breakers: { thresholds: [{ retry_budget: {} }] }\ncommon_lb_config: { \
             healthy_panic_threshold: {} }",
        ))
        .unwrap();
        let c = &config.clusters[0];
        assert_eq!(
            c.circuit_breakers.retry_budget,
            Some(RetryBudget {
                budget_percent: Percent(20.0),
                min_retry_concurrency: 3,
            })
        );
        // proto3: a Percent without its value is 0, which turns panic mode off.
        assert_eq!(c.healthy_panic_threshold, Percent(0.0));

        let config = load_both(&with_http_check("path: /healthz, host: \"\"")).unwrap();
        assert_eq!(
            config.clusters[0].health_check,
            Some(HealthCheck {
                timeout: Duration::from_secs(1),
                interval: Duration::from_secs(5),
                interval_jitter: Duration::ZERO,
                interval_jitter_percent: 0,
                initial_jitter: Duration::ZERO,
                unhealthy_threshold: 3,
                healthy_threshold: 2,
                no_traffic_interval: Duration::from_secs(60),
                unhealthy_interval: None,
                healthy_edge_interval: None,
                unhealthy_edge_interval: None,
                kind: HealthCheckKind::Http(HttpHealthCheck {
                    host: None,
                    path: "/healthz".to_owned(),
                    method: "GET".to_owned(),
                    expected_statuses: vec![(200, 201)],
                    request_headers: vec![],
                }),
            })
        );
        let config = load_both(&with_http_check(
            "path: /, method: METHOD_UNSPECIFIED, expected_statuses: []",
        ))
        .unwrap();
        let Some(HealthCheckKind::Http(http)) =
            config.clusters[0].health_check.as_ref().map(|c| &c.kind)
        else {
            panic!("no HTTP health check");
        };
        assert_eq!(http.method, "GET");
        assert_eq!(http.expected_statuses, [(200, 201)]);
        let config =
            load_both(&with_health_check(&format!("{HC}, tcp_health_check: {{}}"))).unwrap();
        assert_eq!(
            config.clusters[0].health_check.as_ref().map(|c| &c.kind),
            Some(&HealthCheckKind::Tcp(TcpHealthCheck::default()))
        );

        let config = load_both(&with_retry_policy("")).unwrap();
        assert_eq!(retry_policy(&config), &RetryPolicy::default());
        assert_eq!(
            RetryPolicy::default(),
            RetryPolicy {
                retry_on: RetryOn(0),
                num_retries: 1,
                per_try_timeout: None,
                base_interval: Duration::from_millis(25),
                max_interval: Duration::from_millis(250),
                retriable_status_codes: vec![],
                previous_hosts: false,
                host_selection_retry_max_attempts: 1,
            }
        );
        let config = load_both(&with_retry_policy(
            "per_try_timeout: 0s, retry_back_off: { base_interval: 1s }, retry_host_predicate: \
             [{ name: envoy.retry_host_predicates.previous_hosts }], retriable_status_codes: \
             [502]",
        ))
        .unwrap();
        let policy = retry_policy(&config);
        assert_eq!(policy.per_try_timeout, None);
        assert_eq!(policy.max_interval, Duration::from_secs(10));
        assert!(policy.previous_hosts);
        // Without `retriable-status-codes` in retry_on the codes do nothing, as in Envoy.
        assert_eq!(policy.retry_on, RetryOn(0));
        assert_eq!(policy.retriable_status_codes, [502]);
    }

    #[test]
    fn health_check_errors_name_their_path() {
        let hc = |rest: &str| cluster_path(&format!(".health_checks[0]{rest}"));
        let http = |rest: &str| hc(&format!(".http_health_check{rest}"));
        let tcp = |rest: &str| hc(&format!(".tcp_health_check{rest}"));
        let check = format!("{HC}, http_health_check: {{ path: / }}");
        for (text, at, expected) in [
            (
                with_cluster(&format!("health_checks: [{{ {check} }}, {{ {check} }}]")),
                cluster_path(".health_checks[1]"),
                vec![
                    "zerohop runs one health check per cluster (the first is at \
                     static_resources.clusters[0].health_checks[0])",
                ],
            ),
            (
                with_health_check(
                    "interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2, \
                     http_health_check: { path: / }",
                ),
                hc(""),
                vec!["`timeout` is missing; Envoy requires it: a check not answered", "`timeout: 1s`"],
            ),
            (
                with_health_check(&check.replace("timeout: 1s", "timeout: 0s")),
                hc(".timeout"),
                vec!["`timeout` must be above 0s (Envoy rejects 0s too)"],
            ),
            (
                with_health_check(&check.replace("interval: 5s, ", "")),
                hc(""),
                vec!["`interval` is missing"],
            ),
            (
                with_health_check(&check.replace("interval: 5s", "interval: 0s")),
                hc(".interval"),
                vec!["`interval` must be above 0s"],
            ),
            (
                with_health_check(&check.replace("unhealthy_threshold: 3, ", "")),
                hc(""),
                vec!["`unhealthy_threshold` is missing", "`unhealthy_threshold: 3`"],
            ),
            (
                with_health_check(&check.replace("healthy_threshold: 2", "healthy_threshold: 0")),
                hc(".healthy_threshold"),
                vec!["0 is out of range; use 1 to 4294967295"],
            ),
            (
                with_health_check(&check.replace("healthy_threshold: 2", "healthy_threshold: -1")),
                hc(".healthy_threshold"),
                vec!["expected a whole number from 0 to 4294967295"],
            ),
            (
                with_health_check(&format!("{check}, no_traffic_interval: 0s")),
                hc(".no_traffic_interval"),
                vec!["`no_traffic_interval` must be above 0s", "default 60s"],
            ),
            (
                with_health_check(&format!("{check}, unhealthy_edge_interval: 0s")),
                hc(".unhealthy_edge_interval"),
                vec!["`unhealthy_edge_interval` must be above 0s"],
            ),
            (
                with_health_check(&format!("{check}, reuse_connection: false")),
                hc(".reuse_connection"),
                vec!["unknown field `reuse_connection`"],
            ),
            (
                with_health_check(HC),
                hc(""),
                vec![
                    "one of `http_health_check`, `tcp_health_check`, `grpc_health_check` and \
                     `custom_health_check` is required",
                    "`tcp_health_check: {}`",
                ],
            ),
            (
                with_health_check(&format!("{check}, tcp_health_check: {{}}")),
                hc(".tcp_health_check"),
                vec!["`tcp_health_check` cannot be set together with `http_health_check`"],
            ),
            (
                with_health_check(&format!("{HC}, grpc_health_check: {{ service_name: s }}")),
                hc(".grpc_health_check"),
                vec![
                    "`grpc_health_check` is not supported yet",
                    "use `http_health_check` or `tcp_health_check`",
                ],
            ),
            (
                with_health_check(&format!("{HC}, custom_health_check: {{ name: x }}")),
                hc(".custom_health_check"),
                vec!["`custom_health_check` is not supported yet"],
            ),
            (
                with_http_check("host: h"),
                hc(".http_health_check"),
                vec!["`path` is missing", "`path: /healthz`"],
            ),
            (
                with_http_check("path: \"\""),
                http(".path"),
                vec!["`path` is empty"],
            ),
            (
                with_http_check("path: healthz"),
                http(".path"),
                vec!["`healthz` cannot be used here: a health check's path starts with `/`"],
            ),
            (
                with_http_check("path: \"/a b\""),
                http(".path"),
                vec!["whitespace"],
            ),
            (
                with_http_check("path: /, method: CONNECT"),
                http(".method"),
                vec!["method CONNECT cannot be used for a health check"],
            ),
            (
                with_http_check("path: /, method: get"),
                http(".method"),
                vec!["unknown request method `get`", "write GET"],
            ),
            (
                with_http_check("path: /, codec_client_type: HTTP2"),
                http(".codec_client_type"),
                vec!["codec client type HTTP2 is not supported", "HTTP1"],
            ),
            (
                with_http_check("path: /, expected_statuses: [{ start: 99, end: 200 }]"),
                http(".expected_statuses[0]"),
                vec!["[99, 200) is not a range of statuses: start is below 100"],
            ),
            (
                with_http_check("path: /, expected_statuses: [{ start: 200, end: 601 }]"),
                http(".expected_statuses[0]"),
                vec!["end is above 600"],
            ),
            (
                with_http_check(
                    "path: /, expected_statuses: [{ start: 200, end: 300 }, { start: 300, end: \
                     300 }]",
                ),
                http(".expected_statuses[1]"),
                vec!["start is not below end"],
            ),
            (
                with_http_check("path: /, expected_statuses: [{ start: -1, end: 300 }]"),
                http(".expected_statuses[0]"),
                vec!["[-1, 300) is not a range of statuses"],
            ),
            (
                with_http_check("path: /, expected_statuses: [{ start: 200 }]"),
                http(".expected_statuses[0]"),
                vec!["`end` is missing"],
            ),
            (
                with_http_check("path: /, request_headers_to_add: [{ header: { key: Host, value: h } }]"),
                http(".request_headers_to_add[0].header.key"),
                vec!["`Host` cannot be used here", "the health check's `host`"],
            ),
            (
                with_http_check("path: /, request_headers_to_add: [{ header: { value: h } }]"),
                http(".request_headers_to_add[0].header"),
                vec!["`key` is missing"],
            ),
            (
                with_http_check(
                    "path: /, request_headers_to_add: [{ header: { key: x, value: \"%START_TIME%\" } }]",
                ),
                http(".request_headers_to_add[0].header.value"),
                vec!["no format variables", "write `%%` for a `%`"],
            ),
            (
                with_http_check(
                    "path: /, request_headers_to_add: [{ header: { key: x, value: y }, append: true }]",
                ),
                http(".request_headers_to_add[0].append"),
                vec!["unknown field `append`"],
            ),
            (
                with_http_check("path: /, send: { text: \"00\" }"),
                http(".send"),
                vec!["unknown field `send`"],
            ),
            (
                with_health_check(&format!("{HC}, tcp_health_check: {{ send: {{ text: abc }} }}")),
                tcp(".send.text"),
                vec!["invalid payload `abc`", "odd number"],
            ),
            (
                with_health_check(&format!(
                    "{HC}, tcp_health_check: {{ receive: [{{ text: \"00\" }}, {{ text: zz }}] }}"
                )),
                tcp(".receive[1].text"),
                vec!["invalid payload `zz`: it is not hex"],
            ),
            (
                with_health_check(&format!(
                    "{HC}, tcp_health_check: {{ receive: [{{ binary: \"@@@@\" }}] }}"
                )),
                tcp(".receive[0].binary"),
                vec!["invalid payload `@@@@`: it is not base64"],
            ),
            (
                with_health_check(&format!("{HC}, tcp_health_check: {{ send: {{}} }}")),
                tcp(".send"),
                vec!["one of `text` and `binary` is required", "`text: \"000000FF\"`"],
            ),
            (
                with_health_check(&format!(
                    "{HC}, tcp_health_check: {{ send: {{ text: \"00\", binary: AA== }} }}"
                )),
                tcp(".send.binary"),
                vec!["`binary` cannot be set together with `text`"],
            ),
        ] {
            error_at(&text, &at, &expected);
        }
    }

    #[test]
    fn outlier_detection_errors_name_their_path() {
        let od = |rest: &str| cluster_path(&format!(".outlier_detection{rest}"));
        for (fields, at, expected) in [
            (
                "consecutive_5xx: 0",
                ".consecutive_5xx",
                vec!["0 is out of range; use 1 to 4294967295 (failures in a row"],
            ),
            (
                "consecutive_local_origin_failure: 0",
                ".consecutive_local_origin_failure",
                vec!["0 is out of range; use 1 to"],
            ),
            (
                "max_ejection_percent: 101",
                ".max_ejection_percent",
                vec!["101 is out of range; use 0 to 100"],
            ),
            (
                "enforcing_consecutive_gateway_failure: 200",
                ".enforcing_consecutive_gateway_failure",
                vec!["200 is out of range; use 0 to 100"],
            ),
            (
                "interval: 0s",
                ".interval",
                vec!["`interval` must be above 0s", "default 10s"],
            ),
            (
                "base_ejection_time: 0s",
                ".base_ejection_time",
                vec!["`base_ejection_time` must be above 0s"],
            ),
            (
                "success_rate_stdev_factor: 1900",
                ".success_rate_stdev_factor",
                vec![
                    "`success_rate_stdev_factor` is not supported yet; zerohop implements only \
                     the consecutive-failure detectors",
                    "remove it",
                ],
            ),
            (
                "failure_percentage_threshold: 85",
                ".failure_percentage_threshold",
                vec!["`failure_percentage_threshold` is not supported yet"],
            ),
            (
                "enforcing_success_rate: 100",
                ".enforcing_success_rate",
                vec![
                    "consecutive-failure detectors",
                    "or set it to 0 (the detector off)",
                ],
            ),
            (
                "enforcing_failure_percentage: 1",
                ".enforcing_failure_percentage",
                vec!["or set it to 0"],
            ),
            (
                "max_ejection_time: 10s",
                ".max_ejection_time",
                vec!["max_ejection_time 10s is below base_ejection_time 30s, which Envoy rejects"],
            ),
            (
                "base_ejection_time: 600s",
                ".base_ejection_time",
                vec!["max_ejection_time 300s is below base_ejection_time 600s"],
            ),
            (
                "always_eject_one_host: true",
                ".always_eject_one_host",
                vec!["unknown field `always_eject_one_host`"],
            ),
        ] {
            error_at(
                &with_cluster(&format!("outlier_detection: {{ {fields} }}")),
                &od(at),
                &expected,
            );
        }
    }

    #[test]
    fn circuit_breaker_and_panic_threshold_errors_name_their_path() {
        let cb = |rest: &str| cluster_path(&format!(".circuit_breakers{rest}"));
        for (line, at, expected) in [
            (
                "circuit_breakers: { thresholds: [{ max_requests: 1 }, { priority: DEFAULT }] }",
                cb(".thresholds[1]"),
                vec![
                    "a second threshold for priority DEFAULT (the first is at \
                     static_resources.clusters[0].circuit_breakers.thresholds[0])",
                ],
            ),
            (
                "circuit_breakers: { thresholds: [{ priority: HIGH }, { priority: HIGH }] }",
                cb(".thresholds[1]"),
                vec!["a second threshold for priority HIGH"],
            ),
            (
                "circuit_breakers: { thresholds: [{ priority: LOW }] }",
                cb(".thresholds[0].priority"),
                vec!["unknown routing priority `LOW`, expected one of DEFAULT, HIGH"],
            ),
            (
                "circuit_breakers: { thresholds: [{ max_connections: 4294967296 }] }",
                cb(".thresholds[0].max_connections"),
                vec!["4294967296 is out of range; use 0 to 4294967295"],
            ),
            (
                "circuit_breakers: { thresholds: [{ priority: HIGH, max_retries: 4294967296 }] }",
                cb(".thresholds[0].max_retries"),
                vec!["out of range"],
            ),
            (
                "circuit_breakers: { thresholds: [{ retry_budget: { budget_percent: { value: 101 } } }] }",
                cb(".thresholds[0].retry_budget.budget_percent.value"),
                vec!["101 is not a percentage from 0 to 100, or leave it out for the default 20"],
            ),
            (
                "circuit_breakers: { thresholds: [{ max_connection_pools: 1 }] }",
                cb(".thresholds[0].max_connection_pools"),
                vec!["unknown field `max_connection_pools`"],
            ),
            (
                "circuit_breakers: { per_host_thresholds: [{ max_connections: 1 }] }",
                cb(".per_host_thresholds"),
                vec![
                    "`per_host_thresholds` is not supported yet",
                    "count for the whole cluster",
                ],
            ),
            (
                "common_lb_config: { healthy_panic_threshold: { value: -1 } }",
                cluster_path(".common_lb_config.healthy_panic_threshold.value"),
                vec!["-1 is not a percentage from 0 to 100; 0 turns panic mode off"],
            ),
            (
                "common_lb_config: { healthy_panic_threshold: { value: NaN } }",
                cluster_path(".common_lb_config.healthy_panic_threshold.value"),
                vec!["NaN is not a percentage"],
            ),
            (
                "common_lb_config: { zone_aware_lb_config: {} }",
                cluster_path(".common_lb_config.zone_aware_lb_config"),
                vec!["unknown field `zone_aware_lb_config`, expected `healthyPanicThreshold` or \
                      `healthy_panic_threshold`"],
            ),
        ] {
            error_at(&with_cluster(line), &at, &expected);
        }
    }

    #[test]
    fn retry_policy_errors_name_their_path() {
        let rp = |rest: &str| route_path(&format!(".route.retry_policy{rest}"));
        let predicate = "envoy.retry_host_predicates.previous_hosts";
        for (fields, at, expected) in [
            (
                "retry_on: \"5xx, bogus\"".to_owned(),
                rp(".retry_on"),
                vec![
                    "unknown retry condition `bogus`; zerohop supports 5xx, gateway-error, \
                     reset, connect-failure, retriable-4xx, refused-stream and \
                     retriable-status-codes, separated by commas",
                ],
            ),
            (
                "retry_on: \"cancelled\"".to_owned(),
                rp(".retry_on"),
                vec!["unknown retry condition `cancelled`"],
            ),
            (
                "retry_on: retriable-status-codes".to_owned(),
                rp(""),
                vec![
                    "`retriable_status_codes` is missing",
                    "`retriable_status_codes: [503]`",
                ],
            ),
            (
                "retry_on: retriable-status-codes, retriable_status_codes: []".to_owned(),
                rp(".retriable_status_codes"),
                vec!["`retriable_status_codes` is empty"],
            ),
            (
                "retriable_status_codes: [503, 600]".to_owned(),
                rp(".retriable_status_codes[1]"),
                vec!["600 is out of range; use 100 to 599"],
            ),
            (
                "num_retries: -1".to_owned(),
                rp(".num_retries"),
                vec!["expected a whole number"],
            ),
            (
                "retry_back_off: { max_interval: 1s }".to_owned(),
                rp(".retry_back_off"),
                vec!["`base_interval` is missing; Envoy requires it: the first retry"],
            ),
            (
                "retry_back_off: { base_interval: 0s }".to_owned(),
                rp(".retry_back_off.base_interval"),
                vec!["`base_interval` must be above 0s"],
            ),
            (
                "retry_back_off: { base_interval: 1s, max_interval: 0.5s }".to_owned(),
                rp(".retry_back_off.max_interval"),
                vec!["max_interval 0.5s is below base_interval 1s, which Envoy rejects"],
            ),
            (
                "retry_host_predicate: [{ name: envoy.retry_host_predicates.omit_canary_hosts }]"
                    .to_owned(),
                rp(".retry_host_predicate[0].name"),
                vec![
                    "unsupported retry host predicate \
                     `envoy.retry_host_predicates.omit_canary_hosts`: zerohop supports only \
                     envoy.retry_host_predicates.previous_hosts",
                ],
            ),
            (
                "retry_host_predicate: [{}]".to_owned(),
                rp(".retry_host_predicate[0]"),
                vec!["`name` is missing"],
            ),
            (
                format!(
                    "retry_host_predicate: [{{ name: {predicate}, typed_config: {{ \"@type\": \
                     type.googleapis.com/envoy.extensions.retry.host.omit_host_metadata.v3.\
                     OmitHostMetadataConfig }} }}]"
                ),
                rp(".retry_host_predicate[0].typed_config.@type"),
                vec![
                    "unsupported retry host predicate type",
                    "zerohop supports only the previous_hosts predicate",
                ],
            ),
            (
                format!(
                    "retry_host_predicate: [{{ name: {predicate}, typed_config: {{ \"@type\": \
                     envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate }} }}]"
                ),
                rp(".retry_host_predicate[0].typed_config.@type"),
                vec!["a type URL starts with `type.googleapis.com/`"],
            ),
            (
                format!(
                    "retry_host_predicate: [{{ name: {predicate}, typed_config: {{ x: 1, \
                     \"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.\
                     v3.PreviousHostsPredicate }} }}]"
                ),
                rp(".retry_host_predicate[0].typed_config.x"),
                vec!["unknown field `x`, there are no fields"],
            ),
            (
                format!(
                    "retry_host_predicate: [{{ name: {predicate}, typed_config: {{ x: 1 }} }}]"
                ),
                rp(".retry_host_predicate[0].typed_config"),
                vec!["`@type` is missing"],
            ),
            (
                "retry_priority: {}".to_owned(),
                rp(".retry_priority"),
                vec!["unknown field `retry_priority`"],
            ),
        ] {
            error_at(&with_retry_policy(&fields), &at, &expected);
        }
        error_at(
            &with_virtual_hosts(&[
                "{ name: vh, domains: [\"*\"], retry_policy: { retry_on: nope }, routes: [{ match: { prefix: / }, route: { cluster: c } }] }",
            ]),
            &path(".route_config.virtual_hosts[0].retry_policy.retry_on"),
            &["unknown retry condition `nope`"],
        );
        error_at(
            &with_route("{ match: { prefix: / }, route: { cluster: c, idle_timeout: 1m } }"),
            &route_path(".route.idle_timeout"),
            &["write \"60s\""],
        );
    }

    #[test]
    fn resilience_example_loads() {
        let example = include_str!("../../../configs/resilience.yaml");
        let tree: Value = serde_yaml_ng::from_str(example).unwrap();
        let from_tree = EnvoyConfig::from_value(tree.get("static_resources"), None, ORIGIN)
            .unwrap_or_else(|e| panic!("{e}"));
        let envoy_part = &example[example.find("\nstatic_resources:").unwrap()..];
        let config = load(envoy_part).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config, from_tree);
        let cluster = &config.clusters[0];
        assert_eq!(cluster.endpoints.len(), 3);
        assert!(matches!(
            cluster.health_check.as_ref().map(|c| &c.kind),
            Some(HealthCheckKind::Http(_))
        ));
        assert!(cluster.outlier_detection.is_some());
        assert_ne!(cluster.circuit_breakers, CircuitBreakers::default());
        let policy = retry_policy(&config);
        assert_eq!(
            policy.retry_on,
            RetryOn(RetryOn::FIVE_XX | RetryOn::RESET | RetryOn::CONNECT_FAILURE)
        );
        assert_eq!(policy.num_retries, 2);
        assert!(policy.per_try_timeout.is_some());
        assert!(policy.previous_hosts);
    }
}
