//! The HTTP/1.1 proxy: Envoy's `http_connection_manager` with the router
//! filter, on zerohop's userspace TCP.
//!
//! One [`HttpProxy`] per worker serves that worker's HCM listeners. Each
//! downstream connection reads one request head at a time ([`codec`]),
//! routes it ([`route`]), and either answers locally (direct response,
//! redirect, 404, errors) or forwards it to an endpoint of the route's
//! cluster over a pooled upstream connection (HTTP/1.1 keep-alive, reused
//! only after its previous response was read to the end). Bodies are
//! forwarded as they arrive and never held whole: a `Content-Length` body is
//! spliced from one connection's receive buffer into the other's send buffer
//! by byte count; a chunked body is copied verbatim while a scanner checks
//! its framing and finds its end. So a slow reader closes the other side's
//! TCP window, and memory stays at the TCP buffers plus one head buffer per
//! connection.
//!
//! Pipelined requests are read one after the other: the next head is parsed
//! only when the previous response is complete, so responses go out in
//! order. Request smuggling is refused at parse time (see [`codec`]).
//!
//! Counters are per worker, single writer, and named as Envoy names them
//! (`http.<stat_prefix>.*`, `cluster.<name>.upstream_rq_*`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use zerohop_dataplane::Counter;
use zerohop_tcpstack::rng::Rng;
use zerohop_tcpstack::{App, Close, ConnId, Listen, Stack};

use super::codec::{self, BodyFraming, ChunkedScanner, Method, RequestHead, ResponseHead, Version};
use super::filter::{self, FilterPlan, FilterStats, Verdict};
use super::route::{self, RouteTable};
use crate::access_log::{AccessLogs, Record, ResponseFlags, Sink};
use crate::cluster::LiveBalancer;
use crate::config::{
    Action, ClusterSpecifier, EnvoyConfig, HashPolicy, HashSource, HttpConnectionManager, LbPolicy,
    NetworkFilter, RetryOn, RetryPolicy, RETRY_BUFFER_LIMIT,
};
use crate::health::{Outcome, Resource, Shared};
use crate::histogram::Histogram;

/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Largest upstream response head.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Connection word tag of the HTTP proxy (`tcp_proxy` tags stay below it).
pub const TAG: u64 = 1 << 62;

/// Counters of one HCM listener on one worker.
#[derive(Debug, Default)]
pub struct HcmStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_destroy: Counter,
    pub downstream_rq_total: Counter,
    /// Responses by class: 1xx … 5xx.
    pub downstream_rq_xx: [Counter; 5],
    pub downstream_cx_protocol_error: Counter,
    pub downstream_rq_timeout: Counter,
    /// 413s: a body beyond what a filter buffers.
    pub downstream_rq_too_large: Counter,
    pub downstream_cx_idle_timeout: Counter,
    pub downstream_rq_rx_reset: Counter,
    pub downstream_cx_rx_bytes_total: Counter,
    pub downstream_cx_tx_bytes_total: Counter,
    pub no_route: Counter,
    pub rq_direct_response: Counter,
    pub rq_redirect: Counter,
    /// The listener's HTTP filters' counters, in filter order.
    pub filters: Vec<FilterStats>,
    /// From a request's first byte to the end of its answer.
    pub downstream_rq_time: Histogram,
}

/// Counters of one cluster's HTTP traffic on one worker.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub upstream_rq_total: Counter,
    pub upstream_rq_xx: [Counter; 5],
    pub upstream_rq_timeout: Counter,
    pub upstream_cx_http1_total: Counter,
    pub upstream_cx_connect_fail: Counter,
    pub upstream_cx_connect_timeout: Counter,
    pub upstream_cx_destroy: Counter,
    /// Requests sent on a pooled (reused) connection.
    pub upstream_cx_reused: Counter,
    /// Retries made.
    pub upstream_rq_retry: Counter,
    /// Retried requests whose last try was answered without another retry.
    pub upstream_rq_retry_success: Counter,
    /// Retries not made: `num_retries` reached.
    pub upstream_rq_retry_limit_exceeded: Counter,
    /// Tries that passed their `per_try_timeout`.
    pub upstream_rq_per_try_timeout: Counter,
    /// Requests that waited for a connection (connecting, or at
    /// `max_connections`).
    pub upstream_rq_pending_total: Counter,
    /// Picks made in panic mode (too few healthy endpoints).
    pub lb_healthy_panic: Counter,
    /// Requests answered 503 because no endpoint was healthy.
    pub upstream_cx_none_healthy: Counter,
    /// Requests in flight per endpoint (LEAST_REQUEST's load).
    pub endpoint_rq_active: Vec<Counter>,
    pub endpoint_rq_done: Vec<Counter>,
    /// From a try's request going to its connection to the end of its
    /// response.
    pub upstream_rq_time: Histogram,
    /// Connections opened to each endpoint, and closed.
    pub endpoint_cx_total: Vec<Counter>,
    pub endpoint_cx_closed: Vec<Counter>,
    /// Per endpoint: an EWMA of `upstream_rq_time`, µs, as `f64` bits (the
    /// admin API's `/clusters`).
    pub endpoint_latency_ewma: Vec<std::sync::atomic::AtomicU64>,
}

/// The weight of a new sample in an endpoint's latency EWMA.
const EWMA_WEIGHT: f64 = 0.1;

impl UpstreamStats {
    /// Fold a response time of endpoint `ei` into its EWMA (one writer).
    fn observe(&self, ei: usize, us: u64) {
        use std::sync::atomic::Ordering;
        self.upstream_rq_time.record(us);
        if let Some(e) = self.endpoint_latency_ewma.get(ei) {
            let old = f64::from_bits(e.load(Ordering::Relaxed));
            let new = if old == 0.0 {
                us as f64
            } else {
                old + EWMA_WEIGHT * (us as f64 - old)
            };
            e.store(new.to_bits(), Ordering::Relaxed);
        }
    }

    /// Endpoint `ei`'s latency EWMA, µs (0 before any response).
    pub fn latency_ewma_us(&self, ei: usize) -> f64 {
        self.endpoint_latency_ewma.get(ei).map_or(0.0, |e| {
            f64::from_bits(e.load(std::sync::atomic::Ordering::Relaxed))
        })
    }
}

/// One worker's HTTP counters, readable by the main thread without locks.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// (stat_prefix, counters), per HCM listener in config order.
    pub listeners: Vec<(String, HcmStats)>,
    /// (name, counters), per cluster in config order.
    pub clusters: Vec<(String, UpstreamStats)>,
    /// Per cluster: a route sends to it (only those are listed by
    /// [`HttpStats::values`]).
    pub used: Vec<bool>,
}

impl HttpStats {
    /// Every counter as (Envoy stat name, value), in a fixed order.
    pub fn values(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for (prefix, l) in &self.listeners {
            let p = format!("http.{prefix}");
            let active = l
                .downstream_cx_total
                .get()
                .saturating_sub(l.downstream_cx_destroy.get());
            for (k, x) in [
                ("downstream_cx_total", l.downstream_cx_total.get()),
                ("downstream_cx_active", active),
                ("downstream_rq_total", l.downstream_rq_total.get()),
                ("downstream_rq_1xx", l.downstream_rq_xx[0].get()),
                ("downstream_rq_2xx", l.downstream_rq_xx[1].get()),
                ("downstream_rq_3xx", l.downstream_rq_xx[2].get()),
                ("downstream_rq_4xx", l.downstream_rq_xx[3].get()),
                ("downstream_rq_5xx", l.downstream_rq_xx[4].get()),
                (
                    "downstream_cx_protocol_error",
                    l.downstream_cx_protocol_error.get(),
                ),
                ("downstream_rq_timeout", l.downstream_rq_timeout.get()),
                ("downstream_rq_too_large", l.downstream_rq_too_large.get()),
                (
                    "downstream_cx_idle_timeout",
                    l.downstream_cx_idle_timeout.get(),
                ),
                ("downstream_rq_rx_reset", l.downstream_rq_rx_reset.get()),
                (
                    "downstream_cx_rx_bytes_total",
                    l.downstream_cx_rx_bytes_total.get(),
                ),
                (
                    "downstream_cx_tx_bytes_total",
                    l.downstream_cx_tx_bytes_total.get(),
                ),
                ("no_route", l.no_route.get()),
                ("rq_direct_response", l.rq_direct_response.get()),
                ("rq_redirect", l.rq_redirect.get()),
            ] {
                v.push((format!("{p}.{k}"), x));
            }
            for f in &l.filters {
                for (name, c) in &f.counters {
                    v.push((name.clone(), c.get()));
                }
            }
        }
        for (i, (name, c)) in self.clusters.iter().enumerate() {
            if !self.used.get(i).copied().unwrap_or(true) {
                continue;
            }
            let p = format!("cluster.{name}");
            for (k, x) in [
                ("upstream_cx_total", c.upstream_cx_http1_total.get()),
                ("upstream_rq_total", c.upstream_rq_total.get()),
                ("upstream_rq_1xx", c.upstream_rq_xx[0].get()),
                ("upstream_rq_2xx", c.upstream_rq_xx[1].get()),
                ("upstream_rq_3xx", c.upstream_rq_xx[2].get()),
                ("upstream_rq_4xx", c.upstream_rq_xx[3].get()),
                ("upstream_rq_5xx", c.upstream_rq_xx[4].get()),
                ("upstream_rq_timeout", c.upstream_rq_timeout.get()),
                ("upstream_cx_http1_total", c.upstream_cx_http1_total.get()),
                ("upstream_cx_connect_fail", c.upstream_cx_connect_fail.get()),
                (
                    "upstream_cx_connect_timeout",
                    c.upstream_cx_connect_timeout.get(),
                ),
                ("upstream_cx_destroy", c.upstream_cx_destroy.get()),
                ("upstream_cx_reused", c.upstream_cx_reused.get()),
                ("upstream_rq_retry", c.upstream_rq_retry.get()),
                (
                    "upstream_rq_retry_success",
                    c.upstream_rq_retry_success.get(),
                ),
                (
                    "upstream_rq_retry_limit_exceeded",
                    c.upstream_rq_retry_limit_exceeded.get(),
                ),
                (
                    "upstream_rq_per_try_timeout",
                    c.upstream_rq_per_try_timeout.get(),
                ),
                (
                    "upstream_rq_pending_total",
                    c.upstream_rq_pending_total.get(),
                ),
                ("lb_healthy_panic", c.lb_healthy_panic.get()),
                ("upstream_cx_none_healthy", c.upstream_cx_none_healthy.get()),
            ] {
                v.push((format!("{p}.{k}"), x));
            }
        }
        v
    }
}

impl HttpStats {
    /// Every histogram as (Envoy stat name, samples per bucket, sum µs); the
    /// buckets are [`crate::histogram::BOUNDS_US`].
    pub fn histograms(&self) -> Vec<(String, Vec<u64>, u64)> {
        let mut v = Vec::new();
        for (prefix, l) in &self.listeners {
            let h = &l.downstream_rq_time;
            v.push((
                format!("http.{prefix}.downstream_rq_time"),
                h.counts(),
                h.sum_us(),
            ));
        }
        for (i, (name, c)) in self.clusters.iter().enumerate() {
            if self.used.get(i).copied().unwrap_or(true) {
                let h = &c.upstream_rq_time;
                v.push((
                    format!("cluster.{name}.upstream_rq_time"),
                    h.counts(),
                    h.sum_us(),
                ));
            }
        }
        v
    }
}

fn class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// An HCM listener as the proxy runs it.
struct HcmPlan {
    address: SocketAddrV4,
    routes: RouteTable,
    filters: FilterPlan,
    max_head: usize,
    headers_timeout_ms: Option<u64>,
    /// `stream_idle_timeout`: a request with no bytes moving for this long.
    stream_idle_ms: Option<u64>,
    /// `request_timeout`: the whole request must arrive within this.
    request_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    use_remote_address: bool,
    xff_num_trusted_hops: u32,
    generate_request_id: bool,
    /// The listener's access logs.
    log: Option<Sink>,
}

/// The HTTP proxy's plan, built once from the config.
pub struct HttpPlan {
    listeners: Vec<HcmPlan>,
    /// Per cluster: some route sends to it.
    used: Vec<bool>,
    /// Per cluster: `max_requests_per_connection`.
    max_requests: Vec<Option<u32>>,
    /// Per cluster: how long a pooled connection may idle, ms (`None`: no
    /// limit).
    upstream_idle_ms: Vec<Option<u64>>,
    prefixes: Vec<String>,
    clusters: Vec<LiveBalancer>,
    /// Health and circuit breakers, shared by every worker.
    shared: Arc<Shared>,
    cluster_names: Vec<String>,
    cluster_index: HashMap<String, usize>,
}

fn ms(d: std::time::Duration) -> Option<u64> {
    (!d.is_zero()).then(|| d.as_millis().max(1) as u64)
}

impl HttpPlan {
    /// Build the plan of the config's HCM listeners.
    ///
    /// # Errors
    /// A route table that does not compile (the config loader checks them,
    /// so only a config built by hand can fail).
    ///
    /// `shared`: the clusters' health and circuit breakers, shared by every
    /// worker.
    pub fn new(
        config: &EnvoyConfig,
        shared: Arc<Shared>,
        logs: &AccessLogs,
    ) -> Result<HttpPlan, String> {
        let mut listeners = Vec::new();
        let mut prefixes = Vec::new();
        let mut used = vec![false; config.clusters.len()];
        for (i, l) in config.listeners.iter().enumerate() {
            let NetworkFilter::HttpConnectionManager(h) = &l.filter else {
                continue;
            };
            let mut plan = hcm_plan(l.address, h)?;
            plan.log = logs.sink(i);
            listeners.push(plan);
            prefixes.push(h.stat_prefix.clone());
            for name in routed_clusters(h) {
                if let Some(i) = config.clusters.iter().position(|c| c.name == name) {
                    used[i] = true;
                }
            }
        }
        Ok(HttpPlan {
            listeners,
            used,
            max_requests: config
                .clusters
                .iter()
                .map(|c| c.max_requests_per_connection)
                .collect(),
            upstream_idle_ms: config
                .clusters
                .iter()
                .map(|c| c.upstream_idle_timeout.and_then(ms))
                .collect(),
            prefixes,
            clusters: config.clusters.iter().map(LiveBalancer::new).collect(),
            shared,
            cluster_names: config.clusters.iter().map(|c| c.name.clone()).collect(),
            cluster_index: config
                .clusters
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i))
                .collect(),
        })
    }

    /// The listening addresses, with ids from `first_id` on.
    pub fn listens(&self, first_id: u32) -> Vec<Listen> {
        self.listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Listen {
                address: l.address,
                id: first_id + i as u32,
            })
            .collect()
    }

    /// No HCM listener.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

