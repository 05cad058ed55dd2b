//! The Envoy v3 config model against real Envoy configs and against each mistake a user
//! can make in one: every error must name the YAML path and say what to do.

use std::net::SocketAddrV4;
use std::time::Duration;

use serde_yaml_ng::Value;
use zerohop_l7::access_log::DEFAULT_FORMAT;
use zerohop_l7::config::{
    AccessLog, AddressRole, CircuitBreakers, Cluster, Endpoint, EnvoyConfig, EnvoyConfigError,
    LbPolicy, NetworkFilter, PeakEwmaConfig, Percent, Problem, RingHashConfig, TcpProxy,
    DEFAULT_CHOICE_COUNT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEALTHY_PANIC_THRESHOLD,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_MINIMUM_RING_SIZE,
    DEFAULT_PEAK_EWMA_RTT, DEFAULT_UPSTREAM_IDLE_TIMEOUT, MAX_RING_SIZE,
};

/// Envoy's TCP proxy example, as Envoy runs it.
const FIXTURE: &str = include_str!("fixtures/envoy-tcp-proxy.yaml");
const ORIGIN: &str = "envoy.yaml";

/// The smallest config that works: one listener, one cluster, one endpoint.
const MINIMAL: &str = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 0.0.0.0, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: c
  clusters:
  - name: c
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.0.2, port_value: 80 } } }
"#;

fn addr(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

fn load(text: &str) -> Result<EnvoyConfig, EnvoyConfigError> {
    EnvoyConfig::from_yaml(text, ORIGIN)
}

/// Load `text` both ways, from the text and from YAML trees of its two sections, and
/// check that both give the same result (errors: same path and message, positions
/// aside).
fn load_both(text: &str) -> Result<EnvoyConfig, EnvoyConfigError> {
    let from_text = load(text);
    let tree: Value = serde_yaml_ng::from_str(text).unwrap();
    let from_value =
        EnvoyConfig::from_value(tree.get("static_resources"), tree.get("admin"), ORIGIN);
    match (&from_text, &from_value) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(without_position(a), without_position(b), "{text}"),
        _ => panic!("from_yaml: {from_text:?}\nfrom_value: {from_value:?}"),
    }
    from_text
}

fn without_position(error: &EnvoyConfigError) -> EnvoyConfigError {
    let mut error = error.clone();
    if let EnvoyConfigError::Schema { line, column, .. } = &mut error {
        *line = None;
        *column = None;
    }
    error
}

/// Replace `from` (which must occur) in `base`.
fn edit(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "`{from}` is not in the config");
    base.replacen(from, to, 1)
}

/// Assert that `text` fails to load (both ways), at `path`, with a message containing
/// every one of `expected`; return the message.
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

/// Assert that `text` fails the checks after parsing, at `path`; return the problem.
fn problem_at(text: &str, path: &str) -> Problem {
    match load_both(text) {
        Err(EnvoyConfigError::Invalid {
            path: got, problem, ..
        }) => {
            assert_eq!(got, path);
            problem
        }
        other => panic!("expected an Invalid error at {path}, got {other:?}"),
    }
}

#[test]
fn envoy_tcp_proxy_example_loads_unchanged() {
    let config = load_both(FIXTURE).unwrap();
    assert_eq!(config.listeners.len(), 1);
    let listener = &config.listeners[0];
    assert_eq!(listener.name, "listener_0");
    assert_eq!(listener.address, addr("0.0.0.0:10000"));
    assert_eq!(
        listener.filter,
        NetworkFilter::TcpProxy(TcpProxy {
            stat_prefix: "destination".to_owned(),
            cluster: "service_backend".to_owned(),
            idle_timeout: Some(Duration::from_secs(300)),
            access_log: Vec::new(),
        })
    );
    assert_eq!(
        config.clusters,
        vec![Cluster {
            name: "service_backend".to_owned(),
            connect_timeout: Duration::from_millis(250),
            lb_policy: LbPolicy::RoundRobin,
            max_requests_per_connection: None,
            upstream_idle_timeout: Some(DEFAULT_UPSTREAM_IDLE_TIMEOUT),
            health_check: None,
            outlier_detection: None,
            circuit_breakers: CircuitBreakers::default(),
            healthy_panic_threshold: Percent(DEFAULT_HEALTHY_PANIC_THRESHOLD),
            endpoints: vec![
                Endpoint {
                    address: addr("10.0.0.2:8080"),
                    weight: 1
                },
                Endpoint {
                    address: addr("10.0.0.3:8080"),
                    weight: 2
                },
            ],
        }]
    );
    assert_eq!(
        config.admin.map(|admin| admin.address),
        Some(addr("127.0.0.1:9901"))
    );
    assert_eq!(config.cluster("service_backend"), Some(&config.clusters[0]));
    assert_eq!(config.listener("listener_0"), Some(listener));
    assert_eq!(config.cluster("nope"), None);
}

#[test]
fn defaults_are_envoys() {
    let config = load_both(MINIMAL).unwrap();
    let NetworkFilter::TcpProxy(tcp_proxy) = &config.listeners[0].filter else {
        panic!("not a tcp_proxy")
    };
    assert_eq!(tcp_proxy.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT));
    assert_eq!(DEFAULT_IDLE_TIMEOUT, Duration::from_secs(3600));
    let cluster = &config.clusters[0];
    assert_eq!(cluster.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs(5));
    assert_eq!(cluster.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(cluster.endpoints[0].weight, 1);
    assert_eq!(config.admin, None);
}

#[test]
fn idle_timeout_zero_turns_it_off() {
    let text = edit(
        MINIMAL,
        "cluster: c\n",
        "cluster: c\n          idle_timeout: 0s\n",
    );
    let config = load_both(&text).unwrap();
    let NetworkFilter::TcpProxy(tcp_proxy) = &config.listeners[0].filter else {
        panic!("not a tcp_proxy")
    };
    assert_eq!(tcp_proxy.idle_timeout, None);
}

#[test]
fn lb_policies() {
    for (name, policy) in [
        ("ROUND_ROBIN", LbPolicy::RoundRobin),
        (
            "LEAST_REQUEST",
            LbPolicy::LeastRequest {
                choice_count: DEFAULT_CHOICE_COUNT,
            },
        ),
        ("RANDOM", LbPolicy::Random),
        ("RING_HASH", LbPolicy::RingHash(RingHashConfig::default())),
        (
            "MAGLEV",
            LbPolicy::Maglev {
                table_size: DEFAULT_MAGLEV_TABLE_SIZE,
            },
        ),
    ] {
        let text = edit(
            MINIMAL,
            "  - name: c\n",
            &format!("  - name: c\n    lb_policy: {name}\n"),
        );
        assert_eq!(load_both(&text).unwrap().clusters[0].lb_policy, policy);
        assert_eq!(policy.to_string(), name);
    }
    let text = edit(
        MINIMAL,
        "  - name: c\n",
        "  - name: c\n    lb_policy: CLUSTER_PROVIDED\n",
    );
    error_at(
        &text,
        "static_resources.clusters[0].lb_policy",
        &[
            "load balancing policy CLUSTER_PROVIDED is not supported: it is for cluster types \
           that bring their own load balancer, and zerohop has only STATIC clusters; use \
           ROUND_ROBIN (the default), LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV",
        ],
    );
    // LOAD_BALANCING_POLICY_CONFIG takes the policy from `load_balancing_policy`.
    let text = edit(
        MINIMAL,
        "  - name: c\n",
        "  - name: c\n    lb_policy: LOAD_BALANCING_POLICY_CONFIG\n",
    );
    let problem = problem_at(&text, "static_resources.clusters[0]");
    assert!(
        matches!(
            problem,
            Problem::Missing {
                field: "load_balancing_policy",
                ..
            }
        ),
        "{problem:?}"
    );
    let text = edit(
        MINIMAL,
        "  - name: c\n",
        "  - name: c\n    lb_policy: round_robin\n",
    );
    error_at(
        &text,
        "static_resources.clusters[0].lb_policy",
        &["unknown load balancing policy `round_robin`, expected one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV, CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG; Envoy's enum names are upper case: write ROUND_ROBIN"],
    );
    let text = edit(MINIMAL, "  - name: c\n", "  - name: c\n    lb_policy: 3\n");
    error_at(
        &text,
        "static_resources.clusters[0].lb_policy",
        &["expected a load balancing policy: one of ROUND_ROBIN"],
    );
}

/// MINIMAL with `fields` (YAML lines at the cluster's indentation, without it) added
/// to its cluster.
fn with_cluster_fields(fields: &str) -> String {
    let indented: String = fields.lines().map(|line| format!("    {line}\n")).collect();
    edit(
        MINIMAL,
        "  - name: c\n",
        &format!("  - name: c\n{indented}"),
    )
}

fn lb_policy_of(fields: &str) -> LbPolicy {
    load_both(&with_cluster_fields(fields)).unwrap().clusters[0].lb_policy
}

const CLUSTER: &str = "static_resources.clusters[0]";

#[test]
fn lb_configs_load() {
    assert_eq!(
        lb_policy_of(
            "lb_policy: RING_HASH\nring_hash_lb_config:\n  minimum_ring_size: 2048\n  maximum_ring_size: 4096\n  hash_function: XX_HASH"
        ),
        LbPolicy::RingHash(RingHashConfig {
            minimum_ring_size: 2048,
            maximum_ring_size: 4096,
        })
    );
    // One bound alone keeps the other's default; lowerCamelCase works too.
    assert_eq!(
        lb_policy_of("lbPolicy: RING_HASH\nringHashLbConfig: { minimumRingSize: \"16\" }"),
        LbPolicy::RingHash(RingHashConfig {
            minimum_ring_size: 16,
            maximum_ring_size: MAX_RING_SIZE,
        })
    );
    assert_eq!(
        lb_policy_of("lb_policy: RING_HASH\nring_hash_lb_config: {}"),
        LbPolicy::RingHash(RingHashConfig {
            minimum_ring_size: DEFAULT_MINIMUM_RING_SIZE,
            maximum_ring_size: MAX_RING_SIZE,
        })
    );
    for table_size in [2, 131_071, 5_000_011] {
        assert_eq!(
            lb_policy_of(&format!(
                "lb_policy: MAGLEV\nmaglev_lb_config: {{ table_size: {table_size} }}"
            )),
            LbPolicy::Maglev { table_size }
        );
    }
    assert_eq!(
        lb_policy_of("lb_policy: MAGLEV\nmaglevLbConfig: { tableSize: 65537 }"),
        LbPolicy::Maglev {
            table_size: DEFAULT_MAGLEV_TABLE_SIZE
        }
    );
    for choice_count in [2, 5, u32::MAX] {
        assert_eq!(
            lb_policy_of(&format!(
                "lb_policy: LEAST_REQUEST\nleast_request_lb_config: {{ choice_count: {choice_count} }}"
            )),
            LbPolicy::LeastRequest { choice_count }
        );
    }
    assert_eq!(
        lb_policy_of("lb_policy: LEAST_REQUEST\nleastRequestLbConfig: {}"),
        LbPolicy::LeastRequest { choice_count: 2 }
    );
}

