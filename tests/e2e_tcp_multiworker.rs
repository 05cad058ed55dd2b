//! End-to-end: zerohop as an L4 proxy (`tcp_proxy`) with two workers, on multi-queue
//! `net_tap` ports, so that frames of one connection can reach either worker and the
//! cross-worker handoff of the TCP stack (`Handoff::mesh`, `Stack::owner_of`) carries
//! them to the worker that owns the connection.
//!
//! ```text
//!  ns C 10.0.0.2/24 ── tap ── [port down 10.0.0.1/24] zerohop [port up 10.0.1.1/24] ── tap ── ns U 10.0.1.2/24
//!  default via 10.0.0.1   (net_tap, 2 queue pairs; workers on CPUs 0 and 1;      default via 10.0.1.1
//!                          listener l4 0.0.0.0:8000 → cluster backend)           servers on 9001
//! ```
//!
//! zerohop runs in the root namespace (`--no-pci`; `hugepages: auto` makes it add
//! `--in-memory`, so nothing clashes with another DPDK process), creates both taps with
//! two queues each (worker i reads and writes queue i), and the test moves each tap into
//! its namespace. DPDK's tap PMD gives the kernel side of a tap the port's own MAC
//! address; zerohop (rightly) refuses to learn a neighbour that claims its own MAC, so
//! the test gives each kernel side a MAC of its own before configuring it.
//!
//! # Which worker gets what
//!
//! The kernel picks the tap queue of each frame it sends to zerohop: a flow's first
//! frame by its flow hash, later ones by tun's flow table, which records the queue that
//! last *wrote* a frame of the flow. A downstream connection therefore lands on a
//! worker by hash (the listener runs on both), and that worker opens the upstream
//! connection from a local port of its own block of `ephemeral_ports` (the range is cut
//! into one contiguous block per worker, so the workers never pick the same 4-tuple).
//! Its SYN goes out on its queue, but the upstream's SYN-ACK is produced while zerohop's
//! write of the SYN is still being processed (tun hands the frame to the kernel's stack
//! at once and records the flow only afterwards), so it is steered by hash: for about
//! half of the upstream connections it reaches the other worker, which knows no such
//! connection, finds the owner from the destination port's block and hands the frame
//! over (TCP counter `handed_off` of the receiving worker). Later frames follow the flow
//! table to the owner: about one handoff per connection that landed wrong (measured:
//! about 500 for 1,000 connections). Without the handoff those connections would be
//! answered with RST.
//!
//! Each test checks, from what zerohop logs at exit, that the workers accepted
//! connections (`worker N tcp: passive_opens=…`), that frames were handed off where
//! enough connections make it certain that the kernel sent some to the wrong worker,
//! that no handoff was dropped
//! (`tcp-input reason=handoff-queue-full`), and the Envoy stats (`stat NAME: VALUE`,
//! summed over workers). Each zerohop here busy-polls both CPUs, so the tests of this
//! binary run one at a time (a mutex), and the kernel and python compete with the
//! workers for CPU: timeouts are generous but bounded. Needs root and CPUs 0 and 1; run
//! with `cargo test --test e2e_tcp_multiworker`.

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::thread;
use std::time::{Duration, Instant};

/// The workers' CPUs.
const CORES: [usize; 2] = [0, 1];
/// zerohop's address on port `down`: the clients' gateway and the listener's address.
const PROXY_DOWN: &str = "10.0.0.1";
const CLIENT: &str = "10.0.0.2";
/// zerohop's address on port `up`: the source of its upstream connections.
const PROXY_UP: &str = "10.0.1.1";
const UPSTREAM: &str = "10.0.1.2";
const LISTENER_PORT: u16 = 8000;
const SERVER_PORT: u16 = 9001;
/// MACs for the kernel sides of the taps (locally administered, unicast): DPDK's tap PMD
/// gives them the port's own MAC.
const CLIENT_MAC: &str = "02:7a:68:00:00:01";
const UPSTREAM_MAC: &str = "02:7a:68:00:00:02";
const MIB: u64 = 1 << 20;

