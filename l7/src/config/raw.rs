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
    #[serde(default, alias = "accessLog")]
    pub access_log: Option<Vec<RawAccessLog>>,
}

/// The name of Envoy's file access logger.
pub const FILE_ACCESS_LOG_NAME: &str = "envoy.access_loggers.file";
/// The name of Envoy's stdout access logger.
pub const STDOUT_ACCESS_LOG_NAME: &str = "envoy.access_loggers.stdout";
/// The name of Envoy's stderr access logger.
pub const STDERR_ACCESS_LOG_NAME: &str = "envoy.access_loggers.stderr";

/// The type URL of the file access logger's config.
pub const FILE_ACCESS_LOG_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
/// The type URL of the stdout access logger's config.
pub const STDOUT_ACCESS_LOG_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
/// The type URL of the stderr access logger's config.
pub const STDERR_ACCESS_LOG_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

/// `envoy.config.accesslog.v3.AccessLog`, of an http_connection_manager or a tcp_proxy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s AccessLog)")]
pub(crate) struct RawAccessLog {
    /// An annotation when there is a `typed_config`; selects the logger without one.
    #[serde(default)]
    pub name: Option<String>,
    /// Not supported; present so that its error can say why.
    #[serde(default)]
    pub filter: Option<IgnoredAny>,
    #[serde(default, alias = "typedConfig")]
    pub typed_config: Option<RawAccessLogTypedConfig>,
}

/// An access logger's `typed_config`, dispatched on its `@type` as [`RawTypedConfig`] is.
#[derive(Debug)]
pub(crate) enum RawAccessLogTypedConfig {
    File(RawFileAccessLog),
    /// The stdout or the stderr logger (same fields).
    Stream(AccessLoggerType, RawStreamAccessLog),
    Deferred(Mapping),
}

/// The access loggers zerohop knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessLoggerType {
    File,
    Stdout,
    Stderr,
}

/// Return the access logger a `typed_config` type URL selects, or a message saying why
/// none is.
pub(crate) fn access_logger_type(url: &str) -> Result<AccessLoggerType, String> {
    match url {
        FILE_ACCESS_LOG_TYPE_URL => return Ok(AccessLoggerType::File),
        STDOUT_ACCESS_LOG_TYPE_URL => return Ok(AccessLoggerType::Stdout),
        STDERR_ACCESS_LOG_TYPE_URL => return Ok(AccessLoggerType::Stderr),
        _ => {}
    }
    let supported = format!(
        "zerohop supports {FILE_ACCESS_LOG_TYPE_URL}, {STDOUT_ACCESS_LOG_TYPE_URL} and \
         {STDERR_ACCESS_LOG_TYPE_URL} so far"
    );
    let name = url.rsplit('/').next().unwrap_or(url);
    let reason = if let Some(known) = [
        FILE_ACCESS_LOG_TYPE_URL,
        STDOUT_ACCESS_LOG_TYPE_URL,
        STDERR_ACCESS_LOG_TYPE_URL,
    ]
    .into_iter()
    .find(|known| known.strip_prefix("type.googleapis.com/") == Some(name))
    {
        format!("a type URL starts with `type.googleapis.com/`; write {known}")
    } else if name == "envoy.config.accesslog.v2.FileAccessLog" {
        format!("this is the v2 API, which Envoy has removed; write {FILE_ACCESS_LOG_TYPE_URL}")
    } else if name.starts_with("envoy.extensions.access_loggers.") {
        format!("this access logger is not supported yet; {supported}")
    } else {
        format!("this is not an access logger zerohop knows; {supported}")
    };
    Err(format!("unsupported access logger type `{url}`: {reason}"))
}

impl TypedConfig for RawAccessLogTypedConfig {
    type Kind = AccessLoggerType;
    const EXPECTING: &'static str =
        "a mapping with an `@type` key, such as `\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog`";

    fn kind(url: &str) -> Result<AccessLoggerType, String> {
        access_logger_type(url)
    }

    fn read<'de, A: MapAccess<'de>>(kind: AccessLoggerType, map: A) -> Result<Self, A::Error> {
        let map = MapAccessDeserializer::new(map);
        match kind {
            AccessLoggerType::File => {
                RawFileAccessLog::deserialize(map).map(RawAccessLogTypedConfig::File)
            }
            stream => RawStreamAccessLog::deserialize(map)
                .map(|raw| RawAccessLogTypedConfig::Stream(stream, raw)),
        }
    }

    fn deferred(mapping: Mapping) -> Self {
        RawAccessLogTypedConfig::Deferred(mapping)
    }
}

impl<'de> Deserialize<'de> for RawAccessLogTypedConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TypedConfigVisitor::<RawAccessLogTypedConfig>(PhantomData))
    }
}

/// `envoy.extensions.access_loggers.file.v3.FileAccessLog`, without its `@type`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s FileAccessLog)")]
pub(crate) struct RawFileAccessLog {
    #[serde(default)]
    pub path: Option<String>,
    /// Deprecated in Envoy v3 in favour of `log_format`, still honoured.
    #[serde(default)]
    pub format: Option<String>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "jsonFormat")]
    pub json_format: Option<IgnoredAny>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "typedJsonFormat")]
    pub typed_json_format: Option<IgnoredAny>,
    #[serde(default, alias = "logFormat")]
    pub log_format: Option<RawSubstitutionFormatString>,
}

/// `envoy.extensions.access_loggers.stream.v3.StdoutAccessLog` (or `StderrAccessLog`),
/// without its `@type`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s StdoutAccessLog)"
)]
pub(crate) struct RawStreamAccessLog {
    #[serde(default, alias = "logFormat")]
    pub log_format: Option<RawSubstitutionFormatString>,
}

