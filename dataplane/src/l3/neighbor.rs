//! The neighbour (ARP) table of one worker, with packets held while their
//! next hop is being resolved.
//!
//! Per worker, like the rest of the hot-path state: no lock is taken per
//! packet. With several workers, the ARP reply to one worker's request may
//! arrive on another worker's queue (RSS or fanout hashing decides), so a
//! worker that learns a neighbour publishes it to the others through
//! [`NeighbourSync`]; each drains its inbox on its timer tick.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rustc_hash::FxHashMap;

use crate::graph::Packet;

/// How long a learned entry stays valid without being refreshed.
pub const DEFAULT_REACHABLE_MS: u64 = 300_000;
/// How long packets wait for an ARP reply before they are dropped.
pub const RESOLVE_TIMEOUT_MS: u64 = 3_000;
/// Minimum gap between ARP requests for the same next hop.
pub const REQUEST_INTERVAL_MS: u64 = 1_000;
/// Packets held per unresolved next hop (Linux's unres_qlen is 101; VPP holds
/// none: a small queue keeps the first packets of a flow without letting one
/// dead neighbour eat the mempool). When it is full the oldest goes, as in
/// Linux: retries of old packets (a health check's SYNs sent while the
/// neighbour was away) must not crowd out what arrives just before it answers.
pub const HOLD_PER_NEIGHBOUR: usize = 4;
/// Unresolved next hops tracked at once.
pub const MAX_PENDING: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Neighbour {
    mac: [u8; 6],
    updated_ms: u64,
}

struct Pending<B> {
    packets: Vec<Packet<B>>,
    first_ms: u64,
    last_request_ms: u64,
}

/// Outcome of [`NeighbourTable::hold`].
pub enum Hold<B> {
    /// Held; send an ARP request now if `request` is true.
    Queued {
        /// An ARP request is due for this next hop.
        request: bool,
    },
    /// A packet to drop: the oldest held one when the next hop's queue is
    /// full (the new one took its place), or the new one when the pending
    /// table is full. The caller drops it, and still sends an ARP request if
    /// `request` is true (a lost reply must not blackhole the next hop until
    /// the queue expires).
    Overflow(Packet<B>, bool),
}

/// Learned neighbours and packets awaiting resolution, keyed by
/// (port index, IPv4 address).
pub struct NeighbourTable<B> {
    entries: FxHashMap<(u16, [u8; 4]), Neighbour>,
    /// Bumped whenever an entry is added, changed or removed, so callers
    /// caching a lookup know when to look again.
    generation: u64,
    pending: FxHashMap<(u16, [u8; 4]), Pending<B>>,
    reachable_ms: u64,
}

impl<B> Default for NeighbourTable<B> {
    fn default() -> Self {
        Self::new(DEFAULT_REACHABLE_MS)
    }
}

impl<B> NeighbourTable<B> {
    /// Create an empty table whose entries live `reachable_ms` unrefreshed.
    pub fn new(reachable_ms: u64) -> Self {
        Self {
            entries: FxHashMap::default(),
            generation: 0,
            pending: FxHashMap::default(),
            reachable_ms,
        }
    }

    /// Return the MAC of `ip` on `port` if known and not aged out.
    #[inline]
    pub fn lookup(&self, port: u16, ip: [u8; 4], now_ms: u64) -> Option<[u8; 6]> {
        self.entries
            .get(&(port, ip))
            .filter(|n| now_ms.saturating_sub(n.updated_ms) < self.reachable_ms)
            .map(|n| n.mac)
    }

    /// Return the table's generation: it changes whenever an entry does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Return whether an entry (even aged) exists, so gratuitous ARP only
    /// refreshes neighbours we already talk to.
    pub fn contains(&self, port: u16, ip: [u8; 4]) -> bool {
        self.entries.contains_key(&(port, ip))
    }

    /// Learn or refresh `ip` → `mac` on `port`; return the packets that were
    /// waiting for it (empty when none).
    pub fn learn(&mut self, port: u16, ip: [u8; 4], mac: [u8; 6], now_ms: u64) -> Vec<Packet<B>> {
        self.generation += 1;
        self.entries.insert(
            (port, ip),
            Neighbour {
                mac,
                updated_ms: now_ms,
            },
        );
        self.pending
            .remove(&(port, ip))
            .map(|p| p.packets)
            .unwrap_or_default()
    }

