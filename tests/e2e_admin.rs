//! End-to-end: zerohop's admin API (Envoy's `admin.address`) and its graceful
//! drain on SIGTERM and `/quitquitquit`, with the real binary, real upstreams and
//! real clients.
//!
//! Same topology as `e2e_http_proxy.rs` ([`ProxyTopology`]): clients in C, zerohop
//! in P on two `net_af_packet` ports, upstream servers
//! (`tests/fixtures/resilience/upstream.py`, with `--delay-ms` and `--stall`) in U.
//! The admin server listens on a *kernel* socket, `127.0.0.1:<port>` inside P, so
//! the tests ask it with `curl` (and `tests/fixtures/http/raw.py` for malformed
//! requests) run in P.
//!
//! - [`admin_endpoints_answer_and_survive_bad_requests`]: after 50 requests through
//!   the proxy, `/stats`, `/stats/prometheus` (checked line by line against the
//!   exposition format and parsed with `prometheus-parse`), `/clusters`, `/ready`
//!   with `/healthcheck/fail|ok`, `/config_dump`, `/runtime/nodes`,
//!   `/runtime/errors` and `/trace` answer what the traffic did; malformed
//!   requests, unknown paths, wrong methods and bad arguments get 400/404/405 and
//!   the server keeps answering.
//! - [`sigterm_drains_in_flight_requests`]: SIGTERM with slow requests in flight
//!   and idle keep-alive connections open: the in-flight requests finish (200,
//!   `connection: close`), the idle connections are closed, new connections are
//!   refused, and zerohop exits 0 as soon as the last connection is gone.
//! - [`drain_listeners_then_quitquitquit_exits`]: `POST /drain_listeners` stops
//!   the listeners without stopping zerohop; `POST /quitquitquit` makes it exit 0.
//! - [`drain_time_limits_the_wait`]: with `--drain-time-s 1`, a request that never
//!   completes holds the drain for 1 s only.
//!
//! The tests run one at a time ([`one_at_a_time`]): two of them measure times.
//! Needs root; run with `cargo test --test e2e_admin`.

mod common;

use common::*;
use prometheus_parse::{LineInfo, Scrape, Value};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const LISTENER_PORT: u16 = 8080;
const SERVER_READY: Duration = Duration::from_secs(15);
/// How long the admin server may take to answer once zerohop logged `ready`
/// (it starts right after).
const ADMIN_READY: Duration = Duration::from_secs(10);
/// How often the tests look at a log or a process.
const POLL: Duration = Duration::from_millis(10);

// ---- Config ----

/// The `dataplane` section of [`ProxyTopology`]: one worker, ports `down` and `up`.
fn dataplane(topo: &ProxyTopology) -> String {
    let (down, up) = (topo.veth_c.proxy_if(), topo.veth_u.proxy_if());
    format!(
        r#"dataplane:
  cores: [{core}]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: down
      device: "net_af_packet0,iface={down}"
      address: {PROXY_DOWN}/24
    - name: up
      device: "net_af_packet1,iface={up}"
      address: {PROXY_UP}/24
"#,
        core = worker_core(),
    )
}

/// A STATIC round-robin cluster `name` over `UPSTREAM:port` for each of `ports`, with
/// `extra` (cluster keys, each line indented four spaces) before its endpoints.
fn cluster(name: &str, ports: &[u16], extra: &str) -> String {
    let endpoints: String = ports
        .iter()
        .map(|port| {
            format!(
                "        - endpoint: {{ address: {{ socket_address: \
                 {{ address: {UPSTREAM}, port_value: {port} }} }} }}\n"
            )
        })
        .collect();
    format!(
        "  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    \
         lb_policy: ROUND_ROBIN\n{extra}    load_assignment:\n      cluster_name: {name}\n      \
         endpoints:\n      - lb_endpoints:\n{endpoints}"
    )
}

/// A route entry (of `routes:`, lines indented 14 spaces): `prefix` to `cluster`,
/// with the route timeout off (only the test's own bounds apply).
fn route(prefix: &str, cluster: &str) -> String {
    format!(
        "              - match: {{ prefix: \"{prefix}\" }}\n                route: \
         {{ cluster: {cluster}, timeout: 0s }}\n"
    )
}

/// The whole config: [`dataplane`], the admin API on 127.0.0.1:`admin_port`,
/// listener `ingress` on 0.0.0.0:[`LISTENER_PORT`] (an HTTP connection manager, stat
/// prefix `ingress`) with `routes` (from [`route`]) and `clusters` (from [`cluster`]).
fn config(topo: &ProxyTopology, admin_port: u16, routes: &str, clusters: &str) -> String {
    format!(
        r#"{dataplane}admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: {{ address: 0.0.0.0, port_value: {LISTENER_PORT} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          route_config:
            name: local
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}"#,
        dataplane = dataplane(topo),
    )
}

// ---- zerohop with extra arguments ----

/// The zerohop binary in a namespace, like [`Zerohop`] but with extra command-line
/// arguments (`--drain-time-s`) and a way to wait for an exit the test did not cause
/// by a signal of its own (`/quitquitquit`), or to time one it did. Drop stops it
/// (SIGTERM, then SIGKILL after 5 s) if it still runs.
struct Proxy {
    child: Option<Child>,
    status: Option<ExitStatus>,
    log_path: PathBuf,
    // Last field: dropped after `Drop::drop` has stopped the child.
    _dir: TempDir,
}