/// The clusters an HCM's routes send to.
fn routed_clusters(h: &HttpConnectionManager) -> impl Iterator<Item = &str> {
    h.route_config
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .flat_map(|r| match &r.action {
            Action::Route(a) => match &a.cluster {
                ClusterSpecifier::Cluster(c) => vec![c.as_str()],
                ClusterSpecifier::WeightedClusters(w) => {
                    w.iter().map(|c| c.name.as_str()).collect()
                }
            },
            _ => Vec::new(),
        })
}

fn hcm_plan(address: SocketAddrV4, h: &HttpConnectionManager) -> Result<HcmPlan, String> {
    Ok(HcmPlan {
        address,
        routes: RouteTable::new(&h.route_config)?,
        filters: FilterPlan::new(&h.http_filters, &h.stat_prefix),
        max_head: h.max_request_headers_kb as usize * 1024,
        headers_timeout_ms: h.request_headers_timeout.and_then(ms),
        stream_idle_ms: h.stream_idle_timeout.and_then(ms),
        request_timeout_ms: h.request_timeout.and_then(ms),
        idle_timeout_ms: h.idle_timeout.and_then(ms),
        use_remote_address: h.use_remote_address,
        xff_num_trusted_hops: h.xff_num_trusted_hops,
        generate_request_id: h.generate_request_id,
        log: None,
    })
}

/// What is left of a message body to pass on.
#[derive(Debug, Clone)]
enum Body {
    Done,
    Length(u64),
    Chunked(ChunkedScanner),
    /// Until the sender closes (responses only).
    UntilClose,
}

impl Body {
    fn of(framing: BodyFraming) -> Body {
        match framing {
            BodyFraming::None | BodyFraming::Length(0) => Body::Done,
            BodyFraming::Length(n) => Body::Length(n),
            BodyFraming::Chunked => Body::Chunked(ChunkedScanner::default()),
            // A tunnel (101, CONNECT 2xx) runs like a body each way that
            // ends with its sender's FIN.
            BodyFraming::UntilClose | BodyFraming::Tunnel => Body::UntilClose,
        }
    }
    fn done(&self) -> bool {
        matches!(self, Body::Done)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head.
    Head,
    /// A request is out (its body may still be flowing); waiting for or
    /// passing on the response.
    Exchange,
    /// Closing after what is queued.
    Closing,
    /// A filter holds the request (a fault delay) until the deadline.
    Held,
    /// A filter holds the request until its body has arrived whole.
    Buffer,
}

/// A request a filter holds for a while.
struct Held {
    head: RequestHead,
    /// The filter to go on with.
    next: usize,
    /// Answer this when the delay is over (a fault abort).
    abort: Option<u16>,
}

/// A request a filter holds until its body is whole.
struct Buffering {
    head: RequestHead,
    /// The filter that buffers.
    filter: usize,
    limit: u32,
    body: Vec<u8>,
    /// The trailer section of a chunked body, raw.
    trailers: Vec<u8>,
    chunked: bool,
}

/// Circuit breaker resources a request holds (bits of [`Down::holds`]).
const HOLDS_REQUEST: u8 = 1;
const HOLDS_PENDING: u8 = 1 << 1;
const HOLDS_RETRY: u8 = 1 << 2;

/// A request whose route may try it again (`retry_policy`).
struct Retry {
    /// The request head as routed (before an endpoint's default `host`).
    head: RequestHead,
    /// The route's hash (RING_HASH, MAGLEV), to pick again with.
    hash: Option<u64>,
    /// Retries made.
    retries: u32,
    /// Endpoints tried (`previous_hosts`).
    tried: Vec<u32>,
    /// The request body as sent upstream so far, replayed by a retry.
    body: Vec<u8>,
    /// The body outgrew [`RETRY_BUFFER_LIMIT`]: it cannot be sent again.
    overflow: bool,
    /// The next try is due at this time, ms (a back-off runs).
    at_ms: Option<u64>,
}

/// What the access log needs of a request, kept only on listeners that log.
struct LogState {
    start_time: std::time::SystemTime,
    started: Instant,
    request_headers: Vec<Option<String>>,
    response_headers: Vec<Option<String>>,
    /// The status sent to the client (0: none yet).
    status: u16,
    upstream: Option<SocketAddr>,
    cluster: Option<Arc<str>>,
}

/// How a try ended without a response for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TryFailure {
    /// The connection could not be made (refused, reset, `connect_timeout`).
    Connect,
    /// Closed or reset before a whole response head.
    Reset,
    /// `per_try_timeout` passed before the response head.
    PerTryTimeout,
    /// A response head with this status.
    Status(u16),
}

impl TryFailure {
    /// What outlier detection hears of it.
    fn outcome(self) -> Outcome {
        match self {
            TryFailure::Connect => Outcome::ConnectFailure,
            TryFailure::Reset => Outcome::Reset,
            TryFailure::PerTryTimeout => Outcome::Timeout,
            TryFailure::Status(s) => Outcome::Status(s),
        }
    }

    /// Whether `retry_on` covers it (Envoy's conditions: `5xx` and
    /// `gateway-error` include every failure without a response).
    fn retriable(self, policy: &RetryPolicy) -> bool {
        let on = policy.retry_on;
        let no_response = on.has(RetryOn::FIVE_XX) || on.has(RetryOn::GATEWAY_ERROR);
        match self {
            TryFailure::Connect => no_response || on.has(RetryOn::CONNECT_FAILURE),
            TryFailure::Reset | TryFailure::PerTryTimeout => no_response || on.has(RetryOn::RESET),
            TryFailure::Status(s) => {
                (on.has(RetryOn::FIVE_XX) && s >= 500)
                    || (on.has(RetryOn::GATEWAY_ERROR) && matches!(s, 502..=504))
                    || (on.has(RetryOn::RETRIABLE_4XX) && s == 409)
                    || (on.has(RetryOn::RETRIABLE_STATUS_CODES)
                        && policy.retriable_status_codes.contains(&s))
            }
        }
    }
}

/// The wait before retry `n` (from 1): Envoy's jittered exponential
/// back-off, uniform in [0, (2^n - 1) × base], at most `max`.
fn back_off_ms(policy: &RetryPolicy, n: u32, rng: &mut Rng) -> u64 {
    let base = policy.base_interval.as_millis().max(1) as u64;
    let max = policy.max_interval.as_millis().max(1) as u64;
    let factor = (1u64 << n.min(20)) - 1;
    let ceiling = base.saturating_mul(factor).min(max);
    rng.below(ceiling + 1)
}

/// What a local reply carries besides its status and body.
#[derive(Default, Clone, Copy)]
struct Reply<'a> {
    /// Close the connection after it.
    close: bool,
    /// A redirect's `location`.
    location: Option<&'a str>,
    /// Headers to add (a filter's).
    headers: &'a [(String, Vec<u8>)],
    /// The route whose response header mutations apply (Envoy finalizes a
    /// route's local replies, direct responses and redirects with them).
    route: Option<route::RouteRef>,
    /// How many filters' `encodeHeaders` run on it: those before the one
    /// that answered, all of them for the router's answers.
    encoders: usize,
}

/// One downstream connection.
struct Down {
    conn: ConnId,
    listener: u32,
    remote: SocketAddrV4,
    /// The address the client connected to (the listener may be on 0.0.0.0).
    local: SocketAddrV4,
    /// The current request's trusted client address (`x-forwarded-for` and
    /// `xff_num_trusted_hops`, or the connection's).
    client: SocketAddr,
    phase: Phase,
    /// Bytes read and not consumed (the rest of a head, the start of a body,
    /// pipelined requests).
    buf: Vec<u8>,
    /// Bytes for the client not sent yet (local replies, response heads).
    out: Vec<u8>,
    req: Body,
    resp: Body,
    up: Option<u32>,
    keep_alive: bool,
    http10: bool,
    method: Method,
    /// De-chunk the response (an HTTP/1.0 client).
    dechunk: bool,
    response_started: bool,
    /// Response header mutations of the route being served.
    route: Option<route::RouteRef>,
    /// Waiting for a request head since, ms (the idle timeout's start).
    idle_since_ms: u64,
    /// The current head's first byte arrived at, ms.
    head_started_ms: Option<u64>,
    /// A request held by a filter (a delay).
    held: Option<Held>,
    /// A request whose body a filter buffers.
    buffering: Option<Box<Buffering>>,
    /// A `set-cookie` for the response (a generated hash-policy cookie).
    set_cookie: Option<String>,
    /// The current request's head began, ms (`request_timeout` runs from here).
    stream_started_ms: u64,
    /// Bytes of the current exchange last moved, ms (`stream_idle_timeout`).
    last_activity_ms: u64,
    /// The cluster of the current exchange.
    cluster: u32,
    /// Circuit breaker resources held (`HOLDS_*`).
    holds: u8,
    /// The route may try the request again.
    retry: Option<Box<Retry>>,
    /// The route's `timeout`, ms.
    route_timeout_ms: Option<u64>,
    /// The route's timeout expires at (it runs from the end of the
    /// downstream request, across retries, until the response is whole).
    rq_deadline_ms: Option<u64>,
    /// The route's `idle_timeout`, replacing `stream_idle_timeout`
    /// (`Some(None)`: off).
    idle_override: Option<Option<u64>>,
    /// In line for a connection to this endpoint (at `max_connections`),
    /// with the request's bytes.
    waiting: Option<(u32, Vec<u8>)>,
    /// The current request began (`downstream_rq_time`).
    rq_started: Option<Instant>,
    /// The current try went to its connection (`upstream_rq_time`).
    try_started: Option<Instant>,
    /// The current request's access log state (listeners that log).
    log: Option<Box<LogState>>,
    /// Envoy's response flags of the current request
    /// ([`ResponseFlags`] bits).
    flags: u32,
    /// Body bytes of the current request passed on, and of its response.
    body_rx: u64,
    body_tx: u64,
}

/// One upstream connection.
struct Up {
    conn: ConnId,
    cluster: u32,
    endpoint: u32,
    connected: bool,
    /// Serving this downstream connection's request.
    down: Option<u32>,
    /// Request head bytes not sent yet.
    out: Vec<u8>,
    /// Response bytes read, not consumed.
    buf: Vec<u8>,
    head_done: bool,
    /// The last response allows another request.
    reusable: bool,
    /// Requests sent on it.
    requests: u32,
    /// In the idle pool.
    idle: bool,
    /// The route's `per_try_timeout` for the request being served, ms.
    per_try_ms: Option<u64>,
    /// The per-try timeout runs (from when the request was sent whole).
    timeout_armed: bool,
    /// When the request's first bytes went out (PEAK_EWMA's latency sample).
    sent_at: Option<Instant>,
}

/// Which kind of connection a tag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Down(u32),
    Up(u32),
}

fn tag(side: Side) -> u64 {
    match side {
        Side::Down(i) => TAG | (u64::from(i) << 1),
        Side::Up(i) => TAG | (u64::from(i) << 1) | 1,
    }
}

/// A slab of `T` with stable indices.
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    fn insert(&mut self, t: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(t);
                i
            }
            None => {
                self.items.push(Some(t));
                (self.items.len() - 1) as u32
            }
        }
    }
    fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize)?.as_ref()
    }
    fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize)?.as_mut()
    }
    fn remove(&mut self, i: u32) -> Option<T> {
        let t = self.items.get_mut(i as usize)?.take()?;
        self.free.push(i);
        Some(t)
    }
    fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
}

/// One worker's HTTP proxy. See the [module documentation](self).
pub struct HttpProxy {
    plan: HttpPlan,
    /// Listener id of the first HCM listener in the stack.
    first_id: u32,
    downs: Slab<Down>,
    ups: Slab<Up>,
    /// Idle upstream connections per (cluster, endpoint).
    pool: HashMap<(u32, u32), Vec<u32>>,
    /// This worker's upstream connections per (cluster, endpoint).
    conns: HashMap<(u32, u32), u32>,
    /// Requests in line for a connection per (cluster, endpoint).
    waiters: HashMap<(u32, u32), VecDeque<u32>>,
    stats: Arc<HttpStats>,
    rng: Rng,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
    /// Per cluster: PEAK_EWMA, which takes latency samples.
    latency_clusters: Vec<bool>,
    /// Per cluster: `max_requests_per_connection`.
    max_requests: Vec<Option<u32>>,
    /// The clock of latency samples.
    epoch: Instant,
    /// This configuration generation's bits of connection words.
    gen_bits: u64,
    /// Draining (the process, or a reload retired this proxy): every
    /// connection closes after its current answer.
    draining: bool,
}

impl HttpProxy {
    /// A worker's proxy; its listeners have stack ids from `first_id` on.
    pub fn new(plan: HttpPlan, first_id: u32, seed: u64) -> HttpProxy {
        let stats = HttpStats {
            listeners: plan
                .prefixes
                .iter()
                .zip(&plan.listeners)
                .map(|(p, l)| {
                    (
                        p.clone(),
                        HcmStats {
                            filters: l.filters.stats(),
                            ..HcmStats::default()
                        },
                    )
                })
                .collect(),
            clusters: plan
                .clusters
                .iter()
                .zip(&plan.cluster_names)
                .map(|(c, n)| {
                    (
                        n.clone(),
                        UpstreamStats {
                            endpoint_rq_active: c
                                .all()
                                .endpoints
                                .iter()
                                .map(|_| Counter::default())
                                .collect(),
                            endpoint_rq_done: c
                                .all()
                                .endpoints
                                .iter()
                                .map(|_| Counter::default())
                                .collect(),
                            endpoint_latency_ewma: c
                                .all()
                                .endpoints
                                .iter()
                                .map(|_| Default::default())
                                .collect(),
                            endpoint_cx_total: c
                                .all()
                                .endpoints
                                .iter()
                                .map(|_| Counter::default())
                                .collect(),
                            endpoint_cx_closed: c
                                .all()
                                .endpoints
                                .iter()
                                .map(|_| Counter::default())
                                .collect(),
                            ..UpstreamStats::default()
                        },
                    )
                })
                .collect(),
            used: plan.used.clone(),
        };
        let max_requests = plan.max_requests.clone();
        let latency_clusters = plan
            .clusters
            .iter()
            .map(|b| matches!(b.all().policy(), LbPolicy::PeakEwma(_)))
            .collect();
        HttpProxy {
            plan,
            first_id,
            downs: Slab::new(),
            ups: Slab::new(),
            pool: HashMap::new(),
            conns: HashMap::new(),
            waiters: HashMap::new(),
            stats: Arc::new(stats),
            rng: Rng(seed),
            scratch: vec![0; READ_CHUNK],
            scratch2: Vec::with_capacity(READ_CHUNK),
            latency_clusters,
            max_requests,
            epoch: Instant::now(),
            gen_bits: 0,
            draining: false,
        }
    }