/// How long a test server may take to print `ready`.
const SERVER_READY: Duration = Duration::from_secs(15);
/// How long to wait after the last client finished before stopping zerohop, so that
/// the close handshakes and TIME-WAIT (`time_wait_ms`, 2 s by default) are over and
/// no connection is still counted active.
const SETTLE: Duration = Duration::from_secs(5);

/// Namespaces C (clients) and U (upstream servers), and the names of the taps zerohop
/// creates for them. The taps belong to the zerohop process (they go when it exits), so
/// [`TapProxy::start_zerohop`] returns zerohop as a separate owner: declare it after
/// the topology, so that it stops before the namespaces are deleted.
struct TapProxy {
    ns_c: Netns,
    ns_u: Netns,
    tap_down: String,
    tap_up: String,
}

impl TapProxy {
    fn new() -> TapProxy {
        let id = unique_id();
        TapProxy {
            ns_c: Netns::new(&format!("zw{id}c")),
            ns_u: Netns::new(&format!("zw{id}u")),
            tap_down: format!("zw{id}td"),
            tap_up: format!("zw{id}tu"),
        }
    }

    /// zerohop's config: two workers on [`CORES`], ports `down` and `up` on net_tap
    /// (two queue pairs each: one per worker), `dataplane_extra` (keys of `dataplane`,
    /// indented two spaces, e.g. a `tcp:` section) and listener `l4` on port 8000 with a
    /// `tcp_proxy` to cluster `backend`, whose one endpoint is `UPSTREAM:9001`.
    fn config(&self, dataplane_extra: &str) -> String {
        let (down, up) = (&self.tap_down, &self.tap_up);
        tcp_proxy_config(
            &CORES,
            [
                &format!("net_tap0,iface={down}"),
                &format!("net_tap1,iface={up}"),
            ],
            [&format!("{PROXY_DOWN}/24"), &format!("{PROXY_UP}/24")],
            LISTENER_PORT,
            UPSTREAM,
            &[SERVER_PORT],
            dataplane_extra,
        )
    }

    /// Start zerohop with [`TapProxy::config`] and wait until ready; check that it runs
    /// two workers and gave both ports two queue pairs; move the taps into C and U
    /// (each with a MAC of its own, see the module documentation), address them, route
    /// through zerohop, and check that zerohop answers a ping on each side.
    fn start_zerohop(&self, dataplane_extra: &str) -> Zerohop {
        let mut zerohop = Zerohop::start(&self.config(dataplane_extra));
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
        // zerohop's own addresses answer (IP TTL 64): ARP works both ways on both taps.
        assert_ping(&zerohop, &self.ns_c, PROXY_DOWN, Some(64));
        assert_ping(&zerohop, &self.ns_u, PROXY_UP, Some(64));
        zerohop
    }

    /// Start `server.py MODE --addr UPSTREAM --port 9001 args…` in U; wait for `ready`.
    fn server(&self, mode: &str, args: &[&str]) -> LoggedProcess {
        let port = SERVER_PORT.to_string();
        let args = [&["--port", port.as_str()], args].concat();
        tcp_server_py(&self.ns_u, mode, UPSTREAM, &args, SERVER_READY)
    }

    /// Run `client.py COMMAND --host PROXY_DOWN --port 8000 args…` in C to completion,
    /// bounded by `timeout`; return its `result` line.
    fn client(
        &self,
        zerohop: &Zerohop,
        command: &str,
        args: &[&str],
        timeout: Duration,
    ) -> ClientResult {
        let argv = tcp_client_argv(command, PROXY_DOWN, LISTENER_PORT, args);
        run_tcp_client(&self.ns_c, zerohop, &argv, timeout)
    }
}

/// Worker `w`'s TCP counter `key`; panic with the log if it was not logged.
fn counter(tcp: &BTreeMap<usize, HashMap<String, u64>>, w: usize, key: &str, log: &str) -> u64 {
    tcp.get(&w)
        .and_then(|c| c.get(key))
        .copied()
        .unwrap_or_else(|| panic!("no `worker {w} tcp: … {key}=N …` in the exit log:\n{log}"))
}

