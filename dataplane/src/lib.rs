//! zerohop's packet-processing engine, generic over the [`Buffer`] and
//! [`PortQueue`] traits.
//!
//! Nothing here knows DPDK: the root package implements the traits for mbufs
//! and NIC queues, and [`testing`] implements them on the heap, so every node
//! and worker loop is testable without EAL, hugepages or root.
//!
//! A [`worker::Worker`] polls its queue on every port and either
//! cross-connects frames at L2 or runs them through the VPP-style [`graph`]
//! of IPv4 nodes ([`l3`]): Ethernet, ARP, IPv4 input, [`acl`], [`fib`]
//! lookup, ICMP, rewrite.
#![forbid(unsafe_code)]

pub mod acl;
pub mod buffer;
pub mod fib;
pub mod graph;
pub mod l3;
pub mod port;
pub mod stats;
pub mod testing;
pub mod vector;
pub mod worker;

pub use buffer::Buffer;
pub use port::PortQueue;
pub use stats::{Counter, PortCounters, WorkerStats};
pub use vector::{PacketVector, VECTOR_SIZE};
