//! Sans-I/O HTTP/1.1: message heads, body framing and chunked scanning.
//!
//! The proxy owns the buffers and the sockets; this module only looks at bytes.
//! [`parse_request`] and [`parse_response`] read a head with `httparse` (into a
//! fixed array of [`MAX_HEADERS`] fields) and then apply the framing rules of
//! RFC 9112 that keep request smuggling out: one unambiguous Content-Length, or
//! exactly `Transfer-Encoding: chunked`, never both. A head that passes is
//! owned ([`RequestHead`], [`ResponseHead`]) so the proxy can rewrite it and
//! [`write_request_head`] / [`write_response_head`] it back out.
//!
//! Bodies are forwarded verbatim, so the codec frames rather than decodes:
//! [`request_framing`] / [`response_framing`] say where a body ends, and
//! [`ChunkedScanner`] walks chunked syntax across reads of any size, stopping
//! exactly at the end of the message (what follows belongs to the next one). It
//! can also hand out the payload, for HTTP/1.0 clients that cannot read chunks.
//!
//! Each error maps to the status Envoy answers with and a stable
//! `response_code_details` string (Envoy's own where it has one).

use crate::http::Headers;

/// Fields per head; a 101st is refused with 431, as Envoy's default
/// `max_request_headers_count` (100).
pub const MAX_HEADERS: usize = 100;

/// Longest chunk-size line (size and extensions) [`ChunkedScanner`] accepts.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// Most trailer bytes [`ChunkedScanner`] accepts (Envoy's default header
/// limit, 60 KiB, which Envoy applies to trailers too).
pub const MAX_TRAILER_BYTES: usize = 60 * 1024;

/// Most trailer fields [`ChunkedScanner`] accepts (as [`MAX_HEADERS`]).
pub const MAX_TRAILER_FIELDS: usize = MAX_HEADERS;

/// An HTTP/1.x protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

impl Version {
    /// Return the version as written on the wire (`HTTP/1.1`).
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A request method. Methods are case-sensitive, so `get` is `Other("get")`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the response has no body whatever its headers say.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `CONNECT`: a 2xx response turns the connection into a tunnel.
    Connect,
    /// `OPTIONS`.
    Options,
    /// `TRACE`.
    Trace,
    /// `PATCH`.
    Patch,
    /// Any other token (Envoy refuses methods outside its list unless
    /// `allow_custom_methods`; that policy is the proxy's).
    Other(String),
}

impl Method {
    /// Return the method for a request-line token.
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        }
    }

    /// Whether this is HEAD (its response has no body).
    pub fn is_head(&self) -> bool {
        *self == Method::Head
    }

    /// Whether this is CONNECT (a 2xx response makes a tunnel).
    pub fn is_connect(&self) -> bool {
        *self == Method::Connect
    }

    /// Return the method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other(token) => token,
        }
    }
}

/// A request head as received (header names lowercased, duplicate
/// Content-Length fields collapsed into one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request-target as received (origin, absolute, authority or
    /// asterisk form).
    pub target: String,
    /// The version the client spoke.
    pub version: Version,
    /// The header fields in arrival order.
    pub headers: Headers,
}

/// A response head as received (header names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The version the server spoke.
    pub version: Version,
    /// The status code (100..=999).
    pub status: u16,
    /// The reason phrase; empty when absent or not ASCII.
    pub reason: String,
    /// The header fields in arrival order.
    pub headers: Headers,
}

/// Why a request head was refused. [`RequestError::status`] is the local
/// reply's status, [`RequestError::details`] its `response_code_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The head is longer than the limit (431, `http1.headers_too_large`).
    #[error("request headers exceed the size limit")]
    HeadersTooLarge,
    /// More than [`MAX_HEADERS`] fields (431, `http1.too_many_headers`).
    #[error("more than {MAX_HEADERS} request headers")]
    TooManyHeaders,
    /// Bad request line or field line, including obs-fold, whitespace before
    /// the colon, and a CR not followed by LF (400, `http1.codec_error`).
    #[error("malformed request head")]
    Malformed,
    /// A control character (NUL, bare CR, DEL, ...) in a field value (400,
    /// `http1.invalid_characters`).
    #[error("invalid character in a request header value")]
    InvalidHeaderValue,
    /// The request-target has a form its method does not allow, or non-ASCII
    /// bytes (400, `http1.invalid_url`).
    #[error("invalid request-target")]
    InvalidTarget,
    /// A well-formed `HTTP/x.y` other than 1.0 and 1.1 (505,
    /// `http1.unsupported_http_version`).
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// A Content-Length that is not a decimal number (or a list of them) that
    /// fits in 64 bits (400, `http1.invalid_content_length`).
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Content-Length values that differ (400,
    /// `http1.conflicting_content_length`).
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// Both Content-Length and Transfer-Encoding (400,
    /// `http1.content_length_and_chunked_not_allowed`).
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthAndChunked,
    /// A Transfer-Encoding other than exactly `chunked`, or any on CONNECT
    /// (501, `http1.invalid_transfer_encoding`).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 message, whose framing RFC 9112 6.1
    /// says to treat as faulty (400, `http1.transfer_encoding_in_http10`).
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    /// A CONNECT request with a body (400, `http1.body_disallowed`).
    #[error("CONNECT request with a body")]
    BodyDisallowed,
    /// An HTTP/1.1 request without Host (400, `missing_host_header`).
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    /// More than one Host field (400, `http1.multiple_host_headers`).
    #[error("more than one Host header")]
    MultipleHost,
}

impl RequestError {
    /// Return the status of the local reply.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::HeadersTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::UnsupportedVersion => 505,
            RequestError::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }

    /// Return the `response_code_details` string (also a counter name).
    pub fn details(&self) -> &'static str {
        match self {
            RequestError::HeadersTooLarge => "http1.headers_too_large",
            RequestError::TooManyHeaders => "http1.too_many_headers",
            RequestError::Malformed => "http1.codec_error",
            RequestError::InvalidHeaderValue => "http1.invalid_characters",
            RequestError::InvalidTarget => "http1.invalid_url",
            RequestError::UnsupportedVersion => "http1.unsupported_http_version",
            RequestError::InvalidContentLength => "http1.invalid_content_length",
            RequestError::ConflictingContentLength => "http1.conflicting_content_length",
            RequestError::ContentLengthAndChunked => "http1.content_length_and_chunked_not_allowed",
            RequestError::UnsupportedTransferEncoding => "http1.invalid_transfer_encoding",
            RequestError::TransferEncodingInHttp10 => "http1.transfer_encoding_in_http10",
            RequestError::BodyDisallowed => "http1.body_disallowed",
            RequestError::MissingHost => "missing_host_header",
            RequestError::MultipleHost => "http1.multiple_host_headers",
        }
    }
}

/// Why a response head was refused; the proxy answers 502 for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The head is longer than the limit (`http1.headers_too_large`).
    #[error("response headers exceed the size limit")]
    HeadersTooLarge,
    /// More than [`MAX_HEADERS`] fields (`http1.too_many_headers`).
    #[error("more than {MAX_HEADERS} response headers")]
    TooManyHeaders,
    /// Bad status line or field line, or a status below 100
    /// (`http1.codec_error`).
    #[error("malformed response head")]
    Malformed,
    /// A control character in a field value (`http1.invalid_characters`).
    #[error("invalid character in a response header value")]
    InvalidHeaderValue,
    /// A well-formed `HTTP/x.y` other than 1.0 and 1.1
    /// (`http1.unsupported_http_version`).
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// A Content-Length that is not a decimal number
    /// (`http1.invalid_content_length`).
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Content-Length values that differ (`http1.conflicting_content_length`).
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// Both Content-Length and Transfer-Encoding
    /// (`http1.content_length_and_chunked_not_allowed`).
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthAndChunked,
    /// A Transfer-Encoding other than exactly `chunked`
    /// (`http1.invalid_transfer_encoding`).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 message
    /// (`http1.transfer_encoding_in_http10`).
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    /// Transfer-Encoding on a 1xx or 204 (`http1.transfer_encoding_not_allowed`).
    #[error("Transfer-Encoding in a 1xx or 204 response")]
    TransferEncodingNotAllowed,
    /// A non-zero Content-Length on a 1xx or 204
    /// (`http1.content_length_not_allowed`).
    #[error("Content-Length in a 1xx or 204 response")]
    ContentLengthNotAllowed,
}

impl ResponseError {
    /// Return the status the proxy answers downstream: always 502.
    pub fn status(&self) -> u16 {
        502
    }