/// `envoy.config.core.v3.SubstitutionFormatString`: text formats only. `content_type`
/// and `json_format_options` are not supported: unknown fields.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s SubstitutionFormatString)"
)]
pub(crate) struct RawSubstitutionFormatString {
    /// Deprecated in Envoy v3 in favour of `text_format_source`, still honoured.
    #[serde(default, alias = "textFormat")]
    pub text_format: Option<String>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "jsonFormat")]
    pub json_format: Option<IgnoredAny>,
    #[serde(default, alias = "textFormatSource")]
    pub text_format_source: Option<RawDataSource>,
    /// `false` only; present so that `true` can say why.
    #[serde(default, alias = "omitEmptyValues")]
    pub omit_empty_values: Option<bool>,
    /// Not supported; present so that its error can say why.
    #[serde(default)]
    pub formatters: Option<IgnoredAny>,
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
    #[serde(default, alias = "ringHashLbConfig")]
    pub ring_hash_lb_config: Option<RawRingHashLbConfig>,
    #[serde(default, alias = "loadAssignment")]
    pub load_assignment: Option<RawLoadAssignment>,
    #[serde(default, alias = "leastRequestLbConfig")]
    pub least_request_lb_config: Option<RawLeastRequestLbConfig>,
    #[serde(default, alias = "loadBalancingPolicy")]
    pub load_balancing_policy: Option<RawLoadBalancingPolicy>,
    #[serde(default, alias = "maglevLbConfig")]
    pub maglev_lb_config: Option<RawMaglevLbConfig>,
    /// Deprecated in Envoy v3 in favour of the HTTP protocol options, still honoured.
    #[serde(default, alias = "maxRequestsPerConnection")]
    pub max_requests_per_connection: Option<Unsigned>,
    #[serde(default, alias = "typedExtensionProtocolOptions")]
    pub typed_extension_protocol_options: Option<RawTypedExtensionProtocolOptions>,
    #[serde(default, alias = "healthChecks")]
    pub health_checks: Option<Vec<RawHealthCheck>>,
    #[serde(default, alias = "circuitBreakers")]
    pub circuit_breakers: Option<RawCircuitBreakers>,
    #[serde(default, alias = "outlierDetection")]
    pub outlier_detection: Option<RawOutlierDetection>,
    #[serde(default, alias = "commonLbConfig")]
    pub common_lb_config: Option<RawCommonLbConfig>,
}

/// The key of the HTTP upstream protocol options in a cluster's
/// `typed_extension_protocol_options` (the extension's name, as Envoy's docs write it).
pub const HTTP_PROTOCOL_OPTIONS_KEY: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The type URL of the HTTP upstream protocol options.
pub const HTTP_PROTOCOL_OPTIONS_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// `Cluster.typed_extension_protocol_options`: a map from an extension's name to its
/// options (a `google.protobuf.Any`). zerohop knows one key,
/// [`HTTP_PROTOCOL_OPTIONS_KEY`]; any other is an error at that key.
#[derive(Debug, Default)]
pub(crate) struct RawTypedExtensionProtocolOptions {
    /// The value under [`HTTP_PROTOCOL_OPTIONS_KEY`].
    pub http: Option<RawProtocolOptionsTypedConfig>,
}

impl<'de> Deserialize<'de> for RawTypedExtensionProtocolOptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ProtocolOptionsVisitor)
    }
}

struct ProtocolOptionsVisitor;

impl<'de> Visitor<'de> for ProtocolOptionsVisitor {
    type Value = RawTypedExtensionProtocolOptions;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a mapping from an extension name to its options, such as `{HTTP_PROTOCOL_OPTIONS_KEY}: {{ \"@type\": {HTTP_PROTOCOL_OPTIONS_TYPE_URL}, ... }}`"
        )
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<RawTypedExtensionProtocolOptions, A::Error> {
        let mut options = RawTypedExtensionProtocolOptions::default();
        while let Some(key) = map.next_key::<String>()? {
            if key != HTTP_PROTOCOL_OPTIONS_KEY {
                // Raised inside the value, so that the path names the key.
                return map.next_value_seed(UnsupportedProtocolOptions(key));
            }
            if options.http.is_some() {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            options.http = Some(map.next_value()?);
        }
        Ok(options)
    }
}

/// Skips the value under a `typed_extension_protocol_options` key zerohop does not know,
/// and says why it is not supported.
struct UnsupportedProtocolOptions(String);

impl<'de> DeserializeSeed<'de> for UnsupportedProtocolOptions {
    type Value = RawTypedExtensionProtocolOptions;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<RawTypedExtensionProtocolOptions, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        let key = self.0;
        let reason = if key.ends_with(".TcpProtocolOptions") {
            "TCP protocol options are for a tcp_proxy's upstream connections, which zerohop \
             does not pool"
        } else if key.starts_with("envoy.extensions.upstreams.http.") {
            "zerohop reads only the v3 HTTP upstream protocol options"
        } else {
            "these are not protocol options zerohop knows"
        };
        Err(de::Error::custom(format!(
            "unsupported protocol options `{key}`: {reason}; zerohop supports only \
             `{HTTP_PROTOCOL_OPTIONS_KEY}` (with \"@type\": {HTTP_PROTOCOL_OPTIONS_TYPE_URL}) \
             so far"
        )))
    }
}

/// The HTTP upstream protocol options, dispatched on their `@type` as [`RawTypedConfig`]
/// is.
#[derive(Debug)]
pub(crate) enum RawProtocolOptionsTypedConfig {
    Http(RawHttpUpstreamProtocolOptions),
    Deferred(Mapping),
}

/// Check the `@type` of the HTTP upstream protocol options; return a message saying why
/// it will not do.
pub(crate) fn protocol_options_type(url: &str) -> Result<(), String> {
    if url == HTTP_PROTOCOL_OPTIONS_TYPE_URL {
        return Ok(());
    }
    let reason = if Some(url) == HTTP_PROTOCOL_OPTIONS_TYPE_URL.strip_prefix("type.googleapis.com/")
    {
        "a type URL starts with `type.googleapis.com/`".to_owned()
    } else {
        format!("the options under `{HTTP_PROTOCOL_OPTIONS_KEY}` must be of that type")
    };
    Err(format!(
        "unsupported protocol options type `{url}`: {reason}; write \"@type\": \
         {HTTP_PROTOCOL_OPTIONS_TYPE_URL}"
    ))
}

impl TypedConfig for RawProtocolOptionsTypedConfig {
    type Kind = ();
    const EXPECTING: &'static str =
        "a mapping with an `@type` key: `\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions`";

    fn kind(url: &str) -> Result<(), String> {
        protocol_options_type(url)
    }

    fn read<'de, A: MapAccess<'de>>(_kind: (), map: A) -> Result<Self, A::Error> {
        RawHttpUpstreamProtocolOptions::deserialize(MapAccessDeserializer::new(map))
            .map(RawProtocolOptionsTypedConfig::Http)
    }

    fn deferred(mapping: Mapping) -> Self {
        RawProtocolOptionsTypedConfig::Deferred(mapping)
    }
}

impl<'de> Deserialize<'de> for RawProtocolOptionsTypedConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TypedConfigVisitor::<RawProtocolOptionsTypedConfig>(
            PhantomData,
        ))
    }
}

