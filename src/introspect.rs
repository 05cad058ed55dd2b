//! What the admin API sees of the running process ([`Process`], an
//! [`Introspect`]): every worker's counters, the clusters' shared state, the
//! graph's runtime counters and trace, and the snapshots the main thread
//! takes of what only it may read (device counters, mempools).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use zerohop_dataplane::graph::{format_trace, GraphStats};
use zerohop_dataplane::l3::AclStats;
use zerohop_dataplane::WorkerStats;
use zerohop_l7::access_log::AccessLogs;
use zerohop_l7::app::L7Stats;
use zerohop_l7::config::EnvoyConfig;
use zerohop_l7::health::{Shared, FAILED_ACTIVE_HC, FAILED_OUTLIER_CHECK, PENDING_ACTIVE_HC};
use zerohop_l7::histogram::BOUNDS_US;
use zerohop_tcpstack::TcpStats;

use crate::admin::format::Histogram;
use crate::admin::Introspect;

/// Device counters of a port, as the main thread last read them.
pub const PORT_HW: [&str; 7] = [
    "ipackets",
    "opackets",
    "ibytes",
    "obytes",
    "imissed",
    "ierrors",
    "rx_nombuf",
];

/// The running process as the admin API sees it.
pub struct Process {
    /// Port names, in config order.
    pub ports: Vec<String>,
    /// Per port: [`PORT_HW`], refreshed by the main thread.
    pub port_hw: Arc<Vec<[AtomicU64; 7]>>,
    /// (mempool name, mbufs in use), refreshed by the main thread.
    pub mempools: Arc<Vec<(String, AtomicU64)>>,
    pub workers: Vec<Arc<WorkerStats>>,
    pub cores: Vec<usize>,
    pub l3: Vec<(Arc<GraphStats>, Arc<AclStats>)>,
    /// Per worker that proxies: its TCP stack's counters.
    pub tcp: Vec<Arc<TcpStats>>,
    /// The proxies' side, which a reload changes.
    pub view: Arc<Mutex<View>>,
    /// Cycle counter frequency, Hz.
    pub hz: f64,
    /// Set by `/quitquitquit`; the main thread drains and exits.
    pub quit: Arc<AtomicBool>,
    /// `/reload`: the main thread reloads and answers on the channel given.
    pub reload: Sender<Sender<Result<String, String>>>,
}

/// The configuration in effect and the proxies' counters of every
/// generation (a reload adds one), for the admin API and the exit report.
/// Only the main and admin threads lock it; workers never do.
pub struct View {
    /// Per configuration generation, per worker: the proxies' counters.
    pub generations: Vec<Vec<L7Stats>>,
    /// The current generation's clusters (health, circuit breakers).
    pub shared: Arc<Shared>,
    /// Every generation's access logs (older ones may still get records).
    pub logs: Vec<Arc<AccessLogs>>,
    /// The configuration in effect, and its file's text.
    pub envoy: EnvoyConfig,
    pub config_text: String,
}

impl View {
    /// The proxies' Envoy-named stats summed over workers and generations
    /// (by name: a reload may add or remove listeners and clusters), in the
    /// order first seen; then the current clusters' shared state and the
    /// access logs' counters.
    pub fn values(&self) -> Vec<(String, u64)> {
        let mut sums: Vec<(String, u64)> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        for l in self.generations.iter().flatten() {
            for (name, v) in l.values() {
                match index.get(&name) {
                    Some(&i) => sums[i].1 += v,
                    None => {
                        index.insert(name.clone(), sums.len());
                        sums.push((name, v));
                    }
                }
            }
        }
        if !self.generations.is_empty() {
            sums.extend(self.shared.values());
            for l in &self.logs {
                sums.extend(l.values());
            }
        }
        sums
    }

    /// Downstream connections open now, over every listener, worker and
    /// generation.
    pub fn downstream_open(&self) -> u64 {
        self.generations
            .iter()
            .flatten()
            .flat_map(L7Stats::values)
            .filter(|(name, _)| name.ends_with(".downstream_cx_active"))
            .map(|(_, v)| v)
            .sum()
    }
}

