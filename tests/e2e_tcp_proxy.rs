//! End-to-end: zerohop as an L4 proxy (Envoy `tcp_proxy`) between a client namespace
//! and an upstream namespace, on its own userspace TCP stack.
//!
//! ```text
//!  ns C 10.0.0.2/24 ── veth ── [port down 10.0.0.1/24] zerohop [port up 10.0.1.1/24] ── veth ── ns U 10.0.1.2/24
//!  default via 10.0.0.1        (ns P, net_af_packet on the P ends;              default via 10.0.1.1
//!                               listener l4 0.0.0.0:8000 → cluster backend)     servers on 9001…
//! ```
//!
//! Every test builds its own namespaces (unique names: tests and test binaries may run
//! in parallel), starts zerohop in P with a `static_resources` listener on port 8000
//! whose `tcp_proxy` sends every connection to cluster `backend` (endpoints in U), runs
//! a server from `tests/fixtures/tcp/server.py` in U and a client from
//! `tests/fixtures/tcp/client.py` in C (python3, standard library only; each prints one
//! `result key=value …` line), then stops zerohop with SIGTERM and checks a clean exit
//! (code 0, `mbufs_in_use=0`, both ports counted) and the Envoy stats zerohop logs at
//! exit as `stat NAME: VALUE` (summed over workers):
//!
//! - `tcp.l4.downstream_cx_total`, `tcp.l4.downstream_cx_rx_bytes_total`,
//!   `tcp.l4.downstream_cx_tx_bytes_total`
//! - `cluster.backend.upstream_cx_total`, `cluster.backend.upstream_cx_active`,
//!   `cluster.backend.upstream_cx_connect_fail`, `cluster.backend.upstream_cx_destroy_remote`
//! - `cluster.backend.endpoint.10.0.1.2:PORT.cx_total`
//!
//! A stat expected to be zero may also be absent (zerohop may log only non-zero ones).
//! Servers see the proxy's address (10.0.1.1) as the peer: connections are proxied, not
//! routed. The heavy tests (1 GiB, 2,000 connections, slow reader) run one at a time.
//! Needs root; run with `cargo test --test e2e_tcp_proxy`.

mod common;

use common::*;
use std::collections::HashMap;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

const LISTENER_PORT: u16 = 8000;
const SERVER_PORT: u16 = 9001;
/// A port with no listener in zerohop's config.
const CLOSED_PORT: u16 = 8999;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// How long a test server may take to print `ready`.
const SERVER_READY: Duration = Duration::from_secs(15);

impl ProxyTopology {
    /// zerohop's config: ports `down` and `up`, `dataplane_extra` (keys of `dataplane`,
    /// indented two spaces, e.g. a `tcp:` section) and listener `l4` on port 8000 with a
    /// `tcp_proxy` to cluster `backend`: round robin over `UPSTREAM:port` for each of
    /// `endpoint_ports`.
    fn config(&self, endpoint_ports: &[u16], dataplane_extra: &str) -> String {
        let (down, up) = (self.veth_c.proxy_if(), self.veth_u.proxy_if());
        tcp_proxy_config(
            &[worker_core()],
            [
                &format!("net_af_packet0,iface={down}"),
                &format!("net_af_packet1,iface={up}"),
            ],
            [&format!("{PROXY_DOWN}/24"), &format!("{PROXY_UP}/24")],
            LISTENER_PORT,
            UPSTREAM,
            endpoint_ports,
            dataplane_extra,
        )
    }

    /// Start zerohop in P with [`ProxyTopology::config`]; wait until ready.
    fn start_zerohop(&self, endpoint_ports: &[u16], dataplane_extra: &str) -> Zerohop {
        let mut zerohop = Zerohop::start_in(
            Some(&self.ns_p),
            &self.config(endpoint_ports, dataplane_extra),
        );
        zerohop.wait_ready(READY_TIMEOUT);
        zerohop
    }

