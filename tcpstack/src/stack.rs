//! One worker's TCP: smoltcp driven one connection at a time.
//!
//! A [`Stack`] holds the worker's connections in a [`FlowTable`]; each
//! connection owns a one-socket smoltcp `SocketSet` whose socket and ring
//! buffers live on a slot of the worker's [`BufPool`]. A received segment is
//! looked up by its 4-tuple and only that connection's socket sees it
//! (`poll_ingress_single`); what the socket answers is collected with
//! `poll_egress` on the same one-socket set. Each connection has one timer in
//! the worker's [`TimerWheel`] at the earliest of smoltcp's `poll_at`, the
//! application's deadline and the end of its (shortened) TIME-WAIT; it is
//! moved only to an earlier time (a timer that fires early just rearms), so
//! the ACK that pushes the retransmission timeout later costs no wheel
//! operation. Before a vector's segments are fed, [`Stack::warm`] prefetches
//! every segment's connection state in stages, so the vector's cache misses
//! overlap instead of following one another. Nothing walks all
//! connections, so a segment costs the same at 10 and at 100 000
//! connections, give or take the memory latency `warm` cannot hide.
//!
//! The application (the L4 proxy) sees connections through the [`App`]
//! trait: accepted, ready (something may have changed), deadline, closed. It
//! moves bytes with [`Stack::splice`], which copies from one connection's
//! receive buffer straight into another's send buffer: no buffer of its own,
//! so a slow reader closes the fast writer's window (back-pressure) instead
//! of growing memory.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::sync::{Arc, OnceLock};
use std::time::Instant as StdInstant;

use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet};

use crate::bufpool::{BufPool, PooledSocket};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration as SDuration, Instant as SInstant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};
use zerohop_dataplane::fib::{Fib, Route};
use zerohop_dataplane::graph::Packet;
use zerohop_dataplane::l3::{checksum, Allocator};
use zerohop_dataplane::{Buffer, Counter};

use crate::flow::{FlowId, FlowKey, FlowTable};
use crate::ports::{
    EphemeralPorts, EphemeralPortsConfig, PortsError, RssFilter, RssMode, RssSteering,
};
use crate::timer::{TimerHandle, TimerWheel};
use crate::CapacityError;

/// A connection's handle: stale once the connection is closed.
pub type ConnId = FlowId;

/// Bytes of Ethernet header room left in front of every emitted IP packet,
/// filled in later by `ip4-rewrite`.
pub const ETH_HEADROOM: usize = 14;

/// Segments one connection may emit per flush before it yields to the others
/// (it is flushed again on the next poll).
const MAX_SEGMENTS_PER_FLUSH: usize = 64;

/// No deadline.
const NEVER: u64 = u64::MAX;

/// TCP settings of one worker (all connections alike).
#[derive(Debug, Clone)]
pub struct TcpParams {
    /// Most connections (downstream + upstream) at once.
    pub max_connections: u32,
    /// Receive buffer per connection, bytes (sets the advertised window and
    /// the window scale).
    pub rx_buffer: usize,
    /// Send buffer per connection, bytes.
    pub tx_buffer: usize,
    /// Delayed ACK; 0 acknowledges every segment at once.
    pub delayed_ack_ms: u32,
    /// Keep-alive probe interval; 0 turns keep-alive off.
    pub keepalive_s: u32,
    /// TIME-WAIT is cut to this (smoltcp's own is 10 s).
    pub time_wait_ms: u32,
    /// Downstream connections per listener, at most; 0 for no limit.
    pub listener_connection_limit: u32,
    /// IP MTU: sets the MSS (MTU - 40) advertised and used.
    pub mtu: u16,
    /// Nagle's algorithm (off for a proxy: it would delay what the peer sent).
    pub nagle: bool,
    /// Local ports for active opens, shared by all workers.
    pub ephemeral_ports: RangeInclusive<u16>,
    /// Workers sharing the port range, and this worker's index.
    pub workers: u16,
    /// This worker's index.
    pub worker: u16,
    /// The NICs' RSS steering, where replies' queues can be predicted:
    /// ephemeral ports whose replies hash to this worker's queue (its
    /// index) are preferred.
    pub rss: Option<RssSteering>,
    /// A connection whose buffers stayed empty this long gives their pages
    /// back to the OS (see [`crate::bufpool`]); 0 keeps them.
    pub idle_release_ms: u32,
}

impl Default for TcpParams {
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            // The largest window without scaling (see `trim_to_window`).
            rx_buffer: 65_535,
            tx_buffer: 65_536,
            delayed_ack_ms: 10,
            keepalive_s: 0,
            time_wait_ms: 2_000,
            listener_connection_limit: 0,
            mtu: 1500,
            nagle: false,
            ephemeral_ports: 32_768..=60_999,
            workers: 1,
            worker: 0,
            rss: None,
            idle_release_ms: 1_000,
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Both FINs exchanged.
    Graceful,
    /// The peer sent a RST (or refused the connection).
    Reset,
    /// We aborted it ([`Stack::abort`]).
    Aborted,
    /// smoltcp gave up on the peer (retransmissions or keep-alive).
    TimedOut,
}

/// What the stack tells the application.
pub trait App {
    /// A connection on listener `listener` finished its handshake; `listener`
    /// is the listener's index in the order of [`Stack::listen`] calls (closed
    /// listeners keep theirs).
    fn accepted(&mut self, tcp: &mut Stack, conn: ConnId, listener: u32);
    /// Something may have changed on `conn`: data arrived, send space was
    /// freed, a FIN arrived, an active open completed.
    fn ready(&mut self, tcp: &mut Stack, conn: ConnId);
    /// The deadline set with [`Stack::set_deadline`] passed.
    fn deadline(&mut self, tcp: &mut Stack, conn: ConnId);
    /// `conn` is closing for good; its word and key are still readable
    /// during this call, and its handle is stale after it.
    fn closed(&mut self, tcp: &mut Stack, conn: ConnId, how: Close);
    /// Called once per worker loop after the timers ran: work of the
    /// application's own (health checks) may open connections here.
    fn poll(&mut self, tcp: &mut Stack) {
        let _ = tcp;
    }
}

/// A listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// Local address; `0.0.0.0` for every local address.
    pub address: SocketAddrV4,
    /// The application's name for it. [`App::accepted`] reports the
    /// listener's index in `listen` order, which is this id when ids follow
    /// that order (as zerohop's proxies give them).
    pub id: u32,
}

/// Counters of one worker's TCP layer (single writer: the worker).
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Connections created by a SYN to a listener.
    pub passive_opens: Counter,
    /// Connections opened towards upstreams.
    pub active_opens: Counter,
    /// Connections that reached ESTABLISHED.
    pub established: Counter,
    /// Connections freed.
    pub closed: Counter,
    /// ... of which ended by a RST from the peer.
    pub resets_received: Counter,
    /// ... of which we aborted.
    pub aborted: Counter,
    /// ... of which smoltcp timed out.
    pub timed_out: Counter,
    /// TIME-WAIT connections cut short at `time_wait_ms`.
    pub time_wait_cut: Counter,
    /// TIME-WAIT connections ended early by a new SYN for the same 4-tuple
    /// beyond their sequence space (RFC 6191, as Linux does).
    pub time_wait_reused: Counter,
    /// RSTs sent for segments of no connection (closed port, stale flow).
    pub rst_no_connection: Counter,
    /// SYNs for the 4-tuple of a connection that is still open here (its
    /// peer lost it: a RST that never arrived, a client that restarted)
    /// answered with a challenge ACK (RFC 5961 section 4; smoltcp drops
    /// them): the peer's RST then ends the stale connection and its next
    /// SYN opens a new one (see [`challenge_for_syn`]).
    pub syn_challenged: Counter,
    /// SYNs refused: the listener's connection limit.
    pub listener_overflow: Counter,
    /// SYNs or active opens refused: the connection table is full.
    pub table_full: Counter,
    /// Active opens refused: no free ephemeral port.
    pub ports_exhausted: Counter,
    /// Segments retransmitted (sequence space sent before).
    pub retransmitted_segments: Counter,
    /// SACK-carrying duplicate ACKs whose window was evened out so smoltcp
    /// counts them towards fast retransmit (see [`mark_dup_ack`]).
    pub dup_acks_marked: Counter,
    /// Segments received.
    pub segments_in: Counter,
    /// Segments sent.
    pub segments_out: Counter,
    /// Segments not parsed (too short, not TCP).
    pub malformed: Counter,
    /// Segments dropped for a wrong TCP checksum.
    pub bad_checksum: Counter,
    /// Segments handed to the worker that owns their port (those dropped
    /// because its queue was full are the graph's `tcp-input`
    /// `handoff-queue-full` drops).
    pub handed_off: Counter,
    /// Emitted segments dropped: no buffer.
    pub no_buffer: Counter,
    /// Connections refused: no memory could be mapped for their buffers.
    pub no_memory: Counter,
    /// Idle connections that gave their buffers' pages back to the OS.
    pub buffers_released: Counter,
    /// Received segments cut back to the right edge of the window last
    /// advertised (smoltcp 0.12 would take the bytes beyond it and panic;
    /// see the crate documentation).
    pub beyond_window: Counter,
    /// ... of which the bytes cut were held and fed to smoltcp once its
    /// window covered them again, so the peer need not send them again (see
    /// [`hold_beyond_window`]).
    pub beyond_window_held: Counter,
}

