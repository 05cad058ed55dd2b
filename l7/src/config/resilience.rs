//! The resilience parts of the config: a cluster's `health_checks`,
//! `outlier_detection`, `circuit_breakers` and `common_lb_config`, and a route's
//! `retry_policy` (Envoy v3 semantics and defaults).

use std::time::Duration;

/// Envoy's default `no_traffic_interval` of a health check.
pub const DEFAULT_NO_TRAFFIC_INTERVAL: Duration = Duration::from_secs(60);
/// Envoy's default `common_lb_config.healthy_panic_threshold`, percent.
pub const DEFAULT_HEALTHY_PANIC_THRESHOLD: f64 = 50.0;
/// Envoy's default circuit breaker thresholds (`max_connections`,
/// `max_pending_requests`, `max_requests`).
pub const DEFAULT_CIRCUIT_BREAKER_LIMIT: u32 = 1024;
/// Envoy's default `max_retries` circuit breaker.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Envoy's default `retry_budget.budget_percent`.
pub const DEFAULT_RETRY_BUDGET_PERCENT: f64 = 20.0;
/// Envoy's default `retry_budget.min_retry_concurrency`.
pub const DEFAULT_MIN_RETRY_CONCURRENCY: u32 = 3;
/// Envoy's default `retry_back_off.base_interval`.
pub const DEFAULT_RETRY_BASE_INTERVAL: Duration = Duration::from_millis(25);
/// How many request body bytes are kept for a retry (Envoy's default
/// `per_connection_buffer_limit_bytes`): a request whose body is longer is not
/// retried once its body has started upstream.
pub const RETRY_BUFFER_LIMIT: usize = 1024 * 1024;

/// A percentage, 0 to 100 (`envoy.type.v3.Percent`, a double). The config
/// rejects NaN and values outside 0..=100, so comparing bits is an equivalence.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percent(pub f64);

impl PartialEq for Percent {
    fn eq(&self, other: &Percent) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Percent {}

impl std::hash::Hash for Percent {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// `envoy.config.core.v3.HealthCheck`: one active health check of a cluster's
/// endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `timeout` (required, above 0): a check not answered within this fails.
    pub timeout: Duration,
    /// `interval` (required, above 0): between the end of one check and the start
    /// of the next, per endpoint.
    pub interval: Duration,
    /// `interval_jitter`: up to this much is added at random to each interval;
    /// default 0.
    pub interval_jitter: Duration,
    /// `interval_jitter_percent`: up to this percent of the interval is added at
    /// random too; default 0.
    pub interval_jitter_percent: u32,
    /// `initial_jitter`: the first check waits up to this long; default 0.
    pub initial_jitter: Duration,
    /// `unhealthy_threshold` (required): consecutive failures that make a healthy
    /// endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// `healthy_threshold` (required): consecutive successes that make an
    /// unhealthy endpoint healthy (at start, one success is enough, as in Envoy).
    pub healthy_threshold: u32,
    /// `no_traffic_interval`: the interval while no request or connection was
    /// ever sent to the cluster; default [`DEFAULT_NO_TRAFFIC_INTERVAL`].
    pub no_traffic_interval: Duration,
    /// `unhealthy_interval`: the interval for an unhealthy endpoint; `interval`
    /// when left out.
    pub unhealthy_interval: Option<Duration>,
    /// `healthy_edge_interval`: after a success, while an unhealthy endpoint
    /// has fewer than `healthy_threshold` successes in a row (on its way to
    /// healthy, as Envoy uses it); `interval` when left out.
    pub healthy_edge_interval: Option<Duration>,
    /// `unhealthy_edge_interval`: after a failure, while a healthy endpoint has
    /// fewer than `unhealthy_threshold` failures in a row (on its way to
    /// unhealthy); `unhealthy_interval` when left out.
    pub unhealthy_edge_interval: Option<Duration>,
    /// `http_health_check` or `tcp_health_check`.
    pub kind: HealthCheckKind,
}

/// What a [`HealthCheck`] does per endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `http_health_check`: an HTTP/1.1 request on a fresh connection.
    Http(HttpHealthCheck),
    /// `tcp_health_check`: a connection, optionally a payload each way.
    Tcp(TcpHealthCheck),
}

/// `HealthCheck.HttpHealthCheck`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHealthCheck {
    /// `host`: the `Host` header; the cluster's name when left out or empty (as
    /// Envoy).
    pub host: Option<String>,
    /// `path` (required, not empty).
    pub path: String,
    /// `method`: `GET` when left out (Envoy also takes HEAD, POST, ...; not
    /// CONNECT).
    pub method: String,
    /// `expected_statuses`: half-open ranges `[start, end)` of statuses that
    /// pass; `[(200, 201)]` when left out. Each range is within 100..=600 and
    /// not empty.
    pub expected_statuses: Vec<(u16, u16)>,
    /// `request_headers_to_add` (plain `header { key, value }` entries only).
    pub request_headers: Vec<(String, String)>,
}

