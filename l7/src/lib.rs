//! zerohop's L4/L7 layer (Envoy v3 listeners, tcp_proxy,
//! http_connection_manager, clusters). Not built yet: today zerohop forwards
//! at L2 only, and this crate holds nothing but its place in the dependency
//! order `dataplane ← tcpstack ← l7 ← zerohop`.
#![forbid(unsafe_code)]
