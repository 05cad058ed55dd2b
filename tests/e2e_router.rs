//! End-to-end: zerohop as an IPv4 router between two namespaces on different subnets.
//!
//! ```text
//!  ns A 10.201.1.1/24 ── veth ── [port a 10.201.1.254/24] zerohop [port b 10.201.2.254/24] ── veth ── ns B 10.201.2.1/24
//!  default via .1.254            (in ns P, net_af_packet on the P ends)            default via .2.254
//!                                                                                   10.201.100.1/32 on lo
//! ```
//!
//! Each test builds its own namespaces (unique names, so tests and test binaries can run
//! in parallel; the addresses repeat, but every copy lives in namespaces of its own),
//! checks that nothing crosses before zerohop runs, drives traffic with ping, curl and
//! python3, then stops zerohop with SIGTERM and checks the exit: code 0,
//! `mbufs_in_use=0`, both ports counted, the graph's runtime table, and the drop/event
//! counters (VPP's `show errors`) and ACL hit counters the test's traffic must have moved.
//! Needs root; run with `cargo test --test e2e_router`.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

const A_HOST: &str = "10.201.1.1";
const A_GATEWAY: &str = "10.201.1.254";
const B_HOST: &str = "10.201.2.1";
const B_GATEWAY: &str = "10.201.2.254";
/// An address in B, reached only through the static route `10.201.100.0/24 via B_HOST`.
const BEHIND_B: &str = "10.201.100.1";
/// An address no route covers.
const NOWHERE: &str = "10.201.200.1";
const HTTP_PORT: u16 = 8080;
const DENIED_PORT: u16 = 8081;
const PAYLOAD_LEN: usize = 256 * 1024;

/// The graph nodes every routed packet crosses: each must have a runtime line with
/// vectors > 0 after any of these tests.
const ROUTED_PATH: [&str; 4] = ["ethernet-input", "ip4-input", "ip4-lookup", "ip4-rewrite"];

/// Namespaces A and B, each joined by a veth pair to namespace P, where zerohop runs with
/// net_af_packet ports on the P ends: port `a` towards A, port `b` towards B.
///
/// zerohop gets a namespace of its own because DPDK 22.11's af_packet PMD picks its
/// PACKET_FANOUT group id as `(getpid() ^ ifindex) & 0xffff`, per namespace: two zerohop
/// processes in one namespace can collide and fail to probe. Fields drop in order: the
/// veths go first, then the namespaces.
struct RouterTopology {
    veth_a: Veth,
    veth_b: Veth,
    ns_p: Netns,
    ns_a: Netns,
    ns_b: Netns,
}

impl RouterTopology {
    /// Build it: A and B addressed, each with zerohop's near address as default gateway,
    /// B also holding [`BEHIND_B`] on its loopback. Check that neither zerohop's address
    /// nor B is reachable from A while zerohop is not running (else the test proves
    /// nothing).
    fn new() -> RouterTopology {
        let id = unique_id();
        let ns_a = Netns::new(&format!("zr{id}a"));
        let ns_b = Netns::new(&format!("zr{id}b"));
        let ns_p = Netns::new(&format!("zr{id}p"));
        let veth_a = Veth::new(
            &ns_a,
            &format!("zr{id}a0"),
            Some(&ns_p),
            &format!("zr{id}a1"),
            &format!("{A_HOST}/24"),
        );
        let veth_b = Veth::new(
            &ns_b,
            &format!("zr{id}b0"),
            Some(&ns_p),
            &format!("zr{id}b1"),
            &format!("{B_HOST}/24"),
        );
        ns_a.add_default_route(A_GATEWAY);
        ns_b.add_default_route(B_GATEWAY);
        must(
            "ip",
            &[
                "-n",
                ns_b.name(),
                "addr",
                "add",
                &format!("{BEHIND_B}/32"),
                "dev",
                "lo",
            ],
        );
        let topo = RouterTopology {
            veth_a,
            veth_b,
            ns_p,
            ns_a,
            ns_b,
        };
        for dst in [A_GATEWAY, B_HOST, BEHIND_B] {
            let ping = ping_once(&topo.ns_a, dst, None);
            assert!(
                !ping.success(),
                "{dst} reachable from {} before zerohop started: the test proves nothing\n{}",
                topo.ns_a.name(),
                ping.stdout_str()
            );
        }
        // Forget the failed ARP resolutions, so the first packets through zerohop start
        // afresh rather than waiting out a FAILED entry.
        for ns in [&topo.ns_a, &topo.ns_b] {
            must("ip", &["-n", ns.name(), "neigh", "flush", "all"]);
        }
        topo
    }

