//! The YAML as written: Envoy v3 messages, limited to the fields zerohop supports.
//!
//! Every struct denies unknown fields, so that a field Envoy would honour and zerohop
//! would not is an error instead of a silent difference in behaviour. Fields that a
//! working config needs are still `Option` here: [`super::build`] reports a missing one
//! with its YAML path and an example, which reads better than serde's "missing field".
//!
//! Each struct names its Envoy message for serde's type errors ("expected a mapping
//! (Envoy's Listener)").
//!
//! Envoy parses YAML as proto3 JSON, which also accepts each field's lowerCamelCase JSON
//! name (`port_value` or `portValue`); the aliases below accept the same.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::duration::ProtoDuration;

/// The key that names a `google.protobuf.Any`'s type in proto3 JSON.
pub(crate) const TYPE_KEY: &str = "@type";

/// The type URL of the TCP proxy filter's config.
pub const TCP_PROXY_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// The type URL of the HTTP connection manager's config.
pub const HTTP_CONNECTION_MANAGER_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The type URL of the router HTTP filter's config.
pub const ROUTER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// The name Envoy gives the router HTTP filter; selects it when it has no `typed_config`.
pub const ROUTER_FILTER_NAME: &str = "envoy.filters.http.router";

/// A whole Envoy bootstrap file, limited to the sections zerohop reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Bootstrap)")]
pub(crate) struct RawBootstrap {
    #[serde(default, alias = "staticResources")]
    pub static_resources: Option<RawStaticResources>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
}

/// `envoy.config.bootstrap.v3.Bootstrap.StaticResources`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s StaticResources)"
)]
pub(crate) struct RawStaticResources {
    #[serde(default)]
    pub listeners: Option<Vec<RawListener>>,
    #[serde(default)]
    pub clusters: Option<Vec<RawCluster>>,
}

/// `envoy.config.bootstrap.v3.Admin`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Admin)")]
pub(crate) struct RawAdmin {
    #[serde(default)]
    pub address: Option<RawAddress>,
}

/// `envoy.config.core.v3.Address`: only its `socket_address` form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Address)")]
pub(crate) struct RawAddress {
    #[serde(default, alias = "socketAddress")]
    pub socket_address: Option<RawSocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s SocketAddress)")]
pub(crate) struct RawSocketAddress {
    #[serde(default)]
    pub protocol: Option<SocketProtocol>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default, alias = "portValue")]
    pub port_value: Option<Unsigned>,
}

/// `envoy.config.core.v3.SocketAddress.Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketProtocol {
    Tcp,
    Udp,
}

impl<'de> Deserialize<'de> for SocketProtocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "socket protocol",
            names: &["TCP", "UDP"],
        })?;
        Ok(if name == "UDP" {
            SocketProtocol::Udp
        } else {
            SocketProtocol::Tcp
        })
    }
}

/// `envoy.config.listener.v3.Listener`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Listener)")]
pub(crate) struct RawListener {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<RawAddress>,
    #[serde(default, alias = "filterChains")]
    pub filter_chains: Option<Vec<RawFilterChain>>,
}

/// `envoy.config.listener.v3.FilterChain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s FilterChain)")]
pub(crate) struct RawFilterChain {
    #[serde(default)]
    pub filters: Option<Vec<RawFilter>>,
}

/// `envoy.config.listener.v3.Filter`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Filter)")]
pub(crate) struct RawFilter {
    /// In Envoy v3 an annotation only: the filter is chosen by `typed_config`'s `@type`.
    #[serde(default)]
    #[allow(dead_code)]
    pub name: Option<String>,
    #[serde(default, alias = "typedConfig")]
    pub typed_config: Option<RawTypedConfig>,
}

/// A network filter's `typed_config`, dispatched on its `@type`.
#[derive(Debug)]
pub(crate) enum RawTypedConfig {
    /// `@type` came first, so the rest of the mapping was read straight into the filter's
    /// config, keeping YAML paths and line numbers.
    TcpProxy(RawTcpProxy),
    HttpConnectionManager(Box<RawHttpConnectionManager>),
    /// `@type` was not the first key (proto3 JSON allows it anywhere): the mapping is kept
    /// whole and dispatched by [`super::build`] once its type is known.
    Deferred(Mapping),
}

/// The network filters zerohop knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterType {
    TcpProxy,
    HttpConnectionManager,
}

