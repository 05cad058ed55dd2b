//! What the workers count, and what the main thread reads of it: the
//! [`Shared`] state, the once-a-second [`Progress`] line and the final
//! [`Report`] (text and JSON).
//!
//! Each worker counts into plain integers and its own histograms and hands
//! them over about every 100 ms ([`Shared::merge`]): counters by atomic
//! adds, histograms under a `Mutex` taken with `try_lock` only, so a worker
//! never waits for the main thread (a histogram it could not hand over stays
//! with it until the next time). Two sets are kept: everything (for the
//! progress lines) and the counting window (for the report).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::Plan;

/// The highest latency the histograms tell apart, µs (higher ones are
/// recorded as this).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Significant decimal digits of the histograms.
const SIGNIFICANT_DIGITS: u8 = 3;

/// What the workers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Count {
    /// Requests started (sent, or due on the open-loop schedule).
    Requests,
    /// Good responses.
    Responses,
    /// Connections that could not be opened.
    Connect,
    /// Connections reset or closed before the response was complete.
    Reset,
    /// Requests without a complete response within the timeout.
    Timeout,
    /// Final statuses other than 2xx below 500.
    Status4xx,
    /// Final statuses 500 and above.
    Status5xx,
    /// Unparsable heads or chunking, or bytes nobody asked for.
    Malformed,
    /// Bodies of another length than the servers sent.
    Body,
    /// Client connections established.
    Established,
    /// Body bytes of good responses.
    BodyBytes,
    /// Open-loop requests that waited for a connection.
    Delayed,
    /// Open-loop requests still waiting at the end of the window (never
    /// sent).
    Unsent,
    /// Requests the emulated servers answered.
    ServerRequests,
    /// Malformed requests the emulated servers answered with 400.
    ServerBadRequests,
}

/// How many kinds of [`Count`] there are.
pub(super) const COUNTS: usize = 15;

/// The error kinds, in report order.
const ERRORS: [Count; 7] = [
    Count::Connect,
    Count::Reset,
    Count::Timeout,
    Count::Status4xx,
    Count::Status5xx,
    Count::Malformed,
    Count::Body,
];

/// One worker's or the process's counters.
pub(super) type Counts = [u64; COUNTS];

/// A latency histogram (µs, 1 µs .. 60 s, 3 significant digits), or
/// nothing if it could not be built (it always can: the bounds are
/// constant; this only keeps the data path free of `expect`).
#[derive(Debug, Clone)]
pub(super) struct Latency(Option<Histogram<u64>>);

impl Latency {
    /// An empty histogram.
    pub(super) fn new() -> Latency {
        Latency(Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS).ok())
    }

    /// Record `us` (at least 1, at most 60 s).
    pub(super) fn record(&mut self, us: u64) {
        if let Some(h) = &mut self.0 {
            h.saturating_record(us.max(1));
        }
    }

    /// Add `other`'s samples.
    fn add(&mut self, other: &Latency) {
        if let (Some(a), Some(b)) = (&mut self.0, &other.0) {
            // Same bounds on both: it cannot fail.
            let _ = a.add(b);
        }
    }

    /// Forget every sample.
    fn reset(&mut self) {
        if let Some(h) = &mut self.0 {
            h.reset();
        }
    }

    /// Return the number of samples.
    pub(super) fn len(&self) -> u64 {
        self.0.as_ref().map_or(0, Histogram::len)
    }

    /// Return the value at quantile `q` (0 when empty).
    fn quantile(&self, q: f64) -> u64 {
        match &self.0 {
            Some(h) if !h.is_empty() => h.value_at_quantile(q),
            _ => 0,
        }
    }

    /// Return the summary of the samples.
    fn summary(&self) -> LatencySummary {
        let (max, mean) = match &self.0 {
            Some(h) if !h.is_empty() => (h.max(), h.mean()),
            _ => (0, 0.0),
        };
        LatencySummary {
            samples: self.len(),
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p99: self.quantile(0.99),
            p99_9: self.quantile(0.999),
            p99_99: self.quantile(0.9999),
            max,
            mean,
        }
    }
}