    /// Start `server.py MODE --addr UPSTREAM args…` in U; wait for its `ready`.
    fn server(&self, mode: &str, args: &[&str]) -> LoggedProcess {
        tcp_server_py(&self.ns_u, mode, UPSTREAM, args, SERVER_READY)
    }

    /// `client.py COMMAND --host PROXY_DOWN --port PORT args…` in C, with its arguments.
    fn client_argv(command: &str, port: u16, args: &[&str]) -> Vec<String> {
        tcp_client_argv(command, PROXY_DOWN, port, args)
    }

    /// Run `client.py COMMAND` (see [`ProxyTopology::client_argv`]) in C to completion,
    /// bounded by `timeout`; return its `result` line.
    fn client(
        &self,
        zerohop: &Zerohop,
        command: &str,
        port: u16,
        args: &[&str],
        timeout: Duration,
    ) -> ClientResult {
        run_tcp_client(
            &self.ns_c,
            zerohop,
            &Self::client_argv(command, port, args),
            timeout,
        )
    }
}

/// Panic unless the exit log has `stat NAME: V` with V >= `min`.
fn assert_stat_at_least(log: &str, name: &str, min: u64) {
    let got = stat(log, name);
    assert!(
        got.is_some_and(|v| v >= min),
        "want `stat {name}: N` with N >= {min} in the exit log, got {got:?}\nlog:\n{log}"
    );
}

/// Stop zerohop (SIGTERM) and check the clean exit: code 0, `mbufs_in_use=0`, and
/// packets both ways on each of `ports`. Return the log.
fn stop(zerohop: Zerohop, ports: &[&str]) -> String {
    let (status, log): (ExitStatus, String) = zerohop.terminate();
    assert_clean_exit_after_traffic(status, &log, ports);
    log
}

/// What a failed check shows: the client's output, the server's and zerohop's log.
fn context(r: &ClientResult, server: &LoggedProcess, zerohop: &Zerohop) -> String {
    format!(
        "client:\n{}server:\n{}zerohop log:\n{}",
        r.stdout,
        server.output(),
        zerohop.log()
    )
}

/// The reply line server.py sink sends before its tail: `bytes=N sha256=HEX\n`.
fn sink_reply_len(bytes: u64, sha256: &str) -> u64 {
    format!("bytes={bytes} sha256={sha256}\n").len() as u64
}

/// 1 GiB of pseudo-random data from C to U through zerohop arrives intact (SHA-256 on
/// both ends), and the upstream's reply (its digest and 64 KiB) comes back intact.
#[test]
fn one_gib_arrives_intact() {
    if !require_root() {
        return;
    }
    // Heavy: loads both CPUs (zerohop busy-polls one) for seconds.
    let _heavy = one_at_a_time();
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(&[SERVER_PORT], "");
    let server = topo.server("sink", &["--port", "9001", "--reply-bytes", "65536"]);

    let bytes = GIB.to_string();
    let r = topo.client(
        &zerohop,
        "send",
        LISTENER_PORT,
        &[
            "--bytes",
            &bytes,
            "--reply-bytes",
            "65536",
            "--timeout",
            "30",
        ],
        Duration::from_secs(300),
    );
    let why = || context(&r, &server, &zerohop);
    r.assert_send_intact(&bytes, why);
    assert!(
        server.output().contains(&format!("peer={PROXY_UP}:")),
        "the upstream should see zerohop's address {PROXY_UP} as the peer\n{}",
        why()
    );
    eprintln!(
        "1 GiB through zerohop: {} s, {} Mbit/s (client connect to reply)",
        r.get("secs"),
        r.get("mbps")
    );

    let log = stop(zerohop, &["down", "up"]);
    let reply_len = sink_reply_len(GIB, r.get("sent_sha256")) + 65536;
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", 1);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_total", 1);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_rx_bytes_total", GIB);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_tx_bytes_total", reply_len);
}