/// Return the filter a `typed_config` type URL selects, or a message saying why none is.
pub(crate) fn filter_type(url: &str) -> Result<FilterType, String> {
    if url == TCP_PROXY_TYPE_URL {
        return Ok(FilterType::TcpProxy);
    }
    if url == HTTP_CONNECTION_MANAGER_TYPE_URL {
        return Ok(FilterType::HttpConnectionManager);
    }
    let supported = format!(
        "zerohop supports only {TCP_PROXY_TYPE_URL} and {HTTP_CONNECTION_MANAGER_TYPE_URL} so far"
    );
    let name = url.rsplit('/').next().unwrap_or(url);
    let reason = if let Some(known) = [TCP_PROXY_TYPE_URL, HTTP_CONNECTION_MANAGER_TYPE_URL]
        .into_iter()
        .find(|known| known.strip_prefix("type.googleapis.com/") == Some(name))
    {
        format!("a type URL starts with `type.googleapis.com/`; write {known}")
    } else if name == "envoy.config.filter.network.tcp_proxy.v2.TcpProxy" {
        format!("this is the v2 API, which Envoy has removed; write {TCP_PROXY_TYPE_URL}")
    } else if name == "envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager"
    {
        format!(
            "this is the v2 API, which Envoy has removed; write {HTTP_CONNECTION_MANAGER_TYPE_URL}"
        )
    } else if name.ends_with(".TypedStruct") {
        format!(
            "TypedStruct wrappers are not supported; write the filter's config directly, \
             under \"@type\": {TCP_PROXY_TYPE_URL} or {HTTP_CONNECTION_MANAGER_TYPE_URL}"
        )
    } else if name.starts_with("envoy.extensions.filters.network.") {
        format!("this network filter is not supported yet; {supported}")
    } else if name.starts_with("envoy.extensions.filters.http.") {
        format!(
            "this is an HTTP filter: it goes in an http_connection_manager's `http_filters`, \
             not in a listener's `filters`; {supported}"
        )
    } else {
        format!("this is not a network filter zerohop knows; {supported}")
    };
    Err(format!("unsupported filter type `{url}`: {reason}"))
}

/// A `typed_config` (a `google.protobuf.Any`) of some kind of filter: read straight into
/// the filter's config when `@type` is its first key, else kept whole for later.
pub(crate) trait TypedConfig: Sized {
    /// Which filter an `@type` selects.
    type Kind;
    /// What serde's type error expects.
    const EXPECTING: &'static str;
    /// Return the filter `url` selects, or a message saying why none is.
    fn kind(url: &str) -> Result<Self::Kind, String>;
    /// Read the rest of the mapping, after `@type`, as the config of `kind`.
    fn read<'de, A: MapAccess<'de>>(kind: Self::Kind, map: A) -> Result<Self, A::Error>;
    /// Keep a mapping whose `@type` is not its first key.
    fn deferred(mapping: Mapping) -> Self;
}

impl TypedConfig for RawTypedConfig {
    type Kind = FilterType;
    const EXPECTING: &'static str =
        "a mapping with an `@type` key, such as `\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`";

    fn kind(url: &str) -> Result<FilterType, String> {
        filter_type(url)
    }

    fn read<'de, A: MapAccess<'de>>(kind: FilterType, map: A) -> Result<Self, A::Error> {
        match kind {
            FilterType::TcpProxy => RawTcpProxy::deserialize(MapAccessDeserializer::new(map))
                .map(RawTypedConfig::TcpProxy),
            FilterType::HttpConnectionManager => {
                RawHttpConnectionManager::deserialize(MapAccessDeserializer::new(map))
                    .map(|hcm| RawTypedConfig::HttpConnectionManager(Box::new(hcm)))
            }
        }
    }

    fn deferred(mapping: Mapping) -> Self {
        RawTypedConfig::Deferred(mapping)
    }
}

impl<'de> Deserialize<'de> for RawTypedConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TypedConfigVisitor::<RawTypedConfig>(PhantomData))
    }
}

struct TypedConfigVisitor<T>(PhantomData<T>);

impl<'de, T: TypedConfig> Visitor<'de> for TypedConfigVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some(first) = map.next_key::<Value>()? else {
            return Ok(T::deferred(Mapping::new()));
        };
        if first.as_str() == Some(TYPE_KEY) {
            // An error in the seed or in the filter's fields is raised inside the map, so
            // the caller's path tracking names the exact key.
            let kind = map.next_value_seed(TypeUrlSeed::<T>(PhantomData))?;
            return T::read(kind, map);
        }
        let mut mapping = Mapping::new();
        mapping.insert(first, map.next_value::<Value>()?);
        while let Some((key, value)) = map.next_entry::<Value, Value>()? {
            let repeated = key.as_str().map(str::to_owned);
            if mapping.insert(key, value).is_some() {
                return Err(de::Error::custom(format!(
                    "duplicate key `{}`",
                    repeated.unwrap_or_default()
                )));
            }
        }
        Ok(T::deferred(mapping))
    }
}

