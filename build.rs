//! Build the DPDK binding: pkg-config `libdpdk` → bindgen (narrow allowlist) and
//! `cc` over `src/dpdk/shim.c`, both with the same compiler flags.
//!
//! DPDK is linked as shared libraries (Debian's `libdpdk-dev`); EAL loads the
//! poll-mode drivers from its plugin directory at init.
//!
//! With `--features static-dpdk`, DPDK's static archives (also in
//! `libdpdk-dev`) are linked instead: the libraries zerohop uses and a chosen
//! set of drivers (see [`STATIC_DRIVERS`]), with the system libraries they
//! need linked statically too where Debian ships an archive. The binary then
//! needs only the C library at run time and can be copied to a machine
//! without DPDK (`scripts/build-static.sh` builds it and checks that). EAL
//! loads no plugin directory in a static build.

use std::env;
use std::path::PathBuf;

const SETUP_HINT: &str = "zerohop needs DPDK 22.11 (Debian's libdpdk-dev), pkg-config and \
libclang. Run `sudo scripts/setup.sh` (it installs them), then build again.";

fn main() {
    println!("cargo:rerun-if-changed=src/dpdk/shim.c");
    println!("cargo:rerun-if-changed=src/dpdk/shim.h");
    println!("cargo:rerun-if-changed=build.rs");

    let statik = env::var_os("CARGO_FEATURE_STATIC_DPDK").is_some();
    // Emits the link flags for DPDK's shared libraries (static: checks only).
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(!statik)
        .probe("libdpdk")
    {
        eprintln!("\nerror: libdpdk not found via pkg-config: {e}\n{SETUP_HINT}\n");
        println!("cargo:warning=libdpdk not found: {SETUP_HINT}");
        std::process::exit(1);
    }

    if statik {
        link_static();
    }

    // The flags pkg-config hands to C compilers (-I, -include rte_config.h, -march).
    // Both bindgen and cc get exactly these, so both see the same structs.
    let clang_args = dpdk_cflags();

    let mut build = cc::Build::new();
    build.file("src/dpdk/shim.c").warnings(true).opt_level(2);
    let mut args = clang_args.iter();
    while let Some(a) = args.next() {
        if a == "-include" {
            if let Some(f) = args.next() {
                build.flag("-include").flag(f);
            }
        } else if let Some(p) = a.strip_prefix("-I") {
            build.include(p);
        } else {
            build.flag(a);
        }
    }
    build.compile("zerohop_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("src/dpdk/shim.h")
        .clang_args(&clang_args)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        // Narrow allowlist: only what src/dpdk uses. Broad ones hit packed/aligned
        // structs bindgen cannot express (E0588 on rte_l2tpv2_*, rte_arp_*).
        .allowlist_function("rte_eal_init")
        .allowlist_function("rte_eal_cleanup")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_socket_count")
        .allowlist_function("rte_socket_id_by_idx")
        .allowlist_function("rte_thread_register")
        .allowlist_function("rte_thread_unregister")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_dev_probe")
        .allowlist_function("rte_dev_remove")
        .allowlist_function("rte_eth_dev_count_avail")
        .allowlist_function("rte_eth_dev_get_port_by_name")
        .allowlist_function("rte_eth_dev_get_name_by_port")
        .allowlist_function("rte_eth_dev_info_get")
        .allowlist_function("rte_eth_dev_configure")
        .allowlist_function("rte_eth_dev_adjust_nb_rx_tx_desc")
        .allowlist_function("rte_eth_rx_queue_setup")
        .allowlist_function("rte_eth_tx_queue_setup")
        .allowlist_function("rte_eth_dev_start")
        .allowlist_function("rte_eth_dev_stop")
        .allowlist_function("rte_eth_dev_close")
        .allowlist_function("rte_eth_dev_socket_id")
        .allowlist_function("rte_eth_macaddr_get")
        .allowlist_function("rte_eth_link_get_nowait")
        .allowlist_function("rte_eth_promiscuous_enable")
        .allowlist_function("rte_eth_promiscuous_get")
        .allowlist_function("rte_eth_stats_get")
        .allowlist_function("rte_eth_stats_reset")
        .allowlist_function("rte_eth_xstats_get_names")
        .allowlist_function("rte_eth_xstats_get")
        .allowlist_function("rte_eth_dev_get_mtu")
        .allowlist_function("rte_eth_dev_set_mtu")
        .allowlist_function("rte_eth_dev_rss_reta_query")
        .allowlist_function("zh_.*")
        .allowlist_var("RTE_MAX_LCORE")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_ETH_XSTATS_NAME_SIZE")
        .allowlist_var("RTE_ETHER_ADDR_LEN")
        .allowlist_var("RTE_ETH_LINK_UP")
        .allowlist_var("RTE_ETH_LINK_FULL_DUPLEX")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        .allowlist_var("RTE_ETH_RSS_IP")
        .allowlist_var("RTE_ETH_RSS_TCP")
        .allowlist_var("RTE_ETH_RSS_UDP")
        .allowlist_var("RTE_ETH_RETA_GROUP_SIZE")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_mempool")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_rss_reta_entry64")
        .allowlist_type("rte_eth_link")
        .allowlist_type("rte_eth_xstat")
        .allowlist_type("rte_eth_xstat_name")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("rte_eth_rx_mq_mode")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .blocklist_type("max_align_t")
        .blocklist_type("rte_l2tpv2_.*")
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| {
            eprintln!("\nerror: bindgen over the DPDK headers failed: {e}\n{SETUP_HINT}\n");
            std::process::exit(1);
        });
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    bindings
        .write_to_file(out.join("dpdk_bindings.rs"))
        .expect("write bindings to OUT_DIR");
}