/// 2,000 connections open at once through zerohop, each echoing a distinct 1 KiB
/// payload: all verified, and the upstream held 2,000 at once.
#[test]
fn two_thousand_concurrent_echo() {
    if !require_root() {
        return;
    }
    const CONNS: u64 = 2000;
    // Heavy: loads both CPUs (zerohop busy-polls one) for seconds.
    let _heavy = one_at_a_time();
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(&[SERVER_PORT], "");
    let server = topo.server("echo", &["--port", "9001"]);

    let conns = CONNS.to_string();
    let r = topo.client(
        &zerohop,
        "echo",
        LISTENER_PORT,
        &["--conns", &conns, "--size", "1024", "--timeout", "30"],
        Duration::from_secs(240),
    );
    let peak = echo_peak(&server.output());
    eprintln!(
        "{CONNS} concurrent echo connections: {} opened, {} verified in {} s; upstream peak {peak}",
        r.get("opened"),
        r.get("verified"),
        r.get("secs")
    );
    assert_eq!(
        r.get("verified"),
        conns,
        "every connection should echo its payload ({}) \nclient:\n{}zerohop log:\n{}",
        r.get("first_error"),
        r.stdout,
        zerohop.log()
    );
    assert!(
        peak >= CONNS,
        "the upstream should have held {CONNS} connections at once, peak {peak}\nserver:\n{}",
        server.output()
    );

    let log = stop(zerohop, &["down", "up"]);
    assert_stat_at_least(&log, "tcp.l4.downstream_cx_total", CONNS);
    assert_stat_at_least(&log, "cluster.backend.upstream_cx_total", CONNS);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_connect_fail", 0);
}

/// A cluster of three endpoints with round robin and one worker: 30 sequential
/// connections go to each endpoint exactly 10 times.
#[test]
fn round_robin_spreads_over_three_upstreams() {
    if !require_root() {
        return;
    }
    const PORTS: [u16; 3] = [9001, 9002, 9003];
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(&PORTS, "");
    let server = topo.server(
        "ident",
        &["--port", "9001", "--port", "9002", "--port", "9003"],
    );

    let r = topo.client(
        &zerohop,
        "ident",
        LISTENER_PORT,
        &["--count", "30", "--timeout", "5"],
        Duration::from_secs(120),
    );
    assert_eq!(
        r.get("ok"),
        "30",
        "every connection should get the server's line\nclient:\n{}zerohop log:\n{}",
        r.stdout,
        zerohop.log()
    );
    let mut per_port: HashMap<u16, u32> = HashMap::new();
    for line in r.stdout.lines().filter_map(|l| l.strip_prefix("reply ")) {
        // "port=9001 peer=10.0.1.1:41234"
        let port = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("port=")?.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("reply without port=: {line}"));
        assert!(
            line.contains(&format!("peer={PROXY_UP}:")),
            "the upstream should see zerohop's address {PROXY_UP} as the peer: {line}"
        );
        *per_port.entry(port).or_insert(0) += 1;
    }
    eprintln!("connections per upstream port: {per_port:?}");
    for port in PORTS {
        assert_eq!(
            per_port.get(&port).copied().unwrap_or(0),
            10,
            "round robin over {PORTS:?} should give port {port} 10 of 30: {per_port:?}\n\
             server:\n{}",
            server.output()
        );
    }

    // Let the last connection's close handshakes finish before the stats are taken.
    thread::sleep(Duration::from_millis(500));
    let log = stop(zerohop, &["down", "up"]);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", 30);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_total", 30);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_active", 0);
    for port in PORTS {
        assert_stat_eq(
            &log,
            &format!("cluster.backend.endpoint.{UPSTREAM}:{port}.cx_total"),
            10,
        );
    }
}

