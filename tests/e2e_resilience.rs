//! End-to-end: the resilience features of zerohop's HTTP proxy, against real upstream
//! servers that die, fail, hang and come back: active health checks, outlier
//! detection, route and per-try timeouts with retries, route idle timeouts, circuit
//! breakers, the retry body buffer and the `max_retries` breaker; and health checks and
//! outlier detection on a `tcp_proxy` cluster.
//!
//! Same topology as `e2e_http_proxy.rs` ([`ProxyTopology`]): clients in C, zerohop in
//! P on two `net_af_packet` ports, servers in U. The servers are
//! `tests/fixtures/resilience/upstream.py` (a cut-down copy of the HTTP tests' upstream
//! with failure modes: `--status 503`, `--delay-ms`, `--stall`, `--blackhole`, and
//! `--log`, a `request METHOD PATH` line per request, so a test sees which requests
//! reached which host). Steady load comes from `tests/fixtures/resilience/load.py`,
//! which paces its requests (unlike wrk) and counts every answer and every error.
//! The `tcp_proxy` tests use the echo servers and clients of `tests/fixtures/tcp/`.
//! The retry tests read stats live from the admin API ([`live_stat`]) and have the
//! upstreams log each request body's length and SHA-256 (`--log-body`).
//!
//! zerohop's main thread logs each health change within about 50 ms
//! (`cluster hc: endpoint 10.0.1.2:9002: health check failed: unhealthy (2/3 healthy)`)
//! and the Envoy stats at exit (`stat cluster.hc.health_check.failure: 4`). Timings are
//! measured two ways: from something the test did (kill a server) to a log line, by
//! polling the log with [`Instant`] (so the measure includes the logging delay and the
//! poll period, covered by [`SLACK`]); between two log lines, from their timestamps
//! (both zerohop's clock, so only the ≤ 50 ms logging delay of each line blurs them).
//!
//! The tests are timing-sensitive, so they run one at a time ([`one_at_a_time`]).
//! Needs root; run with `cargo test --test e2e_resilience`.

mod common;

use common::*;
use std::time::{Duration, Instant};

const LISTENER_PORT: u16 = 8080;
const SERVER_READY: Duration = Duration::from_secs(15);
/// Scheduling allowance on top of each bound derived from the config: zerohop's main
/// thread logs a health change up to ~50 ms after it happens, the test polls the log
/// every 10 ms, and a debug build on a loaded 2-CPU machine adds its own delays.
const SLACK: Duration = Duration::from_millis(300);
/// How often the test reads zerohop's log while waiting for a line.
const LOG_POLL: Duration = Duration::from_millis(10);

// ---- Config ----

/// `d` as an Envoy duration (`0.5s`, `2s`).
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
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

/// A config of [`dataplane`], `listeners` (entries of `listeners:`) and `clusters`
/// (each from [`cluster`]).
fn config_of(topo: &ProxyTopology, listeners: &str, clusters: &str) -> String {
    format!(
        "{}static_resources:\n  listeners:\n{listeners}  clusters:\n{clusters}",
        dataplane(topo)
    )
}

/// The whole config: the `dataplane` of [`ProxyTopology`], listener `ingress` on
/// 0.0.0.0:[`LISTENER_PORT`] with `routes` (entries of `routes:`, each line indented 14
/// spaces) and `clusters` (each from [`cluster`]).
fn config(topo: &ProxyTopology, routes: &str, clusters: &str) -> String {
    config_of(
        topo,
        &http_listener("ingress", LISTENER_PORT, "", routes),
        clusters,
    )
}

/// The `retry_host_predicate` entry that makes a retry avoid the hosts already tried
/// (lines indented 20 spaces, under a route's `retry_policy`).
const PREVIOUS_HOSTS: &str = r#"                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 5
"#;

// ---- Servers, clients, log ----

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

/// How many requests under `prefix` reached `server` (its `request GET PREFIX…` lines;
/// health checks use other paths).
fn requests_seen(server: &LoggedProcess, prefix: &str) -> usize {
    let needle = format!(" {prefix}");
    server
        .output()
        .lines()
        .filter(|l| l.starts_with("request ") && l.contains(&needle))
        .count()
}

/// Wait (at most `timeout`) until `server` has logged `want` requests under `prefix`.
fn wait_requests(server: &LoggedProcess, prefix: &str, want: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = requests_seen(server, prefix);
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream saw {n} requests under {prefix} within {timeout:?}, want {want}; \
             its output:\n{}",
            server.output()
        );
        std::thread::sleep(LOG_POLL);
    }
}

fn url(path: &str) -> String {
    format!("http://{PROXY_DOWN}:{LISTENER_PORT}{path}")
}

/// The log text after byte `from` (a length of the log taken earlier).
fn log_since(log: &str, from: usize) -> &str {
    log.get(from..).unwrap_or("")
}

/// Wait until a line of zerohop's log after byte `from` contains every one of `needles`;
/// return that line and when the test first saw it. Panic with the log after `timeout`.
fn wait_log(z: &Zerohop, from: usize, needles: &[&str], timeout: Duration) -> (String, Instant) {
    let deadline = Instant::now() + timeout;
    loop {
        let log = z.log();
        let found = log_since(&log, from)
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)));
        if let Some(line) = found {
            return (line.to_owned(), Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} within {timeout:?}\nzerohop log:\n{log}"
        );
        std::thread::sleep(LOG_POLL);
    }
}

/// The endpoint part of zerohop's health log lines: `cluster C: endpoint IP:PORT: `.
fn endpoint_tag(cluster: &str, port: u16) -> String {
    format!("cluster {cluster}: endpoint {UPSTREAM}:{port}: ")
}

/// The time of day, in seconds, of the tracing timestamp a log line starts with
/// (`2026-11-27T08:17:23.123456Z  INFO …`, UTC).
fn log_time(line: &str) -> f64 {
    let parse = || -> Option<f64> {
        let stamp = line.split_whitespace().next()?;
        let (_, time) = stamp.split_once('T')?;
        let time = time.trim_end_matches('Z');
        let mut parts = time.splitn(3, ':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    };
    parse().unwrap_or_else(|| panic!("no `YYYY-MM-DDTHH:MM:SS.ffffffZ` timestamp on {line:?}"))
}

/// The time between two log lines, from their timestamps (across midnight too).
fn log_gap(earlier: &str, later: &str) -> Duration {
    let mut gap = log_time(later) - log_time(earlier);
    if gap < 0.0 {
        gap += 86_400.0;
    }
    Duration::from_secs_f64(gap)
}

/// One answer as curl saw it: status, `name=` of the upstream body (empty for a local
/// reply), the body, total time.
#[derive(Debug)]
struct Answer {
    code: u16,
    name: String,
    body: String,
    time: Duration,
}

/// The marker curl's `-w` writes after each transfer (see [`sequential`]).
const WRITE_OUT: &str = "\n@@ code=%{http_code} time=%{time_total}\n";

/// GET each of `paths` in order with one curl on one keep-alive connection from C
/// (each bounded by `max_time_s`); the answers in order.
fn sequential(topo: &ProxyTopology, paths: &[String], max_time_s: u32) -> Vec<Answer> {
    let max_time = max_time_s.to_string();
    let urls: Vec<String> = paths.iter().map(|p| url(p)).collect();
    // One `-w` for every URL: curl writes the marker after each transfer.
    let mut args = vec![
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        &max_time,
        "-w",
        WRITE_OUT,
    ];
    args.extend(urls.iter().map(String::as_str));
    let out = topo.ns_c.run(
        "curl",
        &args,
        Duration::from_secs(u64::from(max_time_s) * paths.len() as u64 + 20),
    );
    let text = out.stdout_str();
    let answers = parse_answers(&text);
    assert_eq!(
        answers.len(),
        paths.len(),
        "curl ({}) gave {} answers for {} requests: {}\n{text}",
        describe(out.status),
        answers.len(),
        paths.len(),
        out.stderr
    );
    answers
}

/// Split curl's output (bodies, each followed by [`WRITE_OUT`]) into answers.
fn parse_answers(text: &str) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut body = String::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("@@ ") else {
            body.push_str(line);
            body.push('\n');
            continue;
        };
        let mut code = 0;
        let mut time = Duration::ZERO;
        for kv in rest.split_whitespace() {
            match kv.split_once('=') {
                Some(("code", v)) => code = v.parse().unwrap_or(0),
                Some(("time", v)) => time = Duration::from_secs_f64(v.parse().unwrap_or(0.0)),
                _ => {}
            }
        }
        let name = body
            .lines()
            .find_map(|l| l.strip_prefix("name="))
            .unwrap_or("")
            .to_owned();
        answers.push(Answer {
            code,
            name,
            body: std::mem::take(&mut body).trim().to_owned(),
            time,
        });
    }
    answers
}

