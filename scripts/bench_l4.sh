#!/usr/bin/env bash
# L4 proxy benchmark: zerohop's tcp_proxy against HAProxy (mode tcp), on the same
# topology, the same veth ends and the same pinned CPU.
#
#   ns C 10.0.0.2 ─veth─ ns P [10.0.0.1 | 10.0.1.1] ─veth─ ns U 10.0.1.2
#   clients (iperf3 -c,   zerohop: DPDK net_af_packet on P's veth ends,   servers (iperf3 -s :5201,
#   client.py cps)          one worker on --core, no kernel addresses      server.py respond :9100)
#                           on those ends while it runs
#                         HAProxy: kernel sockets on the same ends (the
#                           addresses are added for it), nbthread 1,
#                           taskset to --core
#
# Two metrics, each proxy in turn (listener 10.0.0.1:8000 → one upstream in U, the proxy
# restarted per metric):
#   - single-connection throughput: iperf3 -c 10.0.0.1 -p 8000 -t 10 -J from C, receiver
#     bits/s, median of 3 runs;
#   - new connections per second: tests/fixtures/tcp/client.py cps (several processes,
#     each connect / send `GET\n` / read `ok\n` to EOF / close, for 10 s) against
#     server.py respond, median of 3 runs.
# The load generators and servers run on every CPU except --core. tx checksum offload
# (and with it TSO) is off on all four veth ends, so both proxies see MTU-sized frames.
#
# Writes a Markdown table (metric | zerohop | HAProxy | ratio) to stdout and to
# target/bench/l4.md, the raw numbers and a machine description to target/bench/l4.json,
# and each zerohop run's log to target/bench/l4-zerohop-*.log. Exits 1 if a proxy could
# not be measured (its cells say FAILED, the reasons follow the table), after measuring
# the other. The connection rate comes from Python processes: on a machine with few CPUs
# they, not the proxy, may set the ceiling (both proxies then show about the same rate).
#
#   sudo scripts/bench_l4.sh [--quick] [--core N] [--only zerohop|haproxy] [--procs N]
#     --quick   1 run of 3 s per metric instead of 3 runs of 10 s
#     --core N  the CPU for the proxy (default 1)
#     --only P  measure only zerohop or only haproxy
#     --procs N client and server processes for the connection rate (default: CPUs
#               left for load, at least 2)
#   ZEROHOP_BIN=PATH  use this zerohop binary instead of building target/release/zerohop
#
# Runs scripts/setup.sh first (packages, hugepages). Needs root. Everything it creates
# (namespaces, interfaces, processes, temporary files) is removed on exit, also on
# failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh

PROCS=
bench_extra_arg() {
  case $1 in
    --procs) PROCS=${2:?--procs needs a number}; BENCH_TAKEN=2 ;;
    *) return 1 ;;
  esac
}
bench_parse_args zerohop haproxy -- "$@"
bench_init
PROCS=${PROCS:-$((NLOAD < 2 ? 2 : NLOAD))}

bench_setup iperf3 haproxy python3 taskset
bench_build
bench_names zb
LISTEN_PORT=8000 IPERF_PORT=5201 RESPOND_PORT=9100
CLIENT_PY=$PWD/tests/fixtures/tcp/client.py
SERVER_PY=$PWD/tests/fixtures/tcp/server.py

bench_topology
in_ns "$NS_C" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
# No TIME-WAIT in the load generators' namespaces. The upstream server closes first,
# so its kernel keeps every 4-tuple (10.0.1.2:9100, 10.0.1.1:port) for 60 s; both
# proxies connect from 10.0.1.1, and the second proxy's SYNs on a tuple the first one
# used meet those TIME-WAIT sockets (accepted only with a higher timestamp, else
# answered with a stale ACK): HAProxy measured after zerohop fell from 6,800 to
# 400-4,500 conn/s that way.
in_ns "$NS_C" sysctl -qw net.ipv4.tcp_max_tw_buckets=0
in_ns "$NS_U" sysctl -qw net.ipv4.tcp_max_tw_buckets=0
bench_raise_nofile

say "servers in $NS_U: iperf3 -s :$IPERF_PORT, server.py respond :$RESPOND_PORT ($PROCS processes)"
ip netns exec "$NS_U" taskset -c "$LOAD_CPUS" iperf3 -s -B "$UPSTREAM" -p "$IPERF_PORT" >"$TMP/iperf3-server.log" 2>&1 &
BG_PIDS+=($!)
ip netns exec "$NS_U" taskset -c "$LOAD_CPUS" python3 "$SERVER_PY" respond --addr "$UPSTREAM" \
  --port "$RESPOND_PORT" --procs "$PROCS" >"$TMP/respond.log" 2>&1 &
BG_PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$TMP/respond.log" && break; sleep 0.1; done
grep -q ready "$TMP/respond.log" || die "server.py respond did not start: $(cat "$TMP/respond.log")"

