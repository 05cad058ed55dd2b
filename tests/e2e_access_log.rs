//! End-to-end: Envoy file access logs (`access_log` on an http_connection_manager and on
//! a tcp_proxy), written by zerohop's writer thread to files on the host.
//!
//! Same topology as `e2e_http_proxy.rs` ([`ProxyTopology`]): clients in C, zerohop in P
//! on two `net_af_packet` ports, servers in U. zerohop runs in its own network namespace
//! but shares the filesystem, so its log files live in a [`TempDir`] the test reads.
//!
//! Every line is parsed against a pattern built from the very format zerohop was given
//! ([`Pattern`]: a regular expression of literals and typed fields, matched with
//! backtracking; the `regex` crate is not a dev-dependency), and matched to the request
//! or connection the test made: method, path, protocol, status, flags, byte counts,
//! upstream host, client address, request id, user agent (cut to the format's length),
//! `DURATION` a number and `START_TIME` an RFC 3339 time within the request's window.
//! Then the counters zerohop logs at exit: `access_logs.file.logs_written`,
//! `access_logs.file.logs_dropped`, `filesystem.write_completed`,
//! `filesystem.write_failed` (process-wide).
//!
//! The last test points a log at a named pipe that nobody reads: the writer thread
//! blocks once the pipe is full, the listener's queue (65536 records) fills, and the
//! records that follow must be dropped and counted while the traffic goes on at its
//! usual rate; at exit zerohop leaves the stuck writer behind and still exits 0.
//!
//! The tests run one at a time ([`one_at_a_time`]): the last one compares request
//! rates. Needs root; run with `cargo test --test e2e_access_log`.

mod common;

use common::*;
use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERVER_READY: Duration = Duration::from_secs(15);
/// How long the test waits for the writer thread (it flushes every ~10 ms) to put the
/// expected lines in a file.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// Slack on `START_TIME` around the window the test measured with the same wall clock
/// (only a clock step could need it).
const CLOCK_SLACK: Duration = Duration::from_secs(1);
/// A port in U where nothing listens: connections to it are refused.
const REFUSING_PORT: u16 = 9999;

/// Envoy's default access log format, as Envoy documents it (written independently of
/// zerohop's constant, so that the test checks zerohop's against Envoy's).
const ENVOY_DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% \
     %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \
     %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
     \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \
     \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

// ---- Config ----

/// The `dataplane` section of [`ProxyTopology`]: one worker, ports `down` and `up`.
fn dataplane(topo: &ProxyTopology) -> String {
    let (down, up) = (topo.veth_c.proxy_if(), topo.veth_u.proxy_if());
    format!(
        r#"dataplane:
  cores: [{core}]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: down
      device: "net_af_packet0,iface={down}"
      address: {PROXY_DOWN}/24
    - name: up
      device: "net_af_packet1,iface={up}"
      address: {PROXY_UP}/24
"#,
        core = worker_core(),
    )
}

/// An entry of `clusters:`: `name`, one endpoint `UPSTREAM:port`.
fn cluster(name: &str, port: u16) -> String {
    format!(
        r#"  - name: {name}
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {UPSTREAM}, port_value: {port} }} }} }}
"#
    )
}

/// `text` as a double-quoted YAML string.
fn yaml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An `access_log:` key of an http_connection_manager or tcp_proxy `typed_config`
/// (indented ten spaces): one file logger per (path, format); `None`: no `log_format`,
/// Envoy's default.
fn access_logs(logs: &[(&Path, Option<&str>)]) -> String {
    let mut out = String::from("          access_log:\n");
    for (path, format) in logs {
        let path = yaml_string(path.to_str().expect("utf-8 path"));
        out.push_str(&format!(
            r#"          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {path}
"#
        ));
        if let Some(format) = format {
            out.push_str(&format!(
                "              log_format:\n                text_format_source:\n                  \
                 inline_string: {}\n",
                yaml_string(format)
            ));
        }
    }
    out
}

