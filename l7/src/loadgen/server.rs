//! The emulated upstream servers: every request gets `200` with
//! `response_body` bytes of the fill pattern.
//!
//! Requests may come pipelined: each complete one adds a reply owed, and
//! replies go out in order, each written as far as send space allows and
//! resumed when the stack says space was freed, so a body far larger than
//! the socket buffer streams. While many replies are owed the server stops
//! reading (the client's window closes) instead of counting without bound.
//! A malformed request is owed a `400` after the replies before it, and the
//! connection closes after that; so does one after a request that asked to
//! close.

use zerohop_tcpstack::{ConnId, Stack};

use super::http1::RequestParser;
use super::report::Count;
use super::{Loadgen, FILL_CHUNK, FILL_PERIOD, SERVER_TAG};

/// The reply to a malformed request.
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Replies owed on one connection past which the server stops reading.
const MAX_OWED: u32 = 1024;

/// Which reply is going out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// 200, the connection stays.
    Ok,
    /// 200, then the connection closes.
    OkClose,
    /// 400, then the connection closes.
    Bad,
}

/// One server connection.
#[derive(Debug)]
pub(super) struct ServerSlot {
    conn: Option<ConnId>,
    parser: RequestParser,
    /// 200s owed after the current reply.
    owed: u32,
    /// A 400 is owed after them.
    bad: bool,
    /// The last of the owed 200s closes the connection.
    close_after: bool,
    /// The reply going out, and bytes of it sent.
    current: Option<(Reply, usize)>,
    /// Our FIN is out (or queued).
    closing: bool,
}

impl ServerSlot {
    fn new(conn: ConnId) -> ServerSlot {
        ServerSlot {
            conn: Some(conn),
            parser: RequestParser::default(),
            owed: 0,
            bad: false,
            close_after: false,
            current: None,
            closing: false,
        }
    }

    /// Return true if no request will be read any more.
    fn stopped(&self) -> bool {
        self.bad || self.close_after || self.closing
    }

    /// Return true if the slot holds no connection.
    #[cfg(test)]
    pub(super) fn is_free(&self) -> bool {
        self.conn.is_none()
    }

    /// Return true if no reply is owed or going out.
    fn quiet(&self) -> bool {
        self.current.is_none() && self.owed == 0 && !self.bad
    }
}

impl Loadgen {
    /// A connection to one of the servers was accepted.
    pub(super) fn server_accepted(&mut self, tcp: &mut Stack, conn: ConnId) {
        let i = match self.server_free.pop() {
            Some(i) if (i as usize) < self.servers.len() => {
                self.servers[i as usize] = ServerSlot::new(conn);
                i
            }
            _ => {
                self.servers.push(ServerSlot::new(conn));
                (self.servers.len() - 1) as u32
            }
        };
        tcp.set_user(conn, SERVER_TAG | u64::from(i));
    }

    /// Return true if server slot `i` holds `conn`.
    fn server_holds(&self, conn: ConnId, i: u32) -> bool {
        self.servers
            .get(i as usize)
            .is_some_and(|s| s.conn == Some(conn))
    }

    /// Something happened on server connection `conn` (slot `i`).
    pub(super) fn server_ready(&mut self, tcp: &mut Stack, conn: ConnId, i: u32) {
        if !self.server_holds(conn, i) {
            return;
        }
        let now = self.now(tcp);
        self.send_replies(tcp, conn, i);
        let mut scratch = std::mem::take(&mut self.scratch);
        self.read_requests(tcp, conn, i, now, &mut scratch);
        self.scratch = scratch;
        self.send_replies(tcp, conn, i);
        let Some(s) = self.servers.get_mut(i as usize) else {
            return;
        };
        let done = s.quiet() && (s.stopped() || tcp.recv_finished(conn));
        if done && !s.closing {
            s.closing = true;
            tcp.close(conn);
        }
    }

    /// Read and parse requests on slot `i` while few replies are owed.
    fn read_requests(
        &mut self,
        tcp: &mut Stack,
        conn: ConnId,
        i: u32,
        now: u64,
        scratch: &mut [u8],
    ) {
        loop {
            let Some(s) = self.servers.get(i as usize) else {
                return;
            };
            if !s.stopped() && s.owed >= MAX_OWED {
                return; // back-pressure: the bytes wait in the socket
            }
            let n = tcp.recv(conn, scratch);
            if n == 0 {
                return;
            }
            let mut data = &scratch[..n];
            while !data.is_empty() {
                let Some(s) = self.servers.get_mut(i as usize) else {
                    return;
                };
                if s.stopped() {
                    break; // after a close or a 400: dropped
                }
                match s.parser.feed(data) {
                    Err(_) => {
                        s.bad = true;
                        self.count(Count::ServerBadRequests, 1, now);
                    }
                    Ok((used, request)) => {
                        data = &data[used.min(data.len())..];
                        if let Some(r) = request {
                            s.owed += 1;
                            s.close_after = r.close;
                            self.count(Count::ServerRequests, 1, now);
                        }
                    }
                }
            }
        }
    }

    /// Write the owed replies of slot `i` as far as send space allows.
    fn send_replies(&mut self, tcp: &mut Stack, conn: ConnId, i: u32) {
        let body = self.plan.response_body;
        let limit = self.reply_limit();
        loop {
            let Some(s) = self.servers.get_mut(i as usize) else {
                return;
            };
            let (reply, mut sent) = match s.current {
                Some(c) => c,
                None if s.owed > 0 => {
                    s.owed -= 1;
                    let last = s.owed == 0 && s.close_after;
                    (if last { Reply::OkClose } else { Reply::Ok }, 0)
                }
                None if s.bad => {
                    s.bad = false;
                    (Reply::Bad, 0)
                }
                None => return,
            };
            let (head, body_len) = match reply {
                Reply::Ok => (&self.ok_head[..], body),
                Reply::OkClose => (&self.ok_close_head[..], body),
                Reply::Bad => (BAD_REQUEST, 0),
            };
            let total = (head.len() + body_len).min(limit);
            while sent < total {
                let n = if sent < head.len() {
                    tcp.send(conn, &head[sent..total.min(head.len())])
                } else {
                    let at = sent - head.len();
                    let len = (total - sent).min(FILL_CHUNK);
                    let from = at % FILL_PERIOD;
                    tcp.send(conn, &self.fill[from..from + len])
                };
                if n == 0 {
                    break;
                }
                sent += n;
            }
            if sent < total {
                s.current = Some((reply, sent));
                return;
            }
            s.current = None;
            let truncated = total < head.len() + body_len;
            if reply != Reply::Ok || truncated {
                // The rest is dropped: this connection says no more.
                s.owed = 0;
                s.bad = false;
                s.close_after = true;
                if !s.closing {
                    s.closing = true;
                    tcp.close(conn);
                }
                return;
            }
        }
    }

    /// Return the most bytes of a reply the servers send: all of it, except
    /// in the tests that make them cut replies short.
    fn reply_limit(&self) -> usize {
        #[cfg(test)]
        if let Some(cut) = self.truncate_after {
            return cut;
        }
        usize::MAX
    }

    /// The stack reports server connection `conn` closed.
    pub(super) fn server_closed(&mut self, conn: ConnId, i: u32) {
        if !self.server_holds(conn, i) {
            return;
        }
        if let Some(s) = self.servers.get_mut(i as usize) {
            *s = ServerSlot {
                conn: None,
                ..ServerSlot::new(conn)
            };
            self.server_free.push(i);
        }
    }
}
