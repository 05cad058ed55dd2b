//! Active health checks (`clusters[].health_checks[]`), run by worker 0
//! through its userspace TCP stack, so they reach upstreams the way traffic
//! does (through the DPDK ports).
//!
//! One [`HealthChecker`] holds a target per (cluster, endpoint) of every
//! cluster with a `health_check`: when its next check is due, the check in
//! flight (its connection), and its verdict (consecutive results, whether
//! the checker holds it healthy). Every endpoint starts unhealthy and pending
//! (as [`Shared`] starts it), so no traffic goes to it before a check passed.
//!
//! A check is one fresh connection (Envoy's `reuse_connection: false`):
//! - HTTP: `{method} {path} HTTP/1.1` with `Host` (the `host`, or the
//!   cluster's name), `User-Agent: Envoy/HC`, `Connection: close` and the
//!   `request_headers_to_add`; the status of the response head decides (1xx
//!   interim heads are skipped, the body is never read);
//! - TCP: the `send` bytes, then every `receive` block in order (other bytes
//!   may come between them); with no `receive`, connecting is enough.
//!
//! The whole check must end within `timeout` (one deadline on its
//! connection). It ends with the connection aborted, as Envoy closes a check's
//! connection: a RST leaves no TIME-WAIT behind per check, and no unread bytes
//! (a body, a late answer) on a connection no one reads any more. Its word is
//! cleared first, so whatever the stack still reports about it goes nowhere.
//!
//! Verdicts follow Envoy's `ActiveHealthCheckSession`:
//! - a pending endpoint takes its first result as the verdict at once;
//! - otherwise `healthy_threshold` consecutive successes make an unhealthy
//!   endpoint healthy, and `unhealthy_threshold` consecutive network failures
//!   (refused, reset, closed early, timed out, malformed answer) make a healthy
//!   one unhealthy;
//! - an answer that is not a pass (an HTTP status outside
//!   `expected_statuses`) makes it unhealthy at once.
//!
//! The next check is due an interval after the last one ended, chosen as
//! Envoy's `HealthCheckerImplBase::interval` does: `no_traffic_interval` while
//! the cluster never had traffic; after a success `interval`, or
//! `healthy_edge_interval` while an unhealthy endpoint is on its way to
//! healthy (successes below the threshold); after a failure
//! `unhealthy_interval`, or `unhealthy_edge_interval` while a healthy endpoint
//! is on its way to unhealthy. Jitter is added: up to
//! `interval_jitter_percent` of that interval, and up to `interval_jitter`.
//! The first check of each endpoint waits up to `initial_jitter`.
//!
//! [`HealthChecker::poll`] runs every worker loop, so it keeps the earliest
//! due time and returns at once before it.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use zerohop_tcpstack::rng::Rng;
use zerohop_tcpstack::{Close, ConnId, Stack};

use super::Shared;
use crate::config::{EnvoyConfig, HealthCheck, HealthCheckKind, HttpHealthCheck};

/// Connection word tag of health check connections (below the HTTP proxy's
/// [`crate::http::proxy::TAG`], above any `tcp_proxy` tag).
pub const HC_TAG: u64 = 1 << 61;

/// Most bytes of a response head an HTTP check reads (Envoy's default
/// `max_request_headers_kb` is 60 KiB); a longer head fails the check.
const HEAD_LIMIT: usize = 64 * 1024;

/// Bytes read from a connection at a time.
const CHUNK: usize = 4096;

/// Most header fields of a response head (as the HTTP codec's).
const MAX_HEADERS: usize = crate::http::codec::MAX_HEADERS;

/// A receive buffer larger than this is given back when its check ends, so
/// that a one-off large answer does not stay allocated per endpoint.
const KEEP_BUFFER: usize = 2 * CHUNK;

/// A time that never comes.
const NEVER: u64 = u64::MAX;

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckResult {
    /// The endpoint passed.
    Success,
    /// The endpoint answered, but not with a pass (an HTTP status outside
    /// `expected_statuses`): Envoy's `ACTIVE` failure, unhealthy at once.
    Failure,
    /// No usable answer: the connection was refused, reset or closed before
    /// a pass, timed out, or the answer was malformed (Envoy's `NETWORK`).
    NetworkFailure,
}

/// What a result did to the endpoint's health (Envoy's `HealthTransition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    /// Nothing.
    Unchanged,
    /// A step towards the other state, below its threshold.
    Pending,
    /// A verdict: the endpoint changed state, or its first result came.
    Changed,
}

/// One endpoint's health as the checker counts it, without the I/O: what
/// [`Verdict::record`] says decides when [`Shared::set_checked`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verdict {
    /// The checker holds the endpoint healthy.
    healthy: bool,
    /// No check finished yet.
    pending: bool,
    /// Consecutive successes while unhealthy.
    successes: u32,
    /// Consecutive network failures while healthy.
    failures: u32,
}

impl Verdict {
    /// Unhealthy and pending, as every checked endpoint starts.
    fn new() -> Verdict {
        Verdict {
            healthy: false,
            pending: true,
            successes: 0,
            failures: 0,
        }
    }

