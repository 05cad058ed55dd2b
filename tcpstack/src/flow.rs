//! The flow table: `tcp-input`'s demux from a segment's 4-tuple to its
//! connection, in O(1) whatever the number of connections.
//!
//! A [`FlowTable<V>`] maps a [`FlowKey`] (local and remote IPv4 address and
//! port) to a value (for the TCP node: the connection, with its own small
//! smoltcp socket set) and hands out a [`FlowId`]: a stable handle that other
//! structures keep instead of the key. The timer wheel stores the `FlowId` of
//! the connection it must wake; the L7 layer stores the `FlowId` of the peer
//! connection it proxies to. A handle carries a generation, so one kept past
//! its connection's removal is refused ([`FlowTable::get`] returns `None`)
//! instead of silently naming the connection that reused the slot.
//!
//! # Layout
//!
//! Two arrays, no pointers:
//!
//! - a slab `Vec<Slot<V>>` holding each flow's key, generation and value,
//!   with a free list of vacant slots (LIFO, so a freed slot is reused while
//!   still warm in cache);
//! - an index: open addressing with linear probing over a power-of-two array
//!   of `u64` entries, each 32 bits of the key's hash (the probe's start and
//!   a tag) and the slot number. The key is stored once, in the slot. The
//!   array is sized for the table's capacity at most 3/4 full: 2 MiB at
//!   100k flows.
//!
//! A lookup hashes the key (foldhash: a few ns), reads entries from its home
//! position on (one cache line, usually one entry: clusters are short at this
//! load), and compares the key only in a slot whose tag matches, which is
//! also where the value is: two cache lines, whatever the size.
//!
//! Those two reads depend on each other, and at 100 000 flows both miss
//! every cache. `tcp-input` therefore looks up a vector's keys in stages:
//! [`FlowTable::hash_key`] and [`FlowTable::prefetch_index`] for every key,
//! then [`FlowTable::prefetch_slot`] for every key (reading the index
//! entries, now in cache, not the slots), then
//! [`FlowTable::get_by_hashed_key`]: the vector's misses overlap (see
//! [`crate::memhint`]). The slab and an index of 2 MiB or more are advised
//! onto transparent huge pages, so random lookups do not also miss the TLB.
//!
//! Removal shifts the entries of the cluster back into the hole (Knuth's
//! Algorithm R), so there are no tombstones: the index never degrades with
//! churn, never rehashes and never grows. Nothing allocates after
//! [`FlowTable::new`], which reserves the slab and the index for the table's
//! whole capacity.
//!
//! # Why not a crate
//!
//! - `hashbrown` (std's `HashMap`) was the first version, with its
//!   `HashTable<u32>` of slot numbers. A SwissTable leaves a tombstone for
//!   some removals and, when they use up its free room, rehashes the whole
//!   table in place or, past half full, *grows* it: an allocation and a full
//!   rehash, milliseconds at 100k flows, on the data path, when the table is
//!   busiest. The churn test near capacity did grow it. Reserving twice the
//!   capacity stops the growth (not the in-place rehash) but made random
//!   lookups at 100k flows about 30% slower. This index has neither stall
//!   and is faster than both (table below).
//! - The `slab` crate has no generations, and a stale `FlowId` that silently
//!   reaches a new connection is exactly the bug we want to catch, so the
//!   slab here is ours: a `Vec`, a free list and a `u32` generation per slot.
//! - The hash is foldhash (hashbrown's own default), keyed per table with
//!   64 bits from the OS (through std's `RandomState`). A remote peer picks
//!   its address and port, and with an unkeyed hash (FxHash, as the neighbour
//!   table uses) it could pick 4-tuples that all land in one cluster and turn
//!   every lookup into a scan. foldhash is not cryptographic, but keyed it
//!   leaves an attacker nothing to precompute, at FxHash's speed. (Linux
//!   keys its established-connection hash, `inet_ehashfn`, the same way.)
//!
//! # Performance
//!
//! `benches/flow.rs`, release, thin LTO, on the 2-core KVM development VM
//! (AMD EPYC, 1 MiB L2 per core, 32 MiB L3) with other builds running
//! (load average 0.6–1.4), so take ±20%. ns per lookup of a present key
//! (`get_mut_by_key`, 64-byte values), batches of 4 096:
//!
//! | live flows                          |  10 | 1 000 | 10 000 | 100 000 |
//! |-------------------------------------|----:|------:|-------:|--------:|
//! | `random`: keys uniform over all     | 3.7 |   4.5 |    5.7 |     9.0 |
//! | `hot16`: 16 busy flows              | 3.6 |   3.5 |    3.4 |     3.4 |
//! | hashbrown `HashTable<u32>`, random  | 4.6 |       |        |    11.3 |
//! | hashbrown, index reserved 2x        | 5.3 |       |        |    14.5 |
//!
//! The algorithm is flat (`hot16`: the same 3.5 ns at every size). What
//! grows with uniformly random keys is memory: at 100k flows the slab is
//! 8.8 MiB and the index 2 MiB, so a lookup misses L2 on the index entry and
//! the slot. The slot is the connection itself, which the TCP code touches
//! next anyway, so in the per-segment cost that miss is paid once.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddrV4;

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;

