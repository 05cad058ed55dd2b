//! zerohop's packet-processing engine, generic over the [`Buffer`] and
//! [`PortQueue`] traits.
//!
//! Nothing here knows DPDK: the root package implements the traits for mbufs
//! and NIC queues, and [`testing`] implements them on the heap, so every node
//! and worker loop is testable without EAL, hugepages or root.
//!
//! Today the engine forwards in one mode, the L2 cross-connect
//! ([`xconnect::XconnectWorker`]); the VPP-style graph builds on the same traits.
#![forbid(unsafe_code)]

pub mod buffer;
pub mod port;
pub mod stats;
pub mod testing;
pub mod vector;
pub mod xconnect;

pub use buffer::Buffer;
pub use port::PortQueue;
pub use stats::{Counter, PortCounters, WorkerStats};
pub use vector::{PacketVector, VECTOR_SIZE};
