//! End-to-end: hot reload of zerohop's configuration (SIGHUP, `POST /reload` of the
//! admin API, and a change of the file, which zerohop looks at once a second), with
//! the real binary, real upstreams and real clients.
//!
//! Same topology as `e2e_http_proxy.rs` ([`ProxyTopology`]): clients in C, zerohop in
//! P on two `net_af_packet` ports, upstream servers
//! (`tests/fixtures/resilience/upstream.py`, which answer with their `name=`) in U. The
//! admin API listens on `127.0.0.1:`[`ADMIN_PORT`] inside P. Every route adds a
//! response header `x-config: vN` that names the configuration version that answered.
//!
//! - [`three_reloads_under_load_lose_no_request`]: wrk (8 keep-alive connections) and
//!   a client that opens a new connection per request run throughout while the routes
//!   change three times, once by each means: `/` goes from upstream `a` to `b`, back to
//!   `a` with a new route `/v3/`, then a new listener appears. No request fails, each
//!   change is seen within a few seconds, a new connection never sees an older
//!   configuration than the one before it did, and the exit stats add up the
//!   requests of every generation.
//! - [`an_invalid_reload_is_refused_and_traffic_goes_on`]: a YAML syntax error, a
//!   route to an unknown cluster, a changed `dataplane` section and a changed admin
//!   address are each refused by `POST /reload` (400, with the reason) while clients
//!   run; the old configuration keeps answering and `/config_dump` shows it; a valid
//!   file is then taken.
//! - [`a_removed_listener_stops_accepting_and_its_connections_finish`]: a slow
//!   request in flight on a listener that a reload removes completes (200, with
//!   `connection: close`); idle keep-alive connections on it are closed; a new
//!   connection to its port is refused; the other listener goes on.
//!
//! So that each reload has exactly the cause the test gives it, a file rewritten for
//! SIGHUP or `POST /reload` keeps the size and modification time of the one before
//! (every config is padded to [`CONFIG_SIZE`] bytes): the watcher, which compares
//! those two, does not see it. Files are replaced atomically (a temporary file in the
//! same directory, renamed over the config).
//!
//! The tests run one at a time ([`one_at_a_time`]). Needs root; run with
//! `cargo test --test e2e_reload`.

mod common;

use common::*;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Listener `ingress` (stat prefix `ingress`), in every version.
const LISTENER_PORT: u16 = 8080;
/// A second listener: added by a reload in the first test, removed by one in the third.
const OTHER_PORT: u16 = 8081;
const ADMIN_PORT: u16 = 9901;
/// Upstream `a` (cluster `A`), `b` (cluster `B`) and the slow `s` (cluster `S`).
const A_PORT: u16 = 9001;
const B_PORT: u16 = 9002;
const S_PORT: u16 = 9003;
/// How long the slow upstream takes to answer.
const SLOW_MS: u64 = 1500;
/// Every config file is padded to this size (see the module documentation).
const CONFIG_SIZE: usize = 8192;
const SERVER_READY: Duration = Duration::from_secs(15);
const ADMIN_READY: Duration = Duration::from_secs(10);
/// How long a reload may take to show on new connections. The workers take it at
/// their next loop (microseconds); the rest is room for a loaded machine.
const TAKE_EFFECT: Duration = Duration::from_secs(3);
/// How long the watcher may take to notice a changed file (it looks once a second)
/// and reload it.
const WATCH_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

// ---- Config ----

/// The `dataplane` section of [`ProxyTopology`]: workers on `cores` (e.g. `1`),
/// ports `down` and `up`.
fn dataplane(topo: &ProxyTopology, cores: &str) -> String {
    let (down, up) = (topo.veth_c.proxy_if(), topo.veth_u.proxy_if());
    format!(
        r#"dataplane:
  cores: [{cores}]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: down
      device: "net_af_packet0,iface={down}"
      address: {PROXY_DOWN}/24
    - name: up
      device: "net_af_packet1,iface={up}"
      address: {PROXY_UP}/24
"#
    )
}

/// A STATIC cluster `name` with one endpoint, `UPSTREAM:port`.
fn cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    \
         lb_policy: ROUND_ROBIN\n    load_assignment:\n      cluster_name: {name}\n      \
         endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: \
         {{ socket_address: {{ address: {UPSTREAM}, port_value: {port} }} }} }}\n"
    )
}

/// A route entry: `prefix` to `cluster`, answers tagged `x-config: tag`.
fn route(prefix: &str, cluster: &str, tag: &str) -> String {
    format!(
        "              - match: {{ prefix: \"{prefix}\" }}\n                \
         route: {{ cluster: {cluster} }}\n                \
         response_headers_to_add: [{{ header: {{ key: x-config, value: {tag} }} }}]\n"
    )
}

