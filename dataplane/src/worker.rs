//! L2 cross-connect: frames received on one port leave unchanged through its
//! peer (testpmd's io forwarding, VPP's `l2 xconnect`).
//!
//! This is the foundation's forwarding mode and the poll loop every later mode
//! keeps: rx_burst → process → tx_burst, with telemetry per iteration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{PacketVector, PortQueue, WorkerStats, VECTOR_SIZE};

/// One worker's poll loop over its queue pair on every port.
pub struct XconnectWorker<Q: PortQueue> {
    queues: Vec<Q>,
    /// For each port index, the port its frames go to (None: counted drop).
    peers: Vec<Option<usize>>,
    burst: usize,
    vector: PacketVector<Q::Buffer>,
    stats: Arc<WorkerStats>,
}

impl<Q: PortQueue> XconnectWorker<Q> {
    /// Build a worker over `queues` (index = port index); `peers[i]` names the
    /// port that frames from port i are sent to. `burst` is clamped to
    /// 1..=[`VECTOR_SIZE`]; a peer index out of range counts as no peer.
    pub fn new(
        queues: Vec<Q>,
        peers: Vec<Option<usize>>,
        burst: usize,
        stats: Arc<WorkerStats>,
    ) -> Self {
        let n = queues.len();
        let peers = (0..n)
            .map(|i| peers.get(i).copied().flatten().filter(|&p| p < n))
            .collect();
        Self {
            queues,
            peers,
            burst: burst.clamp(1, VECTOR_SIZE),
            vector: PacketVector::new(),
            stats,
        }
    }

    /// Return this worker's counters.
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// Run one iteration over every port; return the frames received.
    pub fn poll_once(&mut self) -> usize {
        let mut received = 0;
        for port in 0..self.queues.len() {
            let n = self.queues[port].rx_burst(&mut self.vector, self.burst);
            if n == 0 {
                continue;
            }
            received += n;
            self.stats.ports[port].rx_packets.add(n as u64);
            match self.peers[port] {
                Some(peer) => {
                    let sent = self.queues[peer].tx_burst(&mut self.vector);
                    let peer_stats = &self.stats.ports[peer];
                    peer_stats.tx_packets.add(sent as u64);
                    let refused = self.vector.clear();
                    if refused > 0 {
                        peer_stats.tx_dropped.add(refused as u64);
                    }
                }
                None => {
                    let dropped = self.vector.clear();
                    self.stats.ports[port].rx_dropped.add(dropped as u64);
                }
            }
        }
        self.stats.iterations.add(1);
        if received > 0 {
            self.stats.busy_iterations.add(1);
            self.stats.packets.add(received as u64);
        }
        received
    }

    /// Poll until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll_once();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{HeapBuffer, MemQueue};
    use crate::Buffer;

    fn frame(tag: u8) -> HeapBuffer {
        HeapBuffer::from(&[tag; 60][..])
    }

    #[test]
    fn forwards_both_directions_unchanged() {
        let (a, a_wire) = MemQueue::pair(1024);
        let (b, b_wire) = MemQueue::pair(1024);
        let stats = Arc::new(WorkerStats::new(2));
        let mut w = XconnectWorker::new(vec![a, b], vec![Some(1), Some(0)], 32, stats.clone());
        for i in 0..5 {
            a_wire.inject(frame(i));
        }
        b_wire.inject(frame(0xee));
        assert_eq!(w.poll_once(), 6);
        let out_b = b_wire.take_sent();
        assert_eq!(out_b.len(), 5);
        assert_eq!(out_b[3].data(), &[3u8; 60][..]);
        assert_eq!(a_wire.take_sent()[0].data(), &[0xee; 60][..]);
        assert_eq!(stats.ports[0].rx_packets.get(), 5);
        assert_eq!(stats.ports[1].tx_packets.get(), 5);
        assert_eq!(stats.ports[0].tx_packets.get(), 1);
        assert_eq!(stats.busy_iterations.get(), 1);
        assert_eq!(w.poll_once(), 0);
        assert_eq!(stats.iterations.get(), 2);
        assert_eq!(stats.busy_iterations.get(), 1);
    }

    #[test]
    fn burst_limits_each_receive() {
        let (a, a_wire) = MemQueue::pair(1024);
        let (b, b_wire) = MemQueue::pair(1024);
        let stats = Arc::new(WorkerStats::new(2));
        let mut w = XconnectWorker::new(vec![a, b], vec![Some(1), Some(0)], 4, stats);
        for i in 0..10 {
            a_wire.inject(frame(i));
        }
        assert_eq!(w.poll_once(), 4);
        assert_eq!(w.poll_once(), 4);
        assert_eq!(w.poll_once(), 2);
        assert_eq!(b_wire.take_sent().len(), 10);
    }

    #[test]
    fn refused_frames_are_freed_and_counted() {
        let (a, a_wire) = MemQueue::pair(1024);
        let (b, b_wire) = MemQueue::pair(3); // tx ring takes 3 per burst
        let stats = Arc::new(WorkerStats::new(2));
        let mut w = XconnectWorker::new(vec![a, b], vec![Some(1), Some(0)], 32, stats.clone());
        for i in 0..8 {
            a_wire.inject(frame(i));
        }
        w.poll_once();
        assert_eq!(b_wire.take_sent().len(), 3);
        assert_eq!(stats.ports[1].tx_packets.get(), 3);
        assert_eq!(stats.ports[1].tx_dropped.get(), 5);
        assert_eq!(a_wire.live_buffers(), 0, "refused frames are freed");
    }

    #[test]
    fn ports_without_peer_drop_and_count() {
        let (a, a_wire) = MemQueue::pair(1024);
        let (b, b_wire) = MemQueue::pair(1024);
        let stats = Arc::new(WorkerStats::new(2));
        // Port 1 has no peer; a bogus peer index 7 is treated as none.
        let mut w = XconnectWorker::new(vec![a, b], vec![Some(7), None], 32, stats.clone());
        a_wire.inject(frame(1));
        b_wire.inject(frame(2));
        w.poll_once();
        assert_eq!(stats.ports[0].rx_dropped.get(), 1);
        assert_eq!(stats.ports[1].rx_dropped.get(), 1);
        assert!(a_wire.take_sent().is_empty() && b_wire.take_sent().is_empty());
    }

    #[test]
    fn run_returns_when_stopped() {
        let (a, _a_wire) = MemQueue::pair(8);
        let stats = Arc::new(WorkerStats::new(1));
        let mut w = XconnectWorker::new(vec![a], vec![None], 32, stats.clone());
        let stop = AtomicBool::new(true);
        w.run(&stop);
        assert_eq!(stats.iterations.get(), 0);
    }
}
