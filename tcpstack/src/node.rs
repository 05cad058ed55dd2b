//! The `tcp-input` graph node: TCP segments from `ip4-local` go to the
//! worker's [`Stack`]; what the stack emits goes to `ip4-lookup`.
//!
//! The node also polls (see `Node::polls`): each worker loop tick it takes
//! the segments other workers handed over, advances the timer wheel and
//! flushes what the application queued.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use zerohop_dataplane::graph::{Node, Output, Packet};
use zerohop_dataplane::l3::L3Context;
use zerohop_dataplane::Buffer;

use crate::stack::{App, SegmentDevice, Stack};

/// Segments taken from the handoff queue per poll, at most.
const HANDOFF_BATCH: usize = 256;

/// The queues between workers for segments of connections another worker
/// owns (its ephemeral port block), where the NIC's queue choice cannot be
/// predicted (single-queue vdevs, `net_tap`).
pub struct Handoff<B> {
    /// To worker i.
    senders: Vec<Sender<Packet<B>>>,
    /// To this worker.
    receiver: Receiver<Packet<B>>,
}

impl<B> Handoff<B> {
    /// Return one end per worker, each with a bounded queue of `capacity`
    /// segments.
    pub fn mesh(workers: usize, capacity: usize) -> Vec<Handoff<B>> {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| crossbeam_channel::bounded(capacity))
            .unzip();
        rx.into_iter()
            .map(|receiver| Handoff {
                senders: tx.clone(),
                receiver,
            })
            .collect()
    }
}

/// The `tcp-input` node of one worker, driving its [`Stack`] for the
/// application `A` (the L4 proxy).
pub struct TcpInput<B, A> {
    stack: Stack,
    app: A,
    handoff: Option<Handoff<B>>,
    emitted: Vec<Packet<B>>,
    mtu: u16,
}

impl<B: Buffer, A: App> TcpInput<B, A> {
    const LOOKUP: usize = 0;
    const E_HANDOFF_FULL: usize = 0;

    /// Wrap a stack and its application; `handoff` with more than one
    /// worker.
    pub fn new(stack: Stack, app: A, handoff: Option<Handoff<B>>) -> Self {
        let mtu = stack.params().mtu;
        Self {
            stack,
            app,
            handoff,
            emitted: Vec::with_capacity(zerohop_dataplane::VECTOR_SIZE),
            mtu,
        }
    }

    /// Return the stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Return the application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// Return the stack and the application, mutably (tests).
    pub fn parts_mut(&mut self) -> (&mut Stack, &mut A) {
        (&mut self.stack, &mut self.app)
    }

    /// Hand `pkt` to the worker owning its local port, if that is not this
    /// worker and no connection here matches; give it back otherwise.
    fn hand_off(&mut self, pkt: Packet<B>, out: &mut Output<'_, B>) -> Option<Packet<B>> {
        let Some(h) = self.handoff.as_ref() else {
            return Some(pkt);
        };
        let l3 = usize::from(pkt.meta.l3_offset);
        let owner = pkt
            .buf
            .data()
            .get(l3..)
            .and_then(Stack::key_of)
            .filter(|k| !self.stack.has(k))
            .and_then(|k| self.stack.owner_of(k.local.port()));
        let Some(owner) = owner.and_then(|o| h.senders.get(usize::from(o))) else {
            return Some(pkt);
        };
        match owner.try_send(pkt) {
            Ok(()) => self.stack.stats().handed_off.add(1),
            // Counted by the graph, under this node's reason.
            Err(TrySendError::Full(p) | TrySendError::Disconnected(p)) => {
                out.drop(p, Self::E_HANDOFF_FULL)
            }
        }
        None
    }

    /// Feed one segment to the stack; its buffer is freed after (smoltcp
    /// copied what it keeps).
    fn feed(stack: &mut Stack, mut pkt: Packet<B>, dev: &mut SegmentDevice<'_, B>, now: u64) {
        let l3 = usize::from(pkt.meta.l3_offset);
        if let Some(ip) = pkt.buf.data_mut().get_mut(l3..) {
            stack.input(ip, dev, now);
        }
    }

    fn emit(&mut self, out: &mut Output<'_, B>) {
        for p in self.emitted.drain(..) {
            out.next(Self::LOOKUP, p);
        }
    }
}

impl<B: Buffer, A: App + Send> Node<B, L3Context<B>> for TcpInput<B, A> {
    fn name(&self) -> &'static str {
        "tcp-input"
    }

    fn next_nodes(&self) -> &'static [&'static str] {
        &["ip4-lookup"]
    }

    fn errors(&self) -> &'static [&'static str] {
        &["handoff-queue-full"]
    }

    fn owns_packets(&self) -> bool {
        true
    }

    fn process_owned(
        &mut self,
        ctx: &mut L3Context<B>,
        input: &mut Vec<Packet<B>>,
        out: &mut Output<'_, B>,
    ) {
        let now = ctx.now_ms;
        // Bring every segment's connection into cache first (see
        // `Stack::warm`).
        self.stack.warm(
            input
                .iter()
                .filter_map(|p| p.buf.data().get(usize::from(p.meta.l3_offset)..)),
        );
        let mut emitted = std::mem::take(&mut self.emitted);
        {
            let mut dev = SegmentDevice::new(&mut ctx.alloc, &mut emitted, self.mtu);
            for pkt in input.drain(..) {
                if let Some(pkt) = self.hand_off(pkt, out) {
                    Self::feed(&mut self.stack, pkt, &mut dev, now);
                }
            }
            self.stack.flush(&mut self.app, &mut dev);
        }
        self.emitted = emitted;
        self.emit(out);
    }

    fn polls(&self) -> bool {
        true
    }

    fn poll(&mut self, ctx: &mut L3Context<B>, out: &mut Output<'_, B>) {
        let now = ctx.now_ms;
        let mut emitted = std::mem::take(&mut self.emitted);
        {
            let mut dev = SegmentDevice::new(&mut ctx.alloc, &mut emitted, self.mtu);
            if let Some(h) = self.handoff.as_ref() {
                for pkt in h.receiver.try_iter().take(HANDOFF_BATCH) {
                    Self::feed(&mut self.stack, pkt, &mut dev, now);
                }
            }
            self.stack.advance(now, &mut self.app);
            self.app.poll(&mut self.stack);
            if self.stack.has_work() {
                self.stack.flush(&mut self.app, &mut dev);
            }
        }
        self.emitted = emitted;
        self.emit(out);
    }

    fn format_trace(&self, _ctx: &L3Context<B>, pkt: &Packet<B>) -> String {
        let l3 = usize::from(pkt.meta.l3_offset);
        match pkt.buf.data().get(l3..).and_then(Stack::key_of) {
            Some(k) => format!("tcp {} -> {}", k.remote, k.local),
            None => "tcp (malformed)".to_owned(),
        }
    }
}
