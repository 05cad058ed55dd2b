//! Start-up and shut-down: config → EAL → mempools → ports → workers, then the
//! reverse on SIGINT/SIGTERM.
//!
//! Teardown order is what keeps the DPDK binding sound (see `dpdk`): workers
//! stop and drop their mbufs, ports stop and close (their rings return mbufs),
//! the mempools are checked for leaks and freed, and EAL is cleaned up last.
//! Locals are declared in start-up order, so an early `?` unwinds the same way.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::Sender;
use tracing::{error, info, warn};
use zerohop_dataplane::acl::{Acl, AclAction, AclRule};
use zerohop_dataplane::fib::{Fib, FibBuilder};
use zerohop_dataplane::graph::{format_trace, GraphStats};
use zerohop_dataplane::l3::neighbor::NeighbourSync;
use zerohop_dataplane::l3::{build_graph_with_tcp, AclStats, L3Context, L3Policy, L3Port};
use zerohop_dataplane::stats::port_totals;
use zerohop_dataplane::worker::{L3Stage, PortMode, Worker};
use zerohop_dataplane::{WorkerStats, VECTOR_SIZE};
use zerohop_l7::access_log::AccessLogs;
use zerohop_l7::app::{Generation, L7Plan, L7Stats, L7};
use zerohop_l7::health::{Change, Shared};
use zerohop_l7::loadgen;
use zerohop_tcpstack::ports::{RssSteering, MICROSOFT_RSS_KEY};
use zerohop_tcpstack::{Handoff, Stack, TcpInput, TcpParams, TcpStats};

use crate::admin::Admin;
use crate::config::{self, Config, DataplaneConfig, Device, Hugepages};
use crate::dpdk::{self, af_packet, DpdkQueue, Eal, Mbuf, Mempool, Port, PortConfig};
use crate::introspect::{Process, View};

/// Per-lcore mempool cache size (DPDK's maximum is 512).
const MEMPOOL_CACHE: u32 = 256;
/// Bytes one mbuf takes in its pool: data room, the 128-byte rte_mbuf and the
/// mempool object header, rounded up.
const MBUF_FOOTPRINT: u64 = Mempool::DEFAULT_DATA_ROOM as u64 + 128 + 64;
/// The MTU every device starts with; zerohop sets another only when asked.
const DEFAULT_MTU: u16 = 1500;

/// Return the CPUs this process may run on. Must be called before EAL pins
/// the main thread to one CPU (afterwards it would return only that one).
pub fn available_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    cpus.sort_unstable();
    cpus
}

/// How many mbufs a socket's pool needs: every rx and tx ring full, plus each
/// worker's vector and cache, plus slack; as 2^n − 1 (the mempool ring's
/// most efficient size).
pub fn mbufs_needed(dp: &DataplaneConfig, ports_on_socket: usize) -> u32 {
    if let Some(n) = dp.mbufs {
        return n;
    }
    let workers = dp.cores.len() as u64;
    let rings = ports_on_socket as u64
        * workers
        * (u64::from(dp.rx_descriptors) + u64::from(dp.tx_descriptors));
    let per_worker = workers * (VECTOR_SIZE as u64 + u64::from(MEMPOOL_CACHE) * 3 / 2);
    let want = (rings + per_worker + 1024).max(4095);
    let pow = (want + 1).next_power_of_two();
    u32::try_from(pow - 1).unwrap_or(u32::MAX)
}

/// Mbuf data room: the default (2048 bytes of frame) unless a port's MTU
/// needs more, so every frame fits one segment; an af_packet port needs its
/// whole ring slot to fit (see [`af_packet`]).
pub fn data_room(dp: &DataplaneConfig) -> u16 {
    let headroom = Mempool::DEFAULT_DATA_ROOM - 2048;
    let largest = dp.ports.iter().map(|p| p.mtu).max().unwrap_or(1500);
    // Ethernet header, one VLAN tag and the CRC a NIC may leave in place.
    let frame = largest.saturating_add(14 + 4 + 4);
    let slot = dp
        .ports
        .iter()
        .filter_map(|p| af_packet::mbuf_data_needed(&p.device, p.mtu))
        .max()
        .map_or(0, |n| u16::try_from(n).unwrap_or(u16::MAX));
    Mempool::DEFAULT_DATA_ROOM.max(headroom.saturating_add(frame.max(slot)))
}

/// Hugepage state of this machine, from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugepageInfo {
    /// Free hugepages of the default size.
    pub free_pages: u64,
    /// Default hugepage size in bytes.
    pub page_size: u64,
    /// A hugetlbfs is mounted.
    pub mounted: bool,
}

impl HugepageInfo {
    /// Read /proc/meminfo and /proc/mounts.
    pub fn read() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |key: &str| -> u64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        Self {
            free_pages: field("HugePages_Free:"),
            page_size: field("Hugepagesize:") * 1024,
            mounted: mounts
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")),
        }
    }

    /// Return the free hugepage memory in bytes (0 if none is mounted).
    pub fn free_bytes(&self) -> u64 {
        if self.mounted {
            self.free_pages * self.page_size
        } else {
            0
        }
    }
}

/// Whether EAL runs on hugepages, and how much memory it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Use hugepages (else `--no-huge`).
    pub hugepages: bool,
    /// Megabytes EAL must be able to allocate.
    pub megabytes: u64,
}

/// Decide hugepages vs. `--no-huge` for the configured mode.
///
/// # Errors
/// `hugepages: on` while too few hugepages are free.
pub fn plan_memory(dp: &DataplaneConfig, mbufs: u64, huge: &HugepageInfo) -> Result<MemoryPlan> {
    // Pools plus EAL's own heap (rings, ethdev and driver structures).
    let footprint = MBUF_FOOTPRINT + u64::from(data_room(dp) - Mempool::DEFAULT_DATA_ROOM);
    let megabytes = (mbufs * footprint).div_ceil(1 << 20) + 128;
    let fits = huge.free_bytes() >= megabytes << 20;
    let hugepages =
        match dp.hugepages {
            Hugepages::Off => false,
            Hugepages::On if !fits => {
                bail!(
            "dataplane.hugepages: on, but only {} MB of hugepages are free ({} needed){}; run \
             scripts/setup.sh to reserve them, or set hugepages: auto",
            huge.free_bytes() >> 20,
            megabytes,
            if huge.mounted { "" } else { " and no hugetlbfs is mounted" }
        )
            }
            Hugepages::On => true,
            Hugepages::Auto => fits,
        };
    Ok(MemoryPlan {
        hugepages,
        megabytes,
    })
}

