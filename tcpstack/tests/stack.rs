//! Two [`Stack`]s wired back to back in memory: handshakes, data both ways,
//! half-close, RST for a closed port, back-pressure and timers, with the
//! real smoltcp state machine and no kernel.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use zerohop_dataplane::fib::FibBuilder;
use zerohop_dataplane::graph::Packet;
use zerohop_dataplane::l3::Allocator;
use zerohop_dataplane::testing::HeapBuffer;
use zerohop_dataplane::Buffer;
use zerohop_tcpstack::stack::ETH_HEADROOM;
use zerohop_tcpstack::{App, Close, ConnId, Listen, SegmentDevice, Stack, TcpParams};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// What an application saw, and how it behaves.
#[derive(Default)]
struct Recorder {
    /// Echo what arrives (server) instead of only collecting it.
    echo: bool,
    /// Do not read at all (a stalled reader).
    stalled: bool,
    /// Close our side once the peer's FIN arrived.
    close_on_fin: bool,
    accepted: Vec<ConnId>,
    received: HashMap<ConnId, Vec<u8>>,
    closed: Vec<(ConnId, Close)>,
    deadlines: Vec<ConnId>,
    fin_seen: Vec<ConnId>,
}

impl App for Recorder {
    fn accepted(&mut self, _tcp: &mut Stack, conn: ConnId, _listener: u32) {
        self.accepted.push(conn);
    }
    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        if self.stalled {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.recv(conn, &mut buf);
            if n == 0 {
                break;
            }
            if self.echo {
                assert_eq!(tcp.send(conn, &buf[..n]), n, "echo fits");
            }
            self.received
                .entry(conn)
                .or_default()
                .extend_from_slice(&buf[..n]);
        }
        if tcp.recv_finished(conn) && !self.fin_seen.contains(&conn) {
            self.fin_seen.push(conn);
            if self.close_on_fin {
                tcp.close(conn);
            }
        }
    }
    fn deadline(&mut self, _tcp: &mut Stack, conn: ConnId) {
        self.deadlines.push(conn);
    }
    fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close) {
        assert!(
            tcp.key(conn).is_some(),
            "the application still sees the connection while told it closed"
        );
        self.closed.push((conn, how));
    }
}

struct Host {
    stack: Stack,
    app: Recorder,
    alloc: Allocator<HeapBuffer>,
}

fn host(addr: Ipv4Addr, params: TcpParams) -> Host {
    let mut fib = FibBuilder::new();
    fib.interface(0, addr, 24);
    let fib = Arc::new(fib.build().expect("fib"));
    Host {
        stack: Stack::new(params, fib, vec![Some(addr)], 7, 0).expect("stack"),
        app: Recorder::default(),
        alloc: Box::new(|| Some(HeapBuffer::empty())),
    }
}

/// Two hosts and the segments in flight between them.
struct Net {
    a: Host,
    b: Host,
    now: u64,
    /// Segments exchanged (both directions).
    segments: usize,
    /// Immediate answers not delivered yet.
    a_pending: Vec<Packet<HeapBuffer>>,
    b_pending: Vec<Packet<HeapBuffer>>,
}

impl Net {
    fn new(params: TcpParams) -> Net {
        let mut b = host(SERVER, params.clone());
        b.stack.listen(Listen {
            address: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
            id: 0,
        });
        Net {
            a: host(CLIENT, params),
            b,
            now: 0,
            segments: 0,
            a_pending: Vec::new(),
            b_pending: Vec::new(),
        }
    }

    /// Flush both sides and deliver segments until the wire is quiet (or
    /// `max` rounds); advance the clock by 1 ms per round.
    fn run(&mut self, max: usize) {
        for _ in 0..max {
            let mut from_a = flush(&mut self.a, self.now);
            let mut from_b = flush(&mut self.b, self.now);
            from_a.append(&mut self.a_pending);
            from_b.append(&mut self.b_pending);
            if from_a.is_empty() && from_b.is_empty() {
                self.now += 1;
                self.a.stack.advance(self.now, &mut self.a.app);
                self.b.stack.advance(self.now, &mut self.b.app);
                if !self.a.stack.has_work() && !self.b.stack.has_work() {
                    return;
                }
                continue;
            }
            self.segments += from_a.len() + from_b.len();
            self.b_pending = deliver(&mut self.b, from_a, self.now);
            self.a_pending = deliver(&mut self.a, from_b, self.now);
            self.now += 1;
            self.a.stack.advance(self.now, &mut self.a.app);
            self.b.stack.advance(self.now, &mut self.b.app);
        }
    }