/// An entry of `listeners:`: `name` on 0.0.0.0:`port`, a tcp_proxy (stat_prefix `name`)
/// to `cluster` with `extra` (keys of its `typed_config`, indented ten spaces).
fn tcp_listener(name: &str, port: u16, cluster: &str, extra: &str) -> String {
    format!(
        r#"  - name: {name}
    address:
      socket_address: {{ address: 0.0.0.0, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: {cluster}
          idle_timeout: 30s
{extra}"#
    )
}

/// The whole config: [`dataplane`], `admin` (an `admin:` section or empty), `listeners`
/// and `clusters`.
fn config(topo: &ProxyTopology, admin: &str, listeners: &str, clusters: &str) -> String {
    format!(
        "{}{admin}static_resources:\n  listeners:\n{listeners}  clusters:\n{clusters}",
        dataplane(topo)
    )
}

/// Start `tests/fixtures/http/upstream.py --name NAME` on `UPSTREAM:port` in U.
fn http_upstream(topo: &ProxyTopology, name: &str, port: u16) -> LoggedProcess {
    let script = fixture("http/upstream.py");
    let port = port.to_string();
    let args = [
        script.to_str().expect("utf-8 path"),
        "--addr",
        UPSTREAM,
        "--port",
        &port,
        "--name",
        name,
    ];
    let mut p = topo
        .ns_u
        .spawn_logged("python3", &args, &format!("upstream {name}"));
    p.wait_for("ready", SERVER_READY);
    p
}

// ---- Parsing log lines ----

/// What one field of a log line may look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `%START_TIME%`: `2024-05-01T12:00:00.000Z`.
    Time,
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/1.0` or `-`.
    Protocol,
    /// A decimal number.
    Number,
    /// `%RESPONSE_FLAGS%`: `-` or short names (`UF`, `UF,URX`).
    Flags,
    /// `ip:port` or `-`.
    Addr,
    /// One word: no space, no `"`.
    Token,
    /// A header value (`-` when absent): anything but `"` and a line end, at most that
    /// many bytes when the command has a `:length`.
    Text(Option<usize>),
}

impl Kind {
    /// The kind of field command `command` (`REQ(USER-AGENT):10`, `DURATION`) writes.
    fn of(command: &str) -> Kind {
        let name_end = command.find(['(', ':']).unwrap_or(command.len());
        match &command[..name_end] {
            "START_TIME" => Kind::Time,
            "PROTOCOL" => Kind::Protocol,
            "RESPONSE_CODE" | "BYTES_RECEIVED" | "BYTES_SENT" | "DURATION" => Kind::Number,
            "RESPONSE_FLAGS" => Kind::Flags,
            "UPSTREAM_HOST"
            | "UPSTREAM_REMOTE_ADDRESS"
            | "DOWNSTREAM_REMOTE_ADDRESS"
            | "DOWNSTREAM_LOCAL_ADDRESS" => Kind::Addr,
            "UPSTREAM_CLUSTER" => Kind::Token,
            "REQ" | "RESP" | "REQUEST_HEADER" | "RESPONSE_HEADER" => {
                let length = command
                    .rsplit_once("):")
                    .map(|(_, n)| n.parse().expect("a length after `):`"));
                Kind::Text(length)
            }
            other => panic!("the test's patterns do not know command %{other}%"),
        }
    }

    /// Whether `c` may appear in such a field.
    fn allows(self, c: char) -> bool {
        match self {
            Kind::Text(_) => c != '"' && c != '\n' && c != '\r',
            _ => !c.is_whitespace() && c != '"',
        }
    }

    /// Whether `value` (made of allowed characters) is such a field.
    fn accepts(self, value: &str) -> bool {
        match self {
            Kind::Time => parse_time(value).is_some(),
            Kind::Protocol => matches!(value, "HTTP/1.1" | "HTTP/1.0" | "-"),
            Kind::Number => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
            Kind::Flags => {
                value == "-"
                    || value.split(',').all(|f| {
                        (1..=5).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_uppercase())
                    })
            }
            Kind::Addr => value == "-" || value.parse::<SocketAddr>().is_ok(),
            Kind::Token => !value.is_empty(),
            Kind::Text(max) => max.map_or(true, |max| value.len() <= max),
        }
    }
}

/// A pattern built from an access log format: its literal text and, for each command,
/// a typed field named by the command (`REQ(X-REQUEST-ID)`). It matches a whole line,
/// as an anchored regular expression would (`%START_TIME(...)%` with its own `%`s and
/// `%%` are not supported: the tests' formats use neither).
struct Pattern {
    pieces: Vec<Piece>,
}

enum Piece {
    Literal(String),
    Field(String, Kind),
}

/// One parsed line: the value of each command of the format.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    fields: HashMap<String, String>,
}

impl Line {
    /// The value of `command` (as written in the format), which the format has.
    fn get(&self, command: &str) -> &str {
        self.fields
            .get(command)
            .unwrap_or_else(|| panic!("no %{command}% in {:?}", self.text))
    }

    fn num(&self, command: &str) -> u64 {
        self.get(command).parse().expect("a Number field")
    }
}

impl Pattern {
    fn new(format: &str) -> Pattern {
        let mut pieces = Vec::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            if at > 0 {
                pieces.push(Piece::Literal(rest[..at].to_owned()));
            }
            let after = &rest[at + 1..];
            let end = after.find('%').expect("a command closed with `%`");
            let command = &after[..end];
            pieces.push(Piece::Field(command.to_owned(), Kind::of(command)));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_owned()));
        }
        Pattern { pieces }
    }

    /// Match `line` (with its `\n`) whole; the fields, or `None`.
    fn parse(&self, line: &str) -> Option<Line> {
        let mut fields = Vec::new();
        if !match_pieces(&self.pieces, line, &mut fields) {
            return None;
        }
        Some(Line {
            text: line.to_owned(),
            fields: fields.into_iter().collect(),
        })
    }

    /// Every line of `text`, each of which must match; panic naming the first that
    /// does not (or an unterminated last line).
    fn parse_all(&self, text: &str, what: &str) -> Vec<Line> {
        text.split_inclusive('\n')
            .map(|l| {
                self.parse(l).unwrap_or_else(|| {
                    panic!("{what}: line {l:?} does not match its format\nwhole log:\n{text}")
                })
            })
            .collect()
    }
}

/// Backtracking match of `pieces` against all of `text`, shortest fields first.
fn match_pieces(pieces: &[Piece], text: &str, out: &mut Vec<(String, String)>) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return text.is_empty();
    };
    match first {
        Piece::Literal(l) => text
            .strip_prefix(l.as_str())
            .is_some_and(|after| match_pieces(rest, after, out)),
        Piece::Field(name, kind) => {
            let mut ends = vec![0];
            for (i, c) in text.char_indices() {
                if !kind.allows(c) {
                    break;
                }
                ends.push(i + c.len_utf8());
            }
            for end in ends {
                let value = &text[..end];
                if !kind.accepts(value) {
                    continue;
                }
                out.push((name.clone(), value.to_owned()));
                if match_pieces(rest, &text[end..], out) {
                    return true;
                }
                out.pop();
            }
            false
        }
    }
}

/// Parse `2024-05-01T12:00:00.000Z` (UTC, milliseconds: Envoy's default `START_TIME`).
fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let n = |from: usize, to: usize| s[from..to].parse::<i64>().ok();
    let (year, month, day) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (hour, minute, second, ms) = (n(11, 13)?, n(14, 16)?, n(17, 19)?, n(20, 23)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms_total = ((days * 24 + hour) * 60 + minute) * 60 * 1000 + second * 1000 + ms;
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms_total).ok()?))
}

