//! Per-segment cost of `tcp-input` against the number of open connections:
//! the design requirement is a cost that stays flat (within 2x) from 10 to
//! 100 000 ESTABLISHED connections per worker.
//!
//! Run with `cargo bench -p zerohop-tcpstack --bench tcp_input`.
//!
//! Setup, for N = 10, 1 000, 10 000 and 100 000: a server [`Stack`]
//! listening on ports 80..=83 and a client [`Stack`] wired back to back in
//! memory (as in `tests/stack.rs`, with [`HeapBuffer`]s); the client opens N
//! connections and every handshake really runs through both stacks, so all
//! N server connections are ESTABLISHED smoltcp sockets in the flow table.
//! Both sides use 4 KiB receive and send buffers (instead of the default
//! 64 KiB) so that 2 × 100 000 connections fit in memory (about 1.8 GB
//! resident at N = 100 000, set up in a second or two), delayed ACK off
//! (every data segment is acknowledged in the flush that follows it), and
//! a clock in ms that runs at the server's pace: the wall clock during the
//! setup, then only the time measured for the server (both stacks' timers
//! are advanced to it before each batch, untimed). The clock must move:
//! smoltcp's CUBIC recomputes its window on every transmit while the clock
//! stands still, but at most every 100 ms once it moves. It must not run at
//! the wall's pace either: the untimed client work costs several times the
//! server's, so at N = 100 000 a connection would come round only after a
//! second or more of wall time (more on a loaded machine), longer than
//! `idle_release_ms`, and would give its ring pages back and fault them in
//! again: the price of waking an idle connection, not of the number of
//! connections, and one that followed the machine's load. At the server's
//! pace a connection comes round every 100 ms or so at N = 100 000; as
//! nothing is lost, the only timers that fire are the idle-release checks
//! of busy connections, which find them busy and rearm (untimed).
//!
//! Each measured batch is 160 fresh, in-window data segments of 128 bytes:
//!
//! - the client writes 128 bytes on each of the next 10 connections of a
//!   fixed random permutation and flushes: 10 segments with correct
//!   sequence numbers, timestamps and checksums, as smoltcp sends them;
//!   16 such groups make a batch. This is not timed;
//! - timed: the server takes each group as the graph node takes a vector:
//!   `Stack::warm` on the 10 segments (every connection's state prefetched
//!   in stages, so their cache misses overlap), then `Stack::input` for
//!   each (smoltcp `poll_ingress_single`), then one `Stack::flush` in which the
//!   application reads the data (`Stack::recv`, so windows stay open) and
//!   each connection emits its ACK (`poll_egress`, timer rearm). A group
//!   never holds two segments of one connection, so every segment costs one
//!   ACK at every N (no ACK coalescing that would flatter N = 10);
//! - not timed: the ACKs go back to the client, and every packet buffer
//!   goes back to a pool (the server's ACKs take theirs from it, as from a
//!   mempool, instead of from malloc).
//!
//! Two series:
//!
//! - `all/N`: round-robin over the permutation of all N connections. At
//!   100 000 a connection comes round again only after 100 000 segments, so
//!   its state (flow slot, socket, ring buffer, timer) is cold in every
//!   cache and TLB: the worst case;
//! - `hot160/N`: round-robin over the same 160 of the N connections (each
//!   once per batch): what a segment costs when its connection is cached,
//!   with N connections in the table. Its flatness shows the path does no
//!   per-connection-count work; the gap to `all/N` is memory latency.
//!
//! ns per segment = batch time / 160 (criterion also reports segments/s).
//! The client's own cost (send + flush + taking the ACK) is not counted.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerohop_dataplane::fib::FibBuilder;
use zerohop_dataplane::graph::Packet;
use zerohop_dataplane::l3::Allocator;
use zerohop_dataplane::testing::HeapBuffer;
use zerohop_dataplane::Buffer;
use zerohop_tcpstack::rng::Rng;
use zerohop_tcpstack::stack::ETH_HEADROOM;
use zerohop_tcpstack::{App, Close, ConnId, Listen, SegmentDevice, Stack, TcpParams};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Listening ports 80.. (one client address reaches a destination from at
/// most 64 512 ephemeral ports).
const LISTEN_PORTS: u16 = 4;
/// Receive and send buffer of every connection, both sides.
const BUFFER: usize = 4096;
/// Payload of each data segment.
const PAYLOAD: usize = 128;
/// Segments per flush, all on different connections.
const GROUP: usize = 10;
/// Groups per measured batch. At N = 10 each connection gets 16 × 128 =
/// 2 KiB per batch, within its 4 KiB window.
const GROUPS: usize = 16;
const BATCH: usize = GROUP * GROUPS;
/// Connections of the `hot160` series: each batch touches the same ones.
const HOT: usize = BATCH;

type Pool = Arc<Mutex<Vec<HeapBuffer>>>;

/// The application: reads everything that arrives (server) or nothing
/// (client, which never receives data).
struct Sink {
    read: bool,
    buf: Vec<u8>,
    bytes: u64,
}

impl App for Sink {
    fn accepted(&mut self, _tcp: &mut Stack, _conn: ConnId, _listener: u32) {}
    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        if !self.read {
            return;
        }
        loop {
            let n = tcp.recv(conn, &mut self.buf);
            if n == 0 {
                break;
            }
            self.bytes += n as u64;
        }
    }
    fn deadline(&mut self, _tcp: &mut Stack, _conn: ConnId) {}
    fn closed(&mut self, _tcp: &mut Stack, conn: ConnId, how: Close) {
        panic!("connection {conn} closed ({how:?}) during the bench");
    }
}