impl Proxy {
    /// Write `config` and start `zerohop -c FILE --mode serve -l info EXTRA…` in `ns`.
    fn start(ns: &Netns, config: &str, extra: &[&str]) -> Proxy {
        let dir = TempDir::new("admin");
        let config_path = dir.path().join("zerohop.yaml");
        let log_path = dir.path().join("zerohop.log");
        fs::write(&config_path, config).expect("write config");
        let log = File::create(&log_path).expect("create log");
        let child = ns
            .command(ZEROHOP, &[])
            .arg("-c")
            .arg(&config_path)
            .args(["--mode", "serve", "-l", "info"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ZEROHOP}: {e}"));
        Proxy {
            child: Some(child),
            status: None,
            log_path,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("started").id()
    }

    fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status, once it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.status = Some(status);
                }
            }
        }
        self.status
    }

    /// Wait for `zerohop ready`; panic with the log if it exits first or `timeout`
    /// passes.
    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains("zerohop ready") {
            if let Some(status) = self.exited() {
                panic!(
                    "zerohop exited before ready ({})\nlog:\n{}",
                    describe(status),
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "zerohop not ready within {timeout:?}\nlog:\n{}",
                self.log()
            );
            thread::sleep(POLL);
        }
    }

    /// Send signal `sig` (`-TERM`, ...) to zerohop.
    fn signal(&self, sig: &str) {
        must("kill", &[sig, &self.pid().to_string()]);
    }

    /// Wait (at most `timeout`) for the exit; return the status and when the test saw
    /// it (within [`POLL`]). Panic with the log if it does not come.
    fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return (status, Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "zerohop did not exit within {timeout:?}\nlog:\n{}",
                self.log()
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM first: a SIGKILLed EAL can leave hugepage files behind.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ---- Servers and clients ----

/// Start `upstream.py --name NAME` on `UPSTREAM:port` in `ns` with `--log` and `extra`
/// arguments; return once it prints `ready`.
fn upstream(ns: &Netns, name: &str, port: u16, extra: &[&str]) -> LoggedProcess {
    let script = fixture("resilience/upstream.py");
    let port = port.to_string();
    let mut args = vec![
        script.to_str().expect("utf-8 path"),
        "--addr",
        UPSTREAM,
        "--port",
        &port,
        "--name",
        name,
        "--log",
    ];
    args.extend_from_slice(extra);
    let mut p = ns.spawn_logged("python3", &args, &format!("upstream {name}"));
    p.wait_for("ready", SERVER_READY);
    p
}

/// Wait (at most `timeout`) until `server` has logged `want` requests whose path starts
/// with `prefix` (`request GET /slow/1`; health checks use other paths).
fn wait_requests(server: &LoggedProcess, prefix: &str, want: usize, timeout: Duration) {
    let needle = format!(" {prefix}");
    let deadline = Instant::now() + timeout;
    loop {
        let out = server.output();
        let n = out
            .lines()
            .filter(|l| l.starts_with("request ") && l.contains(&needle))
            .count();
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream saw {n} requests under {prefix} within {timeout:?}, want {want}; \
             its output:\n{out}"
        );
        thread::sleep(POLL);
    }
}

fn url(path: &str) -> String {
    format!("http://{PROXY_DOWN}:{LISTENER_PORT}{path}")
}

/// What curl writes after each transfer (`-w`).
const WRITE_OUT: &str = "\n@@ code=%{http_code} time=%{time_total}\n";

/// One request through the proxy as curl (`-i`) saw it.
#[derive(Debug)]
struct Fetched {
    /// curl's exit code (0: a complete answer; 7: could not connect; 28: timed out).
    exit: Option<i32>,
    code: u16,
    /// The answer's head and body as curl printed them (`-i`), and its stderr.
    text: String,
    /// When curl finished.
    done: Instant,
}