/// Build EAL's command line: zerohop's own arguments, then the config's
/// `eal_args` (which may override the file prefix or memory mode).
pub fn eal_args(dp: &DataplaneConfig, main_cpu: usize, mem: &MemoryPlan) -> Vec<String> {
    let mut args = vec!["zerohop".to_string(), "-l".into(), main_cpu.to_string()];
    let user_sets = |flags: &[&str]| {
        dp.eal_args.iter().any(|a| {
            flags
                .iter()
                .any(|f| a == f || a.starts_with(&format!("{f}=")))
        })
    };
    let user_chose_files = user_sets(&["--file-prefix", "--in-memory", "--no-shconf"]);
    if mem.hugepages {
        if !user_chose_files {
            // No files under /var/run/dpdk, nothing to clash with a parallel
            // process, nothing left behind.
            args.push("--in-memory".into());
        }
    } else {
        args.push("--no-huge".into());
        if !user_sets(&["-m", "--socket-mem"]) {
            args.push("-m".into());
            args.push(mem.megabytes.to_string());
        }
        if !user_chose_files {
            args.push("--no-shconf".into());
        }
    }
    // PCI devices are attached at init through the allowlist; vdevs are
    // probed one by one afterwards, so a failure names its device.
    for p in &dp.ports {
        if let Device::Pci { addr } = p.device() {
            args.push("-a".into());
            args.push(addr.to_string());
        }
    }
    args.extend(dp.eal_args.iter().cloned());
    args
}

/// The CPU for the main thread (admin, signals, stats): the first available
/// CPU that runs no worker, else the first worker's.
pub fn main_cpu(dp: &DataplaneConfig, available: &[usize]) -> usize {
    available
        .iter()
        .copied()
        .find(|c| !dp.cores.contains(c))
        .or_else(|| dp.cores.first().copied())
        .unwrap_or(0)
}

/// Worker threads; dropping the set stops and joins them, so that no worker
/// polls a port that is being closed.
struct Workers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    stats: Vec<Arc<WorkerStats>>,
    /// Per worker that routes: its graph's and ACLs' counters.
    l3: Vec<(Arc<GraphStats>, Arc<AclStats>)>,
    /// Per worker that proxies: its TCP and proxy counters.
    tcp: Vec<TcpCounters>,
    /// The clusters' health and circuit breakers, shared by the workers.
    shared: Arc<Shared>,
    /// The access logs the workers queue records for.
    logs: Arc<AccessLogs>,
    /// Per worker that proxies: where its reloads go.
    reloads: Vec<Sender<Generation>>,
    cores: Vec<usize>,
}

impl Workers {
    fn any_finished(&self) -> bool {
        self.handles.iter().any(|h| h.is_finished())
    }

    fn stop_and_join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let mut panicked = 0;
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                panicked += 1;
            }
        }
        if panicked > 0 {
            bail!("{panicked} worker thread(s) panicked");
        }
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            error!("{e}");
        }
    }
}

/// How each port forwards, and the L3 tables shared by all workers.
pub struct ForwardingPlan {
    /// Per port index.
    pub modes: Vec<PortMode>,
    /// The FIB, when any port is L3.
    pub fib: Option<Arc<Fib>>,
    /// Per port index: its input ACL.
    pub acls: Vec<Option<Arc<Acl>>>,
}

/// Derive port modes, the FIB and the ACLs from the configuration.
///
/// # Errors
/// A FIB that cannot be built (the config validation catches these first).
pub fn plan_forwarding(dp: &DataplaneConfig) -> Result<ForwardingPlan> {
    let peers = dp.xconnect_peers();
    let modes = dp
        .ports
        .iter()
        .zip(&peers)
        .map(|(p, peer)| match (peer, &p.address) {
            (Some(peer), _) => PortMode::Xconnect { peer: *peer },
            (None, Some(_)) => PortMode::L3,
            (None, None) => PortMode::Unused,
        })
        .collect();
    let l3 = dp.l3_ports();
    if l3.is_empty() {
        return Ok(ForwardingPlan {
            modes,
            fib: None,
            acls: vec![None; dp.ports.len()],
        });
    }
    let mut fib = FibBuilder::new();
    for (i, cidr) in &l3 {
        fib.interface(*i as u16, cidr.addr, cidr.len);
    }
    for r in &dp.routes {
        fib.route(r.prefix.addr, r.prefix.len, r.via);
    }
    let fib = fib.build().context("dataplane.routes")?;
    let acls = (0..dp.ports.len())
        .map(|i| {
            let rules: Vec<AclRule> = dp.acl_for_port(i).into_iter().map(acl_rule).collect();
            (!rules.is_empty()).then(|| Arc::new(Acl::new(rules)))
        })
        .collect();
    Ok(ForwardingPlan {
        modes,
        fib: Some(Arc::new(fib)),
        acls,
    })
}

fn acl_rule(r: &config::AclRuleConfig) -> AclRule {
    AclRule {
        action: match r.action {
            config::AclAction::Permit => AclAction::Permit,
            config::AclAction::Deny => AclAction::Deny,
        },
        src: r.src.map(|c| (c.addr, c.len)),
        dst: r.dst.map(|c| (c.addr, c.len)),
        protocol: r.protocol,
        src_ports: r.src_port.map(|p| (p.first, p.last)),
        dst_ports: r.dst_port.map(|p| (p.first, p.last)),
    }
}