/// Reads an `@type` value and checks that zerohop supports it.
struct TypeUrlSeed<T>(PhantomData<T>);

impl<'de, T: TypedConfig> DeserializeSeed<'de> for TypeUrlSeed<T> {
    type Value = T::Kind;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T::Kind, D::Error> {
        let url = String::deserialize(deserializer)?;
        T::kind(&url).map_err(de::Error::custom)
    }
}

/// `envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`, without its `@type`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s TcpProxy)")]
pub(crate) struct RawTcpProxy {
    #[serde(default, alias = "statPrefix")]
    pub stat_prefix: Option<String>,
    #[serde(default)]
    pub cluster: Option<String>,
    /// Not supported; present so that its error can say to use `cluster`.
    #[serde(default, alias = "weightedClusters")]
    pub weighted_clusters: Option<IgnoredAny>,
    #[serde(default, alias = "idleTimeout")]
    pub idle_timeout: Option<ProtoDuration>,
}

/// `envoy.config.cluster.v3.Cluster`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Cluster)")]
pub(crate) struct RawCluster {
    #[serde(default)]
    pub name: Option<String>,
    /// Always STATIC: the deserializer rejects the other discovery types.
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    pub discovery_type: Option<DiscoveryType>,
    #[serde(default, alias = "connectTimeout")]
    pub connect_timeout: Option<ProtoDuration>,
    #[serde(default, alias = "lbPolicy")]
    pub lb_policy: Option<LbPolicyName>,
    #[serde(default, alias = "loadAssignment")]
    pub load_assignment: Option<RawLoadAssignment>,
}

/// `envoy.config.cluster.v3.Cluster.DiscoveryType`, of which zerohop supports STATIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiscoveryType;

impl<'de> Deserialize<'de> for DiscoveryType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "cluster type",
            names: &["STATIC", "STRICT_DNS", "LOGICAL_DNS", "EDS", "ORIGINAL_DST"],
        })?;
        if name == "STATIC" {
            return Ok(DiscoveryType);
        }
        Err(de::Error::custom(format!(
            "cluster type {name} is not supported yet: zerohop supports only STATIC clusters, \
             whose endpoints are IPv4 addresses; resolve the names yourself and list the \
             addresses under `type: STATIC`"
        )))
    }
}

/// `envoy.config.cluster.v3.Cluster.LbPolicy`, limited to what zerohop supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LbPolicyName {
    RoundRobin,
    LeastRequest,
    Random,
}

impl<'de> Deserialize<'de> for LbPolicyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "load balancing policy",
            names: &[
                "ROUND_ROBIN",
                "LEAST_REQUEST",
                "RING_HASH",
                "RANDOM",
                "MAGLEV",
                "CLUSTER_PROVIDED",
                "LOAD_BALANCING_POLICY_CONFIG",
            ],
        })?;
        match name {
            "ROUND_ROBIN" => Ok(LbPolicyName::RoundRobin),
            "LEAST_REQUEST" => Ok(LbPolicyName::LeastRequest),
            "RANDOM" => Ok(LbPolicyName::Random),
            other => Err(de::Error::custom(format!(
                "load balancing policy {other} is not supported yet; use ROUND_ROBIN (the \
                 default), LEAST_REQUEST or RANDOM"
            ))),
        }
    }
}

/// Reads a proto enum value by name; returns the name from `names`.
///
/// Envoy's JSON parser also takes enum numbers, but nobody writes `lb_policy: 3`; names
/// are what its docs show, and a number here gets a message listing them.
struct EnumName {
    what: &'static str,
    names: &'static [&'static str],
}

impl EnumName {
    fn list(&self) -> String {
        self.names.join(", ")
    }
}

impl<'de> Visitor<'de> for EnumName {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {}: one of {}", self.what, self.list())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<&'static str, E> {
        if let Some(name) = self.names.iter().find(|name| **name == value) {
            return Ok(name);
        }
        let upper = value.to_ascii_uppercase();
        let hint = match self.names.iter().find(|name| **name == upper) {
            Some(name) => format!("; Envoy's enum names are upper case: write {name}"),
            None => String::new(),
        };
        Err(E::custom(format!(
            "unknown {} `{value}`, expected one of {}{hint}",
            self.what,
            self.list()
        )))
    }
}

/// `envoy.config.endpoint.v3.ClusterLoadAssignment`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s ClusterLoadAssignment)"
)]
pub(crate) struct RawLoadAssignment {
    #[serde(default, alias = "clusterName")]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub endpoints: Option<Vec<RawLocalityLbEndpoints>>,
}