impl Process {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dataplane_values(&self, v: &mut Vec<(String, u64)>) {
        for (w, s) in self.workers.iter().enumerate() {
            let p = format!("dataplane.worker.{w}");
            let (it, busy) = (s.iterations.get(), s.busy_iterations.get());
            v.push((format!("{p}.iterations"), it));
            v.push((format!("{p}.busy_iterations"), busy));
            v.push((format!("{p}.busy_cycles"), s.busy_cycles.get()));
            v.push((format!("{p}.packets"), s.packets.get()));
            v.push((
                format!("{p}.busy_ratio_permille"),
                (busy * 1000).checked_div(it).unwrap_or(0),
            ));
        }
        for (i, name) in self.ports.iter().enumerate() {
            let p = format!("dataplane.port.{name}");
            let sum = |f: &dyn Fn(&zerohop_dataplane::stats::PortCounters) -> u64| {
                self.workers
                    .iter()
                    .filter_map(|w| w.ports.get(i))
                    .map(f)
                    .sum::<u64>()
            };
            v.push((format!("{p}.rx_packets"), sum(&|c| c.rx_packets.get())));
            v.push((format!("{p}.rx_dropped"), sum(&|c| c.rx_dropped.get())));
            v.push((format!("{p}.tx_packets"), sum(&|c| c.tx_packets.get())));
            v.push((format!("{p}.tx_dropped"), sum(&|c| c.tx_dropped.get())));
            if let Some(hw) = self.port_hw.get(i) {
                for (k, c) in PORT_HW.iter().zip(hw.iter()) {
                    v.push((format!("{p}.{k}"), c.load(Ordering::Relaxed)));
                }
            }
        }
        for (name, in_use) in self.mempools.iter() {
            v.push((
                format!("dataplane.mempool.{name}.in_use"),
                in_use.load(Ordering::Relaxed),
            ));
        }
        let mut tcp: Vec<(&'static str, u64)> = Vec::new();
        for t in &self.tcp {
            for (i, (name, x)) in t.values().into_iter().enumerate() {
                match tcp.get_mut(i) {
                    Some(s) => s.1 += x,
                    None => tcp.push((name, x)),
                }
            }
        }
        v.extend(
            tcp.into_iter()
                .map(|(k, x)| (format!("dataplane.tcp.{k}"), x)),
        );
        let mut errors: Vec<(String, u64)> = Vec::new();
        for (g, _) in &self.l3 {
            for (node, reason, n) in g.errors() {
                let name = format!("dataplane.errors.{node}.{reason}");
                match errors.iter_mut().find(|e| e.0 == name) {
                    Some(e) => e.1 += n,
                    None => errors.push((name, n)),
                }
            }
        }
        v.extend(errors);
    }

    fn histograms(&self) -> Vec<Histogram> {
        let mut out: Vec<Histogram> = Vec::new();
        let view = self.view();
        for p in view.generations.iter().flatten() {
            for (name, counts, sum_us) in p.http.histograms() {
                match out.iter_mut().find(|h| h.name == name) {
                    Some(h) => {
                        for (a, b) in h.counts.iter_mut().zip(&counts) {
                            *a += b;
                        }
                        h.sum_ms += sum_us as f64 / 1000.0;
                    }
                    None => out.push(Histogram {
                        name,
                        bounds_ms: BOUNDS_US.iter().map(|b| *b as f64 / 1000.0).collect(),
                        counts,
                        sum_ms: sum_us as f64 / 1000.0,
                    }),
                }
            }
        }
        out
    }
}

/// `health_flags` as Envoy writes them.
fn health_flags(flags: u8) -> String {
    if flags & (FAILED_ACTIVE_HC | FAILED_OUTLIER_CHECK | PENDING_ACTIVE_HC) == 0 {
        return "healthy".to_owned();
    }
    let mut s = String::new();
    for (bit, name) in [
        (FAILED_ACTIVE_HC, "/failed_active_hc"),
        (FAILED_OUTLIER_CHECK, "/failed_outlier_check"),
        (PENDING_ACTIVE_HC, "/pending_active_hc"),
    ] {
        if flags & bit != 0 {
            s.push_str(name);
        }
    }
    s
}

impl Introspect for Process {
    fn stats(&self) -> (Vec<(String, u64)>, Vec<Histogram>) {
        let mut v = self.view().values();
        self.dataplane_values(&mut v);
        (v, self.histograms())
    }