/// `pkg-config --cflags libdpdk`, split into words with `-include FILE` kept as a pair.
fn dpdk_cflags() -> Vec<String> {
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| {
            eprintln!("\nerror: cannot run pkg-config: {e}\n{SETUP_HINT}\n");
            std::process::exit(1);
        });
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Drivers in a static build, whole-archive (each registers itself from a
/// constructor nothing else references): the buses, the ring mempool, the
/// virtual devices zerohop is tested with, and common NICs of VMs and bare
/// metal.
const STATIC_DRIVERS: &[&str] = &[
    "bus_pci",
    "bus_vdev",
    "mempool_ring",
    "net_af_packet",
    "net_af_xdp",
    "net_memif",
    "net_null",
    "net_ring",
    "net_tap",
    "net_virtio",
    "net_vmxnet3",
    "net_e1000",
    "net_ixgbe",
    "net_i40e",
];

/// The DPDK libraries those drivers and zerohop use, linked as a group.
const STATIC_LIBS: &[&str] = &[
    "ethdev",
    "net",
    "mbuf",
    "mempool",
    "ring",
    "meter",
    "hash",
    "rcu",
    "gso",
    "security",
    "cryptodev",
    "pci",
    "eal",
    "kvargs",
    "telemetry",
];

/// System libraries after DPDK's: static where Debian has the archive, else
/// shared.
const STATIC_SYSTEM: &[&str] = &["xdp", "bpf", "elf", "z", "numa", "bsd", "md"];
const SHARED_SYSTEM: &[&str] = &["m", "dl", "pthread", "rt", "atomic"];

/// Link DPDK from its static archives (see the module docs).
fn link_static() {
    let dir = "/usr/lib/x86_64-linux-gnu";
    println!("cargo:rustc-link-search=native={dir}");
    let mut args = vec!["-Wl,--whole-archive".to_owned()];
    args.extend(STATIC_DRIVERS.iter().map(|d| format!("-l:librte_{d}.a")));
    args.push("-Wl,--no-whole-archive".to_owned());
    args.push("-Wl,--start-group".to_owned());
    args.extend(STATIC_LIBS.iter().map(|l| format!("-l:librte_{l}.a")));
    args.push("-Wl,--end-group".to_owned());
    args.extend(STATIC_SYSTEM.iter().map(|l| format!("-l:lib{l}.a")));
    args.extend(SHARED_SYSTEM.iter().map(|l| format!("-l{l}")));
    for a in args {
        println!("cargo:rustc-link-arg={a}");
    }
}