    /// Set the configuration generation its connection words carry.
    pub fn set_generation(&mut self, bits: u64) {
        self.gen_bits = bits;
    }

    /// The counters (shared with the main thread).
    pub fn stats(&self) -> &Arc<HttpStats> {
        &self.stats
    }

    /// Downstream connections open now.
    pub fn connections(&self) -> usize {
        self.downs.len()
    }

    /// Whether `listener` (a stack listener id) is one of ours.
    pub fn owns_listener(&self, listener: u32) -> bool {
        listener >= self.first_id
            && ((listener - self.first_id) as usize) < self.plan.listeners.len()
    }

    /// Whether a connection word is ours.
    pub fn owns_tag(user: u64) -> bool {
        user & TAG != 0
    }

    fn side_of(tcp: &Stack, conn: ConnId) -> Option<Side> {
        let user = tcp.user(conn)? & !crate::GEN_MASK;
        if user & TAG == 0 {
            return None;
        }
        let i = ((user & !TAG) >> 1) as u32;
        Some(if user & 1 == 1 {
            Side::Up(i)
        } else {
            Side::Down(i)
        })
    }

    /// Count a protocol error on `di`'s listener.
    fn protocol_error(&self, di: u32) {
        if let Some(d) = self.downs.get(di) {
            self.stats.listeners[d.listener as usize]
                .1
                .downstream_cx_protocol_error
                .add(1);
        }
    }

    // ---- downstream ----

    /// Run downstream connection `di` as far as it goes.
    fn drive(&mut self, tcp: &mut Stack, di: u32) {
        for _ in 0..64 {
            if !self.flush_out(tcp, di) {
                return;
            }
            let Some(d) = self.downs.get(di) else {
                return;
            };
            let progressed = match d.phase {
                Phase::Head => self.read_head(tcp, di),
                Phase::Exchange => self.exchange(tcp, di),
                Phase::Closing => {
                    // What the client still sends is read and dropped, so no
                    // unread bytes keep the closed connection around.
                    let conn = d.conn;
                    while tcp.recv(conn, &mut self.scratch) > 0 {}
                    tcp.close(conn);
                    false
                }
                Phase::Held => false,
                Phase::Buffer => self.buffer_body(tcp, di),
            };
            if !progressed {
                return;
            }
        }
    }

    /// Send what waits in `out`; return true if it is empty now.
    fn flush_out(&mut self, tcp: &mut Stack, di: u32) -> bool {
        let Some(d) = self.downs.get_mut(di) else {
            return false;
        };
        if d.out.is_empty() {
            return true;
        }
        let n = tcp.send(d.conn, &d.out);
        d.out.drain(..n);
        self.stats.listeners[d.listener as usize]
            .1
            .downstream_cx_tx_bytes_total
            .add(n as u64);
        d.out.is_empty()
    }

    /// Read and parse a request head; return true on progress.
    fn read_head(&mut self, tcp: &mut Stack, di: u32) -> bool {
        let Some(d) = self.downs.get_mut(di) else {
            return false;
        };
        let max = self.plan.listeners[d.listener as usize].max_head;
        if d.buf.len() <= max {
            let want = (max + 1 - d.buf.len()).min(READ_CHUNK);
            let n = tcp.recv(d.conn, &mut self.scratch[..want]);
            d.buf.extend_from_slice(&self.scratch[..n]);
            self.stats.listeners[d.listener as usize]
                .1
                .downstream_cx_rx_bytes_total
                .add(n as u64);
        }
        if d.head_started_ms.is_none() && !d.buf.is_empty() {
            // The head's first byte: request_headers_timeout runs from here.
            d.head_started_ms = Some(tcp.now_ms());
            self.rearm_head_deadline(tcp, di);
        }
        let Some(d) = self.downs.get_mut(di) else {
            return false;
        };
        match codec::parse_request(&d.buf, max) {
            Err(e) => {
                self.protocol_error(di);
                self.local_reply(tcp, di, e.status(), e.details().as_bytes(), true);
                true
            }
            Ok(None) => {
                if tcp.recv_finished(d.conn) {
                    // The client is done (possibly mid-head): close too.
                    d.phase = Phase::Closing;
                    return true;
                }
                false
            }
            Ok(Some((head, n))) => {
                d.buf.drain(..n);
                self.start_request(tcp, di, head);
                true
            }
        }
    }

    /// Queue a complete local reply (`close`: close after it) with no
    /// route and no filter encoders: the codec's and the connection's own
    /// answers.
    fn local_reply(&mut self, tcp: &mut Stack, di: u32, status: u16, body: &[u8], close: bool) {
        self.reply(
            tcp,
            di,
            status,
            body,
            Reply {
                close,
                ..Reply::default()
            },
        );
    }