/// Stop zerohop (SIGTERM) and check what every test here wants of the exit: code 0,
/// `mbufs_in_use=0`, packets both ways on both ports, both workers logged their TCP
/// counters, each opened exactly one upstream connection per downstream one it
/// accepted, none ran out of ports or flow-table entries, no handoff was dropped, and
/// `conns` connections in all (Envoy stats `downstream_cx_total` and
/// `upstream_cx_total`), no connect failure, none still active. With `spread` (enough
/// connections that the flow hash puts some on each worker) also: both workers received
/// packets and accepted connections. Return the log and the TCP counters.
fn stop_and_check(
    zerohop: Zerohop,
    conns: u64,
    spread: bool,
) -> (String, BTreeMap<usize, HashMap<String, u64>>) {
    let (status, log) = zerohop.terminate();
    assert_clean_exit_after_traffic(status, &log, &["down", "up"]);
    let loops = worker_counters(&log);
    for w in 0..CORES.len() {
        let packets = loops.get(&w).and_then(|c| c.get("packets")).copied();
        assert!(
            !spread || packets.is_some_and(|p| p > 0),
            "worker {w} received no packets ({packets:?}): the taps' flow hash should \
             spread the connections over both queues\nlog:\n{log}"
        );
    }
    let tcp = tcp_counters(&log);
    assert_eq!(
        tcp.keys().copied().collect::<Vec<_>>(),
        vec![0, 1],
        "want `worker 0 tcp: …` and `worker 1 tcp: …` at exit\nlog:\n{log}"
    );
    let mut summary = String::new();
    for w in 0..CORES.len() {
        let c = |key| counter(&tcp, w, key, &log);
        summary += &format!(
            "worker {w}: passive_opens={} active_opens={} handed_off={} \
             retransmitted_segments={} rst_no_connection={}; ",
            c("passive_opens"),
            c("active_opens"),
            c("handed_off"),
            c("retransmitted_segments"),
            c("rst_no_connection")
        );
        assert!(
            !spread || c("passive_opens") > 0,
            "worker {w} accepted no connection: the flow hash should spread {conns} \
             downstream connections over both workers\nlog:\n{log}"
        );
        assert_eq!(
            c("active_opens"),
            c("passive_opens"),
            "worker {w} should open one upstream connection per downstream one it \
             accepted (the proxy is per worker)\nlog:\n{log}"
        );
        for key in ["ports_exhausted", "table_full"] {
            assert_eq!(c(key), 0, "worker {w}: want {key}=0\nlog:\n{log}");
        }
    }
    eprintln!("tcp per worker: {summary}");
    assert_eq!(
        total(&tcp, "passive_opens", &log),
        conns,
        "the workers' passive_opens should add up to the {conns} connections\nlog:\n{log}"
    );
    assert_eq!(
        error_count(&log, "tcp-input", "handoff-queue-full").unwrap_or(0),
        0,
        "no segment should be dropped on its way to the owning worker\nlog:\n{log}"
    );
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", conns);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_total", conns);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_connect_fail", 0);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_active", 0);
    assert_stat_eq(&log, "cluster.backend.upstream_cx_active", 0);
    (log, tcp)
}

/// The sum of `key` over both workers.
fn total(tcp: &BTreeMap<usize, HashMap<String, u64>>, key: &str, log: &str) -> u64 {
    (0..CORES.len()).map(|w| counter(tcp, w, key, log)).sum()
}

