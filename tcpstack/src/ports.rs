//! Ephemeral ports for active opens (connections zerohop makes to upstreams),
//! allocated per worker with no coordination between workers, and, where the
//! NIC spreads traffic by RSS, chosen so the replies come back to the worker
//! that opened the connection.
//!
//! # The problem
//!
//! Worker `i` owns rx queue `i` of every port. A downstream connection lands
//! on some queue by the NIC's RSS hash, and that worker proxies it. When the
//! worker opens a connection upstream, it picks the local port, and with it
//! the 4-tuple of every reply: the NIC hashes the reply's (source address,
//! destination address, source port, destination port), that is (upstream,
//! us, upstream port, *our local port*), with Toeplitz and a 40-byte key,
//! looks the hash's low bits up in its redirection table (RETA) and queues
//! the reply there. Pick the port blindly and the SYN-ACK lands on another
//! worker, which knows nothing of the connection (F-Stack's "SYN and SYN-ACK
//! on different queues" problem). Toeplitz is public and the key and RETA
//! are ours to set, so the worker can compute the reply's queue for each
//! candidate port and keep only the ports that come back to it.
//!
//! # How ports are split between workers
//!
//! - **RSS, [`RssMode::Require`]**: worker `i` takes only ports whose reply
//!   hashes to queue `i`. A port's reply goes to exactly one queue, so two
//!   workers never pick the same 4-tuple, and each worker draws from the
//!   whole range (about range/queues ports per destination). Needs every
//!   worker to use the same key and RETA as the NIC, and worker `i` to be
//!   the only reader of queue `i`.
//! - **No RSS** (single-queue vdevs, `net_tap`, NICs without Toeplitz) and
//!   **[`RssMode::Prefer`]**: the range is cut into one contiguous block per
//!   worker ([`worker_block`]). Blocks are disjoint, so again no collision.
//!   A reply that lands on the wrong worker is handed to the owner, which
//!   any worker computes from the destination port alone ([`port_owner`]).
//!   `Prefer` first takes ports of its block whose replies hash to its
//!   queue, then any port of its block (the reply will need the handoff).
//!
//! # Allocation
//!
//! Per destination (local address, remote address and port) the allocator
//! keeps a count and a cursor that starts at a random offset (RFC 6056's
//! advice against predictable ports; seeded, so tests repeat) and walks the
//! worker's candidate ports, skipping those whose reply hashes elsewhere
//! (three table look-ups) and those whose 4-tuple is in use (one hash-set
//! probe). Released ports are found again when the cursor comes round.
//! When a walk finds nothing the destination is marked exhausted and later
//! requests fail in O(1) until a port to it is released.
//!
//! The Toeplitz hash is linear over XOR, so the allocator hashes the fixed
//! part of the tuple once and each candidate port adds two byte-table
//! look-ups: checking a port costs a few ns, not a 96-bit loop.
//!
//! # Performance
//!
//! `benches/ports.rs`, release, on the 2-core development VM with other
//! builds running: allocate + release toward one upstream, worker 1 of 4
//! over Linux's range, 57 ns without RSS and 65 ns with `Require` (4
//! queues, 128-entry RETA), the same with 1, 1 000 or 6 000 of the worker's
//! ≈ 7 000 candidate ports held. Only a destination close to exhaustion
//! walks far: the walk is bounded by the candidate count, and an exhausted
//! destination fails in O(1) until a release.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;

use foldhash::fast::SeedableRandomState;
use std::collections::{HashMap, HashSet};

use crate::flow::{keyed_hasher, FlowKey};
use crate::rng::Rng;

/// The ephemeral port range Linux uses by default
/// (`net.ipv4.ip_local_port_range`).
pub const DEFAULT_PORT_RANGE: RangeInclusive<u16> = 32768..=60999;

/// The 40-byte RSS key of Microsoft's RSS verification suite, which many
/// NIC drivers also use as their default key.
pub const MICROSOFT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Bytes of Toeplitz input for IPv4 with TCP ports: source address,
/// destination address, source port, destination port, in network order.
const IPV4_TCP_INPUT: usize = 12;

/// Return the Toeplitz hash of `input` under `key`, as an RSS NIC computes
/// it: for each input bit set, from the most significant bit of `input[0]`
/// on, XOR in the 32 key bits starting at that bit's position.
///
/// `input` is up to 36 bytes (the IPv6 4-tuple); key bits past the 320th
/// read as zero.
pub fn toeplitz_hash(key: &[u8; 40], input: &[u8]) -> u32 {
    let key_bit = |i: usize| -> u32 {
        key.get(i / 8)
            .map_or(0, |byte| u32::from(byte >> (7 - i % 8)) & 1)
    };
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    let mut hash = 0;
    for (i, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | key_bit(32 + i * 8 + bit);
        }
    }
    hash
}

