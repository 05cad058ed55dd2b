//! The application of `zerohop loadgen`: a stateful HTTP/1.1 load generator
//! (in the manner of TRex ASTF) with emulated clients and emulated upstream
//! servers on the same worker, on zerohop's own TCP stack.
//!
//! One [`Loadgen`] is the [`App`] of one worker's [`Stack`]; the runtime
//! loop calls `advance`, [`App::poll`], input and flush as for the proxy.
//! All workers share one [`Shared`], which the main thread reads for the
//! progress lines and the final [`Report`].
//!
//! # Clients and servers
//!
//! Every connection's word ([`Stack::set_user`]) says whose it is: a client
//! ([`CLIENT_TAG`]) or a server ([`SERVER_TAG`]) connection, and the index
//! of its slot in that side's slab (a `Vec` with a free list), so an event
//! costs one index, never a map lookup. The tags stay below bit 53, where
//! the l7 proxy keeps its generations ([`crate::GEN_SHIFT`]).
//!
//! - **Clients** open `connections` connections to the target (at most
//!   [`MAX_OPENS_PER_POLL`] per loop), send `GET path` (or a `POST` with a
//!   `Content-Length` body of a fill pattern) with `Host`, and parse the
//!   response (`http1::ResponseParser`: head by httparse, body by
//!   `Content-Length`, chunked, or the close). One request is in flight per
//!   connection; connections are kept alive unless the response says
//!   `Connection: close` (then the client closes and opens a new one) or the
//!   plan wants a new connection per request (the client closes with a FIN
//!   after the response). A response is good only if its status is 2xx, it
//!   frames completely, and, when the servers are ours, its body has the
//!   length they send. Everything else is an error of one kind ([`Report`]):
//!   a broken proxy shows as errors, never as speed.
//! - **Servers** listen on the plan's addresses ([`Loadgen::listens`]),
//!   parse requests (pipelined ones too, `http1::RequestParser`), and
//!   answer each with `200` and `response_body` bytes, written as send space
//!   frees so that a 1 MiB body streams through a 64 KiB socket buffer. A
//!   malformed request gets `400` and the connection closes after it.
//!
//! # Schedule
//!
//! - Closed loop: a connection sends its next request as soon as the
//!   previous response is complete; latency runs from the send.
//! - Open loop (`rate`): request *k* is due at `phase + k / rate` from the
//!   start (the phase spreads workers over one interval). A due request goes
//!   out on an idle connection (a queue of them, not a walk over all);
//!   without one it waits in a backlog, which is only a pair of indices into
//!   the schedule, so it costs no memory. Latency runs from the *scheduled*
//!   time, so a stalled proxy cannot hide its stall by slowing the
//!   generator down (coordinated omission, corrected as wrk2 does). A
//!   request that waited longer than `timeout` is a timeout without being
//!   sent. Rate, schedule and backlog are per worker.
//! - A new connection per request: latency runs from the `connect()` call
//!   (or the scheduled time, in the open loop) to the end of the response.
//!
//! Every request in flight has a deadline `timeout` after its start; past
//! it the request is a timeout error (a connect error before the handshake)
//! and its connection is aborted.
//!
//! # Counting window and end
//!
//! The clock starts at the first poll (µs, from [`std::time::Instant`]: the
//! stack's clock has only milliseconds). The first `warmup` is traffic that
//! is not counted; the window is `[warmup, warmup + duration)`. A response
//! or an error counts in the report if it completed (or was found) in the
//! window, a request if it started in it, a connection if it was
//! established in it; the progress lines count everything. At the end of
//! the window no new request starts (open-loop requests still waiting are
//! dropped, counted as started but unsent: their answers would fall
//! outside the window), idle client connections close, and those still
//! busy get `timeout` more before they are aborted. The worker has
//! finished once its last client connection is gone; its servers go on
//! answering until the runtime stops.
//!
//! # Histograms
//!
//! Latencies go into `hdrhistogram` histograms (µs, 1 µs .. 60 s, 3
//! significant digits): bounded memory, mergeable. Each worker records into
//! its own and hands them to [`Shared`] about every 100 ms with `try_lock`
//! (never waiting on the main thread), and once more, waiting, at its end.

