//! What every worker shares about a cluster: which endpoints may take
//! traffic (active health checks, outlier ejection, the panic threshold) and
//! the circuit breakers' counts.
//!
//! One [`Shared`] is built per process and handed to every worker (`Arc`).
//! Everything in it is an atomic: a worker reads an endpoint's flags and the
//! cluster's `generation` without a lock, and rebuilds its own load balancer
//! only when the generation moved (see [`crate::cluster::LiveBalancer`]).
//!
//! Writers:
//! - the active health checks run in one place, worker 0's
//!   [`checker::HealthChecker`], through the dataplane like any upstream
//!   connection; it alone writes the `FAILED_ACTIVE_HC` flag;
//! - outlier detection counts come from every worker's real traffic
//!   ([`ClusterState::report`]); the worker whose report crosses a threshold
//!   ejects (a compare-and-swap, so one ejection per crossing), and worker 0
//!   reviews ejections every `outlier_detection.interval`
//!   ([`Shared::tick`]);
//! - circuit breaker counts are taken and given back by the worker that
//!   opens the connection or serves the request. The limits hold for the
//!   whole cluster, across workers, as Envoy's do (a shared count, not a
//!   share per worker).
//!
//! Every state change is also queued as an [`Event`] for the main thread to
//! log ([`Shared::drain_events`]); a full queue drops events (counted), it
//! never blocks a worker.

pub mod checker;

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::config::{CircuitBreakers, Cluster, EnvoyConfig, OutlierDetection};

/// The endpoint failed active health checking.
pub const FAILED_ACTIVE_HC: u8 = 1;
/// The endpoint is ejected by outlier detection.
pub const FAILED_OUTLIER_CHECK: u8 = 1 << 1;
/// No active health check has finished for the endpoint yet (it starts
/// unhealthy; its first success makes it healthy, as in Envoy).
pub const PENDING_ACTIVE_HC: u8 = 1 << 2;

/// Events kept for the main thread, at most.
const EVENT_QUEUE: usize = 1024;

/// A counter with several writers (workers).
#[derive(Debug, Default)]
pub struct SharedCounter(AtomicU64);

impl SharedCounter {
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cluster counters with several writers, named as Envoy names them.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub health_check_attempt: SharedCounter,
    pub health_check_success: SharedCounter,
    pub health_check_failure: SharedCounter,
    pub health_check_network_failure: SharedCounter,
    pub outlier_ejections_total: SharedCounter,
    pub outlier_ejections_overflow: SharedCounter,
    pub outlier_ejections_enforced_total: SharedCounter,
    pub outlier_ejections_detected_consecutive_5xx: SharedCounter,
    pub outlier_ejections_enforced_consecutive_5xx: SharedCounter,
    pub outlier_ejections_detected_consecutive_gateway_failure: SharedCounter,
    pub outlier_ejections_enforced_consecutive_gateway_failure: SharedCounter,
    pub outlier_ejections_detected_consecutive_local_origin_failure: SharedCounter,
    pub outlier_ejections_enforced_consecutive_local_origin_failure: SharedCounter,
    pub upstream_cx_overflow: SharedCounter,
    pub upstream_rq_pending_overflow: SharedCounter,
    pub upstream_rq_retry_overflow: SharedCounter,
}

/// One endpoint's shared state.
#[derive(Debug, Default)]
pub struct HostState {
    flags: AtomicU8,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// When the current ejection began, ms on [`Shared`]'s clock.
    ejected_at_ms: AtomicU64,
    /// Envoy's ejection multiplier: ejections not yet forgiven.
    ejections: AtomicU32,
}

impl HostState {
    /// The endpoint's flags ([`FAILED_ACTIVE_HC`], ...).
    pub fn flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }
    /// Whether the endpoint may take traffic (outside panic mode).
    pub fn healthy(&self) -> bool {
        self.flags() & (FAILED_ACTIVE_HC | FAILED_OUTLIER_CHECK) == 0
    }
}

/// A circuit breaker resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Upstream connections (`max_connections`).
    Connections,
    /// Requests waiting for a connection (`max_pending_requests`).
    Pending,
    /// Requests in flight (`max_requests`).
    Requests,
    /// Retries in flight (`max_retries` or the retry budget).
    Retries,
}

/// What a finished try told outlier detection about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head with this status.
    Status(u16),
    /// The connection could not be made, or timed out.
    ConnectFailure,
    /// The connection was reset or closed before a response head.
    Reset,
    /// No response head within the (per-try) timeout.
    Timeout,
    /// A connection was made (`tcp_proxy`): a local-origin success.
    Connected,
}