/// `n` paths `PREFIX1`, `PREFIX2`, … .
fn paths(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

/// The `result key=value …` line of `load.py`, by key.
fn load_result(output: &str) -> std::collections::HashMap<String, String> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("result "))
        .unwrap_or_else(|| panic!("load.py printed no result line:\n{output}"));
    line["result ".len()..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn num(m: &std::collections::HashMap<String, String>, key: &str) -> u64 {
    m.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number `{key}=` in {m:?}"))
}

/// Stop zerohop (SIGTERM), check a clean exit after traffic, and return its log.
fn stop(z: Zerohop) -> String {
    let (status, log) = z.terminate();
    assert_clean_exit_after_traffic(status, &log, &["down", "up"]);
    log
}

/// The value of stat `name`, 0 when not logged (zerohop may leave out zero counters).
fn stat0(log: &str, name: &str) -> u64 {
    stat(log, name).unwrap_or(0)
}

// ---- Active health checks ----

const HC_INTERVAL: Duration = Duration::from_millis(500);
const HC_TIMEOUT: Duration = Duration::from_millis(300);
const UNHEALTHY_THRESHOLD: u32 = 2;
const HEALTHY_THRESHOLD: u32 = 2;
const HC_HOSTS: [(&str, u16); 3] = [("a", 9001), ("b", 9002), ("c", 9003)];
/// How much earlier than the config allows a health change may seem to come: the
/// test's clock starts a little after the event it measures from (`kill` returns after
/// the server's sockets closed; `ready` is seen up to a poll period after the server
/// listens), and zerohop's timers count whole milliseconds.
const EARLY_MARGIN: Duration = Duration::from_millis(100);

/// Three upstreams behind cluster `hc`, health-checked over HTTP every 0.5 s (from the
/// start: `no_traffic_interval` is the interval too), with retries on the route. Under
/// steady load (200 requests a second on 4 keep-alive connections), upstream b is
/// killed (SIGKILL): its `health check failed` line comes no sooner than
/// (unhealthy_threshold - 1) intervals and within unhealthy_threshold × interval + one
/// interval + SLACK, and the clients see no error at all, the requests that met the
/// dead b being retried on another host (`previous_hosts`). b restarts: `health check
/// passed` within healthy_threshold × interval + one interval + SLACK (and not sooner
/// than healthy_threshold - 1 intervals), and b takes requests again. Only b ever fails
/// its checks; at exit all three are healthy and the stats agree.
#[test]
fn health_checks_eject_a_killed_upstream_and_restore_it() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let mut servers: Vec<LoggedProcess> = HC_HOSTS
        .iter()
        .map(|&(name, port)| upstream(&topo.ns_u, name, port, &[]))
        .collect();
    let ports: Vec<u16> = HC_HOSTS.iter().map(|&(_, port)| port).collect();
    let interval = secs(HC_INTERVAL);
    // max_retries 16: Envoy's default (3 retries in flight) could refuse a retry if
    // all 4 load connections met b at once.
    let extra = format!(
        r#"    common_lb_config: {{ healthy_panic_threshold: {{ value: 50 }} }}
    circuit_breakers: {{ thresholds: [{{ priority: DEFAULT, max_retries: 16 }}] }}
    health_checks:
    - timeout: {timeout}
      interval: {interval}
      no_traffic_interval: {interval}
      unhealthy_threshold: {UNHEALTHY_THRESHOLD}
      healthy_threshold: {HEALTHY_THRESHOLD}
      http_health_check:
        path: /healthz
        expected_statuses: [{{ start: 200, end: 201 }}]
"#,
        timeout = secs(HC_TIMEOUT),
    );
    let routes = format!(
        r#"              - match: {{ prefix: "/hc/" }}
                route:
                  cluster: hc
                  timeout: 5s
                  retry_policy:
                    retry_on: "connect-failure,reset,5xx"
                    num_retries: 2
{PREVIOUS_HOSTS}"#
    );
    let mut z = Zerohop::start_in(
        Some(&topo.ns_p),
        &config(&topo, &routes, &cluster("hc", &ports, &extra)),
    );
    z.wait_ready(READY_TIMEOUT);

    // Endpoints start unhealthy until their first check passes (as in Envoy).
    for &(_, port) in &HC_HOSTS {
        let tag = endpoint_tag("hc", port);
        wait_log(
            &z,
            0,
            &[&tag, "health check passed: healthy"],
            Duration::from_secs(5),
        );
    }
    wait_log(
        &z,
        0,
        &["cluster hc: ", "(3/3 healthy)"],
        Duration::from_secs(5),
    );

    let load_script = fixture("resilience/load.py");
    let port = LISTENER_PORT.to_string();
    let mut load = topo.ns_c.spawn_logged(
        "python3",
        &[
            load_script.to_str().expect("utf-8 path"),
            "--host",
            PROXY_DOWN,
            "--port",
            &port,
            "--path",
            "/hc/",
            "--connections",
            "4",
            "--rate",
            "200",
            "--duration",
            "40",
        ],
        "load.py",
    );
    load.wait_for("started", Duration::from_secs(10));
    let load_started = Instant::now();
    // The load reaches every host before anything fails.
    for server in &servers {
        wait_requests(server, "/hc/", 20, Duration::from_secs(10));
    }

    // Kill b. Its next check starts at most an interval later and fails at once
    // (connection refused: a network failure, which honours unhealthy_threshold);
    // unhealthy_threshold failures in a row, an interval apart (from the end of one
    // check to the start of the next), mark it unhealthy: after (threshold - 1) to
    // threshold intervals. The upper bound allows one more interval, and SLACK.
    let (b, b_port) = (1, HC_HOSTS[1].1);
    let b_tag = endpoint_tag("hc", b_port);
    let mark = z.log().len();
    servers[b].kill();
    let killed = Instant::now();
    let bound = HC_INTERVAL * UNHEALTHY_THRESHOLD + HC_INTERVAL + SLACK;
    let (line, seen) = wait_log(
        &z,
        mark,
        &[&b_tag, "health check failed: unhealthy"],
        bound + Duration::from_secs(5),
    );
    let took = seen - killed;
    eprintln!("b marked unhealthy {took:?} after it died (bound {bound:?})");
    let early = HC_INTERVAL * (UNHEALTHY_THRESHOLD - 1) - EARLY_MARGIN;
    assert!(
        took >= early,
        "b was marked unhealthy {took:?} after it died: {UNHEALTHY_THRESHOLD} failed checks \
         an interval apart take at least {early:?}: {line}"
    );
    assert!(
        took <= bound,
        "b was marked unhealthy {took:?} after it died, want at most {bound:?} \
         ({UNHEALTHY_THRESHOLD} × {HC_INTERVAL:?} + {HC_INTERVAL:?} + {SLACK:?}): {line}"
    );
    assert!(line.contains("(2/3 healthy)"), "{line}");

    // A while with b down: the load goes to a and c only.
    std::thread::sleep(Duration::from_secs(1));

    // Restart b on the same port: healthy_threshold passing checks in a row bring it
    // back, the first up to an interval after it listens again (the test starts the
    // clock when b has printed `ready`, a poll period after it listens, well within
    // SLACK); so after (threshold - 1) to threshold intervals.
    let mark = z.log().len();
    servers[b] = upstream(&topo.ns_u, "b", b_port, &[]);
    let restarted = Instant::now();
    let bound = HC_INTERVAL * HEALTHY_THRESHOLD + HC_INTERVAL + SLACK;
    let (line, seen) = wait_log(
        &z,
        mark,
        &[&b_tag, "health check passed: healthy"],
        bound + Duration::from_secs(5),
    );
    let took = seen - restarted;
    eprintln!("b healthy again {took:?} after it restarted (bound {bound:?})");
    let early = HC_INTERVAL * (HEALTHY_THRESHOLD - 1) - EARLY_MARGIN;
    assert!(
        took >= early,
        "b was healthy again {took:?} after it restarted: {HEALTHY_THRESHOLD} passed checks \
         an interval apart take at least {early:?}: {line}"
    );
    assert!(
        took <= bound,
        "b was healthy again {took:?} after it restarted, want at most {bound:?} \
         ({HEALTHY_THRESHOLD} × {HC_INTERVAL:?} + {HC_INTERVAL:?} + {SLACK:?}): {line}"
    );
    assert!(line.contains("(3/3 healthy)"), "{line}");
    // Back in rotation: the new b takes its share of the load (about 66 a second).
    wait_requests(&servers[b], "/hc/", 10, Duration::from_secs(5));

    must("kill", &["-TERM", &load.pid().to_string()]);
    let load_time = load_started.elapsed();
    load.wait_for("result ", Duration::from_secs(15));
    let output = load.output();
    let r = load_result(&output);
    let errors: Vec<&str> = output.lines().filter(|l| l.starts_with("error ")).collect();
    assert!(
        num(&r, "non2xx") == 0 && num(&r, "errors") == 0,
        "the clients saw failures while b died and came back (retries and health \
         checks should hide them all):\n{}\n{output}\nzerohop log:\n{}",
        errors.join("\n"),
        z.log()
    );
    let requests = num(&r, "requests");
    // 200 a second; half of that leaves room for a slow machine.
    let want = (100.0 * load_time.as_secs_f64()) as u64;
    assert!(
        requests >= want,
        "the load barely ran: {requests} requests in {load_time:?}, want {want}: {r:?}"
    );

    let log = stop(z);
    // Only b ever failed its checks.
    for &(name, port) in &[HC_HOSTS[0], HC_HOSTS[2]] {
        let tag = endpoint_tag("hc", port);
        assert!(
            !log.lines()
                .any(|l| l.contains(&tag) && l.contains("health check failed")),
            "{name} failed its health checks, only b should have\n{log}"
        );
    }
    let (attempt, success, failure, network) = (
        stat0(&log, "cluster.hc.health_check.attempt"),
        stat0(&log, "cluster.hc.health_check.success"),
        stat0(&log, "cluster.hc.health_check.failure"),
        stat0(&log, "cluster.hc.health_check.network_failure"),
    );
    let counts = format!("attempt {attempt} success {success} failure {failure} network {network}");
    assert!(failure >= u64::from(UNHEALTHY_THRESHOLD), "{counts}\n{log}");
    // Connection refused is a network failure, and network failures are failures.
    assert!(
        network >= u64::from(UNHEALTHY_THRESHOLD) && network <= failure,
        "{counts}\n{log}"
    );
    // Three first passes, b's way back, and a and c all along (at least one more each:
    // the scenario lasts several intervals).
    assert!(
        success >= 3 + u64::from(HEALTHY_THRESHOLD) + 2,
        "{counts}\n{log}"
    );
    // Every finished check is a success or a failure; at most one per endpoint was in
    // flight at exit.
    assert!(
        attempt >= success + failure && attempt <= success + failure + 3,
        "{counts}\n{log}"
    );
    assert_stat_eq(&log, "cluster.hc.membership_total", 3);
    assert_stat_eq(&log, "cluster.hc.membership_healthy", 3);
    // The requests that met the dead b before its checks failed were retried, and the
    // retries succeeded (the clients saw no failure).
    let retries = stat0(&log, "cluster.hc.upstream_rq_retry");
    assert!(
        retries >= 1,
        "no retry, yet b died under load: cluster.hc.upstream_rq_retry={retries}\n{log}"
    );
    let retry_success = stat0(&log, "cluster.hc.upstream_rq_retry_success");
    assert!(
        retry_success >= 1 && retry_success <= retries,
        "upstream_rq_retry_success {retry_success}, upstream_rq_retry {retries}\n{log}"
    );
    assert_stat_eq(&log, "cluster.hc.upstream_rq_retry_overflow", 0);
    assert_stat_eq(&log, "http.ingress.downstream_rq_5xx", 0);
    assert_stat_eq(&log, "http.ingress.downstream_rq_2xx", num(&r, "ok"));
}

