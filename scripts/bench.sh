#!/usr/bin/env bash
# The benchmark: zerohop against HAProxy and nginx, as HTTP and as TCP proxies, on one
# topology, with the same upstreams, the same clients and the same pinned CPUs.
#
#   ns C 10.0.0.2 ─veth─ ns P [10.0.0.1 | 10.0.1.1] ─veth─ ns U 10.0.1.2
#        10.0.2.2 ──────────── veth (direct, no proxy) ──────────── 10.0.2.1
#
#   client (C, --client-cpus): wrk, oha, tests/fixtures/tcp/client.py, iperf3 -c,
#     tests/fixtures/bench/idle_hold.py
#   proxy (P, --proxy-cpus; one worker/thread/process per CPU), in turn:
#     zerohop  DPDK net_af_packet on P's veth ends (qpairs=N with N CPUs), the HTTP
#              connection manager on :8080 and tcp_proxy on :8000 and :8001
#     HAProxy  mode http (http-keep-alive, http-reuse always) and mode tcp, nbthread N
#     nginx    proxy_pass (HTTP/1.1, upstream keepalive 256) and stream, N workers
#     direct   no proxy: the client talks to the upstream over the direct veth (the
#              baseline for latency, requests/s and kernel memory)
#   upstream (U, --upstream-cpus): nginx :9000 (`/` → "hello\n", `/1m` → 1 MiB),
#     iperf3 -s :5201, tests/fixtures/tcp/server.py respond :9100
#   No access logs anywhere; keep-alive to the upstream everywhere.
#
# Workloads (--workloads, comma-separated; each has a warm-up, then --runs runs; the
# report gives the median and the spread min–max):
#   rps            HTTP/1.1 keep-alive, small answers, max rate: wrk → requests/s
#   latency        fixed rates below saturation (--rates; N% = share of the lowest max
#                  requests/s rps measured, over the proxies and direct; so latency
#                  implies rps): oha -q R --latency-correction → p50/p99/p99.9, also
#                  direct, so the difference is the proxy's added latency
#   http_cps       a new connection per request: wrk -H 'Connection: close' → conn/s
#   l4_cps         TCP: client.py cps (connect, 3 bytes each way, close) → conn/s
#   http_1mib      1 MiB answers: wrk on /1m → Gbit/s of bodies
#   l4_throughput  TCP: one iperf3 connection → Gbit/s
#   idle           1,000 and 10,000 (--idle) idle keep-alive connections, each after
#                  one request → RSS of the proxy's processes per connection, and the
#                  machine's kernel memory (Slab + TCP buffers) per connection minus
#                  the direct run's (so: the proxy's own sockets)
#   groups: cps = http_cps,l4_cps; throughput = http_1mib,l4_throughput;
#   l4 = l4_throughput,l4_cps; all (default) = every workload
# Every measured run also records the proxy's CPU time: HAProxy and nginx, the
# non-idle jiffies of the proxy CPUs in /proc/stat over the run; zerohop, the busy
# cycles of its workers (admin API `dataplane.worker.N.busy_cycles` before and after,
# converted with the TSC rate its exit log gives) — a poll-mode worker reads 100% busy
# in /proc/stat whatever the load. Divided by requests (connections) → CPU µs each.
#
# --kernel-free runs the kernel-free mode instead: no namespaces, no kernel proxies.
# zerohop (one worker on the first proxy CPU) between two net_memif port pairs, and
# `zerohop loadgen` (first client CPU) holding the other ends: emulated clients on one
# pair, emulated upstream servers on the other. Workloads: rps (closed loop), latency
# (--rates N% of the closed-loop max, open loop), http_cps
# (--new-connection-per-request) and http_1mib (--response-size 1 MiB). Each run is
# one loadgen process (its own --warmup, then --duration) against a zerohop started
# for that run: a loadgen that leaves takes its emulated servers (the proxy's pooled
# upstream connections) with it. zerohop stops first, while the loadgen (report
# written, workers stopped) lingers: DPDK 22.11's memif driver unmaps a departed
# peer's rings under a worker that may still poll them, a crash seen once when the
# loadgen left first.
#
# Output: target/bench/NAME.md (tables, ratios zerohop/HAProxy and zerohop/nginx),
# NAME.json (every run's raw numbers, the plan, the machine and tool versions),
# NAME.png (gnuplot: latency vs load per proxy and direct, requests/s per proxy), and
# NAME-raw/ (each tool's own output, each zerohop log). Exits 1 if any measurement
# failed (the cells say FAILED, the reasons follow the tables), after measuring the rest.
#
#   sudo scripts/bench.sh [options]
#     --quick               1 run of 3 s per point, 1 s warm-up (under 5 minutes)
#     --workloads LIST      which workloads (above; default all; --kernel-free: its four)
#     --only PROXY          zerohop, haproxy or nginx (direct still runs as the baseline)
#     --proxy-cpus LIST     CPUs for the proxy, taskset syntax (default 1)
#     --client-cpus LIST    CPUs for the load generators (default: the others, or half)
#     --upstream-cpus LIST  CPUs for the upstream servers (default: as the client)
#     --core N              the same as --proxy-cpus N (bench_http.sh, bench_l4.sh)
#     --runs N              measured runs per point (default 3; --quick 1)
#     --secs S              seconds per run (default 10; --quick 3)
#     --warmup S            warm-up seconds per workload (default 3; --quick 1)
#     --rates LIST          latency points: N% of the lowest max (above), or N req/s
#                           (default 10%,25%,50%,75%)
#     --connections N       HTTP client connections (default 50; 1 MiB: N/5, ≥ 2)
#     --idle LIST           idle connection counts (default 1000,10000)
#     --procs N             client.py processes for l4_cps (default: client CPUs, ≥ 2)
#     --name NAME           output file names (default bench; --kernel-free:
#                           bench-kernel-free)
#     --resilience          zerohop's route retries, health check and outlier
#                           detection on (what they cost)
#     --access-log          zerohop writes Envoy's default access log line per request
#     --kernel-free         the kernel-free mode (above)
#     --far-napi            the client's and upstream's veth ends receive through
#                           threaded NAPI with GRO on their own CPUs, as other hosts
#                           would (by default a veth runs the receiver's stack on the
#                           sender's CPU; see bench_far_napi in bench_lib.sh)
#     --mtu N               every veth (and zerohop's ports) at MTU N instead of 1500,
#                           e.g. 9000 for jumbo frames as in many data centres
#     --plan                print the plan and its estimated duration, and exit
#   ZEROHOP_BIN=PATH  use this zerohop binary instead of building target/release/zerohop
#
# Installs what it needs: scripts/setup.sh (packages, hugepages), nginx,
# libnginx-mod-stream and gnuplot-nox (apt-get), and oha (`cargo install oha --locked`,
# which compiles for several minutes the first time). Needs root. It prints its
# estimated duration before it starts. Everything it creates (namespaces, interfaces,
# processes, temporary files) is removed on exit, also on failure or Ctrl-C. The
# numbers mean something only on an otherwise idle machine.
set -Eeuo pipefail
# A command that fails unexpectedly ends the script (set -e); say which.
trap 'echo "${0##*/}: line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh
# shellcheck source=scripts/bench_parse.sh
. scripts/bench_parse.sh

