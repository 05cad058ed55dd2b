//! End-to-end: zerohop's health state and circuit breakers are shared by its workers.
//! The HTTP proxy runs with two workers (CPUs 0 and 1) on multi-queue `net_tap` ports,
//! the topology of `e2e_tcp_multiworker.rs`:
//!
//! ```text
//!  ns C 10.0.0.2/24 ── tap ── [port down 10.0.0.1/24] zerohop [port up 10.0.1.1/24] ── tap ── ns U 10.0.1.2/24
//!  default via 10.0.0.1   (net_tap, 2 queue pairs; workers on CPUs 0 and 1;      default via 10.0.1.1
//!                          HCM listener ingress 0.0.0.0:8080)                   upstream.py servers
//! ```
//!
//! # Which worker gets what
//!
//! The kernel puts the first frame of each downstream connection on a tap queue by flow
//! hash (a keyed hash of the 4-tuple, so a test cannot pick the queue, only draw it
//! again with another source port), and the worker that owns that queue accepts the
//! connection and proxies all its requests. That worker opens its upstream connections
//! from its own block of `ephemeral_ports`: with 40000-40999, worker 0 takes
//! 40000-40499 and worker 1 40500-40999 (what `e2e_tcp_multiworker.rs` checks). So the
//! upstream side tells which worker sent a request: `ss` in U lists each upstream
//! connection with zerohop's local port. And each worker logs its TCP counters at exit
//! (`worker 1 tcp: passive_opens=37 …`): the downstream connections it accepted.
//!
//! Health checks run on worker 0 only, each a fresh connection (from worker 0's
//! block); their verdicts are atomics that every worker reads before each pick. The
//! circuit breakers count each resource of a cluster in one atomic for all workers.
//! These tests show both from the outside: a worker that never checked an endpoint
//! stops sending to it as soon as worker 0 marks it unhealthy, and a `max_requests`
//! limit of 2 is reached by one request on each worker.
//!
//! zerohop busy-polls both CPUs, so the tests run one at a time ([`one_at_a_time`]) and
//! their waits are generous but bounded. Needs root and CPUs 0 and 1; run with
//! `cargo test --test e2e_resilience_multiworker`.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::thread;
use std::time::{Duration, Instant};

/// The workers' CPUs.
const CORES: [usize; 2] = [0, 1];
const LISTENER_PORT: u16 = 8080;
/// zerohop's local ports for upstream connections, and each worker's block of them.
const EPHEMERAL: &str = "40000-40999";
const BLOCKS: [RangeInclusive<u16>; 2] = [40000..=40499, 40500..=40999];
/// MACs for the kernel sides of the taps (locally administered, unicast): DPDK's tap PMD
/// gives them the port's own MAC, which zerohop refuses to learn as a neighbour.
const CLIENT_MAC: &str = "02:7a:68:00:01:01";
const UPSTREAM_MAC: &str = "02:7a:68:00:01:02";
const SERVER_READY: Duration = Duration::from_secs(15);
/// How often the test reads a log or `ss` while waiting for something.
const POLL: Duration = Duration::from_millis(10);
/// Scheduling allowance on top of bounds derived from the config: zerohop's main thread
/// logs a health change up to ~50 ms after it happens, and zerohop busy-polls both CPUs
/// of the machine that runs the test's own processes too.
const SLACK: Duration = Duration::from_millis(500);

// ---- Topology and config ----

/// Namespaces C (clients) and U (upstream servers), and the names of the taps zerohop
/// creates for them. The taps belong to the zerohop process, so [`Taps::start_zerohop`]
/// returns zerohop as a separate owner: declare it after the topology, so that it
/// stops before the namespaces are deleted (which kills the processes left in them).
struct Taps {
    ns_c: Netns,
    ns_u: Netns,
    tap_down: String,
    tap_up: String,
}

impl Taps {
    fn new() -> Taps {
        let id = unique_id();
        Taps {
            ns_c: Netns::new(&format!("zr{id}c")),
            ns_u: Netns::new(&format!("zr{id}u")),
            tap_down: format!("zr{id}td"),
            tap_up: format!("zr{id}tu"),
        }
    }

