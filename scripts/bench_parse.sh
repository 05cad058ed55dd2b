# shellcheck shell=bash
# shellcheck disable=SC2016 # the Python programs are single-quoted on purpose
# The parsers of scripts/bench.sh: each reads one tool's output on stdin and prints
# `KEY VALUE` lines (numbers, SI units in the key: _us, _bps, _kb, ...), or, when the
# input is not what it expects, prints nothing on stdout, says why on stderr and
# returns 1 — never a silent 0. Pure functions: no root, no namespaces, no files but
# stdin, so tests/bench_harness.rs runs each against a real captured output in
# tests/fixtures/bench/:
#
#   bash -c '. scripts/bench_parse.sh; bench_parse_wrk < tests/fixtures/bench/wrk.txt'
#
#   bench_parse_wrk            wrk --latency text
#   bench_parse_oha            oha --output-format json
#   bench_parse_iperf3         iperf3 -J (client side)
#   bench_parse_proc_stat LIST non-idle jiffies of the CPUs in LIST (taskset syntax)
#   bench_parse_zerohop_exit   zerohop's exit log: busy_ms / busy_cycles over workers
#   bench_parse_zerohop_admin  zerohop's admin GET /stats: busy_cycles over workers
#   bench_parse_rss            /proc/PID/status: VmRSS
#   bench_parse_proc_pid_stat  /proc/PID/stat: user+system ticks
#   bench_parse_kmem           /proc/meminfo then /proc/net/sockstat (concatenated)
#   bench_parse_cps            tests/fixtures/tcp/client.py cps result line
#   bench_parse_loadgen        `zerohop loadgen --json` output
#   bench_stats                numbers, one per line → median, min, max, n
#   bench_cpu_list LIST        "0-2,5" → "0 1 2 5" (checked)
#
# Python does the parsing (it is there anyway: the fixtures' clients are Python).

# _bench_py PROGRAM [ARG...]: run a Python parser on stdin. The program raises
# BadInput(why) for input it does not understand; that becomes `NAME: why` on stderr
# and exit 1. It returns a dict (or list of pairs), printed as KEY VALUE lines.
_bench_py() {
  local prog=$1
  shift
  python3 -c '
import json, math, re, sys

class BadInput(Exception):
    pass

def emit(pairs):
    out = []
    for k, v in (pairs.items() if isinstance(pairs, dict) else pairs):
        if isinstance(v, float):
            if not math.isfinite(v):
                raise BadInput(f"{k} is {v}")
            v = repr(round(v, 6))
        out.append(f"{k} {v}")
    return "\n".join(out)

name = sys.argv[1]
text = sys.stdin.read()
def snippet():
    s = " ".join(text.split())
    return repr(s[:160]) if s else "empty input"
try:
    ns = {"BadInput": BadInput, "json": json, "re": re, "math": math, "text": text,
          "args": sys.argv[3:], "snippet": snippet}
    exec(sys.argv[2], ns)
    print(emit(ns["parse"]()))
except BadInput as e:
    print(f"{name}: {e}", file=sys.stderr)
    sys.exit(1)
' "${FUNCNAME[1]}" "$prog" "$@"
}