    /// A config routing between the two veth ends, with `extra` (YAML for `routes:` /
    /// `acl:`, indented as keys of `dataplane`) appended.
    fn config(&self, extra: &str) -> String {
        let core = worker_core();
        let (a, b) = (self.veth_a.proxy_if(), self.veth_b.proxy_if());
        format!(
            r#"dataplane:
  cores: [{core}]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: a
      device: "net_af_packet0,iface={a}"
      address: {A_GATEWAY}/24
    - name: b
      device: "net_af_packet1,iface={b}"
      address: {B_GATEWAY}/24
{extra}"#
        )
    }

    /// Start zerohop in P with [`RouterTopology::config`]`(extra)`; wait until ready.
    fn start_zerohop(&self, extra: &str) -> Zerohop {
        let mut zerohop = Zerohop::start_in(Some(&self.ns_p), &self.config(extra));
        zerohop.wait_ready(READY_TIMEOUT);
        zerohop
    }
}

/// One ping to `dst` from `ns` (reply deadline 1 s), with IP TTL `ttl` if given.
fn ping_once(ns: &Netns, dst: &str, ttl: Option<u8>) -> CmdOutput {
    let ttl = ttl.map(|t| t.to_string());
    let mut args = vec!["-n", "-c", "1", "-W", "1"];
    if let Some(ttl) = &ttl {
        args.extend(["-t", ttl.as_str()]);
    }
    args.push(dst);
    ns.run("ping", &args, Duration::from_secs(10))
}

/// Panic unless the log has `error: node=NODE reason=REASON count=N` with N ≥ `min`.
fn assert_error_count_at_least(log: &str, node: &str, reason: &str, min: u64) {
    let got = error_count(log, node, reason);
    assert!(
        got.is_some_and(|n| n >= min),
        "want `error: node={node} reason={reason} count=N` with N >= {min} in the exit log, \
         got {got:?}\nlog:\n{log}"
    );
}

/// The checks every test ends with: exit 0, `mbufs_in_use=0`, both ports received and
/// sent, and a runtime line with vectors > 0 for every node of the routed path.
fn assert_router_exit(status: std::process::ExitStatus, log: &str) {
    assert_clean_exit_after_traffic(status, log, &["a", "b"]);
    for node in ROUTED_PATH {
        let vectors = runtime_vectors(log, node);
        assert!(
            vectors.is_some_and(|v| v > 0),
            "want a `runtime: {node}` line with vectors > 0 in the exit log, got {vectors:?}\
             \nlog:\n{log}"
        );
    }
}

