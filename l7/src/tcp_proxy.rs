//! The L4 proxy: Envoy's `tcp_proxy` on zerohop's userspace TCP.
//!
//! One [`TcpProxy`] per worker is the [`App`] of that worker's TCP
//! [`Stack`]. For each downstream connection a listener accepts, it picks an
//! endpoint of the listener's cluster (round robin, random or least
//! request, weighted), opens the upstream connection, and from then on moves
//! bytes both ways with [`Stack::splice`]: straight from one connection's
//! receive buffer into the other's send buffer. The proxy buffers nothing of
//! its own, so a slow reader on one side closes the TCP window on the other
//! (back-pressure) and memory stays at the configured buffer sizes.
//!
//! Closing follows the peers: a FIN from one side is passed on as a FIN to
//! the other once every byte before it was passed on (half-close); a reset
//! or a refused upstream resets the other side at once. A connect timeout
//! resets both; the idle timeout closes both.
//!
//! Counters are per worker, single writer, and named as Envoy names them
//! (`tcp.<stat_prefix>.*`, `cluster.<name>.*`); [`ProxyStats::values`] lists
//! them for summing over workers.
//!
//! A listener with an `access_log` gets one [`Record`] per connection when it
//! ends (both sides closed), or at once when it is refused: `UH` (no healthy
//! endpoint), `UO` (the cluster's `max_connections`). Its response flags: `UF`
//! when the upstream connection could not be opened (refused, timed out, no
//! route or port), `UC` when the upstream reset an established connection
//! (or smoltcp gave up on it), `DC` when the client reset (or timed out) while
//! the upstream connection was still open.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zerohop_dataplane::Counter;
use zerohop_tcpstack::rng::Rng;
use zerohop_tcpstack::{App, Close, ConnId, FlowKey, Listen, Stack};

use crate::access_log::{AccessLogs, Record, ResponseFlags, Sink};
use crate::cluster::LiveBalancer;
use crate::config::{EnvoyConfig, NetworkFilter};
use crate::health::{Outcome, Resource, Shared};

/// Grace after an idle timeout's FINs before both sides are reset.
const CLOSE_GRACE_MS: u64 = 1_000;

/// Counters of one listener's `tcp_proxy` on one worker.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub downstream_cx_total: Counter,
    /// Connections finished.
    pub downstream_cx_closed: Counter,
    /// Bytes received from downstream (and sent upstream).
    pub downstream_cx_rx_bytes_total: Counter,
    /// Bytes sent downstream.
    pub downstream_cx_tx_bytes_total: Counter,
    /// Connections closed by the idle timeout.
    pub idle_timeout: Counter,
    /// Connections reset because no upstream connection could be opened
    /// (no route, no port, table full).
    pub downstream_cx_no_route: Counter,
}

/// Counters of one endpoint on one worker.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Connections opened to it.
    pub cx_total: Counter,
    /// Connections to it finished.
    pub cx_closed: Counter,
    /// Connections to it that failed to open (refused, timed out).
    pub cx_connect_fail: Counter,
}

impl EndpointStats {
    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.cx_total.get().saturating_sub(self.cx_closed.get())
    }
}

/// Counters of one cluster on one worker.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Upstream connections opened.
    pub upstream_cx_total: Counter,
    /// Upstream connections finished.
    pub upstream_cx_closed: Counter,
    /// Upstream connections that failed (refused, unreachable, reset
    /// before the handshake ended) — timeouts included.
    pub upstream_cx_connect_fail: Counter,
    /// ... of which because `connect_timeout` passed.
    pub upstream_cx_connect_timeout: Counter,
    /// Downstream connections closed because no endpoint was healthy.
    pub upstream_cx_none_healthy: Counter,
    /// Established upstream connections the upstream reset or timed out.
    pub upstream_cx_destroy_remote: Counter,
    /// Established upstream connections zerohop reset (downstream reset,
    /// idle timeout).
    pub upstream_cx_destroy_local: Counter,
    /// Bytes received from upstreams.
    pub upstream_cx_rx_bytes_total: Counter,
    /// Bytes sent to upstreams.
    pub upstream_cx_tx_bytes_total: Counter,
    /// Per endpoint, in config order.
    pub endpoints: Vec<EndpointStats>,
}