/// A NIC's RSS steering for IPv4/TCP: the Toeplitz key and the redirection
/// table. Hashing uses precomputed per-byte tables (Toeplitz is linear: the
/// hash of a tuple is the XOR of each byte's contribution), 12 look-ups
/// instead of 96 conditional XORs.
#[derive(Clone, Debug)]
pub struct RssSteering {
    key: [u8; 40],
    reta: Vec<u16>,
    /// `bytes[b][v]`: the hash of an input that is `v` at byte `b` and zero
    /// elsewhere.
    bytes: Box<[[u32; 256]; IPV4_TCP_INPUT]>,
}

impl RssSteering {
    /// Return the steering of a NIC that uses `key` and the redirection
    /// table `reta`: a packet with hash `h` goes to queue
    /// `reta[h % reta.len()]` (NICs index the table with the hash's low
    /// bits; their table sizes are powers of two).
    ///
    /// # Errors
    ///
    /// [`PortsConfigError::EmptyReta`] if `reta` is empty.
    pub fn new(key: [u8; 40], reta: Vec<u16>) -> Result<Self, PortsConfigError> {
        if reta.is_empty() {
            return Err(PortsConfigError::EmptyReta);
        }
        let mut bytes = Box::new([[0u32; 256]; IPV4_TCP_INPUT]);
        let mut input = [0u8; IPV4_TCP_INPUT];
        for (position, table) in bytes.iter_mut().enumerate() {
            // Fill by doubling, lowest bit first: the values with bit `b`
            // as their highest set bit are the values below `b` XOR `b`'s
            // contribution.
            for bit in 0..8 {
                let value = 1u8 << bit;
                input[position] = value;
                let one_bit = toeplitz_hash(&key, &input);
                let low = usize::from(value);
                for v in 0..low {
                    table[v | low] = table[v] ^ one_bit;
                }
            }
            input[position] = 0;
        }
        Ok(Self { key, reta, bytes })
    }

    /// Return the steering of a NIC with `key` and a `reta_size`-entry table
    /// filled round robin over `queues` queues (entry `j` → queue
    /// `j % queues`), which is what DPDK drivers program by default.
    ///
    /// # Errors
    ///
    /// [`PortsConfigError::EmptyReta`] if `queues` or `reta_size` is zero.
    pub fn round_robin(
        key: [u8; 40],
        queues: u16,
        reta_size: usize,
    ) -> Result<Self, PortsConfigError> {
        if queues == 0 {
            return Err(PortsConfigError::EmptyReta);
        }
        let reta = (0..reta_size)
            .map(|j| (j % usize::from(queues)) as u16)
            .collect();
        Self::new(key, reta)
    }

    /// Return the Toeplitz key.
    pub const fn key(&self) -> &[u8; 40] {
        &self.key
    }

    /// Return the redirection table.
    pub fn reta(&self) -> &[u16] {
        &self.reta
    }

    /// Return the RSS hash of an IPv4/TCP packet from `source` to
    /// `destination`.
    pub fn hash_ipv4_tcp(&self, source: SocketAddrV4, destination: SocketAddrV4) -> u32 {
        let mut input = [0u8; IPV4_TCP_INPUT];
        input[0..4].copy_from_slice(&source.ip().octets());
        input[4..8].copy_from_slice(&destination.ip().octets());
        input[8..10].copy_from_slice(&source.port().to_be_bytes());
        input[10..12].copy_from_slice(&destination.port().to_be_bytes());
        self.bytes
            .iter()
            .zip(input)
            .fold(0, |hash, (table, byte)| hash ^ table[usize::from(byte)])
    }

    /// Return the hash's contribution of the destination port (input bytes
    /// 10 and 11): XOR it with the hash of the tuple with port 0.
    fn destination_port_hash(&self, port: u16) -> u32 {
        let [high, low] = port.to_be_bytes();
        self.bytes[10][usize::from(high)] ^ self.bytes[11][usize::from(low)]
    }

    /// Return the queue a packet with RSS hash `hash` goes to.
    pub fn queue_of_hash(&self, hash: u32) -> u16 {
        // `reta` is never empty (checked in `new`).
        self.reta
            .get(hash as usize % self.reta.len().max(1))
            .copied()
            .unwrap_or(0)
    }

    /// Return the queue an IPv4/TCP packet from `source` to `destination`
    /// goes to.
    pub fn queue_for(&self, source: SocketAddrV4, destination: SocketAddrV4) -> u16 {
        self.queue_of_hash(self.hash_ipv4_tcp(source, destination))
    }
}

