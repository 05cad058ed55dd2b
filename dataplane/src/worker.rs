//! The poll-mode worker: rx_burst → process → tx_burst over its queue pair on
//! every port, with loop telemetry.
//!
//! Each port is in one of three modes:
//! - **L2 cross-connect**: frames leave unchanged through the peer port
//!   (testpmd's io forwarding, VPP's `l2 xconnect`), without touching the
//!   graph;
//! - **L3**: frames enter the worker's IPv4 graph at `ethernet-input`; the
//!   graph runs once per received vector and its `port-tx` vectors go out
//!   through the ports' tx queues;
//! - **unused**: frames are received (so the ring never fills) and dropped,
//!   counted as `rx_dropped`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::graph::{Graph, Packet};
use crate::l3::nodes::Ip4Arp;
use crate::l3::L3Context;
use crate::{Buffer, PacketVector, PortQueue, WorkerStats, VECTOR_SIZE};

/// What a worker does with the frames of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMode {
    /// Send every frame out of port `peer` unchanged.
    Xconnect {
        /// Port index of the peer.
        peer: usize,
    },
    /// Hand frames to the IPv4 graph.
    L3,
    /// Drop and count.
    Unused,
}

/// Poll-loop iterations between clock reads (an idle iteration costs tens of
/// ns, so the clock is at most ~0.1 ms stale when idle).
const CLOCK_EVERY: u32 = 1024;
/// Interval of neighbour-table housekeeping.
const HOUSEKEEPING_MS: u64 = 100;

/// The IPv4 graph of one worker and the state its nodes share.
pub struct L3Stage<B: Buffer> {
    graph: Graph<B, L3Context<B>>,
    ctx: L3Context<B>,
    entry: usize,
    arp_node: usize,
    /// The ports' gratuitous ARPs went out (on the first tick).
    announced: bool,
}

impl<B: Buffer> L3Stage<B> {
    /// Wrap a graph built by [`crate::l3::build_graph`] and its context.
    ///
    /// # Errors
    /// The graph lacks `ethernet-input` or `ip4-arp`.
    pub fn new(graph: Graph<B, L3Context<B>>, ctx: L3Context<B>) -> Result<Self, String> {
        let entry = graph
            .node_index("ethernet-input")
            .ok_or("graph has no ethernet-input")?;
        let arp_node = graph.node_index("ip4-arp").ok_or("graph has no ip4-arp")?;
        Ok(Self {
            graph,
            ctx,
            entry,
            arp_node,
            announced: false,
        })
    }

    /// Return the graph (counters, trace).
    pub fn graph(&self) -> &Graph<B, L3Context<B>> {
        &self.graph
    }

    /// Return the graph mutably (to start a trace).
    pub fn graph_mut(&mut self) -> &mut Graph<B, L3Context<B>> {
        &mut self.graph
    }

    /// Return the nodes' shared context (neighbours, ACL counters).
    pub fn context(&self) -> &L3Context<B> {
        &self.ctx
    }

    /// Return the nodes' shared context, mutably.
    pub fn context_mut(&mut self) -> &mut L3Context<B> {
        &mut self.ctx
    }
}

/// One worker's poll loop over its queue pair on every port.
pub struct Worker<Q: PortQueue> {
    queues: Vec<Q>,
    modes: Vec<PortMode>,
    burst: usize,
    vector: PacketVector<Q::Buffer>,
    stats: Arc<WorkerStats>,
    l3: Option<L3Stage<Q::Buffer>>,
    epoch: Instant,
    until_clock: u32,
    last_housekeeping_ms: u64,
    /// Tick (clock, timers, polling nodes) on every loop, not every
    /// [`CLOCK_EVERY`] idle loops.
    tick_every_loop: bool,
}

impl<Q: PortQueue> Worker<Q> {
    /// Build a worker over `queues` (index = port index) with one mode per
    /// port. `burst` is clamped to 1..=[`VECTOR_SIZE`]; a missing mode, a
    /// peer out of range, or L3 without an [`L3Stage`] counts as unused.
    pub fn new(
        queues: Vec<Q>,
        modes: Vec<PortMode>,
        burst: usize,
        stats: Arc<WorkerStats>,
        l3: Option<L3Stage<Q::Buffer>>,
    ) -> Self {
        let n = queues.len();
        let modes = (0..n)
            .map(|i| match modes.get(i).copied() {
                Some(PortMode::Xconnect { peer }) if peer < n => PortMode::Xconnect { peer },
                Some(PortMode::L3) if l3.is_some() => PortMode::L3,
                _ => PortMode::Unused,
            })
            .collect();
        Self {
            queues,
            modes,
            burst: burst.clamp(1, VECTOR_SIZE),
            vector: PacketVector::new(),
            stats,
            l3,
            epoch: Instant::now(),
            until_clock: 0,
            last_housekeeping_ms: 0,
            tick_every_loop: false,
        }
    }

