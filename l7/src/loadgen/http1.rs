//! HTTP/1.1 framing for the load generator: message heads with httparse,
//! bodies by `Content-Length`, chunked coding, or (responses) the end of the
//! connection.
//!
//! Both parsers are incremental and keep no body bytes: a head is collected
//! in a small per-connection buffer (at most [`HEAD_LIMIT`]), a body is only
//! counted. Each `feed` stops at the end of one message and says how much of
//! its input that message used, so what follows (a pipelined request, a
//! stray byte) is the caller's to judge.

/// Most bytes of a message head (Envoy's default `max_request_headers_kb`
/// is 60 KiB); a longer head is malformed.
pub(super) const HEAD_LIMIT: usize = 64 * 1024;

/// Most header fields of a head.
const MAX_HEADERS: usize = 100;

/// A head buffer whose capacity grew past this is given back when cleared,
/// so that one large head does not stay allocated per connection.
const KEEP_HEAD: usize = 4096;

/// Most bytes of one chunk's extensions, or of the trailer section.
const CHUNK_META_LIMIT: usize = 8192;

/// The input does not frame as HTTP/1.1 (head, length, chunking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed;

/// Return where the first blank line (`\r\n\r\n`) of `buf` starts.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// A message head being collected until its blank line.
#[derive(Debug, Default)]
struct HeadBuf {
    buf: Vec<u8>,
}

/// What [`HeadBuf::push`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadStep {
    /// The head goes on; all the input was taken.
    Partial,
    /// The head is complete (in the buffer); this many input bytes were
    /// part of it.
    Complete(usize),
    /// No blank line within [`HEAD_LIMIT`].
    TooLarge,
}

impl HeadBuf {
    /// Take `data` up to the end of the head.
    fn push(&mut self, data: &[u8]) -> HeadStep {
        if self.buf.is_empty() {
            // The common case: the whole head in one read; copy only it.
            if let Some(at) = find_blank_line(data) {
                let end = at + 4;
                if end > HEAD_LIMIT {
                    return HeadStep::TooLarge;
                }
                self.buf.extend_from_slice(&data[..end]);
                return HeadStep::Complete(end);
            }
        }
        let old = self.buf.len();
        let from = old.saturating_sub(3);
        let take = data.len().min(HEAD_LIMIT.saturating_sub(old));
        self.buf.extend_from_slice(&data[..take]);
        match find_blank_line(&self.buf[from..]) {
            Some(at) => {
                let end = from + at + 4;
                self.buf.truncate(end);
                HeadStep::Complete(end - old)
            }
            None if self.buf.len() >= HEAD_LIMIT => HeadStep::TooLarge,
            None => HeadStep::Partial,
        }
    }

