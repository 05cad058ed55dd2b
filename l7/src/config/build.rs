//! From the raw YAML structs to [`EnvoyConfig`]: required fields, ranges, uniqueness and
//! references, each error with its YAML path.
//!
//! Checks run in document order within each part: listeners, then clusters, then the
//! references from listeners to clusters, then admin; the first problem is reported.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::raw::{
    filter_type, FilterType, LbPolicyName, RawAddress, RawAdmin, RawBootstrap, RawCluster,
    RawFilterChain, RawListener, RawLoadAssignment, RawStaticResources, RawTcpProxy,
    RawTypedConfig, SocketProtocol, TYPE_KEY,
};
use super::{
    AddressRole, Admin, Cluster, Endpoint, EnvoyConfig, EnvoyConfigError, LbPolicy, Listener,
    NetworkFilter, Problem, TcpProxy, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
};

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
            let NetworkFilter::TcpProxy(tcp_proxy) = &listener.filter;
            if !clusters.iter().any(|c| c.name == tcp_proxy.cluster) {
                return Err(self.invalid(
                    format!(
                        "static_resources.listeners[{i}].filter_chains[0].filters[0]\
                         .typed_config.cluster"
                    ),
                    Problem::UnknownCluster {
                        name: tcp_proxy.cluster.clone(),
                        known: clusters.iter().map(|c| c.name.clone()).collect(),
                    },
                ));
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

    /// Check a listener's filter chains: one chain with one tcp_proxy filter.
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
        let tcp_proxy = match typed_config {
            RawTypedConfig::TcpProxy(raw) => raw,
            RawTypedConfig::Deferred(mut mapping) => {
                let Some(url) = mapping.remove(TYPE_KEY) else {
                    return Err(self.invalid(typed_config_path, Problem::MissingTypeUrl));
                };
                let url_path = format!("{typed_config_path}.{TYPE_KEY}");
                let url: String = self.deserialize(&url, &url_path)?;
                match filter_type(&url) {
                    Ok(FilterType::TcpProxy) => self
                        .deserialize::<RawTcpProxy>(&Value::Mapping(mapping), &typed_config_path)?,
                    Err(message) => return Err(self.schema(url_path, message)),
                }
            }
        };
        let tcp_proxy = self.tcp_proxy(tcp_proxy, &typed_config_path)?;
        if filters.next().is_some() {
            return Err(self.invalid(
                format!("{path}[1]"),
                Problem::FilterAfterTerminal {
                    previous: format!("{path}[0]"),
                },
            ));
        }
        Ok(NetworkFilter::TcpProxy(tcp_proxy))
    }

    fn tcp_proxy(&self, raw: RawTcpProxy, path: &str) -> Result<TcpProxy, EnvoyConfigError> {
        let stat_prefix_hint = "Envoy requires it: the filter's counters are named \
                                tcp.<stat_prefix>.*; e.g. `stat_prefix: destination`";
        let stat_prefix = match raw.stat_prefix {
            None => {
                return Err(self.invalid(
                    path.to_owned(),
                    Problem::Missing {
                        field: "stat_prefix",
                        hint: stat_prefix_hint.to_owned(),
                    },
                ))
            }
            Some(prefix) if prefix.is_empty() => {
                return Err(self.invalid(
                    format!("{path}.stat_prefix"),
                    Problem::Empty {
                        field: "stat_prefix",
                        hint: stat_prefix_hint.to_owned(),
                    },
                ))
            }
            Some(prefix) => prefix,
        };
        if raw.weighted_clusters.is_some() {
            return Err(self.invalid(
                format!("{path}.weighted_clusters"),
                Problem::WeightedClusters,
            ));
        }
        let cluster_hint = "set it to the name of a cluster in static_resources.clusters";
        let cluster = match raw.cluster {
            None => {
                return Err(self.invalid(
                    path.to_owned(),
                    Problem::Missing {
                        field: "cluster",
                        hint: cluster_hint.to_owned(),
                    },
                ))
            }
            Some(cluster) if cluster.is_empty() => {
                return Err(self.invalid(
                    format!("{path}.cluster"),
                    Problem::Empty {
                        field: "cluster",
                        hint: cluster_hint.to_owned(),
                    },
                ))
            }
            Some(cluster) => cluster,
        };
        let idle_timeout = match raw.idle_timeout {
            None => Some(DEFAULT_IDLE_TIMEOUT),
            Some(timeout) if timeout.0 == Duration::ZERO => None,
            Some(timeout) => Some(timeout.0),
        };
        Ok(TcpProxy {
            stat_prefix,
            cluster,
            idle_timeout,
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
            let lb_policy = match cluster.lb_policy {
                None | Some(LbPolicyName::RoundRobin) => LbPolicy::RoundRobin,
                Some(LbPolicyName::LeastRequest) => LbPolicy::LeastRequest,
                Some(LbPolicyName::Random) => LbPolicy::Random,
            };
            let endpoints = self.endpoints(cluster.load_assignment, &path)?;
            clusters.push(Cluster {
                name,
                connect_timeout,
                lb_policy,
                endpoints,
            });
        }
        Ok(clusters)
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