impl TcpStats {
    /// Return every counter by name, `active` included (for logs and stats).
    pub fn values(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("passive_opens", self.passive_opens.get()),
            ("active_opens", self.active_opens.get()),
            ("established", self.established.get()),
            ("closed", self.closed.get()),
            ("active", self.active()),
            ("resets_received", self.resets_received.get()),
            ("aborted", self.aborted.get()),
            ("timed_out", self.timed_out.get()),
            ("time_wait_cut", self.time_wait_cut.get()),
            ("time_wait_reused", self.time_wait_reused.get()),
            ("rst_no_connection", self.rst_no_connection.get()),
            ("syn_challenged", self.syn_challenged.get()),
            ("listener_overflow", self.listener_overflow.get()),
            ("table_full", self.table_full.get()),
            ("ports_exhausted", self.ports_exhausted.get()),
            ("retransmitted_segments", self.retransmitted_segments.get()),
            ("dup_acks_marked", self.dup_acks_marked.get()),
            ("segments_in", self.segments_in.get()),
            ("segments_out", self.segments_out.get()),
            ("handed_off", self.handed_off.get()),
            ("no_buffer", self.no_buffer.get()),
            ("no_memory", self.no_memory.get()),
            ("buffers_released", self.buffers_released.get()),
            ("beyond_window", self.beyond_window.get()),
            ("beyond_window_held", self.beyond_window_held.get()),
            ("malformed", self.malformed.get()),
            ("bad_checksum", self.bad_checksum.get()),
        ]
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        (self.passive_opens.get() + self.active_opens.get()).saturating_sub(self.closed.get())
    }
}

/// Why [`Stack::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No route to the upstream or no local address towards it.
    #[error("no route from a local address to {0}")]
    NoRoute(SocketAddrV4),
    /// No ephemeral port.
    #[error(transparent)]
    Ports(#[from] PortsError),
    /// The connection table is full.
    #[error("the connection table is full ({0} connections)")]
    TableFull(u32),
    /// No memory could be mapped for the connection's buffers.
    #[error("no memory for the connection's buffers")]
    NoMemory,
    /// smoltcp refused the endpoints.
    #[error("smoltcp refused {0}: {1}")]
    Socket(SocketAddrV4, tcp::ConnectError),
}

/// One connection.
struct Conn {
    /// The socket, on a slot of the stack's [`BufPool`].
    sock: PooledSocket,
    timer: Option<TimerHandle>,
    /// When `timer` fires, ms.
    timer_at: u64,
    /// The application's deadline, ms.
    deadline: u64,
    /// End of the shortened TIME-WAIT, ms.
    time_wait_end: u64,
    /// The application's word.
    user: u64,
    /// Listener index for passive opens.
    listener: Option<u32>,
    /// State after the last flush.
    state: State,
    established: bool,
    /// A RST arrived on it.
    reset_in: bool,
    /// We aborted it.
    aborted: bool,
    /// In `touched` already.
    touched: bool,
    /// In `notify` already.
    notified: bool,
    /// Highest sequence number sent + 1 (for counting retransmissions).
    snd_max: Option<u32>,
    /// The application was told it closed (TIME-WAIT belongs to the stack).
    reported: bool,
    /// The peer's last acknowledgment (see [`mark_dup_ack`]).
    peer_ack: PeerAck,
    /// End of the peer's sequence space seen so far (highest seq + length).
    rcv_end: Option<u32>,
    /// The acknowledgment number we last sent.
    ack_sent: Option<u32>,
    /// The right edge of the receive window we last advertised (valid once
    /// `edge_known`): the peer may send no byte at or beyond it.
    rcv_edge: u32,
    edge_known: bool,
    /// The scale of the windows we advertise: smoltcp's for our receive
    /// buffer once the peer's SYN offered scaling, else 0.
    rcv_wscale: u8,
    /// When the buffers' pages go back to the OS if the connection stays
    /// idle, ms.
    release_at: u64,
    /// The peer's sequence number whose byte lands at offset 0 of the
    /// receive ring (its SYN's + 1): where a segment will be written, for
    /// [`Stack::warm`]'s prefetch (a hint: wrong after 4 GiB through a ring
    /// whose size is not a power of two, which costs only a wasted fetch).
    rx_origin: u32,
}

impl Conn {
    /// Note the window an emitted segment (`ip`, IPv4) advertises.
    fn note_window_sent(&mut self, ip: &[u8]) {
        if let Some(edge) = advertised_edge(ip, self.rcv_wscale) {
            self.rcv_edge = edge;
            self.edge_known = true;
        }
    }
    fn socket(&self) -> &tcp::Socket<'static> {
        self.sock.socket()
    }
    fn socket_mut(&mut self) -> &mut tcp::Socket<'static> {
        self.sock.socket_mut()
    }
    /// Note that data goes through the rings: their pages are resident, and
    /// the idle time after which they go back starts again (from the flush
    /// that finds them empty).
    fn data_moved(&mut self) {
        self.sock.mark_resident();
        self.release_at = NEVER;
    }
    /// Return true if the rings hold nothing: no unread or unacknowledged
    /// bytes, and no out-of-order data (which smoltcp keeps in the receive
    /// ring, uncounted by `recv_queue`: we have acknowledged everything the
    /// peer sent).
    fn rings_empty(&self) -> bool {
        let s = self.socket();
        s.recv_queue() == 0
            && s.send_queue() == 0
            && self.rcv_end.map_or(true, |e| Some(e) == self.ack_sent)
    }
}

/// What the stack has to say about one received segment.
#[derive(Debug, Clone, Copy)]
struct SegmentInfo {
    key: FlowKey,
    syn: bool,
    ack: bool,
    rst: bool,
    /// Sequence number and the end of the sequence space it covers.
    seq: u32,
    end: u32,
    /// It carries data.
    payload: bool,
}

/// A segment of the vector [`Stack::warm`] works on.
#[derive(Debug, Clone, Copy)]
struct Warming {
    key: FlowKey,
    /// The key's hash in the flow table.
    hash: u64,
    seq: u32,
    /// Sequence space it covers (its payload, give or take a SYN or FIN).
    len: u32,
}

/// Parse the IPv4 + TCP headers of `ip` (an IPv4 packet).
fn parse(ip: &[u8]) -> Option<SegmentInfo> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    // ip4-input drops such headers already; the stack's callers may not be
    // the graph (tests, tools), and `trim_to_window` relies on it.
    if ihl < 20 {
        return None;
    }
    let tcp = ip.get(ihl..ihl + 20)?;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let flags = tcp[13];
    let (seq, end) = sent_range(ip)?;
    Some(SegmentInfo {
        key: FlowKey::from_received(SocketAddrV4::new(src, sport), SocketAddrV4::new(dst, dport)),
        syn: flags & 0x02 != 0,
        ack: flags & 0x10 != 0,
        rst: flags & 0x04 != 0,
        seq,
        end,
        payload: end.wrapping_sub(seq) > u32::from(flags & 0x03 != 0),
    })
}

/// Clamp the MSS option of a SYN (`ip`: an IPv4 packet) to `max`, fixing
/// the TCP checksum incrementally; return true if it changed.
///
/// smoltcp sizes segments as MTU - 40 and forgets its TCP options (12 bytes
/// of timestamps), so a full segment would exceed the MTU and be dropped by
/// smoltcp itself. zerohop therefore gives smoltcp an MTU 12 bytes larger
/// and clamps the MSS both ways: peers' SYNs to MTU - 52 (what smoltcp may
/// then send, options included, fits the port), and our own SYNs to the
/// port's true MTU - 40.
pub fn clamp_mss(ip: &mut [u8], max: u16) -> bool {
    let Some(&vihl) = ip.first() else {
        return false;
    };
    let ihl = usize::from(vihl & 0xf) * 4;
    let Some(tcp) = ip.get_mut(ihl..) else {
        return false;
    };
    if tcp.len() < 20 || tcp[13] & 0x02 == 0 {
        return false;
    }
    let doff = (usize::from(tcp[12] >> 4) * 4).min(tcp.len());
    let mut i = 20;
    while i < doff {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*tcp.get(i + 1).unwrap_or(&0));
                if len < 2 || i + len > doff {
                    break;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old <= max {
                        return false;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&max.to_be_bytes());
                    let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
                    let new = zerohop_dataplane::l3::checksum::update(sum, old, max);
                    tcp[16..18].copy_from_slice(&new.to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// Bytes of TCP options smoltcp adds to data segments without counting them
/// in its segment size (timestamps).
pub const OPTION_ROOM: u16 = 12;

/// The last acknowledgment a connection received: its number and its raw
/// (unscaled) window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerAck {
    /// Acknowledgment number.
    pub ack: u32,
    /// Window field as received.
    pub window: u16,
    /// Set once an acknowledgment was seen.
    pub seen: bool,
}

/// Make a SACK-carrying duplicate ACK look duplicate to smoltcp; return true
/// if `ip` (an IPv4/TCP packet) was rewritten.
///
/// smoltcp counts an ACK as duplicate (three of them start fast retransmit)
/// only if its window equals the previous one, as RFC 5681 says. Linux
/// receivers grow their window with every ACK while they hold out-of-order
/// data, so smoltcp never sees a duplicate and every loss waits for the
/// retransmission timeout (hundreds of ms early in a connection, when
/// smoltcp's RTT estimate is still near its 300 ms start). An ACK with no
/// data and no SYN/FIN/RST that repeats the last acknowledgment number and
/// carries SACK blocks reports data above a hole: a duplicate in RFC 6675's
/// sense. Its window is set back to the last one (the checksum fixed
/// incrementally), so smoltcp counts it; the larger window arrives with the
/// next new acknowledgment. Any other ACK becomes the new `last`.
pub fn mark_dup_ack(ip: &mut [u8], last: &mut PeerAck) -> bool {
    let Some(&vihl) = ip.first() else {
        return false;
    };
    let ihl = usize::from(vihl & 0xf) * 4;
    let total = match ip.get(2..4) {
        Some(t) => usize::from(u16::from_be_bytes([t[0], t[1]])),
        None => return false,
    };
    let Some(tcp) = ip.get_mut(ihl..total.max(ihl)) else {
        return false;
    };
    if tcp.len() < 20 {
        return false;
    }
    let flags = tcp[13];
    if flags & 0x10 == 0 {
        return false;
    }
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let window = u16::from_be_bytes([tcp[14], tcp[15]]);
    let doff = (usize::from(tcp[12] >> 4) * 4).clamp(20, tcp.len());
    let pure = tcp.len() == doff && flags & 0x07 == 0;
    let dup =
        pure && last.seen && ack == last.ack && window != last.window && has_sack(&tcp[20..doff]);
    if !dup {
        *last = PeerAck {
            ack,
            window,
            seen: true,
        };
        return false;
    }
    tcp[14..16].copy_from_slice(&last.window.to_be_bytes());
    let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
    let new = zerohop_dataplane::l3::checksum::update(sum, window, last.window);
    tcp[16..18].copy_from_slice(&new.to_be_bytes());
    true
}

/// Return true if TCP options `opts` hold a SACK block (kind 5).
fn has_sack(opts: &[u8]) -> bool {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return false,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1).unwrap_or(&0));
                if len < 2 {
                    return false;
                }
                if kind == 5 {
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// The acknowledgment number of an IPv4/TCP packet with ACK set.
fn ack_of(ip: &[u8]) -> Option<u32> {
    let ihl = usize::from(*ip.first()? & 0xf) * 4;
    let tcp = ip.get(ihl..ihl + 20)?;
    (tcp[13] & 0x10 != 0).then(|| u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]))
}