    /// Return the head collected so far.
    fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forget the head (for the next message).
    fn clear(&mut self) {
        if self.buf.capacity() > KEEP_HEAD {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a chunk size.
    Size { value: u64, digits: u8 },
    /// A chunk extension, until CR.
    Extension { value: u64, len: usize },
    /// The LF after a chunk size line.
    SizeLf { value: u64 },
    /// Chunk data, this many bytes left.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// A trailer line (after the last chunk) of `len` bytes so far;
    /// `total` bytes of trailers in all.
    Trailer { len: usize, total: usize },
    /// The LF of a trailer line.
    TrailerLf { len: usize, total: usize },
    /// The body ended.
    Done,
}

/// A chunked body decoder (RFC 9112 §7.1) that counts the data and keeps
/// none of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chunked {
    state: ChunkState,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

/// Return the value of hex digit `b`.
fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

impl Chunked {
    /// Decode from `data` up to the end of the body; return (bytes used,
    /// data bytes among them).
    ///
    /// # Errors
    /// [`Malformed`] chunking: a bad size line, missing CRLF, overlong
    /// extensions or trailers.
    fn feed(&mut self, data: &[u8]) -> Result<(usize, u64), Malformed> {
        use ChunkState::*;
        let mut i = 0;
        let mut body = 0u64;
        while i < data.len() {
            let b = data[i];
            self.state = match self.state {
                Size { value, digits } => match hex(b) {
                    Some(d) if digits < 16 => Size {
                        value: value << 4 | d,
                        digits: digits + 1,
                    },
                    Some(_) => return Err(Malformed),
                    None if digits == 0 => return Err(Malformed),
                    None if b == b'\r' => SizeLf { value },
                    None if matches!(b, b';' | b' ' | b'\t') => Extension { value, len: 1 },
                    None => return Err(Malformed),
                },
                Extension { value, len } => match b {
                    b'\r' => SizeLf { value },
                    b'\n' => return Err(Malformed),
                    _ if len >= CHUNK_META_LIMIT => return Err(Malformed),
                    _ => Extension {
                        value,
                        len: len + 1,
                    },
                },
                SizeLf { value } => match b {
                    b'\n' if value == 0 => Trailer { len: 0, total: 0 },
                    b'\n' => Data(value),
                    _ => return Err(Malformed),
                },
                Data(left) => {
                    let n = left.min((data.len() - i) as u64);
                    body += n;
                    // `n` fits `data`: the loop's `i += 1` below takes one.
                    i += n as usize - 1;
                    if left == n {
                        DataCr
                    } else {
                        Data(left - n)
                    }
                }
                DataCr => match b {
                    b'\r' => DataLf,
                    _ => return Err(Malformed),
                },
                DataLf => match b {
                    b'\n' => Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(Malformed),
                },
                Trailer { len, total } => match b {
                    b'\r' => TrailerLf { len, total },
                    b'\n' => return Err(Malformed),
                    _ if total >= CHUNK_META_LIMIT => return Err(Malformed),
                    _ => Trailer {
                        len: len + 1,
                        total: total + 1,
                    },
                },
                TrailerLf { len, total } => match b {
                    b'\n' if len == 0 => {
                        self.state = Done;
                        return Ok((i + 1, body));
                    }
                    b'\n' => Trailer { len: 0, total },
                    _ => return Err(Malformed),
                },
                Done => return Ok((i, body)),
            };
            i += 1;
        }
        Ok((i, body))
    }

    /// Return true once the last chunk and the trailers were read.
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// How a message's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// A response without length: the body ends with the connection.
    UntilClose,
}

impl Framing {
    /// Take body bytes from `data`; return (bytes used, body bytes, the
    /// body is complete).
    fn feed(&mut self, data: &[u8]) -> Result<(usize, u64, bool), Malformed> {
        match self {
            Framing::Length(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                Ok((n as usize, n, *left == 0))
            }
            Framing::Chunked(c) => {
                let (used, body) = c.feed(data)?;
                Ok((used, body, c.is_done()))
            }
            Framing::UntilClose => Ok((data.len(), data.len() as u64, false)),
        }
    }

    /// Return true if the body is already complete (a zero length).
    fn is_done(&self) -> bool {
        match self {
            Framing::Length(left) => *left == 0,
            Framing::Chunked(c) => c.is_done(),
            Framing::UntilClose => false,
        }
    }
}

/// What the framing headers of a head say.
#[derive(Debug, Default)]
struct Fields {
    length: Option<u64>,
    /// `Transfer-Encoding` was present; its last coding is `chunked`.
    encoded: bool,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

/// Return true if the comma-separated `value` has `token` (ASCII case
/// insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Read the framing and connection fields of `headers`.
fn fields(headers: &[httparse::Header<'_>]) -> Result<Fields, Malformed> {
    let mut f = Fields::default();
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) || v.len() > 19 {
                return Err(Malformed);
            }
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Malformed)?;
            if f.length.is_some_and(|l| l != n) {
                return Err(Malformed);
            }
            f.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            f.encoded = true;
            f.chunked = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            f.close |= has_token(h.value, "close");
            f.keep_alive |= has_token(h.value, "keep-alive");
        }
    }
    Ok(f)
}

/// A complete response, as the client needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Response {
    /// The final status.
    pub(super) status: u16,
    /// The connection must close after it (`Connection: close`, HTTP/1.0
    /// without keep-alive, a body ended by the close).
    pub(super) close: bool,
    /// Body bytes (decoded, for chunked).
    pub(super) body: u64,
}

/// Where a response is.
#[derive(Debug, Clone, Copy)]
enum ResponseState {
    Head,
    Body {
        status: u16,
        close: bool,
        framing: Framing,
        body: u64,
    },
}