/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`, without its `@type`.
/// `upstream_http_protocol_options` (TLS's SNI), `http_filters` (upstream filters) and
/// `header_validation_config` are not supported: unknown fields.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s upstreams HttpProtocolOptions)"
)]
pub(crate) struct RawHttpUpstreamProtocolOptions {
    #[serde(default, alias = "commonHttpProtocolOptions")]
    pub common_http_protocol_options: Option<RawUpstreamCommonHttpProtocolOptions>,
    #[serde(default, alias = "explicitHttpConfig")]
    pub explicit_http_config: Option<RawExplicitHttpConfig>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "useDownstreamProtocolConfig")]
    pub use_downstream_protocol_config: Option<IgnoredAny>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "autoConfig")]
    pub auto_config: Option<IgnoredAny>,
}

/// `envoy.config.core.v3.HttpProtocolOptions` of an upstream (a cluster's
/// `common_http_protocol_options`), limited to `idle_timeout` and
/// `max_requests_per_connection`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HttpProtocolOptions)"
)]
pub(crate) struct RawUpstreamCommonHttpProtocolOptions {
    #[serde(default, alias = "idleTimeout")]
    pub idle_timeout: Option<ProtoDuration>,
    #[serde(default, alias = "maxRequestsPerConnection")]
    pub max_requests_per_connection: Option<Unsigned>,
}

/// `HttpProtocolOptions.ExplicitHttpConfig`: HTTP/1.1 only.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s ExplicitHttpConfig)"
)]
pub(crate) struct RawExplicitHttpConfig {
    #[serde(default, alias = "httpProtocolOptions")]
    pub http_protocol_options: Option<RawHttp1ProtocolOptions>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "http2ProtocolOptions")]
    pub http2_protocol_options: Option<IgnoredAny>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "http3ProtocolOptions")]
    pub http3_protocol_options: Option<IgnoredAny>,
}

/// `envoy.config.core.v3.Http1ProtocolOptions` of an upstream: none of its fields is
/// supported yet, so it is accepted empty only.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s Http1ProtocolOptions)"
)]
pub(crate) struct RawHttp1ProtocolOptions {}

/// `envoy.config.core.v3.HealthCheck`. `reuse_connection` (zerohop opens a fresh
/// connection for each check), `alt_port`, `no_traffic_healthy_interval`,
/// `event_log_path`, `transport_socket_match_criteria` and the rest are not supported:
/// unknown fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s HealthCheck)")]
pub(crate) struct RawHealthCheck {
    #[serde(default)]
    pub timeout: Option<ProtoDuration>,
    #[serde(default)]
    pub interval: Option<ProtoDuration>,
    #[serde(default, alias = "initialJitter")]
    pub initial_jitter: Option<ProtoDuration>,
    #[serde(default, alias = "intervalJitter")]
    pub interval_jitter: Option<ProtoDuration>,
    #[serde(default, alias = "intervalJitterPercent")]
    pub interval_jitter_percent: Option<Unsigned>,
    #[serde(default, alias = "unhealthyThreshold")]
    pub unhealthy_threshold: Option<Unsigned>,
    #[serde(default, alias = "healthyThreshold")]
    pub healthy_threshold: Option<Unsigned>,
    #[serde(default, alias = "httpHealthCheck")]
    pub http_health_check: Option<RawHttpHealthCheck>,
    #[serde(default, alias = "tcpHealthCheck")]
    pub tcp_health_check: Option<RawTcpHealthCheck>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "grpcHealthCheck")]
    pub grpc_health_check: Option<IgnoredAny>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "customHealthCheck")]
    pub custom_health_check: Option<IgnoredAny>,
    #[serde(default, alias = "noTrafficInterval")]
    pub no_traffic_interval: Option<ProtoDuration>,
    #[serde(default, alias = "unhealthyInterval")]
    pub unhealthy_interval: Option<ProtoDuration>,
    #[serde(default, alias = "unhealthyEdgeInterval")]
    pub unhealthy_edge_interval: Option<ProtoDuration>,
    #[serde(default, alias = "healthyEdgeInterval")]
    pub healthy_edge_interval: Option<ProtoDuration>,
}

/// `HealthCheck.HttpHealthCheck`. `send`, `receive`, `request_headers_to_remove`,
/// `retriable_statuses`, `service_name_matcher` and `response_buffer_size` are not
/// supported: unknown fields.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HttpHealthCheck)"
)]
pub(crate) struct RawHttpHealthCheck {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, alias = "requestHeadersToAdd")]
    pub request_headers_to_add: Option<Vec<RawHealthCheckHeader>>,
    #[serde(default, alias = "expectedStatuses")]
    pub expected_statuses: Option<Vec<RawInt64Range>>,
    /// Always HTTP1: the deserializer rejects the others.
    #[serde(default, alias = "codecClientType")]
    #[allow(dead_code)]
    pub codec_client_type: Option<CodecClientTypeName>,
    #[serde(default)]
    pub method: Option<RequestMethodName>,
}

/// `envoy.config.core.v3.HeaderValueOption` of a health check request, limited to its
/// `header`: the request starts with no headers of the user's, so there is nothing to
/// append to or overwrite.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HeaderValueOption)"
)]
pub(crate) struct RawHealthCheckHeader {
    #[serde(default)]
    pub header: Option<RawHeaderValue>,
}

/// `envoy.type.v3.Int64Range`: `[start, end)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Int64Range)")]
pub(crate) struct RawInt64Range {
    #[serde(default)]
    pub start: Option<Signed>,
    #[serde(default)]
    pub end: Option<Signed>,
}

/// `envoy.type.v3.CodecClientType`, of which zerohop supports HTTP1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodecClientTypeName;

impl<'de> Deserialize<'de> for CodecClientTypeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "codec client type",
            names: &["HTTP1", "HTTP2", "HTTP3"],
        })?;
        if name == "HTTP1" {
            return Ok(CodecClientTypeName);
        }
        Err(de::Error::custom(format!(
            "codec client type {name} is not supported: zerohop's health checks speak \
             HTTP/1.1; write `codec_client_type: HTTP1`, or leave it out"
        )))
    }
}

/// `envoy.config.core.v3.RequestMethod` of a health check: the method's name
/// (`METHOD_UNSPECIFIED` is GET, as in Envoy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestMethodName(pub &'static str);

impl<'de> Deserialize<'de> for RequestMethodName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "request method",
            names: &[
                "METHOD_UNSPECIFIED",
                "GET",
                "HEAD",
                "POST",
                "PUT",
                "DELETE",
                "CONNECT",
                "OPTIONS",
                "TRACE",
                "PATCH",
            ],
        })?;
        match name {
            "METHOD_UNSPECIFIED" => Ok(RequestMethodName("GET")),
            "CONNECT" => Err(de::Error::custom(
                "method CONNECT cannot be used for a health check (Envoy rejects it too); \
                 use GET (the default), HEAD, POST, PUT, DELETE, OPTIONS, TRACE or PATCH",
            )),
            name => Ok(RequestMethodName(name)),
        }
    }
}

/// `HealthCheck.TcpHealthCheck`. `proxy_protocol_config` is not supported: an unknown
/// field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s TcpHealthCheck)")]
pub(crate) struct RawTcpHealthCheck {
    #[serde(default)]
    pub send: Option<RawPayload>,
    #[serde(default)]
    pub receive: Option<Vec<RawPayload>>,
}