/// How strictly the allocator keeps replies on its own queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RssMode {
    /// Only ports whose replies hash to this worker's queue; the whole range
    /// is shared between workers by the hash itself.
    Require,
    /// Ports of this worker's block whose replies hash to its queue first,
    /// then any port of its block.
    Prefer,
}

/// The RSS setting of one worker's allocator.
#[derive(Clone, Debug)]
pub struct RssFilter {
    /// The NIC's key and redirection table (the same on every worker).
    pub steering: RssSteering,
    /// The rx queue this worker reads.
    pub queue: u16,
    /// Whether a port off this queue is acceptable.
    pub mode: RssMode,
}

/// The configuration of one worker's [`EphemeralPorts`].
#[derive(Clone, Debug)]
pub struct EphemeralPortsConfig {
    /// Local ports to draw from, shared by all workers.
    pub range: RangeInclusive<u16>,
    /// How many workers share the range.
    pub workers: u16,
    /// This worker's index, below `workers`.
    pub worker: u16,
    /// Steer replies to this worker's queue, where the NIC does RSS.
    pub rss: Option<RssFilter>,
    /// Seed for the per-destination starting offsets.
    pub seed: u64,
}

impl Default for EphemeralPortsConfig {
    /// Linux's range, one worker, no RSS.
    fn default() -> Self {
        Self {
            range: DEFAULT_PORT_RANGE,
            workers: 1,
            worker: 0,
            rss: None,
            seed: 0,
        }
    }
}

/// A configuration [`EphemeralPorts::new`] or [`RssSteering`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortsConfigError {
    /// The range's start is above its end.
    #[error("ephemeral port range {start}-{end} is empty; give a range low-high with low <= high")]
    EmptyRange {
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
    /// The range includes port 0.
    #[error("ephemeral port range {start}-{end} includes port 0, which is not a port; start at 1 or above")]
    PortZero {
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
    /// No worker.
    #[error("ephemeral ports need at least one worker")]
    NoWorkers,
    /// The worker index is not below the worker count.
    #[error("worker {worker} is out of range: there are {workers} workers (0-{})", workers - 1)]
    WorkerOutOfRange {
        /// The index given.
        worker: u16,
        /// The worker count.
        workers: u16,
    },
    /// Fewer ports than workers: some worker would get none.
    #[error(
        "ephemeral port range {start}-{end} has {ports} ports for {workers} workers; widen it"
    )]
    TooManyWorkers {
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
        /// Ports in the range.
        ports: u32,
        /// The worker count.
        workers: u16,
    },
    /// The redirection table is empty (or has zero queues).
    #[error("the RSS redirection table is empty; give at least one queue and one entry")]
    EmptyReta,
    /// The worker's queue does not appear in the redirection table, so no
    /// reply could ever reach it.
    #[error("queue {queue} is not in the RSS redirection table, so no reply would reach worker {worker}; check the queue count")]
    QueueNotInReta {
        /// The worker's queue.
        queue: u16,
        /// The worker.
        worker: u16,
    },
}

/// Why a port could not be allocated or reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortsError {
    /// Every candidate port to this destination is in use.
    #[error(
        "no free ephemeral port from {local} to {remote} on worker {worker} ({in_use} \
         of its connections go there); widen the port range, add local addresses or \
         reuse connections"
    )]
    Exhausted {
        /// The local address.
        local: Ipv4Addr,
        /// The destination.
        remote: SocketAddrV4,
        /// The worker.
        worker: u16,
        /// Connections from `local` to `remote` this worker holds.
        in_use: u32,
    },
    /// The 4-tuple is in use already.
    #[error("{0} is in use already")]
    InUse(FlowKey),
}

/// A port [`EphemeralPorts::allocate`] handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EphemeralPort {
    /// The local port.
    pub port: u16,
    /// True if the RSS filter found that replies hash to this worker's
    /// queue; false without a filter, or for a `Prefer` fallback port.
    pub steered: bool,
}

/// Return the block of `range` that worker `worker` of `workers` draws from
/// when ports are split by block (no RSS, or [`RssMode::Prefer`]): blocks are
/// contiguous, disjoint, cover the range, and differ in size by at most one.
///
/// # Errors
///
/// As [`EphemeralPorts::new`] for the range and worker fields.
pub fn worker_block(
    range: &RangeInclusive<u16>,
    workers: u16,
    worker: u16,
) -> Result<RangeInclusive<u16>, PortsConfigError> {
    let (start, ports) = check_range(range, workers)?;
    if worker >= workers {
        return Err(PortsConfigError::WorkerOutOfRange { worker, workers });
    }
    let (lo, len) = block(start, ports, workers, worker);
    Ok(lo..=(lo + (len - 1) as u16))
}

