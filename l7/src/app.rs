//! The application of a worker's TCP stack: `tcp_proxy` and HTTP listeners
//! side by side.
//!
//! The stack has one [`App`]; [`L7`] hands each event to the proxy that owns
//! the listener (for [`App::accepted`]) or the connection (the HTTP proxy
//! marks its connections' words with [`crate::http::proxy::TAG`]).

use std::sync::Arc;

use crossbeam_channel::Receiver;

use zerohop_tcpstack::{App, Close, ConnId, Listen, Stack};

use crate::access_log::AccessLogs;
use crate::config::EnvoyConfig;
use crate::health::checker::HealthChecker;
use crate::health::Shared;
use crate::http::proxy::{HttpPlan, HttpProxy, HttpStats};
use crate::tcp_proxy::{ProxyPlan, ProxyStats, TcpProxy};

/// Both proxies' plans, built once from the config.
pub struct L7Plan {
    tcp: ProxyPlan,
    http: HttpPlan,
    shared: Arc<Shared>,
    /// Worker 0's: the active health checks.
    checker: Option<HealthChecker>,
    /// This worker reviews outlier ejections (worker 0).
    lead: bool,
}

impl L7Plan {
    /// Plan the config's listeners.
    ///
    /// # Errors
    /// A route table that does not compile.
    ///
    /// `shared` is the clusters' state every worker shares (one per process);
    /// `checks` is true for the one worker that runs the active health checks
    /// and reviews outlier ejections.
    ///
    /// `logs`: the access logs (one per process); each listener's sink goes to
    /// its proxy.
    pub fn new(
        config: &EnvoyConfig,
        shared: Arc<Shared>,
        checks: bool,
        logs: &AccessLogs,
    ) -> Result<L7Plan, String> {
        let checker = if checks {
            {
                // Jitter differs from process to process (the point of jitter).
                use std::hash::{BuildHasher, Hasher};
                let seed = std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish();
                HealthChecker::new(config, shared.clone(), seed)
            }
        } else {
            None
        };
        Ok(L7Plan {
            tcp: ProxyPlan::new(config, shared.clone(), logs),
            http: HttpPlan::new(config, shared.clone(), logs)?,
            shared,
            checker,
            lead: checks,
        })
    }

    /// Every listening address, with its stack listener id.
    pub fn listens(&self) -> Vec<Listen> {
        let mut l = self.tcp.listens();
        l.extend(self.http.listens(l.len() as u32));
        l
    }

    /// No listener at all.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.http.is_empty()
    }
}

/// Both proxies' counters of one worker.
#[derive(Debug, Clone)]
pub struct L7Stats {
    pub tcp: Arc<ProxyStats>,
    pub http: Arc<HttpStats>,
}

impl L7Stats {
    /// Every counter as (Envoy stat name, value), in a fixed order.
    pub fn values(&self) -> Vec<(String, u64)> {
        let mut v = self.tcp.values();
        v.extend(self.http.values());
        v
    }
}

/// How long an idle keep-alive connection of a retired generation may still
/// send a request (answered with `Connection: close`) before it is closed.
const RETIRE_IDLE_GRACE_MS: u64 = 2_000;

/// How long a retired generation stays at least: a handshake that began on
/// its listeners before a reload ends on it.
const RETIRE_GRACE_MS: u64 = 5_000;

/// One configuration generation's proxies on one worker: built by the main
/// thread (at start, and on each reload) and handed to the worker.
#[derive(Debug)]
pub struct Generation {
    tcp: TcpProxy,
    http: HttpProxy,
    checker: Option<HealthChecker>,
    /// Review outlier ejections (worker 0).
    reviews: Option<Arc<Shared>>,
    shared: Arc<Shared>,
    /// Its listeners, ids from 0.
    listens: Vec<Listen>,
    /// Its slot in connection words ([`crate::GEN_MASK`]).
    slot: u64,
    /// The stack's index of its first listener.
    first: u32,
    /// Retired at (ms, the stack's clock).
    retired_ms: u64,
}