    /// Count `result` against the thresholds (0 counts as 1); on
    /// [`Transition::Changed`] the verdict is `self.healthy`.
    fn record(
        &mut self,
        result: CheckResult,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Transition {
        let mut t = Transition::Unchanged;
        match result {
            CheckResult::Success => {
                self.failures = 0;
                if !self.healthy {
                    self.successes = self.successes.saturating_add(1);
                    // Envoy: the first result ever decides at once, which
                    // makes startup fast.
                    if self.pending || self.successes >= healthy_threshold.max(1) {
                        self.healthy = true;
                        self.successes = 0;
                        t = Transition::Changed;
                    } else {
                        t = Transition::Pending;
                    }
                }
            }
            CheckResult::Failure | CheckResult::NetworkFailure => {
                self.successes = 0;
                if self.healthy {
                    self.failures = self.failures.saturating_add(1);
                    if result == CheckResult::Failure || self.failures >= unhealthy_threshold.max(1)
                    {
                        self.healthy = false;
                        self.failures = 0;
                        t = Transition::Changed;
                    } else {
                        t = Transition::Pending;
                    }
                }
            }
        }
        if self.pending {
            // The first result is a verdict even when the health stays
            // (unhealthy): the endpoint is no longer pending.
            self.pending = false;
            t = Transition::Changed;
        }
        t
    }
}

/// Return `d` in whole milliseconds (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Return the wait (ms, before jitter) after a check that ended with
/// `success` (or not) and `transition`; `had_traffic`: the cluster ever had
/// traffic. Envoy's `HealthCheckerImplBase::interval`.
fn base_interval_ms(hc: &HealthCheck, had_traffic: bool, success: bool, t: Transition) -> u64 {
    let pending = t == Transition::Pending;
    let d = if !had_traffic {
        hc.no_traffic_interval
    } else if success {
        match hc.healthy_edge_interval {
            Some(edge) if pending => edge,
            _ => hc.interval,
        }
    } else {
        let unhealthy = hc.unhealthy_interval.unwrap_or(hc.interval);
        match hc.unhealthy_edge_interval {
            Some(edge) if pending => edge,
            _ => unhealthy,
        }
    };
    millis(d).max(1)
}

/// Return the random jitter (ms) to add to a wait of `base` ms: below
/// `interval_jitter_percent` of it, plus below `interval_jitter`.
fn jitter_ms(hc: &HealthCheck, base: u64, rng: &mut Rng) -> u64 {
    let percent = base.saturating_mul(u64::from(hc.interval_jitter_percent)) / 100;
    rng.below(percent)
        .saturating_add(rng.below(millis(hc.interval_jitter)))
}

/// Return the request of an HTTP check of cluster `cluster`.
fn http_request(cluster: &str, http: &HttpHealthCheck) -> Vec<u8> {
    let host = http
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(cluster);
    let method = if http.method.is_empty() {
        "GET"
    } else {
        http.method.as_str()
    };
    let mut r = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Envoy/HC\r\nConnection: close\r\n",
        http.path
    );
    for (name, value) in &http.request_headers {
        r.push_str(name);
        r.push_str(": ");
        r.push_str(value);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Return true if `status` is in one of the half-open `ranges` (`[200, 201)`
/// when there are none).
fn status_expected(ranges: &[(u16, u16)], status: u16) -> bool {
    if ranges.is_empty() {
        return status == 200;
    }
    ranges
        .iter()
        .any(|&(start, end)| start <= status && status < end)
}

/// What the start of an HTTP response says so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// The head is not complete yet.
    Partial,
    /// The final response's status.
    Status(u16),
    /// Not an HTTP/1.x response head.
    Malformed,
}

/// Return the final status of the response at the start of `buf`; interim
/// (1xx) heads before it are skipped, but 101 is final.
fn response_status(mut buf: &[u8]) -> Head {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut fields);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => match resp.code {
                Some(code) if (100..200).contains(&code) && code != 101 => {
                    buf = buf.get(len..).unwrap_or_default();
                }
                Some(code) if code >= 100 => return Head::Status(code),
                _ => return Head::Malformed,
            },
            Ok(httparse::Status::Partial) => return Head::Partial,
            Err(_) => return Head::Malformed,
        }
    }
}

/// Where a TCP check is in its `receive` blocks. The bytes not matched yet
/// stay in a window that never holds more than the longest block (less one
/// byte) plus one read, whatever the peer sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ReceiveMatcher {
    /// The next block to find.
    next: usize,
}

impl ReceiveMatcher {
    /// Take `data` (appended to `window`); return true once every block was
    /// found, in order, each after the previous.
    fn feed(&mut self, blocks: &[Vec<u8>], window: &mut Vec<u8>, data: &[u8]) -> bool {
        window.extend_from_slice(data);
        while let Some(block) = blocks.get(self.next) {
            if block.is_empty() {
                self.next += 1;
                continue;
            }
            match find(window, block) {
                Some(at) => {
                    window.drain(..at + block.len());
                    self.next += 1;
                }
                None => {
                    // Only a tail shorter than the block can still start it.
                    let keep = block.len() - 1;
                    if window.len() > keep {
                        window.drain(..window.len() - keep);
                    }
                    return false;
                }
            }
        }
        true
    }
}

/// Return where `needle` (not empty) first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One cluster's check.
#[derive(Debug)]
struct Check {
    /// Index of the cluster (in the config and in [`Shared`]).
    cluster: usize,
    config: HealthCheck,
    /// What is sent once connected: the HTTP request, or the TCP `send`.
    payload: Vec<u8>,
}

/// The check in flight on a target.
#[derive(Debug, Clone, Copy)]
struct Probe {
    conn: ConnId,
    /// The handshake completed.
    connected: bool,
    /// Bytes of the payload queued so far.
    sent: usize,
    matcher: ReceiveMatcher,
}