/// `HealthCheck.TcpHealthCheck`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpHealthCheck {
    /// `send`: bytes written once connected (`text`: hex, or `binary`: base64).
    pub send: Option<Vec<u8>>,
    /// `receive`: every block must arrive, in order (Envoy's fuzzy matching:
    /// other bytes may come between them); empty: connecting is enough.
    pub receive: Vec<Vec<u8>>,
}

/// `envoy.config.cluster.v3.OutlierDetection`: passive ejection from real
/// traffic. Envoy's defaults where a field is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// `consecutive_5xx`: default 5.
    pub consecutive_5xx: u32,
    /// `consecutive_gateway_failure`: default 5.
    pub consecutive_gateway_failure: u32,
    /// `consecutive_local_origin_failure`: default 5 (counted only with
    /// `split_external_local_origin_errors`).
    pub consecutive_local_origin_failure: u32,
    /// `interval`: how often ejections are reviewed; default 10 s.
    pub interval: Duration,
    /// `base_ejection_time`: default 30 s; an endpoint's n-th ejection lasts n
    /// times this (at most `max_ejection_time`).
    pub base_ejection_time: Duration,
    /// `max_ejection_time`: default 300 s.
    pub max_ejection_time: Duration,
    /// `max_ejection_percent`: default 10; at least one endpoint may always be
    /// ejected, as in Envoy.
    pub max_ejection_percent: u32,
    /// `enforcing_consecutive_5xx`: percent chance an ejection detected is
    /// carried out; default 100.
    pub enforcing_consecutive_5xx: u32,
    /// `enforcing_consecutive_gateway_failure`: default 0 (detected and counted,
    /// not enforced).
    pub enforcing_consecutive_gateway_failure: u32,
    /// `enforcing_consecutive_local_origin_failure`: default 100.
    pub enforcing_consecutive_local_origin_failure: u32,
    /// `split_external_local_origin_errors`: default false (connect failures,
    /// resets and timeouts count as 5xx / gateway failures).
    pub split_external_local_origin_errors: bool,
}

impl Default for OutlierDetection {
    fn default() -> OutlierDetection {
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
    }
}

/// `circuit_breakers.thresholds[]` with priority `DEFAULT` (Envoy's defaults when
/// there is none). Limits hold for the whole cluster, across workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// `max_connections`: upstream connections open; default 1024.
    pub max_connections: u32,
    /// `max_pending_requests`: requests waiting for a connection; default 1024.
    pub max_pending_requests: u32,
    /// `max_requests`: requests in flight; default 1024.
    pub max_requests: u32,
    /// `max_retries`: retries in flight; default 3 (ignored when a
    /// `retry_budget` is set, as in Envoy).
    pub max_retries: u32,
    /// `retry_budget`.
    pub retry_budget: Option<RetryBudget>,
}

impl Default for CircuitBreakers {
    fn default() -> CircuitBreakers {
        CircuitBreakers {
            max_connections: DEFAULT_CIRCUIT_BREAKER_LIMIT,
            max_pending_requests: DEFAULT_CIRCUIT_BREAKER_LIMIT,
            max_requests: DEFAULT_CIRCUIT_BREAKER_LIMIT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_budget: None,
        }
    }
}

/// `CircuitBreakers.Thresholds.RetryBudget`: retries in flight may be this
/// share of the requests in flight (and pending), but at least
/// `min_retry_concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryBudget {
    /// `budget_percent.value`: default [`DEFAULT_RETRY_BUDGET_PERCENT`].
    pub budget_percent: Percent,
    /// `min_retry_concurrency`: default [`DEFAULT_MIN_RETRY_CONCURRENCY`].
    pub min_retry_concurrency: u32,
}

/// The conditions of `retry_on` (a comma-separated list in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`: any 5xx response, or none at all (connect failure, reset,
    /// per-try timeout).
    pub const FIVE_XX: u32 = 1;
    /// `gateway-error`: 502, 503, 504, or none at all.
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    /// `reset`: no response at all (disconnect, reset, per-try timeout).
    pub const RESET: u32 = 1 << 2;
    /// `connect-failure`: the connection could not be made (or timed out).
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: u32 = 1 << 4;
    /// `refused-stream`: an HTTP/2 REFUSED_STREAM; never happens on HTTP/1.1.
    pub const REFUSED_STREAM: u32 = 1 << 5;
    /// `retriable-status-codes`: a status in `retriable_status_codes`.
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 6;

    /// Every condition with its config spelling.
    pub const NAMES: &'static [(&'static str, u32)] = &[
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
    ];

    /// Whether condition `bit` is on.
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// Return the bit of the condition spelled `name` in `retry_on`.
    pub fn bit(name: &str) -> Option<u32> {
        Self::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|&(_, bit)| bit)
    }
}