// ---- Outlier detection ----

const CONSECUTIVE_5XX: usize = 3;
const OD_INTERVAL: Duration = Duration::from_secs(1);
const BASE_EJECTION: Duration = Duration::from_secs(2);
/// The largest difference between the logging delays of two health log lines (each
/// line is logged 0 to ~50 ms after its event).
const LOG_JITTER: Duration = Duration::from_millis(100);

/// Cluster `od`: a and b answer 200, `bad` 503 to everything. Outlier detection
/// (consecutive_5xx 3, interval 1 s, base_ejection_time 2 s) ejects bad right after
/// its third 503 in a row: sequential requests on one worker see exactly three 503s,
/// then none while bad is ejected; the ejection ends between base_ejection_time and
/// base_ejection_time + interval later (ejections are reviewed each interval), and
/// three more 503s eject bad again, for twice as long (Envoy multiplies the base time
/// by the host's ejections in a row).
#[test]
fn outlier_detection_ejects_a_503_upstream_and_returns_it() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let bad_port = 9005;
    let servers = [
        upstream(&topo.ns_u, "a", 9001, &[]),
        upstream(&topo.ns_u, "b", 9002, &[]),
        upstream(&topo.ns_u, "bad", bad_port, &["--status", "503"]),
    ];
    let bad = &servers[2];
    let extra = format!(
        r#"    outlier_detection:
      consecutive_5xx: {CONSECUTIVE_5XX}
      interval: {interval}
      base_ejection_time: {base}
      max_ejection_percent: 50
"#,
        interval = secs(OD_INTERVAL),
        base = secs(BASE_EJECTION),
    );
    let routes = r#"              - match: { prefix: "/od/" }
                route: { cluster: od }
"#;
    let mut z = Zerohop::start_in(
        Some(&topo.ns_p),
        &config(
            &topo,
            routes,
            &cluster("od", &[9001, 9002, bad_port], &extra),
        ),
    );
    z.wait_ready(READY_TIMEOUT);
    let bad_tag = endpoint_tag("od", bad_port);
    let ejected = |ms: u128| format!("ejected by outlier detection (consecutive_5xx) for {ms} ms");

    // Round robin over three: bad gets every third request, its third 503 comes by
    // the 9th request at the latest, and it is ejected then and there (sequential
    // requests: none in flight to slip past the ejection).
    let first = sequential(&topo, &paths("/od/first-", 12), 10);
    let failed: Vec<&Answer> = first.iter().filter(|a| a.code != 200).collect();
    assert!(
        failed.len() == CONSECUTIVE_5XX && failed.iter().all(|a| a.code == 503),
        "want exactly {CONSECUTIVE_5XX} 503s (bad's, then ejected) of 12 requests: \
         {first:#?}\nzerohop log:\n{}",
        z.log()
    );
    assert_eq!(
        requests_seen(bad, "/od/"),
        CONSECUTIVE_5XX,
        "{}",
        bad.output()
    );
    let (ejection, ejection_seen) = wait_log(
        &z,
        0,
        &[&bad_tag, &ejected(BASE_EJECTION.as_millis())],
        Duration::from_secs(2),
    );

    // While ejected, bad gets nothing: every answer is a 200 from a or b.
    let during = sequential(&topo, &paths("/od/during-", 20), 10);
    assert!(
        ejection_seen.elapsed() < BASE_EJECTION,
        "20 requests took until after the ejection could have ended \
         ({:?} after it was logged): the machine is too slow for this test",
        ejection_seen.elapsed()
    );
    assert!(
        during
            .iter()
            .all(|a| a.code == 200 && (a.name == "a" || a.name == "b")),
        "bad answered while ejected: {during:#?}"
    );
    assert_eq!(
        requests_seen(bad, "/od/"),
        CONSECUTIVE_5XX,
        "{}",
        bad.output()
    );

    // The ejection ends at the first review (every interval) once base_ejection_time
    // has passed.
    let (ended, _) = wait_log(
        &z,
        0,
        &[&bad_tag, "ejection ended: back in rotation"],
        BASE_EJECTION + OD_INTERVAL + Duration::from_secs(5),
    );
    let gap = log_gap(&ejection, &ended);
    eprintln!("bad back in rotation {gap:?} after its ejection");
    let (low, high) = (
        BASE_EJECTION - LOG_JITTER,
        BASE_EJECTION + OD_INTERVAL + SLACK,
    );
    assert!(
        gap >= low && gap <= high,
        "bad was back {gap:?} after its ejection, want {low:?} to {high:?}:\n{ejection}\n{ended}"
    );

    // Back in rotation, and failing still: three more 503s (within the same review
    // interval, so none of its ejections is forgiven) eject it for 2 × base.
    let mark = z.log().len();
    let again = sequential(&topo, &paths("/od/again-", 12), 10);
    let failed = again.iter().filter(|a| a.code != 200).count();
    assert_eq!(
        failed, CONSECUTIVE_5XX,
        "want exactly {CONSECUTIVE_5XX} 503s after bad came back: {again:#?}"
    );
    assert_eq!(
        requests_seen(bad, "/od/"),
        2 * CONSECUTIVE_5XX,
        "{}",
        bad.output()
    );
    let (line, second_seen) = wait_log(
        &z,
        mark,
        &[&bad_tag, "ejected by outlier detection (consecutive_5xx)"],
        Duration::from_secs(2),
    );
    let gap = log_gap(&ended, &line);
    assert!(
        gap < OD_INTERVAL - LOG_JITTER,
        "bad was ejected again {gap:?} after it came back, a whole review interval \
         ({OD_INTERVAL:?}) could have forgiven its first ejection: the machine is too \
         slow for this test\n{ended}\n{line}"
    );
    assert!(
        line.contains(&ejected((2 * BASE_EJECTION).as_millis())),
        "the second ejection in a row should last 2 × {BASE_EJECTION:?}: {line}"
    );

    let log = stop(z);
    assert_stat_eq(
        &log,
        "cluster.od.outlier_detection.ejections_enforced_consecutive_5xx",
        2,
    );
    // The second ejection (4 s) still held when zerohop logged its stats, if it
    // stopped within that time (it takes well under a second normally).
    if second_seen.elapsed() < 2 * BASE_EJECTION - LOG_JITTER {
        assert_stat_eq(&log, "cluster.od.outlier_detection.ejections_active", 1);
    } else {
        eprintln!("zerohop took too long to stop: ejections_active not checked");
    }
    let n5xx = 2 * CONSECUTIVE_5XX as u64;
    assert_stat_eq(&log, "cluster.od.upstream_rq_5xx", n5xx);
    assert_stat_eq(&log, "http.ingress.downstream_rq_5xx", n5xx);
    assert_stat_eq(&log, "http.ingress.downstream_rq_2xx", 44 - n5xx);
}

// ---- Route timeout, per-try timeout ----

const SLOW_DELAY: Duration = Duration::from_millis(2000);
const ROUTE_TIMEOUT: Duration = Duration::from_millis(500);
const PER_TRY_TIMEOUT: Duration = Duration::from_millis(300);
const BACKOFF_MAX: Duration = Duration::from_millis(50);