    /// Run for `ms` of simulated time regardless of quiet wires.
    fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.run(1);
            self.now += 1;
            self.a.stack.advance(self.now, &mut self.a.app);
            self.b.stack.advance(self.now, &mut self.b.app);
        }
    }
}

fn flush(h: &mut Host, _now: u64) -> Vec<Packet<HeapBuffer>> {
    let mut out = Vec::new();
    let mtu = h.stack.params().mtu;
    let mut dev = SegmentDevice::new(&mut h.alloc, &mut out, mtu);
    h.stack.flush(&mut h.app, &mut dev);
    out
}

/// Feed `pkts` to `h`; return what it answered at once (RSTs for no
/// connection, immediate ACKs).
fn deliver(h: &mut Host, pkts: Vec<Packet<HeapBuffer>>, now: u64) -> Vec<Packet<HeapBuffer>> {
    let mut out = Vec::new();
    let mtu = h.stack.params().mtu;
    // As the tcp-input node does (a hint: harmless for any segment).
    h.stack
        .warm(pkts.iter().map(|p| &p.buf.data()[ETH_HEADROOM..]));
    {
        let mut dev = SegmentDevice::new(&mut h.alloc, &mut out, mtu);
        for mut p in pkts {
            assert_eq!(p.meta.l3_offset as usize, ETH_HEADROOM);
            assert!(p.meta.local_origin);
            assert!(
                p.buf.len() - ETH_HEADROOM <= usize::from(mtu),
                "fits the MTU"
            );
            h.stack
                .input(&mut p.buf.data_mut()[ETH_HEADROOM..], &mut dev, now);
        }
    }
    out
}

fn server() -> SocketAddrV4 {
    SocketAddrV4::new(SERVER, 80)
}

#[test]
fn handshake_echo_and_graceful_close() {
    let mut net = Net::new(TcpParams::default());
    net.b.app.echo = true;
    net.b.app.close_on_fin = true;
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    assert_eq!(net.b.app.accepted.len(), 1, "server accepted");
    assert!(net.a.stack.is_established(c));
    let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    while sent < msg.len() {
        sent += net.a.stack.send(c, &msg[sent..]);
        net.run(10_000);
    }
    net.run(10_000);
    assert_eq!(net.a.app.received.get(&c).map(Vec::len), Some(msg.len()));
    assert_eq!(net.a.app.received[&c], msg, "echo intact");
    net.a.stack.close(c);
    net.run(10_000);
    assert_eq!(net.b.app.fin_seen.len(), 1, "server saw the client's FIN");
    assert_eq!(net.a.app.fin_seen, vec![c], "client saw the server's FIN");
    // The server closed second: it is freed at once; the client sits in
    // TIME-WAIT until time_wait_ms.
    assert_eq!(net.b.app.closed.len(), 1);
    assert_eq!(net.b.app.closed[0].1, Close::Graceful);
    assert_eq!(net.a.stack.len(), 1, "client in TIME-WAIT");
    net.run_for(u64::from(TcpParams::default().time_wait_ms) + 50);
    assert_eq!(net.a.app.closed, vec![(c, Close::Graceful)]);
    assert!(net.a.stack.is_empty() && net.b.stack.is_empty());
    assert_eq!(net.a.stack.stats().time_wait_cut.get(), 1);
    assert_eq!(net.a.stack.stats().active(), 0);
}