/// Wait (up to 5 s) until `ns` has a usable neighbour entry for `addr` with MAC `mac`;
/// return its state. A PROBE entry is on its way back to REACHABLE if zerohop answers the
/// kernel's unicast probe, so it is waited out rather than accepted.
fn wait_neighbour(zerohop: &Zerohop, ns: &Netns, addr: &str, mac: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let entry = ns.neighbour(addr);
        if let Some((lladdr, state)) = &entry {
            if lladdr.eq_ignore_ascii_case(mac)
                && ["REACHABLE", "STALE", "DELAY"].contains(&state.as_str())
            {
                return state.clone();
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "{}: want a neighbour entry `{addr} lladdr {mac} REACHABLE|STALE|DELAY` \
                 (zerohop's port MAC), got {entry:?}\nzerohop log:\n{}",
                ns.name(),
                zerohop.log()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// zerohop answers pings to its own addresses, on either port, from either side.
#[test]
fn router_answers_ping_to_its_own_addresses() {
    if !require_root() {
        return;
    }
    let topo = RouterTopology::new();
    let zerohop = topo.start_zerohop("");
    assert_ping(&zerohop, &topo.ns_a, A_GATEWAY, Some(64));
    assert_ping(&zerohop, &topo.ns_b, B_GATEWAY, Some(64));
    // The far port's address is zerohop's too: answered locally, not forwarded.
    assert_ping(&zerohop, &topo.ns_a, B_GATEWAY, Some(64));

    let (status, log) = zerohop.terminate();
    assert_router_exit(status, &log);
    // Three pings of three echo requests, each answered once.
    assert_eq!(
        error_count(&log, "ip4-local", "icmp-echo-replied"),
        Some(9),
        "want `ip4-local reason=icmp-echo-replied count=9` in the exit log\nlog:\n{log}"
    );
}

/// zerohop refuses UDP to its own address with ICMP port unreachable (the sender's
/// connected socket sees ECONNREFUSED) and drops TCP to it silently, counting both.
#[test]
fn router_refuses_udp_and_drops_tcp_to_its_own_address() {
    if !require_root() {
        return;
    }
    let topo = RouterTopology::new();
    let zerohop = topo.start_zerohop("");
    // Traffic on port b too, so that the exit check sees both ports used.
    assert_ping(&zerohop, &topo.ns_b, B_GATEWAY, None);

    let udp = topo.ns_a.run(
        "python3",
        &[
            "-c",
            "import socket, sys\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.settimeout(3)\n\
             s.connect((sys.argv[1], 9))\n\
             s.send(b'zerohop')\n\
             try:\n    s.recv(100)\n    print('answered')\n\
             except ConnectionRefusedError:\n    print('refused')\n\
             except socket.timeout:\n    print('timeout')\n",
            A_GATEWAY,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(
        udp.stdout_str().trim(),
        "refused",
        "UDP to {A_GATEWAY}:9 should be refused (ICMP port unreachable); python: {}\
         \nzerohop log:\n{}",
        udp.stderr,
        zerohop.log()
    );

    let started = Instant::now();
    let tcp = topo.ns_a.http_status(&format!("http://{A_GATEWAY}:80/"), 2);
    assert_eq!(
        tcp.status.code(),
        Some(28),
        "TCP to {A_GATEWAY}:80 should be dropped (curl times out, exit 28), not answered or \
         refused: curl {} {}{}\nzerohop log:\n{}",
        describe(tcp.status),
        tcp.stdout_str(),
        tcp.stderr,
        zerohop.log()
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    let (status, log) = zerohop.terminate();
    assert_router_exit(status, &log);
    assert_error_count_at_least(&log, "ip4-local", "udp-port-unreachable", 1);
    assert_error_count_at_least(&log, "ip4-local", "tcp-no-listener", 1);
}

/// zerohop routes between the two subnets both ways (ICMP and a 256 KiB HTTP transfer)
/// and resolves its neighbours by ARP: the kernels on both sides hold zerohop's port MACs,
/// zerohop answered their requests and learned from their replies.
#[test]
fn router_forwards_between_subnets_and_resolves_arp() {
    if !require_root() {
        return;
    }
    let topo = RouterTopology::new();
    let zerohop = topo.start_zerohop("");
    let (mac_a, mac_b) = {
        let log = zerohop.log();
        (
            port_mac(&log, "a").unwrap_or_else(|| panic!("no MAC for port a in log:\n{log}")),
            port_mac(&log, "b").unwrap_or_else(|| panic!("no MAC for port b in log:\n{log}")),
        )
    };

    assert_ping(&zerohop, &topo.ns_a, B_HOST, Some(63));
    assert_ping(&zerohop, &topo.ns_b, A_HOST, Some(63));

    let payload = test_payload(PAYLOAD_LEN);
    let _server = HttpServer::start(&topo.ns_b, B_HOST, HTTP_PORT, &[("blob.bin", &payload)]);
    let got = topo
        .ns_a
        .curl(&format!("http://{B_HOST}:{HTTP_PORT}/blob.bin"), 10);
    assert!(
        got.success(),
        "HTTP GET {A_HOST} -> {B_HOST} through zerohop failed ({}): {}\nzerohop log:\n{}",
        describe(got.status),
        got.stderr,
        zerohop.log()
    );
    assert!(
        got.stdout == payload,
        "HTTP body through zerohop differs: got {} bytes, want {PAYLOAD_LEN}",
        got.stdout.len()
    );

    let state_a = wait_neighbour(&zerohop, &topo.ns_a, A_GATEWAY, &mac_a);
    let state_b = wait_neighbour(&zerohop, &topo.ns_b, B_GATEWAY, &mac_b);
    eprintln!("neighbours: A {A_GATEWAY} {mac_a} {state_a}; B {B_GATEWAY} {mac_b} {state_b}");

    let (status, log) = zerohop.terminate();
    assert_router_exit(status, &log);
    assert!(
        runtime_vectors(&log, "arp-input").is_some_and(|v| v > 0),
        "want a `runtime: arp-input` line with vectors > 0\nlog:\n{log}"
    );
    // A asked for its gateway's MAC: zerohop answered.
    assert_error_count_at_least(&log, "arp-input", "request-answered", 1);
    // The first ping from A reached zerohop before it knew B: it asked, B replied.
    assert_error_count_at_least(&log, "ip4-arp", "request-sent", 1);
    assert_error_count_at_least(&log, "arp-input", "reply-learned", 1);
}

/// A per-port ACL denies TCP to one port while the next rule permits the rest: HTTP to
/// the permitted server returns 200, to the denied one times out, and the exit log
/// counts the deny rule's hits.
#[test]
fn router_acl_denies_one_tcp_port_and_permits_another() {
    if !require_root() {
        return;
    }
    let topo = RouterTopology::new();
    let zerohop = topo.start_zerohop(&format!(
        "  acl:\n    - {{ port: a, action: deny, protocol: tcp, dst_port: {DENIED_PORT} }}\n    \
         - {{ port: a, action: permit }}\n"
    ));
    // Both servers answer inside B (HttpServer::start checks): only the ACL stands between.
    let _permitted = HttpServer::start(
        &topo.ns_b,
        B_HOST,
        HTTP_PORT,
        &[("index.html", b"permitted")],
    );
    let _denied = HttpServer::start(
        &topo.ns_b,
        B_HOST,
        DENIED_PORT,
        &[("index.html", b"denied")],
    );
    assert_ping(&zerohop, &topo.ns_a, B_HOST, Some(63));

    let ok = topo
        .ns_a
        .http_status(&format!("http://{B_HOST}:{HTTP_PORT}/"), 5);
    assert!(
        ok.success() && ok.stdout_str() == "200",
        "HTTP GET to permitted port {HTTP_PORT}: want 200, got {} ({}) {}\nzerohop log:\n{}",
        ok.stdout_str(),
        describe(ok.status),
        ok.stderr,
        zerohop.log()
    );

    let started = Instant::now();
    let denied = topo
        .ns_a
        .http_status(&format!("http://{B_HOST}:{DENIED_PORT}/"), 2);
    let took = started.elapsed();
    assert_eq!(
        denied.status.code(),
        Some(28),
        "HTTP GET to denied port {DENIED_PORT}: want curl to time out (exit 28), got {} \
         status {:?} {}\nzerohop log:\n{}",
        describe(denied.status),
        denied.stdout_str(),
        denied.stderr,
        zerohop.log()
    );
    assert!(
        took < Duration::from_secs(8),
        "curl --max-time 2 took {took:?}"
    );

    let (status, log) = zerohop.terminate();
    assert_router_exit(status, &log);
    let deny_hits = acl_rule_hits(&log, "a", 0);
    assert!(
        deny_hits.is_some_and(|n| n >= 1),
        "want `acl: port=a rule=0 hits=N` with N >= 1 (the SYNs to {DENIED_PORT}), got \
         {deny_hits:?}\nlog:\n{log}"
    );
    let permit_hits = acl_rule_hits(&log, "a", 1);
    assert!(
        permit_hits.is_some_and(|n| n >= 1),
        "want `acl: port=a rule=1 hits=N` with N >= 1, got {permit_hits:?}\nlog:\n{log}"
    );
    assert_eq!(
        acl_default_deny_hits(&log, "a").unwrap_or(0),
        0,
        "rule 1 permits everything: nothing should reach port a's default deny\nlog:\n{log}"
    );
    assert_error_count_at_least(&log, "acl", "deny", 1);
}

/// Traceroute by hand: a packet with TTL 1 gets ICMP time exceeded from zerohop's near
/// address (each way); with TTL 2 it reaches the far host.
#[test]
fn router_sends_time_exceeded_from_its_near_address() {
    if !require_root() {
        return;
    }
    let topo = RouterTopology::new();
    let zerohop = topo.start_zerohop("");
    for (ns, dst, near) in [
        (&topo.ns_a, B_HOST, A_GATEWAY),
        (&topo.ns_b, A_HOST, B_GATEWAY),
    ] {
        let hop1 = ping_once(ns, dst, Some(1));
        let out = hop1.stdout_str();
        assert!(
            !hop1.success()
                && out.contains(&format!("From {near} "))
                && out.contains("Time to live exceeded"),
            "ping -t 1 {} -> {dst}: want `From {near} … Time to live exceeded`, got ({}):\n\
             {out}{}\nzerohop log:\n{}",
            ns.name(),
            describe(hop1.status),
            hop1.stderr,
            zerohop.log()
        );
        let hop2 = ping_once(ns, dst, Some(2));
        assert!(
            hop2.success(),
            "ping -t 2 {} -> {dst} should reach it (one router on the way):\n{}\nzerohop log:\n{}",
            ns.name(),
            hop2.stdout_str(),
            zerohop.log()
        );
    }

    let (status, log) = zerohop.terminate();
    assert_router_exit(status, &log);
    assert_eq!(
        error_count(&log, "ip4-rewrite", "ttl-expired"),
        Some(2),
        "want `ip4-rewrite reason=ttl-expired count=2` (one per ping -t 1)\nlog:\n{log}"
    );
    assert_error_count_at_least(&log, "icmp-error", "sent", 2);
}

/// A static route sends a subnet that is not connected to zerohop on to a host in B;
/// an address no route covers gets ICMP net unreachable from zerohop.
#[test]
fn router_static_route_reaches_subnet_behind_neighbour() {
    if !require_root() {
        return;
    }
    let topo = RouterTopology::new();
    let zerohop = topo.start_zerohop(&format!(
        "  routes:\n    - {{ prefix: 10.201.100.0/24, via: {B_HOST} }}\n"
    ));
    assert_ping(&zerohop, &topo.ns_a, BEHIND_B, Some(63));

    let lost = ping_once(&topo.ns_a, NOWHERE, None);
    let out = lost.stdout_str();
    assert!(
        !lost.success()
            && out.contains(&format!("From {A_GATEWAY} "))
            && out.contains("Destination Net Unreachable"),
        "ping {NOWHERE} (no route): want `From {A_GATEWAY} … Destination Net Unreachable`, \
         got ({}):\n{out}\nzerohop log:\n{}",
        describe(lost.status),
        zerohop.log()
    );

    let (status, log) = zerohop.terminate();
    assert_router_exit(status, &log);
    assert_error_count_at_least(&log, "ip4-lookup", "no-route", 1);
}