/// The only endpoint refuses (nothing listens: U's kernel answers the SYN with RST):
/// the client's connection is reset within 1 s, and the cluster counts a connect failure.
#[test]
fn refused_upstream_resets_client_within_one_second() {
    if !require_root() {
        return;
    }
    const REFUSING_PORT: u16 = 9009;
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(&[REFUSING_PORT], "");
    // Nothing listens there: checked from inside U (local delivery, not through zerohop).
    let local = topo.ns_u.run(
        "python3",
        &[
            "-c",
            "import socket, sys\n\
             try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n    \
             print('open')\n\
             except ConnectionRefusedError:\n    print('refused')\n",
            UPSTREAM,
            &REFUSING_PORT.to_string(),
        ],
        Duration::from_secs(10),
    );
    assert_eq!(local.stdout_str().trim(), "refused", "{}", local.stderr);

    let r = topo.client(
        &zerohop,
        "probe",
        LISTENER_PORT,
        &["--send", "x", "--timeout", "3"],
        Duration::from_secs(30),
    );
    let secs = r.num("secs");
    eprintln!(
        "refused upstream: client saw `{}` {secs} s after connecting",
        r.get("outcome")
    );
    assert!(
        ["reset", "refused"].contains(&r.get("outcome")),
        "the client should see its connection reset (ECONNRESET) or refused, got `{}`\n\
         client:\n{}zerohop log:\n{}",
        r.get("outcome"),
        r.stdout,
        zerohop.log()
    );
    assert!(
        secs < 1.0,
        "the reset should come within 1 s of connecting, took {secs} s\nclient:\n{}",
        r.stdout
    );

    let log = stop(zerohop, &["down", "up"]);
    assert_stat_at_least(&log, "cluster.backend.upstream_cx_connect_fail", 1);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_active", 0);
}

/// The upstream is SIGKILLed in the middle of a stream (it holds unread bytes from the
/// client, so its kernel resets the connection): zerohop closes the downstream
/// connection (EOF or reset) within a few seconds and counts a remote upstream close.
#[test]
fn upstream_killed_mid_stream_closes_downstream() {
    if !require_root() {
        return;
    }
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(&[SERVER_PORT], "");
    let mut server = topo.server(
        "stream",
        &["--port", "9001", "--rate", "1000000", "--chunk", "16384"],
    );

    let argv = ProxyTopology::client_argv(
        "watch",
        LISTENER_PORT,
        &["--timeout", "30", "--send-every", "0.1"],
    );
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut client = topo.ns_c.spawn_logged("python3", &argv, "client.py watch");
    server.wait_for("connected", Duration::from_secs(10));
    client.wait_for("first-data", Duration::from_secs(10));
    // Let the stream run (and client bytes pile up unread in the server) for a moment.
    thread::sleep(Duration::from_millis(500));
    client.assert_running();

    // Before kill(): it returns once the server is reaped, its sockets already reset.
    let killed = Instant::now();
    server.kill();
    let closed = client.wait_for("closed ", Duration::from_secs(5));
    let took = killed.elapsed();
    eprintln!("upstream killed: client `{closed}` {took:?} later");
    assert!(
        closed.contains("outcome=eof") || closed.contains("outcome=reset"),
        "the client should see EOF or a reset once the upstream dies, got `{closed}`\n\
         zerohop log:\n{}",
        zerohop.log()
    );

    let log = stop(zerohop, &["down", "up"]);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", 1);
    assert_stat_at_least(&log, "cluster.backend.upstream_cx_destroy_remote", 1);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_active", 0);
}

