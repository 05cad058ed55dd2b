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
    /// `@type` was not the first key (proto3 JSON allows it anywhere): the mapping is kept
    /// whole and dispatched by [`super::build`] once its type is known.
    Deferred(Mapping),
}

/// The network filters zerohop knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterType {
    TcpProxy,
}

/// Return the filter a `typed_config` type URL selects, or a message saying why none is.
pub(crate) fn filter_type(url: &str) -> Result<FilterType, String> {
    if url == TCP_PROXY_TYPE_URL {
        return Ok(FilterType::TcpProxy);
    }
    let supported = format!("zerohop supports only {TCP_PROXY_TYPE_URL} so far");
    let name = url.rsplit('/').next().unwrap_or(url);
    let reason = if name == "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy" {
        format!("a type URL starts with `type.googleapis.com/`; write {TCP_PROXY_TYPE_URL}")
    } else if name == "envoy.config.filter.network.tcp_proxy.v2.TcpProxy" {
        format!("this is the v2 API, which Envoy has removed; write {TCP_PROXY_TYPE_URL}")
    } else if name.ends_with(".TypedStruct") {
        format!(
            "TypedStruct wrappers are not supported; write the filter's config directly, \
             under \"@type\": {TCP_PROXY_TYPE_URL}"
        )
    } else if name.starts_with("envoy.extensions.filters.network.http_connection_manager.") {
        format!("HTTP is not supported yet; {supported}")
    } else if name.starts_with("envoy.extensions.filters.network.") {
        format!("this network filter is not supported yet; {supported}")
    } else {
        format!("this is not a network filter zerohop knows; {supported}")
    };
    Err(format!("unsupported filter type `{url}`: {reason}"))
}

impl<'de> Deserialize<'de> for RawTypedConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TypedConfigVisitor)
    }
}

struct TypedConfigVisitor;

impl<'de> Visitor<'de> for TypedConfigVisitor {
    type Value = RawTypedConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a mapping with an `@type` key, such as `\"@type\": {TCP_PROXY_TYPE_URL}`"
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTypedConfig, A::Error> {
        let Some(first) = map.next_key::<Value>()? else {
            return Ok(RawTypedConfig::Deferred(Mapping::new()));
        };
        if first.as_str() == Some(TYPE_KEY) {
            // An error in the seed or in the filter's fields is raised inside the map, so
            // the caller's path tracking names the exact key.
            return match map.next_value_seed(TypeUrlSeed)? {
                FilterType::TcpProxy => RawTcpProxy::deserialize(MapAccessDeserializer::new(map))
                    .map(RawTypedConfig::TcpProxy),
            };
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
        Ok(RawTypedConfig::Deferred(mapping))
    }
}

/// Reads an `@type` value and checks that zerohop supports it.
struct TypeUrlSeed;

impl<'de> DeserializeSeed<'de> for TypeUrlSeed {
    type Value = FilterType;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<FilterType, D::Error> {
        let url = String::deserialize(deserializer)?;
        filter_type(&url).map_err(de::Error::custom)
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
