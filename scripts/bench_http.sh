#!/usr/bin/env bash
# HTTP/1.1 proxy benchmark: zerohop's http_connection_manager against HAProxy (mode http)
# and nginx (proxy_pass), on the same topology, the same veth ends and the same pinned CPU.
#
#   ns C 10.0.0.2 ─veth─ ns P [10.0.0.1 | 10.0.1.1] ─veth─ ns U 10.0.1.2
#   client: wrk -t1 -c50   zerohop: DPDK net_af_packet on P's veth ends,   upstream: nginx :9000,
#     --latency              one worker on --core, one route to cluster      `return 200 "hello\n"`,
#                            `up`, no kernel addresses on those ends         keepalive_requests 100000
#                          HAProxy: mode http, http-keep-alive, nbthread 1,
#                            taskset to --core (kernel addresses added)
#                          nginx: worker_processes 1, upstream keepalive 64,
#                            HTTP/1.1 to the upstream, taskset to --core
#
# Each proxy in turn listens on 10.0.0.1:8080 and forwards to 10.0.1.2:9000. Per run the
# proxy is started, a curl probe through it must return `hello` (else the proxy is
# FAILED, with the reason), then wrk -t1 -c50 -d<secs>s --latency runs from C, then the
# proxy is stopped. 3 runs of 10 s (--quick: 1 of 3 s); the table shows medians of
# - requests/s, and p50 and p99 latency, from wrk;
# - proxy CPU time per request: HAProxy and nginx: the non-idle time of the proxy CPU in
#   /proc/stat over the wrk run (user+nice+system+irq+softirq) ÷ wrk's request count;
#   zerohop: its worker's busy_ms (the time of poll iterations that did work, from the
#   `worker 0 (cpu N): ... busy_ms=` line it logs at exit) ÷ wrk's request count. A
#   poll-mode worker keeps its CPU at 100% in /proc/stat whatever the load, so its own
#   count of busy time is the comparable figure; since zerohop is started per run, its
#   busy_ms covers one wrk run plus the probe and a little start-up.
# wrk and the upstream nginx run on every CPU except --core. zerohop's
# generate_request_id is off: neither HAProxy nor nginx adds a request id here.
#
# Writes a Markdown table (metric | zerohop | HAProxy | nginx | ratios) to stdout and to
# target/bench/http.md, the raw numbers and a machine description to
# target/bench/http.json, and each zerohop run's log to target/bench/http-zerohop-*.log.
# Exits 1 if a proxy could not be measured (its cells say FAILED, the reasons follow the
# table), after measuring the others. On a machine with few CPUs, wrk and the upstream
# share the load CPUs and may set the ceiling on requests/s; CPU per request still
# compares the proxies.
#
#   sudo scripts/bench_http.sh [--quick] [--core N] [--only zerohop|haproxy|nginx] [--resilience] [--access-log]
#     --quick   1 run of 3 s per proxy instead of 3 runs of 10 s
#     --core N  the CPU for the proxy (default 1)
#     --only P  measure only zerohop, only haproxy or only nginx
#     --resilience  zerohop's route retries (5xx,reset,connect-failure) and its cluster
#               has an HTTP health check (every 1 s), outlier detection and circuit
#               breakers: what those cost per request
#     --access-log  zerohop's listener writes Envoy's default access log line per request
#               (to a file under the temporary directory): what logging costs
#   ZEROHOP_BIN=PATH  use this zerohop binary instead of building target/release/zerohop
#
# Runs scripts/setup.sh first (packages, hugepages); nginx is not among its packages:
# apt-get install nginx. A system nginx does not matter: this script runs its own nginx
# processes (-c/-p/-e under a temporary directory, pid files there, in the namespaces).
# Needs root. Everything it creates (namespaces, interfaces, processes, temporary files)
# is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh

RESILIENCE=0 ACCESS_LOG=0
bench_extra_arg() {
  case $1 in
    --resilience) RESILIENCE=1 ;;
    --access-log) ACCESS_LOG=1 ;;
    *) return 1 ;;
  esac
}
bench_parse_args zerohop haproxy nginx -- "$@"
bench_init
CONNS=50