impl Fetched {
    /// The value of header `name` (case-insensitive) of the answer.
    fn header(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// GET `path` through the proxy from C with curl on a connection of its own (`-i`,
/// bounded by `max_time_s`).
fn fetch(topo: &ProxyTopology, path: &str, max_time_s: u32) -> Fetched {
    let max_time = max_time_s.to_string();
    let u = url(path);
    let out = topo.ns_c.run(
        "curl",
        &[
            "-sS",
            "-i",
            "--noproxy",
            "*",
            "--max-time",
            &max_time,
            "-w",
            WRITE_OUT,
            &u,
        ],
        Duration::from_secs(u64::from(max_time_s) + 10),
    );
    let text = out.stdout_str();
    let code = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("@@ code="))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Fetched {
        exit: out.status.code(),
        code,
        text: format!("{text}{}", out.stderr),
        done: Instant::now(),
    }
}

/// Send `n` GETs (`/n/1` … `/n/N`) through the proxy from C, on one keep-alive
/// connection (one curl); panic unless every one got 200.
fn requests(topo: &ProxyTopology, n: usize) {
    let urls: Vec<String> = (1..=n).map(|i| url(&format!("/n/{i}"))).collect();
    let mut args = vec!["-sS", "--noproxy", "*", "--max-time", "20", "-w", WRITE_OUT];
    args.extend(urls.iter().map(String::as_str));
    let out = topo.ns_c.run("curl", &args, Duration::from_secs(40));
    let text = out.stdout_str();
    let ok = text
        .lines()
        .filter(|l| l.starts_with("@@ code=200 "))
        .count();
    assert!(
        out.success() && ok == n,
        "{ok} of {n} requests got 200 ({}): {}\n{text}",
        describe(out.status),
        out.stderr
    );
}

// ---- The admin API ----

/// An admin API answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `METHOD http://127.0.0.1:PORT/PATH` with curl inside `ns` (zerohop's namespace);
/// panic if no HTTP answer comes within 5 s.
fn admin(ns: &Netns, port: u16, method: &str, path: &str) -> Reply {
    let u = format!("http://127.0.0.1:{port}{path}");
    let mut args = vec!["-sS", "-i", "--noproxy", "*", "--max-time", "5"];
    match method {
        "GET" => {}
        "HEAD" => args.push("-I"),
        m => args.extend(["-X", m]),
    }
    args.push(&u);
    let out = ns.run("curl", &args, Duration::from_secs(15));
    let text = out.stdout_str();
    assert!(
        out.success(),
        "{method} {u}: no answer ({}): {}\n{text}",
        describe(out.status),
        out.stderr
    );
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {u}: no status line in {text:?}"));
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// [`admin`], panicking unless the status is `want`.
fn admin_expect(ns: &Netns, port: u16, method: &str, path: &str, want: u16) -> Reply {
    let r = admin(ns, port, method, path);
    assert_eq!(
        r.status, want,
        "{method} {path}: want {want}, got {}\n{}\r\n\r\n{}",
        r.status, r.head, r.body
    );
    r
}

/// Wait until the admin API answers `/ready` (it starts right after `zerohop ready`).
fn wait_admin(ns: &Netns, port: u16, proxy_log: impl Fn() -> String) {
    let deadline = Instant::now() + ADMIN_READY;
    let u = format!("http://127.0.0.1:{port}/ready");
    loop {
        let out = ns.run(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "--noproxy",
                "*",
                "--max-time",
                "1",
                &u,
            ],
            Duration::from_secs(10),
        );
        if out.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the admin API did not answer {u} within {ADMIN_READY:?}: {}\nzerohop log:\n{}",
            out.stderr,
            proxy_log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// What `raw.py` saw of one raw request to the admin API.
#[derive(Debug)]
struct RawReply {
    statuses: Vec<u16>,
    closed: bool,
    output: String,
    took: Duration,
}

/// Send `pieces` (Python-escaped, see `tests/fixtures/http/raw.py`) to the admin API
/// inside `ns` on one connection, then read until it closes or `timeout_s` passes.
fn admin_raw(ns: &Netns, port: u16, pieces: &[&str], timeout_s: f64) -> RawReply {
    let script = fixture("http/raw.py");
    let (port, timeout) = (port.to_string(), timeout_s.to_string());
    let mut args = vec![
        script.to_str().expect("utf-8 path"),
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--timeout",
        &timeout,
    ];
    for p in pieces {
        args.extend(["--send", p]);
    }
    let start = Instant::now();
    let out = ns.run("python3", &args, Duration::from_secs(30));
    let took = start.elapsed();
    let output = out.stdout_str();
    assert!(
        out.success(),
        "raw.py failed ({}): {}\n{output}",
        describe(out.status),
        out.stderr
    );
    RawReply {
        statuses: output
            .lines()
            .filter_map(|l| l.strip_prefix("status ")?.parse().ok())
            .collect(),
        closed: output.lines().any(|l| l == "closed=1"),
        output,
        took,
    }
}

// ---- /stats, /stats/prometheus, /clusters ----

/// `/stats`: scalar stats (`name: value`) and histograms (`name: P0(x) P25(y) …`, by
/// quantile label). Panic on any other line.
type TextStats = (HashMap<String, u64>, HashMap<String, Vec<(String, f64)>>);

fn parse_text_stats(body: &str) -> TextStats {
    let mut scalars = HashMap::new();
    let mut histograms = HashMap::new();
    for line in body.lines() {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("/stats: not `name: value`: {line:?}"));
        assert!(
            !name.is_empty() && !name.contains(char::is_whitespace),
            "/stats: bad name in {line:?}"
        );
        if let Ok(v) = value.parse::<u64>() {
            assert!(
                scalars.insert(name.to_owned(), v).is_none(),
                "/stats: {name} twice"
            );
            continue;
        }
        let quantiles: Vec<(String, f64)> = value
            .split(' ')
            .map(|q| {
                let (label, rest) = q
                    .split_once('(')
                    .unwrap_or_else(|| panic!("/stats: not a quantile {q:?} in {line:?}"));
                let v = rest
                    .strip_suffix(')')
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("/stats: bad quantile {q:?} in {line:?}"));
                (label.to_owned(), v)
            })
            .collect();
        assert!(
            histograms.insert(name.to_owned(), quantiles).is_none(),
            "/stats: {name} twice"
        );
    }
    (scalars, histograms)
}

/// Whether `s` is a valid Prometheus metric or label name (`[a-zA-Z_][a-zA-Z0-9_]*`;
/// `:` is valid in metric names but zerohop, like Envoy, never writes it).
fn prom_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample line: metric name, labels (name, unescaped value), value.
type SampleLine = (String, Vec<(String, String)>, f64);

/// One sample line of the exposition format, parsed strictly:
/// `name{label="value",…} value` (labels optional, values escaped), no timestamp.
fn strict_sample(line: &str) -> Result<SampleLine, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !prom_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            let (label, after) = r.split_once("=\"").ok_or("no label=\"")?;
            if !prom_name(label) {
                return Err(format!("bad label name {label:?}"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (_, '\\') => match chars.next().ok_or("bad escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (i, '"') => break i,
                    (_, '\n') => return Err("newline in a label value".to_owned()),
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            r = &after[end + 1..];
            if let Some(more) = r.strip_prefix(',') {
                r = more;
            } else if let Some(done) = r.strip_prefix('}') {
                rest = done;
                break;
            } else {
                return Err("no , or } after a label".to_owned());
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok((name.to_owned(), labels, v))
}

/// Check `/stats/prometheus` against the text exposition format 0.0.4, line by line
/// (prometheus-parse skips what it cannot read, so it alone would not notice a bad
/// line), then parse it with prometheus-parse. Return the scrape and each metric's
/// `# TYPE`.
fn check_exposition(text: &str) -> (Scrape, HashMap<String, String>) {
    assert!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current: Option<(String, String)> = None; // (metric, type)
    let mut done: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("/stats/prometheus line {}: {line:?}", n + 1);
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty),
            "prometheus-parse cannot read {}",
            at()
        );
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (metric, kind) = t
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad TYPE at {}", at()));
            assert!(prom_name(metric), "bad metric name at {}", at());
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unexpected type at {}",
                at()
            );
            assert!(
                types.insert(metric.to_owned(), kind.to_owned()).is_none(),
                "a second TYPE for {metric} at {}",
                at()
            );
            if let Some((prev, _)) = current.take() {
                done.insert(prev);
            }
            current = Some((metric.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment at {}", at());
        let (name, labels, value) =
            strict_sample(line).unwrap_or_else(|e| panic!("{e} at {}", at()));
        let (metric, kind) = current
            .as_ref()
            .unwrap_or_else(|| panic!("a sample before any TYPE at {}", at()));
        let belongs = match kind.as_str() {
            "histogram" => [
                format!("{metric}_bucket"),
                format!("{metric}_sum"),
                format!("{metric}_count"),
            ]
            .contains(&name),
            _ => &name == metric,
        };
        assert!(
            belongs,
            "sample of another metric than the last TYPE ({metric} {kind}) at {}",
            at()
        );
        assert!(!done.contains(metric), "metric {metric} split at {}", at());
        let has_le = labels.iter().any(|(k, _)| k == "le");
        assert_eq!(
            has_le,
            name.ends_with("_bucket") && kind == "histogram",
            "`le` only on histogram buckets, at {}",
            at()
        );
        if kind != "histogram" {
            assert!(
                value >= 0.0 && value.fract() == 0.0,
                "counters and gauges are whole numbers ≥ 0, at {}",
                at()
            );
        }
        let key = format!("{name}{labels:?}");
        assert!(series.insert(key), "a series twice at {}", at());
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("prometheus-parse");
    (scrape, types)
}

/// The sample of `metric` whose labels are exactly `labels`.
fn sample<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a Value {
    let found: Vec<&Value> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == metric
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| &s.value)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want one sample {metric}{labels:?}, found {}: {found:?}",
        found.len()
    );
    found[0]
}

/// `/clusters` lines `cluster::host::key::value`, by (host, key), of cluster `name`.
fn parse_clusters(body: &str, name: &str) -> HashMap<(String, String), String> {
    let prefix = format!("{name}::");
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let mut parts = rest.splitn(3, "::");
            let host = parts.next()?.to_owned();
            let key = parts.next()?.to_owned();
            let value = parts.next()?.to_owned();
            Some(((host, key), value))
        })
        .collect()
}