    fn clusters(&self) -> String {
        let mut out = String::new();
        let view = self.view();
        // Counters of the current generation's workers (the cluster indices
        // are its config's).
        let current = view.generations.last().map_or(&[][..], Vec::as_slice);
        for (ci, c) in view.shared.clusters.iter().enumerate() {
            let name = &c.name;
            let cb = &c.limits;
            for (k, x) in [
                ("max_connections", cb.max_connections),
                ("max_pending_requests", cb.max_pending_requests),
                ("max_requests", cb.max_requests),
                ("max_retries", cb.max_retries),
            ] {
                let _ = writeln!(out, "{name}::default_priority::{k}::{x}");
            }
            let weights = view.envoy.clusters.get(ci).map(|c| &c.endpoints);
            for (ei, (addr, host)) in c.endpoints.iter().zip(&c.hosts).enumerate() {
                let (mut rq_total, mut rq_done, mut cx_total, mut cx_closed) = (0, 0, 0, 0);
                let (mut ewma_sum, mut ewma_n) = (0.0, 0);
                for p in current {
                    if let Some((_, u)) = p.http.clusters.get(ci) {
                        rq_total += u.endpoint_rq_active.get(ei).map_or(0, |x| x.get());
                        rq_done += u.endpoint_rq_done.get(ei).map_or(0, |x| x.get());
                        cx_total += u.endpoint_cx_total.get(ei).map_or(0, |x| x.get());
                        cx_closed += u.endpoint_cx_closed.get(ei).map_or(0, |x| x.get());
                        let ewma = u.latency_ewma_us(ei);
                        if ewma > 0.0 {
                            ewma_sum += ewma;
                            ewma_n += 1;
                        }
                    }
                    if let Some((_, _, t)) = p.tcp.clusters.get(ci) {
                        if let Some(e) = t.endpoints.get(ei) {
                            cx_total += e.cx_total.get();
                            cx_closed += e.cx_closed.get();
                        }
                    }
                }
                let p = format!("{name}::{addr}");
                let weight = weights.and_then(|w| w.get(ei)).map_or(1, |e| e.weight);
                let _ = writeln!(
                    out,
                    "{p}::cx_active::{}",
                    cx_total.saturating_sub(cx_closed)
                );
                let _ = writeln!(out, "{p}::cx_total::{cx_total}");
                let _ = writeln!(out, "{p}::rq_active::{}", rq_total.saturating_sub(rq_done));
                let _ = writeln!(out, "{p}::rq_total::{rq_total}");
                let _ = writeln!(out, "{p}::health_flags::{}", health_flags(host.flags()));
                let _ = writeln!(out, "{p}::weight::{weight}");
                let ewma = if ewma_n == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.3}", ewma_sum / f64::from(ewma_n) / 1000.0)
                };
                let _ = writeln!(out, "{p}::latency_ewma_ms::{ewma}");
            }
        }
        out
    }

    fn config_dump(&self) -> String {
        self.view().config_text.clone()
    }

    fn runtime_nodes(&self) -> String {
        let mut out = String::new();
        for (w, (graph, _)) in self.l3.iter().enumerate() {
            let _ = writeln!(
                out,
                "worker {w} (cpu {}):\n{:<16} {:>12} {:>14} {:>14} {:>14}",
                self.cores.get(w).copied().unwrap_or(0),
                "node",
                "calls",
                "vectors",
                "vectors/call",
                "cycles/packet"
            );
            for n in &graph.nodes {
                let (calls, packets) = (n.calls.get(), n.packets.get());
                let cpp = if packets == 0 {
                    0.0
                } else {
                    n.cycles.get() as f64 / packets as f64
                };
                let _ = writeln!(
                    out,
                    "{:<16} {:>12} {:>14} {:>14.1} {:>14.1}",
                    n.name,
                    calls,
                    packets,
                    packets as f64 / calls.max(1) as f64,
                    cpp
                );
            }
        }
        let _ = writeln!(out, "cycle counter: {:.0} MHz", self.hz / 1e6);
        out
    }

    fn runtime_errors(&self) -> String {
        let mut out = format!(
            "{:<8} {:<16} {:<28} {:>12}\n",
            "worker", "node", "reason", "count"
        );
        for (w, (graph, acl)) in self.l3.iter().enumerate() {
            for (node, reason, count) in graph.errors() {
                let _ = writeln!(out, "{w:<8} {node:<16} {reason:<28} {count:>12}");
            }
            for (port, d) in acl.default_deny.iter().enumerate() {
                let n = d.get();
                if n > 0 {
                    let name = self.ports.get(port).map_or("?", String::as_str);
                    let reason = format!("acl default deny ({name})");
                    let _ = writeln!(out, "{w:<8} {:<16} {reason:<28} {n:>12}", "acl");
                }
            }
        }
        out
    }

    fn start_trace(&self, packets: usize) {
        for (graph, _) in &self.l3 {
            graph
                .trace
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            graph.trace_request.store(packets, Ordering::Release);
        }
    }

    fn trace(&self) -> String {
        let mut out = String::new();
        for (w, (graph, _)) in self.l3.iter().enumerate() {
            let records = graph.trace.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "worker {w}: {} record(s)", records.len());
            out.push_str(&format_trace(&records));
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    fn draining(&self) -> bool {
        self.view().shared.draining()
    }

    fn drain_listeners(&self) {
        self.view().shared.drain();
    }

    fn quit(&self) {
        self.view().shared.drain();
        self.quit.store(true, Ordering::Release);
    }

    fn reload(&self) -> Result<String, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.reload
            .send(tx)
            .map_err(|_| "zerohop is stopping".to_owned())?;
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|_| "the reload did not finish within 30 s".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_flags_are_written_as_envoy_writes_them() {
        assert_eq!(health_flags(0), "healthy");
        assert_eq!(
            health_flags(FAILED_ACTIVE_HC | FAILED_OUTLIER_CHECK),
            "/failed_active_hc/failed_outlier_check"
        );
        assert_eq!(
            health_flags(FAILED_ACTIVE_HC | PENDING_ACTIVE_HC),
            "/failed_active_hc/pending_active_hc"
        );
    }
}