/// What a worker has not handed over yet.
#[derive(Debug)]
pub(super) struct WorkerCounts {
    /// Everything.
    pub(super) all: Counts,
    /// The counting window only.
    pub(super) window: Counts,
    /// Latencies of every good response.
    pub(super) recent: Latency,
    /// Latencies of the good responses in the window.
    pub(super) window_latency: Latency,
    /// The longest open-loop backlog seen.
    pub(super) backlog_max: u64,
}

impl WorkerCounts {
    pub(super) fn new() -> WorkerCounts {
        WorkerCounts {
            all: [0; COUNTS],
            window: [0; COUNTS],
            recent: Latency::new(),
            window_latency: Latency::new(),
            backlog_max: 0,
        }
    }
}

/// Lock `m`, taking the data of a poisoned lock as it is (a counter
/// snapshot cannot be left half-written in a way that matters).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Return a set of zeroed atomic counters.
fn atomic_counts() -> [AtomicU64; COUNTS] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// Read a set of atomic counters.
fn load(counts: &[AtomicU64; COUNTS]) -> Counts {
    std::array::from_fn(|i| counts[i].load(Ordering::Relaxed))
}

/// What [`Shared::progress`] saw last time.
#[derive(Debug)]
struct Mark {
    all: Counts,
    elapsed_us: u64,
}

/// The workers' results, shared with the main thread.
#[derive(Debug)]
pub struct Shared {
    workers: usize,
    warmup: Duration,
    duration: Duration,
    rate: Option<f64>,
    connections: u32,
    new_connection_per_request: bool,
    /// Workers that finished.
    finished: AtomicUsize,
    /// The furthest any worker's clock got since its start, µs.
    elapsed_us: AtomicU64,
    all: [AtomicU64; COUNTS],
    window: [AtomicU64; COUNTS],
    backlog_max: AtomicU64,
    /// Latencies since the last progress line.
    recent: Mutex<Latency>,
    /// Latencies of the counting window.
    window_latency: Mutex<Latency>,
    mark: Mutex<Mark>,
}

impl Shared {
    /// The shared state of `workers` workers running `plan`.
    pub fn new(plan: &Plan, workers: usize) -> Shared {
        Shared {
            workers,
            warmup: plan.warmup,
            duration: plan.duration,
            rate: plan.rate,
            connections: plan.connections,
            new_connection_per_request: plan.new_connection_per_request,
            finished: AtomicUsize::new(0),
            elapsed_us: AtomicU64::new(0),
            all: atomic_counts(),
            window: atomic_counts(),
            backlog_max: AtomicU64::new(0),
            recent: Mutex::new(Latency::new()),
            window_latency: Mutex::new(Latency::new()),
            mark: Mutex::new(Mark {
                all: [0; COUNTS],
                elapsed_us: 0,
            }),
        }
    }

    /// Return the number of workers.
    pub(super) fn workers(&self) -> usize {
        self.workers
    }

    /// Return true once every worker finished: its measured time is over
    /// and its client connections are closed or aborted.
    pub fn done(&self) -> bool {
        self.finished.load(Ordering::Acquire) >= self.workers
    }

    /// Hand over what `w` counted, at `elapsed_us` of its clock; `wait`:
    /// take the histogram locks even if that blocks (at the end), else only
    /// if they are free.
    pub(super) fn merge(&self, w: &mut WorkerCounts, elapsed_us: u64, wait: bool) {
        for (shared, local) in [(&self.all, &mut w.all), (&self.window, &mut w.window)] {
            for (s, l) in shared.iter().zip(local.iter_mut()) {
                if *l != 0 {
                    s.fetch_add(*l, Ordering::Relaxed);
                    *l = 0;
                }
            }
        }
        self.backlog_max.fetch_max(w.backlog_max, Ordering::Relaxed);
        self.elapsed_us.fetch_max(elapsed_us, Ordering::Relaxed);
        for (shared, local) in [
            (&self.recent, &mut w.recent),
            (&self.window_latency, &mut w.window_latency),
        ] {
            if local.len() == 0 {
                continue;
            }
            let guard = if wait {
                Some(lock(shared))
            } else {
                shared.try_lock().ok()
            };
            if let Some(mut h) = guard {
                h.add(local);
                local.reset();
            }
        }
    }