#[test]
fn lb_config_errors() {
    let maglev =
        |size: &str| format!("lb_policy: MAGLEV\nmaglev_lb_config: {{ table_size: {size} }}");
    let at = format!("{CLUSTER}.maglev_lb_config.table_size");
    for size in [65_536, 9, 1_000_000] {
        let problem = problem_at(&with_cluster_fields(&maglev(&size.to_string())), &at);
        assert_eq!(problem, Problem::NotPrime { value: size });
        assert!(
            problem.to_string().contains("is not a prime number"),
            "{problem}"
        );
    }
    for size in [0u64, 1, 5_000_012, 1 << 40] {
        let problem = problem_at(&with_cluster_fields(&maglev(&size.to_string())), &at);
        assert!(
            matches!(
                problem,
                Problem::OutOfRange {
                    min: 2,
                    max: 5_000_011,
                    ..
                }
            ),
            "{problem:?}"
        );
    }
    error_at(
        &with_cluster_fields(&maglev("-3")),
        &at,
        &["invalid value", "a whole number"],
    );

    let least = |count: &str| {
        format!("lb_policy: LEAST_REQUEST\nleast_request_lb_config: {{ choice_count: {count} }}")
    };
    let at = format!("{CLUSTER}.least_request_lb_config.choice_count");
    for count in [0u64, 1, 1 << 32] {
        let message = error_at(
            &with_cluster_fields(&least(&count.to_string())),
            &at,
            &[&format!("{count} is out of range; use 2 to 4294967295")],
        );
        assert!(message.contains("Envoy requires at least 2"), "{message}");
    }
    error_at(
        &with_cluster_fields(
            "lb_policy: LEAST_REQUEST\nleast_request_lb_config: { active_request_bias: { default_value: 1 } }",
        ),
        &format!("{CLUSTER}.least_request_lb_config.active_request_bias"),
        &["unknown field `active_request_bias`"],
    );

    let ring = |config: &str| format!("lb_policy: RING_HASH\nring_hash_lb_config: {config}");
    let at = format!("{CLUSTER}.ring_hash_lb_config");
    error_at(
        &with_cluster_fields(&ring("{ hash_function: MURMUR_HASH_2 }")),
        &format!("{at}.hash_function"),
        &[
            "hash function MURMUR_HASH_2 is not supported",
            "xxHash (XX_HASH, Envoy's default)",
        ],
    );
    error_at(
        &with_cluster_fields(&ring("{ hash_function: CITY_HASH }")),
        &format!("{at}.hash_function"),
        &["unknown hash function `CITY_HASH`, expected one of XX_HASH, MURMUR_HASH_2"],
    );
    for (config, field, value) in [
        ("{ minimum_ring_size: 0 }", "minimum_ring_size", 0),
        (
            "{ minimum_ring_size: 8388609 }",
            "minimum_ring_size",
            8_388_609,
        ),
        ("{ maximum_ring_size: 0 }", "maximum_ring_size", 0),
        (
            "{ maximum_ring_size: 16777216 }",
            "maximum_ring_size",
            16_777_216,
        ),
    ] {
        let problem = problem_at(
            &with_cluster_fields(&ring(config)),
            &format!("{at}.{field}"),
        );
        assert!(
            matches!(problem, Problem::OutOfRange { value: v, min: 1, max: 8_388_608, .. } if v == value),
            "{problem:?}"
        );
    }
    assert_eq!(
        problem_at(
            &with_cluster_fields(&ring(
                "{ minimum_ring_size: 4096, maximum_ring_size: 1024 }"
            )),
            &format!("{at}.minimum_ring_size"),
        ),
        Problem::RingSizes {
            minimum: 4096,
            maximum: 1024
        }
    );
    // A `*_lb_config` must go with its policy...
    for (fields, field, policy, actual) in [
        (
            "ring_hash_lb_config: {}",
            "ring_hash_lb_config",
            "RING_HASH",
            "ROUND_ROBIN",
        ),
        (
            "lb_policy: RANDOM\nmaglev_lb_config: {}",
            "maglev_lb_config",
            "MAGLEV",
            "RANDOM",
        ),
        (
            "lb_policy: RING_HASH\nleast_request_lb_config: {}",
            "least_request_lb_config",
            "LEAST_REQUEST",
            "RING_HASH",
        ),
    ] {
        let message = error_at(
            &with_cluster_fields(fields),
            &format!("{CLUSTER}.{field}"),
            &[&format!(
                "`{field}` configures lb_policy {policy}, but this cluster's lb_policy is {actual}"
            )],
        );
        assert!(
            message.contains(&format!("set `lb_policy: {policy}`")),
            "{message}"
        );
    }
    // ...and is one of a oneof.
    error_at(
        &with_cluster_fields("lb_policy: MAGLEV\nring_hash_lb_config: {}\nmaglev_lb_config: {}"),
        &format!("{CLUSTER}.maglev_lb_config"),
        &["`maglev_lb_config` cannot be set together with `ring_hash_lb_config`"],
    );
}

const HTTP_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const HTTP_OPTIONS_TYPE: &str =
    "\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const HTTP1: &str = "explicit_http_config: { http_protocol_options: {} }";

/// MINIMAL's cluster with HttpProtocolOptions whose fields after `@type` are `fields`
/// (the inside of a flow mapping).
fn with_http_options(fields: &str) -> String {
    with_cluster_fields(&format!(
        "typed_extension_protocol_options:\n  {HTTP_OPTIONS_KEY}: {{ {HTTP_OPTIONS_TYPE}, {fields} }}"
    ))
}

/// The YAML path of the cluster's HttpProtocolOptions.
fn http_options_path(rest: &str) -> String {
    format!("{CLUSTER}.typed_extension_protocol_options.{HTTP_OPTIONS_KEY}{rest}")
}

fn upstream_options(text: &str) -> (Option<Duration>, Option<u32>) {
    let cluster = &load_both(text).unwrap().clusters[0];
    (
        cluster.upstream_idle_timeout,
        cluster.max_requests_per_connection,
    )
}

#[test]
fn http_protocol_options_load() {
    // Envoy's defaults: an hour, no limit; with or without the options.
    assert_eq!(DEFAULT_UPSTREAM_IDLE_TIMEOUT, Duration::from_secs(3600));
    for text in [
        MINIMAL.to_owned(),
        with_cluster_fields("typed_extension_protocol_options: {}"),
        with_http_options(HTTP1),
        with_http_options(&format!("common_http_protocol_options: {{}}, {HTTP1}")),
    ] {
        assert_eq!(
            upstream_options(&text),
            (Some(DEFAULT_UPSTREAM_IDLE_TIMEOUT), None),
            "{text}"
        );
    }
    assert_eq!(
        upstream_options(&with_http_options(&format!(
            "common_http_protocol_options: {{ idle_timeout: 30s, max_requests_per_connection: 100 }}, {HTTP1}"
        ))),
        (Some(Duration::from_secs(30)), Some(100))
    );
    // 0s turns the idle timeout off; 0 requests is no limit.
    assert_eq!(
        upstream_options(&with_http_options(&format!(
            "common_http_protocol_options: {{ idle_timeout: 0s, max_requests_per_connection: 0 }}, {HTTP1}"
        ))),
        (None, None)
    );
    assert_eq!(
        upstream_options(&with_http_options(&format!(
            "common_http_protocol_options: {{ max_requests_per_connection: 4294967295 }}, {HTTP1}"
        ))),
        (Some(DEFAULT_UPSTREAM_IDLE_TIMEOUT), Some(u32::MAX))
    );
    // The cluster's own (deprecated) field alone still counts.
    assert_eq!(
        upstream_options(&with_cluster_fields(&format!(
            "max_requests_per_connection: 3\ntyped_extension_protocol_options:\n  {HTTP_OPTIONS_KEY}: {{ {HTTP_OPTIONS_TYPE}, common_http_protocol_options: {{ idle_timeout: 5s }}, {HTTP1} }}"
        ))),
        (Some(Duration::from_secs(5)), Some(3))
    );
    // lowerCamelCase, and `@type` after the fields, as Envoy allows.
    let camel = with_cluster_fields(&format!(
        "typedExtensionProtocolOptions:\n  {HTTP_OPTIONS_KEY}:\n    commonHttpProtocolOptions: {{ idleTimeout: 1.5s, maxRequestsPerConnection: \"7\" }}\n    explicitHttpConfig: {{ httpProtocolOptions: {{}} }}\n    {HTTP_OPTIONS_TYPE}"
    ));
    assert_eq!(
        upstream_options(&camel),
        (Some(Duration::from_millis(1500)), Some(7))
    );
    // The TCP proxy does not use them, but they load on any cluster.
    assert_eq!(
        load_both(&with_http_options(HTTP1)).unwrap().listeners,
        load_both(MINIMAL).unwrap().listeners
    );
}

