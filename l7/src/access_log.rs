//! Envoy's file access logs: one line per HTTP request or tcp_proxy connection, in
//! Envoy's format language, appended to a file.
//!
//! The data path never waits on a disk. When a request or connection ends, a worker
//! fills a [`Record`] (plain values and copies of the few headers the formats use) and
//! pushes it onto its listener's [`Sink`]: a bounded lock-free queue that every worker
//! of that listener shares. A full queue drops the record and counts it
//! (`access_logs.file.logs_dropped`), as Envoy's gRPC logger drops on back-up. A writer
//! thread calls [`AccessLogs::flush`] every few milliseconds: it formats the records
//! there, off the workers (formatting is the costly part), and writes them through a
//! buffer, one `write` per file per flush. A write error is counted
//! (`filesystem.write_failed`) and handed out by [`AccessLogs::take_errors`]; it never
//! panics and never stops the proxy.
//!
//! The queue is crossbeam-channel's bounded channel, already a dependency of this crate
//! (the health events use it): its array flavour is the same lock-free bounded MPMC
//! queue as crossbeam-queue's `ArrayQueue`, `try_send` never blocks, and as the writer
//! never blocks in `recv` either, the channel's waker bookkeeping is one atomic load.
//!
//! # Format
//!
//! Text with commands, as Envoy's text format (`%%` is a literal `%`; any other `%`
//! must start a command, else the config does not load):
//!
//! | Command | HTTP | tcp_proxy |
//! |---|---|---|
//! | `%START_TIME%`, `%START_TIME(format)%` | request start | connection start |
//! | `%REQ(name?alternative):length%` (`%REQUEST_HEADER(...)%`) | request header, else `alternative`, cut to `length` bytes | `-` |
//! | `%RESP(name?alternative):length%` (`%RESPONSE_HEADER(...)%`) | response header | `-` |
//! | `%PROTOCOL%` | `HTTP/1.1`, `HTTP/1.0` | `-` |
//! | `%RESPONSE_CODE%` | status; `0` when none was sent | `0` |
//! | `%RESPONSE_FLAGS%` | [`ResponseFlags`], `-` when none | same |
//! | `%BYTES_RECEIVED%`, `%BYTES_SENT%` | body bytes from / to the client | bytes from / to the client |
//! | `%DURATION%` | milliseconds from start to the end of the response | to the end of the connection |
//! | `%UPSTREAM_HOST%`, `%UPSTREAM_REMOTE_ADDRESS%` | the endpoint, `ip:port` | same |
//! | `%UPSTREAM_CLUSTER%` | the cluster's name | same |
//! | `%DOWNSTREAM_REMOTE_ADDRESS%` (`_WITHOUT_PORT`), `%DOWNSTREAM_REMOTE_PORT%` | the client | same |
//! | `%DOWNSTREAM_LOCAL_ADDRESS%` (`_WITHOUT_PORT`), `%DOWNSTREAM_LOCAL_PORT%` | the address the client connected to | same |
//!
//! A value that is not there is written `-`, as Envoy writes it. `START_TIME` is in UTC;
//! its default format is Envoy's, `2024-05-01T12:00:00.000Z`, and a custom format takes
//! `%Y %m %d %H %M %S %F %T %b %a %z %s`, `%f` (nanoseconds), `%1f`..`%9f` (that many
//! digits of the second), `%E1S`..`%E9S` (seconds with that many decimals) and `%%`.

use std::fmt::{self, Write as _};
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use crate::config::{EnvoyConfig, NetworkFilter};

/// How many records each listener's queue holds. At the writer's pace (a flush every
/// few milliseconds) this absorbs bursts of several million records per second; beyond
/// it records are dropped, never waited for.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Envoy's default access log format, used when a logger sets none (tcp_proxy's too:
/// its `REQUEST_HEADER`s and `RESPONSE_HEADER`s come out `-`). `REQUEST_HEADER` and
/// `RESPONSE_HEADER` are today's names of `REQ` and `RESP`.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \
     \"%REQUEST_HEADER(:METHOD)% %REQUEST_HEADER(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
     %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
     %RESPONSE_HEADER(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQUEST_HEADER(X-FORWARDED-FOR)%\" \
     \"%REQUEST_HEADER(USER-AGENT)%\" \"%REQUEST_HEADER(X-REQUEST-ID)%\" \
     \"%REQUEST_HEADER(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// The path that writes to the process's standard output (the stdout logger's, and a
/// file logger's that names it).
pub const STDOUT_PATH: &str = "/dev/stdout";

/// The path that writes to the process's standard error.
pub const STDERR_PATH: &str = "/dev/stderr";

/// The buffer of each log file: a flush writes at most this much per `write`.
const BUFFER_SIZE: usize = 64 * 1024;

/// `START_TIME`'s format when it has none: Envoy's.
const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%E3SZ";

/// The commands, for error messages.
const COMMANDS: &str = "%START_TIME%, %START_TIME(format)%, \
     %REQ(name?alternative):length% (or %REQUEST_HEADER(...)%), \
     %RESP(name?alternative):length% (or %RESPONSE_HEADER(...)%), %PROTOCOL%, \
     %RESPONSE_CODE%, %RESPONSE_FLAGS%, %BYTES_RECEIVED%, %BYTES_SENT%, %DURATION%, \
     %UPSTREAM_HOST%, %UPSTREAM_REMOTE_ADDRESS%, %UPSTREAM_CLUSTER%, \
     %DOWNSTREAM_REMOTE_ADDRESS%, %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, \
     %DOWNSTREAM_REMOTE_PORT%, %DOWNSTREAM_LOCAL_ADDRESS%, \
     %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% and %DOWNSTREAM_LOCAL_PORT%";

/// The time specifiers of `%START_TIME(format)%`, for error messages.
const TIME_SPECIFIERS: &str = "%Y %m %d %H %M %S %F %T %b %a %z %s, %f (nanoseconds), \
     %1f to %9f (digits of the second), %E1S to %E9S (seconds with decimals) and %%";

/// One request (HTTP) or connection (tcp_proxy) to log.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request's first byte (or the connection) arrived.
    pub start_time: SystemTime,
    /// From the start to the end of the response (or of the connection).
    pub duration_ms: u64,
    /// `HTTP/1.1`, `HTTP/1.0`; empty for tcp_proxy (written `-`).
    pub protocol: &'static str,
    /// The status sent to the client; 0 when none (tcp_proxy, or a reset before any
    /// answer).
    pub response_code: u16,
    /// What went wrong, Envoy's way.
    pub response_flags: ResponseFlags,
    /// Body bytes from the client (tcp_proxy: all bytes).
    pub bytes_received: u64,
    /// Body bytes to the client (tcp_proxy: all bytes).
    pub bytes_sent: u64,
    /// The endpoint the request (or connection) went to, if one was picked.
    pub upstream_host: Option<SocketAddr>,
    /// The cluster it went to, if one was chosen.
    pub upstream_cluster: Option<Arc<str>>,
    /// The client's address.
    pub downstream_remote: SocketAddr,
    /// The address the client connected to.
    pub downstream_local: SocketAddr,
    /// The request headers the formats of this listener's logs use (see
    /// [`Sink::wanted_headers`]), in that order; `None` for a missing header. The
    /// pseudo-headers are `:method`, `:path`, `:authority` (= host) and `:scheme`, and
    /// `x-envoy-original-path` as the proxy gives it. A shorter list (tcp_proxy passes
    /// an empty one) leaves the rest missing.
    pub request_headers: Vec<Option<String>>,
    /// Likewise for `RESP(...)`, in the order of [`Sink::wanted_response_headers`].
    pub response_headers: Vec<Option<String>>,
}