/// Wait until `path` holds at least `lines` complete lines; return its text. Panic
/// after [`LOG_WAIT`] with what it holds and zerohop's log.
fn wait_lines(path: &Path, lines: usize, zerohop: &Zerohop) -> String {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let complete = text.bytes().filter(|&b| b == b'\n').count();
        if complete >= lines {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {complete} lines after {LOG_WAIT:?}, want {lines}:\n{text}\nzerohop log:\n{}",
            path.display(),
            zerohop.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Panic unless `time` (a `START_TIME`) lies within `window` (with [`CLOCK_SLACK`]).
fn assert_time_within(time: &str, window: (SystemTime, SystemTime), line: &str) {
    let at = parse_time(time).expect("a Time field");
    let (from, to) = window;
    assert!(
        at + CLOCK_SLACK >= from && at <= to + CLOCK_SLACK,
        "START_TIME {time} is outside the request's window {:?}..{:?} (ms since the \
         epoch): {line:?}",
        from.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
        to.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    );
}

/// Stop zerohop (SIGTERM), check a clean exit after traffic, and return its log.
fn stop(z: Zerohop) -> String {
    let (status, log) = z.terminate();
    assert_clean_exit_after_traffic(status, &log, &["down", "up"]);
    log
}

/// The value of stat `name` in the exit log; panic if it is not there.
fn stat_of(log: &str, name: &str) -> u64 {
    stat(log, name).unwrap_or_else(|| panic!("no `stat {name}:` in the exit log:\n{log}"))
}

// ---- HTTP ----

const HTTP_PORT: u16 = 8080;
/// The upstream of cluster `a`.
const A_PORT: u16 = 9001;
/// The custom format of the HTTP test: every command the checks need, the user agent
/// cut to 10 bytes.
const HTTP_FORMAT: &str = "%START_TIME% %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% \
     %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
     %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %DOWNSTREAM_REMOTE_ADDRESS% \
     %DOWNSTREAM_LOCAL_ADDRESS% %REQ(X-REQUEST-ID)% %REQ(USER-AGENT):10%\n";
/// The size of the body the POST sends.
const UPLOAD_BYTES: usize = 7777;
/// The size of the file the GET of `/bytes/N` fetches.
const DOWNLOAD_BYTES: u64 = 12_345;

/// One request the HTTP test sends, and what its log lines must say.
struct Request {
    /// Its `x-request-id`, unique: the key that finds its lines.
    id: String,
    /// Sent without an `x-request-id`: zerohop generates one (`generate_request_id`,
    /// default true), sends it upstream (which echoes it as `rid=`) and logs it, as
    /// Envoy does; `id` is then filled in from the upstream's answer.
    generated_id: bool,
    method: &'static str,
    /// The path as sent (the log shows it as sent, before any rewrite).
    path: &'static str,
    protocol: &'static str,
    status: u16,
    flags: &'static str,
    /// Body bytes from the client.
    received: u64,
    /// `ip:port` of the endpoint, or `-`.
    upstream: String,
    cluster: &'static str,
    /// The client's address as zerohop sees it.
    downstream: String,
    user_agent: Option<&'static str>,
    xff: Option<&'static str>,
    /// curl arguments beyond the common ones.
    args: Vec<String>,
    /// Filled in once sent: body bytes curl received, and when (wall clock) its curl
    /// ran and how long (monotonic).
    sent: u64,
    window: (SystemTime, SystemTime),
    took: Duration,
}

/// Run one curl in C for `requests` (one `--next` part each, so they share a keep-alive
/// connection, from local port `local_port`) and fill in what each got.
fn send(topo: &ProxyTopology, z: &Zerohop, dir: &Path, local_port: u16, requests: &mut [Request]) {
    let mut args: Vec<String> = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if i > 0 {
            args.push("--next".to_owned());
        }
        let body = dir.join(format!("body-{}", r.id));
        args.extend(
            [
                "-sS",
                "--noproxy",
                "*",
                "--max-time",
                "10",
                "--local-port",
                &local_port.to_string(),
                "-o",
                body.to_str().expect("utf-8 path"),
                "-w",
                "%{http_code} %{size_download}\\n",
            ]
            .map(str::to_owned),
        );
        if !r.generated_id {
            args.extend(["-H".to_owned(), format!("x-request-id: {}", r.id)]);
        }
        match r.user_agent {
            Some(ua) => args.extend(["-A".to_owned(), ua.to_owned()]),
            None => args.extend(["-H".to_owned(), "User-Agent:".to_owned()]),
        }
        if let Some(xff) = r.xff {
            args.extend(["-H".to_owned(), format!("X-Forwarded-For: {xff}")]);
        }
        args.extend(r.args.iter().cloned());
        args.push(format!("http://{PROXY_DOWN}:{HTTP_PORT}{}", r.path));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let from = SystemTime::now();
    let started = Instant::now();
    let out = topo.ns_c.run("curl", &argv, Duration::from_secs(30));
    let took = started.elapsed();
    let to = SystemTime::now();
    let stdout = out.stdout_str();
    assert!(
        out.success(),
        "curl {argv:?} failed ({}): {}\n{stdout}\nzerohop log:\n{}",
        describe(out.status),
        out.stderr,
        z.log()
    );
    let answers: Vec<(u16, u64)> = stdout
        .lines()
        .map(|l| {
            let (code, size) = l.split_once(' ').expect("`CODE SIZE`");
            (code.parse().expect("code"), size.parse().expect("size"))
        })
        .collect();
    assert_eq!(answers.len(), requests.len(), "curl printed {stdout:?}");
    for (r, (code, size)) in requests.iter_mut().zip(answers) {
        assert_eq!(
            code,
            r.status,
            "{} {}: status\nzerohop log:\n{}",
            r.method,
            r.path,
            z.log()
        );
        r.sent = size;
        r.window = (from, to);
        r.took = took;
        if r.generated_id {
            let body = fs::read_to_string(dir.join(format!("body-{}", r.id))).unwrap_or_default();
            let rid = body.lines().find_map(|l| l.strip_prefix("rid="));
            r.id = match rid {
                Some(rid) if !rid.is_empty() => rid.to_owned(),
                _ => panic!("the upstream got no generated x-request-id:\n{body}"),
            };
        }
    }
}

/// Check the custom-format line of `r`.
fn check_custom_line(line: &Line, r: &Request) {
    let t = &line.text;
    let want_ua = match r.user_agent {
        Some(ua) => &ua[..ua.len().min(10)],
        None => "-",
    };
    for (command, want) in [
        ("REQ(:METHOD)", r.method.to_owned()),
        ("REQ(X-ENVOY-ORIGINAL-PATH?:PATH)", r.path.to_owned()),
        ("PROTOCOL", r.protocol.to_owned()),
        ("RESPONSE_CODE", r.status.to_string()),
        ("RESPONSE_FLAGS", r.flags.to_owned()),
        ("BYTES_RECEIVED", r.received.to_string()),
        ("BYTES_SENT", r.sent.to_string()),
        ("UPSTREAM_HOST", r.upstream.clone()),
        ("UPSTREAM_CLUSTER", r.cluster.to_owned()),
        ("DOWNSTREAM_REMOTE_ADDRESS", r.downstream.clone()),
        (
            "DOWNSTREAM_LOCAL_ADDRESS",
            format!("{PROXY_DOWN}:{HTTP_PORT}"),
        ),
        ("REQ(X-REQUEST-ID)", r.id.clone()),
        ("REQ(USER-AGENT):10", want_ua.to_owned()),
    ] {
        assert_eq!(line.get(command), want, "%{command}% of {t:?}");
    }
    assert_time_within(line.get("START_TIME"), r.window, t);
    // The request lived within its curl's run; the log is queued when the exchange
    // ends, which may be a moment after curl has its last byte.
    let duration = line.num("DURATION");
    assert!(
        u128::from(duration) <= r.took.as_millis() + 1000,
        "DURATION {duration} ms, but curl ran {:?}: {t:?}",
        r.took
    );
}

/// Check the default-format line of `r`, and that it shows the same record as its
/// custom-format line `custom`.
fn check_default_line(line: &Line, r: &Request, custom: &Line) {
    let t = &line.text;
    let quoted_or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    for (command, want) in [
        ("REQ(:METHOD)", r.method.to_owned()),
        ("REQ(X-ENVOY-ORIGINAL-PATH?:PATH)", r.path.to_owned()),
        ("PROTOCOL", r.protocol.to_owned()),
        ("RESPONSE_CODE", r.status.to_string()),
        ("RESPONSE_FLAGS", r.flags.to_owned()),
        ("BYTES_RECEIVED", r.received.to_string()),
        ("BYTES_SENT", r.sent.to_string()),
        // zerohop adds no x-envoy-upstream-service-time (docs/envoy-compat.md).
        ("RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)", "-".to_owned()),
        ("REQ(X-FORWARDED-FOR)", quoted_or_dash(r.xff)),
        ("REQ(USER-AGENT)", quoted_or_dash(r.user_agent)),
        ("REQ(X-REQUEST-ID)", r.id.clone()),
        ("REQ(:AUTHORITY)", format!("{PROXY_DOWN}:{HTTP_PORT}")),
        ("UPSTREAM_HOST", r.upstream.clone()),
        // One record, two formats.
        ("START_TIME", custom.get("START_TIME").to_owned()),
        ("DURATION", custom.get("DURATION").to_owned()),
    ] {
        assert_eq!(line.get(command), want, "%{command}% of {t:?}");
    }
}

/// An HCM with two file loggers: Envoy's default format (no `log_format`) and a custom
/// one. Ten requests, nine with an `x-request-id` of their own: two GETs on one
/// keep-alive connection (200), a POST of 7777 bytes (BYTES_RECEIVED 7777), a GET of a
/// 12345-byte file (BYTES_SENT 12345), a path no route matches (404, `NR`, no upstream
/// host or cluster), a route to a cluster whose only endpoint refuses connections (503,
/// `UF`, that endpoint as upstream host), an HTTP/1.0 GET through a `prefix_rewrite`
/// with an `x-forwarded-for` (the path logged as sent; the client taken from
/// `x-forwarded-for`, as `use_remote_address: false` says), a GET without a user agent
/// (`-`), a DELETE; and a GET without `x-request-id`, whose line must carry the id
/// zerohop generated and sent upstream. `DOWNSTREAM_LOCAL_ADDRESS` is the address the
/// client connected to (10.0.0.1:8080, not the listener's 0.0.0.0). Each file gets
/// exactly one line per request, every line parses with its format and matches its
/// request, both files show the same `START_TIME` and `DURATION` for a request, and the
/// exit counters agree: 20 lines written, none dropped, no write failed.
#[test]
fn http_access_log_lines_match_the_requests() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let topo = ProxyTopology::new();
    let _a = http_upstream(&topo, "a", A_PORT);
    let logs = TempDir::new("alog-http");
    let default_log = logs.path().join("default.log");
    let custom_log = logs.path().join("custom.log");
    let routes = r#"              - match: { prefix: "/ok/" }
                route: { cluster: a }
              - match: { prefix: "/rw/" }
                route: { cluster: a, prefix_rewrite: "/ok/" }
              - match: { prefix: "/upload" }
                route: { cluster: a }
              - match: { prefix: "/bytes/" }
                route: { cluster: a }
              - match: { prefix: "/refused/" }
                route: { cluster: dead }
"#;
    let listener = http_listener(
        "ingress",
        HTTP_PORT,
        &access_logs(&[(&default_log, None), (&custom_log, Some(HTTP_FORMAT))]),
        routes,
    );
    let clusters = cluster("a", A_PORT) + &cluster("dead", REFUSING_PORT);
    let mut z = Zerohop::start_in(Some(&topo.ns_p), &config(&topo, "", &listener, &clusters));
    z.wait_ready(READY_TIMEOUT);
    assert!(
        default_log.exists() && custom_log.exists(),
        "zerohop should create its log files at start"
    );

    let upload = logs.path().join("upload.bin");
    fs::write(&upload, test_payload(UPLOAD_BYTES)).expect("write the upload");
    let uid = unique_id();
    let a = format!("{UPSTREAM}:{A_PORT}");
    let request = |n: u32, method, path, user_agent| Request {
        id: format!("alog-{uid}-{n}"),
        generated_id: false,
        method,
        path,
        protocol: "HTTP/1.1",
        status: 200,
        flags: "-",
        received: 0,
        upstream: a.clone(),
        cluster: "a",
        downstream: String::new(),
        user_agent,
        xff: None,
        args: Vec::new(),
        sent: 0,
        window: (UNIX_EPOCH, UNIX_EPOCH),
        took: Duration::ZERO,
    };
    let mut groups: Vec<(u16, Vec<Request>)> = vec![
        (
            41001,
            vec![
                request(1, "GET", "/ok/first?n=1", Some("ua01-first-request")),
                request(2, "GET", "/ok/second", Some("ua02-second-request")),
            ],
        ),
        (
            41002,
            vec![Request {
                received: UPLOAD_BYTES as u64,
                args: [
                    "--data-binary",
                    &format!("@{}", upload.display()),
                    "-H",
                    "Content-Type: application/octet-stream",
                    "-H",
                    "Expect:",
                ]
                .map(str::to_owned)
                .to_vec(),
                ..request(3, "POST", "/upload/body", Some("ua03-uploader"))
            }],
        ),
        (
            41003,
            vec![request(4, "GET", "/bytes/12345", Some("ua04-downloader"))],
        ),
        (
            41004,
            vec![Request {
                status: 404,
                flags: "NR",
                upstream: "-".to_owned(),
                cluster: "-",
                ..request(5, "GET", "/nothing/here", Some("ua05-lost-client"))
            }],
        ),
        (
            41005,
            vec![Request {
                status: 503,
                flags: "UF",
                upstream: format!("{UPSTREAM}:{REFUSING_PORT}"),
                cluster: "dead",
                ..request(6, "GET", "/refused/x", Some("ua06-refused"))
            }],
        ),
        (
            41006,
            vec![Request {
                protocol: "HTTP/1.0",
                xff: Some("192.0.2.7"),
                downstream: "192.0.2.7:0".to_owned(),
                args: vec!["--http1.0".to_owned()],
                ..request(7, "GET", "/rw/old?q=2", Some("short"))
            }],
        ),
        (41007, vec![request(8, "GET", "/ok/anonymous", None)]),
        (
            41008,
            vec![Request {
                args: vec!["-X".to_owned(), "DELETE".to_owned()],
                ..request(9, "DELETE", "/ok/delete-me", Some("ua09-delete"))
            }],
        ),
        (
            41009,
            vec![Request {
                generated_id: true,
                ..request(10, "GET", "/ok/no-request-id", Some("ua10-no-id"))
            }],
        ),
    ];
    for (port, requests) in &mut groups {
        for r in requests.iter_mut() {
            if r.downstream.is_empty() {
                r.downstream = format!("{CLIENT}:{port}");
            }
        }
        send(&topo, &z, logs.path(), *port, requests);
    }
    let requests: Vec<Request> = groups.into_iter().flat_map(|(_, r)| r).collect();
    let download = requests.iter().find(|r| r.path.starts_with("/bytes/"));
    assert_eq!(download.map(|r| r.sent), Some(DOWNLOAD_BYTES));

    let n = requests.len();
    let custom_text = wait_lines(&custom_log, n, &z);
    let default_text = wait_lines(&default_log, n, &z);
    let custom = Pattern::new(HTTP_FORMAT).parse_all(&custom_text, "custom log");
    let default = Pattern::new(ENVOY_DEFAULT_FORMAT).parse_all(&default_text, "default log");
    assert_eq!(
        custom.len(),
        n,
        "one custom line per request:\n{custom_text}"
    );
    assert_eq!(
        default.len(),
        n,
        "one default line per request:\n{default_text}"
    );
    for r in &requests {
        let find = |lines: &[Line], command: &str, text: &str| {
            let found: Vec<Line> = lines
                .iter()
                .filter(|l| l.get(command) == r.id)
                .cloned()
                .collect();
            let generated = if r.generated_id {
                " (zerohop generated it and sent it upstream; Envoy logs it)"
            } else {
                ""
            };
            assert_eq!(
                found.len(),
                1,
                "{} {}: want one line with request id {}{generated}:\n{text}",
                r.method,
                r.path,
                r.id
            );
            found.into_iter().next().expect("one")
        };
        let c = find(&custom, "REQ(X-REQUEST-ID)", &custom_text);
        check_custom_line(&c, r);
        let d = find(&default, "REQ(X-REQUEST-ID)", &default_text);
        check_default_line(&d, r, &c);
    }
    // The two keep-alive GETs came on one connection, in order.
    assert!(
        parse_time(custom[0].get("START_TIME")) <= parse_time(custom[1].get("START_TIME")),
        "{custom_text}"
    );

    let log = stop(z);
    // Nothing more was written at exit.
    assert_eq!(
        fs::read_to_string(&custom_log).unwrap_or_default(),
        custom_text
    );
    assert_eq!(
        fs::read_to_string(&default_log).unwrap_or_default(),
        default_text
    );
    assert_stat_eq(&log, "http.ingress.downstream_rq_total", n as u64);
    assert_stat_eq(&log, "access_logs.file.logs_written", 2 * n as u64);
    assert_stat_eq(&log, "access_logs.file.logs_dropped", 0);
    assert_stat_eq(&log, "filesystem.write_failed", 0);
    let completed = stat_of(&log, "filesystem.write_completed");
    assert!(
        (2..=2 * n as u64).contains(&completed),
        "filesystem.write_completed {completed}: at least one write per file, at most one \
         per file and line"
    );
}

// ---- tcp_proxy ----

const TCP_PORT: u16 = 8000;
/// The listener whose cluster's only endpoint refuses.
const TCP_REFUSED_PORT: u16 = 8001;
const ECHO_PORT: u16 = 9001;
const TCP_FORMAT: &str = "%START_TIME% %DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% \
     %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS% \
     %DURATION% %PROTOCOL% %RESPONSE_CODE% %REQ(X-REQUEST-ID)%\n";

/// Two tcp_proxy listeners logging to one shared file with a custom format: `l4` to an
/// echo server (and to a second file in Envoy's default format), `l4dead` to a cluster
/// whose only endpoint refuses. Three echo connections of 64, 1500 and 100000 bytes:
/// one line each with those byte counts both ways, no flag, the echo server as upstream
/// host; one connection to `l4dead`: one line with `UF`, no bytes, the refusing
/// endpoint as upstream host. The HTTP-only fields come out `-` and `0`. At exit: 7
/// lines written (3 × 2 + 1), none dropped.
#[test]
fn tcp_proxy_access_log_records_each_connection() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let topo = ProxyTopology::new();
    let _echo = tcp_server_py(
        &topo.ns_u,
        "echo",
        UPSTREAM,
        &["--port", &ECHO_PORT.to_string()],
        SERVER_READY,
    );
    let logs = TempDir::new("alog-tcp");
    let shared_log = logs.path().join("shared.log");
    let default_log = logs.path().join("default.log");
    let listeners = tcp_listener(
        "l4",
        TCP_PORT,
        "echo",
        &access_logs(&[(&shared_log, Some(TCP_FORMAT)), (&default_log, None)]),
    ) + &tcp_listener(
        "l4dead",
        TCP_REFUSED_PORT,
        "dead",
        &access_logs(&[(&shared_log, Some(TCP_FORMAT))]),
    );
    let clusters = cluster("echo", ECHO_PORT) + &cluster("dead", REFUSING_PORT);
    let mut z = Zerohop::start_in(Some(&topo.ns_p), &config(&topo, "", &listeners, &clusters));
    z.wait_ready(READY_TIMEOUT);

    let sizes = [64u64, 1500, 100_000];
    let mut windows = Vec::new();
    for size in sizes {
        let from = SystemTime::now();
        let argv = tcp_client_argv(
            "echo",
            PROXY_DOWN,
            TCP_PORT,
            &[
                "--conns",
                "1",
                "--size",
                &size.to_string(),
                "--timeout",
                "5",
            ],
        );
        let r = run_tcp_client(&topo.ns_c, &z, &argv, Duration::from_secs(30));
        assert_eq!(r.get("verified"), "1", "echo of {size} bytes: {}", r.stdout);
        windows.push((from, SystemTime::now()));
    }
    let from = SystemTime::now();
    let argv = tcp_client_argv("probe", PROXY_DOWN, TCP_REFUSED_PORT, &["--timeout", "3"]);
    let probe = run_tcp_client(&topo.ns_c, &z, &argv, Duration::from_secs(30));
    assert!(
        matches!(probe.get("outcome"), "reset" | "eof"),
        "the connection to a refusing upstream should be closed: {}",
        probe.stdout
    );
    let refused_window = (from, SystemTime::now());

    let shared_text = wait_lines(&shared_log, sizes.len() + 1, &z);
    let default_text = wait_lines(&default_log, sizes.len(), &z);
    let lines = Pattern::new(TCP_FORMAT).parse_all(&shared_text, "shared log");
    assert_eq!(lines.len(), sizes.len() + 1, "{shared_text}");
    let echo = format!("{UPSTREAM}:{ECHO_PORT}");
    for (size, window) in sizes.iter().zip(&windows) {
        let found: Vec<&Line> = lines
            .iter()
            .filter(|l| l.get("UPSTREAM_CLUSTER") == "echo" && l.num("BYTES_RECEIVED") == *size)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one line for the {size}-byte echo:\n{shared_text}"
        );
        let l = found[0];
        for (command, want) in [
            ("UPSTREAM_HOST", echo.as_str()),
            ("BYTES_SENT", &size.to_string()),
            ("RESPONSE_FLAGS", "-"),
            (
                "DOWNSTREAM_LOCAL_ADDRESS",
                &format!("{PROXY_DOWN}:{TCP_PORT}"),
            ),
            ("PROTOCOL", "-"),
            ("RESPONSE_CODE", "0"),
            ("REQ(X-REQUEST-ID)", "-"),
        ] {
            assert_eq!(l.get(command), want, "%{command}% of {:?}", l.text);
        }
        let client: SocketAddr = l.get("DOWNSTREAM_REMOTE_ADDRESS").parse().expect("addr");
        assert_eq!(client.ip().to_string(), CLIENT, "{:?}", l.text);
        assert_time_within(l.get("START_TIME"), *window, &l.text);
    }
    let refused: Vec<&Line> = lines
        .iter()
        .filter(|l| l.get("UPSTREAM_CLUSTER") == "dead")
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one line for the refused connection:\n{shared_text}"
    );
    let l = refused[0];
    for (command, want) in [
        ("UPSTREAM_HOST", format!("{UPSTREAM}:{REFUSING_PORT}")),
        ("BYTES_RECEIVED", "0".to_owned()),
        ("BYTES_SENT", "0".to_owned()),
        ("RESPONSE_FLAGS", "UF".to_owned()),
        (
            "DOWNSTREAM_LOCAL_ADDRESS",
            format!("{PROXY_DOWN}:{TCP_REFUSED_PORT}"),
        ),
    ] {
        assert_eq!(l.get(command), want, "%{command}% of {:?}", l.text);
    }
    assert_time_within(l.get("START_TIME"), refused_window, &l.text);

    // Envoy's default format on a tcp_proxy: the HTTP fields `-` and 0.
    let default = Pattern::new(ENVOY_DEFAULT_FORMAT).parse_all(&default_text, "default log");
    assert_eq!(default.len(), sizes.len(), "{default_text}");
    for d in &default {
        let size = d.num("BYTES_RECEIVED");
        assert!(sizes.contains(&size), "{:?}", d.text);
        let custom = lines
            .iter()
            .find(|l| l.get("UPSTREAM_CLUSTER") == "echo" && l.num("BYTES_RECEIVED") == size)
            .expect("its custom line");
        for (command, want) in [
            ("REQ(:METHOD)", "-"),
            ("REQ(X-ENVOY-ORIGINAL-PATH?:PATH)", "-"),
            ("PROTOCOL", "-"),
            ("RESPONSE_CODE", "0"),
            ("RESPONSE_FLAGS", "-"),
            ("BYTES_SENT", &size.to_string()),
            ("RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)", "-"),
            ("REQ(X-FORWARDED-FOR)", "-"),
            ("REQ(USER-AGENT)", "-"),
            ("REQ(X-REQUEST-ID)", "-"),
            ("REQ(:AUTHORITY)", "-"),
            ("UPSTREAM_HOST", echo.as_str()),
            ("START_TIME", custom.get("START_TIME")),
            ("DURATION", custom.get("DURATION")),
        ] {
            assert_eq!(d.get(command), want, "%{command}% of {:?}", d.text);
        }
    }

    let log = stop(z);
    assert_eq!(
        fs::read_to_string(&shared_log).unwrap_or_default(),
        shared_text
    );
    assert_stat_eq(&log, "tcp.l4.downstream_cx_total", sizes.len() as u64);
    assert_stat_eq(&log, "tcp.l4dead.downstream_cx_total", 1);
    assert_stat_eq(
        &log,
        "access_logs.file.logs_written",
        2 * sizes.len() as u64 + 1,
    );
    assert_stat_eq(&log, "access_logs.file.logs_dropped", 0);
    assert_stat_eq(&log, "filesystem.write_failed", 0);
}