    /// Queue a complete local reply: `status`, `body` as text, and what `x`
    /// adds; count it and go on with the connection (or close it: after a
    /// request body that was not read, or when asked).
    fn reply(&mut self, tcp: &mut Stack, di: u32, status: u16, body: &[u8], x: Reply<'_>) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        if let Body::Length(n) = d.req {
            // A body that is all here already is skipped, not a reason to
            // close (a small POST answered locally).
            if let Some(n) = usize::try_from(n).ok().filter(|n| *n <= d.buf.len()) {
                d.buf.drain(..n);
                d.req = Body::Done;
            }
        }
        let close = x.close || !d.req.done() || !d.keep_alive || self.draining;
        let plan = &self.plan.listeners[d.listener as usize];
        let encoders = x.encoders.min(plan.filters.len());
        let mutate = x.route.is_some() || (encoders > 0 && plan.filters.has_encoders());
        let body = if d.method.is_head() { &[][..] } else { body };
        let mut out = std::mem::take(&mut d.out);
        // (An HTTP/1.0 client kept alive must be told so.)
        if !mutate && x.headers.is_empty() && (close || !d.http10) {
            // The common case, written straight out.
            match x.location {
                Some(location) => codec::write_redirect(status, location, close, &mut out),
                None => codec::write_local_reply(status, "text/plain", body, close, &mut out),
            }
        } else {
            let bodiless = status < 200 || status == 204 || status == 304;
            let mut headers = super::Headers::with_capacity(4 + x.headers.len());
            if let Some(location) = x.location {
                headers.append("location", location);
            }
            if !bodiless {
                headers.append("content-length", body.len().to_string());
                if !body.is_empty() {
                    headers.append("content-type", "text/plain");
                }
            }
            for (k, v) in x.headers {
                headers.append(k, v.clone());
            }
            if close {
                headers.append("connection", "close");
            } else if d.http10 {
                headers.append("connection", "keep-alive");
            }
            let mut head = ResponseHead {
                version: Version::Http11,
                status,
                reason: String::new(),
                headers,
            };
            if mutate {
                encode_response(plan, d, x.route, encoders, &mut head);
            }
            codec::write_response_head(&head, Version::Http11, &mut out);
            if !bodiless {
                out.extend_from_slice(body);
            }
        }
        d.out = out;
        d.phase = if close { Phase::Closing } else { Phase::Head };
        d.req = Body::Done;
        d.resp = Body::Done;
        d.response_started = false;
        d.held = None;
        d.buffering = None;
        d.set_cookie = None;
        let listener = d.listener;
        let hs = &self.stats.listeners[listener as usize].1;
        hs.downstream_rq_xx[class(status)].add(1);
        d.try_started = None;
        d.body_tx += body.len() as u64;
        if let Some(l) = d.log.as_deref_mut() {
            l.status = status;
        }
        if let Some(t) = d.rq_started.take() {
            hs.downstream_rq_time.record(t.elapsed().as_micros() as u64);
        }
        self.end_exchange(di);
        self.arm_head_deadline(tcp, di);
    }

    /// Start waiting for a request head: the connection is idle from now.
    fn arm_head_deadline(&mut self, tcp: &mut Stack, di: u32) {
        let now = tcp.now_ms();
        if let Some(d) = self.downs.get_mut(di) {
            d.idle_since_ms = now;
            d.head_started_ms = None;
        }
        self.rearm_head_deadline(tcp, di);
    }

    /// The deadline of a connection waiting for a head: the idle timeout from
    /// when it began waiting, or `request_headers_timeout` from the head's
    /// first byte, whichever comes first.
    fn rearm_head_deadline(&mut self, tcp: &mut Stack, di: u32) {
        let Some(d) = self.downs.get(di) else {
            return;
        };
        let l = &self.plan.listeners[d.listener as usize];
        let idle = l.idle_timeout_ms.map(|i| d.idle_since_ms + i);
        let head = l
            .headers_timeout_ms
            .zip(d.head_started_ms)
            .map(|(h, start)| start + h);
        let at = match (idle, head) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tcp.set_deadline(d.conn, at);
    }

    /// A request head arrived: route it and answer or forward it.
    fn start_request(&mut self, tcp: &mut Stack, di: u32, mut head: RequestHead) {
        // Absolute form (`GET http://host/path`, as clients send to a
        // proxy): its authority is the host (RFC 9112 §3.2.2) and the
        // origin form goes upstream.
        if let Some((authority, path)) = absolute_form(&head.target) {
            head.headers.set("host", authority.as_bytes());
            head.target = path;
        }
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let li = d.listener as usize;
        let hs = &self.stats.listeners[li].1;
        hs.downstream_rq_total.add(1);
        d.keep_alive = codec::keep_alive(head.version, &head.headers);
        d.http10 = head.version == Version::Http10;
        let plan = &self.plan.listeners[li];
        d.client = trusted_client(
            d.remote,
            &head.headers,
            plan.use_remote_address,
            plan.xff_num_trusted_hops,
        );
        d.set_cookie = None;
        d.method = head.method.clone();
        d.req = Body::of(codec::request_framing(&head));
        d.phase = Phase::Exchange;
        d.response_started = false;
        let now = tcp.now_ms();
        d.stream_started_ms = d.head_started_ms.unwrap_or(now);
        d.last_activity_ms = now;
        d.rq_started = Some(Instant::now());
        d.flags = 0;
        d.body_rx = 0;
        d.body_tx = 0;
        d.log = plan.log.as_ref().map(|sink| {
            Box::new(LogState {
                start_time: std::time::SystemTime::now(),
                started: Instant::now(),
                request_headers: sink
                    .wanted_headers()
                    .iter()
                    .map(|h| request_header(&head, h))
                    .collect(),
                response_headers: Vec::new(),
                status: 0,
                upstream: None,
                cluster: None,
            })
        });
        self.rearm_stream_deadline(tcp, di);
        self.run_filters(tcp, di, head, 0);
    }

    /// Run the listener's HTTP filters from `from` on a request, then route
    /// it (unless a filter answered or holds it).
    fn run_filters(&mut self, tcp: &mut Stack, di: u32, mut head: RequestHead, from: usize) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let li = d.listener as usize;
        let plan = &self.plan.listeners[li];
        if from < plan.filters.len() {
            let ctx = format_context(d);
            let hs = &self.stats.listeners[li].1;
            let (verdict, next) =
                plan.filters
                    .decode_headers(from, &mut head, &ctx, &hs.filters, &mut self.rng);
            match verdict {
                Verdict::Continue => {}
                Verdict::Reply {
                    status,
                    body,
                    headers,
                } => {
                    let x = Reply {
                        headers: &headers,
                        encoders: next.saturating_sub(1),
                        ..Reply::default()
                    };
                    self.reply(tcp, di, status, body.as_bytes(), x);
                    return;
                }
                Verdict::Delay { delay, abort } => {
                    d.held = Some(Held { head, next, abort });
                    d.phase = Phase::Held;
                    let at = tcp.now_ms() + delay.as_millis() as u64;
                    tcp.set_deadline(d.conn, Some(at));
                    return;
                }
                Verdict::Buffer { limit } => {
                    return self.start_buffering(tcp, di, head, next, limit)
                }
            }
        }
        self.route_request(tcp, di, head);
    }

    /// Filter `filter` stops `head` until its body is whole.
    fn start_buffering(
        &mut self,
        tcp: &mut Stack,
        di: u32,
        mut head: RequestHead,
        filter: usize,
        limit: u32,
    ) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        if matches!(d.req, Body::Length(n) if n > u64::from(limit)) {
            // Known to be too large: answer before reading any of it.
            return self.too_large(tcp, di, filter);
        }
        if codec::expects_continue(&head) {
            // The client waits for this before it sends the body, which must
            // arrive before anything goes upstream: answer it here (as
            // Envoy's HCM does), and the upstream never sees the expectation.
            d.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            head.headers.remove("expect");
        }
        let chunked = matches!(d.req, Body::Chunked(_));
        d.buffering = Some(Box::new(Buffering {
            head,
            filter,
            limit,
            body: Vec::new(),
            trailers: Vec::new(),
            chunked,
        }));
        d.phase = Phase::Buffer;
    }

    /// 413 for a body beyond what filter `filter` buffers.
    fn too_large(&mut self, tcp: &mut Stack, di: u32, filter: usize) {
        let Some(d) = self.downs.get(di) else {
            return;
        };
        self.stats.listeners[d.listener as usize]
            .1
            .downstream_rq_too_large
            .add(1);
        let Verdict::Reply { status, body, .. } = filter::too_large() else {
            return;
        };
        let x = Reply {
            close: true,
            encoders: filter,
            ..Reply::default()
        };
        self.reply(tcp, di, status, body.as_bytes(), x);
    }

    /// Read a body a filter buffers; once it is whole, run the filters'
    /// data and trailer callbacks on it and go on. Return true on progress.
    fn buffer_body(&mut self, tcp: &mut Stack, di: u32) -> bool {
        let Some(d) = self.downs.get_mut(di) else {
            return false;
        };
        let Some(b) = d.buffering.as_deref_mut() else {
            return false;
        };
        let mut progressed = false;
        let mut bad_framing = false;
        loop {
            if d.req.done() || b.body.len() as u64 > u64::from(b.limit) {
                break;
            }
            if d.buf.is_empty() {
                let n = tcp.recv(d.conn, &mut self.scratch[..READ_CHUNK]);
                if n == 0 {
                    break;
                }
                self.stats.listeners[d.listener as usize]
                    .1
                    .downstream_cx_rx_bytes_total
                    .add(n as u64);
                d.buf.extend_from_slice(&self.scratch[..n]);
                d.last_activity_ms = tcp.now_ms();
                progressed = true;
            }
            match &mut d.req {
                Body::Done | Body::UntilClose => break,
                Body::Length(left) => {
                    let k = (d.buf.len() as u64).min(*left) as usize;
                    b.body.extend_from_slice(&d.buf[..k]);
                    d.buf.drain(..k);
                    *left -= k as u64;
                    if *left == 0 {
                        d.req = Body::Done;
                    }
                }
                Body::Chunked(scanner) => {
                    let (body, trailers) = (&mut b.body, &mut b.trailers);
                    match scanner.scan_parts(
                        &d.buf,
                        |p| body.extend_from_slice(p),
                        |t| trailers.push(t),
                    ) {
                        Ok(scan) => {
                            d.buf.drain(..scan.consumed);
                            if scan.done {
                                d.req = Body::Done;
                            }
                        }
                        Err(_) => {
                            bad_framing = true;
                            break;
                        }
                    }
                }
            }
        }
        if bad_framing {
            self.protocol_error(di);
            self.local_reply(tcp, di, 400, b"bad chunked request body", true);
            return true;
        }
        if b.body.len() as u64 > u64::from(b.limit) {
            let filter = b.filter;
            self.too_large(tcp, di, filter);
            return true;
        }
        if !d.req.done() {
            if tcp.recv_finished(d.conn) {
                // The client gave up before the end of its body.
                d.buffering = None;
                d.phase = Phase::Closing;
                return true;
            }
            return progressed;
        }
        let Some(b) = d.buffering.take() else {
            return progressed;
        };
        d.phase = Phase::Exchange;
        self.buffered(tcp, di, *b);
        true
    }

    /// A buffered body is whole: the filters' `decodeData` and
    /// `decodeTrailers` from the buffering filter on, then the request,
    /// framed again, goes on with the next filter.
    fn buffered(&mut self, tcp: &mut Stack, di: u32, b: Buffering) {
        let Buffering {
            mut head,
            filter,
            mut body,
            trailers,
            chunked,
            ..
        } = b;
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let filters = &self.plan.listeners[d.listener as usize].filters;
        let mut trailers = codec::parse_trailers(&trailers);
        let (mut verdict, mut at) = filters.decode_data(filter, &mut body);
        if verdict == Verdict::Continue {
            (verdict, at) = filters.decode_trailers(filter, &mut trailers);
        }
        if let Verdict::Reply {
            status,
            body,
            headers,
        } = verdict
        {
            let x = Reply {
                headers: &headers,
                encoders: at,
                ..Reply::default()
            };
            return self.reply(tcp, di, status, body.as_bytes(), x);
        }
        // Framed again as it goes on: chunked if trailers must travel, else
        // with its length.
        head.headers.remove("content-length");
        head.headers.remove("transfer-encoding");
        let mut framed;
        if chunked && !trailers.is_empty() {
            head.headers.append("transfer-encoding", "chunked");
            framed = Vec::with_capacity(body.len() + 64);
            if !body.is_empty() {
                framed.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                framed.extend_from_slice(&body);
                framed.extend_from_slice(b"\r\n");
            }
            framed.extend_from_slice(b"0\r\n");
            codec::write_trailers(&trailers, &mut framed);
            d.req = Body::Chunked(ChunkedScanner::new());
        } else {
            head.headers
                .append("content-length", body.len().to_string());
            d.req = Body::of(BodyFraming::Length(body.len() as u64));
            framed = body;
        }
        framed.extend_from_slice(&d.buf);
        d.buf = framed;
        self.run_filters(tcp, di, head, filter + 1);
    }

    /// The deadline of a request in progress: `stream_idle_timeout` after the
    /// last bytes moved, and `request_timeout` from its first byte while the
    /// request is still arriving. Activity does not move it (that would cost
    /// a timer operation per segment); when it fires early it is set again.
    ///
    /// The route's timeout and a retry's back-off also end here.
    fn rearm_stream_deadline(&mut self, tcp: &mut Stack, di: u32) {
        let Some(d) = self.downs.get(di) else {
            return;
        };
        let l = &self.plan.listeners[d.listener as usize];
        let idle = self.stream_idle_ms(d).map(|i| d.last_activity_ms + i);
        let whole = l
            .request_timeout_ms
            .filter(|_| !d.req.done())
            .map(|t| d.stream_started_ms + t);
        let retry = d.retry.as_ref().and_then(|r| r.at_ms);
        let at = [idle, whole, d.rq_deadline_ms, retry]
            .into_iter()
            .flatten()
            .min();
        tcp.set_deadline(d.conn, at);
    }

    /// The stream idle timeout of `d`'s request: its route's `idle_timeout`,
    /// else the listener's `stream_idle_timeout`.
    fn stream_idle_ms(&self, d: &Down) -> Option<u64> {
        match d.idle_override {
            Some(route) => route,
            None => self.plan.listeners[d.listener as usize].stream_idle_ms,
        }
    }

    /// A request's deadline passed: 408 (or a reset once the response has
    /// begun), else set it again.
    fn stream_deadline(&mut self, tcp: &mut Stack, di: u32) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let now = tcp.now_ms();
        if d.rq_deadline_ms.is_some_and(|t| now >= t) {
            return self.route_timeout(tcp, di);
        }
        if let Some(r) = d.retry.as_deref_mut() {
            if r.at_ms.is_some_and(|t| now >= t) {
                // The back-off is over: the next try.
                r.at_ms = None;
                let (head, hash) = (r.head.clone(), r.hash);
                self.start_try(tcp, di, head, hash);
                self.rearm_stream_deadline(tcp, di);
                self.drive(tcp, di);
                return;
            }
        }
        let Some(d) = self.downs.get(di) else {
            return;
        };
        let l = &self.plan.listeners[d.listener as usize];
        let idle = self
            .stream_idle_ms(d)
            .is_some_and(|i| now >= d.last_activity_ms + i);
        let whole = !d.req.done()
            && l.request_timeout_ms
                .is_some_and(|t| now >= d.stream_started_ms + t);
        if !idle && !whole {
            return self.rearm_stream_deadline(tcp, di);
        }
        self.stats.listeners[d.listener as usize]
            .1
            .downstream_rq_timeout
            .add(1);
        let started = d.response_started;
        if let Some(ui) = d.up {
            self.cut_upstream(tcp, di, ui);
        }
        if let Some(d) = self.downs.get_mut(di) {
            d.held = None;
            if idle {
                d.flags |= ResponseFlags::STREAM_IDLE_TIMEOUT;
            }
        }
        if started {
            self.abort_down(tcp, di);
        } else {
            let why: &[u8] = if whole {
                b"request timeout"
            } else {
                b"stream timeout"
            };
            self.local_reply(tcp, di, 408, why, true);
            self.drive(tcp, di);
        }
    }

    /// The route's timeout passed: 504 before the response head (Envoy's
    /// `upstream request timeout`), a reset of both sides after it.
    fn route_timeout(&mut self, tcp: &mut Stack, di: u32) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        d.flags |= ResponseFlags::UPSTREAM_REQUEST_TIMEOUT;
        let ci = d.cluster as usize;
        self.stats.clusters[ci].1.upstream_rq_timeout.add(1);
        let started = d.response_started;
        if let Some(ui) = d.up {
            if let Some(u) = self.ups.get(ui).filter(|u| !u.head_done) {
                let roll = self.rng.next_u64();
                let ei = u.endpoint as usize;
                self.plan.shared.report(ci, ei, Outcome::Timeout, roll);
            }
            self.cut_upstream(tcp, di, ui);
        }
        if started {
            return self.abort_down(tcp, di);
        }
        let Some(d) = self.downs.get(di) else {
            return;
        };
        let x = self.router_reply(d.route, d.listener as usize);
        self.reply(tcp, di, 504, b"upstream request timeout", x);
        self.drive(tcp, di);
    }

    /// A held request's delay passed: abort it or go on with its filters.
    fn release_held(&mut self, tcp: &mut Stack, di: u32) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let Some(Held { head, next, abort }) = d.held.take() else {
            return;
        };
        d.phase = Phase::Exchange;
        match abort {
            Some(status) => {
                let x = Reply {
                    encoders: next.saturating_sub(1),
                    ..Reply::default()
                };
                self.reply(tcp, di, status, b"fault filter abort", x);
            }
            None => {
                self.run_filters(tcp, di, head, next);
                if self
                    .downs
                    .get(di)
                    .is_some_and(|d| matches!(d.phase, Phase::Exchange | Phase::Buffer))
                {
                    self.rearm_stream_deadline(tcp, di);
                }
            }
        }
        self.drive(tcp, di);
    }

    /// Route a request that passed the filters: answer it or forward it.
    fn route_request(&mut self, tcp: &mut Stack, di: u32, head: RequestHead) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let li = d.listener as usize;
        let hs = &self.stats.listeners[li].1;
        let (remote, client, local) = (d.remote, d.client, d.local);
        let plan = &self.plan.listeners[li];
        let authority = head.headers.get_str("host").unwrap_or_default().to_owned();
        let decision = plan.routes.decide(
            &route::RouteRequest {
                method: head.method.as_str(),
                authority: &authority,
                path: &head.target,
                headers: &head.headers,
                listener_port: plan.address.port(),
            },
            self.rng.next_u64(),
        );
        match decision {
            route::Decision::NotFound => {
                hs.no_route.add(1);
                d.flags |= ResponseFlags::NO_ROUTE_FOUND;
                let x = self.router_reply(None, li);
                self.reply(tcp, di, 404, b"", x);
            }
            route::Decision::Direct {
                status,
                body,
                route,
            } => {
                hs.rq_direct_response.add(1);
                let x = self.router_reply(Some(route), li);
                self.reply(tcp, di, status, &body, x);
            }
            route::Decision::Redirect {
                status,
                location,
                route,
            } => {
                hs.rq_redirect.add(1);
                let x = Reply {
                    location: Some(&location),
                    ..self.router_reply(Some(route), li)
                };
                self.reply(tcp, di, status, b"", x);
            }
            route::Decision::Forward(fwd) => {
                let Some(&ci) = self.plan.cluster_index.get(fwd.cluster.as_str()) else {
                    hs.no_route.add(1);
                    let x = self.router_reply(Some(fwd.route), li);
                    self.reply(tcp, di, 503, b"no healthy upstream", x);
                    return;
                };
                let mut head = head;
                self.rewrite_request(&mut head, &fwd, (remote, client, local), li);
                self.forward(tcp, di, ci, head, fwd);
            }
        }
    }

    /// How the router's local replies are made on listener `li`: with the
    /// route's response mutations and every filter's encoder.
    fn router_reply(&self, route: Option<route::RouteRef>, li: usize) -> Reply<'static> {
        Reply {
            route,
            encoders: self.plan.listeners[li].filters.len(),
            ..Reply::default()
        }
    }

    /// Headers the router adds or changes on the way up.
    fn rewrite_request(
        &mut self,
        head: &mut RequestHead,
        fwd: &route::Forward,
        (remote, client, local): (SocketAddrV4, SocketAddr, SocketAddrV4),
        li: usize,
    ) {
        let plan = &self.plan.listeners[li];
        let chunked = matches!(codec::request_framing(head), BodyFraming::Chunked);
        let upgrade = codec::is_upgrade(head).map(str::to_owned);
        codec::remove_hop_by_hop(&mut head.headers);
        if chunked {
            head.headers.append("transfer-encoding", "chunked");
        }
        if let Some(up) = upgrade {
            // Passed through as a tunnel once the upstream answers 101.
            head.headers.append("connection", "upgrade");
            head.headers.append("upgrade", up);
        }
        if plan.use_remote_address {
            // The connection's peer is appended, whoever the trusted client is.
            let ip = remote.ip().to_string();
            match head.headers.get("x-forwarded-for").map(<[u8]>::to_vec) {
                Some(mut xff) => {
                    xff.extend_from_slice(b", ");
                    xff.extend_from_slice(ip.as_bytes());
                    head.headers.set("x-forwarded-for", xff);
                }
                None => head.headers.append("x-forwarded-for", ip),
            }
            head.headers.set("x-forwarded-proto", "http");
        } else if !head.headers.contains("x-forwarded-proto") {
            head.headers.append("x-forwarded-proto", "http");
        }
        if plan.generate_request_id && !head.headers.contains("x-request-id") {
            let id = uuid4(&mut self.rng);
            head.headers.append("x-request-id", id);
        }
        let protocol = if head.version == Version::Http10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        // The target is read (as received) while the headers change: disjoint
        // fields, no copy.
        plan.routes.apply_request_mutations(
            fwd.route,
            &mut head.headers,
            &route::FormatContext {
                downstream_remote_address: Some(client),
                downstream_local_address: Some(local.into()),
                protocol,
                method: head.method.as_str(),
                path: &head.target,
                start_time: Some(std::time::SystemTime::now()),
                ..Default::default()
            },
        );
        if let Some(path) = &fwd.path {
            head.target.clone_from(path);
        }
        if let Some(host) = &fwd.host {
            head.headers.set("host", host.as_bytes());
        }
    }

    /// Send a routed request to cluster `ci`: take the request circuit
    /// breaker, note what a retry needs, and start the first try.
    fn forward(
        &mut self,
        tcp: &mut Stack,
        di: u32,
        ci: usize,
        head: RequestHead,
        fwd: route::Forward,
    ) {
        let li = self.downs.get(di).map_or(0, |d| d.listener as usize);
        // The access log sees the headers as they go upstream (a generated
        // x-request-id, x-forwarded-for), and the path as it came.
        if let (Some(d), Some(sink)) = (self.downs.get_mut(di), &self.plan.listeners[li].log) {
            if let Some(l) = d.log.as_deref_mut() {
                for (slot, name) in l.request_headers.iter_mut().zip(sink.wanted_headers()) {
                    if name != ":path" && name != "x-envoy-original-path" {
                        *slot = request_header(&head, name);
                    }
                }
            }
        }
        let state = &self.plan.shared.clusters[ci];
        state.saw_traffic();
        if !state.try_acquire(Resource::Requests) {
            state.counters.upstream_rq_pending_overflow.add(1);
            return self.overloaded(tcp, di, Some(fwd.route), li);
        }
        let mut hash = None;
        if self.plan.clusters[ci].all().needs_hash() {
            let plan = &self.plan.listeners[li];
            let policies = plan
                .routes
                .get(fwd.route)
                .and_then(|sel| match &sel.route.action {
                    Action::Route(a) => Some(&a.hash_policy),
                    _ => None,
                });
            if let (Some(policies), Some(d)) = (policies, self.downs.get_mut(di)) {
                let connection = (d.remote, plan.address);
                let (h, cookie) = request_hash(policies, &head, d.client, connection);
                hash = h;
                d.set_cookie = cookie;
            }
        }
        let (retries, idle) = match self.plan.listeners[li]
            .routes
            .get(fwd.route)
            .map(|sel| &sel.route.action)
        {
            Some(Action::Route(a)) => (a.retry_policy.is_some(), a.idle_timeout),
            _ => (false, None),
        };
        let now = tcp.now_ms();
        if let Some(d) = self.downs.get_mut(di) {
            d.cluster = ci as u32;
            d.holds = HOLDS_REQUEST;
            d.route = Some(fwd.route);
            d.route_timeout_ms = fwd.timeout_ms;
            d.idle_override = idle.map(ms);
            // The route's timeout runs from the end of the downstream request.
            if d.req.done() {
                d.rq_deadline_ms = fwd.timeout_ms.map(|t| now + t);
            }
            d.retry = retries.then(|| {
                Box::new(Retry {
                    head: head.clone(),
                    hash,
                    retries: 0,
                    tried: Vec::new(),
                    body: Vec::new(),
                    overflow: false,
                    at_ms: None,
                })
            });
        }
        self.rearm_stream_deadline(tcp, di);
        self.start_try(tcp, di, head, hash);
    }

    /// Send the current request of `di` to an endpoint of its cluster: on a
    /// pooled connection, a new one, or in line for one (circuit breakers).
    fn start_try(&mut self, tcp: &mut Stack, di: u32, mut head: RequestHead, hash: Option<u64>) {
        let Some(d) = self.downs.get(di) else {
            return;
        };
        let (ci, li, route) = (d.cluster as usize, d.listener as usize, d.route);
        let avoid = route
            .and_then(|r| retry_policy(&self.plan.listeners, li, r))
            .filter(|p| p.previous_hosts)
            .map_or(0, |p| p.host_selection_retry_max_attempts);
        let tried: &[u32] = d.retry.as_ref().map_or(&[], |r| &r.tried);
        let cs = &self.stats.clusters[ci].1;
        let (active, done) = (&cs.endpoint_rq_active, &cs.endpoint_rq_done);
        let state = &self.plan.shared.clusters[ci];
        let balancer = &mut self.plan.clusters[ci];
        let mut picked = None;
        // `previous_hosts`: pick again (up to host_selection_retry_max_attempts
        // times) while the pick was tried before.
        for _ in 0..=avoid {
            picked = balancer.pick(state, &mut self.rng, hash, |i| {
                active[i].get().saturating_sub(done[i].get())
            });
            if picked.map_or(true, |e| !tried.contains(&(e as u32))) {
                break;
            }
        }
        let Some(ei) = picked else {
            cs.upstream_cx_none_healthy.add(1);
            if let Some(d) = self.downs.get_mut(di) {
                d.flags |= ResponseFlags::NO_HEALTHY_UPSTREAM;
            }
            let x = self.router_reply(route, li);
            return self.reply(tcp, di, 503, b"no healthy upstream", x);
        };
        if balancer.panic {
            cs.lb_healthy_panic.add(1);
        }
        cs.upstream_rq_total.add(1);
        cs.endpoint_rq_active[ei].add(1);
        let endpoint = balancer.all().endpoints[ei];
        if !head.headers.contains("host") {
            // An HTTP/1.0 request without Host goes upstream as HTTP/1.1,
            // which requires one: name the endpoint.
            head.headers.append("host", endpoint.to_string());
        }
        let mut out = Vec::with_capacity(512);
        codec::write_request_head(&head, &mut out);
        if let Some(r) = self.downs.get_mut(di).and_then(|d| d.retry.as_deref_mut()) {
            r.tried.push(ei as u32);
            out.extend_from_slice(&r.body);
        }
        let key = (ci as u32, ei as u32);
        if let Some(ui) = self.pool.get_mut(&key).and_then(Vec::pop) {
            cs.upstream_cx_reused.add(1);
            return self.attach(tcp, ui, di, out);
        }
        // A new connection: the request waits for it (pending).
        if !state.try_acquire(Resource::Pending) {
            state.counters.upstream_rq_pending_overflow.add(1);
            cs.endpoint_rq_done[ei].add(1);
            return self.overloaded(tcp, di, route, li);
        }
        cs.upstream_rq_pending_total.add(1);
        if let Some(d) = self.downs.get_mut(di) {
            d.holds |= HOLDS_PENDING;
        }
        if !state.try_acquire(Resource::Connections) {
            state.counters.upstream_cx_overflow.add(1);
            if self.conns.get(&key).copied().unwrap_or(0) > 0 {
                // In line for one of this worker's connections to it.
                if let Some(d) = self.downs.get_mut(di) {
                    d.waiting = Some((ei as u32, out));
                }
                self.waiters.entry(key).or_default().push_back(di);
                return;
            }
            // As Envoy: a first connection is made even at the limit, so
            // that no request waits on connections another worker holds.
            state.acquire_anyway(Resource::Connections);
        }
        self.open_upstream(tcp, di, ci, ei, out);
    }

    /// Open a connection to endpoint `ei` of cluster `ci` for `di`'s request
    /// `out` (a connection circuit breaker slot is taken already).
    fn open_upstream(&mut self, tcp: &mut Stack, di: u32, ci: usize, ei: usize, out: Vec<u8>) {
        let cs = &self.stats.clusters[ci].1;
        let endpoint = self.plan.clusters[ci].all().endpoints[ei];
        let conn = match tcp.connect(endpoint) {
            Ok(c) => c,
            Err(_) => {
                self.plan.shared.clusters[ci].release(Resource::Connections);
                cs.upstream_cx_connect_fail.add(1);
                cs.endpoint_rq_done[ei].add(1);
                return self.try_failed(
                    tcp,
                    di,
                    (ci, ei),
                    TryFailure::Connect,
                    b"upstream connect error or disconnect/reset before headers",
                );
            }
        };
        cs.upstream_cx_http1_total.add(1);
        if let Some(c) = cs.endpoint_cx_total.get(ei) {
            c.add(1);
        }
        *self.conns.entry((ci as u32, ei as u32)).or_default() += 1;
        let ui = self.ups.insert(Up {
            conn,
            cluster: ci as u32,
            endpoint: ei as u32,
            connected: false,
            down: None,
            out: Vec::new(),
            buf: Vec::new(),
            head_done: false,
            reusable: false,
            requests: 0,
            idle: false,
            per_try_ms: None,
            timeout_armed: false,
            sent_at: None,
        });
        tcp.set_user(conn, tag(Side::Up(ui)) | self.gen_bits);
        let now = tcp.now_ms();
        tcp.set_deadline(
            conn,
            Some(now + self.plan.clusters[ci].all().connect_timeout_ms),
        );
        self.attach(tcp, ui, di, out);
    }

    /// Give upstream `ui` the request `out` of `di`.
    fn attach(&mut self, tcp: &mut Stack, ui: u32, di: u32, out: Vec<u8>) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let per_try = d
            .route
            .and_then(|r| retry_policy(&self.plan.listeners, d.listener as usize, r))
            .and_then(|p| p.per_try_timeout.and_then(ms));
        let Some(u) = self.ups.get_mut(ui) else {
            return;
        };
        if u.connected {
            // No idle or earlier per-try deadline; a connecting one keeps its
            // connect timeout.
            tcp.set_deadline(u.conn, None);
        }
        u.idle = false;
        u.down = Some(di);
        u.out = out;
        u.head_done = false;
        u.reusable = false;
        u.requests += 1;
        u.per_try_ms = per_try;
        u.timeout_armed = false;
        u.sent_at = None;
        let connected = u.connected;
        d.up = Some(ui);
        d.try_started = Some(Instant::now());
        if let Some(l) = d.log.as_deref_mut() {
            let ci = u.cluster as usize;
            l.upstream = self.plan.clusters[ci]
                .all()
                .endpoints
                .get(u.endpoint as usize)
                .map(|e| SocketAddr::V4(*e));
            if l.cluster.is_none() {
                l.cluster = self
                    .plan
                    .cluster_names
                    .get(ci)
                    .map(|n| Arc::from(n.as_str()));
            }
        }
        if connected {
            self.not_pending(di);
        }
    }

    /// `di`'s request no longer waits for a connection (it has one, or its
    /// try ended): give back its pending slot.
    fn not_pending(&mut self, di: u32) {
        if let Some(d) = self.downs.get_mut(di) {
            if d.holds & HOLDS_PENDING != 0 {
                d.holds &= !HOLDS_PENDING;
                self.plan.shared.clusters[d.cluster as usize].release(Resource::Pending);
            }
        }
    }

    /// 503 for a circuit breaker's overflow, marked as Envoy marks it.
    fn overloaded(&mut self, tcp: &mut Stack, di: u32, route: Option<route::RouteRef>, li: usize) {
        if let Some(d) = self.downs.get_mut(di) {
            d.flags |= ResponseFlags::UPSTREAM_OVERFLOW;
        }
        let headers = [("x-envoy-overloaded".to_owned(), b"true".to_vec())];
        let x = Reply {
            headers: &headers,
            ..self.router_reply(route, li)
        };
        self.reply(
            tcp,
            di,
            503,
            b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
            x,
        );
    }

    /// A try of `di`'s request on endpoint `(ci, ei)` failed with no response
    /// for the client yet (the upstream is gone): tell outlier detection, and
    /// try again if the route's retry policy allows, else answer `why`.
    fn try_failed(
        &mut self,
        tcp: &mut Stack,
        di: u32,
        (ci, ei): (usize, usize),
        failure: TryFailure,
        why: &[u8],
    ) {
        let roll = self.rng.next_u64();
        self.plan.shared.report(ci, ei, failure.outcome(), roll);
        self.not_pending(di);
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        d.up = None;
        if d.response_started {
            return self.abort_down(tcp, di);
        }
        if self.retry(tcp, di, failure) {
            return;
        }
        let (status, flag) = match failure {
            TryFailure::Connect => (503, ResponseFlags::UPSTREAM_CONNECTION_FAILURE),
            TryFailure::Reset => (503, ResponseFlags::UPSTREAM_CONNECTION_TERMINATION),
            TryFailure::PerTryTimeout => (504, ResponseFlags::UPSTREAM_REQUEST_TIMEOUT),
            TryFailure::Status(s) => (s, ResponseFlags::UPSTREAM_PROTOCOL_ERROR),
        };
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        d.flags |= flag;
        let li = d.listener as usize;
        let route = d.route;
        let x = self.router_reply(route, li);
        self.reply(tcp, di, status, why, x);
        self.drive(tcp, di);
    }

    /// Schedule another try of `di`'s request after `failure`, if its
    /// route's retry policy, the retry circuit breaker and the route's
    /// timeout allow; return whether it did. The caller has let go of the
    /// failed try's upstream.
    fn retry(&mut self, tcp: &mut Stack, di: u32, failure: TryFailure) -> bool {
        let Some(d) = self.downs.get(di) else {
            return false;
        };
        let (li, ci) = (d.listener as usize, d.cluster as usize);
        let Some(route) = d.route else {
            return false;
        };
        let Some(policy) = retry_policy(&self.plan.listeners, li, route) else {
            return false;
        };
        let Some(r) = d.retry.as_deref() else {
            return false;
        };
        if d.response_started || !failure.retriable(policy) {
            return false;
        }
        let cs = &self.stats.clusters[ci].1;
        if r.retries >= policy.num_retries {
            cs.upstream_rq_retry_limit_exceeded.add(1);
            if let Some(d) = self.downs.get_mut(di) {
                d.flags |= ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
            }
            return false;
        }
        let now = tcp.now_ms();
        if r.overflow || d.rq_deadline_ms.is_some_and(|t| now >= t) {
            return false;
        }
        let state = &self.plan.shared.clusters[ci];
        if d.holds & HOLDS_RETRY == 0 && !state.try_acquire(Resource::Retries) {
            state.counters.upstream_rq_retry_overflow.add(1);
            return false;
        }
        let wait = back_off_ms(policy, r.retries + 1, &mut self.rng);
        let Some(d) = self.downs.get_mut(di) else {
            return false;
        };
        d.holds |= HOLDS_RETRY;
        d.up = None;
        if let Some(r) = d.retry.as_deref_mut() {
            r.retries += 1;
            r.at_ms = Some(now + wait.max(1));
        }
        cs.upstream_rq_retry.add(1);
        self.rearm_stream_deadline(tcp, di);
        true
    }

    /// Cancel `di`'s request (its client is gone) and close.
    fn cancel(&mut self, tcp: &mut Stack, di: u32) -> bool {
        let Some(d) = self.downs.get_mut(di) else {
            return false;
        };
        d.flags |= ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
        self.stats.listeners[d.listener as usize]
            .1
            .downstream_rq_rx_reset
            .add(1);
        if let Some(ui) = d.up {
            self.cut_upstream(tcp, di, ui);
        }
        self.end_exchange(di);
        if let Some(d) = self.downs.get_mut(di) {
            d.phase = Phase::Closing;
        }
        true
    }

    /// The exchange of `di` is over: give back its circuit breaker
    /// resources and forget its retry state.
    fn end_exchange(&mut self, di: u32) {
        self.log_request(di);
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let ci = d.cluster as usize;
        if d.holds != 0 {
            let state = &self.plan.shared.clusters[ci];
            for (bit, r) in [
                (HOLDS_REQUEST, Resource::Requests),
                (HOLDS_PENDING, Resource::Pending),
                (HOLDS_RETRY, Resource::Retries),
            ] {
                if d.holds & bit != 0 {
                    state.release(r);
                }
            }
            d.holds = 0;
        }
        if let Some((ei, _)) = d.waiting.take() {
            // Its place in line is skipped when its turn comes.
            self.stats.clusters[ci].1.endpoint_rq_done[ei as usize].add(1);
        }
        d.retry = None;
        d.rq_deadline_ms = None;
        d.route_timeout_ms = None;
        d.idle_override = None;
    }

    /// Queue `di`'s access log record, if its listener logs and a request is
    /// in progress.
    fn log_request(&mut self, di: u32) {
        let Some(d) = self.downs.get_mut(di) else {
            return;
        };
        let Some(l) = d.log.take() else {
            return;
        };
        let plan = &self.plan.listeners[d.listener as usize];
        let Some(sink) = &plan.log else {
            return;
        };
        sink.push(Record {
            start_time: l.start_time,
            duration_ms: l.started.elapsed().as_millis() as u64,
            protocol: if d.http10 { "HTTP/1.0" } else { "HTTP/1.1" },
            response_code: l.status,
            response_flags: ResponseFlags(d.flags),
            bytes_received: d.body_rx,
            bytes_sent: d.body_tx,
            upstream_host: l.upstream,
            upstream_cluster: l.cluster,
            downstream_remote: d.client,
            downstream_local: SocketAddr::V4(d.local),
            request_headers: l.request_headers,
            response_headers: l.response_headers,
        });
    }

    /// A connection to `key` closed or became free: start the first request
    /// in line for it, if any.
    fn serve_waiter(&mut self, tcp: &mut Stack, key: (u32, u32), free: Option<u32>) {
        loop {
            let Some(di) = self.waiters.get_mut(&key).and_then(VecDeque::pop_front) else {
                if let Some(ui) = free {
                    self.pool_up(tcp, ui, key);
                }
                return;
            };
            let Some(d) = self.downs.get_mut(di) else {
                continue;
            };
            let waiting = d.cluster == key.0 && d.waiting.as_ref().is_some_and(|w| w.0 == key.1);
            if !waiting {
                continue;
            }
            let Some((_, out)) = d.waiting.take() else {
                continue;
            };
            match free {
                Some(ui) => {
                    self.stats.clusters[key.0 as usize]
                        .1
                        .upstream_cx_reused
                        .add(1);
                    self.attach(tcp, ui, di, out);
                }
                None => {
                    let state = &self.plan.shared.clusters[key.0 as usize];
                    let ours = self.conns.get(&key).copied().unwrap_or(0);
                    if ours > 0 && !state.try_acquire(Resource::Connections) {
                        // Still at the limit: stay first in line.
                        if let Some(d) = self.downs.get_mut(di) {
                            d.waiting = Some((key.1, out));
                        }
                        self.waiters.entry(key).or_default().push_front(di);
                        return;
                    }
                    if ours == 0 {
                        state.acquire_anyway(Resource::Connections);
                    }
                    self.open_upstream(tcp, di, key.0 as usize, key.1 as usize, out);
                }
            }
            self.drive(tcp, di);
            return;
        }
    }

    /// Put upstream `ui` in the idle pool of `key`.
    fn pool_up(&mut self, tcp: &mut Stack, ui: u32, key: (u32, u32)) {
        let idle = self.plan.upstream_idle_ms[key.0 as usize].map(|t| tcp.now_ms() + t);
        if let Some(u) = self.ups.get_mut(ui) {
            u.down = None;
            u.idle = true;
            tcp.set_deadline(u.conn, idle);
            self.pool.entry(key).or_default().push(ui);
        }
    }

    /// Move the current exchange along; return true on progress.
    fn exchange(&mut self, tcp: &mut Stack, di: u32) -> bool {
        let Some(d) = self.downs.get(di) else {
            return false;
        };
        let connected =
            d.up.and_then(|ui| self.ups.get(ui))
                .is_some_and(|u| u.connected);
        let sent = d.req.done() && d.buf.is_empty();
        if !d.response_started && (sent || !connected) && tcp.recv_finished(d.conn) {
            // The client left before its answer began (while its request
            // waited for a connection, a retry or the response head):
            // cancel the request and its upstream, as Envoy resets the
            // stream on a downstream close.
            return self.cancel(tcp, di);
        }
        let Some(ui) = d.up else {
            return false;
        };
        let mut progressed = false;
        // The request: head, then body.
        if let Some(u) = self.ups.get_mut(ui) {
            if !u.connected {
                return false;
            }
            if !u.out.is_empty() {
                let n = tcp.send(u.conn, &u.out);
                u.out.drain(..n);
                progressed |= n > 0;
                if n > 0 && u.sent_at.is_none() && self.latency_clusters[u.cluster as usize] {
                    u.sent_at = Some(Instant::now());
                }
            }
        }
        if self.ups.get(ui).is_some_and(|u| u.out.is_empty()) {
            progressed |= self.request_body(tcp, di, ui);
        }
        let request_sent = self.downs.get(di).is_some_and(|d| d.req.done());
        if let Some(u) = self.ups.get_mut(ui) {
            if request_sent && u.out.is_empty() && !u.timeout_armed && !u.head_done {
                u.timeout_armed = true;
                let at = u.per_try_ms.map(|t| tcp.now_ms() + t);
                tcp.set_deadline(u.conn, at);
            }
        }
        if let Some(d) = self.downs.get_mut(di) {
            if request_sent && d.rq_deadline_ms.is_none() && d.route_timeout_ms.is_some() {
                // The downstream request just ended: the route's timeout runs.
                d.rq_deadline_ms = d.route_timeout_ms.map(|t| tcp.now_ms() + t);
                self.rearm_stream_deadline(tcp, di);
            }
        }
        // The response.
        progressed |= self.response(tcp, di, ui);
        progressed |= self.finish_if_done(tcp, di, ui);
        progressed
    }

    fn request_body(&mut self, tcp: &mut Stack, di: u32, ui: u32) -> bool {
        let (Some(d), Some(u)) = (self.downs.get_mut(di), self.ups.get(ui)) else {
            return false;
        };
        if d.req.done() {
            return false;
        }
        let tee = d
            .retry
            .as_deref_mut()
            .filter(|r| !r.overflow)
            .map(|r| &mut r.body);
        let moved = match move_body(
            tcp,
            d.conn,
            &mut d.buf,
            u.conn,
            &mut d.req,
            false,
            &mut self.scratch,
            &mut self.scratch2,
            tee,
        ) {
            Ok(n) => n,
            Err(()) => {
                // Bad chunk framing from the client: 400 if nothing was
                // answered yet, else reset.
                let started = d.response_started;
                self.protocol_error(di);
                self.cut_upstream(tcp, di, ui);
                if started {
                    self.abort_down(tcp, di);
                } else {
                    self.local_reply(tcp, di, 400, b"bad chunked request body", true);
                }
                return true;
            }
        };
        let mut progressed = moved > 0;
        if let Some(d) = self.downs.get_mut(di) {
            if moved > 0 {
                d.last_activity_ms = tcp.now_ms();
                d.body_rx += moved as u64;
            }
            if let Some(r) = d.retry.as_deref_mut() {
                if r.body.len() > RETRY_BUFFER_LIMIT {
                    // Too long to keep: this request is not tried again.
                    r.overflow = true;
                    r.body = Vec::new();
                }
            }
            self.stats.listeners[d.listener as usize]
                .1
                .downstream_cx_rx_bytes_total
                .add(moved as u64);
            // A tunnel's client half ends with its FIN: pass it on.
            if matches!(d.req, Body::UntilClose) && d.buf.is_empty() && tcp.recv_finished(d.conn) {
                d.req = Body::Done;
                if let Some(u) = self.ups.get(ui) {
                    tcp.close(u.conn);
                }
                progressed = true;
            }
        }
        progressed
    }

    fn response(&mut self, tcp: &mut Stack, di: u32, ui: u32) -> bool {
        let mut progressed = false;
        let Some(u) = self.ups.get_mut(ui) else {
            return false;
        };
        while !u.head_done {
            if u.buf.len() < MAX_RESPONSE_HEAD {
                let want = (MAX_RESPONSE_HEAD - u.buf.len()).min(READ_CHUNK);
                let n = tcp.recv(u.conn, &mut self.scratch[..want]);
                u.buf.extend_from_slice(&self.scratch[..n]);
                progressed |= n > 0;
            }
            match codec::parse_response(&u.buf, MAX_RESPONSE_HEAD) {
                Ok(None) => {
                    if tcp.recv_finished(u.conn) {
                        // Closed before a whole head: 503 as Envoy.
                        self.upstream_failed(
                            tcp,
                            ui,
                            TryFailure::Reset,
                            "upstream connect error or disconnect/reset before headers",
                        );
                        return true;
                    }
                    return progressed;
                }
                Err(_) => {
                    self.upstream_failed(
                        tcp,
                        ui,
                        TryFailure::Status(502),
                        "upstream sent a malformed response",
                    );
                    return true;
                }
                Ok(Some((head, n))) => {
                    u.buf.drain(..n);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        // Interim (100 Continue): pass on to HTTP/1.1 clients.
                        if let Some(d) = self.downs.get_mut(di) {
                            if !d.http10 {
                                codec::write_response_head(&head, Version::Http11, &mut d.out);
                            }
                        }
                        continue;
                    }
                    if self.retry_response(tcp, di, ui, head.status) {
                        return true;
                    }
                    self.response_head(tcp, di, ui, head);
                    return true;
                }
            }
        }
        // The body.
        let (Some(d), Some(u)) = (self.downs.get_mut(di), self.ups.get_mut(ui)) else {
            return progressed;
        };
        if d.resp.done() || !d.out.is_empty() {
            return progressed;
        }
        match move_body(
            tcp,
            u.conn,
            &mut u.buf,
            d.conn,
            &mut d.resp,
            d.dechunk,
            &mut self.scratch,
            &mut self.scratch2,
            None,
        ) {
            Ok(n) => {
                self.stats.listeners[d.listener as usize]
                    .1
                    .downstream_cx_tx_bytes_total
                    .add(n as u64);
                if n > 0 {
                    d.last_activity_ms = tcp.now_ms();
                    d.body_tx += n as u64;
                }
                progressed |= n > 0;
            }
            Err(()) => {
                // Bad framing from the upstream mid-body: cut both.
                self.cut_upstream(tcp, di, ui);
                self.abort_down(tcp, di);
                return true;
            }
        }
        if u.buf.is_empty() && tcp.recv_finished(u.conn) {
            if matches!(d.resp, Body::UntilClose) {
                d.resp = Body::Done;
                return true;
            }
            if !d.resp.done() {
                // The upstream closed before the end its framing promised
                // (Content-Length or chunked): the client cannot tell a cut
                // body from a whole one but by a reset, so, as Envoy, reset
                // it (access log flag UC).
                d.flags |= ResponseFlags::UPSTREAM_CONNECTION_TERMINATION;
                self.cut_upstream(tcp, di, ui);
                self.abort_down(tcp, di);
                return true;
            }
        }
        progressed
    }

    /// A final response head arrived from upstream `ui` for `di`.
    fn response_head(&mut self, tcp: &mut Stack, di: u32, ui: u32, mut head: ResponseHead) {
        let (Some(d), Some(u)) = (self.downs.get_mut(di), self.ups.get_mut(ui)) else {
            return;
        };
        u.head_done = true;
        if let Some(sent) = u.sent_at.take() {
            let rtt = sent.elapsed().as_micros() as u64;
            let now = self.epoch.elapsed().as_micros() as u64;
            if let Some(b) = self.plan.clusters.get_mut(u.cluster as usize) {
                b.observe_latency(u.endpoint as usize, rtt, now);
            }
        }
        let framing = codec::response_framing(&head, &d.method);
        let tunnel = matches!(framing, BodyFraming::Tunnel);
        if self.draining {
            // Draining: this is the connection's last response.
            d.keep_alive = false;
        }
        u.reusable = codec::keep_alive(head.version, &head.headers)
            && !matches!(framing, BodyFraming::UntilClose | BodyFraming::Tunnel);
        let cs = &self.stats.clusters[u.cluster as usize].1;
        cs.upstream_rq_xx[class(head.status)].add(1);
        if d.retry.as_ref().is_some_and(|r| r.retries > 0) {
            // As Envoy: a success only if the answer after a retry is one the
            // policy would not retry (not a 503 that ran out of retries).
            let retriable = d
                .route
                .and_then(|r| retry_policy(&self.plan.listeners, d.listener as usize, r))
                .is_some_and(|p| TryFailure::Status(head.status).retriable(p));
            if !retriable {
                cs.upstream_rq_retry_success.add(1);
            }
        }
        if d.holds & HOLDS_RETRY != 0 {
            d.holds &= !HOLDS_RETRY;
            self.plan.shared.clusters[u.cluster as usize].release(Resource::Retries);
        }
        self.stats.listeners[d.listener as usize].1.downstream_rq_xx[class(head.status)].add(1);
        let upgrade = head.headers.get_str("upgrade").map(str::to_owned);
        codec::remove_hop_by_hop(&mut head.headers);
        d.dechunk = d.http10 && matches!(framing, BodyFraming::Chunked);
        if matches!(framing, BodyFraming::UntilClose) || d.dechunk || tunnel {
            d.keep_alive = false;
        }
        if tunnel {
            // Upgraded: from now on bytes flow both ways until each side's FIN.
            d.req = Body::UntilClose;
        }
        if matches!(framing, BodyFraming::Chunked) && !d.dechunk {
            head.headers.append("transfer-encoding", "chunked");
        }
        if tunnel {
            if let Some(up) = upgrade.as_deref() {
                head.headers.append("connection", "upgrade");
                head.headers.append("upgrade", up);
            }
        } else if !d.keep_alive {
            head.headers.append("connection", "close");
        } else if d.http10 {
            head.headers.append("connection", "keep-alive");
        }
        let plan = &self.plan.listeners[d.listener as usize];
        if d.route.is_some() || !plan.filters.is_empty() {
            encode_response(plan, d, d.route, plan.filters.len(), &mut head);
        }
        if let Some(cookie) = d.set_cookie.take() {
            head.headers.append("set-cookie", cookie);
        }
        let version = if d.http10 {
            Version::Http10
        } else {
            Version::Http11
        };
        if let (Some(l), Some(sink)) = (d.log.as_deref_mut(), &plan.log) {
            l.status = head.status;
            l.response_headers = sink
                .wanted_response_headers()
                .iter()
                .map(|h| head.headers.get_str(h).map(str::to_owned))
                .collect();
        }
        codec::write_response_head(&head, version, &mut d.out);
        d.resp = Body::of(framing);
        d.response_started = true;
        d.last_activity_ms = tcp.now_ms();
        let _ = tcp;
    }

    /// The exchange is over when both bodies are through.
    fn finish_if_done(&mut self, tcp: &mut Stack, di: u32, ui: u32) -> bool {
        let (Some(d), Some(u)) = (self.downs.get(di), self.ups.get(ui)) else {
            return false;
        };
        if !u.head_done || !d.resp.done() || !d.out.is_empty() {
            return false;
        }
        let request_done = d.req.done();
        let keep = d.keep_alive && request_done;
        let limit = self.max_requests[u.cluster as usize];
        let reuse = u.reusable
            && request_done
            && u.buf.is_empty()
            && limit.map_or(true, |max| u.requests < max);
        let (ci, ei) = (u.cluster as usize, u.endpoint as usize);
        let cs = &self.stats.clusters[ci].1;
        cs.endpoint_rq_done[ei].add(1);
        if let Some(d) = self.downs.get_mut(di) {
            let now = Instant::now();
            if let Some(t) = d.try_started.take() {
                cs.observe(ei, now.duration_since(t).as_micros() as u64);
            }
            if let Some(t) = d.rq_started.take() {
                let us = now.duration_since(t).as_micros() as u64;
                self.stats.listeners[d.listener as usize]
                    .1
                    .downstream_rq_time
                    .record(us);
            }
            d.up = None;
            d.route = None;
            d.phase = if keep { Phase::Head } else { Phase::Closing };
        }
        if let Some(u) = self.ups.get_mut(ui) {
            u.down = None;
        }
        self.end_exchange(di);
        self.arm_head_deadline(tcp, di);
        if reuse {
            // To the next request in line for it, or to the pool.
            self.serve_waiter(tcp, (ci as u32, ei as u32), Some(ui));
        } else {
            self.drop_upstream(tcp, ui, false);
        }
        true
    }

    /// Upstream `ui` failed before a response head: let it go, and retry or
    /// answer its request (see [`HttpProxy::try_failed`]).
    fn upstream_failed(&mut self, tcp: &mut Stack, ui: u32, failure: TryFailure, why: &str) {
        let Some(u) = self.ups.get(ui) else {
            return;
        };
        let down = u.down;
        let (ci, ei) = (u.cluster as usize, u.endpoint as usize);
        self.stats.clusters[ci].1.endpoint_rq_done[ei].add(1);
        self.drop_upstream(tcp, ui, true);
        if let Some(di) = down {
            self.try_failed(tcp, di, (ci, ei), failure, why.as_bytes());
        }
    }

    /// A response head with `status` arrived on `ui` for `di`: if the route
    /// retries on it, drop the response and schedule the retry (true).
    fn retry_response(&mut self, tcp: &mut Stack, di: u32, ui: u32, status: u16) -> bool {
        let Some(u) = self.ups.get(ui) else {
            return false;
        };
        let (ci, ei) = (u.cluster as usize, u.endpoint as usize);
        let roll = self.rng.next_u64();
        self.plan
            .shared
            .report(ci, ei, Outcome::Status(status), roll);
        let maybe = self
            .downs
            .get(di)
            .is_some_and(|d| d.retry.is_some() && !d.response_started);
        if !maybe || !self.retry(tcp, di, TryFailure::Status(status)) {
            return false;
        }
        let cs = &self.stats.clusters[ci].1;
        cs.upstream_rq_xx[class(status)].add(1);
        cs.endpoint_rq_done[ei].add(1);
        // Its body is not wanted: the connection cannot be reused.
        self.drop_upstream(tcp, ui, true);
        true
    }

    /// End the exchange of `di` on upstream `ui` before its end: the request
    /// is done for the balancer, the upstream is reset and forgotten, and
    /// `di` has no upstream (so its close is not counted as a reset again).
    fn cut_upstream(&mut self, tcp: &mut Stack, di: u32, ui: u32) {
        if let Some(u) = self.ups.get(ui) {
            let (ci, ei) = (u.cluster as usize, u.endpoint as usize);
            self.stats.clusters[ci].1.endpoint_rq_done[ei].add(1);
        }
        self.drop_upstream(tcp, ui, true);
        if let Some(d) = self.downs.get_mut(di) {
            d.up = None;
            d.route = None;
        }
    }

    /// Close (or reset) upstream `ui` and forget it.
    fn drop_upstream(&mut self, tcp: &mut Stack, ui: u32, reset: bool) {
        let Some(u) = self.ups.remove(ui) else {
            return;
        };
        if u.idle {
            if let Some(v) = self.pool.get_mut(&(u.cluster, u.endpoint)) {
                v.retain(|&x| x != ui);
            }
        }
        let cs = &self.stats.clusters[u.cluster as usize].1;
        cs.upstream_cx_destroy.add(1);
        if let Some(c) = cs.endpoint_cx_closed.get(u.endpoint as usize) {
            c.add(1);
        }
        tcp.set_user(u.conn, 0);
        if reset {
            tcp.abort(u.conn);
        } else {
            tcp.close(u.conn);
        }
        let key = (u.cluster, u.endpoint);
        self.plan.shared.clusters[u.cluster as usize].release(Resource::Connections);
        if let Some(n) = self.conns.get_mut(&key) {
            *n = n.saturating_sub(1);
        }
        if self.waiters.get(&key).is_some_and(|w| !w.is_empty()) {
            self.serve_waiter(tcp, key, None);
        }
    }

    /// Start a drain: close the connections that wait for a request head
    /// and have none begun; the others close after their current answer
    /// (which says `Connection: close`).
    ///
    /// `idle_grace_ms`: how long an idle connection may still send a request
    /// (answered with `Connection: close`) before it is closed. Closing an
    /// idle HTTP/1.1 connection races with a request its client may be
    /// sending at that moment, so a reload, which must lose no request,
    /// gives a grace; a process drain (0) closes them at once.
    pub fn drain(&mut self, tcp: &mut Stack, idle_grace_ms: u64) {
        self.draining = true;
        let idle: Vec<u32> = (0..self.downs.items.len() as u32)
            .filter(|&di| {
                self.downs
                    .get(di)
                    .is_some_and(|d| d.phase == Phase::Head && d.buf.is_empty())
            })
            .collect();
        let at = tcp.now_ms() + idle_grace_ms;
        for di in idle {
            if idle_grace_ms > 0 {
                if let Some(d) = self.downs.get(di) {
                    tcp.set_deadline(d.conn, Some(at));
                }
                continue;
            }
            if let Some(d) = self.downs.get_mut(di) {
                d.phase = Phase::Closing;
            }
            self.drive(tcp, di);
        }
    }

    /// Close the pooled upstream connections nobody uses (a reload retires
    /// this proxy: its pools serve no new request).
    pub fn close_idle(&mut self, tcp: &mut Stack) {
        let idle: Vec<u32> = self.pool.values().flatten().copied().collect();
        for ui in idle {
            self.drop_upstream(tcp, ui, false);
        }
    }

    /// Upstream connections open now.
    pub fn upstream_connections(&self) -> usize {
        self.ups.len()
    }

    /// Reset every connection, both sides (a drain whose time is over).
    pub fn abort_all(&mut self, tcp: &mut Stack) {
        for d in self.downs.items.iter().flatten() {
            tcp.abort(d.conn);
        }
        for u in self.ups.items.iter().flatten() {
            tcp.abort(u.conn);
        }
    }

    fn abort_down(&mut self, tcp: &mut Stack, di: u32) {
        if let Some(d) = self.downs.get(di) {
            tcp.abort(d.conn);
        }
    }
}