/// One worker's proxy counters, readable by the main thread without locks.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// (stat_prefix, counters), per listener in config order.
    pub listeners: Vec<(String, ListenerStats)>,
    /// (name, endpoint addresses, counters), per cluster in config order.
    pub clusters: Vec<(String, Vec<SocketAddrV4>, ClusterStats)>,
    /// Per cluster: a `tcp_proxy` listener sends to it (only those are listed
    /// by [`ProxyStats::values`]; the HTTP proxy lists its own).
    pub used: Vec<bool>,
}

impl ProxyStats {
    /// Return every counter as (Envoy stat name, value), in a fixed order.
    pub fn values(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for (prefix, l) in &self.listeners {
            let p = format!("tcp.{prefix}");
            let active = l
                .downstream_cx_total
                .get()
                .saturating_sub(l.downstream_cx_closed.get());
            v.push((
                format!("{p}.downstream_cx_total"),
                l.downstream_cx_total.get(),
            ));
            v.push((format!("{p}.downstream_cx_active"), active));
            v.push((
                format!("{p}.downstream_cx_rx_bytes_total"),
                l.downstream_cx_rx_bytes_total.get(),
            ));
            v.push((
                format!("{p}.downstream_cx_tx_bytes_total"),
                l.downstream_cx_tx_bytes_total.get(),
            ));
            v.push((format!("{p}.idle_timeout"), l.idle_timeout.get()));
            v.push((
                format!("{p}.downstream_cx_no_route"),
                l.downstream_cx_no_route.get(),
            ));
        }
        for (i, (name, addrs, c)) in self.clusters.iter().enumerate() {
            if !self.used.get(i).copied().unwrap_or(true) {
                continue;
            }
            let p = format!("cluster.{name}");
            let active = c
                .upstream_cx_total
                .get()
                .saturating_sub(c.upstream_cx_closed.get());
            for (key, value) in [
                ("upstream_cx_total", c.upstream_cx_total.get()),
                ("upstream_cx_active", active),
                ("upstream_cx_connect_fail", c.upstream_cx_connect_fail.get()),
                (
                    "upstream_cx_connect_timeout",
                    c.upstream_cx_connect_timeout.get(),
                ),
                ("upstream_cx_none_healthy", c.upstream_cx_none_healthy.get()),
                (
                    "upstream_cx_destroy_remote",
                    c.upstream_cx_destroy_remote.get(),
                ),
                (
                    "upstream_cx_destroy_local",
                    c.upstream_cx_destroy_local.get(),
                ),
                (
                    "upstream_cx_rx_bytes_total",
                    c.upstream_cx_rx_bytes_total.get(),
                ),
                (
                    "upstream_cx_tx_bytes_total",
                    c.upstream_cx_tx_bytes_total.get(),
                ),
                ("membership_total", addrs.len() as u64),
            ] {
                v.push((format!("{p}.{key}"), value));
            }
            for (addr, e) in addrs.iter().zip(&c.endpoints) {
                v.push((format!("{p}.endpoint.{addr}.cx_total"), e.cx_total.get()));
                v.push((format!("{p}.endpoint.{addr}.cx_active"), e.active()));
                v.push((
                    format!("{p}.endpoint.{addr}.cx_connect_fail"),
                    e.cx_connect_fail.get(),
                ));
            }
        }
        v
    }
}

/// A listener as the proxy runs it.
#[derive(Debug, Clone)]
struct ListenerPlan {
    address: SocketAddrV4,
    cluster: usize,
    idle_timeout_ms: Option<u64>,
}

/// The proxy's plan, built once from the config and cloned per worker.
#[derive(Debug, Clone)]
pub struct ProxyPlan {
    listeners: Vec<ListenerPlan>,
    clusters: Vec<LiveBalancer>,
    prefixes: Vec<String>,
    shared: Arc<Shared>,
    cluster_names: Vec<String>,
    /// Per listener (as `listeners`): its access logs, if any.
    sinks: Vec<Option<Sink>>,
    /// The cluster names as access log records carry them.
    cluster_labels: Vec<Arc<str>>,
}

