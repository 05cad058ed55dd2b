//! Helpers for end-to-end tests: unique names, network namespaces, veth pairs, bounded
//! commands, and the zerohop binary as a child process.
//!
//! Every resource is an owner whose `Drop` removes it, so a failing (panicking) test
//! leaves no namespace, interface, process or temporary file behind. Declare owners in
//! creation order: locals drop in reverse, so zerohop stops before its interfaces go.
//!
//! Names are unique per process *and* per test ([`unique_id`]), so test binaries and the
//! tests inside them can run in parallel: namespace and interface names are machine-wide.
//! Only std is used; the tests drive `ip`, `ethtool`, `sysctl`, `ping`, `curl` and
//! `python3` (installed by scripts/setup.sh) and need root.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for integration tests.
pub const ZEROHOP: &str = env!("CARGO_BIN_EXE_zerohop");

/// How long zerohop may take from spawn to `zerohop ready` (EAL init, probe, port start).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long zerohop may take to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

const POLL: Duration = Duration::from_millis(20);

/// Return a short id unique across processes and across calls in this process:
/// the pid and a counter, base 36, fixed width (7 characters), so that a prefix of two
/// characters plus a suffix of up to six still fits the 15-character interface limit.
/// Pids below 4_194_304 start with 0-2 in base 36, so ids never start with a letter.
pub fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}{}",
        base36(u64::from(std::process::id()), 5),
        base36(u64::from(n), 2)
    )
}

fn base36(mut v: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(out).expect("ASCII digits")
}

/// Panic unless running as root: namespaces, veth pairs and DPDK virtual devices need it.
/// Set `ZEROHOP_SKIP_E2E=1` to skip (return `false`) instead, e.g. on a laptop.
pub fn require_root() -> bool {
    let euid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid == 0 {
        return true;
    }
    if std::env::var_os("ZEROHOP_SKIP_E2E").is_some_and(|v| v == "1") {
        eprintln!("skipping end-to-end test: not root and ZEROHOP_SKIP_E2E=1");
        return false;
    }
    panic!(
        "end-to-end tests need root (network namespaces, DPDK vdevs): run scripts/test.sh \
         as root, or set ZEROHOP_SKIP_E2E=1 to skip them"
    );
}

/// The output of a finished command.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Run `cmd` to completion with stdin closed and outputs captured; kill it and panic if it
/// runs longer than `timeout` (commands carry their own bounds, this is the safety net).
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {desc}: {e}"));
    let stdout = read_to_end_in_thread(child.stdout.take().expect("piped stdout"));
    let stderr = read_to_end_in_thread(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{desc} did not finish within {timeout:?}");
            }
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    CmdOutput {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
    }
}

