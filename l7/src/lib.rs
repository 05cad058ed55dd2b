//! zerohop's L4/L7 layer: Envoy v3 listeners, `tcp_proxy`, clusters (and later
//! `http_connection_manager`).
//!
//! **Today this crate holds the configuration model only.** [`config`] parses and checks
//! the Envoy v3 `static_resources` and `admin` sections for an L4 TCP proxy; the proxy
//! itself (listeners on the userspace TCP stack, load balancing, upstream connections)
//! is not built yet, and zerohop's binary still rejects these sections. The crate sits
//! in the dependency order `dataplane ← tcpstack ← l7 ← zerohop`.
#![forbid(unsafe_code)]

pub mod config;

pub use config::{EnvoyConfig, EnvoyConfigError};
