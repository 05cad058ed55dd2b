//! Memory per idle ESTABLISHED connection of one worker's [`Stack`] (the
//! target: at most 16 KiB).
//!
//! Run with
//! `cargo run --release -p zerohop-tcpstack --example idle_memory [-- N RX TX]`.
//! With no arguments it measures 20 000 connections with 64 KiB buffers
//! (the `TcpParams` default), 256 KiB and 4 KiB buffers, each in a fresh
//! child process so that no measurement inherits another's heap.
//!
//! One measurement: a server [`Stack`] with `max_connections` = N and the
//! given receive/transmit buffers (all else default: delayed ACK 10 ms,
//! timestamps, window scaling, `idle_release_ms` 1000) listens on port 80. A
//! hand-written peer — a few words of state per connection, allocated before
//! the baseline, no second stack, so nothing but the server is measured —
//! opens N connections from N addresses: SYN (MSS, window scale,
//! SACK-permitted, timestamps, as Linux sends), ACK with 100 bytes, which the
//! server application echoes, and an ACK for the echo. Then all N
//! connections sit idle in ESTABLISHED with empty queues, and the example
//! reports, per connection:
//!
//! - `heap/conn`: live heap bytes added by the connections (a counting
//!   global allocator: bytes asked of malloc, without its 8–16 bytes of
//!   header and rounding): next to nothing, as neither the sockets nor
//!   their rings are on the heap (see below);
//! - `table/slot`: heap that `Stack::new` reserves per `max_connections`
//!   slot up front (flow-table slab and index, free list, timer wheel);
//! - `RSS/conn fresh`: growth of the process's `VmRSS` right after the
//!   exchange: the heap above, the connection's socket (a 512-byte cell of
//!   the stack's buffer pool, on huge pages) and the ring pages the 100
//!   bytes touched (one page of each ring);
//! - `RSS/conn idle`: the same after one more second of idleness, when
//!   every connection has given its ring pages back
//!   ([`zerohop_tcpstack::bufpool`]); what an idle connection costs,
//!   whatever it moved before (a connection that filled its 64 KiB rings
//!   gives back all 32 pages the same way).
//!
//! The rings and the sockets live in address space the stack maps itself
//! (`MAP_NORESERVE`), so their size costs address space, not memory: a ring
//! page is resident only between TCP writing it and the connection going
//! idle, and the sockets' cells become resident 2 MiB (4 096 sockets) at a
//! time as connections fill them.

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::{Arc, Mutex};

use smoltcp::iface::SocketStorage;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    TcpTimestampRepr,
};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use zerohop_dataplane::fib::FibBuilder;
use zerohop_dataplane::graph::Packet;
use zerohop_dataplane::l3::Allocator;
use zerohop_dataplane::testing::HeapBuffer;
use zerohop_dataplane::Buffer;
use zerohop_tcpstack::stack::ETH_HEADROOM;
use zerohop_tcpstack::{App, Close, ConnId, Listen, SegmentDevice, Stack, TcpParams};

/// The system allocator, counting the bytes it has out (`stats_alloc`).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Peer i is 10.1.0.0 + i, port 40 000.
const PEER_BASE: u32 = 0x0a01_0000;
const PEER_PORT: u16 = 40_000;
/// Bytes each way.
const EXCHANGE: usize = 100;
/// Connections handled per round.
const CHUNK: usize = 1024;
/// Packet buffers kept in the pool (allocated before the baseline).
const POOL: usize = 4 * CHUNK;

/// Live heap bytes.
fn heap() -> usize {
    // Reallocations are counted in both (growth allocated, shrinkage freed).
    let s = GLOBAL.stats();
    s.bytes_allocated.saturating_sub(s.bytes_deallocated)
}

/// `VmRSS` of this process, bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS")
        * 1024
}

/// The server application: echo what arrives.
struct Echo {
    accepted: Vec<ConnId>,
    buf: Vec<u8>,
}

impl App for Echo {
    fn accepted(&mut self, _tcp: &mut Stack, conn: ConnId, _listener: u32) {
        self.accepted.push(conn);
    }
    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        loop {
            let n = tcp.recv(conn, &mut self.buf);
            if n == 0 {
                break;
            }
            assert_eq!(tcp.send(conn, &self.buf[..n]), n, "echo fits");
        }
    }
    fn deadline(&mut self, _tcp: &mut Stack, _conn: ConnId) {}
    fn closed(&mut self, _tcp: &mut Stack, conn: ConnId, how: Close) {
        panic!("connection {conn} closed ({how:?})");
    }
}

/// What the peer knows of one connection.
#[derive(Clone, Copy, Default)]
struct Peer {
    /// Our next sequence number.
    snd_nxt: u32,
    /// The server's next sequence number (what we acknowledge).
    rcv_nxt: u32,
    /// The server's last timestamp (echoed).
    ts_recent: u32,
    /// Payload bytes received.
    received: u32,
}

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(PEER_BASE + i as u32)
}