#[test]
fn closed_port_answers_with_reset() {
    let mut net = Net::new(TcpParams::default());
    let c = net
        .a
        .stack
        .connect(SocketAddrV4::new(SERVER, 81))
        .expect("connect");
    // The RST comes back from input, not from a flush: deliver by hand.
    let syn = flush(&mut net.a, 0);
    assert_eq!(syn.len(), 1);
    let mut rst = Vec::new();
    {
        let mtu = net.b.stack.params().mtu;
        let mut dev = SegmentDevice::new(&mut net.b.alloc, &mut rst, mtu);
        for mut p in syn {
            net.b
                .stack
                .input(&mut p.buf.data_mut()[ETH_HEADROOM..], &mut dev, 0);
        }
    }
    assert_eq!(rst.len(), 1, "one RST");
    assert_eq!(net.b.stack.stats().rst_no_connection.get(), 1);
    let answer = deliver(&mut net.a, rst, 1);
    assert!(answer.is_empty());
    net.run(10);
    assert_eq!(net.a.app.closed, vec![(c, Close::Reset)]);
    assert!(net.a.stack.is_empty());
}

/// Two hosts with `buffer`-byte rings, the server's reader stalled, and the
/// client's connection to it, established.
fn stalled_reader(buffer: usize) -> (Net, ConnId) {
    let params = TcpParams {
        rx_buffer: buffer,
        tx_buffer: buffer,
        ..TcpParams::default()
    };
    let mut net = Net::new(params);
    net.b.app.stalled = true;
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    (net, c)
}

#[test]
fn a_stalled_reader_closes_the_window() {
    let (mut net, c) = stalled_reader(16 * 1024);
    let chunk = vec![7u8; 64 * 1024];
    let mut queued = 0;
    for _ in 0..20 {
        queued += net.a.stack.send(c, &chunk);
        net.run(1000);
    }
    // The receiver holds at most its buffer, the sender at most its own.
    let server_conn = net.b.app.accepted[0];
    let (rx, _) = net.b.stack.queues(server_conn).expect("server conn");
    let (_, tx) = net.a.stack.queues(c).expect("client conn");
    assert_eq!(rx, 16 * 1024, "receiver full");
    assert_eq!(tx, 16 * 1024, "sender full");
    assert_eq!(queued, 32 * 1024, "no more accepted than both buffers");
    // Reading resumes the flow.
    net.b.app.stalled = false;
    net.b.app.ready(&mut net.b.stack, server_conn);
    net.run(10_000);
    assert!(net.b.app.received[&server_conn].len() > 16 * 1024);
}

#[test]
fn deadlines_and_abort() {
    let mut net = Net::new(TcpParams::default());
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    net.a.stack.set_deadline(c, Some(net.now + 50));
    net.run_for(40);
    assert!(net.a.app.deadlines.is_empty());
    net.run_for(20);
    assert_eq!(net.a.app.deadlines, vec![c]);
    net.a.stack.abort(c);
    net.run(100);
    assert_eq!(net.a.app.closed, vec![(c, Close::Aborted)]);
    let s = net.b.app.accepted[0];
    assert_eq!(
        net.b.app.closed,
        vec![(s, Close::Reset)],
        "peer saw the RST"
    );
}

#[test]
fn listener_limit_refuses_extra_syns() {
    let params = TcpParams {
        listener_connection_limit: 2,
        ..TcpParams::default()
    };
    let mut net = Net::new(params);
    let conns: Vec<_> = (0..3)
        .map(|_| net.a.stack.connect(server()).expect("connect"))
        .collect();
    net.run(200);
    assert_eq!(net.b.app.accepted.len(), 2);
    assert!(net.b.stack.stats().listener_overflow.get() >= 1);
    assert!(net.a.stack.is_established(conns[0]) && net.a.stack.is_established(conns[1]));
    assert!(!net.a.stack.is_established(conns[2]));
}

#[test]
fn retransmissions_are_counted() {
    let mut net = Net::new(TcpParams::default());
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    net.a.stack.send(c, b"lost once");
    // Lose the data segment.
    let lost = flush(&mut net.a, net.now);
    assert_eq!(lost.len(), 1);
    net.run_for(2_000);
    assert!(net.a.stack.stats().retransmitted_segments.get() >= 1);
    let s = net.b.app.accepted[0];
    assert_eq!(net.b.app.received[&s], b"lost once");
}

