//! The admin API: Envoy's `admin.address`, on a kernel socket (loopback by
//! default), served by one thread of its own.
//!
//! It reads what the workers publish (counters and histograms are atomics
//! with one writer, the shared cluster state is atomics too) and never takes
//! a lock a worker takes, so reading stats does not slow the data path. What
//! it asks of the process (drain, quit, a packet trace) goes through
//! [`Introspect`], which the runtime implements.
//!
//! One request per connection (`Connection: close`); malformed requests get
//! 400, unknown paths 404, a wrong method 405, and the server keeps running.

pub mod format;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{info, warn};

/// Largest request head the admin server reads.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the accept loop looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Connections served at once (one thread each); more are answered 503.
const MAX_CLIENTS: usize = 16;

/// What the admin API reads from, and asks of, the running process.
pub trait Introspect: Send + Sync {
    /// Every counter and gauge (Envoy names) and every histogram.
    fn stats(&self) -> (Vec<(String, u64)>, Vec<format::Histogram>);
    /// `/clusters`: every endpoint's state, Envoy's `cluster::host::key::value` lines.
    fn clusters(&self) -> String;
    /// `/config_dump`: the configuration in effect.
    fn config_dump(&self) -> String;
    /// `/runtime/nodes`: per worker and graph node, calls, vectors, vectors per
    /// call and cycles per packet (VPP's `show runtime`).
    fn runtime_nodes(&self) -> String;
    /// `/runtime/errors`: drops per worker, node and reason (VPP's `show errors`).
    fn runtime_errors(&self) -> String;
    /// Trace the next `packets` packets on every worker (earlier records go).
    fn start_trace(&self, packets: usize);
    /// The packet trace recorded so far.
    fn trace(&self) -> String;
    /// Whether the process drains (listeners closed, connections finishing).
    fn draining(&self) -> bool;
    /// Stop accepting connections and let the open ones finish.
    fn drain_listeners(&self);
    /// Drain, then exit (as on SIGTERM).
    fn quit(&self);
    /// Load the configuration file again and switch to it (what changed, or
    /// why it was refused; the old configuration stays then).
    fn reload(&self) -> Result<String, String>;
}

/// The running admin server; dropping it stops the thread.
pub struct Admin {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Admin {
    /// Listen on `address` and serve from a thread of its own.
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local).
    pub fn start(address: SocketAddr, process: Arc<dyn Introspect>) -> Result<Admin> {
        let listener = TcpListener::bind(address)
            .with_context(|| format!("admin: cannot listen on {address}"))?;
        listener
            .set_nonblocking(true)
            .context("admin: non-blocking listener")?;
        let address = listener.local_addr().unwrap_or(address);
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Server {
            process,
            clients: AtomicUsize::new(0),
            healthcheck_failed: AtomicBool::new(false),
        });
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("zh-admin".to_owned())
            .spawn(move || state.run(&listener, &flag))
            .context("admin: spawn its thread")?;
        info!("admin: listening on http://{address}/");
        Ok(Admin {
            address,
            stop,
            handle: Some(handle),
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Server {
    process: Arc<dyn Introspect>,
    /// Connections being served now.
    clients: AtomicUsize,
    /// `POST /healthcheck/fail` was called (and not undone by `/healthcheck/ok`).
    healthcheck_failed: AtomicBool,
}

/// An answer: status, content type, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: None,
        }
    }
}

const INDEX: &str = "zerohop admin\n\
GET  /stats                  counters, gauges and histograms (name: value)\n\
GET  /stats/prometheus       the same in Prometheus text format\n\
GET  /clusters               every endpoint: health, requests, latency\n\
GET  /config_dump            the configuration in effect\n\
GET  /ready                  LIVE, or 503 DRAINING\n\
POST /healthcheck/fail       /ready answers 503 from now on\n\
POST /healthcheck/ok         undo /healthcheck/fail\n\
POST /drain_listeners        stop accepting; open connections finish\n\
POST /quitquitquit           drain, then exit\n\
POST /reload                 load the config file again (or refuse it, saying why)\n\
GET  /runtime/nodes          per graph node: calls, vectors/call, cycles/packet\n\
GET  /runtime/errors         drops per node and reason\n\
POST /trace?packets=N        trace the next N packets of each worker\n\
GET  /trace                  the packet trace\n";