    /// Stop being a worker and hand the queues back (frames in the vector
    /// are freed).
    pub fn into_queues(self) -> Vec<Q> {
        self.queues
    }

    /// Return this worker's counters.
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// Return the L3 stage, if this worker routes.
    pub fn l3(&self) -> Option<&L3Stage<Q::Buffer>> {
        self.l3.as_ref()
    }

    /// Return the L3 stage mutably.
    pub fn l3_mut(&mut self) -> Option<&mut L3Stage<Q::Buffer>> {
        self.l3.as_mut()
    }

    /// Advance the L3 clock and run timers (ARP resolution timeouts, and
    /// the polling nodes: TCP timers and handoffs).
    fn tick(&mut self) {
        let Some(l3) = self.l3.as_mut() else {
            return;
        };
        let now = self.epoch.elapsed().as_millis() as u64;
        l3.ctx.now_ms = now;
        if !l3.announced {
            l3.announced = true;
            self.announce();
        }
        let Some(l3) = self.l3.as_mut() else {
            return;
        };
        // Neighbours other workers learned: adopt them and send what was
        // waiting for them (through ip4-arp, which now finds the MAC).
        let mut released = false;
        while let Some(l) = l3.ctx.sync.as_ref().and_then(|s| s.next()) {
            for pkt in l3.ctx.neighbours.learn(l.port, l.ip, l.mac, now) {
                l3.graph.enqueue(l3.arp_node, pkt);
                released = true;
            }
        }
        if released {
            self.run_graph();
        }
        if self
            .l3
            .as_ref()
            .is_some_and(|l3| l3.graph.has_polling_nodes())
        {
            self.poll_graph();
        }
        let Some(l3) = self.l3.as_mut() else {
            return;
        };
        if now.saturating_sub(self.last_housekeeping_ms) >= HOUSEKEEPING_MS {
            self.last_housekeeping_ms = now;
            let dropped = l3.ctx.neighbours.expire(now);
            if dropped > 0 {
                l3.graph
                    .count_error(l3.arp_node, Ip4Arp::E_TIMEOUT, dropped as u64);
            }
        }
    }

    /// Send one gratuitous ARP out of each port that has an address (see
    /// [`crate::l3::nodes::build_gratuitous_arp`]), counted on `ip4-arp`.
    fn announce(&mut self) {
        let Some(l3) = self.l3.as_mut() else {
            return;
        };
        for port in 0..l3.ctx.ports.len().min(self.queues.len()) {
            let Some(ip) = l3.ctx.port_ip(port as u16) else {
                continue;
            };
            let mac = l3.ctx.ports[port].mac;
            let Some(mut buf) = (l3.ctx.alloc)() else {
                l3.graph.count_error(l3.arp_node, Ip4Arp::E_NO_BUFFER, 1);
                continue;
            };
            if !crate::l3::nodes::build_gratuitous_arp(&mut buf, mac, ip) {
                l3.graph.count_error(l3.arp_node, Ip4Arp::E_NO_BUFFER, 1);
                continue;
            }
            // The vector is empty between polls.
            self.vector.storage().push(buf);
            let sent = self.queues[port].tx_burst(&mut self.vector);
            let s = &self.stats.ports[port];
            s.tx_packets.add(sent as u64);
            let refused = self.vector.clear();
            if refused > 0 {
                s.tx_dropped.add(refused as u64);
            }
            l3.graph
                .count_error(l3.arp_node, Ip4Arp::C_ANNOUNCED, sent as u64);
        }
    }

    /// Tick on every loop: for a graph whose polling nodes keep a schedule
    /// of their own (the load generator's open loop sends at fixed times; an
    /// idle worker otherwise ticks every [`CLOCK_EVERY`] loops, which on
    /// memif ports is about 2 ms). Costs a clock read per loop.
    pub fn set_tick_every_loop(&mut self, on: bool) {
        self.tick_every_loop = on;
    }