/// `envoy.config.endpoint.v3.LocalityLbEndpoints`, without localities or priorities.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s LocalityLbEndpoints)"
)]
pub(crate) struct RawLocalityLbEndpoints {
    #[serde(default, alias = "lbEndpoints")]
    pub lb_endpoints: Option<Vec<RawLbEndpoint>>,
}

/// `envoy.config.endpoint.v3.LbEndpoint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s LbEndpoint)")]
pub(crate) struct RawLbEndpoint {
    #[serde(default)]
    pub endpoint: Option<RawEndpoint>,
    #[serde(default, alias = "loadBalancingWeight")]
    pub load_balancing_weight: Option<Unsigned>,
}

/// `envoy.config.endpoint.v3.Endpoint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Endpoint)")]
pub(crate) struct RawEndpoint {
    #[serde(default)]
    pub address: Option<RawAddress>,
}

/// A proto `uint32` (or `UInt32Value`) as Envoy's JSON parser takes it: a number, or a
/// string of digits. Kept as `u64` so that a value out of range is reported with its
/// YAML path and the range, not as a type error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsigned(pub u64);

impl<'de> Deserialize<'de> for Unsigned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnsignedVisitor)
    }
}

struct UnsignedVisitor;

impl Visitor<'_> for UnsignedVisitor {
    type Value = Unsigned;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number from 0 to 4294967295")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Unsigned, E> {
        Ok(Unsigned(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Unsigned, E> {
        u64::try_from(value)
            .map(Unsigned)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Unsigned, E> {
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(number) = value.parse() {
                return Ok(Unsigned(number));
            }
        }
        Err(E::invalid_value(de::Unexpected::Str(value), &self))
    }
}

/// `envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
/// without its `@type`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HttpConnectionManager)"
)]
pub(crate) struct RawHttpConnectionManager {
    #[serde(default, alias = "statPrefix")]
    pub stat_prefix: Option<String>,
    #[serde(default, alias = "codecType")]
    pub codec_type: Option<CodecTypeName>,
    #[serde(default, alias = "routeConfig")]
    pub route_config: Option<RawRouteConfiguration>,
    /// Not supported; present so that its error can say to use `route_config`.
    #[serde(default)]
    pub rds: Option<IgnoredAny>,
    /// Not supported; present so that its error can say to use `route_config`.
    #[serde(default, alias = "scopedRoutes")]
    pub scoped_routes: Option<IgnoredAny>,
    #[serde(default, alias = "httpFilters")]
    pub http_filters: Option<Vec<RawHttpFilter>>,
    #[serde(default, alias = "commonHttpProtocolOptions")]
    pub common_http_protocol_options: Option<RawHttpProtocolOptions>,
    #[serde(default, alias = "requestHeadersTimeout")]
    pub request_headers_timeout: Option<ProtoDuration>,
    #[serde(default, alias = "streamIdleTimeout")]
    pub stream_idle_timeout: Option<ProtoDuration>,
    #[serde(default, alias = "requestTimeout")]
    pub request_timeout: Option<ProtoDuration>,
    #[serde(default, alias = "maxRequestHeadersKb")]
    pub max_request_headers_kb: Option<Unsigned>,
    #[serde(default, alias = "useRemoteAddress")]
    pub use_remote_address: Option<bool>,
    #[serde(default, alias = "xffNumTrustedHops")]
    pub xff_num_trusted_hops: Option<Unsigned>,
    #[serde(default, alias = "generateRequestId")]
    pub generate_request_id: Option<bool>,
}

/// `HttpConnectionManager.CodecType`, of which zerohop supports AUTO and HTTP1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecTypeName {
    Auto,
    Http1,
}

impl<'de> Deserialize<'de> for CodecTypeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "codec type",
            names: &["AUTO", "HTTP1", "HTTP2", "HTTP3"],
        })?;
        match name {
            "AUTO" => Ok(CodecTypeName::Auto),
            "HTTP1" => Ok(CodecTypeName::Http1),
            other => Err(de::Error::custom(format!(
                "codec type {other} is not supported: zerohop's http_connection_manager speaks \
                 HTTP/1.1 only so far; write `codec_type: HTTP1` (or AUTO, which zerohop \
                 treats as HTTP1)"
            ))),
        }
    }
}

/// `envoy.config.core.v3.HttpProtocolOptions`, limited to `idle_timeout`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HttpProtocolOptions)"
)]
pub(crate) struct RawHttpProtocolOptions {
    #[serde(default, alias = "idleTimeout")]
    pub idle_timeout: Option<ProtoDuration>,
}