/// Request header `name` for the access log: a header, or one of the
/// pseudo-headers `:method`, `:path`, `:authority`, `:scheme`.
fn request_header(head: &RequestHead, name: &str) -> Option<String> {
    match name {
        ":method" => Some(head.method.as_str().to_owned()),
        ":path" => Some(head.target.clone()),
        ":authority" => head.headers.get_str("host").map(str::to_owned),
        ":scheme" => Some("http".to_owned()),
        _ => head.headers.get_str(name).map(str::to_owned),
    }
}

/// The retry policy of route `route` on listener `li`.
fn retry_policy(listeners: &[HcmPlan], li: usize, route: route::RouteRef) -> Option<&RetryPolicy> {
    let sel = listeners.get(li)?.routes.get(route)?;
    match &sel.route.action {
        Action::Route(a) => a.retry_policy.as_ref(),
        _ => None,
    }
}

/// What header values of downstream connection `d`'s request and response
/// are formatted with.
fn format_context<'a>(d: &'a Down) -> route::FormatContext<'a> {
    route::FormatContext {
        downstream_remote_address: Some(d.client),
        downstream_local_address: Some(d.local.into()),
        protocol: if d.http10 { "HTTP/1.0" } else { "HTTP/1.1" },
        method: d.method.as_str(),
        ..Default::default()
    }
}