/// A slow upstream (every answer 2 s late) and a fast one. Route `/slow-only/` (the
/// slow host alone, timeout 0.5 s) answers 504 `upstream request timeout` after 0.5 s.
/// Route `/either/` (slow and fast, round robin; timeout 3 s; retry on 5xx once,
/// per_try_timeout 0.3 s): every request gets the fast host's 200; those that tried the
/// slow host first took the per-try timeout, a back-off (at most 50 ms) and the fast
/// answer, and each such try is counted `upstream_rq_per_try_timeout`.
#[test]
fn route_timeout_answers_504_and_per_try_timeout_retries_to_the_fast_host() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let delay = SLOW_DELAY.as_millis().to_string();
    let (slow_port, fast_port) = (9004, 9001);
    let slow = upstream(&topo.ns_u, "slow", slow_port, &["--delay-ms", &delay]);
    let _fast = upstream(&topo.ns_u, "fast", fast_port, &[]);
    let routes = format!(
        r#"              - match: {{ prefix: "/slow-only/" }}
                route: {{ cluster: slowonly, timeout: {route_timeout} }}
              - match: {{ prefix: "/either/" }}
                route:
                  cluster: either
                  timeout: 3s
                  retry_policy:
                    retry_on: "5xx"
                    num_retries: 1
                    per_try_timeout: {per_try}
                    retry_back_off: {{ base_interval: 0.02s, max_interval: {backoff_max} }}
{PREVIOUS_HOSTS}"#,
        route_timeout = secs(ROUTE_TIMEOUT),
        per_try = secs(PER_TRY_TIMEOUT),
        backoff_max = secs(BACKOFF_MAX),
    );
    let clusters =
        cluster("slowonly", &[slow_port], "") + &cluster("either", &[slow_port, fast_port], "");
    let mut z = Zerohop::start_in(Some(&topo.ns_p), &config(&topo, &routes, &clusters));
    z.wait_ready(READY_TIMEOUT);

    // The route's timeout, from when the request is sent whole (curl's total time
    // adds a connection to zerohop, well under a millisecond here).
    let timed_out = sequential(&topo, &paths("/slow-only/", 2), 10);
    eprintln!(
        "route timeout: {:?}",
        timed_out
            .iter()
            .map(|a| (a.code, a.time))
            .collect::<Vec<_>>()
    );
    for a in &timed_out {
        assert!(
            a.code == 504 && a.body == "upstream request timeout",
            "want 504 `upstream request timeout`: {a:?}"
        );
        let (low, high) = (
            ROUTE_TIMEOUT - Duration::from_millis(50),
            ROUTE_TIMEOUT + Duration::from_millis(100),
        );
        assert!(
            a.time >= low && a.time <= high,
            "504 after {:?}, want {low:?} to {high:?}",
            a.time
        );
    }

    let answers = sequential(&topo, &paths("/either/", 10), 10);
    eprintln!(
        "per-try timeout: {:?}",
        answers
            .iter()
            .map(|a| (a.code, a.name.as_str(), a.time))
            .collect::<Vec<_>>()
    );
    let tried_slow: Vec<String> = slow
        .output()
        .lines()
        .filter_map(|l| l.strip_prefix("request GET "))
        .filter(|p| p.starts_with("/either/"))
        .map(str::to_owned)
        .collect();
    // Round robin over two hosts: whatever a retry's pick does to the rotation, at
    // least every other request starts on the slow host.
    assert!(
        tried_slow.len() >= 5,
        "only {} of 10 requests tried the slow host first: {tried_slow:?}",
        tried_slow.len()
    );
    let upper = PER_TRY_TIMEOUT + BACKOFF_MAX + Duration::from_millis(250);
    for (i, a) in answers.iter().enumerate() {
        let path = format!("/either/{}", i + 1);
        assert!(
            a.code == 200 && a.name == "fast",
            "{path}: want the fast host's 200 (a slow try cut short and retried): {a:?}\n\
             zerohop log:\n{}",
            z.log()
        );
        if tried_slow.contains(&path) {
            assert!(
                a.time >= PER_TRY_TIMEOUT - Duration::from_millis(20) && a.time <= upper,
                "{path} tried the slow host first: want the per-try timeout \
                 ({PER_TRY_TIMEOUT:?}) + back-off (≤ {BACKOFF_MAX:?}) + the fast answer, \
                 at most {upper:?}; took {:?}",
                a.time
            );
        } else {
            assert!(
                a.time < PER_TRY_TIMEOUT,
                "{path} went to the fast host first, yet took {:?}",
                a.time
            );
        }
    }

    let log = stop(z);
    let slow_first = tried_slow.len() as u64;
    assert_stat_eq(&log, "cluster.slowonly.upstream_rq_timeout", 2);
    assert_stat_eq(
        &log,
        "cluster.either.upstream_rq_per_try_timeout",
        slow_first,
    );
    assert_stat_eq(&log, "cluster.either.upstream_rq_retry", slow_first);
    assert_stat_eq(&log, "cluster.either.upstream_rq_retry_success", slow_first);
    // Each request ended within the route's 3 s: no global timeout.
    assert_stat_eq(&log, "cluster.either.upstream_rq_timeout", 0);
    assert_stat_eq(&log, "http.ingress.downstream_rq_5xx", 2);
    assert_stat_eq(&log, "http.ingress.downstream_rq_2xx", 10);
}

// ---- Route idle timeout ----

/// How late the slow upstream of the idle-timeout test answers.
const IDLE_SLOW_DELAY: Duration = Duration::from_millis(3000);
/// The route `idle_timeout` that is shorter than the connection manager's.
const ROUTE_IDLE: Duration = Duration::from_millis(500);
/// The route `idle_timeout` that is longer than the connection manager's.
const LONG_ROUTE_IDLE: Duration = Duration::from_secs(5);
/// The `stream_idle_timeout` of the second listener (the first has Envoy's 300 s).
const SHORT_STREAM_IDLE: Duration = Duration::from_secs(1);
const SHORT_LISTENER_PORT: u16 = 8081;

/// GET `path` from C on zerohop's listener `port` with curl (bounded by `max_time_s`).
fn get_on(topo: &ProxyTopology, port: u16, path: &str, max_time_s: u32) -> Answer {
    let u = format!("http://{PROXY_DOWN}:{port}{path}");
    let max_time = max_time_s.to_string();
    let out = topo.ns_c.run(
        "curl",
        &[
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            &max_time,
            "-w",
            WRITE_OUT,
            &u,
        ],
        Duration::from_secs(u64::from(max_time_s) + 20),
    );
    let text = out.stdout_str();
    let mut answers = parse_answers(&text);
    assert_eq!(
        answers.len(),
        1,
        "curl {u} ({}): {}\n{text}",
        describe(out.status),
        out.stderr
    );
    answers.remove(0)
}

/// A route's `idle_timeout` replaces the connection manager's `stream_idle_timeout`
/// for its requests, both ways. One upstream answers every request 3 s late; every
/// route sends to it with the route timeout off (`timeout: 0s`), so only idle timers
/// can cut a request short. The same routes are served by two listeners:
/// - `ingress`, with the default `stream_idle_timeout` (300 s): on the route with
///   `idle_timeout: 0.5s` the client gets 408 `stream timeout` after 0.5 s; on the
///   route without one, the same request waits and gets the upstream's 200 after 3 s
///   (so the 408 was the route's timer, not some other limit);
/// - `short`, with `stream_idle_timeout: 1s`: on the route with `idle_timeout: 5s`,
///   the 200 after 3 s (the route's timer replaced the listener's shorter one, rather
///   than running beside it); on the route without one, 408 after 1 s (the listener's timer runs).
///
/// The four requests run at once; each reached the upstream (the 408s were sent while
/// it sat on the request). Times are curl's own.
#[test]
fn route_idle_timeout_replaces_the_stream_idle_timeout() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let port = 9004;
    let delay = IDLE_SLOW_DELAY.as_millis().to_string();
    let slow = upstream(&topo.ns_u, "slow", port, &["--delay-ms", &delay]);
    let routes = format!(
        r#"              - match: {{ prefix: "/idle/" }}
                route: {{ cluster: slow, timeout: 0s, idle_timeout: {idle} }}
              - match: {{ prefix: "/long/" }}
                route: {{ cluster: slow, timeout: 0s, idle_timeout: {long} }}
              - match: {{ prefix: "/plain/" }}
                route: {{ cluster: slow, timeout: 0s }}
"#,
        idle = secs(ROUTE_IDLE),
        long = secs(LONG_ROUTE_IDLE),
    );
    let short_hcm = format!(
        "          stream_idle_timeout: {}\n",
        secs(SHORT_STREAM_IDLE)
    );
    let listeners = http_listener("ingress", LISTENER_PORT, "", &routes)
        + &http_listener("short", SHORT_LISTENER_PORT, &short_hcm, &routes);
    let mut z = Zerohop::start_in(
        Some(&topo.ns_p),
        &config_of(&topo, &listeners, &cluster("slow", &[port], "")),
    );
    z.wait_ready(READY_TIMEOUT);

    // (listener port, path, whether the idle timer should fire, after how long).
    let cases = [
        (LISTENER_PORT, "/idle/ingress", Some(ROUTE_IDLE)),
        (LISTENER_PORT, "/plain/ingress", None),
        (SHORT_LISTENER_PORT, "/long/short", None),
        (SHORT_LISTENER_PORT, "/plain/short", Some(SHORT_STREAM_IDLE)),
    ];
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let topo = &topo;
        let running: Vec<_> = cases
            .iter()
            .map(|&(port, path, _)| s.spawn(move || get_on(topo, port, path, 10)))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().expect("curl thread"))
            .collect()
    });
    for (&(port, path, fires), a) in cases.iter().zip(&answers) {
        eprintln!(":{port}{path}: {} after {:?}", a.code, a.time);
        match fires {
            Some(idle) => {
                assert!(
                    a.code == 408 && a.body == "stream timeout",
                    ":{port}{path}: want 408 `stream timeout` after {idle:?}: {a:?}\n\
                     zerohop log:\n{}",
                    z.log()
                );
                let (low, high) = (idle - Duration::from_millis(50), idle + SLACK);
                assert!(
                    a.time >= low && a.time <= high,
                    ":{port}{path}: 408 after {:?}, want {low:?} to {high:?}",
                    a.time
                );
            }
            None => {
                assert!(
                    a.code == 200 && a.name == "slow",
                    ":{port}{path}: want the upstream's 200 after {IDLE_SLOW_DELAY:?} \
                     (no idle timer should fire): {a:?}\nzerohop log:\n{}",
                    z.log()
                );
                let (low, high) = (
                    IDLE_SLOW_DELAY - Duration::from_millis(50),
                    IDLE_SLOW_DELAY + 2 * SLACK,
                );
                assert!(
                    a.time >= low && a.time <= high,
                    ":{port}{path}: 200 after {:?}, want {low:?} to {high:?}",
                    a.time
                );
            }
        }
    }
    // Every request reached the upstream: the 408s cut requests it was sitting on.
    for &(_, path, _) in &cases {
        assert_eq!(
            requests_seen(&slow, path),
            1,
            "{path} should have reached the upstream once:\n{}",
            slow.output()
        );
    }

    let log = stop(z);
    for listener in ["ingress", "short"] {
        assert_stat_eq(&log, &format!("http.{listener}.downstream_rq_timeout"), 1);
        assert_stat_eq(&log, &format!("http.{listener}.downstream_rq_2xx"), 1);
        assert_stat_eq(&log, &format!("http.{listener}.downstream_rq_4xx"), 1);
    }
    // The route timeout was off: no 504.
    assert_stat_eq(&log, "cluster.slow.upstream_rq_timeout", 0);
}