/// One endpoint of a checked cluster.
#[derive(Debug)]
struct Target {
    /// Index into [`HealthChecker::checks`].
    check: usize,
    /// Index of the endpoint in its cluster.
    endpoint: usize,
    address: SocketAddrV4,
    /// When the next check is due (ms, the worker's clock); [`NEVER`] while
    /// one is in flight.
    next_at: u64,
    probe: Option<Probe>,
    verdict: Verdict,
    /// What the check in flight received and did not consume yet.
    buf: Vec<u8>,
}

/// Worker 0's active health checker.
#[derive(Debug)]
pub struct HealthChecker {
    shared: Arc<Shared>,
    checks: Vec<Check>,
    targets: Vec<Target>,
    rng: Rng,
    /// The first checks were scheduled (on the first poll, which knows the
    /// worker's clock).
    started: bool,
    /// No target is due before this (ms).
    next_due: u64,
    /// This configuration generation's bits of connection words.
    gen_bits: u64,
}

impl HealthChecker {
    /// The checker of `config`'s clusters that have a health check; `None`
    /// when none has.
    pub fn new(config: &EnvoyConfig, shared: Arc<Shared>, seed: u64) -> Option<HealthChecker> {
        let mut checks = Vec::new();
        let mut targets = Vec::new();
        for (ci, c) in config.clusters.iter().enumerate() {
            let Some(hc) = &c.health_check else {
                continue;
            };
            let payload = match &hc.kind {
                HealthCheckKind::Http(http) => http_request(&c.name, http),
                HealthCheckKind::Tcp(tcp) => tcp.send.clone().unwrap_or_default(),
            };
            let check = checks.len();
            checks.push(Check {
                cluster: ci,
                config: hc.clone(),
                payload,
            });
            targets.extend(c.endpoints.iter().enumerate().map(|(ei, e)| Target {
                check,
                endpoint: ei,
                address: e.address,
                next_at: NEVER,
                probe: None,
                verdict: Verdict::new(),
                buf: Vec::new(),
            }));
        }
        if checks.is_empty() {
            return None;
        }
        Some(HealthChecker {
            shared,
            checks,
            targets,
            rng: Rng(seed),
            started: false,
            gen_bits: 0,
            next_due: 0,
        })
    }

    /// Set the configuration generation its connection words carry.
    pub fn set_generation(&mut self, bits: u64) {
        self.gen_bits = bits;
    }

    /// Stop: reset the checks in flight (a reload's new checker takes over).
    pub fn stop(&mut self, tcp: &mut Stack) {
        for t in &mut self.targets {
            if let Some(p) = t.probe.take() {
                tcp.set_user(p.conn, 0);
                tcp.abort(p.conn);
            }
            t.next_at = NEVER;
        }
        self.next_due = NEVER;
    }

    /// Whether a check is in flight.
    pub fn busy(&self) -> bool {
        self.targets.iter().any(|t| t.probe.is_some())
    }

    /// Whether a connection word is a health check's.
    pub fn owns_tag(user: u64) -> bool {
        user & HC_TAG != 0 && user & crate::http::proxy::TAG == 0
    }

    /// Start the checks that are due (called every worker loop).
    pub fn poll(&mut self, tcp: &mut Stack) {
        let now = tcp.now_ms();
        if now < self.next_due {
            return;
        }
        if !self.started {
            self.started = true;
            for t in &mut self.targets {
                let jitter = self
                    .checks
                    .get(t.check)
                    .map_or(0, |c| millis(c.config.initial_jitter));
                t.next_at = now.saturating_add(self.rng.below(jitter));
            }
        }
        let mut next = NEVER;
        for ti in 0..self.targets.len() {
            if self.targets[ti].next_at <= now {
                self.start(tcp, ti, now);
            }
            next = next.min(self.targets[ti].next_at);
        }
        self.next_due = next;
    }