fn read_to_end_in_thread(mut r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Run a setup command (`ip`, `sysctl`, …) and panic with its stderr if it fails.
pub fn must(program: &str, args: &[&str]) -> CmdOutput {
    let out = run_timeout(Command::new(program).args(args), Duration::from_secs(10));
    assert!(
        out.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        out.stderr.trim()
    );
    out
}

/// Run a cleanup command, ignoring failure (the thing may already be gone).
fn best_effort(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether interface `name` exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Wait until interface `name` exists in the root namespace (net_tap creates it at probe).
pub fn wait_link(name: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !link_exists(name) {
        assert!(
            Instant::now() < deadline,
            "interface {name} did not appear within {timeout:?}"
        );
        thread::sleep(POLL);
    }
}

/// A temporary directory, removed with everything in it on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("zerohop-{tag}-{}", unique_id()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A network namespace; dropping it kills the processes left inside and deletes it
/// (which deletes the veth ends and taps inside, and with them their peers).
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create namespace `name` with loopback up.
    pub fn new(name: &str) -> Netns {
        assert!(name.len() <= 15, "namespace name {name} too long");
        // A leftover from a killed run with a recycled pid would make `add` fail.
        best_effort("ip", &["netns", "del", name]);
        must("ip", &["netns", "add", name]);
        let ns = Netns {
            name: name.to_owned(),
        };
        must("ip", &["-n", name, "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program args` inside this namespace.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        cmd
    }

    /// Run `program args` inside this namespace, bounded by `timeout`.
    pub fn run(&self, program: &str, args: &[&str], timeout: Duration) -> CmdOutput {
        run_timeout(&mut self.command(program, args), timeout)
    }

    /// Run a setup command inside this namespace and panic if it fails.
    pub fn must(&self, program: &str, args: &[&str]) -> CmdOutput {
        let out = self.run(program, args, Duration::from_secs(10));
        assert!(
            out.success(),
            "[{}] {program} {} failed ({}): {}",
            self.name,
            args.join(" "),
            out.status,
            out.stderr.trim()
        );
        out
    }

    /// Start `program args` in the background inside this namespace.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Background {
        Background::spawn(self.command(program, args))
    }

    /// Disable IPv6 and tx checksum offload on `ifname`, give it `addr` (CIDR), bring it up.
    /// Without `tx off` the kernel hands DPDK frames with partial TCP checksums.
    pub fn configure_if(&self, ifname: &str, addr: &str) {
        let _ = self.run(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{ifname}.disable_ipv6=1")],
            Duration::from_secs(10),
        );
        self.must("ethtool", &["-K", ifname, "tx", "off"]);
        must(
            "ip",
            &["-n", &self.name, "addr", "add", addr, "dev", ifname],
        );
        must("ip", &["-n", &self.name, "link", "set", ifname, "up"]);
    }

    /// Move root-namespace interface `ifname` (e.g. a net_tap) here and configure it.
    pub fn adopt_if(&self, ifname: &str, addr: &str) {
        wait_link(ifname, Duration::from_secs(5));
        must("ip", &["link", "set", ifname, "netns", &self.name]);
        self.configure_if(ifname, addr);
    }

    /// Ping `dst` `count` times (0.2 s apart, 2 s deadline per reply).
    pub fn ping(&self, dst: &str, count: u32) -> CmdOutput {
        let count = count.to_string();
        self.run(
            "ping",
            &["-n", "-c", &count, "-i", "0.2", "-W", "2", dst],
            Duration::from_secs(30),
        )
    }

    /// HTTP GET `url` with curl (bounded by `max_time_s`) and return the output.
    pub fn curl(&self, url: &str, max_time_s: u32) -> CmdOutput {
        self.curl_with(url, max_time_s, &[])
    }

    /// curl `url` failing on HTTP errors, with `extra` arguments before the URL.
    fn curl_with(&self, url: &str, max_time_s: u32, extra: &[&str]) -> CmdOutput {
        let max_time = max_time_s.to_string();
        let mut args = vec!["-sS", "--fail", "--noproxy", "*", "--max-time", &max_time];
        args.extend_from_slice(extra);
        args.push(url);
        self.run(
            "curl",
            &args,
            Duration::from_secs(u64::from(max_time_s) + 10),
        )
    }

    /// HTTP GET `url` with curl (bounded by `max_time_s`), discarding the body: stdout is
    /// the HTTP status code (`200`; `000` when no response came), the exit code curl's
    /// (28: timed out).
    pub fn http_status(&self, url: &str, max_time_s: u32) -> CmdOutput {
        let max_time = max_time_s.to_string();
        self.run(
            "curl",
            &[
                "-sS",
                "--noproxy",
                "*",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                &max_time,
                url,
            ],
            Duration::from_secs(u64::from(max_time_s) + 10),
        )
    }

    /// Route everything off-link through `gateway` (e.g. zerohop's address on this side).
    pub fn add_default_route(&self, gateway: &str) {
        must(
            "ip",
            &["-n", &self.name, "route", "add", "default", "via", gateway],
        );
    }

    /// The neighbour (ARP) entry for `addr`: `(lladdr, state)`, e.g.
    /// `("32:15:75:e4:99:98", "REACHABLE")`; `None` if there is none or it has no lladdr
    /// (INCOMPLETE, FAILED).
    pub fn neighbour(&self, addr: &str) -> Option<(String, String)> {
        let out = must("ip", &["-n", &self.name, "neigh", "show", addr]);
        let text = out.stdout_str();
        // "10.201.1.254 dev zt0abc12a0 lladdr 32:15:75:e4:99:98 REACHABLE"
        let words: Vec<&str> = text.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "lladdr")?;
        let lladdr = words.get(at + 1)?;
        let state = words.last()?;
        Some(((*lladdr).to_owned(), (*state).to_owned()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .stderr(Stdio::null())
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                best_effort("kill", &["-KILL", pid]);
            }
        }
        best_effort("ip", &["netns", "del", &self.name]);
    }
}

/// A veth pair between a host namespace and the proxy's namespace: `ns_if` in `ns`,
/// addressed; `proxy_if` in `proxy` (`None`: the root namespace), up without an address,
/// for a DPDK net_af_packet port. Drop deletes it (deleting either end deletes both).
pub struct Veth {
    proxy_if: String,
    proxy_ns: Option<String>,
    ns_if: String,
}

impl Veth {
    pub fn new(ns: &Netns, ns_if: &str, proxy: Option<&Netns>, proxy_if: &str, addr: &str) -> Veth {
        assert!(
            ns_if.len() <= 15 && proxy_if.len() <= 15,
            "interface name too long"
        );
        let veth = Veth {
            proxy_if: proxy_if.to_owned(),
            proxy_ns: proxy.map(|p| p.name().to_owned()),
            ns_if: ns_if.to_owned(),
        };
        // A leftover from a killed run with a recycled pid would make `add` fail.
        best_effort("ip", &veth.ip_args(&["link", "del", proxy_if]));
        must(
            "ip",
            &veth.ip_args(&[
                "link",
                "add",
                proxy_if,
                "type",
                "veth",
                "peer",
                "name",
                ns_if,
                "netns",
                ns.name(),
            ]),
        );
        let sysctl = format!("net.ipv6.conf.{proxy_if}.disable_ipv6=1");
        let mut quiet = match proxy {
            Some(p) => p.command("sysctl", &["-qw", &sysctl]),
            None => {
                let mut cmd = Command::new("sysctl");
                cmd.args(["-qw", &sysctl]);
                cmd
            }
        };
        let _ = run_timeout(&mut quiet, Duration::from_secs(10));
        must("ip", &veth.ip_args(&["link", "set", proxy_if, "up"]));
        ns.configure_if(ns_if, addr);
        veth
    }

    /// The end in the far namespace (addressed).
    pub fn ns_if(&self) -> &str {
        &self.ns_if
    }

    pub fn proxy_if(&self) -> &str {
        &self.proxy_if
    }

    /// `ip` arguments addressing the proxy end's namespace.
    fn ip_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = Vec::with_capacity(args.len() + 2);
        if let Some(ns) = &self.proxy_ns {
            v.extend(["-n", ns.as_str()]);
        }
        v.extend_from_slice(args);
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        best_effort("ip", &self.ip_args(&["link", "del", &self.proxy_if]));
    }
}