#[test]
fn http_protocol_options_errors() {
    let options = CLUSTER.to_owned() + ".typed_extension_protocol_options";
    // Any other key, named.
    for key in [
        "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions",
        "envoy.extensions.upstreams.http.v2.HttpProtocolOptions",
        "envoy.filters.network.http_connection_manager",
    ] {
        error_at(
            &with_cluster_fields(&format!(
                "typed_extension_protocol_options:\n  {key}: {{ \"@type\": type.googleapis.com/{key} }}"
            )),
            &format!("{options}.{key}"),
            &[
                &format!("unsupported protocol options `{key}`"),
                &format!("zerohop supports only `{HTTP_OPTIONS_KEY}`"),
            ],
        );
    }
    error_at(
        &with_cluster_fields("typed_extension_protocol_options: []"),
        &options,
        &["invalid type: sequence, expected a mapping from an extension name to its options"],
    );
    // The @type must be HttpProtocolOptions', and is required.
    for (url, hint) in [
        (
            "type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions",
            "must be of that type",
        ),
        (
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "a type URL starts with `type.googleapis.com/`",
        ),
    ] {
        for fields in [
            format!("\"@type\": {url}, {HTTP1}"),
            format!("{HTTP1}, \"@type\": {url}"),
        ] {
            error_at(
                &with_cluster_fields(&format!(
                    "typed_extension_protocol_options:\n  {HTTP_OPTIONS_KEY}: {{ {fields} }}"
                )),
                &http_options_path(".@type"),
                &[&format!("unsupported protocol options type `{url}`"), hint],
            );
        }
    }
    let problem = problem_at(
        &with_cluster_fields(&format!(
            "typed_extension_protocol_options:\n  {HTTP_OPTIONS_KEY}: {{ {HTTP1} }}"
        )),
        &http_options_path(""),
    );
    assert!(
        matches!(problem, Problem::Missing { field: "@type", .. }),
        "{problem:?}"
    );
    // Common options other than the two, and other HttpProtocolOptions fields, are not
    // supported (an unknown field, as everywhere).
    for field in [
        "max_connection_duration: 60s",
        "max_headers_count: 100",
        "headers_with_underscores_action: REJECT_REQUEST",
        "max_stream_duration: 10s",
    ] {
        let name = field.split(':').next().unwrap();
        error_at(
            &with_http_options(&format!(
                "common_http_protocol_options: {{ idle_timeout: 5s, {field} }}, {HTTP1}"
            )),
            &http_options_path(&format!(".common_http_protocol_options.{name}")),
            &[
                &format!("unknown field `{name}`, expected one of `idleTimeout`, `idle_timeout`, `maxRequestsPerConnection`, `max_requests_per_connection`"),
                "rejects a field it does not support",
            ],
        );
    }
    for field in [
        "upstream_http_protocol_options: { auto_sni: true }",
        "http_filters: []",
        "header_validation_config: {}",
    ] {
        let name = field.split(':').next().unwrap();
        error_at(
            &with_http_options(&format!("{HTTP1}, {field}")),
            &http_options_path(&format!(".{name}")),
            &[&format!("unknown field `{name}`")],
        );
    }
    // HTTP/1.1 only upstream.
    for (fields, at, field) in [
        (
            "explicit_http_config: { http2_protocol_options: {} }",
            ".explicit_http_config.http2_protocol_options",
            "http2_protocol_options",
        ),
        (
            "explicit_http_config: { http3_protocol_options: {} }",
            ".explicit_http_config.http3_protocol_options",
            "http3_protocol_options",
        ),
        (
            "explicit_http_config: { http_protocol_options: {}, http2_protocol_options: { max_concurrent_streams: 100 } }",
            ".explicit_http_config.http2_protocol_options",
            "http2_protocol_options",
        ),
        (
            "use_downstream_protocol_config: { http_protocol_options: {} }",
            ".use_downstream_protocol_config",
            "use_downstream_protocol_config",
        ),
        (
            "auto_config: { http_protocol_options: {}, http2_protocol_options: {} }",
            ".auto_config",
            "auto_config",
        ),
    ] {
        let text = with_http_options(fields);
        let path = http_options_path(at);
        assert!(
            matches!(problem_at(&text, &path), Problem::NotSupported { field: f, .. } if f == field)
        );
        error_at(
            &text,
            &path,
            &[
                &format!("`{field}` is not supported yet"),
                "zerohop speaks HTTP/1.1 to upstreams",
                "http_protocol_options: {}",
            ],
        );
    }
    // Envoy's oneofs: one protocol config is required, and only one.
    error_at(
        &with_http_options(&format!("{HTTP1}, auto_config: {{}}")),
        &http_options_path(".auto_config"),
        &["`auto_config` cannot be set together with `explicit_http_config`"],
    );
    error_at(
        &with_http_options("common_http_protocol_options: { idle_timeout: 5s }"),
        &http_options_path(""),
        &[
            "one of `explicit_http_config`, `use_downstream_protocol_config` and `auto_config` \
             is required; Envoy requires one",
            "explicit_http_config: { http_protocol_options: {} }",
        ],
    );
    error_at(
        &with_http_options("explicit_http_config: {}"),
        &http_options_path(".explicit_http_config"),
        &[
            "one of `http_protocol_options`, `http2_protocol_options` and \
             `http3_protocol_options` is required",
            "zerohop speaks HTTP/1.1 to upstreams",
        ],
    );
    // No Http1ProtocolOptions field is supported.
    for field in ["accept_http_10", "enable_trailers", "header_key_format"] {
        error_at(
            &with_http_options(&format!(
                "explicit_http_config: {{ http_protocol_options: {{ {field}: {{}} }} }}"
            )),
            &http_options_path(&format!(
                ".explicit_http_config.http_protocol_options.{field}"
            )),
            &[
                &format!("unknown field `{field}`, there are no fields"),
                "rejects a field it does not support",
            ],
        );
    }
    // Values.
    let common = |fields: &str| {
        with_http_options(&format!(
            "common_http_protocol_options: {{ {fields} }}, {HTTP1}"
        ))
    };
    let max_path = http_options_path(".common_http_protocol_options.max_requests_per_connection");
    assert_eq!(
        problem_at(
            &common("max_requests_per_connection: 4294967296"),
            &max_path
        ),
        Problem::OutOfRange {
            value: 1 << 32,
            min: 0,
            max: u64::from(u32::MAX),
            hint: "",
        }
    );
    error_at(
        &common("idle_timeout: 1h"),
        &http_options_path(".common_http_protocol_options.idle_timeout"),
        &["invalid duration \"1h\": Envoy durations are in seconds; write \"3600s\""],
    );
    // Not with the cluster's own max_requests_per_connection, as in Envoy (even 0).
    for cluster_value in [0, 5] {
        let text = edit(
            &common("max_requests_per_connection: 10"),
            "  - name: c\n",
            &format!("  - name: c\n    max_requests_per_connection: {cluster_value}\n"),
        );
        assert_eq!(
            problem_at(&text, &max_path),
            Problem::MaxRequestsPerConnectionTwice
        );
        error_at(
            &text,
            &max_path,
            &[
                "the cluster sets the deprecated `max_requests_per_connection` too",
                "Only one of max_requests_per_connection from Cluster or HttpProtocolOptions \
                 can be specified",
                "remove the cluster's",
            ],
        );
    }
}

/// A `load_balancing_policy` with one policy: `typed_config` is a flow mapping's inside.
fn lb_extension(name: &str, typed_config: &str) -> String {
    format!(
        "load_balancing_policy:\n  policies:\n  - typed_extension_config:\n      name: {name}\n      typed_config: {{ {typed_config} }}"
    )
}

const PEAK_EWMA: &str = "\"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma";

#[test]
fn load_balancing_policy_extensions() {
    let url = |path: &str| {
        format!("\"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.{path}")
    };
    for (typed_config, policy) in [
        (url("round_robin.v3.RoundRobin"), LbPolicy::RoundRobin),
        (url("random.v3.Random"), LbPolicy::Random),
        (
            url("least_request.v3.LeastRequest") + ", choice_count: 3",
            LbPolicy::LeastRequest { choice_count: 3 },
        ),
        (
            url("least_request.v3.LeastRequest"),
            LbPolicy::LeastRequest { choice_count: 2 },
        ),
        (
            url("ring_hash.v3.RingHash")
                + ", hash_function: DEFAULT_HASH, minimum_ring_size: 64, maximum_ring_size: 128",
            LbPolicy::RingHash(RingHashConfig {
                minimum_ring_size: 64,
                maximum_ring_size: 128,
            }),
        ),
        (
            url("ring_hash.v3.RingHash") + ", hash_function: XX_HASH",
            LbPolicy::RingHash(RingHashConfig::default()),
        ),
        (
            url("maglev.v3.Maglev") + ", table_size: 131071",
            LbPolicy::Maglev {
                table_size: 131_071,
            },
        ),
        (
            PEAK_EWMA.to_owned(),
            LbPolicy::PeakEwma(PeakEwmaConfig::default()),
        ),
    ] {
        assert_eq!(
            lb_policy_of(&lb_extension("p", &typed_config)),
            policy,
            "{typed_config}"
        );
    }
    // Envoy's contrib example, whole (its docs write `100ms` and `10ms`, which Envoy's
    // proto3 JSON parser rejects as zerohop does: a Duration is in seconds).
    let policy = lb_policy_of(&lb_extension(
        "envoy.load_balancing_policies.peak_ewma",
        &format!(
            "{PEAK_EWMA}, decay_time: 5s, aggregation_interval: 0.1s, max_samples_per_host: 1000, default_rtt: 0.020s, penalty_value: 1000000.0"
        ),
    ));
    assert_eq!(
        policy,
        LbPolicy::PeakEwma(PeakEwmaConfig {
            decay_time: Duration::from_secs(5),
            default_rtt: Duration::from_millis(20),
            penalty_value: 1_000_000.0,
        })
    );
    assert_eq!(
        policy.to_string(),
        "envoy.load_balancing_policies.peak_ewma"
    );
    // `@type` need not come first; proto3 JSON doubles may be strings; lowerCamelCase.
    assert_eq!(
        lb_policy_of(&format!(
            "loadBalancingPolicy:\n  policies:\n  - typedExtensionConfig:\n      name: p\n      typedConfig: {{ decayTime: 1s, penaltyValue: \"1e3\", {PEAK_EWMA} }}"
        )),
        LbPolicy::PeakEwma(PeakEwmaConfig {
            decay_time: Duration::from_secs(1),
            default_rtt: DEFAULT_PEAK_EWMA_RTT,
            penalty_value: 1000.0,
        })
    );
    // LOAD_BALANCING_POLICY_CONFIG may say so explicitly.
    assert_eq!(
        lb_policy_of(&format!(
            "lb_policy: LOAD_BALANCING_POLICY_CONFIG\n{}",
            lb_extension("m", &url("maglev.v3.Maglev"))
        )),
        LbPolicy::Maglev {
            table_size: DEFAULT_MAGLEV_TABLE_SIZE
        }
    );
    // Envoy uses the first policy it knows: what follows a known one is never used.
    let two = format!(
        "load_balancing_policy:\n  policies:\n  - typed_extension_config: {{ name: a, typed_config: {{ {PEAK_EWMA} }} }}\n  - typed_extension_config: {{ name: b, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin, blackout_period: 10s }} }}"
    );
    assert_eq!(
        lb_policy_of(&two),
        LbPolicy::PeakEwma(PeakEwmaConfig::default())
    );
}

