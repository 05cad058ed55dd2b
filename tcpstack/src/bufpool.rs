//! Socket buffer memory that goes back to the OS while a connection idles.
//!
//! smoltcp's TCP socket owns two fixed ring buffers for its whole life: with
//! 64 KiB each, a connection that once moved data keeps 128 KiB resident
//! even when it has sat idle for an hour, and a sidecar holding 10 000 idle
//! keep-alive connections pays 1.3 GB for nothing. smoltcp cannot swap a
//! socket's buffers, so zerohop gives it buffers whose *pages* can be
//! returned instead:
//!
//! - [`BufPool`] maps large anonymous regions (`MAP_NORESERVE`, no
//!   transparent huge pages) and cuts them into slots, one per connection:
//!   the receive ring, then the send ring, each page-aligned. Address space
//!   is reserved, memory is not: a page becomes resident when TCP first
//!   writes it.
//! - The sockets themselves (smoltcp's state, 496 bytes) live in one more
//!   mapping, a cache-line-aligned cell per slot (8 lines), on transparent
//!   huge pages: they are never given back page by page, and every segment
//!   reads its socket, so a 4 KiB page per socket would cost a TLB miss
//!   per segment at 100 000 connections. The pool reserves cells for its
//!   `capacity` slots when it makes its first socket (address space again;
//!   memory 2 MiB at a time as sockets fill it). No socket is a heap
//!   allocation of its own (whose malloc header would push it across a
//!   ninth cache line).
//! - [`PooledSocket`] is a one-socket smoltcp `SocketSet` over its slot's
//!   cell, the socket's rings on the slot. When both rings are empty,
//!   [`PooledSocket::release_pages`] hands the slot's ring pages back
//!   (`madvise(MADV_DONTNEED)`): an empty ring holds nothing to lose, and a
//!   page read after that is a fresh zero page. The stack does this once a
//!   connection has been idle for
//!   `TcpParams::idle_release_ms`, so busy connections never take the page
//!   faults, and idle ones cost the socket state and nothing else.
//! - A freed slot goes on a small resident reserve ([`HOT_RESERVE`]) for the
//!   next connection (connection churn stays free of system calls); beyond
//!   the reserve its pages are returned first.
//!
//! Safety: the rings are `&'static mut [u8]` into the mapping, the socket
//! set's storage a `&'static mut` into its cell. Only this module makes
//! them, each slot for one socket at a time: a slot returns to the free
//! lists only through [`BufPool::give_back`], which takes the socket out of
//! its cell and drops it first, and a region is unmapped only when no slot
//! is out (a [`PooledSocket`] dropped elsewhere leaks its slot and keeps
//! the mappings for the life of the process).
#![allow(unsafe_code)]

use std::ptr::NonNull;

use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;

use crate::memhint;

/// Freed slots kept resident for the next connections.
pub const HOT_RESERVE: usize = 64;

/// Address space mapped at a time (at least one slot).
const REGION_BYTES: usize = 32 << 20;

/// One mapped region.
struct Region {
    base: NonNull<u8>,
    len: usize,
}

/// Map `len` bytes of anonymous memory, reserved but not backed
/// (`MAP_NORESERVE`); `None` if the OS refuses.
fn map(len: usize) -> Option<Region> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is
    // affected.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    Some(Region {
        base: NonNull::new(base.cast::<u8>())?,
        len,
    })
}

