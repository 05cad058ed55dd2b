//! End-to-end: two network namespaces joined only through zerohop's L2 cross-connect.
//!
//! ```text
//!  ns A: 10.199.N.1 ── veth/tap ── [zerohop port left] ⇄ xconnect ⇄ [port right] ── veth/tap ── ns B: 10.199.N.2
//!                                  (zerohop in ns P with af_packet, root ns with net_tap)
//! ```
//!
//! Each test pings across, fetches a file over HTTP (python3 http.server in B, curl in A;
//! 256 KiB so TCP sends full-size segments both ways), then stops zerohop with SIGTERM
//! and checks exit code 0, `mbufs_in_use=0` and traffic counted on both ports.
//! Needs root; run with `cargo test --test e2e_xconnect` (tests may run in parallel:
//! every name carries a unique id).

mod common;

use common::*;
use std::time::Duration;

const HTTP_PORT: u16 = 8000;
const PAYLOAD_LEN: usize = 256 * 1024;

/// Ping and HTTP GET from `a` (10.199.`net`.1) to `b` (10.199.`net`.2); panic with the
/// zerohop log on failure.
fn check_forwarding(zerohop: &Zerohop, a: &Netns, b: &Netns, net: u8) {
    let b_addr = format!("10.199.{net}.2");
    let ping = a.ping(&b_addr, 3);
    assert!(
        ping.success(),
        "ping {} -> {b_addr} through zerohop failed: {}{}\nzerohop log:\n{}",
        a.name(),
        ping.stdout_str(),
        ping.stderr,
        zerohop.log()
    );

    let payload = test_payload(PAYLOAD_LEN);
    let _server = HttpServer::start(b, &b_addr, HTTP_PORT, &[("blob.bin", &payload)]);
    let got = a.curl(&format!("http://{b_addr}:{HTTP_PORT}/blob.bin"), 10);
    assert!(
        got.success(),
        "HTTP GET {} -> {b_addr} through zerohop failed ({}): {}\nzerohop log:\n{}",
        a.name(),
        describe(got.status),
        got.stderr,
        zerohop.log()
    );
    assert!(
        got.stdout == payload,
        "HTTP body through zerohop differs: got {} bytes, want {}",
        got.stdout.len(),
        PAYLOAD_LEN
    );
}

/// Namespaces A and B, each joined by a veth pair to namespace P, where zerohop runs
/// with net_af_packet ports on the P ends (`left` towards A, `right` towards B).
///
/// zerohop gets a namespace of its own because DPDK 22.11's af_packet PMD picks its
/// PACKET_FANOUT group id as `(getpid() ^ ifindex) & 0xffff`, per namespace: two
/// zerohop processes in one namespace (tests run in parallel) can collide and fail to
/// probe. Fields drop in order: the veths go first, then the namespaces.
struct AfPacketTopology {
    veth_a: Veth,
    veth_b: Veth,
    ns_p: Netns,
    ns_a: Netns,
    ns_b: Netns,
}

impl AfPacketTopology {
    /// Build it with A = 10.199.`net`.1/24, B = 10.199.`net`.2/24, and check that B is
    /// unreachable from A while zerohop is not running (else the test proves nothing).
    fn new(net: u8) -> AfPacketTopology {
        let id = unique_id();
        let ns_a = Netns::new(&format!("zt{id}a"));
        let ns_b = Netns::new(&format!("zt{id}b"));
        let ns_p = Netns::new(&format!("zt{id}p"));
        let veth_a = Veth::new(
            &ns_a,
            &format!("zt{id}a0"),
            Some(&ns_p),
            &format!("zt{id}a1"),
            &format!("10.199.{net}.1/24"),
        );
        let veth_b = Veth::new(
            &ns_b,
            &format!("zt{id}b0"),
            Some(&ns_p),
            &format!("zt{id}b1"),
            &format!("10.199.{net}.2/24"),
        );
        let b_addr = format!("10.199.{net}.2");
        let ping = ns_a.run(
            "ping",
            &["-n", "-c", "1", "-W", "1", &b_addr],
            Duration::from_secs(10),
        );
        assert!(
            !ping.success(),
            "{b_addr} reachable from {} before zerohop started: the test proves nothing",
            ns_a.name()
        );
        // Forget the failed ARP resolution, so the first ping through zerohop starts afresh.
        must("ip", &["-n", ns_a.name(), "neigh", "flush", "all"]);
        AfPacketTopology {
            veth_a,
            veth_b,
            ns_p,
            ns_a,
            ns_b,
        }
    }