/// A background process (e.g. an HTTP server in a namespace), killed on drop.
pub struct Background {
    child: Child,
}

impl Background {
    pub fn spawn(mut cmd: Command) -> Background {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        Background { child }
    }

    /// Panic if the process has already exited.
    pub fn assert_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{what} exited early: {status}");
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CPU for zerohop's one worker: 1 where the machine has a second CPU (leaving 0 to
/// the kernel side of the test: namespaces, ping, curl), else 0.
pub fn worker_core() -> usize {
    if thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        1
    } else {
        0
    }
}

/// A zerohop config with one L2 cross-connect between ports `left` and `right`.
/// `--no-pci` keeps DPDK away from the machine's own NIC.
pub fn xconnect_config(left_device: &str, right_device: &str) -> String {
    let core = worker_core();
    format!(
        r#"dataplane:
  cores: [{core}]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: left
      device: "{left_device}"
    - name: right
      device: "{right_device}"
  xconnect: [[left, right]]
"#
    )
}

/// The zerohop binary running as a child process, with its config and log in a temporary
/// directory. Drop stops it (SIGTERM, then SIGKILL) if the test did not.
pub struct Zerohop {
    child: Option<Child>,
    log_path: PathBuf,
    config_path: PathBuf,
    // Last field: dropped after `Drop::drop` has stopped the child.
    dir: TempDir,
}

impl Zerohop {
    /// Write `config` to a file and start `zerohop -c FILE --mode serve -l info` in the
    /// root namespace, with stdout and stderr going to a log file.
    pub fn start(config: &str) -> Zerohop {
        Zerohop::start_in(None, config)
    }

    /// Like [`Zerohop::start`], inside network namespace `ns` (`ip netns exec` execs, so
    /// the child's pid is zerohop's own). Needed for net_af_packet: DPDK 22.11 joins each
    /// af_packet socket to fanout group `(getpid() ^ ifindex) & 0xffff`, and groups are
    /// per namespace, so two zerohop processes in one namespace can collide and fail to
    /// probe with "could not set PACKET_FANOUT … Invalid argument".
    pub fn start_in(ns: Option<&Netns>, config: &str) -> Zerohop {
        let dir = TempDir::new("run");
        let config_path = dir.path().join("zerohop.yaml");
        let log_path = dir.path().join("zerohop.log");
        fs::write(&config_path, config).expect("write config");
        let log = File::create(&log_path).expect("create log");
        let mut cmd = match ns {
            Some(ns) => ns.command(ZEROHOP, &[]),
            None => Command::new(ZEROHOP),
        };
        let child = cmd
            .arg("-c")
            .arg(&config_path)
            .args(["--mode", "serve", "-l", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ZEROHOP}: {e}"));
        Zerohop {
            child: Some(child),
            log_path,
            config_path,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything zerohop has logged so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Wait for the `zerohop ready` line; panic with the log if zerohop exits first or
    /// the line does not come within `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains("zerohop ready") {
                return;
            }
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "zerohop exited before ready ({})\nconfig:\n{}\nlog:\n{}",
                    describe(status),
                    fs::read_to_string(&self.config_path).unwrap_or_default(),
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!("zerohop not ready within {timeout:?}\nlog:\n{}", self.log());
            }
            thread::sleep(POLL);
        }
    }

    /// Send SIGTERM and wait for the exit; return the exit status and the whole log.
    /// Panic (after SIGKILL) if zerohop does not exit within [`EXIT_TIMEOUT`].
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        match stop(&mut child, EXIT_TIMEOUT) {
            Ok(status) => (status, self.log()),
            Err(status) => panic!(
                "zerohop did not exit within {EXIT_TIMEOUT:?} of SIGTERM (killed: {})\nlog:\n{}",
                describe(status),
                self.log()
            ),
        }
    }
}

impl Drop for Zerohop {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first: a SIGKILLed EAL can leave hugepage files behind.
            let _ = stop(&mut child, Duration::from_secs(5));
            // A failing test (a client that hung, an assertion on the traffic)
            // says why only with zerohop's view: its exit stats and counters.
            if thread::panicking() {
                eprintln!("zerohop log (test failed):\n{}", log_tail(&self.log(), 200));
            }
        }
    }
}

/// The last `lines` lines of `log`, leaving out stats that are zero (most of them).
fn log_tail(log: &str, lines: usize) -> String {
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| !(l.contains(" stat ") && l.ends_with(": 0")))
        .collect();
    kept[kept.len().saturating_sub(lines)..].join("\n")
}

