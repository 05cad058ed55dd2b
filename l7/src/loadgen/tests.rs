//! The load generator against a real proxy: two in-memory stacks, the
//! generator's (clients and servers at 10.0.0.1) and an [`L7`] HTTP proxy's
//! built from Envoy YAML (10.0.0.2), a worker loop per simulated
//! millisecond ([`testnet::run`]); the generator runs on the stack's clock,
//! so latencies are whole milliseconds of simulated time.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use zerohop_dataplane::fib::FibBuilder;
use zerohop_tcpstack::{App, Close, ConnId, Listen, Stack, TcpParams};

use super::report::Count;
use super::{Loadgen, Phase, Plan, Report, Shared};
use crate::access_log::AccessLogs;
use crate::app::{Generation, L7Plan, L7};
use crate::config::EnvoyConfig;
use crate::testnet::{self, host, Host};

const LOADGEN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PROXY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// A third host: the raw client of the server tests.
const RAW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const LISTENER: u16 = 10_000;
const SERVER: u16 = 8080;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Closed loop, 4 keep-alive connections through the proxy to our server,
/// 100-byte bodies, 100 ms warmup, a 1 s window.
pub(super) fn plan() -> Plan {
    Plan {
        target: SocketAddrV4::new(PROXY, LISTENER),
        host: "svc.test".to_owned(),
        path: "/load".to_owned(),
        servers: vec![SocketAddrV4::new(LOADGEN, SERVER)],
        connections: 4,
        rate: None,
        new_connection_per_request: false,
        request_body: 0,
        response_body: 100,
        duration: ms(1000),
        warmup: ms(100),
        timeout: ms(500),
    }
}

/// A route to cluster `backend`.
const TO_BACKEND: &str = r#"- match: { prefix: "/" }
                route: { cluster: backend, timeout: 0s }"#;

/// An HTTP listener on :10000 with `route` (YAML at the indentation of a
/// route entry), and cluster `backend` of one endpoint, `endpoint`.
fn proxy_yaml(route: &str, endpoint: SocketAddrV4) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 0.0.0.0, port_value: {LISTENER} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
              {route}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }}
"#,
        endpoint.ip(),
        endpoint.port()
    )
}

/// A stack at `addr` with room for 8192 connections (a connection per
/// request leaves TIME-WAITs behind), otherwise as `testnet::host`'s.
fn roomy_stack(addr: Ipv4Addr) -> Stack {
    let mut fib = FibBuilder::new();
    fib.interface(0, addr, 24);
    let fib = Arc::new(fib.build().expect("fib"));
    let params = TcpParams {
        max_connections: 8192,
        ..TcpParams::default()
    };
    Stack::new(params, fib, vec![Some(addr)], 11, 0).expect("stack")
}

/// The HTTP proxy of `yaml`, listening.
fn proxy(yaml: &str) -> Host<L7> {
    let config = EnvoyConfig::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    let shared = Arc::new(crate::health::Shared::new(&config));
    let logs = AccessLogs::new(&config).expect("logs");
    let plan = L7Plan::new(&config, shared, false, &logs).expect("plan");
    let listens = plan.listens();
    let mut h = host(PROXY, L7::with_reloads(Generation::new(plan, 5), None));
    h.stack = roomy_stack(PROXY);
    for l in listens {
        h.stack.listen(l);
    }
    h
}

/// The generator of `plan` (one worker, seed 0: the open-loop schedule
/// starts at 0), listening.
fn loadgen(plan: Plan) -> (Host<Loadgen>, Arc<Shared>) {
    assert_eq!(plan.check(), Ok(()));
    let shared = Arc::new(Shared::new(&plan, 1));
    let app = Loadgen::new(Arc::new(plan), shared.clone(), 0, 0).with_stack_clock();
    let listens = app.listens();
    let mut h = host(LOADGEN, app);
    h.stack = roomy_stack(LOADGEN);
    for l in listens {
        h.stack.listen(l);
    }
    (h, shared)
}

struct Net {
    lg: Host<Loadgen>,
    proxy: Host<L7>,
    shared: Arc<Shared>,
    now: u64,
}

impl Net {
    fn new(plan: Plan, yaml: &str) -> Net {
        let (lg, shared) = loadgen(plan);
        Net {
            lg,
            proxy: proxy(yaml),
            shared,
            now: 0,
        }
    }