ALL_WORKLOADS=(rps latency http_cps http_1mib l4_throughput l4_cps idle)
ALL_PROXIES=(zerohop haproxy nginx)

QUICK=0 ONLY='' WORKLOADS_ARG=all PROXY_CPUS='' CLIENT_CPUS='' UPSTREAM_CPUS=''
RUNS='' SECS='' WARMUP='' RATES='10%,25%,50%,75%' CONNS=50 IDLE_COUNTS=1000,10000
PROCS='' NAME=bench RESILIENCE=0 ACCESS_LOG=0 KERNEL_FREE=0 PLAN_ONLY=0 FAR_NAPI=0 MTU=1500
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --only) ONLY=${2:?--only needs zerohop, haproxy or nginx}; shift ;;
    --workloads) WORKLOADS_ARG=${2:?--workloads needs a list}; shift ;;
    --proxy-cpus | --core) PROXY_CPUS=${2:?$1 needs a CPU list}; shift ;;
    --client-cpus) CLIENT_CPUS=${2:?--client-cpus needs a CPU list}; shift ;;
    --upstream-cpus) UPSTREAM_CPUS=${2:?--upstream-cpus needs a CPU list}; shift ;;
    --runs) RUNS=${2:?--runs needs a number}; shift ;;
    --secs) SECS=${2:?--secs needs a number}; shift ;;
    --warmup) WARMUP=${2:?--warmup needs a number}; shift ;;
    --rates) RATES=${2:?--rates needs a list}; shift ;;
    --connections) CONNS=${2:?--connections needs a number}; shift ;;
    --idle) IDLE_COUNTS=${2:?--idle needs a list}; shift ;;
    --procs) PROCS=${2:?--procs needs a number}; shift ;;
    --name) NAME=${2:?--name needs a name}; shift ;;
    --resilience) RESILIENCE=1 ;;
    --access-log) ACCESS_LOG=1 ;;
    --far-napi) FAR_NAPI=1 ;;
    --mtu) MTU=${2:?--mtu needs a number}; shift ;;
    --plan) PLAN_ONLY=1 ;;
    --kernel-free) KERNEL_FREE=1; [[ $NAME == bench ]] && NAME=bench-kernel-free ;;
    -h | --help) bench_usage 0 ;;
    *) echo "$BENCH_NAME: unknown argument $1" >&2; bench_usage ;;
  esac
  shift
done

# --- the plan --------------------------------------------------------------------------

WORKLOADS=()
if ((KERNEL_FREE)) && [[ $WORKLOADS_ARG == all ]]; then WORKLOADS_ARG=rps,latency,http_cps,http_1mib; fi
for w in ${WORKLOADS_ARG//,/ }; do
  case $w in
    all) WORKLOADS+=("${ALL_WORKLOADS[@]}") ;;
    cps) WORKLOADS+=(http_cps l4_cps) ;;
    throughput) WORKLOADS+=(http_1mib l4_throughput) ;;
    l4) WORKLOADS+=(l4_throughput l4_cps) ;;
    rps | latency | http_cps | http_1mib | l4_throughput | l4_cps | idle) WORKLOADS+=("$w") ;;
    *) die "--workloads: unknown workload '$w' (${ALL_WORKLOADS[*]} cps throughput l4 all)" ;;
  esac