/// `HttpConnectionManager.HttpFilter`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s HttpFilter)")]
pub(crate) struct RawHttpFilter {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "typedConfig")]
    pub typed_config: Option<RawHttpTypedConfig>,
}

/// An HTTP filter's `typed_config`, dispatched on its `@type` as [`RawTypedConfig`] is.
#[derive(Debug)]
pub(crate) enum RawHttpTypedConfig {
    Router(RawRouter),
    Deferred(Mapping),
}

/// The HTTP filters zerohop knows. Each new filter is a variant here, a type URL in
/// [`http_filter_type`] and a variant of [`super::HttpFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpFilterType {
    Router,
}

/// Return the HTTP filter a `typed_config` type URL selects, or a message saying why none
/// is.
pub(crate) fn http_filter_type(url: &str) -> Result<HttpFilterType, String> {
    if url == ROUTER_TYPE_URL {
        return Ok(HttpFilterType::Router);
    }
    let supported = format!("zerohop supports only {ROUTER_TYPE_URL} so far");
    let name = url.rsplit('/').next().unwrap_or(url);
    let reason = if Some(name) == ROUTER_TYPE_URL.strip_prefix("type.googleapis.com/") {
        format!("a type URL starts with `type.googleapis.com/`; write {ROUTER_TYPE_URL}")
    } else if name == "envoy.config.filter.http.router.v2.Router" {
        format!("this is the v2 API, which Envoy has removed; write {ROUTER_TYPE_URL}")
    } else if name.ends_with(".TypedStruct") {
        format!(
            "TypedStruct wrappers are not supported; write the filter's config directly, \
             under its own \"@type\"; {supported}"
        )
    } else if name.starts_with("envoy.extensions.filters.http.") {
        format!("this HTTP filter is not supported yet; {supported}")
    } else if name.starts_with("envoy.extensions.filters.network.") {
        format!(
            "this is a network filter: it goes in a listener's `filters`, not in \
             `http_filters`; {supported}"
        )
    } else {
        format!("this is not an HTTP filter zerohop knows; {supported}")
    };
    Err(format!("unsupported HTTP filter type `{url}`: {reason}"))
}

impl TypedConfig for RawHttpTypedConfig {
    type Kind = HttpFilterType;
    const EXPECTING: &'static str =
        "a mapping with an `@type` key, such as `\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`";

    fn kind(url: &str) -> Result<HttpFilterType, String> {
        http_filter_type(url)
    }

    fn read<'de, A: MapAccess<'de>>(kind: HttpFilterType, map: A) -> Result<Self, A::Error> {
        match kind {
            HttpFilterType::Router => RawRouter::deserialize(MapAccessDeserializer::new(map))
                .map(RawHttpTypedConfig::Router),
        }
    }

    fn deferred(mapping: Mapping) -> Self {
        RawHttpTypedConfig::Deferred(mapping)
    }
}

impl<'de> Deserialize<'de> for RawHttpTypedConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TypedConfigVisitor::<RawHttpTypedConfig>(PhantomData))
    }
}

/// `envoy.extensions.filters.http.router.v3.Router`, without its `@type`: none of its
/// fields is supported yet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Router)")]
pub(crate) struct RawRouter {}

/// `envoy.config.route.v3.RouteConfiguration`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s RouteConfiguration)"
)]
pub(crate) struct RawRouteConfiguration {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "virtualHosts")]
    pub virtual_hosts: Option<Vec<RawVirtualHost>>,
    #[serde(default, alias = "requestHeadersToAdd")]
    pub request_headers_to_add: Option<Vec<RawHeaderValueOption>>,
    #[serde(default, alias = "requestHeadersToRemove")]
    pub request_headers_to_remove: Option<Vec<String>>,
    #[serde(default, alias = "responseHeadersToAdd")]
    pub response_headers_to_add: Option<Vec<RawHeaderValueOption>>,
    #[serde(default, alias = "responseHeadersToRemove")]
    pub response_headers_to_remove: Option<Vec<String>>,
    #[serde(default, alias = "mostSpecificHeaderMutationsWins")]
    pub most_specific_header_mutations_wins: Option<bool>,
    /// zerohop checks the clusters whatever this says; see [`super::build`].
    #[serde(default, alias = "validateClusters")]
    #[allow(dead_code)]
    pub validate_clusters: Option<bool>,
    #[serde(default, alias = "ignorePortInHostMatching")]
    pub ignore_port_in_host_matching: Option<bool>,
    #[serde(default, alias = "maxDirectResponseBodySizeBytes")]
    pub max_direct_response_body_size_bytes: Option<Unsigned>,
}