/// Half-close both ways: the client sends 1 MiB and shuts down its sending side; the
/// upstream, having read to EOF (so the client's FIN crossed), answers with its count,
/// digest and 256 KiB, then closes; the client reads all of it, then EOF (the upstream's
/// FIN crossed back).
#[test]
fn half_close_propagates() {
    if !require_root() {
        return;
    }
    const SENT: u64 = MIB + 17;
    const TAIL: u64 = 256 * 1024;
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(&[SERVER_PORT], "");
    let server = topo.server(
        "sink",
        &["--port", "9001", "--reply-bytes", &TAIL.to_string()],
    );

    let r = topo.client(
        &zerohop,
        "send",
        LISTENER_PORT,
        &[
            "--bytes",
            &SENT.to_string(),
            "--reply-bytes",
            &TAIL.to_string(),
            "--timeout",
            "10",
        ],
        Duration::from_secs(60),
    );
    let why = || context(&r, &server, &zerohop);
    assert_eq!(r.get("error"), "<missing>", "exchange failed\n{}", why());
    assert_eq!(
        r.get("server_bytes"),
        SENT.to_string(),
        "upstream should read to EOF after the client's half-close\n{}",
        why()
    );
    assert_eq!(r.get("server_sha256"), r.get("sent_sha256"), "{}", why());
    assert_eq!(
        r.get("tail_bytes"),
        TAIL.to_string(),
        "the reply after the half-close should arrive whole\n{}",
        why()
    );
    assert_eq!(r.get("tail_ok"), "1", "reply corrupted\n{}", why());
    assert_eq!(r.get("eof"), "1", "{}", why());

    let log = stop(zerohop, &["down", "up"]);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", 1);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_rx_bytes_total", SENT);
    assert_stat_eq(
        &log,
        "tcp.l4.downstream_cx_tx_bytes_total",
        sink_reply_len(SENT, r.get("sent_sha256")) + TAIL,
    );
}

/// The upstream sends 200 MiB as fast as it can while the client reads 64 KiB per
/// 100 ms for 10 s: flow control holds the upstream back, so zerohop's resident memory
/// grows by less than 32 MiB (its buffers are 64 KiB per direction and connection;
/// mbufs live in hugepages). Then the client drains the rest: all 200 MiB arrive intact.
#[test]
fn slow_client_keeps_memory_bounded() {
    if !require_root() {
        return;
    }
    const TOTAL: u64 = 200 * MIB;
    const MAX_GROWTH_KIB: u64 = 32 * 1024;
    // Heavy: loads both CPUs (zerohop busy-polls one) for seconds.
    let _heavy = one_at_a_time();
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(
        &[SERVER_PORT],
        "  tcp:\n    rx_buffer: 65536\n    tx_buffer: 65536\n",
    );
    let server = topo.server(
        "stream",
        &[
            "--port",
            "9001",
            "--bytes",
            &TOTAL.to_string(),
            "--chunk",
            "262144",
        ],
    );
    let pid = zerohop.pid();
    let before = vm_rss_kib(pid).expect("zerohop's VmRSS");

    let argv = ProxyTopology::client_argv(
        "slow",
        LISTENER_PORT,
        &[
            "--chunk",
            "65536",
            "--interval",
            "0.1",
            "--slow-secs",
            "10",
            "--timeout",
            "30",
        ],
    );
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let out = thread::scope(|s| {
        let client = s.spawn(|| topo.ns_c.run("python3", &argv, Duration::from_secs(180)));
        while !client.is_finished() {
            if let Some(rss) = vm_rss_kib(pid) {
                samples.push((started.elapsed().as_secs_f64(), rss));
            }
            thread::sleep(Duration::from_millis(100));
        }
        client.join().expect("client thread")
    });
    let max = samples.iter().map(|&(_, rss)| rss).max().unwrap_or(before);
    let growth = max.saturating_sub(before);
    let series: Vec<String> = samples
        .iter()
        .step_by(10)
        .map(|(t, rss)| format!("{t:.0}s:{rss}"))
        .collect();
    eprintln!(
        "zerohop VmRSS: before {before} KiB, max {max} KiB (+{growth} KiB) over {} samples; \
         KiB per second: {}",
        samples.len(),
        series.join(" ")
    );

    let r = ClientResult::parse(&out).unwrap_or_else(|| {
        panic!(
            "client.py slow failed ({})\nstdout:\n{}stderr:\n{}\nserver:\n{}zerohop log:\n{}",
            describe(out.status),
            out.stdout_str(),
            out.stderr,
            server.output(),
            zerohop.log()
        )
    });
    eprintln!(
        "slow client: {} bytes in the slow phase, {} in all, {} s",
        r.get("slow_read"),
        r.get("read"),
        r.get("secs")
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "zerohop's VmRSS grew by {growth} KiB (from {before} to {max}) while a slow client \
         held back a fast upstream: want < {MAX_GROWTH_KIB} KiB\nzerohop log:\n{}",
        zerohop.log()
    );
    assert_eq!(
        r.get("read"),
        TOTAL.to_string(),
        "the client should receive all of the stream\nclient:\n{}server:\n{}zerohop log:\n{}",
        r.stdout,
        server.output(),
        zerohop.log()
    );
    assert_eq!(r.get("ok"), "1", "stream corrupted\nclient:\n{}", r.stdout);
    assert!(
        r.num("slow_read") < (TOTAL / 4) as f64,
        "the client should have been slow (read {} in the slow phase)",
        r.get("slow_read")
    );

    let log = stop(zerohop, &["down", "up"]);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_tx_bytes_total", TOTAL);
}