impl Generation {
    /// The proxies of `plan`; `seed` varies random choices.
    pub fn new(plan: L7Plan, seed: u64) -> Generation {
        let listens = plan.listens();
        let first_http = plan.tcp.listens().len() as u32;
        let reviews = plan.lead.then(|| plan.shared.clone());
        Generation {
            tcp: TcpProxy::new(plan.tcp, seed),
            http: HttpProxy::new(plan.http, first_http, seed.rotate_left(29)),
            checker: plan.checker,
            reviews,
            shared: plan.shared,
            listens,
            slot: 0,
            first: 0,
            retired_ms: 0,
        }
    }

    /// The counters (shared with the main thread).
    pub fn stats(&self) -> L7Stats {
        L7Stats {
            tcp: self.tcp.stats().clone(),
            http: self.http.stats().clone(),
        }
    }

    fn set_slot(&mut self, slot: u64) {
        self.slot = slot;
        let bits = slot << crate::GEN_SHIFT;
        self.tcp.set_generation(bits);
        self.http.set_generation(bits);
        if let Some(c) = self.checker.as_mut() {
            c.set_generation(bits);
        }
    }

    /// Whether one of its connections is still open, or it retired so
    /// recently that a handshake begun on its listeners may still end.
    fn busy(&self, now_ms: u64) -> bool {
        now_ms < self.retired_ms + RETIRE_GRACE_MS
            || self.http.connections() > 0
            || self.http.upstream_connections() > 0
            || self.tcp.sessions() > 0
            || self.checker.as_ref().is_some_and(HealthChecker::busy)
    }

    /// Whether `listener` (a stack index) is one of its.
    fn owns_listener(&self, listener: u32) -> bool {
        listener >= self.first && listener - self.first < self.listens.len() as u32
    }

    fn checker_of(&mut self, tcp: &Stack, conn: ConnId) -> Option<&mut HealthChecker> {
        if tcp.user(conn).is_some_and(HealthChecker::owns_tag) {
            self.checker.as_mut()
        } else {
            None
        }
    }

    fn accepted(&mut self, tcp: &mut Stack, conn: ConnId, listener: u32) {
        let l = listener - self.first;
        if self.http.owns_listener(l) {
            self.http.accepted(tcp, conn, l);
        } else {
            self.tcp.accepted(tcp, conn, l);
        }
    }

    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        if let Some(c) = self.checker_of(tcp, conn) {
            c.ready(tcp, conn);
        } else if L7::is_http(tcp, conn) {
            self.http.ready(tcp, conn);
        } else {
            self.tcp.ready(tcp, conn);
        }
    }

    fn deadline(&mut self, tcp: &mut Stack, conn: ConnId) {
        if let Some(c) = self.checker_of(tcp, conn) {
            c.deadline(tcp, conn);
        } else if L7::is_http(tcp, conn) {
            self.http.deadline(tcp, conn);
        } else {
            self.tcp.deadline(tcp, conn);
        }
    }

    fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
        if let Some(c) = self.checker_of(tcp, conn) {
            c.closed(tcp, conn, how);
        } else if L7::is_http(tcp, conn) {
            self.http.closed(tcp, conn, how);
        } else {
            self.tcp.closed(tcp, conn, how);
        }
    }
}

/// One worker's proxies: the current configuration generation, and the
/// earlier ones still finishing their connections after a reload.
///
/// A reload's [`Generation`] arrives on a channel and is installed between
/// two loops of the worker (never in the middle of a vector): the stack's
/// listeners are closed and the new generation's opened, so new connections
/// go to it, while each connection goes on with the generation it started in
/// (the generation's slot is in its connection word, [`crate::GEN_MASK`]).
/// A retired generation goes once its last connection has closed.
#[derive(Debug)]
pub struct L7 {
    current: Generation,
    retired: Vec<Generation>,
    /// Where reloads come from (none: this worker never reloads).
    reloads: Option<Receiver<Generation>>,
    /// The drain has begun here.
    drained: bool,
    /// Every connection was reset here.
    aborted: bool,
}

impl L7 {
    /// A worker's proxies, first generation `first` (its listeners the
    /// stack's first), taking reloads from `reloads`.
    pub fn with_reloads(first: Generation, reloads: Option<Receiver<Generation>>) -> L7 {
        L7 {
            current: first,
            retired: Vec::new(),
            reloads,
            drained: false,
            aborted: false,
        }
    }