    /// Return the `response_code_details` string (also a counter name).
    pub fn details(&self) -> &'static str {
        match self {
            ResponseError::HeadersTooLarge => "http1.headers_too_large",
            ResponseError::TooManyHeaders => "http1.too_many_headers",
            ResponseError::Malformed => "http1.codec_error",
            ResponseError::InvalidHeaderValue => "http1.invalid_characters",
            ResponseError::UnsupportedVersion => "http1.unsupported_http_version",
            ResponseError::InvalidContentLength => "http1.invalid_content_length",
            ResponseError::ConflictingContentLength => "http1.conflicting_content_length",
            ResponseError::ContentLengthAndChunked => {
                "http1.content_length_and_chunked_not_allowed"
            }
            ResponseError::UnsupportedTransferEncoding => "http1.invalid_transfer_encoding",
            ResponseError::TransferEncodingInHttp10 => "http1.transfer_encoding_in_http10",
            ResponseError::TransferEncodingNotAllowed => "http1.transfer_encoding_not_allowed",
            ResponseError::ContentLengthNotAllowed => "http1.content_length_not_allowed",
        }
    }
}

/// Problems common to requests and responses, converted into each error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadProblem {
    HeadersTooLarge,
    TooManyHeaders,
    Malformed,
    InvalidHeaderValue,
    UnsupportedVersion,
    InvalidContentLength,
    ConflictingContentLength,
    ContentLengthAndChunked,
    UnsupportedTransferEncoding,
    TransferEncodingInHttp10,
}

impl From<HeadProblem> for RequestError {
    fn from(p: HeadProblem) -> RequestError {
        match p {
            HeadProblem::HeadersTooLarge => RequestError::HeadersTooLarge,
            HeadProblem::TooManyHeaders => RequestError::TooManyHeaders,
            HeadProblem::Malformed => RequestError::Malformed,
            HeadProblem::InvalidHeaderValue => RequestError::InvalidHeaderValue,
            HeadProblem::UnsupportedVersion => RequestError::UnsupportedVersion,
            HeadProblem::InvalidContentLength => RequestError::InvalidContentLength,
            HeadProblem::ConflictingContentLength => RequestError::ConflictingContentLength,
            HeadProblem::ContentLengthAndChunked => RequestError::ContentLengthAndChunked,
            HeadProblem::UnsupportedTransferEncoding => RequestError::UnsupportedTransferEncoding,
            HeadProblem::TransferEncodingInHttp10 => RequestError::TransferEncodingInHttp10,
        }
    }
}

impl From<HeadProblem> for ResponseError {
    fn from(p: HeadProblem) -> ResponseError {
        match p {
            HeadProblem::HeadersTooLarge => ResponseError::HeadersTooLarge,
            HeadProblem::TooManyHeaders => ResponseError::TooManyHeaders,
            HeadProblem::Malformed => ResponseError::Malformed,
            HeadProblem::InvalidHeaderValue => ResponseError::InvalidHeaderValue,
            HeadProblem::UnsupportedVersion => ResponseError::UnsupportedVersion,
            HeadProblem::InvalidContentLength => ResponseError::InvalidContentLength,
            HeadProblem::ConflictingContentLength => ResponseError::ConflictingContentLength,
            HeadProblem::ContentLengthAndChunked => ResponseError::ContentLengthAndChunked,
            HeadProblem::UnsupportedTransferEncoding => ResponseError::UnsupportedTransferEncoding,
            HeadProblem::TransferEncodingInHttp10 => ResponseError::TransferEncodingInHttp10,
        }
    }
}

/// What the framing fields of a head said, gathered while copying its fields.
#[derive(Debug, Default)]
struct FramingFields {
    hosts: usize,
    content_length: Option<u64>,
    content_length_fields: usize,
    /// Whether the single Content-Length field already reads as `n` would be
    /// written (no list, no leading zeros).
    content_length_canonical: bool,
    transfer_encoding_fields: usize,
    /// Whether the (first) Transfer-Encoding value is exactly `chunked`.
    chunked: bool,
}

/// Copy httparse's fields into [`Headers`] and check the framing fields.
fn collect_headers(
    fields: &[httparse::Header<'_>],
) -> Result<(Headers, FramingFields), HeadProblem> {
    let mut headers = Headers::with_capacity(fields.len());
    let mut framing = FramingFields::default();
    for field in fields {
        let name = field.name;
        let value = field.value;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value)?;
            if framing.content_length.is_some_and(|prev| prev != n) {
                return Err(HeadProblem::ConflictingContentLength);
            }
            framing.content_length = Some(n);
            framing.content_length_fields += 1;
            let mut digits = [0u8; 20];
            framing.content_length_canonical = value == decimal(n, &mut digits);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            framing.transfer_encoding_fields += 1;
            framing.chunked = trim_ows(value).eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("host") {
            framing.hosts += 1;
        }
        headers.append(name, value);
    }
    Ok((headers, framing))
}

/// Apply the RFC 9112 6.1-6.3 rules shared by requests and responses, in
/// Envoy's order (Content-Length with Transfer-Encoding is 400 before an
/// unknown coding is 501). Leave one canonical Content-Length field.
fn check_framing(
    version: Version,
    headers: &mut Headers,
    framing: &FramingFields,
) -> Result<(), HeadProblem> {
    if framing.transfer_encoding_fields > 0 {
        if framing.content_length_fields > 0 {
            return Err(HeadProblem::ContentLengthAndChunked);
        }
        if version == Version::Http10 {
            return Err(HeadProblem::TransferEncodingInHttp10);
        }
        if framing.transfer_encoding_fields > 1 || !framing.chunked {
            return Err(HeadProblem::UnsupportedTransferEncoding);
        }
    }
    if let Some(n) = framing.content_length {
        if framing.content_length_fields > 1 || !framing.content_length_canonical {
            let mut digits = [0u8; 20];
            headers.set("content-length", decimal(n, &mut digits));
        }
    }
    Ok(())
}

/// Map an httparse error; a version error is looked at more closely, since a
/// well-formed but unsupported version earns 505 rather than 400.
fn httparse_problem(err: httparse::Error, buf: &[u8], is_request: bool) -> Result<(), HeadProblem> {
    match err {
        httparse::Error::TooManyHeaders => Err(HeadProblem::TooManyHeaders),
        httparse::Error::HeaderValue => Err(HeadProblem::InvalidHeaderValue),
        httparse::Error::Version => {
            match classify_version(version_token(buf, is_request), is_request) {
                VersionClass::Unsupported => Err(HeadProblem::UnsupportedVersion),
                VersionClass::Malformed => Err(HeadProblem::Malformed),
                VersionClass::Incomplete => Ok(()),
            }
        }
        _ => Err(HeadProblem::Malformed),
    }
}

enum VersionClass {
    /// `HTTP/` DIGIT `.` DIGIT, just not one we speak.
    Unsupported,
    Malformed,
    /// Too few bytes yet to tell.
    Incomplete,
}

/// Return the bytes from the start of the HTTP-version of the first line (as
/// httparse reads it: empty lines skipped; method and target hold no space).
fn version_token(buf: &[u8], is_request: bool) -> &[u8] {
    let mut s = buf;
    while let Some(rest) = s.strip_prefix(b"\r\n").or_else(|| s.strip_prefix(b"\n")) {
        s = rest;
    }
    if is_request {
        for _ in 0..2 {
            match s.iter().position(|&b| b == b' ') {
                Some(space) => s = s.get(space + 1..).unwrap_or_default(),
                None => return &[],
            }
        }
    }
    s
}

fn classify_version(token: &[u8], is_request: bool) -> VersionClass {
    for (i, &b) in token.iter().enumerate().take(9) {
        let ok = match i {
            0..=4 => b"HTTP/".get(i) == Some(&b),
            5 | 7 => b.is_ascii_digit(),
            6 => b == b'.',
            _ if is_request => b == b'\r' || b == b'\n',
            _ => b == b' ' || b == b'\r' || b == b'\n',
        };
        if !ok {
            return VersionClass::Malformed;
        }
    }
    if token.len() >= 9 {
        VersionClass::Unsupported
    } else {
        VersionClass::Incomplete
    }
}

fn version_from_minor(minor: Option<u8>) -> Result<Version, HeadProblem> {
    match minor {
        Some(0) => Ok(Version::Http10),
        Some(1) => Ok(Version::Http11),
        _ => Err(HeadProblem::Malformed),
    }
}