mod client;
mod http1;
mod report;
mod server;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zerohop_tcpstack::{App, Close, ConnId, Listen, Stack};

pub use report::{ErrorCounts, LatencySummary, Mode, Phase, Progress, Report, Shared};

use client::ClientSlot;
use report::{Count, WorkerCounts};
use server::ServerSlot;

/// Connection word tag of the emulated clients' connections.
pub const CLIENT_TAG: u64 = 1 << 52;
/// Connection word tag of the emulated servers' connections.
pub const SERVER_TAG: u64 = 1 << 51;
/// The slot index in a connection word.
const SLOT_MASK: u64 = u32::MAX as u64;

/// Most client connections opened in one loop.
pub const MAX_OPENS_PER_POLL: u32 = 128;

/// Most concurrent client connections per worker (a slot index is 32 bits;
/// the stack's table is far smaller anyway).
const MAX_CONNECTIONS: u32 = 1 << 24;

/// After a connection could not be opened, no new one is tried for this
/// long, µs (a dead target costs a few errors per slot and second, not one
/// per loop).
const CONNECT_RETRY_US: u64 = 10_000;

/// How often a worker hands its counts to [`Shared`], µs.
const MERGE_EVERY_US: u64 = 100_000;

/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Period of the body fill pattern.
const FILL_PERIOD: usize = 64;

/// Most body bytes handed to one `send` call.
const FILL_CHUNK: usize = 16 * 1024;

/// What a run does, the same on every worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The proxy listener the emulated clients connect to.
    pub target: SocketAddrV4,
    /// `Host` header value.
    pub host: String,
    /// Request path.
    pub path: String,
    /// Emulated upstream servers: each address is listened on; may be empty
    /// (then the target is some other server).
    pub servers: Vec<SocketAddrV4>,
    /// Concurrent client connections per worker.
    pub connections: u32,
    /// Open loop: requests/s per worker on a fixed schedule; `None` = closed
    /// loop (each connection sends its next request when the previous
    /// answer is complete).
    pub rate: Option<f64>,
    /// Each request on a fresh connection, closed by the client (FIN) after
    /// its response.
    pub new_connection_per_request: bool,
    /// Bytes of POST body (0 = GET without body).
    pub request_body: usize,
    /// Bytes of body the emulated servers answer with, and what the clients
    /// expect when `servers` is not empty.
    pub response_body: usize,
    /// Measured time, after warmup.
    pub duration: Duration,
    /// Traffic that is not counted.
    pub warmup: Duration,
    /// A request with no complete response after this is an error and its
    /// connection is aborted.
    pub timeout: Duration,
}

/// Return true if `s` is a token of visible ASCII with no space.
fn visible(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

impl Plan {
    /// Check the plan.
    ///
    /// # Errors
    /// What is wrong, in the words of the command-line options.
    pub fn check(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("connections must be at least 1".to_owned());
        }
        if self.connections > MAX_CONNECTIONS {
            return Err(format!(
                "connections {} per worker is too many; the most is {MAX_CONNECTIONS}",
                self.connections
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!(
                    "rate must be a positive number of requests/s, not {rate}"
                ));
            }
            if rate > 1e9 {
                return Err(format!(
                    "rate {rate} requests/s per worker is beyond any NIC; the most is 1e9"
                ));
            }
        }
        if !self.path.starts_with('/') || !visible(&self.path) {
            return Err(format!(
                "path {:?} must start with '/' and have no spaces or control characters",
                self.path
            ));
        }
        if self.host.is_empty() || !visible(&self.host) {
            return Err(format!(
                "host {:?} must be a non-empty Host header value without spaces",
                self.host
            ));
        }
        if self.target.port() == 0 {
            return Err(format!("target {} needs a port", self.target));
        }
        for (i, s) in self.servers.iter().enumerate() {
            if s.port() == 0 {
                return Err(format!("server {s} needs a port"));
            }
            if self.servers[..i].contains(s) {
                return Err(format!("server {s} is listed twice"));
            }
        }
        if self.duration.is_zero() {
            return Err("duration must be longer than 0".to_owned());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be longer than 0".to_owned());
        }
        Ok(())
    }

    /// Return the request head the clients send.
    fn request_head(&self) -> Vec<u8> {
        let mut r = if self.request_body > 0 {
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zerohop-loadgen\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
                self.path, self.host, self.request_body
            )
        } else {
            format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zerohop-loadgen\r\n",
                self.path, self.host
            )
        };
        r.push_str("\r\n");
        r.into_bytes()
    }
}