/// Return the worker whose block (see [`worker_block`]) holds `port`, or
/// `None` if `port` is outside `range` (or the range is invalid). A worker
/// that receives a reply for a connection it does not know hands the frame
/// to this worker.
pub fn port_owner(range: &RangeInclusive<u16>, workers: u16, port: u16) -> Option<u16> {
    let (start, ports) = check_range(range, workers).ok()?;
    let j = u64::from(port.checked_sub(start)?);
    if j >= u64::from(ports) {
        return None;
    }
    // The block of worker i is [floor(i*ports/N), floor((i+1)*ports/N)).
    let owner = ((j + 1) * u64::from(workers) - 1) / u64::from(ports);
    u16::try_from(owner).ok()
}

/// Validate a range for `workers` and return its first port and size.
fn check_range(range: &RangeInclusive<u16>, workers: u16) -> Result<(u16, u32), PortsConfigError> {
    let (start, end) = (*range.start(), *range.end());
    if start > end {
        return Err(PortsConfigError::EmptyRange { start, end });
    }
    if start == 0 {
        return Err(PortsConfigError::PortZero { start, end });
    }
    if workers == 0 {
        return Err(PortsConfigError::NoWorkers);
    }
    let ports = u32::from(end - start) + 1;
    if ports < u32::from(workers) {
        return Err(PortsConfigError::TooManyWorkers {
            start,
            end,
            ports,
            workers,
        });
    }
    Ok((start, ports))
}

/// Return worker `worker`'s block: first port and size (≥ 1 when
/// `ports >= workers`).
fn block(start: u16, ports: u32, workers: u16, worker: u16) -> (u16, u32) {
    let edge = |i: u16| (u64::from(ports) * u64::from(i) / u64::from(workers)) as u32;
    let (from, to) = (edge(worker), edge(worker + 1));
    (start + from as u16, to - from)
}

/// A destination: local address, remote address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Destination {
    local: Ipv4Addr,
    remote: SocketAddrV4,
}

/// Allocation state for one destination with ports in use.
#[derive(Debug)]
struct DestinationState {
    /// 4-tuples to this destination in `in_use`.
    in_use: u32,
    /// Where the next walk starts, as an offset into the candidate space.
    cursor: u32,
    /// A full walk found no free port; cleared by a release.
    exhausted: bool,
    /// `Prefer`: a walk found no free steered port; cleared by a release.
    steered_exhausted: bool,
}

/// One worker's allocator of local ports for active opens. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct EphemeralPorts {
    worker: u16,
    /// The ports this worker walks: the whole range under `Require`, its
    /// block otherwise.
    space_start: u16,
    space_len: u32,
    rss: Option<RssFilter>,
    in_use: HashSet<FlowKey, SeedableRandomState>,
    destinations: HashMap<Destination, DestinationState, SeedableRandomState>,
    rng: Rng,
}