/// The four header mutation lists that a RouteConfiguration, a VirtualHost and a Route
/// each have (serde's `flatten` would lose `deny_unknown_fields`, so each struct spells
/// them out and `take_headers` gathers them).
#[derive(Debug, Default)]
pub(crate) struct RawHeaderMutations {
    pub request_headers_to_add: Option<Vec<RawHeaderValueOption>>,
    pub request_headers_to_remove: Option<Vec<String>>,
    pub response_headers_to_add: Option<Vec<RawHeaderValueOption>>,
    pub response_headers_to_remove: Option<Vec<String>>,
}

/// Gather the header mutation lists of one of the structs that has them.
macro_rules! header_mutations {
    ($($raw:ty),*) => {$(
        impl $raw {
            /// Move the four header mutation lists out.
            pub(crate) fn take_headers(&mut self) -> RawHeaderMutations {
                RawHeaderMutations {
                    request_headers_to_add: self.request_headers_to_add.take(),
                    request_headers_to_remove: self.request_headers_to_remove.take(),
                    response_headers_to_add: self.response_headers_to_add.take(),
                    response_headers_to_remove: self.response_headers_to_remove.take(),
                }
            }
        }
    )*};
}

header_mutations!(RawRouteConfiguration, RawVirtualHost, RawRoute);

/// `envoy.config.core.v3.HeaderValueOption`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HeaderValueOption)"
)]
pub(crate) struct RawHeaderValueOption {
    #[serde(default)]
    pub header: Option<RawHeaderValue>,
    /// Deprecated in favour of `append_action`, still honoured by Envoy.
    #[serde(default)]
    pub append: Option<bool>,
    #[serde(default, alias = "appendAction")]
    pub append_action: Option<AppendActionName>,
    #[serde(default, alias = "keepEmptyValue")]
    pub keep_empty_value: Option<bool>,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s HeaderValue)")]
pub(crate) struct RawHeaderValue {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// `HeaderValueOption.HeaderAppendAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendActionName {
    AppendIfExistsOrAdd,
    AddIfAbsent,
    OverwriteIfExistsOrAdd,
    OverwriteIfExists,
}

impl<'de> Deserialize<'de> for AppendActionName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "header append action",
            names: &[
                "APPEND_IF_EXISTS_OR_ADD",
                "ADD_IF_ABSENT",
                "OVERWRITE_IF_EXISTS_OR_ADD",
                "OVERWRITE_IF_EXISTS",
            ],
        })?;
        Ok(match name {
            "ADD_IF_ABSENT" => AppendActionName::AddIfAbsent,
            "OVERWRITE_IF_EXISTS_OR_ADD" => AppendActionName::OverwriteIfExistsOrAdd,
            "OVERWRITE_IF_EXISTS" => AppendActionName::OverwriteIfExists,
            _ => AppendActionName::AppendIfExistsOrAdd,
        })
    }
}

/// `envoy.config.route.v3.VirtualHost`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s VirtualHost)")]
pub(crate) struct RawVirtualHost {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    #[serde(default)]
    pub routes: Option<Vec<RawRoute>>,
    #[serde(default, alias = "requestHeadersToAdd")]
    pub request_headers_to_add: Option<Vec<RawHeaderValueOption>>,
    #[serde(default, alias = "requestHeadersToRemove")]
    pub request_headers_to_remove: Option<Vec<String>>,
    #[serde(default, alias = "responseHeadersToAdd")]
    pub response_headers_to_add: Option<Vec<RawHeaderValueOption>>,
    #[serde(default, alias = "responseHeadersToRemove")]
    pub response_headers_to_remove: Option<Vec<String>>,
}

/// `envoy.config.route.v3.Route`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Route)")]
pub(crate) struct RawRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub route_match: Option<RawRouteMatch>,
    #[serde(default)]
    pub route: Option<RawRouteAction>,
    #[serde(default)]
    pub redirect: Option<RawRedirectAction>,
    #[serde(default, alias = "directResponse")]
    pub direct_response: Option<RawDirectResponseAction>,
    #[serde(default, alias = "requestHeadersToAdd")]
    pub request_headers_to_add: Option<Vec<RawHeaderValueOption>>,
    #[serde(default, alias = "requestHeadersToRemove")]
    pub request_headers_to_remove: Option<Vec<String>>,
    #[serde(default, alias = "responseHeadersToAdd")]
    pub response_headers_to_add: Option<Vec<RawHeaderValueOption>>,
    #[serde(default, alias = "responseHeadersToRemove")]
    pub response_headers_to_remove: Option<Vec<String>>,
}

