//! The emulated clients: a slab of connection slots, each with at most one
//! request in flight.
//!
//! A slot goes `Connecting` → (`Idle` ⇄ `Busy`)* → `Closing` → free:
//! - `Connecting`: `connect()` was called; a request may already be bound
//!   to it (a connection per request), waiting for the handshake;
//! - `Idle`: established, no request (open loop: in the idle queue);
//! - `Busy`: a request is being sent or its response read;
//! - `Closing`: our FIN is out; the slot stays until the stack reports the
//!   close (at most `timeout`, then the connection is aborted), reading and
//!   dropping whatever still arrives so the close is not held up.
//!
//! An aborted connection's word is cleared first, so the stack's later
//! report of it goes nowhere, and its slot is free at once.

use zerohop_tcpstack::{Close, ConnId, Stack};

use super::http1::{Response, ResponseParser};
use super::report::Count;
use super::{Loadgen, CLIENT_TAG, FILL_CHUNK, FILL_PERIOD};

/// A client slot's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientState {
    Free,
    Connecting,
    Idle,
    Busy,
    Closing,
}

impl ClientState {
    /// Return true if the state counts against the concurrency.
    fn is_open(self) -> bool {
        matches!(
            self,
            ClientState::Connecting | ClientState::Idle | ClientState::Busy
        )
    }
}

/// The request of a slot.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Where its latency starts, µs: the send, the `connect()` call, or the
    /// scheduled time.
    start: u64,
    /// Bytes of head and body queued so far.
    sent: usize,
}

/// One client connection.
#[derive(Debug)]
pub(super) struct ClientSlot {
    /// Bumped each time the slot is taken (stale idle-queue entries).
    generation: u32,
    conn: Option<ConnId>,
    state: ClientState,
    request: Option<InFlight>,
    parser: ResponseParser,
    /// When the connect or the close began, µs.
    since: u64,
}

impl ClientSlot {
    fn new() -> ClientSlot {
        ClientSlot {
            generation: 0,
            conn: None,
            state: ClientState::Free,
            request: None,
            parser: ResponseParser::default(),
            since: 0,
        }
    }
}

impl Loadgen {
    /// Move slot `i` to `state`, keeping the open and live counts.
    fn set_client_state(&mut self, i: u32, state: ClientState) {
        let Some(c) = self.clients.get_mut(i as usize) else {
            return;
        };
        let old = c.state;
        if old == ClientState::Free && state == ClientState::Free {
            return;
        }
        c.state = state;
        if old.is_open() {
            self.open = self.open.saturating_sub(1);
        }
        if old != ClientState::Free {
            self.live = self.live.saturating_sub(1);
        }
        if state.is_open() {
            self.open += 1;
        }
        if state != ClientState::Free {
            self.live += 1;
        }
        if state == ClientState::Free {
            c.conn = None;
            c.request = None;
            c.parser.reset();
            self.client_free.push(i);
        }
    }

    /// Return slot `i` if it holds `conn`.
    fn client_of(&self, conn: ConnId, i: u32) -> Option<&ClientSlot> {
        self.clients
            .get(i as usize)
            .filter(|c| c.conn == Some(conn))
    }

    /// Open a client connection, with a request starting at `request` µs
    /// bound to it (a connection per request). Return false (counted as a
    /// connect error, and new opens held back a while) if it could not be
    /// opened.
    pub(super) fn open_client(&mut self, tcp: &mut Stack, now: u64, request: Option<u64>) -> bool {
        self.opens_this_poll += 1;
        let conn = match tcp.connect(self.plan.target) {
            Ok(conn) => conn,
            Err(_) => {
                self.count(Count::Connect, 1, now);
                self.connect_hold_until = now.saturating_add(super::CONNECT_RETRY_US);
                return false;
            }
        };
        let i = match self.client_free.pop() {
            Some(i) => i,
            None => {
                self.clients.push(ClientSlot::new());
                (self.clients.len() - 1) as u32
            }
        };
        tcp.set_user(conn, CLIENT_TAG | u64::from(i));
        let Some(c) = self.clients.get_mut(i as usize) else {
            tcp.abort(conn);
            return false;
        };
        c.generation = c.generation.wrapping_add(1);
        c.conn = Some(conn);
        c.request = request.map(|start| InFlight { start, sent: 0 });
        c.since = now;
        c.parser.reset();
        self.set_client_state(i, ClientState::Connecting);
        let start = request.unwrap_or(now);
        self.set_deadline_us(tcp, conn, start.saturating_add(self.timeout_us()), now);
        true
    }