struct Host {
    stack: Stack,
    app: Sink,
    alloc: Allocator<HeapBuffer>,
}

impl Host {
    fn new(addr: Ipv4Addr, n: usize, read: bool, pool: &Pool) -> Host {
        let mut fib = FibBuilder::new();
        fib.interface(0, addr, 24);
        let fib = Arc::new(fib.build().expect("fib"));
        let params = TcpParams {
            max_connections: n as u32 + 16,
            rx_buffer: BUFFER,
            tx_buffer: BUFFER,
            delayed_ack_ms: 0,
            ephemeral_ports: 1024..=65_535,
            ..TcpParams::default()
        };
        let pool = Arc::clone(pool);
        Host {
            stack: Stack::new(params, fib, vec![Some(addr)], 7, 0).expect("stack"),
            app: Sink {
                read,
                buf: vec![0; BUFFER],
                bytes: 0,
            },
            alloc: Box::new(move || {
                Some(
                    pool.lock()
                        .expect("pool")
                        .pop()
                        .unwrap_or_else(HeapBuffer::empty),
                )
            }),
        }
    }

    /// Flush, appending what it emits to `out`.
    fn flush(&mut self, out: &mut Vec<Packet<HeapBuffer>>) {
        let mtu = self.stack.params().mtu;
        let mut dev = SegmentDevice::new(&mut self.alloc, out, mtu);
        self.stack.flush(&mut self.app, &mut dev);
    }

    /// Take `pkts` (then flush), appending every answer to `out`.
    fn deliver(
        &mut self,
        pkts: &mut [Packet<HeapBuffer>],
        out: &mut Vec<Packet<HeapBuffer>>,
        now: u64,
    ) {
        let mtu = self.stack.params().mtu;
        let mut dev = SegmentDevice::new(&mut self.alloc, out, mtu);
        for p in pkts {
            self.stack
                .input(&mut p.buf.data_mut()[ETH_HEADROOM..], &mut dev, now);
        }
        self.stack.flush(&mut self.app, &mut dev);
    }
}

fn recycle(pool: &Pool, pkts: &mut Vec<Packet<HeapBuffer>>) {
    pool.lock()
        .expect("pool")
        .extend(pkts.drain(..).map(|p| p.buf));
}

/// A server and a client with `n` established connections; the client's
/// handles in a random order.
struct Pair {
    server: Host,
    client: Host,
    order: Vec<ConnId>,
    next: usize,
    pool: Pool,
    /// The clock both stacks see: see [`Pair::now`].
    clock: Duration,
}

impl Pair {
    fn new(n: usize) -> Pair {
        let pool: Pool = Arc::default();
        let mut server = Host::new(SERVER, n, true, &pool);
        for p in 0..LISTEN_PORTS {
            server.stack.listen(Listen {
                address: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80 + p),
                id: u32::from(p),
            });
        }
        let client = Host::new(CLIENT, n, false, &pool);
        let mut pair = Pair {
            server,
            client,
            order: Vec::with_capacity(n),
            next: 0,
            pool,
            clock: Duration::ZERO,
        };
        let setup = Instant::now();
        while pair.order.len() < n {
            // Handshakes 4 096 at a time, until the wire is quiet.
            let start = pair.order.len();
            for i in start..n.min(start + 4096) {
                let port = 80 + (i % usize::from(LISTEN_PORTS)) as u16;
                let conn = pair
                    .client
                    .stack
                    .connect(SocketAddrV4::new(SERVER, port))
                    .expect("connect");
                pair.order.push(conn);
            }
            pair.clock = setup.elapsed();
            pair.settle(pair.now());
        }
        assert_eq!(pair.server.stack.len(), n, "server connections");
        assert_eq!(pair.server.stack.stats().established.get(), n as u64);
        assert!(pair
            .order
            .iter()
            .all(|&c| pair.client.stack.is_established(c)));
        let mut rng = Rng(0x7c9_0000 + n as u64);
        for i in (1..n).rev() {
            pair.order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        pair
    }