impl ProxyPlan {
    /// Build the plan of the config's `tcp_proxy` listeners.
    ///
    /// `shared`: the clusters' health and circuit breakers, shared by every
    /// worker. `logs`: the process's access logs, built from the same config.
    pub fn new(config: &EnvoyConfig, shared: Arc<Shared>, logs: &AccessLogs) -> ProxyPlan {
        let clusters: Vec<LiveBalancer> = config.clusters.iter().map(LiveBalancer::new).collect();
        let mut listeners = Vec::new();
        let mut prefixes = Vec::new();
        let mut sinks = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let NetworkFilter::TcpProxy(t) = &l.filter else {
                continue;
            };
            let Some(cluster) = config.clusters.iter().position(|c| c.name == t.cluster) else {
                continue; // the config loader rejects this
            };
            listeners.push(ListenerPlan {
                address: l.address,
                cluster,
                idle_timeout_ms: t.idle_timeout.map(|d| d.as_millis().max(1) as u64),
            });
            prefixes.push(t.stat_prefix.clone());
            sinks.push(logs.sink(i));
        }
        ProxyPlan {
            listeners,
            clusters,
            prefixes,
            shared,
            cluster_names: config.clusters.iter().map(|c| c.name.clone()).collect(),
            sinks,
            cluster_labels: config
                .clusters
                .iter()
                .map(|c| Arc::from(c.name.as_str()))
                .collect(),
        }
    }

    /// Return the listening addresses, with the id [`App::accepted`] gets.
    pub fn listens(&self) -> Vec<Listen> {
        self.listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Listen {
                address: l.address,
                id: i as u32,
            })
            .collect()
    }

    /// Return true without listeners.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

/// One proxied connection pair.
#[derive(Debug, Clone, Copy)]
struct Session {
    down: Option<ConnId>,
    up: Option<ConnId>,
    listener: u32,
    cluster: u32,
    endpoint: u32,
    up_connected: bool,
    /// FIN passed on to the upstream / downstream.
    fin_up: bool,
    fin_down: bool,
    /// Idle timeout fired: both sides are closing.
    closing: bool,
    last_activity_ms: u64,
    /// For the access log: when the connection was accepted (stack time),
    /// bytes from and to the client, what went wrong, and the client's
    /// 4-tuple (`None` when the listener logs nothing).
    start_ms: u64,
    bytes_received: u64,
    bytes_sent: u64,
    flags: ResponseFlags,
    downstream: Option<FlowKey>,
}

/// Which side of a session a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Down,
    Up,
}

/// One worker's L4 proxy. See the [module documentation](self).
pub struct TcpProxy {
    plan: ProxyPlan,
    sessions: Vec<Option<Session>>,
    free: Vec<u32>,
    stats: Arc<ProxyStats>,
    rng: Rng,
    /// This configuration generation's bits of connection words.
    gen_bits: u64,
}

impl TcpProxy {
    /// Return a worker's proxy for `plan`; `seed` varies random choices.
    pub fn new(plan: ProxyPlan, seed: u64) -> TcpProxy {
        let stats = ProxyStats {
            listeners: plan
                .prefixes
                .iter()
                .map(|p| (p.clone(), ListenerStats::default()))
                .collect(),
            clusters: plan
                .clusters
                .iter()
                .zip(&plan.cluster_names)
                .map(|(c, n)| {
                    (
                        n.clone(),
                        c.all().endpoints.clone(),
                        ClusterStats {
                            endpoints: c
                                .all()
                                .endpoints
                                .iter()
                                .map(|_| EndpointStats::default())
                                .collect(),
                            ..ClusterStats::default()
                        },
                    )
                })
                .collect(),
            used: (0..plan.clusters.len())
                .map(|ci| plan.listeners.iter().any(|l| l.cluster == ci))
                .collect(),
        };
        TcpProxy {
            plan,
            sessions: Vec::new(),
            free: Vec::new(),
            stats: Arc::new(stats),
            rng: Rng(seed),
            gen_bits: 0,
        }
    }

    /// Return the counters (shared with the main thread).
    pub fn stats(&self) -> &Arc<ProxyStats> {
        &self.stats
    }

    /// Return the sessions open now.
    pub fn sessions(&self) -> usize {
        self.sessions.len() - self.free.len()
    }

    /// Reset every connection (a drain whose time is over): the peers learn
    /// at once rather than from their own timeouts.
    pub fn abort_all(&mut self, tcp: &mut Stack) {
        for s in self.sessions.iter().flatten() {
            for conn in [s.down, s.up].into_iter().flatten() {
                tcp.abort(conn);
            }
        }
    }