// ---- A full queue ----

const LOGGED_PORT: u16 = 8080;
const PLAIN_PORT: u16 = 8081;
const ADMIN_PORT: u16 = 9901;
/// Records a listener's queue holds (`zerohop_l7::access_log::QUEUE_CAPACITY`).
const QUEUE_CAPACITY: u64 = 65_536;
/// wrk's connections.
const CONNECTIONS: &str = "20";
/// Requests wrk sends back to back on each connection (HTTP/1.1 pipelining), so that a
/// debug build gets through the queue's 65536 records within seconds.
const PIPELINE: usize = 8;
/// How long the load runs once records are being dropped.
const DROPPING_FOR: Duration = Duration::from_secs(3);

/// The counters of the admin API's `/stats` (`name: value` lines) in P.
fn admin_stats(topo: &ProxyTopology, z: &Zerohop) -> HashMap<String, u64> {
    let url = format!("http://127.0.0.1:{ADMIN_PORT}/stats");
    let out = topo.ns_p.run(
        "curl",
        &["-sS", "--noproxy", "*", "--max-time", "5", &url],
        Duration::from_secs(15),
    );
    assert!(
        out.success(),
        "admin {url}: {}\nzerohop log:\n{}",
        out.stderr,
        z.log()
    );
    out.stdout_str()
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn counter(stats: &HashMap<String, u64>, name: &str) -> u64 {
    stats
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("no {name} in /stats: {stats:?}"))
}