impl Server {
    /// Accept connections and serve each on a thread of its own, so that a
    /// slow client holds up no one else.
    fn run(self: Arc<Self>, listener: &TcpListener, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    if self.clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                        self.clients.fetch_sub(1, Ordering::AcqRel);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
                        write_answer(&mut stream, &Answer::text(503, "busy\n"), false);
                        continue;
                    }
                    let server = self.clone();
                    let spawned = std::thread::Builder::new()
                        .name("zh-admin-conn".to_owned())
                        .spawn(move || {
                            server.serve(stream);
                            server.clients.fetch_sub(1, Ordering::AcqRel);
                        });
                    if let Err(e) = spawned {
                        self.clients.fetch_sub(1, Ordering::AcqRel);
                        warn!("admin: cannot start a thread for a client: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(POLL);
                }
                Err(e) => {
                    warn!("admin: accept: {e}");
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    fn serve(&self, mut stream: TcpStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
        let (answer, head_only) = match read_head(&mut stream) {
            Ok(Some((method, target))) => (self.route(&method, &target), method == "HEAD"),
            Ok(None) => (Answer::text(400, "bad request\n"), false),
            Err(_) => return,
        };
        write_answer(&mut stream, &answer, head_only);
    }

    fn route(&self, method: &str, target: &str) -> Answer {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let get = |f: &dyn Fn() -> Answer| match method {
            "GET" | "HEAD" => f(),
            _ => not_allowed("GET"),
        };
        let post = |f: &dyn Fn() -> Answer| match method {
            "POST" => f(),
            _ => not_allowed("POST"),
        };
        let p = &self.process;
        match path {
            "/" => get(&|| Answer::text(200, INDEX)),
            "/stats" => get(&|| {
                let (stats, hist) = p.stats();
                Answer::text(200, format::text(&stats, &hist))
            }),
            "/stats/prometheus" => get(&|| {
                let (stats, hist) = p.stats();
                Answer {
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    ..Answer::text(200, format::prometheus(&stats, &hist))
                }
            }),
            "/clusters" => get(&|| Answer::text(200, p.clusters())),
            "/config_dump" => get(&|| Answer {
                content_type: "application/yaml",
                ..Answer::text(200, p.config_dump())
            }),
            "/ready" => get(&|| {
                if p.draining() || self.healthcheck_failed.load(Ordering::Relaxed) {
                    Answer::text(503, "DRAINING\n")
                } else {
                    Answer::text(200, "LIVE\n")
                }
            }),
            "/healthcheck/fail" => post(&|| {
                self.healthcheck_failed.store(true, Ordering::Relaxed);
                Answer::text(200, "OK\n")
            }),
            "/healthcheck/ok" => post(&|| {
                self.healthcheck_failed.store(false, Ordering::Relaxed);
                Answer::text(200, "OK\n")
            }),
            "/drain_listeners" => post(&|| {
                p.drain_listeners();
                Answer::text(200, "OK\n")
            }),
            "/quitquitquit" => post(&|| {
                p.quit();
                Answer::text(200, "OK\n")
            }),
            "/reload" => post(&|| match p.reload() {
                Ok(msg) => Answer::text(200, format!("{msg}\n")),
                Err(e) => Answer::text(400, format!("reload refused: {e}\n")),
            }),
            "/runtime/nodes" => get(&|| Answer::text(200, p.runtime_nodes())),
            "/runtime/errors" => get(&|| Answer::text(200, p.runtime_errors())),
            "/trace" => match method {
                "GET" | "HEAD" => Answer::text(200, p.trace()),
                "POST" => match trace_packets(query) {
                    Some(n) => {
                        p.start_trace(n);
                        Answer::text(200, format!("tracing the next {n} packets per worker\n"))
                    }
                    None => Answer::text(
                        400,
                        "POST /trace?packets=N: N is a number from 1 to 10000\n",
                    ),
                },
                _ => not_allowed("GET, POST"),
            },
            _ => Answer::text(404, format!("not found: {path}\n\n{INDEX}")),
        }
    }
}

/// Write `answer` and close. A HEAD request's answer has no body (its
/// `content-length` is the body's all the same).
fn write_answer(stream: &mut TcpStream, answer: &Answer, head_only: bool) {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{}connection: close\r\n\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len(),
        answer
            .allow
            .map_or_else(String::new, |a| format!("allow: {a}\r\n")),
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| {
        if head_only {
            Ok(())
        } else {
            stream.write_all(answer.body.as_bytes())
        }
    });
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn not_allowed(allow: &'static str) -> Answer {
    Answer {
        allow: Some(allow),
        ..Answer::text(405, format!("method not allowed: use {allow}\n"))
    }
}

/// `packets=N` of a query, 1 to 10 000.
fn trace_packets(query: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("packets="))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| (1..=10_000).contains(n))
}

/// Read a request head; `Ok(None)` when it is not HTTP/1.x or too long.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<(String, String)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    // The whole head within READ_TIMEOUT, not each read.
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let (Some(method), Some(path)) = (req.method, req.path) else {
                    return Ok(None);
                };
                return Ok(Some((method.to_owned(), path.to_owned())));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return Ok(None),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_takes_a_bounded_count() {
        assert_eq!(trace_packets("packets=50"), Some(50));
        assert_eq!(trace_packets("x=1&packets=2"), Some(2));
        assert_eq!(trace_packets("packets=0"), None);
        assert_eq!(trace_packets("packets=100000"), None);
        assert_eq!(trace_packets("packets=abc"), None);
        assert_eq!(trace_packets(""), None);
    }
}
