//! The benchmark harness's own arithmetic: every parser of `scripts/bench_parse.sh`
//! against a real output of its tool (captured once into `tests/fixtures/bench/`, see
//! the README there), malformed input failing loudly instead of reading as 0, and the
//! report (`scripts/bench_report.py`) assembled from canned results.
//!
//! What a wrong parser costs is a wrong table that nobody notices: a latency in ms read
//! as µs, a missing line read as 0 requests/s. So each test pins the values a person
//! reads off the fixture by eye. Needs bash and python3, no root and no namespaces:
//! `cargo test --test bench_harness`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/bench").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Run `. scripts/bench_parse.sh; FUNC ARGS...` with `input` on stdin.
fn run_parser(func: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("bash")
        .current_dir(root())
        .arg("-c")
        .arg(format!(". scripts/bench_parse.sh; {func} \"$@\""))
        .arg("bench_parse")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    // A parser that fails early may close stdin before reading it all.
    let _ = child.stdin.take().expect("stdin").write_all(input);
    child.wait_with_output().expect("wait for bash")
}

/// The parser's KEY VALUE lines; panics (with its stderr) if it failed.
fn parse(func: &str, args: &[&str], input: &[u8]) -> HashMap<String, f64> {
    let out = run_parser(func, args, input);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{func} failed ({:?}): stderr {stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{func} wrote to stderr: {stderr}");
    let mut map = HashMap::new();
    for line in stdout.lines() {
        let (k, v) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{func}: line without a value: {line:?}"));
        let v: f64 = v
            .parse()
            .unwrap_or_else(|_| panic!("{func}: {k} is not a number: {v:?}"));
        assert!(
            map.insert(k.to_string(), v).is_none(),
            "{func}: {k} printed twice"
        );
    }
    map
}

fn parse_fixture(func: &str, args: &[&str], name: &str) -> HashMap<String, f64> {
    parse(func, args, &read_fixture(name))
}

/// The parser must fail: exit status not 0, nothing on stdout (nothing a caller could
/// record), and a reason on stderr that names the parser. Returns the reason.
fn parse_fails(func: &str, args: &[&str], input: &[u8]) -> String {
    let out = run_parser(func, args, input);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !out.status.success(),
        "{func} accepted bad input {:?}: {stdout}",
        String::from_utf8_lossy(&input[..input.len().min(120)])
    );
    assert!(stdout.is_empty(), "{func} failed but printed {stdout:?}");
    assert!(
        stderr.starts_with(&format!("{func}: ")) || stderr.starts_with(func),
        "{func}: the reason should name the parser: {stderr:?}"
    );
    stderr
}

#[track_caller]
fn close(map: &HashMap<String, f64>, key: &str, want: f64) {
    let got = *map
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {map:?}"));
    let tol = (want.abs() * 1e-9).max(1e-6);
    assert!((got - want).abs() <= tol, "{key}: got {got}, want {want}");
}

// --- wrk -----------------------------------------------------------------------------

#[test]
fn wrk_keepalive_run() {
    // wrk -t1 -c50 -d3s --latency http://10.0.0.1:8080/ through zerohop.
    let m = parse_fixture("bench_parse_wrk", &[], "wrk_rps.txt");
    close(&m, "requests", 90_844.0);
    close(&m, "requests_per_s", 30_093.05);
    close(&m, "duration_s", 3.02);
    close(&m, "p50_us", 649.0); // "649.00us"
    close(&m, "p75_us", 3_140.0); // "3.14ms"
    close(&m, "p90_us", 6_070.0);
    close(&m, "p99_us", 21_170.0);
    close(&m, "read_bytes", 11.18 * 1024.0 * 1024.0); // wrk's MB are MiB
    close(&m, "transfer_bps", 3.70 * 1024.0 * 1024.0 * 8.0);
    close(&m, "non2xx", 0.0);
    close(&m, "socket_errors", 0.0);
}

#[test]
fn wrk_one_mib_run_units() {
    // wrk on /1m: latencies in ms, hundreds of MB read.
    let m = parse_fixture("bench_parse_wrk", &[], "wrk_1mib.txt");
    close(&m, "requests", 381.0);
    close(&m, "requests_per_s", 126.95);
    close(&m, "p50_us", 75_560.0);
    close(&m, "p99_us", 157_440.0);
    close(&m, "read_bytes", 381.40 * 1024.0 * 1024.0);
    close(&m, "transfer_bps", 127.08 * 1024.0 * 1024.0 * 8.0);
}