/// A wrk summary (`N requests in 2.00s`): its requests per second; it must show no
/// non-2xx answer and no socket error.
fn wrk_rate(text: &str) -> f64 {
    assert!(!text.contains("Non-2xx"), "{text}");
    assert!(!text.contains("Socket errors"), "{text}");
    let (requests, secs) = text
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(" requests in ")?;
            let secs = rest.split(['s', ',']).next()?.parse::<f64>().ok()?;
            Some((n.parse::<f64>().ok()?, secs))
        })
        .unwrap_or_else(|| panic!("no `N requests in S` in wrk's output:\n{text}"));
    assert!(requests > 0.0 && secs > 0.0, "{text}");
    requests / secs
}

/// A wrk Lua script that sends [`PIPELINE`] requests of `/load` at a time.
fn pipeline_script(dir: &Path) -> String {
    let path = dir.join("pipeline.lua");
    fs::write(
        &path,
        format!(
            "init = function(args)\n  local r = {{}}\n  for i = 1, {PIPELINE} do\n    \
             r[i] = wrk.format(nil, \"/load\")\n  end\n  req = table.concat(r)\nend\n\
             request = function()\n  return req\nend\n"
        ),
    )
    .expect("write the wrk script");
    path.to_str().expect("utf-8 path").to_owned()
}