/// Write peer `i`'s segment into `buf` (an IPv4 packet).
fn segment(buf: &mut Vec<u8>, i: usize, p: &Peer, syn: bool, payload: &[u8], tsval: u32) {
    let caps = ChecksumCapabilities::default();
    let tcp = TcpRepr {
        src_port: PEER_PORT,
        dst_port: 80,
        control: if syn {
            TcpControl::Syn
        } else if payload.is_empty() {
            TcpControl::None
        } else {
            TcpControl::Psh
        },
        seq_number: TcpSeqNumber(p.snd_nxt as i32),
        ack_number: (!syn).then_some(TcpSeqNumber(p.rcv_nxt as i32)),
        // 64 240 bytes, scaled by 2^7 after the SYN.
        window_len: if syn { 64_240 } else { 502 },
        window_scale: syn.then_some(7),
        max_seg_size: syn.then_some(1460),
        sack_permitted: syn,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestampRepr::new(tsval, p.ts_recent)),
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: addr(i),
        dst_addr: SERVER,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    buf.clear();
    buf.resize(20 + tcp.buffer_len(), 0);
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut buf[20..]),
        &IpAddress::Ipv4(addr(i)),
        &IpAddress::Ipv4(SERVER),
        &caps,
    );
}

/// Take what the server emitted into the peers' state; return the buffers
/// to the pool.
fn receive(out: &mut Vec<Packet<HeapBuffer>>, peers: &mut [Peer], pool: &Mutex<Vec<HeapBuffer>>) {
    let caps = ChecksumCapabilities::default();
    for p in out.iter() {
        let ip = Ipv4Packet::new_checked(&p.buf.data()[ETH_HEADROOM..]).expect("IPv4");
        let ip_repr = Ipv4Repr::parse(&ip, &caps).expect("IPv4 header");
        let seg = TcpPacket::new_checked(ip.payload()).expect("TCP");
        let tcp = TcpRepr::parse(
            &seg,
            &IpAddress::Ipv4(ip_repr.src_addr),
            &IpAddress::Ipv4(ip_repr.dst_addr),
            &caps,
        )
        .expect("TCP header");
        assert!(
            tcp.control != TcpControl::Rst,
            "the server reset a connection"
        );
        let i = (u32::from(ip_repr.dst_addr) - PEER_BASE) as usize;
        let peer = &mut peers[i];
        let end = (tcp.seq_number.0 as u32)
            .wrapping_add(tcp.payload.len() as u32)
            .wrapping_add(u32::from(tcp.control == TcpControl::Syn));
        if end.wrapping_sub(peer.rcv_nxt) as i32 > 0 || tcp.control == TcpControl::Syn {
            peer.rcv_nxt = end;
        }
        peer.received += tcp.payload.len() as u32;
        if let Some(ts) = tcp.timestamp {
            peer.ts_recent = ts.tsval;
        }
    }
    pool.lock()
        .expect("pool")
        .extend(out.drain(..).map(|p| p.buf));
}

/// What one measurement found, bytes.
struct Row {
    n: usize,
    rx: usize,
    tx: usize,
    heap_per_conn: f64,
    table_per_slot: f64,
    rss_per_conn: f64,
    rss_idle_per_conn: f64,
    table_rss: f64,
}

