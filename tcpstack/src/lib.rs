//! zerohop's userspace TCP (the `tcp-input` node, flow table, smoltcp driven
//! per connection). Not built yet: today zerohop forwards at L2 only, and this
//! crate holds nothing but its place in the dependency order
//! `dataplane ← tcpstack ← l7 ← zerohop`.
#![forbid(unsafe_code)]