/// The side that closed first reaches TIME-WAIT when the peer's FIN arrives,
/// possibly with bytes it has not read yet (the L4 proxy could not pass them
/// on: the other side's send buffer was full). The application must not hear
/// that the connection is over before it has read them all.
#[test]
fn time_wait_with_unread_bytes_is_reported_after_they_are_read() {
    let mut net = Net::new(TcpParams::default());
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    let s = net.b.app.accepted[0];
    // A half-closes and stops reading; B answers, then closes.
    net.a.app.stalled = true;
    net.a.stack.close(c);
    net.run(1000);
    let reply: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(net.b.stack.send(s, &reply), reply.len());
    net.b.stack.close(s);
    net.run(1000);
    assert_eq!(
        net.a.stack.state(c),
        Some(smoltcp::socket::tcp::State::TimeWait)
    );
    assert_eq!(
        net.a.stack.queues(c),
        Some((reply.len(), 0)),
        "unread reply"
    );
    assert!(
        net.a.app.closed.is_empty(),
        "told closed with {} bytes unread",
        reply.len()
    );
    // Reading everything ends it.
    net.a.app.stalled = false;
    net.a.app.ready(&mut net.a.stack, c);
    net.run(1000);
    assert_eq!(net.a.app.received.get(&c), Some(&reply), "reply intact");
    assert_eq!(net.a.app.fin_seen, vec![c]);
    assert_eq!(net.a.app.closed, vec![(c, Close::Graceful)]);
    net.run_for(u64::from(TcpParams::default().time_wait_ms) + 50);
    assert!(net.a.stack.is_empty());
}

/// With the NIC's RSS known, worker 1 of 2 opens connections from ports
/// whose replies hash to its own queue (1), and they still work.
#[test]
fn rss_steered_active_opens_pick_ports_that_come_back_to_the_worker() {
    use zerohop_tcpstack::ports::{RssSteering, MICROSOFT_RSS_KEY};
    let steering = RssSteering::round_robin(MICROSOFT_RSS_KEY, 2, 128).expect("steering");
    let params = TcpParams {
        workers: 2,
        worker: 1,
        rss: Some(steering.clone()),
        ..TcpParams::default()
    };
    let mut net = Net::new(params);
    net.b.app.echo = true;
    let conns: Vec<ConnId> = (0..50)
        .map(|_| net.a.stack.connect(server()).expect("connect"))
        .collect();
    net.run(1000);
    for c in conns {
        let key = net.a.stack.key(c).expect("open");
        assert_eq!(
            steering.queue_for(key.remote, key.local),
            1,
            "the reply to {key:?} should reach worker 1's queue"
        );
        assert!(net.a.stack.is_established(c));
    }
}

/// The sequence number of the IPv4/TCP segment `p`.
fn seq_of(p: &Packet<HeapBuffer>) -> u32 {
    let t = &p.buf.data()[ETH_HEADROOM + 20..];
    u32::from_be_bytes([t[4], t[5], t[6], t[7]])
}

/// The TCP flags of the IPv4/TCP segment `p`.
fn flags_of(p: &Packet<HeapBuffer>) -> u8 {
    p.buf.data()[ETH_HEADROOM + 20 + 13]
}

/// Rewrite the sequence number of `p`, fixing the TCP checksum.
fn set_seq(p: &mut Packet<HeapBuffer>, seq: u32) {
    use zerohop_dataplane::l3::checksum::update;
    let old = seq_of(p);
    let t = &mut p.buf.data_mut()[ETH_HEADROOM + 20..];
    let mut sum = u16::from_be_bytes([t[16], t[17]]);
    sum = update(sum, (old >> 16) as u16, (seq >> 16) as u16);
    sum = update(sum, old as u16, seq as u16);
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[16..18].copy_from_slice(&sum.to_be_bytes());
}