    /// Hold `pkt` until `ip` on `port` resolves, dropping the oldest held
    /// packet if the queue is full.
    pub fn hold(&mut self, port: u16, ip: [u8; 4], pkt: Packet<B>, now_ms: u64) -> Hold<B> {
        if !self.pending.contains_key(&(port, ip)) && self.pending.len() >= MAX_PENDING {
            return Hold::Overflow(pkt, false);
        }
        let p = self.pending.entry((port, ip)).or_insert_with(|| Pending {
            packets: Vec::with_capacity(HOLD_PER_NEIGHBOUR),
            first_ms: now_ms,
            last_request_ms: 0,
        });
        let request = p.last_request_ms == 0
            || now_ms.saturating_sub(p.last_request_ms) >= REQUEST_INTERVAL_MS;
        if request {
            p.last_request_ms = now_ms.max(1);
        }
        if p.packets.len() >= HOLD_PER_NEIGHBOUR {
            let oldest = p.packets.remove(0);
            p.packets.push(pkt);
            return Hold::Overflow(oldest, request);
        }
        p.packets.push(pkt);
        Hold::Queued { request }
    }

    /// Drop held packets whose resolution timed out and forget aged entries;
    /// return how many packets were dropped.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        self.pending.retain(|_, p| {
            let keep = now_ms.saturating_sub(p.first_ms) < RESOLVE_TIMEOUT_MS;
            if !keep {
                dropped += p.packets.len();
            }
            keep
        });
        let reachable = self.reachable_ms;
        let before = self.entries.len();
        self.entries
            .retain(|_, n| now_ms.saturating_sub(n.updated_ms) < reachable);
        if self.entries.len() != before {
            self.generation += 1;
        }
        dropped
    }

    /// Return the learned entries as (port, ip, mac, age in ms), sorted.
    pub fn entries(&self, now_ms: u64) -> Vec<(u16, [u8; 4], [u8; 6], u64)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(&(port, ip), n)| (port, ip, n.mac, now_ms.saturating_sub(n.updated_ms)))
            .collect();
        v.sort_unstable();
        v
    }

    /// Return how many packets are held.
    pub fn held(&self) -> usize {
        self.pending.values().map(|p| p.packets.len()).sum()
    }
}

/// A resolution one worker learned, for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    /// Port index.
    pub port: u16,
    /// Neighbour address.
    pub ip: [u8; 4],
    /// Its MAC.
    pub mac: [u8; 6],
}

/// Pending resolutions per worker inbox before publishing drops them.
const SYNC_QUEUE: usize = 1024;

/// One worker's end of the all-to-all neighbour exchange.
pub struct NeighbourSync {
    peers: Vec<Sender<Learned>>,
    inbox: Receiver<Learned>,
}