/// A port without a listener: zerohop answers the SYN with RST, so the client's connect
/// is refused at once, and no listener counts a connection.
#[test]
fn closed_port_gets_reset() {
    if !require_root() {
        return;
    }
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(&[SERVER_PORT], "");
    let r = topo.client(
        &zerohop,
        "probe",
        CLOSED_PORT,
        &["--timeout", "3"],
        Duration::from_secs(30),
    );
    let secs = r.num("secs");
    eprintln!(
        "closed port {CLOSED_PORT}: client saw `{}` after {secs} s",
        r.get("outcome")
    );
    assert_eq!(
        r.get("outcome"),
        "refused",
        "connect to {PROXY_DOWN}:{CLOSED_PORT} should be refused (RST)\nclient:\n{}\
         zerohop log:\n{}",
        r.stdout,
        zerohop.log()
    );
    assert!(secs < 1.0, "refused after {secs} s, want < 1 s");

    // Only port `down` saw traffic (ARP and the SYN/RST).
    let log = stop(zerohop, &["down"]);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", 0);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_total", 0);
}

/// A client aborts a proxied connection and its RST is lost (a tc filter in C drops
/// it), so zerohop still holds the connection open; the client then connects again
/// from the same port, as kernels do at once after a RST. zerohop answers that SYN
/// with a challenge ACK, the client's RST in reply ends the stale connection, and the
/// client's next SYN (a second later) is proxied: it must not hang in SYN-SENT.
#[test]
fn a_lost_reset_does_not_block_the_port() {
    if !require_root() {
        return;
    }
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(&[SERVER_PORT], "");
    let server = topo.server("echo", &["--port", "9001"]);
    let r = topo.client(
        &zerohop,
        "lost-rst",
        LISTENER_PORT,
        &["--dev", topo.veth_c.ns_if(), "--timeout", "10"],
        Duration::from_secs(60),
    );
    eprintln!(
        "reconnect from port {} after a lost RST: {} in {} s",
        r.get("port"),
        r.get("outcome"),
        r.get("reconnect_secs")
    );
    assert_eq!(r.get("outcome"), "ok", "{}", context(&r, &server, &zerohop));
    assert!(
        r.stdout.contains(" 1 pkt "),
        "the tc filter should have taken the one RST:\n{}",
        r.stdout
    );
    let log = stop(zerohop, &["down", "up"]);
    assert!(tcp_counter(&log, "syn_challenged") >= 1, "{log}");
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", 2);
}