// ---- Circuit breakers ----

const MAX_PENDING: usize = 10;
/// An overflow is refused at once: no waiting on the upstream.
const IMMEDIATE: Duration = Duration::from_millis(200);

/// Start `n` curls in C, each GETting `PREFIX<i>` for i in `from..from + n` with a
/// 20 s limit, in the background; each prints the status code when it ends.
fn waiting_requests(
    topo: &ProxyTopology,
    prefix: &str,
    from: usize,
    n: usize,
) -> Vec<LoggedProcess> {
    (from..from + n)
        .map(|i| {
            let u = url(&format!("{prefix}{i}"));
            topo.ns_c.spawn_logged(
                "curl",
                &[
                    "-sS",
                    "--noproxy",
                    "*",
                    "--max-time",
                    "20",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &u,
                ],
                &format!("request {prefix}{i} (should still wait for the upstream)"),
            )
        })
        .collect()
}

/// The established connections from C to the listener.
fn connections(topo: &ProxyTopology) -> (usize, String) {
    let peer = format!("{PROXY_DOWN}:{LISTENER_PORT}");
    let out = topo.ns_c.must("ss", &["-Htn", "state", "established"]);
    let text = out.stdout_str();
    (text.lines().filter(|l| l.contains(&peer)).count(), text)
}

/// Wait until every curl of `waiting` is connected to the listener (it sends its
/// request right after), then a little longer for zerohop to take the requests in;
/// panic, with its output, if one of them ends meanwhile (answered: not waiting).
fn wait_connected(topo: &ProxyTopology, waiting: &mut [LoggedProcess]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for w in waiting.iter_mut() {
            w.assert_running();
        }
        let (n, text) = connections(topo);
        if n == waiting.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} connections to the listener, want {}:\n{text}",
            waiting.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    for w in waiting.iter_mut() {
        w.assert_running();
    }
}

/// Kill the curls of `waiting` (their clients give up) and wait until their
/// connections are closed on C's side.
fn give_up(topo: &ProxyTopology, waiting: Vec<LoggedProcess>) {
    drop(waiting);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (n, text) = connections(topo);
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} connections to the listener left after the clients were killed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET `path` from C, expecting the circuit breaker's answer: a 503 with
/// `x-envoy-overloaded: true`, at once.
fn assert_overflow(topo: &ProxyTopology, z: &Zerohop, path: &str) {
    let u = url(path);
    let out = topo.ns_c.run(
        "curl",
        &[
            "-sS",
            "-i",
            "--noproxy",
            "*",
            "--max-time",
            "3",
            "-w",
            "\n@@ time=%{time_total}\n",
            &u,
        ],
        Duration::from_secs(15),
    );
    let text = out.stdout_str();
    let time = text
        .lines()
        .find_map(|l| l.strip_prefix("@@ time="))
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(Duration::from_secs_f64);
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.starts_with("http/1.1 503") && lower.contains("\nx-envoy-overloaded: true"),
        "{path}: want 503 with `x-envoy-overloaded: true` (circuit breaker), got ({}) \
         {time:?}:\n{text}{}\nzerohop log:\n{}",
        describe(out.status),
        out.stderr,
        z.log()
    );
    assert!(
        time.is_some_and(|t| t < IMMEDIATE),
        "{path}: the overflow 503 took {time:?}, want under {IMMEDIATE:?}"
    );
}

/// Each circuit breaker refuses the request beyond its limit with an immediate 503
/// `x-envoy-overloaded: true`, while the requests within the limit keep waiting:
/// - `blackhole` (max_pending_requests 10; an upstream whose TCP handshake never
///   completes): requests 1-10 wait for connections that never come, all pending;
///   request 11 overflows, as the issue says;
/// - `stalled` (max_connections 1, max_pending_requests 10; an upstream that accepts and
///   never answers): request 1 gets the one connection and is active there, not
///   pending (Envoy counts a request pending only until a connection takes it);
///   requests 2-11 wait for that connection (pending, 10), and request 12 overflows;
///   only request 1 ever reaches the upstream;
/// - `limited` (max_requests 2; the stalling upstream): two requests in flight, the
///   third overflows (Envoy counts it in `upstream_rq_pending_overflow` too).
///
/// After each case the waiting clients give up (killed): their requests must free
/// their places, as Envoy cancels the request of a client that went away, so the next
/// request waits (or reaches the upstream) instead of overflowing, and at exit no
/// request is left pending or active.
#[test]
fn circuit_breaker_pending_overflow_is_immediate_503() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let (hole_port, stall_port, limited_port) = (9006, 9007, 9008);
    let _hole = upstream(&topo.ns_u, "hole", hole_port, &["--blackhole"]);
    let stall = upstream(&topo.ns_u, "stall", stall_port, &["--stall"]);
    let limited = upstream(&topo.ns_u, "limited", limited_port, &["--stall"]);
    let routes = r#"              - match: { prefix: "/blackhole/" }
                route: { cluster: blackhole, timeout: 15s }
              - match: { prefix: "/stalled/" }
                route: { cluster: stalled, timeout: 15s }
              - match: { prefix: "/limited/" }
                route: { cluster: limited, timeout: 15s }