/// Envoy's response flags (a bit set): what went wrong with a request or connection.
/// Written as Envoy writes them, by short name in Envoy's order, separated by commas
/// (`UH`, `UF,URX`), or `-` when none is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseFlags(pub u32);

impl ResponseFlags {
    /// `LH`: the local health check failed.
    pub const FAILED_LOCAL_HEALTH_CHECK: u32 = 1 << 0;
    /// `UH`: no healthy upstream host.
    pub const NO_HEALTHY_UPSTREAM: u32 = 1 << 1;
    /// `UT`: the upstream request timed out.
    pub const UPSTREAM_REQUEST_TIMEOUT: u32 = 1 << 2;
    /// `LR`: reset locally.
    pub const LOCAL_RESET: u32 = 1 << 3;
    /// `UR`: the upstream reset the request.
    pub const UPSTREAM_REMOTE_RESET: u32 = 1 << 4;
    /// `UF`: the upstream connection failed.
    pub const UPSTREAM_CONNECTION_FAILURE: u32 = 1 << 5;
    /// `UC`: the upstream connection was terminated.
    pub const UPSTREAM_CONNECTION_TERMINATION: u32 = 1 << 6;
    /// `UO`: a circuit breaker overflowed.
    pub const UPSTREAM_OVERFLOW: u32 = 1 << 7;
    /// `NR`: no route.
    pub const NO_ROUTE_FOUND: u32 = 1 << 8;
    /// `DI`: the fault filter delayed the request.
    pub const DELAY_INJECTED: u32 = 1 << 9;
    /// `FI`: the fault filter aborted the request.
    pub const FAULT_INJECTED: u32 = 1 << 10;
    /// `RL`: rate limited (local_ratelimit's 429).
    pub const RATE_LIMITED: u32 = 1 << 11;
    /// `UAEX`: an external authorization service denied it.
    pub const UNAUTHORIZED_EXTERNAL_SERVICE: u32 = 1 << 12;
    /// `RLSE`: the rate limit service failed.
    pub const RATELIMIT_SERVICE_ERROR: u32 = 1 << 13;
    /// `DC`: the client's connection ended first.
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u32 = 1 << 14;
    /// `URX`: the retry limit was reached.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u32 = 1 << 15;
    /// `SI`: the stream idle timeout passed.
    pub const STREAM_IDLE_TIMEOUT: u32 = 1 << 16;
    /// `IH`: invalid `x-envoy-*` request headers.
    pub const INVALID_ENVOY_REQUEST_HEADERS: u32 = 1 << 17;
    /// `DPE`: the client broke the HTTP protocol.
    pub const DOWNSTREAM_PROTOCOL_ERROR: u32 = 1 << 18;
    /// `UMSDR`: the upstream's max stream duration was reached.
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u32 = 1 << 19;
    /// `RFCF`: answered from the cache filter.
    pub const RESPONSE_FROM_CACHE_FILTER: u32 = 1 << 20;
    /// `NFCF`: no filter config found.
    pub const NO_FILTER_CONFIG_FOUND: u32 = 1 << 21;
    /// `DT`: the request's duration timeout passed.
    pub const DURATION_TIMEOUT: u32 = 1 << 22;
    /// `UPE`: the upstream broke the HTTP protocol.
    pub const UPSTREAM_PROTOCOL_ERROR: u32 = 1 << 23;
    /// `NC`: the route's cluster does not exist.
    pub const NO_CLUSTER_FOUND: u32 = 1 << 24;
    /// `OM`: the overload manager refused it.
    pub const OVERLOAD_MANAGER: u32 = 1 << 25;
    /// `DF`: DNS resolution failed.
    pub const DNS_RESOLUTION_FAILED: u32 = 1 << 26;
    /// `DO`: dropped by the cluster's drop overload.
    pub const DROP_OVERLOAD: u32 = 1 << 27;
    /// `DR`: the client reset the stream.
    pub const DOWNSTREAM_REMOTE_RESET: u32 = 1 << 28;

    /// The short names, bit 0 first: Envoy's order.
    const NAMES: [&'static str; 29] = [
        "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
        "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF",
        "DO", "DR",
    ];

    /// Set `flag` (one of the constants, or several or-ed).
    pub fn set(&mut self, flag: u32) {
        self.0 |= flag;
    }

    /// Return true if every bit of `flag` is set.
    pub fn contains(self, flag: u32) -> bool {
        self.0 & flag == flag
    }

    /// Return true if no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (bit, name) in Self::NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Check an access log format: the config loader calls this so that a bad format is an
/// error when the config loads, not when the first request ends.
///
/// # Errors
/// What is wrong, for a message: an unknown command (the message lists the supported
/// ones), a `%` that starts no command or a command not closed with `%`, a bad header
/// name, an unsupported `START_TIME` specifier.
pub fn check_format(text: &str) -> Result<(), String> {
    Format::parse(text, &mut HeaderNames::default()).map(|_| ())
}

/// Every access log of the config, process-wide: built once, shared by the workers
/// (through their [`Sink`]s) and the writer thread.
pub struct AccessLogs {
    /// Per listener of the config, in order; `None` when it logs nothing.
    listeners: Vec<Option<ListenerLogs>>,
    /// Each distinct path once: two loggers on one path share its file and buffer.
    files: Vec<LogFile>,
    logs_written: AtomicU64,
    write_completed: AtomicU64,
    write_failed: AtomicU64,
}

/// One listener's loggers and the queue their records come through.
struct ListenerLogs {
    sink: Sink,
    receiver: Receiver<Record>,
    /// (index in `AccessLogs::files`, format), per logger in config order.
    logs: Vec<(usize, Format)>,
}

/// A log file and its buffer.
struct LogFile {
    path: String,
    state: Mutex<FileState>,
}

struct FileState {
    out: BufWriter<Box<dyn Write + Send>>,
    /// The first write error since [`AccessLogs::take_errors`] last ran, and how many
    /// failed since.
    error: Option<(String, u64)>,
}

impl FileState {
    fn fail(&mut self, error: &io::Error) {
        match &mut self.error {
            Some((_, count)) => *count += 1,
            None => self.error = Some((error.to_string(), 1)),
        }
    }
}

impl AccessLogs {
    /// Open (create, append) every log file of `config`: the `access_log`s of its
    /// http_connection_managers and tcp_proxies, in listener order, each listener's
    /// queue holding [`QUEUE_CAPACITY`] records.
    ///
    /// # Errors
    /// A file that cannot be opened (the message names it, its listener and the OS
    /// error), or a format the config loader would have refused.
    pub fn new(config: &EnvoyConfig) -> Result<AccessLogs, String> {
        Self::with_capacity(config, QUEUE_CAPACITY)
    }