    /// zerohop's config: two workers on [`CORES`], ports `down` and `up` on net_tap (two
    /// queue pairs each), upstream ports from [`EPHEMERAL`], and listener `ingress` (an
    /// HCM) on [`LISTENER_PORT`] with `routes` (entries of `routes:`, each line indented
    /// 14 spaces) and `clusters` (each from [`cluster`]).
    fn config(&self, routes: &str, clusters: &str) -> String {
        let cores = CORES.map(|c| c.to_string()).join(", ");
        let (down, up) = (&self.tap_down, &self.tap_up);
        format!(
            r#"dataplane:
  cores: [{cores}]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: down
      device: "net_tap0,iface={down}"
      address: {PROXY_DOWN}/24
    - name: up
      device: "net_tap1,iface={up}"
      address: {PROXY_UP}/24
  tcp:
    ephemeral_ports: {EPHEMERAL}
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
{clusters}"#
        )
    }

    /// Start zerohop with [`Taps::config`] and wait until ready; check that it runs two
    /// workers and gave both ports two queue pairs; move the taps into C and U (each with
    /// a MAC of its own), address them, route through zerohop, and check that zerohop
    /// answers a ping on each side.
    fn start_zerohop(&self, routes: &str, clusters: &str) -> Zerohop {
        let mut zerohop = Zerohop::start(&self.config(routes, clusters));
        zerohop.wait_ready(READY_TIMEOUT);
        let log = zerohop.log();
        assert!(
            log.contains("2 worker(s) on CPU(s) [0, 1]"),
            "want `zerohop ready: … 2 worker(s) on CPU(s) [0, 1]`\nlog:\n{log}"
        );
        for port in ["down", "up"] {
            assert!(
                log.lines().any(
                    |l| l.contains(&format!("port {port}: ")) && l.contains("2 queue pair(s)")
                ),
                "want port {port} configured with `2 queue pair(s)`\nlog:\n{log}"
            );
        }
        for (ns, tap, mac, addr, gateway) in [
            (&self.ns_c, &self.tap_down, CLIENT_MAC, CLIENT, PROXY_DOWN),
            (&self.ns_u, &self.tap_up, UPSTREAM_MAC, UPSTREAM, PROXY_UP),
        ] {
            wait_link(tap, Duration::from_secs(5));
            must("ip", &["link", "set", tap, "netns", ns.name()]);
            must("ip", &["-n", ns.name(), "link", "set", tap, "address", mac]);
            ns.configure_if(tap, &format!("{addr}/24"));
            ns.add_default_route(gateway);
        }
        assert_ping(&zerohop, &self.ns_c, PROXY_DOWN, Some(64));
        assert_ping(&zerohop, &self.ns_u, PROXY_UP, Some(64));
        zerohop
    }

    /// Start `upstream.py --name NAME --log` on `UPSTREAM:port` in U with `extra`
    /// arguments; return once it prints `ready`.
    fn upstream(&self, name: &str, port: u16, extra: &[&str]) -> LoggedProcess {
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
        let mut p = self
            .ns_u
            .spawn_logged("python3", &args, &format!("upstream {name}"));
        p.wait_for("ready", SERVER_READY);
        p
    }

    /// zerohop's local ports of the established connections to upstream port `port`, as
    /// U sees them (`ss`): each tells, by its block, which worker opened the connection.
    fn upstream_conns(&self, port: u16) -> Vec<u16> {
        let out = self.ns_u.must("ss", &["-Htn", "state", "established"]);
        let local = format!("{UPSTREAM}:{port}");
        let peer = format!("{PROXY_UP}:");
        out.stdout_str()
            .lines()
            .filter_map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                let at = words.iter().position(|w| *w == local)?;
                words.get(at + 1)?.strip_prefix(&peer)?.parse().ok()
            })
            .collect()
    }

    /// The established connections from C to the listener, and `ss`'s output.
    fn client_conns(&self) -> (usize, String) {
        let peer = format!("{PROXY_DOWN}:{LISTENER_PORT}");
        let out = self.ns_c.must("ss", &["-Htn", "state", "established"]);
        let text = out.stdout_str();
        (text.lines().filter(|l| l.contains(&peer)).count(), text)
    }
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

