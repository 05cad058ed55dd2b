//! zerohop's userspace TCP: the `tcp-input` graph node on smoltcp.
//!
//! - [`stack`]: the [`Stack`] of one worker — smoltcp driven one connection
//!   at a time, each connection owning a one-socket `SocketSet`, found by its
//!   4-tuple in a [`FlowTable`], woken by one timer in a [`TimerWheel`];
//!   passive opens on demand, active opens from [`EphemeralPorts`], RST for
//!   segments of no connection, an [`App`] trait for the application (the
//!   L4 proxy in the l7 crate);
//! - [`node`]: [`TcpInput`], the graph node around a stack, and [`Handoff`],
//!   the queues that carry segments to the worker owning their port;
//! - [`bufpool`]: the connections' sockets and ring buffers, on memory the
//!   stack maps itself so that an idle connection's ring pages go back to
//!   the OS;
//! - [`flow`], [`timer`], [`ports`]: the building blocks;
//! - [`memhint`]: software prefetch and huge page advice for the data
//!   path's memory.
//!
//! # Design
//!
//! smoltcp walks its whole `SocketSet` for every received segment and on
//! every poll, which is unusable at tens of thousands of sockets. zerohop
//! must cost the same per segment at 10 and at 100 000 connections per
//! core, so the node drives smoltcp one connection at a time:
//!
//! 1. `ip4-local` hands `tcp-input` a vector of IPv4 packets (smoltcp runs
//!    with `Medium::Ip`: the graph owns Ethernet, ARP and routing).
//! 2. First the whole vector is warmed ([`Stack::warm`]). At 100 000
//!    connections a segment's state is in no cache, and its reads depend
//!    on one another: the flow index entry names the flow slot, the slot
//!    holds the socket's and ring's addresses. Fed one at a time, each
//!    segment would wait for four or five memory accesses in a row. `warm`
//!    takes the vector in stages instead, each prefetching for every
//!    segment what the next stage reads ([`memhint`]): index lines, then
//!    flow slots, then sockets and the receive-ring lines where payloads
//!    will land; the vector's misses overlap. What it touches is kept to
//!    few lines and few pages: a socket is one 8-line cell in a dense
//!    array on huge pages, the flow slab and index are on huge pages too,
//!    and only the ring buffers stay on 4 KiB pages (so an idle
//!    connection can return them, see [`bufpool`]).
//!    Then for each segment, `tcp-input` builds the [`FlowKey`] (source → remote,
//!    destination → local) and looks it up in the worker's [`FlowTable`].
//!    - Hit: the connection holds its own one-socket smoltcp `SocketSet`,
//!      and the node calls `poll_ingress_single` on it with this segment,
//!      then `poll_egress` to collect what the socket answers. No other
//!      connection is touched.
//!    - Miss, a SYN to a listener: create the connection on demand
//!      ([`FlowTable::insert_with`]) with a socket in `listen` (smoltcp has
//!      no backlog: one socket per pending connection), counted against the
//!      table's capacity; a full table is a counted drop, never a panic.
//!    - Miss, anything else: on a worker that does not own the port (see
//!      below) hand the frame over; otherwise answer with an RST, counted.
//! 3. After polling, the connection asks its socket for `poll_at` and
//!    schedules its one timer in the worker's [`TimerWheel`], keyed by
//!    its [`FlowId`]; an armed timer is moved only to an earlier time (one
//!    that fires early just rearms), so the ACK that pushes the
//!    retransmission timeout later costs no wheel operation. Each loop iteration advances the wheel to now and polls
//!    only the connections whose timers fired (retransmission, delayed ACK,
//!    keep-alive, TIME-WAIT, idle timeout). `poll_at` saying "now" means
//!    poll again before the vector ends, not a timer.
//! 4. What smoltcp emits goes back through `ip4-lookup` → `ip4-rewrite` →
//!    `port-tx`: one neighbour table, one FIB, one place that builds frames.
//! 5. Active opens to upstreams take a local port from the worker's
//!    [`EphemeralPorts`]. With RSS, the port is chosen so the reply's
//!    Toeplitz hash selects this worker's queue. Where the hash cannot be
//!    predicted (single-queue vdevs, `net_tap`), ports are split into one
//!    block per worker, and a worker that receives a segment for a port in
//!    another worker's block ([`ports::port_owner`]) hands the frame to that
//!    worker through its handoff queue (a crossbeam queue drained once per
//!    loop), never touching another worker's flow table.
//!
//! Workers share nothing on this path: each has its own flow table, timer
//! wheel and port allocator; only the handoff queues cross cores.
//!
//! # Deviations from smoltcp's defaults, and why
//!
//! - **MSS clamping.** smoltcp sizes segments as MTU − 40 and forgets the 12
//!   bytes of timestamp options, so a full-sized segment would exceed the MTU
//!   and smoltcp itself would drop it (no fragmentation). The stack tells
//!   smoltcp an MTU 12 bytes larger and clamps the MSS option of every SYN:
//!   the peer's to MTU − 52, our own to MTU − 40 ([`stack::clamp_mss`]).
//! - **TIME-WAIT** is cut to `time_wait_ms` (smoltcp's is a fixed 10 s), so
//!   churn does not fill the table.
//! - **Nagle off** for proxied streams; delayed ACK configurable.
//! - **Retransmissions** are counted by comparing each emitted segment's
//!   sequence range with the highest sent so far (smoltcp exposes no
//!   counter).
//! - **Duplicate ACKs.** smoltcp counts an ACK towards fast retransmit only
//!   if the window is unchanged (RFC 5681); Linux receivers grow it with
//!   every ACK while they hold out-of-order data, so every loss would wait
//!   for the RTO. A pure ACK that repeats the last acknowledgment and
//!   carries SACK blocks gets the previous window ([`stack::mark_dup_ack`]).
//! - **Receive window.** Bytes a peer sends beyond the right edge of the
//!   window last advertised are cut off before smoltcp sees them (RFC
//!   9293; counted as `beyond_window`). smoltcp 0.12 takes whatever fits
//!   its buffer and then panics in `last_scaled_window` (its issue #1048).
//!   No malice is needed: it rounds a scaled window down, so the edge moves
//!   back by up to 2^scale − 1 bytes as a stalled reader's buffer fills,
//!   and segments sent against the earlier edge overshoot the later one.
//!   Cut bytes that the retreat explains (under 2^scale past the edge) are
//!   held and fed to smoltcp, acknowledged at once, as soon as a window it
//!   advertises covers them (`beyond_window_held`), so the peer need not
//!   send them again (it would, after its retransmission timeout: a few
//!   hundred times a second with 256 KiB buffers at several Gbit/s).
//! - **TIME-WAIT reuse.** A SYN for a connection in TIME-WAIT whose sequence
//!   number lies beyond everything the peer sent on it replaces the old
//!   connection (RFC 6191, as Linux): kernel clients reuse ports at once.
//! - **SYNs on a stale connection are challenged.** smoltcp drops a SYN
//!   for a connection past its handshake; a peer that lost the connection
//!   (its RST lost, a restart) and reuses the port would retry for minutes.
//!   zerohop has smoltcp answer with a challenge ACK (RFC 5961 section 4,
//!   as Linux; `syn_challenged`); the peer's RST to it ends the stale
//!   connection and its next SYN opens a new one.
//! - **Closes are reported after the last byte is read**: a connection that
//!   reaches TIME-WAIT (or closes) with unread data stays until the
//!   application has read it, so the proxy never drops a reply's tail.
//! - **Buffer memory.** smoltcp keeps a socket's two rings for its life;
//!   they live on [`bufpool`] slots whose pages are returned once the
//!   connection's rings have been empty for `idle_release_ms` (nothing
//!   unread, unacknowledged or held out of order) with no data through
//!   them, so an idle connection costs its socket state only, and a busy
//!   one whose application drains every segment at once keeps its pages
//!   (rather than returning them every `idle_release_ms` and faulting them
//!   back in).
//! - Ephemeral ports are split in per-worker blocks; with hardware RSS
//!   (`TcpParams::rss`) a worker prefers ports whose replies hash to its own
//!   queue; a segment for another worker's block is handed over.
// Unsafe code only where memory is mapped by hand (`bufpool`) and for the
// prefetch instruction and the huge page advice (`memhint`).
#![deny(unsafe_code)]

pub mod bufpool;
pub mod flow;
pub mod memhint;
pub mod node;
pub mod ports;
pub mod rng;
pub mod stack;
pub mod timer;

pub use flow::{FlowId, FlowKey, FlowTable, FlowTableError};
pub use node::{Handoff, TcpInput};
pub use ports::{
    EphemeralPort, EphemeralPorts, EphemeralPortsConfig, PortsConfigError, PortsError, RssFilter,
    RssMode, RssSteering,
};
pub use stack::{App, Close, ConnId, Listen, SegmentDevice, Stack, TcpParams, TcpStats};
pub use timer::{TimerError, TimerHandle, TimerWheel};

/// A [`FlowTable`] or [`TimerWheel`] was asked to hold more than it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {structure} of {capacity} entries is too large; the most is {max}, lower the per-worker connection limit")]
pub struct CapacityError {
    /// What was being built.
    pub structure: &'static str,
    /// The capacity asked for.
    pub capacity: u32,
    /// The most it can hold.
    pub max: u32,
}
