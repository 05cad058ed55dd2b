//! `Mbuf`: an owned DPDK packet buffer.

use std::ptr::NonNull;

use zerohop_dataplane::Buffer;

use super::error::{DpdkError, Result};
use super::ffi;

// The fields read directly below; shim.c asserts the same offsets on the C
// side, so a DPDK layout change fails the build on both sides.
const _: () = {
    assert!(std::mem::size_of::<ffi::rte_mbuf>() == 128);
    assert!(std::mem::offset_of!(ffi::rte_mbuf, buf_addr) == 0);
    assert!(std::mem::offset_of!(ffi::rte_mbuf, data_off) == 16);
    assert!(std::mem::offset_of!(ffi::rte_mbuf, pkt_len) == 36);
    assert!(std::mem::offset_of!(ffi::rte_mbuf, data_len) == 40);
    assert!(std::mem::offset_of!(ffi::rte_mbuf, pool) == 56);
    assert!(std::mem::offset_of!(ffi::rte_mbuf, next) == 64);
    // An Mbuf is exactly a `struct rte_mbuf *`, so a [Mbuf] can be passed to
    // rx/tx burst as an array of pointers.
    assert!(std::mem::size_of::<Mbuf>() == std::mem::size_of::<*mut ffi::rte_mbuf>());
    assert!(std::mem::size_of::<Option<Mbuf>>() == std::mem::size_of::<*mut ffi::rte_mbuf>());
};

/// An owned mbuf. Dropping it returns it (and any chained segments) to its
/// pool.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf is the unique owner of its buffer; moving it to another
// thread moves that ownership. rte_pktmbuf_free is safe from any thread
// (mempool put is thread-safe).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nobody else owns or frees, from a pool
    /// that outlives the returned value.
    pub unsafe fn from_raw(raw: NonNull<ffi::rte_mbuf>) -> Self {
        Self(raw)
    }

    /// Give up ownership without freeing; the caller must free or transmit it.
    pub fn into_raw(self) -> NonNull<ffi::rte_mbuf> {
        let raw = self.0;
        std::mem::forget(self);
        raw
    }

    /// Return the raw pointer (ownership kept).
    pub fn as_ptr(&self) -> *mut ffi::rte_mbuf {
        self.0.as_ptr()
    }

    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: we own a valid mbuf for as long as self lives.
        unsafe { self.0.as_ref() }
    }

    /// Return the length of the first segment.
    pub fn data_len(&self) -> usize {
        self.raw().data_len as usize
    }

    /// Return the length of the whole packet (all segments).
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Return the free bytes before the data.
    pub fn headroom(&self) -> usize {
        // SAFETY: valid owned mbuf.
        unsafe { ffi::zh_pktmbuf_headroom(self.0.as_ptr()) as usize }
    }

    /// Return the free bytes after the data in the last segment.
    pub fn tailroom(&self) -> usize {
        // SAFETY: valid owned mbuf.
        unsafe { ffi::zh_pktmbuf_tailroom(self.0.as_ptr()) as usize }
    }

    /// Extend the data by `len` bytes at the end and return them.
    ///
    /// # Errors
    /// Not enough tailroom.
    pub fn append(&mut self, len: usize) -> Result<&mut [u8]> {
        let l = u16::try_from(len).map_err(|_| too_long("rte_pktmbuf_append", len))?;
        // SAFETY: valid owned mbuf; append returns NULL without changing it
        // when there is no room.
        let p = unsafe { ffi::zh_pktmbuf_append(self.0.as_ptr(), l) };
        if p.is_null() {
            return Err(no_room("rte_pktmbuf_append", len));
        }
        // SAFETY: p points at len writable bytes inside our buffer.
        Ok(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) })
    }

    /// Extend the data by `len` bytes at the front and return them.
    ///
    /// # Errors
    /// Not enough headroom.
    pub fn prepend(&mut self, len: usize) -> Result<&mut [u8]> {
        let l = u16::try_from(len).map_err(|_| too_long("rte_pktmbuf_prepend", len))?;
        // SAFETY: as for append.
        let p = unsafe { ffi::zh_pktmbuf_prepend(self.0.as_ptr(), l) };
        if p.is_null() {
            return Err(no_room("rte_pktmbuf_prepend", len));
        }
        // SAFETY: p points at len writable bytes inside our buffer.
        Ok(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) })
    }

    /// Remove `len` bytes from the front (e.g. a consumed header).
    ///
    /// # Errors
    /// `len` exceeds the first segment.
    pub fn adj(&mut self, len: usize) -> Result<()> {
        let l = u16::try_from(len).map_err(|_| too_long("rte_pktmbuf_adj", len))?;
        // SAFETY: valid owned mbuf; adj returns NULL without change on error.
        if unsafe { ffi::zh_pktmbuf_adj(self.0.as_ptr(), l) }.is_null() {
            return Err(no_room("rte_pktmbuf_adj", len));
        }
        Ok(())
    }

    /// Remove `len` bytes from the end.
    ///
    /// # Errors
    /// `len` exceeds the last segment.
    pub fn trim(&mut self, len: usize) -> Result<()> {
        let l = u16::try_from(len).map_err(|_| too_long("rte_pktmbuf_trim", len))?;
        // SAFETY: valid owned mbuf; trim returns -1 without change on error.
        if unsafe { ffi::zh_pktmbuf_trim(self.0.as_ptr(), l) } != 0 {
            return Err(no_room("rte_pktmbuf_trim", len));
        }
        Ok(())
    }

    /// Return the reference count.
    pub fn refcnt(&self) -> u16 {
        // SAFETY: valid owned mbuf.
        unsafe { ffi::zh_mbuf_refcnt_read(self.0.as_ptr()) }
    }
}

fn too_long(what: &str, len: usize) -> DpdkError {
    DpdkError {
        what: what.into(),
        code: libc::EINVAL,
        message: format!("{len} bytes is more than an mbuf segment can hold"),
    }
}

fn no_room(what: &str, len: usize) -> DpdkError {
    DpdkError {
        what: what.into(),
        code: libc::ENOSPC,
        message: format!("no room for {len} bytes in the mbuf"),
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; its pool outlives it (runtime teardown
        // order, see the module docs).
        unsafe { ffi::zh_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl Buffer for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off is the start of data_len initialised
        // bytes of the first segment, owned by us (rte_pktmbuf_mtod).
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr as *mut u8, m.data_off, m.data_len);
        // SAFETY: as in data(); &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off as usize), len as usize) }
    }

    #[inline]
    fn len(&self) -> usize {
        self.raw().data_len as usize
    }

    fn truncate(&mut self, len: usize) {
        let cur = self.data_len();
        if len < cur {
            // Cannot fail: we trim less than the segment holds.
            let _ = self.trim(cur - len);
        }
    }

    fn grow(&mut self, extra: usize) -> bool {
        self.append(extra).is_ok()
    }
}
