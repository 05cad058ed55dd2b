//! A hierarchical timer wheel (Varghese & Lauck, 1987; the layout of
//! tokio's and of Linux's since 4.8): wakes each connection at its smoltcp
//! `poll_at` without looking at the connections that are not due.
//!
//! Time is a `u64` of milliseconds from any epoch the caller picks (the
//! worker's TSC converted once per loop). The tick is 1 ms.
//!
//! # Structure
//!
//! Six levels of 64 slots. Level `L` slot `s` holds the timers whose deadline
//! shares every bit above `6(L+1)` with the wheel's current time and has
//! digit `s` in bits `6L..6L+6`: level 0 covers the next 64 ms one slot per
//! ms, level 1 the next 4 s in 64 ms slots, … level 5 the next 2^36 ms
//! (≈ 795 days) in 2^30 ms slots. A timer's level is where its deadline's
//! highest bit differing from the current time lies, one `leading_zeros`.
//! Deadlines beyond the top level (and `u64::MAX`, "never") wait on one
//! overflow list that is re-filed when the clock reaches the span of its
//! earliest timer; they are not clamped, they fire at their exact ms.
//!
//! Each slot is a doubly-linked list threaded through a slab of entries by
//! `u32` indices (no pointers, no per-timer allocation), with a 64-bit
//! occupancy mask per level, so:
//!
//! - [`TimerWheel::schedule`], [`TimerWheel::cancel`] and
//!   [`TimerWheel::reschedule`] are O(1): link or unlink one entry, flip one
//!   bit;
//! - [`TimerWheel::advance`] finds the next occupied slot with one
//!   `trailing_zeros` per level, fires a level-0 slot (all its timers are
//!   due in the same ms) and *cascades* a higher one: re-files its timers a
//!   level or more down, relative to the slot's start. A timer is cascaded
//!   at most once per level (five times, and only if it lives that long);
//!   a TCP retransmission timer, usually cancelled long before, rarely is.
//!
//! Timers fire in deadline order at 1 ms granularity; among timers due in
//! the same ms the order is unspecified. A deadline already past when it is
//! scheduled counts as due now: it fires at the next `advance`.
//!
//! Memory is one entry per pending timer (40 bytes with a `FlowId` payload) in
//! a slab that grows to the most timers ever pending at once and is then
//! reused through a free list: steady state allocates nothing. The slab's
//! room is reserved up front by [`TimerWheel::new`] for the wheel's capacity.
//!
//! # Performance
//!
//! `benches/timer.rs`, release, on the 2-core development VM with other
//! builds running (load average 0.6–0.9), 100 000 pending timers:
//! schedule + cancel 12 ns; reschedule of a random pending timer 26 ns (two
//! cold entries to relink); a 1 ms `advance` with nothing due 4.6 ns; a
//! steady 1 ms tick that fires and re-arms 3.3 timers 180 ns in all.

use std::fmt;

use crate::CapacityError;

/// Bits of deadline each level resolves.
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Levels in the wheel.
const LEVELS: usize = 6;
/// Lists: every slot of every level, then the overflow list.
const LISTS: usize = LEVELS * SLOTS + 1;
/// Index of the overflow list among the lists.
const OVERFLOW: usize = LEVELS * SLOTS;
/// The end of a list.
const NIL: u32 = u32::MAX;

/// The span the wheel's levels cover, in ms (2^36, about 795 days).
/// Deadlines further away wait on an overflow list and still fire exactly.
pub const WHEEL_SPAN_MS: u64 = 1 << (LEVEL_BITS * LEVELS as u32);

/// A handle to a scheduled timer: cancel or reschedule it with this. It goes
/// stale when the timer fires or is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: u32,
}

/// Why a timer could not be scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// `capacity` timers are pending already.
    #[error(
        "timer wheel full ({capacity} timers pending); size it for one timer per \
         connection the worker may hold"
    )]
    Full {
        /// The wheel's capacity.
        capacity: u32,
    },
}