#[test]
fn wrk_errors_are_counted() {
    // A real run against `python3 -m http.server` asking for a missing file: every
    // answer is a 404, which wrk counts apart from its requests.
    let m = parse_fixture("bench_parse_wrk", &[], "wrk_errors.txt");
    close(&m, "requests", 805.0);
    close(&m, "non2xx", 805.0);
    close(&m, "socket_errors", 0.0);
    // A `Socket errors:` line adds up (the line as wrk prints it, into a real output).
    let text = String::from_utf8(read_fixture("wrk_errors.txt")).unwrap();
    let with_socket_errors = text.replace(
        "  Non-2xx or 3xx responses: 805\n",
        "  Socket errors: connect 1, read 2, write 3, timeout 4\n  Non-2xx or 3xx responses: 805\n",
    );
    let m = parse("bench_parse_wrk", &[], with_socket_errors.as_bytes());
    close(&m, "socket_errors", 10.0);
    close(&m, "read_errors", 2.0);
    close(&m, "timeout_errors", 4.0);
}

#[test]
fn wrk_without_requests_fails() {
    // wrk against a port nobody listens on: one line, no results.
    let why = parse_fails("bench_parse_wrk", &[], &read_fixture("wrk_refused.txt"));
    assert!(why.contains("requests in"), "{why}");
    assert!(
        why.contains("Connection refused"),
        "the output is quoted: {why}"
    );
    // A server that accepts and never answers: a full report of 0 requests.
    let why = parse_fails("bench_parse_wrk", &[], &read_fixture("wrk_no_answer.txt"));
    assert!(why.contains("no request"), "{why}");
    let why = parse_fails("bench_parse_wrk", &[], b"");
    assert!(why.contains("empty input"), "{why}");
    // Without --latency there are no percentiles: refuse rather than leave them out.
    let text = String::from_utf8(read_fixture("wrk_rps.txt")).unwrap();
    let no_latency: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("99%"))
        .map(|l| format!("{l}\n"))
        .collect();
    let why = parse_fails("bench_parse_wrk", &[], no_latency.as_bytes());
    assert!(why.contains("99%"), "{why}");
    // A unit wrk never prints.
    let bad_unit = text.replace("Transfer/sec:      3.70MB", "Transfer/sec:      3.70XB");
    assert_ne!(bad_unit, text);
    parse_fails("bench_parse_wrk", &[], bad_unit.as_bytes());
}

// --- oha -----------------------------------------------------------------------------

#[test]
fn oha_fixed_rate_run() {
    // oha -z 3s -c 50 -q 8029 --latency-correction --no-tui --output-format json,
    // through HAProxy.
    let m = parse_fixture("bench_parse_oha", &[], "oha.json");
    close(&m, "requests_per_s", 8_020.850_923_298_627);
    close(&m, "duration_s", 3.001_427_184);
    close(&m, "responses", 24_050.0);
    close(&m, "status_2xx", 24_050.0);
    close(&m, "status_other", 0.0);
    // -z ends with requests in flight: "aborted due to deadline", not errors.
    close(&m, "aborted", 24.0);
    close(&m, "errors", 0.0);
    // Seconds in the JSON, µs out: p50 0.000464207 s → 464.207 µs.
    close(&m, "p50_us", 464.207);
    close(&m, "p99_us", 12_322.147);
    close(&m, "p99_9_us", 18_729.385);
    close(&m, "max_us", 23_661.388);
    assert!(m["p50_us"] < m["p90_us"] && m["p90_us"] < m["p99_us"]);
    assert!(m["p99_us"] < m["p99_9_us"] && m["p99_9_us"] <= m["max_us"]);
}

#[test]
fn oha_bad_input_fails() {
    let doc = read_fixture("oha.json");
    parse_fails("bench_parse_oha", &[], &doc[..doc.len() / 2]);
    let why = parse_fails("bench_parse_oha", &[], &read_fixture("iperf3.json"));
    assert!(why.contains("not oha JSON"), "{why}");
    parse_fails("bench_parse_oha", &[], b"");
}

// --- iperf3 --------------------------------------------------------------------------