/// `envoy.config.route.v3.RetryPolicy` (on a route, or on its virtual host for
/// the routes without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `retry_on`.
    pub retry_on: RetryOn,
    /// `num_retries`: default 1.
    pub num_retries: u32,
    /// `per_try_timeout`: each try's own timeout (from when its request was sent
    /// whole); `None` when left out or `0s`.
    pub per_try_timeout: Option<Duration>,
    /// `retry_back_off.base_interval`: default
    /// [`DEFAULT_RETRY_BASE_INTERVAL`], above 0.
    pub base_interval: Duration,
    /// `retry_back_off.max_interval`: default 10 × `base_interval`; at least
    /// `base_interval`.
    pub max_interval: Duration,
    /// `retriable_status_codes`.
    pub retriable_status_codes: Vec<u16>,
    /// `retry_host_predicate` has `envoy.retry_host_predicates.previous_hosts`:
    /// a retry avoids the endpoints tried before.
    pub previous_hosts: bool,
    /// `host_selection_retry_max_attempts`: how many times a pick that the
    /// predicate rejects is made again; default 1.
    pub host_selection_retry_max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            retry_on: RetryOn::default(),
            num_retries: 1,
            per_try_timeout: None,
            base_interval: DEFAULT_RETRY_BASE_INTERVAL,
            max_interval: DEFAULT_RETRY_BASE_INTERVAL * 10,
            retriable_status_codes: Vec::new(),
            previous_hosts: false,
            host_selection_retry_max_attempts: 1,
        }
    }
}

/// Decode a health check payload's `text`: hex digits, two per byte, either case.
///
/// # Errors
/// What is wrong with the text, for a message.
pub(crate) fn decode_hex(text: &str) -> Result<Vec<u8>, &'static str> {
    if text.is_empty() {
        return Err("the hex string is empty; write at least one byte, e.g. `000000FF`");
    }
    if text.len() % 2 != 0 {
        return Err("a hex string has two digits per byte, and this one has an odd number");
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
                _ => Err("it is not hex: use only the digits 0-9 and a-f (or A-F)"),
            }
        })
        .collect()
}

/// Decode a health check payload's `binary`: base64, as proto3 JSON writes `bytes`
/// (the standard or the URL-safe alphabet, padded or not).
///
/// # Errors
/// What is wrong with the text, for a message.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, &'static str> {
    const NOT_BASE64: &str = "it is not base64 (A-Z, a-z, 0-9, `+` and `/`, `=` padding at \
                              the end only)";
    let data = text.trim_end_matches('=');
    if text.len() - data.len() > 2 || (text.len() != data.len() && text.len() % 4 != 0) {
        return Err(NOT_BASE64);
    }
    if data.len() % 4 == 1 {
        return Err("it is cut short: base64 ends with two, three or four characters per group");
    }
    let mut bytes = Vec::with_capacity(data.len() * 3 / 4);
    let mut bits: u32 = 0;
    let mut count = 0;
    for c in data.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(NOT_BASE64),
        };
        bits = bits << 6 | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    if bytes.is_empty() {
        return Err("it is empty; write at least one byte");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_payloads() {
        assert_eq!(decode_hex("000000FF"), Ok(vec![0, 0, 0, 255]));
        assert_eq!(decode_hex("0aBc"), Ok(vec![0x0a, 0xbc]));
        assert!(decode_hex("").is_err());
        assert!(decode_hex("abc").unwrap_err().contains("odd"));
        assert!(decode_hex("zz").unwrap_err().contains("not hex"));
        assert!(decode_hex("+1").is_err());
    }

    #[test]
    fn base64_payloads() {
        for (text, bytes) in [
            ("aGVsbG8=", &b"hello"[..]),
            ("aGVsbG8", b"hello"),
            ("aGVsbA==", b"hell"),
            ("aGVsbA", b"hell"),
            ("aGVs", b"hel"),
            ("AAAA/w==", &[0, 0, 0, 255]),
            ("AAAA_w", &[0, 0, 0, 255]),
            ("+/+/", &[0xfb, 0xff, 0xbf]),
        ] {
            assert_eq!(decode_base64(text).as_deref(), Ok(bytes), "{text}");
        }
        for text in [
            "",
            "=",
            "a",
            "aGVsbG8===",
            "aGVs bG8=",
            "aG=s",
            "aGVsbG8=x",
            "aGVsb=",
        ] {
            assert!(decode_base64(text).is_err(), "{text}");
        }
    }

    #[test]
    fn retry_on_names() {
        assert_eq!(RetryOn::bit("5xx"), Some(RetryOn::FIVE_XX));
        assert_eq!(
            RetryOn::bit("retriable-status-codes"),
            Some(RetryOn::RETRIABLE_STATUS_CODES)
        );
        assert_eq!(RetryOn::bit("5XX"), None);
        assert!(RetryOn(RetryOn::RESET | RetryOn::FIVE_XX).has(RetryOn::RESET));
        assert!(!RetryOn(RetryOn::RESET).has(RetryOn::FIVE_XX));
    }
}