/// SIGTERM `child` and wait up to `grace`; then SIGKILL. `Ok` if it exited by itself.
fn stop(child: &mut Child, grace: Duration) -> Result<ExitStatus, ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok(status);
    }
    best_effort("kill", &["-TERM", &child.id().to_string()]);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        thread::sleep(POLL);
    }
    let _ = child.kill();
    Err(child.wait().expect("wait after SIGKILL"))
}

/// "exit code 1" or "killed by signal 11": what a test failure message should say.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!(
            "killed by signal {sig}{}",
            if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            }
        ),
        _ => format!("{status}"),
    }
}

/// The `key=value` counters on the last log line containing `port NAME:` and
/// `rx_packets=` (e.g. `port left: rx_packets=5 tx_packets=4 tx_dropped=0 imissed=0`;
/// other `port NAME:` lines, such as the one describing the port at start, are skipped).
pub fn port_counters(log: &str, port: &str) -> HashMap<String, u64> {
    let tag = format!("port {port}:");
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(&tag) && l.contains("rx_packets="))
        .unwrap_or_else(|| panic!("no `{tag} rx_packets=…` counters line in log:\n{log}"));
    let rest = &line[line.find(&tag).expect("found") + tag.len()..];
    rest.split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.trim_matches('"').parse().ok()?))
        })
        .collect()
}

