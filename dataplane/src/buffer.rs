//! The packet buffer abstraction.

/// One received or to-be-sent frame, owned: dropping it returns it to its pool.
///
/// Implemented by DPDK mbufs in the binary and by [`crate::testing::HeapBuffer`]
/// in tests. Only single-segment frames are exposed for now.
pub trait Buffer: Send {
    /// Return the frame's bytes.
    fn data(&self) -> &[u8];
    /// Return the frame's bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Shorten the frame to `len` bytes (no-op if it is not longer).
    fn truncate(&mut self, len: usize);
    /// Lengthen the frame by `extra` bytes at the end (contents unspecified);
    /// return false, unchanged, when the buffer has no room.
    fn grow(&mut self, extra: usize) -> bool;
    /// Return the frame length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Return true when the frame holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