    /// Run until the generator is done (at most `limit_ms`); return its
    /// report.
    fn run(&mut self, limit_ms: u64) -> Report {
        while !self.shared.done() {
            assert!(self.now < limit_ms, "not done after {limit_ms} ms");
            testnet::run(&mut self.now, 10, &mut [&mut self.lg, &mut self.proxy]);
        }
        assert_eq!(self.lg.app.live, 0, "every client connection is gone");
        let p = self.shared.progress();
        assert_eq!(p.phase, Phase::Done);
        self.shared.report()
    }
}

/// Check what every report must hold, whatever happened.
fn consistent(r: &Report) {
    assert_eq!(r.latency_us.samples, r.responses, "{r}");
    assert!(r.latency_us.p50 <= r.latency_us.p99, "{r}");
    assert!(r.latency_us.p99 <= r.latency_us.max, "{r}");
    assert!(
        (r.rps - r.responses as f64 / r.duration_s).abs() < 1e-6,
        "{r}"
    );
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("JSON");
    assert_eq!(json["responses"], r.responses);
    assert_eq!(json["error_total"], r.errors());
}

#[test]
fn closed_loop_through_the_proxy_is_all_good() {
    let plan = plan();
    let mut net = Net::new(plan.clone(), &proxy_yaml(TO_BACKEND, plan.servers[0]));
    let r = net.run(3000);
    consistent(&r);
    assert_eq!(r.errors(), 0, "{r}");
    assert!(r.responses > 200, "{r}");
    assert_eq!(r.body_bytes, r.responses * 100, "{r}");
    // Requests that started in the window and ended after it: at most one
    // per connection.
    assert!(
        r.requests >= r.responses && r.requests <= r.responses + 4,
        "{r}"
    );
    // Keep-alive: the connections were opened once, in the warmup.
    assert_eq!(r.established, 0, "{r}");
    // One simulated ms per loop: a round trip through the proxy is a few.
    assert!(
        (1000..=20_000).contains(&r.latency_us.p50),
        "p50 {} µs",
        r.latency_us.p50
    );
    assert!(r.server_requests >= r.responses, "{r}");
    assert_eq!(r.server_bad_requests, 0);
}

#[test]
fn a_1_mib_response_streams_through_64_kib_buffers() {
    let plan = Plan {
        connections: 2,
        request_body: 100_000,
        response_body: 1 << 20,
        timeout: ms(900),
        ..plan()
    };
    let mut net = Net::new(plan.clone(), &proxy_yaml(TO_BACKEND, plan.servers[0]));
    let r = net.run(4000);
    consistent(&r);
    assert_eq!(r.errors(), 0, "{r}");
    assert!(r.responses >= 4, "{r}");
    assert_eq!(r.body_bytes, r.responses << 20, "{r}");
    assert!(r.rx_gbps > 0.0);
}

#[test]
fn a_new_connection_per_request_counts_connections_per_second() {
    let plan = Plan {
        new_connection_per_request: true,
        ..plan()
    };
    let mut net = Net::new(plan.clone(), &proxy_yaml(TO_BACKEND, plan.servers[0]));
    let r = net.run(3000);
    consistent(&r);
    assert_eq!(r.errors(), 0, "{r}");
    assert!(r.responses > 100, "{r}");
    // Each response had its own connection, opened in the window (give or
    // take the ones crossing its edges).
    assert!(r.established.abs_diff(r.responses) <= 8, "{r}");
    assert!((r.cps - r.rps).abs() <= 8.0, "{r}");
    // Latency includes the handshake: more than on a kept-alive connection.
    assert!(r.latency_us.p50 >= 2000, "{r}");
}

#[test]
fn open_loop_sends_on_schedule() {
    let plan = Plan {
        rate: Some(1000.0),
        connections: 8,
        warmup: Duration::ZERO,
        ..plan()
    };
    let mut net = Net::new(plan.clone(), &proxy_yaml(TO_BACKEND, plan.servers[0]));
    let r = net.run(3000);
    consistent(&r);
    // One request per simulated ms, exactly, for the 1 s window.
    assert_eq!(r.requests, 1000, "{r}");
    assert_eq!(r.errors(), 0, "{r}");
    // Those answered after the window's end are not counted.
    assert!(r.responses >= 990, "{r}");
    // Only the requests due before the first handshakes waited.
    assert!(r.delayed <= 4 && r.backlog_max <= 4, "{r}");
    assert_eq!(r.unsent, 0, "{r}");
}