bench_setup wrk haproxy curl python3 taskset
command -v nginx >/dev/null || die "nginx not found: apt-get install nginx (scripts/setup.sh does not install it)"
bench_build
bench_names zbh
LISTEN_PORT=8080 UPSTREAM_PORT=9000
URL=http://$PROXY_DOWN:$LISTEN_PORT/
CLK_TCK=$(getconf CLK_TCK)
# This run's zerohop logs replace the last ones (no stale run2/run3 beside a --quick run1).
if [[ -z $ONLY || $ONLY == zerohop ]]; then rm -f "$OUT_DIR"/http-zerohop-*.log; fi

bench_topology
bench_raise_nofile

# nginx_head NAME: the common head of an nginx config, all of it under $TMP.
nginx_head() {
  cat <<EOF
daemon off;
pid $TMP/$1.pid;
error_log stderr;
EOF
}

say "upstream in $NS_U: nginx $UPSTREAM:$UPSTREAM_PORT (worker_processes $NLOAD, CPUs $LOAD_CPUS)"
{
  nginx_head upstream
  cat <<EOF
worker_processes $NLOAD;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  server {
    listen $UPSTREAM:$UPSTREAM_PORT reuseport;
    location / { return 200 "hello\n"; }
  }
}
EOF
} >"$TMP/upstream.conf"
ip netns exec "$NS_U" taskset -c "$LOAD_CPUS" nginx -c "$TMP/upstream.conf" -p "$TMP/" -e stderr >"$TMP/upstream.log" 2>&1 &
BG_PIDS+=($!)
bench_wait_listen "$NS_U" "$UPSTREAM_PORT" "${BG_PIDS[-1]}" ||
  die "upstream nginx did not start: $(tail -n 3 "$TMP/upstream.log" | tr '\n' ' ')"
body=$(in_ns "$NS_U" curl -sS -m 3 "http://$UPSTREAM:$UPSTREAM_PORT/" 2>&1) || true
[[ $body == hello ]] || die "upstream nginx answers '${body:0:200}' instead of hello"

# --- the proxies ---------------------------------------------------------------------

ROUTE_EXTRA='' CLUSTER_EXTRA='' HCM_EXTRA=''
if ((ACCESS_LOG)); then
  HCM_EXTRA="
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $TMP/access.log"
fi
if ((RESILIENCE)); then
  ROUTE_EXTRA=', retry_policy: { retry_on: "5xx,reset,connect-failure", num_retries: 2 }'
  CLUSTER_EXTRA="
    health_checks:
    - { timeout: 1s, interval: 1s, unhealthy_threshold: 3, healthy_threshold: 1,
        no_traffic_interval: 1s, http_health_check: { path: / } }
    outlier_detection: { consecutive_5xx: 5 }
    circuit_breakers: { thresholds: [{ max_connections: 1024, max_requests: 1024 }] }"
fi
{
  zh_dataplane_yaml
  cat <<EOF
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 0.0.0.0, port_value: $LISTEN_PORT } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          generate_request_id: false$HCM_EXTRA
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: up$ROUTE_EXTRA }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: up
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: $UPSTREAM, port_value: $UPSTREAM_PORT } } }$CLUSTER_EXTRA
EOF
} >"$TMP/zerohop.yaml"

cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $(bench_haproxy_maxconn)
defaults
  mode http
  option http-keep-alive
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend http
  bind $PROXY_DOWN:$LISTEN_PORT
  default_backend up
backend up
  server s1 $UPSTREAM:$UPSTREAM_PORT
EOF