/// Return `d` in µs (saturating).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The worker's clock, µs since the first poll.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// `Instant`: the real runs.
    Monotonic(Option<Instant>),
    /// The stack's milliseconds: the simulated networks of the tests.
    #[cfg(test)]
    Stack(Option<u64>),
}

/// The open-loop schedule: request `k` is due at `phase + k * interval`;
/// those in `[sent, next)` are due and wait for a connection (the backlog).
#[derive(Debug, Clone, Copy)]
struct Schedule {
    interval_us: f64,
    phase_us: f64,
    /// The first request not due yet.
    next: u64,
    /// The first due request not sent yet.
    sent: u64,
    /// Requests below this were counted as delayed already.
    counted_delayed: u64,
}

impl Schedule {
    /// Return when request `k` is due, µs since the start.
    fn due(&self, k: u64) -> u64 {
        (self.phase_us + k as f64 * self.interval_us) as u64
    }

    /// Make every request due by `now` (and before `end`) wait.
    fn advance(&mut self, now: u64, end: u64) {
        loop {
            let due = self.due(self.next);
            if due > now || due >= end {
                break;
            }
            self.next += 1;
        }
    }

    /// Return the requests waiting.
    fn backlog(&self) -> u64 {
        self.next - self.sent
    }
}

/// The state of the run on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Requests start (warmup and window).
    Running,
    /// The window is over: idle connections were closed, busy ones finish.
    Draining,
    /// Stragglers were aborted; waiting for the last closes.
    Aborted,
    /// Every client connection is gone; [`Shared`] was told.
    Finished,
}

/// One worker's emulated clients and servers. See the [module
/// documentation](self).
pub struct Loadgen {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    clock: Clock,
    /// The counting window, µs since the start.
    window_us: (u64, u64),
    /// `plan.timeout`, µs.
    timeout_us: u64,
    /// The clients' request head.
    request: Vec<u8>,
    /// Head plus body bytes of one request.
    request_len: usize,
    /// The body fill pattern, [`FILL_CHUNK`] + [`FILL_PERIOD`] bytes.
    fill: Vec<u8>,
    /// The servers' reply heads: keep-alive, and the last before a close.
    ok_head: Vec<u8>,
    ok_close_head: Vec<u8>,
    clients: Vec<ClientSlot>,
    client_free: Vec<u32>,
    /// Idle client connections (slot, generation), oldest first; entries of
    /// slots that moved on since are skipped.
    idle: VecDeque<(u32, u32)>,
    /// Client slots connecting, idle or busy (the concurrency).
    open: u32,
    /// Client slots in use, closing ones included.
    live: u32,
    servers: Vec<ServerSlot>,
    server_free: Vec<u32>,
    /// The open-loop schedule.
    schedule: Option<Schedule>,
    /// Where reads land.
    scratch: Vec<u8>,
    counts: WorkerCounts,
    next_merge_us: u64,
    /// No connection is opened before this, µs.
    connect_hold_until: u64,
    /// Connections opened in this loop.
    opens_this_poll: u32,
    stage: Stage,
    /// Test knob: servers close their connection after this many bytes of a
    /// response.
    #[cfg(test)]
    truncate_after: Option<usize>,
}

