//! The application of a worker's TCP stack: `tcp_proxy` and HTTP listeners
//! side by side.
//!
//! The stack has one [`App`]; [`L7`] hands each event to the proxy that owns
//! the listener (for [`App::accepted`]) or the connection (the HTTP proxy
//! marks its connections' words with [`crate::http::proxy::TAG`]).

use std::sync::Arc;

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

/// One worker's proxies.
#[derive(Debug)]
pub struct L7 {
    tcp: TcpProxy,
    http: HttpProxy,
    checker: Option<HealthChecker>,
    /// Review outlier ejections (worker 0).
    reviews: Option<Arc<Shared>>,
    shared: Arc<Shared>,
    /// The drain has begun here.
    drained: bool,
    /// Every connection was reset here.
    aborted: bool,
}

impl L7 {
    /// A worker's proxies; `seed` varies random choices.
    pub fn new(plan: L7Plan, seed: u64) -> L7 {
        let first_http = plan.tcp.listens().len() as u32;
        let reviews = plan.lead.then(|| plan.shared.clone());
        L7 {
            tcp: TcpProxy::new(plan.tcp, seed),
            http: HttpProxy::new(plan.http, first_http, seed.rotate_left(29)),
            checker: plan.checker,
            reviews,
            shared: plan.shared,
            drained: false,
            aborted: false,
        }
    }

    /// The counters (shared with the main thread).
    pub fn stats(&self) -> L7Stats {
        L7Stats {
            tcp: self.tcp.stats().clone(),
            http: self.http.stats().clone(),
        }
    }

    fn is_http(tcp: &Stack, conn: ConnId) -> bool {
        tcp.user(conn).is_some_and(HttpProxy::owns_tag)
    }

    fn checker_of(&mut self, tcp: &Stack, conn: ConnId) -> Option<&mut HealthChecker> {
        if tcp.user(conn).is_some_and(HealthChecker::owns_tag) {
            self.checker.as_mut()
        } else {
            None
        }
    }
}

impl App for L7 {
    fn accepted(&mut self, tcp: &mut Stack, conn: ConnId, listener: u32) {
        if self.http.owns_listener(listener) {
            self.http.accepted(tcp, conn, listener);
        } else {
            self.tcp.accepted(tcp, conn, listener);
        }
    }

    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        if let Some(c) = self.checker_of(tcp, conn) {
            c.ready(tcp, conn);
        } else if Self::is_http(tcp, conn) {
            self.http.ready(tcp, conn);
        } else {
            self.tcp.ready(tcp, conn);
        }
    }

    fn deadline(&mut self, tcp: &mut Stack, conn: ConnId) {
        if let Some(c) = self.checker_of(tcp, conn) {
            c.deadline(tcp, conn);
        } else if Self::is_http(tcp, conn) {
            self.http.deadline(tcp, conn);
        } else {
            self.tcp.deadline(tcp, conn);
        }
    }

    fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
        if let Some(c) = self.checker_of(tcp, conn) {
            c.closed(tcp, conn, how);
        } else if Self::is_http(tcp, conn) {
            self.http.closed(tcp, conn, how);
        } else {
            self.tcp.closed(tcp, conn, how);
        }
    }

    fn poll(&mut self, tcp: &mut Stack) {
        if !self.drained && self.shared.draining() {
            self.drained = true;
            tcp.set_accepting(false);
            self.http.drain(tcp);
        }
        if !self.aborted && self.shared.aborting() {
            self.aborted = true;
            self.http.abort_all(tcp);
            self.tcp.abort_all(tcp);
        }
        if let Some(c) = self.checker.as_mut() {
            c.poll(tcp);
        }
        if let Some(s) = &self.reviews {
            s.tick();
        }
    }
}