/// 1,000 connections open at once through zerohop with two workers, each echoing a
/// distinct 1 KiB payload: all verified, the upstream held all 1,000 at once (so the
/// workers' upstream 4-tuples were all distinct), both workers accepted connections,
/// both handed frames over to the other (the SYN-ACKs the tap steered to the wrong
/// worker), none was dropped on the way, and the stats count 1,000 connections.
#[test]
fn thousand_concurrent_echo_two_workers_hand_off() {
    if !two_worker_preconditions() {
        return;
    }
    const CONNS: u64 = 1000;
    const SIZE: u64 = 1024;
    let _serial = one_at_a_time();
    let topo = TapProxy::new();
    let zerohop = topo.start_zerohop("");
    let server = topo.server("echo", &[]);

    let conns = CONNS.to_string();
    let size = SIZE.to_string();
    let r = topo.client(
        &zerohop,
        "echo",
        &["--conns", &conns, "--size", &size, "--timeout", "60"],
        Duration::from_secs(300),
    );
    let peak = echo_peak(&server.output());
    eprintln!(
        "{CONNS} concurrent echo connections, two workers: {} opened, {} verified in {} s; \
         upstream peak {peak}",
        r.get("opened"),
        r.get("verified"),
        r.get("secs")
    );
    assert_eq!(
        r.get("verified"),
        conns,
        "every connection should echo its payload ({})\nclient:\n{}zerohop log:\n{}",
        r.get("first_error"),
        r.stdout,
        zerohop.log()
    );
    assert!(
        peak >= CONNS,
        "the upstream should have held {CONNS} connections at once (distinct 4-tuples), \
         peak {peak}\nserver:\n{}",
        server.output()
    );

    thread::sleep(SETTLE);
    let (log, tcp) = stop_and_check(zerohop, CONNS, true);
    for w in 0..CORES.len() {
        assert!(
            counter(&tcp, w, "handed_off", &log) > 0,
            "worker {w} handed no segment to the other: the tap steers each upstream \
             SYN-ACK by flow hash, so about half of the {CONNS} should reach the worker \
             that did not open the connection and be handed to its owner\nlog:\n{log}"
        );
    }
    assert_stat_eq(&log, "tcp.l4.downstream_cx_rx_bytes_total", CONNS * SIZE);
    assert_stat_eq(&log, "tcp.l4.downstream_cx_tx_bytes_total", CONNS * SIZE);
}

/// 200 sequential connections (the upstream sends one line naming the peer it saw,
/// then closes): every line arrives, every upstream connection came from zerohop's
/// address and a port of the configured `ephemeral_ports`, and the ports fall into the
/// two workers' blocks exactly as often as each worker opened upstream connections
/// (range 40000-40999: worker 0 takes 40000-40499, worker 1 40500-40999), which is
/// what the receiving worker relies on to find a segment's owner. Some SYN-ACKs are
/// handed over.
#[test]
fn ephemeral_ports_come_from_per_worker_blocks() {
    if !two_worker_preconditions() {
        return;
    }
    const CONNS: u64 = 200;
    const BLOCKS: [RangeInclusive<u16>; 2] = [40000..=40499, 40500..=40999];
    let _serial = one_at_a_time();
    let topo = TapProxy::new();
    let zerohop = topo.start_zerohop("  tcp:\n    ephemeral_ports: 40000-40999\n");
    let server = topo.server("ident", &[]);

    let count = CONNS.to_string();
    let started = Instant::now();
    let r = topo.client(
        &zerohop,
        "ident",
        &["--count", &count, "--timeout", "10"],
        Duration::from_secs(300),
    );
    eprintln!(
        "{CONNS} sequential connections, two workers: {} ok in {:.1} s",
        r.get("ok"),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        r.get("ok"),
        count,
        "every connection should get the upstream's line\nclient:\n{}server:\n{}\
         zerohop log:\n{}",
        r.stdout,
        server.output(),
        zerohop.log()
    );
    let mut per_block = [0u64; 2];
    for line in r.stdout.lines().filter_map(|l| l.strip_prefix("reply ")) {
        // "port=9001 peer=10.0.1.1:40123"
        let peer = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("peer="))
            .unwrap_or_else(|| panic!("reply without peer=: {line}"));
        let (ip, port) = peer
            .split_once(':')
            .unwrap_or_else(|| panic!("peer without port: {line}"));
        assert_eq!(
            ip, PROXY_UP,
            "the upstream should see zerohop's address: {line}"
        );
        let port: u16 = port.parse().expect("peer port");
        let block = BLOCKS
            .iter()
            .position(|b| b.contains(&port))
            .unwrap_or_else(|| {
                panic!("upstream connection from port {port}, outside 40000-40999: {line}")
            });
        per_block[block] += 1;
    }
    eprintln!("upstream local ports per worker block: {per_block:?}");

    thread::sleep(SETTLE);
    let (log, tcp) = stop_and_check(zerohop, CONNS, true);
    for (w, &n) in per_block.iter().enumerate() {
        assert_eq!(
            counter(&tcp, w, "active_opens", &log),
            n,
            "worker {w} should draw every upstream port from its block {:?}: it opened \
             {} upstream connections, the upstream saw {n} from that block\nlog:\n{log}",
            BLOCKS[w],
            counter(&tcp, w, "active_opens", &log)
        );
    }
    assert!(
        total(&tcp, "handed_off", &log) > 0,
        "no segment was handed over: the tap steers each upstream SYN-ACK by flow hash, \
         so some of {CONNS} should reach the worker that did not open the connection\n\
         log:\n{log}"
    );
}