/// The value of `mbufs_in_use=N` in the log (mbufs still out of the pool at exit).
pub fn mbufs_in_use(log: &str) -> Option<u64> {
    let at = log.rfind("mbufs_in_use=")? + "mbufs_in_use=".len();
    let digits: String = log[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The sum, over every line containing `needle`, of the number right after it; `None`
/// if no line contains it. Per-worker counters (`worker 0 error: …`, `worker 1 error: …`)
/// add up to the dataplane's total this way.
fn sum_after(log: &str, needle: &str) -> Option<u64> {
    let mut total = None;
    for line in log.lines() {
        let Some(at) = line.find(needle) else {
            continue;
        };
        let digits: String = line[at + needle.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if let Ok(n) = digits.parse::<u64>() {
            total = Some(total.unwrap_or(0) + n);
        }
    }
    total
}

/// The count logged at exit for drop/event reason `reason` of graph node `node`, summed
/// over workers (`worker 0 error: node=acl reason=deny count=2`); `None` if not logged
/// (zerohop logs only non-zero counters).
pub fn error_count(log: &str, node: &str, reason: &str) -> Option<u64> {
    sum_after(log, &format!(" error: node={node} reason={reason} count="))
}

/// The hits of ACL rule `rule` (its index in `dataplane.acl`) on port `port`, summed over
/// workers (`worker 0 acl: port=a rule=0 hits=2`).
pub fn acl_rule_hits(log: &str, port: &str, rule: usize) -> Option<u64> {
    sum_after(log, &format!(" acl: port={port} rule={rule} hits="))
}

/// The packets on port `port` that matched no ACL rule and were denied, summed over
/// workers (`worker 0 acl: port=a default-deny hits=0`).
pub fn acl_default_deny_hits(log: &str, port: &str) -> Option<u64> {
    sum_after(log, &format!(" acl: port={port} default-deny hits="))
}

/// The vectors (packets) graph node `node` processed, summed over workers, from the
/// runtime table logged at exit (`worker 0 runtime: ip4-input   25   25   1.0   10740.1`:
/// name, calls, vectors, vectors/call, cycles/packet); `None` if the node has no line.
pub fn runtime_vectors(log: &str, node: &str) -> Option<u64> {
    let mut total = None;
    for line in log.lines() {
        let Some(at) = line.find(" runtime: ") else {
            continue;
        };
        let mut cols = line[at + " runtime: ".len()..].split_whitespace();
        if cols.next() != Some(node) {
            continue;
        }
        if let Some(vectors) = cols.nth(1).and_then(|v| v.parse::<u64>().ok()) {
            total = Some(total.unwrap_or(0) + vectors);
        }
    }
    total
}

/// The MAC address zerohop logged for port `port` at start
/// (`port a: net_af_packet0,iface=… (driver …, port id 0, mac 32:15:75:e4:99:98, …)`).
pub fn port_mac(log: &str, port: &str) -> Option<String> {
    let tag = format!("port {port}: ");
    log.lines()
        .filter(|l| l.contains(&tag))
        .find_map(|l| {
            let rest = &l[l.find(", mac ")? + ", mac ".len()..];
            Some(rest.split([',', ' ', ')']).next()?.to_owned())
        })
        .filter(|mac| mac.len() == 17)
}

/// Assert a clean stop: exit code 0, `mbufs_in_use=0`, and on every port in `ports`
/// `rx_packets > 0` and `tx_packets > 0` (traffic crossed the cross-connect both ways).
pub fn assert_clean_exit_after_traffic(status: ExitStatus, log: &str, ports: &[&str]) {
    assert_eq!(
        status.code(),
        Some(0),
        "zerohop should exit 0 on SIGTERM, got {}\nlog:\n{log}",
        describe(status)
    );
    assert_eq!(
        mbufs_in_use(log),
        Some(0),
        "zerohop should return every mbuf to the pool (mbufs_in_use=0)\nlog:\n{log}"
    );
    let mut summary = String::new();
    for port in ports {
        let c = port_counters(log, port);
        let _ = write!(summary, "{port}: {c:?}; ");
        for key in ["rx_packets", "tx_packets"] {
            let v = c.get(key).copied();
            assert!(
                v.is_some_and(|v| v > 0),
                "port {port}: expected {key} > 0, got {v:?}\nlog:\n{log}"
            );
        }
    }
    eprintln!("counters: {summary}");
}

/// Deterministic pseudo-random bytes (xorshift), so a corrupted transfer is noticed.
pub fn test_payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `python3 -m http.server` serving a directory inside a namespace; killed on drop.
pub struct HttpServer {
    _process: Background,
    _root: TempDir,
}

impl HttpServer {
    /// Serve `files` (name, content) on `addr:port` in `ns`; return once it answers locally.
    pub fn start(ns: &Netns, addr: &str, port: u16, files: &[(&str, &[u8])]) -> HttpServer {
        let root = TempDir::new("www");
        for (name, content) in files {
            fs::write(root.path().join(name), content).expect("write served file");
        }
        let port_s = port.to_string();
        let dir = root.path().to_str().expect("utf-8 temp path").to_owned();
        let mut process = ns.spawn(
            "python3",
            &[
                "-m",
                "http.server",
                "--bind",
                addr,
                "--directory",
                &dir,
                &port_s,
            ],
        );
        // Ask from inside the same namespace: local delivery, not through zerohop.
        let url = format!("http://{addr}:{port}/");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            process.assert_running("python3 -m http.server");
            if ns.curl(&url, 1).success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "http.server in {} not answering on {url}",
                ns.name()
            );
            thread::sleep(Duration::from_millis(100));
        }
        HttpServer {
            _process: process,
            _root: root,
        }
    }
}

/// The loop counters each worker logs at exit
/// (`worker 0 (cpu 1): iterations=40280117 busy_iterations=37 packets=49 busy_ratio=0.000001`),
/// by worker number, with the CPU under key `cpu`; non-integer values (`busy_ratio`) are
/// left out. Empty if no such line was logged.
pub fn worker_counters(log: &str) -> std::collections::BTreeMap<usize, HashMap<String, u64>> {
    let mut workers = std::collections::BTreeMap::new();
    for line in log.lines() {
        let Some(at) = line.find("worker ") else {
            continue;
        };
        let rest = &line[at + "worker ".len()..];
        let Some((worker, rest)) = rest.split_once(" (cpu ") else {
            continue;
        };
        let Some((cpu, rest)) = rest.split_once("): ") else {
            continue;
        };
        let (Ok(worker), Ok(cpu)) = (worker.parse::<usize>(), cpu.parse::<u64>()) else {
            continue;
        };
        let mut counters = int_fields(rest);
        counters.insert("cpu".to_owned(), cpu);
        workers.insert(worker, counters);
    }
    workers
}

/// The count logged at exit for drop/event reason `reason` of graph node `node`, per
/// worker (`worker 1 error: node=ip4-arp reason=held count=3` → `{1: 3}`); workers that
/// logged no such line (zerohop logs only non-zero counters) are absent.
pub fn error_count_by_worker(
    log: &str,
    node: &str,
    reason: &str,
) -> std::collections::BTreeMap<usize, u64> {
    let needle = format!(" error: node={node} reason={reason} count=");
    let mut counts = std::collections::BTreeMap::new();
    for line in log.lines() {
        let Some((worker, rest)) = worker_line(line, &needle) else {
            continue;
        };
        if let Some(Ok(count)) = rest.split_whitespace().next().map(str::parse::<u64>) {
            *counts.entry(worker).or_insert(0) += count;
        }
    }
    counts
}

/// For a log line `… worker N{marker}REST`: N and REST.
fn worker_line<'a>(line: &'a str, marker: &str) -> Option<(usize, &'a str)> {
    let at = line.find(marker)?;
    let w = line[..at].rfind("worker ")?;
    let worker = line[w + "worker ".len()..at].parse().ok()?;
    Some((worker, &line[at + marker.len()..]))
}