{
  nginx_head proxy
  cat <<EOF
worker_processes 1;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  upstream up {
    server $UPSTREAM:$UPSTREAM_PORT;
    keepalive 64;
    keepalive_requests 100000;
  }
  server {
    listen $PROXY_DOWN:$LISTEN_PORT;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
} >"$TMP/proxy.conf"

ZH_STATS_RE='stat http\.bench\.downstream_rq_(total|2xx|4xx|5xx):|stat cluster\.up\.upstream_(cx_total|rq_5xx):|mbufs_in_use=|busy_ms='
start_zerohop() { # RUN
  ZH_LOG=$OUT_DIR/http-zerohop-run$1.log
  bench_start_zerohop "$TMP/zerohop.yaml"
}
start_haproxy() { # RUN
  bench_start_pinned haproxy "$LISTEN_PORT" "$TMP/haproxy-run$1.log" haproxy -db -f "$TMP/haproxy.cfg"
}
start_nginx() { # RUN
  bench_start_pinned nginx "$LISTEN_PORT" "$TMP/nginx-run$1.log" \
    nginx -c "$TMP/proxy.conf" -p "$TMP/" -e stderr
}

# Non-idle jiffies of the proxy CPU so far: user+nice+system+irq+softirq.
cpu_busy() { awk -v cpu="cpu$CORE" '$1 == cpu { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# wrk's output FILE as lines KEY VALUE (requests_per_s requests p50_us p99_us non2xx
# socket_errors); else (exit 1) why not.
wrk_parse() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
def us(v):
    n, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}[unit]
try:
    out = {
        "requests_per_s": float(re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M).group(1)),
        "requests": int(re.search(r"^\s*(\d+) requests in ", text, re.M).group(1)),
        "p50_us": us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),
        "p99_us": us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),
    }
except (AttributeError, ValueError, KeyError):
    print("no wrk result: " + (" ".join(text.split())[:300] or "empty output"))
    sys.exit(1)
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
out["non2xx"] = int(m.group(1)) if m else 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
out["socket_errors"] = sum(map(int, m.groups())) if m else 0
if out["requests"] == 0:
    print("wrk completed no request: " + " ".join(text.split())[:300])
    sys.exit(1)
if out["non2xx"] * 100 > out["requests"]:
    print(f"{out['non2xx']} of {out['requests']} responses were not 2xx/3xx")
    sys.exit(1)
for k, v in out.items():
    print(k, v)
PY
}

measure() { # PROXY: RUNS runs, each with the proxy started afresh
  local proxy=$1 i body wrk_out rc a b parsed busy_ms rq_total cpu_us
  for i in $(seq "$RUNS"); do
    FAIL_WHY=
    if ! "start_$proxy" "$i"; then
      [[ $proxy == zerohop ]] || p_addrs del 2>/dev/null || true
      fail "$proxy" http "$FAIL_WHY"
      return 0
    fi
    # A probe first, so that a proxy that does not forward fails fast and clearly.
    body=$(in_ns "$NS_C" curl -sS -m 3 "$URL" 2>&1) || true
    if [[ $body != hello ]]; then
      fail "$proxy" http "curl $URL answered '${body:0:200}' instead of hello \
— $proxy did not proxy the request$(log_hint "$proxy")"
      stop_proxy "$proxy"
      return 0
    fi
    wrk_out=$TMP/wrk-$proxy-$i.txt
    rc=0
    a=$(cpu_busy)
    in_ns "$NS_C" taskset -c "$LOAD_CPUS" timeout $((SECS + 30)) \
      wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$URL" >"$wrk_out" 2>&1 || rc=$?
    b=$(cpu_busy)
    stop_proxy "$proxy" # zerohop logs busy_ms as it exits
    if ! parsed=$(wrk_parse "$wrk_out") || ((rc != 0)); then
      fail "$proxy" http "wrk through $URL failed (run $i\
$( ((rc == 124)) && echo ', timed out')$( ((rc != 0 && rc != 124)) && echo ", exit $rc")): $parsed\
$(log_hint "$proxy")"
      return 0
    fi
    busy_ms='' rq_total=''
    if [[ $proxy == zerohop ]]; then
      busy_ms=$(sed -n 's/.*worker 0 (cpu [0-9]*):.* busy_ms=\([0-9.]*\).*/\1/p' "$ZH_LOG" | tail -n 1)
      rq_total=$(sed -n 's/.*stat http\.bench\.downstream_rq_total: \([0-9]*\).*/\1/p' "$ZH_LOG" | tail -n 1)
      if [[ -z $busy_ms ]]; then
        fail "$proxy" http "no 'worker 0 ... busy_ms=' line in zerohop's exit log (run $i)$(log_hint "$proxy")"
        return 0
      fi
    fi
    while read -r key value; do record "$proxy" "$key" "$value"; done <<<"$parsed"
    record "$proxy" cpu_jiffies $((b - a))
    [[ -n $busy_ms ]] && record "$proxy" busy_ms "$busy_ms"
    [[ -n $rq_total ]] && record "$proxy" downstream_rq_total "$rq_total"
    cpu_us=$(python3 - "$parsed" "${busy_ms:-}" $((b - a)) "$CLK_TCK" <<'PY'
import sys
parsed, busy_ms, jiffies, hz = sys.argv[1:]
r = dict(line.split() for line in parsed.splitlines())
us = float(busy_ms) * 1e3 if busy_ms else int(jiffies) * 1e6 / int(hz)
print(f"{float(r['requests_per_s']):.0f} requests/s, p50 {float(r['p50_us']) / 1e3:.2f} ms, "
      f"p99 {float(r['p99_us']) / 1e3:.2f} ms, {us / int(r['requests']):.2f} µs CPU/request, "
      f"{r['non2xx']} non-2xx, {r['socket_errors']} socket errors")
PY
    )
    note "$proxy run $i: $cpu_us"
  done
}