/// The `calls` column of node `node` in `/runtime/nodes`, summed over workers.
fn node_calls(body: &str, node: &str) -> Option<u64> {
    let mut total = None;
    for line in body.lines() {
        let mut cols = line.split_whitespace();
        if cols.next() != Some(node) {
            continue;
        }
        if let Some(calls) = cols.next().and_then(|c| c.parse::<u64>().ok()) {
            total = Some(total.unwrap_or(0) + calls);
        }
    }
    total
}

// ---- Tests ----

const ADMIN_ENDPOINTS_PORT: u16 = 9911;
const REQUESTS: usize = 50;

/// Cluster `backend`: upstreams a (9001) and b (9002) and a dead endpoint (9003,
/// nothing listens), health-checked over HTTP every 0.5 s. Once a and b are healthy and
/// the dead one failed, 50 requests go through listener `ingress` on one keep-alive
/// connection, all 200 while `/stats`, `/stats/prometheus` and `/clusters` are read in
/// a loop (reading stats does not disturb traffic). Then the admin API, on
/// 127.0.0.1:9911 in zerohop's namespace:
/// - `/stats`: only `name: value` and histogram lines; `http.ingress.downstream_rq_2xx`
///   = `downstream_rq_total` = `cluster.backend.upstream_rq_total` = `upstream_rq_2xx`
///   = 50, membership 2 healthy of 3, health checks counted, and a
///   `cluster.backend.upstream_rq_time` histogram line with finite quantiles;
/// - `/stats/prometheus`: `text/plain; version=0.0.4`, every line valid exposition
///   format (checked strictly, then parsed with prometheus-parse); Envoy's names and
///   tags: `envoy_http_downstream_rq_xx{envoy_response_code_class="2",
///   envoy_http_conn_manager_prefix="ingress"}` = 50,
///   `envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"}` = 50, the
///   `envoy_cluster_upstream_rq_time` histogram with non-decreasing buckets ending at
///   `+Inf` = `_count` = 50; counter, gauge and histogram TYPE lines; zerohop's
///   `zerohop_dataplane_*` metrics with packets counted;
/// - `/clusters`: a and b `healthy`, the dead one `/failed_active_hc`; `rq_total`
///   sums to 50 over a and b (0 on the dead one); a and b have a numeric
///   `latency_ewma_ms`, the dead one `-`;
/// - `/ready` LIVE; `POST /healthcheck/fail` → 503 DRAINING; `POST /healthcheck/ok`
///   → LIVE; `/config_dump` is the config (listener `ingress`); `/` lists the
///   endpoints; `/runtime/nodes` shows the graph nodes with calls; `/runtime/errors`
///   answers; `POST /trace?packets=5` then a request: `/trace` has 1 to 5 packets;
/// - bad input: garbage bytes, an HTTP/2 preface, a 20 KiB head and an empty
///   connection get 400 (or nothing) and a close; a head that never completes is
///   dropped after the 2 s read timeout; an unknown path 404; `POST /stats`,
///   `GET /quitquitquit`, `BREW /stats` 405 with `allow`; `POST /trace?packets=0` and
///   `packets=x` 400. After each, `/ready` still answers 200;
/// - zerohop exits cleanly, its own exit stats agreeing (52 requests);
/// - last (so that all the above is checked whatever it gives): `HEAD /ready` is
///   answered 200 with the head only, no body.
#[test]
fn admin_endpoints_answer_and_survive_bad_requests() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let port = ADMIN_ENDPOINTS_PORT;
    let topo = ProxyTopology::new();
    let _a = upstream(&topo.ns_u, "a", 9001, &[]);
    let _b = upstream(&topo.ns_u, "b", 9002, &[]);
    let hc = r#"    health_checks:
    - timeout: 0.4s
      interval: 0.5s
      no_traffic_interval: 0.5s
      unhealthy_threshold: 1
      healthy_threshold: 1
      http_health_check:
        path: /healthz
