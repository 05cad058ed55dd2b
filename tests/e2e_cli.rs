//! End-to-end: the command line and config errors, as a user meets them.
//!
//! A bad config exits 1 and the message says where (YAML path or file); `--mode validate`
//! checks a config without touching DPDK; a device that fails to probe exits 1 (not a
//! signal, no core dump) and names the device spec.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const MODES: [&str; 2] = ["serve", "validate"];

/// Run zerohop with `args` (bounded: a config error must not start a dataplane).
fn zerohop(args: &[&str]) -> CmdOutput {
    run_timeout(Command::new(ZEROHOP).args(args), Duration::from_secs(60))
}

/// Write `config` to a temporary file and run zerohop on it in `mode`.
fn run_config(config: &str, mode: &str) -> CmdOutput {
    let dir = TempDir::new("cli");
    let path = dir.path().join("zerohop.yaml");
    std::fs::write(&path, config).expect("write config");
    zerohop(&["-c", path.to_str().expect("utf-8 path"), "--mode", mode])
}

/// Assert exit code exactly 1 (not a signal), plain-text stderr, and every `needles`
/// entry in stderr.
fn assert_fails_naming(out: &CmdOutput, needles: &[&str], what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: want exit code 1, got {}\nstderr:\n{}",
        describe(out.status),
        out.stderr
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "{what}: stderr is not a TTY, so no ANSI colour codes\nstderr:\n{:?}",
        out.stderr
    );
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "{what}: stderr should name `{needle}`\nstderr:\n{}",
            out.stderr
        );
    }
}

fn good_config(id: &str) -> String {
    xconnect_config(
        &format!("net_tap0,iface=zt{id}v0"),
        &format!("net_tap1,iface=zt{id}v1"),
    )
}

/// A valid L3 config: two routed ports, a static route, an ACL. The invalid-L3 tests each
/// break one field of it.
fn router_config(id: &str) -> String {
    format!(
        r#"dataplane:
  cores: [1]
  eal_args: ["--no-pci"]
  ports:
    - {{ name: a, device: "net_tap0,iface=zt{id}r0", address: 10.201.1.254/24 }}
    - {{ name: b, device: "net_tap1,iface=zt{id}r1", address: 10.201.2.254/24 }}
  routes:
    - {{ prefix: 10.201.100.0/24, via: 10.201.2.1 }}
  acl:
    - {{ port: a, action: deny, protocol: tcp, dst_port: 8081 }}
    - {{ port: a, action: permit }}
"#
    )
}

/// Replace `from` (which must occur once) in the router config and check that
/// `--mode validate` exits 1 naming every entry of `needles`.
fn assert_router_config_rejected(from: &str, to: &str, needles: &[&str], what: &str) {
    let good = router_config(&unique_id());
    assert_eq!(
        good.matches(from).count(),
        1,
        "fixture: `{from}` not found once"
    );
    let out = run_config(&good.replacen(from, to, 1), "validate");
    assert_fails_naming(&out, needles, what);
}

#[test]
fn validate_accepts_good_router_config() {
    let out = run_config(&router_config(&unique_id()), "validate");
    assert!(
        out.success(),
        "--mode validate on a good L3 config: want exit 0, got {}\nstderr:\n{}",
        describe(out.status),
        out.stderr
    );
}

#[test]
fn malformed_port_address_names_yaml_path() {
    assert_router_config_rejected(
        "address: 10.201.1.254/24",
        "address: 10.1.2/24",
        &["dataplane.ports[0].address", "10.1.2/24"],
        "port address with three octets",
    );
}

#[test]
fn overlapping_port_subnets_name_yaml_path() {
    // 10.201.0.0/16 contains port a's 10.201.1.0/24.
    assert_router_config_rejected(
        "address: 10.201.2.254/24",
        "address: 10.201.2.254/16",
        &["dataplane.ports[1].address"],
        "port b's subnet overlapping port a's",
    );
}

#[test]
fn route_via_off_connected_subnets_names_yaml_path() {
    assert_router_config_rejected(
        "via: 10.201.2.1",
        "via: 10.201.3.1",
        &["dataplane.routes[0].via", "10.201.3.1"],
        "route next hop on no connected subnet",
    );
}