/// An incremental HTTP/1.1 response parser (one response at a time).
#[derive(Debug)]
pub(super) struct ResponseParser {
    head: HeadBuf,
    state: ResponseState,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser {
            head: HeadBuf::default(),
            state: ResponseState::Head,
        }
    }
}

impl ResponseParser {
    /// Take `data`; return the bytes used and, once it is complete, the
    /// response (the bytes after it are not used). Interim (1xx) heads
    /// before the final one are skipped.
    ///
    /// # Errors
    /// [`Malformed`]: an unparsable or overlong head, a bad
    /// `Content-Length`, broken chunking.
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<(usize, Option<Response>), Malformed> {
        let mut used = 0;
        while used < data.len() {
            match &mut self.state {
                ResponseState::Head => match self.head.push(&data[used..]) {
                    HeadStep::Partial => return Ok((data.len(), None)),
                    HeadStep::TooLarge => return Err(Malformed),
                    HeadStep::Complete(n) => {
                        used += n;
                        let head = response_head(self.head.bytes());
                        self.head.clear();
                        match head? {
                            None => {} // interim: the final head follows
                            Some((status, close, framing)) => {
                                if framing.is_done() {
                                    return Ok((used, Some(Response::new(status, close, 0))));
                                }
                                self.state = ResponseState::Body {
                                    status,
                                    close,
                                    framing,
                                    body: 0,
                                };
                            }
                        }
                    }
                },
                ResponseState::Body {
                    status,
                    close,
                    framing,
                    body,
                } => {
                    let (n, b, done) = framing.feed(&data[used..])?;
                    used += n;
                    *body += b;
                    if done {
                        let r = Response::new(*status, *close, *body);
                        self.state = ResponseState::Head;
                        return Ok((used, Some(r)));
                    }
                }
            }
        }
        Ok((used, None))
    }

    /// The connection ended: return the response if its body was framed by
    /// the close (it is complete now); otherwise it was cut short.
    pub(super) fn eof(&mut self) -> Option<Response> {
        match self.state {
            ResponseState::Body {
                status,
                framing: Framing::UntilClose,
                body,
                ..
            } => {
                self.state = ResponseState::Head;
                Some(Response::new(status, true, body))
            }
            _ => None,
        }
    }

    /// Forget any partial response.
    pub(super) fn reset(&mut self) {
        self.head.clear();
        self.state = ResponseState::Head;
    }
}

impl Response {
    fn new(status: u16, close: bool, body: u64) -> Response {
        Response {
            status,
            close,
            body,
        }
    }
}

/// Parse a complete response head: `None` for an interim (1xx, not 101)
/// head, else (status, close after, framing).
fn response_head(buf: &[u8]) -> Result<Option<(u16, bool, Framing)>, Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Malformed),
    }
    let status = r.code.ok_or(Malformed)?;
    if (100..200).contains(&status) && status != 101 {
        return Ok(None);
    }
    let f = fields(r.headers)?;
    let http10 = r.version == Some(0);
    let mut close = f.close || (http10 && !f.keep_alive) || status == 101;
    // RFC 9112 §6.3: no body for 1xx, 204 and 304.
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if f.chunked {
        Framing::Chunked(Chunked::default())
    } else if f.encoded {
        close = true;
        Framing::UntilClose
    } else if let Some(n) = f.length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some((status, close, framing)))
}

/// A complete request, as the server needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Request {
    /// The client asked to close after the response (`Connection: close`,
    /// HTTP/1.0 without keep-alive).
    pub(super) close: bool,
}

/// Where a request is.
#[derive(Debug, Clone, Copy)]
enum RequestState {
    Head,
    Body { close: bool, framing: Framing },
}

/// An incremental HTTP/1.1 request parser (one request at a time).
#[derive(Debug)]
pub(super) struct RequestParser {
    head: HeadBuf,
    state: RequestState,
}

impl Default for RequestParser {
    fn default() -> Self {
        RequestParser {
            head: HeadBuf::default(),
            state: RequestState::Head,
        }
    }
}