# --- the proxies ---------------------------------------------------------------------

ZH_STATS_RE='stat (tcp|cluster)\.|mbufs_in_use'
start_zerohop() { # UPSTREAM_PORT LOG_NAME
  local port=$1 cfg=$TMP/zerohop.yaml
  ZH_LOG=$OUT_DIR/l4-zerohop-$2.log
  {
    zh_dataplane_yaml
    cat <<EOF
static_resources:
  listeners:
  - name: l4
    address: { socket_address: { address: 0.0.0.0, port_value: $LISTEN_PORT } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: l4
          cluster: backend
          idle_timeout: 60s
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    # Envoy's default max_connections (1024) would cap the connection rate test.
    circuit_breakers: { thresholds: [{ max_connections: 1000000 }] }
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: $UPSTREAM, port_value: $port } } }
EOF
  } >"$cfg"
  bench_start_zerohop "$cfg"
}

start_haproxy() { # UPSTREAM_PORT LOG_NAME
  local port=$1 cfg=$TMP/haproxy.cfg maxconn
  maxconn=$(bench_haproxy_maxconn)
  cat >"$cfg" <<EOF
global
  nbthread 1
  maxconn $maxconn
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend l4
  bind $PROXY_DOWN:$LISTEN_PORT
  maxconn $maxconn
  default_backend backend
backend backend
  server s1 $UPSTREAM:$port maxconn $maxconn
EOF
  bench_start_pinned haproxy "$LISTEN_PORT" "$TMP/haproxy-$2.log" haproxy -db -f "$cfg"
}

# The receiver's bits/s from iperf3 -J output FILE; else (exit 1) why not.
iperf_bps() {
  python3 - "$1" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
try:
    doc = json.loads(text)
    print(doc["end"]["sum_received"]["bits_per_second"])
except (ValueError, KeyError, TypeError):
    why = doc.get("error") if isinstance(locals().get("doc"), dict) else None
    print(why or "no iperf3 result: " + (" ".join(text.split())[:200] or "empty output"))
    sys.exit(1)
PY
}

measure_throughput() { # PROXY
  local proxy=$1 i json bps rc
  FAIL_WHY=
  if ! "start_$proxy" "$IPERF_PORT" throughput; then
    fail "$proxy" throughput "$FAIL_WHY"
    return 0
  fi
  for i in $(seq "$RUNS"); do
    json=$TMP/iperf3-$proxy-$i.json
    rc=0
    in_ns "$NS_C" taskset -c "$LOAD_CPUS" timeout $((SECS + 30)) \
      iperf3 -c "$PROXY_DOWN" -p "$LISTEN_PORT" -t "$SECS" -J --connect-timeout 3000 >"$json" 2>&1 || rc=$?
    if ! bps=$(iperf_bps "$json") || ((rc != 0)); then
      fail "$proxy" throughput "iperf3 through $PROXY_DOWN:$LISTEN_PORT failed (run $i\
$( ((rc == 124)) && echo ', timed out')$( ((rc != 0 && rc != 124)) && echo ", exit $rc")): $bps \
— $proxy did not carry the test$(log_hint "$proxy")"
      stop_proxy "$proxy"
      return 0
    fi
    note "$proxy throughput run $i: $(python3 -c "print(f'{$bps/1e9:.3f}')") Gbit/s"
    record "$proxy" throughput_bps "$bps"
  done
  stop_proxy "$proxy"
}