use crate::memhint;
use crate::CapacityError;

/// A TCP connection's 4-tuple as this host sees it.
///
/// `local` is our address and port, `remote` the peer's. A received segment's
/// key is [`FlowKey::from_received`] (source → remote, destination → local);
/// a segment we send has `local` as its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    /// Our address and port.
    pub local: SocketAddrV4,
    /// The peer's address and port.
    pub remote: SocketAddrV4,
}

impl FlowKey {
    /// Return the key of a connection between `local` (ours) and `remote`.
    pub const fn new(local: SocketAddrV4, remote: SocketAddrV4) -> Self {
        Self { local, remote }
    }

    /// Return the key of the connection a received segment belongs to.
    pub const fn from_received(source: SocketAddrV4, destination: SocketAddrV4) -> Self {
        Self {
            local: destination,
            remote: source,
        }
    }
}

impl Hash for FlowKey {
    /// Feed the 12 bytes of the 4-tuple as two words (two hasher rounds
    /// instead of six for a derived `Hash`).
    ///
    /// Always inlined: called from several places, it is otherwise left
    /// out of line, and the call (the hasher's state through memory)
    /// doubles the cost of a lookup (`benches/flow.rs`).
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let addrs = (u64::from(u32::from(*self.local.ip())) << 32)
            | u64::from(u32::from(*self.remote.ip()));
        let ports = (u32::from(self.local.port()) << 16) | u32::from(self.remote.port());
        state.write_u64(addrs);
        state.write_u32(ports);
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <-> {}", self.local, self.remote)
    }
}

/// A stable handle to a flow in a [`FlowTable`]: a slot index and the
/// generation of the slot when the flow was inserted.
///
/// Eight bytes rather than a packed `u32`: at a million flows a packed id
/// would keep 12 bits of generation, and a handle held across 4 096 reuses
/// of its slot would alias a stranger's connection. With 32 bits a slot must
/// be reused four billion times for that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    index: u32,
    generation: u32,
}

impl FlowId {
    /// Return the slot index (dense, below the table's capacity): usable to
    /// index per-flow side arrays.
    pub const fn index(self) -> u32 {
        self.index
    }

    /// Return the handle as one `u64` (generation in the high half), for a
    /// place that stores plain integers, such as a timer's payload.
    pub const fn to_bits(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    /// Return the handle [`FlowId::to_bits`] encoded.
    pub const fn from_bits(bits: u64) -> Self {
        Self {
            index: bits as u32,
            generation: (bits >> 32) as u32,
        }
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow {}.{}", self.index, self.generation)
    }
}

/// Why an insert into a [`FlowTable`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowTableError {
    /// The table holds `capacity` flows already.
    #[error(
        "flow table full ({capacity} flows): cannot add {key}; raise the per-worker \
         connection limit or spread connections over more workers"
    )]
    Full {
        /// The table's capacity.
        capacity: u32,
        /// The key that was refused.
        key: FlowKey,
    },
    /// A flow with this key is in the table already.
    #[error("flow {key} is in the table already ({id})")]
    Exists {
        /// The key that was refused.
        key: FlowKey,
        /// The flow that holds it.
        id: FlowId,
    },
}