    /// Pick a live endpoint of cluster `ci`; `None` when none is.
    fn pick(&mut self, ci: usize) -> Option<usize> {
        let active = &self.stats.clusters[ci].2.endpoints;
        let state = &self.plan.shared.clusters[ci];
        state.saw_traffic();
        self.plan.clusters[ci].pick(state, &mut self.rng, None, |i| active[i].active())
    }

    /// Tell outlier detection how a connection to endpoint `ei` of cluster
    /// `ci` went.
    fn report(&mut self, (ci, ei): (u32, u32), outcome: Outcome) {
        let roll = self.rng.next_u64();
        self.plan
            .shared
            .report(ci as usize, ei as usize, outcome, roll);
    }

    fn session_of(&self, tcp: &Stack, conn: ConnId) -> Option<(usize, Side)> {
        let user = tcp.user(conn)? & !crate::GEN_MASK;
        if user == 0 {
            return None;
        }
        let v = user - 1;
        let idx = (v >> 1) as usize;
        let side = if v & 1 == 1 { Side::Up } else { Side::Down };
        self.sessions.get(idx)?.as_ref()?;
        Some((idx, side))
    }

    fn tag(&self, idx: usize, side: Side) -> u64 {
        (((idx as u64) << 1 | u64::from(side == Side::Up)) + 1) | self.gen_bits
    }

    /// Set the configuration generation its connection words carry.
    pub fn set_generation(&mut self, bits: u64) {
        self.gen_bits = bits;
    }

    fn new_session(&mut self, s: Session) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.sessions[i as usize] = Some(s);
                i as usize
            }
            None => {
                self.sessions.push(Some(s));
                self.sessions.len() - 1
            }
        }
    }

    fn end_session_if_done(&mut self, idx: usize, now_ms: u64) {
        if let Some(s) = self.sessions[idx] {
            if s.down.is_none() && s.up.is_none() {
                self.sessions[idx] = None;
                self.free.push(idx as u32);
                if let Some(downstream) = s.downstream {
                    let cluster = s.cluster as usize;
                    let endpoint = self.plan.clusters[cluster].all().endpoints[s.endpoint as usize];
                    self.log(
                        s.listener,
                        cluster,
                        LogEntry {
                            downstream,
                            start_ms: s.start_ms,
                            now_ms,
                            bytes: (s.bytes_received, s.bytes_sent),
                            upstream: Some(endpoint),
                            flags: s.flags,
                        },
                    );
                }
            }
        }
    }

    /// Return true if `listener` has access logs.
    fn logs(&self, listener: u32) -> bool {
        matches!(self.plan.sinks.get(listener as usize), Some(Some(_)))
    }

    /// Push the access log record of a connection of `listener` to cluster
    /// `cluster`, if the listener logs.
    fn log(&self, listener: u32, cluster: usize, entry: LogEntry) {
        let Some(sink) = self
            .plan
            .sinks
            .get(listener as usize)
            .and_then(Option::as_ref)
        else {
            return;
        };
        let duration_ms = entry.now_ms.saturating_sub(entry.start_ms);
        // The stack's clock is monotonic; the wall clock is read once, here.
        let start_time = SystemTime::now()
            .checked_sub(Duration::from_millis(duration_ms))
            .unwrap_or(UNIX_EPOCH);
        sink.push(Record {
            start_time,
            duration_ms,
            protocol: "",
            response_code: 0,
            response_flags: entry.flags,
            bytes_received: entry.bytes.0,
            bytes_sent: entry.bytes.1,
            upstream_host: entry.upstream.map(SocketAddr::V4),
            upstream_cluster: self.plan.cluster_labels.get(cluster).cloned(),
            downstream_remote: SocketAddr::V4(entry.downstream.remote),
            downstream_local: SocketAddr::V4(entry.downstream.local),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        });
    }

    /// Log a connection refused at accept, before it had a session.
    fn log_refused(&self, tcp: &Stack, conn: ConnId, listener: u32, cluster: usize, flag: u32) {
        if !self.logs(listener) {
            return;
        }
        let Some(downstream) = tcp.key(conn) else {
            return;
        };
        let now_ms = tcp.now_ms();
        self.log(
            listener,
            cluster,
            LogEntry {
                downstream,
                start_ms: now_ms,
                now_ms,
                bytes: (0, 0),
                upstream: None,
                flags: ResponseFlags(flag),
            },
        );
    }

    /// Move bytes both ways and pass FINs on.
    fn pump(&mut self, tcp: &mut Stack, idx: usize) {
        let Some(mut s) = self.sessions[idx] else {
            return;
        };
        let (Some(down), Some(up)) = (s.down, s.up) else {
            return;
        };
        if !s.up_connected {
            return;
        }
        let l = &self.stats.listeners[s.listener as usize].1;
        let c = &self.stats.clusters[s.cluster as usize].2;
        let to_up = tcp.splice(down, up) as u64;
        let to_down = tcp.splice(up, down) as u64;
        if to_up > 0 {
            l.downstream_cx_rx_bytes_total.add(to_up);
            c.upstream_cx_tx_bytes_total.add(to_up);
            s.bytes_received += to_up;
        }
        if to_down > 0 {
            l.downstream_cx_tx_bytes_total.add(to_down);
            c.upstream_cx_rx_bytes_total.add(to_down);
            s.bytes_sent += to_down;
        }
        if to_up + to_down > 0 {
            s.last_activity_ms = tcp.now_ms();
        }
        if !s.fin_up && tcp.recv_finished(down) {
            tcp.close(up);
            s.fin_up = true;
        }
        if !s.fin_down && tcp.recv_finished(up) {
            tcp.close(down);
            s.fin_down = true;
        }
        self.sessions[idx] = Some(s);
    }
}