#[test]
fn open_loop_latency_runs_from_the_schedule() {
    // One connection cannot carry 1000 requests/s at a few ms each: the
    // backlog grows, and latency counts the wait (coordinated omission).
    let plan = Plan {
        rate: Some(1000.0),
        connections: 1,
        warmup: Duration::ZERO,
        timeout: ms(300),
        ..plan()
    };
    let mut net = Net::new(plan.clone(), &proxy_yaml(TO_BACKEND, plan.servers[0]));
    let r = net.run(3000);
    consistent(&r);
    assert_eq!(r.requests, 1000, "{r}");
    assert!(r.delayed > 500 && r.backlog_max > 50, "{r}");
    // Requests that waited past the timeout are timeouts; the rest have
    // latencies up to the timeout, far above one round trip.
    assert!(r.errors.timeout > 100, "{r}");
    assert_eq!(r.errors() - r.errors.timeout, 0, "{r}");
    assert!(r.latency_us.p99 >= 100_000, "{r}");
    // What still waited at the window's end was never sent; every request
    // is accounted for but the one in flight at the end.
    let accounted = r.responses + r.errors.timeout + r.unsent;
    assert!((999..=1000).contains(&accounted), "{r}");
}

#[test]
fn an_unreachable_upstream_is_all_503_errors() {
    let plan = plan();
    // Nobody listens on :9999: the proxy's connect is refused, it answers
    // 503.
    let mut net = Net::new(
        plan,
        &proxy_yaml(TO_BACKEND, SocketAddrV4::new(LOADGEN, 9999)),
    );
    let r = net.run(3000);
    consistent(&r);
    assert_eq!((r.responses, r.rps), (0, 0.0), "{r}");
    assert!(r.errors.status_5xx > 100, "{r}");
    assert_eq!(r.errors(), r.errors.status_5xx, "{r}");
}

#[test]
fn a_server_cutting_responses_short_is_reset_errors() {
    // No proxy: the clients at 10.0.0.1 connect straight to a servers-only
    // generator at 10.0.0.3, which sends the head and 3000 of the 10 000
    // body bytes, then FIN.
    let upstream = SocketAddrV4::new(RAW, SERVER);
    let plan = Plan {
        target: upstream,
        servers: vec![upstream],
        response_body: 10_000,
        ..plan()
    };
    let (mut lg, shared) = loadgen(plan.clone());
    let servers = Plan {
        connections: 0,
        ..plan
    };
    let shared_servers = Arc::new(Shared::new(&servers, 1));
    let mut app = Loadgen::new(Arc::new(servers), shared_servers, 0, 0).with_stack_clock();
    app.truncate_after = Some(app.ok_head.len() + 3000);
    let mut up = host(RAW, app);
    for l in up.app.listens() {
        up.stack.listen(l);
    }
    let mut now = 0;
    while !shared.done() {
        assert!(now < 3000, "not done");
        testnet::run(&mut now, 10, &mut [&mut lg, &mut up]);
    }
    let r = shared.report();
    consistent(&r);
    assert_eq!(r.responses, 0, "{r}");
    assert!(r.errors.reset > 100, "{r}");
    assert_eq!(r.errors(), r.errors.reset, "{r}");
}

#[test]
fn a_server_cutting_responses_short_behind_the_proxy_is_errors() {
    let plan = Plan {
        response_body: 10_000,
        ..plan()
    };
    let mut net = Net::new(plan.clone(), &proxy_yaml(TO_BACKEND, plan.servers[0]));
    net.lg.app.truncate_after = Some(net.lg.app.ok_head.len() + 3000);
    let r = net.run(3000);
    consistent(&r);
    assert_eq!(r.responses, 0, "{r}");
    // As Envoy, the proxy resets the downstream when its upstream closes
    // mid-body: resets, at once (no client waits for its timeout).
    assert!(r.errors.reset > 100, "{r}");
    assert_eq!(r.errors(), r.errors.reset, "{r}");
}