"#;
    let breakers = |limits: &str| {
        format!("    circuit_breakers: {{ thresholds: [{{ priority: DEFAULT, {limits} }}] }}\n")
    };
    let clusters = cluster(
        "blackhole",
        &[hole_port],
        &breakers(&format!("max_pending_requests: {MAX_PENDING}")),
    )
    .replace("connect_timeout: 1s", "connect_timeout: 10s")
        + &cluster(
            "stalled",
            &[stall_port],
            &breakers(&format!(
                "max_connections: 1, max_pending_requests: {MAX_PENDING}"
            )),
        )
        + &cluster("limited", &[limited_port], &breakers("max_requests: 2"));
    let mut z = Zerohop::start_in(Some(&topo.ns_p), &config(&topo, routes, &clusters));
    z.wait_ready(READY_TIMEOUT);

    // blackhole: 10 pending connects, the 11th request overflows.
    let mut waiting = waiting_requests(&topo, "/blackhole/", 1, MAX_PENDING);
    wait_connected(&topo, &mut waiting);
    assert_overflow(&topo, &z, &format!("/blackhole/{}", MAX_PENDING + 1));
    for w in &mut waiting {
        w.assert_running();
    }
    // The clients give up, and free their places: Envoy cancels a pending request
    // whose client went away, so a new request waits again rather than overflowing.
    give_up(&topo, waiting);
    let mut again = waiting_requests(&topo, "/blackhole/again-", 1, 1);
    wait_connected(&topo, &mut again);
    give_up(&topo, again);

    // stalled: 1 active on the one connection, 10 pending behind it, the 12th
    // overflows.
    let mut waiting = waiting_requests(&topo, "/stalled/", 1, 1);
    wait_requests(&stall, "/stalled/", 1, Duration::from_secs(5));
    waiting.extend(waiting_requests(&topo, "/stalled/", 2, MAX_PENDING));
    wait_connected(&topo, &mut waiting);
    assert_overflow(&topo, &z, &format!("/stalled/{}", MAX_PENDING + 2));
    for w in &mut waiting {
        w.assert_running();
    }
    assert_eq!(
        requests_seen(&stall, "/stalled/"),
        1,
        "max_connections 1: only the first request may reach the upstream\n{}",
        stall.output()
    );
    // The clients give up: their requests end, request 1's with its upstream
    // connection (an HTTP/1.1 request cannot be cancelled otherwise), so the next
    // request gets a new connection and reaches the upstream.
    give_up(&topo, waiting);
    let mut again = waiting_requests(&topo, "/stalled/again-", 1, 1);
    wait_connected(&topo, &mut again);
    wait_requests(&stall, "/stalled/", 2, Duration::from_secs(5));
    give_up(&topo, again);

    // limited: 2 in flight, the third overflows.
    let mut waiting = waiting_requests(&topo, "/limited/", 1, 2);
    wait_requests(&limited, "/limited/", 2, Duration::from_secs(5));
    wait_connected(&topo, &mut waiting);
    assert_overflow(&topo, &z, "/limited/3");
    for w in &mut waiting {
        w.assert_running();
    }
    assert_eq!(
        requests_seen(&limited, "/limited/"),
        2,
        "{}",
        limited.output()
    );
    // Both give up: the next request is in flight again, not refused.
    give_up(&topo, waiting);
    let mut again = waiting_requests(&topo, "/limited/again-", 1, 1);
    wait_connected(&topo, &mut again);
    wait_requests(&limited, "/limited/", 3, Duration::from_secs(5));
    give_up(&topo, again);

    let log = stop(z);
    assert_stat_eq(&log, "cluster.blackhole.upstream_rq_pending_overflow", 1);
    assert_stat_eq(&log, "cluster.stalled.upstream_rq_pending_overflow", 1);
    // Requests 2-11 each wanted a connection of their own and met max_connections.
    let cx_overflow = stat0(&log, "cluster.stalled.upstream_cx_overflow");
    assert!(
        cx_overflow >= 1,
        "cluster.stalled.upstream_cx_overflow={cx_overflow}\n{log}"
    );
    assert_stat_eq(&log, "cluster.limited.upstream_rq_pending_overflow", 1);
    // Nothing left behind by the clients that gave up.
    for c in ["blackhole", "stalled", "limited"] {
        assert_stat_eq(&log, &format!("cluster.{c}.upstream_rq_pending_active"), 0);
        assert_stat_eq(&log, &format!("cluster.{c}.upstream_rq_active"), 0);
    }
    assert_stat_eq(&log, "http.ingress.downstream_cx_active", 0);
    let n5xx = stat0(&log, "http.ingress.downstream_rq_5xx");
    assert!(
        n5xx >= 3,
        "three overflow 503s, downstream_rq_5xx={n5xx}\n{log}"
    );
}

// ---- Retries: the retry buffer and the `max_retries` circuit breaker ----

/// Where the admin API listens, in zerohop's namespace (see [`with_admin`]).
const ADMIN_PORT: u16 = 9901;
/// zerohop keeps a request body for a retry up to this many bytes
/// (`RETRY_BUFFER_LIMIT`, 1 MiB); a longer one is not tried again.
const RETRY_BUFFER: usize = 1 << 20;
/// A body well within [`RETRY_BUFFER`].
const SMALL_BODY: usize = 64 << 10;
/// A body twice [`RETRY_BUFFER`].
const BIG_BODY: usize = 2 << 20;
const _: () = assert!(SMALL_BODY < RETRY_BUFFER && BIG_BODY > RETRY_BUFFER);

/// `config` (from [`config`]) with the admin API on 127.0.0.1:[`ADMIN_PORT`] in
/// zerohop's namespace, so that a test reads the stats while zerohop runs.
fn with_admin(config: String) -> String {
    config.replacen(
        "static_resources:\n",
        &format!(
            "admin:\n  address:\n    socket_address: \
             {{ address: 127.0.0.1, port_value: {ADMIN_PORT} }}\nstatic_resources:\n"
        ),
        1,
    )
}

/// Stat `name` as the admin API's `/stats` serves it now (0 when not listed).
fn live_stat(topo: &ProxyTopology, name: &str) -> u64 {
    let u = format!("http://127.0.0.1:{ADMIN_PORT}/stats");
    let out = topo.ns_p.run(
        "curl",
        &["-sS", "--noproxy", "*", "--max-time", "5", &u],
        Duration::from_secs(15),
    );
    let text = out.stdout_str();
    assert!(
        out.success(),
        "GET {u} ({}): {}\n{text}",
        describe(out.status),
        out.stderr
    );
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("/stats: {name} is not a number: {v:?}"))
        })
}

/// POST the file `file` to `path` from C with curl, chunked (`Transfer-Encoding:
/// chunked`) or with a Content-Length, without `Expect: 100-continue`; the answer.
fn post(topo: &ProxyTopology, path: &str, file: &std::path::Path, chunked: bool) -> Answer {
    let u = url(path);
    let data = format!("@{}", file.display());
    let mut args = vec![
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "-H",
        "Expect:",
        "--data-binary",
        &data,
        "-w",
        WRITE_OUT,
    ];
    if chunked {
        args.extend(["-H", "Transfer-Encoding: chunked"]);
    }
    args.push(&u);
    let out = topo.ns_c.run("curl", &args, Duration::from_secs(30));
    let text = out.stdout_str();
    let mut answers = parse_answers(&text);
    assert_eq!(
        answers.len(),
        1,
        "POST {u} ({}): {}\n{text}",
        describe(out.status),
        out.stderr
    );
    answers.remove(0)
}

/// What `server` (run with `--log-body`) read of each POST to exactly `path`: its
/// `body POST PATH len=N sha256=HEX` lines, as (N, HEX).
fn bodies_seen(server: &LoggedProcess, path: &str) -> Vec<(usize, String)> {
    let prefix = format!("body POST {path} ");
    server
        .output()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (mut len, mut sha) = (None, String::new());
            for kv in rest.split_whitespace() {
                match kv.split_once('=') {
                    Some(("len", v)) => len = v.parse().ok(),
                    Some(("sha256", v)) => sha = v.to_owned(),
                    _ => {}
                }
            }
            let len = len.unwrap_or_else(|| panic!("no len= in {rest:?}"));
            (len, sha)
        })
        .collect()
}

/// A request body zerohop keeps for a retry up to 1 MiB only. Two upstreams answer
/// every request 503 (each reads the whole body first, so the answer never overtakes
/// the body, and logs its length and SHA-256 with `--log-body`), round robin, behind a
/// route with `retry_on: 5xx`, `num_retries: 2`. POSTs, one at a time:
/// - 64 KiB with a Content-Length: tried three times (the first try and 2 retries),
///   each try carrying the whole body intact, and the client gets the last try's 503;
/// - 2 MiB with a Content-Length: over the buffer, tried once only, and the client
///   gets that try's 503, as without a retry policy;
/// - the same two, chunked: the same.
///
/// `cluster.retry.upstream_rq_retry` is read live from the admin API around each
/// request: +2 for a small body, +0 for a big one; at exit 4, with 2
/// `upstream_rq_retry_limit_exceeded` (the small bodies' third 503s) and no
/// `upstream_rq_retry_overflow` (the buffer limit is not the circuit breaker).
#[test]
fn a_body_beyond_the_retry_buffer_is_not_retried() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let failing = ["--status", "503", "--log-body"];
    let servers = [
        upstream(&topo.ns_u, "a", 9001, &failing),
        upstream(&topo.ns_u, "b", 9002, &failing),
    ];
    const NUM_RETRIES: usize = 2;
    let routes = format!(
        r#"              - match: {{ prefix: "/retry/" }}
                route:
                  cluster: retry
                  retry_policy: {{ retry_on: "5xx", num_retries: {NUM_RETRIES} }}
"#
    );
    let mut z = Zerohop::start_in(
        Some(&topo.ns_p),
        &with_admin(config(&topo, &routes, &cluster("retry", &[9001, 9002], ""))),
    );
    z.wait_ready(READY_TIMEOUT);

    // The bodies, and their SHA-256 as sha256sum gives it.
    let dir = TempDir::new("zhretrybuf");
    let body = |name: &str, len: usize| {
        let file = dir.path().join(name);
        std::fs::write(&file, test_payload(len)).expect("write body");
        let out = must("sha256sum", &[file.to_str().expect("utf-8 path")]).stdout_str();
        let sha = out.split_whitespace().next().expect("a digest").to_owned();
        (file, len, sha)
    };
    let small = body("small.bin", SMALL_BODY);
    let big = body("big.bin", BIG_BODY);

    // (path, body, chunked, whether it is retried).
    let cases = [
        ("/retry/small-length", &small, false, true),
        ("/retry/big-length", &big, false, false),
        ("/retry/small-chunked", &small, true, true),
        ("/retry/big-chunked", &big, true, false),
    ];
    let retry_stat = "cluster.retry.upstream_rq_retry";
    for (path, (file, len, sha), chunked, retried) in cases {
        let tries = if retried { 1 + NUM_RETRIES } else { 1 };
        let before = live_stat(&topo, retry_stat);
        let started = Instant::now();
        let a = post(&topo, path, file, chunked);
        eprintln!(
            "{path}: {} from {} in {:?}",
            a.code,
            a.name,
            started.elapsed()
        );
        assert!(
            a.code == 503 && (a.name == "a" || a.name == "b") && a.body.contains("method=POST"),
            "{path}: want an upstream's 503 (the last try's), got {a:?}\nzerohop log:\n{}",
            z.log()
        );
        // The upstreams logged each try (as it came, and its body once read whole)
        // before answering it, so every try is in their output by now.
        let reached: usize = servers.iter().map(|s| requests_seen(s, path)).sum();
        let bodies: Vec<(usize, String)> =
            servers.iter().flat_map(|s| bodies_seen(s, path)).collect();
        let outputs = || format!("a:\n{}\nb:\n{}", servers[0].output(), servers[1].output());
        assert_eq!(
            reached,
            tries,
            "{path} ({len} bytes, chunked {chunked}): want {tries} tries at the upstreams\n{}",
            outputs()
        );
        assert!(
            bodies.len() == tries && bodies.iter().all(|(n, s)| n == len && s == sha),
            "{path}: every try should carry the whole body ({len} bytes, sha256 {sha}): \
             {bodies:?}\n{}",
            outputs()
        );
        let after = live_stat(&topo, retry_stat);
        assert_eq!(
            after - before,
            (tries - 1) as u64,
            "{path}: {retry_stat} went from {before} to {after}"
        );
    }

    let log = stop(z);
    assert_stat_eq(&log, retry_stat, 2 * NUM_RETRIES as u64);
    assert_stat_eq(&log, "cluster.retry.upstream_rq_retry_limit_exceeded", 2);
    assert_eq!(
        stat0(&log, "cluster.retry.upstream_rq_retry_overflow"),
        0,
        "{log}"
    );
    assert_stat_eq(&log, "http.ingress.downstream_rq_5xx", 4);
    // Every try failed, so no retry succeeded: Envoy counts `upstream_rq_retry_success`
    // only when the answer after a retry is one it would not retry
    // (`RetryStateImpl::shouldRetry`, `would_retry == NoRetry`); a 503 past
    // `num_retries` is `upstream_rq_retry_limit_exceeded` instead.
    assert_stat_eq(&log, "cluster.retry.upstream_rq_retry_success", 0);
}