/// Parse a request head from the start of `buf`.
///
/// Return `Ok(None)` while the head is incomplete, or `Ok(Some((head, len)))`
/// where `buf[..len]` is the head (leading empty lines included) and the body,
/// if any, starts at `len`. `max_headers_bytes` bounds the whole head, request
/// line included (Envoy's `max_request_headers_kb` counts field bytes and the
/// URL; this is slightly stricter).
///
/// Bare LF is accepted as a line end (RFC 9112 2.2 allows it; the head is
/// re-serialized with CRLF, so it never reaches the upstream).
///
/// # Errors
///
/// A [`RequestError`] when the head is too large, malformed, or its framing
/// is ambiguous; see each variant for the status Envoy answers with.
pub fn parse_request(
    buf: &[u8],
    max_headers_bytes: usize,
) -> Result<Option<(RequestHead, usize)>, RequestError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf, max_headers_bytes),
        Err(err) => {
            httparse_problem(err, buf, true)?;
            return incomplete(buf, max_headers_bytes);
        }
    };
    if len > max_headers_bytes {
        return Err(RequestError::HeadersTooLarge);
    }
    let version = version_from_minor(req.version)?;
    let method = Method::from_token(req.method.ok_or(RequestError::Malformed)?);
    let target = req.path.ok_or(RequestError::Malformed)?;
    check_target(&method, target)?;
    let (mut headers, framing) = collect_headers(req.headers)?;
    check_framing(version, &mut headers, &framing)?;
    if method == Method::Connect {
        if framing.transfer_encoding_fields > 0 {
            return Err(RequestError::UnsupportedTransferEncoding);
        }
        match framing.content_length {
            Some(0) => {
                headers.remove("content-length");
            }
            Some(_) => return Err(RequestError::BodyDisallowed),
            None => {}
        }
    }
    if framing.hosts > 1 {
        return Err(RequestError::MultipleHost);
    }
    if framing.hosts == 0 && version == Version::Http11 {
        return Err(RequestError::MissingHost);
    }
    let head = RequestHead {
        method,
        target: target.to_owned(),
        version,
        headers,
    };
    Ok(Some((head, len)))
}

fn incomplete<T, E: From<HeadProblem>>(buf: &[u8], max: usize) -> Result<Option<T>, E> {
    // The head needs at least one more byte, so a full buffer can never fit.
    if buf.len() >= max {
        Err(HeadProblem::HeadersTooLarge.into())
    } else {
        Ok(None)
    }
}

/// Check the request-target form against the method (RFC 9112 3.2): CONNECT
/// takes authority-form, `*` is for OPTIONS, anything else is origin-form or
/// absolute-form. Non-ASCII bytes are refused, as Envoy does.
fn check_target(method: &Method, target: &str) -> Result<(), RequestError> {
    let bytes = target.as_bytes();
    if !target.is_ascii() {
        return Err(RequestError::InvalidTarget);
    }
    let ok = if *method == Method::Connect {
        !bytes.is_empty() && bytes.iter().all(|&b| is_authority_char(b))
    } else if target == "*" {
        *method == Method::Options
    } else if bytes.first() == Some(&b'/') {
        true
    } else {
        is_absolute_form(bytes)
    };
    if ok {
        Ok(())
    } else {
        Err(RequestError::InvalidTarget)
    }
}

fn is_authority_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!$%&'()*+,-.:;=@[]_~".contains(&b)
}

/// `scheme "://" ...` with scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn is_absolute_form(target: &[u8]) -> bool {
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return false;
    };
    let (scheme, rest) = target.split_at(colon);
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && rest.starts_with(b"://")
}

/// Parse a response head from the start of `buf`; see [`parse_request`] for
/// the return value and `max_headers_bytes`.
///
/// A 1xx or 204 response with `Content-Length: 0` has that field removed (as
/// Envoy does); a non-zero one, or any Transfer-Encoding, is an error.
///
/// # Errors
///
/// A [`ResponseError`] when the head is too large, malformed, or its framing
/// is ambiguous; the proxy answers 502 for all of them.
pub fn parse_response(
    buf: &[u8],
    max_headers_bytes: usize,
) -> Result<Option<(ResponseHead, usize)>, ResponseError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf, max_headers_bytes),
        Err(err) => {
            httparse_problem(err, buf, false)?;
            return incomplete(buf, max_headers_bytes);
        }
    };
    if len > max_headers_bytes {
        return Err(ResponseError::HeadersTooLarge);
    }
    let version = version_from_minor(resp.version)?;
    let status = resp.code.ok_or(ResponseError::Malformed)?;
    if status < 100 {
        return Err(ResponseError::Malformed);
    }
    let reason = resp.reason.unwrap_or_default().to_owned();
    let (mut headers, framing) = collect_headers(resp.headers)?;
    check_framing(version, &mut headers, &framing)?;
    if status < 200 || status == 204 {
        if framing.transfer_encoding_fields > 0 {
            return Err(ResponseError::TransferEncodingNotAllowed);
        }
        match framing.content_length {
            Some(0) => {
                headers.remove("content-length");
            }
            Some(_) => return Err(ResponseError::ContentLengthNotAllowed),
            None => {}
        }
    }
    let head = ResponseHead {
        version,
        status,
        reason,
        headers,
    };
    Ok(Some((head, len)))
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: the next message (or nothing) follows the head.
    None,
    /// Exactly this many bytes (never 0; that is [`BodyFraming::None`]).
    Length(u64),
    /// Chunked: run a [`ChunkedScanner`] to find the end.
    Chunked,
    /// Everything until the server closes (responses only); the connection
    /// cannot be reused.
    UntilClose,
    /// After the head the connection is an opaque two-way byte stream: a 2xx
    /// to CONNECT, or 101 Switching Protocols.
    Tunnel,
}

/// Return the body framing of a request, as [`parse_request`] returned it
/// (call it before [`remove_hop_by_hop`], which drops Transfer-Encoding).
/// A CONNECT request has no body; its tunnel starts with the 2xx response.
pub fn request_framing(head: &RequestHead) -> BodyFraming {
    if head.method == Method::Connect {
        return BodyFraming::None;
    }
    if head.headers.contains("transfer-encoding") {
        return BodyFraming::Chunked;
    }
    length_framing(&head.headers).unwrap_or(BodyFraming::None)
}

/// Return the body framing of a response to a `request_method` request
/// (RFC 9112 6.3): a 2xx to CONNECT and a 101 are tunnels; other 1xx, 204,
/// 304 and any response to HEAD have no body; then chunked, Content-Length,
/// or until close.
pub fn response_framing(head: &ResponseHead, request_method: &Method) -> BodyFraming {
    let status = head.status;
    if status == 101 || (*request_method == Method::Connect && (200..300).contains(&status)) {
        return BodyFraming::Tunnel;
    }
    if status < 200 || status == 204 || status == 304 || *request_method == Method::Head {
        return BodyFraming::None;
    }
    if head.headers.contains("transfer-encoding") {
        return BodyFraming::Chunked;
    }
    length_framing(&head.headers).unwrap_or(BodyFraming::UntilClose)
}

fn length_framing(headers: &Headers) -> Option<BodyFraming> {
    let n = parse_content_length(headers.get("content-length")?).ok()?;
    Some(if n == 0 {
        BodyFraming::None
    } else {
        BodyFraming::Length(n)
    })
}

/// Parse a Content-Length value: a decimal number, or a comma-separated list
/// of equal ones (RFC 9110 8.6).
fn parse_content_length(value: &[u8]) -> Result<u64, HeadProblem> {
    let mut result = None;
    for element in value.split(|&b| b == b',') {
        let n = parse_decimal(trim_ows(element)).ok_or(HeadProblem::InvalidContentLength)?;
        if result.is_some_and(|prev| prev != n) {
            return Err(HeadProblem::ConflictingContentLength);
        }
        result = Some(n);
    }
    result.ok_or(HeadProblem::InvalidContentLength)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Write `n` in decimal into `buf`; return the digits.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    // u64::MAX has 20 digits: the loop always ends on `n == 0`.
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
        start -= 1;
        if n == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut digits));
}

/// Trim optional whitespace (SP, HTAB) from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether any `name` field lists `token` (comma-separated, case-insensitive).
fn has_token(headers: &Headers, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .any(|value| list_has_token(value, token.as_bytes()))
}

fn list_has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|element| trim_ows(element).eq_ignore_ascii_case(token))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Field-value bytes: HTAB, SP, VCHAR, obs-text.
fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Return whether the connection stays open after this message: HTTP/1.1
/// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
pub fn keep_alive(version: Version, headers: &Headers) -> bool {
    if has_token(headers, "connection", "close") {
        return false;
    }
    match version {
        Version::Http11 => true,
        Version::Http10 => has_token(headers, "connection", "keep-alive"),
    }
}

/// The value of cookie `name` in the request's `cookie` headers, without
/// the double quotes a quoted value has (as Envoy reads it).
pub fn cookie_value<'h>(headers: &'h Headers, name: &str) -> Option<&'h [u8]> {
    headers.get_all("cookie").find_map(|c| {
        c.split(|b| *b == b';').find_map(|pair| {
            let pair = trim_ows(pair);
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (k, v) = (&pair[..eq], &pair[eq + 1..]);
            if k != name.as_bytes() {
                return None;
            }
            Some(
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v),
            )
        })
    })
}

/// The trailer fields [`ChunkedScanner::scan_parts`] collected (`name:
/// value` lines, each ending in CRLF, already checked by the scanner).
pub fn parse_trailers(raw: &[u8]) -> Headers {
    let mut out = Headers::default();
    for line in raw.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        out.append(&name, trim_ows(&line[colon + 1..]).to_vec());
    }
    out
}

/// Append `trailers` as a chunked body's trailer section, ending the body
/// (the last chunk must have been written before).
pub fn write_trailers(trailers: &Headers, out: &mut Vec<u8>) {
    push_headers(trailers, out);
    out.extend_from_slice(b"\r\n");
}

