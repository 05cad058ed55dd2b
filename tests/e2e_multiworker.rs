//! End-to-end: zerohop with two workers (`cores: [0, 1]`). Worker i owns rx/tx queue
//! pair i of every port, so every port is configured with two queue pairs
//! (`qpairs=2` for net_af_packet; net_tap creates its queues at configure).
//!
//! ```text
//!  ns A ── veth ── [port left|a] zerohop (2 workers) [port right|b] ── veth ── ns B
//!                  (ns P, net_af_packet,qpairs=2 on the P ends; or net_tap in the root ns)
//! ```
//!
//! The kernel spreads received frames over a port's queues by flow hash (af_packet:
//! PACKET_FANOUT_HASH over the two sockets of a port; tap: multi-queue tun's flow
//! steering), so the tests open many TCP connections with distinct source ports and
//! check that both workers carried packets, that every transfer arrived intact, and that
//! zerohop stopped cleanly (exit 0, `mbufs_in_use=0`).
//!
//! The router test starts cold (zerohop knows no neighbour) with a burst of parallel
//! connections, so both workers hold packets for the same unresolved next hop while the
//! ARP reply reaches only one of them (af_packet hashes every ARP frame of a port to the
//! same queue): it passes only if workers share learned neighbours, and checks that no
//! held packet timed out (`ip4-arp reason=resolution-timeout`).
//!
//! Each test busy-polls both CPUs, so the tests of this binary run one at a time (a
//! mutex), and curl and python compete with the workers for CPU: timeouts are generous
//! but bounded. Needs root and CPUs 0 and 1; run with
//! `cargo test --test e2e_multiworker`.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::thread;
use std::time::Duration;

/// The workers' CPUs.
const CORES: [usize; 2] = [0, 1];
/// Parallel TCP connections per burst: enough that the flow hash puts some on each
/// queue (all on one of two queues: probability 2^-23).
const FLOWS: u16 = 24;
/// Bytes per HTTP transfer: 256 KiB, so TCP sends full-size segments both ways.
const PAYLOAD_LEN: usize = 256 * 1024;
/// curl's `--max-time` per transfer: generous, as the workers busy-poll both CPUs.
const CURL_MAX_TIME_S: u32 = 60;
const HTTP_PORT: u16 = 8080;

/// A zerohop config with two workers on [`CORES`], `ports` as (name, device, address),
/// and `extra` (YAML keys of `dataplane`, indented) appended.
fn two_worker_config(ports: &[(&str, String, Option<&str>)], extra: &str) -> String {
    let cores = CORES.map(|c| c.to_string()).join(", ");
    let mut yaml = format!(
        "dataplane:\n  cores: [{cores}]\n  hugepages: auto\n  eal_args: [\"--no-pci\"]\n  ports:\n"
    );
    for (name, device, address) in ports {
        let _ = writeln!(yaml, "    - name: {name}\n      device: \"{device}\"");
        if let Some(address) = address {
            let _ = writeln!(yaml, "      address: {address}");
        }
    }
    yaml.push_str(extra);
    yaml
}

/// Start zerohop (in `ns`, or the root namespace) with `config`, wait until ready, and
/// check that it runs two workers and gave every port in `ports` two queue pairs.
fn start_two_workers(ns: Option<&Netns>, config: &str, ports: &[&str]) -> Zerohop {
    let mut zerohop = Zerohop::start_in(ns, config);
    zerohop.wait_ready(READY_TIMEOUT);
    let log = zerohop.log();
    assert!(
        log.contains("2 worker(s) on CPU(s) [0, 1]"),
        "want `zerohop ready: … 2 worker(s) on CPU(s) [0, 1]`\nlog:\n{log}"
    );
    for port in ports {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("port {port}: ")) && l.contains("2 queue pair(s)")),
            "want port {port} configured with `2 queue pair(s)`\nlog:\n{log}"
        );
    }
    zerohop
}