fn measure(n: usize, rx: usize, tx: usize) -> Row {
    let pool: Arc<Mutex<Vec<HeapBuffer>>> =
        Arc::new(Mutex::new((0..POOL).map(|_| HeapBuffer::empty()).collect()));
    let mut peers = vec![Peer::default(); n];
    let mut app = Echo {
        accepted: Vec::with_capacity(n),
        buf: vec![0; 4096],
    };
    let mut out: Vec<Packet<HeapBuffer>> = Vec::with_capacity(POOL);
    let mut scratch = Vec::with_capacity(256);
    let payload = [0x42u8; EXCHANGE];
    let mut fib = FibBuilder::new();
    fib.interface(0, SERVER, 24);
    let fib = Arc::new(fib.build().expect("fib"));
    let params = TcpParams {
        max_connections: n as u32,
        rx_buffer: rx,
        tx_buffer: tx,
        ..TcpParams::default()
    };
    let pool2 = Arc::clone(&pool);
    let mut alloc: Allocator<HeapBuffer> = Box::new(move || {
        Some(
            pool2
                .lock()
                .expect("pool")
                .pop()
                .unwrap_or_else(HeapBuffer::empty),
        )
    });

    let (heap0, rss0) = (heap(), rss());
    let mut stack = Stack::new(params, fib, vec![Some(SERVER)], 7, 0).expect("stack");
    stack.listen(Listen {
        address: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
        id: 0,
    });
    let (heap1, rss1) = (heap(), rss());

    let mut now = 1;
    let mtu = stack.params().mtu;
    for start in (0..n).step_by(CHUNK) {
        let chunk = start..n.min(start + CHUNK);
        // SYN; ACK + data; ACK of the echo.
        for step in 0..3 {
            let mut dev = SegmentDevice::new(&mut alloc, &mut out, mtu);
            for i in chunk.clone() {
                let p = &mut peers[i];
                let tsval = now as u32;
                match step {
                    0 => {
                        p.snd_nxt = 0x1000_0000u32.wrapping_mul(i as u32 + 1);
                        segment(&mut scratch, i, p, true, &[], tsval);
                        p.snd_nxt = p.snd_nxt.wrapping_add(1);
                    }
                    1 => {
                        segment(&mut scratch, i, p, false, &payload, tsval);
                        p.snd_nxt = p.snd_nxt.wrapping_add(EXCHANGE as u32);
                    }
                    _ => segment(&mut scratch, i, p, false, &[], tsval),
                }
                stack.input(&mut scratch, &mut dev, now);
            }
            stack.flush(&mut app, &mut dev);
            receive(&mut out, &mut peers, &pool);
            now += 1;
        }
    }
    // Let the delayed ACKs (10 ms) fire, well before `idle_release_ms`.
    now += 100;
    stack.advance(now, &mut app);
    let mut dev = SegmentDevice::new(&mut alloc, &mut out, mtu);
    stack.flush(&mut app, &mut dev);
    receive(&mut out, &mut peers, &pool);

    assert_eq!(stack.len(), n, "all connections open");
    assert_eq!(app.accepted.len(), n, "all accepted");
    assert_eq!(stack.stats().established.get(), n as u64);
    assert!(
        peers.iter().all(|p| p.received == EXCHANGE as u32),
        "every echo came back"
    );
    for &c in &app.accepted {
        assert_eq!(stack.state(c), Some(tcp::State::Established));
        assert_eq!(stack.queues(c), Some((0, 0)), "idle");
    }
    assert!(!stack.has_work());
    let (heap2, rss2) = (heap(), rss());
    assert_eq!(pool.lock().expect("pool").len(), POOL, "no packet held");

    // Idle past `idle_release_ms`: the rings' pages go back.
    now += u64::from(stack.params().idle_release_ms) + 10;
    stack.advance(now, &mut app);
    let mut dev = SegmentDevice::new(&mut alloc, &mut out, mtu);
    stack.flush(&mut app, &mut dev);
    receive(&mut out, &mut peers, &pool);
    assert_eq!(
        stack.stats().buffers_released.get(),
        n as u64,
        "every idle connection gave its pages back"
    );
    assert_eq!(stack.len(), n, "all connections still open");
    let rss3 = rss();

    let row = Row {
        n,
        rx,
        tx,
        heap_per_conn: (heap2 - heap1) as f64 / n as f64,
        table_per_slot: (heap1 - heap0) as f64 / n as f64,
        rss_per_conn: rss2.saturating_sub(rss1) as f64 / n as f64,
        rss_idle_per_conn: rss3.saturating_sub(rss1) as f64 / n as f64,
        table_rss: rss1.saturating_sub(rss0) as f64,
    };
    drop(stack);
    row
}

fn header() {
    println!(
        "socket: size_of tcp::Socket = {} B, SocketStorage = {} B (one per connection, in a 512-byte cell of the stack's buffer pool)",
        std::mem::size_of::<tcp::Socket<'static>>(),
        std::mem::size_of::<SocketStorage<'static>>(),
    );
    println!(
        "{:>7} {:>6} {:>6} | {:>10} {:>11} | {:>14} {:>13} {:>8} | {:>14}",
        "N",
        "rx",
        "tx",
        "heap/conn",
        "table/slot",
        "RSS/conn fresh",
        "RSS/conn idle",
        "target",
        "RSS Stack::new"
    );
}

fn print(r: &Row) {
    println!(
        "{:>7} {:>6} {:>6} | {:>8.0} B {:>9.0} B | {:>12.0} B {:>11.0} B {:>8} | {:>12.0} B",
        r.n,
        r.rx,
        r.tx,
        r.heap_per_conn,
        r.table_per_slot,
        r.rss_per_conn,
        r.rss_idle_per_conn,
        if r.rss_idle_per_conn <= 16_384.0 {
            "idle ok"
        } else {
            "idle over"
        },
        r.table_rss,
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.replace('_', "")
                .parse()
                .expect("usage: idle_memory [N RX TX]")
        })
        .collect();
    match args[..] {
        [n, rx, tx] => {
            if std::env::var_os("IDLE_MEMORY_CHILD").is_none() {
                header();
            }
            print(&measure(n, rx, tx));
        }
        [] => {
            header();
            let exe = std::env::current_exe().expect("current exe");
            for (rx, tx) in [(65_536, 65_536), (262_144, 262_144), (4096, 4096)] {
                let mut cmd = Command::new(&exe);
                cmd.args(["20000", &rx.to_string(), &tx.to_string()])
                    .env("IDLE_MEMORY_CHILD", "1");
                let child = cmd.output().expect("run a measurement");
                assert!(
                    child.status.success(),
                    "measurement failed: {}",
                    String::from_utf8_lossy(&child.stderr)
                );
                print!("{}", String::from_utf8_lossy(&child.stdout));
            }
        }
        _ => panic!("usage: idle_memory [N RX TX]"),
    }
}