#[test]
fn load_balancing_policy_errors() {
    let at = format!("{CLUSTER}.load_balancing_policy");
    let first = format!("{at}.policies[0].typed_extension_config");
    // The first policy must be one zerohop knows.
    let message = error_at(
        &with_cluster_fields(&lb_extension(
            "w",
            "\"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin",
        )),
        &format!("{first}.typed_config.@type"),
        &[
            "unsupported load balancing policy type",
            "this load balancing policy is not supported yet",
            "round_robin, least_request, random, ring_hash, maglev or peak_ewma",
        ],
    );
    assert!(message.contains("Envoy uses the first policy"), "{message}");
    error_at(
        &with_cluster_fields(&lb_extension(
            "p",
            "\"@type\": envoy.extensions.load_balancing_policies.maglev.v3.Maglev",
        )),
        &format!("{first}.typed_config.@type"),
        &["a type URL starts with `type.googleapis.com/`"],
    );
    // Shape: policies, typed_extension_config, name, typed_config, @type.
    for empty in [
        "load_balancing_policy: { policies: [] }",
        "load_balancing_policy: {}",
    ] {
        let problem = problem_at(&with_cluster_fields(empty), &at);
        assert!(
            matches!(
                problem,
                Problem::Empty {
                    field: "policies",
                    ..
                }
            ),
            "{empty}: {problem:?}"
        );
    }
    let problem = problem_at(
        &with_cluster_fields("load_balancing_policy: { policies: [{}] }"),
        &format!("{at}.policies[0]"),
    );
    assert!(
        matches!(
            problem,
            Problem::Missing {
                field: "typed_extension_config",
                ..
            }
        ),
        "{problem:?}"
    );
    let problem = problem_at(
        &with_cluster_fields(&format!(
            "load_balancing_policy: {{ policies: [{{ typed_extension_config: {{ typed_config: {{ {PEAK_EWMA} }} }} }}] }}"
        )),
        &first,
    );
    assert!(
        matches!(problem, Problem::Missing { field: "name", .. }),
        "{problem:?}"
    );
    let problem = problem_at(
        &with_cluster_fields(
            "load_balancing_policy: { policies: [{ typed_extension_config: { name: p } }] }",
        ),
        &first,
    );
    assert!(
        matches!(
            problem,
            Problem::Missing {
                field: "typed_config",
                ..
            }
        ),
        "{problem:?}"
    );
    let problem = problem_at(
        &with_cluster_fields(&lb_extension("p", "decay_time: 1s")),
        &format!("{first}.typed_config"),
    );
    assert!(
        matches!(problem, Problem::Missing { field: "@type", .. }),
        "{problem:?}"
    );
    // Later policies need their shape too.
    let problem = problem_at(
        &with_cluster_fields(&format!(
            "load_balancing_policy: {{ policies: [{{ typed_extension_config: {{ name: a, typed_config: {{ {PEAK_EWMA} }} }} }}, {{}}] }}"
        )),
        &format!("{at}.policies[1]"),
    );
    assert!(
        matches!(
            problem,
            Problem::Missing {
                field: "typed_extension_config",
                ..
            }
        ),
        "{problem:?}"
    );
    // The policy's fields are checked as the legacy ones are, @type first or not.
    for typed_config in [
        "\"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev, table_size: 1000",
        "table_size: 1000, \"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev",
    ] {
        assert_eq!(
            problem_at(
                &with_cluster_fields(&lb_extension("m", typed_config)),
                &format!("{first}.typed_config.table_size"),
            ),
            Problem::NotPrime { value: 1000 }
        );
    }
    error_at(
        &with_cluster_fields(&lb_extension(
            "l",
            "\"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest, choice_count: 1",
        )),
        &format!("{first}.typed_config.choice_count"),
        &["1 is out of range; use 2 to 4294967295"],
    );
    error_at(
        &with_cluster_fields(&lb_extension(
            "r",
            "\"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash, hash_function: MURMUR_HASH_2",
        )),
        &format!("{first}.typed_config.hash_function"),
        &["hash function MURMUR_HASH_2 is not supported"],
    );
    for typed_config in [
        format!("{PEAK_EWMA}, locality_lb_config: {{}}"),
        format!("slow_start_config: {{}}, {PEAK_EWMA}"),
    ] {
        let field = if typed_config.contains("slow") {
            "slow_start_config"
        } else {
            "locality_lb_config"
        };
        error_at(
            &with_cluster_fields(&lb_extension("p", &typed_config)),
            &format!("{first}.typed_config.{field}"),
            &[&format!("unknown field `{field}`")],
        );
    }
    error_at(
        &with_cluster_fields(&lb_extension(
            "r",
            "\"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin, slow_start_config: {}",
        )),
        &format!("{first}.typed_config.slow_start_config"),
        &["unknown field `slow_start_config`"],
    );
    for (value, shown) in [("-1", "-1"), ("\"NaN\"", "NaN"), ("\"Infinity\"", "inf")] {
        assert_eq!(
            problem_at(
                &with_cluster_fields(&lb_extension(
                    "p",
                    &format!("{PEAK_EWMA}, penalty_value: {value}")
                )),
                &format!("{first}.typed_config.penalty_value"),
            ),
            Problem::BadPenalty {
                value: shown.to_owned()
            }
        );
    }
    error_at(
        &with_cluster_fields(&lb_extension(
            "p",
            &format!("{PEAK_EWMA}, penalty_value: lots"),
        )),
        &format!("{first}.typed_config.penalty_value"),
        &["expected a number"],
    );
    // Envoy ignores lb_policy and the `*_lb_config` when load_balancing_policy is set;
    // zerohop says so rather than ignore them.
    let policy = lb_extension("p", PEAK_EWMA);
    for (fields, field) in [
        (format!("lb_policy: RING_HASH\n{policy}"), "lb_policy"),
        (format!("lb_policy: ROUND_ROBIN\n{policy}"), "lb_policy"),
        (
            format!("{policy}\nmaglev_lb_config: {{}}"),
            "maglev_lb_config",
        ),
        (
            format!(
                "lb_policy: LOAD_BALANCING_POLICY_CONFIG\nleast_request_lb_config: {{}}\n{policy}"
            ),
            "least_request_lb_config",
        ),
    ] {
        let message = error_at(
            &with_cluster_fields(&fields),
            &format!("{CLUSTER}.{field}"),
            &[&format!(
                "`{field}` has no effect when `load_balancing_policy` is set"
            )],
        );
        assert!(message.contains("Envoy then ignores it"), "{message}");
    }
}

#[test]
fn cluster_types() {
    let text = edit(MINIMAL, "  - name: c\n", "  - name: c\n    type: STATIC\n");
    load_both(&text).unwrap();
    for name in ["STRICT_DNS", "LOGICAL_DNS", "EDS", "ORIGINAL_DST"] {
        let text = edit(
            MINIMAL,
            "  - name: c\n",
            &format!("  - name: c\n    type: {name}\n"),
        );
        let message = error_at(
            &text,
            "static_resources.clusters[0].type",
            &[&format!(
                "cluster type {name} is not supported yet: zerohop supports only STATIC clusters"
            )],
        );
        assert!(message.contains("at line 14 column"), "{message}");
    }
    let text = edit(MINIMAL, "  - name: c\n", "  - name: c\n    type: static\n");
    error_at(
        &text,
        "static_resources.clusters[0].type",
        &["unknown cluster type `static`", "write STATIC"],
    );
    let text = edit(MINIMAL, "  - name: c\n", "  - name: c\n    type: DNS\n");
    error_at(
        &text,
        "static_resources.clusters[0].type",
        &["unknown cluster type `DNS`, expected one of STATIC, STRICT_DNS, LOGICAL_DNS, EDS, ORIGINAL_DST"],
    );
}

#[test]
fn durations_in_the_config() {
    let timeout = |value: &str| {
        edit(
            MINIMAL,
            "  - name: c\n",
            &format!("  - name: c\n    connect_timeout: {value}\n"),
        )
    };
    for (value, expected) in [
        ("0.25s", Duration::from_millis(250)),
        ("5s", Duration::from_secs(5)),
        ("1.5s", Duration::from_millis(1500)),
        ("\"2s\"", Duration::from_secs(2)),
        ("0.000000001s", Duration::from_nanos(1)),
    ] {
        let config = load_both(&timeout(value)).unwrap();
        assert_eq!(config.clusters[0].connect_timeout, expected, "{value}");
    }
    let path = "static_resources.clusters[0].connect_timeout";
    error_at(
        &timeout("250ms"),
        path,
        &["invalid duration \"250ms\": Envoy durations are in seconds; write \"0.25s\""],
    );
    error_at(
        &timeout("5"),
        path,
        &["invalid duration 5: a duration is a string, not a number; write it as a string with an `s` suffix: \"5s\""],
    );
    error_at(
        &timeout("{ seconds: 5 }"),
        path,
        &["not as a mapping of `seconds` and `nanos`"],
    );
    error_at(&timeout("-1s"), path, &["a duration cannot be negative"]);
    error_at(
        &timeout("1.2.3s"),
        path,
        &["invalid duration \"1.2.3s\": a duration is a number of seconds with an `s` suffix, such as \"5s\" or \"0.25s\""],
    );
    let problem = problem_at(&timeout("0s"), path);
    assert_eq!(problem, Problem::ZeroConnectTimeout);
    assert!(problem.to_string().contains("must be above 0s"));
    error_at(
        &edit(
            MINIMAL,
            "cluster: c\n",
            "cluster: c\n          idle_timeout: 1h\n",
        ),
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.idle_timeout",
        &[
            "invalid duration \"1h\": Envoy durations are in seconds; write \"3600s\"",
            "at line 13 column 25",
        ],
    );
}