    /// Queue slot `i` as idle.
    pub(super) fn push_idle(&mut self, i: u32) {
        let Some(c) = self.clients.get(i as usize) else {
            return;
        };
        self.idle.push_back((i, c.generation));
        // Entries of slots that closed while idle pile up only until the
        // next pop; never more than twice the slots.
        if self.idle.len() > 2 * self.clients.len() + 16 {
            let clients = &self.clients;
            self.idle.retain(|&(i, g)| {
                clients
                    .get(i as usize)
                    .is_some_and(|c| c.generation == g && c.state == ClientState::Idle)
            });
        }
    }

    /// Take the oldest idle slot.
    pub(super) fn pop_idle(&mut self) -> Option<u32> {
        while let Some((i, g)) = self.idle.pop_front() {
            if self.clients.get(i as usize).is_some_and(|c| {
                c.generation == g && c.state == ClientState::Idle && c.conn.is_some()
            }) {
                return Some(i);
            }
        }
        None
    }

    /// Start a request on idle or newly established slot `i`, its latency
    /// from `start` µs.
    pub(super) fn start_request(&mut self, tcp: &mut Stack, i: u32, start: u64, now: u64) {
        self.count(Count::Requests, 1, start);
        if let Some(c) = self.clients.get_mut(i as usize) {
            c.request = Some(InFlight { start, sent: 0 });
        }
        self.begin_request(tcp, i, now);
    }

    /// Send the request bound to slot `i` (counted already).
    fn begin_request(&mut self, tcp: &mut Stack, i: u32, now: u64) {
        let Some(c) = self.clients.get_mut(i as usize) else {
            return;
        };
        let (Some(conn), Some(r)) = (c.conn, c.request) else {
            return;
        };
        c.parser.reset();
        self.set_client_state(i, ClientState::Busy);
        self.set_deadline_us(tcp, conn, r.start.saturating_add(self.timeout_us()), now);
        self.send_request(tcp, i);
    }

    /// Queue as much of slot `i`'s request as fits.
    fn send_request(&mut self, tcp: &mut Stack, i: u32) {
        let Some(c) = self.clients.get_mut(i as usize) else {
            return;
        };
        let (Some(conn), Some(r)) = (c.conn, c.request.as_mut()) else {
            return;
        };
        let head = self.request.len();
        while r.sent < self.request_len {
            let n = if r.sent < head {
                tcp.send(conn, &self.request[r.sent..])
            } else {
                let at = r.sent - head;
                let len = (self.request_len - r.sent).min(FILL_CHUNK);
                let from = at % FILL_PERIOD;
                tcp.send(conn, &self.fill[from..from + len])
            };
            if n == 0 {
                break;
            }
            r.sent += n;
        }
    }