#[test]
fn iperf3_run() {
    let m = parse_fixture("bench_parse_iperf3", &[], "iperf3.json");
    close(&m, "received_bps", 492_873_215.965_667);
    close(&m, "sent_bps", 497_905_036.053_714);
    close(&m, "retransmits", 207.0);
    close(&m, "duration_s", 3.012_414);
}

#[test]
fn iperf3_error_is_its_reason() {
    // iperf3 -J against a closed port: a JSON document with "error".
    let why = parse_fails(
        "bench_parse_iperf3",
        &[],
        &read_fixture("iperf3_refused.json"),
    );
    assert!(why.contains("unable to connect"), "{why}");
    parse_fails("bench_parse_iperf3", &[], b"not json");
    parse_fails("bench_parse_iperf3", &[], b"[]");
}

// --- /proc ---------------------------------------------------------------------------

#[test]
fn proc_stat_sums_the_listed_cpus() {
    let one = parse_fixture("bench_parse_proc_stat", &["1"], "proc_stat.txt");
    // cpu1 user nice system idle iowait irq softirq steal:
    // 2252095 23199 249224 5275753 70859 0 101666 5004
    close(
        &one,
        "busy_jiffies",
        2_252_095.0 + 23_199.0 + 249_224.0 + 101_666.0 + 5_004.0,
    );
    close(&one, "idle_jiffies", 5_275_753.0 + 70_859.0);
    close(&one, "cpus", 1.0);
    let both = parse_fixture("bench_parse_proc_stat", &["0-1"], "proc_stat.txt");
    let zero = parse_fixture("bench_parse_proc_stat", &["0"], "proc_stat.txt");
    close(
        &both,
        "busy_jiffies",
        one["busy_jiffies"] + zero["busy_jiffies"],
    );
    close(&both, "cpus", 2.0);
}

#[test]
fn proc_stat_bad_input_fails() {
    let stat = read_fixture("proc_stat.txt");
    let why = parse_fails("bench_parse_proc_stat", &["2"], &stat);
    assert!(why.contains("no cpu2"), "{why}");
    parse_fails("bench_parse_proc_stat", &["x"], &stat);
    parse_fails(
        "bench_parse_proc_stat",
        &["1"],
        &read_fixture("proc_status.txt"),
    );
}

#[test]
fn rss_of_a_process() {
    let m = parse_fixture("bench_parse_rss", &[], "proc_status.txt");
    close(&m, "rss_kb", 1_828.0);
    close(&m, "hwm_kb", 1_828.0);
    // A kernel thread has no VmRSS: that is an error, not 0 KiB.
    let why = parse_fails(
        "bench_parse_rss",
        &[],
        &read_fixture("proc_status_kthread.txt"),
    );
    assert!(why.contains("VmRSS"), "{why}");
}

#[test]
fn process_cpu_ticks_with_an_awkward_name() {
    // The command is "sleep ) x": fields count from the last parenthesis.
    let m = parse_fixture("bench_parse_proc_pid_stat", &[], "proc_pid_stat.txt");
    close(&m, "utime", 0.0);
    close(&m, "stime", 0.0);
    close(&m, "threads", 1.0);
    // wrk, two threads, after 2 s of load.
    let m = parse_fixture("bench_parse_proc_pid_stat", &[], "proc_pid_stat_wrk.txt");
    close(&m, "utime", 0.0);
    close(&m, "stime", 11.0);
    close(&m, "ticks", 11.0);
    close(&m, "threads", 2.0);
    parse_fails("bench_parse_proc_pid_stat", &[], b"1 (x) S 0");
}