impl Loadgen {
    /// Worker `worker`'s clients and servers running `plan`; the worker
    /// index and `seed` place its open-loop schedule within one interval.
    pub fn new(plan: Arc<Plan>, shared: Arc<Shared>, worker: usize, seed: u64) -> Loadgen {
        let request = plan.request_head();
        let request_len = request.len().saturating_add(plan.request_body);
        let fill = (0..FILL_CHUNK + FILL_PERIOD)
            .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"[i % 64])
            .collect();
        let ok_head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            plan.response_body
        );
        let ok_close_head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            plan.response_body
        );
        let schedule = plan.rate.map(|rate| {
            let interval_us = 1e6 / rate;
            // Workers spread over one interval; the seed places this one
            // within its share.
            let workers = shared.workers().max(1) as f64;
            let jitter = (seed % 1024) as f64 / 1024.0;
            Schedule {
                interval_us,
                phase_us: interval_us * ((worker as f64 % workers) + jitter) / workers,
                next: 0,
                sent: 0,
                counted_delayed: 0,
            }
        });
        let warmup = micros(plan.warmup);
        Loadgen {
            window_us: (warmup, warmup.saturating_add(micros(plan.duration))),
            timeout_us: micros(plan.timeout),
            plan,
            shared,
            clock: Clock::Monotonic(None),
            request,
            request_len,
            fill,
            ok_head: ok_head.into_bytes(),
            ok_close_head: ok_close_head.into_bytes(),
            clients: Vec::new(),
            client_free: Vec::new(),
            idle: VecDeque::new(),
            open: 0,
            live: 0,
            servers: Vec::new(),
            server_free: Vec::new(),
            schedule,
            scratch: vec![0; READ_CHUNK],
            counts: WorkerCounts::new(),
            next_merge_us: MERGE_EVERY_US,
            connect_hold_until: 0,
            opens_this_poll: 0,
            stage: Stage::Running,
            #[cfg(test)]
            truncate_after: None,
        }
    }

    /// Return the server addresses, for [`Stack::listen`] before the first
    /// loop (ids in order, as [`App::accepted`] reports them).
    pub fn listens(&self) -> Vec<Listen> {
        self.plan
            .servers
            .iter()
            .enumerate()
            .map(|(i, &address)| Listen {
                address,
                id: i as u32,
            })
            .collect()
    }

    /// Use the stack's millisecond clock (simulated networks).
    #[cfg(test)]
    fn with_stack_clock(mut self) -> Loadgen {
        self.clock = Clock::Stack(None);
        self
    }

    /// Return µs since the first poll (0 before it).
    fn now(&self, tcp: &Stack) -> u64 {
        match self.clock {
            Clock::Monotonic(Some(t0)) => micros(t0.elapsed()),
            #[cfg(test)]
            Clock::Stack(Some(ms)) => tcp.now_ms().saturating_sub(ms).saturating_mul(1000),
            _ => {
                let _ = tcp;
                0
            }
        }
    }

    /// Start the clock, once.
    fn start_clock(&mut self, tcp: &Stack) {
        match &mut self.clock {
            Clock::Monotonic(t0 @ None) => *t0 = Some(Instant::now()),
            #[cfg(test)]
            Clock::Stack(t0 @ None) => *t0 = Some(tcp.now_ms()),
            _ => {}
        }
        let _ = tcp;
    }

    /// Return when the window starts, µs.
    fn window_start(&self) -> u64 {
        self.window_us.0
    }

    /// Return when the window ends, µs.
    fn window_end(&self) -> u64 {
        self.window_us.1
    }

    /// Return `plan.timeout` in µs.
    fn timeout_us(&self) -> u64 {
        self.timeout_us
    }

    /// Return true if new requests may start.
    fn running(&self) -> bool {
        self.stage == Stage::Running
    }

    /// Count `n` of `what` at `at` µs: in everything, and in the window if
    /// `at` is in it.
    fn count(&mut self, what: Count, n: u64, at: u64) {
        let i = what as usize;
        self.counts.all[i] += n;
        if self.window_start() <= at && at < self.window_end() {
            self.counts.window[i] += n;
        }
    }

    /// Record a good response of `latency` µs completed at `at`.
    fn record(&mut self, latency: u64, at: u64) {
        self.counts.recent.record(latency);
        if self.window_start() <= at && at < self.window_end() {
            self.counts.window_latency.record(latency);
        }
    }

    /// Set `conn`'s deadline `at` µs (of this clock), on the stack's ms
    /// clock, rounded up.
    fn set_deadline_us(&self, tcp: &mut Stack, conn: ConnId, at: u64, now: u64) {
        let wait_ms = at.saturating_sub(now).div_ceil(1000);
        tcp.set_deadline(conn, Some(tcp.now_ms().saturating_add(wait_ms.max(1))));
    }

    /// Open-loop scheduling for this loop: make due requests wait, time out
    /// those that waited too long, send what idle connections (or new ones)
    /// can take.
    fn run_schedule(&mut self, tcp: &mut Stack, now: u64) {
        self.advance_schedule(now);
        self.dispatch(tcp, now);
        if let Some(s) = &mut self.schedule {
            let backlog = s.backlog();
            self.counts.backlog_max = self.counts.backlog_max.max(backlog);
            let from = s.counted_delayed.max(s.sent);
            let delayed = s.next.saturating_sub(from);
            let first = s.due(from);
            s.counted_delayed = s.next;
            if delayed > 0 {
                self.count(Count::Delayed, delayed, first);
            }
        }
    }

    /// Make the requests due by `now` wait, and count those that waited
    /// `timeout` as timeouts, unsent.
    fn advance_schedule(&mut self, now: u64) {
        let Some(mut s) = self.schedule else {
            return;
        };
        s.advance(now, self.window_end());
        while s.sent < s.next && s.due(s.sent).saturating_add(self.timeout_us()) <= now {
            let due = s.due(s.sent);
            self.count(Count::Requests, 1, due);
            self.count(Count::Timeout, 1, now);
            s.sent += 1;
        }
        self.schedule = Some(s);
    }

    /// Take the next due request off the backlog: its scheduled time.
    fn take_due(&mut self, now: u64) -> Option<u64> {
        if !self.running() {
            return None;
        }
        self.advance_schedule(now);
        let s = self.schedule.as_mut()?;
        if s.sent == s.next {
            return None;
        }
        let due = s.due(s.sent);
        s.sent += 1;
        Some(due)
    }

    /// Return true if the open-loop backlog holds a request.
    fn has_due(&self) -> bool {
        self.schedule.is_some_and(|s| s.sent < s.next)
    }

    /// Send backlogged requests on idle connections, or on new ones (a
    /// connection per request).
    fn dispatch(&mut self, tcp: &mut Stack, now: u64) {
        if self.plan.new_connection_per_request {
            while self.has_due()
                && self.open < self.plan.connections
                && self.opens_this_poll < MAX_OPENS_PER_POLL
                && now >= self.connect_hold_until
            {
                let Some(due) = self.take_due(now) else {
                    break;
                };
                self.count(Count::Requests, 1, due);
                if !self.open_client(tcp, now, Some(due)) {
                    break;
                }
            }
            return;
        }
        while self.has_due() {
            let Some(slot) = self.pop_idle() else {
                break;
            };
            let Some(due) = self.take_due(now) else {
                self.push_idle(slot);
                break;
            };
            self.start_request(tcp, slot, due, now);
        }
    }

    /// Open connections up to the concurrency (keep-alive, or a connection
    /// per request in the closed loop).
    fn fill_connections(&mut self, tcp: &mut Stack, now: u64) {
        if self.plan.new_connection_per_request && self.schedule.is_some() {
            return; // opened per due request by `dispatch`
        }
        while self.open < self.plan.connections
            && self.opens_this_poll < MAX_OPENS_PER_POLL
            && now >= self.connect_hold_until
        {
            let request = if self.plan.new_connection_per_request {
                self.count(Count::Requests, 1, now);
                Some(now)
            } else {
                None
            };
            if !self.open_client(tcp, now, request) {
                break;
            }
        }
    }

    /// The window is over: stop, close what is idle, and after `timeout`
    /// abort what is left; finish once nothing is.
    fn wind_down(&mut self, tcp: &mut Stack, now: u64) {
        if self.stage == Stage::Running {
            self.stage = Stage::Draining;
            if let Some(mut s) = self.schedule {
                // Due, never sent: their answers would fall outside the
                // window. Those due in the warmup (if any are still
                // waiting) count outside it.
                let start = self.window_start();
                let mut k = s.sent;
                while k < s.next && s.due(k) < start {
                    k += 1;
                }
                for (from, to) in [(s.sent, k), (k, s.next)] {
                    if to > from {
                        self.count(Count::Unsent, to - from, s.due(from));
                        self.count(Count::Requests, to - from, s.due(from));
                    }
                }
                s.sent = s.next;
                self.schedule = Some(s);
            }
            self.idle.clear();
            self.close_idle_clients(tcp, now);
        }
        if self.stage == Stage::Draining
            && now >= self.window_end().saturating_add(self.timeout_us())
        {
            self.stage = Stage::Aborted;
            self.abort_clients(tcp);
        }
        if self.live == 0 && self.stage != Stage::Finished {
            self.stage = Stage::Finished;
            self.shared.merge(&mut self.counts, now, true);
            self.shared.finish();
        }
    }
}