    /// Count one worker as finished (after its last [`Shared::merge`]).
    pub(super) fn finish(&self) {
        self.finished.fetch_add(1, Ordering::Release);
    }

    /// Return the phase at `elapsed_us`.
    fn phase(&self, elapsed_us: u64) -> Phase {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if self.done() {
            Phase::Done
        } else if elapsed_us < us(self.warmup) {
            Phase::Warmup
        } else if elapsed_us < us(self.warmup).saturating_add(us(self.duration)) {
            Phase::Measure
        } else {
            Phase::Finishing
        }
    }

    /// Return what happened since the previous call (everything, window or
    /// not): for the once-a-second progress line.
    pub fn progress(&self) -> Progress {
        let now = load(&self.all);
        let elapsed_us = self.elapsed_us.load(Ordering::Relaxed);
        let mut mark = lock(&self.mark);
        let delta: Counts = std::array::from_fn(|i| now[i].saturating_sub(mark.all[i]));
        let seconds = elapsed_us.saturating_sub(mark.elapsed_us) as f64 / 1e6;
        mark.all = now;
        mark.elapsed_us = elapsed_us;
        drop(mark);
        let (p50_us, p99_us) = {
            let mut h = lock(&self.recent);
            let q = (h.quantile(0.5), h.quantile(0.99));
            h.reset();
            q
        };
        let per_second = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Progress {
            elapsed_s: elapsed_us as f64 / 1e6,
            phase: self.phase(elapsed_us),
            rps: per_second(delta[Count::Responses as usize]),
            cps: per_second(delta[Count::Established as usize]),
            errors: ERRORS.iter().map(|&c| delta[c as usize]).sum(),
            p50_us,
            p99_us,
        }
    }

    /// Return the totals of the counting window (complete once
    /// [`Shared::done`]).
    pub fn report(&self) -> Report {
        let c = load(&self.window);
        let get = |k: Count| c[k as usize];
        let duration_s = self.duration.as_secs_f64();
        let per_second = |n: f64| {
            if duration_s > 0.0 {
                n / duration_s
            } else {
                0.0
            }
        };
        Report {
            mode: if self.rate.is_some() {
                Mode::Open
            } else {
                Mode::Closed
            },
            rate: self.rate,
            connections: self.connections,
            new_connection_per_request: self.new_connection_per_request,
            workers: self.workers,
            duration_s,
            requests: get(Count::Requests),
            responses: get(Count::Responses),
            errors: ErrorCounts {
                connect: get(Count::Connect),
                reset: get(Count::Reset),
                timeout: get(Count::Timeout),
                status_4xx: get(Count::Status4xx),
                status_5xx: get(Count::Status5xx),
                malformed: get(Count::Malformed),
                body: get(Count::Body),
            },
            established: get(Count::Established),
            body_bytes: get(Count::BodyBytes),
            delayed: get(Count::Delayed),
            unsent: get(Count::Unsent),
            backlog_max: self.backlog_max.load(Ordering::Relaxed),
            server_requests: get(Count::ServerRequests),
            server_bad_requests: get(Count::ServerBadRequests),
            rps: per_second(get(Count::Responses) as f64),
            cps: per_second(get(Count::Established) as f64),
            rx_gbps: per_second(get(Count::BodyBytes) as f64 * 8.0) / 1e9,
            latency_us: lock(&self.window_latency).summary(),
        }
    }
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Traffic that is not counted.
    Warmup,
    /// The counting window.
    Measure,
    /// The window is over; the last answers come in and connections close.
    Finishing,
    /// Every worker finished.
    Done,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::Finishing => "finishing",
            Phase::Done => "done",
        })
    }
}