#[test]
fn unknown_fields_name_their_path() {
    let hint = "zerohop supports only part of Envoy's v3 API so far, and rejects a field it does not support rather than ignore it";
    for (from, to, path, expected) in [
        (
            "  - name: l\n",
            "  - name: l\n    per_connection_buffer_limit_bytes: 32768\n",
            "static_resources.listeners[0].per_connection_buffer_limit_bytes",
            "unknown field `per_connection_buffer_limit_bytes`, expected one of `name`, `address`, `filterChains`, `filter_chains`",
        ),
        (
            "    - filters:\n",
            "    - filter_chain_match: { destination_port: 10000 }\n      filters:\n",
            "static_resources.listeners[0].filter_chains[0].filter_chain_match",
            "unknown field `filter_chain_match`, expected `filters`",
        ),
        (
            "          stat_prefix: tcp\n",
            "          stat_prefix: tcp\n          max_connect_attempts: 2\n",
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.max_connect_attempts",
            "unknown field `max_connect_attempts`, expected one of `statPrefix`, `stat_prefix`, `cluster`",
        ),
        (
            "          stat_prefix: tcp\n",
            "          stat_prefx: tcp\n",
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefx",
            "unknown field `stat_prefx`",
        ),
        (
            "  - name: c\n",
            "  - name: c\n    upstream_connection_options: {}\n",
            "static_resources.clusters[0].upstream_connection_options",
            "unknown field `upstream_connection_options`",
        ),
        (
            "      - lb_endpoints:\n",
            "      - locality: { zone: a }\n        lb_endpoints:\n",
            "static_resources.clusters[0].load_assignment.endpoints[0].locality",
            "unknown field `locality`, expected `lbEndpoints` or `lb_endpoints`",
        ),
        (
            "port_value: 80 }",
            "port_value: 80, resolver_name: r }",
            "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.resolver_name",
            "unknown field `resolver_name`",
        ),
        (
            "address: { socket_address: { address: 0.0.0.0",
            "address: { pipe: { path: /tmp/s }, socket_address: { address: 0.0.0.0",
            "static_resources.listeners[0].address.pipe",
            "unknown field `pipe`, expected `socketAddress` or `socket_address`",
        ),
        (
            "  listeners:\n",
            "  secrets: []\n  listeners:\n",
            "static_resources.secrets",
            "unknown field `secrets`, expected `listeners` or `clusters`",
        ),
    ] {
        error_at(&edit(MINIMAL, from, to), path, &[expected, hint]);
    }
}