# wrk --latency output → requests_per_s requests duration_s p50_us p75_us p90_us p99_us
# read_bytes transfer_bps non2xx socket_errors (connect+read+write+timeout)
# connect_errors read_errors write_errors timeout_errors.
bench_parse_wrk() {
  _bench_py '
UNITS_T = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
def us(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", v)
    if not m:
        raise BadInput(f"latency {v!r} has no unit wrk uses")
    return float(m.group(1)) * UNITS_T[m.group(2)]
def nbytes(v):
    m = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", v)
    if not m:
        raise BadInput(f"size {v!r} has no unit wrk uses")
    return float(m.group(1)) * UNITS_B[m.group(2)]
def need(pattern, what):
    m = re.search(pattern, text, re.M)
    if not m:
        raise BadInput(f"no {what} in wrk output: {snippet()}")
    return m
def parse():
    out = {}
    m = need(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+[KMGT]?B) read", "`N requests in T, B read` line")
    out["requests"] = int(m.group(1))
    out["duration_s"] = float(m.group(2)) * UNITS_T[m.group(3)] / 1e6
    out["read_bytes"] = nbytes(m.group(4))
    out["requests_per_s"] = float(need(r"^Requests/sec:\s+([\d.]+)", "Requests/sec line").group(1))
    out["transfer_bps"] = nbytes(need(r"^Transfer/sec:\s+(\S+)", "Transfer/sec line").group(1)) * 8
    for p in ("50", "75", "90", "99"):
        out[f"p{p}_us"] = us(need(rf"^\s+{p}(?:\.0+)?%\s+(\S+)", f"{p}% latency (was --latency given?)").group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errs = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    out["socket_errors"] = sum(errs)
    for k, v in zip(("connect", "read", "write", "timeout"), errs):
        out[f"{k}_errors"] = v
    if out["requests"] == 0:
        raise BadInput(f"wrk completed no request: {snippet()}")
    return out
'
}

# oha --output-format json → requests_per_s success_rate duration_s requests responses
# p50_us p90_us p99_us p99_9_us max_us mean_us status_2xx status_other errors (all
# errors but "aborted due to deadline", which -z produces for requests in flight at the
# end) aborted.
bench_parse_oha() {
  _bench_py '
def parse():
    try:
        doc = json.loads(text)
        s, pct = doc["summary"], doc["latencyPercentiles"]
        codes, errs = doc["statusCodeDistribution"], doc["errorDistribution"]
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(f"not oha JSON ({type(e).__name__} {e}): {snippet()}")
    responses = sum(codes.values())
    if responses == 0:
        raise BadInput("oha got no response; errors: " + (json.dumps(errs) if errs else "none"))
    def sec(key):
        v = pct.get(key)
        if v is None:
            raise BadInput(f"oha latencyPercentiles has no {key}")
        return v * 1e6
    aborted = sum(n for e, n in errs.items() if "deadline" in e)
    out = {
        "requests_per_s": float(s["requestsPerSec"]),
        "success_rate": float(s["successRate"]),
        "duration_s": float(s["total"]),
        "responses": responses,
        "p50_us": sec("p50"), "p90_us": sec("p90"), "p99_us": sec("p99"),
        "p99_9_us": sec("p99.9"), "p99_99_us": sec("p99.99"),
        "max_us": float(s["slowest"]) * 1e6, "mean_us": float(s["average"]) * 1e6,
        "status_2xx": sum(n for c, n in codes.items() if c.startswith("2")),
        "status_other": sum(n for c, n in codes.items() if not c.startswith("2")),
        "errors": sum(errs.values()) - aborted,
        "aborted": aborted,
    }
    out["responses_per_s"] = responses / out["duration_s"]
    return out
'
}

# iperf3 -J (client) output → received_bps sent_bps retransmits duration_s.
bench_parse_iperf3() {
  _bench_py '
def parse():
    try:
        doc = json.loads(text)
    except ValueError:
        raise BadInput(f"not JSON: {snippet()}")
    if not isinstance(doc, dict):
        raise BadInput(f"not an iperf3 result: {snippet()}")
    why = doc.get("error")
    if why:
        raise BadInput("iperf3: " + str(why))
    try:
        rx, tx = doc["end"]["sum_received"], doc["end"]["sum_sent"]
        out = {"received_bps": float(rx["bits_per_second"]), "sent_bps": float(tx["bits_per_second"]),
               "retransmits": int(tx.get("retransmits", 0)), "duration_s": float(rx["seconds"])}
    except (KeyError, TypeError) as e:
        raise BadInput(f"iperf3 JSON without end.sum_received/sum_sent ({e})")
    if out["received_bps"] <= 0:
        raise BadInput("iperf3 received nothing")
    return out
'
}

# bench_parse_proc_stat LIST: /proc/stat → busy_jiffies (user+nice+system+irq+softirq+
# steal of every CPU in LIST) idle_jiffies (idle+iowait) cpus.
bench_parse_proc_stat() {
  local cpus
  if ! cpus=$(bench_cpu_list "${1-}" 2>&1); then
    echo "bench_parse_proc_stat: $cpus" >&2
    return 1
  fi
  _bench_py '
def parse():
    want = [int(c) for c in args[0].split()]
    rows = {}
    for line in text.splitlines():
        f = line.split()
        if f and re.fullmatch(r"cpu\d+", f[0]):
            if len(f) < 9:
                raise BadInput(f"short /proc/stat line: {line!r}")
            rows[int(f[0][3:])] = [int(x) for x in f[1:9]]
    if not rows:
        raise BadInput(f"no cpuN lines (is this /proc/stat?): {snippet()}")
    busy = idle = 0
    for c in want:
        if c not in rows:
            raise BadInput(f"no cpu{c} line in /proc/stat (CPUs {sorted(rows)})")
        user, nice, system, idl, iowait, irq, softirq, steal = rows[c]
        busy += user + nice + system + irq + softirq + steal
        idle += idl + iowait
    return {"busy_jiffies": busy, "idle_jiffies": idle, "cpus": len(want)}
' "$cpus"
}

# zerohop's log (its exit lines `worker N (cpu C): ... busy_cycles=X busy_ms=Y`) →
# workers busy_ms busy_cycles tsc_hz (cycles per second, from the two) and
# busy_ms_wN per worker. The last line per worker counts (a log holds one run).
bench_parse_zerohop_exit() {
  _bench_py '
def parse():
    per = {}
    for m in re.finditer(r"worker (\d+) \(cpu \d+\):.*?busy_cycles=(\d+) busy_ms=([\d.]+)", text):
        per[int(m.group(1))] = (int(m.group(2)), float(m.group(3)))
    if not per:
        raise BadInput("no `worker N (cpu C): ... busy_cycles=X busy_ms=Y` line (did zerohop exit cleanly?)")
    cycles = sum(c for c, _ in per.values())
    ms = sum(m for _, m in per.values())
    out = [("workers", len(per)), ("busy_ms", ms), ("busy_cycles", cycles)]
    # busy_ms is printed with one decimal: below 100 ms the ratio is too coarse.
    if ms >= 100:
        out.append(("tsc_hz", cycles / ms * 1e3))
    out += [(f"busy_ms_w{w}", per[w][1]) for w in sorted(per)]
    return out
'
}

# zerohop's admin `GET /stats` → workers busy_cycles (summed over
# dataplane.worker.N.busy_cycles) packets.
bench_parse_zerohop_admin() {
  _bench_py '
def parse():
    cyc = dict(re.findall(r"^dataplane\.worker\.(\d+)\.busy_cycles: (\d+)$", text, re.M))
    pk = dict(re.findall(r"^dataplane\.worker\.(\d+)\.packets: (\d+)$", text, re.M))
    if not cyc:
        raise BadInput(f"no dataplane.worker.N.busy_cycles in the admin stats: {snippet()}")
    return {"workers": len(cyc), "busy_cycles": sum(map(int, cyc.values())),
            "packets": sum(map(int, pk.values()))}
'
}

# /proc/PID/stat → utime stime ticks (their sum; clock ticks, getconf CLK_TCK a second)
# threads. The command name may hold spaces and parentheses: fields count from the last
# `)`.
bench_parse_proc_pid_stat() {
  _bench_py '
def parse():
    head, sep, rest = text.rpartition(")")
    f = rest.split()
    if not sep or "(" not in head or len(f) < 18:
        raise BadInput(f"not /proc/PID/stat: {snippet()}")
    try:
        utime, stime, threads = int(f[11]), int(f[12]), int(f[17])
    except ValueError:
        raise BadInput(f"utime/stime/num_threads are not numbers: {snippet()}")
    return {"utime": utime, "stime": stime, "ticks": utime + stime, "threads": threads}
'
}

# /proc/PID/status → rss_kb (VmRSS) hwm_kb (VmHWM).
bench_parse_rss() {
  _bench_py '
def parse():
    out = {}
    for key, name in (("VmRSS", "rss_kb"), ("VmHWM", "hwm_kb")):
        m = re.search(rf"^{key}:\s+(\d+) kB$", text, re.M)
        if not m:
            raise BadInput(f"no {key} line (a kernel thread, or not /proc/PID/status?): {snippet()}")
        out[name] = int(m.group(1))
    return out
'
}

# /proc/meminfo followed by /proc/net/sockstat → slab_kb sunreclaim_kb tcp_mem_pages
# tcp_inuse tcp_tw. Slab and TCP mem are machine-wide; inuse and tw count the reading
# process's network namespace.
bench_parse_kmem() {
  _bench_py '
def parse():
    def one(pattern, what):
        m = re.search(pattern, text, re.M)
        if not m:
            raise BadInput(f"no {what}: {snippet()}")
        return int(m.group(1))
    return {
        "slab_kb": one(r"^Slab:\s+(\d+) kB$", "Slab line (from /proc/meminfo)"),
        "sunreclaim_kb": one(r"^SUnreclaim:\s+(\d+) kB$", "SUnreclaim line (from /proc/meminfo)"),
        "tcp_mem_pages": one(r"^TCP: inuse \d+ orphan \d+ tw \d+ alloc \d+ mem (\d+)$", "TCP line (from /proc/net/sockstat)"),
        "tcp_inuse": one(r"^TCP: inuse (\d+)", "TCP inuse"),
        "tcp_tw": one(r"^TCP: inuse \d+ orphan \d+ tw (\d+)", "TCP tw"),
    }
'
}

# tests/fixtures/tcp/client.py cps output → conns errors [secs] (its `result` line).
bench_parse_cps() {
  _bench_py '
def parse():
    m = re.search(r"^result\b.*", text, re.M)
    if not m:
        raise BadInput(f"no result line from client.py cps: {snippet()}")
    kv = dict(re.findall(r"(\w+)=(\S+)", m.group(0)))
    try:
        out = {"conns": int(kv["conns"]), "errors": int(kv["errors"])}
        if "secs" in kv:
            out["secs"] = float(kv["secs"])
    except (KeyError, ValueError):
        raise BadInput(f"result line without conns=/errors=: {m.group(0)!r}")
    if out["conns"] == 0:
        raise BadInput(f"client.py completed no connection: {m.group(0)!r}")
    return out
'
}

# `zerohop loadgen --json FILE` → rps cps rx_gbps responses requests error_total
# errors_<kind> backlog_max p50_us p90_us p99_us p99_9_us p99_99_us max_us mean_us
# rate connections duration_s.
bench_parse_loadgen() {
  _bench_py '
def parse():
    try:
        doc = json.loads(text)
        lat = doc["latency_us"]
        out = {k: doc[k] for k in ("rps", "cps", "rx_gbps", "requests", "responses",
                                   "error_total", "backlog_max", "connections", "duration_s")}
        out["rate"] = doc.get("rate") or 0
        out["new_connection_per_request"] = int(bool(doc.get("new_connection_per_request")))
        for k in ("p50", "p90", "p99", "p99_9", "p99_99", "max", "mean"):
            out[f"{k}_us"] = float(lat[k])
        for k, v in sorted(doc["errors"].items()):
            out[f"errors_{k}"] = int(v)
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(f"not zerohop loadgen JSON ({type(e).__name__} {e}): {snippet()}")
    if not out["responses"]:
        raise BadInput("loadgen got no response (%s errors)" % out.get("error_total"))
    for k, v in list(out.items()):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BadInput(f"{k} is not a number: {v!r}")
    return out
'
}

# Numbers on stdin, one per line → median min max n. Empty input or a line that is
# not a number fails.
bench_stats() {
  _bench_py '
def parse():
    vals = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            vals.append(float(line))
        except ValueError:
            raise BadInput(f"not a number: {line!r}")
    if not vals:
        raise BadInput("no numbers")
    vals.sort()
    n = len(vals)
    med = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    return {"median": med, "min": vals[0], "max": vals[-1], "n": n}
'
}

# bench_cpu_list LIST: a taskset CPU list ("1", "0,2", "4-7,12") → the CPUs, space
# separated, ascending, no duplicates.
bench_cpu_list() {
  local list=${1-} part parts a b c out=()
  if ! [[ $list =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]]; then
    echo "bench_cpu_list: '$list' is not a CPU list (like 1 or 0,2 or 4-7)" >&2
    return 1
  fi
  IFS=, read -ra parts <<<"$list"
  for part in "${parts[@]}"; do
    a=${part%-*} b=${part#*-}
    if ((10#$a > 10#$b)); then
      echo "bench_cpu_list: '$part' counts down" >&2
      return 1
    fi
    for ((c = 10#$a; c <= 10#$b; c++)); do out+=("$c"); done
  done
  printf '%s\n' "${out[@]}" | sort -nu | paste -sd' ' -
}