/// Four transfers of 64 MiB at once from C to U through zerohop with two workers (each
/// lands on a worker by flow hash), each answered with the upstream's count, SHA-256
/// and 64 KiB: all arrive intact both ways.
///
/// The client half-closes first, so the reply (87 bytes + 64 KiB, more than the 64 KiB
/// send buffer of zerohop's downstream connection) crosses towards a client that both
/// CPUs' busy workers may keep from reading; the upstream's FIN then puts zerohop's
/// upstream connection into TIME-WAIT while the last bytes may still wait in its
/// receive buffer, and every one of them must still reach the client before its FIN.
#[test]
fn bulk_transfers_two_workers_arrive_intact() {
    if !two_worker_preconditions() {
        return;
    }
    const TRANSFERS: u64 = 4;
    const BYTES: u64 = 64 * MIB;
    const REPLY: u64 = 64 * 1024;
    let _serial = one_at_a_time();
    let topo = TapProxy::new();
    let zerohop = topo.start_zerohop("");
    let server = topo.server("sink", &["--reply-bytes", &REPLY.to_string()]);

    let (bytes, reply) = (BYTES.to_string(), REPLY.to_string());
    let args = [
        "--bytes",
        &bytes,
        "--reply-bytes",
        &reply,
        "--timeout",
        "60",
    ];
    let started = Instant::now();
    let results: Vec<ClientResult> = thread::scope(|s| {
        let handles: Vec<_> = (0..TRANSFERS)
            .map(|_| s.spawn(|| topo.client(&zerohop, "send", &args, Duration::from_secs(500))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let mut reply_total = 0;
    for (i, r) in results.iter().enumerate() {
        let why = || {
            format!(
                "transfer {i}\nclient:\n{}server:\n{}zerohop log:\n{}",
                r.stdout,
                server.output(),
                zerohop.log()
            )
        };
        eprintln!(
            "transfer {i}: {} bytes in {} s, {} Mbit/s",
            r.get("sent"),
            r.get("secs"),
            r.get("mbps")
        );
        r.assert_send_intact(&bytes, why);
        assert_eq!(
            r.get("tail_bytes"),
            reply,
            "reply from upstream cut short\n{}",
            why()
        );
        reply_total +=
            format!("bytes={BYTES} sha256={}\n", r.get("sent_sha256")).len() as u64 + REPLY;
    }
    eprintln!(
        "{TRANSFERS} x 64 MiB through zerohop (two workers): {secs:.1} s, {:.0} Mbit/s in all",
        (TRANSFERS * BYTES * 8) as f64 / secs / 1e6
    );

    thread::sleep(SETTLE);
    let (log, _tcp) = stop_and_check(zerohop, TRANSFERS, false);
    assert_stat_eq(
        &log,
        "tcp.l4.downstream_cx_rx_bytes_total",
        TRANSFERS * BYTES,
    );
    assert_stat_eq(&log, "tcp.l4.downstream_cx_tx_bytes_total", reply_total);
}