/// What happened since the previous progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Seconds since the workers started.
    pub elapsed_s: f64,
    pub phase: Phase,
    /// Good responses per second.
    pub rps: f64,
    /// Client connections established per second.
    pub cps: f64,
    /// Errors of every kind.
    pub errors: u64,
    /// Latency percentiles of the good responses, µs.
    pub p50_us: u64,
    pub p99_us: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:7.1} s  {:9}  {:10.0} rps  {:8.0} cps  {:6} errors  p50 {} us  p99 {} us",
            self.elapsed_s, self.phase, self.rps, self.cps, self.errors, self.p50_us, self.p99_us
        )
    }
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each connection sends its next request when the previous answer is
    /// complete.
    Closed,
    /// Requests on a fixed schedule.
    Open,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Closed => "closed",
            Mode::Open => "open",
        }
    }
}

/// Errors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Connections refused, reset or timed out before established, or not
    /// opened at all.
    pub connect: u64,
    /// Connections reset or closed before the response was complete.
    pub reset: u64,
    /// No complete response within the timeout.
    pub timeout: u64,
    /// Non-2xx final statuses below 500 (4xx, and 1xx/3xx too).
    pub status_4xx: u64,
    /// Final statuses 500 and above.
    pub status_5xx: u64,
    /// Unparsable head or chunking, or bytes no request asked for.
    pub malformed: u64,
    /// A body of another length than the emulated servers send.
    pub body: u64,
}

impl ErrorCounts {
    /// Return the sum of every kind.
    pub fn total(&self) -> u64 {
        self.connect
            + self.reset
            + self.timeout
            + self.status_4xx
            + self.status_5xx
            + self.malformed
            + self.body
    }
}

/// Latency percentiles of the good responses, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    /// Responses recorded.
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
    pub mean: f64,
}

/// The totals of the counting window.
///
/// A request counts in the window by when it started (`requests`), a
/// response or an error by when it completed or was detected, a connection
/// by when it was established.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub mode: Mode,
    /// Requests per second per worker (open loop).
    pub rate: Option<f64>,
    /// Concurrent client connections per worker.
    pub connections: u32,
    pub new_connection_per_request: bool,
    pub workers: usize,
    /// The counting window, seconds.
    pub duration_s: f64,
    /// Requests started.
    pub requests: u64,
    /// Good responses: 2xx, framed, body of the expected length.
    pub responses: u64,
    pub errors: ErrorCounts,
    /// Client connections established.
    pub established: u64,
    /// Body bytes of the good responses.
    pub body_bytes: u64,
    /// Open-loop requests that had to wait for a connection.
    pub delayed: u64,
    /// Open-loop requests due in the window but still waiting for a
    /// connection at its end: never sent, neither answered nor errors.
    pub unsent: u64,
    /// The longest open-loop backlog of any worker (whole run).
    pub backlog_max: u64,
    /// Requests the emulated servers answered with 200.
    pub server_requests: u64,
    /// Malformed requests the emulated servers answered with 400.
    pub server_bad_requests: u64,
    /// Good responses per second.
    pub rps: f64,
    /// Client connections established per second.
    pub cps: f64,
    /// Gbit/s of good response bodies.
    pub rx_gbps: f64,
    pub latency_us: LatencySummary,
}

/// Return `x` as a JSON number (non-finite values as 0).
fn number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "0".to_owned()
    }
}

impl Report {
    /// Return every error.
    pub fn errors(&self) -> u64 {
        self.errors.total()
    }

    /// Return the good responses.
    pub fn responses(&self) -> u64 {
        self.responses
    }