impl App for TcpProxy {
    fn accepted(&mut self, tcp: &mut Stack, conn: ConnId, listener: u32) {
        let Some(lp) = self.plan.listeners.get(listener as usize).cloned() else {
            tcp.abort(conn);
            return;
        };
        self.stats.listeners[listener as usize]
            .1
            .downstream_cx_total
            .add(1);
        let ci = lp.cluster;
        let Some(ei) = self.pick(ci) else {
            self.stats.clusters[ci].2.upstream_cx_none_healthy.add(1);
            self.log_refused(tcp, conn, listener, ci, ResponseFlags::NO_HEALTHY_UPSTREAM);
            tcp.abort(conn);
            return;
        };
        let state = &self.plan.shared.clusters[ci];
        if !state.try_acquire(Resource::Connections) {
            // Envoy's tcp_proxy closes the downstream connection at the
            // cluster's max_connections.
            state.counters.upstream_cx_overflow.add(1);
            self.log_refused(tcp, conn, listener, ci, ResponseFlags::UPSTREAM_OVERFLOW);
            tcp.abort(conn);
            return;
        }
        let now = tcp.now_ms();
        let endpoint = self.plan.clusters[ci].all().endpoints[ei];
        let logs = self.logs(listener);
        let mut s = Session {
            down: Some(conn),
            up: None,
            listener,
            cluster: ci as u32,
            endpoint: ei as u32,
            up_connected: false,
            fin_up: false,
            fin_down: false,
            closing: false,
            last_activity_ms: now,
            start_ms: now,
            bytes_received: 0,
            bytes_sent: 0,
            flags: ResponseFlags::default(),
            downstream: if logs { tcp.key(conn) } else { None },
        };
        let up = match tcp.connect(endpoint) {
            Ok(up) => up,
            Err(_) => {
                s.flags.set(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                self.plan.shared.clusters[ci].release(Resource::Connections);
                self.stats.listeners[listener as usize]
                    .1
                    .downstream_cx_no_route
                    .add(1);
                let idx = self.new_session(s);
                tcp.set_user(conn, self.tag(idx, Side::Down));
                tcp.abort(conn);
                return;
            }
        };
        s.up = Some(up);
        let c = &self.stats.clusters[ci].2;
        c.upstream_cx_total.add(1);
        c.endpoints[ei].cx_total.add(1);
        let idx = self.new_session(s);
        tcp.set_user(conn, self.tag(idx, Side::Down));
        tcp.set_user(up, self.tag(idx, Side::Up));
        tcp.set_deadline(
            up,
            Some(now + self.plan.clusters[ci].all().connect_timeout_ms),
        );
        if let Some(idle) = lp.idle_timeout_ms {
            tcp.set_deadline(conn, Some(now + idle));
        }
    }

    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        let Some((idx, side)) = self.session_of(tcp, conn) else {
            return;
        };
        if let Some(s) = self.sessions[idx].as_mut() {
            if side == Side::Up && !s.up_connected && tcp.is_established(conn) {
                s.up_connected = true;
                tcp.set_deadline(conn, None);
                let at = (s.cluster, s.endpoint);
                self.report(at, Outcome::Connected);
            }
        }
        self.pump(tcp, idx);
    }