/// A route entry: `prefix` answered by zerohop itself with 200 and `body`, tagged
/// `x-config: tag`.
fn direct(prefix: &str, body: &str, tag: &str) -> String {
    format!(
        "              - match: {{ prefix: \"{prefix}\" }}\n                \
         direct_response: {{ status: 200, body: {{ inline_string: \"{body}\" }} }}\n                \
         response_headers_to_add: [{{ header: {{ key: x-config, value: {tag} }} }}]\n"
    )
}

/// An HTTP listener `name` (also its stat prefix) on 0.0.0.0:`port` with `routes`
/// (from [`route`] and [`direct`]).
fn listener(name: &str, port: u16, routes: &str) -> String {
    format!(
        r#"  - name: {name}
    address:
      socket_address: {{ address: 0.0.0.0, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
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
"#
    )
}

/// A whole config: [`dataplane`] on the worker core, the admin API on
/// 127.0.0.1:[`ADMIN_PORT`], `listeners` (from [`listener`]) and `clusters` (from
/// [`cluster`]); padded to [`CONFIG_SIZE`] bytes with a comment.
fn config(topo: &ProxyTopology, listeners: &[String], clusters: &[String]) -> String {
    let text = format!(
        r#"{dataplane}admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {ADMIN_PORT} }}
static_resources:
  listeners:
{listeners}  clusters:
{clusters}"#,
        dataplane = dataplane(topo, &worker_core().to_string()),
        listeners = listeners.concat(),
        clusters = clusters.concat(),
    );
    pad(text)
}

/// `text` with a comment line added that brings it to [`CONFIG_SIZE`] bytes (a
/// padding comment it already has, last, is replaced).
fn pad(mut text: String) -> String {
    if let Some(at) = text.rfind("\n#-") {
        text.truncate(at + 1);
    }
    assert!(
        text.len() + 3 <= CONFIG_SIZE,
        "config of {} bytes: raise CONFIG_SIZE",
        text.len()
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let fill = CONFIG_SIZE - text.len() - 2;
    text.push('#');
    text.push_str(&"-".repeat(fill));
    text.push('\n');
    assert_eq!(text.len(), CONFIG_SIZE);
    text
}

// ---- zerohop ----

/// The zerohop binary in a namespace, like [`Zerohop`] but with its config file at
/// hand (to rewrite it) and signals of the test's choosing. Drop stops it (SIGTERM,
/// then SIGKILL after 8 s) if it still runs.
struct Proxy {
    child: Option<Child>,
    config_path: PathBuf,
    log_path: PathBuf,
    // Last field: dropped after `Drop::drop` has stopped the child.
    _dir: TempDir,
}

impl Proxy {
    /// Write `config` and start `zerohop -c FILE --mode serve -l info` in `ns`.
    fn start(ns: &Netns, config: &str) -> Proxy {
        let dir = TempDir::new("reload");
        let config_path = dir.path().join("zerohop.yaml");
        let log_path = dir.path().join("zerohop.log");
        fs::write(&config_path, config).expect("write config");
        let log = File::create(&log_path).expect("create log");
        let child = ns
            .command(ZEROHOP, &[])
            .arg("-c")
            .arg(&config_path)
            .args(["--mode", "serve", "-l", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ZEROHOP}: {e}"));
        Proxy {
            child: Some(child),
            config_path,
            log_path,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Panic with the log if zerohop has exited.
    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("started");
        if let Ok(Some(status)) = child.try_wait() {
            self.child = None;
            panic!(
                "zerohop exited ({})\nlog:\n{}",
                describe(status),
                self.log()
            );
        }
    }

    /// Wait for `zerohop ready`; panic with the log if it exits first or `timeout`
    /// passes.
    fn wait_ready(&mut self, timeout: Duration) {
        self.wait_log("zerohop ready", 1, timeout);
    }

    /// Wait until `want` lines of the log contain `needle`; panic with the log if
    /// zerohop exits first or `timeout` passes.
    fn wait_log(&mut self, needle: &str, want: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if count_lines(&log, needle) >= want {
                return;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "zerohop did not log `{needle}` {want} time(s) within {timeout:?}\nlog:\n{log}"
            );
            thread::sleep(POLL);
        }
    }

    /// Send signal `sig` (`-HUP`, ...) to zerohop.
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("started").id();
        must("kill", &[sig, &pid.to_string()]);
    }

    /// Replace the config file with `text` atomically (a temporary file renamed over
    /// it). With `unseen`, the new file gets the old one's modification time, so that
    /// (with the same size, [`pad`]) the watcher does not notice the change.
    fn write_config(&self, text: &str, unseen: bool) {
        assert_eq!(text.len(), CONFIG_SIZE, "configs are padded");
        let dir = self.config_path.parent().expect("config dir");
        let tmp = dir.join(".zerohop.yaml.tmp");
        fs::write(&tmp, text).expect("write the new config");
        if unseen {
            let old = fs::metadata(&self.config_path)
                .and_then(|m| m.modified())
                .expect("modification time of the config");
            File::options()
                .write(true)
                .open(&tmp)
                .and_then(|f| f.set_modified(old))
                .expect("set the new config's modification time");
        }
        fs::rename(&tmp, &self.config_path).expect("rename the new config over the old");
    }

    fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// SIGTERM and wait (at most [`EXIT_TIMEOUT`]) for the exit; the status and log.
    fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status, self.log());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "zerohop did not exit within {EXIT_TIMEOUT:?} of SIGTERM\nlog:\n{}",
                    self.log()
                );
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
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

/// How many lines of `text` contain `needle`.
fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

// ---- The admin API ----

/// An admin API answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

/// `METHOD http://127.0.0.1:ADMIN_PORT/PATH` with curl inside `ns` (zerohop's
/// namespace); panic if no HTTP answer comes within 5 s.
fn admin(ns: &Netns, method: &str, path: &str) -> Reply {
    let u = format!("http://127.0.0.1:{ADMIN_PORT}{path}");
    let out = ns.run(
        "curl",
        &[
            "-sS",
            "-i",
            "--noproxy",
            "*",
            "--max-time",
            "5",
            "-X",
            method,
            &u,
        ],
        Duration::from_secs(15),
    );
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
        body: body.to_owned(),
    }
}

/// Wait until the admin API answers `/ready` (it starts right after `zerohop ready`).
fn wait_admin(ns: &Netns, proxy: &Proxy) {
    let deadline = Instant::now() + ADMIN_READY;
    let u = format!("http://127.0.0.1:{ADMIN_PORT}/ready");
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
            proxy.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// `POST /reload`, panicking unless it answers `want`; the body.
fn post_reload(ns: &Netns, proxy: &Proxy, want: u16) -> String {
    let r = admin(ns, "POST", "/reload");
    assert_eq!(
        r.status,
        want,
        "POST /reload: want {want}, got {}: {}\nzerohop log:\n{}",
        r.status,
        r.body,
        proxy.log()
    );
    r.body
}

// ---- Servers and clients ----

/// Start `upstream.py --name NAME` on `UPSTREAM:port` in `ns` with `--log` and `extra`;
/// return once it prints `ready`.
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

/// One request through the proxy, on a connection of its own, as curl saw it.
#[derive(Debug)]
struct Got {
    /// curl's exit code (0: an answer; 7: could not connect; 28: timed out).
    exit: Option<i32>,
    code: u16,
    /// The `x-config` header.
    tag: String,
    /// The `connection` header.
    connection: String,
    /// The upstream's `name=` line, or the whole body of a direct response.
    name: String,
    text: String,
}

/// GET `path` on `port` through the proxy from C with curl (`-i`), bounded by
/// `max_time_s`.
fn get(topo: &ProxyTopology, port: u16, path: &str, max_time_s: u32) -> Got {
    let u = format!("http://{PROXY_DOWN}:{port}{path}");
    let max_time = max_time_s.to_string();
    let out = topo.ns_c.run(
        "curl",
        &["-sS", "-i", "--noproxy", "*", "--max-time", &max_time, &u],
        Duration::from_secs(u64::from(max_time_s) + 10),
    );
    let text = out.stdout_str();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let name = body
        .lines()
        .find_map(|l| l.strip_prefix("name="))
        .unwrap_or(body)
        .trim()
        .to_owned();
    Got {
        exit: out.status.code(),
        code: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        tag: header("x-config"),
        connection: header("connection"),
        name,
        text: format!("{text}{}", out.stderr),
    }
}

/// GET `path` on `port` on new connections until the answer is 200 from `name`
/// tagged `tag`; panic with the last answer if that takes longer than
/// [`TAKE_EFFECT`]. How long it took.
fn wait_route(
    topo: &ProxyTopology,
    proxy: &Proxy,
    port: u16,
    path: &str,
    (name, tag): (&str, &str),
) -> Duration {
    let start = Instant::now();
    loop {
        let g = get(topo, port, path, 5);
        if g.code == 200 && g.name == name && g.tag == tag {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < TAKE_EFFECT,
            "GET :{port}{path}: want 200 from {name} with x-config {tag} within \
             {TAKE_EFFECT:?}, last got {g:?}\nzerohop log:\n{}",
            proxy.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A client that opens a new connection for every request: `GET PATH<seq>` to
/// HOST:PORT, at most RATE a second, until SIGTERM. Prints `started` after the first
/// answer, `r SEQ STATUS TAG NAME` for every answer (TAG: the `x-config` header, NAME:
/// the `name=` line of the body), `error SEQ WHAT` for every request without one, and
/// last `result requests=N ok=N non200=N errors=N`.
const NEWCONN_CLIENT: &str = r#"
import http.client, signal, sys, threading, time
host, port, path, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
stop = threading.Event()
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda *_: stop.set())
n = ok = non200 = errors = 0
while not stop.is_set():
    n += 1
    t = time.monotonic()
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request("GET", f"{path}{n}")
        r = c.getresponse()
        body = r.read().decode("latin-1")
        name = next((l[5:] for l in body.splitlines() if l.startswith("name=")), "-")
        tag = r.getheader("x-config", "-")
        print(f"r {n} {r.status} {tag} {name}", flush=True)
        if r.status == 200:
            ok += 1
        else:
            non200 += 1
    except Exception as e:
        errors += 1
        print(f"error {n} {e!r}", flush=True)
    finally:
        c.close()
    if n == 1:
        print("started", flush=True)
    left = 1 / rate - (time.monotonic() - t)
    if left > 0:
        stop.wait(left)
print(f"result requests={n} ok={ok} non200={non200} errors={errors}", flush=True)
"#;

/// Start [`NEWCONN_CLIENT`] in C on `PROXY_DOWN:port` (paths `path<seq>`, at most
/// `rate` a second); return once its first request was answered.
fn newconn_client(topo: &ProxyTopology, port: u16, path: &str, rate: u32) -> LoggedProcess {
    let (port, rate) = (port.to_string(), rate.to_string());
    let mut p = topo.ns_c.spawn_logged(
        "python3",
        &["-c", NEWCONN_CLIENT, PROXY_DOWN, &port, path, &rate],
        "new-connection client",
    );
    p.wait_for("started", Duration::from_secs(15));
    p
}

/// What [`NEWCONN_CLIENT`] saw: its `result` line and every answer as
/// (status, version number of the `x-config` tag, upstream name).
struct NewconnResult {
    result: ClientResult,
    answers: Vec<(u16, u32, String)>,
    output: String,
}

/// Stop `client` (SIGTERM) and read its result.
fn stop_newconn(client: &mut LoggedProcess) -> NewconnResult {
    must("kill", &["-TERM", &client.pid().to_string()]);
    client.wait_for("result ", Duration::from_secs(15));
    let output = client.output();
    let line = output
        .lines()
        .find(|l| l.starts_with("result "))
        .expect("result line");
    let result = ClientResult {
        values: line["result ".len()..]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        stdout: output.clone(),
    };
    let answers = output
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("r ")?.split_whitespace();
            let _seq = w.next()?;
            let status = w.next()?.parse().ok()?;
            let version = w.next()?.strip_prefix('v')?.parse().ok()?;
            Some((status, version, w.next()?.to_owned()))
        })
        .collect();
    NewconnResult {
        result,
        answers,
        output,
    }
}

impl NewconnResult {
    /// Panic unless every request got 200 and new connections never went back to an
    /// older configuration; the versions seen, in order, each once.
    fn assert_clean_and_ordered(&self, zerohop_log: &str) -> Vec<u32> {
        let r = &self.result;
        let why = || {
            format!(
                "client output:\n{}\nzerohop log:\n{zerohop_log}",
                self.output
            )
        };
        assert_eq!(
            r.get("errors"),
            "0",
            "requests without an answer\n{}",
            why()
        );
        assert_eq!(r.get("non200"), "0", "answers other than 200\n{}", why());
        assert_eq!(
            self.answers.len() as f64,
            r.num("ok"),
            "an answer line per 200\n{}",
            why()
        );
        let mut seen: Vec<u32> = Vec::new();
        for (_, version, _) in &self.answers {
            match seen.last() {
                Some(last) if last == version => {}
                Some(last) => {
                    assert!(
                        version > last,
                        "a new connection got v{version} after one got v{last}\n{}",
                        why()
                    );
                    seen.push(*version);
                }
                None => seen.push(*version),
            }
        }
        seen
    }
}

/// Stop wrk (`load`) with SIGINT, which prints its summary then; the requests it
/// counted. Panic unless it saw no non-2xx answer and no socket error (connect, read,
/// write or timeout).
fn stop_wrk(load: &mut LoggedProcess) -> (u64, String) {
    must("kill", &["-INT", &load.pid().to_string()]);
    load.wait_for("Transfer/sec", Duration::from_secs(15));
    let text = load.output();
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw answers other than 2xx or 3xx:\n{text}"
    );
    assert!(!text.contains("Socket errors"), "wrk saw errors:\n{text}");
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's summary:\n{text}"));
    (requests, text)
}

/// Panic unless the exit was clean (exit 0, every mbuf back, traffic on both ports)
/// and no downstream connection is left open.
fn assert_clean_exit(status: ExitStatus, log: &str) {
    assert_clean_exit_after_traffic(status, log, &["down", "up"]);
    assert_stat_eq(log, "http.ingress.downstream_cx_active", 0);
    assert_stat_eq(log, "http.ingress.downstream_rq_5xx", 0);
}

// ---- Tests ----

/// Under continuous load, the routes change three times, once by each means (SIGHUP,
/// `POST /reload`, the watcher). wrk keeps 8 keep-alive connections busy (they are
/// closed after their next answer when their generation retires, and reconnect) and
/// another client opens a new connection for every request; neither sees a single
/// failed request. Each change shows on new connections within [`TAKE_EFFECT`].
#[test]
fn three_reloads_under_load_lose_no_request() {
    if !require_root() {
        return;
    }
    let _heavy = one_at_a_time();
    let topo = ProxyTopology::new();
    let _a = upstream(&topo.ns_u, "a", A_PORT, &[]);
    let _b = upstream(&topo.ns_u, "b", B_PORT, &[]);
    let ingress = |routes: &[String]| listener("ingress", LISTENER_PORT, &routes.concat());
    // v1: `/` to a. v2: `/` to b. v3: `/` to a again, and `/v3/` answered by zerohop.
    // v4: the same routes tagged v4, a new listener `other`, and cluster B gone.
    let v1 = config(
        &topo,
        &[ingress(&[route("/", "A", "v1")])],
        &[cluster("A", A_PORT)],
    );
    let v2 = config(
        &topo,
        &[ingress(&[route("/", "B", "v2")])],
        &[cluster("A", A_PORT), cluster("B", B_PORT)],
    );
    let v3 = config(
        &topo,
        &[ingress(&[
            direct("/v3/", "v3", "v3"),
            route("/", "A", "v3"),
        ])],
        &[cluster("A", A_PORT), cluster("B", B_PORT)],
    );
    let v4 = config(
        &topo,
        &[
            ingress(&[direct("/v3/", "v3", "v4"), route("/", "A", "v4")]),
            listener("other", OTHER_PORT, &route("/", "A", "v4")),
        ],
        &[cluster("A", A_PORT)],
    );

    let mut zh = Proxy::start(&topo.ns_p, &v1);
    zh.wait_ready(READY_TIMEOUT);
    wait_admin(&topo.ns_p, &zh);
    let mut probes = 0u64;
    let g = get(&topo, LISTENER_PORT, "/first", 5);
    probes += 1;
    assert!(
        g.code == 200 && g.name == "a" && g.tag == "v1",
        "v1: `/` goes to a: {g:?}\nlog:\n{}",
        zh.log()
    );

    // wrk for at most 40 s, stopped with SIGINT once the reloads are through, so the
    // load spans them however slow the machine.
    let url = format!("http://{PROXY_DOWN}:{LISTENER_PORT}/wrk");
    let mut wrk = LoggedProcess::spawn(
        topo.ns_c.command(
            "wrk",
            &["-t", "1", "-c", "8", "-d", "40s", "--timeout", "5s", &url],
        ),
        "wrk",
    );
    let mut newconn = newconn_client(&topo, LISTENER_PORT, "/new/", 100);
    let load_start = Instant::now();
    thread::sleep(Duration::from_secs(1));

    // 1: SIGHUP.
    zh.write_config(&v2, true);
    zh.signal("-HUP");
    zh.wait_log("configuration generation 1 in effect", 1, WATCH_TIMEOUT);
    let took1 = wait_route(&topo, &zh, LISTENER_PORT, "/", ("b", "v2"));
    probes += 1;
    thread::sleep(Duration::from_secs(1));

    // 2: POST /reload.
    zh.write_config(&v3, true);
    let body = post_reload(&topo.ns_p, &zh, 200);
    assert!(
        body.contains("configuration generation 2 in effect"),
        "POST /reload: {body}"
    );
    let took2 = wait_route(&topo, &zh, LISTENER_PORT, "/", ("a", "v3"));
    probes += 1;
    let g = get(&topo, LISTENER_PORT, "/v3/x", 5);
    probes += 1;
    assert!(
        g.code == 200 && g.name == "v3" && g.tag == "v3",
        "v3: `/v3/` is answered by zerohop: {g:?}"
    );
    thread::sleep(Duration::from_secs(1));

    // 3: the watcher (a new modification time).
    let written = Instant::now();
    zh.write_config(&v4, false);
    zh.wait_log("configuration generation 3 in effect", 1, WATCH_TIMEOUT);
    let noticed = written.elapsed();
    let took3 = wait_route(&topo, &zh, LISTENER_PORT, "/", ("a", "v4"));
    probes += 1;
    let g = get(&topo, OTHER_PORT, "/other", 5);
    assert!(
        g.code == 200 && g.name == "a" && g.tag == "v4",
        "v4: the new listener answers: {g:?}\nlog:\n{}",
        zh.log()
    );

    // At least 8 s of load in all, and 1 s after the last reload.
    thread::sleep(
        Duration::from_secs(8)
            .saturating_sub(load_start.elapsed())
            .max(Duration::from_secs(1)),
    );
    let load_time = load_start.elapsed();
    let (wrk_requests, wrk_text) = stop_wrk(&mut wrk);
    let seen = stop_newconn(&mut newconn);
    let versions = seen.assert_clean_and_ordered(&zh.log());
    eprintln!(
        "load {load_time:?}: wrk {wrk_requests} requests, new-connection client {} \
         requests, versions seen {versions:?}; took effect after {took1:?} (SIGHUP), \
         {took2:?} (POST /reload), {took3:?} (watcher, which noticed the file after \
         {noticed:?})\n{wrk_text}",
        seen.answers.len()
    );
    assert_eq!(
        versions,
        [1, 2, 3, 4],
        "new connections saw every version in turn\n{}",
        seen.output
    );
    // Each upstream answered the new-connection client in its versions.
    for (_, version, name) in &seen.answers {
        let want = if *version == 2 { "b" } else { "a" };
        assert_eq!(
            name, want,
            "v{version} sends `/` to {want}\n{}",
            seen.output
        );
    }
    assert!(
        wrk_requests >= 300,
        "the load ran: wrk made only {wrk_requests} requests\n{wrk_text}"
    );
    // The retired generations' keep-alive connections are closed by now (each after
    // its next answer); let TIME-WAIT pass.
    thread::sleep(Duration::from_secs(1));

    let (status, log) = zh.terminate();
    assert_clean_exit(status, &log);
    assert_eq!(
        count_lines(&log, "configuration generation "),
        3,
        "three reloads\n{log}"
    );
    for (needle, why) in [
        ("SIGHUP: reloading", "SIGHUP"),
        ("/reload: reloading", "POST /reload"),
        ("changed: reloading", "the watcher"),
    ] {
        assert_eq!(count_lines(&log, needle), 1, "one reload by {why}\n{log}");
    }
    assert_eq!(count_lines(&log, "reload refused"), 0, "{log}");
    // The stats add up every generation's requests.
    let clients = wrk_requests + seen.answers.len() as u64 + probes;
    let total = stat(&log, "http.ingress.downstream_rq_total").unwrap_or(0);
    let ok = stat(&log, "http.ingress.downstream_rq_2xx").unwrap_or(0);
    assert!(
        total >= clients && ok >= clients,
        "the clients counted {clients} answers, zerohop {total} requests and {ok} 2xx \
         (summed over generations)\n{log}"
    );
    assert_stat_eq(&log, "http.ingress.downstream_rq_4xx", 0);
    let to_b = stat(&log, "cluster.B.upstream_rq_total").unwrap_or(0);
    assert!(
        to_b > 0,
        "v2's requests to cluster B count, though v4 removed B\n{log}"
    );
    let to_a = stat(&log, "cluster.A.upstream_rq_total").unwrap_or(0);
    assert!(
        to_a + to_b + 1 >= total,
        "every request but the one to `/v3/` went upstream: A {to_a} + B {to_b} of \
         {total}\n{log}"
    );
    assert_stat_eq(&log, "http.other.downstream_rq_total", 1);
}

/// While clients run, four bad files are each refused by `POST /reload` with 400 and
/// the reason (a YAML syntax error, a route to an unknown cluster, and two that need
/// a restart: another worker core, another admin address). The old configuration
/// keeps answering and `/config_dump` shows it. A valid file is then taken.
#[test]
fn an_invalid_reload_is_refused_and_traffic_goes_on() {
    if !require_root() {
        return;
    }
    let _heavy = one_at_a_time();
    let topo = ProxyTopology::new();
    let _a = upstream(&topo.ns_u, "a", A_PORT, &[]);
    let _b = upstream(&topo.ns_u, "b", B_PORT, &[]);
    let clusters = [cluster("A", A_PORT), cluster("B", B_PORT)];
    let v1 = config(
        &topo,
        &[listener("ingress", LISTENER_PORT, &route("/", "A", "v1"))],
        &clusters,
    );
    let v2 = config(
        &topo,
        &[listener("ingress", LISTENER_PORT, &route("/", "B", "v2"))],
        &clusters,
    );
    let mut zh = Proxy::start(&topo.ns_p, &v1);
    zh.wait_ready(READY_TIMEOUT);
    wait_admin(&topo.ns_p, &zh);
    let path = zh.config_path().display().to_string();

    let bad_yaml = v1.replacen("static_resources:", "static_resources: {", 1);
    let unknown_cluster = config(
        &topo,
        &[listener(
            "ingress",
            LISTENER_PORT,
            &route("/", "nope", "v1"),
        )],
        &clusters,
    );
    let core = worker_core();
    let cores_line = format!("  cores: [{core}]\n");
    let other_cores = v1.replacen(&cores_line, &format!("  cores: [{}]\n", 1 - core), 1);
    let other_admin = v1.replacen(
        &format!("port_value: {ADMIN_PORT} "),
        &format!("port_value: {} ", ADMIN_PORT + 1),
        1,
    );
    let bad: [(&str, String, Vec<String>); 4] = [
        (
            "a YAML syntax error",
            pad(bad_yaml),
            vec![path.clone(), "line".to_owned()],
        ),
        (
            "a route to an unknown cluster",
            unknown_cluster,
            vec!["unknown cluster `nope`".to_owned()],
        ),
        (
            "another worker core",
            pad(other_cores),
            vec!["dataplane".to_owned(), "needs a restart".to_owned()],
        ),
        (
            "another admin address",
            pad(other_admin),
            vec!["admin address".to_owned(), "needs a restart".to_owned()],
        ),
    ];
    for (what, text, _) in &bad {
        assert_ne!(text, &v1, "{what}: the file differs from v1");
    }

    let load = fixture("resilience/load.py");
    let port = LISTENER_PORT.to_string();
    let mut keepalive = topo.ns_c.spawn_logged(
        "python3",
        &[
            load.to_str().expect("utf-8 path"),
            "--host",
            PROXY_DOWN,
            "--port",
            &port,
            "--path",
            "/ka/",
            "--connections",
            "4",
            "--rate",
            "100",
            "--duration",
            "40",
        ],
        "load.py",
    );
    keepalive.wait_for("started", Duration::from_secs(15));
    let mut newconn = newconn_client(&topo, LISTENER_PORT, "/new/", 50);
    thread::sleep(Duration::from_millis(500));

    for (i, (what, text, want)) in bad.iter().enumerate() {
        zh.write_config(text, true);
        let body = post_reload(&topo.ns_p, &zh, 400);
        assert!(
            body.starts_with("reload refused: ") && want.iter().all(|w| body.contains(w)),
            "{what}: want `reload refused: ` with {want:?}, got {body:?}"
        );
        eprintln!("{what}: {}", body.trim());
        zh.wait_log(
            "reload refused, the configuration in effect stays",
            i + 1,
            TAKE_EFFECT,
        );
        let g = get(&topo, LISTENER_PORT, "/after-bad", 5);
        assert!(
            g.code == 200 && g.name == "a" && g.tag == "v1",
            "after {what}: v1 still answers: {g:?}\nlog:\n{}",
            zh.log()
        );
        let dump = admin(&topo.ns_p, "GET", "/config_dump");
        assert!(
            dump.status == 200 && dump.body == v1,
            "after {what}: /config_dump shows v1, got {}:\n{}",
            dump.status,
            dump.body
        );
        thread::sleep(Duration::from_millis(300));
    }

    // A valid file is taken.
    zh.write_config(&v2, true);
    let body = post_reload(&topo.ns_p, &zh, 200);
    assert!(
        body.contains("configuration generation 1 in effect"),
        "POST /reload: {body}"
    );
    let took = wait_route(&topo, &zh, LISTENER_PORT, "/", ("b", "v2"));
    let dump = admin(&topo.ns_p, "GET", "/config_dump");
    assert!(
        dump.status == 200 && dump.body == v2,
        "/config_dump shows v2, got {}:\n{}",
        dump.status,
        dump.body
    );
    thread::sleep(Duration::from_millis(500));

    must("kill", &["-TERM", &keepalive.pid().to_string()]);
    keepalive.wait_for("result ", Duration::from_secs(15));
    let ka_out = keepalive.output();
    let ka_line = ka_out
        .lines()
        .find(|l| l.starts_with("result "))
        .expect("result line");
    let seen = stop_newconn(&mut newconn);
    let versions = seen.assert_clean_and_ordered(&zh.log());
    eprintln!(
        "v2 took effect after {took:?}; keep-alive client: {ka_line}; new-connection \
         client: {} answers, versions {versions:?}",
        seen.answers.len()
    );
    assert_eq!(versions, [1, 2], "{}", seen.output);
    let field = |k: &str| {
        ka_line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or("<missing>")
            .to_owned()
    };
    assert!(
        field("errors") == "0" && field("non2xx") == "0",
        "keep-alive client: every request answered 2xx\n{ka_out}"
    );
    assert!(
        field("names").starts_with("a:") && field("names").contains(",b:"),
        "keep-alive client: answers from a (v1), then b (v2)\n{ka_out}"
    );

    let (status, log) = zh.terminate();
    assert_clean_exit(status, &log);
    assert_eq!(count_lines(&log, "reload refused"), bad.len(), "{log}");
    assert_eq!(count_lines(&log, "configuration generation "), 1, "{log}");
    assert_eq!(
        count_lines(&log, "/reload: reloading"),
        bad.len() + 1,
        "{log}"
    );
    assert_eq!(count_lines(&log, "changed: reloading"), 0, "{log}");
}

/// Removing a listener: a slow request in flight on it completes (200, `connection:
/// close`), its idle keep-alive connections are closed, a new connection to its port
/// is refused, and the listener that stays answers with the new routes.
#[test]
fn a_removed_listener_stops_accepting_and_its_connections_finish() {
    if !require_root() {
        return;
    }
    let _heavy = one_at_a_time();
    let topo = ProxyTopology::new();
    let _a = upstream(&topo.ns_u, "a", A_PORT, &[]);
    let slow_ms = SLOW_MS.to_string();
    let slow = upstream(&topo.ns_u, "s", S_PORT, &["--delay-ms", &slow_ms]);
    let clusters = [cluster("A", A_PORT), cluster("S", S_PORT)];
    let ingress = |tag: &str| listener("ingress", LISTENER_PORT, &route("/", "A", tag));
    let v1 = config(
        &topo,
        &[
            ingress("v1"),
            listener(
                "side",
                OTHER_PORT,
                &[route("/slow/", "S", "v1"), route("/", "A", "v1")].concat(),
            ),
        ],
        &clusters,
    );
    let v2 = config(&topo, &[ingress("v2")], &clusters);
    let mut zh = Proxy::start(&topo.ns_p, &v1);
    zh.wait_ready(READY_TIMEOUT);
    wait_admin(&topo.ns_p, &zh);
    let g = get(&topo, OTHER_PORT, "/side", 5);
    assert!(
        g.code == 200 && g.name == "a" && g.tag == "v1",
        "v1: listener side answers: {g:?}\nlog:\n{}",
        zh.log()
    );

    let mut idle = idle_clients(&topo.ns_c, PROXY_DOWN, OTHER_PORT, 2, "/");
    let reload_at = std::sync::OnceLock::new();
    let (slow_got, slow_done) = thread::scope(|s| {
        let in_flight = s.spawn(|| {
            let g = get(&topo, OTHER_PORT, "/slow/1", 15);
            (g, Instant::now())
        });
        // The request has reached the slow upstream, which answers 1.5 s later.
        let deadline = Instant::now() + Duration::from_secs(5);
        while count_lines(&slow.output(), "request GET /slow/1") == 0 {
            assert!(
                Instant::now() < deadline,
                "the slow request did not reach its upstream:\n{}\nzerohop log:\n{}",
                slow.output(),
                zh.log()
            );
            thread::sleep(POLL);
        }
        zh.write_config(&v2, true);
        let body = post_reload(&topo.ns_p, &zh, 200);
        reload_at.set(Instant::now()).expect("once");
        assert!(
            body.contains("configuration generation 1 in effect: 1 listener(s)"),
            "POST /reload: {body}"
        );
        // A new connection to the removed listener is refused (from the first try,
        // or once the worker has taken the reload).
        let start = Instant::now();
        loop {
            let g = get(&topo, OTHER_PORT, "/new", 2);
            if g.exit == Some(7) {
                break;
            }
            assert!(
                start.elapsed() < TAKE_EFFECT,
                "a new connection to the removed listener: want refused (curl exit 7), \
                 got {g:?}\nzerohop log:\n{}",
                zh.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        let took = start.elapsed();
        let g = get(&topo, OTHER_PORT, "/new", 2);
        assert_eq!(g.exit, Some(7), "still refused: {g:?}");
        let g = get(&topo, LISTENER_PORT, "/", 5);
        assert!(
            g.code == 200 && g.name == "a" && g.tag == "v2",
            "the listener that stays answers with v2: {g:?}\nlog:\n{}",
            zh.log()
        );
        eprintln!("the removed listener refused connections {took:?} after the reload");
        in_flight.join().expect("slow request thread")
    });
    let reload_at = *reload_at.get().expect("reloaded");
    assert!(
        slow_got.exit == Some(0) && slow_got.code == 200 && slow_got.name == "s",
        "the request in flight on the removed listener completes: {slow_got:?}\nlog:\n{}",
        zh.log()
    );
    assert_eq!(slow_got.tag, "v1", "it finishes on v1's routes");
    assert!(
        slow_got.connection.eq_ignore_ascii_case("close"),
        "its answer closes the drained connection:\n{}",
        slow_got.text
    );
    assert!(slow_done > reload_at, "it was in flight during the reload");

    // The idle keep-alive connections of the removed listener are closed.
    idle.wait_for("done open=", Duration::from_secs(10));
    let out = idle.output();
    assert!(
        out.contains("conn 0 eof") && out.contains("conn 1 eof") && out.contains("done open=0"),
        "idle connections on the removed listener are closed:\n{out}"
    );
    thread::sleep(Duration::from_secs(1));

    let (status, log) = zh.terminate();
    assert_clean_exit(status, &log);
    // Its first request, the two idle connections' and the slow one.
    assert_stat_eq(&log, "http.side.downstream_rq_total", 4);
    assert_stat_eq(&log, "http.side.downstream_rq_2xx", 4);
    assert_stat_eq(&log, "http.side.downstream_cx_active", 0);
    assert_stat_eq(&log, "cluster.S.upstream_rq_total", 1);
}