/// A socket's storage, on a cache line boundary (8 lines for smoltcp
/// 0.12's TCP socket), one per slot.
#[repr(align(64))]
struct Cell(SocketStorage<'static>);

/// A worker's socket buffer slots (single-threaded; see the
/// [module documentation](self)).
pub struct BufPool {
    rx: usize,
    tx: usize,
    /// Offset of the send ring in a slot.
    tx_offset: usize,
    slot_bytes: usize,
    slots_per_region: usize,
    regions: Vec<Region>,
    /// Most slots: the length of `cells`.
    capacity: u32,
    /// The sockets, a [`Cell`] per slot, in one mapping (made with the
    /// first socket) on huge pages; see the [module documentation](self).
    cells: Option<Region>,
    /// Slots handed out from regions so far (free or not).
    carved: u32,
    /// Free slots whose pages may be resident (reused first).
    hot: Vec<u32>,
    /// Free slots whose pages were returned.
    cold: Vec<u32>,
    /// Slots out (in a socket).
    out: u32,
    /// `madvise` calls that returned a slot's pages.
    releases: u64,
}

// SAFETY: the pool owns its regions (raw pointers only because they are
// mappings); moving it to another thread moves that ownership.
unsafe impl Send for BufPool {}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page)
        .ok()
        .filter(|p| *p > 0)
        .unwrap_or(4096)
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl BufPool {
    /// At most `capacity` slots of a `rx`-byte receive ring and a `tx`-byte
    /// send ring.
    pub fn new(rx: usize, tx: usize, capacity: u32) -> BufPool {
        let page = page_size();
        let tx_offset = round_up(rx.max(1), page);
        let slot_bytes = tx_offset + round_up(tx.max(1), page);
        BufPool {
            rx,
            tx,
            tx_offset,
            slot_bytes,
            slots_per_region: (REGION_BYTES / slot_bytes).max(1),
            regions: Vec::new(),
            capacity,
            cells: None,
            carved: 0,
            hot: Vec::new(),
            cold: Vec::new(),
            out: 0,
            releases: 0,
        }
    }

    /// Slots in use.
    pub fn in_use(&self) -> u32 {
        self.out
    }

    /// How many times pages were returned to the OS.
    pub fn releases(&self) -> u64 {
        self.releases
    }

    /// The start of slot `slot`.
    fn slot_ptr(&self, slot: u32) -> Option<*mut u8> {
        let slot = slot as usize;
        let region = self.regions.get(slot / self.slots_per_region)?;
        let offset = (slot % self.slots_per_region) * self.slot_bytes;
        // SAFETY: offset + slot_bytes <= region.len by construction.
        Some(unsafe { region.base.as_ptr().add(offset) })
    }

    /// The cell of slot `slot`.
    fn cell_ptr(&self, slot: u32) -> Option<*mut Cell> {
        let cells = self.cells.as_ref()?;
        if slot >= self.capacity {
            return None;
        }
        // SAFETY: slot < capacity, and the mapping holds `capacity` cells.
        Some(unsafe { cells.base.as_ptr().cast::<Cell>().add(slot as usize) })
    }

    /// A free slot: resident ones first, then returned ones, then a new one
    /// (mapping a region when needed). `None` if the OS refuses a mapping
    /// or `capacity` slots are out.
    fn take_slot(&mut self) -> Option<u32> {
        if let Some(slot) = self.hot.pop().or_else(|| self.cold.pop()) {
            return Some(slot);
        }
        let slot = self.carved;
        if slot >= self.capacity {
            return None;
        }
        if self.cells.is_none() {
            let len = (self.capacity as usize).checked_mul(std::mem::size_of::<Cell>())?;
            let cells = map(len.max(1))?;
            // Sockets are state, never given back page by page, and each
            // segment reads one: huge pages spare a TLB miss per segment.
            memhint::huge_pages(cells.base.as_ptr(), cells.len);
            self.cells = Some(cells);
        }
        if slot as usize / self.slots_per_region == self.regions.len() {
            let region = map(self.slots_per_region * self.slot_bytes)?;
            // Page-grained release needs small pages: a huge page would be
            // split (or kept whole) by the first release. Advice only; a
            // kernel without THP refuses it harmlessly.
            // SAFETY: advice on the mapping just made.
            unsafe {
                libc::madvise(
                    region.base.as_ptr().cast(),
                    region.len,
                    libc::MADV_NOHUGEPAGE,
                )
            };
            self.regions.push(region);
        }
        self.carved += 1;
        Some(slot)
    }

    /// A TCP socket on a slot of this pool, configured by `setup`; `None`
    /// if no memory could be mapped.
    pub fn socket(
        &mut self,
        setup: impl FnOnce(&mut tcp::Socket<'static>),
    ) -> Option<PooledSocket> {
        let slot = self.take_slot()?;
        let base = self.slot_ptr(slot)?;
        let cell = self.cell_ptr(slot)?;
        // SAFETY: the slot is in a live region, was free (no socket refers
        // to it) and its two rings do not overlap; the region stays mapped
        // while the slot is out (see `Drop`).
        let (rx, tx) = unsafe {
            (
                std::slice::from_raw_parts_mut(base, self.rx),
                std::slice::from_raw_parts_mut(base.add(self.tx_offset), self.tx),
            )
        };
        // SAFETY: the cell is in the live cells mapping, aligned, and
        // belongs to this free slot alone (a slot's socket leaves its cell
        // in `give_back`, before the slot is free); it stays mapped while
        // the slot is out (see `Drop`). Written before it is referenced.
        let storage: &'static mut SocketStorage<'static> = unsafe {
            cell.write(Cell(SocketStorage::EMPTY));
            &mut (*cell).0
        };
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        setup(&mut socket);
        // One empty storage: `add` takes it and cannot run out.
        let mut set = SocketSet::new(std::slice::from_mut(storage));
        let handle = set.add(socket);
        self.out += 1;
        Some(PooledSocket {
            set,
            handle,
            slot,
            base,
            cell: cell.cast_const().cast(),
            slot_bytes: self.slot_bytes,
            resident: false,
        })
    }

    /// Take back `socket`'s slot (the socket is dropped first).
    pub fn give_back(&mut self, socket: PooledSocket) {
        let PooledSocket {
            mut set,
            handle,
            slot,
            resident,
            base,
            slot_bytes,
            ..
        } = socket;
        // The socket leaves the slot's cell, which is empty again.
        drop(set.remove(handle));
        self.out = self.out.saturating_sub(1);
        if self.hot.len() < HOT_RESERVE {
            self.hot.push(slot);
        } else {
            if resident {
                // SAFETY: the slot's socket is gone; nothing refers to it.
                unsafe { dont_need(base, slot_bytes) };
                self.releases += 1;
            }
            self.cold.push(slot);
        }
    }
}

/// Return the pages of `len` bytes at `base` to the OS (they read as zero
/// after).
///
/// # Safety
/// Nothing may expect the bytes to keep their values.
unsafe fn dont_need(base: *mut u8, len: usize) {
    // DONTNEED, not FREE: FREE keeps pages resident until memory is short,
    // so the saving would not show and could not be measured.
    libc::madvise(base.cast(), len, libc::MADV_DONTNEED);
}

impl Drop for BufPool {
    fn drop(&mut self) {
        if self.out > 0 {
            // Sockets outlive the pool (dropped without `give_back`): their
            // rings stay valid, the regions are left mapped.
            return;
        }
        for region in self.regions.iter().chain(&self.cells) {
            // SAFETY: no slot is out, so nothing refers to the region (the
            // free slots' cells hold no socket).
            unsafe { libc::munmap(region.base.as_ptr().cast(), region.len) };
        }
    }
}

impl std::fmt::Debug for BufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufPool")
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("in_use", &self.out)
            .field("hot", &self.hot.len())
            .field("cold", &self.cold.len())
            .finish()
    }
}