    /// Run one iteration over every port; return the frames received.
    pub fn poll_once(&mut self) -> usize {
        if self.until_clock == 0 {
            self.until_clock = CLOCK_EVERY;
            self.tick();
        }
        self.until_clock -= 1;
        let clock = self.l3.as_ref().map(|l3| l3.graph.cycle_counter());
        let start = clock.map_or(0, |c| c());
        let mut received = 0;
        for port in 0..self.queues.len() {
            let n = self.queues[port].rx_burst(&mut self.vector, self.burst);
            if n == 0 {
                continue;
            }
            received += n;
            self.stats.ports[port].rx_packets.add(n as u64);
            match self.modes[port] {
                PortMode::Xconnect { peer } => {
                    let sent = self.queues[peer].tx_burst(&mut self.vector);
                    let peer_stats = &self.stats.ports[peer];
                    peer_stats.tx_packets.add(sent as u64);
                    let refused = self.vector.clear();
                    if refused > 0 {
                        peer_stats.tx_dropped.add(refused as u64);
                    }
                }
                PortMode::L3 => self.route(port),
                PortMode::Unused => {
                    let dropped = self.vector.clear();
                    self.stats.ports[port].rx_dropped.add(dropped as u64);
                }
            }
        }
        self.stats.iterations.add(1);
        if self.tick_every_loop {
            self.until_clock = 0;
        }
        if received > 0 {
            self.stats.busy_iterations.add(1);
            self.stats.packets.add(received as u64);
            if let Some(c) = clock {
                self.stats.busy_cycles.add(c().saturating_sub(start));
            }
            // Timers must not wait 1024 busy iterations (milliseconds).
            if self
                .l3
                .as_ref()
                .is_some_and(|l3| l3.graph.has_polling_nodes())
            {
                self.until_clock = 0;
            }
        }
        received
    }

    /// Run the received vector of `port` through the graph and transmit
    /// what it produced.
    fn route(&mut self, port: usize) {
        let Some(l3) = self.l3.as_mut() else {
            self.vector.clear();
            return;
        };
        for buf in self.vector.storage().drain(..) {
            l3.graph.enqueue(l3.entry, Packet::new(buf, port as u16));
        }
        self.run_graph();
    }

    /// Run the graph over whatever is queued and transmit its output,
    /// freeing and counting what the ports refuse.
    fn run_graph(&mut self) {
        self.drive_graph(false);
    }

    /// Poll the graph's polling nodes, then run it (see [`Self::run_graph`]).
    fn poll_graph(&mut self) {
        self.drive_graph(true);
    }