    /// Something happened on client connection `conn` (slot `i`).
    pub(super) fn client_ready(&mut self, tcp: &mut Stack, conn: ConnId, i: u32) {
        let Some(state) = self.client_of(conn, i).map(|c| c.state) else {
            return;
        };
        let now = self.now(tcp);
        if state == ClientState::Connecting {
            if !tcp.is_established(conn) {
                return;
            }
            self.count(Count::Established, 1, now);
            self.connected(tcp, i, now);
        }
        if self.client_of(conn, i).map(|c| c.state) == Some(ClientState::Busy) {
            self.send_request(tcp, i);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        self.read_responses(tcp, conn, i, now, &mut scratch);
        self.scratch = scratch;
    }

    /// Slot `i`'s handshake completed.
    fn connected(&mut self, tcp: &mut Stack, i: u32, now: u64) {
        let bound = self.clients.get(i as usize).and_then(|c| c.request);
        if bound.is_some() {
            // A connection per request: its request goes out now, even
            // after the window (its start was counted in it).
            self.begin_request(tcp, i, now);
            return;
        }
        self.set_client_state(i, ClientState::Idle);
        if let Some(conn) = self.clients.get(i as usize).and_then(|c| c.conn) {
            tcp.set_deadline(conn, None);
        }
        self.next_request(tcp, i, now);
    }

    /// Idle slot `i` takes its next request (closed loop), a due one (open
    /// loop), waits in the idle queue, or closes (the window is over).
    fn next_request(&mut self, tcp: &mut Stack, i: u32, now: u64) {
        if !self.running() {
            self.close_client(tcp, i, now);
        } else if self.schedule.is_none() {
            self.start_request(tcp, i, now, now);
        } else if let Some(due) = self.take_due(now) {
            self.start_request(tcp, i, due, now);
        } else {
            self.push_idle(i);
        }
    }

    /// Read what arrived on slot `i` and act on complete responses.
    fn read_responses(
        &mut self,
        tcp: &mut Stack,
        conn: ConnId,
        i: u32,
        now: u64,
        scratch: &mut [u8],
    ) {
        // A response completed in this call: the next request has not even
        // left yet, so whatever follows is nobody's answer.
        let mut answered = false;
        loop {
            let n = tcp.recv(conn, scratch);
            if n == 0 {
                break;
            }
            let mut data = &scratch[..n];
            while !data.is_empty() {
                let Some(c) = self.clients.get_mut(i as usize) else {
                    return;
                };
                match c.state {
                    // Dropped: the close must not wait on unread bytes.
                    ClientState::Closing => break,
                    ClientState::Busy if !answered => {}
                    // Bytes no request asked for.
                    _ => {
                        self.fail(tcp, i, Count::Malformed, now);
                        return;
                    }
                }
                match c.parser.feed(data) {
                    Err(_) => {
                        self.fail(tcp, i, Count::Malformed, now);
                        return;
                    }
                    Ok((used, response)) => {
                        data = &data[used.min(data.len())..];
                        if let Some(r) = response {
                            answered = true;
                            self.response(tcp, i, r, now);
                        }
                    }
                }
            }
            if self.client_of(conn, i).is_none() {
                return;
            }
        }
        if !tcp.recv_finished(conn) {
            return;
        }
        // The peer closed its side.
        let Some(c) = self.clients.get_mut(i as usize) else {
            return;
        };
        match c.state {
            ClientState::Busy => match c.parser.eof() {
                Some(r) => self.response(tcp, i, r, now),
                None => self.fail(tcp, i, Count::Reset, now),
            },
            ClientState::Idle | ClientState::Connecting => self.close_client(tcp, i, now),
            ClientState::Closing | ClientState::Free => {}
        }
    }

    /// Slot `i`'s response `r` is complete: judge it, then go on.
    fn response(&mut self, tcp: &mut Stack, i: u32, r: Response, now: u64) {
        let Some(c) = self.clients.get_mut(i as usize) else {
            return;
        };
        let Some(req) = c.request.take() else {
            return;
        };
        if !(200..300).contains(&r.status) {
            let kind = if r.status >= 500 {
                Count::Status5xx
            } else {
                Count::Status4xx
            };
            self.count(kind, 1, now);
        } else if !self.plan.servers.is_empty() && r.body != self.plan.response_body as u64 {
            self.count(Count::Body, 1, now);
        } else {
            self.count(Count::Responses, 1, now);
            self.count(Count::BodyBytes, r.body, now);
            self.record(now.saturating_sub(req.start), now);
        }
        // A request not sent in full cannot share the connection with the
        // next one.
        let unsent = req.sent < self.request_len;
        if r.close || unsent || self.plan.new_connection_per_request {
            self.close_client(tcp, i, now);
        } else {
            self.set_client_state(i, ClientState::Idle);
            if let Some(conn) = self.clients.get(i as usize).and_then(|c| c.conn) {
                tcp.set_deadline(conn, None);
            }
            self.next_request(tcp, i, now);
        }
    }

    /// Count `kind` against slot `i`'s request and abort its connection.
    fn fail(&mut self, tcp: &mut Stack, i: u32, kind: Count, now: u64) {
        self.count(kind, 1, now);
        self.abort_client(tcp, i);
    }

    /// Abort slot `i`'s connection (a RST goes out) and free the slot; its
    /// word is cleared first, so the stack's report of the close is
    /// ignored.
    fn abort_client(&mut self, tcp: &mut Stack, i: u32) {
        if let Some(conn) = self.clients.get(i as usize).and_then(|c| c.conn) {
            tcp.set_user(conn, 0);
            tcp.set_deadline(conn, None);
            tcp.abort(conn);
        }
        self.set_client_state(i, ClientState::Free);
    }

    /// Close slot `i`'s connection with a FIN; the slot stays until the
    /// close is reported, or `timeout` passed.
    fn close_client(&mut self, tcp: &mut Stack, i: u32, now: u64) {
        let Some(c) = self.clients.get_mut(i as usize) else {
            return;
        };
        let Some(conn) = c.conn else {
            return;
        };
        c.request = None;
        c.since = now;
        tcp.close(conn);
        self.set_client_state(i, ClientState::Closing);
        self.set_deadline_us(tcp, conn, now.saturating_add(self.timeout_us()), now);
    }

    /// Client connection `conn`'s deadline passed.
    pub(super) fn client_deadline(&mut self, tcp: &mut Stack, conn: ConnId, i: u32) {
        let Some(c) = self.client_of(conn, i) else {
            return;
        };
        let now = self.now(tcp);
        let timeout = self.timeout_us();
        let (due, kind) = match (c.state, c.request) {
            (ClientState::Connecting, r) => (
                r.map_or(c.since, |r| r.start).saturating_add(timeout),
                Some(Count::Connect),
            ),
            (ClientState::Busy, Some(r)) => (r.start.saturating_add(timeout), Some(Count::Timeout)),
            (ClientState::Closing, _) => (c.since.saturating_add(timeout), None),
            _ => return,
        };
        if now < due {
            // The stack's milliseconds ran ahead of this clock: again later.
            self.set_deadline_us(tcp, conn, due, now);
            return;
        }
        if let Some(kind) = kind {
            self.count(kind, 1, now);
            if kind == Count::Connect {
                self.connect_hold_until = now.saturating_add(super::CONNECT_RETRY_US);
            }
        }
        self.abort_client(tcp, i);
    }

    /// The stack reports client connection `conn` closed.
    pub(super) fn client_closed(&mut self, tcp: &mut Stack, conn: ConnId, i: u32, _how: Close) {
        let Some(c) = self.client_of(conn, i) else {
            return;
        };
        let now = self.now(tcp);
        match c.state {
            ClientState::Connecting => {
                self.count(Count::Connect, 1, now);
                self.connect_hold_until = now.saturating_add(super::CONNECT_RETRY_US);
            }
            // Cut short (a RST, or closed before the response was
            // complete): `ready` judged a close it could see.
            ClientState::Busy => self.count(Count::Reset, 1, now),
            _ => {}
        }
        self.set_client_state(i, ClientState::Free);
    }

    /// Close every idle client connection (the window is over).
    pub(super) fn close_idle_clients(&mut self, tcp: &mut Stack, now: u64) {
        for i in 0..self.clients.len() as u32 {
            if self.clients[i as usize].state == ClientState::Idle {
                self.close_client(tcp, i, now);
            }
        }
    }

    /// Abort every client connection still there.
    pub(super) fn abort_clients(&mut self, tcp: &mut Stack) {
        for i in 0..self.clients.len() as u32 {
            if self.clients[i as usize].state != ClientState::Free {
                self.abort_client(tcp, i);
            }
        }
    }
}