/// Namespaces A and B, each joined by a veth pair to namespace P, where zerohop runs with
/// net_af_packet ports on the P ends. zerohop gets a namespace of its own because DPDK
/// 22.11's af_packet PMD picks its PACKET_FANOUT group id as `(getpid() ^ ifindex) &
/// 0xffff`, per namespace (see tests/e2e_xconnect.rs). Fields drop in order: the veths
/// go first, then the namespaces.
struct VethTopology {
    veth_a: Veth,
    veth_b: Veth,
    ns_p: Netns,
    ns_a: Netns,
    ns_b: Netns,
}

impl VethTopology {
    /// A gets `a_cidr`, B gets `b_cidr`.
    fn new(a_cidr: &str, b_cidr: &str) -> VethTopology {
        let id = unique_id();
        let ns_a = Netns::new(&format!("zm{id}a"));
        let ns_b = Netns::new(&format!("zm{id}b"));
        let ns_p = Netns::new(&format!("zm{id}p"));
        let veth_a = Veth::new(
            &ns_a,
            &format!("zm{id}a0"),
            Some(&ns_p),
            &format!("zm{id}a1"),
            a_cidr,
        );
        let veth_b = Veth::new(
            &ns_b,
            &format!("zm{id}b0"),
            Some(&ns_p),
            &format!("zm{id}b1"),
            b_cidr,
        );
        VethTopology {
            veth_a,
            veth_b,
            ns_p,
            ns_a,
            ns_b,
        }
    }

    /// Panic if any of `dsts` answers a ping from A while zerohop is not running (the
    /// test would prove nothing); then forget the failed ARP resolutions in A and B, so
    /// the first packets through zerohop start afresh.
    fn assert_unreachable_from_a(&self, dsts: &[&str]) {
        for dst in dsts {
            let ping = self.ns_a.run(
                "ping",
                &["-n", "-c", "1", "-W", "1", dst],
                Duration::from_secs(10),
            );
            assert!(
                !ping.success(),
                "{dst} reachable from {} before zerohop started: the test proves nothing",
                self.ns_a.name()
            );
        }
        for ns in [&self.ns_a, &self.ns_b] {
            must("ip", &["-n", ns.name(), "neigh", "flush", "all"]);
        }
    }

    /// `net_af_packetN,iface=…,qpairs=2` on the P end of veth A (`side` 'a') or B.
    fn device(&self, side: char) -> String {
        let (n, veth) = match side {
            'a' => (0, &self.veth_a),
            _ => (1, &self.veth_b),
        };
        format!("net_af_packet{n},iface={},qpairs=2", veth.proxy_if())
    }
}

/// Local ports for a burst of [`FLOWS`] connections, starting at `first`.
fn flow_ports(first: u16) -> Vec<u16> {
    (first..first + FLOWS).collect()
}