    /// The counters of the current generation (shared with the main thread).
    pub fn stats(&self) -> L7Stats {
        self.current.stats()
    }

    fn is_http(tcp: &Stack, conn: ConnId) -> bool {
        tcp.user(conn).is_some_and(HttpProxy::owns_tag)
    }

    /// The generation that owns `conn`.
    fn owner(&mut self, tcp: &Stack, conn: ConnId) -> Option<&mut Generation> {
        let slot = (tcp.user(conn)? & crate::GEN_MASK) >> crate::GEN_SHIFT;
        if self.current.slot == slot {
            return Some(&mut self.current);
        }
        self.retired.iter_mut().find(|g| g.slot == slot)
    }

    /// Install generation `g`: the current one retires.
    fn install(&mut self, tcp: &mut Stack, mut g: Generation) {
        // A slot no live generation holds; with every slot taken (255
        // generations still finishing), the oldest is reset to free one.
        let taken = |s: u64, l: &L7| l.current.slot == s || l.retired.iter().any(|r| r.slot == s);
        let mut slot = (self.current.slot + 1) % 256;
        let mut tries = 0;
        while taken(slot, self) && tries < 256 {
            slot = (slot + 1) % 256;
            tries += 1;
        }
        if taken(slot, self) && !self.retired.is_empty() {
            let mut oldest = self.retired.remove(0);
            oldest.http.abort_all(tcp);
            oldest.tcp.abort_all(tcp);
            slot = oldest.slot;
        }
        g.set_slot(slot);
        g.first = tcp.close_listeners();
        for l in &g.listens {
            tcp.listen(Listen {
                address: l.address,
                id: g.first + l.id,
            });
        }
        let mut old = std::mem::replace(&mut self.current, g);
        if let Some(c) = old.checker.as_mut() {
            c.stop(tcp);
        }
        old.http.close_idle(tcp);
        // Its connections close after their current answer (as Envoy drains
        // a listener), so keep-alive clients come back to the new one.
        old.http.drain(tcp, RETIRE_IDLE_GRACE_MS);
        old.retired_ms = tcp.now_ms();
        if self.drained {
            self.current.http.drain(tcp, 0);
        }
        self.retired.push(old);
    }

    fn generations(&mut self) -> impl Iterator<Item = &mut Generation> {
        std::iter::once(&mut self.current).chain(self.retired.iter_mut())
    }
}

impl App for L7 {
    fn accepted(&mut self, tcp: &mut Stack, conn: ConnId, listener: u32) {
        if self.current.owns_listener(listener) {
            return self.current.accepted(tcp, conn, listener);
        }
        // A handshake that began before a reload ends on its generation.
        match self.retired.iter_mut().find(|g| g.owns_listener(listener)) {
            Some(g) => g.accepted(tcp, conn, listener),
            None => tcp.abort(conn),
        }
    }

    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        if let Some(g) = self.owner(tcp, conn) {
            g.ready(tcp, conn);
        }
    }

    fn deadline(&mut self, tcp: &mut Stack, conn: ConnId) {
        if let Some(g) = self.owner(tcp, conn) {
            g.deadline(tcp, conn);
        }
    }

    fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
        if let Some(g) = self.owner(tcp, conn) {
            g.closed(tcp, conn, how);
        }
    }

    fn poll(&mut self, tcp: &mut Stack) {
        if let Some(g) = self.reloads.as_ref().and_then(|r| r.try_recv().ok()) {
            self.install(tcp, g);
        }
        if !self.retired.is_empty() {
            let now = tcp.now_ms();
            self.retired.retain(|g| g.busy(now));
        }
        let shared = self.current.shared.clone();
        if !self.drained && shared.draining() {
            self.drained = true;
            tcp.set_accepting(false);
            for g in self.generations() {
                g.http.drain(tcp, 0);
            }
        }
        if !self.aborted && shared.aborting() {
            self.aborted = true;
            for g in self.generations() {
                g.http.abort_all(tcp);
                g.tcp.abort_all(tcp);
            }
        }
        if let Some(c) = self.current.checker.as_mut() {
            c.poll(tcp);
        }
        if let Some(s) = &self.current.reviews {
            s.tick();
        }
    }
}