/// One slab entry: a pending timer, or a vacant entry (`value` is `None`).
struct Entry<T> {
    deadline: u64,
    prev: u32,
    next: u32,
    /// The list the entry is on.
    list: u16,
    generation: u32,
    value: Option<T>,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// A hierarchical timer wheel carrying a `T` per timer (for the TCP node, a
/// `FlowId`). See the [module documentation](self).
pub struct TimerWheel<T> {
    entries: Vec<Entry<T>>,
    /// Vacant entries, most recently freed last.
    free: Vec<u32>,
    lists: Box<[List; LISTS]>,
    /// Per level, bit `s` set iff slot `s` is non-empty.
    occupied: [u64; LEVELS],
    /// The wheel's current time: every timer due before it has fired, and
    /// every pending deadline is at or after it.
    elapsed: u64,
    /// At or below the earliest deadline on the overflow list (exact after
    /// each overflow cascade; a cancel may leave it low, which only costs an
    /// early cascade), so a jump of years re-files it once, not per span.
    overflow_min: u64,
    len: u32,
    capacity: u32,
}

impl<T> TimerWheel<T> {
    /// The most timers a wheel may hold.
    pub const MAX_CAPACITY: u32 = 1 << 30;

    /// Return an empty wheel whose clock reads `now_ms`, for at most
    /// `capacity` pending timers (their memory reserved now).
    ///
    /// # Errors
    ///
    /// [`CapacityError`] above [`TimerWheel::MAX_CAPACITY`].
    pub fn new(now_ms: u64, capacity: u32) -> Result<Self, CapacityError> {
        if capacity > Self::MAX_CAPACITY {
            return Err(CapacityError {
                structure: "timer wheel",
                capacity,
                max: Self::MAX_CAPACITY,
            });
        }
        // Indices stay below `capacity`, so never equal NIL.
        Ok(Self {
            entries: Vec::with_capacity(capacity as usize),
            free: Vec::with_capacity(capacity as usize),
            lists: Box::new([EMPTY; LISTS]),
            occupied: [0; LEVELS],
            elapsed: now_ms,
            overflow_min: u64::MAX,
            len: 0,
            capacity,
        })
    }

    /// Return the wheel's time: the `now_ms` of the last [`TimerWheel::advance`]
    /// (or of [`TimerWheel::new`]).
    pub const fn now(&self) -> u64 {
        self.elapsed
    }

    /// Return the number of pending timers.
    pub const fn len(&self) -> u32 {
        self.len
    }