/// DPDK's af_packet driver reports no `imissed`; zerohop reads the kernel's drops on
/// the driver's rings itself. With zerohop stopped (SIGSTOP) and a 16-frame ring, 100
/// pings overflow it: at least 50 drops counted in `imissed`, and zerohop answers
/// again once continued.
#[test]
fn kernel_ring_drops_count_as_imissed() {
    if !require_root() {
        return;
    }
    let topo = ProxyTopology::new();
    let down = topo.veth_c.proxy_if();
    let config = topo.config(&[SERVER_PORT], "").replace(
        &format!("iface={down}\""),
        &format!("iface={down},framecnt=16\""),
    );
    assert!(config.contains("framecnt=16"), "config:\n{config}");
    let mut zerohop = Zerohop::start_in(Some(&topo.ns_p), &config);
    zerohop.wait_ready(READY_TIMEOUT);
    let ping = |count: &str, interval: &str| {
        topo.ns_c.run(
            "ping",
            &[
                "-n", "-q", "-c", count, "-i", interval, "-W", "1", PROXY_DOWN,
            ],
            Duration::from_secs(30),
        )
    };
    let warm = ping("1", "0.2");
    assert!(warm.success(), "{}{}", warm.stdout_str(), zerohop.log());
    let pid = zerohop.pid().to_string();
    must("kill", &["-STOP", &pid]);
    let lost = ping("100", "0.002");
    must("kill", &["-CONT", &pid]);
    assert!(
        !lost.success(),
        "no answer while stopped: {}",
        lost.stdout_str()
    );
    let after = ping("3", "0.2");
    assert!(after.success(), "{}{}", after.stdout_str(), zerohop.log());
    let log = stop(zerohop, &["down"]);
    let missed = port_counters(&log, "down")["imissed"];
    eprintln!("16-frame ring, 100 pings to a stopped zerohop: imissed={missed}");
    assert!(missed >= 50, "imissed={missed}, want >= 50\n{log}");
}

/// Jumbo frames on af_packet ports: with `mtu: 9000` zerohop sizes the driver's ring
/// slots and sets its interfaces' MTU itself (DPDK 22.11 caps this driver's MTU at
/// 1500). A 9,000-byte ping is answered whole, and 64 MiB through the proxy arrive
/// intact in frames of about 9,000 bytes.
#[test]
fn jumbo_frames_on_af_packet() {
    if !require_root() {
        return;
    }
    let _heavy = one_at_a_time();
    let topo = ProxyTopology::new();
    // The far ends only: zerohop must raise its own ends, or their veth peers drop
    // every frame over 1,500 bytes on the way in.
    topo.ns_c
        .must("ip", &["link", "set", topo.veth_c.ns_if(), "mtu", "9000"]);
    topo.ns_u
        .must("ip", &["link", "set", topo.veth_u.ns_if(), "mtu", "9000"]);
    let config = topo.config(&[SERVER_PORT], "");
    let mut jumbo = String::new();
    for line in config.lines() {
        jumbo.push_str(line);
        jumbo.push('\n');
        if line.trim_start().starts_with("address: 10.0.") && line.ends_with("/24") {
            jumbo.push_str("      mtu: 9000\n");
        }
    }
    assert_eq!(jumbo.matches("mtu: 9000").count(), 2, "config:\n{jumbo}");
    let mut zerohop = Zerohop::start_in(Some(&topo.ns_p), &jumbo);
    zerohop.wait_ready(READY_TIMEOUT);
    assert!(
        zerohop.log().contains("framesz=12288,blocksz=12288"),
        "zerohop should size the af_packet ring slots for MTU 9000\n{}",
        zerohop.log()
    );

    // A 9,000-byte IP packet each way, not fragmented (ping counts its 8,980 bytes
    // of ICMP).
    let ping = topo.ns_c.run(
        "ping",
        &[
            "-n", "-c", "3", "-W", "2", "-M", "do", "-s", "8972", PROXY_DOWN,
        ],
        Duration::from_secs(20),
    );
    assert!(
        ping.success() && ping.stdout_str().contains("8980 bytes from"),
        "9,000-byte echo through zerohop's af_packet port failed:\n{}{}\nzerohop log:\n{}",
        ping.stdout_str(),
        ping.stderr,
        zerohop.log()
    );

    let server = topo.server("sink", &["--port", "9001", "--reply-bytes", "0"]);
    let bytes = (64 * MIB).to_string();
    let r = topo.client(
        &zerohop,
        "send",
        LISTENER_PORT,
        &["--bytes", &bytes, "--reply-bytes", "0", "--timeout", "30"],
        Duration::from_secs(120),
    );
    r.assert_send_intact(&bytes, || context(&r, &server, &zerohop));
    let log = stop(zerohop, &["down", "up"]);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_rx_bytes_total", 64 * MIB);
    // Frames in from the client and out to the upstream: mostly full 9,000-byte ones
    // (the rest are ACKs, ARP and the handshakes).
    for (port, dir) in [("down", "rx"), ("up", "tx")] {
        let c = port_counters(&log, port);
        let (bytes, packets) = (c[&format!("{dir}_bytes")], c[&format!("{dir}_packets")]);
        let mean = bytes / packets.max(1);
        eprintln!("port {port} {dir}: {packets} frames, {bytes} bytes, {mean} bytes each");
        assert!(
            packets < 64 * MIB / 4000,
            "port {port}: {packets} {dir} frames for 64 MiB: jumbo frames were not used\n{log}"
        );
    }
}