/// A slab slot. The key stays behind when the flow is removed (it is
/// overwritten on reuse); `value` says whether the slot is occupied.
///
/// Cache-line aligned: a lookup reads its slot from memory, and a slot that
/// straddles one more line than it needs costs one more miss. The TCP
/// stack's slot (key, generation and connection) is three lines exactly.
#[repr(align(64))]
struct Slot<V> {
    key: FlowKey,
    generation: u32,
    value: Option<V>,
}

/// The flow index: open addressing with linear probing and backward-shift
/// deletion over `u64` entries `(hash as u32) << 32 | (slot + 1)`, 0 = empty.
///
/// Invariants: the array is a power of two long and never more than 3/4
/// full, so every probe meets an empty entry; an entry sits at its home
/// (`hash & mask`) or after it with no empty entry in between.
///
/// An index of 2 MiB or more starts on a 2 MiB boundary of its allocation
/// (`base`; the allocation is that much longer, address space that is never
/// touched), so it lies on whole huge pages: every lookup reads a random
/// entry, and at 100 000 flows a 4 KiB page per lookup would miss the TLB.
struct Index {
    /// The entries are `buf[base..base + mask + 1]`.
    buf: Box<[u64]>,
    base: usize,
    mask: usize,
}

impl Index {
    /// Return an index for up to `capacity` entries, at most 3/4 full.
    fn new(capacity: u32) -> Self {
        let capacity = capacity as usize;
        let len = (capacity + capacity / 3 + 1).next_power_of_two().max(8);
        let pad = if len * 8 >= memhint::HUGE_PAGE {
            memhint::HUGE_PAGE / 8
        } else {
            0
        };
        let buf = vec![0u64; len + pad].into_boxed_slice();
        let base = memhint::huge_page_offset(buf.as_ptr()) / 8;
        let base = if base + len <= buf.len() { base } else { 0 };
        memhint::huge_pages(buf.as_ptr().wrapping_add(base), len * 8);
        Self {
            buf,
            base,
            mask: len - 1,
        }
    }

    /// The entries (`mask + 1` of them), then the padding after them.
    fn entries(&self) -> &[u64] {
        self.buf.get(self.base..).unwrap_or_default()
    }

    /// The entries, mutable, then the padding after them.
    fn entries_mut(&mut self) -> &mut [u64] {
        self.buf.get_mut(self.base..).unwrap_or_default()
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Return the position and slot of the first entry with `hash` whose
    /// slot `is` accepts.
    fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        let tag = hash as u32;
        let mut pos = self.home(hash);
        let entries = self.entries();
        loop {
            let entry = *entries.get(pos)?;
            if entry == 0 {
                return None;
            }
            if (entry >> 32) as u32 == tag {
                let slot = (entry as u32).wrapping_sub(1);
                if is(slot) {
                    return Some((pos, slot));
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Return the slot of the first entry from `hash`'s home whose tag
    /// matches, without comparing keys: the slot a lookup of `hash` will
    /// most likely read.
    fn candidate(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true).map(|(_, slot)| slot)
    }

    /// Add an entry for `slot` (the caller checked it is absent and that the
    /// index is below capacity).
    fn insert(&mut self, hash: u64, slot: u32) {
        let (mut pos, mask) = (self.home(hash), self.mask);
        let entries = self.entries_mut();
        while entries.get(pos).is_some_and(|&e| e != 0) {
            pos = (pos + 1) & mask;
        }
        if let Some(e) = entries.get_mut(pos) {
            *e = (u64::from(hash as u32) << 32) | (u64::from(slot) + 1);
        }
    }

    /// Remove the entry at `hole` and shift later entries of its cluster
    /// back so every entry stays reachable from its home.
    fn remove_at(&mut self, mut hole: usize) {
        let mask = self.mask;
        let entries = self.entries_mut();
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let entry = entries.get(next).copied().unwrap_or(0);
            if entry == 0 {
                break;
            }
            let home = (entry >> 32) as usize & mask;
            // The entry stays if its home lies cyclically in (hole, next]:
            // moving it before its home would hide it.
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                entries[hole] = entry;
                hole = next;
            }
        }
        entries[hole] = 0;
    }
}

/// A map from [`FlowKey`] to `V` with stable [`FlowId`] handles and a fixed
/// capacity. See the [module documentation](self) for the layout.
pub struct FlowTable<V> {
    /// Slot numbers, by the hash of the key stored in the slot.
    index: Index,
    slots: Vec<Slot<V>>,
    /// Vacant slot indices, most recently freed last.
    free: Vec<u32>,
    len: u32,
    capacity: u32,
    hasher: SeedableRandomState,
}

/// Return a foldhash state keyed with 64 bits of OS randomness.
///
/// std's `RandomState` is seeded from the OS once per thread and stepped for
/// each new state, so each table gets a different key.
pub(crate) fn keyed_hasher() -> SeedableRandomState {
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    SeedableRandomState::with_seed(seed, SharedSeed::global_random())
}

impl<V> FlowTable<V> {
    /// The most flows a table may hold (its index must fit in 32 bits).
    pub const MAX_CAPACITY: u32 = 1 << 30;