#[test]
fn a_body_of_another_length_is_a_body_error() {
    let plan = plan();
    let direct = r#"- match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "short" } }"#;
    let mut net = Net::new(plan.clone(), &proxy_yaml(direct, plan.servers[0]));
    let r = net.run(3000);
    consistent(&r);
    assert_eq!(r.responses, 0, "{r}");
    assert!(r.errors.body > 100, "{r}");
    assert_eq!(r.errors(), r.errors.body, "{r}");
    // Without servers of ours any length is good.
    let plan = Plan {
        servers: Vec::new(),
        ..plan
    };
    let mut net = Net::new(
        plan,
        &proxy_yaml(direct, SocketAddrV4::new(LOADGEN, SERVER)),
    );
    let r = net.run(3000);
    assert_eq!(r.errors(), 0, "{r}");
    assert_eq!(r.body_bytes, r.responses * 5, "{r}");
}

#[test]
fn a_refused_target_is_connect_errors_held_back() {
    // Nothing listens on the target port: every SYN is answered with RST.
    let plan = Plan {
        target: SocketAddrV4::new(PROXY, LISTENER + 1),
        ..plan()
    };
    let mut net = Net::new(
        plan,
        &proxy_yaml(TO_BACKEND, SocketAddrV4::new(LOADGEN, SERVER)),
    );
    let r = net.run(3000);
    consistent(&r);
    assert_eq!((r.responses, r.requests, r.established), (0, 0, 0), "{r}");
    assert!(r.errors.connect > 50, "{r}");
    // Opens are held back 10 ms after a failure: not one per loop and slot.
    assert!(r.errors.connect <= 4 * 110, "{r}");
    assert_eq!(r.errors(), r.errors.connect, "{r}");
}

#[test]
fn a_stalled_upstream_is_timeouts() {
    // 10.0.0.9 is nowhere: the proxy's SYNs are lost and its connect
    // timeout (1 s) is longer than ours.
    let plan = Plan {
        timeout: ms(200),
        ..plan()
    };
    let yaml = proxy_yaml(
        TO_BACKEND,
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 80),
    );
    let mut net = Net::new(plan, &yaml);
    let r = net.run(3000);
    consistent(&r);
    assert_eq!(r.responses, 0, "{r}");
    assert!(r.errors.timeout >= 4 * 4, "{r}");
    assert_eq!(r.errors(), r.errors.timeout + r.errors.status_5xx, "{r}");
}

/// Sends `request` on connect and keeps what comes back.
#[derive(Default)]
struct RawClient {
    request: Vec<u8>,
    sent: bool,
    received: Vec<u8>,
    closed: Option<Close>,
    peer_closed: bool,
}

impl App for RawClient {
    fn accepted(&mut self, _tcp: &mut Stack, _conn: ConnId, _listener: u32) {}
    fn ready(&mut self, tcp: &mut Stack, conn: ConnId) {
        if !self.sent && tcp.is_established(conn) {
            assert_eq!(tcp.send(conn, &self.request), self.request.len());
            self.sent = true;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.recv(conn, &mut buf);
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&buf[..n]);
        }
        if tcp.recv_finished(conn) && !self.peer_closed {
            self.peer_closed = true;
            tcp.close(conn);
        }
    }
    fn deadline(&mut self, _tcp: &mut Stack, _conn: ConnId) {}
    fn closed(&mut self, _tcp: &mut Stack, _conn: ConnId, how: Close) {
        self.closed = Some(how);
    }
}

#[test]
fn a_malformed_request_gets_400_after_the_pipelined_ones_before_it() {
    // Servers only: no client connections.
    let plan = Plan {
        connections: 0,
        response_body: 3,
        duration: ms(10_000),
        warmup: Duration::ZERO,
        ..plan()
    };
    let (mut lg, shared) = loadgen_unchecked(plan);
    let mut raw = host(
        RAW,
        RawClient {
            request: b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                       POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\
                       BREW /c HTCPCP/1.0\r\n\r\n\
                       GET /never HTTP/1.1\r\n\r\n"
                .to_vec(),
            ..RawClient::default()
        },
    );
    raw.stack
        .connect(SocketAddrV4::new(LOADGEN, SERVER))
        .expect("connect");
    let mut now = 0;
    testnet::run(&mut now, 300, &mut [&mut raw, &mut lg]);
    let text = String::from_utf8_lossy(&raw.app.received).into_owned();
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n012\
         HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n012\
         HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert!(raw.app.peer_closed, "the server closed after the 400");
    assert_eq!(raw.app.closed, Some(Close::Graceful));
    let r = shared.report();
    assert_eq!((r.server_requests, r.server_bad_requests), (2, 1), "{r}");
    assert!(lg.app.servers.iter().all(|s| s.is_free()));
}