    /// Return the requests started in the measured window.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Return the report as one JSON object (the benchmark scripts' keys).
    pub fn to_json(&self) -> String {
        let e = &self.errors;
        let l = &self.latency_us;
        format!(
            concat!(
                r#"{{"mode":"{}","rate":{},"connections":{},"new_connection_per_request":{},"#,
                r#""duration_s":{},"requests":{},"responses":{},"#,
                r#""errors":{{"connect":{},"reset":{},"timeout":{},"status_4xx":{},"#,
                r#""status_5xx":{},"malformed":{},"body":{}}},"#,
                r#""error_total":{},"backlog_max":{},"rps":{},"cps":{},"rx_gbps":{},"#,
                r#""latency_us":{{"p50":{},"p90":{},"p99":{},"p99_9":{},"p99_99":{},"#,
                r#""max":{},"mean":{}}}}}"#
            ),
            self.mode.as_str(),
            self.rate.map_or_else(|| "null".to_owned(), number),
            self.connections,
            self.new_connection_per_request,
            number(self.duration_s),
            self.requests,
            self.responses,
            e.connect,
            e.reset,
            e.timeout,
            e.status_4xx,
            e.status_5xx,
            e.malformed,
            e.body,
            e.total(),
            self.backlog_max,
            number(self.rps),
            number(self.cps),
            number(self.rx_gbps),
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.p99_99,
            l.max,
            number(l.mean),
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.errors;
        let l = &self.latency_us;
        match self.rate {
            Some(r) => writeln!(
                f,
                "mode             open loop, {r} requests/s per worker, {} workers",
                self.workers
            )?,
            None => writeln!(f, "mode             closed loop, {} workers", self.workers)?,
        }
        writeln!(
            f,
            "connections      {} per worker{}",
            self.connections,
            if self.new_connection_per_request {
                ", a new one per request"
            } else {
                ", keep-alive"
            }
        )?;
        writeln!(f, "measured         {:.3} s", self.duration_s)?;
        writeln!(
            f,
            "requests         {} started, {} good responses, {} errors",
            self.requests,
            self.responses,
            e.total()
        )?;
        writeln!(
            f,
            "errors           connect {}  reset {}  timeout {}  4xx {}  5xx {}  malformed {}  body {}",
            e.connect, e.reset, e.timeout, e.status_4xx, e.status_5xx, e.malformed, e.body
        )?;
        writeln!(
            f,
            "throughput       {:.1} requests/s (good responses)",
            self.rps
        )?;
        writeln!(
            f,
            "established      {} connections, {:.1}/s",
            self.established, self.cps
        )?;
        writeln!(
            f,
            "response bodies  {} bytes, {:.3} Gbit/s",
            self.body_bytes, self.rx_gbps
        )?;
        if self.rate.is_some() {
            writeln!(
                f,
                "backlog          {} requests waited for a connection, {} at most at once, \
                 {} never sent",
                self.delayed, self.backlog_max, self.unsent
            )?;
        }
        writeln!(
            f,
            "servers          {} requests answered, {} malformed (400)",
            self.server_requests, self.server_bad_requests
        )?;
        write!(
            f,
            "latency (us)     p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max, l.mean
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            mode: Mode::Open,
            rate: Some(2500.0),
            connections: 16,
            new_connection_per_request: true,
            workers: 2,
            duration_s: 10.0,
            requests: 25_000,
            responses: 24_990,
            errors: ErrorCounts {
                connect: 1,
                reset: 2,
                timeout: 3,
                status_4xx: 1,
                status_5xx: 2,
                malformed: 0,
                body: 1,
            },
            established: 25_000,
            body_bytes: 24_990 * 1024,
            delayed: 4,
            unsent: 0,
            backlog_max: 3,
            server_requests: 24_995,
            server_bad_requests: 0,
            rps: 2499.0,
            cps: 2500.0,
            rx_gbps: 0.020_471_808,
            latency_us: LatencySummary {
                samples: 24_990,
                p50: 120,
                p90: 180,
                p99: 400,
                p99_9: 900,
                p99_99: 1500,
                max: 2100,
                mean: 131.25,
            },
        }
    }

    #[test]
    fn json_has_exactly_the_benchmark_keys_and_parses_back() {
        let r = report();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            [
                "backlog_max",
                "connections",
                "cps",
                "duration_s",
                "error_total",
                "errors",
                "latency_us",
                "mode",
                "new_connection_per_request",
                "rate",
                "requests",
                "responses",
                "rps",
                "rx_gbps"
            ]
        );
        assert_eq!(
            keys(&v["errors"]),
            [
                "body",
                "connect",
                "malformed",
                "reset",
                "status_4xx",
                "status_5xx",
                "timeout"
            ]
        );
        assert_eq!(
            keys(&v["latency_us"]),
            ["max", "mean", "p50", "p90", "p99", "p99_9", "p99_99"]
        );
        assert_eq!(v["mode"], "open");
        assert_eq!(v["rate"], 2500.0);
        assert_eq!(v["connections"], 16);
        assert_eq!(v["new_connection_per_request"], true);
        assert_eq!(v["duration_s"], 10.0);
        assert_eq!(v["requests"], 25_000);
        assert_eq!(v["responses"], 24_990);
        assert_eq!(v["errors"]["status_5xx"], 2);
        assert_eq!(v["error_total"], 10);
        assert_eq!(v["backlog_max"], 3);
        assert_eq!(v["rps"], 2499.0);
        assert_eq!(v["rx_gbps"], 0.02);
        assert_eq!(v["latency_us"]["p99_99"], 1500);
        assert_eq!(v["latency_us"]["mean"], 131.25);

        let closed = Report {
            mode: Mode::Closed,
            rate: None,
            rps: f64::NAN,
            ..report()
        };
        let v: serde_json::Value = serde_json::from_str(&closed.to_json()).expect("valid JSON");
        assert_eq!(v["mode"], "closed");
        assert!(v["rate"].is_null());
        assert_eq!(v["rps"], 0);
    }