    /// Return an empty table for at most `capacity` flows, with the memory
    /// for all of them reserved now: the index (16 to 21 bytes per flow)
    /// and the slab's address space (the OS backs its pages only as flows
    /// fill them).
    ///
    /// # Errors
    ///
    /// [`CapacityError`] above [`FlowTable::MAX_CAPACITY`].
    pub fn new(capacity: u32) -> Result<Self, CapacityError> {
        if capacity > Self::MAX_CAPACITY {
            return Err(CapacityError {
                structure: "flow table",
                capacity,
                max: Self::MAX_CAPACITY,
            });
        }
        let want = capacity as usize;
        let index = Index::new(capacity);
        let slots = Vec::with_capacity(want);
        // Every lookup reads a random slot: 2 MiB pages keep their
        // translations in the TLB (see `memhint`).
        memhint::huge_pages(
            slots.as_ptr(),
            want.saturating_mul(std::mem::size_of::<Slot<V>>()),
        );
        Ok(Self {
            index,
            slots,
            free: Vec::with_capacity(want),
            len: 0,
            capacity,
            hasher: keyed_hasher(),
        })
    }

    /// Return the number of flows in the table.
    pub const fn len(&self) -> u32 {
        self.len
    }

    /// Return true if the table holds no flow.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Return the most flows the table holds.
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Return true if an insert would fail with [`FlowTableError::Full`].
    pub const fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Return the index position and slot holding `key`, if any.
    fn find_key(&self, key: &FlowKey) -> Option<(usize, u32)> {
        let slots = &self.slots;
        self.index.find(self.hash(key), |i| {
            slots.get(i as usize).is_some_and(|s| s.key == *key)
        })
    }

    /// [`FlowTable::find_key`] with the key's hash.
    fn find_hashed(&self, key: &FlowKey, hash: u64) -> Option<(usize, u32)> {
        let slots = &self.slots;
        self.index.find(hash, |i| {
            slots.get(i as usize).is_some_and(|s| s.key == *key)
        })
    }

    /// Return the slot holding `key`, if any.
    fn find_index(&self, key: &FlowKey) -> Option<u32> {
        self.find_key(key).map(|(_, slot)| slot)
    }

    fn id_at(&self, index: u32) -> FlowId {
        let generation = self.slots.get(index as usize).map_or(0, |s| s.generation);
        FlowId { index, generation }
    }

    /// Insert `value` under `key` and return its handle.
    ///
    /// On error `value` is dropped; [`FlowTable::insert_with`] builds the
    /// value only once the insert is certain to succeed.
    ///
    /// # Errors
    ///
    /// [`FlowTableError::Exists`] if `key` is in the table (the existing flow
    /// is untouched), [`FlowTableError::Full`] if the table is at capacity.
    pub fn insert(&mut self, key: FlowKey, value: V) -> Result<FlowId, FlowTableError> {
        self.insert_with(key, |_| value)
    }