/// The scale smoltcp 0.12 gives the windows it advertises for a receive
/// buffer of `rx` bytes when the peer takes part in window scaling: the
/// bits of the buffer's size beyond 16.
fn window_shift(rx: usize) -> u8 {
    (usize::BITS - rx.leading_zeros()).saturating_sub(16) as u8
}

/// Return true if the SYN `ip` (IPv4/TCP) carries the window scale option.
fn offers_window_scale(ip: &[u8]) -> bool {
    let Some(&vihl) = ip.first() else {
        return false;
    };
    let ihl = usize::from(vihl & 0xf) * 4;
    let Some(tcp) = ip.get(ihl..) else {
        return false;
    };
    let doff = usize::from(tcp.get(12).map_or(0, |b| b >> 4)) * 4;
    let opts = tcp.get(20..doff.min(tcp.len())).unwrap_or_default();
    let mut i = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            0 => return false,
            1 => i += 1,
            3 => return true,
            _ => match opts.get(i + 1) {
                Some(&len) if len >= 2 => i += usize::from(len),
                _ => return false,
            },
        }
    }
    false
}

/// The right edge of the receive window an emitted segment `ip` (IPv4/TCP,
/// ACK set) advertises: its acknowledgment number plus its window, scaled
/// by `wscale` unless it is a SYN (RFC 7323: a SYN's window is never
/// scaled).
fn advertised_edge(ip: &[u8], wscale: u8) -> Option<u32> {
    let ack = ack_of(ip)?;
    let ihl = usize::from(*ip.first()? & 0xf) * 4;
    let tcp = ip.get(ihl..ihl + 20)?;
    let window = u32::from(u16::from_be_bytes([tcp[14], tcp[15]]));
    let shift = if tcp[13] & 0x02 != 0 { 0 } else { wscale };
    Some(ack.wrapping_add(window << shift))
}

/// Cut the payload of the received segment `ip` (IPv4/TCP) back to the
/// window's right edge `edge`, dropping a FIN beyond it, and fix the
/// lengths and checksums; return true if it was cut.
///
/// RFC 9293 takes only the part of a segment inside the receive window.
/// smoltcp 0.12 takes whatever fits its buffer, and then panics working out
/// the window it last advertised (`last_scaled_window` subtracts past the
/// edge: smoltcp issue #1048, fixed in 0.13). A peer needs no malice to get
/// there: smoltcp rounds its scaled window down to the scale, so the edge
/// it advertises can move back by up to 2^scale - 1 bytes as a stalled
/// reader's buffer fills, and segments sent against the earlier edge land
/// beyond the new one. Cutting them at the edge keeps the stack to the
/// window it advertised; what the retreat explains is held and fed back
/// once the window covers it ([`hold_beyond_window`]), and the peer sends
/// anything else again.
fn trim_to_window(ip: &mut [u8], edge: u32) -> bool {
    let Some((seq, end)) = sent_range(ip) else {
        return false;
    };
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let Some(tcp) = ip.get(ihl..ihl + 20) else {
        return false;
    };
    let doff = usize::from(tcp[12] >> 4) * 4;
    let fin = tcp[13] & 0x01 != 0;
    let payload = end.wrapping_sub(seq).wrapping_sub(u32::from(fin));
    // Only a payload that ends beyond the edge is cut (a FIN right at the
    // edge is smoltcp's to judge: it takes no buffer space).
    if (seq.wrapping_add(payload).wrapping_sub(edge) as i32) <= 0 {
        return false;
    }
    let keep = (edge.wrapping_sub(seq) as i32).clamp(0, payload as i32) as usize;
    let total = ihl + doff + keep;
    if total > ip.len() || doff < 20 {
        return false;
    }
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    checksum::fill_ipv4(&mut ip[..ihl]);
    ip[ihl + 13] &= !0x01;
    fill_tcp_checksum(ip);
    true
}

/// Received bytes that lay beyond the right edge of the window smoltcp last
/// advertised, kept until its window covers them (see
/// [`hold_beyond_window`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// Sequence number of the first byte.
    seq: u32,
    data: Vec<u8>,
    /// The segment's FIN came after them.
    fin: bool,
}

/// The part of the received segment `ip` (IPv4/TCP) that lies beyond the
/// right edge `edge`, if the window's retreat explains it: at most
/// 2^`wscale` - 1 bytes past the edge.
///
/// smoltcp rounds its scaled window down to a multiple of 2^scale, so the
/// edge it advertises moves back by up to 2^scale - 1 bytes as a stalled
/// reader's buffer fills (the buffer's own end never moves back). A peer
/// that filled the earlier window then sends bytes past the later edge,
/// which [`trim_to_window`] must cut off (smoltcp 0.12 would panic), and
/// without this the peer sends them again only after its retransmission
/// timeout or tail-loss probe: with 256 KiB buffers a few hundred times a
/// second at several Gbit/s. Held, they are fed to smoltcp as soon as a
/// window it advertises covers them ([`Stack::feed_held`]). More than the
/// retreat can explain is the peer's error and is only cut.
fn hold_beyond_window(ip: &[u8], edge: u32, wscale: u8) -> Option<Held> {
    if wscale == 0 {
        return None;
    }
    let (seq, end) = sent_range(ip)?;
    let ihl = usize::from(*ip.first()? & 0xf) * 4;
    let tcp = ip.get(ihl..ihl + 20)?;
    let doff = usize::from(tcp[12] >> 4) * 4;
    let fin = tcp[13] & 0x01 != 0;
    let payload = end.wrapping_sub(seq).wrapping_sub(u32::from(fin));
    let over = seq.wrapping_add(payload).wrapping_sub(edge) as i32;
    if over <= 0 || over >= 1 << wscale.min(30) {
        return None;
    }
    let skip = (edge.wrapping_sub(seq) as i32).clamp(0, payload as i32) as u32;
    let data = ip.get(ihl + doff + skip as usize..ihl + doff + payload as usize)?;
    Some(Held {
        seq: seq.wrapping_add(skip),
        data: data.to_vec(),
        fin,
    })
}

/// Keep `h` for connection `bits`: after the bytes already held if it
/// continues them, else instead of them (the peer sent again from
/// elsewhere).
fn hold(held: &mut HashMap<u64, Held>, bits: u64, h: Held) {
    if let Some(old) = held.get_mut(&bits) {
        if !old.fin && old.seq.wrapping_add(old.data.len() as u32) == h.seq {
            old.data.extend_from_slice(&h.data);
            old.fin = h.fin;
            return;
        }
    }
    held.insert(bits, h);
}

/// An IPv4/TCP segment from `key`'s peer to us carrying `data` at `seq`,
/// acknowledging as the peer last did (`ack`), with valid checksums.
fn peer_segment(key: &FlowKey, seq: u32, ack: &PeerAck, data: &[u8], fin: bool) -> Vec<u8> {
    let total = 40 + data.len();
    let mut ip = vec![0u8; total];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&key.remote.ip().octets());
    ip[16..20].copy_from_slice(&key.local.ip().octets());
    checksum::fill_ipv4(&mut ip[..20]);
    let tcp = &mut ip[20..];
    tcp[0..2].copy_from_slice(&key.remote.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&key.local.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.ack.to_be_bytes());
    tcp[12] = 5 << 4;
    // ACK (+ PSH with data) (+ FIN)
    tcp[13] = 0x10 | if data.is_empty() { 0 } else { 0x08 } | u8::from(fin);
    tcp[14..16].copy_from_slice(&ack.window.to_be_bytes());
    tcp[20..].copy_from_slice(data);
    fill_tcp_checksum(&mut ip);
    ip
}

/// For a SYN (no ACK) on the 4-tuple of `c`, a synchronized connection: a
/// segment from the peer that draws smoltcp's challenge ACK, to feed it in
/// the SYN's place; `None` where the SYN goes to smoltcp as it is (a
/// handshake in progress, or nothing known yet to build it from).
///
/// Such a SYN means the peer lost the connection (a RST that never arrived,
/// a client that restarted) and reuses the port. smoltcp 0.12 drops any
/// segment without ACK after the handshake, so the stale connection would
/// swallow every retry (an idle one lives until the application's idle
/// timeout): the client hangs in SYN-SENT for minutes. RFC 5961 section 4
/// (and Linux) answers with an ACK carrying the connection's real sequence
/// numbers; the peer, in SYN-SENT, answers that with a RST which ends the
/// stale connection, and its next SYN opens a new one. The segment built
/// here is a keep-alive shaped ACK one byte below the last acknowledgment
/// sent, which smoltcp answers (at most once a second) with exactly that
/// ACK; TIME-WAIT SYNs beyond the old sequence space never get here
/// ([`Stack::time_wait_reusable`]).
fn challenge_for_syn(key: &FlowKey, c: &Conn) -> Option<Vec<u8>> {
    let synchronized = matches!(
        c.socket().state(),
        State::Established
            | State::FinWait1
            | State::FinWait2
            | State::CloseWait
            | State::Closing
            | State::LastAck
            | State::TimeWait
    );
    if !synchronized || !c.peer_ack.seen {
        return None;
    }
    let ack_sent = c.ack_sent?;
    Some(peer_segment(
        key,
        ack_sent.wrapping_sub(1),
        &c.peer_ack,
        &[],
        false,
    ))
}