/// The `key=value` fields of `s` whose values are integers.
fn int_fields(s: &str) -> HashMap<String, u64> {
    s.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

impl Netns {
    /// HTTP GET `url` with curl from local TCP port `local_port` (so that parallel
    /// requests are distinct flows with known source ports), bounded by `max_time_s`;
    /// stdout is the body, and curl fails (exit 22) on an HTTP error status.
    pub fn curl_from_port(&self, url: &str, local_port: u16, max_time_s: u32) -> CmdOutput {
        let local_port = local_port.to_string();
        self.curl_with(url, max_time_s, &["--local-port", &local_port])
    }
}

/// Run one [`Netns::curl_from_port`] per entry of `local_ports`, all at once (one thread
/// each), and return the outputs in the same order.
pub fn parallel_curl(
    ns: &Netns,
    url: &str,
    local_ports: &[u16],
    max_time_s: u32,
) -> Vec<CmdOutput> {
    thread::scope(|s| {
        let handles: Vec<_> = local_ports
            .iter()
            .map(|&port| s.spawn(move || ns.curl_from_port(url, port, max_time_s)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("curl thread panicked"))
            .collect()
    })
}

/// The vectors (packets) graph node `node` processed, per worker, from the runtime table
/// logged at exit (see [`runtime_vectors`]); workers without a line for it are absent.
pub fn runtime_vectors_by_worker(log: &str, node: &str) -> std::collections::BTreeMap<usize, u64> {
    let mut by_worker = std::collections::BTreeMap::new();
    for line in log.lines() {
        let Some((worker, rest)) = worker_line(line, " runtime: ") else {
            continue;
        };
        let mut cols = rest.split_whitespace();
        if cols.next() != Some(node) {
            continue;
        }
        if let Some(vectors) = cols.nth(1).and_then(|v| v.parse::<u64>().ok()) {
            *by_worker.entry(worker).or_insert(0) += vectors;
        }
    }
    by_worker
}

/// Ping `dst` from `ns` three times; panic with ping's output and zerohop's log unless
/// every reply came, with IP TTL `reply_ttl` if given (63 = one router hop: proof that
/// zerohop routed rather than bridged).
pub fn assert_ping(zerohop: &Zerohop, ns: &Netns, dst: &str, reply_ttl: Option<u8>) {
    let ping = ns.ping(dst, 3);
    let out = ping.stdout_str();
    assert!(
        ping.success() && out.contains(" 0% packet loss"),
        "ping {} -> {dst} through zerohop failed ({}):\n{out}{}\nzerohop log:\n{}",
        ns.name(),
        describe(ping.status),
        ping.stderr,
        zerohop.log()
    );
    if let Some(ttl) = reply_ttl {
        assert!(
            out.contains(&format!(" ttl={ttl} ")),
            "ping {} -> {dst}: replies should arrive with ttl={ttl}:\n{out}",
            ns.name()
        );
    }
}

/// The value of the statistic `name` that zerohop logs at exit as `stat NAME: VALUE`
/// (Envoy stat names, summed over workers: `stat tcp.l4.downstream_cx_total: 5`,
/// `stat cluster.backend.endpoint.10.0.1.2:9001.cx_total: 10`); the last such line
/// counts. `None` if there is no such line or its value is not an integer.
pub fn stat(log: &str, name: &str) -> Option<u64> {
    let needle = format!("stat {name}: ");
    log.lines().rev().find_map(|line| {
        let at = line.find(&needle)?;
        // `stat` must start a word: not the tail of a longer one (`…_stat x: 1`).
        let starts_word = at == 0 || line[..at].ends_with(char::is_whitespace);
        if !starts_word {
            return None;
        }
        line[at + needle.len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The path of `rel` under `tests/fixtures/` (helper scripts for the tests).
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The resident set size of process `pid` in KiB (`VmRSS:` in `/proc/PID/status`; pages
/// of hugetlbfs mappings are not in it); `None` once the process is gone.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A background process (a test server or client in a namespace) whose stdout and
/// stderr go to a file that the test reads while it runs; killed (SIGKILL) on drop.
pub struct LoggedProcess {
    child: Option<Child>,
    what: String,
    out_path: PathBuf,
    // Last field: dropped after `Drop::drop` has killed the child.
    _dir: TempDir,
}

impl LoggedProcess {
    /// Start `cmd` with stdin closed and its output going to a temporary file; `what`
    /// names it in panic messages.
    pub fn spawn(mut cmd: Command, what: &str) -> LoggedProcess {
        let dir = TempDir::new("proc");
        let out_path = dir.path().join("output.log");
        let out = File::create(&out_path).expect("create process log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup process log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what} ({cmd:?}): {e}"));
        LoggedProcess {
            child: Some(child),
            what: what.to_owned(),
            out_path,
            _dir: dir,
        }
    }

    /// The process id (`ip netns exec` execs, so it is the program's own).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the process has written so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        fs::read(&self.out_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Wait until a line of the output contains `needle` and return that line; panic
    /// with the output if the process exits first or `timeout` passes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "{} exited ({}) before printing `{needle}`; output:\n{}",
                        self.what,
                        describe(status),
                        self.output()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print `{needle}` within {timeout:?}; output:\n{}",
                self.what,
                self.output()
            );
            thread::sleep(POLL);
        }
    }

    /// Panic if the process has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("running");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited early ({}); output:\n{}",
                self.what,
                describe(status),
                self.output()
            );
        }
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Netns {
    /// Start `program args` in the background inside this namespace with its output
    /// captured (see [`LoggedProcess`]).
    pub fn spawn_logged(&self, program: &str, args: &[&str], what: &str) -> LoggedProcess {
        LoggedProcess::spawn(self.command(program, args), what)
    }
}

/// The `result key=value …` line a client.py command prints last, and all it printed.
pub struct ClientResult {
    pub values: HashMap<String, String>,
    pub stdout: String,
}

impl ClientResult {
    pub fn parse(out: &CmdOutput) -> Option<ClientResult> {
        let stdout = out.stdout_str();
        if !out.success() {
            return None;
        }
        let line = stdout.lines().rev().find(|l| l.starts_with("result "))?;
        let values = line["result ".len()..]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(ClientResult { values, stdout })
    }

    /// Panic unless this `client.py send` result shows `bytes` sent and
    /// received whole by the upstream (count and SHA-256) and the upstream's
    /// reply intact; `why` adds the outputs to the message.
    pub fn assert_send_intact(&self, bytes: &str, why: impl Fn() -> String) {
        let r = self;
        assert_eq!(r.get("error"), "<missing>", "transfer failed\n{}", why());
        assert_eq!(r.get("sent"), bytes, "client sent too little\n{}", why());
        assert_eq!(
            r.get("server_bytes"),
            bytes,
            "upstream got a different count\n{}",
            why()
        );
        assert_eq!(
            r.get("server_sha256"),
            r.get("sent_sha256"),
            "upstream received different bytes than the client sent\n{}",
            why()
        );
        assert_eq!(
            r.get("tail_ok"),
            "1",
            "reply from upstream corrupted\n{}",
            why()
        );
    }

    /// The value of `key`, or "<missing>".
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("<missing>", String::as_str)
    }

    /// The value of `key` as a number; panic if it is missing or not one.
    pub fn num(&self, key: &str) -> f64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("client result: no number `{key}=`: {}", self.stdout))
    }
}

