//! Hints to the CPU and the kernel about memory the data path is about to
//! touch: software prefetch and transparent huge pages. Neither can change
//! what the program computes, only how long its memory accesses take.
//!
//! - [`prefetch`] asks the CPU for a cache line a few hundred cycles before
//!   it is read. [`crate::Stack::warm`] walks a vector's connections in
//!   stages (index entries, then flow slots, then sockets and ring lines),
//!   prefetching what the next stage or [`crate::Stack::input`] reads. A
//!   plain load would fetch a line too, but holds a place in the CPU's
//!   reorder window until its data comes, and a dozen misses per segment
//!   fill that window; a prefetch retires at once, so all of a vector's
//!   misses are in flight together. A prefetch never faults, whatever the
//!   address: a wrong guess (a ring offset, a slot that is not the key's)
//!   costs only the wasted fetch.
//! - [`huge_pages`] asks the kernel to back a range with 2 MiB pages
//!   (`MADV_HUGEPAGE`; zerohop's hosts run THP in `madvise` mode). At
//!   100 000 connections the flow table and the sockets span tens of MiB:
//!   with 4 KiB pages nearly every segment misses the TLB on each of them,
//!   and a page walk costs more than the cache miss (twice over in a VM).
//!   Only for memory that is never handed back page by page: the ring
//!   buffers keep 4 KiB pages ([`crate::bufpool`]).
//!
//! On targets without the instruction or the advice, both do nothing.
// The x86 intrinsic is an `unsafe fn` before Rust 1.87 (the MSRV is 1.80),
// and `madvise` is a foreign function.
#![allow(unsafe_code)]

/// Cache line size of the CPUs zerohop runs on.
pub const LINE: usize = 64;

/// Huge page size the advice aims at.
pub const HUGE_PAGE: usize = 2 << 20;

/// Prefetch the cache line holding `p` into every cache level.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing the program sees, never faults on
    // any address and has no effect but on caches; SSE is part of every
    // x86_64. (Safe to call from Rust 1.87, hence the allow.)
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetch every cache line of the `len` bytes from `p`.
#[inline(always)]
pub fn prefetch_lines<T>(p: *const T, len: usize) {
    let p = p.cast::<u8>();
    // A line every 64 bytes from `p`, and the last byte's: every line is
    // covered whatever `p`'s offset in its line, and for a constant `len`
    // (a struct's size) the loop unrolls to straight-line prefetches.
    let mut off = 0;
    while off < len {
        prefetch(p.wrapping_add(off));
        off += LINE;
    }
    if len > 0 {
        prefetch(p.wrapping_add(len - 1));
    }
}

/// Return how many bytes from `p` the next 2 MiB boundary lies (0 if `p`
/// is on one).
pub fn huge_page_offset<T>(p: *const T) -> usize {
    (p as usize).next_multiple_of(HUGE_PAGE) - p as usize
}

/// Advise the kernel to back the whole 2 MiB pages within the `len` bytes
/// from `p` with transparent huge pages (the partial pages at either end
/// are left alone: they may hold someone else's data). Nothing is made
/// resident; a range too small, not mapped or on a kernel without THP is
/// left as it is.
pub fn huge_pages<T>(p: *const T, len: usize) {
    let start = (p as usize).next_multiple_of(HUGE_PAGE);
    let end = (p as usize).saturating_add(len) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: MADV_HUGEPAGE changes how the kernel backs the range, never
    // its contents (a collapse into a huge page copies them); an unmapped
    // range is refused with ENOMEM. The pointer is derived from `p`.
    unsafe {
        let at = p.cast::<u8>().wrapping_add(start - p as usize);
        libc::madvise(at.cast_mut().cast(), end - start, libc::MADV_HUGEPAGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_is_fine() {
        let v = [0u8; 300];
        prefetch_lines(v.as_ptr().wrapping_add(7), v.len() - 7);
        prefetch(std::ptr::null::<u8>());
        prefetch(std::ptr::null::<u8>().wrapping_sub(1));
        prefetch_lines(std::ptr::null::<u64>(), 4096);
    }

    #[test]
    fn huge_page_advice_keeps_contents() {
        let mut v: Vec<u64> = (0..1_000_000).collect();
        huge_pages(v.as_ptr(), v.len() * 8);
        huge_pages(v.as_ptr(), 8);
        huge_pages(std::ptr::null::<u8>(), 8 << 20);
        v[999_999] += 1;
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, &x)| x == i as u64 + u64::from(i == 999_999)));
    }
}
