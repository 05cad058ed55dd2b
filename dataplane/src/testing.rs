//! Heap-backed implementations of [`Buffer`] and [`PortQueue`], so the engine
//! is testable (and benchmarkable) without DPDK. Like smoltcp's test devices,
//! they are part of the library rather than hidden in a test module.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Buffer, PacketVector, PortQueue};

/// A frame on the heap. Counts itself in an optional live-buffer gauge, so a
/// test can check that every buffer was freed.
#[derive(Debug)]
pub struct HeapBuffer {
    data: Vec<u8>,
    live: Option<Arc<AtomicUsize>>,
}

impl HeapBuffer {
    fn tracked(data: &[u8], live: Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self {
            data: data.to_vec(),
            live: Some(live),
        }
    }
}

impl From<&[u8]> for HeapBuffer {
    fn from(data: &[u8]) -> Self {
        Self {
            data: data.to_vec(),
            live: None,
        }
    }
}

impl Drop for HeapBuffer {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Buffer for HeapBuffer {
    fn data(&self) -> &[u8] {
        &self.data
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
    fn truncate(&mut self, len: usize) {
        self.data.truncate(len);
    }
    fn grow(&mut self, extra: usize) -> bool {
        // Like an mbuf: 2048 bytes of data room at most.
        if self.data.len() + extra > HEAP_BUFFER_ROOM {
            return false;
        }
        self.data.resize(self.data.len() + extra, 0);
        true
    }
}

/// Data room of a [`HeapBuffer`], as in a default DPDK mbuf.
pub const HEAP_BUFFER_ROOM: usize = 2048;

impl HeapBuffer {
    /// Return an empty buffer (for allocators in tests).
    pub fn empty() -> Self {
        Self {
            data: Vec::with_capacity(HEAP_BUFFER_ROOM),
            live: None,
        }
    }
}

#[derive(Default)]
struct Wire {
    rx: VecDeque<HeapBuffer>,
    sent: Vec<HeapBuffer>,
}

/// The far side of a [`MemQueue`]: inject frames for the worker to receive,
/// take the frames it sent.
#[derive(Clone)]
pub struct MemWire {
    wire: Arc<Mutex<Wire>>,
    live: Arc<AtomicUsize>,
}

impl MemWire {
    fn lock(&self) -> MutexGuard<'_, Wire> {
        // A panicking test thread poisons the lock; the data is still usable.
        self.wire.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a frame (copied into a tracked buffer) for the worker to receive.
    pub fn inject(&self, frame: HeapBuffer) {
        let tracked = HeapBuffer::tracked(frame.data(), self.live.clone());
        self.lock().rx.push_back(tracked);
    }

    /// Take every frame the worker transmitted so far.
    pub fn take_sent(&self) -> Vec<HeapBuffer> {
        std::mem::take(&mut self.lock().sent)
    }

    /// Return how many buffers injected on this wire are still alive anywhere
    /// (queued, in flight, or sent and not yet taken and dropped).
    pub fn live_buffers(&self) -> usize {
        let w = self.lock();
        self.live.load(Ordering::Relaxed) - w.rx.len() - w.sent.len()
    }
}

/// An in-memory queue pair whose tx ring accepts at most `tx_ring` frames per
/// burst, to exercise the refused-frame path.
pub struct MemQueue {
    far: MemWire,
    tx_ring: usize,
}

impl MemQueue {
    /// Create a queue and the wire that feeds it.
    pub fn pair(tx_ring: usize) -> (MemQueue, MemWire) {
        let far = MemWire {
            wire: Arc::new(Mutex::new(Wire::default())),
            live: Arc::new(AtomicUsize::new(0)),
        };
        (
            MemQueue {
                far: far.clone(),
                tx_ring,
            },
            far,
        )
    }
}

impl PortQueue for MemQueue {
    type Buffer = HeapBuffer;

    fn rx_burst(&mut self, out: &mut PacketVector<HeapBuffer>, max: usize) -> usize {
        let mut w = self.far.lock();
        let n = max.min(out.room()).min(w.rx.len());
        out.storage().extend(w.rx.drain(..n));
        n
    }

    fn tx_burst(&mut self, pkts: &mut PacketVector<HeapBuffer>) -> usize {
        let n = self.tx_ring.min(pkts.len());
        self.far.lock().sent.extend(pkts.storage().drain(..n));
        n
    }
}

/// xorshift64*: a small deterministic PRNG for tests and benchmarks, so
/// randomized checks repeat exactly without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Return the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Return a number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Return true `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
