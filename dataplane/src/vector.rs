//! Packet vectors: the unit of work passed between the port and the nodes.

use crate::Buffer;

/// The largest vector a node handles (VPP's `VLIB_FRAME_SIZE`).
pub const VECTOR_SIZE: usize = 256;

/// Up to [`VECTOR_SIZE`] owned buffers, allocated once and reused.
///
/// The backing storage is reserved at construction and never grows, so the
/// steady-state loop allocates nothing per packet.
pub struct PacketVector<B> {
    bufs: Vec<B>,
}

impl<B: Buffer> PacketVector<B> {
    /// Create an empty vector with room for [`VECTOR_SIZE`] buffers.
    pub fn new() -> Self {
        Self {
            bufs: Vec::with_capacity(VECTOR_SIZE),
        }
    }

    /// Return the number of buffers held.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Return true when no buffers are held.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Return how many more buffers fit.
    pub fn room(&self) -> usize {
        VECTOR_SIZE - self.bufs.len()
    }

    /// Append a buffer; hand it back when the vector is full.
    ///
    /// # Errors
    /// Returns the buffer when the vector already holds [`VECTOR_SIZE`].
    pub fn push(&mut self, buf: B) -> Result<(), B> {
        if self.bufs.len() >= VECTOR_SIZE {
            return Err(buf);
        }
        self.bufs.push(buf);
        Ok(())
    }

    /// Drop every buffer (returning each to its pool) and return how many.
    pub fn clear(&mut self) -> usize {
        let n = self.bufs.len();
        self.bufs.clear();
        n
    }

    /// Return the buffers as a slice.
    pub fn as_slice(&self) -> &[B] {
        &self.bufs
    }

    /// Return the buffers as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [B] {
        &mut self.bufs
    }

    /// Return the backing storage, for [`crate::PortQueue`] implementations
    /// that fill or drain it in place.
    ///
    /// Its capacity is [`VECTOR_SIZE`]; an implementation must not grow it.
    pub fn storage(&mut self) -> &mut Vec<B> {
        &mut self.bufs
    }
}

impl<B: Buffer> Default for PacketVector<B> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::HeapBuffer;

    #[test]
    fn push_stops_at_vector_size() {
        let mut v = PacketVector::new();
        for _ in 0..VECTOR_SIZE {
            assert!(v.push(HeapBuffer::from(&[0u8; 4][..])).is_ok());
        }
        assert_eq!(v.room(), 0);
        assert!(v.push(HeapBuffer::from(&[1u8][..])).is_err());
        assert_eq!(v.clear(), VECTOR_SIZE);
        assert!(v.is_empty());
        assert!(v.storage().capacity() >= VECTOR_SIZE);
    }
}