/// `d` as an Envoy duration (`0.5s`).
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// The worker whose block zerohop's local `port` is in; panic if in neither.
fn worker_of(port: u16) -> usize {
    BLOCKS
        .iter()
        .position(|b| b.contains(&port))
        .unwrap_or_else(|| panic!("upstream connection from port {port}, outside {EPHEMERAL}"))
}

fn url(path: &str) -> String {
    format!("http://{PROXY_DOWN}:{LISTENER_PORT}{path}")
}

// ---- zerohop's log ----

/// Wait until a line of zerohop's log after byte `from` contains every one of
/// `needles`; return that line and when the test saw it. Panic with the log after
/// `timeout`.
fn wait_log(z: &Zerohop, from: usize, needles: &[&str], timeout: Duration) -> (String, Instant) {
    let deadline = Instant::now() + timeout;
    loop {
        let log = z.log();
        let found = log
            .get(from..)
            .unwrap_or("")
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)));
        if let Some(line) = found {
            return (line.to_owned(), Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} within {timeout:?}\nzerohop log:\n{log}"
        );
        thread::sleep(POLL);
    }
}

/// The endpoint part of zerohop's health log lines: `cluster C: endpoint IP:PORT: `.
fn endpoint_tag(cluster: &str, port: u16) -> String {
    format!("cluster {cluster}: endpoint {UPSTREAM}:{port}: ")
}

/// Each worker's `passive_opens` (downstream connections it accepted) from the exit log;
/// panic unless both workers logged it.
fn passive_opens(log: &str) -> [u64; 2] {
    let tcp = tcp_counters(log);
    [0, 1].map(|w| {
        tcp.get(&w)
            .and_then(|c| c.get("passive_opens"))
            .copied()
            .unwrap_or_else(|| panic!("no `worker {w} tcp: … passive_opens=N …` at exit:\n{log}"))
    })
}

/// Stop zerohop (SIGTERM), check a clean exit after traffic, and return its log.
fn stop(z: Zerohop) -> String {
    let (status, log) = z.terminate();
    assert_clean_exit_after_traffic(status, &log, &["down", "up"]);
    log
}

/// The value of stat `name`, 0 when not logged.
fn stat0(log: &str, name: &str) -> u64 {
    stat(log, name).unwrap_or(0)
}

// ---- Clients ----

/// One answer as curl saw it: status, `name=` of the upstream body (empty for a local
/// reply), the body.
#[derive(Debug)]
struct Answer {
    code: u16,
    name: String,
    body: String,
}

/// The marker curl's `-w` writes after each transfer.
const WRITE_OUT: &str = "\n@@ code=%{http_code}\n";

/// GET each of `paths` in order with one curl from C, with `extra` arguments (each
/// transfer bounded by 10 s); the answers in order.
fn curl_paths(taps: &Taps, z: &Zerohop, paths: &[String], extra: &[&str]) -> Vec<Answer> {
    let urls: Vec<String> = paths.iter().map(|p| url(p)).collect();
    let mut args = vec!["-sS", "--noproxy", "*", "--max-time", "10", "-w", WRITE_OUT];
    args.extend_from_slice(extra);
    args.extend(urls.iter().map(String::as_str));
    let out = taps.ns_c.run(
        "curl",
        &args,
        Duration::from_secs(10 * paths.len() as u64 + 20),
    );
    let text = out.stdout_str();
    let mut answers = Vec::new();
    let mut body = String::new();
    for line in text.lines() {
        let Some(code) = line.strip_prefix("@@ code=") else {
            body.push_str(line);
            body.push('\n');
            continue;
        };
        let name = body
            .lines()
            .find_map(|l| l.strip_prefix("name="))
            .unwrap_or("")
            .to_owned();
        answers.push(Answer {
            code: code.trim().parse().unwrap_or(0),
            name,
            body: std::mem::take(&mut body).trim().to_owned(),
        });
    }
    assert_eq!(
        answers.len(),
        paths.len(),
        "curl ({}) gave {} answers for {} requests: {}\n{text}\nzerohop log:\n{}",
        describe(out.status),
        answers.len(),
        paths.len(),
        out.stderr,
        z.log()
    );
    answers
}