/// `HealthCheck.Payload`: `text` (hex) or `binary` (base64, as proto3 JSON writes
/// bytes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Payload)")]
pub(crate) struct RawPayload {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub binary: Option<String>,
}

/// `envoy.config.cluster.v3.OutlierDetection`. zerohop has the consecutive-failure
/// detectors only; the success rate and failure percentage fields are here so that
/// their errors can say so. `max_ejection_time_jitter`,
/// `successful_active_health_check_uneject_host`, `always_eject_one_host`,
/// `detect_degraded_hosts` and `monitors` are not supported: unknown fields.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s OutlierDetection)"
)]
pub(crate) struct RawOutlierDetection {
    #[serde(default, alias = "consecutive5xx")]
    pub consecutive_5xx: Option<Unsigned>,
    #[serde(default)]
    pub interval: Option<ProtoDuration>,
    #[serde(default, alias = "baseEjectionTime")]
    pub base_ejection_time: Option<ProtoDuration>,
    #[serde(default, alias = "maxEjectionPercent")]
    pub max_ejection_percent: Option<Unsigned>,
    #[serde(default, alias = "enforcingConsecutive5xx")]
    pub enforcing_consecutive_5xx: Option<Unsigned>,
    /// Accepted at 0 only (the detector off).
    #[serde(default, alias = "enforcingSuccessRate")]
    pub enforcing_success_rate: Option<Unsigned>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "successRateMinimumHosts")]
    pub success_rate_minimum_hosts: Option<IgnoredAny>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "successRateRequestVolume")]
    pub success_rate_request_volume: Option<IgnoredAny>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "successRateStdevFactor")]
    pub success_rate_stdev_factor: Option<IgnoredAny>,
    #[serde(default, alias = "consecutiveGatewayFailure")]
    pub consecutive_gateway_failure: Option<Unsigned>,
    #[serde(default, alias = "enforcingConsecutiveGatewayFailure")]
    pub enforcing_consecutive_gateway_failure: Option<Unsigned>,
    #[serde(default, alias = "splitExternalLocalOriginErrors")]
    pub split_external_local_origin_errors: Option<bool>,
    #[serde(default, alias = "consecutiveLocalOriginFailure")]
    pub consecutive_local_origin_failure: Option<Unsigned>,
    #[serde(default, alias = "enforcingConsecutiveLocalOriginFailure")]
    pub enforcing_consecutive_local_origin_failure: Option<Unsigned>,
    /// Accepted at 0 only (the detector off).
    #[serde(default, alias = "enforcingLocalOriginSuccessRate")]
    pub enforcing_local_origin_success_rate: Option<Unsigned>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "failurePercentageThreshold")]
    pub failure_percentage_threshold: Option<IgnoredAny>,
    /// Accepted at 0 only (the detector off, Envoy's default).
    #[serde(default, alias = "enforcingFailurePercentage")]
    pub enforcing_failure_percentage: Option<Unsigned>,
    /// Accepted at 0 only (the detector off, Envoy's default).
    #[serde(default, alias = "enforcingFailurePercentageLocalOrigin")]
    pub enforcing_failure_percentage_local_origin: Option<Unsigned>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "failurePercentageMinimumHosts")]
    pub failure_percentage_minimum_hosts: Option<IgnoredAny>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "failurePercentageRequestVolume")]
    pub failure_percentage_request_volume: Option<IgnoredAny>,
    #[serde(default, alias = "maxEjectionTime")]
    pub max_ejection_time: Option<ProtoDuration>,
}

/// `envoy.config.cluster.v3.CircuitBreakers`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s CircuitBreakers)"
)]
pub(crate) struct RawCircuitBreakers {
    #[serde(default)]
    pub thresholds: Option<Vec<RawThresholds>>,
    /// Not supported; present so that its error can say why.
    #[serde(default, alias = "perHostThresholds")]
    pub per_host_thresholds: Option<IgnoredAny>,
}

/// `CircuitBreakers.Thresholds`. `max_connection_pools` is not supported: an unknown
/// field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Thresholds)")]
pub(crate) struct RawThresholds {
    #[serde(default)]
    pub priority: Option<RoutingPriorityName>,
    #[serde(default, alias = "maxConnections")]
    pub max_connections: Option<Unsigned>,
    #[serde(default, alias = "maxPendingRequests")]
    pub max_pending_requests: Option<Unsigned>,
    #[serde(default, alias = "maxRequests")]
    pub max_requests: Option<Unsigned>,
    #[serde(default, alias = "maxRetries")]
    pub max_retries: Option<Unsigned>,
    #[serde(default, alias = "retryBudget")]
    pub retry_budget: Option<RawRetryBudget>,
    /// Only adds `remaining_*` gauges in Envoy; zerohop has none, so no effect.
    #[serde(default, alias = "trackRemaining")]
    #[allow(dead_code)]
    pub track_remaining: Option<bool>,
}

/// `envoy.config.core.v3.RoutingPriority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoutingPriorityName {
    Default,
    High,
}

impl RoutingPriorityName {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RoutingPriorityName::Default => "DEFAULT",
            RoutingPriorityName::High => "HIGH",
        }
    }
}

impl<'de> Deserialize<'de> for RoutingPriorityName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "routing priority",
            names: &["DEFAULT", "HIGH"],
        })?;
        Ok(if name == "HIGH" {
            RoutingPriorityName::High
        } else {
            RoutingPriorityName::Default
        })
    }
}

/// `CircuitBreakers.Thresholds.RetryBudget`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RetryBudget)")]
pub(crate) struct RawRetryBudget {
    #[serde(default, alias = "budgetPercent")]
    pub budget_percent: Option<RawPercent>,
    #[serde(default, alias = "minRetryConcurrency")]
    pub min_retry_concurrency: Option<Unsigned>,
}

/// `envoy.type.v3.Percent`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Percent)")]
pub(crate) struct RawPercent {
    #[serde(default)]
    pub value: Option<Double>,
}

/// `Cluster.CommonLbConfig`, limited to `healthy_panic_threshold`: zone aware and
/// locality weighted balancing, `update_merge_window` and the rest are unknown fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s CommonLbConfig)")]
pub(crate) struct RawCommonLbConfig {
    #[serde(default, alias = "healthyPanicThreshold")]
    pub healthy_panic_threshold: Option<RawPercent>,
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
    RingHash,
    Random,
    Maglev,
    /// Envoy then reads `load_balancing_policy`.
    LoadBalancingPolicyConfig,
}