/// wrk from C on `port` for `secs` (pipelined, [`CONNECTIONS`] connections): its rate.
fn wrk_for(topo: &ProxyTopology, script: &str, port: u16, secs: u32) -> f64 {
    let url = format!("http://{PROXY_DOWN}:{port}/load");
    let duration = format!("{secs}s");
    let out = topo.ns_c.run(
        "wrk",
        &[
            "-t",
            "1",
            "-c",
            CONNECTIONS,
            "-d",
            &duration,
            "--timeout",
            "5s",
            "-s",
            script,
            &url,
        ],
        Duration::from_secs(u64::from(secs) + 30),
    );
    let text = out.stdout_str();
    assert!(out.success(), "wrk failed: {}\n{text}", out.stderr);
    wrk_rate(&text)
}

/// Listener `logged` logs every request to a named pipe that a helper process holds
/// open for reading but never reads; listener `plain` (same direct answer) logs
/// nothing. A short wrk on `plain` gives the baseline rate. Then wrk on `logged`
/// (pipelined, 20 connections): the pipe fills (64 KiB), the writer thread blocks,
/// the queue fills (65536 records), and from then on every record is dropped and
/// counted (watched on the admin API's `/stats`: `access_logs.file.logs_dropped` grows
/// by as much as `http.logged.downstream_rq_total`), while the rate stays at least 30%
/// of the baseline (the lower of a run before and one after), with no error and no
/// non-2xx answer. At exit the writer is still stuck: zerohop leaves it behind after
/// 2 s ("the writer is stuck writing"), exits 0 and returns every mbuf, and its counters
/// agree: nothing failed, some lines written, the rest dropped or still queued.
#[test]
fn a_full_access_log_queue_drops_records_without_stalling_traffic() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let topo = ProxyTopology::new();
    let dir = TempDir::new("alog-fifo");
    let fifo = dir.path().join("access.fifo");
    let fifo_s = fifo.to_str().expect("utf-8 path");
    must("mkfifo", &[fifo_s]);
    // Opening a FIFO blocks until its other end is opened: the reader waits for zerohop
    // to open the log at start, and zerohop for the reader.
    let mut reader = Background::spawn({
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec sleep 600 < \"$0\"", fifo_s])
            .stdout(Stdio::null());
        cmd
    });
    let direct = r#"              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