#[test]
fn acl_naming_unknown_port_names_yaml_path() {
    assert_router_config_rejected(
        "{ port: a, action: deny",
        "{ port: c, action: deny",
        &["dataplane.acl[0].port", "`c`"],
        "ACL rule for an unknown port",
    );
}

/// The shipped tcp_proxy example (dataplane + Envoy `static_resources`), its worker
/// moved to a CPU this machine has.
fn tcp_proxy_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tcp-proxy.yaml");
    let config = std::fs::read_to_string(&path).expect("read configs/tcp-proxy.yaml");
    assert_eq!(
        config.matches("cores: [1]").count(),
        1,
        "fixture: `cores: [1]` not found once in {}",
        path.display()
    );
    config.replacen("cores: [1]", &format!("cores: [{}]", worker_core()), 1)
}

/// Replace `from` (which must occur once) in the tcp_proxy config and check that both
/// modes exit 1 naming every entry of `needles`.
fn assert_tcp_proxy_config_rejected(from: &str, to: &str, needles: &[&str], what: &str) {
    let good = tcp_proxy_config();
    assert_eq!(
        good.matches(from).count(),
        1,
        "fixture: `{from}` not found once"
    );
    let config = good.replacen(from, to, 1);
    for mode in MODES {
        let out = run_config(&config, mode);
        assert_fails_naming(&out, needles, &format!("{what} (--mode {mode})"));
    }
}

#[test]
fn validate_accepts_tcp_proxy_config() {
    let out = run_config(&tcp_proxy_config(), "validate");
    assert!(
        out.success(),
        "--mode validate on configs/tcp-proxy.yaml: want exit 0, got {}\nstderr:\n{}",
        describe(out.status),
        out.stderr
    );
    assert!(out.stdout_str().contains("OK"), "{}", out.stdout_str());
}

#[test]
fn sections_zerohop_does_not_read_yet_are_refused() {
    let config = format!("{}layered_runtime:\n  layers: []\n", tcp_proxy_config());
    for mode in MODES {
        let out = run_config(&config, mode);
        assert_fails_naming(
            &out,
            &["layered_runtime", "not supported yet"],
            &format!("layered_runtime section (--mode {mode})"),
        );
    }
}

#[test]
fn envoy_schema_error_names_yaml_path_and_line() {
    assert_tcp_proxy_config_rejected(
        "connect_timeout: 1s",
        "conect_timeout: 1s",
        &[
            "static_resources.clusters[0].conect_timeout",
            "unknown field",
            "at line",
        ],
        "misspelled cluster field",
    );
}

#[test]
fn listener_on_a_foreign_address_names_yaml_path() {
    assert_tcp_proxy_config_rejected(
        "address: 0.0.0.0, port_value: 8000",
        "address: 10.0.9.1, port_value: 8000",
        &[
            "static_resources.listeners[0].address.socket_address.address",
            "10.0.9.1",
            "10.0.0.1 on port `down`",
        ],
        "listener address zerohop does not own",
    );
}

#[test]
fn unreachable_endpoint_names_yaml_path() {
    assert_tcp_proxy_config_rejected(
        "address: 10.0.1.2, port_value: 9002",
        "address: 10.9.1.2, port_value: 9002",
        &[
            "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[1]",
            "10.9.1.2 is unreachable",
        ],
        "endpoint on no connected subnet and no route",
    );
}

#[test]
fn bad_tcp_setting_names_yaml_path() {
    assert_tcp_proxy_config_rejected(
        "rx_buffer: 262144",
        "rx_buffer: 512",
        &["dataplane.tcp.rx_buffer", "use 1024 to 16777216"],
        "rx_buffer below the minimum",
    );
}

#[test]
fn validate_accepts_good_config_without_touching_dpdk() {
    let id = unique_id();
    let out = run_config(&good_config(&id), "validate");
    assert!(
        out.success(),
        "--mode validate on a good config: want exit 0, got {}\nstderr:\n{}",
        describe(out.status),
        out.stderr
    );
    // validate must not probe devices: net_tap would have created these interfaces.
    for tap in [format!("zt{id}v0"), format!("zt{id}v1")] {
        assert!(
            !link_exists(&tap),
            "--mode validate created interface {tap}"
        );
    }
}