measure_cps() { # PROXY
  local proxy=$1 i line conns errors cps
  FAIL_WHY=
  if ! "start_$proxy" "$RESPOND_PORT" cps; then
    fail "$proxy" cps "$FAIL_WHY"
    return 0
  fi
  for i in $(seq "$RUNS"); do
    # A probe first, so that a proxy that does not forward fails fast and clearly.
    line=$(in_ns "$NS_C" timeout 20 python3 "$CLIENT_PY" probe --host "$PROXY_DOWN" \
      --port "$LISTEN_PORT" --send 'GET
' --timeout 3 | grep '^result' || true)
    if [[ $line != *outcome=data* ]]; then
      fail "$proxy" cps "no answer through $PROXY_DOWN:$LISTEN_PORT (${line:-client.py probe failed}) \
— $proxy did not proxy the connection$(log_hint "$proxy")"
      stop_proxy "$proxy"
      return 0
    fi
    line=$(in_ns "$NS_C" taskset -c "$LOAD_CPUS" timeout $((SECS + 60)) python3 "$CLIENT_PY" cps \
      --host "$PROXY_DOWN" --port "$LISTEN_PORT" --secs "$SECS" --procs "$PROCS" --timeout 2 |
      grep '^result' || true)
    conns=$(sed -n 's/.* conns=\([0-9]*\).*/\1/p' <<<"$line")
    errors=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
    if [[ -z $conns || $conns == 0 ]]; then
      fail "$proxy" cps "client.py cps completed no connection (${line:-no result})"
      stop_proxy "$proxy"
      return 0
    fi
    cps=$(python3 -c "print($conns / $SECS)")
    note "$proxy connections/s run $i: ${cps%.*} ($conns in ${SECS} s, $errors errors)"
    record "$proxy" cps "$cps"
    record "$proxy" cps_errors "$errors"
  done
  stop_proxy "$proxy"
}

PROXIES=("${BENCH_PROXIES[@]}")
[[ -n $ONLY ]] && PROXIES=("$ONLY")
for proxy in "${PROXIES[@]}"; do
  say "$proxy: single-connection throughput (iperf3, $RUNS × ${SECS} s)"
  measure_throughput "$proxy"
  say "$proxy: new connections per second ($PROCS client processes, $RUNS × ${SECS} s)"
  measure_cps "$proxy"
done

# --- report --------------------------------------------------------------------------

say "report"
bench_machine "$TMP/machine.json" "haproxy=haproxy -v" "iperf3=iperf3 --version"
python3 - "$RESULTS" "$OUT_DIR" "$CORE" "$LOAD_CPUS" "$QUICK" "$RUNS" "$SECS" "$PROCS" "${PROXIES[*]}" "$TMP/machine.json" <<'PY'
import json, os, statistics, sys, time

results, out_dir, core, load_cpus, quick, runs, secs, procs, proxies, machine_json = sys.argv[1:]
proxies = proxies.split()
raw = {p: {} for p in ("zerohop", "haproxy")}
for line in open(results):
    proxy, key, value = line.rstrip("\n").split(" ", 2)
    raw[proxy].setdefault(key, []).append(value)

summary = {}
for proxy in ("zerohop", "haproxy"):
    r = raw[proxy]
    s = {"measured": proxy in proxies}
    for metric, key in (("throughput_bps", "throughput_bps"), ("cps", "cps")):
        values = [float(v) for v in r.get(key, [])]
        s[metric] = {
            "runs": values,
            "median": statistics.median(values) if values else None,
            "error": (r.get(key.split("_")[0] + "_error") or [None])[0],
        }
    s["cps"]["errors_per_run"] = [int(v) for v in r.get("cps_errors", [])]
    summary[proxy] = s

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
        "cps_processes": int(procs),
        "veth_offloads": "tx checksum (and TSO) off on all veth ends",
        "zerohop": "1 worker, DPDK net_af_packet on the proxy namespace's veth ends",
        "haproxy": "mode tcp, nbthread 1, taskset to the proxy CPU, default tuning",
    },
    "results": summary,
}
with open(os.path.join(out_dir, "l4.json"), "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

def cell(proxy, metric, scale, fmt):
    m = summary[proxy][metric]
    if not summary[proxy]["measured"]:
        return "not run"
    if m["median"] is None:
        return "FAILED"
    return fmt.format(m["median"] / scale)

def ratio(metric):
    a, b = summary["zerohop"][metric]["median"], summary["haproxy"][metric]["median"]
    return f"{a / b:.2f}×" if a and b else "n/a"

n = f"median of {runs} × {secs} s" if int(runs) > 1 else f"{secs} s"
rows = [
    (f"single-connection throughput, Gbit/s ({n})", "throughput", "throughput_bps", 1e9, "{:.2f}"),
    (f"new connections per second ({n}, {procs} client processes)", "connection rate", "cps", 1, "{:.0f}"),
]
md = [
    "# L4 proxy benchmark: zerohop tcp_proxy vs HAProxy (mode tcp)",
    "",
    f"{machine['cpu_model']}, {machine['nproc']} CPUs, Linux {machine['kernel']}; "
    f"proxy pinned to CPU {core}, load on CPUs {load_cpus}; {machine['haproxy']}; {machine['iperf3']}.",
    "",
    "| metric | zerohop | HAProxy | ratio |",
    "|---|---|---|---|",
]
for label, _, metric, scale, fmt in rows:
    md.append(
        f"| {label} | {cell('zerohop', metric, scale, fmt)} | {cell('haproxy', metric, scale, fmt)} | {ratio(metric)} |"
    )
md.append("")
md.append(
    "ratio = zerohop / HAProxy. Raw runs and machine details: l4.json. The connection "
    f"rate comes from Python clients and servers on CPUs {load_cpus}: where both proxies "
    "show about the same rate, the load generator is the limit."
)
failures = [
    f"- {proxy} {short}: {summary[proxy][metric]['error'] or 'no result'}"
    for proxy in proxies
    for _, short, metric, _, _ in rows
    if summary[proxy][metric]["median"] is None
]
if failures:
    md += ["", "FAILED:", *failures]
text = "\n".join(md) + "\n"
with open(os.path.join(out_dir, "l4.md"), "w") as f:
    f.write(text)
print(text, end="")
failed = [p for p in proxies for m in ("throughput_bps", "cps") if summary[p][m]["median"] is None]
sys.exit(1 if failed else 0)
PY