/// The ones'-complement sum of the IPv4/TCP packet `ip`'s TCP segment and
/// pseudo-header (0xffff for a valid checksum), or `None` if the lengths do
/// not hold.
fn tcp_sum(ip: &[u8]) -> Option<u16> {
    let ihl = usize::from(*ip.first()? & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let seg = ip.get(ihl..total)?;
    let pseudo = checksum::pseudo_ipv4(ip.get(12..20)?, 6, seg.len() as u16);
    Some(checksum::add(pseudo, checksum::sum(seg)))
}

/// Return true if the TCP checksum of the IPv4/TCP packet `ip` is right.
///
/// smoltcp 0.12 checks and fills TCP checksums 16 bits at a time with a
/// byte swap each, a fifth of zerohop's CPU when it forwards full-size
/// segments without a kernel in the way; zerohop tells smoltcp its device
/// does both and does them with [`checksum::sum`] (a vectorised loop).
fn tcp_checksum_ok(ip: &[u8]) -> bool {
    tcp_sum(ip) == Some(0xffff)
}

/// Fill in the TCP checksum of the IPv4 packet `ip` if it carries TCP
/// (smoltcp left it 0; see [`tcp_checksum_ok`]).
fn fill_tcp_checksum(ip: &mut [u8]) {
    if ip.len() < 20 || ip[9] != 6 {
        return;
    }
    let at = usize::from(ip[0] & 0xf) * 4 + 16;
    if ip.len() < at + 2 {
        return;
    }
    ip[at] = 0;
    ip[at + 1] = 0;
    if let Some(sum) = tcp_sum(ip) {
        ip[at..at + 2].copy_from_slice(&(!sum).to_be_bytes());
    }
}

/// The sequence range an IPv4/TCP packet covers: (seq, seq + len), counting
/// SYN and FIN.
fn sent_range(ip: &[u8]) -> Option<(u32, u32)> {
    let ihl = usize::from(*ip.first()? & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let tcp = ip.get(ihl..ihl + 20)?;
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let doff = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    let len = total.saturating_sub(ihl + doff) as u32 + u32::from(flags & 0x03 != 0);
    Some((seq, seq.wrapping_add(len)))
}

/// Where a batch of TCP work puts what smoltcp emits: packets into `out`,
/// each in a fresh buffer from `alloc` with Ethernet headroom, headed for
/// `ip4-lookup`. smoltcp sees it through a `DeviceCall` per call.
pub struct SegmentDevice<'a, B> {
    alloc: &'a mut Allocator<B>,
    out: &'a mut Vec<Packet<B>>,
    mtu: usize,
    no_buffer: u64,
}

impl<'a, B: Buffer> SegmentDevice<'a, B> {
    /// A device that emits into `out`, for ports of IP MTU `mtu` (smoltcp
    /// is told `mtu` + [`OPTION_ROOM`]; see [`clamp_mss`]).
    pub fn new(alloc: &'a mut Allocator<B>, out: &'a mut Vec<Packet<B>>, mtu: u16) -> Self {
        Self {
            alloc,
            out,
            mtu: usize::from(mtu) + usize::from(OPTION_ROOM),
            no_buffer: 0,
        }
    }
}

/// The received packet of a [`SegmentDevice`].
pub struct SegRx<'a>(&'a [u8]);

impl phy::RxToken for SegRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// A transmit slot of a [`SegmentDevice`].
pub struct SegTx<'a, 'b, B> {
    dev: &'b mut SegmentDevice<'a, B>,
}

impl<B: Buffer> phy::TxToken for SegTx<'_, '_, B> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let dev = self.dev;
        let mut buf = (dev.alloc)();
        if let Some(b) = buf.as_mut() {
            b.truncate(0);
            if !b.grow(ETH_HEADROOM + len) {
                buf = None;
            }
        }
        match buf {
            Some(mut b) => {
                let ip = &mut b.data_mut()[ETH_HEADROOM..ETH_HEADROOM + len];
                let r = f(ip);
                fill_tcp_checksum(ip);
                let mut pkt = Packet::new(b, 0);
                pkt.meta.l3_offset = ETH_HEADROOM as u16;
                pkt.meta.local_origin = true;
                dev.out.push(pkt);
                r
            }
            None => {
                // smoltcp's state already moved; the segment is lost like a
                // dropped frame and retransmitted later.
                dev.no_buffer += 1;
                let mut scratch = vec![0u8; len];
                f(&mut scratch)
            }
        }
    }
}

/// smoltcp's view of a [`SegmentDevice`] for one call: at most one received
/// packet (`None` for egress), and transmit slots into the device.
struct DeviceCall<'x, 'a, B> {
    dev: &'x mut SegmentDevice<'a, B>,
    rx: Option<&'x [u8]>,
}

impl<'a, B: Buffer> phy::Device for DeviceCall<'_, 'a, B> {
    type RxToken<'r>
        = SegRx<'r>
    where
        Self: 'r;
    type TxToken<'r>
        = SegTx<'a, 'r, B>
    where
        Self: 'r;

    fn receive(&mut self, _: SInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let rx = self.rx.take()?;
        Some((SegRx(rx), SegTx { dev: self.dev }))
    }

    fn transmit(&mut self, _: SInstant) -> Option<Self::TxToken<'_>> {
        Some(SegTx { dev: self.dev })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        // zerohop checks and fills TCP checksums itself, faster than
        // smoltcp 0.12 (`tcp_checksum_ok`, `fill_tcp_checksum`).
        caps.checksum.tcp = phy::Checksum::None;
        caps.max_transmission_unit = self.dev.mtu;
        caps
    }
}

/// The clock of TCP timestamps (ms since the first use).
fn tsval() -> u32 {
    static START: OnceLock<StdInstant> = OnceLock::new();
    START.get_or_init(StdInstant::now).elapsed().as_millis() as u32 + 1
}

/// One worker's TCP connections. See the [module documentation](self).
pub struct Stack {
    iface: Interface,
    flows: FlowTable<Conn>,
    timers: TimerWheel<u64>,
    /// (listener, connections open on it, accepting): closed listeners stay
    /// in place (connections refer to them by index) until the stack goes.
    listeners: Vec<(Listen, u32, bool)>,
    /// Listeners accept new connections (false while draining).
    accepting: bool,
    ports: EphemeralPorts,
    params: TcpParams,
    fib: Arc<Fib>,
    port_addrs: Vec<Option<Ipv4Addr>>,
    /// Connections to flush (egress, state check, timer).
    touched: Vec<ConnId>,
    /// Connections the application should look at.
    notify: VecDeque<ConnId>,
    /// Scratch for timers that fired.
    fired: Vec<u64>,
    /// Scratch of [`Stack::warm`].
    warming: Vec<Warming>,
    /// An empty socket set: smoltcp answers segments nobody takes with RST.
    empty: SocketSet<'static>,
    stats: Arc<TcpStats>,
    now_ms: u64,
    /// Bytes received beyond a connection's window, by connection (see
    /// [`hold_beyond_window`]); rarely more than a few entries.
    held: HashMap<u64, Held>,
    /// The connections' buffer memory. Last: the sockets (in `flows`) are
    /// dropped before it.
    pool: BufPool,
}

impl Stack {
    /// Build a worker's stack. `port_addrs[i]` is the address of port i (an
    /// L3 port), `fib` the routes used to pick the source of active opens.
    ///
    /// # Errors
    /// A table or wheel too large, a bad port range, or more than 8 local
    /// addresses.
    pub fn new(
        params: TcpParams,
        fib: Arc<Fib>,
        port_addrs: Vec<Option<Ipv4Addr>>,
        seed: u64,
        now_ms: u64,
    ) -> Result<Self, String> {
        let mut no_alloc: Allocator<zerohop_dataplane::testing::HeapBuffer> = Box::new(|| None);
        let mut no_out = Vec::new();
        let mut dev = SegmentDevice::new(&mut no_alloc, &mut no_out, params.mtu);
        let mut config = IfaceConfig::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(
            config,
            &mut DeviceCall {
                dev: &mut dev,
                rx: None,
            },
            SInstant::from_millis(now_ms as i64),
        );
        let mut addrs: Vec<Ipv4Addr> = port_addrs.iter().flatten().copied().collect();
        addrs.sort_unstable();
        addrs.dedup();
        let mut overflow = false;
        iface.update_ip_addrs(|a| {
            for ip in &addrs {
                overflow |= a.push(IpCidr::new(IpAddress::Ipv4(*ip), 32)).is_err();
            }
        });
        if overflow {
            return Err(format!(
                "TCP serves at most 8 local addresses; the L3 ports have {}",
                addrs.len()
            ));
        }
        let cap = |e: CapacityError| e.to_string();
        let ports = EphemeralPorts::new(EphemeralPortsConfig {
            range: params.ephemeral_ports.clone(),
            workers: params.workers,
            worker: params.worker,
            rss: params.rss.clone().map(|steering| RssFilter {
                steering,
                queue: params.worker,
                mode: RssMode::Prefer,
            }),
            seed,
        })
        .map_err(|e| e.to_string())?;
        let (params_rx, params_tx) = (params.rx_buffer, params.tx_buffer);
        let max_connections = params.max_connections;
        Ok(Self {
            iface,
            flows: FlowTable::new(params.max_connections).map_err(cap)?,
            timers: TimerWheel::new(now_ms, params.max_connections).map_err(cap)?,
            listeners: Vec::new(),
            accepting: true,
            ports,
            params,
            fib,
            port_addrs,
            touched: Vec::new(),
            notify: VecDeque::new(),
            fired: Vec::new(),
            warming: Vec::with_capacity(zerohop_dataplane::VECTOR_SIZE),
            empty: SocketSet::new(Vec::new()),
            stats: Arc::new(TcpStats::default()),
            now_ms,
            held: HashMap::new(),
            // One socket more than connections: a SYN's socket is made
            // before the table is found full.
            pool: BufPool::new(params_rx, params_tx, max_connections.saturating_add(1)),
        })
    }