    /// The clock, ms: wall time during the setup, then only the server's
    /// measured time (see the header).
    fn now(&self) -> u64 {
        1 + self.clock.as_millis() as u64
    }

    /// Flush both sides and carry segments between them until the wire is
    /// quiet.
    fn settle(&mut self, now: u64) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        self.client.flush(&mut a);
        self.server.flush(&mut b);
        loop {
            self.server.deliver(&mut a, &mut b, now);
            recycle(&self.pool, &mut a);
            if b.is_empty() {
                break;
            }
            self.client.deliver(&mut b, &mut a, now);
            recycle(&self.pool, &mut b);
            if a.is_empty() {
                break;
            }
        }
    }

    /// Have the client emit one batch of data segments into `segs`, on the
    /// first `active` connections of the permutation.
    fn batch(&mut self, active: usize, segs: &mut Vec<Packet<HeapBuffer>>) {
        let payload = [0x5a_u8; PAYLOAD];
        for _ in 0..GROUPS {
            for _ in 0..GROUP {
                self.next = (self.next + 1) % active;
                let conn = self.order[self.next];
                assert_eq!(self.client.stack.send(conn, &payload), PAYLOAD);
            }
            self.client.flush(segs);
        }
        assert_eq!(segs.len(), BATCH, "one segment per send");
    }

    /// Time the server's input of `iters` batches on the first `active`
    /// connections.
    fn run(&mut self, active: usize, iters: u64) -> Duration {
        let mut segs = Vec::with_capacity(BATCH);
        let mut acks = Vec::with_capacity(BATCH);
        let mut back = Vec::new();
        let mtu = self.server.stack.params().mtu;
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let now = self.now();
            self.client.stack.advance(now, &mut self.client.app);
            self.server.stack.advance(now, &mut self.server.app);
            self.settle(now);
            self.batch(active, &mut segs);
            let server = &mut self.server;
            let mut dev = SegmentDevice::new(&mut server.alloc, &mut acks, mtu);
            let start = Instant::now();
            for group in segs.chunks_mut(GROUP) {
                // As the tcp-input node does: warm the vector's connections
                // first, then feed the segments.
                server
                    .stack
                    .warm(group.iter().map(|p| &p.buf.data()[ETH_HEADROOM..]));
                for p in group {
                    server
                        .stack
                        .input(&mut p.buf.data_mut()[ETH_HEADROOM..], &mut dev, now);
                }
                server.stack.flush(&mut server.app, &mut dev);
            }
            let took = start.elapsed();
            total += took;
            self.clock += took;
            assert_eq!(acks.len(), BATCH, "one ACK per data segment");
            self.client.deliver(&mut acks, &mut back, now);
            assert!(back.is_empty(), "the client answers nothing");
            recycle(&self.pool, &mut segs);
            recycle(&self.pool, &mut acks);
        }
        total
    }
}

fn tcp_input(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_input");
    group.throughput(Throughput::Elements(BATCH as u64));
    for n in [10usize, 1_000, 10_000, 100_000] {
        // Built on first use, so a filter on the command line skips it.
        let mut pair: Option<Pair> = None;
        let get = |pair: &mut Option<Pair>| {
            if pair.is_none() {
                let t = Instant::now();
                *pair = Some(Pair::new(n));
                eprintln!(
                    "tcp_input: {n} connections established in {:?}",
                    t.elapsed()
                );
            }
        };
        group.bench_function(BenchmarkId::new("all", n), |b| {
            get(&mut pair);
            let pair = pair.as_mut().expect("built");
            b.iter_custom(|iters| pair.run(n, iters))
        });
        if n > HOT {
            group.bench_function(BenchmarkId::new("hot160", n), |b| {
                get(&mut pair);
                let pair = pair.as_mut().expect("built");
                b.iter_custom(|iters| pair.run(HOT, iters))
            });
        }
        if let Some(pair) = pair {
            assert_eq!(pair.server.stack.len(), n, "no connection lost");
            assert_eq!(pair.server.app.bytes % PAYLOAD as u64, 0);
        }
    }
    group.finish();
}

criterion_group!(benches, tcp_input);
criterion_main!(benches);