PROXIES=("${BENCH_PROXIES[@]}")
[[ -n $ONLY ]] && PROXIES=("$ONLY")
for proxy in "${PROXIES[@]}"; do
  say "$proxy: wrk -t1 -c$CONNS --latency, $RUNS × ${SECS} s"
  measure "$proxy"
done
# The upstream nginx's master stops (and reaps) its workers on SIGTERM; the cleanup's
# SIGKILL would leave them to the namespace sweep.
stop_pid "${BG_PIDS[0]}"
BG_PIDS=()

# --- report --------------------------------------------------------------------------

say "report"
bench_machine "$TMP/machine.json" "haproxy=haproxy -v" "nginx=nginx -v" "wrk=wrk -v"
python3 - "$RESULTS" "$OUT_DIR" "$CORE" "$LOAD_CPUS" "$QUICK" "$RUNS" "$SECS" "$CONNS" \
  "$CLK_TCK" "${PROXIES[*]}" "$TMP/machine.json" <<'PY'
import json, os, statistics, sys, time

(results, out_dir, core, load_cpus, quick, runs, secs, conns, clk_tck, proxies,
 machine_json) = sys.argv[1:]
proxies = proxies.split()
ALL = ("zerohop", "haproxy", "nginx")
NAMES = {"zerohop": "zerohop", "haproxy": "HAProxy", "nginx": "nginx"}
raw = {p: {} for p in ALL}
for line in open(results):
    proxy, key, value = line.rstrip("\n").split(" ", 2)
    raw[proxy].setdefault(key, []).append(value)

summary = {}
for proxy in ALL:
    r = raw[proxy]
    nruns = len(r.get("requests", []))
    per_run = []
    for i in range(nruns):
        run = {
            "requests_per_s": float(r["requests_per_s"][i]),
            "requests": int(r["requests"][i]),
            "p50_us": float(r["p50_us"][i]),
            "p99_us": float(r["p99_us"][i]),
            "non2xx": int(r["non2xx"][i]),
            "socket_errors": int(r["socket_errors"][i]),
            "proxy_cpu_nonidle_us": int(r["cpu_jiffies"][i]) * 1e6 / int(clk_tck),
        }
        if proxy == "zerohop":
            run["busy_ms"] = float(r["busy_ms"][i])
            if i < len(r.get("downstream_rq_total", [])):
                run["downstream_rq_total"] = int(r["downstream_rq_total"][i])
            cpu_us = run["busy_ms"] * 1e3
        else:
            cpu_us = run["proxy_cpu_nonidle_us"]
        run["cpu_us_per_request"] = cpu_us / run["requests"]
        per_run.append(run)
    error = (r.get("http_error") or [None])[0]
    median = {}
    for key in ("requests_per_s", "p50_us", "p99_us", "cpu_us_per_request"):
        values = [run[key] for run in per_run]
        median[key] = statistics.median(values) if values and not error else None
    summary[proxy] = {
        "measured": proxy in proxies,
        "error": error,
        "runs": per_run,
        "median": median,
        "cpu_source": (
            "busy_ms of the zerohop worker (its busy poll iterations) / wrk requests"
            if proxy == "zerohop"
            else f"non-idle time of CPU {core} in /proc/stat during the wrk run / wrk requests"
        ),
    }