    /// Return the counters (shared with the main thread).
    pub fn stats(&self) -> &Arc<TcpStats> {
        &self.stats
    }

    /// Return the settings.
    pub fn params(&self) -> &TcpParams {
        &self.params
    }

    /// Accept connections on `listen`.
    pub fn listen(&mut self, listen: Listen) {
        self.listeners.push((listen, 0, true));
    }

    /// Close every listener (a configuration reload opens its own after): no
    /// new connection on them; the open ones go on. Returns the index the
    /// next [`Stack::listen`] gets, which [`App::accepted`] reports.
    pub fn close_listeners(&mut self) -> u32 {
        for l in &mut self.listeners {
            l.2 = false;
        }
        self.listeners.len() as u32
    }

    /// Stop (or resume) accepting connections on every listener: a SYN to a
    /// listener is then answered with a reset, as to a closed port, and the
    /// connections open now go on (a drain).
    pub fn set_accepting(&mut self, on: bool) {
        self.accepting = on;
    }

    /// Return the connections open now.
    pub fn len(&self) -> usize {
        self.flows.len() as usize
    }

    /// Return true with no connection open.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Return the worker clock (ms) the stack last saw.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Return the 4-tuple of `conn`.
    pub fn key(&self, conn: ConnId) -> Option<FlowKey> {
        self.flows.key(conn)
    }

    /// Return the application's word on `conn` (0 until set).
    pub fn user(&self, conn: ConnId) -> Option<u64> {
        self.flows.get(conn).map(|c| c.user)
    }

    /// Set the application's word on `conn`.
    pub fn set_user(&mut self, conn: ConnId, user: u64) {
        if let Some(c) = self.flows.get_mut(conn) {
            c.user = user;
        }
    }

    /// Return the smoltcp state of `conn`.
    pub fn state(&self, conn: ConnId) -> Option<State> {
        self.flows.get(conn).map(|c| c.socket().state())
    }

    /// Return true if `conn` finished its handshake at some point.
    pub fn is_established(&self, conn: ConnId) -> bool {
        self.flows.get(conn).is_some_and(|c| c.established)
    }

    /// Return true once the peer's FIN arrived and every byte before it was
    /// read (nothing more will ever be received).
    pub fn recv_finished(&self, conn: ConnId) -> bool {
        self.flows.get(conn).is_some_and(|c| {
            let s = c.socket();
            !s.may_recv() && s.recv_queue() == 0 && c.established
        })
    }

    /// Return (bytes waiting to be read, bytes waiting to be sent).
    pub fn queues(&self, conn: ConnId) -> Option<(usize, usize)> {
        self.flows.get(conn).map(|c| {
            let s = c.socket();
            (s.recv_queue(), s.send_queue())
        })
    }

    /// Call [`App::deadline`] for `conn` at `at_ms` (replacing an earlier
    /// deadline); `None` clears it.
    pub fn set_deadline(&mut self, conn: ConnId, at_ms: Option<u64>) {
        if let Some(c) = self.flows.get_mut(conn) {
            c.deadline = at_ms.unwrap_or(NEVER);
            self.touch(conn);
        }
    }

    fn touch(&mut self, conn: ConnId) {
        if let Some(c) = self.flows.get_mut(conn) {
            if !c.touched {
                c.touched = true;
                self.touched.push(conn);
            }
        }
    }

    fn notify(&mut self, conn: ConnId) {
        if let Some(c) = self.flows.get_mut(conn) {
            if !c.notified {
                c.notified = true;
                self.notify.push_back(conn);
            }
        }
    }

    /// Move as many bytes as fit from `from`'s receive buffer to `to`'s
    /// send buffer; return how many moved. Both are flushed afterwards
    /// (`to` sends, `from` may open its window).
    pub fn splice(&mut self, from: ConnId, to: ConnId) -> usize {
        self.splice_max(from, to, usize::MAX)
    }

    /// [`Stack::splice`] at most `max` bytes (the rest of a message body:
    /// what follows belongs to the next message).
    pub fn splice_max(&mut self, from: ConnId, to: ConnId, max: usize) -> usize {
        let Some((a, b)) = self.flows.get2_mut(from, to) else {
            return 0;
        };
        let (src, dst) = (a.socket_mut(), b.socket_mut());
        let mut moved = 0;
        while moved < max && src.can_recv() && dst.can_send() {
            let left = max - moved;
            let n = src
                .recv(|data| {
                    let data = &data[..data.len().min(left)];
                    let n = dst.send_slice(data).unwrap_or(0);
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            moved += n;
        }
        if moved > 0 {
            b.data_moved();
            self.touch(from);
            self.touch(to);
        }
        moved
    }

    /// Queue `data` on `conn`; return how many bytes fit.
    pub fn send(&mut self, conn: ConnId, data: &[u8]) -> usize {
        let n = self
            .flows
            .get_mut(conn)
            .and_then(|c| {
                c.data_moved();
                c.socket_mut().send_slice(data).ok()
            })
            .unwrap_or(0);
        if n > 0 {
            self.touch(conn);
        }
        n
    }

    /// Free room in `conn`'s send buffer, bytes.
    pub fn send_space(&self, conn: ConnId) -> usize {
        self.flows.get(conn).map_or(0, |c| {
            let s = c.socket();
            s.send_capacity() - s.send_queue()
        })
    }

    /// Read up to `buf.len()` bytes from `conn`.
    pub fn recv(&mut self, conn: ConnId, buf: &mut [u8]) -> usize {
        let n = self
            .flows
            .get_mut(conn)
            .and_then(|c| c.socket_mut().recv_slice(buf).ok())
            .unwrap_or(0);
        if n > 0 {
            self.touch(conn);
        }
        n
    }

    /// Send a FIN after what is queued (half-close).
    pub fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.flows.get_mut(conn) {
            c.socket_mut().close();
            self.touch(conn);
        }
    }

    /// Reset `conn` now: a RST goes out and [`App::closed`] follows with
    /// [`Close::Aborted`] (unless the peer's RST already ended it).
    pub fn abort(&mut self, conn: ConnId) {
        if let Some(c) = self.flows.get_mut(conn) {
            c.aborted = true;
            c.socket_mut().abort();
            self.touch(conn);
        }
    }

    /// A configured socket on a buffer slot; `None` (counted) if no memory
    /// could be mapped.
    fn new_socket(&mut self) -> Option<PooledSocket> {
        let p = &self.params;
        let (nagle, ack_delay, keep_alive) = (
            p.nagle,
            (p.delayed_ack_ms > 0).then(|| SDuration::from_millis(u64::from(p.delayed_ack_ms))),
            (p.keepalive_s > 0).then(|| SDuration::from_secs(u64::from(p.keepalive_s))),
        );
        let sock = self.pool.socket(|s| {
            s.set_nagle_enabled(nagle);
            s.set_ack_delay(ack_delay);
            s.set_keep_alive(keep_alive);
            s.set_tsval_generator(Some(tsval));
        });
        if sock.is_none() {
            self.stats.no_memory.add(1);
        }
        sock
    }

    fn insert(
        &mut self,
        key: FlowKey,
        sock: PooledSocket,
        listener: Option<u32>,
    ) -> Option<ConnId> {
        if self.flows.len() >= self.params.max_connections || self.flows.lookup(&key).is_some() {
            self.stats.table_full.add(1);
            self.pool.give_back(sock);
            return None;
        }
        let conn = Conn {
            sock,
            timer: None,
            timer_at: NEVER,
            deadline: NEVER,
            time_wait_end: NEVER,
            user: 0,
            listener,
            state: State::Closed,
            established: false,
            reset_in: false,
            aborted: false,
            touched: false,
            notified: false,
            snd_max: None,
            reported: false,
            peer_ack: PeerAck::default(),
            rcv_end: None,
            ack_sent: None,
            rcv_edge: 0,
            edge_known: false,
            rcv_wscale: 0,
            release_at: NEVER,
            rx_origin: 0,
        };
        match self.flows.insert(key, conn) {
            Ok(id) => Some(id),
            Err(_) => {
                self.stats.table_full.add(1);
                None
            }
        }
    }

    /// Return the local address to reach `remote` from.
    fn source_for(&self, remote: Ipv4Addr) -> Option<Ipv4Addr> {
        let port = match self.fib.lookup(remote)? {
            Route::Connected { port } | Route::Via { port, .. } => port,
            _ => return None,
        };
        self.port_addrs.get(usize::from(port)).copied().flatten()
    }

    /// Open a connection to `remote` (SYN goes out at the next flush).
    ///
    /// # Errors
    /// No route or local address, no free port, a full table.
    pub fn connect(&mut self, remote: SocketAddrV4) -> Result<ConnId, ConnectError> {
        let local_ip = self
            .source_for(*remote.ip())
            .ok_or(ConnectError::NoRoute(remote))?;
        if self.flows.len() >= self.params.max_connections {
            self.stats.table_full.add(1);
            return Err(ConnectError::TableFull(self.params.max_connections));
        }
        let port = match self.ports.allocate(local_ip, remote) {
            Ok(p) => p.port,
            Err(e) => {
                self.stats.ports_exhausted.add(1);
                return Err(e.into());
            }
        };
        let local = SocketAddrV4::new(local_ip, port);
        let Some(mut socket) = self.new_socket() else {
            self.ports.release(local, remote);
            return Err(ConnectError::NoMemory);
        };
        if let Err(e) = socket.socket_mut().connect(
            self.iface.context(),
            IpEndpoint::new(IpAddress::Ipv4(*remote.ip()), remote.port()),
            IpEndpoint::new(IpAddress::Ipv4(local_ip), port),
        ) {
            self.ports.release(local, remote);
            self.pool.give_back(socket);
            return Err(ConnectError::Socket(remote, e));
        }
        let Some(id) = self.insert(FlowKey::new(local, remote), socket, None) else {
            self.ports.release(local, remote);
            return Err(ConnectError::TableFull(self.params.max_connections));
        };
        self.stats.active_opens.add(1);
        self.touch(id);
        Ok(id)
    }

    fn listener_for(&self, local: SocketAddrV4) -> Option<usize> {
        self.listeners
            .iter()
            .position(|(l, _, open)| *open && l.address == local)
            .or_else(|| {
                self.listeners.iter().position(|(l, _, open)| {
                    *open && l.address.port() == local.port() && l.address.ip().is_unspecified()
                })
            })
    }

    /// Return true if `port` is an ephemeral port another worker hands out,
    /// so a segment to it that matches no connection here belongs there.
    pub fn owner_of(&self, local_port: u16) -> Option<u16> {
        if self.params.workers <= 1 {
            return None;
        }
        crate::ports::port_owner(
            &self.params.ephemeral_ports,
            self.params.workers,
            local_port,
        )
        .filter(|&w| w != self.params.worker)
    }

    /// Return the key of the IPv4/TCP packet `ip`, if it parses.
    pub fn key_of(ip: &[u8]) -> Option<FlowKey> {
        parse(ip).map(|s| s.key)
    }

    /// Return true if a connection with `key` is open here.
    pub fn has(&self, key: &FlowKey) -> bool {
        self.flows.lookup(key).is_some()
    }

    /// Bring the connections of a vector of received IPv4/TCP packets
    /// into cache before [`Stack::input`] takes them: call it with the
    /// whole vector first.
    ///
    /// At 100 000 connections each segment's state (index entry, flow
    /// slot, socket, the receive ring's lines) is in no cache, and each of
    /// these reads depends on the one before: fed one by one, a segment
    /// waits for four or five memory accesses in a row. Here the vector
    /// goes through in stages, each issuing prefetches for the next for
    /// every segment before the next stage reads anything: the index
    /// lines; then the flow slots the index entries name; then, from the
    /// slots, the sockets and the ring lines where the payloads will land.
    /// A stage waits for at most the slowest of the vector's fetches, not
    /// for their sum ([`crate::memhint`]).
    pub fn warm<'p>(&mut self, ips: impl IntoIterator<Item = &'p [u8]>) {
        let mut warming = std::mem::take(&mut self.warming);
        warming.clear();
        for ip in ips {
            if let Some(seg) = parse(ip) {
                let hash = self.flows.hash_key(&seg.key);
                self.flows.prefetch_index(hash);
                warming.push(Warming {
                    key: seg.key,
                    hash,
                    seq: seg.seq,
                    len: seg.end.wrapping_sub(seg.seq),
                });
            }
        }
        for w in &warming {
            self.flows.prefetch_slot(w.hash);
        }
        let rx = self.params.rx_buffer;
        for w in &warming {
            if let Some((_, c)) = self.flows.get_by_hashed_key(&w.key, w.hash) {
                let at = w.seq.wrapping_sub(c.rx_origin);
                c.sock.prefetch(rx, at as usize, w.len as usize);
            }
        }
        self.warming = warming;
    }