    /// Return true if no timer is pending.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Return the most timers that may be pending.
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Schedule `value` to fire at `deadline_ms` (a past deadline: at the
    /// next [`TimerWheel::advance`]) and return its handle.
    ///
    /// # Errors
    ///
    /// [`TimerError::Full`] if `capacity` timers are pending.
    pub fn schedule(&mut self, value: T, deadline_ms: u64) -> Result<TimerHandle, TimerError> {
        if self.len >= self.capacity {
            return Err(TimerError::Full {
                capacity: self.capacity,
            });
        }
        let deadline = deadline_ms.max(self.elapsed);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.entries.len()).map_err(|_| TimerError::Full {
                    capacity: self.capacity,
                })?;
                self.entries.push(Entry {
                    deadline,
                    prev: NIL,
                    next: NIL,
                    list: 0,
                    generation: 0,
                    value: None,
                });
                i
            }
        };
        let e = &mut self.entries[index as usize];
        e.deadline = deadline;
        e.value = Some(value);
        let handle = TimerHandle {
            index,
            generation: e.generation,
        };
        self.link(index);
        self.len += 1;
        Ok(handle)
    }

    /// Return the index of a pending timer's entry, or `None` if stale.
    fn live(&self, handle: TimerHandle) -> Option<u32> {
        self.entries
            .get(handle.index as usize)
            .filter(|e| e.generation == handle.generation && e.value.is_some())
            .map(|_| handle.index)
    }

    /// Cancel a pending timer and return its value, or `None` if it has
    /// fired or was cancelled already. O(1).
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        let index = self.live(handle)?;
        self.unlink(index);
        self.release(index)
    }

    /// Move a pending timer to `deadline_ms`, keeping its handle. Return
    /// false (and do nothing) if it has fired or was cancelled. O(1).
    #[must_use = "a false return means the timer is gone and nothing was scheduled"]
    pub fn reschedule(&mut self, handle: TimerHandle, deadline_ms: u64) -> bool {
        let Some(index) = self.live(handle) else {
            return false;
        };
        self.unlink(index);
        self.entries[index as usize].deadline = deadline_ms.max(self.elapsed);
        self.link(index);
        true
    }

    /// Return the deadline of a pending timer (a past deadline reads as the
    /// wheel's time when it was scheduled), or `None` if stale.
    pub fn deadline(&self, handle: TimerHandle) -> Option<u64> {
        self.live(handle).map(|i| self.entries[i as usize].deadline)
    }

    /// Return the value of a pending timer, or `None` if stale.
    pub fn get(&self, handle: TimerHandle) -> Option<&T> {
        self.live(handle)
            .and_then(|i| self.entries[i as usize].value.as_ref())
    }

    /// Return a time at or before the earliest pending deadline: exact if
    /// that timer is within 64 ms, otherwise the start of the slot holding
    /// it (an `advance` to it may only cascade). `None` if none is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        self.next_expiry().map(|(_, start)| start)
    }

    /// Move the clock to `now_ms` and call `fire` with the value of every
    /// timer due at or before it, each exactly once, in deadline order (at
    /// 1 ms granularity); return how many fired. Their handles are stale
    /// afterwards. A `now_ms` behind the wheel's time fires nothing.
    ///
    /// The cost is O(1) per level per occupied slot passed, plus O(1) per
    /// timer fired or cascaded.
    pub fn advance(&mut self, now_ms: u64, mut fire: impl FnMut(T)) -> usize {
        if now_ms < self.elapsed {
            return 0;
        }
        let mut fired = 0;
        while let Some((list, start)) = self.next_expiry() {
            if start > now_ms {
                break;
            }
            self.elapsed = start;
            if list < SLOTS {
                // Level 0: every timer here is due at `start`.
                while let Some(index) = self.pop_head(list) {
                    if let Some(value) = self.release(index) {
                        fired += 1;
                        fire(value);
                    }
                }
            } else {
                self.cascade(list);
            }
        }
        self.elapsed = now_ms;
        fired
    }

    /// Return the earliest non-empty list and the time its slot starts.
    ///
    /// Invariant: at each level, slots below the current time's digit are
    /// empty, and above level 0 so is the digit's own slot (its timers were
    /// cascaded when the clock entered it). So the lowest level with an
    /// occupied slot at or after the current digit holds the earliest timer,
    /// and that slot starts no earlier than the current time.
    fn next_expiry(&self) -> Option<(usize, u64)> {
        for (level, &occupied) in self.occupied.iter().enumerate() {
            let shift = LEVEL_BITS * level as u32;
            let digit = (self.elapsed >> shift) & (SLOTS as u64 - 1);
            let ahead = occupied & (u64::MAX << digit);
            debug_assert_eq!(ahead, occupied, "a slot behind the clock at level {level}");
            if ahead != 0 {
                let slot = u64::from(ahead.trailing_zeros());
                let level_span = 1u64 << (shift + LEVEL_BITS);
                let start = (self.elapsed & !(level_span - 1)) + (slot << shift);
                return Some((level * SLOTS + slot as usize, start));
            }
        }
        if self.lists[OVERFLOW].head != NIL {
            // The start of the span holding the earliest overflow timer: no
            // earlier than the next span (overflow timers all lie there or
            // later, and none exist if that is past the end of time).
            let next_span = (self.elapsed | (WHEEL_SPAN_MS - 1)).checked_add(1)?;
            let start = next_span.max(self.overflow_min & !(WHEEL_SPAN_MS - 1));
            return Some((OVERFLOW, start));
        }
        None
    }

    /// Return the list a deadline (at or after the clock) belongs on.
    fn list_for(&self, deadline: u64) -> usize {
        let differing = (self.elapsed ^ deadline) | (SLOTS as u64 - 1);
        let level = ((63 - differing.leading_zeros()) / LEVEL_BITS) as usize;
        if level >= LEVELS {
            return OVERFLOW;
        }
        let slot = (deadline >> (LEVEL_BITS * level as u32)) & (SLOTS as u64 - 1);
        level * SLOTS + slot as usize
    }

    /// Append entry `index` to the list its deadline belongs on.
    fn link(&mut self, index: u32) {
        let list = self.list_for(self.entries[index as usize].deadline);
        let tail = self.lists[list].tail;
        {
            let e = &mut self.entries[index as usize];
            e.list = list as u16;
            e.prev = tail;
            e.next = NIL;
        }
        if tail == NIL {
            self.lists[list].head = index;
        } else {
            self.entries[tail as usize].next = index;
        }
        self.lists[list].tail = index;
        if list < OVERFLOW {
            self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
        } else {
            let deadline = self.entries[index as usize].deadline;
            self.overflow_min = self.overflow_min.min(deadline);
        }
    }

    /// Take entry `index` off its list.
    fn unlink(&mut self, index: u32) {
        let (list, prev, next) = {
            let e = &self.entries[index as usize];
            (e.list as usize, e.prev, e.next)
        };
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if self.lists[list].head == NIL {
            if list < OVERFLOW {
                self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
            } else {
                self.overflow_min = u64::MAX;
            }
        }
    }

    /// Unlink and return the first entry of `list`.
    fn pop_head(&mut self, list: usize) -> Option<u32> {
        let head = self.lists[list].head;
        if head == NIL {
            return None;
        }
        self.unlink(head);
        Some(head)
    }

    /// Re-file every timer of `list` relative to the clock, which has just
    /// reached the list's slot start: each lands on a lower level (or, for
    /// the overflow list, in the wheel or back on the overflow list).
    fn cascade(&mut self, list: usize) {
        let mut index = self.lists[list].head;
        self.lists[list] = EMPTY;
        if list < OVERFLOW {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        } else {
            self.overflow_min = u64::MAX;
        }
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.link(index);
            index = next;
        }
    }

    /// Free an unlinked entry: take its value, bump its generation.
    fn release(&mut self, index: u32) -> Option<T> {
        let e = &mut self.entries[index as usize];
        let value = e.value.take()?;
        e.generation = e.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now", &self.elapsed)
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};

    use super::*;
    use crate::rng::Rng;

    fn fire_all<T>(w: &mut TimerWheel<T>, now: u64) -> Vec<T> {
        let mut out = Vec::new();
        w.advance(now, |v| out.push(v));
        out
    }

    #[test]
    fn fires_at_the_deadline_in_order() {
        let mut w = TimerWheel::new(1_000, 16).unwrap();
        w.schedule("c", 1_300).unwrap();
        w.schedule("a", 1_005).unwrap();
        w.schedule("b", 1_070).unwrap();
        w.schedule("a2", 1_005).unwrap();
        assert_eq!(w.len(), 4);
        assert_eq!(fire_all(&mut w, 1_004), Vec::<&str>::new());
        assert_eq!(fire_all(&mut w, 1_005), ["a", "a2"]);
        assert_eq!(fire_all(&mut w, 1_069), Vec::<&str>::new());
        assert_eq!(fire_all(&mut w, 2_000), ["b", "c"]);
        assert!(w.is_empty());
        assert_eq!(w.now(), 2_000);
    }

    #[test]
    fn cancel_and_reschedule() {
        let mut w = TimerWheel::new(0, 16).unwrap();
        let a = w.schedule(1, 10).unwrap();
        let b = w.schedule(2, 20).unwrap();
        assert_eq!(w.get(a), Some(&1));
        assert_eq!(w.deadline(b), Some(20));
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None, "cancelled twice");
        assert!(!w.reschedule(a, 5));
        assert!(w.reschedule(b, 5_000));
        assert_eq!(w.deadline(b), Some(5_000));
        assert!(fire_all(&mut w, 4_999).is_empty());
        assert_eq!(fire_all(&mut w, 5_000), [2]);
        assert_eq!(w.cancel(b), None, "fired");
        assert_eq!(w.get(b), None);
        // A reused entry does not answer to the old handle.
        let c = w.schedule(3, 6_000).unwrap();
        assert_eq!(c.index, b.index);
        assert_eq!(w.cancel(b), None);
        assert_eq!(w.cancel(c), Some(3));
    }

    #[test]
    fn past_deadline_fires_at_next_advance() {
        let mut w = TimerWheel::new(0, 4).unwrap();
        assert!(fire_all(&mut w, 500).is_empty());
        let h = w.schedule("late", 100).unwrap();
        assert_eq!(w.deadline(h), Some(500));
        assert_eq!(w.next_deadline(), Some(500));
        assert_eq!(fire_all(&mut w, 500), ["late"], "same now: still fires");
        w.schedule("now", 500).unwrap();
        assert_eq!(fire_all(&mut w, 501), ["now"]);
    }

    #[test]
    fn time_going_backwards_fires_nothing() {
        let mut w = TimerWheel::new(100, 4).unwrap();
        w.schedule((), 150).unwrap();
        assert_eq!(w.advance(50, |()| {}), 0);
        assert_eq!(w.now(), 100);
        assert_eq!(w.advance(150, |()| {}), 1);
    }

    #[test]
    fn one_hour_fires_on_its_ms() {
        const HOUR: u64 = 3_600_000;
        let start = 123_456_789;
        let mut w = TimerWheel::new(start, 4).unwrap();
        w.schedule("hour", start + HOUR).unwrap();
        // Step in uneven strides so cascades happen at odd points.
        let mut now = start;
        while now < start + HOUR - 1 {
            now = (now + 7_919).min(start + HOUR - 1);
            assert!(fire_all(&mut w, now).is_empty(), "early at {now}");
        }
        assert_eq!(fire_all(&mut w, start + HOUR), ["hour"]);
    }

    #[test]
    fn beyond_the_wheel_span_fires_exactly() {
        // Also a guard: the jump to u64::MAX below re-files the overflow
        // list once; re-filing it at every 2^36 ms span would loop 2^28
        // times and this test would take minutes.
        let mut w = TimerWheel::new(5, 8).unwrap();
        let far = 5 + 3 * WHEEL_SPAN_MS + 12_345;
        w.schedule("far", far).unwrap();
        w.schedule("never", u64::MAX).unwrap();
        w.schedule("edge", WHEEL_SPAN_MS).unwrap();
        assert_eq!(fire_all(&mut w, WHEEL_SPAN_MS - 1), Vec::<&str>::new());
        assert_eq!(fire_all(&mut w, WHEEL_SPAN_MS), ["edge"]);
        assert!(fire_all(&mut w, far - 1).is_empty());
        assert_eq!(fire_all(&mut w, far), ["far"]);
        assert!(fire_all(&mut w, u64::MAX - 1).is_empty());
        assert_eq!(fire_all(&mut w, u64::MAX), ["never"]);
    }

    #[test]
    fn next_deadline_bounds_the_earliest_timer() {
        let mut w = TimerWheel::new(0, 4).unwrap();
        assert_eq!(w.next_deadline(), None);
        w.schedule((), 1_000).unwrap();
        let bound = w.next_deadline().unwrap();
        assert!(bound <= 1_000 && bound > 0, "{bound}");
        w.schedule((), 40).unwrap();
        assert_eq!(w.next_deadline(), Some(40));
    }

    #[test]
    fn entry_size() {
        assert_eq!(std::mem::size_of::<Entry<crate::FlowId>>(), 40);
        assert_eq!(std::mem::size_of::<Entry<u64>>(), 40);
    }

    #[test]
    fn capacity_limit() {
        assert!(TimerWheel::<()>::new(0, TimerWheel::<()>::MAX_CAPACITY + 1).is_err());
    }

    #[test]
    fn full_wheel_is_an_error() {
        let mut w = TimerWheel::new(0, 2).unwrap();
        let a = w.schedule((), 1).unwrap();
        w.schedule((), 2).unwrap();
        let err = w.schedule((), 3).unwrap_err();
        assert_eq!(err, TimerError::Full { capacity: 2 });
        assert!(err.to_string().contains("2 timers pending"));
        w.cancel(a).unwrap();
        w.schedule((), 3).unwrap();
    }

    #[test]
    fn steady_state_does_not_allocate() {
        let mut w = TimerWheel::new(0, 1_000).unwrap();
        let mut rng = Rng(7);
        let mut handles: Vec<_> = (0..1_000)
            .map(|i| w.schedule(i, rng.below(100_000)).unwrap())
            .collect();
        let caps = (w.entries.capacity(), w.free.capacity());
        for now in 0..50_000u64 {
            let i = rng.below(1_000) as usize;
            if w.cancel(handles[i]).is_some() || w.get(handles[i]).is_none() {
                handles[i] = w.schedule(i, now + rng.below(200_000)).unwrap();
            }
            let j = rng.below(1_000) as usize;
            let _ = w.reschedule(handles[j], now + rng.below(200_000));
            let mut fired = Vec::new();
            w.advance(now, |v| fired.push(v));
            for v in fired {
                handles[v] = w.schedule(v, now + 1 + rng.below(200_000)).unwrap();
            }
        }
        assert_eq!((w.entries.capacity(), w.free.capacity()), caps);
    }

    /// A reference model: a binary heap with lazy deletion.
    struct Model {
        now: u64,
        heap: BinaryHeap<Reverse<(u64, u64)>>,
        /// Live timer id → effective deadline.
        live: HashMap<u64, u64>,
    }

    impl Model {
        fn schedule(&mut self, id: u64, deadline: u64) {
            let deadline = deadline.max(self.now);
            self.live.insert(id, deadline);
            self.heap.push(Reverse((deadline, id)));
        }

        fn advance(&mut self, now: u64) -> Vec<(u64, u64)> {
            let mut out = Vec::new();
            if now < self.now {
                return out;
            }
            while let Some(&Reverse((deadline, id))) = self.heap.peek() {
                if deadline > now {
                    break;
                }
                self.heap.pop();
                if self.live.get(&id) == Some(&deadline) {
                    self.live.remove(&id);
                    out.push((deadline, id));
                }
            }
            self.now = now;
            out
        }
    }

    /// Pick a deadline relative to `now` from a mix that exercises every
    /// level, the overflow list and past deadlines.
    fn pick_deadline(rng: &mut Rng, now: u64) -> u64 {
        match rng.below(100) {
            0..=39 => now + rng.below(64),
            40..=64 => now + rng.below(5_000),
            65..=84 => now + rng.below(3_600_000),
            85..=89 => now + rng.below(4 * WHEEL_SPAN_MS),
            90..=94 => now.saturating_sub(rng.below(1_000)),
            _ => now + rng.below(1 << 50),
        }
    }

    fn cross_check(seed: u64, start: u64, ops: usize) {
        let mut rng = Rng(seed);
        let mut w = TimerWheel::new(start, 1 << 20).unwrap();
        let mut model = Model {
            now: start,
            heap: BinaryHeap::new(),
            live: HashMap::new(),
        };
        let mut handles: Vec<TimerHandle> = Vec::new(); // by id
        let mut fired_total = 0usize;
        for op in 0..ops {
            let now = model.now;
            match rng.below(100) {
                0..=34 => {
                    let id = handles.len() as u64;
                    let deadline = pick_deadline(&mut rng, now);
                    handles.push(w.schedule(id, deadline).unwrap());
                    model.schedule(id, deadline);
                }
                35..=49 if !handles.is_empty() => {
                    let id = rng.below(handles.len() as u64);
                    let got = w.cancel(handles[id as usize]);
                    let live = model.live.remove(&id).is_some();
                    assert_eq!(got, live.then_some(id), "cancel {id} at op {op}");
                }
                50..=64 if !handles.is_empty() => {
                    let id = rng.below(handles.len() as u64);
                    let deadline = pick_deadline(&mut rng, now);
                    let live = model.live.contains_key(&id);
                    assert_eq!(w.reschedule(handles[id as usize], deadline), live);
                    if live {
                        model.schedule(id, deadline);
                        assert_eq!(
                            w.deadline(handles[id as usize]),
                            model.live.get(&id).copied()
                        );
                    }
                }
                _ => {
                    let step = match rng.below(100) {
                        0..=59 => rng.below(10),
                        60..=89 => rng.below(2_000),
                        90..=97 => rng.below(200_000),
                        _ => rng.below(2 * WHEEL_SPAN_MS),
                    };
                    let to = now + step;
                    let want = model.advance(to);
                    let mut got = Vec::new();
                    w.advance(to, |id| got.push(id));
                    // Deadline order: the fired deadlines never go back.
                    let due: HashMap<u64, u64> = want.iter().map(|&(d, id)| (id, d)).collect();
                    let got: Vec<(u64, u64)> = got
                        .into_iter()
                        .map(|id| match due.get(&id) {
                            Some(&d) => (d, id),
                            None => panic!("{id} fired but is not due, op {op}"),
                        })
                        .collect();
                    assert!(
                        got.windows(2).all(|p| p[0].0 <= p[1].0),
                        "out of order at op {op}: {got:?}"
                    );
                    let mut sorted = got.clone();
                    sorted.sort_unstable();
                    let mut want = want;
                    want.sort_unstable();
                    assert_eq!(sorted, want, "advance to {to} at op {op}");
                    fired_total += got.len();
                }
            }
            assert_eq!(w.len() as usize, model.live.len());
            if let Some(bound) = w.next_deadline() {
                let earliest = model.live.values().min().copied();
                assert!(earliest.is_some_and(|e| bound <= e), "op {op}");
            }
        }
        // Drain: everything left fires exactly once.
        let want = model.advance(u64::MAX);
        let mut got = Vec::new();
        w.advance(u64::MAX, |id| got.push(id));
        got.sort_unstable();
        let mut want: Vec<u64> = want.into_iter().map(|(_, id)| id).collect();
        want.sort_unstable();
        assert_eq!(got, want);
        assert!(w.is_empty());
        assert!(
            fired_total > ops / 20,
            "the run fired too little to mean much"
        );
    }

    #[test]
    fn matches_a_binary_heap_from_zero() {
        cross_check(1, 0, 100_000);
    }

    #[test]
    fn matches_a_binary_heap_across_a_span_boundary() {
        // Start just before a 2^36 ms boundary, where the overflow list and
        // every level roll over.
        cross_check(2, WHEEL_SPAN_MS - 50_000, 100_000);
    }

    #[test]
    fn matches_a_binary_heap_at_an_odd_start() {
        cross_check(3, 0x1234_5678_9abc, 100_000);
    }
}