impl std::fmt::Debug for Loadgen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loadgen")
            .field("stage", &self.stage)
            .field("open", &self.open)
            .field("live", &self.live)
            .field("idle", &self.idle.len())
            .field(
                "servers",
                &self.servers.len().saturating_sub(self.server_free.len()),
            )
            .field("schedule", &self.schedule)
            .finish()
    }
}

impl App for Loadgen {
    fn accepted(&mut self, tcp: &mut Stack, conn: ConnId, _listener: u32) {
        self.server_accepted(tcp, conn);
    }

    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        let Some(word) = tcp.user(conn) else {
            return;
        };
        let slot = (word & SLOT_MASK) as u32;
        if word & CLIENT_TAG != 0 {
            self.client_ready(tcp, conn, slot);
        } else if word & SERVER_TAG != 0 {
            self.server_ready(tcp, conn, slot);
        }
    }

    fn deadline(&mut self, tcp: &mut Stack, conn: ConnId) {
        let Some(word) = tcp.user(conn) else {
            return;
        };
        if word & CLIENT_TAG != 0 {
            self.client_deadline(tcp, conn, (word & SLOT_MASK) as u32);
        }
    }

    fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
        let Some(word) = tcp.user(conn) else {
            return;
        };
        let slot = (word & SLOT_MASK) as u32;
        if word & CLIENT_TAG != 0 {
            self.client_closed(tcp, conn, slot, how);
        } else if word & SERVER_TAG != 0 {
            self.server_closed(conn, slot);
        }
    }

    fn poll(&mut self, tcp: &mut Stack) {
        self.start_clock(tcp);
        let now = self.now(tcp);
        self.opens_this_poll = 0;
        if now < self.window_end() {
            if self.running() {
                self.run_schedule(tcp, now);
                self.fill_connections(tcp, now);
            }
        } else {
            self.wind_down(tcp, now);
        }
        if now >= self.next_merge_us {
            self.next_merge_us = now.saturating_add(MERGE_EVERY_US);
            self.shared.merge(&mut self.counts, now, false);
        }
    }
}