/// `n` paths `PREFIX1`, `PREFIX2`, … .
fn paths(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

/// How many requests for exactly `path` reached `server` (its `request GET PATH` lines).
fn seen(server: &LoggedProcess, path: &str) -> usize {
    let line = format!("request GET {path}");
    server.output().lines().filter(|l| *l == line).count()
}

/// Start a curl in C that GETs `path` (20 s limit) in the background; it prints the
/// status code when it ends.
fn waiting_request(taps: &Taps, path: &str) -> LoggedProcess {
    taps.ns_c.spawn_logged(
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
            &url(path),
        ],
        &format!("request {path} (should still wait for the upstream)"),
    )
}

/// Wait until `server` logged a request for `path`, panicking (with the curl's output
/// and zerohop's log) if `client`, which sent it, ends first (it was answered, not
/// forwarded) or 5 s pass.
fn wait_reached(server: &LoggedProcess, client: &mut LoggedProcess, path: &str, z: &Zerohop) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen(server, path) == 0 {
        client.assert_running();
        assert!(
            Instant::now() < deadline,
            "{path} did not reach the upstream within 5 s; its output:\n{}\nzerohop log:\n{}",
            server.output(),
            z.log()
        );
        thread::sleep(POLL);
    }
}

/// Wait (at most 10 s) until `want` says yes to `what`, polling every 20 ms.
fn wait_until(what: &str, mut want: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let why = match want() {
            Ok(()) => return,
            Err(why) => why,
        };
        assert!(Instant::now() < deadline, "{what} within 10 s: {why}");
        thread::sleep(Duration::from_millis(20));
    }
}

// ---- Shared health ----

const HC_INTERVAL: Duration = Duration::from_millis(500);
const HC_TIMEOUT: Duration = Duration::from_millis(300);
const UNHEALTHY_THRESHOLD: u32 = 2;
const HC_HOSTS: [(&str, u16); 3] = [("a", 9001), ("b", 9002), ("c", 9003)];
/// Before the failure: keep-alive connections, each with one request per host (round
/// robin on the worker that accepted it).
const BASELINE_CONNS: usize = 16;
/// After the failure: one request per connection.
const AFTER_REQUESTS: usize = 60;