    /// A check's connection may have progressed.
    pub fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        let Some(ti) = self.target_of(tcp, conn) else {
            return;
        };
        if let Some(result) = self.progress(tcp, ti) {
            self.finish(tcp, ti, result, true);
        }
    }

    /// A check's deadline passed.
    pub fn deadline(&mut self, tcp: &mut Stack, conn: ConnId) {
        let Some(ti) = self.target_of(tcp, conn) else {
            return;
        };
        // What arrived just before the deadline still counts.
        let result = self
            .progress(tcp, ti)
            .unwrap_or(CheckResult::NetworkFailure);
        self.finish(tcp, ti, result, true);
    }

    /// A check's connection closed.
    pub fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
        let _ = how; // any close before a pass fails the check
        let Some(ti) = self.target_of(tcp, conn) else {
            return;
        };
        // The stack reports a close after the last byte was read; what is
        // left may still complete the check.
        let result = self
            .progress(tcp, ti)
            .unwrap_or(CheckResult::NetworkFailure);
        self.finish(tcp, ti, result, false);
    }

    /// The target whose check in flight is on `conn`.
    fn target_of(&self, tcp: &Stack, conn: ConnId) -> Option<usize> {
        let user = tcp.user(conn)?;
        if !Self::owns_tag(user) {
            return None;
        }
        let ti = usize::try_from(user & !(HC_TAG | crate::GEN_MASK)).ok()?;
        let probe = self.targets.get(ti)?.probe?;
        (probe.conn == conn).then_some(ti)
    }

    /// Start a check of target `ti`.
    fn start(&mut self, tcp: &mut Stack, ti: usize, now: u64) {
        let Some(t) = self.targets.get_mut(ti) else {
            return;
        };
        let Some(check) = self.checks.get(t.check) else {
            return;
        };
        t.next_at = NEVER;
        if let Some(c) = self.shared.clusters.get(check.cluster) {
            c.counters.health_check_attempt.add(1);
        }
        match tcp.connect(t.address) {
            Ok(conn) => {
                tcp.set_user(conn, HC_TAG | self.gen_bits | ti as u64);
                let timeout = millis(check.config.timeout).max(1);
                tcp.set_deadline(conn, Some(now.saturating_add(timeout)));
                t.buf.clear();
                t.probe = Some(Probe {
                    conn,
                    connected: false,
                    sent: 0,
                    matcher: ReceiveMatcher::default(),
                });
            }
            // No route, port or room: the endpoint cannot be reached.
            Err(_) => self.finish(tcp, ti, CheckResult::NetworkFailure, false),
        }
    }

    /// Move target `ti`'s check along: send what is left of the payload, read
    /// what arrived. Return the result once there is one.
    fn progress(&mut self, tcp: &mut Stack, ti: usize) -> Option<CheckResult> {
        let t = self.targets.get_mut(ti)?;
        let check = self.checks.get(t.check)?;
        let p = t.probe.as_mut()?;
        if !p.connected {
            if !tcp.is_established(p.conn) {
                return None;
            }
            p.connected = true;
        }
        while let Some(rest) = check.payload.get(p.sent..).filter(|r| !r.is_empty()) {
            let n = tcp.send(p.conn, rest);
            if n == 0 {
                break;
            }
            p.sent += n;
        }
        let mut chunk = [0u8; CHUNK];
        match &check.config.kind {
            HealthCheckKind::Http(http) => {
                let mut got = false;
                while t.buf.len() < HEAD_LIMIT {
                    let room = (HEAD_LIMIT - t.buf.len()).min(CHUNK);
                    let n = tcp.recv(p.conn, &mut chunk[..room]);
                    if n == 0 {
                        break;
                    }
                    t.buf.extend_from_slice(&chunk[..n]);
                    got = true;
                }
                if got {
                    match response_status(&t.buf) {
                        Head::Status(s) if status_expected(&http.expected_statuses, s) => {
                            return Some(CheckResult::Success);
                        }
                        Head::Status(_) => return Some(CheckResult::Failure),
                        Head::Malformed => return Some(CheckResult::NetworkFailure),
                        Head::Partial if t.buf.len() >= HEAD_LIMIT => {
                            return Some(CheckResult::NetworkFailure);
                        }
                        Head::Partial => {}
                    }
                }
            }
            HealthCheckKind::Tcp(tc) => {
                if tc.receive.is_empty() {
                    if p.sent >= check.payload.len() {
                        return Some(CheckResult::Success);
                    }
                } else {
                    loop {
                        let n = tcp.recv(p.conn, &mut chunk);
                        if n == 0 {
                            break;
                        }
                        if p.matcher.feed(&tc.receive, &mut t.buf, &chunk[..n]) {
                            return Some(CheckResult::Success);
                        }
                    }
                }
            }
        }
        if tcp.recv_finished(p.conn) {
            // The peer closed before a pass.
            return Some(CheckResult::NetworkFailure);
        }
        None
    }

    /// End target `ti`'s check with `result`: count it, reach a verdict,
    /// schedule the next. `release`: abort the check's connection (not while
    /// the stack reports it closed).
    fn finish(&mut self, tcp: &mut Stack, ti: usize, result: CheckResult, release: bool) {
        let now = tcp.now_ms();
        let Some(t) = self.targets.get_mut(ti) else {
            return;
        };
        if let Some(p) = t.probe.take() {
            if release {
                // Cleared first: what the stack still reports about the
                // connection is no longer ours.
                tcp.set_user(p.conn, 0);
                tcp.set_deadline(p.conn, None);
                tcp.abort(p.conn);
            }
        }
        if t.buf.capacity() > KEEP_BUFFER {
            t.buf = Vec::new();
        } else {
            t.buf.clear();
        }
        let Some(check) = self.checks.get(t.check) else {
            return;
        };
        let hc = &check.config;
        let cluster = self.shared.clusters.get(check.cluster);
        if let Some(c) = cluster {
            let k = &c.counters;
            match result {
                CheckResult::Success => k.health_check_success.add(1),
                CheckResult::Failure => k.health_check_failure.add(1),
                CheckResult::NetworkFailure => {
                    k.health_check_failure.add(1);
                    k.health_check_network_failure.add(1);
                }
            }
        }
        let transition = t
            .verdict
            .record(result, hc.healthy_threshold, hc.unhealthy_threshold);
        if transition == Transition::Changed {
            self.shared
                .set_checked(check.cluster, t.endpoint, t.verdict.healthy);
        }
        let had_traffic = cluster.is_some_and(|c| c.had_traffic());
        let base = base_interval_ms(hc, had_traffic, result == CheckResult::Success, transition);
        let wait = base.saturating_add(jitter_ms(hc, base, &mut self.rng));
        t.next_at = now.saturating_add(wait);
        self.next_due = self.next_due.min(t.next_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

    use zerohop_tcpstack::{App, Listen};

    use crate::config::{
        CircuitBreakers, Cluster, Endpoint, LbPolicy, Percent, TcpHealthCheck,
        DEFAULT_NO_TRAFFIC_INTERVAL,
    };
    use crate::health::{FAILED_ACTIVE_HC, PENDING_ACTIVE_HC};
    use crate::testnet::{self, host, Host};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn http_check() -> HttpHealthCheck {
        HttpHealthCheck {
            host: None,
            path: "/healthz".to_owned(),
            method: "GET".to_owned(),
            expected_statuses: vec![(200, 201)],
            request_headers: Vec::new(),
        }
    }

    fn health_check(kind: HealthCheckKind) -> HealthCheck {
        HealthCheck {
            timeout: ms(500),
            interval: ms(1000),
            interval_jitter: Duration::ZERO,
            interval_jitter_percent: 0,
            initial_jitter: Duration::ZERO,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            no_traffic_interval: DEFAULT_NO_TRAFFIC_INTERVAL,
            unhealthy_interval: None,
            healthy_edge_interval: None,
            unhealthy_edge_interval: None,
            kind,
        }
    }

    #[test]
    fn http_request_is_formatted_as_envoy_sends_it() {
        let mut h = http_check();
        assert_eq!(
            http_request("backend", &h),
            b"GET /healthz HTTP/1.1\r\nHost: backend\r\nUser-Agent: Envoy/HC\r\n\
              Connection: close\r\n\r\n"
                .to_vec()
        );
        h.host = Some(String::new());
        assert!(
            http_request("backend", &h).starts_with(b"GET /healthz HTTP/1.1\r\nHost: backend\r\n")
        );
        h.host = Some("svc.local".to_owned());
        h.method = "HEAD".to_owned();
        h.request_headers = vec![
            ("x-hc".to_owned(), "1".to_owned()),
            ("x-env".to_owned(), "prod".to_owned()),
        ];
        assert_eq!(
            http_request("backend", &h),
            b"HEAD /healthz HTTP/1.1\r\nHost: svc.local\r\nUser-Agent: Envoy/HC\r\n\
              Connection: close\r\nx-hc: 1\r\nx-env: prod\r\n\r\n"
                .to_vec()
        );
        h.method = String::new();
        assert!(http_request("backend", &h).starts_with(b"GET "));
    }

    #[test]
    fn statuses_match_half_open_ranges() {
        let r = [(200, 300), (404, 405)];
        assert!(status_expected(&r, 200));
        assert!(status_expected(&r, 299));
        assert!(!status_expected(&r, 300));
        assert!(!status_expected(&r, 199));
        assert!(status_expected(&r, 404));
        assert!(!status_expected(&r, 405));
        assert!(!status_expected(&[(200, 201)], 201));
        assert!(status_expected(&[], 200), "the default is [200, 201)");
        assert!(!status_expected(&[], 204));
    }

    #[test]
    fn response_status_waits_for_the_whole_head_and_skips_interim_heads() {
        let head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nbad";
        for cut in 0..head.len() {
            let want = if cut < head.len() - 3 {
                Head::Partial
            } else {
                Head::Status(503)
            };
            assert_eq!(response_status(&head[..cut]), want, "cut at {cut}");
        }
        assert_eq!(response_status(head), Head::Status(503));
        assert_eq!(
            response_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
            Head::Status(200)
        );
        assert_eq!(
            response_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"),
            Head::Partial
        );
        assert_eq!(
            response_status(b"HTTP/1.1 101 Switching\r\n\r\n"),
            Head::Status(101)
        );
        assert_eq!(response_status(b"SSH-2.0-OpenSSH\r\n"), Head::Malformed);
        assert_eq!(response_status(b"HTTP/1.1 abc\r\n\r\n"), Head::Malformed);
    }

    /// Feed `data` split at `cuts` (sorted); return whether the match
    /// completed and the largest window seen.
    fn feed_split(blocks: &[Vec<u8>], data: &[u8], cuts: &[usize]) -> (bool, usize) {
        let mut m = ReceiveMatcher::default();
        let mut window = Vec::new();
        let mut from = 0;
        let mut widest = 0;
        for &to in cuts.iter().chain(std::iter::once(&data.len())) {
            let done = m.feed(blocks, &mut window, &data[from..to]);
            widest = widest.max(window.len());
            if done {
                return (true, widest);
            }
            from = to;
        }
        (false, widest)
    }

    #[test]
    fn receive_blocks_match_in_order_across_any_split() {
        let blocks = vec![b"ab".to_vec(), b"cde".to_vec(), b"f".to_vec()];
        let yes: &[&[u8]] = &[b"abcdef", b"xxabyycdezzf", b"aabcdcdef", b"abcdeabcdef"];
        let no: &[&[u8]] = &[b"abcde", b"cdeabf", b"abfcde", b"abcdxe f", b""];
        for (data, want) in yes
            .iter()
            .map(|d| (d, true))
            .chain(no.iter().map(|d| (d, false)))
        {
            // Every way of cutting the bytes in up to three pieces.
            for i in 0..=data.len() {
                for j in i..=data.len() {
                    let (done, _) = feed_split(&blocks, data, &[i, j]);
                    assert_eq!(
                        done,
                        want,
                        "{:?} cut at {i}, {j}",
                        String::from_utf8_lossy(data)
                    );
                }
            }
        }
        // Overlaps: the second block may not reuse the first one's bytes.
        assert!(!feed_split(&[b"aa".to_vec(), b"aa".to_vec()], b"aaa", &[]).0);
        assert!(feed_split(&[b"aa".to_vec(), b"aa".to_vec()], b"aaaa", &[1, 2, 3]).0);
        // No blocks (or only empty ones): done at once.
        assert!(feed_split(&[], b"", &[]).0);
        assert!(feed_split(&[Vec::new()], b"", &[]).0);
    }

    #[test]
    fn receive_window_stays_bounded() {
        let blocks = vec![b"needle".to_vec()];
        let mut m = ReceiveMatcher::default();
        let mut window = Vec::new();
        let noise = [b'x'; 1000];
        for _ in 0..1000 {
            assert!(!m.feed(&blocks, &mut window, &noise));
            assert!(window.len() < blocks[0].len(), "window {}", window.len());
        }
        assert!(!m.feed(&blocks, &mut window, b"nee"));
        assert!(m.feed(&blocks, &mut window, b"dle"));
    }

    /// Record `results` ('s' success, 'f' failure, 'n' network failure) on a
    /// fresh verdict; return the transitions and the final health.
    fn run_verdict(results: &str, healthy: u32, unhealthy: u32) -> (String, bool) {
        let mut v = Verdict::new();
        let mut out = String::new();
        for c in results.chars() {
            let r = match c {
                's' => CheckResult::Success,
                'f' => CheckResult::Failure,
                _ => CheckResult::NetworkFailure,
            };
            out.push(match v.record(r, healthy, unhealthy) {
                Transition::Unchanged => '.',
                Transition::Pending => 'p',
                Transition::Changed => 'C',
            });
        }
        (out, v.healthy)
    }

    #[test]
    fn verdicts_follow_envoy_thresholds() {
        // A pending endpoint's first success makes it healthy at once.
        assert_eq!(run_verdict("s", 3, 3), ("C".to_owned(), true));
        // Its first failure is a verdict too: unhealthy, no longer pending;
        // then it needs healthy_threshold successes.
        assert_eq!(run_verdict("nsss", 3, 3), ("CppC".to_owned(), true));
        // A failure in between starts the count again.
        assert_eq!(run_verdict("nssnsss", 3, 3), ("Cpp.ppC".to_owned(), true));
        // Healthy: network failures count towards unhealthy_threshold, a
        // success in between resets the count.
        assert_eq!(run_verdict("snnsnnn", 3, 3), ("Cpp.ppC".to_owned(), false));
        // An active failure (a bad status) is unhealthy at once.
        assert_eq!(run_verdict("snf", 3, 3), ("CpC".to_owned(), false));
        assert_eq!(run_verdict("sf", 3, 3), ("CC".to_owned(), false));
        // Thresholds of 1 (and 0, taken as 1) flip on every change.
        assert_eq!(run_verdict("nsns", 1, 1), ("CCCC".to_owned(), true));
        assert_eq!(run_verdict("nsns", 0, 0), ("CCCC".to_owned(), true));
        // Unhealthy stays unhealthy on failures, healthy on successes.
        assert_eq!(run_verdict("nnff", 2, 2), ("C...".to_owned(), false));
        assert_eq!(run_verdict("sss", 2, 2), ("C..".to_owned(), true));
    }

    #[test]
    fn intervals_follow_envoy_choice() {
        let mut hc = health_check(HealthCheckKind::Http(http_check()));
        hc.no_traffic_interval = ms(60_000);
        use Transition::*;
        // No traffic yet: no_traffic_interval, whatever happened.
        for (success, t) in [(true, Changed), (false, Pending), (false, Unchanged)] {
            assert_eq!(base_interval_ms(&hc, false, success, t), 60_000);
        }
        // No overrides: interval everywhere.
        for (success, t) in [
            (true, Changed),
            (true, Pending),
            (false, Pending),
            (false, Changed),
        ] {
            assert_eq!(base_interval_ms(&hc, true, success, t), 1000);
        }
        hc.unhealthy_interval = Some(ms(5000));
        assert_eq!(base_interval_ms(&hc, true, true, Unchanged), 1000);
        assert_eq!(base_interval_ms(&hc, true, false, Unchanged), 5000);
        assert_eq!(base_interval_ms(&hc, true, false, Changed), 5000);
        // unhealthy_edge_interval defaults to unhealthy_interval.
        assert_eq!(base_interval_ms(&hc, true, false, Pending), 5000);
        // healthy_edge_interval defaults to interval.
        assert_eq!(base_interval_ms(&hc, true, true, Pending), 1000);
        hc.healthy_edge_interval = Some(ms(100));
        hc.unhealthy_edge_interval = Some(ms(200));
        // Edges apply while a change is pending (below its threshold).
        assert_eq!(base_interval_ms(&hc, true, true, Pending), 100);
        assert_eq!(base_interval_ms(&hc, true, false, Pending), 200);
        assert_eq!(base_interval_ms(&hc, true, true, Changed), 1000);
        assert_eq!(base_interval_ms(&hc, true, false, Changed), 5000);
        assert_eq!(base_interval_ms(&hc, false, true, Pending), 60_000);
        // Never 0 ms (no busy loop).
        hc.interval = Duration::ZERO;
        hc.healthy_edge_interval = None;
        assert_eq!(base_interval_ms(&hc, true, true, Unchanged), 1);
    }

    #[test]
    fn jitter_stays_below_both_bounds() {
        let mut hc = health_check(HealthCheckKind::Http(http_check()));
        let mut rng = Rng(1);
        assert_eq!(jitter_ms(&hc, 1000, &mut rng), 0);
        hc.interval_jitter_percent = 10;
        hc.interval_jitter = ms(50);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let j = jitter_ms(&hc, 1000, &mut rng);
            assert!(j < 100 + 50, "{j}");
            seen.insert(j);
        }
        assert!(seen.len() > 100, "jitter spreads: {}", seen.len());
    }

    // A real check: the checker in one in-memory Stack, an upstream in
    // another, segments carried between them.

    const CHECKER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const UPSTREAM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    /// The checker's side: events routed as [`crate::app::L7`] does.
    struct CheckerApp(HealthChecker);

    impl App for CheckerApp {
        fn accepted(&mut self, _tcp: &mut Stack, _conn: ConnId, _listener: u32) {}
        fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
            if tcp.user(conn).is_some_and(HealthChecker::owns_tag) {
                self.0.ready(tcp, conn);
            }
        }
        fn deadline(&mut self, tcp: &mut Stack, conn: ConnId) {
            if tcp.user(conn).is_some_and(HealthChecker::owns_tag) {
                self.0.deadline(tcp, conn);
            }
        }
        fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
            if tcp.user(conn).is_some_and(HealthChecker::owns_tag) {
                self.0.closed(tcp, conn, how);
            }
        }
        fn poll(&mut self, tcp: &mut Stack) {
            self.0.poll(tcp);
        }
    }

    /// The upstream: answers `reply` once `expect` bytes arrived on a
    /// connection (never when `None`), and keeps what each connection sent.
    #[derive(Default)]
    struct Upstream {
        reply: Option<Vec<u8>>,
        expect: usize,
        requests: Vec<Vec<u8>>,
        /// Close the connection right after the reply.
        close_after_reply: bool,
        closed: usize,
    }

    impl App for Upstream {
        fn accepted(&mut self, _tcp: &mut Stack, _conn: ConnId, _listener: u32) {
            self.requests.push(Vec::new());
        }
        fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
            let mut buf = [0u8; 1024];
            let Some(req) = self.requests.last_mut() else {
                return;
            };
            let before = req.len();
            loop {
                let n = tcp.recv(conn, &mut buf);
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            if before < self.expect && req.len() >= self.expect {
                if let Some(r) = &self.reply {
                    assert_eq!(tcp.send(conn, r), r.len());
                    if self.close_after_reply {
                        tcp.close(conn);
                    }
                }
            }
            if tcp.recv_finished(conn) {
                tcp.close(conn);
            }
        }
        fn deadline(&mut self, _tcp: &mut Stack, _conn: ConnId) {}
        fn closed(&mut self, _tcp: &mut Stack, _conn: ConnId, _how: Close) {
            self.closed += 1;
        }
    }

    struct Net {
        checker: Host<CheckerApp>,
        upstream: Host<Upstream>,
        shared: Arc<Shared>,
        now: u64,
    }

    impl Net {
        /// One cluster `backend` with `endpoints` (ports on the upstream,
        /// which listens on 80 only), checked by `hc`.
        fn new(hc: HealthCheck, ports: &[u16]) -> Net {
            let config = EnvoyConfig {
                listeners: Vec::new(),
                clusters: vec![Cluster {
                    name: "backend".to_owned(),
                    connect_timeout: Duration::from_secs(5),
                    lb_policy: LbPolicy::default(),
                    endpoints: ports
                        .iter()
                        .map(|&p| Endpoint {
                            address: SocketAddrV4::new(UPSTREAM, p),
                            weight: 1,
                        })
                        .collect(),
                    max_requests_per_connection: None,
                    upstream_idle_timeout: None,
                    health_check: Some(hc),
                    outlier_detection: None,
                    circuit_breakers: CircuitBreakers::default(),
                    healthy_panic_threshold: Percent(50.0),
                }],
                admin: None,
            };
            let shared = Arc::new(Shared::new(&config));
            let checker = HealthChecker::new(&config, shared.clone(), 3).expect("checked");
            let mut upstream = host(UPSTREAM, Upstream::default());
            upstream.stack.listen(Listen {
                address: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
                id: 0,
            });
            Net {
                checker: host(CHECKER, CheckerApp(checker)),
                upstream,
                shared,
                now: 0,
            }
        }

        /// Run `ms` milliseconds, a worker loop per ms on each side.
        fn run(&mut self, ms: u64) {
            testnet::run(
                &mut self.now,
                ms,
                &mut [&mut self.checker, &mut self.upstream],
            );
        }

        fn counters(&self) -> [u64; 4] {
            let k = &self.shared.clusters[0].counters;
            [
                k.health_check_attempt.get(),
                k.health_check_success.get(),
                k.health_check_failure.get(),
                k.health_check_network_failure.get(),
            ]
        }

        fn flags(&self, ei: usize) -> u8 {
            self.shared.clusters[0].hosts[ei].flags()
        }
    }

    #[test]
    fn http_check_marks_the_endpoint_healthy_then_unhealthy_on_a_bad_status() {
        let mut hc = health_check(HealthCheckKind::Http(http_check()));
        hc.no_traffic_interval = ms(1000);
        let request = http_request("backend", &http_check());
        let mut net = Net::new(hc, &[80]);
        net.upstream.app.expect = request.len();
        net.upstream.app.reply =
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec());
        assert_eq!(net.flags(0), FAILED_ACTIVE_HC | PENDING_ACTIVE_HC);
        net.run(100);
        assert_eq!(net.upstream.app.requests, vec![request.clone()]);
        assert_eq!(net.counters(), [1, 1, 0, 0]);
        assert_eq!(net.flags(0), 0, "first success: healthy");
        let generation = net.shared.clusters[0].generation();
        assert_eq!(generation, 1);
        // The check's connection is gone on both sides.
        assert_eq!(net.upstream.app.closed, 1);
        // Nothing more until the (no traffic) interval.
        net.run(800);
        assert_eq!(net.counters()[0], 1);
        net.run(200);
        assert_eq!(net.counters(), [2, 2, 0, 0]);
        assert_eq!(net.shared.clusters[0].generation(), generation, "no change");
        // A status outside expected_statuses: unhealthy at once, although
        // unhealthy_threshold is 3.
        net.upstream.app.reply = Some(b"HTTP/1.1 503 Service Unavailable\r\n\r\n".to_vec());
        net.run(1000);
        assert_eq!(net.counters(), [3, 2, 1, 0]);
        assert_eq!(net.flags(0), FAILED_ACTIVE_HC);
        // Back: healthy_threshold (2) successes.
        net.upstream.app.reply = Some(b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
        net.run(1000);
        assert_eq!(net.counters(), [4, 3, 1, 0]);
        assert_eq!(net.flags(0), FAILED_ACTIVE_HC);
        net.run(1000);
        assert_eq!(net.counters(), [5, 4, 1, 0]);
        assert_eq!(net.flags(0), 0);
        let events = net.shared.drain_events();
        assert_eq!(events.len(), 3, "{events:?}");
        net.run(3000);
        assert!(net.checker.stack.len() <= 1, "at most the check in flight");
    }

    #[test]
    fn refused_and_silent_endpoints_fail_as_network_failures() {
        let mut hc = health_check(HealthCheckKind::Http(http_check()));
        hc.no_traffic_interval = ms(1000);
        hc.unhealthy_interval = Some(ms(200));
        hc.timeout = ms(300);
        // Port 81: refused. Port 80: accepted, never answered.
        let mut net = Net::new(hc, &[81, 80]);
        net.upstream.app.reply = None;
        net.run(100);
        assert_eq!(net.counters(), [2, 0, 1, 1], "refused at once");
        assert_eq!(net.flags(0), FAILED_ACTIVE_HC, "no longer pending");
        assert_eq!(net.flags(1), FAILED_ACTIVE_HC | PENDING_ACTIVE_HC);
        net.run(300);
        assert_eq!(net.counters(), [2, 0, 2, 2], "timed out");
        assert_eq!(net.flags(1), FAILED_ACTIVE_HC);
        net.run(50);
        assert_eq!(net.upstream.app.closed, 1, "the silent check was aborted");
        assert!(net.checker.stack.is_empty());
        // Once the cluster had traffic, checks that end use
        // unhealthy_interval (200 ms) instead of no_traffic_interval (1 s):
        // the refused endpoint is checked at ~1, 1002, 1203, 1404, the
        // silent one (300 ms timeouts) at ~1 and 1301.
        net.shared.clusters[0].saw_traffic();
        net.run(1000);
        assert_eq!(net.counters(), [6, 0, 5, 5]);
    }

    #[test]
    fn a_close_before_the_whole_head_is_a_network_failure() {
        let mut hc = health_check(HealthCheckKind::Http(http_check()));
        hc.healthy_threshold = 1;
        hc.unhealthy_threshold = 2;
        hc.no_traffic_interval = ms(1000);
        let request = http_request("backend", &http_check());
        let mut net = Net::new(hc, &[80]);
        net.upstream.app.expect = request.len();
        net.upstream.app.close_after_reply = true;
        // Connection: close honoured; the answer ends with the connection.
        net.upstream.app.reply = Some(b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
        net.run(100);
        assert_eq!(net.counters(), [1, 1, 0, 0]);
        assert_eq!(net.flags(0), 0);
        // Cut in the middle of the head.
        net.upstream.app.reply = Some(b"HTTP/1.1 200 OK\r\nContent-".to_vec());
        net.run(1000);
        assert_eq!(net.counters(), [2, 1, 1, 1]);
        assert_eq!(net.flags(0), 0, "1 of 2 network failures");
        net.run(1000);
        assert_eq!(net.counters(), [3, 1, 2, 2]);
        assert_eq!(net.flags(0), FAILED_ACTIVE_HC);
        net.run(100);
        assert!(net.checker.stack.is_empty());
    }

    #[test]
    fn tcp_check_sends_and_matches_the_receive_blocks() {
        let tcp = TcpHealthCheck {
            send: Some(b"PING\r\n".to_vec()),
            receive: vec![b"+PO".to_vec(), b"NG".to_vec()],
        };
        let mut hc = health_check(HealthCheckKind::Tcp(tcp));
        hc.timeout = ms(300);
        hc.no_traffic_interval = ms(1000);
        let mut net = Net::new(hc, &[80]);
        net.upstream.app.expect = 6;
        net.upstream.app.reply = Some(b"noise+POxxNG\r\n".to_vec());
        net.run(100);
        assert_eq!(net.upstream.app.requests, vec![b"PING\r\n".to_vec()]);
        assert_eq!(net.counters(), [1, 1, 0, 0]);
        assert_eq!(net.flags(0), 0);
        // Blocks out of order: no pass, the check times out.
        net.upstream.app.reply = Some(b"NG+PO".to_vec());
        net.run(1300);
        assert_eq!(net.counters(), [2, 1, 1, 1]);
        assert_eq!(net.flags(0), 0, "below unhealthy_threshold");
    }

    #[test]
    fn tcp_connect_only_check_passes_on_connect() {
        let mut hc = health_check(HealthCheckKind::Tcp(TcpHealthCheck::default()));
        hc.initial_jitter = ms(50);
        let mut net = Net::new(hc, &[80, 80]);
        net.run(100);
        assert_eq!(net.counters(), [2, 2, 0, 0]);
        assert_eq!(net.flags(0), 0);
        assert_eq!(net.flags(1), 0);
        // The default no_traffic_interval is 60 s: an idle poll does nothing.
        net.run(1000);
        assert_eq!(net.counters()[0], 2);
        // Aborted right after the handshake (the upstream may not even have
        // accepted): nothing left on either side.
        assert!(net.checker.stack.is_empty());
        assert!(net.upstream.stack.is_empty());
    }
}
