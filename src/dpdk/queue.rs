//! `DpdkQueue`: the dataplane's [`PortQueue`] over one rx/tx queue pair.

use std::sync::Arc;

use zerohop_dataplane::{PacketVector, PortQueue};

use super::ffi;
use super::mbuf::Mbuf;

/// Queue pair `queue` of DPDK port `port`. Exactly one worker owns it: the
/// only way to get one is [`Port::take_queues`](super::Port::take_queues),
/// which hands out each pair once, and the port refuses to stop or close
/// while any of its queues is alive.
#[derive(Debug)]
pub struct DpdkQueue {
    port: u16,
    queue: u16,
    _alive: Option<Arc<()>>,
}

impl DpdkQueue {
    /// Name queue pair `queue` of port `port` for the port's own use (the
    /// caller guarantees nobody else polls it meanwhile).
    pub(super) fn new(port: u16, queue: u16, alive: Option<Arc<()>>) -> Self {
        Self {
            port,
            queue,
            _alive: alive,
        }
    }
}

impl PortQueue for DpdkQueue {
    type Buffer = Mbuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut PacketVector<Mbuf>, max: usize) -> usize {
        let v = out.storage();
        let len = v.len();
        // The spare capacity, not VECTOR_SIZE: storage() is public, so the
        // Vec may have been replaced by a smaller one.
        let want = max.min(out_room(v)) as u16;
        // SAFETY: `want` ≤ capacity − len, so there are `want` spare slots. Mbuf is repr(transparent) over a
        // non-null `rte_mbuf *`; rx_burst writes `n` valid owned mbufs there.
        unsafe {
            let slots = v.as_mut_ptr().add(len) as *mut *mut ffi::rte_mbuf;
            let n = ffi::zh_rx_burst(self.port, self.queue, slots, want);
            v.set_len(len + n as usize);
            n as usize
        }
    }

    #[inline]
    fn tx_burst(&mut self, pkts: &mut PacketVector<Mbuf>) -> usize {
        let v = pkts.storage();
        let len = v.len();
        if len == 0 {
            return 0;
        }
        // SAFETY: v holds `len` owned mbufs laid out as `rte_mbuf *`s.
        // tx_burst takes ownership of the first `sent`; we shift the refused
        // rest to the front without dropping anything, then shorten the
        // vector so the sent ones are forgotten, not freed.
        unsafe {
            let base = v.as_mut_ptr();
            let sent = ffi::zh_tx_burst(
                self.port,
                self.queue,
                base as *mut *mut ffi::rte_mbuf,
                len as u16,
            ) as usize;
            if sent > 0 {
                std::ptr::copy(base.add(sent), base, len - sent);
                v.set_len(len - sent);
            }
            sent
        }
    }
}

/// Spare slots of `v`, capped at a vector's size.
fn out_room(v: &Vec<Mbuf>) -> usize {
    (v.capacity() - v.len()).min(zerohop_dataplane::VECTOR_SIZE)
}