/// The response side of the HCM on `head`: the route's response header
/// mutations first (when there is a route), then the first `encoders`
/// filters' `encodeHeaders` in reverse order, as Envoy runs them.
fn encode_response(
    plan: &HcmPlan,
    d: &Down,
    route: Option<route::RouteRef>,
    encoders: usize,
    head: &mut ResponseHead,
) {
    let ctx = format_context(d);
    if let Some(r) = route {
        plan.routes
            .apply_response_mutations(r, &mut head.headers, &ctx);
    }
    plan.filters.encode_headers(encoders, head, &ctx);
}

/// Pass on what is left of a body from `src` (its unread bytes in `buf`
/// first) to `dst`, as far as `dst` has room; return the bytes consumed.
/// `Err` on bad chunk framing.
#[allow(clippy::too_many_arguments)]
fn move_body(
    tcp: &mut Stack,
    src: ConnId,
    buf: &mut Vec<u8>,
    dst: ConnId,
    body: &mut Body,
    dechunk: bool,
    scratch: &mut [u8],
    decoded: &mut Vec<u8>,
    mut tee: Option<&mut Vec<u8>>,
) -> Result<usize, ()> {
    let mut moved = 0;
    loop {
        match body {
            Body::Done => return Ok(moved),
            Body::Length(left) => {
                if !buf.is_empty() {
                    let room = tcp.send_space(dst);
                    let k = (buf.len() as u64).min(*left).min(room as u64) as usize;
                    let sent = tcp.send(dst, &buf[..k]);
                    if let Some(t) = tee.as_deref_mut() {
                        t.extend_from_slice(&buf[..sent]);
                    }
                    buf.drain(..sent);
                    *left -= sent as u64;
                    moved += sent;
                    if *left == 0 {
                        *body = Body::Done;
                    }
                    if !buf.is_empty() || sent == 0 {
                        return Ok(moved);
                    }
                    continue;
                }
                let most = usize::try_from(*left).unwrap_or(usize::MAX);
                let n = match tee.as_deref_mut() {
                    // Kept for a retry: copied through, not spliced.
                    Some(t) => {
                        let cap = most.min(tcp.send_space(dst)).min(scratch.len());
                        let n = tcp.recv(src, &mut scratch[..cap]);
                        let sent = tcp.send(dst, &scratch[..n]);
                        debug_assert_eq!(sent, n, "at most the send space");
                        t.extend_from_slice(&scratch[..n]);
                        n
                    }
                    None => tcp.splice_max(src, dst, most),
                };
                *left -= n as u64;
                moved += n;
                if *left == 0 {
                    *body = Body::Done;
                }
                return Ok(moved);
            }
            Body::UntilClose => {
                if !buf.is_empty() {
                    let sent = tcp.send(dst, buf);
                    buf.drain(..sent);
                    moved += sent;
                    if !buf.is_empty() {
                        return Ok(moved);
                    }
                }
                moved += tcp.splice(src, dst);
                return Ok(moved);
            }
            Body::Chunked(scanner) => {
                let room = tcp.send_space(dst);
                if room == 0 {
                    return Ok(moved);
                }
                if buf.is_empty() {
                    let cap = room.min(scratch.len());
                    let n = tcp.recv(src, &mut scratch[..cap]);
                    if n == 0 {
                        return Ok(moved);
                    }
                    buf.extend_from_slice(&scratch[..n]);
                }
                let take = buf.len().min(room);
                let consumed;
                let done;
                if dechunk {
                    decoded.clear();
                    let scan = scanner
                        .scan_payload(&buf[..take], |p| decoded.extend_from_slice(p))
                        .map_err(|_| ())?;
                    consumed = scan.consumed;
                    done = scan.done;
                    let sent = tcp.send(dst, decoded);
                    debug_assert_eq!(sent, decoded.len(), "decoded is at most `room`");
                } else {
                    let scan = scanner.scan(&buf[..take]).map_err(|_| ())?;
                    consumed = scan.consumed;
                    done = scan.done;
                    let sent = tcp.send(dst, &buf[..consumed]);
                    debug_assert_eq!(sent, consumed, "at most `room`");
                    if let Some(t) = tee.as_deref_mut() {
                        t.extend_from_slice(&buf[..consumed]);
                    }
                }
                buf.drain(..consumed);
                moved += consumed;
                if done {
                    *body = Body::Done;
                    return Ok(moved);
                }
                if consumed == 0 {
                    return Ok(moved);
                }
            }
        }
    }
}

