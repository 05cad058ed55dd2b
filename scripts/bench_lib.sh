# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are used by the scripts that source it
# What scripts/bench_l4.sh and scripts/bench_http.sh share: options, CPUs, setup and
# build, the C ⇄ P ⇄ U topology, starting and stopping the proxies, cleanup, and the
# machine description for the JSON report. Source it from the repository root (the
# scripts cd there first), after which a benchmark script reads:
#
#   bench_parse_args zerohop haproxy -- "$@"  # --quick --core N --only P -h, and the
#                                             # script's own bench_extra_arg, if defined
#   bench_init                     # root, RUNS/SECS, NCPU, LOAD_CPUS, NLOAD
#   bench_setup TOOL...            # scripts/setup.sh, then each TOOL must be on PATH
#   bench_build                    # BIN (ZEROHOP_BIN or cargo build --release), OUT_DIR
#   bench_names zb                 # namespaces, interfaces, addresses, TMP, RESULTS;
#                                  # cleanup of all of it on EXIT/INT/TERM
#   bench_topology                 # the namespaces and veths
#   ... start proxies with bench_start_zerohop / bench_start_pinned, stop them with
#   stop_proxy, record results with record / fail ...
#   bench_machine FILE NAME=COMMAND...  # the machine as JSON, for the report
#
# Everything lives in the sourcing shell: the globals below, PROXY_PID (the proxy
# running now) and BG_PIDS (servers in U) are what the cleanup stops.

# shellcheck source=scripts/netns.sh
. scripts/netns.sh

BENCH_NAME=${0##*/}
QUICK=0
CORE=1
ONLY=

say() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$BENCH_NAME" "$*" >&2
  exit 1
}

# The usage: the script's header lines from `#   sudo scripts/` to `#   ZEROHOP_BIN`.
bench_usage() {
  sed -n '/^#   sudo scripts/,/^#   ZEROHOP_BIN/s/^#   //p' "$0" >&2
  exit 2
}

# "a or b", "a, b or c"
bench_or() {
  local out=$1
  shift
  while (($# > 1)); do out+=", $1"; shift; done
  (($#)) && out+=" or $1"
  echo "$out"
}

# bench_parse_args PROXY... -- ARG...: the options every benchmark takes. --only accepts
# one of the PROXY names, which also become BENCH_PROXIES. Any other option goes to the
# script's bench_extra_arg ARG... (if defined): it sets BENCH_TAKEN to the number of
# words it used, or returns 1 for an option it does not know either.
bench_parse_args() {
  BENCH_PROXIES=()
  while [[ $1 != -- ]]; do BENCH_PROXIES+=("$1"); shift; done
  shift
  local names p ok=0
  names=$(bench_or "${BENCH_PROXIES[@]}")
  while (($#)); do
    BENCH_TAKEN=1
    case $1 in
      --quick) QUICK=1 ;;
      --core) CORE=${2:?--core needs a CPU number}; BENCH_TAKEN=2 ;;
      --only) ONLY=${2:?--only needs $names}; BENCH_TAKEN=2 ;;
      -h | --help) bench_usage ;;
      *)
        if ! declare -F bench_extra_arg >/dev/null || ! bench_extra_arg "$@"; then
          echo "$BENCH_NAME: unknown argument $1" >&2
          bench_usage
        fi
        ;;
    esac
    shift "$BENCH_TAKEN"
  done
  [[ -z $ONLY ]] && return 0
  for p in "${BENCH_PROXIES[@]}"; do [[ $ONLY == "$p" ]] && ok=1; done
  ((ok)) || { echo "--only: $names" >&2; exit 2; }
}

# Root, the run plan (RUNS × SECS) and the CPUs: CORE for the proxy, LOAD_CPUS (a
# taskset list, NLOAD of them) for everything else.
bench_init() {
  [[ $EUID -eq 0 ]] || die "needs root (network namespaces, DPDK vdevs): sudo -E $0"
  if ((QUICK)); then RUNS=1 SECS=3; else RUNS=3 SECS=10; fi
  NCPU=$(nproc)
  if ! [[ $CORE =~ ^[0-9]+$ ]] || ((CORE >= NCPU)); then
    die "--core $CORE: this machine has CPUs 0-$((NCPU - 1))"
  fi
  LOAD_CPUS=$(seq 0 $((NCPU - 1)) | grep -vx "$CORE" | paste -sd, -)
  [[ -n $LOAD_CPUS ]] || LOAD_CPUS=$CORE # one CPU: everything shares it
  NLOAD=$(tr ',' '\n' <<<"$LOAD_CPUS" | wc -l)
}

# bench_setup TOOL...: run scripts/setup.sh (packages, hugepages), then check the tools.
bench_setup() {
  local tool
  say "setup"
  bash scripts/setup.sh
  export PATH="$HOME/.cargo/bin:$PATH"
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs it)"
  done
}