/// Return whether the client waits for `100 Continue` before sending the
/// body (HTTP/1.1 only: RFC 9110 10.1.1 says to ignore it from HTTP/1.0).
pub fn expects_continue(head: &RequestHead) -> bool {
    head.version == Version::Http11
        && head
            .headers
            .get_all("expect")
            .any(|v| trim_ows(v).eq_ignore_ascii_case(b"100-continue"))
}

/// Return the Upgrade value (e.g. `websocket`) when the request asks to
/// switch protocols: `Connection: upgrade` and a non-empty Upgrade. `h2c` is
/// not offered (Envoy ignores it too); [`remove_hop_by_hop`] then strips it
/// and the request goes on as plain HTTP/1.1.
pub fn is_upgrade(head: &RequestHead) -> Option<&str> {
    if !has_token(&head.headers, "connection", "upgrade") {
        return None;
    }
    let upgrade = head.headers.get_str("upgrade")?;
    let trimmed = trim_ows(upgrade.as_bytes());
    if trimmed.is_empty() || list_has_token(trimmed, b"h2c") {
        return None;
    }
    Some(upgrade)
}

/// The RFC 9110 7.6.1 hop-by-hop fields (plus the legacy Proxy-Connection).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Fields a Connection token may not remove: dropping the framing or Host
/// of a message the proxy forwards would make it mean something else.
const NOT_NOMINATABLE: [&str; 2] = ["content-length", "host"];

/// Remove the hop-by-hop fields and every field named in Connection (except
/// Content-Length and Host). The proxy re-adds `transfer-encoding: chunked`
/// when it forwards a chunked body, and Connection/Upgrade for upgrades.
pub fn remove_hop_by_hop(headers: &mut Headers) {
    // Allocates only when there is a Connection field.
    let mut nominated = Vec::new();
    for value in headers.get_all("connection") {
        nominated.extend_from_slice(value);
        nominated.push(b',');
    }
    headers.retain(|name, _| {
        !(HOP_BY_HOP.contains(&name)
            || (!NOT_NOMINATABLE.contains(&name) && list_has_token(&nominated, name.as_bytes())))
    });
}

fn push_headers(headers: &Headers, out: &mut Vec<u8>) {
    for (name, value) in headers.iter() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn headers_len(headers: &Headers) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum::<usize>()
        + 2
}

/// Append the request head to `out`, always as HTTP/1.1: the proxy speaks
/// 1.1 upstream whatever the client spoke (as Envoy), and frames bodies
/// accordingly. Field names go out lowercase; values must hold no CR, LF or
/// NUL (parsed values cannot; values the proxy adds are its responsibility).
pub fn write_request_head(head: &RequestHead, out: &mut Vec<u8>) {
    out.reserve(head.method.as_str().len() + head.target.len() + 12 + headers_len(&head.headers));
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_headers(&head.headers, out);
}