/// The hash of a request for RING_HASH and MAGLEV, from the route's
/// `hash_policy` as Envoy computes it: each policy that finds its input
/// folds its hash in (`rotl(h, 1) ^ x`); a `terminal` one that produced a
/// hash ends the list. A cookie policy with a `ttl` whose cookie is absent
/// generates the cookie as Envoy does (its value is a hash of the
/// connection's two addresses, so one connection's requests stay together)
/// and returns its `set-cookie` value for the response.
fn request_hash(
    policies: &[HashPolicy],
    head: &RequestHead,
    client: SocketAddr,
    connection: (SocketAddrV4, SocketAddrV4),
) -> (Option<u64>, Option<String>) {
    let mut hash: Option<u64> = None;
    let mut set_cookie = None;
    for p in policies {
        let x = match &p.source {
            HashSource::Header(name) => {
                let mut values: Vec<&[u8]> = head.headers.get_all(name).collect();
                if values.is_empty() {
                    None
                } else {
                    values.sort_unstable();
                    Some(crate::cluster::hash_key(&values.concat()))
                }
            }
            HashSource::Cookie { name, ttl, path } => {
                match codec::cookie_value(&head.headers, name) {
                    Some(v) => Some(crate::cluster::hash_key(v)),
                    None => ttl.map(|ttl| {
                        let (remote, local) = connection;
                        let seed = format!("{remote}{local}");
                        let value = format!("{:016x}", crate::cluster::hash_key(seed.as_bytes()));
                        set_cookie = Some(set_cookie_value(name, &value, path.as_deref(), ttl));
                        crate::cluster::hash_key(value.as_bytes())
                    }),
                }
            }
            HashSource::SourceIp(true) => {
                Some(crate::cluster::hash_key(client.ip().to_string().as_bytes()))
            }
            HashSource::SourceIp(false) => None,
            HashSource::QueryParameter(name) => {
                head.target.split_once('?').and_then(|(_, query)| {
                    query.split('&').find_map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k == name).then(|| crate::cluster::hash_key(v.as_bytes()))
                    })
                })
            }
        };
        if let Some(x) = x {
            hash = Some(crate::cluster::combine_hash(hash, x));
            if p.terminal {
                break;
            }
        }
    }
    (hash, set_cookie)
}