impl LbPolicyName {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LbPolicyName::RoundRobin => "ROUND_ROBIN",
            LbPolicyName::LeastRequest => "LEAST_REQUEST",
            LbPolicyName::RingHash => "RING_HASH",
            LbPolicyName::Random => "RANDOM",
            LbPolicyName::Maglev => "MAGLEV",
            LbPolicyName::LoadBalancingPolicyConfig => "LOAD_BALANCING_POLICY_CONFIG",
        }
    }
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
            "RING_HASH" => Ok(LbPolicyName::RingHash),
            "RANDOM" => Ok(LbPolicyName::Random),
            "MAGLEV" => Ok(LbPolicyName::Maglev),
            "LOAD_BALANCING_POLICY_CONFIG" => Ok(LbPolicyName::LoadBalancingPolicyConfig),
            other => Err(de::Error::custom(format!(
                "load balancing policy {other} is not supported: it is for cluster types that \
                 bring their own load balancer, and zerohop has only STATIC clusters; use \
                 ROUND_ROBIN (the default), LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV"
            ))),
        }
    }
}

/// `Cluster.RingHashLbConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s RingHashLbConfig)"
)]
pub(crate) struct RawRingHashLbConfig {
    #[serde(default, alias = "minimumRingSize")]
    pub minimum_ring_size: Option<Unsigned>,
    /// Always XX_HASH: the deserializer rejects MURMUR_HASH_2.
    #[serde(default, alias = "hashFunction")]
    #[allow(dead_code)]
    pub hash_function: Option<LegacyHashFunction>,
    #[serde(default, alias = "maximumRingSize")]
    pub maximum_ring_size: Option<Unsigned>,
}

/// `Cluster.RingHashLbConfig.HashFunction`, of which zerohop supports XX_HASH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LegacyHashFunction;

impl<'de> Deserialize<'de> for LegacyHashFunction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "hash function",
            names: &["XX_HASH", "MURMUR_HASH_2"],
        })?;
        xx_hash_only(name).map(|()| LegacyHashFunction)
    }
}

/// `extensions.load_balancing_policies.ring_hash.v3.RingHash.HashFunction`, of which
/// zerohop supports DEFAULT_HASH and XX_HASH (both xxHash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingHashFunction;

impl<'de> Deserialize<'de> for RingHashFunction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "hash function",
            names: &["DEFAULT_HASH", "XX_HASH", "MURMUR_HASH_2"],
        })?;
        xx_hash_only(name).map(|()| RingHashFunction)
    }
}

fn xx_hash_only<E: de::Error>(name: &str) -> Result<(), E> {
    if name == "MURMUR_HASH_2" {
        return Err(E::custom(
            "hash function MURMUR_HASH_2 is not supported: zerohop places hosts on the ring \
             with xxHash (XX_HASH, Envoy's default); remove `hash_function`",
        ));
    }
    Ok(())
}

/// `Cluster.MaglevLbConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s MaglevLbConfig)")]
pub(crate) struct RawMaglevLbConfig {
    #[serde(default, alias = "tableSize")]
    pub table_size: Option<Unsigned>,
}

/// `Cluster.LeastRequestLbConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s LeastRequestLbConfig)"
)]
pub(crate) struct RawLeastRequestLbConfig {
    #[serde(default, alias = "choiceCount")]
    pub choice_count: Option<Unsigned>,
}

/// `envoy.config.cluster.v3.LoadBalancingPolicy`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s LoadBalancingPolicy)"
)]
pub(crate) struct RawLoadBalancingPolicy {
    #[serde(default)]
    pub policies: Option<Vec<RawLbPolicy>>,
}

/// `LoadBalancingPolicy.Policy`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s LoadBalancingPolicy.Policy)"
)]
pub(crate) struct RawLbPolicy {
    #[serde(default, alias = "typedExtensionConfig")]
    pub typed_extension_config: Option<RawLbExtensionConfig>,
}

/// `envoy.config.core.v3.TypedExtensionConfig` of a load balancing policy.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s TypedExtensionConfig)"
)]
pub(crate) struct RawLbExtensionConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "typedConfig")]
    pub typed_config: Option<RawLbTypedConfig>,
}

/// The type URL of the `envoy.load_balancing_policies.round_robin` extension.
pub const ROUND_ROBIN_LB_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
/// The type URL of the `envoy.load_balancing_policies.least_request` extension.
pub const LEAST_REQUEST_LB_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";
/// The type URL of the `envoy.load_balancing_policies.random` extension.
pub const RANDOM_LB_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.random.v3.Random";
/// The type URL of the `envoy.load_balancing_policies.ring_hash` extension.
pub const RING_HASH_LB_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash";
/// The type URL of the `envoy.load_balancing_policies.maglev` extension.
pub const MAGLEV_LB_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev";
/// The type URL of Envoy's contrib `envoy.load_balancing_policies.peak_ewma` extension.
pub const PEAK_EWMA_LB_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma";

/// The load balancing policy extensions zerohop knows, and any other (by type URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LbExtensionType {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
    PeakEwma,
    /// Not one zerohop knows. Envoy takes the first policy it knows, so this is an error
    /// only as the first entry of `policies`; later ones are never used.
    Other(String),
}

/// Return the extension a `typed_config` type URL selects.
pub(crate) fn lb_extension_type(url: &str) -> LbExtensionType {
    match url {
        ROUND_ROBIN_LB_TYPE_URL => LbExtensionType::RoundRobin,
        LEAST_REQUEST_LB_TYPE_URL => LbExtensionType::LeastRequest,
        RANDOM_LB_TYPE_URL => LbExtensionType::Random,
        RING_HASH_LB_TYPE_URL => LbExtensionType::RingHash,
        MAGLEV_LB_TYPE_URL => LbExtensionType::Maglev,
        PEAK_EWMA_LB_TYPE_URL => LbExtensionType::PeakEwma,
        other => LbExtensionType::Other(other.to_owned()),
    }
}

/// Say why zerohop cannot use the load balancing policy extension `url`.
pub(crate) fn unsupported_lb_extension(url: &str) -> String {
    let known = [
        ROUND_ROBIN_LB_TYPE_URL,
        LEAST_REQUEST_LB_TYPE_URL,
        RANDOM_LB_TYPE_URL,
        RING_HASH_LB_TYPE_URL,
        MAGLEV_LB_TYPE_URL,
        PEAK_EWMA_LB_TYPE_URL,
    ];
    let name = url.rsplit('/').next().unwrap_or(url);
    let reason = if let Some(known) = known
        .iter()
        .find(|known| known.strip_prefix("type.googleapis.com/") == Some(name))
    {
        format!("a type URL starts with `type.googleapis.com/`; write {known}")
    } else if name.starts_with("envoy.extensions.load_balancing_policies.") {
        "this load balancing policy is not supported yet".to_owned()
    } else {
        "this is not a load balancing policy zerohop knows".to_owned()
    };
    format!(
        "unsupported load balancing policy type `{url}`: {reason}. Envoy uses the first \
         policy of the list that it knows, so zerohop needs that one to be one of its own: \
         round_robin, least_request, random, ring_hash, maglev or peak_ewma (type URLs \
         type.googleapis.com/envoy.extensions.load_balancing_policies.<name>.v3.<Name>, \
         peak_ewma's .v3alpha.PeakEwma)"
    )
}