    /// Feed one received IPv4 packet (starting at its IP header) to the
    /// connection it belongs to, creating one for a SYN to a listener, or
    /// answering with RST. Call [`Stack::flush`] after a batch.
    pub fn input<B: Buffer>(&mut self, ip: &mut [u8], dev: &mut SegmentDevice<'_, B>, now_ms: u64) {
        self.now_ms = now_ms;
        let now = SInstant::from_millis(now_ms as i64);
        let Some(seg) = parse(ip) else {
            self.stats.malformed.add(1);
            return;
        };
        if !tcp_checksum_ok(ip) {
            self.stats.bad_checksum.add(1);
            return;
        }
        if seg.syn {
            clamp_mss(ip, self.params.mtu.saturating_sub(40 + OPTION_ROOM));
        }
        self.stats.segments_in.add(1);
        let fresh_syn = seg.syn && !seg.ack && !seg.rst;
        // What smoltcp is fed instead of a SYN for an open connection.
        let mut challenge = None;
        let id = match self.flows.lookup(&seg.key) {
            Some(id) if fresh_syn && self.time_wait_reusable(id, seg.seq) => {
                // The peer reuses the 4-tuple (a kernel client that closed
                // second keeps no TIME-WAIT of its own): a SYN beyond the
                // old connection's sequence space ends our TIME-WAIT and
                // opens anew (RFC 6191; Linux does the same). Otherwise the
                // SYN would go unanswered until TIME-WAIT ends: a 1-3 s
                // stall for the client.
                self.stats.time_wait_reused.add(1);
                self.release(id);
                self.passive_open(seg.key)
            }
            Some(id) => {
                if let Some(c) = self.flows.get_mut(id) {
                    challenge = fresh_syn.then(|| challenge_for_syn(&seg.key, c)).flatten();
                    if challenge.is_some() {
                        // Nothing of the SYN (another connection's sequence
                        // space) is the stale connection's.
                        self.stats.syn_challenged.add(1);
                    } else {
                        if mark_dup_ack(ip, &mut c.peer_ack) {
                            self.stats.dup_acks_marked.add(1);
                        }
                        // Cheap test first: the segment ends (FIN included) past
                        // the edge.
                        if !seg.syn && c.edge_known && (seg.end.wrapping_sub(c.rcv_edge) as i32) > 0
                        {
                            let held = hold_beyond_window(ip, c.rcv_edge, c.rcv_wscale);
                            if trim_to_window(ip, c.rcv_edge) {
                                self.stats.beyond_window.add(1);
                                if let Some(h) = held.filter(|_| c.peer_ack.seen) {
                                    self.stats.beyond_window_held.add(1);
                                    hold(&mut self.held, id.to_bits(), h);
                                }
                            }
                        }
                        let beyond = c
                            .rcv_end
                            .map_or(true, |e| (seg.end.wrapping_sub(e) as i32) > 0);
                        if beyond {
                            c.rcv_end = Some(seg.end);
                        }
                    }
                }
                Some(id)
            }
            None if fresh_syn => self.passive_open(seg.key),
            None => None,
        };
        let ip: &[u8] = challenge.as_deref().unwrap_or(ip);
        let before = dev.out.len();
        let mut ingress = DeviceCall { dev, rx: Some(ip) };
        match id {
            Some(id) => {
                if let Some(c) = self.flows.get_mut(id) {
                    c.reset_in |= seg.rst;
                    if seg.syn && challenge.is_none() {
                        c.rx_origin = seg.seq.wrapping_add(1);
                        if offers_window_scale(ip) {
                            c.rcv_wscale = window_shift(self.params.rx_buffer);
                        }
                    }
                    if seg.payload {
                        c.data_moved();
                    }
                    self.iface
                        .poll_ingress_single(now, &mut ingress, c.sock.set_mut());
                    for p in &ingress.dev.out[before..] {
                        c.note_window_sent(&p.buf.data()[ETH_HEADROOM..]);
                    }
                }
                self.touch(id);
                self.notify(id);
            }
            None => {
                self.iface
                    .poll_ingress_single(now, &mut ingress, &mut self.empty);
                let sent = ingress.dev.out.len() - before;
                if sent > 0 {
                    self.stats.rst_no_connection.add(sent as u64);
                }
            }
        }
        self.stats.segments_out.add((dev.out.len() - before) as u64);
    }

