//! Real userspace TCP stacks run against each other in-process, for tests:
//! each [`Host`] is one [`Stack`] and its application on a /24, and [`run`]
//! drives a set of them a millisecond at a time, carrying the segments
//! between them by destination address (see `tcpstack/tests/stack.rs` for
//! the stack's own two-host harness).

use std::net::Ipv4Addr;
use std::sync::Arc;

use zerohop_dataplane::fib::FibBuilder;
use zerohop_dataplane::graph::Packet;
use zerohop_dataplane::l3::Allocator;
use zerohop_dataplane::testing::HeapBuffer;
use zerohop_dataplane::Buffer;
use zerohop_tcpstack::stack::ETH_HEADROOM;
use zerohop_tcpstack::{App, SegmentDevice, Stack, TcpParams};

/// One stack, its application, and the segments on their way to it.
pub(crate) struct Host<A> {
    pub(crate) stack: Stack,
    pub(crate) app: A,
    addr: Ipv4Addr,
    alloc: Allocator<HeapBuffer>,
    inbox: Vec<Packet<HeapBuffer>>,
}

/// A host at `addr` (interface 0, a /24) running `app`, with room for 64
/// connections.
pub(crate) fn host<A>(addr: Ipv4Addr, app: A) -> Host<A> {
    let mut fib = FibBuilder::new();
    fib.interface(0, addr, 24);
    let fib = Arc::new(fib.build().expect("fib"));
    let params = TcpParams {
        max_connections: 64,
        ..TcpParams::default()
    };
    Host {
        stack: Stack::new(params, fib, vec![Some(addr)], 7, 0).expect("stack"),
        app,
        addr,
        alloc: Box::new(|| Some(HeapBuffer::empty())),
        inbox: Vec::new(),
    }
}

/// A [`Host`] as [`run`] sees it, whatever its application.
pub(crate) trait Node {
    /// The host's address.
    fn addr(&self) -> Ipv4Addr;
    /// One worker loop at `now`, as `tcpstack`'s node runs it: the timers,
    /// the application's poll, the segments in the inbox, a flush; return
    /// what the host sent.
    fn step(&mut self, now: u64) -> Vec<Packet<HeapBuffer>>;
    /// Queue `p` for the host's next step.
    fn receive(&mut self, p: Packet<HeapBuffer>);
}

impl<A: App> Node for Host<A> {
    fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    fn step(&mut self, now: u64) -> Vec<Packet<HeapBuffer>> {
        self.stack.advance(now, &mut self.app);
        self.app.poll(&mut self.stack);
        let mut out = Vec::new();
        let mtu = self.stack.params().mtu;
        let mut dev = SegmentDevice::new(&mut self.alloc, &mut out, mtu);
        for mut p in std::mem::take(&mut self.inbox) {
            self.stack
                .input(&mut p.buf.data_mut()[ETH_HEADROOM..], &mut dev, now);
        }
        self.stack.flush(&mut self.app, &mut dev);
        out
    }

    fn receive(&mut self, p: Packet<HeapBuffer>) {
        self.inbox.push(p);
    }
}

/// Run `ms` milliseconds from `*now`: each millisecond, every host in
/// `hosts` steps in order, and what it sent goes at once to the inbox of
/// the host it is addressed to (so a later host sees it in the same
/// millisecond, an earlier one in the next); segments for no host are lost.
pub(crate) fn run(now: &mut u64, ms: u64, hosts: &mut [&mut dyn Node]) {
    for _ in 0..ms {
        *now += 1;
        for i in 0..hosts.len() {
            for p in hosts[i].step(*now) {
                let ip = &p.buf.data()[ETH_HEADROOM..];
                let to = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
                if let Some(h) = hosts.iter_mut().find(|h| h.addr() == to) {
                    h.receive(p);
                }
            }
        }
    }
}
