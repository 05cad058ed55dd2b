//! The port abstraction: one rx/tx queue pair of a port, owned by one worker.

use crate::{Buffer, PacketVector};

/// One queue pair of a port (rx queue i and tx queue i), driven by exactly one
/// worker thread: queues are not thread-safe, so ownership is the lock.
pub trait PortQueue: Send {
    /// The buffer type this port receives into and transmits from.
    type Buffer: Buffer;

    /// Receive up to `max` frames, appended to `out` without exceeding its
    /// room; return how many arrived.
    fn rx_burst(&mut self, out: &mut PacketVector<Self::Buffer>, max: usize) -> usize;

    /// Hand the frames in `pkts` to the port; the ones it took are removed from
    /// the front of `pkts`, the ones it refused (ring full) stay; return how
    /// many it took.
    fn tx_burst(&mut self, pkts: &mut PacketVector<Self::Buffer>) -> usize;
}