/// A kernel client that closed second keeps no TIME-WAIT and may reuse its
/// port at once; the server, in TIME-WAIT, takes a SYN beyond the old
/// connection's sequence space as a new connection (RFC 6191), and answers
/// one that is not with a challenge ACK, not a SYN-ACK.
#[test]
fn a_new_syn_beyond_the_old_sequence_space_ends_time_wait() {
    let params = TcpParams {
        ephemeral_ports: 40_000..=40_000,
        ..TcpParams::default()
    };
    let mut net = Net::new(params);
    net.a.app.close_on_fin = true;
    let c = net.a.stack.connect(server()).expect("connect");
    let syn = flush(&mut net.a, net.now);
    let isn = seq_of(&syn[0]);
    net.a_pending = deliver(&mut net.b, syn, net.now);
    net.run(100);
    let s = net.b.app.accepted[0];
    // The server closes first and ends in TIME-WAIT; the client's side is
    // gone and its one port free.
    net.b.stack.close(s);
    net.run(100);
    assert_eq!(
        net.b.stack.state(s),
        Some(smoltcp::socket::tcp::State::TimeWait)
    );
    assert!(net.a.stack.state(c).is_none(), "client connection freed");

    // Same 4-tuple, a SYN inside the old sequence space: a challenge ACK
    // (not delivered here), no new connection.
    let c2 = net.a.stack.connect(server()).expect("connect again");
    assert_eq!(net.a.stack.key(c2).expect("key").local.port(), 40_000);
    let mut syn = flush(&mut net.a, net.now);
    set_seq(&mut syn[0], isn);
    let mut answer = deliver(&mut net.b, syn, net.now);
    answer.extend(flush(&mut net.b, net.now));
    assert_eq!(answer.len(), 1);
    assert_eq!(flags_of(&answer[0]) & 0x17, 0x10, "a bare ACK");
    assert_eq!(net.b.stack.stats().syn_challenged.get(), 1);
    assert_eq!(net.b.stack.stats().time_wait_reused.get(), 0);
    assert_eq!(net.b.app.accepted.len(), 1);

    // Beyond it: TIME-WAIT ends and the new connection is accepted.
    // smoltcp picks random ISNs: try until one lies beyond (about half do),
    // forgetting each try that does not (its RST is not delivered).
    net.a.stack.abort(c2);
    let _rst = flush(&mut net.a, net.now);
    let mut tries = 0;
    let c3 = loop {
        tries += 1;
        assert!(
            tries <= 32,
            "no ISN beyond the old sequence space in 32 tries"
        );
        let c3 = net.a.stack.connect(server()).expect("connect a third time");
        let syn = flush(&mut net.a, net.now);
        let beyond = (seq_of(&syn[0]).wrapping_sub(isn.wrapping_add(2)) as i32) > 0;
        net.a_pending = deliver(&mut net.b, syn, net.now);
        if beyond {
            break c3;
        }
        // At most a challenge ACK (one a second), not delivered.
        net.a_pending.clear();
        assert!(flush(&mut net.b, net.now).is_empty());
        assert_eq!(net.b.app.accepted.len(), 1);
        net.a.stack.abort(c3);
        let _rst = flush(&mut net.a, net.now);
    };
    net.run(100);
    assert_eq!(net.b.stack.stats().time_wait_reused.get(), 1);
    assert_eq!(net.b.app.accepted.len(), 2, "accepted anew");
    assert!(net.a.stack.is_established(c3));
    assert_eq!(net.b.stack.len(), 1, "the old connection is gone");
}

/// The client loses an open connection (its RST never arrives) and reuses
/// the port: the server's stale connection answers the new SYN with a
/// challenge ACK (smoltcp alone drops it, so the client would hang in
/// SYN-SENT), the client's RST ends it, and the client's next SYN opens a
/// new connection.
#[test]
fn a_syn_on_a_stale_open_connection_is_challenged_and_the_port_reopens() {
    let params = TcpParams {
        ephemeral_ports: 40_000..=40_000,
        ..TcpParams::default()
    };
    let mut net = Net::new(params);
    net.b.app.echo = true;
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    assert!(net.a.stack.send(c, b"hello") == 5);
    net.run(100);
    assert_eq!(net.a.app.received[&c], b"hello");
    let s = net.b.app.accepted[0];
    assert_eq!(
        net.b.stack.state(s),
        Some(smoltcp::socket::tcp::State::Established)
    );

    // The client aborts; its RST is lost.
    net.a.stack.abort(c);
    let rst = flush(&mut net.a, net.now);
    assert!(rst.iter().any(|p| flags_of(p) & 0x04 != 0), "a RST sent");
    net.run(100);
    assert!(net.a.stack.state(c).is_none(), "client connection freed");

    // Same 4-tuple again.
    let c2 = net.a.stack.connect(server()).expect("connect again");
    assert_eq!(net.a.stack.key(c2).expect("key").local.port(), 40_000);
    net.run_for(5_000);
    assert!(net.a.stack.is_established(c2), "the port opened again");
    assert_eq!(net.b.stack.stats().syn_challenged.get(), 1);
    assert_eq!(net.b.stack.stats().resets_received.get(), 1);
    assert_eq!(net.b.app.closed, vec![(s, Close::Reset)]);
    assert_eq!(net.b.app.accepted.len(), 2, "accepted anew");
    assert_eq!(net.b.stack.len(), 1, "the stale connection is gone");
    assert!(net.a.stack.send(c2, b"again") == 5);
    net.run(100);
    assert_eq!(net.a.app.received[&c2], b"again");
}