impl RequestParser {
    /// Take `data`; return the bytes used and, once it is complete, the
    /// request (the bytes after it are the next request's).
    ///
    /// # Errors
    /// [`Malformed`]: an unparsable or overlong head, a bad
    /// `Content-Length`, a transfer coding other than chunked, broken
    /// chunking.
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<(usize, Option<Request>), Malformed> {
        let mut used = 0;
        while used < data.len() {
            match &mut self.state {
                RequestState::Head => match self.head.push(&data[used..]) {
                    HeadStep::Partial => return Ok((data.len(), None)),
                    HeadStep::TooLarge => return Err(Malformed),
                    HeadStep::Complete(n) => {
                        used += n;
                        let head = request_head(self.head.bytes());
                        self.head.clear();
                        let (close, framing) = head?;
                        if framing.is_done() {
                            return Ok((used, Some(Request { close })));
                        }
                        self.state = RequestState::Body { close, framing };
                    }
                },
                RequestState::Body { close, framing } => {
                    let (n, _, done) = framing.feed(&data[used..])?;
                    used += n;
                    if done {
                        let r = Request { close: *close };
                        self.state = RequestState::Head;
                        return Ok((used, Some(r)));
                    }
                }
            }
        }
        Ok((used, None))
    }
}

/// Parse a complete request head: (close after, framing).
fn request_head(buf: &[u8]) -> Result<(bool, Framing), Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Malformed),
    }
    let f = fields(r.headers)?;
    let close = f.close || (r.version == Some(0) && !f.keep_alive);
    let framing = if f.chunked {
        Framing::Chunked(Chunked::default())
    } else if f.encoded {
        // A request body must be delimited (RFC 9112 §6.3): 400.
        return Err(Malformed);
    } else {
        Framing::Length(f.length.unwrap_or(0))
    };
    Ok((close, framing))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `step` bytes; return the responses and the
    /// bytes left after the last one.
    fn responses(input: &[u8], step: usize) -> Result<Vec<Response>, Malformed> {
        let mut p = ResponseParser::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            let mut data = piece;
            while !data.is_empty() {
                let (used, r) = p.feed(data)?;
                data = &data[used..];
                out.extend(r);
            }
        }
        Ok(out)
    }

    #[test]
    fn content_length_and_chunked_responses_frame_in_any_pieces() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
            HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
            3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\n\
            HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        for step in [1, 2, 3, 7, 64, input.len()] {
            assert_eq!(
                responses(input, step).unwrap(),
                [
                    Response::new(200, false, 5),
                    Response::new(404, false, 19),
                    Response::new(204, true, 0),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_body_without_length_ends_with_the_connection() {
        let mut p = ResponseParser::default();
        let (used, r) = p.feed(b"HTTP/1.0 200 OK\r\n\r\nabc").unwrap();
        assert_eq!((used, r), (22, None));
        assert_eq!(p.eof(), Some(Response::new(200, true, 3)));
        // A length-framed body cut short is not complete.
        let mut p = ResponseParser::default();
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
            .unwrap();
        assert_eq!(p.eof(), None);
    }

    #[test]
    fn broken_heads_and_chunking_are_malformed() {
        for bad in [
            &b"HTTP/1.1 2OO OK\r\n\r\n"[..],
            b"SMTP ready\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
        ] {
            assert_eq!(responses(bad, 1), Err(Malformed), "{bad:?}");
            assert_eq!(responses(bad, bad.len()), Err(Malformed), "{bad:?}");
        }
        let long = vec![b'a'; HEAD_LIMIT + 10];
        assert_eq!(responses(&long, 1000), Err(Malformed));
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
            POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n\
            GET /x HTTP/1.1\r\nConnection: close\r\n\r\n";
        for step in [1, 5, input.len()] {
            let mut p = RequestParser::default();
            let mut out = Vec::new();
            for piece in input.chunks(step) {
                let mut data = piece;
                while !data.is_empty() {
                    let (used, r) = p.feed(data).unwrap();
                    data = &data[used..];
                    out.extend(r.map(|r| r.close));
                }
            }
            assert_eq!(out, [false, false, false, true], "step {step}");
        }
        let mut p = RequestParser::default();
        assert_eq!(p.feed(b"NOT HTTP\r\n\r\n"), Err(Malformed));
        let mut p = RequestParser::default();
        assert_eq!(
            p.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(Malformed)
        );
    }
}