"#;
    let cfg = config(
        &topo,
        port,
        &route("/", "backend"),
        &cluster("backend", &[9001, 9002, 9003], hc),
    );
    let mut z = Zerohop::start_in(Some(&topo.ns_p), &cfg);
    z.wait_ready(READY_TIMEOUT);
    let p = &topo.ns_p;
    wait_admin(p, port, || z.log());

    // Wait for the health checks to settle: a and b healthy, the dead one failed.
    let hosts = [
        (format!("{UPSTREAM}:9001"), "healthy"),
        (format!("{UPSTREAM}:9002"), "healthy"),
        (format!("{UPSTREAM}:9003"), "/failed_active_hc"),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = admin_expect(p, port, "GET", "/clusters", 200).body;
        let c = parse_clusters(&body, "backend");
        let flags = |h: &str| c.get(&(h.to_owned(), "health_flags".to_owned())).cloned();
        if hosts
            .iter()
            .all(|(h, want)| flags(h).as_deref() == Some(*want))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health flags did not settle to {hosts:?} within 10 s:\n{body}\nzerohop log:\n{}",
            z.log()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // The 50 requests, while the admin API is read over and over: reading stats
    // must not disturb the traffic (every request still gets its 200).
    let reading = AtomicBool::new(true);
    let scrapes = thread::scope(|s| {
        let scraper = s.spawn(|| {
            let mut n = 0;
            while reading.load(Ordering::Relaxed) {
                for path in ["/stats/prometheus", "/stats", "/clusters"] {
                    admin_expect(p, port, "GET", path, 200);
                }
                n += 1;
            }
            n
        });
        requests(&topo, REQUESTS);
        reading.store(false, Ordering::Relaxed);
        scraper.join().expect("scraper")
    });
    assert!(scrapes >= 1);
    let n = REQUESTS as u64;

    // /stats
    let r = admin_expect(p, port, "GET", "/stats", 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{}",
        r.head
    );
    let (scalars, histograms) = parse_text_stats(&r.body);
    let get = |name: &str| {
        *scalars
            .get(name)
            .unwrap_or_else(|| panic!("/stats has no {name}:\n{}", r.body))
    };
    for name in [
        "http.ingress.downstream_rq_2xx",
        "http.ingress.downstream_rq_total",
        "cluster.backend.upstream_rq_total",
        "cluster.backend.upstream_rq_2xx",
    ] {
        assert_eq!(get(name), n, "/stats {name}:\n{}", r.body);
    }
    assert_eq!(get("http.ingress.downstream_rq_5xx"), 0);
    assert_eq!(get("cluster.backend.membership_total"), 3);
    assert_eq!(get("cluster.backend.membership_healthy"), 2);
    assert!(get("cluster.backend.health_check.success") >= 2);
    assert!(get("cluster.backend.health_check.failure") >= 1);
    assert!(get("dataplane.worker.0.packets") > 0);
    let rq_time = histograms
        .get("cluster.backend.upstream_rq_time")
        .unwrap_or_else(|| panic!("/stats: no upstream_rq_time histogram:\n{}", r.body));
    let labels: Vec<&str> = rq_time.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        ["P0", "P25", "P50", "P75", "P90", "P95", "P99", "P99.5", "P99.9", "P100"],
        "/stats upstream_rq_time quantiles"
    );
    assert!(
        rq_time.iter().all(|(_, v)| v.is_finite() && *v >= 0.0)
            && rq_time.windows(2).all(|w| w[0].1 <= w[1].1),
        "/stats upstream_rq_time: finite, non-decreasing quantiles: {rq_time:?}"
    );
    assert!(
        histograms.contains_key("http.ingress.downstream_rq_time"),
        "/stats: no downstream_rq_time histogram:\n{}",
        r.body
    );

    // /stats/prometheus
    let r = admin_expect(p, port, "GET", "/stats/prometheus", 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let (scrape, types) = check_exposition(&r.body);
    let prom = &r.body;
    let counter = |metric: &str, labels: &[(&str, &str)]| match sample(&scrape, metric, labels) {
        Value::Counter(v) => *v,
        other => panic!("{metric}{labels:?} should be a counter, is {other:?}\n{prom}"),
    };
    let gauge = |metric: &str, labels: &[(&str, &str)]| match sample(&scrape, metric, labels) {
        Value::Gauge(v) => *v,
        other => panic!("{metric}{labels:?} should be a gauge, is {other:?}\n{prom}"),
    };
    let nf = n as f64;
    assert_eq!(
        counter(
            "envoy_http_downstream_rq_xx",
            &[
                ("envoy_response_code_class", "2"),
                ("envoy_http_conn_manager_prefix", "ingress")
            ]
        ),
        nf
    );
    assert_eq!(
        counter(
            "envoy_http_downstream_rq_total",
            &[("envoy_http_conn_manager_prefix", "ingress")]
        ),
        nf
    );
    assert_eq!(
        counter(
            "envoy_cluster_upstream_rq_total",
            &[("envoy_cluster_name", "backend")]
        ),
        nf
    );
    assert_eq!(
        counter(
            "envoy_cluster_upstream_rq_xx",
            &[
                ("envoy_response_code_class", "2"),
                ("envoy_cluster_name", "backend")
            ]
        ),
        nf
    );
    assert_eq!(
        gauge(
            "envoy_cluster_membership_healthy",
            &[("envoy_cluster_name", "backend")]
        ),
        2.0
    );
    // curl has closed its connection; zerohop may not have seen the last ACK yet.
    let active = gauge(
        "envoy_http_downstream_cx_active",
        &[("envoy_http_conn_manager_prefix", "ingress")],
    );
    assert!(active <= 1.0, "downstream_cx_active {active}");
    let backend = [("envoy_cluster_name", "backend")];
    let Value::Histogram(buckets) = sample(&scrape, "envoy_cluster_upstream_rq_time", &backend)
    else {
        panic!("envoy_cluster_upstream_rq_time is not a histogram\n{prom}");
    };
    assert!(buckets.len() >= 2, "{buckets:?}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count),
        "buckets: bounds ascending, counts non-decreasing: {buckets:?}"
    );
    let last = buckets.last().expect("buckets");
    assert!(
        last.less_than.is_infinite() && last.count == nf,
        "last bucket +Inf = {n}: {buckets:?}"
    );
    match sample(&scrape, "envoy_cluster_upstream_rq_time_count", &backend) {
        Value::Untyped(v) => assert_eq!(*v, nf, "_count"),
        other => panic!("_count: {other:?}"),
    }
    match sample(&scrape, "envoy_cluster_upstream_rq_time_sum", &backend) {
        Value::Untyped(v) => assert!(*v > 0.0, "_sum {v}"),
        other => panic!("_sum: {other:?}"),
    }
    for (metric, kind) in [
        ("envoy_cluster_upstream_rq_total", "counter"),
        ("envoy_http_downstream_cx_active", "gauge"),
        ("envoy_cluster_upstream_rq_time", "histogram"),
        ("envoy_http_downstream_rq_time", "histogram"),
        ("zerohop_dataplane_worker_packets", "counter"),
    ] {
        assert_eq!(
            types.get(metric).map(String::as_str),
            Some(kind),
            "# TYPE {metric} {kind}\n{prom}"
        );
    }
    assert!(counter("zerohop_dataplane_worker_packets", &[("worker", "0")]) > 0.0);
    assert!(counter("zerohop_dataplane_port_rx_packets", &[("port", "down")]) > 0.0);
    assert!(
        types
            .keys()
            .any(|m| m.starts_with("zerohop_dataplane_mempool_")),
        "no zerohop_dataplane_mempool_* metric\n{prom}"
    );

    // /clusters
    let body = admin_expect(p, port, "GET", "/clusters", 200).body;
    eprintln!("/clusters:\n{body}");
    let c = parse_clusters(&body, "backend");
    let val = |h: &str, k: &str| {
        c.get(&(h.to_owned(), k.to_owned()))
            .cloned()
            .unwrap_or_else(|| panic!("/clusters has no backend::{h}::{k}:\n{body}"))
    };
    let mut rq_total = 0;
    for (host, flags) in &hosts {
        assert_eq!(val(host, "health_flags"), *flags, "{body}");
        let rq: u64 = val(host, "rq_total").parse().expect("rq_total a number");
        assert_eq!(val(host, "rq_active"), "0", "{body}");
        rq_total += rq;
        let ewma = val(host, "latency_ewma_ms");
        if *flags == "healthy" {
            assert!(rq > 0, "{host} took no request:\n{body}");
            let ms: f64 = ewma
                .parse()
                .unwrap_or_else(|_| panic!("latency_ewma_ms of {host} not a number:\n{body}"));
            assert!(ms > 0.0 && ms < 1000.0, "{host} latency_ewma_ms {ms}");
        } else {
            assert_eq!(rq, 0, "the failed endpoint took requests:\n{body}");
            assert_eq!(ewma, "-", "{body}");
        }
    }
    assert_eq!(rq_total, n, "rq_total over the endpoints:\n{body}");
    assert!(
        body.contains("backend::default_priority::max_connections::"),
        "{body}"
    );

    // /ready and /healthcheck/*
    let ready = |want: u16, text: &str| {
        let r = admin_expect(p, port, "GET", "/ready", want);
        assert_eq!(r.body, text, "/ready");
    };
    ready(200, "LIVE\n");
    admin_expect(p, port, "POST", "/healthcheck/fail", 200);
    ready(503, "DRAINING\n");
    // The proxy itself still serves: /healthcheck/fail only changes /ready.
    requests(&topo, 1);
    admin_expect(p, port, "POST", "/healthcheck/ok", 200);
    ready(200, "LIVE\n");

    // /config_dump and the index
    let r = admin_expect(p, port, "GET", "/config_dump", 200);
    assert!(
        r.body.contains("- name: ingress") && r.body.contains("port_value: 9003"),
        "/config_dump:\n{}",
        r.body
    );
    let r = admin_expect(p, port, "GET", "/", 200);
    assert!(
        r.body.contains("/stats/prometheus") && r.body.contains("/quitquitquit"),
        "{}",
        r.body
    );

    // /runtime/nodes and /runtime/errors
    let r = admin_expect(p, port, "GET", "/runtime/nodes", 200);
    eprintln!("/runtime/nodes:\n{}", r.body);
    for node in ["ethernet-input", "ip4-input", "tcp-input"] {
        let calls = node_calls(&r.body, node);
        assert!(
            calls.is_some_and(|c| c > 0),
            "/runtime/nodes: {node} should have calls, got {calls:?}:\n{}",
            r.body
        );
    }
    assert!(r.body.contains("vectors/call"), "{}", r.body);
    let r = admin_expect(p, port, "GET", "/runtime/errors", 200);
    assert!(
        r.body.lines().next().is_some_and(|l| l.contains("reason")),
        "/runtime/errors:\n{}",
        r.body
    );

    // /trace
    let r = admin_expect(p, port, "POST", "/trace?packets=5", 200);
    assert!(r.body.contains("tracing the next 5 packets"), "{}", r.body);
    requests(&topo, 1);
    let r = admin_expect(p, port, "GET", "/trace", 200);
    let traced = r.body.lines().filter(|l| l.starts_with("Packet ")).count();
    let records: usize = r
        .body
        .lines()
        .filter_map(|l| {
            l.strip_prefix("worker ")?
                .split_once(": ")?
                .1
                .strip_suffix(" record(s)")?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(
        (1..=5).contains(&traced) && records >= traced,
        "/trace: want 1 to 5 traced packets, got {traced} ({records} records):\n{}",
        r.body
    );
    assert!(r.body.contains("ethernet-input"), "/trace:\n{}", r.body);
    // GET ignores the argument; a bad count to POST is refused.
    admin_expect(p, port, "GET", "/trace?packets=x", 200);

    // Bad input: the server answers (or drops) and keeps running.
    let still_ready = |what: &str| {
        let r = admin(p, port, "GET", "/ready");
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "LIVE\n"),
            "/ready after {what}"
        );
    };
    for (what, path, method) in [
        ("POST /trace?packets=0", "/trace?packets=0", "POST"),
        ("POST /trace?packets=x", "/trace?packets=x", "POST"),
        (
            "POST /trace?packets=100000",
            "/trace?packets=100000",
            "POST",
        ),
    ] {
        admin_expect(p, port, method, path, 400);
        still_ready(what);
    }
    let r = admin_expect(p, port, "GET", "/no/such/path", 404);
    assert!(r.body.starts_with("not found: /no/such/path"), "{}", r.body);
    still_ready("an unknown path");
    for (method, path, allow) in [
        ("POST", "/stats", "GET"),
        ("DELETE", "/clusters", "GET"),
        ("GET", "/quitquitquit", "POST"),
        ("GET", "/healthcheck/fail", "POST"),
        ("BREW", "/stats", "GET"),
        ("PUT", "/trace", "GET, POST"),
    ] {
        let r = admin_expect(p, port, method, path, 405);
        assert_eq!(
            r.header("allow"),
            Some(allow),
            "{method} {path}: {}",
            r.head
        );
        still_ready(&format!("{method} {path}"));
    }
    let huge_head = format!(
        "GET /stats HTTP/1.1\\r\\nX-Big: {}\\r\\n\\r\\n",
        "a".repeat(20_000)
    );
    for (what, pieces) in [
        (
            "garbage bytes",
            vec!["\\x16\\x03\\x01\\x00\\xa5\\x01garbage\\r\\n\\r\\n"],
        ),
        (
            "a request line without a version",
            vec!["GET /ready\\r\\n\\r\\n"],
        ),
        (
            "an HTTP/2 preface",
            vec!["PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n"],
        ),
        ("a 20 KiB request head", vec![huge_head.as_str()]),
    ] {
        let raw = admin_raw(p, port, &pieces, 3.0);
        assert!(
            raw.statuses == [400] && raw.closed,
            "{what}: want one 400 and a close, got {raw:?}"
        );
        still_ready(what);
    }
    // A connection that sends nothing and closes.
    let raw = admin_raw(p, port, &[], 0.2);
    assert!(raw.statuses.is_empty(), "{raw:?}");
    still_ready("an empty connection");
    // A head that never completes: dropped after the 2 s read timeout, without answer.
    let raw = admin_raw(p, port, &["GET /ready HTTP/1.1\\r\\nHost: x\\r\\n"], 5.0);
    assert!(
        raw.statuses.is_empty() && raw.closed && raw.took < Duration::from_millis(4500),
        "an incomplete head: want a close without answer after ~2 s, got {raw:?}"
    );
    still_ready("an incomplete head");
    // HEAD: the head of GET's answer, without a body (RFC 9110 §9.3.2); checked last,
    // after zerohop's exit, so that the rest is checked whatever this gives.
    let head = admin_raw(
        p,
        port,
        &["HEAD /ready HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"],
        3.0,
    );
    still_ready("HEAD /ready");

    // zerohop's own exit stats agree with what the admin API said.
    let (status, log) = z.terminate();
    assert_clean_exit_after_traffic(status, &log, &["down", "up"]);
    assert_stat_eq(&log, "http.ingress.downstream_rq_2xx", n + 2);
    assert_stat_eq(&log, "cluster.backend.upstream_rq_total", n + 2);
    let answer = head.output.lines().last().unwrap_or("");
    assert!(
        head.statuses == [200] && answer.ends_with("\\r\\n\\r\\n'"),
        "HEAD /ready: want 200 and no body after the head, got {head:?}"
    );
}