#[test]
fn a_connection_busy_longer_than_the_release_time_keeps_its_pages() {
    let params = TcpParams {
        idle_release_ms: 200,
        // Every segment acknowledged in the flush that reads it: nothing
        // is pending when the server flushes.
        delayed_ack_ms: 0,
        ..TcpParams::default()
    };
    let mut net = Net::new(params);
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    let released = |net: &Net| {
        net.a.stack.stats().buffers_released.get() + net.b.stack.stats().buffers_released.get()
    };
    // A small message every 30 ms for a second. The server reads each as
    // it arrives and answers nothing: its rings are empty whenever it
    // flushes, yet it is never idle for 200 ms.
    for i in 0..33u8 {
        assert_eq!(net.a.stack.send(c, &[i; 100]), 100);
        net.run_for(30);
    }
    let received: usize = net.b.app.received.values().map(Vec::len).sum();
    assert_eq!(received, 3300, "all delivered");
    assert_eq!(released(&net), 0, "busy connections keep their pages");
    net.run_for(300);
    assert_eq!(released(&net), 2, "both ends released them once idle");
}

#[test]
fn idle_connections_give_buffer_pages_back_and_keep_working() {
    let params = TcpParams {
        idle_release_ms: 200,
        ..TcpParams::default()
    };
    let mut net = Net::new(params);
    net.b.app.echo = true;
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    let mut expected = Vec::new();
    for round in 0..3u8 {
        // A message larger than a page, so several pages are written.
        let msg: Vec<u8> = (0..20_000u32).map(|i| (i as u8) ^ round).collect();
        let mut sent = 0;
        while sent < msg.len() {
            sent += net.a.stack.send(c, &msg[sent..]);
            net.run(10_000);
        }
        net.run(10_000);
        expected.extend_from_slice(&msg);
        assert_eq!(
            net.a.app.received[&c], expected,
            "echo intact in round {round}"
        );
        let released = |net: &Net| {
            net.a.stack.stats().buffers_released.get() + net.b.stack.stats().buffers_released.get()
        };
        let before = released(&net);
        // Busy for less than the release time: nothing is given back.
        net.run_for(100);
        assert_eq!(released(&net), before, "not idle long enough");
        net.run_for(200);
        assert_eq!(released(&net), before + 2, "both ends released their pages");
    }
    assert!(net.a.stack.is_established(c));
}

/// A segment whose TCP checksum is wrong is dropped before smoltcp sees
/// it, and counted; the connection goes on.
#[test]
fn a_segment_with_a_bad_checksum_is_dropped_and_counted() {
    let mut net = Net::new(TcpParams::default());
    let c = net.a.stack.connect(server()).expect("connect");
    net.run(100);
    assert_eq!(net.a.stack.send(c, b"hello"), 5);
    let mut seg = flush(&mut net.a, net.now);
    assert_eq!(seg.len(), 1);
    let last = seg[0].buf.len() - 1;
    seg[0].buf.data_mut()[last] ^= 0xff;
    let answers = deliver(&mut net.b, seg, net.now);
    assert!(answers.is_empty());
    assert_eq!(net.b.stack.stats().bad_checksum.get(), 1);
    // smoltcp's retransmission timeout, then the retransmission.
    net.run_for(3_000);
    let server_conn = net.b.app.accepted[0];
    assert_eq!(
        net.b.app.received[&server_conn], b"hello",
        "retransmitted intact"
    );
}