/// A load balancing policy's `typed_config`, dispatched on its `@type` as
/// [`RawTypedConfig`] is.
#[derive(Debug)]
pub(crate) enum RawLbTypedConfig {
    RoundRobin(RawRoundRobinLb),
    LeastRequest(RawLeastRequestLb),
    Random(RawRandomLb),
    RingHash(RawRingHashLb),
    Maglev(RawMaglevLb),
    PeakEwma(RawPeakEwmaLb),
    /// An extension zerohop does not know: its fields are skipped.
    Other(String),
    Deferred(Mapping),
}

impl RawLbTypedConfig {
    /// Read the fields of a `typed_config` whose `@type` selected `kind`.
    pub(crate) fn read_from<'de, D: Deserializer<'de>>(
        kind: LbExtensionType,
        deserializer: D,
    ) -> Result<Self, D::Error> {
        Ok(match kind {
            LbExtensionType::RoundRobin => {
                RawLbTypedConfig::RoundRobin(RawRoundRobinLb::deserialize(deserializer)?)
            }
            LbExtensionType::LeastRequest => {
                RawLbTypedConfig::LeastRequest(RawLeastRequestLb::deserialize(deserializer)?)
            }
            LbExtensionType::Random => {
                RawLbTypedConfig::Random(RawRandomLb::deserialize(deserializer)?)
            }
            LbExtensionType::RingHash => {
                RawLbTypedConfig::RingHash(RawRingHashLb::deserialize(deserializer)?)
            }
            LbExtensionType::Maglev => {
                RawLbTypedConfig::Maglev(RawMaglevLb::deserialize(deserializer)?)
            }
            LbExtensionType::PeakEwma => {
                RawLbTypedConfig::PeakEwma(RawPeakEwmaLb::deserialize(deserializer)?)
            }
            LbExtensionType::Other(url) => {
                IgnoredAny::deserialize(deserializer)?;
                RawLbTypedConfig::Other(url)
            }
        })
    }
}

impl TypedConfig for RawLbTypedConfig {
    type Kind = LbExtensionType;
    const EXPECTING: &'static str =
        "a mapping with an `@type` key, such as `\"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash`";

    fn kind(url: &str) -> Result<LbExtensionType, String> {
        Ok(lb_extension_type(url))
    }

    fn read<'de, A: MapAccess<'de>>(kind: LbExtensionType, map: A) -> Result<Self, A::Error> {
        RawLbTypedConfig::read_from(kind, MapAccessDeserializer::new(map))
    }

    fn deferred(mapping: Mapping) -> Self {
        RawLbTypedConfig::Deferred(mapping)
    }
}

impl<'de> Deserialize<'de> for RawLbTypedConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TypedConfigVisitor::<RawLbTypedConfig>(PhantomData))
    }
}

/// `extensions.load_balancing_policies.round_robin.v3.RoundRobin`: none of its fields
/// (`slow_start_config`, `locality_lb_config`) is supported.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RoundRobin)")]
pub(crate) struct RawRoundRobinLb {}

/// `extensions.load_balancing_policies.least_request.v3.LeastRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s LeastRequest)")]
pub(crate) struct RawLeastRequestLb {
    #[serde(default, alias = "choiceCount")]
    pub choice_count: Option<Unsigned>,
}

/// `extensions.load_balancing_policies.random.v3.Random`: its one field
/// (`locality_lb_config`) is not supported.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Random)")]
pub(crate) struct RawRandomLb {}

/// `extensions.load_balancing_policies.ring_hash.v3.RingHash`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RingHash)")]
pub(crate) struct RawRingHashLb {
    /// Always xxHash: the deserializer rejects MURMUR_HASH_2.
    #[serde(default, alias = "hashFunction")]
    #[allow(dead_code)]
    pub hash_function: Option<RingHashFunction>,
    #[serde(default, alias = "minimumRingSize")]
    pub minimum_ring_size: Option<Unsigned>,
    #[serde(default, alias = "maximumRingSize")]
    pub maximum_ring_size: Option<Unsigned>,
}

/// `extensions.load_balancing_policies.maglev.v3.Maglev`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Maglev)")]
pub(crate) struct RawMaglevLb {
    #[serde(default, alias = "tableSize")]
    pub table_size: Option<Unsigned>,
}

/// `extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma` (Envoy contrib).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s PeakEwma)")]
pub(crate) struct RawPeakEwmaLb {
    #[serde(default, alias = "decayTime")]
    pub decay_time: Option<ProtoDuration>,
    /// How often Envoy merges the workers' samples; zerohop's workers each keep their
    /// own estimate, updated at every sample, so it has no effect.
    #[serde(default, alias = "aggregationInterval")]
    #[allow(dead_code)]
    pub aggregation_interval: Option<ProtoDuration>,
    /// The size of Envoy's per-worker sample buffer; zerohop has none, so no effect.
    #[serde(default, alias = "maxSamplesPerHost")]
    #[allow(dead_code)]
    pub max_samples_per_host: Option<Unsigned>,
    #[serde(default, alias = "defaultRtt")]
    pub default_rtt: Option<ProtoDuration>,
    #[serde(default, alias = "penaltyValue")]
    pub penalty_value: Option<Double>,
}

/// A proto3 JSON `double`: a number, or a string holding one (`"1e6"`, `"NaN"`,
/// `"Infinity"`, `"-Infinity"`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Double(pub f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DoubleVisitor)
    }
}

struct DoubleVisitor;