/// How long each upstream of the `max_retries` test sits on a request before its 503.
const TRY_DELAY: Duration = Duration::from_millis(500);
/// The `num_retries` of the `max_retries` test.
const CAPPED_RETRIES: u64 = 3;
/// How many requests the `max_retries` test sends at once.
const CONCURRENT: u64 = 4;

/// The `max_retries` circuit breaker bounds the retries in flight. Cluster `capped`
/// (`max_retries: 1`; two upstreams that answer every request 503 after 0.5 s) behind
/// a route with `retry_on: 5xx`, `num_retries: 3` and a back-off of 0.5 s to 1 s; four
/// clients GET at once.
///
/// The timing, and why the outcome is exact. The four requests reach the upstreams
/// within the spread `s` of the four curls' starts (tens of ms), and each first try
/// fails 0.5 s later (`TRY_DELAY` = D). The first of them to fail (R) takes the one
/// retry place and keeps it until its exchange ends (zerohop holds it across R's
/// further retries, as Envoy gives it back and takes it again at each), which is
/// after three more tries and three back-offs, at least 3 D = 1.5 s later. The other
/// three fail at most `s` after R did, well within that, so each finds the place
/// taken: its retry is not made (`upstream_rq_retry_overflow`) and its own 503 goes to
/// its client at once. So: 3 overflows, exactly R's 3 retries (not 4 × 3), 7 tries at
/// the upstreams, R's client answered after at least 4 D, the others' after one try.
/// While R is still retrying (checked live, once the three overflows are counted), the
/// breaker is open (`circuit_breakers.default.rq_retry_open` 1); at exit it is closed
/// again (the place given back).
#[test]
fn max_retries_limits_retries_in_flight() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let delay = TRY_DELAY.as_millis().to_string();
    let failing = ["--status", "503", "--delay-ms", &delay];
    let servers = [
        upstream(&topo.ns_u, "a", 9001, &failing),
        upstream(&topo.ns_u, "b", 9002, &failing),
    ];
    let routes = format!(
        r#"              - match: {{ prefix: "/capped/" }}
                route:
                  cluster: capped
                  timeout: 15s
                  retry_policy:
                    retry_on: "5xx"
                    num_retries: {CAPPED_RETRIES}
                    retry_back_off: {{ base_interval: 0.5s, max_interval: 1s }}
"#
    );
    let breakers = "    circuit_breakers: { thresholds: [{ max_retries: 1 }] }\n";
    let mut z = Zerohop::start_in(
        Some(&topo.ns_p),
        &with_admin(config(
            &topo,
            &routes,
            &cluster("capped", &[9001, 9002], breakers),
        )),
    );
    z.wait_ready(READY_TIMEOUT);

    let overflow_stat = "cluster.capped.upstream_rq_retry_overflow";
    let open_stat = "cluster.capped.circuit_breakers.default.rq_retry_open";
    let (answers, open_while_retrying) = std::thread::scope(|s| {
        let topo = &topo;
        let running: Vec<_> = (1..=CONCURRENT)
            .map(|i| s.spawn(move || get_on(topo, LISTENER_PORT, &format!("/capped/{i}"), 15)))
            .collect();
        // The three overflows come about one try (D) after the start; R's retries run
        // on for at least 3 D after that.
        let deadline = Instant::now() + 3 * TRY_DELAY;
        while live_stat(topo, overflow_stat) < CONCURRENT - 1 && Instant::now() < deadline {
            std::thread::sleep(LOG_POLL);
        }
        let open = live_stat(topo, open_stat);
        let answers: Vec<Answer> = running
            .into_iter()
            .map(|h| h.join().expect("curl thread"))
            .collect();
        (answers, open)
    });
    for (i, a) in answers.iter().enumerate() {
        eprintln!(
            "/capped/{}: {} from {} after {:?}",
            i + 1,
            a.code,
            a.name,
            a.time
        );
    }
    let log = stop(z);
    let outputs = || format!("a:\n{}\nb:\n{}", servers[0].output(), servers[1].output());
    for (i, a) in answers.iter().enumerate() {
        assert!(
            a.code == 503 && (a.name == "a" || a.name == "b"),
            "/capped/{}: want an upstream's 503: {a:?}\nzerohop log:\n{log}",
            i + 1
        );
    }
    let overflow = stat0(&log, overflow_stat);
    let retries = stat0(&log, "cluster.capped.upstream_rq_retry");
    assert!(
        overflow >= 1 && retries < CONCURRENT * CAPPED_RETRIES,
        "max_retries 1: want retries refused (upstream_rq_retry_overflow {overflow}) \
         and fewer than {} retries made ({retries})\n{log}",
        CONCURRENT * CAPPED_RETRIES
    );
    // Exactly, by the timing above.
    assert_eq!(
        (overflow, retries),
        (CONCURRENT - 1, CAPPED_RETRIES),
        "want {} overflows and R's {CAPPED_RETRIES} retries (overflow, retry); answers \
         {answers:#?}\n{log}",
        CONCURRENT - 1
    );
    assert_stat_eq(&log, "cluster.capped.upstream_rq_retry_limit_exceeded", 1);
    let tries: usize = servers.iter().map(|s| requests_seen(s, "/capped/")).sum();
    assert_eq!(
        tries as u64,
        CONCURRENT + CAPPED_RETRIES,
        "tries at the upstreams\n{}",
        outputs()
    );
    let slow: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.time >= (1 + CAPPED_RETRIES as u32) * TRY_DELAY)
        .collect();
    assert_eq!(
        slow.len(),
        1,
        "exactly one client (R's) should wait out {} tries of {TRY_DELAY:?}: {answers:#?}",
        1 + CAPPED_RETRIES
    );
    assert_eq!(
        open_while_retrying, 1,
        "{open_stat} while R's retries were in flight"
    );
    assert_stat_eq(&log, open_stat, 0);
    assert_stat_eq(&log, "cluster.capped.upstream_rq_active", 0);
    assert_stat_eq(&log, "http.ingress.downstream_rq_5xx", CONCURRENT);
}

// ---- tcp_proxy: health checks and outlier detection ----

const TCP_LISTENER_PORT: u16 = 8000;
/// What the TCP health check sends, and wants back from the echo servers.
const HC_PAYLOAD: &[u8] = b"zerohop health check\n";