#[test]
fn kernel_memory() {
    let m = parse_fixture("bench_parse_kmem", &[], "kmem.txt");
    close(&m, "slab_kb", 458_432.0);
    close(&m, "sunreclaim_kb", 55_536.0);
    close(&m, "tcp_mem_pages", 38.0);
    close(&m, "tcp_inuse", 1.0);
    close(&m, "tcp_tw", 0.0);
    // meminfo alone (sockstat missing) is refused.
    let meminfo: String = String::from_utf8(read_fixture("kmem.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("TCP:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let why = parse_fails("bench_parse_kmem", &[], meminfo.as_bytes());
    assert!(why.contains("sockstat"), "{why}");
}

// --- zerohop -------------------------------------------------------------------------

#[test]
fn zerohop_exit_log() {
    let m = parse_fixture("bench_parse_zerohop_exit", &[], "zerohop_exit.log");
    close(&m, "workers", 1.0);
    close(&m, "busy_ms", 17_848.3);
    close(&m, "busy_cycles", 46_405_549_164.0);
    close(&m, "busy_ms_w0", 17_848.3);
    // cycles / ms: the TSC rate, 2.6 GHz on the development VM.
    assert!((m["tsc_hz"] / 2.6e9 - 1.0).abs() < 0.001, "{}", m["tsc_hz"]);
    let why = parse_fails("bench_parse_zerohop_exit", &[], b"zerohop ready\n");
    assert!(why.contains("busy_ms"), "{why}");
}

#[test]
fn zerohop_admin_stats() {
    let m = parse_fixture("bench_parse_zerohop_admin", &[], "zerohop_admin_stats.txt");
    close(&m, "workers", 1.0);
    close(&m, "busy_cycles", 14_420_018_808.0);
    close(&m, "packets", 158_653.0);
    parse_fails(
        "bench_parse_zerohop_admin",
        &[],
        b"http.bench.downstream_rq_total: 3\n",
    );
}

#[test]
fn zerohop_loadgen_report() {
    // `zerohop loadgen --json` of a closed-loop run whose first 50 requests met the
    // proxy's stale pooled connections (50 × 503).
    let m = parse_fixture("bench_parse_loadgen", &[], "loadgen.json");
    close(&m, "rps", 30_802.0);
    close(&m, "requests", 92_506.0);
    close(&m, "responses", 92_406.0);
    close(&m, "error_total", 50.0);
    close(&m, "errors_status_5xx", 50.0);
    close(&m, "errors_timeout", 0.0);
    close(&m, "p50_us", 138.0);
    close(&m, "p99_9_us", 40_095.0);
    close(&m, "rate", 0.0); // null: closed loop
    close(&m, "new_connection_per_request", 0.0);
    // A new connection per request.
    let m = parse_fixture("bench_parse_loadgen", &[], "loadgen_cps.json");
    close(&m, "cps", 9_850.0);
    close(&m, "new_connection_per_request", 1.0);
    close(&m, "p99_us", 52_255.0);

    let text = String::from_utf8(read_fixture("loadgen.json")).unwrap();
    let edit = |from: &str, to: &str| {
        let edited = text.replace(from, to);
        assert_ne!(edited, text, "{from} is in the fixture");
        edited
    };
    let why = parse_fails(
        "bench_parse_loadgen",
        &[],
        edit("\"responses\":92406", "\"responses\":0").as_bytes(),
    );
    assert!(why.contains("no response"), "{why}");
    parse_fails(
        "bench_parse_loadgen",
        &[],
        edit("\"latency_us\"", "\"latency\"").as_bytes(),
    );
    parse_fails(
        "bench_parse_loadgen",
        &[],
        edit("\"rps\":30802.000", "\"rps\":\"fast\"").as_bytes(),
    );
    parse_fails(
        "bench_parse_loadgen",
        &[],
        &text.as_bytes()[..text.len() / 2],
    );
}

// --- client.py, statistics, CPU lists ------------------------------------------------

#[test]
fn connection_rate_client() {
    let m = parse_fixture("bench_parse_cps", &[], "client_cps.txt");
    close(&m, "conns", 7_099.0);
    close(&m, "errors", 0.0);
    close(&m, "secs", 3.0);
    let why = parse_fails(
        "bench_parse_cps",
        &[],
        b"result conns=0 errors=5 secs=3.0\n",
    );
    assert!(why.contains("no connection"), "{why}");
    parse_fails(
        "bench_parse_cps",
        &[],
        b"Traceback (most recent call last):\n",
    );
}

#[test]
fn median_and_spread() {
    let m = parse("bench_stats", &[], b"30\n10\n20\n");
    close(&m, "median", 20.0);
    close(&m, "min", 10.0);
    close(&m, "max", 30.0);
    close(&m, "n", 3.0);
    let m = parse("bench_stats", &[], b"4\n1\n\n2\n3\n");
    close(&m, "median", 2.5);
    let why = parse_fails("bench_stats", &[], b"");
    assert!(why.contains("no numbers"), "{why}");
    let why = parse_fails("bench_stats", &[], b"1\nFAILED\n");
    assert!(why.contains("FAILED"), "{why}");
}

#[test]
fn cpu_lists() {
    let out = run_parser("bench_cpu_list", &["4-6,1,5"], b"");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 4 5 6");
    for bad in ["", "1-", "3-1", "a", "1,,2"] {
        let out = run_parser("bench_cpu_list", &[bad], b"");
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("bench_cpu_list"));
    }
}

#[test]
fn every_parser_refuses_empty_input() {
    for (func, args) in [
        ("bench_parse_wrk", &[][..]),
        ("bench_parse_oha", &[]),
        ("bench_parse_iperf3", &[]),
        ("bench_parse_proc_stat", &["0"]),
        ("bench_parse_zerohop_exit", &[]),
        ("bench_parse_zerohop_admin", &[]),
        ("bench_parse_rss", &[]),
        ("bench_parse_proc_pid_stat", &[]),
        ("bench_parse_kmem", &[]),
        ("bench_parse_cps", &[]),
        ("bench_parse_loadgen", &[]),
        ("bench_stats", &[]),
    ] {
        parse_fails(func, args, b"");
    }
}

// --- the report ------------------------------------------------------------------------

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "zerohop-bench-harness-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run scripts/bench_report.py on RESULTS with SETUP and MACHINE into a new directory.
fn report(results: &Path, setup: &Path, machine: &Path) -> (Output, TempDir) {
    let dir = TempDir::new();
    let out = Command::new("python3")
        .current_dir(root())
        .arg("scripts/bench_report.py")
        .arg("--results")
        .arg(results)
        .arg("--setup")
        .arg(setup)
        .arg("--machine")
        .arg(machine)
        .arg("--out")
        .arg(&dir.0)
        .args(["--name", "t", "--date", "2026-11-27T12:00:00+0000"])
        .output()
        .expect("run python3");
    (out, dir)
}

fn read(dir: &TempDir, name: &str) -> String {
    std::fs::read_to_string(dir.0.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The Markdown row that starts with `| LABEL`, as its cells.
fn row(md: &str, label: &str) -> Vec<String> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {label}")))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{md}"));
    line.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// A value from the report's JSON, by a Python expression on `doc`.
fn json_value(dir: &TempDir, expr: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import json, sys; doc = json.load(open(sys.argv[1])); print({expr})"
        ))
        .arg(dir.0.join("t.json"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{expr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn report_from_canned_results() {
    let (out, dir) = report(
        &fixture("report/results.txt"),
        &fixture("report/setup.json"),
        &fixture("report/machine.json"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a FAILED cell → exit 1; {stderr}"
    );
    let md = read(&dir, "t.md");
    assert_eq!(
        md,
        String::from_utf8_lossy(&out.stdout),
        "stdout is the table"
    );

    // Three runs: median (min–max); ratios of medians.
    let r = row(&md, "requests/s, keep-alive");
    assert_eq!(r[1], "30,000 (29,000–32,000)", "zerohop");
    assert_eq!(r[2], "20,000 (19,000–21,000)", "HAProxy");
    assert_eq!(r[3], "24,000 (23,000–25,000)", "nginx");
    assert_eq!(r[4], "60,000 (59,000–61,000)", "direct");
    assert_eq!(r[5], "1.50×");
    assert_eq!(r[6], "1.25×");

    // CPU per request. Kernel proxies: jiffies at 100 Hz; run 1 of HAProxy:
    // 250 jiffies = 2.5 s over 200,000 requests = 12.5 µs. zerohop: busy cycles at the
    // TSC rate of its exit log (2.6e9): 2.6e9 cycles = 1 s over 200,000 = 5 µs.
    let r = row(&md, "  proxy CPU per request");
    assert_eq!(r[1], "5.00 (4.50–5.50)");
    assert_eq!(r[2], "12.50 (12.00–13.00)");
    assert_eq!(r[5], "0.40×");

    // Latency: percentiles, and what the proxy adds over direct at the same rate.
    let r = row(&md, "latency at 6,000 req/s: p50");
    assert_eq!(&r[1..5], ["300", "400", "350", "200"]);
    let r = row(&md, "  added p99 over direct");
    assert_eq!(r[1], "500", "zerohop p99 1,500 − direct 1,000");
    assert_eq!(r[4], "—");

    // Workloads that failed say so, in the cell and below the table.
    let r = row(&md, "HTTP new connections/s");
    assert_eq!(r[3], "FAILED");
    assert!(md.contains("- FAILED nginx http_cps: wrk through"), "{md}");

    // 1 MiB: requests/s × 1 MiB × 8 → Gbit/s of bodies.
    let r = row(&md, "HTTP 1 MiB responses");
    assert_eq!(r[1], "1.05", "125 × 1,048,576 × 8 / 1e9 = 1.048576");

    // Memory: RSS per connection, and kernel memory beyond the clients' (half of
    // direct's: (20,480 KiB / 1,000) / 2 = 10.24).
    let r = row(&md, "1,000 idle connections: proxy RSS per connection");
    assert_eq!(r[1], "2.00");
    assert_eq!(r[2], "1.50");
    let r = row(&md, "  kernel memory per connection beyond the client's");
    assert_eq!(r[1], "0.00", "zerohop: its sockets are not the kernel's");
    assert_eq!(r[2], "5.12", "HAProxy: 15.36 − 10.24");

    // Past saturation is flagged.
    assert!(
        md.contains("HAProxy latency 12000: served 9,000 of 12,000 req/s"),
        "{md}"
    );

    // The JSON has every run and the machine.
    assert_eq!(json_value(&dir, "doc['machine']['cpu_model']"), "Test CPU");
    assert_eq!(
        json_value(&dir, "len(doc['results']['haproxy']['rps']['-']['runs'])"),
        "3"
    );
    assert_eq!(
        json_value(
            &dir,
            "doc['results']['zerohop']['rps']['-']['summary']['requests_per_s']['median']"
        ),
        "30000.0"
    );
    assert_eq!(json_value(&dir, "doc['zerohop_tsc_hz']"), "2600000000.0");
    assert_eq!(
        json_value(&dir, "doc['ratios']['haproxy']['rps.requests_per_s']"),
        "1.50×"
    );
    assert!(
        json_value(&dir, "doc['results']['nginx']['http_cps']['-']['error']")
            .starts_with("wrk through")
    );

    // The chart: gnuplot script and its data.
    let gp = read(&dir, "t.gp");
    assert!(gp.contains("set output 't.png'"), "{gp}");
    let lat = read(&dir, "t-latency.dat");
    assert!(
        lat.contains("# direct\n6000 200.0 1000.0 2000.0\n"),
        "{lat}"
    );
    let rps = read(&dir, "t-rps.dat");
    assert!(rps.contains("\"zerohop\" 30000 29000 32000"), "{rps}");
}

#[test]
fn report_from_a_real_quick_run() {
    // results.txt, setup.json and machine.json of one `scripts/bench.sh --quick` run.
    let (out, dir) = report(
        &fixture("report/quick-results.txt"),
        &fixture("report/quick-setup.json"),
        &fixture("report/quick-machine.json"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let md = read(&dir, "t.md");
    for label in [
        "requests/s, keep-alive",
        "  proxy CPU per request",
        "latency at ",
        "HTTP new connections/s",
        "TCP new connections/s",
        "HTTP 1 MiB responses",
        "TCP single-connection throughput",
        "1,000 idle connections",
        "10,000 idle connections",
    ] {
        let r = row(&md, label);
        assert_eq!(r.len(), 7, "{label}: {r:?}");
        for (i, c) in r[1..4].iter().enumerate() {
            assert!(
                c != "FAILED" && c != "not run" && c != "—",
                "{label}: proxy {i} has {c}"
            );
        }
    }
    assert!(!md.contains("FAILED"), "{md}");
}

#[test]
fn report_refuses_a_malformed_results_line() {
    let dir = TempDir::new();
    let results = dir.0.join("results.txt");
    std::fs::write(&results, "zerohop rps - 1 requests_per_s\n").unwrap();
    let (out, _out_dir) = report(
        &results,
        &fixture("report/setup.json"),
        &fixture("report/machine.json"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("results.txt:1"), "{stderr}");
    std::fs::write(&results, "zerohop rps - 1 requests_per_s fast\n").unwrap();
    let (out, _out_dir) = report(
        &results,
        &fixture("report/setup.json"),
        &fixture("report/machine.json"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number"));
}