impl EphemeralPorts {
    /// Return an allocator for one worker.
    ///
    /// # Errors
    ///
    /// A [`PortsConfigError`] naming the field to fix: an empty range or one
    /// with port 0, fewer ports than workers, a worker index out of range,
    /// or an RSS queue missing from the redirection table.
    pub fn new(config: EphemeralPortsConfig) -> Result<Self, PortsConfigError> {
        let EphemeralPortsConfig {
            range,
            workers,
            worker,
            rss,
            seed,
        } = config;
        let block = worker_block(&range, workers, worker)?;
        let (space_start, space_len) = match &rss {
            Some(filter) => {
                if !filter.steering.reta().contains(&filter.queue) {
                    return Err(PortsConfigError::QueueNotInReta {
                        queue: filter.queue,
                        worker,
                    });
                }
                match filter.mode {
                    RssMode::Require => check_range(&range, workers)?,
                    RssMode::Prefer => (*block.start(), u32::from(block.end() - block.start()) + 1),
                }
            }
            None => (*block.start(), u32::from(block.end() - block.start()) + 1),
        };
        Ok(Self {
            worker,
            space_start,
            space_len,
            rss,
            in_use: HashSet::with_hasher(keyed_hasher()),
            destinations: HashMap::with_hasher(keyed_hasher()),
            rng: Rng(seed ^ u64::from(worker).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        })
    }

    /// Return the ports this worker may hand out (before the RSS filter).
    pub fn candidate_ports(&self) -> RangeInclusive<u16> {
        self.space_start..=self.space_start + (self.space_len - 1) as u16
    }

    /// Return the number of 4-tuples in use (allocated or reserved).
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Return true if the 4-tuple is allocated or reserved here.
    pub fn contains(&self, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        self.in_use.contains(&FlowKey::new(local, remote))
    }

    /// Allocate a local port for a connection from `local` to `remote`.
    ///
    /// # Errors
    ///
    /// [`PortsError::Exhausted`] if every candidate port to `remote` from
    /// `local` is in use (under `Require`: every one whose replies reach
    /// this worker's queue).
    pub fn allocate(
        &mut self,
        local: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> Result<EphemeralPort, PortsError> {
        let destination = Destination { local, remote };
        let Self {
            worker,
            space_start,
            space_len,
            rss,
            in_use,
            destinations,
            rng,
        } = self;
        let state = destinations
            .entry(destination)
            .or_insert_with(|| DestinationState {
                in_use: 0,
                cursor: rng.below(u64::from(*space_len)) as u32,
                exhausted: false,
                steered_exhausted: false,
            });
        let exhausted = PortsError::Exhausted {
            local,
            remote,
            worker: *worker,
            in_use: state.in_use,
        };
        if state.exhausted {
            return Err(exhausted);
        }
        // The reply runs remote → local; hash it with local port 0 once.
        let steer = rss.as_ref().map(|f| {
            let base = f
                .steering
                .hash_ipv4_tcp(remote, SocketAddrV4::new(local, 0));
            (f, base)
        });
        let matches = |port: u16| {
            steer.is_some_and(|(f, base)| {
                f.steering
                    .queue_of_hash(base ^ f.steering.destination_port_hash(port))
                    == f.queue
            })
        };
        let free =
            |port: u16| !in_use.contains(&FlowKey::new(SocketAddrV4::new(local, port), remote));
        let walk = |cursor: u32, want: &dyn Fn(u16) -> bool| -> Option<u32> {
            let mut j = cursor;
            for _ in 0..*space_len {
                let port = *space_start + j as u16;
                if want(port) && free(port) {
                    return Some(j);
                }
                j += 1;
                if j == *space_len {
                    j = 0;
                }
            }
            None
        };
        let mut found = None;
        if steer.is_some() && !state.steered_exhausted {
            found = walk(state.cursor, &matches).map(|j| (j, true));
            if found.is_none() {
                state.steered_exhausted = true;
            }
        }
        let prefer = rss.as_ref().is_some_and(|f| f.mode == RssMode::Prefer);
        if found.is_none() && (steer.is_none() || prefer) {
            found = walk(state.cursor, &|_| true).map(|j| (j, matches(*space_start + j as u16)));
        }
        let Some((j, steered)) = found else {
            state.exhausted = true;
            if state.in_use == 0 {
                // Nothing to release would clear the mark: don't keep it.
                destinations.remove(&destination);
            }
            return Err(exhausted);
        };
        let port = *space_start + j as u16;
        in_use.insert(FlowKey::new(SocketAddrV4::new(local, port), remote));
        state.in_use += 1;
        state.cursor = if j + 1 == *space_len { 0 } else { j + 1 };
        Ok(EphemeralPort { port, steered })
    }

    /// Mark a 4-tuple in use that this allocator did not hand out (a
    /// connection accepted on a port inside the range, say), so it is never
    /// handed out while marked. Undo with [`EphemeralPorts::release`].
    ///
    /// # Errors
    ///
    /// [`PortsError::InUse`] if the 4-tuple is in use already.
    pub fn reserve(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> Result<(), PortsError> {
        let key = FlowKey::new(local, remote);
        if !self.in_use.insert(key) {
            return Err(PortsError::InUse(key));
        }
        let cursor = self.rng.below(u64::from(self.space_len)) as u32;
        self.destinations
            .entry(Destination {
                local: *local.ip(),
                remote,
            })
            .or_insert(DestinationState {
                in_use: 0,
                cursor,
                exhausted: false,
                steered_exhausted: false,
            })
            .in_use += 1;
        Ok(())
    }

    /// Free the port of a closed connection from `local` to `remote`. Return
    /// false if that 4-tuple was not allocated or reserved here.
    pub fn release(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        if !self.in_use.remove(&FlowKey::new(local, remote)) {
            return false;
        }
        let destination = Destination {
            local: *local.ip(),
            remote,
        };
        if let Some(state) = self.destinations.get_mut(&destination) {
            state.in_use = state.in_use.saturating_sub(1);
            state.exhausted = false;
            state.steered_exhausted = false;
            if state.in_use == 0 {
                self.destinations.remove(&destination);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet as StdHashSet;

    use super::*;

    fn v4(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    /// Microsoft's "Verifying the RSS Hash Calculation" IPv4 table (also in
    /// the Intel 82599 datasheet, 7.1.2.8.3): destination, source, then the
    /// hash over the addresses only and over addresses and TCP ports.
    type Vector = ([u8; 4], u16, [u8; 4], u16, u32, u32);
    const VECTORS: [Vector; 5] = [
        (
            [161, 142, 100, 80],
            1766,
            [66, 9, 149, 187],
            2794,
            0x323e_8fc2,
            0x51cc_c178,
        ),
        (
            [65, 69, 140, 83],
            4739,
            [199, 92, 111, 2],
            14230,
            0xd718_262a,
            0xc626_b0ea,
        ),
        (
            [12, 22, 207, 184],
            38024,
            [24, 19, 198, 95],
            12898,
            0xd2d0_a5de,
            0x5c2b_394a,
        ),
        (
            [209, 142, 163, 6],
            2217,
            [38, 27, 205, 30],
            48228,
            0x8298_9176,
            0xafc7_327f,
        ),
        (
            [202, 188, 127, 2],
            1303,
            [153, 39, 163, 191],
            44251,
            0x5d18_09c5,
            0x10e8_28a2,
        ),
    ];

    #[test]
    fn toeplitz_matches_the_microsoft_vectors() {
        let steering = RssSteering::round_robin(MICROSOFT_RSS_KEY, 1, 128).unwrap();
        for (dst, dport, src, sport, ip_only, with_ports) in VECTORS {
            let mut input = Vec::new();
            input.extend_from_slice(&src);
            input.extend_from_slice(&dst);
            assert_eq!(
                toeplitz_hash(&MICROSOFT_RSS_KEY, &input),
                ip_only,
                "{src:?}->{dst:?}"
            );
            input.extend_from_slice(&sport.to_be_bytes());
            input.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(toeplitz_hash(&MICROSOFT_RSS_KEY, &input), with_ports);
            assert_eq!(
                steering.hash_ipv4_tcp(v4(src, sport), v4(dst, dport)),
                with_ports,
                "table hash {src:?}:{sport} -> {dst:?}:{dport}"
            );
        }
    }

    #[test]
    fn table_hash_equals_bitwise_hash() {
        let mut rng = Rng(11);
        let mut key = [0u8; 40];
        key.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        let steering = RssSteering::round_robin(key, 4, 128).unwrap();
        for _ in 0..2_000 {
            let r = rng.next_u64();
            let (src, dst) = (
                SocketAddrV4::new(Ipv4Addr::from(r as u32), (r >> 32) as u16),
                SocketAddrV4::new(Ipv4Addr::from((r >> 16) as u32), (r >> 48) as u16),
            );
            let mut input = Vec::new();
            input.extend_from_slice(&src.ip().octets());
            input.extend_from_slice(&dst.ip().octets());
            input.extend_from_slice(&src.port().to_be_bytes());
            input.extend_from_slice(&dst.port().to_be_bytes());
            let h = toeplitz_hash(&key, &input);
            assert_eq!(steering.hash_ipv4_tcp(src, dst), h);
            assert_eq!(steering.queue_for(src, dst), ((h % 128) % 4) as u16);
            let base = steering.hash_ipv4_tcp(src, SocketAddrV4::new(*dst.ip(), 0));
            assert_eq!(base ^ steering.destination_port_hash(dst.port()), h);
        }
    }

    #[test]
    fn blocks_partition_the_range() {
        for (range, workers) in [
            (1000..=1009u16, 3u16),
            (32768..=60999, 8),
            (5..=5, 1),
            (1..=65535, 7),
        ] {
            let mut next = *range.start();
            let mut sizes = Vec::new();
            for w in 0..workers {
                let b = worker_block(&range, workers, w).unwrap();
                assert_eq!(*b.start(), next, "contiguous");
                sizes.push(u32::from(b.end() - b.start()) + 1);
                for port in [*b.start(), *b.end()] {
                    assert_eq!(port_owner(&range, workers, port), Some(w));
                }
                next = b.end().wrapping_add(1);
            }
            assert_eq!(next, range.end().wrapping_add(1), "covers the range");
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            assert_eq!(
                port_owner(&range, workers, range.start().wrapping_sub(1)),
                None
            );
        }
        let small = 100..=109;
        for port in 100..=109 {
            let owner = port_owner(&small, 4, port).unwrap();
            assert!(worker_block(&small, 4, owner).unwrap().contains(&port));
        }
    }

    #[test]
    fn configuration_errors_name_the_problem() {
        let base = EphemeralPortsConfig::default;
        let err = |c: EphemeralPortsConfig| EphemeralPorts::new(c).unwrap_err();
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 10..=9;
        assert_eq!(
            err(EphemeralPortsConfig {
                range: empty,
                ..base()
            }),
            PortsConfigError::EmptyRange { start: 10, end: 9 }
        );
        assert!(matches!(
            err(EphemeralPortsConfig {
                range: 0..=9,
                ..base()
            }),
            PortsConfigError::PortZero { .. }
        ));
        assert_eq!(
            err(EphemeralPortsConfig {
                workers: 0,
                ..base()
            }),
            PortsConfigError::NoWorkers
        );
        let e = err(EphemeralPortsConfig {
            workers: 2,
            worker: 2,
            ..base()
        });
        assert_eq!(
            e.to_string(),
            "worker 2 is out of range: there are 2 workers (0-1)"
        );
        assert!(matches!(
            err(EphemeralPortsConfig {
                range: 10..=12,
                workers: 4,
                worker: 0,
                ..base()
            }),
            PortsConfigError::TooManyWorkers {
                ports: 3,
                workers: 4,
                ..
            }
        ));
        assert_eq!(
            RssSteering::new(MICROSOFT_RSS_KEY, vec![]).unwrap_err(),
            PortsConfigError::EmptyReta
        );
        let rss = RssFilter {
            steering: RssSteering::round_robin(MICROSOFT_RSS_KEY, 2, 128).unwrap(),
            queue: 2,
            mode: RssMode::Require,
        };
        assert_eq!(
            err(EphemeralPortsConfig {
                rss: Some(rss),
                workers: 3,
                worker: 2,
                ..base()
            }),
            PortsConfigError::QueueNotInReta {
                queue: 2,
                worker: 2
            }
        );
    }

    #[test]
    fn allocate_release_reserve() {
        let mut p = EphemeralPorts::new(EphemeralPortsConfig::default()).unwrap();
        assert_eq!(p.candidate_ports(), DEFAULT_PORT_RANGE);
        let local = Ipv4Addr::new(10, 0, 0, 1);
        let upstream = v4([10, 0, 1, 1], 8080);
        let a = p.allocate(local, upstream).unwrap();
        let b = p.allocate(local, upstream).unwrap();
        assert_ne!(a.port, b.port);
        assert!(!a.steered, "no RSS filter");
        assert!(DEFAULT_PORT_RANGE.contains(&a.port));
        assert!(p.contains(SocketAddrV4::new(local, a.port), upstream));
        assert_eq!(p.in_use(), 2);
        assert!(p.release(SocketAddrV4::new(local, a.port), upstream));
        assert!(
            !p.release(SocketAddrV4::new(local, a.port), upstream),
            "twice"
        );
        assert!(
            !p.release(SocketAddrV4::new(local, 1), upstream),
            "never allocated"
        );
        // A reserved tuple is never handed out, and can't be reserved twice.
        let c = p.cursor_port(local, upstream);
        p.reserve(SocketAddrV4::new(local, c), upstream).unwrap();
        assert_eq!(
            p.reserve(SocketAddrV4::new(local, c), upstream),
            Err(PortsError::InUse(FlowKey::new(
                SocketAddrV4::new(local, c),
                upstream
            )))
        );
        assert_ne!(p.allocate(local, upstream).unwrap().port, c);
    }

    impl EphemeralPorts {
        /// The port the next walk to this destination starts at.
        fn cursor_port(&self, local: Ipv4Addr, remote: SocketAddrV4) -> u16 {
            let cursor = self.destinations[&Destination { local, remote }].cursor;
            self.space_start + cursor as u16
        }
    }

    #[test]
    fn exhaustion_is_an_error_until_a_release() {
        let config = |worker| EphemeralPortsConfig {
            range: 100..=109,
            workers: 2,
            worker,
            rss: None,
            seed: 42,
        };
        let mut p = EphemeralPorts::new(config(1)).unwrap();
        assert_eq!(p.candidate_ports(), 105..=109);
        let local = Ipv4Addr::new(10, 0, 0, 1);
        let (a, b) = (v4([10, 0, 1, 1], 80), v4([10, 0, 1, 2], 80));
        let mut ports: Vec<u16> = (0..5).map(|_| p.allocate(local, a).unwrap().port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [105, 106, 107, 108, 109]);
        let err = p.allocate(local, a).unwrap_err();
        assert_eq!(
            err,
            PortsError::Exhausted {
                local,
                remote: a,
                worker: 1,
                in_use: 5
            }
        );
        assert!(err
            .to_string()
            .contains("no free ephemeral port from 10.0.0.1 to 10.0.1.1:80 on worker 1"));
        assert!(p.allocate(local, a).is_err(), "still exhausted");
        // Another destination, or another local address, has its own ports.
        assert!(p.allocate(local, b).is_ok());
        assert!(p.allocate(Ipv4Addr::new(10, 0, 0, 2), a).is_ok());
        assert!(p.release(SocketAddrV4::new(local, 107), a));
        assert_eq!(p.allocate(local, a).unwrap().port, 107);
        assert!(p.allocate(local, a).is_err());
    }

    /// Allocate and free a million times over three workers sharing a small
    /// range (so destinations fill up and errors happen), and check that no
    /// 4-tuple is ever handed out twice, that each port comes from its
    /// worker's block, and that each exhaustion error is true.
    #[test]
    fn no_collision_under_churn() {
        churn(None, 1_000_000);
    }

    #[test]
    fn rss_require_under_churn() {
        churn(Some(RssMode::Require), 300_000);
    }

    #[test]
    fn rss_prefer_under_churn() {
        churn(Some(RssMode::Prefer), 300_000);
    }

    fn churn(mode: Option<RssMode>, ops: u64) {
        const WORKERS: u16 = 3;
        let range = 1000..=1299u16;
        let steering = RssSteering::round_robin(MICROSOFT_RSS_KEY, WORKERS, 128).unwrap();
        let mut workers: Vec<EphemeralPorts> = (0..WORKERS)
            .map(|w| {
                EphemeralPorts::new(EphemeralPortsConfig {
                    range: range.clone(),
                    workers: WORKERS,
                    worker: w,
                    rss: mode.map(|mode| RssFilter {
                        steering: steering.clone(),
                        queue: w,
                        mode,
                    }),
                    seed: 7,
                })
                .unwrap()
            })
            .collect();
        let locals = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
        let remotes = [
            v4([10, 9, 0, 1], 80),
            v4([10, 9, 0, 2], 80),
            v4([10, 9, 0, 1], 443),
        ];
        let mut global: StdHashSet<FlowKey> = StdHashSet::new();
        let mut held: Vec<Vec<FlowKey>> = vec![Vec::new(); usize::from(WORKERS)];
        let mut rng = Rng(0xc0ffee);
        let (mut allocated, mut errors, mut unsteered) = (0u64, 0u64, 0u64);
        for op in 0..ops {
            let w = rng.below(u64::from(WORKERS)) as usize;
            let ports = &mut workers[w];
            if rng.below(100) < 55 || held[w].is_empty() {
                let local = locals[rng.below(2) as usize];
                let remote = remotes[rng.below(3) as usize];
                let reply_queue = |port| steering.queue_for(remote, SocketAddrV4::new(local, port));
                match ports.allocate(local, remote) {
                    Ok(EphemeralPort { port, steered }) => {
                        let key = FlowKey::new(SocketAddrV4::new(local, port), remote);
                        assert!(global.insert(key), "{key} handed out twice, op {op}");
                        held[w].push(key);
                        allocated += 1;
                        assert_eq!(steered, mode.is_some() && reply_queue(port) == w as u16);
                        match mode {
                            Some(RssMode::Require) => assert!(steered, "op {op}"),
                            _ => assert_eq!(port_owner(&range, WORKERS, port), Some(w as u16)),
                        }
                        unsteered += u64::from(!steered);
                    }
                    Err(PortsError::Exhausted { .. }) => {
                        errors += 1;
                        // True exhaustion: no candidate of this worker is
                        // free (checked on one error in eight, for time).
                        let ports_to_check = if errors % 8 == 1 {
                            ports.candidate_ports()
                        } else {
                            #[allow(clippy::reversed_empty_ranges)]
                            let none = 1..=0;
                            none
                        };
                        for port in ports_to_check {
                            let key = FlowKey::new(SocketAddrV4::new(local, port), remote);
                            let candidate =
                                mode != Some(RssMode::Require) || reply_queue(port) == w as u16;
                            assert!(
                                !candidate || global.contains(&key),
                                "{key} was free, op {op}"
                            );
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            } else {
                let i = rng.below(held[w].len() as u64) as usize;
                let key = held[w].swap_remove(i);
                assert!(ports.release(key.local, key.remote));
                assert!(global.remove(&key));
            }
            assert_eq!(
                workers.iter().map(EphemeralPorts::in_use).sum::<usize>(),
                global.len()
            );
        }
        assert!(
            allocated > ops / 3 && errors > 0,
            "allocated {allocated}, errors {errors}"
        );
        if mode == Some(RssMode::Prefer) {
            assert!(unsteered > 0, "Prefer never fell back");
        }
    }
}