"#;
    let listeners = http_listener(
        "logged",
        LOGGED_PORT,
        &access_logs(&[(&fifo, Some("%START_TIME% %REQ(:PATH)% %RESPONSE_CODE%\n"))]),
        direct,
    ) + &http_listener("plain", PLAIN_PORT, "", direct);
    let admin = format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: \
         {ADMIN_PORT} }}\n"
    );
    let mut z = Zerohop::start_in(
        Some(&topo.ns_p),
        &config(&topo, &admin, &listeners, &cluster("unused", 9001)),
    );
    z.wait_ready(READY_TIMEOUT);
    reader.assert_running("the FIFO's reader");
    let script = pipeline_script(dir.path());

    let before = wrk_for(&topo, &script, PLAIN_PORT, 2);

    // The load on `logged`, for at most 40 s: stopped (SIGINT: wrk prints its summary)
    // once records have been dropped for DROPPING_FOR.
    let url = format!("http://{PROXY_DOWN}:{LOGGED_PORT}/load");
    let wrk = topo
        .ns_c
        .command(
            "wrk",
            &[
                "-t",
                "1",
                "-c",
                CONNECTIONS,
                "-d",
                "40s",
                "--timeout",
                "5s",
                "-s",
                &script,
                &url,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wrk");
    let deadline = Instant::now() + Duration::from_secs(35);
    let (first, first_at) = loop {
        let stats = admin_stats(&topo, &z);
        if counter(&stats, "access_logs.file.logs_dropped") > 0 {
            break (stats, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "no record dropped within 35 s of load: {} requests, {} lines written\n\
             zerohop log:\n{}",
            counter(&stats, "http.logged.downstream_rq_total"),
            counter(&stats, "access_logs.file.logs_written"),
            z.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(DROPPING_FOR);
    let last = admin_stats(&topo, &z);
    let last_at = Instant::now();
    must("kill", &["-INT", &wrk.id().to_string()]);
    let load = wrk.wait_with_output().expect("wait for wrk");
    let text = String::from_utf8_lossy(&load.stdout);
    assert!(
        load.status.success(),
        "wrk failed: {}\n{text}",
        String::from_utf8_lossy(&load.stderr)
    );
    let overall = wrk_rate(&text);

    let after = wrk_for(&topo, &script, PLAIN_PORT, 2);
    let baseline = before.min(after);
    let delta = |name: &str| counter(&last, name) - counter(&first, name);
    let requests = delta("http.logged.downstream_rq_total");
    let dropped = delta("access_logs.file.logs_dropped");
    let secs = (last_at - first_at).as_secs_f64();
    let dropping_rate = requests as f64 / secs;
    eprintln!(
        "baseline {before:.0}/s before, {after:.0}/s after; logged: {overall:.0}/s overall, \
         {dropping_rate:.0}/s while dropping ({requests} requests, {dropped} records \
         dropped in {secs:.1} s)"
    );
    // The queue is full and its writer stuck: every record is dropped, none waits. The
    // two counters are read a moment apart and a request is counted when it starts, its
    // record pushed when it ends: the in-flight requests blur them.
    let blur = 1000;
    assert!(
        dropped + blur >= requests && dropped <= requests + blur,
        "while the queue is full every record should be dropped: {requests} requests, \
         {dropped} dropped"
    );
    assert_eq!(
        counter(&last, "filesystem.write_failed"),
        0,
        "the writer is blocked, not failing"
    );
    assert!(
        dropping_rate >= 0.3 * baseline,
        "the rate collapsed while records were dropped: {dropping_rate:.0}/s, baseline \
         {baseline:.0}/s (before {before:.0}/s, after {after:.0}/s)"
    );
    assert!(overall >= 0.3 * baseline, "{text}");
    // Still answering.
    let status = topo
        .ns_c
        .http_status(&format!("http://{PROXY_DOWN}:{LOGGED_PORT}/after"), 5);
    assert_eq!(status.stdout_str(), "200", "{}", status.stderr);

    let started = Instant::now();
    let (status, log) = z.terminate();
    let took = started.elapsed();
    // Only port `down` carried traffic: the answers are zerohop's own.
    assert_eq!(status.code(), Some(0), "zerohop should exit 0:\n{log}");
    assert_eq!(mbufs_in_use(&log), Some(0), "every mbuf returned:\n{log}");
    assert!(
        log.contains("access log: the writer is stuck writing; exiting without it"),
        "zerohop should leave the stuck writer behind at exit:\n{log}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "zerohop gives the writer 2 s at exit; it exited in {took:?}"
    );
    reader.assert_running("the FIFO's reader");
    drop(reader);
    let total = stat_of(&log, "http.logged.downstream_rq_total");
    let written = stat_of(&log, "access_logs.file.logs_written");
    let dropped = stat_of(&log, "access_logs.file.logs_dropped");
    assert_stat_eq(&log, "filesystem.write_failed", 0);
    assert!(
        dropped > 0 && written > 0 && written + dropped <= total,
        "written {written} + dropped {dropped} should be at most the {total} requests"
    );
    // What was neither written nor dropped is in the queue or in the stuck write.
    assert!(
        total - written - dropped <= 2 * QUEUE_CAPACITY,
        "{total} requests, {written} written, {dropped} dropped: {} unaccounted for",
        total - written - dropped
    );
}