/// Return a copy of the IPv4/TCP segment `ip` whose payload is `extra`
/// bytes longer, lengths and checksums fixed.
fn lengthened(ip: &[u8], extra: usize) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};
    let caps = ChecksumCapabilities::default();
    let packet = Ipv4Packet::new_checked(ip).expect("ipv4");
    let mut ip_repr = Ipv4Repr::parse(&packet, &caps).expect("ipv4 repr");
    let tcp = TcpPacket::new_checked(packet.payload()).expect("tcp");
    let (src, dst) = (
        IpAddress::Ipv4(ip_repr.src_addr),
        IpAddress::Ipv4(ip_repr.dst_addr),
    );
    let repr = TcpRepr::parse(&tcp, &src, &dst, &caps).expect("tcp repr");
    let mut payload = repr.payload.to_vec();
    payload.extend(std::iter::repeat(7u8).take(extra));
    let repr = TcpRepr {
        payload: &payload,
        ..repr
    };
    ip_repr.payload_len = repr.buffer_len();
    let mut out = vec![0u8; ip_repr.buffer_len() + repr.buffer_len()];
    let mut packet = Ipv4Packet::new_unchecked(&mut out[..]);
    ip_repr.emit(&mut packet, &caps);
    let mut tcp = TcpPacket::new_unchecked(packet.payload_mut());
    repr.emit(&mut tcp, &src, &dst, &caps);
    out
}

/// A peer that sends beyond the window the stack advertised (within its
/// buffer, and with an ACK still delayed) is answered, not a crash: smoltcp
/// 0.12 accepted such bytes up to the buffer's size and then panicked
/// computing the window it had last advertised (`last_scaled_window`,
/// smoltcp issue #1048). A scaled window reaches that case without any
/// hostile peer: the advertised window is the free space rounded down to
/// the scale, so its right edge moves back by up to 2^scale - 1 bytes as
/// odd-sized segments fill a stalled reader's buffer, and segments sent
/// against the earlier edge land beyond the later one (seen with iperf3 and
/// 1 MiB buffers).
#[test]
fn bytes_beyond_the_advertised_window_do_not_crash_the_stack() {
    let (mut net, c) = stalled_reader(128 * 1024);
    // Fill the reader's buffer but for 1,003 bytes: it advertises 1,000
    // (the scale is 2).
    const FREE: usize = 1003;
    let mut queued = 0;
    while queued < 128 * 1024 - FREE {
        let n = (128 * 1024 - FREE - queued).min(1000);
        queued += net.a.stack.send(c, &vec![7u8; n]);
        net.run(1000);
    }
    // Past the delayed ACK: the reader acknowledged everything.
    net.run_for(50);
    let server_conn = net.b.app.accepted[0];
    assert_eq!(net.b.stack.queues(server_conn).expect("conn").0, queued);
    // The next segment as the writer sends it, 1,000 bytes, then 2 bytes
    // longer: past the advertised edge, within the buffer, in order (so
    // smoltcp does not ACK at once, as it does for out-of-order data).
    assert_eq!(net.a.stack.send(c, &[7u8; 1000]), 1000);
    let seg = flush(&mut net.a, net.now);
    assert_eq!(seg.len(), 1, "one data segment");
    let mut long = lengthened(&seg[0].buf.data()[ETH_HEADROOM..], 2);
    let mut answers = Vec::new();
    {
        let mtu = net.b.stack.params().mtu;
        let mut dev = SegmentDevice::new(&mut net.b.alloc, &mut answers, mtu);
        net.b.stack.input(&mut long, &mut dev, net.now);
    }
    let received = net.b.stack.queues(server_conn).expect("conn").0;
    // The reader resumes while the ACK is still delayed: the flush that
    // follows weighs the window it opened against the one last advertised
    // (where smoltcp 0.12 panicked had it taken the 2 bytes).
    net.b.app.stalled = false;
    net.b.app.ready(&mut net.b.stack, server_conn);
    answers.extend(flush(&mut net.b, net.now));
    assert_eq!(
        received,
        queued + 1000,
        "the advertised window taken, no more"
    );
    assert_eq!(net.b.stack.stats().beyond_window.get(), 1);
    net.a_pending.extend(answers);
    net.run(10_000);
    let got = net.b.app.received[&server_conn].len();
    assert!(got >= queued + 1000, "{got} of {}", queued + 1000);
}