/// `envoy.config.route.v3.RouteMatch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RouteMatch)")]
pub(crate) struct RawRouteMatch {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, alias = "safeRegex")]
    pub safe_regex: Option<RawRegexMatcher>,
    #[serde(default, alias = "pathSeparatedPrefix")]
    pub path_separated_prefix: Option<String>,
    #[serde(default, alias = "caseSensitive")]
    pub case_sensitive: Option<bool>,
    #[serde(default)]
    pub headers: Option<Vec<RawHeaderMatcher>>,
    #[serde(default, alias = "queryParameters")]
    pub query_parameters: Option<Vec<RawQueryParameterMatcher>>,
}

/// `envoy.type.matcher.v3.RegexMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RegexMatcher)")]
pub(crate) struct RawRegexMatcher {
    /// Deprecated in Envoy; accepted empty, as older configs write `google_re2: {}`.
    #[serde(default, alias = "googleRe2")]
    #[allow(dead_code)]
    pub google_re2: Option<RawGoogleRe2>,
    #[serde(default)]
    pub regex: Option<String>,
}

/// `RegexMatcher.GoogleRE2`, whose one field (`max_program_size`) zerohop does not take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s GoogleRE2)")]
pub(crate) struct RawGoogleRe2 {}

/// `envoy.config.route.v3.HeaderMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s HeaderMatcher)")]
pub(crate) struct RawHeaderMatcher {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "exactMatch")]
    pub exact_match: Option<String>,
    #[serde(default, alias = "safeRegexMatch")]
    pub safe_regex_match: Option<RawRegexMatcher>,
    #[serde(default, alias = "presentMatch")]
    pub present_match: Option<bool>,
    #[serde(default, alias = "prefixMatch")]
    pub prefix_match: Option<String>,
    #[serde(default, alias = "suffixMatch")]
    pub suffix_match: Option<String>,
    #[serde(default, alias = "containsMatch")]
    pub contains_match: Option<String>,
    #[serde(default, alias = "stringMatch")]
    pub string_match: Option<RawStringMatcher>,
    #[serde(default, alias = "invertMatch")]
    pub invert_match: Option<bool>,
    #[serde(default, alias = "treatMissingHeaderAsEmpty")]
    pub treat_missing_header_as_empty: Option<bool>,
}

/// `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s StringMatcher)")]
pub(crate) struct RawStringMatcher {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default, alias = "safeRegex")]
    pub safe_regex: Option<RawRegexMatcher>,
    #[serde(default, alias = "ignoreCase")]
    pub ignore_case: Option<bool>,
}

/// `envoy.config.route.v3.QueryParameterMatcher`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s QueryParameterMatcher)"
)]
pub(crate) struct RawQueryParameterMatcher {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "stringMatch")]
    pub string_match: Option<RawStringMatcher>,
    #[serde(default, alias = "presentMatch")]
    pub present_match: Option<bool>,
}

/// `envoy.config.route.v3.RouteAction`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RouteAction)")]
pub(crate) struct RawRouteAction {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default, alias = "weightedClusters")]
    pub weighted_clusters: Option<RawWeightedCluster>,
    /// Not supported; present so that its error can say what to use.
    #[serde(default, alias = "clusterHeader")]
    pub cluster_header: Option<IgnoredAny>,
    #[serde(default, alias = "prefixRewrite")]
    pub prefix_rewrite: Option<String>,
    #[serde(default, alias = "regexRewrite")]
    pub regex_rewrite: Option<RawRegexMatchAndSubstitute>,
    #[serde(default, alias = "hostRewriteLiteral")]
    pub host_rewrite_literal: Option<String>,
    #[serde(default, alias = "autoHostRewrite")]
    pub auto_host_rewrite: Option<bool>,
    #[serde(default)]
    pub timeout: Option<ProtoDuration>,
    #[serde(default, alias = "hashPolicy")]
    pub hash_policy: Option<Vec<RawHashPolicy>>,
}

/// `envoy.config.route.v3.WeightedCluster`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s WeightedCluster)"
)]
pub(crate) struct RawWeightedCluster {
    #[serde(default)]
    pub clusters: Option<Vec<RawClusterWeight>>,
    #[serde(default, alias = "totalWeight")]
    pub total_weight: Option<Unsigned>,
}

/// `WeightedCluster.ClusterWeight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s ClusterWeight)")]
pub(crate) struct RawClusterWeight {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub weight: Option<Unsigned>,
}