/// The IPv4 layer's policy from the `dataplane.ip4` section.
pub fn l3_policy(ip4: &config::Ip4Options) -> L3Policy {
    L3Policy {
        icmp_unreachable: ip4.icmp_unreachable,
        accept_ip_options: ip4.ip_options == config::IpOptionsPolicy::Accept,
        icmp_rate_per_s: ip4.icmp_errors_per_second,
        neighbour_reachable_ms: u64::from(ip4.neighbour_timeout_s) * 1000,
    }
}

/// The TCP settings of worker `worker` of `workers`.
pub fn tcp_params(dp: &DataplaneConfig, worker: usize) -> TcpParams {
    let t = &dp.tcp;
    TcpParams {
        max_connections: t.max_connections,
        rx_buffer: t.rx_buffer as usize,
        tx_buffer: t.tx_buffer as usize,
        delayed_ack_ms: t.delayed_ack_ms,
        keepalive_s: t.keepalive_s,
        time_wait_ms: t.time_wait_ms,
        idle_release_ms: t.idle_release_ms,
        listener_connection_limit: t.listener_connection_limit,
        // One MSS for all connections: the smallest L3 port MTU.
        mtu: dp
            .ports
            .iter()
            .filter(|p| p.address.is_some())
            .map(|p| p.mtu)
            .min()
            .unwrap_or(1500),
        nagle: false,
        ephemeral_ports: t.ephemeral_range(),
        workers: dp.cores.len() as u16,
        worker: worker as u16,
        rss: None,
    }
}

/// The RSS steering all L3 ports share, if each hashes in hardware with
/// zerohop's key ([`MICROSOFT_RSS_KEY`]) and they have the same redirection
/// table: workers then choose ephemeral ports whose replies come back to
/// their own queue. Otherwise replies that reach another worker are handed
/// over (net_tap, af_packet and the other software queues).
fn rss_steering(ports: &[Port], dp: &DataplaneConfig) -> Option<RssSteering> {
    if dp.cores.len() < 2 {
        return None;
    }
    let mut retas = ports
        .iter()
        .zip(&dp.ports)
        .filter(|(_, c)| c.address.is_some())
        .map(|(p, _)| p.rss_reta());
    let first = retas.next()??;
    if !retas.all(|r| r.as_ref() == Some(&first)) {
        return None;
    }
    RssSteering::new(MICROSOFT_RSS_KEY, first).ok()
}

/// A seed from the OS for ISNs, ports and load balancing.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// One worker's TCP and proxy counters.
type TcpCounters = (Arc<TcpStats>, L7Stats);

/// One worker's TCP node and the counters the main thread reads.
type TcpNode = (
    Box<dyn zerohop_dataplane::graph::Node<Mbuf, L3Context<Mbuf>>>,
    Arc<TcpStats>,
    L7Stats,
);

/// A [`TcpNode`] and where its worker takes reloads from.
type TcpPart = (
    Box<dyn zerohop_dataplane::graph::Node<Mbuf, L3Context<Mbuf>>>,
    Arc<TcpStats>,
    L7Stats,
    Sender<Generation>,
);

/// Build worker `worker`'s tcp-input node with its proxy, if the config has
/// listeners, or with the load generator's clients and servers.
fn tcp_part(
    config: &Config,
    fib: &Arc<Fib>,
    worker: usize,
    handoff: Option<Handoff<Mbuf>>,
    rss: Option<RssSteering>,
    (shared, logs, run): (&Arc<Shared>, &AccessLogs, Option<&LoadgenRun>),
) -> Result<Option<TcpPart>> {
    let dp = &config.dataplane;
    // Worker 0 runs the active health checks and reviews outlier ejections.
    let plan = L7Plan::new(&config.envoy, shared.clone(), worker == 0, logs)
        .map_err(|e| anyhow!("routes: {e}"))?;
    if plan.is_empty() && run.is_none() {
        return Ok(None);
    }
    let addrs = dp.ports.iter().map(|p| p.address.map(|c| c.addr)).collect();
    let seed = random_seed();
    let params = TcpParams {
        rss,
        ..tcp_params(dp, worker)
    };
    let mut stack = Stack::new(params, fib.clone(), addrs, seed, 0)
        .map_err(|e| anyhow!("worker {worker}: TCP: {e}"))?;
    let (reload_tx, reload_rx) = crossbeam_channel::bounded(4);
    if let Some(run) = run {
        // The load generator has no proxy: its (zero) proxy counters keep
        // the exit report's shape, and nothing sends it reloads.
        let app = loadgen::Loadgen::new(run.plan.clone(), run.shared.clone(), worker, seed);
        for l in app.listens() {
            stack.listen(l);
        }
        let stats = Generation::new(plan, seed).stats();
        let tcp_stats = stack.stats().clone();
        return Ok(Some((
            Box::new(TcpInput::new(stack, app, handoff)),
            tcp_stats,
            stats,
            reload_tx,
        )));
    }
    for l in plan.listens() {
        stack.listen(l);
    }
    let proxy = L7::with_reloads(Generation::new(plan, seed.rotate_left(17)), Some(reload_rx));
    let (tcp_stats, proxy_stats) = (stack.stats().clone(), proxy.stats());
    Ok(Some((
        Box::new(TcpInput::new(stack, proxy, handoff)),
        tcp_stats,
        proxy_stats,
        reload_tx,
    )))
}

/// Build one worker's IPv4 graph and context.
fn l3_stage(
    config: &Config,
    plan: &ForwardingPlan,
    ports: &[Port],
    pool: &Arc<Mempool>,
    sync: Option<NeighbourSync>,
    tcp: Option<TcpNode>,
) -> Result<(Option<L3Stage<Mbuf>>, Option<TcpCounters>)> {
    let dp = &config.dataplane;
    let Some(fib) = &plan.fib else {
        return Ok((None, None));
    };
    let l3_ports = ports
        .iter()
        .zip(&dp.ports)
        .map(|(port, cfg)| L3Port {
            mac: port.mac(),
            address: cfg.address.map(|c| (c.addr, c.len)),
            mtu: cfg.mtu,
        })
        .collect();
    let pool = pool.clone();
    let mut ctx = L3Context::new(
        l3_ports,
        fib.clone(),
        plan.acls.clone(),
        Box::new(move || pool.alloc()),
        l3_policy(&dp.ip4),
    );
    ctx.sync = sync;
    let (node, stats) = match tcp {
        Some((node, t, p)) => (Some(node), Some((t, p))),
        None => (None, None),
    };
    let mut graph = build_graph_with_tcp::<Mbuf>(ports.len(), dpdk::cycles, node)
        .map_err(|e| anyhow!("{e}"))?;
    graph.trace(dp.trace_packets);
    Ok((
        Some(L3Stage::new(graph, ctx).map_err(|e| anyhow!(e))?),
        stats,
    ))
}

