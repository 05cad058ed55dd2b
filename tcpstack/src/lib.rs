//! zerohop's userspace TCP: the building blocks of the `tcp-input` node.
//!
//! **What exists today** is three self-contained, tested modules and nothing
//! that touches a packet yet:
//!
//! - [`flow`]: the [`FlowTable`], 4-tuple → connection in O(1) with stable,
//!   generation-checked [`FlowId`] handles and a fixed capacity;
//! - [`timer`]: the [`TimerWheel`], a hierarchical timer wheel with O(1)
//!   schedule / cancel / reschedule and 1 ms resolution;
//! - [`ports`]: [`EphemeralPorts`], per-worker local ports for active opens
//!   that never collide between workers and, with a Toeplitz [`RssSteering`],
//!   bring the replies back to the opening worker's queue.
//!
//! The `tcp-input` node, the smoltcp integration, listeners and active opens
//! are **not written yet**; this crate does not depend on smoltcp so far.
//!
//! # The design they are for
//!
//! smoltcp walks its whole `SocketSet` for every received segment and on
//! every poll, which is unusable at tens of thousands of sockets. zerohop
//! must cost the same per segment at 10 and at 100 000 connections per
//! core, so the node to come will drive smoltcp one connection at a time:
//!
//! 1. `ip4-local` hands `tcp-input` a vector of IPv4 packets (smoltcp runs
//!    with `Medium::Ip`: the graph owns Ethernet, ARP and routing).
//! 2. For each segment, `tcp-input` builds the [`FlowKey`] (source → remote,
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
//!    (re)schedules its one timer in the worker's [`TimerWheel`], keyed by
//!    its [`FlowId`]. Each loop iteration advances the wheel to now and polls
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
#![forbid(unsafe_code)]

pub mod flow;
pub mod ports;
pub mod rng;
pub mod timer;

pub use flow::{FlowId, FlowKey, FlowTable, FlowTableError};
pub use ports::{
    EphemeralPort, EphemeralPorts, EphemeralPortsConfig, PortsConfigError, PortsError, RssFilter,
    RssMode, RssSteering,
};
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