impl Visitor<'_> for DoubleVisitor {
    type Value = Double;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Double, E> {
        Ok(Double(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Double, E> {
        Ok(Double(value as f64))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Double, E> {
        Ok(Double(value as f64))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Double, E> {
        match value {
            "NaN" => Ok(Double(f64::NAN)),
            "Infinity" => Ok(Double(f64::INFINITY)),
            "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
            _ => value
                .parse()
                .ok()
                .filter(|_| !value.is_empty() && !value.contains(char::is_whitespace))
                .filter(|_| value.bytes().any(|b| b.is_ascii_digit()))
                .map(Double)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(value), &self)),
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

/// A proto `int64` as Envoy's JSON parser takes it: a number, or a string of digits
/// with an optional `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signed(pub i64);

impl<'de> Deserialize<'de> for Signed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SignedVisitor)
    }
}

struct SignedVisitor;

impl Visitor<'_> for SignedVisitor {
    type Value = Signed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Signed, E> {
        Ok(Signed(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Signed, E> {
        i64::try_from(value)
            .map(Signed)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Signed, E> {
        let digits = value.strip_prefix('-').unwrap_or(value);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(number) = value.parse() {
                return Ok(Signed(number));
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
    #[serde(default, alias = "accessLog")]
    pub access_log: Option<Vec<RawAccessLog>>,
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
    LocalRateLimit(RawLocalRateLimit),
    Fault(RawFault),
    HeaderMutation(RawHeaderMutation),
    PeakEwma(RawRouter),
    Buffer(RawBuffer),
    Deferred(Mapping),
}

/// The HTTP filters zerohop knows. Each new filter is a variant here, a type URL in
/// [`http_filter_type`] and a variant of [`super::HttpFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpFilterType {
    Router,
    LocalRateLimit,
    Fault,
    HeaderMutation,
    PeakEwma,
    Buffer,
}

/// The type URL of the local rate limit HTTP filter's config.
pub const LOCAL_RATELIMIT_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
/// The type URL of the fault HTTP filter's config.
pub const FAULT_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
/// The type URL of the header mutation HTTP filter's config.
pub const HEADER_MUTATION_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
/// The type URL of Envoy's contrib peak EWMA HTTP filter (the latency samples of the
/// peak EWMA load balancer; its config is empty).
pub const PEAK_EWMA_FILTER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.peak_ewma.v3alpha.PeakEwmaConfig";
/// The type URL of the buffer HTTP filter's config.
pub const BUFFER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";

/// Return the HTTP filter a `typed_config` type URL selects, or a message saying why none
/// is.
pub(crate) fn http_filter_type(url: &str) -> Result<HttpFilterType, String> {
    match url {
        ROUTER_TYPE_URL => return Ok(HttpFilterType::Router),
        LOCAL_RATELIMIT_TYPE_URL => return Ok(HttpFilterType::LocalRateLimit),
        FAULT_TYPE_URL => return Ok(HttpFilterType::Fault),
        HEADER_MUTATION_TYPE_URL => return Ok(HttpFilterType::HeaderMutation),
        PEAK_EWMA_FILTER_TYPE_URL => return Ok(HttpFilterType::PeakEwma),
        BUFFER_TYPE_URL => return Ok(HttpFilterType::Buffer),
        _ => {}
    }
    let supported = format!(
        "zerohop supports {ROUTER_TYPE_URL}, {LOCAL_RATELIMIT_TYPE_URL}, {FAULT_TYPE_URL}, \
         {HEADER_MUTATION_TYPE_URL}, {BUFFER_TYPE_URL} and {PEAK_EWMA_FILTER_TYPE_URL} so far"
    );
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
        let map = MapAccessDeserializer::new(map);
        match kind {
            HttpFilterType::Router => RawRouter::deserialize(map).map(RawHttpTypedConfig::Router),
            HttpFilterType::LocalRateLimit => {
                RawLocalRateLimit::deserialize(map).map(RawHttpTypedConfig::LocalRateLimit)
            }
            HttpFilterType::Fault => RawFault::deserialize(map).map(RawHttpTypedConfig::Fault),
            HttpFilterType::HeaderMutation => {
                RawHeaderMutation::deserialize(map).map(RawHttpTypedConfig::HeaderMutation)
            }
            HttpFilterType::PeakEwma => {
                RawRouter::deserialize(map).map(RawHttpTypedConfig::PeakEwma)
            }
            HttpFilterType::Buffer => RawBuffer::deserialize(map).map(RawHttpTypedConfig::Buffer),
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

/// `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`, without `@type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s LocalRateLimit)")]
pub(crate) struct RawLocalRateLimit {
    #[serde(default, alias = "statPrefix")]
    pub stat_prefix: Option<String>,
    #[serde(default, alias = "tokenBucket")]
    pub token_bucket: Option<RawTokenBucket>,
    #[serde(default, alias = "filterEnabled")]
    pub filter_enabled: Option<RawRuntimeFractionalPercent>,
    #[serde(default, alias = "filterEnforced")]
    pub filter_enforced: Option<RawRuntimeFractionalPercent>,
    #[serde(default)]
    pub status: Option<RawHttpStatus>,
    #[serde(default, alias = "responseHeadersToAdd")]
    pub response_headers_to_add: Option<Vec<RawHeaderValueOption>>,
}

/// `envoy.type.v3.TokenBucket`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s TokenBucket)")]
pub(crate) struct RawTokenBucket {
    #[serde(default, alias = "maxTokens")]
    pub max_tokens: Option<Unsigned>,
    #[serde(default, alias = "tokensPerFill")]
    pub tokens_per_fill: Option<Unsigned>,
    #[serde(default, alias = "fillInterval")]
    pub fill_interval: Option<ProtoDuration>,
}

/// `envoy.config.core.v3.RuntimeFractionalPercent` (zerohop has no runtime: the
/// `runtime_key` is accepted and the `default_value` used).
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s RuntimeFractionalPercent)"
)]
pub(crate) struct RawRuntimeFractionalPercent {
    #[serde(default, alias = "defaultValue")]
    pub default_value: Option<RawFractionalPercent>,
    /// Accepted for Envoy configs; zerohop has no runtime to look it up in.
    #[allow(dead_code)]
    #[serde(default, alias = "runtimeKey")]
    pub runtime_key: Option<String>,
}

/// `envoy.type.v3.FractionalPercent`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s FractionalPercent)"
)]
pub(crate) struct RawFractionalPercent {
    #[serde(default)]
    pub numerator: Option<Unsigned>,
    #[serde(default)]
    pub denominator: Option<DenominatorName>,
}

/// `FractionalPercent.DenominatorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DenominatorName {
    Hundred,
    TenThousand,
    Million,
}

impl DenominatorName {
    pub(crate) fn value(self) -> u32 {
        match self {
            DenominatorName::Hundred => 100,
            DenominatorName::TenThousand => 10_000,
            DenominatorName::Million => 1_000_000,
        }
    }
}

impl<'de> Deserialize<'de> for DenominatorName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = deserializer.deserialize_any(EnumName {
            what: "fraction denominator",
            names: &["HUNDRED", "TEN_THOUSAND", "MILLION"],
        })?;
        Ok(match name {
            "TEN_THOUSAND" => DenominatorName::TenThousand,
            "MILLION" => DenominatorName::Million,
            _ => DenominatorName::Hundred,
        })
    }
}

/// `envoy.type.v3.HttpStatus`: the code as a number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s HttpStatus)")]
pub(crate) struct RawHttpStatus {
    #[serde(default)]
    pub code: Option<Unsigned>,
}