    /// As [`AccessLogs::new`], with queues of `capacity` records (at least 1).
    ///
    /// # Errors
    /// As [`AccessLogs::new`].
    pub fn with_capacity(config: &EnvoyConfig, capacity: usize) -> Result<AccessLogs, String> {
        let mut files: Vec<LogFile> = Vec::new();
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let access_log = match &listener.filter {
                NetworkFilter::TcpProxy(t) => &t.access_log,
                NetworkFilter::HttpConnectionManager(h) => &h.access_log,
            };
            if access_log.is_empty() {
                listeners.push(None);
                continue;
            }
            let mut headers = HeaderNames::default();
            let mut logs = Vec::with_capacity(access_log.len());
            for log in access_log {
                let format = Format::parse(&log.format, &mut headers).map_err(|error| {
                    format!(
                        "access log `{}` of listener `{}`: invalid format: {error}",
                        log.path, listener.name
                    )
                })?;
                let file = match files.iter().position(|f| f.path == log.path) {
                    Some(file) => file,
                    None => {
                        let out = open(&log.path).map_err(|error| {
                            format!(
                                "cannot open access log `{}` of listener `{}`: {error}",
                                log.path, listener.name
                            )
                        })?;
                        files.push(LogFile {
                            path: log.path.clone(),
                            state: Mutex::new(FileState {
                                out: BufWriter::with_capacity(BUFFER_SIZE, out),
                                error: None,
                            }),
                        });
                        files.len() - 1
                    }
                };
                logs.push((file, format));
            }
            let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
            let sink = Sink {
                inner: Arc::new(SinkInner {
                    sender,
                    request_headers: headers.request,
                    response_headers: headers.response,
                    dropped: AtomicU64::new(0),
                }),
            };
            listeners.push(Some(ListenerLogs {
                sink,
                receiver,
                logs,
            }));
        }
        Ok(AccessLogs {
            listeners,
            files,
            logs_written: AtomicU64::new(0),
            write_completed: AtomicU64::new(0),
            write_failed: AtomicU64::new(0),
        })
    }

    /// Return the sink of listener `listener` (its index in `config.listeners`), `None`
    /// when it logs nothing.
    pub fn sink(&self, listener: usize) -> Option<Sink> {
        self.listeners
            .get(listener)?
            .as_ref()
            .map(|l| l.sink.clone())
    }

    /// Format and write what the sinks queued: the writer thread calls this every few
    /// milliseconds, and once more at exit. Takes at most what each queue holds when it
    /// gets to it, so that workers pushing as fast as it drains cannot keep it here.
    ///
    /// Returns how many records it took off the queues (each is written to every log of
    /// its listener). A write error is counted and kept for [`AccessLogs::take_errors`];
    /// the lines of that flush for that file are lost.
    pub fn flush(&self) -> usize {
        if self.files.is_empty() {
            return 0;
        }
        // One writer thread: the locks are never contended; they make AccessLogs Sync.
        let mut files: Vec<(MutexGuard<'_, FileState>, bool)> = self
            .files
            .iter()
            .map(|f| {
                (
                    f.state.lock().unwrap_or_else(PoisonError::into_inner),
                    false,
                )
            })
            .collect();
        let mut line = String::with_capacity(512);
        let mut records = 0;
        let mut written = 0;
        let mut failed = 0;
        for listener in self.listeners.iter().flatten() {
            for _ in 0..listener.receiver.len() {
                let Ok(record) = listener.receiver.try_recv() else {
                    break;
                };
                records += 1;
                for (file, format) in &listener.logs {
                    let (state, broken) = &mut files[*file];
                    if *broken {
                        continue;
                    }
                    line.clear();
                    format.render(&record, &mut line);
                    match state.out.write_all(line.as_bytes()) {
                        Ok(()) => written += 1,
                        Err(error) => {
                            state.fail(&error);
                            failed += 1;
                            *broken = true;
                        }
                    }
                }
            }
        }
        let mut completed = 0;
        for (state, broken) in &mut files {
            if *broken || state.out.buffer().is_empty() {
                continue;
            }
            match state.out.flush() {
                Ok(()) => completed += 1,
                Err(error) => {
                    state.fail(&error);
                    failed += 1;
                }
            }
        }
        self.logs_written.fetch_add(written, Ordering::Relaxed);
        self.write_completed.fetch_add(completed, Ordering::Relaxed);
        self.write_failed.fetch_add(failed, Ordering::Relaxed);
        records
    }

    /// Return the write errors since the last call, one message per file that had any
    /// (its first error, and how many writes failed), for the writer thread to report.
    pub fn take_errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for file in &self.files {
            let mut state = file.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((error, count)) = state.error.take() {
                errors.push(format!(
                    "access log `{}`: write failed: {error} ({count} failed write{})",
                    file.path,
                    if count == 1 { "" } else { "s" }
                ));
            }
        }
        errors
    }

    /// Return the counters as (name, value), process-wide (do not sum them over
    /// workers); none when nothing is configured:
    ///
    /// - `access_logs.file.logs_written`: lines formatted into a file's buffer (a record
    ///   counts once per log of its listener);
    /// - `access_logs.file.logs_dropped`: records dropped because their listener's queue
    ///   was full (named as Envoy's gRPC logger's `logs_dropped`);
    /// - `filesystem.write_completed`, `filesystem.write_failed`: buffer flushes to a
    ///   file that succeeded, and writes that failed (Envoy's file log counters).
    pub fn values(&self) -> Vec<(String, u64)> {
        if self.is_empty() {
            return Vec::new();
        }
        let dropped = self
            .listeners
            .iter()
            .flatten()
            .map(|l| l.sink.dropped())
            .sum();
        vec![
            (
                "access_logs.file.logs_written".to_owned(),
                self.logs_written.load(Ordering::Relaxed),
            ),
            ("access_logs.file.logs_dropped".to_owned(), dropped),
            (
                "filesystem.write_completed".to_owned(),
                self.write_completed.load(Ordering::Relaxed),
            ),
            (
                "filesystem.write_failed".to_owned(),
                self.write_failed.load(Ordering::Relaxed),
            ),
        ]
    }

    /// Return true when no listener logs anything.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl fmt::Debug for AccessLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogs")
            .field(
                "files",
                &self.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
            )
            .field(
                "listeners",
                &self
                    .listeners
                    .iter()
                    .map(|l| l.as_ref().map(|l| l.logs.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Open `path` to append to it; the standard streams by their `/dev` names.
fn open(path: &str) -> io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        // Not opened by name: that fails when the stream is a socket (a journal).
        STDOUT_PATH => Box::new(io::stdout()),
        STDERR_PATH => Box::new(io::stderr()),
        _ => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
    })
}

/// A worker's handle on one listener's logs: cheap to clone.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    sender: Sender<Record>,
    request_headers: Vec<String>,
    response_headers: Vec<String>,
    dropped: AtomicU64,
}

impl Sink {
    /// Return the request header names (lowercase; `:method`, `:path`, `:authority`,
    /// `x-envoy-original-path`, ...) that the formats use, in the order
    /// [`Record::request_headers`] must follow.
    pub fn wanted_headers(&self) -> &[String] {
        &self.inner.request_headers
    }

    /// Return the response header names the formats use, in the order
    /// [`Record::response_headers`] must follow.
    pub fn wanted_response_headers(&self) -> &[String] {
        &self.inner.response_headers
    }