/// Start one pinned, EAL-registered worker per configured core; each owns
/// queue pair i of every port.
fn start_workers(
    config: &Config,
    plan: &ForwardingPlan,
    ports: &mut [Port],
    pool: &Arc<Mempool>,
    stop: &Arc<AtomicBool>,
    run: Option<&LoadgenRun>,
) -> Result<Workers> {
    let dp = &config.dataplane;
    // Queue pair i of every port goes to worker i.
    let mut taken: Vec<std::vec::IntoIter<DpdkQueue>> = ports
        .iter_mut()
        .map(|p| p.take_queues().into_iter())
        .collect();
    let mut workers = Workers {
        stop: stop.clone(),
        handles: Vec::new(),
        stats: Vec::new(),
        l3: Vec::new(),
        tcp: Vec::new(),
        shared: Arc::new(Shared::new(&config.envoy)),
        logs: Arc::new(AccessLogs::new(&config.envoy).map_err(|e| anyhow!("access_log: {e}"))?),
        reloads: Vec::new(),
        cores: dp.cores.clone(),
    };
    // Segments for another worker's upstream connections go to it.
    let mut handoffs: Vec<Option<Handoff<Mbuf>>> = if dp.cores.len() > 1 {
        Handoff::mesh(dp.cores.len(), 4096)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        Vec::new()
    };
    let (started_tx, started_rx) = mpsc::channel::<Result<(), String>>();
    // Workers share what they learn by ARP (a reply may reach any queue).
    let mut syncs: Vec<Option<NeighbourSync>> = if plan.fib.is_some() && dp.cores.len() > 1 {
        NeighbourSync::mesh(dp.cores.len())
            .into_iter()
            .map(Some)
            .collect()
    } else {
        Vec::new()
    };
    let steering = rss_steering(ports, dp);
    if plan.fib.is_some() && dp.cores.len() > 1 {
        match &steering {
            Some(s) => info!(
                "tcp: ephemeral ports steered by RSS ({}-entry table): replies return to the \
                 opening worker",
                s.reta().len()
            ),
            None => info!(
                "tcp: no hardware RSS to predict on the L3 ports; replies that reach another \
                 worker are handed over"
            ),
        }
    }
    for (i, &cpu) in dp.cores.iter().enumerate() {
        let queues: Vec<DpdkQueue> = taken.iter_mut().filter_map(Iterator::next).collect();
        if queues.len() != ports.len() {
            bail!("worker {i}: a port has fewer queue pairs than workers");
        }
        let stats = Arc::new(WorkerStats::new(ports.len()));
        let sync = syncs.get_mut(i).and_then(Option::take);
        let handoff = handoffs.get_mut(i).and_then(Option::take);
        let tcp = match &plan.fib {
            Some(fib) => tcp_part(
                config,
                fib,
                i,
                handoff,
                steering.clone(),
                (&workers.shared, &workers.logs, run),
            )?,
            None => None,
        };
        let tcp = tcp.map(|(node, t, p, reloads)| {
            workers.reloads.push(reloads);
            (node, t, p)
        });
        let (l3, tcp_stats) = l3_stage(config, plan, ports, pool, sync, tcp)?;
        if let Some(t) = tcp_stats {
            workers.tcp.push(t);
        }
        if let Some(stage) = &l3 {
            workers.l3.push((
                stage.graph().stats().clone(),
                stage.context().acl_stats.clone(),
            ));
        }
        let mut worker = Worker::new(queues, plan.modes.clone(), dp.burst, stats.clone(), l3);
        // The load generator's schedule is in microseconds: poll it every loop.
        worker.set_tick_every_loop(run.is_some());
        let stop = stop.clone();
        let started = started_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("zh-worker-{i}"))
            .spawn(move || {
                // Pin first: rte_thread_register records the current affinity.
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    let _ = started.send(Err(format!("worker {i}: cannot pin to CPU {cpu}")));
                    return;
                }
                let registration = match Eal::register_thread() {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = started.send(Err(format!("worker {i}: {e}")));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                worker.run(&stop);
                // The worker's mbufs (vectors, packets held for ARP) go back
                // to this lcore's cache before it stops being an EAL thread.
                drop(worker);
                drop(registration);
            })
            .with_context(|| format!("spawn worker {i}"))?;
        workers.handles.push(handle);
        workers.stats.push(stats);
    }
    drop(started_tx);
    for _ in 0..dp.cores.len() {
        match started_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("{e}"),
            Err(_) => bail!("a worker did not start within 10 s"),
        }
    }
    Ok(workers)
}

/// How the process runs and stops.
#[derive(Clone)]
pub struct RunOptions {
    /// On SIGTERM or `/quitquitquit`: how long open connections may take to
    /// finish before the workers stop (Envoy's `--drain-time-s`).
    pub drain_time: Duration,
    /// `zerohop loadgen`: the workers run the load generator instead of the
    /// configured proxies, and the process stops when it is done.
    pub loadgen: Option<LoadgenRun>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            drain_time: Duration::from_secs(5),
            loadgen: None,
        }
    }
}

/// `zerohop loadgen`'s plan and the state its workers share.
#[derive(Clone)]
pub struct LoadgenRun {
    pub plan: Arc<loadgen::Plan>,
    pub shared: Arc<loadgen::Shared>,
    /// Called once the workers have stopped, before the ports close: the
    /// report is final then.
    pub done: Arc<dyn Fn() + Send + Sync>,
    /// After `done`, keep the ports open until every link is down (the peer
    /// exited) or this long has passed. DPDK 22.11's memif driver unmaps a
    /// disconnected peer's rings under a worker that may be polling them
    /// (a crash in the process that stays), so a harness stops the zerohop
    /// under test first while the load generator, its workers stopped,
    /// lingers.
    pub linger: Duration,
}