    fn passive_open(&mut self, key: FlowKey) -> Option<ConnId> {
        if !self.accepting {
            return None;
        }
        let li = self.listener_for(key.local)?;
        let limit = self.params.listener_connection_limit;
        if limit > 0 && self.listeners[li].1 >= limit {
            self.stats.listener_overflow.add(1);
            return None;
        }
        let mut socket = self.new_socket()?;
        let listening = socket.socket_mut().listen(IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(*key.local.ip())),
            port: key.local.port(),
        });
        if listening.is_err() {
            self.pool.give_back(socket);
            return None;
        }
        let id = self.insert(key, socket, Some(li as u32))?;
        self.listeners[li].1 += 1;
        self.stats.passive_opens.add(1);
        Some(id)
    }

    /// Advance the timers to `now_ms`: connections whose time came are
    /// polled (retransmissions, delayed ACKs, keep-alives, TIME-WAIT) and
    /// the application hears of its deadlines. Call [`Stack::flush`] after.
    pub fn advance(&mut self, now_ms: u64, app: &mut impl App) {
        self.now_ms = now_ms;
        let mut fired = std::mem::take(&mut self.fired);
        self.timers.advance(now_ms, |bits| fired.push(bits));
        for bits in fired.drain(..) {
            let id = FlowId::from_bits(bits);
            let Some(c) = self.flows.get_mut(id) else {
                continue;
            };
            c.timer = None;
            if c.time_wait_end <= now_ms {
                // TIME-WAIT cut short: the connection is gone.
                self.stats.time_wait_cut.add(1);
                self.free(id, Close::Graceful, app);
                continue;
            }
            if c.release_at <= now_ms {
                c.release_at = NEVER;
                if c.rings_empty() && c.sock.release_pages() {
                    self.stats.buffers_released.add(1);
                }
            }
            if c.deadline <= now_ms {
                c.deadline = NEVER;
                app.deadline(self, id);
            }
            self.touch(id);
            self.notify(id);
        }
        self.fired = fired;
    }

    /// Return true if connections wait to be flushed.
    pub fn has_work(&self) -> bool {
        !self.touched.is_empty() || !self.notify.is_empty()
    }

    /// Let the application see what changed, send what the touched
    /// connections have to send, free the closed ones and rearm timers.
    pub fn flush<B: Buffer>(&mut self, app: &mut impl App, dev: &mut SegmentDevice<'_, B>) {
        let now = SInstant::from_millis(self.now_ms as i64);
        // Bounded: each round either empties both lists or frees connections.
        for _ in 0..64 {
            while let Some(id) = self.notify.pop_front() {
                let Some(c) = self.flows.get_mut(id) else {
                    continue;
                };
                c.notified = false;
                let state = c.socket().state();
                let newly = !c.established
                    && matches!(
                        state,
                        State::Established | State::CloseWait | State::FinWait1 | State::FinWait2
                    );
                if newly {
                    c.established = true;
                    self.stats.established.add(1);
                    if let Some(l) = c.listener {
                        app.accepted(self, id, l);
                    }
                }
                app.ready(self, id);
            }
            if self.touched.is_empty() {
                break;
            }
            let touched = std::mem::take(&mut self.touched);
            for &id in &touched {
                self.egress(id, now, dev, app);
            }
            let mut t = touched;
            t.clear();
            if self.touched.is_empty() {
                self.touched = t;
            }
        }
        if dev.no_buffer > 0 {
            self.stats.no_buffer.add(dev.no_buffer);
            dev.no_buffer = 0;
        }
    }

    fn egress<B: Buffer>(
        &mut self,
        id: ConnId,
        now: SInstant,
        dev: &mut SegmentDevice<'_, B>,
        app: &mut impl App,
    ) {
        let now_ms = self.now_ms;
        let before = dev.out.len();
        if !self.held.is_empty() && self.feed_held(id, now, dev) {
            // New bytes to read.
            self.notify(id);
        }
        let Some(c) = self.flows.get_mut(id) else {
            return;
        };
        c.touched = false;
        let mut segments = 0;
        while segments < MAX_SEGMENTS_PER_FLUSH {
            let n = dev.out.len();
            let mut tx = DeviceCall {
                dev: &mut *dev,
                rx: None,
            };
            let r = self.iface.poll_egress(now, &mut tx, c.sock.set_mut());
            if matches!(r, PollResult::None) && dev.out.len() == n {
                break;
            }
            segments += 1;
        }
        let mut retrans = 0;
        let own_mss = self.params.mtu.saturating_sub(40);
        for p in &mut dev.out[before..] {
            let ip = &mut p.buf.data_mut()[ETH_HEADROOM..];
            if c.snd_max.is_none() {
                clamp_mss(ip, own_mss);
            }
            if let Some(ack) = ack_of(ip) {
                c.ack_sent = Some(ack);
            }
            c.note_window_sent(ip);
            if let Some((seq, end)) = sent_range(ip) {
                match c.snd_max {
                    Some(max) if end != seq && (end.wrapping_sub(max) as i32) <= 0 => retrans += 1,
                    Some(max) if (end.wrapping_sub(max) as i32) > 0 => c.snd_max = Some(end),
                    None => c.snd_max = Some(end),
                    _ => {}
                }
            }
        }
        self.stats.retransmitted_segments.add(retrans);
        self.stats.segments_out.add((dev.out.len() - before) as u64);
        let state = c.socket().state();
        let prev = c.state;
        c.state = state;
        if state != prev {
            c.notified = true;
            self.notify.push_back(id);
        }
        // Listen after a flush: the SYN that created it was not taken.
        if state == State::Closed || state == State::Listen {
            let how = if c.reset_in {
                Close::Reset
            } else if c.aborted {
                Close::Aborted
            } else if matches!(prev, State::TimeWait | State::LastAck | State::Closing) {
                Close::Graceful
            } else if c.established || prev == State::SynSent {
                Close::TimedOut
            } else {
                Close::Reset
            };
            // Closed gracefully (LAST-ACK done) with received bytes the
            // application has not read yet: keep the flow until it has (its
            // reads touch the connection, and the next egress frees it).
            if how == Close::Graceful && c.socket().recv_queue() > 0 {
                return;
            }
            self.free(id, how, app);
            return;
        }
        // Not before the application has read everything received: telling
        // it the connection is over makes it drop the unread bytes (the L4
        // proxy forgets the connection and passes its FIN on).
        if state == State::TimeWait && c.time_wait_end == NEVER && c.socket().recv_queue() == 0 {
            c.time_wait_end = now_ms + u64::from(self.params.time_wait_ms);
            // Both FINs are through: for the application (and Envoy's
            // `_active` gauges) the connection is over; TIME-WAIT is the
            // stack's business.
            self.report_closed(id, Close::Graceful, app);
        }
        let Some(c) = self.flows.get_mut(id) else {
            return;
        };
        // A window just advertised covers held bytes: feed them in the
        // next round of this flush.
        let feed = !self.held.is_empty()
            && self
                .held
                .get(&id.to_bits())
                .is_some_and(|h| c.edge_known && (c.rcv_edge.wrapping_sub(h.seq) as i32) > 0);
        if segments == MAX_SEGMENTS_PER_FLUSH || feed {
            // More to send: again at the next poll.
            c.touched = true;
            self.touched.push(id);
        }
        let poll_at = match self.iface.poll_at(now, c.sock.set()) {
            Some(t) => t.total_millis().max(0) as u64,
            None => NEVER,
        };
        // Buffers empty since the last activity: their pages go back after
        // `idle_release_ms` more of it (see `advance`).
        let idle_release = u64::from(self.params.idle_release_ms);
        if idle_release > 0 && c.sock.is_resident() && c.rings_empty() {
            if c.release_at == NEVER {
                c.release_at = now_ms + idle_release;
            }
        } else {
            c.release_at = NEVER;
        }
        let at = poll_at
            .min(c.deadline)
            .min(c.time_wait_end)
            .min(c.release_at);
        // Lazy rearm: a timer that fires early is harmless (the connection
        // is polled, finds nothing due and rearms), so a later time leaves
        // the timer where it is and only an earlier one moves it. Every ACK
        // pushes the retransmission timeout later; moving the timer each
        // time would write into two other connections' wheel entries per
        // segment.
        match c.timer {
            Some(h) if at < c.timer_at => {
                if !self.timers.reschedule(h, at) {
                    c.timer = self.timers.schedule(id.to_bits(), at).ok();
                }
                c.timer_at = at;
            }
            Some(_) => {}
            None if at != NEVER => {
                c.timer = self.timers.schedule(id.to_bits(), at).ok();
                c.timer_at = at;
            }
            None => {}
        }
    }

    /// Feed smoltcp the bytes held for `id` (see [`hold_beyond_window`]) that
    /// the window it last advertised covers, as a segment from the peer;
    /// what it answers lands in `dev` like any other output. Return true if
    /// bytes were fed.
    fn feed_held<B: Buffer>(
        &mut self,
        id: ConnId,
        now: SInstant,
        dev: &mut SegmentDevice<'_, B>,
    ) -> bool {
        let bits = id.to_bits();
        let (Some(key), Some(c)) = (self.flows.key(id), self.flows.get_mut(id)) else {
            self.held.remove(&bits);
            return false;
        };
        let Some(h) = self.held.get(&bits) else {
            return false;
        };
        let room = c.rcv_edge.wrapping_sub(h.seq) as i32;
        if !c.edge_known || room <= 0 {
            return false;
        }
        let take = (room as usize).min(h.data.len());
        let fin = h.fin && take == h.data.len();
        let seg = peer_segment(&key, h.seq, &c.peer_ack, &h.data[..take], fin);
        if take == h.data.len() {
            self.held.remove(&bits);
        } else if let Some(h) = self.held.get_mut(&bits) {
            h.data.drain(..take);
            h.seq = h.seq.wrapping_add(take as u32);
        }
        c.data_moved();
        if let Some((_, end)) = sent_range(&seg) {
            if c.rcv_end.map_or(true, |e| (end.wrapping_sub(e) as i32) > 0) {
                c.rcv_end = Some(end);
            }
        }
        let mut ingress = DeviceCall {
            dev,
            rx: Some(&seg),
        };
        // Acknowledged at once, not after the ACK delay: the peer sent
        // them a while ago, and its retransmission timer runs.
        let delay = c.socket().ack_delay();
        c.socket_mut().set_ack_delay(None);
        self.iface
            .poll_ingress_single(now, &mut ingress, c.sock.set_mut());
        c.socket_mut().set_ack_delay(delay);
        true
    }

    /// Count the end of `id` and tell the application, once.
    fn report_closed(&mut self, id: ConnId, how: Close, app: &mut impl App) {
        let Some(c) = self.flows.get_mut(id) else {
            return;
        };
        if c.reported {
            return;
        }
        c.reported = true;
        self.stats.closed.add(1);
        match how {
            Close::Reset => self.stats.resets_received.add(1),
            Close::Aborted => self.stats.aborted.add(1),
            Close::TimedOut => self.stats.timed_out.add(1),
            Close::Graceful => {}
        }
        // The application still sees the connection (its word, its key)
        // during the callback; the handle is stale for it after.
        app.closed(self, id, how);
        if let Some(c) = self.flows.get_mut(id) {
            c.user = 0;
        }
    }

    /// Return true if `id` is a passively opened connection in TIME-WAIT,
    /// already reported closed, that a SYN with sequence number `seq` may
    /// replace: `seq` lies beyond everything the peer sent on it.
    fn time_wait_reusable(&self, id: ConnId, seq: u32) -> bool {
        self.flows.get(id).is_some_and(|c| {
            c.reported
                && c.listener.is_some()
                && c.socket().state() == State::TimeWait
                && c.rcv_end.is_some_and(|e| (seq.wrapping_sub(e) as i32) > 0)
        })
    }

    fn free(&mut self, id: ConnId, how: Close, app: &mut impl App) {
        self.report_closed(id, how, app);
        self.release(id);
    }

    /// Remove `id` and give back its timer, listener slot or port (the
    /// application has been told it closed).
    fn release(&mut self, id: ConnId) {
        if !self.held.is_empty() {
            self.held.remove(&id.to_bits());
        }
        let Some((key, c)) = self.flows.remove(id) else {
            return;
        };
        if let Some(h) = c.timer {
            self.timers.cancel(h);
        }
        let listener = c.listener;
        self.pool.give_back(c.sock);
        match listener {
            Some(l) => {
                if let Some(entry) = self.listeners.get_mut(l as usize) {
                    entry.1 = entry.1.saturating_sub(1);
                }
            }
            None => {
                self.ports.release(key.local, key.remote);
            }
        }
    }
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("connections", &self.flows.len())
            .field("listeners", &self.listeners)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerohop_dataplane::l3::checksum;

    /// An IPv4/TCP pure ACK from 10.0.0.2:1000 to 10.0.0.1:80 with a valid
    /// TCP checksum; `sack` adds one SACK block.
    fn ack(ack_no: u32, window: u16, sack: bool, payload: &[u8]) -> Vec<u8> {
        let opts: &[u8] = if sack {
            &[1, 1, 5, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0]
        } else {
            &[]
        };
        let tcp_len = 20 + opts.len() + payload.len();
        let mut p = vec![0u8; 20 + tcp_len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 2]);
        p[16..20].copy_from_slice(&[10, 0, 0, 1]);
        checksum::fill_ipv4(&mut p[..20]);
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&1000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[8..12].copy_from_slice(&ack_no.to_be_bytes());
        t[12] = (((20 + opts.len()) / 4) << 4) as u8;
        t[13] = 0x10;
        t[14..16].copy_from_slice(&window.to_be_bytes());
        t[20..20 + opts.len()].copy_from_slice(opts);
        t[20 + opts.len()..].copy_from_slice(payload);
        let sum = checksum::checksum(&pseudo(&p));
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        p
    }

    /// The pseudo-header and segment of `p`, for checksumming.
    fn pseudo(p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&p[12..20]);
        v.extend_from_slice(&[0, 6]);
        v.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
        v.extend_from_slice(&p[20..]);
        v
    }

    /// A data segment of `len` bytes at `seq` (FIN set if `fin`), with a
    /// valid checksum.
    fn data(seq: u32, len: usize, fin: bool) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut p = ack(7, 100, false, &payload);
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[33] |= u8::from(fin);
        p[36..38].copy_from_slice(&[0, 0]);
        let sum = checksum::checksum(&pseudo(&p));
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        p
    }

    #[test]
    fn bytes_past_a_retreated_edge_are_held_and_fed_back_as_the_peer_sent_them() {
        // 3 bytes past the edge, scale 2: the retreat explains them.
        let p = data(u32::MAX - 1, 100, true);
        let edge = (u32::MAX - 1).wrapping_add(97);
        let h = hold_beyond_window(&p, edge, 2).expect("held");
        assert_eq!(h.seq, edge);
        assert_eq!(h.data, vec![97u8, 98, 99]);
        assert!(h.fin, "the FIN after them is kept with them");
        // 4 past it at scale 2, or any without scaling: the peer's error.
        assert_eq!(hold_beyond_window(&p, edge - 1, 2), None);
        assert_eq!(hold_beyond_window(&p, edge, 0), None);
        // Within the window: nothing to hold.
        assert_eq!(hold_beyond_window(&p, edge + 3, 2), None);
        // A segment wholly past the edge, within the bound.
        let h = hold_beyond_window(&data(1002, 1, false), 1000, 2).expect("held");
        assert_eq!((h.seq, h.data.len(), h.fin), (1002, 1, false));

        // Bytes that continue those held are appended; others replace them.
        let mut held = HashMap::new();
        let piece = |seq, data: &[u8]| Held {
            seq,
            data: data.to_vec(),
            fin: false,
        };
        hold(&mut held, 1, piece(10, b"ab"));
        hold(&mut held, 1, piece(12, b"c"));
        assert_eq!(held[&1], piece(10, b"abc"));
        hold(&mut held, 1, piece(20, b"z"));
        assert_eq!(held[&1], piece(20, b"z"));

        // Fed back: the peer's addresses and ports, its last ACK and window,
        // valid checksums.
        let key = FlowKey::new(
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000),
        );
        let ack = PeerAck {
            ack: 77,
            window: 513,
            seen: true,
        };
        let seg = peer_segment(&key, 5, &ack, b"xyz", true);
        assert_eq!(checksum::sum(&seg[..20]), 0xffff, "IPv4 header checksum");
        assert!(tcp_checksum_ok(&seg), "TCP checksum");
        assert_eq!(Stack::key_of(&seg), Some(key));
        assert_eq!(sent_range(&seg), Some((5, 9)), "3 bytes and a FIN");
        assert_eq!(ack_of(&seg), Some(77));
        assert_eq!(u16::from_be_bytes([seg[34], seg[35]]), 513);
        assert_eq!(&seg[40..], b"xyz");
    }

    #[test]
    fn trim_to_window_cuts_only_what_lies_past_the_edge() {
        // Within the window (FIN included): untouched.
        let mut p = data(1000, 100, true);
        let before = p.clone();
        assert!(!trim_to_window(&mut p, 1101));
        assert_eq!(p, before);
        // 2 bytes past the edge: cut, FIN dropped, lengths and checksums
        // fixed, the rest of the bytes kept.
        let mut p = data(u32::MAX - 50, 100, true);
        let edge = (u32::MAX - 50).wrapping_add(98);
        assert!(trim_to_window(&mut p, edge));
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        assert_eq!(total, 20 + 20 + 98);
        assert_eq!(checksum::sum(&p[..20]), 0xffff, "IPv4 header checksum");
        assert_eq!(checksum::sum(&pseudo(&p[..total])), 0xffff, "TCP checksum");
        assert_eq!(p[33] & 0x01, 0, "FIN beyond the edge dropped");
        assert_eq!(&p[40..138], &data(0, 98, false)[40..]);
        assert_eq!(sent_range(&p), Some((u32::MAX - 50, edge)));
        // Starting past the edge: nothing of it kept.
        let mut p = data(5000, 10, false);
        assert!(trim_to_window(&mut p, 4000));
        assert_eq!(sent_range(&p), Some((5000, 5000)));
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        assert_eq!(checksum::sum(&pseudo(&p[..total])), 0xffff);
        // A retransmission from before the window that ends past it keeps
        // what lies inside.
        let mut p = data(900, 300, false);
        assert!(trim_to_window(&mut p, 1000));
        assert_eq!(sent_range(&p), Some((900, 1000)));
    }

    #[test]
    fn tcp_checksums_are_checked_and_filled() {
        for len in [0, 1, 2, 3, 1448, 1449] {
            let mut p = data(77, len, false);
            assert!(tcp_checksum_ok(&p), "len {len}");
            if len > 0 {
                p[40] ^= 0x40;
                assert!(!tcp_checksum_ok(&p), "len {len}: corrupted");
            }
            fill_tcp_checksum(&mut p);
            assert!(tcp_checksum_ok(&p), "len {len}: filled");
            assert_eq!(checksum::sum(&pseudo(&p)), 0xffff, "len {len}");
        }
        // A total length beyond the buffer is no valid segment.
        let mut p = data(77, 10, false);
        p[2..4].copy_from_slice(&2000u16.to_be_bytes());
        assert!(!tcp_checksum_ok(&p));
        // Not TCP: left alone.
        let mut udp = data(77, 10, false);
        udp[9] = 17;
        let before = udp.clone();
        fill_tcp_checksum(&mut udp);
        assert_eq!(udp, before);
    }

    #[test]
    fn advertised_edge_scales_all_but_syns() {
        let p = ack(5000, 300, false, &[]);
        assert_eq!(advertised_edge(&p, 0), Some(5300));
        assert_eq!(advertised_edge(&p, 3), Some(5000 + 300 * 8));
        let mut syn = p.clone();
        syn[33] |= 0x02;
        assert_eq!(
            advertised_edge(&syn, 3),
            Some(5300),
            "a SYN's window is never scaled"
        );
        let mut no_ack = p;
        no_ack[33] = 0x02;
        assert_eq!(advertised_edge(&no_ack, 3), None);
        assert_eq!(window_shift(65_535), 0);
        assert_eq!(window_shift(65_536), 1);
        assert_eq!(window_shift(1 << 20), 5);
    }

    #[test]
    fn window_scale_option_is_found_among_others() {
        let mut syn = ack(0, 100, false, &[]);
        assert!(!offers_window_scale(&syn));
        // MSS, SACK permitted, NOP, window scale 7.
        let opts = [2u8, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7, 0, 0];
        syn.splice(40..40, opts);
        syn[32] = (((20 + opts.len()) / 4) << 4) as u8;
        assert!(offers_window_scale(&syn));
        // A truncated option list ends the search.
        syn[41] = 0;
        assert!(!offers_window_scale(&syn));
    }

    fn window(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[34], p[35]])
    }

    #[test]
    fn a_flow_slot_is_three_cache_lines() {
        // Key (12 bytes) and generation (4) before the connection in the
        // flow table's 64-byte-aligned slot: every segment reads it, and a
        // fourth line would be a fourth miss at 100 000 connections.
        assert!(
            std::mem::size_of::<Conn>() <= 3 * 64 - 16,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }

    #[test]
    fn sack_duplicate_gets_the_previous_window_and_a_valid_checksum() {
        let mut last = PeerAck::default();
        assert!(!mark_dup_ack(&mut ack(5000, 300, false, &[]), &mut last));
        let mut dup = ack(5000, 345, true, &[]);
        assert!(mark_dup_ack(&mut dup, &mut last));
        assert_eq!(window(&dup), 300);
        assert_eq!(checksum::sum(&pseudo(&dup)), 0xffff, "checksum still valid");
        assert_eq!(
            last.window, 300,
            "the duplicate does not become the reference"
        );
        // A new acknowledgment is taken as it is and becomes the reference.
        let mut fresh = ack(6448, 400, true, &[]);
        assert!(!mark_dup_ack(&mut fresh, &mut last));
        assert_eq!((window(&fresh), last.ack, last.window), (400, 6448, 400));
    }

    #[test]
    fn window_updates_data_and_plain_duplicates_are_left_alone() {
        let mut last = PeerAck::default();
        mark_dup_ack(&mut ack(5000, 300, false, &[]), &mut last);
        // Same ack, bigger window, no SACK: a window update.
        let mut update = ack(5000, 600, false, &[]);
        assert!(!mark_dup_ack(&mut update, &mut last));
        assert_eq!(window(&update), 600);
        // Data with the same ack is never a duplicate.
        let mut data = ack(5000, 700, true, b"hello");
        assert!(!mark_dup_ack(&mut data, &mut last));
        assert_eq!(window(&data), 700);
        // Same window: already a duplicate for smoltcp, nothing to change.
        let mut same = ack(5000, 700, true, &[]);
        assert!(!mark_dup_ack(&mut same, &mut last));
        // Truncated packets are ignored.
        let mut short = ack(5000, 1, true, &[]);
        short.truncate(30);
        assert!(!mark_dup_ack(&mut short, &mut last));
    }
}