    /// Insert the value `make` returns under `key` and return its handle.
    ///
    /// `make` receives the new flow's handle (a connection that schedules
    /// its own timers wants it) and runs only if the insert succeeds.
    ///
    /// # Errors
    ///
    /// As [`FlowTable::insert`]; `make` is not called.
    pub fn insert_with(
        &mut self,
        key: FlowKey,
        make: impl FnOnce(FlowId) -> V,
    ) -> Result<FlowId, FlowTableError> {
        let hash = self.hash(&key);
        if let Some(existing) = self.find_index(&key) {
            return Err(FlowTableError::Exists {
                key,
                id: self.id_at(existing),
            });
        }
        let full = FlowTableError::Full {
            capacity: self.capacity,
            key,
        };
        if self.is_full() {
            return Err(full);
        }
        // Pick the slot first and build the value before touching any state,
        // so a panicking `make` leaves the table as it was.
        let (index, generation) = match self.free.last() {
            Some(&i) => (i, self.id_at(i).generation),
            None => (u32::try_from(self.slots.len()).map_err(|_| full)?, 0),
        };
        let id = FlowId { index, generation };
        let value = make(id);
        if self.free.pop().is_none() {
            self.slots.push(Slot {
                key,
                generation,
                value: None,
            });
        }
        if let Some(slot) = self.slots.get_mut(index as usize) {
            slot.key = key;
            slot.value = Some(value);
        }
        self.index.insert(hash, index);
        self.len += 1;
        Ok(id)
    }

    /// Return the handle of the flow with `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<FlowId> {
        self.find_index(key).map(|i| self.id_at(i))
    }

    /// Return the flow with `key`: its handle and value.
    #[inline]
    pub fn get_by_key(&self, key: &FlowKey) -> Option<(FlowId, &V)> {
        let index = self.find_index(key)?;
        let slot = self.slots.get(index as usize)?;
        let id = FlowId {
            index,
            generation: slot.generation,
        };
        slot.value.as_ref().map(|v| (id, v))
    }

    /// Return `key`'s hash in this table, for a lookup in stages:
    /// [`FlowTable::prefetch_index`], then [`FlowTable::prefetch_slot`], then
    /// [`FlowTable::get_by_hashed_key`], each stage for a whole vector of
    /// keys before the next, so that their cache misses overlap.
    pub fn hash_key(&self, key: &FlowKey) -> u64 {
        self.hash(key)
    }

    /// Prefetch the index line where a lookup of `hash` starts.
    pub fn prefetch_index(&self, hash: u64) {
        let entries = self.index.entries();
        memhint::prefetch(entries.as_ptr().wrapping_add(self.index.home(hash)));
    }

    /// Prefetch the slot (key and value) that a lookup of `hash` compares
    /// first. Reads the index entries (prefetched by
    /// [`FlowTable::prefetch_index`]), not the slot.
    pub fn prefetch_slot(&self, hash: u64) {
        if let Some(index) = self.index.candidate(hash) {
            let slot = self.slots.as_ptr().wrapping_add(index as usize);
            memhint::prefetch_lines(slot, std::mem::size_of::<Slot<V>>());
        }
    }

    /// Return the flow with `key` as [`FlowTable::get_by_key`] does, given
    /// its hash from [`FlowTable::hash_key`] (another hash finds nothing).
    #[inline]
    pub fn get_by_hashed_key(&self, key: &FlowKey, hash: u64) -> Option<(FlowId, &V)> {
        let (_, index) = self.find_hashed(key, hash)?;
        let slot = self.slots.get(index as usize)?;
        let id = FlowId {
            index,
            generation: slot.generation,
        };
        slot.value.as_ref().map(|v| (id, v))
    }

    /// Return the flow with `key`: its handle and its value, mutable. This is
    /// `tcp-input`'s per-segment call.
    #[inline]
    pub fn get_mut_by_key(&mut self, key: &FlowKey) -> Option<(FlowId, &mut V)> {
        let index = self.find_index(key)?;
        let slot = self.slots.get_mut(index as usize)?;
        let id = FlowId {
            index,
            generation: slot.generation,
        };
        slot.value.as_mut().map(|v| (id, v))
    }