impl NeighbourSync {
    /// Connect `workers` workers with one another; element i belongs to
    /// worker i.
    pub fn mesh(workers: usize) -> Vec<NeighbourSync> {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| crossbeam_channel::bounded(SYNC_QUEUE))
            .unzip();
        receivers
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| NeighbourSync {
                peers: senders
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, s)| s.clone())
                    .collect(),
                inbox,
            })
            .collect()
    }

    /// Tell every other worker; return how many inboxes were full (the
    /// peer will ARP for itself).
    pub fn publish(&self, learned: Learned) -> usize {
        self.peers
            .iter()
            .filter(|p| matches!(p.try_send(learned), Err(TrySendError::Full(_))))
            .count()
    }

    /// Take the next resolution other workers published, if any.
    pub fn next(&self) -> Option<Learned> {
        self.inbox.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffer;
    use crate::testing::HeapBuffer;

    fn pkt() -> Packet<HeapBuffer> {
        Packet::new(HeapBuffer::from(&[0u8; 60][..]), 0)
    }

    /// A packet whose first byte is `tag`, to tell held packets apart.
    fn tagged(tag: u8) -> Packet<HeapBuffer> {
        let mut data = [0u8; 60];
        data[0] = tag;
        Packet::new(HeapBuffer::from(&data[..]), 0)
    }

    #[test]
    fn hold_then_learn_releases_in_order() {
        let mut t = NeighbourTable::new(1000);
        let ip = [10, 0, 0, 1];
        assert!(matches!(
            t.hold(0, ip, pkt(), 5),
            Hold::Queued { request: true }
        ));
        assert!(matches!(
            t.hold(0, ip, pkt(), 6),
            Hold::Queued { request: false }
        ));
        assert_eq!(t.held(), 2);
        assert_eq!(t.lookup(0, ip, 7), None);
        let released = t.learn(0, ip, [2; 6], 7);
        assert_eq!(released.len(), 2);
        assert_eq!(t.lookup(0, ip, 8), Some([2; 6]));
        assert_eq!(t.lookup(1, ip, 8), None, "per port");
        assert_eq!(t.lookup(0, ip, 1007), None, "aged out");
    }

    #[test]
    fn queue_is_bounded_and_requests_are_rate_limited() {
        let mut t = NeighbourTable::new(1000);
        let ip = [10, 0, 0, 9];
        for i in 0..HOLD_PER_NEIGHBOUR {
            let r = t.hold(0, ip, tagged(i as u8), 10 + i as u64);
            assert!(matches!(r, Hold::Queued { request } if request == (i == 0)));
        }
        // Full: the oldest makes way for the newest.
        let n = HOLD_PER_NEIGHBOUR as u8;
        match t.hold(0, ip, tagged(n), 20) {
            Hold::Overflow(p, false) => assert_eq!(p.buf.data()[0], 0, "oldest dropped"),
            _ => panic!("want the oldest back, no request"),
        }
        assert_eq!(t.held(), HOLD_PER_NEIGHBOUR);
        // A full queue still asks again once the interval has passed.
        match t.hold(0, ip, tagged(n + 1), 10 + REQUEST_INTERVAL_MS) {
            Hold::Overflow(p, true) => assert_eq!(p.buf.data()[0], 1),
            _ => panic!("want the next oldest back, and a request"),
        }
        let kept: Vec<u8> = t
            .learn(0, ip, [2; 6], 11 + REQUEST_INTERVAL_MS)
            .iter()
            .map(|p| p.buf.data()[0])
            .collect();
        assert_eq!(
            kept,
            (2..n + 2).collect::<Vec<_>>(),
            "newest kept, in order"
        );
        // Another next hop that never answers: timed out, its packets are
        // dropped, and a later packet asks again.
        let dead = [10, 0, 0, 10];
        for i in 0..HOLD_PER_NEIGHBOUR {
            t.hold(0, dead, pkt(), 10 + i as u64);
        }
        assert_eq!(t.expire(10 + RESOLVE_TIMEOUT_MS), HOLD_PER_NEIGHBOUR);
        assert_eq!(t.held(), 0);
        assert!(matches!(
            t.hold(0, dead, pkt(), 20 + RESOLVE_TIMEOUT_MS),
            Hold::Queued { request: true }
        ));
    }

    #[test]
    fn mesh_publishes_to_every_other_worker() {
        let mesh = NeighbourSync::mesh(3);
        let l = Learned {
            port: 1,
            ip: [10, 0, 0, 5],
            mac: [2; 6],
        };
        assert_eq!(mesh[0].publish(l), 0);
        assert_eq!(mesh[0].next(), None, "not to itself");
        assert_eq!(mesh[1].next(), Some(l));
        assert_eq!(mesh[2].next(), Some(l));
        assert_eq!(mesh[2].next(), None);
        for _ in 0..SYNC_QUEUE {
            mesh[1].publish(l);
        }
        assert_eq!(mesh[1].publish(l), 2, "both inboxes full");
    }

    #[test]
    fn pending_table_is_bounded() {
        let mut t = NeighbourTable::new(1000);
        for i in 0..MAX_PENDING {
            let ip = [10, 1, (i >> 8) as u8, i as u8];
            assert!(matches!(t.hold(0, ip, pkt(), 1), Hold::Queued { .. }));
        }
        assert!(matches!(
            t.hold(0, [10, 2, 0, 0], pkt(), 1),
            Hold::Overflow(_, false)
        ));
    }
}