/// Cluster `hc`: three upstreams (a, b, c), HTTP-health-checked every 0.5 s by worker 0
/// (unhealthy after 2 failed checks, healthy after 1 passed one), no retry policy on
/// the route. Once all three are healthy, [`BASELINE_CONNS`] keep-alive connections
/// with three requests each put b in rotation on both workers: U sees connections to b
/// that outlive any health check (each check is a fresh connection, at most 0.3 s)
/// from both workers' port blocks, so worker 1, which runs no check, has sent b
/// requests. b is killed (SIGKILL); once worker 0 logs `health check failed:
/// unhealthy (2/3 healthy)`, at once, [`AFTER_REQUESTS`] requests, each on a new
/// connection (`Connection: close`), are all answered 200 by a or c: without retries a
/// request sent to the dead b would come back 503, so neither worker picked it. At
/// exit, both workers accepted more than [`BASELINE_CONNS`] downstream connections (so
/// each served some of the requests after the failure), and the stats agree: no 5xx,
/// no connect failure, no panic mode, 2 of 3 healthy.
#[test]
fn both_workers_stop_sending_to_an_endpoint_worker_0_found_unhealthy() {
    if !two_worker_preconditions() {
        return;
    }
    let _serial = one_at_a_time();
    let taps = Taps::new();
    let interval = secs(HC_INTERVAL);
    let extra = format!(
        r#"    health_checks:
    - timeout: {timeout}
      interval: {interval}
      no_traffic_interval: {interval}
      unhealthy_threshold: {UNHEALTHY_THRESHOLD}
      healthy_threshold: 1
      http_health_check:
        path: /healthz
"#,
        timeout = secs(HC_TIMEOUT),
    );
    let ports: Vec<u16> = HC_HOSTS.iter().map(|&(_, port)| port).collect();
    let routes = r#"              - match: { prefix: "/hc/" }
                route: { cluster: hc, timeout: 5s }
"#;
    let z = taps.start_zerohop(routes, &cluster("hc", &ports, &extra));
    // After the taps: the upstreams listen on U's address. Until they do, the checks
    // fail, and the endpoints stay unhealthy, as they start (as in Envoy).
    let mut servers: Vec<LoggedProcess> = HC_HOSTS
        .iter()
        .map(|&(name, port)| taps.upstream(name, port, &[]))
        .collect();
    let started = Instant::now();
    let bound = HC_INTERVAL + HC_TIMEOUT + SLACK + Duration::from_secs(5);
    wait_log(&z, 0, &["cluster hc: ", "(3/3 healthy)"], bound);
    // Each endpoint's first verdict is logged, failures before the upstreams listened
    // included: only what comes after all three are healthy counts.
    let all_healthy = z.log().len();
    eprintln!(
        "3/3 healthy {:?} after the upstreams started",
        started.elapsed()
    );

    // Baseline: b takes requests on both workers.
    for i in 1..=BASELINE_CONNS {
        let answers = curl_paths(&taps, &z, &paths(&format!("/hc/base-{i}-"), 3), &[]);
        let mut names: Vec<&str> = answers.iter().map(|a| a.name.as_str()).collect();
        names.sort_unstable();
        assert!(
            answers.iter().all(|a| a.code == 200) && names == ["a", "b", "c"],
            "baseline connection {i}: want 200 from a, b and c (round robin over three \
             healthy hosts): {answers:#?}\nzerohop log:\n{}",
            z.log()
        );
    }
    let (b, b_port) = (1, HC_HOSTS[1].1);
    let first = taps.upstream_conns(b_port);
    thread::sleep(HC_INTERVAL + HC_TIMEOUT);
    let second = taps.upstream_conns(b_port);
    let pooled: Vec<u16> = first
        .iter()
        .copied()
        .filter(|p| second.contains(p))
        .collect();
    let mut by_worker = [0; 2];
    for &p in &pooled {
        by_worker[worker_of(p)] += 1;
    }
    eprintln!("before the kill, pooled connections to b per worker: {by_worker:?} ({pooled:?})");
    assert!(
        by_worker.iter().all(|&n| n > 0),
        "want a pooled connection to b from each worker's block {BLOCKS:?} (both workers \
         sent b requests, over {BASELINE_CONNS} connections spread by flow hash): \
         {first:?} then {second:?}"
    );

    // b dies; worker 0's checks find out.
    let b_tag = endpoint_tag("hc", b_port);
    let mark = z.log().len();
    servers[b].kill();
    let killed = Instant::now();
    let bound = HC_INTERVAL * (UNHEALTHY_THRESHOLD + 1) + HC_TIMEOUT + SLACK;
    let (line, seen_at) = wait_log(
        &z,
        mark,
        &[&b_tag, "health check failed: unhealthy"],
        bound + Duration::from_secs(5),
    );
    eprintln!("b unhealthy {:?} after the kill: {line}", seen_at - killed);
    assert!(line.contains("(2/3 healthy)"), "{line}");

    // At once, from many connections on both workers.
    let after = curl_paths(
        &taps,
        &z,
        &paths("/hc/after-", AFTER_REQUESTS),
        &["-H", "Connection: close"],
    );
    let took = seen_at.elapsed();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &after {
        *names.entry(a.name.as_str()).or_default() += 1;
    }
    eprintln!("{AFTER_REQUESTS} requests after the verdict in {took:?}: {names:?}");
    let bad: Vec<String> = after
        .iter()
        .enumerate()
        .filter(|(_, a)| a.code != 200 || !(a.name == "a" || a.name == "c"))
        .map(|(i, a)| format!("/hc/after-{}: {} {:?}", i + 1, a.code, a.body))
        .collect();
    assert!(
        bad.is_empty(),
        "after worker 0 marked b unhealthy, every request should get a 200 from a or c \
         (no retries: a request sent to the dead b fails): {} did not:\n{}\n\
         zerohop log:\n{}",
        bad.len(),
        bad.join("\n"),
        z.log()
    );
    assert!(
        names.get("a").is_some_and(|&n| n > 0) && names.get("c").is_some_and(|&n| n > 0),
        "a and c should share the requests: {names:?}"
    );

    let log = stop(z);
    let opens = passive_opens(&log);
    eprintln!("downstream connections per worker: {opens:?}");
    let conns = (BASELINE_CONNS + AFTER_REQUESTS) as u64;
    assert_eq!(
        opens.iter().sum::<u64>(),
        conns,
        "want {BASELINE_CONNS} + {AFTER_REQUESTS} downstream connections (one per request \
         after the failure: `Connection: close`)\nlog:\n{log}"
    );
    for (w, &n) in opens.iter().enumerate() {
        assert!(
            n > BASELINE_CONNS as u64,
            "worker {w} accepted {n} connections, at most the {BASELINE_CONNS} of the \
             baseline: it may have served none of the requests after the failure (the \
             flow hash spreads {AFTER_REQUESTS} connections over both)\nlog:\n{log}"
        );
    }
    // Once healthy, only b failed its checks.
    for &(name, port) in &[HC_HOSTS[0], HC_HOSTS[2]] {
        let tag = endpoint_tag("hc", port);
        assert!(
            !log[all_healthy..]
                .lines()
                .any(|l| l.contains(&tag) && l.contains("health check failed")),
            "{name} failed its health checks, only b should have\n{log}"
        );
    }
    let requests = (3 * BASELINE_CONNS + AFTER_REQUESTS) as u64;
    assert_stat_eq(&log, "cluster.hc.upstream_rq_total", requests);
    assert_stat_eq(&log, "cluster.hc.upstream_rq_2xx", requests);
    assert_stat_eq(&log, "cluster.hc.upstream_rq_5xx", 0);
    assert_stat_eq(&log, "cluster.hc.upstream_cx_connect_fail", 0);
    assert_stat_eq(&log, "cluster.hc.upstream_cx_none_healthy", 0);
    assert_stat_eq(&log, "cluster.hc.lb_healthy_panic", 0);
    assert_stat_eq(&log, "cluster.hc.membership_healthy", 2);
    assert_stat_eq(&log, "http.ingress.downstream_rq_2xx", requests);
    assert_stat_eq(&log, "http.ingress.downstream_rq_5xx", 0);
    assert_stat_eq(&log, "http.ingress.downstream_cx_total", conns);
    let failures = stat0(&log, "cluster.hc.health_check.failure");
    assert!(
        failures >= u64::from(UNHEALTHY_THRESHOLD),
        "cluster.hc.health_check.failure={failures}\n{log}"
    );
}