    #[test]
    fn the_summary_names_every_error_kind() {
        let text = report().to_string();
        for want in [
            "open loop, 2500 requests/s",
            "connect 1  reset 2  timeout 3  4xx 1  5xx 2  malformed 0  body 1",
            "p99.99 1500",
            "10 errors",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }

    #[test]
    fn histograms_merge_into_shared_and_progress_takes_the_recent_ones() {
        let plan = Plan {
            warmup: Duration::from_secs(2),
            ..super::super::tests::plan()
        };
        let shared = Shared::new(&plan, 2);
        let mut w = WorkerCounts::new();
        for us in 1..=1000 {
            w.recent.record(us);
            w.window_latency.record(us);
        }
        w.all[Count::Responses as usize] = 1000;
        w.window[Count::Responses as usize] = 1000;
        shared.merge(&mut w, 1_000_000, false);
        assert_eq!((w.recent.len(), w.all[Count::Responses as usize]), (0, 0));
        let p = shared.progress();
        assert_eq!((p.rps, p.p50_us, p.phase), (1000.0, 500, Phase::Warmup));
        assert!((989..=991).contains(&p.p99_us), "{p}");
        let line = p.to_string();
        for want in ["1.0 s", "warmup", "1000 rps", "0 errors", "p50 500 us"] {
            assert!(line.contains(want), "{want:?} in {line:?}");
        }
        // The recent histogram was taken; the window's stays.
        let p = shared.progress();
        assert_eq!((p.rps, p.p50_us), (0.0, 0));
        assert!(!shared.done());
        shared.finish();
        shared.finish();
        assert!(shared.done());
        let r = shared.report();
        assert_eq!((r.responses, r.latency_us.samples), (1000, 1000));
        assert_eq!(r.latency_us.max, 1000);
        // A locked histogram is not waited for: it stays with the worker.
        w.recent.record(5);
        let held = lock(&shared.recent);
        shared.merge(&mut w, 1_000_000, false);
        assert_eq!(w.recent.len(), 1);
        drop(held);
        shared.merge(&mut w, 1_000_000, false);
        assert_eq!(w.recent.len(), 0);
    }
}