/// Why an endpoint's state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Active health checking marked it unhealthy.
    HealthCheckFailed,
    /// Active health checking marked it healthy.
    HealthCheckPassed,
    /// Ejected by outlier detection (and why, and for how long).
    Ejected {
        reason: EjectReason,
        duration: Duration,
    },
    /// An ejection was detected, but not enforced (`enforcing_*` or
    /// `max_ejection_percent`).
    EjectionNotEnforced { reason: EjectReason, overflow: bool },
    /// Back from an ejection.
    Unejected,
}

/// The outlier detector that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectReason {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
    ConsecutiveLocalOriginFailure,
}

impl EjectReason {
    /// Envoy's name of the detector.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::Consecutive5xx => "consecutive_5xx",
            EjectReason::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            EjectReason::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
        }
    }
}

/// An endpoint's state change, for the main thread's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub cluster: usize,
    pub endpoint: usize,
    pub change: Change,
}

/// One cluster's shared state.
#[derive(Debug)]
pub struct ClusterState {
    pub name: String,
    pub endpoints: Vec<SocketAddrV4>,
    pub hosts: Vec<HostState>,
    /// Moves whenever the set of endpoints that may take traffic changes.
    generation: AtomicU64,
    /// A request or connection was sent to the cluster (`no_traffic_interval`).
    traffic: AtomicBool,
    pub limits: CircuitBreakers,
    open: [AtomicU32; 4],
    outlier: Option<OutlierDetection>,
    /// `healthy_panic_threshold`, percent.
    panic_threshold: f64,
    /// An active health check is configured (endpoints start pending).
    pub health_checked: bool,
    pub counters: ClusterCounters,
}

/// Which endpoints a worker's balancer should use now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSet {
    /// The generation this was read at.
    pub generation: u64,
    /// The endpoints (indices) to balance over; all of them in panic mode.
    pub endpoints: Vec<usize>,
    /// Too few endpoints are healthy: every endpoint takes traffic.
    pub panic: bool,
}

impl ClusterState {
    fn new(cluster: &Cluster) -> ClusterState {
        let health_checked = cluster.health_check.is_some();
        let hosts = cluster
            .endpoints
            .iter()
            .map(|_| HostState {
                flags: AtomicU8::new(if health_checked {
                    FAILED_ACTIVE_HC | PENDING_ACTIVE_HC
                } else {
                    0
                }),
                ..HostState::default()
            })
            .collect();
        ClusterState {
            name: cluster.name.clone(),
            endpoints: cluster.endpoints.iter().map(|e| e.address).collect(),
            hosts,
            generation: AtomicU64::new(0),
            traffic: AtomicBool::new(false),
            limits: cluster.circuit_breakers.clone(),
            open: Default::default(),
            outlier: cluster.outlier_detection.clone(),
            panic_threshold: cluster.healthy_panic_threshold.0,
            health_checked,
            counters: ClusterCounters::default(),
        }
    }

    /// The generation of the endpoints' health.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Note that traffic was sent to the cluster.
    pub fn saw_traffic(&self) {
        if !self.traffic.load(Ordering::Relaxed) {
            self.traffic.store(true, Ordering::Relaxed);
        }
    }

    /// Whether traffic was ever sent to the cluster.
    pub fn had_traffic(&self) -> bool {
        self.traffic.load(Ordering::Relaxed)
    }