    /// Start zerohop in P, cross-connecting the two veth ends, and wait until it is ready.
    fn start_zerohop(&self) -> Zerohop {
        let mut zerohop = Zerohop::start_in(
            Some(&self.ns_p),
            &xconnect_config(
                &format!("net_af_packet0,iface={}", self.veth_a.proxy_if()),
                &format!("net_af_packet1,iface={}", self.veth_b.proxy_if()),
            ),
        );
        zerohop.wait_ready(READY_TIMEOUT);
        zerohop
    }
}

/// net_af_packet on veth pairs.
#[test]
fn xconnect_af_packet_veth_ping_http_and_clean_exit() {
    if !require_root() {
        return;
    }
    let topo = AfPacketTopology::new(1);
    let zerohop = topo.start_zerohop();
    check_forwarding(&zerohop, &topo.ns_a, &topo.ns_b, 1);

    let (status, log) = zerohop.terminate();
    assert_clean_exit_after_traffic(status, &log, &["left", "right"]);
}

/// net_tap interfaces created by zerohop in the root namespace, then moved into A and B.
#[test]
fn xconnect_tap_ping_http_and_clean_exit() {
    if !require_root() {
        return;
    }
    let id = unique_id();
    let ns_a = Netns::new(&format!("zt{id}a"));
    let ns_b = Netns::new(&format!("zt{id}b"));
    let (tap_a, tap_b) = (format!("zt{id}ta"), format!("zt{id}tb"));

    let mut zerohop = Zerohop::start(&xconnect_config(
        &format!("net_tap0,iface={tap_a}"),
        &format!("net_tap1,iface={tap_b}"),
    ));
    zerohop.wait_ready(READY_TIMEOUT);
    ns_a.adopt_if(&tap_a, "10.199.2.1/24");
    ns_b.adopt_if(&tap_b, "10.199.2.2/24");
    check_forwarding(&zerohop, &ns_a, &ns_b, 2);

    let (status, log) = zerohop.terminate();
    assert_clean_exit_after_traffic(status, &log, &["left", "right"]);
    // The taps belong to the zerohop process: they go when it exits.
    assert!(
        !ns_a
            .run("ip", &["link", "show", &tap_a], Duration::from_secs(10))
            .success(),
        "{tap_a} still exists after zerohop exited"
    );
}

/// SIGTERM while packets are in flight: workers stop, every mbuf (including those
/// queued in rx/tx rings at that moment) goes back to the pool, exit code 0.
#[test]
fn sigterm_under_traffic_exits_zero_with_no_mbufs_in_use() {
    if !require_root() {
        return;
    }
    let topo = AfPacketTopology::new(3);
    let zerohop = topo.start_zerohop();
    let ping = topo.ns_a.ping("10.199.3.2", 2);
    assert!(
        ping.success(),
        "ping through zerohop failed: {}\nzerohop log:\n{}",
        ping.stdout_str(),
        zerohop.log()
    );

    // A bounded flood (1 ms apart, at most 5 s) that is still running at SIGTERM.
    let mut flood = topo.ns_a.spawn(
        "ping",
        &[
            "-n",
            "-q",
            "-i",
            "0.001",
            "-s",
            "1400",
            "-c",
            "5000",
            "-w",
            "5",
            "10.199.3.2",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    flood.assert_running("ping flood");
    let (status, log) = zerohop.terminate();
    drop(flood);
    assert_clean_exit_after_traffic(status, &log, &["left", "right"]);
}