#[test]
fn unknown_fields_carry_their_line() {
    let text = edit(
        FIXTURE,
        "    lb_policy: ROUND_ROBIN\n",
        "    lb_policy: ROUND_ROBIN\n    dns_lookup_family: V4_ONLY\n",
    );
    let error = load(&text).unwrap_err();
    assert!(
        matches!(error, EnvoyConfigError::Schema { line: Some(33), .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "envoy.yaml: static_resources.clusters[0].dns_lookup_family: unknown field \
         `dns_lookup_family`, expected one of `name`, `type`, `connectTimeout`, \
         `connect_timeout`, `lbPolicy`, `lb_policy`, `ringHashLbConfig`, \
         `ring_hash_lb_config`, `loadAssignment`, `load_assignment`, `leastRequestLbConfig`, \
         `least_request_lb_config`, `loadBalancingPolicy`, `load_balancing_policy`, \
         `maglevLbConfig`, `maglev_lb_config`, `maxRequestsPerConnection`, \
         `max_requests_per_connection`, `typedExtensionProtocolOptions`, \
         `typed_extension_protocol_options`, `healthChecks`, `health_checks`, \
         `circuitBreakers`, `circuit_breakers`, `outlierDetection`, `outlier_detection`, \
         `commonLbConfig`, `common_lb_config` at line 33 column 5 (zerohop supports only \
         part of Envoy's v3 API so far, and \
         rejects a field it does not support rather than ignore it: check the spelling, or \
         remove the field)"
    );
}

#[test]
fn top_level_sections() {
    for key in ["node", "dynamic_resources", "layered_runtime", "dataplane"] {
        let text = format!("{key}: {{}}\n{MINIMAL}");
        let error = load(&text).unwrap_err();
        let message = error.to_string();
        assert_eq!(error.path(), Some(key));
        assert!(
            message.starts_with(&format!(
                "envoy.yaml: {key}: not supported: zerohop reads only the `static_resources` \
                 and `admin` sections of an Envoy bootstrap so far; remove `{key}`"
            )),
            "{message}"
        );
        assert!(message.ends_with(" at line 1"), "{message}");
    }
    let message = load(&format!("dataplane: {{}}\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("it is zerohop's own section"), "{message}");
    assert_eq!(
        load("").unwrap_err().to_string(),
        "envoy.yaml: the config is empty; an Envoy config needs `static_resources` with \
         `listeners` and `clusters`"
    );
    assert_eq!(
        load("- a\n").unwrap_err().to_string(),
        "envoy.yaml: the top level is a list; it must be a mapping with `static_resources` \
         and `admin` keys"
    );
    let message = load("static_resources: [\n").unwrap_err().to_string();
    assert!(message.starts_with("envoy.yaml: "), "{message}");
    assert!(message.contains("line 2"), "{message}");
    // Anchors and aliases work, as in Envoy; merge keys (`<<`) do not, in Envoy either.
    let text = edit(
        MINIMAL,
        "        - endpoint: { address: { socket_address: { address: 10.0.0.2, port_value: 80 } } }\n",
        "        - endpoint: { address: &backend { socket_address: { address: 10.0.0.2, port_value: 80 } } }\n        - endpoint: { address: *backend }\n",
    );
    error_at(
        &text,
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[1].endpoint.address",
        &["endpoint 10.0.0.2:80 is already listed"],
    );
    let text = edit(MINIMAL, "  - name: c\n", "  - &cluster\n    name: c\n");
    let text = format!("{text}  - <<: *cluster\n    name: d\n");
    error_at(
        &text,
        "static_resources.clusters[1].<<",
        &["unknown field `<<`"],
    );
    // Sections may be empty or absent.
    assert_eq!(
        load_both("static_resources: {}\n").unwrap(),
        EnvoyConfig::default()
    );
    assert_eq!(
        load_both("admin: ~\nstatic_resources: ~\n").unwrap(),
        EnvoyConfig::default()
    );
    error_at(
        "static_resources: 5\n",
        "static_resources",
        &["invalid type: integer `5`, expected a mapping (Envoy's StaticResources)"],
    );
}

#[test]
fn camel_case_names_load_as_envoy_allows() {
    let text = MINIMAL
        .replace("static_resources", "staticResources")
        .replace("filter_chains", "filterChains")
        .replace("socket_address", "socketAddress")
        .replace("port_value", "portValue")
        .replace("typed_config", "typedConfig")
        .replace("stat_prefix", "statPrefix")
        .replace("load_assignment", "loadAssignment")
        .replace("cluster_name", "clusterName")
        .replace("lb_endpoints", "lbEndpoints");
    assert_eq!(load(&text).unwrap(), load(MINIMAL).unwrap());
    let text = edit(
        MINIMAL,
        "port_value: 80 }",
        "port_value: 80, portValue: 81 }",
    );
    error_at(
        &text,
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address",
        &["duplicate field `port_value`"],
    );
}

#[test]
fn filter_is_chosen_by_type_url() {
    // Envoy v3 selects the filter by `@type`; `name` is an annotation.
    for name in ["tcp_proxy", "my-proxy", "envoy.tcp_proxy", "\"\""] {
        let text = edit(
            MINIMAL,
            "name: envoy.filters.network.tcp_proxy",
            &format!("name: {name}"),
        );
        assert_eq!(load_both(&text).unwrap(), load(MINIMAL).unwrap(), "{name}");
    }
    let text = edit(
        MINIMAL,
        "      - name: envoy.filters.network.tcp_proxy\n        typed_config:",
        "      - typed_config:",
    );
    assert_eq!(load_both(&text).unwrap(), load(MINIMAL).unwrap());

    let path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.@type";
    let url = |to: &str| {
        edit(
            MINIMAL,
            "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            to,
        )
    };
    let supported = "zerohop supports only type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy and type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager so far";
    let message = error_at(
        &url("type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy"),
        path,
        &["unsupported filter type `type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy`: this network filter is not supported yet", supported],
    );
    assert!(message.ends_with("at line 10 column 11"), "{message}");
    error_at(
        &url("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"),
        path,
        &["this is an HTTP filter: it goes in an http_connection_manager's `http_filters`"],
    );
    error_at(
        &url("type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy"),
        path,
        &["this network filter is not supported yet", supported],
    );
    error_at(
        &url("type.googleapis.com/google.protobuf.Empty"),
        path,
        &["this is not a network filter zerohop knows", supported],
    );
    error_at(
        &url("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"),
        path,
        &["a type URL starts with `type.googleapis.com/`"],
    );
    error_at(
        &url("type.googleapis.com/envoy.config.filter.network.tcp_proxy.v2.TcpProxy"),
        path,
        &["this is the v2 API, which Envoy has removed"],
    );
    error_at(
        &url("type.googleapis.com/xds.type.v3.TypedStruct"),
        path,
        &["TypedStruct wrappers are not supported"],
    );
    error_at(
        &edit(
            MINIMAL,
            "\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "\"@type\": [1]",
        ),
        path,
        &["invalid type: sequence, expected a string"],
    );
}

#[test]
fn type_url_anywhere_in_typed_config() {
    // proto3 JSON allows `@type` after the other keys; the result must not differ.
    let text = edit(
        MINIMAL,
        "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: tcp\n",
        "          stat_prefix: tcp\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n",
    );
    assert_eq!(load_both(&text).unwrap(), load(MINIMAL).unwrap());
    let path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    error_at(
        &edit(
            &text,
            "stat_prefix: tcp",
            "stat_prefix: tcp\n          bogus: 1",
        ),
        &format!("{path}.bogus"),
        &["unknown field `bogus`"],
    );
    error_at(
        &edit(&text, "cluster: c", "cluster: c\n          idle_timeout: 5"),
        &format!("{path}.idle_timeout"),
        &["write it as a string with an `s` suffix: \"5s\""],
    );
    error_at(
        &edit(&text, "tcp_proxy.v3.TcpProxy", "redis_proxy.v3.RedisProxy"),
        &format!("{path}.@type"),
        &["this network filter is not supported yet"],
    );
    // YAML itself forbids a key twice in one mapping.
    let error = load(&edit(
        &text,
        "cluster: c",
        "cluster: c\n          stat_prefix: again",
    ))
    .unwrap_err();
    assert!(matches!(error, EnvoyConfigError::Yaml { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "envoy.yaml: static_resources.listeners[0].filter_chains[0].filters[0].typed_config: \
         duplicate entry with key \"stat_prefix\" at line 10 column 11"
    );
    let problem = problem_at(
        &edit(
            &text,
            "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n",
            "",
        ),
        path,
    );
    assert_eq!(problem, Problem::MissingTypeUrl);
    assert_eq!(
        problem_at(&with_chains("[{ filters: [{ typed_config: {} }] }]"), path),
        Problem::MissingTypeUrl
    );
}

/// The clusters of [`MINIMAL`], for configs that vary the listener.
const CLUSTERS: &str = r#"
  clusters:
  - name: c
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.0.2, port_value: 80 } } }
"#;

const TCP_PROXY: &str = r#"{ "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: tcp, cluster: c }"#;

/// A config whose one listener has `filter_chains` as given (flow style).
fn with_chains(chains: &str) -> String {
    format!(
        "static_resources:\n  listeners:\n  - name: l\n    address: {{ socket_address: {{ address: 0.0.0.0, port_value: 10000 }} }}\n    filter_chains: {chains}\n{CLUSTERS}"
    )
}

#[test]
fn filter_chain_shape() {
    let listener = "static_resources.listeners[0]";
    let one = format!(
        "[{{ filters: [{{ name: envoy.filters.network.tcp_proxy, typed_config: {TCP_PROXY} }}] }}]"
    );
    assert_eq!(
        load_both(&with_chains(&one)).unwrap(),
        load(MINIMAL).unwrap()
    );

    for chains in ["[]", "~"] {
        let problem = problem_at(&with_chains(chains), &format!("{listener}.filter_chains"));
        assert_eq!(problem, Problem::NoFilterChains);
        assert!(problem
            .to_string()
            .contains("a listener needs one filter chain with a tcp_proxy filter"));
    }
    let text = edit(&with_chains("[]"), "    filter_chains: []\n", "");
    assert_eq!(
        problem_at(&text, &format!("{listener}.filter_chains")),
        Problem::NoFilterChains
    );

    let two = format!("[{{ filters: [{{ typed_config: {TCP_PROXY} }}] }}, {{ filters: [{{ typed_config: {TCP_PROXY} }}] }}]");
    let problem = problem_at(&with_chains(&two), &format!("{listener}.filter_chains[1]"));
    assert_eq!(problem, Problem::SecondFilterChain);
    assert!(problem
        .to_string()
        .contains("filter_chain_match is not supported"));

    for chains in ["[{ filters: [] }]", "[{}]"] {
        let problem = problem_at(
            &with_chains(chains),
            &format!("{listener}.filter_chains[0].filters"),
        );
        assert_eq!(problem, Problem::NoFilters);
    }

    let two_filters = format!(
        "[{{ filters: [{{ typed_config: {TCP_PROXY} }}, {{ name: second, typed_config: {TCP_PROXY} }}] }}]"
    );
    error_at(
        &with_chains(&two_filters),
        &format!("{listener}.filter_chains[0].filters[1]"),
        &["tcp_proxy (static_resources.listeners[0].filter_chains[0].filters[0]) is a terminal filter: it must be the last in its chain, so no filter can follow it; remove this one"],
    );

    let problem = problem_at(
        &with_chains("[{ filters: [{ name: envoy.filters.network.tcp_proxy }] }]"),
        &format!("{listener}.filter_chains[0].filters[0]"),
    );
    assert_eq!(problem, Problem::MissingTypedConfig);
    assert!(problem
        .to_string()
        .contains("Envoy v3 selects a filter by the `\"@type\"` of its typed_config"));

    error_at(
        &with_chains("[{ filters: [{ typed_config: tcp_proxy }] }]"),
        &format!("{listener}.filter_chains[0].filters[0].typed_config"),
        &["invalid type: string \"tcp_proxy\", expected a mapping with an `@type` key"],
    );
}

#[test]
fn names_are_required_and_unique() {
    let problem = problem_at(
        &edit(MINIMAL, "  - name: l\n    address:", "  - address:"),
        "static_resources.listeners[0]",
    );
    assert!(matches!(problem, Problem::Missing { field: "name", .. }));
    assert_eq!(
        problem.to_string(),
        "`name` is missing; give each listener a unique name, e.g. `name: listener_0` (Envoy \
         would make one up; zerohop uses it in logs and counters)"
    );
    let problem = problem_at(
        &edit(MINIMAL, "  - name: l\n", "  - name: \"\"\n"),
        "static_resources.listeners[0].name",
    );
    assert!(matches!(problem, Problem::Empty { field: "name", .. }));
    let problem = problem_at(
        &edit(MINIMAL, "  - name: c\n    load", "  - load"),
        "static_resources.clusters[0]",
    );
    assert!(problem
        .to_string()
        .starts_with("`name` is missing; give each cluster a unique name"));

    let two_clusters = format!(
        "{MINIMAL}  - name: c\n    load_assignment: {{ cluster_name: c, endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 10.0.0.3, port_value: 80 }} }} }} }}] }}] }}\n"
    );
    let message = error_at(
        &two_clusters,
        "static_resources.clusters[1].name",
        &["duplicate cluster name `c` (first at static_resources.clusters[0]); give each cluster its own name"],
    );
    assert!(!message.contains(" at line"), "{message}");

    let second_listener = r#"  - name: l
    address: { socket_address: { address: 0.0.0.0, port_value: 10001 } }
    filter_chains: [{ filters: [{ typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: tcp, cluster: c } }] }]
  clusters:
"#;
    let text = edit(MINIMAL, "  clusters:\n", second_listener);
    error_at(
        &text,
        "static_resources.listeners[1].name",
        &["duplicate listener name `l` (first at static_resources.listeners[0]); give each listener its own name"],
    );
    // Same name, same address: the name is reported first; another name, same address:
    // the address.
    let text = edit(
        &text,
        "  - name: l\n    address: { socket_address: { address: 0.0.0.0, port_value: 10001",
        "  - name: l2\n    address: { socket_address: { address: 0.0.0.0, port_value: 10000",
    );
    error_at(
        &text,
        "static_resources.listeners[1].address",
        &["0.0.0.0:10000 is already the address of static_resources.listeners[0]; two listeners cannot bind one address and port"],
    );
    // Different ports, or different addresses on one port, are fine.
    let text = edit(
        &text,
        "address: 0.0.0.0, port_value: 10000 } }\n    filter_chains: [",
        "address: 10.0.0.1, port_value: 10000 } }\n    filter_chains: [",
    );
    let config = load_both(&text).unwrap();
    assert_eq!(config.listeners[1].address, addr("10.0.0.1:10000"));
}

#[test]
fn listener_addresses() {
    let listener = "static_resources.listeners[0].address.socket_address";
    let with = |socket: &str| {
        edit(
            MINIMAL,
            "address: { socket_address: { address: 0.0.0.0, port_value: 10000 } }",
            &format!("address: {{ socket_address: {socket} }}"),
        )
    };
    assert_eq!(
        load_both(&with(
            "{ address: 10.1.2.3, port_value: \"443\", protocol: TCP }"
        ))
        .unwrap()
        .listeners[0]
            .address,
        addr("10.1.2.3:443")
    );
    error_at(
        &with("{ address: \"::\", port_value: 10000 }"),
        &format!("{listener}.address"),
        &["`::` is an IPv6 address, and zerohop's dataplane is IPv4-only so far; use an IPv4 address"],
    );
    let problem = problem_at(
        &with("{ address: localhost, port_value: 10000 }"),
        &format!("{listener}.address"),
    );
    assert_eq!(
        problem,
        Problem::NotIpv4 {
            address: "localhost".to_owned(),
            role: AddressRole::Listener
        }
    );
    assert_eq!(
        problem.to_string(),
        "`localhost` is not an IPv4 address; a listener binds to an IP address, such as \
         0.0.0.0 (every address) or 10.0.0.1"
    );
    error_at(
        &with("{ address: 10.0.0.1/24, port_value: 10000 }"),
        &format!("{listener}.address"),
        &["`10.0.0.1/24` is not an IPv4 address"],
    );
    error_at(
        &with("{ address: 0.0.0.0, port_value: 0 }"),
        &format!("{listener}.port_value"),
        &["port 0 would make Envoy pick an ephemeral port, which zerohop does not; use a fixed port from 1 to 65535"],
    );
    error_at(
        &with("{ address: 0.0.0.0, port_value: 65536 }"),
        &format!("{listener}.port_value"),
        &["port 65536 is out of range; use 1 to 65535"],
    );
    error_at(
        &with("{ address: 0.0.0.0, port_value: -1 }"),
        &format!("{listener}.port_value"),
        &["invalid value: integer `-1`, expected a whole number from 0 to 4294967295"],
    );
    error_at(
        &with("{ address: 0.0.0.0, port_value: http }"),
        &format!("{listener}.port_value"),
        &["invalid value: string \"http\", expected a whole number"],
    );
    error_at(
        &with("{ address: 0.0.0.0 }"),
        listener,
        &["`port_value` is missing; set the port, 1 to 65535 (`named_port` is not supported)"],
    );
    error_at(
        &with("{ port_value: 10000 }"),
        listener,
        &["`address` is missing; write the IPv4 address, e.g. `address: 0.0.0.0, port_value: 10000`"],
    );
    error_at(
        &with("{ address: 0.0.0.0, port_value: 10000, protocol: UDP }"),
        &format!("{listener}.protocol"),
        &["protocol UDP is not supported"],
    );
    error_at(
        &with("{ address: 0.0.0.0, port_value: 10000, protocol: SCTP }"),
        &format!("{listener}.protocol"),
        &["unknown socket protocol `SCTP`, expected one of TCP, UDP"],
    );
    error_at(
        &edit(
            MINIMAL,
            "address: { socket_address: { address: 0.0.0.0, port_value: 10000 } }",
            "address: {}",
        ),
        "static_resources.listeners[0].address",
        &["`socket_address` is missing; zerohop supports socket addresses only"],
    );
    error_at(
        &edit(MINIMAL, "    address: { socket_address: { address: 0.0.0.0, port_value: 10000 } }\n", ""),
        "static_resources.listeners[0]",
        &["`address` is missing; add `address: { socket_address: { address: 0.0.0.0, port_value: 10000 } }`"],
    );
}

#[test]
fn endpoints() {
    let base = "static_resources.clusters[0].load_assignment";
    let endpoint = format!("{base}.endpoints[0].lb_endpoints[0]");
    let socket = format!("{endpoint}.endpoint.address.socket_address");
    let with = |value: &str| {
        edit(
            MINIMAL,
            "socket_address: { address: 10.0.0.2, port_value: 80 }",
            &format!("socket_address: {value}"),
        )
    };
    let problem = problem_at(
        &with("{ address: backend.svc.cluster.local, port_value: 80 }"),
        &format!("{socket}.address"),
    );
    assert_eq!(
        problem.to_string(),
        "`backend.svc.cluster.local` is not an IPv4 address; the endpoints of a STATIC cluster \
         are IP addresses, and zerohop does not resolve names (STRICT_DNS and LOGICAL_DNS \
         clusters are not supported yet)"
    );
    error_at(
        &with("{ address: \"fd00::2\", port_value: 80 }"),
        &format!("{socket}.address"),
        &["`fd00::2` is an IPv6 address"],
    );
    for (ip, kind) in [
        ("0.0.0.0", "the unspecified address"),
        ("255.255.255.255", "the broadcast address"),
        ("224.0.0.1", "a multicast address"),
    ] {
        error_at(
            &with(&format!("{{ address: {ip}, port_value: 80 }}")),
            &format!("{socket}.address"),
            &[&format!(
                "{ip} is not a host an endpoint can be (it is {kind})"
            )],
        );
    }
    error_at(
        &with("{ address: 10.0.0.2, port_value: 0 }"),
        &format!("{socket}.port_value"),
        &["port 0 cannot be connected to; use the port the upstream host listens on, 1 to 65535"],
    );
    error_at(
        &with("{ address: 10.0.0.2, port_value: 65536 }"),
        &format!("{socket}.port_value"),
        &["port 65536 is out of range; use 1 to 65535"],
    );

    // Weights.
    let weight = |value: &str| {
        edit(
            MINIMAL,
            "port_value: 80 } } }\n",
            &format!("port_value: 80 }} }} }}\n          load_balancing_weight: {value}\n"),
        )
    };
    assert_eq!(
        load_both(&weight("7")).unwrap().clusters[0].endpoints[0].weight,
        7
    );
    assert_eq!(
        load_both(&weight("4294967295")).unwrap().clusters[0].endpoints[0].weight,
        u32::MAX
    );
    for bad in ["0", "4294967296"] {
        let problem = problem_at(&weight(bad), &format!("{endpoint}.load_balancing_weight"));
        assert_eq!(
            problem.to_string(),
            format!(
                "{bad} is out of range; use 1 to 4294967295, or leave it out for the default 1"
            )
        );
    }
    let heavy = "{ endpoint: { address: { socket_address: { address: 10.0.0.3, port_value: 80 } } }, load_balancing_weight: 4294967295 }";
    let text = edit(
        MINIMAL,
        "port_value: 80 } } }\n",
        &format!("port_value: 80 }} }} }}\n        - {heavy}\n"),
    );
    assert_eq!(
        problem_at(
            &text,
            &format!("{base}.endpoints[0].lb_endpoints[1].load_balancing_weight")
        ),
        Problem::WeightSumTooLarge
    );

    // Duplicates, also across `endpoints[]` entries.
    let again = "      - lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.0.2, port_value: 80 } } } }]\n";
    let text = format!("{MINIMAL}{again}");
    error_at(
        &text,
        &format!("{base}.endpoints[1].lb_endpoints[0].endpoint.address"),
        &["endpoint 10.0.0.2:80 is already listed at static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]; list each endpoint once, and use `load_balancing_weight` to send it more connections"],
    );
    // Several `endpoints[]` entries are flattened, in order.
    let text = format!("{MINIMAL}{}", again.replace("10.0.0.2", "10.0.0.9"));
    let endpoints = &load_both(&text).unwrap().clusters[0].endpoints;
    assert_eq!(
        endpoints.iter().map(|e| e.address).collect::<Vec<_>>(),
        vec![addr("10.0.0.2:80"), addr("10.0.0.9:80")]
    );

    let line = "        - endpoint: { address: { socket_address: { address: 10.0.0.2, port_value: 80 } } }\n";
    let problem = problem_at(
        &edit(MINIMAL, line, "        - load_balancing_weight: 1\n"),
        &endpoint,
    );
    assert!(problem
        .to_string()
        .starts_with("`endpoint` is missing; add `endpoint: {"));
    let problem = problem_at(
        &edit(MINIMAL, line, "        - endpoint: {}\n"),
        &format!("{endpoint}.endpoint"),
    );
    assert!(problem.to_string().starts_with("`address` is missing; add `address: { socket_address: { address: 10.0.0.2, port_value: 8080 } }`"));
}

#[test]
fn cluster_load_assignment() {
    let cluster = "static_resources.clusters[0]";
    let assignment = format!("{cluster}.load_assignment");
    // Envoy compares `cluster_name` with the cluster's name only for EDS; so does zerohop.
    let text = edit(MINIMAL, "cluster_name: c", "cluster_name: something_else");
    assert_eq!(load_both(&text).unwrap(), load(MINIMAL).unwrap());
    let problem = problem_at(&edit(MINIMAL, "      cluster_name: c\n", ""), &assignment);
    assert_eq!(
        problem.to_string(),
        "`cluster_name` is missing; Envoy requires it; write the cluster's name, e.g. \
         `cluster_name: service_backend`"
    );
    let problem = problem_at(
        &edit(MINIMAL, "cluster_name: c", "cluster_name: \"\""),
        &format!("{assignment}.cluster_name"),
    );
    assert!(matches!(
        problem,
        Problem::Empty {
            field: "cluster_name",
            ..
        }
    ));

    let no_assignment = format!(
        "{}  clusters:\n  - name: c\n    connect_timeout: 1s\n",
        &MINIMAL[..MINIMAL.find("  clusters:").unwrap()]
    );
    let problem = problem_at(&no_assignment, cluster);
    assert_eq!(problem, Problem::NoEndpoints);
    assert!(problem
        .to_string()
        .starts_with("the cluster has no endpoints; list at least one under `load_assignment.endpoints[].lb_endpoints[]`"));
    for empty in [
        "{ cluster_name: c }",
        "{ cluster_name: c, endpoints: [] }",
        "{ cluster_name: c, endpoints: [{}] }",
        "{ cluster_name: c, endpoints: [{ lb_endpoints: [] }, { lb_endpoints: ~ }] }",
    ] {
        let text = format!("{no_assignment}    load_assignment: {empty}\n");
        assert_eq!(
            problem_at(&text, &format!("{assignment}.endpoints")),
            Problem::NoEndpoints,
            "{empty}"
        );
    }
}

#[test]
fn tcp_proxy_fields() {
    let path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    let problem = problem_at(&edit(MINIMAL, "          stat_prefix: tcp\n", ""), path);
    assert_eq!(
        problem.to_string(),
        "`stat_prefix` is missing; Envoy requires it: the filter's counters are named \
         tcp.<stat_prefix>.*; e.g. `stat_prefix: destination`"
    );
    let problem = problem_at(
        &edit(MINIMAL, "stat_prefix: tcp", "stat_prefix: \"\""),
        &format!("{path}.stat_prefix"),
    );
    assert!(matches!(
        problem,
        Problem::Empty {
            field: "stat_prefix",
            ..
        }
    ));
    let problem = problem_at(&edit(MINIMAL, "          cluster: c\n", ""), path);
    assert_eq!(
        problem.to_string(),
        "`cluster` is missing; set it to the name of a cluster in static_resources.clusters"
    );
    let problem = problem_at(
        &edit(
            MINIMAL,
            "          cluster: c\n",
            "          cluster: \"\"\n",
        ),
        &format!("{path}.cluster"),
    );
    assert!(matches!(
        problem,
        Problem::Empty {
            field: "cluster",
            ..
        }
    ));
    let problem = problem_at(
        &edit(
            MINIMAL,
            "          cluster: c\n",
            "          weighted_clusters: { clusters: [{ name: c, weight: 1 }] }\n",
        ),
        &format!("{path}.weighted_clusters"),
    );
    assert_eq!(problem, Problem::WeightedClusters);

    error_at(
        &edit(MINIMAL, "          cluster: c\n", "          cluster: d\n"),
        &format!("{path}.cluster"),
        &["unknown cluster `d` (clusters are: c); a tcp_proxy's `cluster` must name a cluster in static_resources.clusters"],
    );
    let no_clusters = &MINIMAL[..MINIMAL.find("  clusters:").unwrap()];
    error_at(
        no_clusters,
        &format!("{path}.cluster"),
        &["unknown cluster `c` (no clusters are defined)"],
    );
}

/// MINIMAL with `access_log: [entries]` on its tcp_proxy (flow style).
fn with_access_log(entries: &str) -> String {
    edit(
        MINIMAL,
        "          cluster: c\n",
        &format!("          cluster: c\n          access_log: [{entries}]\n"),
    )
}

/// A file logger on `path` with `fields` after its `@type`.
fn file_log(fields: &str) -> String {
    format!(
        "{{ name: envoy.access_loggers.file, typed_config: {{ \"@type\": \
         type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, {fields} }} }}"
    )
}

fn access_logs_of(text: &str) -> Vec<AccessLog> {
    match load_both(text).unwrap_or_else(|e| panic!("{e}")).listeners[0]
        .filter
        .clone()
    {
        NetworkFilter::TcpProxy(t) => t.access_log,
        other => panic!("not a tcp_proxy: {other:?}"),
    }
}

fn one_log(path: &str, format: &str) -> Vec<AccessLog> {
    vec![AccessLog {
        path: path.to_owned(),
        format: format.to_owned(),
    }]
}

const AL: &str =
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.access_log[0]";

fn al_path(rest: &str) -> String {
    format!("{AL}{rest}")
}

#[test]
fn access_logs_load() {
    assert!(access_logs_of(MINIMAL).is_empty());
    let format = "[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_HOST% %BYTES_SENT%\\n";
    let expected = "[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_HOST% %BYTES_SENT%\n";
    for fields in [
        format!("path: /var/log/a.log, log_format: {{ text_format_source: {{ inline_string: \"{format}\" }} }}"),
        format!("path: /var/log/a.log, log_format: {{ text_format: \"{format}\" }}"),
        // Deprecated in Envoy v3, still honoured.
        format!("path: /var/log/a.log, format: \"{format}\""),
        format!("path: /var/log/a.log, log_format: {{ text_format: \"{format}\", omit_empty_values: false }}"),
    ] {
        assert_eq!(
            access_logs_of(&with_access_log(&file_log(&fields))),
            one_log("/var/log/a.log", expected),
            "{fields}"
        );
    }
    // No format: Envoy's default (an empty deprecated `format` is proto3's unset).
    for fields in ["path: /var/log/a.log", "path: /var/log/a.log, format: \"\""] {
        assert_eq!(
            access_logs_of(&with_access_log(&file_log(fields))),
            one_log("/var/log/a.log", DEFAULT_FORMAT),
        );
    }
    // /dev/stdout as a file.
    assert_eq!(
        access_logs_of(&with_access_log(&file_log("path: /dev/stdout"))),
        one_log("/dev/stdout", DEFAULT_FORMAT),
    );
    // The stdout and stderr loggers, by @type or (without typed_config) by name.
    let stdout = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
    let stderr = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog";
    for (entry, path, format) in [
        (format!("{{ name: x, typed_config: {{ \"@type\": {stdout} }} }}"), "/dev/stdout", DEFAULT_FORMAT),
        (
            format!("{{ typed_config: {{ \"@type\": {stderr}, log_format: {{ text_format: \"%DURATION%\" }} }} }}"),
            "/dev/stderr",
            "%DURATION%",
        ),
        ("{ name: envoy.access_loggers.stdout }".to_owned(), "/dev/stdout", DEFAULT_FORMAT),
        ("{ name: envoy.access_loggers.stderr, typed_config: {} }".to_owned(), "/dev/stderr", DEFAULT_FORMAT),
    ] {
        assert_eq!(access_logs_of(&with_access_log(&entry)), one_log(path, format), "{entry}");
    }
    // `@type` anywhere in the mapping, camelCase names, several loggers in order.
    let logs = access_logs_of(&with_access_log(
        "{ typedConfig: { path: /a, \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, logFormat: { textFormatSource: { inlineString: \"%DURATION%\" } } } }, \
         { typed_config: { logFormat: { textFormat: \"%BYTES_SENT%\" }, \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog } }",
    ));
    assert_eq!(
        logs,
        vec![
            AccessLog {
                path: "/a".to_owned(),
                format: "%DURATION%".to_owned()
            },
            AccessLog {
                path: "/dev/stdout".to_owned(),
                format: "%BYTES_SENT%".to_owned()
            },
        ]
    );
}

#[test]
fn access_log_errors() {
    let tc = al_path(".typed_config");
    // The file logger's path.
    let problem = problem_at(&with_access_log(&file_log("format: x")), &tc);
    assert!(
        matches!(problem, Problem::Missing { field: "path", .. }),
        "{problem}"
    );
    assert!(
        problem
            .to_string()
            .contains("e.g. `path: /var/log/zerohop/access.log`"),
        "{problem}"
    );
    let problem = problem_at(
        &with_access_log(&file_log("path: \"\"")),
        &al_path(".typed_config.path"),
    );
    assert!(
        matches!(problem, Problem::Empty { field: "path", .. }),
        "{problem}"
    );
    for entry in [
        "{ name: envoy.access_loggers.file }",
        "{}",
        "{ name: envoy.access_loggers.file, typed_config: {} }",
    ] {
        let problem = problem_at(&with_access_log(entry), AL);
        assert!(
            matches!(
                problem,
                Problem::Missing {
                    field: "typed_config",
                    ..
                }
            ),
            "{entry}: {problem}"
        );
    }
    let problem = problem_at(&with_access_log("{ typed_config: { path: /a } }"), &tc);
    assert!(
        matches!(problem, Problem::Missing { field: "@type", .. }),
        "{problem}"
    );

    // Formats.
    for (fields, at, expected) in [
        (
            "path: /a, json_format: { a: b }",
            ".json_format",
            "`json_format` is not supported yet; JSON access logs are not supported yet",
        ),
        (
            "path: /a, typed_json_format: { a: b }",
            ".typed_json_format",
            "`typed_json_format` is not supported yet",
        ),
        (
            "path: /a, log_format: { json_format: { a: b } }",
            ".log_format.json_format",
            "`json_format` is not supported yet; JSON access logs",
        ),
        (
            "path: /a, format: x, log_format: { text_format: y }",
            ".log_format",
            "`log_format` cannot be set together with `format`",
        ),
        (
            "path: /a, log_format: { text_format: x, text_format_source: { inline_string: y } }",
            ".log_format.text_format_source",
            "cannot be set together with `text_format`",
        ),
        (
            "path: /a, log_format: {}",
            ".log_format",
            "one of text_format, json_format and text_format_source is required",
        ),
        (
            "path: /a, log_format: { text_format: \"\" }",
            ".log_format.text_format",
            "`text_format` is empty",
        ),
        (
            "path: /a, log_format: { text_format_source: {} }",
            ".log_format.text_format_source",
            "`inline_string` is missing; write the text inline",
        ),
        (
            "path: /a, log_format: { text_format_source: { inline_string: \"\" } }",
            ".log_format.text_format_source.inline_string",
            "`inline_string` is empty",
        ),
        (
            "path: /a, log_format: { text_format_source: { filename: /f } }",
            ".log_format.text_format_source.filename",
            "`filename` is not supported yet",
        ),
        (
            "path: /a, log_format: { text_format: x, omit_empty_values: true }",
            ".log_format.omit_empty_values",
            "`omit_empty_values` is not supported yet",
        ),
        (
            "path: /a, log_format: { text_format: x, formatters: [] }",
            ".log_format.formatters",
            "`formatters` is not supported yet",
        ),
        (
            "path: /a, log_format: { text_format_source: { inline_string: \"%FOO%\" } }",
            ".log_format.text_format_source.inline_string",
            "invalid access log format: unknown command %FOO%; zerohop supports %START_TIME%",
        ),
        (
            "path: /a, format: \"100% done\"",
            ".format",
            "invalid access log format: the `%` at byte 3 starts no command",
        ),
        (
            "path: /a, log_format: { text_format: \"%PROTOCOL\" }",
            ".log_format.text_format",
            "not closed with `%`",
        ),
        (
            "path: /a, format: \"%START_TIME(%q)%\"",
            ".format",
            "`%q` in %START_TIME(%q)% is not a time specifier",
        ),
    ] {
        error_at(
            &with_access_log(&file_log(fields)),
            &format!("{tc}{at}"),
            &[expected],
        );
    }

    // Loggers zerohop does not have.
    for (url, expected) in [
        (
            "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "this access logger is not supported yet; zerohop supports type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        ),
        (
            "envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "a type URL starts with `type.googleapis.com/`; write type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        ),
        ("type.googleapis.com/envoy.config.accesslog.v2.FileAccessLog", "this is the v2 API"),
        ("type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "this is not an access logger zerohop knows"),
    ] {
        for entry in [
            format!("{{ name: x, typed_config: {{ \"@type\": {url}, path: /a }} }}"),
            format!("{{ name: x, typed_config: {{ path: /a, \"@type\": {url} }} }}"),
        ] {
            error_at(
                &with_access_log(&entry),
                &al_path(".typed_config.@type"),
                &[&format!("unsupported access logger type `{url}`: {expected}")],
            );
        }
    }
    error_at(
        &with_access_log("{ name: envoy.access_loggers.http_grpc }"),
        &al_path(".name"),
        &["unsupported access logger `envoy.access_loggers.http_grpc`: zerohop supports envoy.access_loggers.file, envoy.access_loggers.stdout and envoy.access_loggers.stderr so far"],
    );
    let problem = problem_at(
        &with_access_log(
            "{ name: envoy.access_loggers.stdout, filter: { status_code_filter: {} } }",
        ),
        &al_path(".filter"),
    );
    assert!(
        problem
            .to_string()
            .starts_with("`filter` is not supported yet; zerohop logs every request"),
        "{problem}"
    );
    // Unknown fields, as everywhere.
    error_at(
        &with_access_log(&file_log("path: /a, flush_interval: 1s")),
        &al_path(".typed_config.flush_interval"),
        &["unknown field `flush_interval`, expected one of `path`, `format`"],
    );
    error_at(
        &with_access_log(&file_log(
            "path: /a, log_format: { text_format: x, content_type: text/plain }",
        )),
        &al_path(".typed_config.log_format.content_type"),
        &["unknown field `content_type`"],
    );
    error_at(
        &with_access_log("{ name: envoy.access_loggers.stdout, extension: 1 }"),
        &al_path(".extension"),
        &["unknown field `extension`, expected one of `name`, `filter`"],
    );
}

#[test]
fn admin_address() {
    let with = |admin: &str| format!("admin: {admin}\n{MINIMAL}");
    let config = load_both(&with(
        "{ address: { socket_address: { address: 0.0.0.0, port_value: 9901 } } }",
    ))
    .unwrap();
    assert_eq!(config.admin.unwrap().address, addr("0.0.0.0:9901"));
    error_at(
        &with("{ address: { socket_address: { address: 0.0.0.0, port_value: 10000 } } }"),
        "admin.address",
        &["0.0.0.0:10000 is also the address of listener `l` (static_resources.listeners[0]); give the admin interface a port of its own"],
    );
    error_at(
        &with("{}"),
        "admin",
        &["`address` is missing; add `address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }`"],
    );
    error_at(
        &with("{ address: { socket_address: { address: localhost, port_value: 9901 } } }"),
        "admin.address.socket_address.address",
        &["`localhost` is not an IPv4 address; the admin interface binds to an IP address, such as 127.0.0.1"],
    );
    error_at(
        &with("{ address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }"),
        "admin.address.socket_address.port_value",
        &["port 0 would make Envoy pick an ephemeral port"],
    );
    error_at(
        &with("{ access_log_path: /dev/null, address: { socket_address: { address: 127.0.0.1, port_value: 9901 } } }"),
        "admin.access_log_path",
        &["unknown field `access_log_path`, expected `address`"],
    );
}

#[test]
fn errors_have_no_source() {
    // The message is complete; a chain printer must not repeat the YAML error.
    let error = load(&edit(MINIMAL, "cluster: c\n", "cluster: d\n")).unwrap_err();
    assert!(std::error::Error::source(&error).is_none());
    let error = load("static_resources: [\n").unwrap_err();
    assert!(std::error::Error::source(&error).is_none());
    assert_eq!(error.path(), None);
}

/// Truncate the example at every byte and replace each byte in turn: loading must
/// return an error or a config, never panic.
#[test]
fn never_panics() {
    for end in 0..=FIXTURE.len() {
        if FIXTURE.is_char_boundary(end) {
            let _ = load(&FIXTURE[..end]);
        }
    }
    let deferred = edit(
        FIXTURE,
        "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: destination\n",
        "          stat_prefix: destination\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n",
    );
    // The deferred (`@type` not first) path only differs inside typed_config.
    let block =
        deferred.find("        typed_config:").unwrap()..deferred.find("  clusters:").unwrap();
    for (text, range) in [(FIXTURE, 0..FIXTURE.len()), (deferred.as_str(), block)] {
        for i in range {
            for replacement in ["", " ", "0", ":", "{", "\""] {
                let mut changed = text.to_owned();
                changed.replace_range(i..=i, replacement);
                if let Ok(tree) = serde_yaml_ng::from_str::<Value>(&changed) {
                    let _ = EnvoyConfig::from_value(
                        tree.get("static_resources"),
                        tree.get("admin"),
                        ORIGIN,
                    );
                }
                let _ = load(&changed);
            }
        }
    }
}