const SIGTERM_PORT: u16 = 9912;
/// How late the slow upstream answers.
const SLOW_DELAY: Duration = Duration::from_millis(1500);
const IN_FLIGHT: usize = 5;
const IDLE: usize = 3;

/// Routes `/slow/` to upstream slow (answers after 1.5 s) and everything else to fast.
/// Three idle keep-alive connections (a request answered on each) stay open; five
/// requests to slow start at once, each on a connection of its own. Once the upstream
/// has them all (≈ 300 ms later at most), SIGTERM:
/// - zerohop logs `draining`; the admin API's `/ready` answers 503 DRAINING;
/// - the idle connections are closed by zerohop (the client sees EOF, not RST) within
///   0.5 s;
/// - a new connection is refused (curl: could not connect) while the drain goes on;
/// - each of the five gets its 200 from slow, with `connection: close`;
/// - zerohop exits 0 as soon as the last connection is gone: after the slow answers,
///   within 1.5 s + 1.5 s of SIGTERM, well before the default drain time (5 s);
///   `drained: no connection open`, `mbufs_in_use=0`, 8 requests 2xx.
#[test]
fn sigterm_drains_in_flight_requests() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let port = SIGTERM_PORT;
    let topo = ProxyTopology::new();
    let _fast = upstream(&topo.ns_u, "fast", 9001, &[]);
    let delay = SLOW_DELAY.as_millis().to_string();
    let slow = upstream(&topo.ns_u, "slow", 9002, &["--delay-ms", &delay]);
    let routes = format!("{}{}", route("/slow/", "slow"), route("/", "fast"));
    let clusters = format!(
        "{}{}",
        cluster("fast", &[9001], ""),
        cluster("slow", &[9002], "")
    );
    let mut z = Proxy::start(&topo.ns_p, &config(&topo, port, &routes, &clusters), &[]);
    z.wait_ready(READY_TIMEOUT);
    let p = &topo.ns_p;
    wait_admin(p, port, || z.log());

    let mut idle = idle_clients(&topo.ns_c, PROXY_DOWN, LISTENER_PORT, IDLE, "/fast/");
    let (fetched, term_at) = thread::scope(|s| {
        let started = Instant::now();
        let slow_requests: Vec<_> = (0..IN_FLIGHT)
            .map(|i| {
                let topo = &topo;
                s.spawn(move || fetch(topo, &format!("/slow/{i}"), 10))
            })
            .collect();
        wait_requests(&slow, "/slow/", IN_FLIGHT, Duration::from_secs(3));
        let since = started.elapsed();
        assert!(
            since < SLOW_DELAY / 2,
            "the slow requests took {since:?} to reach the upstream: too late to drain \
             them in flight"
        );
        if let Some(rest) = Duration::from_millis(300).checked_sub(since) {
            thread::sleep(rest);
        }
        z.signal("-TERM");
        let term_at = Instant::now();

        let log = || z.log();
        let deadline = term_at + Duration::from_secs(1);
        while !log().contains("draining: listeners closed") {
            assert!(
                Instant::now() < deadline,
                "no `draining` within 1 s\n{}",
                log()
            );
            thread::sleep(POLL);
        }
        // The idle keep-alive connections are closed at once.
        let line = idle.wait_for("done open=", Duration::from_secs(2));
        let closed_in = term_at.elapsed();
        let out = idle.output();
        assert_eq!(line, "done open=0", "idle connections left open:\n{out}");
        let eofs = out.lines().filter(|l| l.ends_with(" eof")).count();
        assert_eq!(eofs, IDLE, "each idle connection should see EOF:\n{out}");
        assert!(
            closed_in < Duration::from_millis(500),
            "the idle connections were closed {closed_in:?} after SIGTERM"
        );
        // The admin API still answers, and says so.
        let r = admin(p, port, "GET", "/ready");
        assert_eq!((r.status, r.body.as_str()), (503, "DRAINING\n"), "/ready");
        // A new connection is refused while the drain goes on.
        let refused = fetch(&topo, "/fast/new", 3);
        assert_eq!(
            refused.exit,
            Some(7),
            "a new connection during the drain should be refused (curl exit 7), got {refused:?}"
        );
        assert!(
            refused.done.duration_since(term_at) < SLOW_DELAY - Duration::from_millis(300),
            "the refused attempt should come well within the drain"
        );
        assert!(
            z.exited().is_none(),
            "zerohop exited while requests were in flight\n{}",
            z.log()
        );
        let fetched: Vec<Fetched> = slow_requests
            .into_iter()
            .map(|h| h.join().expect("curl thread"))
            .collect();
        (fetched, term_at)
    });
    let (status, exit_at) = z.wait_exit(Duration::from_secs(10));
    let exit_after = exit_at.duration_since(term_at);
    let log = z.log();
    eprintln!(
        "exit {exit_after:?} after SIGTERM; slow answers {:?} after it",
        fetched
            .iter()
            .map(|f| f.done.saturating_duration_since(term_at))
            .collect::<Vec<_>>()
    );
    for (i, f) in fetched.iter().enumerate() {
        assert!(
            f.exit == Some(0) && f.code == 200 && f.text.contains("name=slow"),
            "in-flight request {i} should complete with slow's 200: {f:?}\nzerohop log:\n{log}"
        );
        assert_eq!(
            f.header("connection").map(|v| v.to_ascii_lowercase()),
            Some("close".to_owned()),
            "in-flight request {i}: the answer during a drain says `connection: close`: {f:?}"
        );
    }
    assert_eq!(
        status.code(),
        Some(0),
        "zerohop should exit 0 after a drain, got {}\nlog:\n{log}",
        describe(status)
    );
    assert!(
        exit_after >= Duration::from_millis(800) && exit_after <= SLOW_DELAY * 2,
        "zerohop should exit once the slow answers are out (≈{:?} after SIGTERM), \
         well before the 5 s drain time; it took {exit_after:?}\nlog:\n{log}",
        SLOW_DELAY - Duration::from_millis(300)
    );
    assert!(
        log.contains("drained: no connection open") && !log.contains("drain time over"),
        "{log}"
    );
    assert_eq!(mbufs_in_use(&log), Some(0), "{log}");
    assert_stat_eq(
        &log,
        "http.ingress.downstream_rq_2xx",
        (IN_FLIGHT + IDLE) as u64,
    );
    assert_stat_eq(&log, "http.ingress.downstream_cx_active", 0);
}