// ---- Shared circuit breaker ----

/// An overflow is refused at once: no waiting on the upstream.
const IMMEDIATE: Duration = Duration::from_millis(200);
/// Requests drawn until one lands on the other worker than the first (each lands on
/// either with probability 1/2: a miss all along has probability 2^-16).
const MAX_DRAWS: usize = 16;

/// GET `path` from C, expecting the circuit breaker's answer: a 503 with
/// `x-envoy-overloaded: true`, at once.
fn assert_overflow(taps: &Taps, z: &Zerohop, path: &str) {
    let out = taps.ns_c.run(
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
            &url(path),
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
    eprintln!("{path}: overflow 503 in {time:?}");
    assert!(
        time.is_some_and(|t| t < IMMEDIATE),
        "{path}: the overflow 503 took {time:?}, want under {IMMEDIATE:?}"
    );
}

/// Cluster `limited`: one upstream that reads requests and never answers, behind
/// `max_requests: 2` (route timeout 10 s). Request 1 is sent; the upstream connection
/// that carries it tells (by its port block) which worker took it. Further requests,
/// each from a new connection, are drawn until one lands on the other worker (one that
/// lands on the same worker is given up, and must free its place: the next is not
/// refused). So one request is in flight on each worker: each worker alone holds 1 of
/// the limit of 2, and only a count shared by both refuses the third request, which
/// gets an immediate 503 `x-envoy-overloaded: true` (whichever worker takes it). The
/// two waiting clients give up: then a new request reaches the upstream instead of
/// being refused. At exit: one `upstream_rq_pending_overflow`, nothing left active.
#[test]
fn a_max_requests_limit_holds_across_workers() {
    if !two_worker_preconditions() {
        return;
    }
    let _serial = one_at_a_time();
    let taps = Taps::new();
    let stall_port = 9004;
    let routes = r#"              - match: { prefix: "/limited/" }
                route: { cluster: limited, timeout: 10s }
"#;
    let breakers =
        "    circuit_breakers: { thresholds: [{ priority: DEFAULT, max_requests: 2 }] }\n";
    let z = taps.start_zerohop(routes, &cluster("limited", &[stall_port], breakers));
    let stall = taps.upstream("stall", stall_port, &["--stall"]);
    let upstream_conns = || taps.upstream_conns(stall_port);

    let mut first = waiting_request(&taps, "/limited/first");
    wait_reached(&stall, &mut first, "/limited/first", &z);
    let conns = upstream_conns();
    assert_eq!(
        conns.len(),
        1,
        "one upstream connection, for /limited/first: {conns:?}"
    );
    let (first_port, first_worker) = (conns[0], worker_of(conns[0]));

    // Draw a second request until it lands on the other worker.
    let mut second = None;
    let mut draws = Vec::new();
    for i in 1..=MAX_DRAWS {
        let path = format!("/limited/second-{i}");
        let mut client = waiting_request(&taps, &path);
        wait_reached(&stall, &mut client, &path, &z);
        let conns = upstream_conns();
        let new: Vec<u16> = conns.iter().copied().filter(|&p| p != first_port).collect();
        assert!(
            new.len() == 1 && conns.contains(&first_port),
            "want /limited/first's upstream connection (port {first_port}) and one for \
             {path}: {conns:?}"
        );
        let worker = worker_of(new[0]);
        draws.push(worker);
        if worker != first_worker {
            second = Some(client);
            break;
        }
        // Same worker: give up on it. The request must end, with its upstream
        // connection (an HTTP/1.1 request cannot be cancelled otherwise), and free its
        // place before the next draw.
        drop(client);
        wait_until("the given-up request's connections closed", || {
            let (n, text) = taps.client_conns();
            let up = upstream_conns();
            if n == 1 && up == [first_port] {
                Ok(())
            } else {
                Err(format!("{n} client connections:\n{text}upstream: {up:?}"))
            }
        });
    }
    eprintln!(
        "/limited/first on worker {first_worker}; second requests drawn on workers {draws:?}"
    );
    let Some(mut second) = second else {
        panic!(
            "{MAX_DRAWS} requests all landed on worker {first_worker}, like the first: \
             the flow hash should spread connections over both workers\nzerohop log:\n{}",
            z.log()
        );
    };

    // One request in flight on each worker: the limit of 2 is reached only in all.
    first.assert_running();
    second.assert_running();
    assert_overflow(&taps, &z, "/limited/third");
    first.assert_running();
    second.assert_running();
    assert_eq!(
        seen(&stall, "/limited/third"),
        0,
        "the refused request reached the upstream:\n{}",
        stall.output()
    );

    // Both clients give up: their places are free again.
    drop(first);
    drop(second);
    wait_until("the given-up requests' connections closed", || {
        let (n, text) = taps.client_conns();
        let up = upstream_conns();
        if n == 0 && up.is_empty() {
            Ok(())
        } else {
            Err(format!("{n} client connections:\n{text}upstream: {up:?}"))
        }
    });
    let mut again = waiting_request(&taps, "/limited/again");
    wait_reached(&stall, &mut again, "/limited/again", &z);
    drop(again);
    wait_until("/limited/again's connections closed", || {
        let (n, text) = taps.client_conns();
        let up = upstream_conns();
        if n == 0 && up.is_empty() {
            Ok(())
        } else {
            Err(format!("{n} client connections:\n{text}upstream: {up:?}"))
        }
    });

    let log = stop(z);
    let opens = passive_opens(&log);
    eprintln!("downstream connections per worker: {opens:?}");
    assert!(
        opens.iter().all(|&n| n > 0),
        "the requests on two workers: want passive_opens > 0 on both, got {opens:?}\n{log}"
    );
    assert_stat_eq(&log, "cluster.limited.upstream_rq_pending_overflow", 1);
    assert_stat_eq(&log, "cluster.limited.upstream_rq_active", 0);
    assert_stat_eq(&log, "cluster.limited.upstream_rq_pending_active", 0);
    assert_stat_eq(&log, "http.ingress.downstream_cx_active", 0);
    // Every request that was not refused reached the upstream: the first, each draw of
    // the second, and the last.
    assert_stat_eq(
        &log,
        "cluster.limited.upstream_rq_total",
        (1 + draws.len() + 1) as u64,
    );
    assert_stat_eq(&log, "http.ingress.downstream_rq_5xx", 1);
}