    /// Queue a record; never blocks: a full queue drops it and counts it.
    pub fn push(&self, record: Record) {
        if self.inner.sender.try_send(record).is_err() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Return how many records this listener dropped.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("request_headers", &self.inner.request_headers)
            .field("response_headers", &self.inner.response_headers)
            .field("queued", &self.inner.sender.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// The header names the formats of one listener use, each once.
#[derive(Debug, Default)]
struct HeaderNames {
    request: Vec<String>,
    response: Vec<String>,
}

/// Return the index of `name` in `names`, adding it if new.
fn index_of(names: &mut Vec<String>, name: String) -> usize {
    match names.iter().position(|n| *n == name) {
        Some(i) => i,
        None => {
            names.push(name);
            names.len() - 1
        }
    }
}

/// A parsed format.
#[derive(Debug, Clone)]
struct Format {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    StartTime(Vec<TimePart>),
    RequestHeader(HeaderRef),
    ResponseHeader(HeaderRef),
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamRemotePort,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    DownstreamLocalPort,
}

/// A `REQ(name?alternative):length`: indexes into the record's header list.
#[derive(Debug, Clone, Copy)]
struct HeaderRef {
    name: usize,
    alternative: Option<usize>,
    max_length: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimePart {
    Text(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    MonthName,
    WeekdayName,
    Offset,
    Epoch,
    /// That many digits of the second's fraction.
    Fraction(u8),
    /// Seconds with that many decimals.
    SecondsFraction(u8),
}

impl Format {
    /// Parse `text`; the header names it uses are added to `headers`.
    fn parse(text: &str, headers: &mut HeaderNames) -> Result<Format, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('%') {
            literal.push_str(&rest[..start]);
            let at = text.len() - rest.len() + start;
            rest = &rest[start + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let name_end = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..name_end];
            if name.is_empty() {
                let hint = if rest.starts_with(|c: char| c.is_ascii_lowercase()) {
                    "command names are uppercase, e.g. %START_TIME%"
                } else {
                    "a command is `%NAME%`, e.g. %START_TIME%"
                };
                return Err(format!(
                    "the `%` at byte {at} starts no command ({hint}); write `%%` for a \
                     literal percent sign"
                ));
            }
            rest = &rest[name_end..];
            let mut argument = None;
            if let Some(after) = rest.strip_prefix('(') {
                let Some(close) = after.find(')') else {
                    return Err(format!("`%{name}(` at byte {at} has no closing `)`"));
                };
                argument = Some(&after[..close]);
                rest = &after[close + 1..];
            }
            let mut max_length = None;
            if let Some(after) = rest.strip_prefix(':') {
                let digits = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                let Ok(length) = after[..digits].parse::<usize>() else {
                    return Err(format!(
                        "the `:` after %{name} at byte {at} must be followed by a length in \
                         bytes, e.g. %{name}(user-agent):10%"
                    ));
                };
                max_length = Some(length);
                rest = &after[digits..];
            }
            let Some(after) = rest.strip_prefix('%') else {
                return Err(format!(
                    "the command %{name} at byte {at} is not closed with `%`; write `%%` for \
                     a literal percent sign"
                ));
            };
            rest = after;
            let part = command(name, argument, max_length, headers)?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Format { parts })
    }

    /// Append `record`, formatted, to `out`.
    fn render(&self, record: &Record, out: &mut String) {
        for part in &self.parts {
            // Writing to a String cannot fail.
            let _ = match part {
                Part::Text(text) => out.write_str(text),
                Part::StartTime(format) => {
                    render_time(format, record.start_time, out);
                    Ok(())
                }
                Part::RequestHeader(h) => write_header(&record.request_headers, h, out),
                Part::ResponseHeader(h) => write_header(&record.response_headers, h, out),
                Part::Protocol => out.write_str(or_dash(record.protocol)),
                Part::ResponseCode => write!(out, "{}", record.response_code),
                Part::ResponseFlags => write!(out, "{}", record.response_flags),
                Part::BytesReceived => write!(out, "{}", record.bytes_received),
                Part::BytesSent => write!(out, "{}", record.bytes_sent),
                Part::Duration => write!(out, "{}", record.duration_ms),
                Part::UpstreamHost => match record.upstream_host {
                    Some(host) => write!(out, "{host}"),
                    None => out.write_str("-"),
                },
                Part::UpstreamCluster => {
                    out.write_str(or_dash(record.upstream_cluster.as_deref().unwrap_or("")))
                }
                Part::DownstreamRemoteAddress => write!(out, "{}", record.downstream_remote),
                Part::DownstreamRemoteAddressWithoutPort => {
                    write!(out, "{}", record.downstream_remote.ip())
                }
                Part::DownstreamRemotePort => write!(out, "{}", record.downstream_remote.port()),
                Part::DownstreamLocalAddress => write!(out, "{}", record.downstream_local),
                Part::DownstreamLocalAddressWithoutPort => {
                    write!(out, "{}", record.downstream_local.ip())
                }
                Part::DownstreamLocalPort => write!(out, "{}", record.downstream_local.port()),
            };
        }
    }
}

fn or_dash(value: &str) -> &str {
    if value.is_empty() {
        "-"
    } else {
        value
    }
}

/// Resolve one command.
fn command(
    name: &str,
    argument: Option<&str>,
    max_length: Option<usize>,
    headers: &mut HeaderNames,
) -> Result<Part, String> {
    let part = match name {
        "REQ" | "REQUEST_HEADER" => {
            return header_ref(name, argument, max_length, &mut headers.request)
                .map(Part::RequestHeader)
        }
        "RESP" | "RESPONSE_HEADER" => {
            return header_ref(name, argument, max_length, &mut headers.response)
                .map(Part::ResponseHeader)
        }
        "START_TIME" => {
            if max_length.is_some() {
                return Err(no_length(name));
            }
            return time_format(argument.unwrap_or("")).map(Part::StartTime);
        }
        "PROTOCOL" => Part::Protocol,
        "RESPONSE_CODE" => Part::ResponseCode,
        "RESPONSE_FLAGS" => Part::ResponseFlags,
        "BYTES_RECEIVED" => Part::BytesReceived,
        "BYTES_SENT" => Part::BytesSent,
        "DURATION" => Part::Duration,
        // For an IP endpoint, the upstream connection's remote address is the host's.
        "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => Part::UpstreamHost,
        "UPSTREAM_CLUSTER" => Part::UpstreamCluster,
        "DOWNSTREAM_REMOTE_ADDRESS" => Part::DownstreamRemoteAddress,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Part::DownstreamRemoteAddressWithoutPort,
        "DOWNSTREAM_REMOTE_PORT" => Part::DownstreamRemotePort,
        "DOWNSTREAM_LOCAL_ADDRESS" => Part::DownstreamLocalAddress,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Part::DownstreamLocalAddressWithoutPort,
        "DOWNSTREAM_LOCAL_PORT" => Part::DownstreamLocalPort,
        _ => {
            return Err(format!(
                "unknown command %{name}%; zerohop supports {COMMANDS}, and `%%` for a \
                 literal percent sign"
            ))
        }
    };
    if argument.is_some() {
        return Err(format!("%{name}% takes no argument; write %{name}%"));
    }
    if max_length.is_some() {
        return Err(no_length(name));
    }
    Ok(part)
}

fn no_length(name: &str) -> String {
    format!(
        "%{name}% takes no length (`:N` cuts only %REQ(...)% and %RESP(...)%); write \
         %{name}%"
    )
}

/// Resolve `REQ(name?alternative)`, adding the names to `names`.
fn header_ref(
    command: &str,
    argument: Option<&str>,
    max_length: Option<usize>,
    names: &mut Vec<String>,
) -> Result<HeaderRef, String> {
    let Some(argument) = argument.filter(|a| !a.is_empty()) else {
        return Err(format!(
            "%{command}% needs a header name, e.g. %{command}(x-request-id)%"
        ));
    };
    let (name, alternative) = match argument.split_once('?') {
        Some((name, alternative)) => (name, Some(alternative)),
        None => (argument, None),
    };
    if alternative.is_some_and(|a| a.contains('?')) {
        return Err(format!(
            "%{command}({argument})% has more than one `?`: it takes a header name and at \
             most one alternative"
        ));
    }
    let check = |header: &str| {
        let lower = header.to_ascii_lowercase();
        if is_token(lower.strip_prefix(':').unwrap_or(&lower)) {
            Ok(lower)
        } else {
            Err(format!(
                "`{header}` in %{command}({argument})% is not a header name (a token, or a \
                 pseudo-header such as :path)"
            ))
        }
    };
    let name = index_of(names, check(name)?);
    let alternative = match alternative {
        Some(alternative) => Some(index_of(names, check(alternative)?)),
        None => None,
    };
    Ok(HeaderRef {
        name,
        alternative,
        max_length,
    })
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), as header names are.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn write_header(values: &[Option<String>], header: &HeaderRef, out: &mut String) -> fmt::Result {
    let value = |i: usize| values.get(i).and_then(|v| v.as_deref());
    // As Envoy: the alternative when the header is absent; a present empty one is
    // written empty.
    let value = value(header.name).or_else(|| header.alternative.and_then(value));
    match value {
        Some(value) => out.write_str(truncate(value, header.max_length)),
        None => out.write_str("-"),
    }
}

/// Cut `value` to at most `max` bytes, on a character boundary.
fn truncate(value: &str, max: Option<usize>) -> &str {
    match max {
        Some(max) if value.len() > max => {
            let mut end = max;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            &value[..end]
        }
        _ => value,
    }
}

/// Parse `START_TIME`'s format (empty: Envoy's default).
fn time_format(spec: &str) -> Result<Vec<TimePart>, String> {
    let spec = if spec.is_empty() {
        DEFAULT_TIME_FORMAT
    } else {
        spec
    };
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = spec;
    while let Some(start) = rest.find('%') {
        text.push_str(&rest[..start]);
        rest = &rest[start + 1..];
        let bytes = rest.as_bytes();
        let digit = |i: usize| {
            bytes
                .get(i)
                .filter(|b| (b'1'..=b'9').contains(b))
                .map(|b| b - b'0')
        };
        let (new, used): (Vec<TimePart>, usize) = match bytes.first() {
            Some(b'%') => {
                text.push('%');
                rest = &rest[1..];
                continue;
            }
            Some(b'Y') => (vec![TimePart::Year], 1),
            Some(b'm') => (vec![TimePart::Month], 1),
            Some(b'd') => (vec![TimePart::Day], 1),
            Some(b'H') => (vec![TimePart::Hour], 1),
            Some(b'M') => (vec![TimePart::Minute], 1),
            Some(b'S') => (vec![TimePart::Second], 1),
            Some(b'b') => (vec![TimePart::MonthName], 1),
            Some(b'a') => (vec![TimePart::WeekdayName], 1),
            Some(b'z') => (vec![TimePart::Offset], 1),
            Some(b's') => (vec![TimePart::Epoch], 1),
            Some(b'f') => (vec![TimePart::Fraction(9)], 1),
            Some(b'F') => (
                vec![
                    TimePart::Year,
                    TimePart::Text("-".to_owned()),
                    TimePart::Month,
                    TimePart::Text("-".to_owned()),
                    TimePart::Day,
                ],
                1,
            ),
            Some(b'T') => (
                vec![
                    TimePart::Hour,
                    TimePart::Text(":".to_owned()),
                    TimePart::Minute,
                    TimePart::Text(":".to_owned()),
                    TimePart::Second,
                ],
                1,
            ),
            _ => match (digit(0), bytes.get(1), digit(1), bytes.get(2)) {
                (Some(n), Some(b'f'), _, _) => (vec![TimePart::Fraction(n)], 2),
                (None, Some(b'S'), _, _) if bytes.first() == Some(&b'E') => {
                    return Err(unsupported_specifier(spec, "%ES"));
                }
                (None, _, Some(n), Some(b'S')) if bytes.first() == Some(&b'E') => {
                    (vec![TimePart::SecondsFraction(n)], 3)
                }
                _ => {
                    let shown: String = rest.chars().take(1).collect();
                    return Err(unsupported_specifier(spec, &format!("%{shown}")));
                }
            },
        };
        rest = &rest[used..];
        if !text.is_empty() {
            parts.push(TimePart::Text(std::mem::take(&mut text)));
        }
        for part in new {
            match (part, parts.last_mut()) {
                // Keep adjacent text together (after %F and %T).
                (TimePart::Text(more), Some(TimePart::Text(last))) => last.push_str(&more),
                (part, _) => parts.push(part),
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(TimePart::Text(text));
    }
    Ok(parts)
}

fn unsupported_specifier(spec: &str, specifier: &str) -> String {
    if specifier == "%" {
        return format!(
            "%START_TIME({spec})% ends with a lone `%`; write `%%` for a literal percent sign"
        );
    }
    format!(
        "`{specifier}` in %START_TIME({spec})% is not a time specifier zerohop supports; it \
         supports {TIME_SPECIFIERS} (the time is in UTC)"
    )
}

const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Append `time` in `format`, in UTC (a time before 1970 is written as 1970's start).
fn render_time(format: &[TimePart], time: SystemTime, out: &mut String) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let seconds = since.as_secs();
    let nanos = since.subsec_nanos();
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    for part in format {
        // Writing to a String cannot fail.
        let _ = match part {
            TimePart::Text(text) => out.write_str(text),
            TimePart::Year => write!(out, "{year:04}"),
            TimePart::Month => write!(out, "{month:02}"),
            TimePart::Day => write!(out, "{day:02}"),
            TimePart::Hour => write!(out, "{hour:02}"),
            TimePart::Minute => write!(out, "{minute:02}"),
            TimePart::Second => write!(out, "{second:02}"),
            TimePart::MonthName => out.write_str(MONTH_NAMES[(month - 1) as usize % 12]),
            TimePart::WeekdayName => out.write_str(WEEKDAY_NAMES[((days + 4) % 7) as usize]),
            TimePart::Offset => out.write_str("+0000"),
            TimePart::Epoch => write!(out, "{seconds}"),
            TimePart::Fraction(digits) => write_fraction(out, nanos, *digits),
            TimePart::SecondsFraction(digits) => {
                let _ = write!(out, "{second:02}.");
                write_fraction(out, nanos, *digits)
            }
        };
    }
}

/// Append the first `digits` digits of the fraction of a second `nanos` is (cut, as
/// Envoy's).
fn write_fraction(out: &mut String, nanos: u32, digits: u8) -> fmt::Result {
    let digits = u32::from(digits.clamp(1, 9));
    let value = nanos / 10u32.pow(9 - digits);
    write!(out, "{value:0width$}", width = digits as usize)
}

/// Return the (year, month, day) of the `days`th day after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddrV4;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicUsize;

    use crate::config::{AccessLog, EnvoyConfig};

    /// 2016-04-15T20:17:00.310Z, the time of Envoy's documented example line.
    fn example_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_460_751_420_310)
    }

    fn v4(text: &str) -> SocketAddr {
        SocketAddr::V4(text.parse::<SocketAddrV4>().unwrap())
    }

    /// A record with every value set; headers by name.
    fn record(
        headers: &HeaderNames,
        request: &[(&str, &str)],
        response: &[(&str, &str)],
    ) -> Record {
        let pick = |names: &[String], values: &[(&str, &str)]| {
            names
                .iter()
                .map(|n| {
                    values
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| (*v).to_owned())
                })
                .collect()
        };
        Record {
            start_time: example_time(),
            duration_ms: 226,
            protocol: "HTTP/1.1",
            response_code: 204,
            response_flags: ResponseFlags::default(),
            bytes_received: 154,
            bytes_sent: 0,
            upstream_host: Some(v4("10.0.2.1:80")),
            upstream_cluster: Some(Arc::from("locations")),
            downstream_remote: v4("10.0.35.28:40000"),
            downstream_local: v4("10.0.0.1:8080"),
            request_headers: pick(&headers.request, request),
            response_headers: pick(&headers.response, response),
        }
    }

    /// Render `format` for the record `make` builds from the format's header lists.
    fn render_with(format: &str, make: impl FnOnce(&HeaderNames) -> Record) -> String {
        let mut headers = HeaderNames::default();
        let format = Format::parse(format, &mut headers).unwrap_or_else(|e| panic!("{e}"));
        let record = make(&headers);
        let mut out = String::new();
        format.render(&record, &mut out);
        out
    }

    fn render(format: &str) -> String {
        render_with(format, |h| record(h, &[], &[]))
    }

    fn parse_error(format: &str) -> String {
        match check_format(format) {
            Ok(()) => panic!("`{format}` parsed"),
            Err(error) => error,
        }
    }

    #[test]
    fn default_format_renders_as_envoys_example() {
        // Envoy's documented example line (its protocol is HTTP/2; ours HTTP/1.1).
        let line = render_with(DEFAULT_FORMAT, |h| {
            let mut r = record(
                h,
                &[
                    (":method", "POST"),
                    (":path", "/api/v1/locations"),
                    ("x-forwarded-for", "10.0.35.28"),
                    ("user-agent", "nsq2http"),
                    ("x-request-id", "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"),
                    (":authority", "locations"),
                ],
                &[("x-envoy-upstream-service-time", "100")],
            );
            r.protocol = "HTTP/2";
            r
        });
        assert_eq!(
            line,
            "[2016-04-15T20:17:00.310Z] \"POST /api/v1/locations HTTP/2\" 204 - 154 0 226 100 \
             \"10.0.35.28\" \"nsq2http\" \"cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2\" \
             \"locations\" \"10.0.2.1:80\"\n"
        );
    }

    #[test]
    fn default_format_is_envoys_classic_one() {
        // REQUEST_HEADER/RESPONSE_HEADER are today's names of REQ/RESP: both spellings
        // render alike and want the same headers in the same order.
        let classic = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% \
             %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% \
             %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \
             \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \
             \"%UPSTREAM_HOST%\"\n";
        let mut a = HeaderNames::default();
        let mut b = HeaderNames::default();
        Format::parse(classic, &mut a).unwrap();
        Format::parse(DEFAULT_FORMAT, &mut b).unwrap();
        assert_eq!(a.request, b.request);
        assert_eq!(a.response, b.response);
        assert_eq!(
            b.request,
            [
                ":method",
                "x-envoy-original-path",
                ":path",
                "x-forwarded-for",
                "user-agent",
                "x-request-id",
                ":authority"
            ]
        );
        assert_eq!(b.response, ["x-envoy-upstream-service-time"]);
        let request = [
            (":method", "GET"),
            (":path", "/a"),
            ("x-envoy-original-path", "/orig"),
        ];
        assert_eq!(
            render_with(classic, |h| record(h, &request, &[])),
            render_with(DEFAULT_FORMAT, |h| record(h, &request, &[]))
        );
    }

    #[test]
    fn tcp_proxy_record_renders_dashes() {
        // tcp_proxy: no protocol, no code, no headers (an empty list).
        let line = render_with(DEFAULT_FORMAT, |h| {
            let mut r = record(h, &[], &[]);
            r.protocol = "";
            r.response_code = 0;
            r.request_headers = Vec::new();
            r.response_headers = Vec::new();
            r.upstream_host = None;
            r.response_flags.set(ResponseFlags::NO_HEALTHY_UPSTREAM);
            r
        });
        assert_eq!(
            line,
            "[2016-04-15T20:17:00.310Z] \"- - -\" 0 UH 154 0 226 - \"-\" \"-\" \"-\" \"-\" \
             \"-\"\n"
        );
    }

    #[test]
    fn every_command_renders() {
        for (format, expected) in [
            ("%PROTOCOL%", "HTTP/1.1"),
            ("%RESPONSE_CODE%", "204"),
            ("%RESPONSE_FLAGS%", "-"),
            ("%BYTES_RECEIVED%", "154"),
            ("%BYTES_SENT%", "0"),
            ("%DURATION%", "226"),
            ("%UPSTREAM_HOST%", "10.0.2.1:80"),
            ("%UPSTREAM_REMOTE_ADDRESS%", "10.0.2.1:80"),
            ("%UPSTREAM_CLUSTER%", "locations"),
            ("%DOWNSTREAM_REMOTE_ADDRESS%", "10.0.35.28:40000"),
            ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.0.35.28"),
            ("%DOWNSTREAM_REMOTE_PORT%", "40000"),
            ("%DOWNSTREAM_LOCAL_ADDRESS%", "10.0.0.1:8080"),
            ("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "10.0.0.1"),
            ("%DOWNSTREAM_LOCAL_PORT%", "8080"),
            ("%START_TIME%", "2016-04-15T20:17:00.310Z"),
            ("%START_TIME()%", "2016-04-15T20:17:00.310Z"),
            ("100%% of %PROTOCOL%%%", "100% of HTTP/1.1%"),
            ("no commands", "no commands"),
            ("", ""),
        ] {
            assert_eq!(render(format), expected, "{format}");
        }
    }

    #[test]
    fn missing_values_are_dashes() {
        let line = render_with(
            "%PROTOCOL% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %REQ(x-a)% %RESP(x-b)% %RESPONSE_CODE%",
            |h| {
                let mut r = record(h, &[], &[]);
                r.protocol = "";
                r.upstream_host = None;
                r.upstream_cluster = None;
                r.response_code = 0;
                r
            },
        );
        assert_eq!(line, "- - - - - 0");
        // An empty cluster name is missing too.
        let line = render_with("%UPSTREAM_CLUSTER%", |h| {
            let mut r = record(h, &[], &[]);
            r.upstream_cluster = Some(Arc::from(""));
            r
        });
        assert_eq!(line, "-");
    }

    #[test]
    fn headers_with_alternatives_and_lengths() {
        let request = [
            ("x-a", "abcdef"),
            ("x-b", "second"),
            ("x-empty", ""),
            ("x-utf", "héllo"),
        ];
        let response = [("x-up", "upstream")];
        for (format, expected) in [
            ("%REQ(X-A)%", "abcdef"),
            ("%REQ(x-a):3%", "abc"),
            ("%REQ(x-a):0%", ""),
            ("%REQ(x-a):100%", "abcdef"),
            ("%REQ(x-missing?x-b)%", "second"),
            ("%REQ(x-missing?x-b):2%", "se"),
            ("%REQ(x-a?x-b)%", "abcdef"),
            ("%REQ(x-missing?x-other)%", "-"),
            ("%REQ(x-missing)%", "-"),
            // Present but empty: written empty, and the alternative is not used (Envoy).
            ("[%REQ(x-empty?x-b)%]", "[]"),
            // Cut on a character boundary: `é` is two bytes.
            ("%REQ(x-utf):2%", "h"),
            ("%REQ(x-utf):3%", "hé"),
            ("%REQUEST_HEADER(x-b)%", "second"),
            ("%RESP(X-UP)%", "upstream"),
            ("%RESP(x-up):2%", "up"),
            ("%RESPONSE_HEADER(x-none?x-up)%", "upstream"),
            ("%RESP(x-a)%", "-"),
        ] {
            let got = render_with(format, |h| record(h, &request, &response));
            assert_eq!(got, expected, "{format}");
        }
    }

    #[test]
    fn wanted_headers_are_each_listed_once() {
        let mut headers = HeaderNames::default();
        Format::parse("%REQ(X-A?:PATH)% %REQ(x-a)% %RESP(x-r)%", &mut headers).unwrap();
        Format::parse("%REQ(:path)% %REQ(x-b)% %RESP(X-R)%", &mut headers).unwrap();
        assert_eq!(headers.request, ["x-a", ":path", "x-b"]);
        assert_eq!(headers.response, ["x-r"]);
    }

    #[test]
    fn start_time_formats() {
        for (spec, expected) in [
            ("%s", "1460751420"),
            ("%s.%3f", "1460751420.310"),
            ("%s.%6f", "1460751420.310000"),
            ("%f", "310000000"),
            ("%Y-%m-%dT%H:%M:%S%z", "2016-04-15T20:17:00+0000"),
            ("%F %T", "2016-04-15 20:17:00"),
            ("%d/%b/%Y:%H:%M:%S %z", "15/Apr/2016:20:17:00 +0000"),
            ("%a", "Fri"),
            ("%E3S", "00.310"),
            ("%E1S", "00.3"),
            ("100%%", "100%"),
            ("at %H", "at 20"),
        ] {
            assert_eq!(render(&format!("%START_TIME({spec})%")), expected, "{spec}");
        }
    }

    #[test]
    fn dates() {
        let date = |seconds: u64| {
            let mut out = String::new();
            let format = time_format("%F %T %a").unwrap();
            render_time(&format, UNIX_EPOCH + Duration::from_secs(seconds), &mut out);
            out
        };
        assert_eq!(date(0), "1970-01-01 00:00:00 Thu");
        assert_eq!(date(951_782_400), "2000-02-29 00:00:00 Tue");
        assert_eq!(date(951_868_800), "2000-03-01 00:00:00 Wed");
        assert_eq!(date(1_700_000_000), "2023-11-14 22:13:20 Tue");
        assert_eq!(date(4_102_444_799), "2099-12-31 23:59:59 Thu");
        // Before the epoch: the epoch.
        let mut out = String::new();
        render_time(
            &time_format("").unwrap(),
            UNIX_EPOCH - Duration::from_secs(10),
            &mut out,
        );
        assert_eq!(out, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn response_flags_in_envoys_order() {
        let mut flags = ResponseFlags::default();
        assert_eq!(flags.to_string(), "-");
        flags.set(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
        flags.set(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
        assert_eq!(flags.to_string(), "UF,URX");
        assert!(flags.contains(ResponseFlags::UPSTREAM_CONNECTION_FAILURE));
        assert!(!flags.contains(ResponseFlags::NO_HEALTHY_UPSTREAM));
        for (flag, name) in [
            (ResponseFlags::NO_HEALTHY_UPSTREAM, "UH"),
            (ResponseFlags::UPSTREAM_CONNECTION_FAILURE, "UF"),
            (ResponseFlags::UPSTREAM_OVERFLOW, "UO"),
            (ResponseFlags::NO_ROUTE_FOUND, "NR"),
            (ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX"),
            (ResponseFlags::UPSTREAM_REQUEST_TIMEOUT, "UT"),
            (ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION, "DC"),
            (ResponseFlags::UPSTREAM_CONNECTION_TERMINATION, "UC"),
            (ResponseFlags::LOCAL_RESET, "LR"),
            (ResponseFlags::RATE_LIMITED, "RL"),
            (ResponseFlags::FAULT_INJECTED, "FI"),
            (ResponseFlags::DELAY_INJECTED, "DI"),
            (ResponseFlags::STREAM_IDLE_TIMEOUT, "SI"),
            (ResponseFlags::UPSTREAM_MAX_STREAM_DURATION_REACHED, "UMSDR"),
            (ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR, "DPE"),
            (ResponseFlags::UPSTREAM_REMOTE_RESET, "UR"),
            (ResponseFlags::DOWNSTREAM_REMOTE_RESET, "DR"),
        ] {
            assert_eq!(ResponseFlags(flag).to_string(), name);
        }
        let all = ResponseFlags((1 << ResponseFlags::NAMES.len()) - 1);
        assert_eq!(
            all.to_string(),
            "LH,UH,UT,LR,UR,UF,UC,UO,NR,DI,FI,RL,UAEX,RLSE,DC,URX,SI,IH,DPE,UMSDR,RFCF,NFCF,DT,\
             UPE,NC,OM,DF,DO,DR"
        );
    }

    #[test]
    fn format_errors() {
        for (format, expected) in [
            (
                "%FOO%",
                "unknown command %FOO%; zerohop supports %START_TIME%",
            ),
            ("%REQ_HEADER(x)%", "unknown command %REQ_HEADER%"),
            (
                "%HOSTNAME%",
                "%DOWNSTREAM_LOCAL_PORT%, and `%%` for a literal percent sign",
            ),
            ("100% done", "the `%` at byte 3 starts no command"),
            ("%start_time%", "command names are uppercase"),
            ("trailing %", "the `%` at byte 9 starts no command"),
            (
                "%PROTOCOL",
                "the command %PROTOCOL at byte 0 is not closed with `%`",
            ),
            ("a %REQ(x-a %", "`%REQ(` at byte 2 has no closing `)`"),
            ("%REQ(x-a):%", "must be followed by a length in bytes"),
            (
                "%REQ(x-a):99999999999999999999999%",
                "must be followed by a length",
            ),
            (
                "%REQ%",
                "%REQ% needs a header name, e.g. %REQ(x-request-id)%",
            ),
            ("%RESP()%", "%RESP% needs a header name"),
            ("%REQ(a?b?c)%", "has more than one `?`"),
            ("%REQ(a b)%", "`a b` in %REQ(a b)% is not a header name"),
            ("%REQ(x?)%", "`` in %REQ(x?)% is not a header name"),
            ("%PROTOCOL(x)%", "%PROTOCOL% takes no argument"),
            ("%DURATION:3%", "%DURATION% takes no length"),
            ("%START_TIME:3%", "%START_TIME% takes no length"),
            (
                "%START_TIME(%q)%",
                "`%q` in %START_TIME(%q)% is not a time specifier",
            ),
            ("%START_TIME(%ES)%", "`%ES` in %START_TIME(%ES)%"),
            ("%START_TIME(%0f)%", "`%0`"),
            ("%START_TIME(%Y%)%", "ends with a lone `%`"),
        ] {
            let error = parse_error(format);
            assert!(error.contains(expected), "`{format}`: {error}");
        }
    }

    /// A fresh path in the temp directory.
    fn temp_path(name: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!(
            "zerohop-access-log-{}-{n}-{name}",
            std::process::id()
        ))
    }

    /// A config with one tcp_proxy listener and one HTTP listener; `http_logs` and
    /// `tcp_logs` are their access logs.
    fn config(tcp_logs: Vec<AccessLog>, http_logs: Vec<AccessLog>) -> EnvoyConfig {
        let text = r#"
static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 0.0.0.0, port_value: 9000 } }
    filter_chains:
    - filters:
      - typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: c
  - name: http
    address: { socket_address: { address: 0.0.0.0, port_value: 8080 } }
    filter_chains:
    - filters:
      - typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: c } }] }] }
          http_filters: [{ name: envoy.filters.http.router }]
  clusters:
  - name: c
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.0.2, port_value: 80 } } }
"#;
        let mut config = EnvoyConfig::from_yaml(text, "test.yaml").unwrap();
        for listener in &mut config.listeners {
            match &mut listener.filter {
                NetworkFilter::TcpProxy(t) => t.access_log = tcp_logs.clone(),
                NetworkFilter::HttpConnectionManager(h) => h.access_log = http_logs.clone(),
            }
        }
        config
    }

    fn log(path: &Path, format: &str) -> AccessLog {
        AccessLog {
            path: path.to_string_lossy().into_owned(),
            format: format.to_owned(),
        }
    }

    fn value(logs: &AccessLogs, name: &str) -> u64 {
        logs.values()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn nothing_configured() {
        let logs = AccessLogs::new(&config(Vec::new(), Vec::new())).unwrap();
        assert!(logs.is_empty());
        assert!(logs.sink(0).is_none());
        assert!(logs.sink(1).is_none());
        assert!(logs.sink(7).is_none());
        assert_eq!(logs.flush(), 0);
        assert!(logs.values().is_empty());
    }

    #[test]
    fn flush_writes_each_listeners_records_to_its_files() {
        let shared = temp_path("shared.log");
        let http_only = temp_path("http.log");
        let logs = AccessLogs::new(&config(
            vec![log(
                &shared,
                "tcp %DOWNSTREAM_REMOTE_ADDRESS% %RESPONSE_FLAGS%\n",
            )],
            vec![
                log(&shared, "http %REQ(:PATH)% %RESPONSE_CODE%\n"),
                log(&http_only, "%REQ(X-REQUEST-ID)% %REQ(:path)%\n"),
            ],
        ))
        .unwrap();
        assert!(!logs.is_empty());
        let tcp = logs.sink(0).unwrap();
        let http = logs.sink(1).unwrap();
        assert!(tcp.wanted_headers().is_empty());
        assert_eq!(http.wanted_headers(), [":path", "x-request-id"]);
        assert!(http.wanted_response_headers().is_empty());

        let mut r = record(&HeaderNames::default(), &[], &[]);
        r.request_headers = vec![Some("/a".to_owned()), Some("id-1".to_owned())];
        http.push(r.clone());
        let mut t = r.clone();
        t.request_headers = Vec::new();
        t.response_flags
            .set(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
        tcp.push(t);
        r.request_headers = vec![Some("/b".to_owned()), None];
        http.push(r);

        assert_eq!(logs.flush(), 3);
        assert_eq!(
            std::fs::read_to_string(&shared).unwrap(),
            "tcp 10.0.35.28:40000 UF\nhttp /a 204\nhttp /b 204\n"
        );
        assert_eq!(
            std::fs::read_to_string(&http_only).unwrap(),
            "id-1 /a\n- /b\n"
        );
        assert_eq!(value(&logs, "access_logs.file.logs_written"), 5);
        assert_eq!(value(&logs, "access_logs.file.logs_dropped"), 0);
        assert_eq!(value(&logs, "filesystem.write_completed"), 2);
        assert_eq!(value(&logs, "filesystem.write_failed"), 0);
        assert!(logs.take_errors().is_empty());
        // Nothing queued: nothing written.
        assert_eq!(logs.flush(), 0);
        assert_eq!(value(&logs, "filesystem.write_completed"), 2);

        // Appends to what is there.
        drop(logs);
        let logs = AccessLogs::new(&config(vec![log(&shared, "again\n")], Vec::new())).unwrap();
        logs.sink(0)
            .unwrap()
            .push(record(&HeaderNames::default(), &[], &[]));
        assert_eq!(logs.flush(), 1);
        assert!(std::fs::read_to_string(&shared)
            .unwrap()
            .ends_with("http /b 204\nagain\n"));
        let _ = std::fs::remove_file(&shared);
        let _ = std::fs::remove_file(&http_only);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let path = temp_path("full.log");
        let logs =
            AccessLogs::with_capacity(&config(vec![log(&path, "%BYTES_SENT%\n")], Vec::new()), 4)
                .unwrap();
        let sink = logs.sink(0).unwrap();
        for i in 0..10 {
            let mut r = record(&HeaderNames::default(), &[], &[]);
            r.bytes_sent = i;
            sink.push(r);
        }
        assert_eq!(sink.dropped(), 6);
        assert_eq!(value(&logs, "access_logs.file.logs_dropped"), 6);
        assert_eq!(logs.flush(), 4);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n1\n2\n3\n");
        // Room again.
        sink.push(record(&HeaderNames::default(), &[], &[]));
        assert_eq!(logs.flush(), 1);
        assert_eq!(sink.dropped(), 6);
        // Workers on other threads push while the writer flushes.
        let pushers: Vec<_> = (0..2)
            .map(|_| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        sink.push(record(&HeaderNames::default(), &[], &[]));
                    }
                })
            })
            .collect();
        let mut flushed = 0;
        while pushers.iter().any(|p| !p.is_finished()) {
            flushed += logs.flush();
        }
        for pusher in pushers {
            pusher.join().unwrap();
        }
        flushed += logs.flush();
        assert_eq!(flushed as u64 + sink.dropped() - 6, 2000);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn open_errors_name_the_file() {
        let path = temp_path("no-such-dir").join("access.log");
        let error = AccessLogs::new(&config(vec![log(&path, "x\n")], Vec::new())).unwrap_err();
        assert!(
            error.starts_with(&format!(
                "cannot open access log `{}` of listener `tcp`: ",
                path.display()
            )),
            "{error}"
        );
        assert!(error.contains("No such file or directory"), "{error}");
    }

    #[test]
    fn write_errors_are_counted_and_reported() {
        // /dev/full fails every write with ENOSPC.
        if !std::path::Path::new("/dev/full").exists() {
            return;
        }
        let logs = AccessLogs::new(&config(
            vec![AccessLog {
                path: "/dev/full".to_owned(),
                format: "%DURATION%\n".to_owned(),
            }],
            Vec::new(),
        ))
        .unwrap();
        let sink = logs.sink(0).unwrap();
        sink.push(record(&HeaderNames::default(), &[], &[]));
        sink.push(record(&HeaderNames::default(), &[], &[]));
        assert_eq!(logs.flush(), 2);
        assert_eq!(value(&logs, "filesystem.write_failed"), 1);
        assert_eq!(value(&logs, "filesystem.write_completed"), 0);
        sink.push(record(&HeaderNames::default(), &[], &[]));
        logs.flush();
        let errors = logs.take_errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("access log `/dev/full`: write failed: "),
            "{errors:?}"
        );
        assert!(errors[0].ends_with("(2 failed writes)"), "{errors:?}");
        assert!(logs.take_errors().is_empty());
    }

    #[test]
    fn invalid_formats_are_refused_when_opening() {
        let path = temp_path("bad.log");
        let error = AccessLogs::new(&config(Vec::new(), vec![log(&path, "%NOPE%")])).unwrap_err();
        assert!(
            error.contains("listener `http`: invalid format: unknown command %NOPE%"),
            "{error}"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sink_is_cheap_to_share() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Sink>();
        send_sync::<AccessLogs>();
    }
}