    fn slot(&self, id: FlowId) -> Option<&Slot<V>> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation && s.value.is_some())
    }

    /// Return the value of flow `id`, or `None` if the handle is stale.
    pub fn get(&self, id: FlowId) -> Option<&V> {
        self.slot(id).and_then(|s| s.value.as_ref())
    }

    /// Return the value of flow `id`, mutable, or `None` if the handle is
    /// stale.
    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut V> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.value.as_mut())
    }

    /// Return the values of two different flows, both mutable; `None` if
    /// either handle is stale or both name the same flow.
    pub fn get2_mut(&mut self, a: FlowId, b: FlowId) -> Option<(&mut V, &mut V)> {
        let (ia, ib) = (a.index as usize, b.index as usize);
        if ia == ib || ia >= self.slots.len() || ib >= self.slots.len() {
            return None;
        }
        let (lo, hi) = self.slots.split_at_mut(ia.max(ib));
        let (low, high) = (&mut lo[ia.min(ib)], &mut hi[0]);
        let (sa, sb) = if ia < ib { (low, high) } else { (high, low) };
        if sa.generation != a.generation || sb.generation != b.generation {
            return None;
        }
        Some((sa.value.as_mut()?, sb.value.as_mut()?))
    }

    /// Return the key of flow `id`, or `None` if the handle is stale.
    pub fn key(&self, id: FlowId) -> Option<FlowKey> {
        self.slot(id).map(|s| s.key)
    }

    /// Return true if `id` names a flow in the table.
    pub fn contains(&self, id: FlowId) -> bool {
        self.slot(id).is_some()
    }

    /// Remove flow `id` and return its key and value, or `None` if the
    /// handle is stale. The handle (and every copy of it) is stale after.
    pub fn remove(&mut self, id: FlowId) -> Option<(FlowKey, V)> {
        let key = self.key(id)?;
        let (pos, _) = self.index.find(self.hash(&key), |i| i == id.index)?;
        self.index.remove_at(pos);
        self.vacate(id.index).map(|v| (key, v))
    }

    /// Remove the flow with `key` and return its handle and value.
    pub fn remove_by_key(&mut self, key: &FlowKey) -> Option<(FlowId, V)> {
        let (pos, index) = self.find_key(key)?;
        self.index.remove_at(pos);
        let id = self.id_at(index);
        self.vacate(index).map(|v| (id, v))
    }

    /// Empty slot `index` (already out of the index), bump its generation
    /// and put it on the free list.
    fn vacate(&mut self, index: u32) -> Option<V> {
        let slot = self.slots.get_mut(index as usize)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    /// Iterate over the flows (handle, key, value) in slot order, for stats
    /// and shutdown. Cost is proportional to the most flows ever held at
    /// once, not to the current number.
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &FlowKey, &V)> + '_ {
        (0u32..).zip(&self.slots).filter_map(|(index, s)| {
            let id = FlowId {
                index,
                generation: s.generation,
            };
            s.value.as_ref().map(|v| (id, &s.key, v))
        })
    }

    /// Iterate over the flows with mutable values, as [`FlowTable::iter`].
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (FlowId, &FlowKey, &mut V)> + '_ {
        (0u32..).zip(&mut self.slots).filter_map(|(index, s)| {
            let id = FlowId {
                index,
                generation: s.generation,
            };
            s.value.as_mut().map(|v| (id, &s.key, v))
        })
    }
}