/// Worker 0's TCP counter `name` in the exit log; panic with the log if absent.
fn tcp_counter(log: &str, name: &str) -> u64 {
    tcp_counters(log)
        .get(&0)
        .and_then(|c| c.get(name).copied())
        .unwrap_or_else(|| panic!("no `worker 0 tcp: … {name}=N` in the exit log:\n{log}"))
}

/// 256 KiB buffers scale the window (by 4), whose right edge can then move back by up
/// to 3 bytes as a slow reader's buffer fills, and an upstream sending flat out may
/// overshoot it (how often depends on timing: none to a few per run here; the
/// two-stack test in tcpstack/tests/stack.rs makes it happen). 64 MiB arrive intact
/// and in order, and every segment cut at the edge has its bytes held and fed back.
#[test]
fn scaled_windows_hold_every_byte_they_cut() {
    if !require_root() {
        return;
    }
    const TOTAL: u64 = 64 * MIB;
    let _heavy = one_at_a_time();
    let topo = ProxyTopology::new();
    let zerohop = topo.start_zerohop(
        &[SERVER_PORT],
        "  tcp:\n    rx_buffer: 262144\n    tx_buffer: 262144\n",
    );
    // Scaled windows get a ring that holds their bursts (4 MiB of 2 KiB slots).
    assert_eq!(
        zerohop.log().matches(",framecnt=2048`").count(),
        2,
        "both af_packet ports should get a 2,048-frame ring:\n{}",
        zerohop.log()
    );
    // The client's kernel keeps a small window, so zerohop's buffers fill.
    topo.ns_c
        .must("sysctl", &["-qw", "net.ipv4.tcp_rmem=4096 16384 65536"]);
    // Odd-sized sends and reads keep the window's free space moving through every
    // remainder of 4: the sender's segments end at its odd chunks; 3 s of slow reads,
    // then the rest at full speed.
    let server = topo.server(
        "stream",
        &[
            "--port",
            "9001",
            "--bytes",
            &TOTAL.to_string(),
            "--chunk",
            "65537",
        ],
    );
    let r = topo.client(
        &zerohop,
        "slow",
        LISTENER_PORT,
        &[
            "--chunk",
            "4001",
            "--interval",
            "0.01",
            "--slow-secs",
            "3",
            "--timeout",
            "30",
        ],
        Duration::from_secs(120),
    );
    let why = || context(&r, &server, &zerohop);
    assert_eq!(r.num("read") as u64, TOTAL, "every byte\n{}", why());
    assert_eq!(r.get("ok"), "1", "the stream arrived in order\n{}", why());
    let log = stop(zerohop, &["down", "up"]);
    let (cut, held) = (
        tcp_counter(&log, "beyond_window"),
        tcp_counter(&log, "beyond_window_held"),
    );
    eprintln!("64 MiB to a slow reader, 256 KiB buffers: {cut} segments cut at the window's edge, {held} held");
    assert_eq!(held, cut, "every cut should be held and fed back\n{log}");
    assert_stat_eq(&log, "tcp.l4.downstream_cx_tx_bytes_total", TOTAL);
}