/// `envoy.extensions.filters.http.fault.v3.HTTPFault`, without `@type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s HTTPFault)")]
pub(crate) struct RawFault {
    #[serde(default)]
    pub delay: Option<RawFaultDelay>,
    #[serde(default)]
    pub abort: Option<RawFaultAbort>,
}

/// `envoy.extensions.filters.common.fault.v3.FaultDelay`: a fixed delay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s FaultDelay)")]
pub(crate) struct RawFaultDelay {
    #[serde(default, alias = "fixedDelay")]
    pub fixed_delay: Option<ProtoDuration>,
    #[serde(default)]
    pub percentage: Option<RawFractionalPercent>,
}

/// `envoy.extensions.filters.http.fault.v3.FaultAbort`: an HTTP status.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s FaultAbort)")]
pub(crate) struct RawFaultAbort {
    #[serde(default, alias = "httpStatus")]
    pub http_status: Option<Unsigned>,
    #[serde(default)]
    pub percentage: Option<RawFractionalPercent>,
}

/// `envoy.extensions.filters.http.buffer.v3.Buffer`, without `@type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Buffer)")]
pub(crate) struct RawBuffer {
    #[serde(default, alias = "maxRequestBytes")]
    pub max_request_bytes: Option<Unsigned>,
}

/// `envoy.extensions.filters.http.header_mutation.v3.HeaderMutation`, without `@type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s HeaderMutation)")]
pub(crate) struct RawHeaderMutation {
    #[serde(default)]
    pub mutations: Option<RawMutations>,
}

/// `HeaderMutation.mutations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s Mutations)")]
pub(crate) struct RawMutations {
    #[serde(default, alias = "requestMutations")]
    pub request_mutations: Option<Vec<RawMutationOp>>,
    #[serde(default, alias = "responseMutations")]
    pub response_mutations: Option<Vec<RawMutationOp>>,
}

/// `envoy.config.common.mutation_rules.v3.HeaderMutation`: `remove` or `append`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s HeaderMutation rule)"
)]
pub(crate) struct RawMutationOp {
    #[serde(default)]
    pub remove: Option<String>,
    #[serde(default)]
    pub append: Option<RawHeaderValueOption>,
}

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
    #[serde(default, alias = "retryPolicy")]
    pub retry_policy: Option<RawRetryPolicy>,
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
    #[serde(default, alias = "retryPolicy")]
    pub retry_policy: Option<RawRetryPolicy>,
    #[serde(default, alias = "idleTimeout")]
    pub idle_timeout: Option<ProtoDuration>,
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

/// The name of the `previous_hosts` retry host predicate.
pub const PREVIOUS_HOSTS_PREDICATE_NAME: &str = "envoy.retry_host_predicates.previous_hosts";

/// The type URL of the `previous_hosts` retry host predicate's (empty) config.
pub const PREVIOUS_HOSTS_PREDICATE_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";

/// `envoy.config.route.v3.RetryPolicy`. `retry_priority`, `retry_options_predicates`,
/// `rate_limited_retry_back_off`, `retriable_headers` and `retriable_request_headers`
/// are not supported: unknown fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RetryPolicy)")]
pub(crate) struct RawRetryPolicy {
    #[serde(default, alias = "retryOn")]
    pub retry_on: Option<String>,
    #[serde(default, alias = "numRetries")]
    pub num_retries: Option<Unsigned>,
    #[serde(default, alias = "perTryTimeout")]
    pub per_try_timeout: Option<ProtoDuration>,
    #[serde(default, alias = "retryHostPredicate")]
    pub retry_host_predicate: Option<Vec<RawRetryHostPredicate>>,
    /// An `int64` in Envoy's proto; 0 to 4294967295 here.
    #[serde(default, alias = "hostSelectionRetryMaxAttempts")]
    pub host_selection_retry_max_attempts: Option<Unsigned>,
    #[serde(default, alias = "retriableStatusCodes")]
    pub retriable_status_codes: Option<Vec<Unsigned>>,
    #[serde(default, alias = "retryBackOff")]
    pub retry_back_off: Option<RawRetryBackOff>,
}

/// `RetryPolicy.RetryBackOff`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (Envoy\'s RetryBackOff)")]
pub(crate) struct RawRetryBackOff {
    #[serde(default, alias = "baseInterval")]
    pub base_interval: Option<ProtoDuration>,
    #[serde(default, alias = "maxInterval")]
    pub max_interval: Option<ProtoDuration>,
}

/// `RetryPolicy.RetryHostPredicate`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s RetryHostPredicate)"
)]
pub(crate) struct RawRetryHostPredicate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "typedConfig")]
    pub typed_config: Option<RawRetryHostTypedConfig>,
}

/// A retry host predicate's `typed_config`, dispatched on its `@type` as
/// [`RawTypedConfig`] is.
#[derive(Debug)]
pub(crate) enum RawRetryHostTypedConfig {
    PreviousHosts(RawPreviousHostsPredicate),
    Deferred(Mapping),
}

/// `envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`, without its
/// `@type`: it has no fields.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping (Envoy\'s PreviousHostsPredicate)"
)]
pub(crate) struct RawPreviousHostsPredicate {}

/// Check the `@type` of a retry host predicate; return a message saying why it will
/// not do.
pub(crate) fn retry_host_predicate_type(url: &str) -> Result<(), String> {
    if url == PREVIOUS_HOSTS_PREDICATE_TYPE_URL {
        return Ok(());
    }
    let reason =
        if Some(url) == PREVIOUS_HOSTS_PREDICATE_TYPE_URL.strip_prefix("type.googleapis.com/") {
            "a type URL starts with `type.googleapis.com/`"
        } else {
            "zerohop supports only the previous_hosts predicate so far"
        };
    Err(format!(
        "unsupported retry host predicate type `{url}`: {reason}; write \"@type\": \
         {PREVIOUS_HOSTS_PREDICATE_TYPE_URL}"
    ))
}

impl TypedConfig for RawRetryHostTypedConfig {
    type Kind = ();
    const EXPECTING: &'static str =
        "a mapping with an `@type` key: `\"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`";

    fn kind(url: &str) -> Result<(), String> {
        retry_host_predicate_type(url)
    }

    fn read<'de, A: MapAccess<'de>>(_kind: (), map: A) -> Result<Self, A::Error> {
        RawPreviousHostsPredicate::deserialize(MapAccessDeserializer::new(map))
            .map(RawRetryHostTypedConfig::PreviousHosts)
    }

    fn deferred(mapping: Mapping) -> Self {
        RawRetryHostTypedConfig::Deferred(mapping)
    }
}

impl<'de> Deserialize<'de> for RawRetryHostTypedConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TypedConfigVisitor::<RawRetryHostTypedConfig>(PhantomData))
    }
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