done
((${#WORKLOADS[@]})) || die "--workloads: none given"
# The latency points are shares of the max requests/s: latency needs rps.
if [[ " ${WORKLOADS[*]} " == *" latency "* && " ${WORKLOADS[*]} " != *" rps "* ]]; then
  WORKLOADS=(rps "${WORKLOADS[@]}")
fi
wants() { [[ " ${WORKLOADS[*]} " == *" $1 "* ]]; }

PROXIES=("${ALL_PROXIES[@]}")
if [[ -n $ONLY ]]; then
  [[ " ${ALL_PROXIES[*]} " == *" $ONLY "* ]] || die "--only: zerohop, haproxy or nginx, not '$ONLY'"
  PROXIES=("$ONLY")
fi
if ((QUICK)); then
  : "${RUNS:=1}" "${SECS:=3}" "${WARMUP:=1}"
else
  : "${RUNS:=3}" "${SECS:=10}" "${WARMUP:=3}"
fi
for v in runs:RUNS secs:SECS connections:CONNS; do
  name=${v#*:}
  [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "--${v%:*}: a whole number above 0, not '${!name}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "--warmup: whole seconds, not '$WARMUP'"
for n in ${IDLE_COUNTS//,/ }; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "--idle: counts like 1000,10000, not '$IDLE_COUNTS'"
done
for r in ${RATES//,/ }; do
  [[ $r =~ ^[0-9]+(\.[0-9]+)?%?$ ]] || die "--rates: entries like 25% or 5000, not '$r'"
done
CONNS_1M=$((CONNS / 5 < 2 ? 2 : CONNS / 5))

bench_cpus_init
PROCS=${PROCS:-$((N_CLIENT < 2 ? 2 : N_CLIENT))}
WRK_THREADS=$((N_CLIENT < CONNS ? N_CLIENT : CONNS))
WRK_THREADS_1M=$((N_CLIENT < CONNS_1M ? N_CLIENT : CONNS_1M))
NPOINTS=$(tr ',' '\n' <<<"$RATES" | wc -l)

# bench_estimate: seconds the plan takes, from the parts' own lengths plus what
# starting and stopping costs (measured on a 2-vCPU VM: zerohop ~3 s, idle opening
# ~2,000 connections/s through a proxy).
bench_estimate() {
  local t=20 targets=$((${#PROXIES[@]} + 1)) n per points=0
  if ((KERNEL_FREE)); then # a fresh zerohop (~2 s) and loadgen per run
    wants rps && points=$((points + 1))
    wants latency && points=$((points + NPOINTS))
    wants http_cps && points=$((points + 1))
    wants http_1mib && points=$((points + 1))
    echo $((t + points * RUNS * (WARMUP + SECS + 4)))
    return 0
  fi
  t=$((t + ${#PROXIES[@]} * 6)) # start, probe, stop per proxy
  wants rps && t=$((t + targets * (WARMUP + RUNS * (SECS + 1))))
  wants latency && t=$((t + targets * (WARMUP + 3 + NPOINTS * RUNS * (SECS + 1))))
  for w in http_cps http_1mib l4_throughput l4_cps; do
    wants "$w" && t=$((t + ${#PROXIES[@]} * (WARMUP + RUNS * (SECS + 2))))
  done
  if wants idle && ((!KERNEL_FREE)); then
    per=0
    for n in ${IDLE_COUNTS//,/ }; do per=$((per + 9 + n / 1500)); done
    t=$((t + targets * RUNS * per))
  fi
  echo "$t"
}

if ((KERNEL_FREE)); then
  for w in "${WORKLOADS[@]}"; do
    case $w in
      rps | latency | http_cps | http_1mib) ;;
      *) die "--kernel-free: workload $w needs the kernel (kernel-free: rps latency http_cps http_1mib)" ;;
    esac
  done
  [[ -z $ONLY || $ONLY == zerohop ]] || die "--kernel-free measures zerohop only"
  ((!FAR_NAPI)) || die "--far-napi: the kernel-free mode has no veths"
  ((MTU == 1500)) || die "--mtu: the kernel-free mode has no veths"
  PROXIES=(zerohop)
fi
EST=$(bench_estimate)
say "plan: ${WORKLOADS[*]}; proxies: ${PROXIES[*]}$( ((KERNEL_FREE)) && echo ' (kernel-free)')$( ((FAR_NAPI)) && echo ' (far NAPI)')$( ((MTU != 1500)) && echo " (MTU $MTU)"); $RUNS × ${SECS} s per point, ${WARMUP} s warm-up; CPUs: proxy $PROXY_CPUS, client $CLIENT_CPUS, upstream $UPSTREAM_CPUS; estimated $((EST / 60)) min $((EST % 60)) s"
((PLAN_ONLY)) && exit 0
[[ $MTU =~ ^[0-9]+$ ]] && ((MTU >= 576 && MTU <= 9000)) || die "--mtu: '$MTU' is not an MTU from 576 to 9000"
[[ $EUID -eq 0 ]] || die "needs root (network namespaces, DPDK vdevs): sudo -E $0"

# --- setup -----------------------------------------------------------------------------

if ((KERNEL_FREE)); then
  bench_apt gnuplot-nox || note "warning: apt-get install gnuplot-nox failed: no chart"
  bench_setup curl python3
else
  bench_apt nginx libnginx-mod-stream gnuplot-nox || note "warning: apt-get install failed; going on with what is there"
  tools=(wrk haproxy nginx iperf3 curl python3 taskset)
  if wants latency; then bench_ensure_oha; tools+=(oha); fi
  bench_setup "${tools[@]}"
  [[ -e $NGINX_STREAM_MODULE ]] || die "nginx stream module missing ($NGINX_STREAM_MODULE): apt-get install libnginx-mod-stream"
fi
bench_build
if ((KERNEL_FREE)) && ! "$BIN" loadgen --help >/dev/null 2>&1; then
  die "$BIN has no loadgen subcommand (zerohop loadgen --help failed): --kernel-free needs it"
fi
RAW=$OUT_DIR/$NAME-raw
rm -rf "$RAW"
mkdir -p "$RAW"
CLK_TCK=$(getconf CLK_TCK)
START_TIME=$(date +%s)
bench_raise_nofile
if wants idle; then
  for n in ${IDLE_COUNTS//,/ }; do
    if ((n + 500 > NOFILE)); then
      note "warning: --idle $n with a file-descriptor limit of $NOFILE (ulimit -Hn): the kernel proxies and the client cannot hold that many"
    fi
  done
fi

# --- one run ---------------------------------------------------------------------------

# cpu_snapshot PROXY: the proxy's CPU counter now (kernel proxies: non-idle jiffies of
# the proxy CPUs; zerohop: its workers' busy cycles from the admin API; direct: 0).
cpu_snapshot() {
  case $1 in
    direct) echo 0 ;;
    zerohop)
      in_ns "$NS_P" curl -sS -m 3 "http://127.0.0.1:$ADMIN_PORT/stats" >"$RAW/zerohop-admin-stats.txt" &&
        bench_parse_zerohop_admin <"$RAW/zerohop-admin-stats.txt" | awk '$1 == "busy_cycles" { print $2 }'
      ;;
    *) bench_parse_proc_stat "$PROXY_CPUS" </proc/stat | awk '$1 == "busy_jiffies" { print $2 }' ;;
  esac
}
cpu_key() { if [[ $1 == zerohop ]]; then echo busy_cycles; else echo cpu_jiffies; fi; }

# proc_ticks: user+system ticks of the kernel proxy's own processes (all threads, nginx's
# workers too) — without what else ran on the proxy CPUs, but also without the softirq
# work the kernel did for it there; kept beside cpu_jiffies in the JSON.
proc_ticks() { bench_sum_pids "$PROXY_PID" stat bench_parse_proc_pid_stat ticks; }

# run_measured PROXY WORKLOAD POINT RUN PARSER TIMEOUT COMMAND...: run COMMAND in C on
# the client CPUs (output to NAME-raw/), parse its output with PARSER and, unless RUN is
# 0 (a warm-up), record what it says plus the proxy's CPU time over it. Else FAIL_WHY
# says why and it returns 1.
run_measured() {
  local proxy=$1 workload=$2 point=$3 run=$4 parser=$5 limit=$6 out a b pa pb rc=0 parsed
  shift 6
  out=$RAW/$proxy-$workload${point#-}-run$run.txt
  [[ $point == - ]] && out=$RAW/$proxy-$workload-run$run.txt
  ((run == 0)) && out=${out%-run0.txt}-warmup.txt
  if ! a=$(cpu_snapshot "$proxy"); then
    FAIL_WHY="could not read $proxy's CPU counter before the run$(log_hint "$proxy")"
    return 1
  fi
  pa='' pb=''
  [[ $proxy == zerohop || $proxy == direct ]] || pa=$(proc_ticks) || pa=''
  in_ns "$NS_C" taskset -c "$CLIENT_CPUS" timeout "$limit" "$@" >"$out" 2>&1 || rc=$?
  if ! b=$(cpu_snapshot "$proxy"); then
    FAIL_WHY="could not read $proxy's CPU counter after the run: did it exit?$(log_hint "$proxy")"
    return 1
  fi
  [[ -z $pa ]] || pb=$(proc_ticks) || pb=''
  if [[ $proxy != direct ]] && ! kill -0 "$PROXY_PID" 2>/dev/null; then
    FAIL_WHY="$proxy exited during the run$(log_hint "$proxy")"
    return 1
  fi
  if ! parsed=$("$parser" <"$out" 2>&1); then
    FAIL_WHY="${parser#bench_parse_} run $run: $parsed$( ((rc == 124)) && echo ' (timed out)') (output: $out)$(log_hint "$proxy")"
    return 1
  fi
  ((run == 0)) && return 0
  record_parsed "$proxy" "$workload" "$point" "$run" <<<"$parsed"
  [[ $proxy == direct ]] || record "$proxy" "$workload" "$point" "$run" "$(cpu_key "$proxy")" $((b - a))
  [[ -z $pb ]] || record "$proxy" "$workload" "$point" "$run" proc_ticks $((pb - pa))
  LAST_PARSED=$parsed
}

# measure PROXY WORKLOAD POINT PARSER TIMEOUT COMMAND...: a warm-up of WARMUP s (the
# command with its duration argument, written as @SECS@, set to WARMUP) unless
# NO_WARMUP=1, then RUNS runs of SECS. Stops at the first failure, recorded.
measure() {
  local proxy=$1 workload=$2 point=$3 parser=$4 limit=$5 i
  shift 5
  local cmd=("$@")
  if ((WARMUP > 0)) && [[ ${NO_WARMUP:-0} == 0 ]]; then
    if ! run_measured "$proxy" "$workload" "$point" 0 "$parser" "$limit" "${cmd[@]//@SECS@/$WARMUP}"; then
      fail "$proxy" "$workload" "$point" "warm-up: $FAIL_WHY"
      return 1
    fi
  fi
  for i in $(seq "$RUNS"); do
    if ! run_measured "$proxy" "$workload" "$point" "$i" "$parser" "$limit" "${cmd[@]//@SECS@/$SECS}"; then
      fail "$proxy" "$workload" "$point" "$FAIL_WHY"
      return 1
    fi
    note "$proxy $workload${point#-} run $i: $(summary_line "$workload" <<<"$LAST_PARSED")"
  done
}

# summary_line WORKLOAD < KEY VALUE lines: the numbers a person watching wants.
summary_line() {
  awk -v w="$1" '{ v[$1] = $2 }
    END {
      if (w == "latency") printf "%.0f req/s, p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, %d errors", v["requests_per_s"], v["p50_us"], v["p99_us"], v["p99_9_us"], v["errors"]
      else if (w == "l4_throughput") printf "%.2f Gbit/s, %d retransmits", v["received_bps"] / 1e9, v["retransmits"]
      else if (w == "l4_cps") printf "%d connections, %d errors", v["conns"], v["errors"]
      else printf "%.0f req/s, p50 %.0f µs, p99 %.0f µs, %d non-2xx, %d socket errors", v["requests_per_s"], v["p50_us"], v["p99_us"], v["non2xx"], v["socket_errors"]
    }'
}

# --- the proxies -----------------------------------------------------------------------

# zh_extras: what --access-log and --resilience add to zerohop's config (after
# bench_names: the access log goes under TMP).
zh_extras() {
  ZH_HCM_EXTRA='' ZH_ROUTE_EXTRA='' ZH_CLUSTER_EXTRA=''
  if ((ACCESS_LOG)); then
    ZH_HCM_EXTRA="
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $TMP/access.log"
  fi
  if ((RESILIENCE)); then
    ZH_ROUTE_EXTRA=', retry_policy: { retry_on: "5xx,reset,connect-failure", num_retries: 2 }'
    ZH_CLUSTER_EXTRA="    health_checks:
    - { timeout: 1s, interval: 1s, unhealthy_threshold: 3, healthy_threshold: 1,
        no_traffic_interval: 1s, http_health_check: { path: / } }
    outlier_detection: { consecutive_5xx: 5 }"
  fi
}

ZH_RUN=0
start_proxy() { # PROXY
  case $1 in
    direct) return 0 ;;
    zerohop)
      ZH_RUN=$((ZH_RUN + 1))
      ZH_LOG=$RAW/zerohop-$ZH_RUN.log
      bench_start_zerohop "$TMP/zerohop.yaml"
      ;;
    haproxy) bench_start_pinned haproxy "$HTTP_PORT" "$RAW/haproxy.log" haproxy -db -f "$TMP/haproxy.cfg" ;;
    nginx) bench_start_pinned nginx "$HTTP_PORT" "$RAW/nginx.log" nginx -c "$TMP/proxy.conf" -p "$TMP/" -e stderr ;;
  esac
}

# finish_proxy PROXY: stop it; zerohop: record the TSC rate its exit log gives (to turn
# busy cycles into time) and show its request and drop counters.
finish_proxy() {
  local parsed
  [[ $1 == direct ]] && return 0
  stop_proxy "$1"
  [[ $1 == zerohop ]] || return 0
  if parsed=$(bench_parse_zerohop_exit <"$ZH_LOG" 2>&1); then
    awk '$1 == "tsc_hz"' <<<"$parsed" | record_parsed zerohop - - 0
  else
    note "zerohop: $parsed (log: $ZH_LOG)"
  fi
  grep -E 'stat http\.bench\.downstream_rq_(total|2xx|4xx|5xx):|stat cluster\.up\.upstream_(cx_total|rq_5xx):|mbufs_in_use=|busy_ms=' "$ZH_LOG" |
    sed -E 's/^[0-9T:.-]+Z +INFO +//; s/^/    zerohop: /' >&2 || true
}

# probe_http PROXY URL: one request through the proxy must answer hello.
probe_http() {
  local body
  body=$(in_ns "$NS_C" curl -sS -m 3 "$2" 2>&1) || true
  [[ $body == hello ]] && return 0
  FAIL_WHY="curl $2 answered '${body:0:200}' instead of hello — $1 did not proxy the request$(log_hint "$1")"
  return 1
}
probe_l4() { # PROXY
  local line
  line=$(in_ns "$NS_C" timeout 20 python3 tests/fixtures/tcp/client.py probe --host "$PROXY_DOWN" \
    --port "$L4_CPS_PORT" --send 'GET
' --timeout 3 | grep '^result' || true)
  [[ $line == *outcome=data* ]] && return 0
  FAIL_WHY="no answer through $PROXY_DOWN:$L4_CPS_PORT (${line:-client.py probe failed}) — $1 did not proxy the connection$(log_hint "$1")"
  return 1
}

url_of() { # PROXY PATH
  if [[ $1 == direct ]]; then echo "http://$DIRECT_UPSTREAM:$UPSTREAM_PORT$2"; else echo "http://$PROXY_DOWN:$HTTP_PORT$2"; fi
}

# latency_rates: the --rates points in requests/s. N% is N% of the lowest max
# requests/s the rps workload measured (over the proxies and direct), so that every
# point is below every proxy's saturation and all are measured at the same load.
latency_rates() {
  local r max
  max=$(awk '$2 == "rps" && $5 == "requests_per_s" { v[$1] = v[$1] " " $6 }
    END { for (p in v) print v[p] }' "$RESULTS" |
    while read -r line; do tr ' ' '\n' <<<"$line" | bench_stats | awk '$1 == "median" { print $2 }'; done |
    sort -g | head -n 1)
  for r in ${RATES//,/ }; do
    if [[ $r == *% ]]; then
      [[ -n $max ]] || die "--rates $r: no requests/s from the rps workload to take a share of"
      awk -v p="${r%\%}" -v m="$max" 'BEGIN { v = int(p * m / 100); print (v < 1 ? 1 : v) }'
    else
      printf '%.0f\n' "$r"
    fi
  done | sort -n
}

# measure_http PROXY: the HTTP workloads of the first pass against the running proxy
# (direct: rps only).
measure_http() {
  local proxy=$1 url
  url=$(url_of "$proxy" /)
  if wants rps; then
    say "$proxy: rps — wrk -t$WRK_THREADS -c$CONNS, keep-alive, $RUNS × $SECS s"
    measure "$proxy" rps - bench_parse_wrk $((SECS + 30)) \
      wrk -t"$WRK_THREADS" -c"$CONNS" -d@SECS@s --latency "$url" || true
  fi
  [[ $proxy == direct ]] && return 0
  if wants http_cps; then
    say "$proxy: http_cps — wrk -c$CONNS -H 'Connection: close', $RUNS × $SECS s"
    measure "$proxy" http_cps - bench_parse_wrk $((SECS + 30)) \
      wrk -t"$WRK_THREADS" -c"$CONNS" -d@SECS@s --latency -H 'Connection: close' "$url" || true
  fi
  if wants http_1mib; then
    say "$proxy: http_1mib — wrk -c$CONNS_1M on /1m, $RUNS × $SECS s"
    measure "$proxy" http_1mib - bench_parse_wrk $((SECS + 30)) \
      wrk -t"$WRK_THREADS_1M" -c"$CONNS_1M" -d@SECS@s --latency "$(url_of "$proxy" /1m)" || true
  fi
}

# measure_latency PROXY: the latency points against the running proxy (or direct). One
# warm-up at the first rate (a warm-up per rate would double the time), then the points
# in rising order.
measure_latency() {
  local proxy=$1 rate url first=1
  url=$(url_of "$proxy" /)
  for rate in $LAT_RATES; do
    say "$proxy: latency — oha -q $rate -c$CONNS --latency-correction, $RUNS × $SECS s"
    NO_WARMUP=$((1 - first)) measure "$proxy" latency "$rate" bench_parse_oha $((SECS + 30)) \
      oha -z @SECS@s -c "$CONNS" -q "$rate" --latency-correction --no-tui --output-format json \
      --worker-threads "$N_CLIENT" "$url" || true
    first=0
  done
}

measure_l4() { # PROXY
  local proxy=$1
  if wants l4_throughput; then
    say "$proxy: l4_throughput — iperf3 -c, one connection, $RUNS × $SECS s"
    measure "$proxy" l4_throughput - bench_parse_iperf3 $((SECS + 30)) \
      iperf3 -c "$PROXY_DOWN" -p "$L4_IPERF_PORT" -t @SECS@ -J --connect-timeout 3000 || true
  fi
  if wants l4_cps; then
    say "$proxy: l4_cps — client.py cps, $PROCS processes, $RUNS × $SECS s"
    measure "$proxy" l4_cps - bench_parse_cps $((SECS + 60)) \
      python3 tests/fixtures/tcp/client.py cps --host "$PROXY_DOWN" --port "$L4_CPS_PORT" \
      --secs @SECS@ --procs "$PROCS" --timeout 2 || true
  fi
}

# measure_idle PROXY N RUN: a fresh proxy; a warm-up of 100 idle connections (opened
# and closed, so pools and lazy allocations are in the baseline); then the proxy's RSS
# and the kernel's memory; then N idle connections, held; 2 s later (zerohop gives idle
# buffer pages back after dataplane.tcp.idle_release_ms, 1 s) the same readings again.
measure_idle() {
  local proxy=$1 n=$2 run=$3 host port pid out rss0='' rss1='' k0 k1 line
  if [[ $proxy == direct ]]; then host=$DIRECT_UPSTREAM port=$UPSTREAM_PORT; else host=$PROXY_DOWN port=$HTTP_PORT; fi
  out=$RAW/$proxy-idle$n-run$run.txt
  FAIL_WHY=
  if ! start_proxy "$proxy"; then fail "$proxy" idle "$n" "$FAIL_WHY"; return 1; fi
  if ! probe_http "$proxy" "$(url_of "$proxy" /)"; then
    fail "$proxy" idle "$n" "$FAIL_WHY"
    finish_proxy "$proxy"
    return 1
  fi
  # ip netns exec, taskset and python exec one another: $! is python's pid.
  ip netns exec "$NS_C" taskset -c "$CLIENT_CPUS" python3 tests/fixtures/bench/idle_hold.py \
    "$host" "$port" 100 >"$out.warmup" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -qs '^idle' "$out.warmup" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$pid"
  sleep 1
  [[ $proxy == direct ]] || rss0=$(bench_rss_kb "$PROXY_PID")
  k0=$(bench_kmem "$NS_P")
  ip netns exec "$NS_C" taskset -c "$CLIENT_CPUS" python3 tests/fixtures/bench/idle_hold.py \
    "$host" "$port" "$n" --timeout 120 >"$out" 2>&1 &
  pid=$!
  for _ in $(seq 1300); do grep -qs '^idle' "$out" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if ! grep -q '^idle' "$out"; then
    fail "$proxy" idle "$n" "idle_hold.py did not open $n connections: $(tail -n 2 "$out" | tr '\n' ' ')$(log_hint "$proxy")"
    stop_pid "$pid"
    finish_proxy "$proxy"
    return 1
  fi
  sleep 2
  [[ $proxy == direct ]] || rss1=$(bench_rss_kb "$PROXY_PID")
  k1=$(bench_kmem "$NS_P")
  stop_pid "$pid"
  line=$(grep '^done' "$out" || true)
  finish_proxy "$proxy"
  record "$proxy" idle "$n" "$run" connections "$n"
  [[ -n $rss0 ]] && record "$proxy" idle "$n" "$run" rss_before_kb "$rss0"
  [[ -n $rss1 ]] && record "$proxy" idle "$n" "$run" rss_after_kb "$rss1"
  awk '{ print "before_" $0 }' <<<"$k0" | record_parsed "$proxy" idle "$n" "$run"
  awk '{ print "after_" $0 }' <<<"$k1" | record_parsed "$proxy" idle "$n" "$run"
  [[ $line =~ closed=([0-9]+) ]] && record "$proxy" idle "$n" "$run" closed_while_held "${BASH_REMATCH[1]}"
  note "$proxy idle $n run $run: RSS $((${rss1:-0} - ${rss0:-0})) KiB more$([[ $proxy == direct ]] && echo ' (no proxy)'), Slab $(($(awk '$1 == "slab_kb" { print $2 }' <<<"$k1") - $(awk '$1 == "slab_kb" { print $2 }' <<<"$k0"))) KiB more (machine-wide); ${line:-idle_hold.py said nothing at the end}"
}

# --- kernel-free -----------------------------------------------------------------------

# The kernel-free mode: zerohop (the first proxy CPU) between two memif pairs, `zerohop
# loadgen` (the first client CPU) on the other ends as clients and upstream servers.
# Written against the loadgen's CLI and JSON (bench_parse_loadgen); abstract memif
# socket names, a --file-prefix per process.
kernel_free() {
  local id cpu_p cpu_c sock_a sock_b net=77 lg_cfg zh_cfg max rate r
  id=zhb$$
  cpu_p=${PROXY_CPUS%%,*} cpu_c=${CLIENT_CPUS%%,*}
  sock_a=/$id-a sock_b=/$id-b
  DPDK_PREFIXES+=("$id-proxy" "$id-lg")
  TMP=$(mktemp -d /tmp/zerohop-bench.XXXXXX)
  RESULTS=$TMP/results
  : >"$RESULTS"
  PROXY_PID='' BG_PIDS=() PREFIX=
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  zh_cfg=$TMP/zerohop.yaml lg_cfg=$TMP/loadgen.yaml
  cat >"$zh_cfg" <<EOF
dataplane:
  cores: [$cpu_p]
  hugepages: auto
  eal_args: ["--no-pci", "--file-prefix=$id-proxy", "--in-memory"]
  ports:
    - name: down
      device: "net_memif0,role=server,socket=$sock_a,id=0"
      address: 10.$net.1.1/24
    - name: up
      device: "net_memif1,role=server,socket=$sock_b,id=0"
      address: 10.$net.2.1/24
  tcp:
    max_connections: 131072
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $ADMIN_PORT } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 0.0.0.0, port_value: $HTTP_PORT } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          generate_request_id: false
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: up }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: up
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    circuit_breakers: { thresholds: [{ max_connections: 1000000, max_pending_requests: 1000000, max_requests: 1000000 }] }
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.$net.2.2, port_value: $UPSTREAM_PORT } } }
EOF
  cat >"$lg_cfg" <<EOF
dataplane:
  cores: [$cpu_c]
  hugepages: auto
  eal_args: ["--no-pci", "--file-prefix=$id-lg", "--in-memory"]
  ports:
    - name: clients
      device: "net_memif0,role=client,socket=$sock_a,id=0"
      address: 10.$net.1.2/24
    - name: servers
      device: "net_memif1,role=client,socket=$sock_b,id=0"
      address: 10.$net.2.2/24
  tcp:
    max_connections: 262144
    time_wait_ms: 100
EOF
  say "kernel-free: zerohop on CPU $cpu_p (memif servers $sock_a, $sock_b), loadgen on CPU $cpu_c"

  # kf_start: a fresh zerohop under test. Fresh for every run: a memif client that
  # disconnects can crash the server's worker inside librte_net_memif (seen with DPDK
  # 22.11: segfault in the rx path as the client's regions go away), and the proxy's
  # pooled upstream connections would point at the previous loadgen's servers.
  KF_RUN=0
  kf_start() {
    KF_RUN=$((KF_RUN + 1))
    ZH_LOG=$RAW/zerohop-kf-$KF_RUN.log
    "$BIN" -c "$zh_cfg" --mode serve -l info --drain-time-s 1 >"$ZH_LOG" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 300); do
      grep -qs "zerohop ready" "$ZH_LOG" && return 0
      kill -0 "$PROXY_PID" 2>/dev/null || break
      sleep 0.1
    done
    FAIL_WHY="zerohop did not start: $(tail -n 3 "$ZH_LOG" | tr '\n' ' ') (log: $ZH_LOG)"
    stop_pid "$PROXY_PID"
    PROXY_PID=''
    return 1
  }
  kf_busy() { # zerohop's workers' busy cycles now (admin API)
    curl -sS -m 3 "http://127.0.0.1:$ADMIN_PORT/stats" 2>/dev/null | bench_parse_zerohop_admin 2>/dev/null |
      awk '$1 == "busy_cycles" { print $2 }'
  }
  # kf_stop: stop zerohop; say whether it was still alive (1) or had died (0), and
  # record the TSC rate from its exit log.
  kf_stop() {
    local alive=1 parsed
    kill -0 "$PROXY_PID" 2>/dev/null || alive=0
    stop_pid "$PROXY_PID"
    PROXY_PID=''
    if parsed=$(bench_parse_zerohop_exit <"$ZH_LOG" 2>/dev/null); then
      awk '$1 == "tsc_hz"' <<<"$parsed" | record_parsed zerohop - - 0
    fi
    KF_ALIVE=$alive
  }

  # kf_run WORKLOAD POINT RUN LOADGEN_ARG...: one measured loadgen run (its own
  # warm-up of WARMUP s, then SECS s) against a fresh zerohop. zerohop's CPU from its
  # admin counters, as in the kernel mode.
  kf_run() {
    local workload=$1 point=$2 run=$3 json a b rc=0 parsed
    shift 3
    json=$RAW/zerohop-kf-$workload${point#-}-run$run.json
    if ! kf_start; then
      fail zerohop "kf_$workload" "$point" "$FAIL_WHY"
      return 1
    fi
    a=$(kf_busy)
    rm -f "$json"
    # The load generator writes its report, then lingers with its workers stopped
    # until its memif links go down: zerohop stops first, so neither process has a
    # peer disconnect under a polling worker (DPDK 22.11's memif driver can crash
    # there).
    timeout $((WARMUP + SECS + 90)) "$BIN" loadgen -c "$lg_cfg" --target "10.$net.1.1:$HTTP_PORT" \
      --server "10.$net.2.2:$UPSTREAM_PORT" --duration "$SECS" --warmup "$WARMUP" --json "$json" \
      --linger 30 "$@" >"${json%.json}.txt" 2>&1 &
    local lg=$!
    BG_PIDS+=("$lg")
    while [[ ! -s $json ]] && kill -0 "$lg" 2>/dev/null; do sleep 0.1; done
    b=$(kf_busy)
    kf_stop
    wait "$lg" || rc=$?
    if ! parsed=$(bench_parse_loadgen <"$json" 2>&1); then
      fail zerohop "kf_$workload" "$point" "loadgen exit $rc: $parsed ($(tail -n 2 "${json%.json}.txt" | tr '\n' ' '))"
      return 1
    fi
    record_parsed zerohop "kf_$workload" "$point" "$run" <<<"$parsed"
    if [[ -n $a && -n $b ]]; then
      record zerohop "kf_$workload" "$point" "$run" busy_cycles $((b - a))
    fi
    ((rc == 0)) || record zerohop "kf_$workload" "$point" "$run" exit_code "$rc"
    if ((!KF_ALIVE)); then
      record zerohop "kf_$workload" "$point" "$run" proxy_died 1
      note "zerohop under test died during or right after the run (dmesg: $(dmesg 2>/dev/null | grep -a 'zh-worker.*segfault' | tail -n 1 | cut -c1-160))"
    fi
    note "zerohop kf_$workload${point#-} run $run: $(awk '{ v[$1] = $2 } END { printf "%.0f req/s, %.0f conn/s, %.2f Gbit/s, p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, %d errors", v["rps"], v["cps"], v["rx_gbps"], v["p50_us"], v["p99_us"], v["p99_9_us"], v["error_total"] }' <<<"$parsed")"
  }
  kf_measure() { # WORKLOAD POINT LOADGEN_ARG...
    local i
    for i in $(seq "$RUNS"); do kf_run "$1" "$2" "$i" "${@:3}" || return 1; done
  }
  if wants rps || wants latency; then
    say "kernel-free rps: closed loop, $CONNS connections, $RUNS × ($WARMUP s warm-up + $SECS s)"
    kf_measure rps - --connections "$CONNS" || true
  fi
  if wants latency; then
    max=$(awk '$2 == "kf_rps" && $5 == "rps" { print $6 }' "$RESULTS" | bench_stats 2>/dev/null | awk '$1 == "median" { printf "%.0f", $2 }') || true
    for r in ${RATES//,/ }; do
      if [[ $r == *% ]]; then
        [[ -n $max ]] || { fail zerohop kf_latency "$r" "no closed-loop max to take $r of"; continue; }
        rate=$(awk -v p="${r%\%}" -v m="$max" 'BEGIN { v = int(p * m / 100); print (v < 1 ? 1 : v) }')
      else
        rate=$(printf '%.0f' "$r")
      fi
      say "kernel-free latency: open loop, $rate requests/s"
      kf_measure latency "$rate" --connections "$CONNS" --rate "$rate" || true
    done
  fi
  if wants http_cps; then
    say "kernel-free http_cps: a new connection per request"
    kf_measure http_cps - --connections "$CONNS" --new-connection-per-request || true
  fi
  if wants http_1mib; then
    say "kernel-free http_1mib: 1 MiB responses, $CONNS_1M connections"
    kf_measure http_1mib - --connections "$CONNS_1M" --response-size "$BODY_1M" || true
  fi
}

# --- run -------------------------------------------------------------------------------

if ((KERNEL_FREE)); then
  kernel_free
else
  bench_names zbb
  bench_topology
  bench_start_upstreams "$PROCS"
  zh_extras
  zh_dataplane_yaml >"$TMP/zerohop.yaml"
  zh_static_yaml >>"$TMP/zerohop.yaml"
  "$BIN" -c "$TMP/zerohop.yaml" --mode validate >/dev/null || die "zerohop refuses the benchmark config ($TMP/zerohop.yaml)"
  bench_haproxy_cfg >"$TMP/haproxy.cfg"
  bench_nginx_proxy_conf >"$TMP/proxy.conf"
  cp "$TMP/zerohop.yaml" "$TMP/haproxy.cfg" "$TMP/proxy.conf" "$TMP/upstream.conf" "$RAW/"

  # Pass 1, one proxy start each: rps (direct too), http_cps, http_1mib, l4_*.
  # Pass 2 (latency) needs every proxy's max requests/s from pass 1 for its rates.
  for proxy in direct "${PROXIES[@]}"; do
    if [[ $proxy == direct ]]; then
      wants rps || continue
      say "direct (no proxy): $(url_of direct /)"
      measure_http direct
      continue
    fi
    wants rps || wants http_cps || wants http_1mib || wants l4_throughput || wants l4_cps || continue
    say "$proxy: start"
    FAIL_WHY=
    if ! start_proxy "$proxy"; then
      for w in rps http_cps http_1mib l4_throughput l4_cps; do wants "$w" && fail "$proxy" "$w" - "$FAIL_WHY"; done
      continue
    fi
    if wants rps || wants http_cps || wants http_1mib; then
      if probe_http "$proxy" "$(url_of "$proxy" /)"; then
        measure_http "$proxy"
      else
        for w in rps http_cps http_1mib; do wants "$w" && fail "$proxy" "$w" - "$FAIL_WHY"; done
      fi
    fi
    if wants l4_throughput || wants l4_cps; then
      if probe_l4 "$proxy"; then
        measure_l4 "$proxy"
      else
        for w in l4_throughput l4_cps; do wants "$w" && fail "$proxy" "$w" - "$FAIL_WHY"; done
      fi
    fi
    finish_proxy "$proxy"
  done
  if wants latency; then
    LAT_RATES=$(latency_rates)
    say "latency points: $(paste -sd' ' <<<"$LAT_RATES") requests/s (--rates $RATES)"
    for proxy in direct "${PROXIES[@]}"; do
      FAIL_WHY=
      if ! start_proxy "$proxy"; then
        fail "$proxy" latency - "$FAIL_WHY"
        continue
      fi
      if probe_http "$proxy" "$(url_of "$proxy" /)"; then
        measure_latency "$proxy"
      else
        fail "$proxy" latency - "$FAIL_WHY"
      fi
      finish_proxy "$proxy"
    done
  fi
  if wants idle; then
    for proxy in direct "${PROXIES[@]}"; do
      for n in ${IDLE_COUNTS//,/ }; do
        say "$proxy: idle — $n keep-alive connections held, $RUNS run(s)"
        for i in $(seq "$RUNS"); do measure_idle "$proxy" "$n" "$i" || break; done
      done
    done
  fi
  # The upstream nginx's master stops (and reaps) its workers on SIGTERM.
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
  BG_PIDS=()
fi

# --- report ----------------------------------------------------------------------------

say "report"
bench_machine "$TMP/machine.json" "haproxy=haproxy -v | cut -d' ' -f1,3" "nginx=nginx -v 2>&1 | sed 's/^nginx version: //'" \
  "wrk=wrk -v 2>&1 | cut -d' ' -f1,2" \
  "oha=oha --version" "iperf3=iperf3 --version" "dpdk=pkg-config --modversion libdpdk" \
  "zerohop=$BIN --version" "zerohop_binary=echo $BIN sha256 \$(sha256sum $BIN | cut -c1-16) built \$(date -r $BIN -u +%FT%TZ)" \
  "zerohop_git=git rev-parse --short HEAD" \
  "zerohop_git_dirty=git status --porcelain --untracked-files=no | wc -l" "gnuplot=gnuplot --version"
python3 - "$TMP/setup.json" <<PY
import json, sys
json.dump({
    "name": "$NAME", "kernel_free": $KERNEL_FREE == 1, "quick": $QUICK == 1,
    "workloads": "${WORKLOADS[*]}".split(), "proxies": "${PROXIES[*]}".split(),
    "proxy_cpus": "$PROXY_CPUS", "client_cpus": "$CLIENT_CPUS", "upstream_cpus": "$UPSTREAM_CPUS",
    "runs": $RUNS, "seconds_per_run": $SECS, "warmup_s": $WARMUP, "rates": "$RATES",
    "connections": $CONNS, "connections_1mib": $CONNS_1M, "l4_cps_processes": $PROCS,
    "idle_counts": [int(n) for n in "$IDLE_COUNTS".split(",")], "body_1mib": $BODY_1M,
    "clk_tck": $CLK_TCK, "resilience": $RESILIENCE == 1, "access_log": $ACCESS_LOG == 1,
    "far_napi": $FAR_NAPI == 1, "mtu": $MTU,
    "estimated_s": $EST, "elapsed_s": $(($(date +%s) - START_TIME)),
}, open(sys.argv[1], "w"), indent=2)
PY
cp "$RESULTS" "$RAW/results.txt"
cp "$TMP/setup.json" "$TMP/machine.json" "$RAW/"
rc=0
python3 scripts/bench_report.py --results "$RESULTS" --setup "$TMP/setup.json" \
  --machine "$TMP/machine.json" --out "$OUT_DIR" --name "$NAME" || rc=$?
rm -f "$OUT_DIR/$NAME.png"
if command -v gnuplot >/dev/null && [[ -s $OUT_DIR/$NAME.gp ]]; then
  (cd "$OUT_DIR" && gnuplot "$NAME.gp") || note "gnuplot failed: no $OUT_DIR/$NAME.png"
elif [[ -s $OUT_DIR/$NAME.gp ]]; then
  note "no gnuplot (apt-get install gnuplot-nox): no $OUT_DIR/$NAME.png"
fi
say "wrote $OUT_DIR/$NAME.md, $NAME.json$(if [[ -e $OUT_DIR/$NAME.png ]]; then echo ", $NAME.png"; fi); raw outputs in $RAW/ ($(($(date +%s) - START_TIME)) s, estimated $EST s)"
exit "$rc"