/// `envoy.type.matcher.v3.RegexMatchAndSubstitute`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s RegexMatchAndSubstitute)"
)]
pub(crate) struct RawRegexMatchAndSubstitute {
    #[serde(default)]
    pub pattern: Option<RawRegexMatcher>,
    #[serde(default)]
    pub substitution: Option<String>,
}

/// `RouteAction.HashPolicy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s HashPolicy)")]
pub(crate) struct RawHashPolicy {
    #[serde(default)]
    pub header: Option<RawHashHeader>,
    #[serde(default)]
    pub cookie: Option<RawHashCookie>,
    #[serde(default, alias = "connectionProperties")]
    pub connection_properties: Option<RawConnectionProperties>,
    #[serde(default, alias = "queryParameter")]
    pub query_parameter: Option<RawHashQueryParameter>,
    #[serde(default)]
    pub terminal: Option<bool>,
}

/// `HashPolicy.Header`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HashPolicy.Header)"
)]
pub(crate) struct RawHashHeader {
    #[serde(default, alias = "headerName")]
    pub header_name: Option<String>,
}

/// `HashPolicy.Cookie`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HashPolicy.Cookie)"
)]
pub(crate) struct RawHashCookie {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ttl: Option<ProtoDuration>,
    #[serde(default)]
    pub path: Option<String>,
}

/// `HashPolicy.ConnectionProperties`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HashPolicy.ConnectionProperties)"
)]
pub(crate) struct RawConnectionProperties {
    #[serde(default, alias = "sourceIp")]
    pub source_ip: Option<bool>,
}

/// `HashPolicy.QueryParameter`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HashPolicy.QueryParameter)"
)]
pub(crate) struct RawHashQueryParameter {
    #[serde(default)]
    pub name: Option<String>,
}

/// `envoy.config.route.v3.RedirectAction`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RedirectAction)")]
pub(crate) struct RawRedirectAction {
    #[serde(default, alias = "httpsRedirect")]
    pub https_redirect: Option<bool>,
    #[serde(default, alias = "schemeRedirect")]
    pub scheme_redirect: Option<String>,
    #[serde(default, alias = "hostRedirect")]
    pub host_redirect: Option<String>,
    #[serde(default, alias = "portRedirect")]
    pub port_redirect: Option<Unsigned>,
    #[serde(default, alias = "pathRedirect")]
    pub path_redirect: Option<String>,
    #[serde(default, alias = "prefixRewrite")]
    pub prefix_rewrite: Option<String>,
    #[serde(default, alias = "regexRewrite")]
    pub regex_rewrite: Option<RawRegexMatchAndSubstitute>,
    #[serde(default, alias = "responseCode")]
    pub response_code: Option<RedirectCodeName>,
    #[serde(default, alias = "stripQuery")]
    pub strip_query: Option<bool>,
}

/// `RedirectAction.RedirectResponseCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedirectCodeName {
    MovedPermanently,
    Found,
    SeeOther,
    TemporaryRedirect,
    PermanentRedirect,
}

impl<'de> Deserialize<'de> for RedirectCodeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "redirect response code",
            names: &[
                "MOVED_PERMANENTLY",
                "FOUND",
                "SEE_OTHER",
                "TEMPORARY_REDIRECT",
                "PERMANENT_REDIRECT",
            ],
        })?;
        Ok(match name {
            "FOUND" => RedirectCodeName::Found,
            "SEE_OTHER" => RedirectCodeName::SeeOther,
            "TEMPORARY_REDIRECT" => RedirectCodeName::TemporaryRedirect,
            "PERMANENT_REDIRECT" => RedirectCodeName::PermanentRedirect,
            _ => RedirectCodeName::MovedPermanently,
        })
    }
}

/// `envoy.config.route.v3.DirectResponseAction`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s DirectResponseAction)"
)]
pub(crate) struct RawDirectResponseAction {
    #[serde(default)]
    pub status: Option<Unsigned>,
    #[serde(default)]
    pub body: Option<RawDataSource>,
}

/// `envoy.config.core.v3.DataSource`: only its `inline_string` form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s DataSource)")]
pub(crate) struct RawDataSource {
    #[serde(default, alias = "inlineString")]
    pub inline_string: Option<String>,
    /// Not supported; present so that its error can say to use `inline_string`.
    #[serde(default)]
    pub filename: Option<IgnoredAny>,
    /// Not supported; present so that its error can say to use `inline_string`.
    #[serde(default, alias = "inlineBytes")]
    pub inline_bytes: Option<IgnoredAny>,
    /// Not supported; present so that its error can say to use `inline_string`.
    #[serde(default, alias = "environmentVariable")]
    pub environment_variable: Option<IgnoredAny>,
}