    fn deadline(&mut self, tcp: &mut Stack, conn: ConnId) {
        let Some((idx, side)) = self.session_of(tcp, conn) else {
            return;
        };
        let Some(mut s) = self.sessions[idx] else {
            return;
        };
        let now = tcp.now_ms();
        match side {
            Side::Up if !s.up_connected => {
                let c = &self.stats.clusters[s.cluster as usize].2;
                c.upstream_cx_connect_timeout.add(1);
                s.flags.set(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                self.sessions[idx] = Some(s);
                tcp.abort(conn);
                if let Some(d) = s.down {
                    tcp.abort(d);
                }
            }
            Side::Up => {}
            Side::Down if s.closing => {
                // The FINs of the idle timeout did not finish: reset.
                if let Some(u) = s.up {
                    tcp.abort(u);
                }
                tcp.abort(conn);
            }
            Side::Down => {
                let Some(idle) = self.plan.listeners[s.listener as usize].idle_timeout_ms else {
                    return;
                };
                if now.saturating_sub(s.last_activity_ms) >= idle {
                    self.stats.listeners[s.listener as usize]
                        .1
                        .idle_timeout
                        .add(1);
                    s.closing = true;
                    tcp.close(conn);
                    if let Some(u) = s.up {
                        tcp.close(u);
                    }
                    tcp.set_deadline(conn, Some(now + CLOSE_GRACE_MS));
                    self.sessions[idx] = Some(s);
                } else {
                    tcp.set_deadline(conn, Some(s.last_activity_ms + idle));
                }
            }
        }
    }

    fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
        let Some((idx, side)) = self.session_of(tcp, conn) else {
            return;
        };
        let Some(mut s) = self.sessions[idx] else {
            return;
        };
        let c = &self.stats.clusters[s.cluster as usize].2;
        match side {
            Side::Down => {
                s.down = None;
                self.stats.listeners[s.listener as usize]
                    .1
                    .downstream_cx_closed
                    .add(1);
                if s.up.is_some() && matches!(how, Close::Reset | Close::TimedOut) {
                    s.flags
                        .set(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                }
                if let Some(u) = s.up {
                    if how != Close::Graceful {
                        if s.up_connected {
                            c.upstream_cx_destroy_local.add(1);
                        }
                        tcp.abort(u);
                    } else if !s.fin_up {
                        tcp.close(u);
                    }
                }
            }
            Side::Up => {
                s.up = None;
                self.plan.shared.clusters[s.cluster as usize].release(Resource::Connections);
                c.upstream_cx_closed.add(1);
                let e = &c.endpoints[s.endpoint as usize];
                e.cx_closed.add(1);
                let failed = !s.up_connected;
                if failed {
                    c.upstream_cx_connect_fail.add(1);
                    e.cx_connect_fail.add(1);
                    // Refused or timed out by the peer; zerohop's own aborts
                    // (the connect timeout, a client gone) say why themselves.
                    if how != Close::Aborted {
                        s.flags.set(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                    }
                    self.report((s.cluster, s.endpoint), Outcome::ConnectFailure);
                } else if matches!(how, Close::Reset | Close::TimedOut) {
                    c.upstream_cx_destroy_remote.add(1);
                    s.flags.set(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
                }
                if let Some(d) = s.down {
                    if failed || how != Close::Graceful {
                        tcp.abort(d);
                    } else if !s.fin_down {
                        // Everything the upstream sent was passed on before
                        // its connection could close; pass on its FIN too.
                        tcp.close(d);
                    }
                }
            }
        }
        self.sessions[idx] = Some(s);
        self.end_session_if_done(idx, tcp.now_ms());
    }
}

/// What an access log record of a connection needs beyond its listener and
/// cluster.
struct LogEntry {
    downstream: FlowKey,
    start_ms: u64,
    now_ms: u64,
    /// (from the client, to the client).
    bytes: (u64, u64),
    upstream: Option<SocketAddrV4>,
    flags: ResponseFlags,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("sessions", &self.sessions())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    //! The access log of a tcp_proxy: three stacks (client, proxy, upstream)
    //! on one subnet, packets passed between them each millisecond.

    use super::*;

    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use crate::testnet::{self, host, Host};

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PROXY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const UPSTREAM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

    const FORMAT: &str = "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_ADDRESS% \
         %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS% \
         %PROTOCOL% %RESPONSE_CODE% %REQ(:METHOD)%";

    /// Connects, sends `hello` and half-closes; keeps what comes back.
    #[derive(Default)]
    struct Client {
        /// Keep the connection open after `hello` (no FIN).
        keep_open: bool,
        sent: bool,
        received: Vec<u8>,
        closed: Vec<Close>,
    }

    impl App for Client {
        fn accepted(&mut self, _tcp: &mut Stack, _conn: ConnId, _listener: u32) {}
        fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
            if !self.sent && tcp.is_established(conn) {
                assert_eq!(tcp.send(conn, b"hello"), 5);
                if !self.keep_open {
                    tcp.close(conn);
                }
                self.sent = true;
            }
            let mut buf = [0u8; 64];
            loop {
                let n = tcp.recv(conn, &mut buf);
                if n == 0 {
                    break;
                }
                self.received.extend_from_slice(&buf[..n]);
            }
        }
        fn deadline(&mut self, _tcp: &mut Stack, _conn: ConnId) {}
        fn closed(&mut self, _tcp: &mut Stack, _conn: ConnId, how: Close) {
            self.closed.push(how);
        }
    }

    /// Echoes, and closes once the other side has; or resets on the first
    /// bytes.
    #[derive(Default)]
    struct Echo {
        reset: bool,
    }

    impl App for Echo {
        fn accepted(&mut self, _tcp: &mut Stack, _conn: ConnId, _listener: u32) {}
        fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
            let mut buf = [0u8; 64];
            loop {
                let n = tcp.recv(conn, &mut buf);
                if n == 0 {
                    break;
                }
                if self.reset {
                    tcp.abort(conn);
                    return;
                }
                assert_eq!(tcp.send(conn, &buf[..n]), n);
            }
            if tcp.recv_finished(conn) {
                tcp.close(conn);
            }
        }
        fn deadline(&mut self, _tcp: &mut Stack, _conn: ConnId) {}
        fn closed(&mut self, _tcp: &mut Stack, _conn: ConnId, _how: Close) {}
    }

    struct Net {
        client: Host<Client>,
        proxy: Host<TcpProxy>,
        upstream: Host<Echo>,
        /// The client's connection.
        conn: ConnId,
        logs: AccessLogs,
        path: PathBuf,
        now: u64,
    }

    impl Net {
        /// A tcp_proxy on 9000 to `10.0.0.3:port` (the upstream listens on
        /// 80), logging to a fresh file; `cluster` is added to the cluster.
        fn new(name: &str, port: u16, cluster: &str, edit: impl FnOnce(&mut EnvoyConfig)) -> Net {
            let path = std::env::temp_dir().join(format!(
                "zerohop-tcp-proxy-{}-{name}.log",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&path);
            let text = format!(
                r#"
static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 0.0.0.0, port_value: 9000 }} }}
    filter_chains:
    - filters:
      - typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: c
          access_log:
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              format: "{FORMAT}\n"
  clusters:
  - name: c
{cluster}
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 10.0.0.3, port_value: {port} }} }} }}
"#,
                path.display()
            );
            let mut config =
                EnvoyConfig::from_yaml(&text, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
            edit(&mut config);
            let logs = AccessLogs::new(&config).expect("logs");
            let shared = Arc::new(Shared::new(&config));
            let plan = ProxyPlan::new(&config, shared, &logs);
            let mut proxy = host(PROXY, TcpProxy::new(plan.clone(), 1));
            for listen in plan.listens() {
                proxy.stack.listen(listen);
            }
            let mut upstream = host(UPSTREAM, Echo::default());
            upstream.stack.listen(Listen {
                address: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
                id: 0,
            });
            let mut client = host(CLIENT, Client::default());
            let conn = client
                .stack
                .connect(SocketAddrV4::new(PROXY, 9000))
                .expect("connect");
            Net {
                client,
                proxy,
                upstream,
                conn,
                logs,
                path,
                now: 0,
            }
        }

        /// Run `ms` milliseconds.
        fn run(&mut self, ms: u64) {
            testnet::run(
                &mut self.now,
                ms,
                &mut [&mut self.client, &mut self.proxy, &mut self.upstream],
            );
        }

        /// Write what the proxy logged; return the file.
        fn log(&self) -> String {
            self.logs.flush();
            std::fs::read_to_string(&self.path).unwrap_or_default()
        }
    }

    impl Drop for Net {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    fn a_proxied_connection_is_logged_when_it_ends() {
        let mut net = Net::new("ok", 80, "", |_| {});
        net.run(50);
        assert_eq!(net.client.app.received, b"hello");
        assert_eq!(net.client.app.closed, [Close::Graceful]);
        net.run(50);
        assert_eq!(net.proxy.app.sessions(), 0);
        assert_eq!(
            net.log(),
            "10.0.0.1 10.0.0.2:9000 10.0.0.3:80 c 5 5 - - 0 -\n"
        );
        assert_eq!(net.logs.flush(), 0, "one record per connection");
    }

    #[test]
    fn a_refused_upstream_is_uf() {
        let mut net = Net::new("refused", 81, "", |_| {});
        net.run(100);
        assert_eq!(net.proxy.app.sessions(), 0);
        assert_eq!(
            net.log(),
            "10.0.0.1 10.0.0.2:9000 10.0.0.3:81 c 0 0 UF - 0 -\n"
        );
    }

    #[test]
    fn no_healthy_endpoint_is_uh() {
        // Checked but never checked yet: the endpoint counts as failed, and
        // with a panic threshold of 0 nothing is picked.
        let cluster = "    health_checks: [{ timeout: 1s, interval: 5s, unhealthy_threshold: 1, \
                       healthy_threshold: 1, tcp_health_check: {} }]\n    \
                       common_lb_config: { healthy_panic_threshold: { value: 0 } }";
        let mut net = Net::new("unhealthy", 80, cluster, |_| {});
        net.run(100);
        assert_eq!(net.log(), "10.0.0.1 10.0.0.2:9000 - c 0 0 UH - 0 -\n");
    }

    #[test]
    fn a_full_circuit_breaker_is_uo() {
        let mut net = Net::new("overflow", 80, "", |config| {
            config.clusters[0].circuit_breakers.max_connections = 0;
        });
        net.run(100);
        assert_eq!(net.log(), "10.0.0.1 10.0.0.2:9000 - c 0 0 UO - 0 -\n");
    }

    #[test]
    fn a_client_reset_is_dc() {
        let mut net = Net::new("client-reset", 80, "", |_| {});
        net.client.app.keep_open = true;
        net.run(50);
        assert_eq!(net.client.app.received, b"hello");
        net.client.stack.abort(net.conn);
        net.run(50);
        assert_eq!(net.proxy.app.sessions(), 0);
        assert_eq!(
            net.log(),
            "10.0.0.1 10.0.0.2:9000 10.0.0.3:80 c 5 5 DC - 0 -\n"
        );
    }

    #[test]
    fn an_upstream_reset_is_uc() {
        let mut net = Net::new("upstream-reset", 80, "", |_| {});
        net.client.app.keep_open = true;
        net.upstream.app.reset = true;
        net.run(100);
        assert_eq!(net.proxy.app.sessions(), 0);
        assert_eq!(
            net.log(),
            "10.0.0.1 10.0.0.2:9000 10.0.0.3:80 c 5 0 UC - 0 -\n"
        );
    }

    #[test]
    fn a_connect_timeout_is_uf() {
        // 10.0.0.9 does not answer.
        let mut net = Net::new("timeout", 80, "    connect_timeout: 0.05s", |config| {
            config.clusters[0].endpoints[0].address =
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 80);
        });
        net.run(200);
        assert_eq!(net.proxy.app.sessions(), 0);
        assert_eq!(
            net.log(),
            "10.0.0.1 10.0.0.2:9000 10.0.0.9:80 c 0 0 UF - 0 -\n"
        );
    }
}