/// A one-socket smoltcp `SocketSet` whose socket's rings live on a
/// [`BufPool`] slot; give it back with [`BufPool::give_back`].
pub struct PooledSocket {
    set: SocketSet<'static>,
    handle: SocketHandle,
    slot: u32,
    base: *mut u8,
    /// The socket's cell, for [`PooledSocket::prefetch`].
    cell: *const u8,
    slot_bytes: usize,
    /// Pages may be resident (data went through since the last release).
    resident: bool,
}

// SAFETY: the slot belongs to this socket alone; moving the socket moves
// that ownership.
unsafe impl Send for PooledSocket {}

impl PooledSocket {
    /// The socket set, for smoltcp's `Interface` calls.
    pub fn set_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.set
    }

    /// The socket set.
    pub fn set(&self) -> &SocketSet<'static> {
        &self.set
    }

    /// The socket.
    pub fn socket(&self) -> &tcp::Socket<'static> {
        self.set.get::<tcp::Socket<'static>>(self.handle)
    }

    /// The socket, mutably.
    pub fn socket_mut(&mut self) -> &mut tcp::Socket<'static> {
        self.set.get_mut::<tcp::Socket<'static>>(self.handle)
    }

    /// Prefetch the socket, and `len` bytes (a few lines at most) of the
    /// receive ring (`rx` bytes, the pool's) from `rx_offset` (taken modulo
    /// its size): where a segment's payload is about to be written. See
    /// [`crate::memhint`].
    pub fn prefetch(&self, rx: usize, rx_offset: usize, len: usize) {
        memhint::prefetch_lines(self.cell, std::mem::size_of::<Cell>());
        if self.resident && rx > 0 {
            let at = rx_offset % rx;
            let len = len.min(rx - at).min(4 * memhint::LINE);
            memhint::prefetch_lines(self.base.wrapping_add(at), len.max(1));
        }
    }

    /// Note that data went through the rings (pages may be resident).
    pub fn mark_resident(&mut self) {
        self.resident = true;
    }

    /// Data went through the rings since the last release.
    pub fn is_resident(&self) -> bool {
        self.resident
    }

    /// Return the rings' pages to the OS if both rings are empty; return
    /// true if it did.
    pub fn release_pages(&mut self) -> bool {
        let socket = self.socket();
        if !self.resident || socket.recv_queue() > 0 || socket.send_queue() > 0 {
            return false;
        }
        // SAFETY: both rings are empty: smoltcp reads a ring's bytes only
        // after writing them, so none of the values is expected any more.
        unsafe { dont_need(self.base, self.slot_bytes) };
        self.resident = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of the calling process (from /proc/self/statm).
    fn resident_pages() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn slots_are_distinct_and_reused_after_give_back() {
        let mut pool = BufPool::new(1000, 3000, 8);
        let mut a = pool.socket(|_| {}).unwrap();
        let b = pool.socket(|_| {}).unwrap();
        assert_ne!(a.slot, b.slot);
        assert_eq!(a.socket().recv_capacity(), 1000);
        assert_eq!(a.socket().send_capacity(), 3000);
        assert_eq!(pool.in_use(), 2);
        a.socket_mut().set_nagle_enabled(false);
        let slot = a.slot;
        pool.give_back(a);
        let c = pool.socket(|_| {}).unwrap();
        assert_eq!(c.slot, slot, "a freed slot is reused first");
        pool.give_back(b);
        pool.give_back(c);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn more_slots_than_a_region_holds() {
        let mut pool = BufPool::new(1 << 20, 1 << 20, 1024);
        let n = pool.slots_per_region + 3;
        let sockets: Vec<_> = (0..n).map(|_| pool.socket(|_| {}).unwrap()).collect();
        assert_eq!(pool.regions.len(), 2);
        let mut slots: Vec<u32> = sockets.iter().map(|s| s.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), n);
        for s in sockets {
            pool.give_back(s);
        }
    }

    #[test]
    fn release_returns_pages_only_when_rings_are_empty() {
        let mut pool = BufPool::new(1 << 20, 4096, 8);
        let mut s = pool.socket(|_| {}).unwrap();
        // Write every page of the receive ring by hand, as data would.
        // SAFETY (test): the ring belongs to `s`, which is not in use.
        let before = resident_pages();
        unsafe { std::ptr::write_bytes(s.base, 0xa5, 1 << 20) };
        s.mark_resident();
        let written = resident_pages();
        assert!(written >= before + 200, "{before} → {written} pages");
        assert!(s.release_pages());
        let after = resident_pages();
        assert!(
            after + 200 <= written,
            "{written} → {after} pages after release"
        );
        assert!(!s.is_resident());
        assert!(!s.release_pages(), "nothing to release twice");
        // The memory reads as zero again and is usable.
        // SAFETY (test): as above.
        assert_eq!(unsafe { *s.base.add(12345) }, 0);
        pool.give_back(s);
    }

    #[test]
    fn capacity_bounds_the_slots() {
        let mut pool = BufPool::new(4096, 4096, 2);
        let a = pool.socket(|_| {}).unwrap();
        let b = pool.socket(|_| {}).unwrap();
        assert!(pool.socket(|_| {}).is_none(), "two slots at most");
        assert_ne!(a.cell, b.cell);
        let cell = a.cell;
        pool.give_back(a);
        let c = pool.socket(|s| s.set_nagle_enabled(false)).unwrap();
        assert_eq!(c.cell, cell, "the slot's cell comes with it");
        assert!(!c.socket().nagle_enabled(), "a fresh socket, set up");
        assert_eq!(c.socket().state(), tcp::State::Closed);
        pool.give_back(b);
        pool.give_back(c);
    }

    #[test]
    fn sockets_outliving_the_pool_keep_their_memory() {
        let mut pool = BufPool::new(4096, 4096, 8);
        let mut s = pool.socket(|_| {}).unwrap();
        drop(pool);
        // The region is still mapped: the socket can be used and dropped.
        s.socket_mut().set_nagle_enabled(true);
        drop(s);
    }
}