    /// The endpoints that may take traffic now, Envoy's way: the healthy ones,
    /// or all of them when fewer than `healthy_panic_threshold` percent are
    /// healthy (panic). With the threshold at 0 and none healthy, the set is
    /// empty.
    pub fn live(&self) -> LiveSet {
        let generation = self.generation();
        let healthy: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.hosts[i].healthy())
            .collect();
        let total = self.hosts.len();
        let percent = if total == 0 {
            0.0
        } else {
            healthy.len() as f64 * 100.0 / total as f64
        };
        if percent < self.panic_threshold {
            LiveSet {
                generation,
                endpoints: (0..total).collect(),
                panic: true,
            }
        } else {
            LiveSet {
                generation,
                endpoints: healthy,
                panic: false,
            }
        }
    }

    /// Endpoints healthy now (`membership_healthy`).
    pub fn healthy_count(&self) -> usize {
        self.hosts.iter().filter(|h| h.healthy()).count()
    }

    /// Endpoints ejected now (`outlier_detection.ejections_active`).
    pub fn ejected_count(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.flags() & FAILED_OUTLIER_CHECK != 0)
            .count()
    }

    fn limit(&self, r: Resource) -> u32 {
        match r {
            Resource::Connections => self.limits.max_connections,
            Resource::Pending => self.limits.max_pending_requests,
            Resource::Requests => self.limits.max_requests,
            Resource::Retries => match self.limits.retry_budget {
                // Envoy: a share of the requests active and pending, but at
                // least min_retry_concurrency.
                Some(b) => {
                    let load = self.open(Resource::Requests) + self.open(Resource::Pending);
                    let budget = (f64::from(load) * b.budget_percent.0 / 100.0) as u32;
                    budget.max(b.min_retry_concurrency)
                }
                None => self.limits.max_retries,
            },
        }
    }

    /// How much of `r` is taken now.
    pub fn open(&self, r: Resource) -> u32 {
        self.open[r as usize].load(Ordering::Relaxed)
    }

    /// Whether `r` is at its limit (`circuit_breakers.default.*_open`).
    pub fn is_open(&self, r: Resource) -> bool {
        self.open(r) >= self.limit(r)
    }

    /// Take one of `r` if below its limit; false (nothing taken) at the limit.
    pub fn try_acquire(&self, r: Resource) -> bool {
        let limit = self.limit(r);
        let slot = &self.open[r as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            if cur >= limit {
                return false;
            }
            match slot.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Take one of `r` whatever the limit (Envoy opens a first connection to
    /// an endpoint even at `max_connections`, so no request starves).
    pub fn acquire_anyway(&self, r: Resource) {
        self.open[r as usize].fetch_add(1, Ordering::AcqRel);
    }

    /// Give one of `r` back.
    pub fn release(&self, r: Resource) {
        let slot = &self.open[r as usize];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

/// The state all workers share. See the [module documentation](self).
#[derive(Debug)]
pub struct Shared {
    pub clusters: Vec<ClusterState>,
    epoch: Instant,
    events: Sender<Event>,
    receiver: Receiver<Event>,
    /// Events dropped because the queue was full.
    pub events_dropped: SharedCounter,
    /// Next outlier review per cluster, ms on this clock.
    next_review_ms: Vec<AtomicU64>,
    /// Process-wide switches (drain), the same for every configuration
    /// generation.
    control: Arc<Control>,
}

/// What the process asks of every worker and every configuration
/// generation at once.
#[derive(Debug, Default)]
pub struct Control {
    /// The process drains: listeners stop accepting, connections close
    /// after their current answer.
    draining: AtomicBool,
    /// The drain's time is over: reset what is still open.
    aborting: AtomicBool,
}

impl Shared {
    /// The shared state of `config`'s clusters.
    pub fn new(config: &EnvoyConfig) -> Shared {
        Shared::with_control(config, Arc::default())
    }

    /// The shared state of `config`'s clusters, with the process's switches
    /// (a configuration reload keeps them).
    pub fn with_control(config: &EnvoyConfig, control: Arc<Control>) -> Shared {
        let (events, receiver) = crossbeam_channel::bounded(EVENT_QUEUE);
        Shared {
            clusters: config.clusters.iter().map(ClusterState::new).collect(),
            epoch: Instant::now(),
            events,
            receiver,
            events_dropped: SharedCounter::default(),
            next_review_ms: config
                .clusters
                .iter()
                .map(|c| {
                    let ms = c
                        .outlier_detection
                        .as_ref()
                        .map_or(u64::MAX, |o| o.interval.as_millis().max(1) as u64);
                    AtomicU64::new(ms)
                })
                .collect(),
            control,
        }
    }

    /// The process's switches.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Take over the active health check verdicts of `old` (the state before
    /// a reload) for the endpoints both have, by cluster name and address,
    /// where both health-check the cluster: a reload does not send traffic to
    /// an endpoint known to be down, nor wait for a check to use one known
    /// to be up.
    pub fn inherit(&self, old: &Shared) {
        for c in &self.clusters {
            let Some(o) = old.clusters.iter().find(|o| o.name == c.name) else {
                continue;
            };
            if !(c.health_checked && o.health_checked) {
                continue;
            }
            for (addr, h) in c.endpoints.iter().zip(&c.hosts) {
                let Some(i) = o.endpoints.iter().position(|a| a == addr) else {
                    continue;
                };
                let Some(oh) = o.hosts.get(i) else {
                    continue;
                };
                let bits = FAILED_ACTIVE_HC | PENDING_ACTIVE_HC;
                let was = oh.flags() & bits;
                h.flags.fetch_and(!bits, Ordering::AcqRel);
                h.flags.fetch_or(was, Ordering::AcqRel);
            }
            c.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Reset every connection still open (the end of a drain).
    pub fn abort_all(&self) {
        self.control.aborting.store(true, Ordering::Release);
    }

    /// Whether connections are to be reset.
    pub fn aborting(&self) -> bool {
        self.control.aborting.load(Ordering::Relaxed)
    }

    /// Start draining (SIGTERM, the admin API); workers see it on their next
    /// loop.
    pub fn drain(&self) {
        self.control.draining.store(true, Ordering::Release);
    }

    /// Whether the process drains.
    pub fn draining(&self) -> bool {
        self.control.draining.load(Ordering::Relaxed)
    }

    /// Milliseconds since this state was made (the clock of ejections).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Queue an event for the log.
    pub fn event(&self, cluster: usize, endpoint: usize, change: Change) {
        let e = Event {
            cluster,
            endpoint,
            change,
        };
        if self.events.try_send(e).is_err() {
            self.events_dropped.add(1);
        }
    }

    /// The events queued since the last call (main thread).
    pub fn drain_events(&self) -> Vec<Event> {
        self.receiver.try_iter().collect()
    }

    /// Record an active health check's verdict on endpoint `ei` of cluster
    /// `ci`: the checker calls this when a threshold is crossed (or on the
    /// first result). Returns true if the endpoint's health changed.
    pub fn set_checked(&self, ci: usize, ei: usize, healthy: bool) -> bool {
        let Some(c) = self.clusters.get(ci) else {
            return false;
        };
        let Some(h) = c.hosts.get(ei) else {
            return false;
        };
        // Only the checker writes these two flags; outlier detection writes
        // its own, so the read-then-write below races with nothing.
        let before = h.flags();
        let pending = before & PENDING_ACTIVE_HC != 0;
        let was_failed = before & FAILED_ACTIVE_HC != 0;
        if healthy {
            h.flags
                .fetch_and(!(FAILED_ACTIVE_HC | PENDING_ACTIVE_HC), Ordering::AcqRel);
        } else {
            h.flags.fetch_or(FAILED_ACTIVE_HC, Ordering::AcqRel);
            h.flags.fetch_and(!PENDING_ACTIVE_HC, Ordering::AcqRel);
        }
        let changed = was_failed == healthy;
        if changed {
            c.generation.fetch_add(1, Ordering::AcqRel);
        }
        if changed || pending {
            let change = if healthy {
                Change::HealthCheckPassed
            } else {
                Change::HealthCheckFailed
            };
            self.event(ci, ei, change);
        }
        changed
    }

    /// Count a finished try on endpoint `ei` of cluster `ci` for outlier
    /// detection; may eject the endpoint. `roll` is a random number (the
    /// `enforcing_*` percentages).
    pub fn report(&self, ci: usize, ei: usize, outcome: Outcome, roll: u64) {
        let Some(c) = self.clusters.get(ci) else {
            return;
        };
        let Some(od) = &c.outlier else {
            return;
        };
        let Some(h) = c.hosts.get(ei) else {
            return;
        };
        let split = od.split_external_local_origin_errors;
        // Envoy maps a local-origin failure to a status when not split.
        let status = match outcome {
            Outcome::Status(s) => Some(s),
            Outcome::ConnectFailure | Outcome::Reset if !split => Some(503),
            Outcome::Timeout if !split => Some(504),
            _ => None,
        };
        match outcome {
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout if split => {
                let reason = EjectReason::ConsecutiveLocalOriginFailure;
                return self.count(&h.consecutive_local, (ci, ei), reason, roll);
            }
            Outcome::Status(_) | Outcome::Connected if split => reset(&h.consecutive_local),
            _ => {}
        }
        let Some(status) = status else {
            return;
        };
        if status >= 500 {
            let gateway = matches!(status, 502..=504);
            if gateway {
                let reason = EjectReason::ConsecutiveGatewayFailure;
                self.count(&h.consecutive_gateway, (ci, ei), reason, roll);
            } else {
                reset(&h.consecutive_gateway);
            }
            let reason = EjectReason::Consecutive5xx;
            self.count(&h.consecutive_5xx, (ci, ei), reason, roll >> 7);
        } else {
            reset(&h.consecutive_5xx);
            reset(&h.consecutive_gateway);
        }
    }

    /// One more failure in a row of `reason`'s kind on endpoint `ei`;
    /// eject it when the count reaches the detector's threshold.
    fn count(&self, count: &AtomicU32, (ci, ei): (usize, usize), reason: EjectReason, roll: u64) {
        let Some(od) = self.clusters.get(ci).and_then(|c| c.outlier.as_ref()) else {
            return;
        };
        let threshold = match reason {
            EjectReason::Consecutive5xx => od.consecutive_5xx,
            EjectReason::ConsecutiveGatewayFailure => od.consecutive_gateway_failure,
            EjectReason::ConsecutiveLocalOriginFailure => od.consecutive_local_origin_failure,
        };
        if count.fetch_add(1, Ordering::AcqRel) + 1 == threshold {
            self.eject(ci, ei, reason, roll);
        }
    }

    fn eject(&self, ci: usize, ei: usize, reason: EjectReason, roll: u64) {
        let c = &self.clusters[ci];
        let Some(od) = &c.outlier else {
            return;
        };
        let enforcing = match reason {
            EjectReason::Consecutive5xx => od.enforcing_consecutive_5xx,
            EjectReason::ConsecutiveGatewayFailure => od.enforcing_consecutive_gateway_failure,
            EjectReason::ConsecutiveLocalOriginFailure => {
                od.enforcing_consecutive_local_origin_failure
            }
        };
        let k = &c.counters;
        let (detected, enforced) = match reason {
            EjectReason::Consecutive5xx => (
                &k.outlier_ejections_detected_consecutive_5xx,
                &k.outlier_ejections_enforced_consecutive_5xx,
            ),
            EjectReason::ConsecutiveGatewayFailure => (
                &k.outlier_ejections_detected_consecutive_gateway_failure,
                &k.outlier_ejections_enforced_consecutive_gateway_failure,
            ),
            EjectReason::ConsecutiveLocalOriginFailure => (
                &k.outlier_ejections_detected_consecutive_local_origin_failure,
                &k.outlier_ejections_enforced_consecutive_local_origin_failure,
            ),
        };
        detected.add(1);
        let h = &c.hosts[ei];
        if h.flags() & FAILED_OUTLIER_CHECK != 0 {
            return;
        }
        if roll % 100 >= u64::from(enforcing) {
            self.event(
                ci,
                ei,
                Change::EjectionNotEnforced {
                    reason,
                    overflow: false,
                },
            );
            return;
        }
        // Envoy: at most max_ejection_percent of the endpoints, but always
        // at least one.
        let total = c.hosts.len();
        let allowed = (total * od.max_ejection_percent as usize / 100).max(1);
        if c.ejected_count() >= allowed {
            k.outlier_ejections_overflow.add(1);
            self.event(
                ci,
                ei,
                Change::EjectionNotEnforced {
                    reason,
                    overflow: true,
                },
            );
            return;
        }
        let before = h.flags.fetch_or(FAILED_OUTLIER_CHECK, Ordering::AcqRel);
        if before & FAILED_OUTLIER_CHECK != 0 {
            return; // another worker ejected it first
        }
        let n = h.ejections.fetch_add(1, Ordering::AcqRel) + 1;
        h.ejected_at_ms.store(self.now_ms(), Ordering::Release);
        reset(&h.consecutive_5xx);
        reset(&h.consecutive_gateway);
        reset(&h.consecutive_local);
        k.outlier_ejections_total.add(1);
        k.outlier_ejections_enforced_total.add(1);
        enforced.add(1);
        c.generation.fetch_add(1, Ordering::AcqRel);
        self.event(
            ci,
            ei,
            Change::Ejected {
                reason,
                duration: ejection_time(od, n),
            },
        );
    }

    /// Review ejections whose cluster's `interval` came (one caller: worker
    /// 0, every loop). An ejection ends once its time has passed (checked at
    /// intervals, as Envoy does); an endpoint left alone for an interval has
    /// one ejection forgiven (its next lasts less).
    pub fn tick(&self) {
        let now = self.now_ms();
        for (ci, c) in self.clusters.iter().enumerate() {
            let Some(od) = &c.outlier else {
                continue;
            };
            let next = &self.next_review_ms[ci];
            if now < next.load(Ordering::Relaxed) {
                continue;
            }
            next.store(
                now + od.interval.as_millis().max(1) as u64,
                Ordering::Relaxed,
            );
            for (ei, h) in c.hosts.iter().enumerate() {
                let n = h.ejections.load(Ordering::Acquire);
                if h.flags() & FAILED_OUTLIER_CHECK != 0 {
                    let at = h.ejected_at_ms.load(Ordering::Acquire);
                    if now >= at + ejection_time(od, n).as_millis() as u64 {
                        h.flags.fetch_and(!FAILED_OUTLIER_CHECK, Ordering::AcqRel);
                        c.generation.fetch_add(1, Ordering::AcqRel);
                        self.event(ci, ei, Change::Unejected);
                    }
                } else if n > 0 {
                    let _ = h
                        .ejections
                        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| v.checked_sub(1));
                }
            }
        }
    }

    /// Every shared counter and gauge as (Envoy stat name, value).
    pub fn values(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for c in &self.clusters {
            let p = format!("cluster.{}", c.name);
            let k = &c.counters;
            let mut push = |name: &str, x: u64| v.push((format!("{p}.{name}"), x));
            push("membership_total", c.hosts.len() as u64);
            push("membership_healthy", c.healthy_count() as u64);
            push("upstream_cx_overflow", k.upstream_cx_overflow.get());
            push(
                "upstream_rq_pending_overflow",
                k.upstream_rq_pending_overflow.get(),
            );
            push(
                "upstream_rq_retry_overflow",
                k.upstream_rq_retry_overflow.get(),
            );
            push(
                "upstream_rq_pending_active",
                u64::from(c.open(Resource::Pending)),
            );
            push("upstream_rq_active", u64::from(c.open(Resource::Requests)));
            for (name, r) in [
                ("cx_open", Resource::Connections),
                ("rq_pending_open", Resource::Pending),
                ("rq_open", Resource::Requests),
                ("rq_retry_open", Resource::Retries),
            ] {
                push(
                    &format!("circuit_breakers.default.{name}"),
                    u64::from(c.is_open(r)),
                );
            }
            if c.health_checked {
                push("health_check.attempt", k.health_check_attempt.get());
                push("health_check.success", k.health_check_success.get());
                push("health_check.failure", k.health_check_failure.get());
                push(
                    "health_check.network_failure",
                    k.health_check_network_failure.get(),
                );
                push("health_check.healthy", c.healthy_count() as u64);
            }
            if c.outlier.is_some() {
                push(
                    "outlier_detection.ejections_active",
                    c.ejected_count() as u64,
                );
                for (name, x) in [
                    ("ejections_total", &k.outlier_ejections_total),
                    ("ejections_overflow", &k.outlier_ejections_overflow),
                    (
                        "ejections_enforced_total",
                        &k.outlier_ejections_enforced_total,
                    ),
                    (
                        "ejections_detected_consecutive_5xx",
                        &k.outlier_ejections_detected_consecutive_5xx,
                    ),
                    (
                        "ejections_enforced_consecutive_5xx",
                        &k.outlier_ejections_enforced_consecutive_5xx,
                    ),
                    (
                        "ejections_detected_consecutive_gateway_failure",
                        &k.outlier_ejections_detected_consecutive_gateway_failure,
                    ),
                    (
                        "ejections_enforced_consecutive_gateway_failure",
                        &k.outlier_ejections_enforced_consecutive_gateway_failure,
                    ),
                    (
                        "ejections_detected_consecutive_local_origin_failure",
                        &k.outlier_ejections_detected_consecutive_local_origin_failure,
                    ),
                    (
                        "ejections_enforced_consecutive_local_origin_failure",
                        &k.outlier_ejections_enforced_consecutive_local_origin_failure,
                    ),
                ] {
                    push(&format!("outlier_detection.{name}"), x.get());
                }
            }
        }
        v
    }
}

/// Set a consecutive-failure count to 0, without a write when it is 0 already
/// (successes are the common case; they should not bounce the cache line).
fn reset(count: &AtomicU32) {
    if count.load(Ordering::Relaxed) != 0 {
        count.store(0, Ordering::Relaxed);
    }
}

/// How long an endpoint's `n`-th ejection lasts.
pub fn ejection_time(od: &OutlierDetection, n: u32) -> Duration {
    od.base_ejection_time
        .saturating_mul(n.max(1))
        .min(od.max_ejection_time.max(od.base_ejection_time))
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.change {
            Change::HealthCheckFailed => f.write_str("health check failed: unhealthy"),
            Change::HealthCheckPassed => f.write_str("health check passed: healthy"),
            Change::Ejected { reason, duration } => write!(
                f,
                "ejected by outlier detection ({}) for {} ms",
                reason.as_str(),
                duration.as_millis()
            ),
            Change::EjectionNotEnforced { reason, overflow } => write!(
                f,
                "outlier detected ({}), not ejected: {}",
                reason.as_str(),
                if overflow {
                    "max_ejection_percent reached"
                } else {
                    "not enforced (enforcing_* percentage)"
                }
            ),
            Change::Unejected => f.write_str("ejection ended: back in rotation"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, Percent, RetryBudget};

    fn config(n: usize, od: Option<OutlierDetection>, cb: CircuitBreakers) -> EnvoyConfig {
        EnvoyConfig {
            clusters: vec![Cluster {
                name: "c".to_owned(),
                connect_timeout: Duration::from_secs(1),
                lb_policy: Default::default(),
                endpoints: (0..n)
                    .map(|i| Endpoint {
                        address: SocketAddrV4::new([10, 0, 0, i as u8 + 1].into(), 80),
                        weight: 1,
                    })
                    .collect(),
                max_requests_per_connection: None,
                upstream_idle_timeout: None,
                health_check: None,
                outlier_detection: od,
                circuit_breakers: cb,
                healthy_panic_threshold: Percent(50.0),
            }],
            ..EnvoyConfig::default()
        }
    }

    fn od() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_failure: 2,
            enforcing_consecutive_gateway_failure: 100,
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        }
    }

    fn ejected(s: &Shared, e: usize) -> bool {
        s.clusters[0].hosts[e].flags() & FAILED_OUTLIER_CHECK != 0
    }

    #[test]
    fn consecutive_5xx_ejects_once_and_a_success_resets_the_count() {
        let s = Shared::new(&config(3, Some(od()), CircuitBreakers::default()));
        for status in [500, 500, 200, 500, 500] {
            s.report(0, 0, Outcome::Status(status), 0);
        }
        assert!(!ejected(&s, 0), "a 200 in between resets the count");
        let g = s.clusters[0].generation();
        s.report(0, 0, Outcome::Status(500), 0);
        assert!(ejected(&s, 0));
        assert_eq!(s.clusters[0].generation(), g + 1);
        assert_eq!(
            s.clusters[0]
                .counters
                .outlier_ejections_enforced_consecutive_5xx
                .get(),
            1
        );
        let events = s.drain_events();
        assert!(
            matches!(
                events.as_slice(),
                [Event {
                    endpoint: 0,
                    change: Change::Ejected {
                        reason: EjectReason::Consecutive5xx,
                        ..
                    },
                    ..
                }]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn gateway_failures_and_local_origin_failures_count_as_envoy_counts_them() {
        // Not split: a connect failure counts as a 503, a gateway failure.
        let s = Shared::new(&config(3, Some(od()), CircuitBreakers::default()));
        s.report(0, 1, Outcome::ConnectFailure, 0);
        s.report(0, 1, Outcome::Timeout, 0);
        assert!(ejected(&s, 1));
        assert_eq!(
            s.clusters[0]
                .counters
                .outlier_ejections_enforced_consecutive_gateway_failure
                .get(),
            1
        );
        // Split: local-origin failures have their own count, and 5xx theirs.
        let split = OutlierDetection {
            split_external_local_origin_errors: true,
            consecutive_local_origin_failure: 2,
            ..od()
        };
        let s = Shared::new(&config(3, Some(split), CircuitBreakers::default()));
        s.report(0, 2, Outcome::Reset, 0);
        s.report(0, 2, Outcome::Status(500), 0);
        s.report(0, 2, Outcome::Status(500), 0);
        assert!(!ejected(&s, 2), "the response reset the local-origin count");
        s.report(0, 2, Outcome::ConnectFailure, 0);
        s.report(0, 2, Outcome::ConnectFailure, 0);
        assert!(ejected(&s, 2));
    }

    #[test]
    fn enforcing_and_max_ejection_percent_limit_ejections() {
        let never = OutlierDetection {
            enforcing_consecutive_5xx: 0,
            ..od()
        };
        let s = Shared::new(&config(3, Some(never), CircuitBreakers::default()));
        for _ in 0..3 {
            s.report(0, 0, Outcome::Status(500), 0);
        }
        assert!(!ejected(&s, 0));
        assert_eq!(
            s.clusters[0]
                .counters
                .outlier_ejections_detected_consecutive_5xx
                .get(),
            1
        );
        // 10% of 3 endpoints is 0, but one may always be ejected.
        let ten = OutlierDetection {
            max_ejection_percent: 10,
            ..od()
        };
        let s = Shared::new(&config(3, Some(ten), CircuitBreakers::default()));
        for e in 0..2 {
            for _ in 0..3 {
                s.report(0, e, Outcome::Status(500), 0);
            }
        }
        assert!(ejected(&s, 0));
        assert!(!ejected(&s, 1));
        assert_eq!(s.clusters[0].counters.outlier_ejections_overflow.get(), 1);
    }

    #[test]
    fn an_ejection_ends_at_the_review_after_its_time_and_grows_when_repeated() {
        let quick = OutlierDetection {
            interval: Duration::from_millis(1),
            base_ejection_time: Duration::from_millis(30),
            ..od()
        };
        assert_eq!(ejection_time(&quick, 2), Duration::from_millis(60));
        let s = Shared::new(&config(3, Some(quick), CircuitBreakers::default()));
        for _ in 0..3 {
            s.report(0, 0, Outcome::Status(500), 0);
        }
        s.tick();
        assert!(ejected(&s, 0), "30 ms have not passed");
        std::thread::sleep(Duration::from_millis(40));
        s.tick();
        assert!(!ejected(&s, 0));
        for _ in 0..3 {
            s.report(0, 0, Outcome::Status(500), 0);
        }
        let last = s.drain_events().into_iter().last().map(|e| e.change);
        assert_eq!(
            last,
            Some(Change::Ejected {
                reason: EjectReason::Consecutive5xx,
                duration: Duration::from_millis(60)
            })
        );
    }

    #[test]
    fn circuit_breakers_count_across_callers_and_the_retry_budget_scales() {
        let cb = CircuitBreakers {
            max_pending_requests: 2,
            ..CircuitBreakers::default()
        };
        let s = Shared::new(&config(1, None, cb));
        let c = &s.clusters[0];
        assert!(c.try_acquire(Resource::Pending));
        assert!(c.try_acquire(Resource::Pending));
        assert!(!c.try_acquire(Resource::Pending));
        assert!(c.is_open(Resource::Pending));
        c.release(Resource::Pending);
        assert!(c.try_acquire(Resource::Pending));
        // Budget: 20% of 20 requests in flight is 4 retries (at least 3).
        let budget = CircuitBreakers {
            retry_budget: Some(RetryBudget {
                budget_percent: Percent(20.0),
                min_retry_concurrency: 3,
            }),
            ..CircuitBreakers::default()
        };
        let s = Shared::new(&config(1, None, budget));
        let c = &s.clusters[0];
        let taken = (0..10).filter(|_| c.try_acquire(Resource::Retries)).count();
        assert_eq!(taken, 3, "the minimum with nothing in flight");
        for _ in 0..20 {
            c.acquire_anyway(Resource::Requests);
        }
        assert!(c.try_acquire(Resource::Retries), "4 allowed now");
        assert!(!c.try_acquire(Resource::Retries));
    }

    #[test]
    fn active_checks_start_pending_and_flip_the_generation_on_change() {
        let mut cfg = config(2, None, CircuitBreakers::default());
        cfg.clusters[0].health_check = Some(crate::config::HealthCheck {
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            interval_jitter: Duration::ZERO,
            interval_jitter_percent: 0,
            initial_jitter: Duration::ZERO,
            unhealthy_threshold: 2,
            healthy_threshold: 2,
            no_traffic_interval: Duration::from_secs(60),
            unhealthy_interval: None,
            healthy_edge_interval: None,
            unhealthy_edge_interval: None,
            kind: crate::config::HealthCheckKind::Tcp(Default::default()),
        });
        let s = Shared::new(&cfg);
        let c = &s.clusters[0];
        assert_eq!(c.healthy_count(), 0);
        assert!(c.live().panic, "none healthy: panic, all endpoints");
        assert!(s.set_checked(0, 0, true));
        assert!(!s.set_checked(0, 0, true));
        assert!(
            !s.set_checked(0, 1, false),
            "a pending endpoint stays unhealthy"
        );
        assert_eq!(c.hosts[1].flags(), FAILED_ACTIVE_HC);
        let live = c.live();
        assert_eq!((live.endpoints, live.panic), (vec![0], false));
        let changes: Vec<Change> = s.drain_events().into_iter().map(|e| e.change).collect();
        assert_eq!(
            changes,
            [Change::HealthCheckPassed, Change::HealthCheckFailed]
        );
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;
    use crate::config::{Endpoint, HealthCheck, HealthCheckKind, Percent};

    fn config(ports: &[u16]) -> EnvoyConfig {
        EnvoyConfig {
            clusters: vec![Cluster {
                name: "c".to_owned(),
                connect_timeout: Duration::from_secs(1),
                lb_policy: Default::default(),
                endpoints: ports
                    .iter()
                    .map(|p| Endpoint {
                        address: SocketAddrV4::new([10, 0, 0, 1].into(), *p),
                        weight: 1,
                    })
                    .collect(),
                max_requests_per_connection: None,
                upstream_idle_timeout: None,
                health_check: Some(HealthCheck {
                    timeout: Duration::from_secs(1),
                    interval: Duration::from_secs(1),
                    interval_jitter: Duration::ZERO,
                    interval_jitter_percent: 0,
                    initial_jitter: Duration::ZERO,
                    unhealthy_threshold: 1,
                    healthy_threshold: 1,
                    no_traffic_interval: Duration::from_secs(1),
                    unhealthy_interval: None,
                    healthy_edge_interval: None,
                    unhealthy_edge_interval: None,
                    kind: HealthCheckKind::Tcp(Default::default()),
                }),
                outlier_detection: None,
                circuit_breakers: CircuitBreakers::default(),
                healthy_panic_threshold: Percent(50.0),
            }],
            ..EnvoyConfig::default()
        }
    }

    #[test]
    fn a_reload_keeps_the_verdicts_of_the_endpoints_it_keeps() {
        let old = Shared::new(&config(&[1, 2]));
        old.set_checked(0, 0, true);
        old.set_checked(0, 1, false);
        let new = Shared::with_control(&config(&[2, 1, 3]), old.control().clone());
        new.inherit(&old);
        let flags: Vec<u8> = new.clusters[0].hosts.iter().map(HostState::flags).collect();
        assert_eq!(
            flags,
            [FAILED_ACTIVE_HC, 0, FAILED_ACTIVE_HC | PENDING_ACTIVE_HC],
            "port 2 failed, port 1 passed, port 3 is new"
        );
        old.drain();
        assert!(new.draining(), "one switch for both generations");
    }
}