#[test]
fn unknown_key_names_yaml_path() {
    let id = unique_id();
    let config = good_config(&id).replacen("device:", "devcie:", 1);
    for mode in MODES {
        let out = run_config(&config, mode);
        assert_fails_naming(
            &out,
            &["dataplane.ports[0]", "devcie"],
            &format!("misspelled key `devcie` (--mode {mode})"),
        );
    }
}

#[test]
fn unknown_port_in_xconnect_names_yaml_path() {
    let id = unique_id();
    let config = good_config(&id).replace("[[left, right]]", "[[left, rigth]]");
    assert!(config.contains("rigth"), "fixture: xconnect line not found");
    for mode in MODES {
        let out = run_config(&config, mode);
        assert_fails_naming(
            &out,
            &["dataplane.xconnect[0][1]", "rigth"],
            &format!("unknown port `rigth` in xconnect (--mode {mode})"),
        );
    }
}

#[test]
fn missing_config_file_names_the_file() {
    let missing = format!("/nonexistent-zerohop/{}/missing.yaml", unique_id());
    assert!(!Path::new(&missing).exists());
    for mode in MODES {
        let out = zerohop(&["-c", &missing, "--mode", mode]);
        assert_fails_naming(
            &out,
            &[&missing],
            &format!("missing config file (--mode {mode})"),
        );
    }
}

#[test]
fn device_that_fails_to_probe_exits_1_naming_it() {
    if !require_root() {
        return;
    }
    assert!(
        !link_exists("nope"),
        "fixture: an interface called `nope` exists"
    );
    let config = xconnect_config("net_af_packet0,iface=nope", "net_null0")
        .replace("hugepages: auto", "hugepages: off");
    assert!(config.contains("hugepages: off") && config.contains("--no-pci"));
    let out = run_config(&config, "serve");
    assert!(
        out.status.signal().is_none() && !out.status.core_dumped(),
        "a failed probe must exit, not crash: {}\nstderr:\n{}",
        describe(out.status),
        out.stderr
    );
    assert_fails_naming(
        &out,
        &["net_af_packet0,iface=nope"],
        "device that does not exist",
    );
}

/// net_af_packet with more queue pairs than workers would lose every frame the
/// kernel's fanout hashes to a queue nobody polls: refused at start, with the fix.
#[test]
fn af_packet_with_more_qpairs_than_workers_is_refused() {
    if !require_root() {
        return;
    }
    let id = unique_id();
    let ns = Netns::new(&format!("zq{id}"));
    let proxy = Netns::new(&format!("zp{id}"));
    let veth = Veth::new(
        &ns,
        "eth0",
        Some(&proxy),
        &format!("zq{id}"),
        "10.203.0.1/24",
    );
    let config = xconnect_config(
        &format!("net_af_packet0,iface={},qpairs=2", veth.proxy_if()),
        "net_null0",
    );
    let zh = Zerohop::start_in(Some(&proxy), &config);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline && !zh.log().contains("error:") {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, log) = zh.terminate();
    assert_eq!(status.code(), Some(1), "{}\n{log}", describe(status));
    assert!(
        log.contains("has 2 queue pairs but 1 worker(s) poll it") && log.contains("qpairs=1"),
        "{log}"
    );
}

/// Every example in configs/ loads (`--mode validate`), its worker moved to a CPU this
/// machine has.
#[test]
fn every_shipped_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("read configs/") {
        let path = entry.expect("configs/ entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read config");
        let text = text.replace("cores: [1]", &format!("cores: [{}]", worker_core()));
        let out = run_config(&text, "validate");
        assert!(
            out.success(),
            "--mode validate on {}: want exit 0, got {}\nstderr:\n{}",
            path.display(),
            describe(out.status),
            out.stderr
        );
        checked += 1;
    }
    assert!(
        checked >= 9,
        "only {checked} configs found in {}",
        dir.display()
    );
}