const QUIT_PORT: u16 = 9913;

/// `POST /drain_listeners` closes the listeners without stopping zerohop: `/ready`
/// says DRAINING, an idle keep-alive connection is closed (EOF), a new connection is
/// refused, and zerohop still runs 0.5 s later. `POST /quitquitquit` then answers
/// 200 and zerohop exits 0 within 1 s (no connection is open), with `drained: no
/// connection open` and `mbufs_in_use=0`.
#[test]
fn drain_listeners_then_quitquitquit_exits() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let port = QUIT_PORT;
    let topo = ProxyTopology::new();
    let _fast = upstream(&topo.ns_u, "fast", 9001, &[]);
    let cfg = config(
        &topo,
        port,
        &route("/", "fast"),
        &cluster("fast", &[9001], ""),
    );
    let mut z = Proxy::start(&topo.ns_p, &cfg, &[]);
    z.wait_ready(READY_TIMEOUT);
    let p = &topo.ns_p;
    wait_admin(p, port, || z.log());
    let mut idle = idle_clients(&topo.ns_c, PROXY_DOWN, LISTENER_PORT, 1, "/fast/");

    admin_expect(p, port, "POST", "/drain_listeners", 200);
    let line = idle.wait_for("done open=", Duration::from_secs(2));
    assert_eq!(line, "done open=0", "{}", idle.output());
    assert!(idle.output().contains("conn 0 eof"), "{}", idle.output());
    let r = admin(p, port, "GET", "/ready");
    assert_eq!((r.status, r.body.as_str()), (503, "DRAINING\n"), "/ready");
    let refused = fetch(&topo, "/new", 3);
    assert_eq!(refused.exit, Some(7), "want refused, got {refused:?}");
    thread::sleep(Duration::from_millis(500));
    assert!(
        z.exited().is_none(),
        "/drain_listeners should not stop zerohop\n{}",
        z.log()
    );

    let r = admin_expect(p, port, "POST", "/quitquitquit", 200);
    let quit_at = Instant::now();
    assert_eq!(r.body, "OK\n");
    let (status, exit_at) = z.wait_exit(Duration::from_secs(10));
    let took = exit_at.duration_since(quit_at);
    let log = z.log();
    eprintln!("exit {took:?} after /quitquitquit");
    assert_eq!(
        status.code(),
        Some(0),
        "zerohop should exit 0 on /quitquitquit, got {}\nlog:\n{log}",
        describe(status)
    );
    assert!(took < Duration::from_secs(1), "exit took {took:?}\n{log}");
    assert!(log.contains("drained: no connection open"), "{log}");
    assert_eq!(mbufs_in_use(&log), Some(0), "{log}");
    assert_stat_eq(&log, "http.ingress.downstream_rq_2xx", 1);
}