/// A `set-cookie` value as Envoy writes a generated one:
/// `name="value"; Max-Age=N; Path=P; HttpOnly` (no `Max-Age` for a session
/// cookie, `ttl` 0).
fn set_cookie_value(
    name: &str,
    value: &str,
    path: Option<&str>,
    ttl: std::time::Duration,
) -> String {
    let mut out = format!("{name}=\"{value}\"");
    if ttl.as_secs() > 0 {
        out.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        out.push_str("; Path=");
        out.push_str(path);
    }
    out.push_str("; HttpOnly");
    out
}

/// The trusted client address of a request, as Envoy's connection manager
/// finds it: with `use_remote_address`, the connection's peer, or with
/// `xff_num_trusted_hops` N > 0 the Nth address from the right of
/// `x-forwarded-for` as received; without it, the (N+1)th from the right.
/// When `x-forwarded-for` has too few addresses (or not an address there),
/// the connection's peer.
fn trusted_client(
    remote: SocketAddrV4,
    headers: &super::Headers,
    use_remote_address: bool,
    trusted_hops: u32,
) -> SocketAddr {
    let from_right = if use_remote_address {
        match trusted_hops.checked_sub(1) {
            Some(skip) => skip,
            None => return SocketAddr::V4(remote),
        }
    } else {
        trusted_hops
    } as usize;
    let mut entries: Vec<&[u8]> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        entries.extend(value.split(|b| *b == b','));
    }
    entries
        .len()
        .checked_sub(from_right + 1)
        .and_then(|i| entries.get(i))
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|e| e.trim().parse::<IpAddr>().ok())
        .map_or(SocketAddr::V4(remote), |ip| SocketAddr::new(ip, 0))
}

/// Split an absolute-form request target into (authority, origin form).
fn absolute_form(target: &str) -> Option<(String, String)> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    // Userinfo is not forwarded.
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    Some((authority.to_owned(), path))
}

/// A random UUID, version 4.
fn uuid4(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    let a = (a & !0xf000) | 0x4000; // version 4
    let b = (b & !(0xc << 60)) | (0x8 << 60); // variant 10
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

impl App for HttpProxy {
    fn accepted(&mut self, tcp: &mut Stack, conn: ConnId, listener: u32) {
        let Some(li) = listener.checked_sub(self.first_id) else {
            tcp.abort(conn);
            return;
        };
        if li as usize >= self.plan.listeners.len() {
            tcp.abort(conn);
            return;
        }
        let Some(key) = tcp.key(conn) else {
            return;
        };
        self.stats.listeners[li as usize]
            .1
            .downstream_cx_total
            .add(1);
        let di = self.downs.insert(Down {
            conn,
            listener: li,
            remote: key.remote,
            local: key.local,
            client: SocketAddr::V4(key.remote),
            phase: Phase::Head,
            buf: Vec::new(),
            out: Vec::new(),
            req: Body::Done,
            resp: Body::Done,
            up: None,
            keep_alive: true,
            http10: false,
            method: Method::Get,
            dechunk: false,
            response_started: false,
            route: None,
            idle_since_ms: 0,
            head_started_ms: None,
            held: None,
            buffering: None,
            set_cookie: None,
            stream_started_ms: 0,
            last_activity_ms: 0,
            cluster: 0,
            holds: 0,
            retry: None,
            route_timeout_ms: None,
            rq_deadline_ms: None,
            idle_override: None,
            waiting: None,
            rq_started: None,
            try_started: None,
            log: None,
            flags: 0,
            body_rx: 0,
            body_tx: 0,
        });
        tcp.set_user(conn, tag(Side::Down(di)) | self.gen_bits);
        self.arm_head_deadline(tcp, di);
        self.drive(tcp, di);
    }

    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        match Self::side_of(tcp, conn) {
            Some(Side::Down(di)) => self.drive(tcp, di),
            Some(Side::Up(ui)) => {
                let Some(u) = self.ups.get_mut(ui) else {
                    return;
                };
                if !u.connected && tcp.is_established(conn) {
                    u.connected = true;
                    tcp.set_deadline(conn, None);
                    if let Some(di) = u.down {
                        self.not_pending(di);
                    }
                }
                let Some(u) = self.ups.get_mut(ui) else {
                    return;
                };
                if u.idle {
                    // An idle pooled connection: the upstream closed it or
                    // sent something unasked; either way it is done.
                    if tcp.recv_finished(conn) || tcp.queues(conn).is_some_and(|q| q.0 > 0) {
                        self.drop_upstream(tcp, ui, false);
                    }
                    return;
                }
                if let Some(di) = u.down {
                    self.drive(tcp, di);
                }
            }
            None => {}
        }
    }

    fn deadline(&mut self, tcp: &mut Stack, conn: ConnId) {
        match Self::side_of(tcp, conn) {
            Some(Side::Down(di)) => {
                let Some(d) = self.downs.get(di) else {
                    return;
                };
                match d.phase {
                    Phase::Held => return self.release_held(tcp, di),
                    Phase::Exchange | Phase::Buffer => return self.stream_deadline(tcp, di),
                    Phase::Closing => return,
                    Phase::Head => {}
                }
                if self.draining && d.buf.is_empty() {
                    // Draining, and idle through the grace: close.
                    if let Some(d) = self.downs.get_mut(di) {
                        d.phase = Phase::Closing;
                    }
                    return self.drive(tcp, di);
                }
                let hs = &self.stats.listeners[d.listener as usize].1;
                let l = &self.plan.listeners[d.listener as usize];
                let now = tcp.now_ms();
                let timed_out_head = l
                    .headers_timeout_ms
                    .zip(d.head_started_ms)
                    .is_some_and(|(h, start)| now >= start + h);
                let idle = l
                    .idle_timeout_ms
                    .is_some_and(|i| now >= d.idle_since_ms + i);
                if !timed_out_head && !idle {
                    self.rearm_head_deadline(tcp, di);
                } else if timed_out_head {
                    hs.downstream_rq_timeout.add(1);
                    self.local_reply(tcp, di, 408, b"request headers timeout", true);
                    self.drive(tcp, di);
                } else {
                    hs.downstream_cx_idle_timeout.add(1);
                    if let Some(d) = self.downs.get_mut(di) {
                        d.phase = Phase::Closing;
                    }
                    self.drive(tcp, di);
                }
            }
            Some(Side::Up(ui)) => {
                let Some(u) = self.ups.get(ui) else {
                    return;
                };
                let cs = &self.stats.clusters[u.cluster as usize].1;
                if u.idle {
                    self.drop_upstream(tcp, ui, false);
                } else if !u.connected {
                    cs.upstream_cx_connect_timeout.add(1);
                    cs.upstream_cx_connect_fail.add(1);
                    self.upstream_failed(tcp, ui, TryFailure::Connect, "upstream connect error or disconnect/reset before headers. reset reason: connection timeout");
                } else {
                    cs.upstream_rq_per_try_timeout.add(1);
                    self.upstream_failed(
                        tcp,
                        ui,
                        TryFailure::PerTryTimeout,
                        "upstream request timeout",
                    );
                }
            }
            None => {}
        }
    }

    fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
        match Self::side_of(tcp, conn) {
            Some(Side::Down(di)) => {
                if let Some(d) = self.downs.get_mut(di) {
                    if d.up.is_some() || d.log.as_ref().is_some_and(|l| l.status == 0) {
                        d.flags |= ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
                    }
                }
                self.end_exchange(di);
                let Some(d) = self.downs.remove(di) else {
                    return;
                };
                let hs = &self.stats.listeners[d.listener as usize].1;
                hs.downstream_cx_destroy.add(1);
                if let Some(ui) = d.up {
                    hs.downstream_rq_rx_reset.add(1);
                    self.cut_upstream(tcp, di, ui);
                }
            }
            Some(Side::Up(ui)) => {
                let Some(u) = self.ups.get(ui) else {
                    return;
                };
                if !u.connected {
                    self.stats.clusters[u.cluster as usize]
                        .1
                        .upstream_cx_connect_fail
                        .add(1);
                }
                let failure = if u.connected {
                    TryFailure::Reset
                } else {
                    TryFailure::Connect
                };
                match u.down {
                    Some(_) if how != Close::Graceful || !u.head_done => {
                        self.upstream_failed(
                            tcp,
                            ui,
                            failure,
                            "upstream connect error or disconnect/reset before headers",
                        );
                    }
                    Some(di) => {
                        // Closed after the response head: whatever it sent
                        // was read (the stack reports closes after the last
                        // byte); finish what can be finished.
                        self.drive(tcp, di);
                        if self.ups.get(ui).is_some() {
                            let response_done = self.downs.get(di).map_or(true, |d| d.resp.done());
                            if response_done {
                                self.drop_upstream(tcp, ui, false);
                            } else {
                                self.drop_upstream(tcp, ui, true);
                                self.abort_down(tcp, di);
                            }
                        }
                    }
                    None => self.drop_upstream(tcp, ui, false),
                }
            }
            None => {}
        }
    }
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("downstream", &self.downs.len())
            .field("upstream", &self.ups.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Headers;

    fn xff(values: &[&str]) -> Headers {
        let mut h = Headers::default();
        for v in values {
            h.append("x-forwarded-for", *v);
        }
        h
    }

    #[test]
    fn the_trusted_client_follows_envoys_rules() {
        let peer: SocketAddrV4 = "10.0.0.2:4000".parse().unwrap();
        let ip = |s: &str| SocketAddr::new(s.parse().unwrap(), 0);
        let h = xff(&["192.0.2.10, 203.0.113.1", "203.0.113.5"]);
        // use_remote_address: the peer, or the Nth from the right.
        assert_eq!(trusted_client(peer, &h, true, 0), SocketAddr::V4(peer));
        assert_eq!(trusted_client(peer, &h, true, 1), ip("203.0.113.5"));
        assert_eq!(trusted_client(peer, &h, true, 2), ip("203.0.113.1"));
        assert_eq!(trusted_client(peer, &h, true, 3), ip("192.0.2.10"));
        assert_eq!(trusted_client(peer, &h, true, 4), SocketAddr::V4(peer));
        // Without it: the (N+1)th from the right.
        assert_eq!(trusted_client(peer, &h, false, 0), ip("203.0.113.5"));
        assert_eq!(trusted_client(peer, &h, false, 2), ip("192.0.2.10"));
        assert_eq!(trusted_client(peer, &h, false, 3), SocketAddr::V4(peer));
        // No header, or not an address: the peer.
        assert_eq!(
            trusted_client(peer, &Headers::default(), false, 0),
            SocketAddr::V4(peer)
        );
        assert_eq!(
            trusted_client(peer, &xff(&["unknown"]), false, 0),
            SocketAddr::V4(peer)
        );
        assert_eq!(
            trusted_client(peer, &xff(&["2001:db8::1"]), false, 0),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn a_missing_hash_cookie_is_generated_once_per_connection() {
        use crate::config::{HashPolicy, HashSource};
        let policy = |ttl| HashPolicy {
            source: HashSource::Cookie {
                name: "s".into(),
                ttl,
                path: Some("/".into()),
            },
            terminal: false,
        };
        let head = |cookie: Option<&str>| {
            let mut h = Headers::default();
            if let Some(c) = cookie {
                h.append("cookie", c);
            }
            RequestHead {
                method: Method::Get,
                target: "/".into(),
                version: Version::Http11,
                headers: h,
            }
        };
        let client = SocketAddr::V4("10.0.0.2:4000".parse().unwrap());
        let conn = (
            "10.0.0.2:4000".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        );
        let ttl = Some(std::time::Duration::from_secs(3600));
        let (h1, set) = request_hash(&[policy(ttl)], &head(None), client, conn);
        let set = set.expect("a cookie is generated");
        assert!(set.starts_with("s=\""), "{set}");
        assert!(set.ends_with("\"; Max-Age=3600; Path=/; HttpOnly"), "{set}");
        // The same connection gets the same value; the client sends it back
        // (quoted) and lands on the same hash, without a new cookie.
        let (h2, set2) = request_hash(&[policy(ttl)], &head(None), client, conn);
        assert_eq!((h1, set2.as_deref()), (h2, Some(set.as_str())));
        let value = set.split(';').next().unwrap();
        let (h3, none) = request_hash(&[policy(ttl)], &head(Some(value)), client, conn);
        assert_eq!((h3, none), (h1, None));
        // Another connection: another value.
        let other = ("10.0.0.2:4001".parse().unwrap(), conn.1);
        let (h4, _) = request_hash(&[policy(ttl)], &head(None), client, other);
        assert_ne!(h4, h1);
        // Session cookie: no Max-Age; no ttl: nothing generated, no hash.
        let (_, session) = request_hash(
            &[policy(Some(std::time::Duration::ZERO))],
            &head(None),
            client,
            conn,
        );
        assert!(!session.unwrap().contains("Max-Age"));
        assert_eq!(
            request_hash(&[policy(None)], &head(None), client, conn),
            (None, None)
        );
    }
}