/// The config of a `tcp_proxy` test: the [`dataplane`], listener `l4` on
/// 0.0.0.0:[`TCP_LISTENER_PORT`] whose `tcp_proxy` sends every connection to cluster
/// `to`, and `clusters` (each from [`cluster`]).
fn tcp_config(topo: &ProxyTopology, to: &str, clusters: &str) -> String {
    let listener = format!(
        r#"  - name: l4
    address:
      socket_address: {{ address: 0.0.0.0, port_value: {TCP_LISTENER_PORT} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: l4
          cluster: {to}
"#
    );
    config_of(topo, &listener, clusters)
}

/// Start `server.py echo` on `UPSTREAM:port` in U.
fn echo_server(topo: &ProxyTopology, port: u16) -> LoggedProcess {
    tcp_server_py(
        &topo.ns_u,
        "echo",
        UPSTREAM,
        &["--port", &port.to_string()],
        SERVER_READY,
    )
}

/// Open `n` connections at once through the `tcp_proxy` listener from C, each echoing
/// its own 64 bytes (`client.py echo`); its `result` line.
fn echo_through(topo: &ProxyTopology, z: &Zerohop, n: usize) -> ClientResult {
    let conns = n.to_string();
    let argv = tcp_client_argv(
        "echo",
        PROXY_DOWN,
        TCP_LISTENER_PORT,
        &["--conns", &conns, "--size", "64", "--timeout", "5"],
    );
    run_tcp_client(&topo.ns_c, z, &argv, Duration::from_secs(30))
}

/// `bytes` as a health check `Payload`'s `text` (hex).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `cx_total` of endpoint `UPSTREAM:port` of cluster `c` at exit: connections the
/// `tcp_proxy` sent it (health checks are not counted).
fn endpoint_cx(log: &str, c: &str, port: u16) -> u64 {
    stat0(
        log,
        &format!("cluster.{c}.endpoint.{UPSTREAM}:{port}.cx_total"),
    )
}

/// A `tcp_proxy` to cluster `tcphc`, three echo servers health-checked over TCP every
/// 0.5 s (send a payload, want it back; unhealthy after 2 failures in a row). All
/// three pass; one is killed and its checks fail (connection refused) until it is
/// marked unhealthy. Then 30 connections at once through the proxy each echo their
/// payload: all succeed, none went to the dead endpoint (`tcp_proxy` makes one
/// connection attempt and does not retry, so a balancer blind to health would reset
/// about a third of them), and the two live endpoints share them.
#[test]
fn tcp_proxy_skips_an_endpoint_its_tcp_health_check_failed() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let ports = [9001, 9002, 9003];
    let mut servers: Vec<LoggedProcess> = ports.iter().map(|&p| echo_server(&topo, p)).collect();
    let payload = hex(HC_PAYLOAD);
    let extra = format!(
        r#"    health_checks:
    - timeout: {timeout}
      interval: {interval}
      no_traffic_interval: {interval}
      unhealthy_threshold: {UNHEALTHY_THRESHOLD}
      healthy_threshold: 1
      tcp_health_check:
        send: {{ text: "{payload}" }}
        receive: [{{ text: "{payload}" }}]
"#,
        timeout = secs(HC_TIMEOUT),
        interval = secs(HC_INTERVAL),
    );
    let mut z = Zerohop::start_in(
        Some(&topo.ns_p),
        &tcp_config(&topo, "tcphc", &cluster("tcphc", &ports, &extra)),
    );
    z.wait_ready(READY_TIMEOUT);

    // The echoed payload passes the checks: every endpoint becomes healthy.
    for &port in &ports {
        wait_log(
            &z,
            0,
            &[&endpoint_tag("tcphc", port), "health check passed: healthy"],
            Duration::from_secs(5),
        );
    }
    wait_log(
        &z,
        0,
        &["cluster tcphc: ", "(3/3 healthy)"],
        Duration::from_secs(5),
    );

    // Kill the second server: two failed checks an interval apart mark it unhealthy.
    let dead = ports[1];
    let mark = z.log().len();
    servers[1].kill();
    let killed = Instant::now();
    let (line, seen) = wait_log(
        &z,
        mark,
        &[
            &endpoint_tag("tcphc", dead),
            "health check failed: unhealthy",
        ],
        HC_INTERVAL * (UNHEALTHY_THRESHOLD + 1) + SLACK + Duration::from_secs(3),
    );
    eprintln!("{dead} marked unhealthy {:?} after it died", seen - killed);
    assert!(line.contains("(2/3 healthy)"), "{line}");

    const CONNS: usize = 30;
    let r = echo_through(&topo, &z, CONNS);
    eprintln!(
        "{CONNS} connections after the health check failed: {} verified, {} failed ({})",
        r.get("verified"),
        r.get("failed"),
        r.get("secs")
    );
    assert!(
        r.num("verified") as usize == CONNS && r.num("failed") == 0.0,
        "every connection should have gone to a live endpoint and echoed its payload \
         ({}):\n{}\nzerohop log:\n{}",
        r.get("first_error"),
        r.stdout,
        z.log()
    );

    let log = stop(z);
    assert_eq!(
        endpoint_cx(&log, "tcphc", dead),
        0,
        "the unhealthy endpoint got connections\n{log}"
    );
    for port in [ports[0], ports[2]] {
        let n = endpoint_cx(&log, "tcphc", port);
        assert!(
            n >= 10,
            "{UPSTREAM}:{port} took {n} of {CONNS} connections, round robin over two \
             should give it about half\n{log}"
        );
    }
    assert_stat_eq(&log, "cluster.tcphc.upstream_cx_total", CONNS as u64);
    assert_stat_eq(&log, "cluster.tcphc.upstream_cx_connect_fail", 0);
    assert_stat_eq(&log, "cluster.tcphc.upstream_cx_none_healthy", 0);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", CONNS as u64);
    // Only the dead endpoint failed its checks.
    for port in [ports[0], ports[2]] {
        let tag = endpoint_tag("tcphc", port);
        assert!(
            !log.lines()
                .any(|l| l.contains(&tag) && l.contains("health check failed")),
            "{UPSTREAM}:{port} failed its health checks\n{log}"
        );
    }
    let (success, failure, network) = (
        stat0(&log, "cluster.tcphc.health_check.success"),
        stat0(&log, "cluster.tcphc.health_check.failure"),
        stat0(&log, "cluster.tcphc.health_check.network_failure"),
    );
    let counts = format!("success {success} failure {failure} network {network}");
    eprintln!("health checks: {counts}");
    assert!(success >= 3, "{counts}\n{log}");
    assert!(failure >= u64::from(UNHEALTHY_THRESHOLD), "{counts}\n{log}");
    assert!(
        network >= u64::from(UNHEALTHY_THRESHOLD) && network <= failure,
        "{counts}\n{log}"
    );
    assert_stat_eq(&log, "cluster.tcphc.membership_total", 3);
    assert_stat_eq(&log, "cluster.tcphc.membership_healthy", 2);
}

/// A `tcp_proxy` to cluster `tcpod`: two echo servers and a port nothing listens on
/// (connection refused), with outlier detection on local-origin failures (2 in a row,
/// `split_external_local_origin_errors`, 30 s ejections) and no health check. Six
/// connections at once: round robin sends two to the closed port, both reset, and
/// their two connect failures eject it. Then 20 more connections all echo their
/// payload (the ejected endpoint gets none).
#[test]
fn tcp_proxy_outlier_detection_ejects_a_refusing_endpoint() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let topo = ProxyTopology::new();
    let (closed, ports) = (9003, [9001, 9002, 9003]);
    let _servers: Vec<LoggedProcess> = ports[..2].iter().map(|&p| echo_server(&topo, p)).collect();
    let extra = r#"    outlier_detection:
      consecutive_local_origin_failure: 2
      split_external_local_origin_errors: true
      interval: 1s
      base_ejection_time: 30s
      max_ejection_percent: 100
"#;
    let mut z = Zerohop::start_in(
        Some(&topo.ns_p),
        &tcp_config(&topo, "tcpod", &cluster("tcpod", &ports, extra)),
    );
    z.wait_ready(READY_TIMEOUT);

    let first = echo_through(&topo, &z, 6);
    eprintln!(
        "6 connections: {} verified, {} failed ({})",
        first.get("verified"),
        first.get("failed"),
        first.get("secs")
    );
    assert!(
        first.num("failed") == 2.0,
        "round robin over three should send 2 of 6 connections to the closed port, \
         reset: {}\nzerohop log:\n{}",
        first.stdout,
        z.log()
    );
    let (line, _) = wait_log(
        &z,
        0,
        &[
            &endpoint_tag("tcpod", closed),
            "ejected by outlier detection (consecutive_local_origin_failure)",
        ],
        Duration::from_secs(2),
    );
    assert!(line.contains("for 30000 ms"), "{line}");

    let after = echo_through(&topo, &z, 20);
    eprintln!(
        "20 connections after the ejection: {} verified, {} failed ({})",
        after.get("verified"),
        after.get("failed"),
        after.get("secs")
    );
    assert!(
        after.num("verified") == 20.0 && after.num("failed") == 0.0,
        "the ejected endpoint still took connections ({}):\n{}\nzerohop log:\n{}",
        after.get("first_error"),
        after.stdout,
        z.log()
    );

    let log = stop(z);
    assert_eq!(endpoint_cx(&log, "tcpod", closed), 2, "{log}");
    assert_stat_eq(
        &log,
        &format!("cluster.tcpod.endpoint.{UPSTREAM}:{closed}.cx_connect_fail"),
        2,
    );
    assert_stat_eq(&log, "cluster.tcpod.upstream_cx_connect_fail", 2);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", 26);
    assert_stat_eq(
        &log,
        "cluster.tcpod.outlier_detection.ejections_enforced_consecutive_local_origin_failure",
        1,
    );
    assert_stat_eq(&log, "cluster.tcpod.outlier_detection.ejections_active", 1);
    assert_stat_eq(&log, "cluster.tcpod.membership_healthy", 2);
}