/// Panic (listing every failed transfer, with zerohop's log) unless every output in
/// `gets` (from [`parallel_curl`] over `ports`) succeeded with body `payload`.
fn assert_all_transfers(
    zerohop: &Zerohop,
    what: &str,
    ports: &[u16],
    gets: &[CmdOutput],
    payload: &[u8],
) {
    let mut failures = String::new();
    for (port, got) in ports.iter().zip(gets) {
        if !got.success() {
            let _ = writeln!(
                failures,
                "  source port {port}: curl {} {}",
                describe(got.status),
                got.stderr.trim()
            );
        } else if got.stdout != payload {
            let _ = writeln!(
                failures,
                "  source port {port}: body differs ({} bytes, want {})",
                got.stdout.len(),
                payload.len()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} parallel HTTP GETs through zerohop (2 workers) failed:\n{failures}\
         zerohop log:\n{}",
        failures.lines().count(),
        gets.len(),
        zerohop.log()
    );
}

/// Panic unless both workers logged their loop counters at exit, on CPUs 0 and 1, each
/// with `packets > 0`, and together received exactly the frames the ports counted.
/// Return the packets per worker.
fn assert_both_workers_carried_traffic(log: &str, ports: &[&str]) -> BTreeMap<usize, u64> {
    let workers = worker_counters(log);
    assert_eq!(
        workers.keys().copied().collect::<Vec<_>>(),
        vec![0, 1],
        "want `worker 0 (cpu …): …` and `worker 1 (cpu …): …` lines at exit\nlog:\n{log}"
    );
    let mut packets = BTreeMap::new();
    for (w, counters) in &workers {
        assert_eq!(
            counters.get("cpu").copied(),
            Some(CORES[*w] as u64),
            "worker {w} should run on CPU {}\nlog:\n{log}",
            CORES[*w]
        );
        let p = counters.get("packets").copied();
        assert!(
            p.is_some_and(|p| p > 0),
            "worker {w} received no packets (packets={p:?}): the kernel's flow hash should \
             have spread {FLOWS} connections over both queues of each port, and worker {w} \
             owns queue {w}\nlog:\n{log}"
        );
        packets.insert(*w, p.unwrap_or(0));
    }
    let by_workers: u64 = packets.values().sum();
    let by_ports: u64 = ports
        .iter()
        .map(|p| {
            port_counters(log, p)
                .get("rx_packets")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(
        by_workers, by_ports,
        "the workers' packets should add up to the ports' rx_packets\nlog:\n{log}"
    );
    eprintln!("packets per worker: {packets:?}");
    packets
}

/// L2 cross-connect over net_af_packet with two queue pairs per port: pings both ways
/// and [`FLOWS`] parallel HTTP downloads (while more pings run) all succeed, both workers
/// carry traffic, and zerohop exits cleanly.
#[test]
fn xconnect_two_workers_af_packet_spreads_flows_over_both() {
    if !two_worker_preconditions() {
        return;
    }
    let _serial = one_at_a_time();
    let (a_host, b_host) = ("10.203.1.1", "10.203.1.2");
    let topo = VethTopology::new(&format!("{a_host}/24"), &format!("{b_host}/24"));
    topo.assert_unreachable_from_a(&[b_host]);
    let zerohop = start_two_workers(
        Some(&topo.ns_p),
        &two_worker_config(
            &[
                ("left", topo.device('a'), None),
                ("right", topo.device('b'), None),
            ],
            "  xconnect: [[left, right]]\n",
        ),
        &["left", "right"],
    );
    assert_ping(&zerohop, &topo.ns_a, b_host, None);
    assert_ping(&zerohop, &topo.ns_b, a_host, None);

    let payload = test_payload(PAYLOAD_LEN);
    let _server = HttpServer::start(&topo.ns_b, b_host, HTTP_PORT, &[("blob.bin", &payload)]);
    let url = format!("http://{b_host}:{HTTP_PORT}/blob.bin");
    let ports = flow_ports(41000);
    let (gets, pings) = thread::scope(|s| {
        let pings = [(&topo.ns_a, b_host), (&topo.ns_b, a_host)]
            .map(|(ns, dst)| s.spawn(move || (ns, dst, ns.ping(dst, 10))));
        let gets = parallel_curl(&topo.ns_a, &url, &ports, CURL_MAX_TIME_S);
        (gets, pings.map(|h| h.join().expect("ping thread panicked")))
    });
    assert_all_transfers(&zerohop, "A -> B", &ports, &gets, &payload);
    for (ns, dst, ping) in pings {
        assert!(
            ping.success() && ping.stdout_str().contains(" 0% packet loss"),
            "ping {} -> {dst} during the downloads failed ({}):\n{}\nzerohop log:\n{}",
            ns.name(),
            describe(ping.status),
            ping.stdout_str(),
            zerohop.log()
        );
    }

    let (status, log) = zerohop.terminate();
    assert_clean_exit_after_traffic(status, &log, &["left", "right"]);
    assert_both_workers_carried_traffic(&log, &["left", "right"]);
}

/// L3 routing with two workers: a cold start with parallel connections (both workers
/// wait for the same next hops while the ARP replies reach one of them), pings between
/// the hosts and to zerohop's own addresses, parallel HTTP GETs both ways; no held packet
/// timed out, both workers carried traffic, clean exit.
#[test]
fn router_two_workers_share_neighbours_and_route_parallel_flows() {
    if !two_worker_preconditions() {
        return;
    }
    let _serial = one_at_a_time();
    const A_HOST: &str = "10.202.1.1";
    const A_GATEWAY: &str = "10.202.1.254";
    const B_HOST: &str = "10.202.2.1";
    const B_GATEWAY: &str = "10.202.2.254";
    let topo = VethTopology::new(&format!("{A_HOST}/24"), &format!("{B_HOST}/24"));
    topo.ns_a.add_default_route(A_GATEWAY);
    topo.ns_b.add_default_route(B_GATEWAY);
    topo.assert_unreachable_from_a(&[A_GATEWAY, B_HOST]);

    let payload = test_payload(PAYLOAD_LEN);
    let files: [(&str, &[u8]); 1] = [("blob.bin", &payload)];
    // Both servers answer locally (HttpServer::start checks) before zerohop runs.
    let _server_b = HttpServer::start(&topo.ns_b, B_HOST, HTTP_PORT, &files);
    let _server_a = HttpServer::start(&topo.ns_a, A_HOST, HTTP_PORT, &files);
    let zerohop = start_two_workers(
        Some(&topo.ns_p),
        &two_worker_config(
            &[
                ("a", topo.device('a'), Some("10.202.1.254/24")),
                ("b", topo.device('b'), Some("10.202.2.254/24")),
            ],
            "",
        ),
        &["a", "b"],
    );

    // Cold: the first packets through zerohop are these SYNs, spread over both workers.
    let ports = flow_ports(42000);
    let gets = parallel_curl(
        &topo.ns_a,
        &format!("http://{B_HOST}:{HTTP_PORT}/blob.bin"),
        &ports,
        CURL_MAX_TIME_S,
    );
    assert_all_transfers(&zerohop, "A -> B (cold start)", &ports, &gets, &payload);

    assert_ping(&zerohop, &topo.ns_a, B_HOST, Some(63));
    assert_ping(&zerohop, &topo.ns_b, A_HOST, Some(63));
    // zerohop's own addresses, the far one included (answered locally, not forwarded).
    assert_ping(&zerohop, &topo.ns_a, A_GATEWAY, Some(64));
    assert_ping(&zerohop, &topo.ns_b, B_GATEWAY, Some(64));
    assert_ping(&zerohop, &topo.ns_a, B_GATEWAY, Some(64));

    let ports = flow_ports(43000);
    let gets = parallel_curl(
        &topo.ns_b,
        &format!("http://{A_HOST}:{HTTP_PORT}/blob.bin"),
        &ports,
        CURL_MAX_TIME_S,
    );
    assert_all_transfers(&zerohop, "B -> A", &ports, &gets, &payload);

    let (status, log) = zerohop.terminate();
    assert_clean_exit_after_traffic(status, &log, &["a", "b"]);
    assert_both_workers_carried_traffic(&log, &["a", "b"]);
    let mut summary = String::new();
    for (node, reason) in [
        ("ip4-arp", "held"),
        ("ip4-arp", "request-sent"),
        ("ip4-arp", "hold-queue-full"),
        ("arp-input", "reply-learned"),
        ("arp-input", "request-answered"),
        ("arp-input", "held-packets-released"),
        ("ip4-rewrite", "ttl-expired"),
    ] {
        let _ = write!(
            summary,
            "{node}/{reason} {:?}; ",
            error_count_by_worker(&log, node, reason)
        );
    }
    eprintln!("per worker: {summary}");
    // Evidence that neighbour sharing was exercised (not asserted: it depends on how the
    // cold burst's SYNs raced the first ARP reply): a worker that held packets but never
    // received an ARP frame can only have released them by adopting the other's neighbour.
    let arp_frames = runtime_vectors_by_worker(&log, "arp-input");
    for (w, held) in error_count_by_worker(&log, "ip4-arp", "held") {
        if held > 0 && !arp_frames.contains_key(&w) {
            eprintln!(
                "worker {w} held {held} packet(s) and received no ARP frame: released by \
                 adopting a neighbour the other worker learned"
            );
        }
    }
    assert_eq!(
        error_count(&log, "ip4-arp", "resolution-timeout").unwrap_or(0),
        0,
        "no packet held for an unresolved neighbour should time out: the ARP reply reached \
         one worker, which must share it with the other\nlog:\n{log}"
    );
    assert_eq!(
        error_count(&log, "arp-input", "peer-inbox-full").unwrap_or(0),
        0,
        "no learned neighbour should be lost on the way to the other worker\nlog:\n{log}"
    );
    // Three pings of three echo requests to zerohop's own addresses, each answered once.
    assert_eq!(
        error_count(&log, "ip4-local", "icmp-echo-replied"),
        Some(9),
        "want `ip4-local reason=icmp-echo-replied` summing to 9 (three pings of 3 to \
         zerohop's own addresses)\nlog:\n{log}"
    );
    let forwarded = runtime_vectors(&log, "ip4-rewrite");
    assert!(
        forwarded.is_some_and(|v| v > 0),
        "want `runtime: ip4-rewrite` vectors > 0\nlog:\n{log}"
    );
}

/// L2 cross-connect over net_tap with two workers: the tap PMD creates a multi-queue tap
/// with one queue per configured queue pair, the kernel steers each flow to one of them.
#[test]
fn xconnect_two_workers_tap_spreads_flows_over_both() {
    if !two_worker_preconditions() {
        return;
    }
    let _serial = one_at_a_time();
    let (a_host, b_host) = ("10.203.2.1", "10.203.2.2");
    let id = unique_id();
    let ns_a = Netns::new(&format!("zm{id}a"));
    let ns_b = Netns::new(&format!("zm{id}b"));
    let (tap_a, tap_b) = (format!("zm{id}ta"), format!("zm{id}tb"));
    let zerohop = start_two_workers(
        None,
        &two_worker_config(
            &[
                ("left", format!("net_tap0,iface={tap_a}"), None),
                ("right", format!("net_tap1,iface={tap_b}"), None),
            ],
            "  xconnect: [[left, right]]\n",
        ),
        &["left", "right"],
    );
    ns_a.adopt_if(&tap_a, &format!("{a_host}/24"));
    ns_b.adopt_if(&tap_b, &format!("{b_host}/24"));
    assert_ping(&zerohop, &ns_a, b_host, None);
    assert_ping(&zerohop, &ns_b, a_host, None);

    let payload = test_payload(PAYLOAD_LEN);
    let _server = HttpServer::start(&ns_b, b_host, HTTP_PORT, &[("blob.bin", &payload)]);
    let ports = flow_ports(44000);
    let gets = parallel_curl(
        &ns_a,
        &format!("http://{b_host}:{HTTP_PORT}/blob.bin"),
        &ports,
        CURL_MAX_TIME_S,
    );
    assert_all_transfers(&zerohop, "A -> B over tap", &ports, &gets, &payload);

    let (status, log) = zerohop.terminate();
    assert_clean_exit_after_traffic(status, &log, &["left", "right"]);
    assert_both_workers_carried_traffic(&log, &["left", "right"]);
    // The taps belong to the zerohop process: they go when it exits.
    assert!(
        !ns_a
            .run("ip", &["link", "show", &tap_a], Duration::from_secs(10))
            .success(),
        "{tap_a} still exists after zerohop exited"
    );
}
