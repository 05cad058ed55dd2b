//! zerohop: a kernel-bypass service-mesh dataplane.
//!
//! The root package holds the DPDK binding (`dpdk`, the only FFI and the only
//! `unsafe` in the project), configuration loading and the runtime that wires
//! EAL, mempools, ports and pinned workers together. The packet-processing
//! engine lives in the `zerohop-dataplane` crate, generic over its `Port` and
//! `Buffer` traits, which `dpdk` implements for real NIC queues and mbufs.

pub mod admin;
pub mod config;
pub mod dpdk;
pub mod introspect;
pub mod runtime;