    fn drive_graph(&mut self, poll: bool) {
        let (Some(l3), queues, stats) = (self.l3.as_mut(), &mut self.queues, &self.stats) else {
            return;
        };
        let run = if poll { Graph::poll } else { Graph::run };
        run(&mut l3.graph, &mut l3.ctx, &mut |tx: u16,
                                              v: &mut PacketVector<
            Q::Buffer,
        >| {
            let (Some(q), Some(s)) = (queues.get_mut(tx as usize), stats.ports.get(tx as usize))
            else {
                v.clear();
                return;
            };
            let sent = q.tx_burst(v);
            s.tx_packets.add(sent as u64);
            let refused = v.clear();
            if refused > 0 {
                s.tx_dropped.add(refused as u64);
            }
        });
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

    fn xc() -> Vec<PortMode> {
        vec![
            PortMode::Xconnect { peer: 1 },
            PortMode::Xconnect { peer: 0 },
        ]
    }

    fn frame(tag: u8) -> HeapBuffer {
        HeapBuffer::from(&[tag; 60][..])
    }

    #[test]
    fn forwards_both_directions_unchanged() {
        let (a, a_wire) = MemQueue::pair(1024);
        let (b, b_wire) = MemQueue::pair(1024);
        let stats = Arc::new(WorkerStats::new(2));
        let mut w = Worker::new(vec![a, b], xc(), 32, stats.clone(), None);
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
        let mut w = Worker::new(vec![a, b], xc(), 4, stats, None);
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
        let mut w = Worker::new(vec![a, b], xc(), 32, stats.clone(), None);
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
        // A bogus peer index, and L3 without a graph, count as unused.
        let mut w = Worker::new(
            vec![a, b],
            vec![PortMode::Xconnect { peer: 7 }, PortMode::L3],
            32,
            stats.clone(),
            None,
        );
        a_wire.inject(frame(1));
        b_wire.inject(frame(2));
        w.poll_once();
        assert_eq!(stats.ports[0].rx_dropped.get(), 1);
        assert_eq!(stats.ports[1].rx_dropped.get(), 1);
        assert!(a_wire.take_sent().is_empty() && b_wire.take_sent().is_empty());
    }

    /// Two routing workers on the same two ports: the ARP reply to worker
    /// 0's request arrives on worker 1's queue, and worker 0 still sends the
    /// packet it held.
    #[test]
    fn a_neighbour_learned_by_one_worker_releases_another_workers_packets() {
        use crate::fib::FibBuilder;
        use crate::l3::neighbor::NeighbourSync;
        use crate::l3::{build_graph, L3Context, L3Policy, L3Port};
        use std::net::Ipv4Addr;

        const MAC: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 1, 1]];
        const PEER1: [u8; 6] = [2, 0, 0, 0, 1, 2];
        let mut fib = FibBuilder::new();
        fib.interface(0, Ipv4Addr::new(10, 0, 0, 1), 24).interface(
            1,
            Ipv4Addr::new(10, 0, 1, 1),
            24,
        );
        let fib = Arc::new(fib.build().expect("fib"));
        let mut mesh = NeighbourSync::mesh(2).into_iter();
        let mut wires = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..2 {
            let (a, a_wire) = MemQueue::pair(1024);
            let (b, b_wire) = MemQueue::pair(1024);
            let ports = (0..2)
                .map(|i| L3Port {
                    mac: MAC[i],
                    address: Some((Ipv4Addr::new(10, 0, i as u8, 1), 24)),
                    mtu: 1500,
                })
                .collect();
            let mut ctx = L3Context::new(
                ports,
                fib.clone(),
                vec![],
                Box::new(|| Some(HeapBuffer::empty())),
                L3Policy::default(),
            );
            ctx.sync = mesh.next();
            let stage = L3Stage::new(build_graph(2, || 0).expect("graph"), ctx).expect("stage");
            let stats = Arc::new(WorkerStats::new(2));
            workers.push(Worker::new(
                vec![a, b],
                vec![PortMode::L3, PortMode::L3],
                32,
                stats,
                Some(stage),
            ));
            wires.push((a_wire, b_wire));
        }
        // Each worker's first tick announces both ports: a gratuitous ARP
        // (broadcast, sender = target = the port's address) on each.
        for (w, (a, b)) in workers.iter_mut().zip(&wires) {
            w.poll_once();
            for (i, wire) in [a, b].into_iter().enumerate() {
                let sent = wire.take_sent();
                assert_eq!(sent.len(), 1, "one gratuitous ARP on port {i}");
                let d = sent[0].data();
                let ip = [10, 0, i as u8, 1];
                assert_eq!(&d[0..6], &[0xff; 6]);
                assert_eq!(&d[6..12], &MAC[i]);
                assert_eq!(&d[12..14], &[0x08, 0x06]);
                assert_eq!(&d[20..22], &[0, 1], "a request");
                assert_eq!((&d[28..32], &d[38..42]), (&ip[..], &ip[..]));
            }
        }
        // Worker 0 gets a packet for 10.0.1.2: it holds it and asks.
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], MAC[0])
            .ipv4([10, 0, 0, 2], [10, 0, 1, 2], 64)
            .udp(1, 2)
            .write(&mut f, b"held")
            .expect("frame");
        wires[0].0.inject(HeapBuffer::from(&f[..]));
        workers[0].poll_once();
        let asked = wires[0].1.take_sent();
        assert_eq!(asked.len(), 1, "ARP request out of port 1");
        assert_eq!(&asked[0].data()[12..14], &[0x08, 0x06]);
        // The reply lands on worker 1's queue of port 1.
        let mut reply = Vec::new();
        reply.extend_from_slice(&MAC[1]);
        reply.extend_from_slice(&PEER1);
        reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        reply.extend_from_slice(&PEER1);
        reply.extend_from_slice(&[10, 0, 1, 2]);
        reply.extend_from_slice(&MAC[1]);
        reply.extend_from_slice(&[10, 0, 1, 1]);
        wires[1].1.inject(HeapBuffer::from(&reply[..]));
        workers[1].poll_once();
        assert!(
            wires[0].1.take_sent().is_empty(),
            "not yet: worker 0 has not ticked"
        );
        // Worker 0's next timer tick adopts the neighbour and sends.
        for _ in 0..CLOCK_EVERY {
            workers[0].poll_once();
        }
        let sent = wires[0].1.take_sent();
        assert_eq!(sent.len(), 1, "the held packet went out");
        assert_eq!(&sent[0].data()[0..6], &PEER1);
        assert!(sent[0].data().ends_with(b"held"));
    }

    #[test]
    fn run_returns_when_stopped() {
        let (a, _a_wire) = MemQueue::pair(8);
        let stats = Arc::new(WorkerStats::new(1));
        let mut w = Worker::new(vec![a], vec![PortMode::Unused], 32, stats.clone(), None);
        let stop = AtomicBool::new(true);
        w.run(&stop);
        assert_eq!(stats.iterations.get(), 0);
    }
}