const DRAIN_TIME_PORT: u16 = 9914;

/// `--drain-time-s 1` and an upstream that reads requests and never answers
/// (`--stall`), the route timeout off: with one request in flight, SIGTERM makes
/// zerohop exit 0 after the drain time (0.8 to 3 s after SIGTERM), logging `drain time
/// over with 1 connection(s) open`, with `mbufs_in_use=0`.
#[test]
fn drain_time_limits_the_wait() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let port = DRAIN_TIME_PORT;
    let topo = ProxyTopology::new();
    let stall = upstream(&topo.ns_u, "stall", 9001, &["--stall"]);
    let cfg = config(
        &topo,
        port,
        &route("/", "stall"),
        &cluster("stall", &[9001], ""),
    );
    let mut z = Proxy::start(&topo.ns_p, &cfg, &["--drain-time-s", "1"]);
    z.wait_ready(READY_TIMEOUT);
    wait_admin(&topo.ns_p, port, || z.log());

    let (client, status, term_at, exit_at) = thread::scope(|s| {
        let topo = &topo;
        let client = s.spawn(move || fetch(topo, "/stalled", 3));
        wait_requests(&stall, "/stalled", 1, Duration::from_secs(3));
        z.signal("-TERM");
        let term_at = Instant::now();
        let (status, exit_at) = z.wait_exit(Duration::from_secs(10));
        (
            client.join().expect("curl thread"),
            status,
            term_at,
            exit_at,
        )
    });
    let took = exit_at.duration_since(term_at);
    let log = z.log();
    eprintln!(
        "exit {took:?} after SIGTERM; the stalled client ended {:?} after zerohop's exit \
         (curl exit {:?}): {}",
        client.done.saturating_duration_since(exit_at),
        client.exit,
        client.text.trim()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "zerohop should exit 0 when the drain time is over, got {}\nlog:\n{log}",
        describe(status)
    );
    assert!(
        took >= Duration::from_millis(800) && took <= Duration::from_secs(3),
        "with --drain-time-s 1, exit should come 0.8-3 s after SIGTERM, took {took:?}\n{log}"
    );
    assert!(
        log.contains("drain time over with 1 connection(s) open"),
        "{log}"
    );
    assert!(!log.contains("drained: no connection open"), "{log}");
    assert_eq!(mbufs_in_use(&log), Some(0), "{log}");
    assert_ne!(
        client.code, 200,
        "the stalled request cannot have succeeded"
    );
    // The connection left open is reset when the drain time is over, so the
    // client learns at once (curl: 56, receive failure) rather than from its
    // own 3 s limit (28).
    assert_eq!(
        client.exit,
        Some(56),
        "the client should see a reset, not wait for its timeout: {}\n{log}",
        client.text.trim()
    );
    assert!(
        client.done <= exit_at + Duration::from_millis(500),
        "the reset should come before zerohop exits"
    );
}