/// Panic unless the exit log has `stat NAME: V` with V == `want`. A `want` of 0 also
/// accepts no line at all.
pub fn assert_stat_eq(log: &str, name: &str, want: u64) {
    let got = stat(log, name);
    let ok = got == Some(want) || (want == 0 && got.is_none());
    assert!(
        ok,
        "want `stat {name}: {want}` in the exit log, got {got:?}\nlog:\n{log}"
    );
}

/// The L4 proxy tests' zerohop config: workers on `cores`, L3 ports `down`
/// (`devices[0]`, `addresses[0]`) and `up` (`devices[1]`, `addresses[1]`),
/// `dataplane_extra` (keys of `dataplane`, indented two spaces, e.g. a `tcp:`
/// section) and listener `l4` on 0.0.0.0:`listener_port` with a `tcp_proxy`
/// (idle timeout 30 s) to cluster `backend`: round robin over
/// `upstream:port` for each of `endpoint_ports`.
pub fn tcp_proxy_config(
    cores: &[usize],
    devices: [&str; 2],
    addresses: [&str; 2],
    listener_port: u16,
    upstream: &str,
    endpoint_ports: &[u16],
    dataplane_extra: &str,
) -> String {
    let cores = cores
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let [down, up] = devices;
    let [down_addr, up_addr] = addresses;
    let endpoints: String = endpoint_ports
        .iter()
        .map(|port| {
            format!(
                "        - endpoint: {{ address: {{ socket_address: \
                 {{ address: {upstream}, port_value: {port} }} }} }}\n"
            )
        })
        .collect();
    format!(
        r#"dataplane:
  cores: [{cores}]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: down
      device: "{down}"
      address: {down_addr}
    - name: up
      device: "{up}"
      address: {up_addr}
{dataplane_extra}static_resources:
  listeners:
  - name: l4
    address:
      socket_address: {{ address: 0.0.0.0, port_value: {listener_port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: l4
          cluster: backend
          idle_timeout: 30s
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    # Envoy's default max_connections (1024) would cap the thousands of connections
    # opened here.
    circuit_breakers: {{ thresholds: [{{ max_connections: 1000000 }}] }}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
{endpoints}"#
    )
}

/// Start `tests/fixtures/tcp/server.py MODE --addr ADDR args…` in `ns`; wait
/// up to `ready` for it to print `ready`.
pub fn tcp_server_py(
    ns: &Netns,
    mode: &str,
    addr: &str,
    args: &[&str],
    ready: Duration,
) -> LoggedProcess {
    let script = fixture("tcp/server.py");
    let mut argv = vec![script.to_str().expect("utf-8 path"), mode, "--addr", addr];
    argv.extend_from_slice(args);
    let mut server = ns.spawn_logged("python3", &argv, &format!("server.py {mode}"));
    server.wait_for("ready", ready);
    server
}

/// `tests/fixtures/tcp/client.py COMMAND --host HOST --port PORT args…`.
pub fn tcp_client_argv(command: &str, host: &str, port: u16, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        fixture("tcp/client.py")
            .to_str()
            .expect("utf-8 path")
            .to_owned(),
        command.to_owned(),
        "--host".to_owned(),
        host.to_owned(),
        "--port".to_owned(),
        port.to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

/// Run `argv` (see [`tcp_client_argv`]) with python3 in `ns` to completion,
/// bounded by `timeout`; return its `result` line, panicking with the
/// client's output and zerohop's log if it failed or printed none.
pub fn run_tcp_client(
    ns: &Netns,
    zerohop: &Zerohop,
    argv: &[String],
    timeout: Duration,
) -> ClientResult {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = ns.run("python3", &argv, timeout);
    ClientResult::parse(&out).unwrap_or_else(|| {
        panic!(
            "client.py {} failed ({}) or printed no result line\nstdout:\n{}\
             stderr:\n{}\nzerohop log:\n{}",
            argv.get(1).copied().unwrap_or("?"),
            describe(out.status),
            out.stdout_str(),
            out.stderr,
            zerohop.log()
        )
    })
}

/// Serialise the calling test binary's heavy tests (each binary has its own
/// lock): tests that load both CPUs for seconds.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked while holding the lock poisons it; the next may still run.
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Return false (skip) where [`require_root`] says so; panic unless CPUs 0 and 1 exist.
pub fn two_worker_preconditions() -> bool {
    if !require_root() {
        return false;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "two-worker tests need CPUs 0 and 1, this process may use {cpus}"
    );
    true
}

/// The largest `peak=N` (concurrent connections) that `server.py echo` logged.
pub fn echo_peak(output: &str) -> u64 {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("peak=")?.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

// ---- The proxy topology of the TCP and HTTP proxy tests ----

pub const CLIENT: &str = "10.0.0.2";
/// zerohop's address on port `down`: the clients' gateway and the listener's address.
pub const PROXY_DOWN: &str = "10.0.0.1";
/// zerohop's address on port `up`: the source of its upstream connections.
pub const PROXY_UP: &str = "10.0.1.1";
pub const UPSTREAM: &str = "10.0.1.2";
/// Namespaces C (clients) and U (upstream servers), each joined by a veth pair to
/// namespace P, where zerohop runs with net_af_packet ports on the P ends: `down`
/// towards C, `up` towards U. zerohop gets a namespace of its own because DPDK 22.11's
/// af_packet PMD picks its PACKET_FANOUT group id as `(getpid() ^ ifindex) & 0xffff`,
/// per namespace (see tests/e2e_router.rs). Fields drop in order: the veths go first,
/// then the namespaces (which kills the servers and clients left in them).
pub struct ProxyTopology {
    pub veth_c: Veth,
    pub veth_u: Veth,
    pub ns_p: Netns,
    pub ns_c: Netns,
    pub ns_u: Netns,
}

impl ProxyTopology {
    /// Build it, and check that zerohop's address does not answer from C while zerohop
    /// is not running (else the test proves nothing).
    pub fn new() -> ProxyTopology {
        let id = unique_id();
        let ns_c = Netns::new(&format!("zp{id}c"));
        let ns_u = Netns::new(&format!("zp{id}u"));
        let ns_p = Netns::new(&format!("zp{id}p"));
        let veth_c = Veth::new(
            &ns_c,
            &format!("zp{id}c0"),
            Some(&ns_p),
            &format!("zp{id}c1"),
            &format!("{CLIENT}/24"),
        );
        let veth_u = Veth::new(
            &ns_u,
            &format!("zp{id}u0"),
            Some(&ns_p),
            &format!("zp{id}u1"),
            &format!("{UPSTREAM}/24"),
        );
        ns_c.add_default_route(PROXY_DOWN);
        ns_u.add_default_route(PROXY_UP);
        let topo = ProxyTopology {
            veth_c,
            veth_u,
            ns_p,
            ns_c,
            ns_u,
        };
        let ping = topo.ns_c.run(
            "ping",
            &["-n", "-c", "1", "-W", "1", PROXY_DOWN],
            Duration::from_secs(10),
        );
        assert!(
            !ping.success(),
            "{PROXY_DOWN} answers in {} before zerohop started: the test proves nothing\n{}",
            topo.ns_c.name(),
            ping.stdout_str()
        );
        // Forget the failed ARP resolution, so the first packets to zerohop start afresh
        // rather than waiting out a FAILED entry.
        must("ip", &["-n", topo.ns_c.name(), "neigh", "flush", "all"]);
        topo
    }
}

/// Start `tests/fixtures/http/idle_client.py` in `ns` with `n` keep-alive connections to
/// `host:port`, each sending one GET under `prefix`; return once all are idle after
/// their answer, each 200 (the script then reports how each connection ends).
pub fn idle_clients(ns: &Netns, host: &str, port: u16, n: usize, prefix: &str) -> LoggedProcess {
    let script = fixture("http/idle_client.py");
    let (port, n_s) = (port.to_string(), n.to_string());
    let mut p = ns.spawn_logged(
        "python3",
        &[&script.to_string_lossy(), host, &port, &n_s, prefix],
        "idle keep-alive client",
    );
    p.wait_for("idle", Duration::from_secs(15));
    let out = p.output();
    let ok = out.lines().filter(|l| l.ends_with(" status=200")).count();
    assert_eq!(
        ok, n,
        "every idle connection's request should get 200:\n{out}"
    );
    p
}

/// An entry of `listeners:`: listener `name` on 0.0.0.0:`port` with an HTTP connection
/// manager (stat_prefix `name`) with `hcm_extra` (its keys, each line indented ten
/// spaces) and `routes` (entries of `routes:`, each line indented 14 spaces).
pub fn http_listener(name: &str, port: u16, hcm_extra: &str, routes: &str) -> String {
    format!(
        r#"  - name: {name}
    address:
      socket_address: {{ address: 0.0.0.0, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: AUTO
{hcm_extra}          route_config:
            name: local
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// The TCP counters each worker logs at exit (`worker 0 tcp: passive_opens=3
/// active_opens=3 … handed_off=1 …`), by worker number.
pub fn tcp_counters(log: &str) -> std::collections::BTreeMap<usize, HashMap<String, u64>> {
    let mut workers = std::collections::BTreeMap::new();
    for line in log.lines() {
        if let Some((worker, rest)) = worker_line(line, " tcp: ") {
            workers.insert(worker, int_fields(rest));
        }
    }
    workers
}