/// Wait until every port's link is down, at most `within`.
fn wait_links_down(ports: &[Port], within: Duration) {
    let until = Instant::now() + within;
    while Instant::now() < until && ports.iter().any(|p| p.link().up) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long `zerohop loadgen` waits for its ports' links (a memif port is up
/// once its peer, the zerohop under test, has connected).
const LOADGEN_LINK_WAIT: Duration = Duration::from_secs(10);

/// Wait until every port's link is up, or fail naming the ones that are not.
fn wait_links_up(ports: &[Port], within: Duration) -> Result<()> {
    let until = Instant::now() + within;
    loop {
        let down: Vec<&str> = ports
            .iter()
            .filter(|p| !p.link().up)
            .map(|p| p.name())
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!(
                "port(s) {} still down after {} s: is the peer running (for net_memif, the \
                 process with the other role on the same socket)?",
                down.join(", "),
                within.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the dataplane until SIGINT or SIGTERM (or, for the load generator,
/// until it is done); return an error for anything that stops it from
/// starting or leaks on the way out.
pub fn run(config: &Config, config_path: &Path, options: RunOptions) -> Result<()> {
    let dp = &config.dataplane;
    let available = available_cpus();
    config.check_cores(&available)?;

    // SIGINT stops at once; SIGTERM (and /quitquitquit) drains first.
    let stop = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())
        .context("install signal handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())
        .context("install signal handler")?;
    // SIGHUP reloads the configuration file.
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("install signal handler")?;
    let config_text = std::fs::read_to_string(config_path).unwrap_or_default();

    let nports_by_socket_guess = dp.ports.len();
    let total_mbufs = u64::from(mbufs_needed(dp, nports_by_socket_guess));
    let mem = plan_memory(dp, total_mbufs, &HugepageInfo::read())?;
    if !mem.hugepages && dp.hugepages == Hugepages::Auto {
        info!(
            "not enough free 2 MB hugepages for {} MB; running with --no-huge (run \
             scripts/setup.sh to reserve hugepages)",
            mem.megabytes
        );
    }
    let args = eal_args(dp, main_cpu(dp, &available), &mem);
    info!(
        "config {}: starting EAL: {}",
        config_path.display(),
        args.join(" ")
    );
    let eal = Eal::init(&args).context("EAL initialisation failed")?;

    // Declared before the ports so that, on any early return, the ports
    // (and the mbufs in their rings) go before the pools they came from.
    let mut pools: BTreeMap<i32, Arc<Mempool>> = BTreeMap::new();
    let mut ports = Vec::with_capacity(dp.ports.len());
    for p in &dp.ports {
        let port = match p.device() {
            Device::Vdev { .. } => {
                let spec = af_packet::spec_for_mtu(&p.device, p.mtu).map_err(|e| anyhow!(e))?;
                let spec = af_packet::spec_for_ring(&spec, dp.tcp.rx_buffer).into_owned();
                if spec != p.device.as_str() {
                    info!(
                        "port {}: device `{spec}` (ring sized for mtu {} and tcp rx_buffer {})",
                        p.name, p.mtu, dp.tcp.rx_buffer
                    );
                }
                Port::probe_vdev(&p.name, &spec)
            }
            Device::Pci { addr } => Port::attach(&p.name, addr, &p.device),
        }
        .with_context(|| format!("dataplane.ports: device `{}` of port {}", p.device, p.name))?;
        ports.push(port);
    }

    // One pool per NUMA socket that has ports, so rings fill from local memory.
    let mut by_socket: BTreeMap<i32, usize> = BTreeMap::new();
    for p in &ports {
        *by_socket.entry(p.socket_id()).or_default() += 1;
    }
    let plan = plan_forwarding(dp)?;
    for (&socket, &n) in &by_socket {
        let count = mbufs_needed(dp, n);
        let pool = Mempool::new(
            &format!("zh_pool_s{socket}"),
            count,
            MEMPOOL_CACHE,
            data_room(dp),
            socket,
        )
        .context("create the mbuf pool")?;
        info!("mempool {}: {count} mbufs on socket {socket}", pool.name());
        pools.insert(socket, Arc::new(pool));
    }

    let queues = u16::try_from(dp.cores.len()).context("too many cores")?;
    for (i, port) in ports.iter_mut().enumerate() {
        let pool = pools
            .get(&port.socket_id())
            .ok_or_else(|| anyhow!("no mempool for socket {}", port.socket_id()))?;
        port.configure(
            &PortConfig {
                queues,
                rx_descriptors: dp.rx_descriptors,
                tx_descriptors: dp.tx_descriptors,
                rss_key: Some(MICROSOFT_RSS_KEY),
            },
            pool,
        )?;
        let mtu = dp.ports[i].mtu;
        if mtu != DEFAULT_MTU {
            if let Some(ifname) = af_packet::iface(&dp.ports[i].device) {
                // DPDK 22.11's ethdev caps this driver at MTU 1500; its frames
                // are only as limited as their ring slots, which
                // spec_for_mtu sized.
                af_packet::set_kernel_mtu(ifname, mtu).with_context(|| {
                    format!(
                        "port {}: set the MTU of interface {ifname} to {mtu}",
                        port.name()
                    )
                })?;
            } else {
                port.set_mtu(mtu)
                    .context("the device does not take this MTU; lower dataplane.ports[].mtu")?;
            }
        }
        port.start().with_context(|| {
            if port.device().starts_with("net_memif") && port.device().contains("role=client") {
                "a net_memif client starts only once the process with role=server on the same \
                 socket is running"
                    .to_owned()
            } else {
                format!("start port {}", port.name())
            }
        })?;
        if matches!(plan.modes[i], PortMode::Xconnect { .. }) {
            // A cross-connect forwards frames for any MAC.
            if let Err(e) = port.enable_promiscuous() {
                warn!("{e}; frames for other MACs may not be received");
            }
        }
        let link = port.link();
        let mac = port.mac();
        info!(
            "port {}: {} (driver {}, port id {}, mac {}, link {} {} Mbps, {} queue pair(s){})",
            port.name(),
            port.device(),
            port.driver_name(),
            port.id(),
            format_mac(&mac),
            if link.up { "up" } else { "down" },
            link.speed_mbps,
            port.queues(),
            if port.promiscuous() {
                ", promiscuous"
            } else {
                ""
            }
        );
        if let Some(addr) = dp.ports[i].address {
            info!(
                "port {}: L3 address {addr}, mtu {}",
                port.name(),
                dp.ports[i].mtu
            );
        }
    }
    if let Some(fib) = &plan.fib {
        for (prefix, len, route) in fib.routes() {
            info!("fib: {prefix}/{len} -> {route:?}");
        }
    }
    // Workers allocate (ARP requests) from the pool of the lowest socket.
    let worker_pool = pools
        .values()
        .next()
        .cloned()
        .ok_or_else(|| anyhow!("no mempool"))?;

    if options.loadgen.is_some() {
        wait_links_up(&ports, LOADGEN_LINK_WAIT)?;
    }
    let mut workers = start_workers(
        config,
        &plan,
        &mut ports,
        &worker_pool,
        &stop,
        options.loadgen.as_ref(),
    )?;
    drop(worker_pool);
    for (i, &(a, b)) in xconnect_pairs(dp).iter().enumerate() {
        info!(
            "xconnect {i}: {} <-> {}",
            dp.ports[a].name, dp.ports[b].name
        );
    }
    info!(
        "zerohop ready: {} port(s), {} worker(s) on CPU(s) {:?}",
        ports.len(),
        workers.handles.len(),
        workers.cores
    );

    let port_hw: Arc<Vec<[AtomicU64; 7]>> =
        Arc::new(ports.iter().map(|_| Default::default()).collect());
    let mempools: Arc<Vec<(String, AtomicU64)>> = Arc::new(
        pools
            .values()
            .map(|p| (p.name().to_owned(), AtomicU64::new(0)))
            .collect(),
    );
    let quit = Arc::new(AtomicBool::new(false));
    let view = Arc::new(Mutex::new(View {
        generations: if workers.tcp.is_empty() {
            Vec::new()
        } else {
            vec![workers.tcp.iter().map(|(_, l)| l.clone()).collect()]
        },
        shared: workers.shared.clone(),
        logs: vec![workers.logs.clone()],
        envoy: config.envoy.clone(),
        config_text,
    }));
    let (reload_tx, reload_rx) = crossbeam_channel::bounded(4);
    let process = Arc::new(Process {
        ports: dp.ports.iter().map(|p| p.name.clone()).collect(),
        port_hw: port_hw.clone(),
        mempools: mempools.clone(),
        workers: workers.stats.clone(),
        cores: workers.cores.clone(),
        l3: workers.l3.clone(),
        tcp: workers.tcp.iter().map(|(t, _)| t.clone()).collect(),
        view: view.clone(),
        hz: dpdk::cycles_hz().max(1) as f64,
        quit: quit.clone(),
        reload: reload_tx,
    });
    let admin = match config.envoy.admin {
        Some(a) => Some(Admin::start(SocketAddr::V4(a.address), process.clone())?),
        None => None,
    };
    let log_writer = LogWriter::start(view.clone())?;
    let mut drain_until: Option<Instant> = None;
    let mut reloader = Reloader::new(config, config_path, hup);
    let mut next_progress = Instant::now() + Duration::from_secs(1);
    loop {
        if stop.load(Ordering::Relaxed) {
            info!("signal received: stopping workers");
            break;
        }
        if workers.any_finished() {
            stop.store(true, Ordering::SeqCst);
            workers.stop_and_join()?;
            bail!("a worker thread exited unexpectedly");
        }
        if let Some(run) = &options.loadgen {
            // A load generator has nothing to drain or reload: a signal
            // stops it, and it stops by itself when its run is over.
            if Instant::now() >= next_progress {
                eprintln!("{}", run.shared.progress());
                next_progress += Duration::from_secs(1);
            }
            if run.shared.done() {
                info!("load generator done: stopping workers");
                break;
            }
            if term.load(Ordering::Relaxed) {
                info!("signal received: stopping workers");
                break;
            }
            snapshot(&ports, &port_hw, &pools, &mempools);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if drain_until.is_none() && (term.load(Ordering::Relaxed) || quit.load(Ordering::Relaxed)) {
            info!(
                "draining: listeners closed; open connections have {} s to finish",
                options.drain_time.as_secs_f64()
            );
            lock(&view).shared.drain();
            drain_until = Some(Instant::now() + options.drain_time);
        }
        if drain_until.is_none() {
            reloader.poll(&workers, &view, &reload_rx);
        }
        if let Some(until) = drain_until {
            let open = lock(&view).downstream_open();
            if open == 0 {
                info!("drained: no connection open; stopping workers");
                break;
            }
            if Instant::now() >= until {
                info!("drain time over with {open} connection(s) open: resetting them");
                // The workers reset them on their next loop; give the resets
                // time to leave before the ports close.
                lock(&view).shared.abort_all();
                std::thread::sleep(Duration::from_millis(100));
                info!("stopping workers");
                break;
            }
        }
        log_health_events(&lock(&view).shared);
        snapshot(&ports, &port_hw, &pools, &mempools);
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(admin);
    drop(process);
    log_health_events(&lock(&view).shared);
    workers.stop_and_join()?;
    if let Some(run) = &options.loadgen {
        (run.done)();
        if !run.linger.is_zero() {
            info!(
                "lingering up to {} s for the peers to leave",
                run.linger.as_secs_f64()
            );
            wait_links_down(&ports, run.linger);
        }
    }
    // After the workers, so that their last records are written too.
    drop(log_writer);
    report(&ports, &workers);
    report_l3(dp, &workers);
    report_tcp(&workers, &lock(&view));
    drop(workers);

    // Closing the ports returns the mbufs held in their rings.
    drop(ports);
    let mut leaked = 0;
    for pool in pools.values() {
        let in_use = pool.in_use();
        info!("mempool {}: mbufs_in_use={in_use}", pool.name());
        leaked += in_use;
    }
    drop(pools);
    drop(eal);
    if leaked > 0 {
        bail!("{leaked} mbufs were not returned to their pools");
    }
    info!("shutdown complete: mbufs_in_use=0");
    Ok(())
}

fn xconnect_pairs(dp: &DataplaneConfig) -> Vec<(usize, usize)> {
    dp.xconnect
        .iter()
        .filter_map(|[a, b]| Some((dp.port_index(a)?, dp.port_index(b)?)))
        .collect()
}

/// Log the final counters of every port and worker.
fn report(ports: &[Port], workers: &Workers) {
    let totals = port_totals(workers.stats.iter().map(|s| s.as_ref()), ports.len());
    for (port, t) in ports.iter().zip(&totals) {
        let hw = port.stats().unwrap_or_default();
        info!(
            "port {}: rx_packets={} tx_packets={} rx_dropped={} tx_dropped={} imissed={} \
             ierrors={} oerrors={} rx_nombuf={} rx_bytes={} tx_bytes={}",
            port.name(),
            t.rx_packets,
            t.tx_packets,
            t.rx_dropped,
            t.tx_dropped,
            hw.imissed,
            hw.ierrors,
            hw.oerrors,
            hw.rx_nombuf,
            hw.ibytes,
            hw.obytes
        );
    }
    let hz = dpdk::cycles_hz().max(1) as f64;
    for (i, (s, cpu)) in workers.stats.iter().zip(&workers.cores).enumerate() {
        let it = s.iterations.get();
        let busy = s.busy_iterations.get();
        let cycles = s.busy_cycles.get();
        info!(
            "worker {i} (cpu {cpu}): iterations={it} busy_iterations={busy} packets={} \
             busy_ratio={:.6} busy_cycles={cycles} busy_ms={:.1}",
            s.packets.get(),
            if it == 0 {
                0.0
            } else {
                busy as f64 / it as f64
            },
            cycles as f64 / hz * 1e3,
        );
    }
}

/// Log the graph's runtime counters (VPP's `show runtime`), drops by node
/// and reason (`show errors`), ACL hits and any packet trace.
fn report_l3(dp: &DataplaneConfig, workers: &Workers) {
    let hz = dpdk::cycles_hz().max(1) as f64;
    for (w, (graph, acl)) in workers.l3.iter().enumerate() {
        info!(
            "worker {w} runtime: {:<16} {:>10} {:>12} {:>12} {:>14}",
            "node", "calls", "vectors", "vectors/call", "cycles/packet"
        );
        for n in &graph.nodes {
            let (calls, packets) = (n.calls.get(), n.packets.get());
            if calls == 0 && packets == 0 {
                continue;
            }
            let cpp = if packets == 0 {
                0.0
            } else {
                n.cycles.get() as f64 / packets as f64
            };
            info!(
                "worker {w} runtime: {:<16} {:>10} {:>12} {:>12.1} {:>14.1}",
                n.name,
                calls,
                packets,
                packets as f64 / calls.max(1) as f64,
                cpp
            );
        }
        for (node, reason, count) in graph.errors() {
            info!("worker {w} error: node={node} reason={reason} count={count}");
        }
        for (port, hits) in acl.hits.iter().enumerate() {
            for (rule, c) in hits.iter().enumerate() {
                info!(
                    "worker {w} acl: port={} rule={rule} hits={}",
                    dp.ports[port].name,
                    c.get()
                );
            }
            if !hits.is_empty() {
                info!(
                    "worker {w} acl: port={} default-deny hits={}",
                    dp.ports[port].name,
                    acl.default_deny[port].get()
                );
            }
        }
        let trace = graph.trace.lock().unwrap_or_else(|e| e.into_inner());
        if !trace.is_empty() {
            info!("worker {w} packet trace:\n{}", format_trace(&trace));
        }
    }
    if !workers.l3.is_empty() {
        info!("cycle counter: {:.0} MHz", hz / 1e6);
    }
}

/// Log the TCP layer's counters per worker and the proxy's Envoy-named
/// stats summed over workers and configuration generations
/// (`stat <name>: <value>`).
fn report_tcp(workers: &Workers, view: &View) {
    for (w, (t, _)) in workers.tcp.iter().enumerate() {
        let fields: Vec<String> = t
            .values()
            .into_iter()
            .map(|(name, v)| format!("{name}={v}"))
            .collect();
        info!("worker {w} tcp: {}", fields.join(" "));
    }
    for (name, v) in view.values() {
        info!("stat {name}: {v}");
    }
}

/// Lock the view (only the main and admin threads do).
fn lock(view: &Mutex<View>) -> std::sync::MutexGuard<'_, View> {
    view.lock().unwrap_or_else(|e| e.into_inner())
}

/// Configuration reloads: on SIGHUP, `POST /reload`, or a change of the
/// file (its size or modification time, looked at once a second).
struct Reloader {
    path: std::path::PathBuf,
    /// The configuration in effect.
    config: Config,
    hup: Arc<AtomicBool>,
    /// The file as last seen (modification time, size).
    seen: Option<(std::time::SystemTime, u64)>,
    next_look: Instant,
    generation: u64,
}

impl Reloader {
    fn new(config: &Config, path: &Path, hup: Arc<AtomicBool>) -> Reloader {
        Reloader {
            path: path.to_owned(),
            config: config.clone(),
            hup,
            seen: file_stamp(path),
            next_look: Instant::now() + Duration::from_secs(1),
            generation: 0,
        }
    }

    /// Reload if asked to, or if the file changed.
    fn poll(
        &mut self,
        workers: &Workers,
        view: &Mutex<View>,
        admin: &crossbeam_channel::Receiver<Sender<Result<String, String>>>,
    ) {
        if self.hup.swap(false, Ordering::AcqRel) {
            info!("SIGHUP: reloading {}", self.path.display());
            // The outcome is logged.
            let _ = self.reload(workers, view);
        }
        while let Ok(reply) = admin.try_recv() {
            info!("/reload: reloading {}", self.path.display());
            let _ = reply.send(self.reload(workers, view));
        }
        if Instant::now() >= self.next_look {
            self.next_look = Instant::now() + Duration::from_secs(1);
            let stamp = file_stamp(&self.path);
            if stamp.is_some() && stamp != self.seen {
                info!("{} changed: reloading", self.path.display());
                let _ = self.reload(workers, view);
            }
        }
    }

    /// Load, check and switch to the file's configuration; the old one stays
    /// when anything is wrong. Logs and returns the outcome.
    fn reload(&mut self, workers: &Workers, view: &Mutex<View>) -> Result<String, String> {
        self.seen = file_stamp(&self.path);
        let result = self.try_reload(workers, view);
        match &result {
            Ok(msg) => info!("reload: {msg}"),
            Err(e) => error!("reload refused, the configuration in effect stays: {e}"),
        }
        result
    }

    fn try_reload(&mut self, workers: &Workers, view: &Mutex<View>) -> Result<String, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let config = Config::from_yaml(&text, &self.path.display().to_string())
            .map_err(|e| e.to_string())?;
        if config.dataplane != self.config.dataplane {
            return Err(
                "the dataplane section changed (ports, cores, memory, routes, ...): \
                        that needs a restart"
                    .to_owned(),
            );
        }
        if config.envoy.admin != self.config.envoy.admin {
            return Err("the admin address changed: that needs a restart".to_owned());
        }
        if workers.reloads.is_empty() {
            return Err(
                "zerohop started without listeners, so no worker runs the proxies: \
                        adding the first listener needs a restart"
                    .to_owned(),
            );
        }
        // Everything is built before anything is switched.
        let control = lock(view).shared.control().clone();
        let shared = Arc::new(Shared::with_control(&config.envoy, control));
        shared.inherit(&lock(view).shared);
        let logs =
            Arc::new(AccessLogs::new(&config.envoy).map_err(|e| format!("access_log: {e}"))?);
        let mut generations = Vec::with_capacity(workers.reloads.len());
        for w in 0..workers.reloads.len() {
            let plan = L7Plan::new(&config.envoy, shared.clone(), w == 0, &logs)
                .map_err(|e| format!("routes: {e}"))?;
            generations.push(Generation::new(plan, random_seed()));
        }
        let stats: Vec<L7Stats> = generations.iter().map(Generation::stats).collect();
        for (tx, g) in workers.reloads.iter().zip(generations) {
            tx.try_send(g)
                .map_err(|_| "a worker has not taken the previous reload yet".to_owned())?;
        }
        self.generation += 1;
        let listeners = config.envoy.listeners.len();
        let clusters = config.envoy.clusters.len();
        {
            let mut v = lock(view);
            v.generations.push(stats);
            v.shared = shared;
            v.logs.push(logs);
            v.envoy = config.envoy.clone();
            v.config_text = text;
        }
        self.config = config;
        Ok(format!(
            "configuration generation {} in effect: {listeners} listener(s), {clusters} \
             cluster(s); connections open before it finish on the one they began with",
            self.generation
        ))
    }
}

/// A file's modification time and size, to notice a change.
fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The access log writer thread: formats and writes what the workers queue.
struct LogWriter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// The writer thread.
    /// Start it; it writes the logs of every configuration generation.
    fn start(view: Arc<Mutex<View>>) -> Result<Option<LogWriter>> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("zh-access-log".to_owned())
            .spawn(move || loop {
                let done = flag.load(Ordering::Acquire);
                let logs: Vec<Arc<AccessLogs>> = lock(&view)
                    .logs
                    .iter()
                    .filter(|l| !l.is_empty())
                    .cloned()
                    .collect();
                let mut written = 0;
                for l in &logs {
                    written += l.flush();
                    for e in l.take_errors() {
                        warn!("access log: {e}");
                    }
                }
                if done {
                    return;
                }
                if written == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .context("spawn the access log writer")?;
        Ok(Some(LogWriter {
            stop,
            handle: Some(handle),
        }))
    }
}

impl Drop for LogWriter {
    /// Write what is queued and stop; a writer stuck on its file (a full
    /// pipe, a hung NFS mount) is left behind after 2 s rather than holding
    /// up the exit.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let Some(h) = self.handle.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let _ = h.join();
        } else {
            warn!("access log: the writer is stuck writing; exiting without it");
        }
    }
}

/// Copy what only the main thread reads (device counters, mempools) where
/// the admin API finds it.
fn snapshot(
    ports: &[Port],
    port_hw: &[[AtomicU64; 7]],
    pools: &BTreeMap<i32, Arc<Mempool>>,
    mempools: &[(String, AtomicU64)],
) {
    for (port, hw) in ports.iter().zip(port_hw) {
        let Ok(s) = port.stats() else {
            continue;
        };
        let values = [
            s.ipackets,
            s.opackets,
            s.ibytes,
            s.obytes,
            s.imissed,
            s.ierrors,
            s.rx_nombuf,
        ];
        for (slot, v) in hw.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
    }
    for (pool, (_, in_use)) in pools.values().zip(mempools) {
        in_use.store(u64::from(pool.in_use()), Ordering::Relaxed);
    }
}

/// Log the endpoints' health changes (active checks, ejections) the workers
/// queued.
fn log_health_events(shared: &Shared) {
    for e in shared.drain_events() {
        let Some(c) = shared.clusters.get(e.cluster) else {
            continue;
        };
        let endpoint = c
            .endpoints
            .get(e.endpoint)
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        let (healthy, total) = (c.healthy_count(), c.endpoints.len());
        match e.change {
            Change::HealthCheckPassed | Change::Unejected => info!(
                "cluster {}: endpoint {endpoint}: {e} ({healthy}/{total} healthy)",
                c.name
            ),
            _ => warn!(
                "cluster {}: endpoint {endpoint}: {e} ({healthy}/{total} healthy)",
                c.name
            ),
        }
    }
}

/// Format a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
