//! Per-worker counters that the main thread reads without locks.
//!
//! Each counter has exactly one writer (the worker that owns it), so an update
//! is a relaxed load and store: no locked instruction on the data path, and a
//! reader sees a value that is at most one update old.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n`. Only the owning worker calls this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Return the current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What one worker did on one port's queue pair.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Frames received from the port.
    pub rx_packets: Counter,
    /// Frames received and dropped because nothing forwards them (no peer).
    pub rx_dropped: Counter,
    /// Frames the port accepted for transmission.
    pub tx_packets: Counter,
    /// Frames the port refused (tx ring full); freed and counted here.
    pub tx_dropped: Counter,
}

/// One worker's counters, cache-line aligned so workers never share a line.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerStats {
    /// Poll-loop iterations.
    pub iterations: Counter,
    /// Iterations in which at least one frame arrived: busy / iterations is
    /// the share of the core doing work (a poll-mode core always shows 100%).
    pub busy_iterations: Counter,
    /// Frames received on all ports.
    pub packets: Counter,
    /// Cycles spent in busy iterations (receive, graph, transmit): the work
    /// a poll-mode core does, where its CPU time always reads 100%. Counted
    /// on workers with a graph (L3 ports).
    pub busy_cycles: Counter,
    /// Per port, indexed like the configuration's port list.
    pub ports: Vec<PortCounters>,
}

impl WorkerStats {
    /// Create zeroed counters for `nports` ports.
    pub fn new(nports: usize) -> Self {
        Self {
            iterations: Counter::default(),
            busy_iterations: Counter::default(),
            packets: Counter::default(),
            busy_cycles: Counter::default(),
            ports: (0..nports).map(|_| PortCounters::default()).collect(),
        }
    }
}

/// Sums of [`PortCounters`] over all workers, as plain numbers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortTotals {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames received with nowhere to go.
    pub rx_dropped: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Frames the port refused.
    pub tx_dropped: u64,
}

/// Sum each port's counters over `workers`.
pub fn port_totals<'a>(
    workers: impl IntoIterator<Item = &'a WorkerStats>,
    nports: usize,
) -> Vec<PortTotals> {
    let mut totals = vec![PortTotals::default(); nports];
    for w in workers {
        for (t, c) in totals.iter_mut().zip(&w.ports) {
            t.rx_packets += c.rx_packets.get();
            t.rx_dropped += c.rx_dropped.get();
            t.tx_packets += c.tx_packets.get();
            t.tx_dropped += c.tx_dropped.get();
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_sum_across_workers() {
        let a = WorkerStats::new(2);
        let b = WorkerStats::new(2);
        a.ports[0].rx_packets.add(3);
        b.ports[0].rx_packets.add(4);
        b.ports[1].tx_dropped.add(1);
        let t = port_totals([&a, &b], 2);
        assert_eq!(t[0].rx_packets, 7);
        assert_eq!(t[1].tx_dropped, 1);
        assert_eq!(t[1].rx_packets, 0);
        assert_eq!(std::mem::align_of::<WorkerStats>(), 64);
    }
}
