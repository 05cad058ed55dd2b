//! Packet-buffer pools (`rte_pktmbuf_pool_create`), one per NUMA socket.

use std::ffi::CString;
use std::ptr::NonNull;

use super::error::{DpdkError, Result};
use super::ffi;
use super::mbuf::Mbuf;

/// A pool of mbufs in hugepage memory (or anonymous memory with `--no-huge`).
pub struct Mempool {
    raw: NonNull<ffi::rte_mempool>,
    name: String,
}

// SAFETY: rte_mempool get/put and the count queries are thread-safe (lockless
// ring plus per-lcore caches); the pointer is freed only in Drop, which needs
// exclusive ownership.
unsafe impl Send for Mempool {}
// SAFETY: see Send; every method takes &self and calls thread-safe DPDK APIs.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Default data room: 2048 bytes of frame plus the standard headroom.
    pub const DEFAULT_DATA_ROOM: u16 = ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

    /// Create a pool of `count` mbufs (best as 2^n − 1) with a per-lcore cache
    /// of `cache` on NUMA `socket`.
    ///
    /// # Errors
    /// Name too long or already used, not enough memory on the socket.
    pub fn new(name: &str, count: u32, cache: u32, data_room: u16, socket: i32) -> Result<Self> {
        let cname = CString::new(name).map_err(|_| DpdkError {
            what: "rte_pktmbuf_pool_create".into(),
            code: libc::EINVAL,
            message: format!("pool name {name:?} contains a NUL byte"),
        })?;
        // SAFETY: cname is a valid C string; the other arguments are plain
        // values. A NULL return sets rte_errno.
        let raw = unsafe {
            ffi::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, socket)
        };
        let raw = NonNull::new(raw).ok_or_else(|| {
            DpdkError::from_errno(format!(
                "rte_pktmbuf_pool_create({name}, {count} mbufs, socket {socket})"
            ))
        })?;
        Ok(Self {
            raw,
            name: name.to_owned(),
        })
    }

    /// Return the pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Return the raw pointer, for queue setup.
    pub fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.raw.as_ptr()
    }

    /// Take one mbuf (reset, empty) from the pool.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive; alloc returns NULL or an owned mbuf.
        let m = unsafe { ffi::zh_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: a non-NULL mbuf from alloc is exclusively ours.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// Fill `out` with `n` mbufs, all or nothing.
    ///
    /// # Errors
    /// Not enough mbufs available (`ENOENT`); `out` is unchanged then.
    pub fn alloc_bulk(&self, out: &mut Vec<Mbuf>, n: usize) -> Result<()> {
        out.reserve(n);
        let spare = out.spare_capacity_mut();
        // SAFETY: spare has room for n pointers; Mbuf is repr(transparent)
        // over a non-null pointer, so the array of raw pointers written by
        // alloc_bulk is a valid [Mbuf; n] once it returns 0.
        let rc = unsafe {
            ffi::zh_pktmbuf_alloc_bulk(
                self.raw.as_ptr(),
                spare.as_mut_ptr() as *mut *mut ffi::rte_mbuf,
                n as u32,
            )
        };
        if rc != 0 {
            return Err(DpdkError::from_code("rte_pktmbuf_alloc_bulk", rc));
        }
        // SAFETY: the first n spare slots were initialised by alloc_bulk.
        unsafe { out.set_len(out.len() + n) };
        Ok(())
    }

    /// Return the number of mbufs taken from the pool and not returned
    /// (mbufs sitting in per-lcore caches count as available).
    pub fn in_use(&self) -> u32 {
        // SAFETY: read-only query on a live pool.
        unsafe { ffi::zh_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Return the number of mbufs available.
    pub fn available(&self) -> u32 {
        // SAFETY: read-only query on a live pool.
        unsafe { ffi::zh_mempool_avail_count(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        let in_use = self.in_use();
        if in_use > 0 {
            // Freeing the memory under live mbufs would turn a leak into a
            // use-after-free; keep the pool and say so.
            tracing::error!(
                "mempool {}: {in_use} mbufs still in use at exit; not freeing it",
                self.name
            );
            return;
        }
        // SAFETY: no mbuf of this pool is outstanding and the pool is not used
        // after this point.
        unsafe { ffi::rte_mempool_free(self.raw.as_ptr()) };
    }
}