#[test]
fn a_request_asking_to_close_is_answered_then_closed() {
    let plan = Plan {
        connections: 0,
        response_body: 0,
        ..plan()
    };
    let (mut lg, _) = loadgen_unchecked(plan);
    let mut raw = host(
        RAW,
        RawClient {
            request: b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n"
                .to_vec(),
            ..RawClient::default()
        },
    );
    raw.stack
        .connect(SocketAddrV4::new(LOADGEN, SERVER))
        .expect("connect");
    let mut now = 0;
    testnet::run(&mut now, 100, &mut [&mut raw, &mut lg]);
    assert_eq!(
        String::from_utf8_lossy(&raw.app.received),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw.app.closed, Some(Close::Graceful));
}

/// [`loadgen`] without [`Plan::check`] (no client connections).
fn loadgen_unchecked(plan: Plan) -> (Host<Loadgen>, Arc<Shared>) {
    let shared = Arc::new(Shared::new(&plan, 1));
    let app = Loadgen::new(Arc::new(plan), shared.clone(), 0, 0).with_stack_clock();
    let mut h = host(LOADGEN, app);
    for l in h.app.listens() {
        h.stack.listen(l);
    }
    (h, shared)
}

#[test]
fn listens_are_the_server_addresses_in_order() {
    let plan = Plan {
        servers: vec![
            SocketAddrV4::new(LOADGEN, 8080),
            SocketAddrV4::new(LOADGEN, 8081),
        ],
        ..plan()
    };
    let shared = Arc::new(Shared::new(&plan, 1));
    let lg = Loadgen::new(Arc::new(plan.clone()), shared, 0, 0);
    assert_eq!(
        lg.listens(),
        [
            Listen {
                address: plan.servers[0],
                id: 0
            },
            Listen {
                address: plan.servers[1],
                id: 1
            }
        ]
    );
}

#[test]
fn nonsense_plans_are_refused_with_a_reason() {
    assert_eq!(plan().check(), Ok(()));
    let cases: [(Plan, &str); 9] = [
        (
            Plan {
                connections: 0,
                ..plan()
            },
            "connections must be at least 1",
        ),
        (
            Plan {
                rate: Some(0.0),
                ..plan()
            },
            "rate must be a positive number",
        ),
        (
            Plan {
                rate: Some(f64::NAN),
                ..plan()
            },
            "rate must be a positive number",
        ),
        (
            Plan {
                path: String::new(),
                ..plan()
            },
            "must start with '/'",
        ),
        (
            Plan {
                path: "/a b".to_owned(),
                ..plan()
            },
            "no spaces",
        ),
        (
            Plan {
                host: String::new(),
                ..plan()
            },
            "host",
        ),
        (
            Plan {
                duration: Duration::ZERO,
                ..plan()
            },
            "duration",
        ),
        (
            Plan {
                timeout: Duration::ZERO,
                ..plan()
            },
            "timeout",
        ),
        (
            Plan {
                servers: vec![plan().servers[0], plan().servers[0]],
                ..plan()
            },
            "listed twice",
        ),
    ];
    for (p, want) in cases {
        let e = p.check().expect_err(want);
        assert!(e.contains(want), "{e:?} should say {want:?}");
    }
}

#[test]
fn counts_outside_the_window_are_progress_only() {
    let (mut lg, _) = loadgen_unchecked(plan());
    let app = &mut lg.app;
    // Window [100 ms, 1100 ms).
    app.count(Count::Responses, 1, 99_999);
    app.count(Count::Responses, 1, 100_000);
    app.count(Count::Responses, 1, 1_099_999);
    app.count(Count::Responses, 1, 1_100_000);
    app.record(10, 50);
    app.record(20, 500_000);
    let i = Count::Responses as usize;
    assert_eq!((app.counts.all[i], app.counts.window[i]), (4, 2));
    assert_eq!(
        (app.counts.recent.len(), app.counts.window_latency.len()),
        (2, 1)
    );
}