# BIN: $ZEROHOP_BIN, else target/release/zerohop built now. OUT_DIR: target/bench.
bench_build() {
  if [[ -n ${ZEROHOP_BIN:-} ]]; then
    BIN=$ZEROHOP_BIN
  else
    say "cargo build --release"
    cargo build --release
    BIN=${CARGO_TARGET_DIR:-target}/release/zerohop
  fi
  [[ -x $BIN ]] || die "no zerohop binary at $BIN"
  OUT_DIR=${CARGO_TARGET_DIR:-target}/bench
  mkdir -p "$OUT_DIR"
}

# bench_names TAG: the names of everything the benchmark creates, the temporary
# directory, and the cleanup that removes it all again on exit, failure or Ctrl-C.
bench_names() {
  # Unique names: namespaces and interfaces are machine-wide (tests may run beside us).
  PREFIX=$1$(printf '%05d' $(($$ % 100000)))
  NS_C=${PREFIX}c NS_P=${PREFIX}p NS_U=${PREFIX}u
  IF_C=${PREFIX}c0 IF_PC=${PREFIX}c1 IF_U=${PREFIX}u0 IF_PU=${PREFIX}u1
  PROXY_DOWN=10.0.0.1 PROXY_UP=10.0.1.1 UPSTREAM=10.0.1.2
  TMP=$(mktemp -d /tmp/zerohop-bench.XXXXXX)
  RESULTS=$TMP/results # lines: PROXY KEY VALUE
  : >"$RESULTS"
  PROXY_PID= # the proxy running now
  BG_PIDS=() # servers in U
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

stop_pid() { # PID [SIGNAL]: signal it, wait up to 15 s, then SIGKILL
  local pid=$1 sig=${2:-TERM}
  kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  exec 2>/dev/null # best effort from here; also hides bash's "Killed" job notices
  [[ -n $PROXY_PID ]] && stop_pid "$PROXY_PID"
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid" KILL; done
  for ns in "$NS_C" "$NS_P" "$NS_U"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
  zh_cleanup "$PREFIX"
  rm -rf "$TMP"
  exit "$rc"
}

# Run a command in a namespace. Background processes use `ip netns exec` directly
# instead, so that $! is the program's own pid (ip netns exec and taskset exec).
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

bench_topology() {
  say "topology $NS_C ⇄ $NS_P ⇄ $NS_U (proxy CPU $CORE, load CPUs $LOAD_CPUS)"
  zh_ns_veth "$NS_C" "$IF_C" "$IF_PC" 10.0.0.2/24 "$NS_P"
  zh_ns_veth "$NS_U" "$IF_U" "$IF_PU" "$UPSTREAM/24" "$NS_P"
  zh_if_quiet "$NS_P" "$IF_PC"
  zh_if_quiet "$NS_P" "$IF_PU"
  zh_ns_gw "$NS_C" "$PROXY_DOWN"
  zh_ns_gw "$NS_U" "$PROXY_UP"
}

bench_raise_nofile() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# HAProxy's maxconn: what the FD limit allows (two sockets per proxied connection).
bench_haproxy_maxconn() {
  local maxconn=$((($(ulimit -n) - 200) / 2))
  ((maxconn > 50000)) && maxconn=50000
  echo "$maxconn"
}

# Kernel addresses on P's veth ends: the kernel proxies need them; while zerohop drives
# the ends with af_packet they must be gone (else P's kernel would answer ARP and TCP too).
p_addrs() { # add | del
  ip -n "$NS_P" addr "$1" "$PROXY_DOWN/24" dev "$IF_PC"
  ip -n "$NS_P" addr "$1" "$PROXY_UP/24" dev "$IF_PU"
}
flush_neigh() {
  ip -n "$NS_C" neigh flush all
  ip -n "$NS_U" neigh flush all
}

# bench_wait_listen NS PORT PID [TRIES]: wait (TRIES × 0.1 s, default 50) until process
# PID listens on TCP PORT in namespace NS; fails if it exits or the time runs out.
bench_wait_listen() {
  local ns=$1 port=$2 pid=$3 tries=${4:-50}
  for _ in $(seq "$tries"); do
    in_ns "$ns" ss -Hltnp "sport = :$port" | grep -q "pid=$pid," && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# bench_start_zerohop CONFIG: run zerohop with CONFIG in P, its log to $ZH_LOG (set by
# the caller), and wait for `zerohop ready`. Else FAIL_WHY says why, and it returns 1.
bench_start_zerohop() {
  local cfg=$1
  ip -n "$NS_P" addr flush dev "$IF_PC"
  ip -n "$NS_P" addr flush dev "$IF_PU"
  flush_neigh
  ip netns exec "$NS_P" "$BIN" -c "$cfg" --mode serve -l info >"$ZH_LOG" 2>&1 &
  PROXY_PID=$!
  for _ in $(seq 300); do
    grep -q "zerohop ready" "$ZH_LOG" && return 0
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$PROXY_PID" 2>/dev/null; then
    FAIL_WHY="zerohop not ready within 30 s"
  else
    local rc=0
    wait "$PROXY_PID" || rc=$?
    FAIL_WHY="zerohop exited (code $rc) before ready"
  fi
  FAIL_WHY+=": $(tail -n 2 "$ZH_LOG" | tr '\n' ' ') (log: $ZH_LOG)"
  stop_pid "$PROXY_PID"
  PROXY_PID=
  return 1
}

# bench_start_pinned NAME PORT LOG COMMAND...: a kernel proxy. Add P's addresses, run
# COMMAND in P on CORE, its output to LOG, and wait until it listens on PORT. Else
# FAIL_WHY says why, and it returns 1.
bench_start_pinned() {
  local name=$1 port=$2 log=$3
  shift 3
  p_addrs add
  flush_neigh
  ip netns exec "$NS_P" taskset -c "$CORE" "$@" >"$log" 2>&1 &
  PROXY_PID=$!
  bench_wait_listen "$NS_P" "$port" "$PROXY_PID" && return 0
  FAIL_WHY="$name did not start: $(tail -n 3 "$log" | tr '\n' ' ')"
  stop_pid "$PROXY_PID"
  PROXY_PID=
  return 1
}

# stop_proxy PROXY: stop the proxy running now. zerohop: print the lines of its exit
# log that match ZH_STATS_RE; the kernel proxies: remove P's addresses again.
stop_proxy() {
  [[ -n $PROXY_PID ]] || return 0
  stop_pid "$PROXY_PID"
  PROXY_PID=
  if [[ $1 != zerohop ]]; then
    p_addrs del
  elif [[ -n $ZH_LOG ]]; then
    grep -E "$ZH_STATS_RE" "$ZH_LOG" | sed 's/^/    zerohop: /' >&2 || true
  fi
}
ZH_LOG=
ZH_STATS_RE='mbufs_in_use'

record() { echo "$1 $2 $3" >>"$RESULTS"; }
log_hint() { if [[ $1 == zerohop ]]; then echo " (zerohop log: $ZH_LOG)"; fi; }
fail() { # PROXY METRIC WHY
  note "FAILED: $1 $2: $3"
  record "$1" "${2}_error" "$(tr -s '\n\t' '  ' <<<"$3" | cut -c1-400)"
}

# bench_machine FILE NAME=COMMAND...: write this machine as a JSON object to FILE:
# cpu_model, nproc, kernel, then NAME: the first line COMMAND prints (a version), then
# python.
bench_machine() {
  python3 - "$@" <<'PY'
import json, os, platform, subprocess, sys

def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"

cpu_model = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break

machine = {"cpu_model": cpu_model, "nproc": os.cpu_count(), "kernel": platform.release()}
for arg in sys.argv[2:]:
    name, cmd = arg.split("=", 1)
    machine[name] = first_line(cmd.split())
machine["python"] = platform.python_version()
with open(sys.argv[1], "w") as f:
    json.dump(machine, f)
PY
}

# The `dataplane:` section of zerohop's config on the proxy namespace's two veth ends
# (net_af_packet), one worker on $CORE; the caller appends `static_resources`.
zh_dataplane_yaml() {
  cat <<EOF
dataplane:
  cores: [$CORE]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: down
      device: "net_af_packet0,iface=$IF_PC"
      address: $PROXY_DOWN/24
    - name: up
      device: "net_af_packet1,iface=$IF_PU"
      address: $PROXY_UP/24
EOF
}