/// Append the response head to `out` with `version_to_client` in the status
/// line (HTTP/1.0 to a 1.0 client). The reason is `head.reason`, or the
/// standard phrase when that is empty.
pub fn write_response_head(head: &ResponseHead, version_to_client: Version, out: &mut Vec<u8>) {
    let reason = if head.reason.is_empty() {
        reason_phrase(head.status)
    } else {
        &head.reason
    };
    out.reserve(15 + reason.len() + headers_len(&head.headers));
    out.extend_from_slice(version_to_client.as_str().as_bytes());
    out.push(b' ');
    push_decimal(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    push_headers(&head.headers, out);
}

/// Append a complete HTTP/1.1 response the proxy answers itself: status line,
/// `content-length`, `content-type` (omitted when empty), `connection: close`
/// when `close`, and `body`. A 1xx, 204 or 304 gets neither length nor body.
pub fn write_local_reply(
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
    out: &mut Vec<u8>,
) {
    write_reply(status, None, content_type, body, close, out);
}

/// Append a complete HTTP/1.1 redirect (`status` 301, 302, 303, 307 or 308)
/// to `location`, with an empty body and `connection: close` when `close`.
/// `location` must hold no CR, LF or NUL (one built from a parsed request
/// and checked configuration cannot).
pub fn write_redirect(status: u16, location: &str, close: bool, out: &mut Vec<u8>) {
    write_reply(status, Some(location), "", b"", close, out);
}

fn write_reply(
    status: u16,
    location: Option<&str>,
    content_type: &str,
    body: &[u8],
    close: bool,
    out: &mut Vec<u8>,
) {
    let bodiless = status < 200 || status == 204 || status == 304;
    let reason = reason_phrase(status);
    let location_len = location.map_or(0, str::len);
    out.reserve(120 + reason.len() + location_len + content_type.len() + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(location) = location {
        out.extend_from_slice(b"location: ");
        out.extend_from_slice(location.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !bodiless {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
        if !content_type.is_empty() {
            out.extend_from_slice(b"content-type: ");
            out.extend_from_slice(content_type.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(body);
    }
}

/// Return the standard reason phrase of `status`, or `Unknown` (as Envoy).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Why a chunked body was refused: 400 for a request body, 502 for a
/// response body (the proxy decides; the codec does not know which it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk size that is empty or not hex, or junk after it.
    #[error("invalid chunk size")]
    InvalidSize,
    /// A chunk size beyond 64 bits.
    #[error("chunk size overflows 64 bits")]
    SizeOverflow,
    /// A chunk-size line longer than [`MAX_CHUNK_LINE_BYTES`].
    #[error("chunk-size line too long")]
    LineTooLong,
    /// A control character in a chunk extension.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// A line not ended by CRLF (bare CR or bare LF).
    #[error("chunk line not ended by CRLF")]
    BadLineEnding,
    /// Chunk data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingDataCrlf,
    /// A malformed trailer field line (no name, no colon, obs-fold, control
    /// character).
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// More than [`MAX_TRAILER_BYTES`] or [`MAX_TRAILER_FIELDS`].
    #[error("trailers too large")]
    TrailersTooLarge,
}

impl ChunkError {
    /// Return the `response_code_details` string (also a counter name).
    pub fn details(&self) -> &'static str {
        match self {
            ChunkError::InvalidSize => "http1.invalid_chunk_size",
            ChunkError::SizeOverflow => "http1.chunk_size_overflow",
            ChunkError::LineTooLong => "http1.chunk_line_too_long",
            ChunkError::InvalidExtension => "http1.invalid_chunk_extension",
            ChunkError::BadLineEnding => "http1.chunk_bad_line_ending",
            ChunkError::MissingDataCrlf => "http1.chunk_missing_crlf",
            ChunkError::InvalidTrailer => "http1.invalid_trailer",
            ChunkError::TrailersTooLarge => "http1.trailers_too_large",
        }
    }
}

/// Progress of one [`ChunkedScanner`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the input that belong to the chunked body (forward these).
    pub consumed: usize,
    /// The body ended at `consumed`; later bytes are the next message.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In the hex chunk size.
    Size,
    /// Whitespace after the size: `;` or CR must follow.
    SizeWs,
    /// In chunk extensions, until CR.
    Ext,
    /// CR seen at the end of the size line.
    SizeLf,
    /// In chunk data.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen.
    FinalLf,
    Done,
    Failed(ChunkError),
}

/// A streaming validator of a chunked body (RFC 9112 7.1): chunk-size lines
/// (hex, optional extensions, strict CRLF), data, trailer fields and the
/// final empty line. It keeps its state across calls, so the body may arrive
/// split at any byte, and never consumes a byte past the end of the body.
/// Its memory is a few words; it does not allocate.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: ChunkState,
    /// The chunk size being read, then the data bytes left in the chunk.
    size: u64,
    /// Hex digits read in the current size.
    digits: usize,
    /// Bytes in the current size line.
    line: usize,
    trailer_bytes: usize,
    trailer_fields: usize,
}

impl Default for ChunkedScanner {
    fn default() -> ChunkedScanner {
        ChunkedScanner::new()
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a chunked body.
    pub fn new() -> ChunkedScanner {
        ChunkedScanner {
            state: ChunkState::Size,
            size: 0,
            digits: 0,
            line: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    /// Whether the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Validate the next bytes of the body; the caller forwards
    /// `input[..consumed]` verbatim and keeps the rest for the next message
    /// once `done`.
    ///
    /// # Errors
    ///
    /// A [`ChunkError`] at the first byte that breaks the syntax; the scanner
    /// then returns the same error on every later call.
    pub fn scan(&mut self, input: &[u8]) -> Result<Scan, ChunkError> {
        self.scan_payload(input, |_| {})
    }

    /// As [`ChunkedScanner::scan`], and hand each run of chunk data in
    /// `input` to `payload` (to de-chunk for an HTTP/1.0 client; trailers are
    /// dropped).
    ///
    /// # Errors
    ///
    /// As [`ChunkedScanner::scan`].
    pub fn scan_payload(
        &mut self,
        input: &[u8],
        payload: impl FnMut(&[u8]),
    ) -> Result<Scan, ChunkError> {
        self.scan_parts(input, payload, |_| {})
    }

    /// As [`ChunkedScanner::scan_payload`], and also hand each byte of the
    /// trailer section (the field lines, without the final empty line) to
    /// `trailer`; [`parse_trailers`] reads what it collected.
    ///
    /// # Errors
    /// As [`ChunkedScanner::scan`].
    pub fn scan_parts(
        &mut self,
        input: &[u8],
        mut payload: impl FnMut(&[u8]),
        mut trailer: impl FnMut(u8),
    ) -> Result<Scan, ChunkError> {
        let mut pos = 0;
        loop {
            match self.state {
                ChunkState::Done => {
                    return Ok(Scan {
                        consumed: pos,
                        done: true,
                    })
                }
                ChunkState::Failed(err) => return Err(err),
                ChunkState::Data => {
                    let rest = input.get(pos..).unwrap_or_default();
                    if rest.is_empty() {
                        break;
                    }
                    let n =
                        usize::try_from(self.size).map_or(rest.len(), |size| size.min(rest.len()));
                    let (data, _) = rest.split_at(n);
                    payload(data);
                    pos += n;
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                }
                _ => {
                    let Some(&b) = input.get(pos) else { break };
                    pos += 1;
                    let in_trailer = matches!(
                        self.state,
                        ChunkState::TrailerName | ChunkState::TrailerValue | ChunkState::TrailerLf
                    ) || (self.state == ChunkState::TrailerStart && b != b'\r');
                    if let Err(err) = self.step(b) {
                        self.state = ChunkState::Failed(err);
                        return Err(err);
                    }
                    if in_trailer {
                        trailer(b);
                    }
                }
            }
        }
        Ok(Scan {
            consumed: pos,
            done: false,
        })
    }

    /// Advance over one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        match self.state {
            ChunkState::Size | ChunkState::SizeWs | ChunkState::Ext if b != b'\r' => {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE_BYTES {
                    return Err(ChunkError::LineTooLong);
                }
            }
            ChunkState::TrailerStart
            | ChunkState::TrailerName
            | ChunkState::TrailerValue
            | ChunkState::TrailerLf
            | ChunkState::FinalLf => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILER_BYTES {
                    return Err(ChunkError::TrailersTooLarge);
                }
            }
            _ => {}
        }
        self.state = match self.state {
            ChunkState::Size => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if self.size > u64::MAX >> 4 {
                        return Err(ChunkError::SizeOverflow);
                    }
                    let digit = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        _ => b - b'A' + 10,
                    };
                    self.size = self.size << 4 | u64::from(digit);
                    self.digits += 1;
                    ChunkState::Size
                }
                _ if self.digits == 0 => return Err(ChunkError::InvalidSize),
                b';' => ChunkState::Ext,
                b' ' | b'\t' => ChunkState::SizeWs,
                b'\r' => ChunkState::SizeLf,
                b'\n' => return Err(ChunkError::BadLineEnding),
                _ => return Err(ChunkError::InvalidSize),
            },
            ChunkState::SizeWs => match b {
                b' ' | b'\t' => ChunkState::SizeWs,
                b';' => ChunkState::Ext,
                b'\r' => ChunkState::SizeLf,
                b'\n' => return Err(ChunkError::BadLineEnding),
                _ => return Err(ChunkError::InvalidSize),
            },
            ChunkState::Ext => match b {
                b'\r' => ChunkState::SizeLf,
                b'\n' => return Err(ChunkError::BadLineEnding),
                _ if is_field_value_byte(b) => ChunkState::Ext,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ChunkState::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadLineEnding);
                }
                self.line = 0;
                self.digits = 0;
                if self.size == 0 {
                    ChunkState::TrailerStart
                } else {
                    ChunkState::Data
                }
            }
            ChunkState::DataCr => match b {
                b'\r' => ChunkState::DataLf,
                _ => return Err(ChunkError::MissingDataCrlf),
            },
            ChunkState::DataLf => match b {
                b'\n' => ChunkState::Size,
                _ => return Err(ChunkError::MissingDataCrlf),
            },
            ChunkState::TrailerStart => match b {
                b'\r' => ChunkState::FinalLf,
                b'\n' => return Err(ChunkError::BadLineEnding),
                _ if is_tchar(b) => {
                    self.trailer_fields += 1;
                    if self.trailer_fields > MAX_TRAILER_FIELDS {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    ChunkState::TrailerName
                }
                _ => return Err(ChunkError::InvalidTrailer),
            },
            ChunkState::TrailerName => match b {
                b':' => ChunkState::TrailerValue,
                _ if is_tchar(b) => ChunkState::TrailerName,
                _ => return Err(ChunkError::InvalidTrailer),
            },
            ChunkState::TrailerValue => match b {
                b'\r' => ChunkState::TrailerLf,
                _ if is_field_value_byte(b) => ChunkState::TrailerValue,
                _ => return Err(ChunkError::InvalidTrailer),
            },
            ChunkState::TrailerLf => match b {
                b'\n' => ChunkState::TrailerStart,
                _ => return Err(ChunkError::BadLineEnding),
            },
            ChunkState::FinalLf => match b {
                b'\n' => ChunkState::Done,
                _ => return Err(ChunkError::BadLineEnding),
            },
            // Data, Done and Failed are handled by the caller.
            state @ (ChunkState::Data | ChunkState::Done | ChunkState::Failed(_)) => state,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    fn req(raw: &[u8]) -> Result<Option<(RequestHead, usize)>, RequestError> {
        parse_request(raw, MAX)
    }

    fn req_ok(raw: &[u8]) -> (RequestHead, usize) {
        match req(raw) {
            Ok(Some(parsed)) => parsed,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn req_err(raw: &[u8]) -> RequestError {
        match req(raw) {
            Err(err) => err,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn resp_ok(raw: &[u8]) -> (ResponseHead, usize) {
        match parse_response(raw, MAX) {
            Ok(Some(parsed)) => parsed,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn resp_err(raw: &[u8]) -> ResponseError {
        match parse_response(raw, MAX) {
            Err(err) => err,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn with_header(line: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\nHost: a\r\n{line}\r\n\r\n").into_bytes()
    }

    #[test]
    fn parses_a_request_head() {
        let raw =
            b"GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-Tab:\t a b \t\r\nX-Empty:\r\n\r\nbody";
        let (head, len) = req_ok(raw);
        assert_eq!(len, raw.len() - 4);
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.target, "/p?q=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(
            head.headers.iter().collect::<Vec<_>>(),
            [
                ("host", &b"example.com"[..]),
                ("x-tab", b"a b"),
                ("x-empty", b"")
            ]
        );
        assert_eq!(request_framing(&head), BodyFraming::None);
        assert!(keep_alive(head.version, &head.headers));
    }

    #[test]
    fn methods_are_cheap_to_test_and_round_trip() {
        for token in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PURGE",
        ] {
            assert_eq!(Method::from_token(token).as_str(), token);
        }
        assert_eq!(Method::from_token("get"), Method::Other("get".into()));
        let (head, _) = req_ok(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(head.method, Method::Head);
        assert!(head.method.is_head() && !head.method.is_connect());
        assert!(Method::Connect.is_connect() && !Method::Get.is_head());
    }

    #[test]
    fn head_is_incomplete_until_its_last_byte() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for end in 0..raw.len() {
            assert_eq!(req(&raw[..end]), Ok(None), "prefix of {end} bytes");
        }
        let (head, len) = req_ok(raw);
        assert_eq!(len, raw.len());
        assert_eq!(request_framing(&head), BodyFraming::Length(3));

        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        for end in 0..raw.len() {
            assert_eq!(
                parse_response(&raw[..end], MAX),
                Ok(None),
                "prefix of {end} bytes"
            );
        }
        assert_eq!(resp_ok(raw).1, raw.len());
    }

    #[test]
    fn pipelined_requests_parse_one_after_the_other() {
        let raw = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c";
        let (first, len) = req_ok(raw);
        assert_eq!(first.target, "/a");
        let BodyFraming::Length(n) = request_framing(&first) else {
            panic!("framing")
        };
        let rest = &raw[len + n as usize..];
        let (second, len) = req_ok(rest);
        assert_eq!(second.target, "/b");
        assert_eq!(request_framing(&second), BodyFraming::None);
        assert_eq!(req(&rest[len..]), Ok(None));
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let raw = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(req_ok(raw).1, raw.len());
    }

    #[test]
    fn http10_requests() {
        let (head, _) = req_ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(head.version, Version::Http10);
        assert!(!keep_alive(head.version, &head.headers));
        let (head, _) = req_ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(keep_alive(head.version, &head.headers));
        assert!(!expects_continue(
            &req_ok(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").0
        ));
        assert_eq!(
            req_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            RequestError::TransferEncodingInHttp10
        );
    }

    #[test]
    fn head_size_limit() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(parse_request(raw, raw.len()).is_ok_and(|r| r.is_some()));
        assert_eq!(
            parse_request(raw, raw.len() - 1),
            Err(RequestError::HeadersTooLarge)
        );
        // Incomplete and already at the limit.
        assert_eq!(
            parse_request(&raw[..10], 10),
            Err(RequestError::HeadersTooLarge)
        );
        assert_eq!(parse_request(&raw[..10], 11), Ok(None));
        let resp = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(
            parse_response(resp, resp.len() - 1),
            Err(ResponseError::HeadersTooLarge)
        );
        assert_eq!(
            parse_response(&resp[..5], 5),
            Err(ResponseError::HeadersTooLarge)
        );
    }

    #[test]
    fn header_count_limit() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 1..MAX_HEADERS {
            raw.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        let mut full = raw.clone();
        full.extend_from_slice(b"\r\n");
        assert_eq!(req_ok(&full).0.headers.len(), MAX_HEADERS);
        raw.extend_from_slice(b"x-last: v\r\n\r\n");
        assert_eq!(req_err(&raw), RequestError::TooManyHeaders);
        assert_eq!(RequestError::TooManyHeaders.status(), 431);
    }

    #[test]
    fn malformed_request_lines() {
        for raw in [
            &b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"GET /\r\nHost: a\r\n\r\n",
            b"GET / http/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n",
            b"GET / HTTP/11.1\r\nHost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
            b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                req_err(raw),
                RequestError::Malformed,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(RequestError::Malformed.status(), 400);
        assert_eq!(RequestError::Malformed.details(), "http1.codec_error");
    }

    #[test]
    fn unsupported_versions_are_505() {
        for raw in [
            &b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\n",
            b"GET / HTTP/0.9\n",
        ] {
            assert_eq!(req_err(raw), RequestError::UnsupportedVersion);
        }
        // Not yet decidable.
        assert_eq!(req(b"GET / HTTP/2"), Ok(None));
        assert_eq!(req(b"GET / HTTP/2.0"), Ok(None));
        assert_eq!(RequestError::UnsupportedVersion.status(), 505);
        assert_eq!(
            resp_err(b"HTTP/2.0 200 OK\r\n\r\n"),
            ResponseError::UnsupportedVersion
        );
        assert_eq!(
            resp_err(b"HTTP/1.1x 200 OK\r\n\r\n"),
            ResponseError::Malformed
        );
        assert_eq!(
            resp_err(b"HTTQ/1.1 200 OK\r\n\r\n"),
            ResponseError::Malformed
        );
    }

    #[test]
    fn bad_field_lines_are_400() {
        // obs-fold, whitespace before the colon, no colon, empty name, CR in name.
        for line in [
            "X-A: a\r\n b",
            "X-A: a\r\n\tb",
            "X-A : a",
            "X-A a",
            ": a",
            "X\rA: a",
            "X\x00A: a",
        ] {
            assert_eq!(
                req_err(&with_header(line)),
                RequestError::Malformed,
                "{line:?}"
            );
        }
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
            RequestError::Malformed,
            "obs-fold at the first field"
        );
    }

    #[test]
    fn control_characters_in_values_are_400() {
        let long = "v".repeat(64);
        for bad in ["\x00", "\r", "\x7f", "\x01", "\x1b"] {
            for line in [format!("X-A: a{bad}b"), format!("X-A: {long}{bad}{long}")] {
                let err = req_err(&with_header(&line));
                assert!(
                    err == RequestError::InvalidHeaderValue || err == RequestError::Malformed,
                    "{line:?}: {err:?}"
                );
                assert_eq!(err.status(), 400);
            }
        }
        assert_eq!(
            req_err(&with_header("X-A: a\x00b")),
            RequestError::InvalidHeaderValue
        );
        assert_eq!(
            req_err(&with_header("X-A: a\x00b")).details(),
            "http1.invalid_characters"
        );
        // A bare LF ends the line; what follows must be a field line of its own.
        assert_eq!(req_err(&with_header("X-A: a\nb")), RequestError::Malformed);
        // obs-text is allowed.
        assert_eq!(
            req_ok(&with_header("X-A: caf\u{e9}")).0.headers.get("x-a"),
            Some("caf\u{e9}".as_bytes())
        );
        assert_eq!(
            resp_err(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n"),
            ResponseError::InvalidHeaderValue
        );
        assert_eq!(
            resp_err(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n"),
            ResponseError::Malformed
        );
    }

    #[test]
    fn bare_lf_line_ends_are_accepted() {
        let (head, len) = req_ok(b"GET / HTTP/1.1\nHost: a\n\nrest");
        assert_eq!(len, 24);
        assert_eq!(head.headers.get("host"), Some(&b"a"[..]));
    }

    #[test]
    fn content_length_rules() {
        let framing = |line: &str| request_framing(&req_ok(&with_header(line)).0);
        assert_eq!(framing("Content-Length: 5"), BodyFraming::Length(5));
        assert_eq!(framing("Content-Length: 0"), BodyFraming::None);
        assert_eq!(
            framing("Content-Length: 18446744073709551615"),
            BodyFraming::Length(u64::MAX)
        );
        for bad in [
            "",
            "+5",
            "-1",
            "0x5",
            "5 5",
            "5;",
            "1e3",
            "18446744073709551616",
            "99999999999999999999999",
            "5,",
        ] {
            assert_eq!(
                req_err(&with_header(&format!("Content-Length: {bad}"))),
                RequestError::InvalidContentLength,
                "{bad:?}"
            );
        }
        assert_eq!(
            req_err(&with_header("Content-Length: 5, 6")),
            RequestError::ConflictingContentLength
        );
        assert_eq!(
            req_err(&with_header("Content-Length: 5\r\nContent-Length: 6")),
            RequestError::ConflictingContentLength
        );
        // Identical values collapse into one canonical field.
        for same in [
            "Content-Length: 5, 5",
            "Content-Length: 5\r\nContent-Length: 5",
            "Content-Length: 005",
            "content-length: 5 ,5",
        ] {
            let (head, _) = req_ok(&with_header(same));
            assert_eq!(
                head.headers.get_all("content-length").collect::<Vec<_>>(),
                [&b"5"[..]],
                "{same:?}"
            );
            assert_eq!(request_framing(&head), BodyFraming::Length(5));
        }
        assert_eq!(RequestError::ConflictingContentLength.status(), 400);
    }

    #[test]
    fn transfer_encoding_rules() {
        let (head, _) = req_ok(&with_header("Transfer-Encoding: Chunked"));
        assert_eq!(request_framing(&head), BodyFraming::Chunked);
        assert_eq!(
            req_err(&with_header(
                "Transfer-Encoding: chunked\r\nContent-Length: 5"
            )),
            RequestError::ContentLengthAndChunked
        );
        assert_eq!(
            req_err(&with_header("Content-Length: 5\r\nTransfer-Encoding: gzip")),
            RequestError::ContentLengthAndChunked
        );
        for bad in [
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: identity",
            "Transfer-Encoding: chunked;q=1",
            "Transfer-Encoding:",
        ] {
            assert_eq!(
                req_err(&with_header(bad)),
                RequestError::UnsupportedTransferEncoding,
                "{bad:?}"
            );
        }
        let err = RequestError::UnsupportedTransferEncoding;
        assert_eq!(
            (err.status(), err.details()),
            (501, "http1.invalid_transfer_encoding")
        );
        let err = RequestError::ContentLengthAndChunked;
        assert_eq!(
            (err.status(), err.details()),
            (400, "http1.content_length_and_chunked_not_allowed")
        );
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\n\r\n"),
            RequestError::MissingHost
        );
        assert_eq!(RequestError::MissingHost.details(), "missing_host_header");
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            RequestError::MultipleHost
        );
        assert_eq!(
            req_ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n")
                .0
                .headers
                .get("host"),
            Some(&b""[..])
        );
    }

    #[test]
    fn request_target_forms() {
        assert!(req(b"GET http://a.example/x HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        assert!(req(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        for raw in [
            &b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes(),
            b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT http://a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                req_err(raw),
                RequestError::InvalidTarget,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(RequestError::InvalidTarget.details(), "http1.invalid_url");
    }

    #[test]
    fn connect_requests() {
        let (head, _) = req_ok(
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(head.target, "a.example:443");
        assert!(!head.headers.contains("content-length"));
        assert_eq!(request_framing(&head), BodyFraming::None);
        assert_eq!(
            req_err(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            RequestError::BodyDisallowed
        );
        assert_eq!(
            req_err(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            RequestError::UnsupportedTransferEncoding
        );
    }

    #[test]
    fn error_status_and_details_are_total() {
        use RequestError::*;
        let all = [
            HeadersTooLarge,
            TooManyHeaders,
            Malformed,
            InvalidHeaderValue,
            InvalidTarget,
            UnsupportedVersion,
            InvalidContentLength,
            ConflictingContentLength,
            ContentLengthAndChunked,
            UnsupportedTransferEncoding,
            TransferEncodingInHttp10,
            BodyDisallowed,
            MissingHost,
            MultipleHost,
        ];
        let mut details: Vec<_> = all.iter().map(RequestError::details).collect();
        details.sort_unstable();
        details.dedup();
        assert_eq!(details.len(), all.len());
        for err in all {
            assert!([400, 431, 501, 505].contains(&err.status()));
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(ResponseError::Malformed.status(), 502);
    }

    #[test]
    fn parses_a_response_head() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi";
        let (head, len) = resp_ok(raw);
        assert_eq!(
            (head.version, head.status, head.reason.as_str()),
            (Version::Http11, 404, "Not Found")
        );
        assert_eq!(len, raw.len() - 2);
        assert_eq!(head.headers.get("x-a"), Some(&b"b"[..]));
        let (head, _) = resp_ok(b"HTTP/1.0 200\r\n\r\n");
        assert_eq!((head.version, head.reason.as_str()), (Version::Http10, ""));
        assert!(!keep_alive(head.version, &head.headers));
    }

    #[test]
    fn bad_responses_are_502() {
        for (raw, want) in [
            (&b"HTTP/1.1 20 OK\r\n\r\n"[..], ResponseError::Malformed),
            (b"HTTP/1.1 099 Weird\r\n\r\n", ResponseError::Malformed),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                ResponseError::InvalidContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                ResponseError::ConflictingContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                ResponseError::ContentLengthAndChunked,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                ResponseError::UnsupportedTransferEncoding,
            ),
            (
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                ResponseError::TransferEncodingInHttp10,
            ),
            (
                b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
                ResponseError::TransferEncodingNotAllowed,
            ),
            (
                b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n",
                ResponseError::ContentLengthNotAllowed,
            ),
            (
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                ResponseError::ContentLengthNotAllowed,
            ),
        ] {
            let err = resp_err(raw);
            assert_eq!(err, want, "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(err.status(), 502);
        }
        let (head, _) = resp_ok(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        assert!(!head.headers.contains("content-length"));
    }

    #[test]
    fn response_framing_rules() {
        let framing = |raw: &[u8], method: Method| response_framing(&resp_ok(raw).0, &method);
        let ok_len = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
        assert_eq!(framing(ok_len, Method::Get), BodyFraming::Length(7));
        assert_eq!(framing(ok_len, Method::Head), BodyFraming::None);
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Method::Get),
            BodyFraming::None
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(framing(chunked, Method::Post), BodyFraming::Chunked);
        assert_eq!(framing(chunked, Method::Head), BodyFraming::None);
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n", Method::Get),
            BodyFraming::UntilClose
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\n\r\n", Method::Get),
            BodyFraming::UntilClose
        );
        assert_eq!(
            framing(b"HTTP/1.1 100 Continue\r\n\r\n", Method::Put),
            BodyFraming::None
        );
        assert_eq!(
            framing(b"HTTP/1.1 103 Early Hints\r\n\r\n", Method::Get),
            BodyFraming::None
        );
        assert_eq!(
            framing(b"HTTP/1.1 204 No Content\r\n\r\n", Method::Get),
            BodyFraming::None
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Method::Get
            ),
            BodyFraming::None
        );
        assert_eq!(
            framing(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::Get),
            BodyFraming::Tunnel
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 Connection Established\r\n\r\n",
                Method::Connect
            ),
            BodyFraming::Tunnel
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n",
                Method::Connect
            ),
            BodyFraming::Length(3)
        );
    }

    #[test]
    fn connection_semantics() {
        let h = |line: &str| req_ok(&with_header(line)).0;
        assert!(!keep_alive(
            Version::Http11,
            &h("Connection: close").headers
        ));
        assert!(!keep_alive(
            Version::Http11,
            &h("Connection: foo, CLOSE").headers
        ));
        assert!(!keep_alive(
            Version::Http11,
            &h("Connection: foo\r\nConnection: close").headers
        ));
        assert!(keep_alive(
            Version::Http11,
            &h("Connection: closed").headers
        ));
        assert!(!keep_alive(
            Version::Http10,
            &h("Connection: keep-alive, close").headers
        ));
        assert!(keep_alive(
            Version::Http10,
            &h("Connection: x ,\tkeep-alive").headers
        ));

        assert!(expects_continue(&h("Expect: 100-Continue")));
        assert!(!expects_continue(&h("Expect: 200-ok")));

        let ws = h("Connection: keep-alive, Upgrade\r\nUpgrade: websocket");
        assert_eq!(is_upgrade(&ws), Some("websocket"));
        assert_eq!(is_upgrade(&h("Upgrade: websocket")), None);
        assert_eq!(is_upgrade(&h("Connection: upgrade")), None);
        assert_eq!(is_upgrade(&h("Connection: upgrade\r\nUpgrade: ")), None);
        assert_eq!(
            is_upgrade(&h(
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA"
            )),
            None
        );
    }

    #[test]
    fn hop_by_hop_fields_are_removed() {
        let (mut head, _) = req_ok(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Private, content-length, HOST\r\n\
              Keep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: y\r\n\
              X-Private: 1\r\nX-Public: 2\r\nContent-Length: 0\r\n\r\n",
        );
        remove_hop_by_hop(&mut head.headers);
        assert_eq!(
            head.headers.iter().collect::<Vec<_>>(),
            [
                ("host", &b"a"[..]),
                ("x-public", b"2"),
                ("content-length", b"0")
            ]
        );
        let (mut head, _) = req_ok(&with_header("Transfer-Encoding: chunked"));
        remove_hop_by_hop(&mut head.headers);
        assert!(!head.headers.contains("transfer-encoding"));
    }

    #[test]
    fn request_heads_round_trip() {
        let raw = b"POST /a/b?c HTTP/1.1\r\nHost: h\r\nX-Multi: 1\r\nx-multi: 2\r\nContent-Length: 3\r\n\r\n";
        let (head, _) = req_ok(raw);
        let mut out = b"prefix".to_vec();
        write_request_head(&head, &mut out);
        assert_eq!(
            &out[..],
            b"prefixPOST /a/b?c HTTP/1.1\r\nhost: h\r\nx-multi: 1\r\nx-multi: 2\r\ncontent-length: 3\r\n\r\n"
        );
        let (again, len) = req_ok(&out[6..]);
        assert_eq!(again, head);
        assert_eq!(len, out.len() - 6);

        // HTTP/1.0 downstream goes out as HTTP/1.1.
        let (head, _) = req_ok(b"GET /x HTTP/1.0\r\nHost: h\r\n\r\n");
        let mut out = Vec::new();
        write_request_head(&head, &mut out);
        assert!(out.starts_with(b"GET /x HTTP/1.1\r\n"));
        assert_eq!(req_ok(&out).0.version, Version::Http11);
    }

    #[test]
    fn response_heads_round_trip() {
        let raw = b"HTTP/1.1 201 Made It\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
        let (head, _) = resp_ok(raw);
        let mut out = Vec::new();
        write_response_head(&head, Version::Http11, &mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 201 Made It\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(resp_ok(&out).0, head);

        let mut head = head;
        head.reason.clear();
        let mut out = Vec::new();
        write_response_head(&head, Version::Http10, &mut out);
        assert!(out.starts_with(b"HTTP/1.0 201 Created\r\n"));
    }

    #[test]
    fn local_replies() {
        let mut out = Vec::new();
        write_local_reply(431, "text/plain", b"too big", true, &mut out);
        assert_eq!(
            &out[..],
            &b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 7\r\n\
               content-type: text/plain\r\nconnection: close\r\n\r\ntoo big"[..]
        );
        let (head, len) = resp_ok(&out);
        assert_eq!(
            response_framing(&head, &Method::Get),
            BodyFraming::Length(7)
        );
        assert_eq!(&out[len..], b"too big");

        let mut out = Vec::new();
        write_local_reply(404, "", b"", false, &mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        );

        let mut out = Vec::new();
        write_local_reply(204, "text/plain", b"ignored", false, &mut out);
        assert_eq!(&out[..], b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn redirects() {
        let mut out = Vec::new();
        write_redirect(301, "https://a.example/x?y", false, &mut out);
        assert_eq!(
            &out[..],
            &b"HTTP/1.1 301 Moved Permanently\r\nlocation: https://a.example/x?y\r\n\
               content-length: 0\r\n\r\n"[..]
        );
        let (head, len) = resp_ok(&out);
        assert_eq!(len, out.len());
        assert_eq!(
            head.headers.get_str("location"),
            Some("https://a.example/x?y")
        );
        assert_eq!(response_framing(&head, &Method::Get), BodyFraming::None);

        let mut out = Vec::new();
        write_redirect(308, "/y", true, &mut out);
        assert!(out.ends_with(b"location: /y\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"));
        assert!(out.starts_with(b"HTTP/1.1 308 Permanent Redirect\r\n"));
    }

    #[test]
    fn reason_phrases() {
        for status in [
            100, 200, 204, 301, 302, 303, 304, 307, 308, 400, 403, 404, 408, 413, 429, 431, 500,
            501, 502, 503, 504, 505,
        ] {
            assert_ne!(reason_phrase(status), "Unknown", "{status}");
        }
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(599), "Unknown");
    }

    const CHUNKED: &[u8] = b"5;name=\"v a\"\r\nhello\r\n1A \t;x\r\nabcdefghijklmnopqrstuvwxyz\r\n000\r\nX-Sum: 1\r\nY: \r\n\r\nNEXT";
    const PAYLOAD: &[u8] = b"helloabcdefghijklmnopqrstuvwxyz";
    const BODY_LEN: usize = CHUNKED.len() - 4;

    /// Feed `parts` in order; return the bytes consumed, whether done, and the payload.
    fn scan_parts(parts: &[&[u8]]) -> (usize, bool, Vec<u8>) {
        let mut scanner = ChunkedScanner::new();
        let mut consumed = 0;
        let mut payload = Vec::new();
        for part in parts {
            let scan = scanner
                .scan_payload(part, |data| payload.extend_from_slice(data))
                .unwrap();
            consumed += scan.consumed;
            if scan.done {
                assert!(scanner.is_done());
                return (consumed, true, payload);
            }
            assert_eq!(
                scan.consumed,
                part.len(),
                "stopped early without being done"
            );
        }
        (consumed, false, payload)
    }

    #[test]
    fn chunked_body_in_one_piece() {
        let mut scanner = ChunkedScanner::new();
        assert_eq!(
            scanner.scan(CHUNKED),
            Ok(Scan {
                consumed: BODY_LEN,
                done: true
            })
        );
        assert_eq!(
            scanner.scan(b"more"),
            Ok(Scan {
                consumed: 0,
                done: true
            })
        );
        assert_eq!(scan_parts(&[CHUNKED]), (BODY_LEN, true, PAYLOAD.to_vec()));
        assert_eq!(scan_parts(&[b"0\r\n\r\n"]), (5, true, Vec::new()));
    }

    #[test]
    fn chunked_body_split_anywhere() {
        // Byte by byte.
        let bytes: Vec<&[u8]> = CHUNKED.chunks(1).collect();
        assert_eq!(scan_parts(&bytes), (BODY_LEN, true, PAYLOAD.to_vec()));
        // Every pair of cut points.
        for a in 0..=CHUNKED.len() {
            for b in a..=CHUNKED.len() {
                let got = scan_parts(&[&CHUNKED[..a], &CHUNKED[a..b], &CHUNKED[b..]]);
                assert_eq!(got, (BODY_LEN, true, PAYLOAD.to_vec()), "cuts at {a}, {b}");
            }
        }
        // Random splits (xorshift, fixed seed).
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..500 {
            let mut parts = Vec::new();
            let mut rest = CHUNKED;
            while !rest.is_empty() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let n = (seed % 9) as usize;
                let (part, tail) = rest.split_at(n.min(rest.len()));
                parts.push(part);
                rest = tail;
            }
            assert_eq!(scan_parts(&parts), (BODY_LEN, true, PAYLOAD.to_vec()));
        }
    }

    #[test]
    fn chunked_body_incomplete_is_not_done() {
        for end in 0..BODY_LEN {
            let (consumed, done, _) = scan_parts(&[&CHUNKED[..end]]);
            assert_eq!((consumed, done), (end, false), "prefix of {end} bytes");
        }
    }

    fn chunk_err(body: &[u8]) -> ChunkError {
        // Same answer in one piece and byte by byte.
        let whole = ChunkedScanner::new().scan(body).unwrap_err();
        let mut scanner = ChunkedScanner::new();
        let split = body
            .iter()
            .find_map(|b| scanner.scan(std::slice::from_ref(b)).err())
            .unwrap();
        assert_eq!(whole, split);
        assert_eq!(scanner.scan(b"0\r\n\r\n"), Err(whole), "errors are sticky");
        whole
    }

    #[test]
    fn chunked_syntax_errors() {
        use ChunkError::*;
        for (body, want) in [
            (&b"\r\n"[..], InvalidSize),
            (b";ext\r\n", InvalidSize),
            (b"g\r\n", InvalidSize),
            (b"-1\r\n", InvalidSize),
            (b"0x5\r\n", InvalidSize),
            (b"5 5\r\n", InvalidSize),
            (b" 5\r\n", InvalidSize),
            (b"5\n", BadLineEnding),
            (b"5\rx", BadLineEnding),
            (b"5;a\nhello", BadLineEnding),
            (b"5;a\x00\r\n", InvalidExtension),
            (b"5;a\x7f\r\n", InvalidExtension),
            (b"10000000000000000\r\n", SizeOverflow),
            (b"FFFFFFFFFFFFFFFFF\r\n", SizeOverflow),
            (b"5\r\nhelloX\r\n", MissingDataCrlf),
            (b"5\r\nhello\rX", MissingDataCrlf),
            (b"5\r\nhello\n0\r\n\r\n", MissingDataCrlf),
            (b"0\r\n\n", BadLineEnding),
            (b"0\r\n\rX", BadLineEnding),
            (b"0\r\n x: 1\r\n\r\n", InvalidTrailer),
            (b"0\r\n:x\r\n\r\n", InvalidTrailer),
            (b"0\r\nx y: 1\r\n\r\n", InvalidTrailer),
            (b"0\r\nx\r\n\r\n", InvalidTrailer),
            (b"0\r\nx: a\x00b\r\n\r\n", InvalidTrailer),
            (b"0\r\nx: a\nb\r\n\r\n", InvalidTrailer),
            (b"0\r\nx: a\r\r\n", BadLineEnding),
        ] {
            assert_eq!(chunk_err(body), want, "{:?}", String::from_utf8_lossy(body));
        }
        // The largest size still fits.
        let mut scanner = ChunkedScanner::new();
        assert!(scanner
            .scan(b"FFFFFFFFFFFFFFFF\r\nabc")
            .is_ok_and(|s| s.consumed == 21 && !s.done));
        // Many leading zeros are fine up to the line limit.
        let mut long = vec![b'0'; MAX_CHUNK_LINE_BYTES - 1];
        long.extend_from_slice(b"1\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            ChunkedScanner::new().scan(&long),
            Ok(Scan {
                consumed: long.len(),
                done: true
            })
        );
        let mut too_long = b"1;".to_vec();
        too_long.resize(MAX_CHUNK_LINE_BYTES + 1, b'a');
        assert_eq!(chunk_err(&too_long), LineTooLong);
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..=MAX_TRAILER_FIELDS {
            trailers.extend_from_slice(b"x: y\r\n");
        }
        assert_eq!(chunk_err(&trailers), TrailersTooLarge);
        let mut trailers = b"0\r\nx: ".to_vec();
        trailers.resize(MAX_TRAILER_BYTES + 10, b'a');
        assert_eq!(chunk_err(&trailers), TrailersTooLarge);
        assert_eq!(InvalidSize.details(), "http1.invalid_chunk_size");
    }

    #[test]
    fn trailers_are_collected_byte_by_byte_and_parsed() {
        // Split everywhere: the trailer bytes come out the same.
        for cut in 1..BODY_LEN {
            let mut scanner = ChunkedScanner::new();
            let (mut payload, mut trailer) = (Vec::new(), Vec::new());
            let mut consumed = 0;
            for part in [&CHUNKED[..cut], &CHUNKED[cut..]] {
                let scan = scanner
                    .scan_parts(part, |p| payload.extend_from_slice(p), |b| trailer.push(b))
                    .unwrap();
                consumed += scan.consumed;
                if scan.done {
                    break;
                }
            }
            assert_eq!(consumed, BODY_LEN, "cut {cut}");
            assert_eq!(payload, PAYLOAD, "cut {cut}");
            assert_eq!(trailer, b"X-Sum: 1\r\nY: \r\n", "cut {cut}");
        }
        let t = parse_trailers(b"X-Sum: 1\r\nY: \r\n");
        assert_eq!(t.get("x-sum"), Some(&b"1"[..]));
        assert_eq!(t.get("y"), Some(&b""[..]));
        let mut out = Vec::new();
        write_trailers(&t, &mut out);
        assert_eq!(parse_trailers(&out).get("x-sum"), Some(&b"1"[..]));
        assert!(out.ends_with(b"\r\n\r\n"), "{out:?}");
        // No trailers: nothing collected.
        let mut trailer = Vec::new();
        let scan = ChunkedScanner::new()
            .scan_parts(b"0\r\n\r\n", |_| {}, |b| trailer.push(b))
            .unwrap();
        assert!(scan.done && trailer.is_empty());
        assert!(parse_trailers(b"").iter().next().is_none());
    }

    #[test]
    fn cookie_values_are_found_and_unquoted() {
        let mut h = Headers::default();
        h.append("cookie", "a=1; s=\"abc\"");
        h.append("cookie", "t=x=y");
        assert_eq!(cookie_value(&h, "a"), Some(&b"1"[..]));
        assert_eq!(cookie_value(&h, "s"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&h, "t"), Some(&b"x=y"[..]));
        assert_eq!(cookie_value(&h, "S"), None);
        assert_eq!(cookie_value(&h, "b"), None);
    }
}
