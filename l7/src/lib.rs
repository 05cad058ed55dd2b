//! zerohop's L4/L7 layer: Envoy v3 listeners, `tcp_proxy`, clusters (and later
//! `http_connection_manager`).
//!
//! - [`config`] parses and checks the Envoy v3 `static_resources` and `admin`
//!   sections;
//! - [`tcp_proxy`] is the L4 proxy: one [`tcp_proxy::TcpProxy`] per worker,
//!   the application of that worker's userspace TCP stack, with load
//!   balancing over STATIC clusters and Envoy-named counters.
//!
//! The crate sits in the dependency order `dataplane ← tcpstack ← l7 ← zerohop`.
#![forbid(unsafe_code)]

/// Bits of a connection's word that name its configuration generation (see
/// [`app::L7`]): every proxy ORs its generation in and masks it out.
pub const GEN_SHIFT: u32 = 53;
/// The mask of [`GEN_SHIFT`]'s 8 bits.
pub const GEN_MASK: u64 = 0xff << GEN_SHIFT;

pub mod access_log;
pub mod app;
pub mod cluster;
pub mod config;
pub mod health;
pub mod histogram;
pub mod http;
pub mod loadgen;
pub mod tcp_proxy;
#[cfg(test)]
pub(crate) mod testnet;

pub use config::{EnvoyConfig, EnvoyConfigError};