/// The window's right edge moves back without any misbehaving peer: the
/// window is the free space rounded down to the scale (2 for 128 KiB), so
/// with 1,004 bytes free the edge is the buffer's end, and after one more
/// byte it is 3 bytes short of it. A writer that had sent against the first
/// edge has 3 bytes beyond the second; they are cut (smoltcp 0.12 would
/// panic on them), held, and fed to smoltcp once the reader opens the
/// window: the stream arrives intact and the writer never retransmits.
#[test]
fn bytes_cut_by_a_retreating_window_edge_are_held_and_delivered() {
    const BUFFER: usize = 128 * 1024;
    const FREE: usize = 1004;
    let stream: Vec<u8> = (0..BUFFER as u32 + 10_000)
        .map(|i| (i % 251) as u8)
        .collect();
    let (mut net, c) = stalled_reader(BUFFER);
    let mut queued = 0;
    while queued < BUFFER - FREE {
        let n = (BUFFER - FREE - queued).min(1000);
        queued += net.a.stack.send(c, &stream[queued..queued + n]);
        net.run(1000);
    }
    // Past the delayed ACK: the reader acknowledged everything and
    // advertised its 1,004 free bytes (a multiple of 4: the buffer's end).
    net.run_for(50);
    let server_conn = net.b.app.accepted[0];
    assert_eq!(net.b.stack.queues(server_conn).expect("conn").0, queued);

    // The writer sends 1 byte, then 1,003: both against that edge.
    assert_eq!(net.a.stack.send(c, &stream[queued..queued + 1]), 1);
    let first = flush(&mut net.a, net.now);
    assert_eq!(
        net.a.stack.send(c, &stream[queued + 1..queued + FREE]),
        1003
    );
    let second = flush(&mut net.a, net.now);
    assert_eq!((first.len(), second.len()), (1, 1), "one segment each");
    queued += FREE;

    // The first arrives; the reader's delayed ACK advertises 1,000 of its
    // 1,003 free bytes: the edge moved back by 3.
    let mut to_a = deliver(&mut net.b, first, net.now);
    net.now += u64::from(net.b.stack.params().delayed_ack_ms) + 1;
    net.b.stack.advance(net.now, &mut net.b.app);
    to_a.extend(flush(&mut net.b, net.now));
    assert!(!to_a.is_empty(), "the reader acknowledged the first byte");

    // The second lands 3 bytes beyond the new edge.
    to_a.extend(deliver(&mut net.b, second, net.now));
    let stats = net.b.stack.stats();
    assert_eq!(stats.beyond_window.get(), 1, "cut at the edge");
    assert_eq!(stats.beyond_window_held.get(), 1, "and held");
    assert_eq!(
        net.b.stack.queues(server_conn).expect("conn").0,
        queued - 3,
        "smoltcp took the window it advertised, no more"
    );

    // The reader resumes: the held bytes go in with the window it opens.
    let start = net.now;
    net.b.app.stalled = false;
    net.b.app.ready(&mut net.b.stack, server_conn);
    net.a_pending.extend(to_a);
    net.run(10_000);
    let quiet = net.now - start;
    let got = &net.b.app.received[&server_conn];
    assert_eq!(got.len(), queued, "every byte arrived");
    assert!(got[..] == stream[..queued], "in order and intact");
    assert_eq!(
        net.a.stack.queues(c).expect("conn").1,
        0,
        "the writer has nothing unacknowledged"
    );
    assert_eq!(
        net.a.stack.stats().retransmitted_segments.get(),
        0,
        "the writer sent nothing twice"
    );
    assert!(quiet < 10, "all done in {quiet} ms: no timer waited for");
}