machine = json.load(open(machine_json))
doc = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "machine": machine,
    "setup": {
        "proxy_cpu": int(core),
        "load_cpus": load_cpus,
        "quick": quick == "1",
        "runs": int(runs),
        "seconds_per_run": int(secs),
        "client": f"wrk -t1 -c{conns} --latency, taskset to the load CPUs",
        "upstream": "nginx, return 200 \"hello\\n\", keepalive_requests 100000, "
        "one worker per load CPU, taskset to the load CPUs",
        "zerohop": "1 worker, DPDK net_af_packet on the proxy namespace's veth ends, "
        "http_connection_manager with one route, generate_request_id false; "
        "started afresh for each run",
        "haproxy": "mode http, option http-keep-alive, nbthread 1, taskset to the proxy CPU",
        "nginx": "worker_processes 1, proxy_pass to an upstream block with keepalive 64, "
        "proxy_http_version 1.1, Connection \"\", taskset to the proxy CPU",
        "cpu_per_request": "HAProxy, nginx: (user+nice+system+irq+softirq) jiffies of the "
        "proxy CPU in /proc/stat over the wrk run; zerohop: busy_ms from its exit log; "
        "both divided by wrk's request count",
    },
    "results": summary,
}
with open(os.path.join(out_dir, "http.json"), "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

def cell(proxy, key, scale, fmt):
    if not summary[proxy]["measured"]:
        return "not run"
    v = summary[proxy]["median"][key]
    return "FAILED" if v is None else fmt.format(v / scale)

def ratio(other, key):
    a, b = summary["zerohop"]["median"][key], summary[other]["median"][key]
    return f"{a / b:.2f}×" if a and b else "n/a"

n = f"median of {runs} × {secs} s" if int(runs) > 1 else f"{secs} s"
rows = [
    (f"requests/s ({n}, {conns} connections)", "requests_per_s", 1, "{:.0f}", True),
    ("latency p50, ms", "p50_us", 1e3, "{:.2f}", False),
    ("latency p99, ms", "p99_us", 1e3, "{:.2f}", False),
    ("proxy CPU per request, µs (lower is better)", "cpu_us_per_request", 1, "{:.2f}", True),
]
versions = "; ".join(machine.get(k, "") for k in ("haproxy", "nginx", "wrk"))
md = [
    "# HTTP proxy benchmark: zerohop vs HAProxy vs nginx",
    "",
    f"{machine['cpu_model']}, {machine['nproc']} CPUs, Linux {machine['kernel']}; "
    f"proxy pinned to CPU {core}, wrk and the upstream nginx on CPUs {load_cpus}; {versions}.",
    "",
    "| metric | zerohop | HAProxy | nginx | zerohop / HAProxy | zerohop / nginx |",
    "|---|---|---|---|---|---|",
]
for label, key, scale, fmt, with_ratio in rows:
    cells = [cell(p, key, scale, fmt) for p in ALL]
    ratios = [ratio(o, key) if with_ratio else "—" for o in ("haproxy", "nginx")]
    md.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
md.append("")
md.append(
    "Ratios = zerohop / the other proxy: for requests/s above 1 means zerohop serves more, "
    "for CPU per request below 1 means zerohop spends less CPU time per request. "
    f"CPU per request: HAProxy and nginx, the non-idle time of CPU {core} in /proc/stat "
    "over the run (user+nice+system+irq+softirq); zerohop, its worker's busy_ms (a "
    "poll-mode worker reads 100% busy in /proc/stat); both divided by wrk's request count. "
    f"Where the proxies show about the same requests/s, wrk and the upstream on CPUs {load_cpus} "
    "are the limit. Raw runs and machine details: http.json."
)
errors = [
    f"- {NAMES[p]}: {sum(r['non2xx'] for r in summary[p]['runs'])} non-2xx responses, "
    f"{sum(r['socket_errors'] for r in summary[p]['runs'])} socket errors"
    for p in proxies
    if any(r["non2xx"] or r["socket_errors"] for r in summary[p]["runs"])
]
if errors:
    md += ["", "wrk reported errors:", *errors]
failures = [f"- {NAMES[p]}: {summary[p]['error'] or 'no result'}" for p in proxies
            if summary[p]["median"]["requests_per_s"] is None]
if failures:
    md += ["", "FAILED:", *failures]
text = "\n".join(md) + "\n"
with open(os.path.join(out_dir, "http.md"), "w") as f:
    f.write(text)
print(text, end="")
sys.exit(1 if failures else 0)
PY