impl<V> fmt::Debug for FlowTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::rng::Rng;

    fn key(n: u32) -> FlowKey {
        FlowKey::new(
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            SocketAddrV4::new(Ipv4Addr::from(0x0a01_0000 + n), (n % 60_000) as u16 + 1024),
        )
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = FlowTable::new(4).unwrap();
        let a = t.insert(key(1), "a").unwrap();
        let b = t.insert(key(2), "b").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(&key(1)), Some(a));
        assert_eq!(t.get(a), Some(&"a"));
        assert_eq!(t.get_by_key(&key(2)), Some((b, &"b")));
        assert_eq!(t.key(b), Some(key(2)));
        *t.get_mut(a).unwrap() = "A";
        let (id, v) = t.get_mut_by_key(&key(1)).unwrap();
        assert_eq!((id, *v), (a, "A"));
        assert_eq!(t.lookup(&key(3)), None);

        assert_eq!(t.remove(a), Some((key(1), "A")));
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(&key(1)), None);
        assert_eq!(t.remove_by_key(&key(2)), Some((b, "b")));
        assert!(t.is_empty());
        assert_eq!(t.remove_by_key(&key(2)), None);
    }

    #[test]
    fn stale_handles_are_refused() {
        let mut t = FlowTable::new(1).unwrap();
        let old = t.insert(key(1), 1).unwrap();
        t.remove(old).unwrap();
        let new = t.insert(key(2), 2).unwrap();
        assert_eq!(new.index(), old.index(), "the slot is reused");
        assert_ne!(new, old);
        assert_eq!(t.get(old), None);
        assert_eq!(t.get_mut(old), None);
        assert_eq!(t.key(old), None);
        assert!(!t.contains(old));
        assert_eq!(t.remove(old), None);
        assert_eq!(t.get(new), Some(&2));
        assert_eq!(FlowId::from_bits(new.to_bits()), new);
    }

    #[test]
    fn duplicate_and_full_are_errors() {
        let mut t = FlowTable::new(2).unwrap();
        let a = t.insert(key(1), ()).unwrap();
        assert_eq!(
            t.insert(key(1), ()),
            Err(FlowTableError::Exists { key: key(1), id: a })
        );
        t.insert(key(2), ()).unwrap();
        assert!(t.is_full());
        let err = t.insert_with(key(3), |_| panic!("built a value for a full table"));
        assert_eq!(
            err,
            Err(FlowTableError::Full {
                capacity: 2,
                key: key(3)
            })
        );
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("flow table full (2 flows)"), "{msg}");
        assert!(msg.contains("10.0.0.1:80 <-> 10.1.0.3:1027"), "{msg}");
        t.remove(a).unwrap();
        t.insert(key(3), ()).unwrap();
    }

    #[test]
    fn insert_with_sees_its_own_handle() {
        let mut t = FlowTable::new(8).unwrap();
        let id = t.insert_with(key(7), |id| id).unwrap();
        assert_eq!(t.get(id), Some(&id));
        t.remove(id).unwrap();
        let id2 = t.insert_with(key(7), |id| id).unwrap();
        assert_eq!(t.get(id2), Some(&id2));
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let mut t = FlowTable::<u8>::new(0).unwrap();
        assert!(matches!(
            t.insert(key(1), 0),
            Err(FlowTableError::Full { capacity: 0, .. })
        ));
    }

    #[test]
    fn iteration_sees_live_flows_only() {
        let mut t = FlowTable::new(10).unwrap();
        let ids: Vec<_> = (0..10).map(|n| t.insert(key(n), n).unwrap()).collect();
        for id in ids.iter().step_by(2) {
            t.remove(*id).unwrap();
        }
        for (_, _, v) in t.iter_mut() {
            *v += 100;
        }
        let mut seen: Vec<_> = t.iter().map(|(id, k, v)| (id, *k, *v)).collect();
        seen.sort();
        let want: Vec<_> = (1..10)
            .step_by(2)
            .map(|n| (ids[n as usize], key(n), n + 100))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn keys_differing_in_one_field_are_distinct() {
        let base = key(5);
        let mut variants = vec![base];
        let mut k = base;
        k.local.set_port(81);
        variants.push(k);
        let mut k = base;
        k.remote.set_port(base.remote.port() + 1);
        variants.push(k);
        let mut k = base;
        k.local.set_ip(Ipv4Addr::new(10, 0, 0, 2));
        variants.push(k);
        let mut k = base;
        k.remote.set_ip(Ipv4Addr::new(10, 0, 0, 2));
        variants.push(k);
        // local and remote swapped: another connection.
        variants.push(FlowKey::new(base.remote, base.local));
        let mut t = FlowTable::new(16).unwrap();
        let ids: Vec<_> = variants.iter().map(|k| t.insert(*k, *k).unwrap()).collect();
        for (id, k) in ids.iter().zip(&variants) {
            assert_eq!(t.get_by_key(k), Some((*id, k)));
        }
        assert_eq!(
            FlowKey::from_received(base.remote, base.local),
            base,
            "a received segment's source is the remote end"
        );
    }

    /// The index alone, with hashes chosen to collide: long clusters that
    /// wrap around the end of the array, removed in random order, so every
    /// case of the backward shift runs.
    #[test]
    fn index_backward_shift_keeps_every_entry_reachable() {
        let mut rng = Rng(0x1de);
        for round in 0..200 {
            let mut index = Index::new(12); // 32 entries
            let mask = index.mask as u64;
            // Hashes with homes in a few positions near the end, and tags
            // that differ so each entry is distinct.
            let mut live: Vec<(u64, u32)> = Vec::new();
            for slot in 0..12u32 {
                let home = (mask - 3 + rng.below(6)) & mask;
                let hash = (u64::from(slot) << 16) | home;
                index.insert(hash, slot);
                live.push((hash, slot));
            }
            while !live.is_empty() {
                for &(hash, slot) in &live {
                    assert!(
                        index.find(hash, |s| s == slot).is_some(),
                        "round {round}: slot {slot} lost"
                    );
                }
                let victim = live.swap_remove(rng.below(live.len() as u64) as usize);
                let (pos, _) = index.find(victim.0, |s| s == victim.1).unwrap();
                index.remove_at(pos);
                assert!(index.find(victim.0, |s| s == victim.1).is_none());
            }
            assert!(index.entries().iter().all(|&e| e == 0));
        }
    }

    #[test]
    fn staged_lookup_finds_what_lookup_finds() {
        let mut t = FlowTable::new(64).unwrap();
        let ids: Vec<_> = (0..40).map(|n| t.insert(key(n), n).unwrap()).collect();
        t.remove(ids[3]).unwrap();
        for n in 0..50 {
            let hash = t.hash_key(&key(n));
            t.prefetch_index(hash);
            t.prefetch_slot(hash);
            let got = t.get_by_hashed_key(&key(n), hash).map(|(id, v)| (id, *v));
            assert_eq!(got, t.get_by_key(&key(n)).map(|(id, v)| (id, *v)), "{n}");
            if t.lookup(&key(n)).is_some() {
                let other = t.hash_key(&key(n + 1000));
                assert_eq!(t.get_by_hashed_key(&key(n), other), None, "wrong hash");
            }
        }
    }

    #[test]
    fn a_large_index_starts_on_a_huge_page() {
        let index = Index::new(100_000);
        let entries = index.entries();
        assert_eq!(index.mask + 1, 1 << 18);
        assert!(entries.len() > index.mask);
        assert_eq!(entries.as_ptr() as usize % memhint::HUGE_PAGE, 0);
        assert!(entries.iter().all(|&e| e == 0));
        let small = Index::new(1000);
        assert_eq!(small.entries().len(), 2048);
        assert_eq!(small.base, 0, "no padding below 2 MiB");
    }

    #[test]
    fn capacity_limit() {
        assert!(FlowTable::<()>::new(FlowTable::<()>::MAX_CAPACITY + 1).is_err());
    }

    /// Random churn against a `HashMap` model, through a few times the
    /// capacity so slots are reused many times, checking every stale handle.
    #[test]
    fn churn_matches_a_hashmap() {
        const CAP: u32 = 512;
        let mut rng = Rng(0x5eed_f10e);
        let mut t = FlowTable::new(CAP).unwrap();
        let mut model: HashMap<FlowKey, (FlowId, u64)> = HashMap::new();
        let mut stale: Vec<FlowId> = Vec::new();
        let slab_capacity = t.slots.capacity();
        for step in 0..200_000u64 {
            let k = key(rng.below(2_000) as u32);
            match rng.below(10) {
                0..=4 => match t.insert(k, step) {
                    Ok(id) => {
                        assert!(model.insert(k, (id, step)).is_none());
                    }
                    Err(FlowTableError::Exists { id, .. }) => assert_eq!(model[&k].0, id),
                    Err(FlowTableError::Full { .. }) => assert_eq!(model.len(), CAP as usize),
                },
                5..=7 => {
                    let got = t.remove_by_key(&k);
                    let want = model.remove(&k);
                    assert_eq!(got, want);
                    if let Some((id, _)) = got {
                        stale.push(id);
                    }
                }
                8 => {
                    if let Some((id, v)) = model.get(&k).copied() {
                        assert_eq!(t.remove(id), Some((k, v)));
                        model.remove(&k);
                        stale.push(id);
                    }
                }
                _ => {
                    if !stale.is_empty() {
                        let id = stale[rng.below(stale.len() as u64) as usize];
                        assert_eq!(t.get(id), None, "stale {id} at step {step}");
                    }
                }
            }
            assert_eq!(t.len() as usize, model.len());
            assert_eq!(
                t.get_by_key(&k).map(|(id, v)| (id, *v)),
                model.get(&k).copied()
            );
        }
        assert_eq!(t.iter().count(), model.len());
        for (k, (id, v)) in &model {
            assert_eq!(t.get(*id), Some(v));
            assert_eq!(t.key(*id), Some(*k));
        }
        assert_eq!(t.slots.capacity(), slab_capacity, "no slab growth");
    }
}
