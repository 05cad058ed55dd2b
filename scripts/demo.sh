#!/usr/bin/env bash
# zerohop demo: two pairs of network namespaces that can reach each other only through
# zerohop's L2 cross-connect, one pair over DPDK net_af_packet on veth pairs, one over
# DPDK net_tap interfaces. Pings and an HTTP GET cross each path, then zerohop is
# stopped with SIGTERM and prints its port counters.
#
#   zhdA1 10.199.1.1 ─veth─ zhdA1r [port a1] ⇄ zerohop ⇄ [port b1] zhdB1r ─veth─ 10.199.1.2 zhdB1
#   zhdA2 10.199.2.1 ─────── zhdA2t [port a2] ⇄ zerohop ⇄ [port b2] zhdB2t ─────── 10.199.2.2 zhdB2
#                            (net_tap, moved into zhdA2/zhdB2 after zerohop starts)
#
# Needs root. Everything it creates (namespaces, interfaces, processes, temp files) is
# removed on exit, also on failure or Ctrl-C. Exits non-zero if any step fails.
#   ZEROHOP_BIN=PATH  run this zerohop binary instead of building target/release/zerohop
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/netns.sh
. scripts/netns.sh

PREFIX=zhd # every namespace and interface below starts with this
HTTP_PORT=8000
BIN=${ZEROHOP_BIN:-${CARGO_TARGET_DIR:-target}/release/zerohop}

STEP=0
BOLD='' NORMAL=''
if [[ -t 1 ]]; then BOLD=$'\e[1m' NORMAL=$'\e[0m'; fi
step() {
  STEP=$((STEP + 1))
  printf '\n%s==> [%d/9] %s%s\n' "$BOLD" "$STEP" "$*" "$NORMAL"
}
ok() { printf '    ok: %s\n' "$*"; }
fail() {
  printf '\n    FAILED: %s\n' "$*" >&2
  if [[ -s ${LOG:-} ]]; then
    printf '    zerohop log (%s), last 30 lines:\n' "$LOG" >&2
    tail -n 30 "$LOG" | sed 's/^/      /' >&2
    if grep -q 'PACKET_FANOUT' "$LOG"; then
      echo "    hint: DPDK 22.11 af_packet uses fanout group (pid ^ ifindex) & 0xffff per" \
        "namespace; another af_packet process in the root namespace collided: rerun" >&2
    fi
  fi
  exit 1
}

if [[ $EUID -ne 0 ]]; then
  echo "demo.sh needs root (network namespaces, DPDK vdevs): sudo -E $0" >&2
  exit 1
fi

TMP=$(mktemp -d /tmp/zerohop-demo.XXXXXX)
LOG=$TMP/zerohop.log
ZH_PID=
HTTP_PIDS=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  for pid in "${HTTP_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  if [[ -n $ZH_PID ]] && kill -0 "$ZH_PID" 2>/dev/null; then
    kill -TERM "$ZH_PID"
    for _ in {1..50}; do kill -0 "$ZH_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ZH_PID" 2>/dev/null
  fi
  wait 2>/dev/null
  zh_cleanup "$PREFIX"
  rm -rf "$TMP"
  echo
  echo "cleaned up (namespaces and interfaces ${PREFIX}*, $TMP)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_in NS CMD...: run a bounded command in a namespace, echoing it.
run_in() {
  local ns=$1
  shift
  printf '    [%s] $ %s\n' "$ns" "$*"
  ip netns exec "$ns" "$@" 2>&1 | sed 's/^/      /'
  return "${PIPESTATUS[0]}"
}

# http_check NS_CLIENT NS_SERVER SERVER_ADDR: python3 http.server in NS_SERVER, curl from NS_CLIENT.
http_check() {
  local client=$1 server=$2 addr=$3 body
  ip netns exec "$server" python3 -m http.server --bind "$addr" --directory "$TMP/www" \
    "$HTTP_PORT" >/dev/null 2>&1 &
  HTTP_PIDS+=($!)
  # Wait until the server answers inside its own namespace (local, not through zerohop).
  for _ in {1..50}; do
    ip netns exec "$server" curl -s --noproxy '*' --max-time 1 -o /dev/null \
      "http://$addr:$HTTP_PORT/" && break
    sleep 0.1
  done
  printf '    [%s] $ curl --max-time 5 http://%s:%s/hello.txt\n' "$client" "$addr" "$HTTP_PORT"
  body=$(ip netns exec "$client" curl -sS --fail --noproxy '*' --max-time 5 \
    "http://$addr:$HTTP_PORT/hello.txt") || fail "HTTP GET $client -> $addr"
  printf '      %s\n' "$body"
  [[ $body == "hello from $PREFIX through zerohop" ]] || fail "unexpected HTTP body: $body"
  kill "${HTTP_PIDS[-1]}" 2>/dev/null || true
}

step "setup (packages, hugepages)"
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
ok "machine ready"

step "build zerohop (cargo build --release)"
if [[ -z ${ZEROHOP_BIN:-} ]]; then
  cargo build --release || fail "cargo build --release"
fi
[[ -x $BIN ]] || fail "$BIN not built"
ok "$BIN"

step "create namespaces zhdA1/zhdB1 with veth pairs (zerohop drives the root ends via net_af_packet)"
zh_cleanup "$PREFIX" # leftovers of an interrupted run
zh_ns_veth zhdA1 zhdA1n zhdA1r 10.199.1.1/24
zh_ns_veth zhdB1 zhdB1n zhdB1r 10.199.1.2/24
zh_ns_add zhdA2
zh_ns_add zhdB2
ok "zhdA1 10.199.1.1 <-veth-> zhdA1r   zhdB1r <-veth-> zhdB1 10.199.1.2"
ok "namespaces zhdA2, zhdB2 (taps arrive when zerohop runs)"
if ip netns exec zhdA1 ping -n -c 1 -W 1 10.199.1.2 >/dev/null 2>&1; then
  fail "10.199.1.2 reachable before zerohop runs"
fi
ok "no path between zhdA1 and zhdB1 without zerohop"
ip -n zhdA1 neigh flush all # forget the failed ARP resolution

step "start zerohop"
cat >"$TMP/zerohop.yaml" <<EOF
dataplane:
  cores: [1]
  hugepages: auto
  eal_args: ["--no-pci"]   # never touch the machine's own NIC
  ports:
    - name: a1
      device: "net_af_packet0,iface=zhdA1r"
    - name: b1
      device: "net_af_packet1,iface=zhdB1r"
    - name: a2
      device: "net_tap0,iface=zhdA2t"
    - name: b2
      device: "net_tap1,iface=zhdB2t"
  xconnect: [[a1, b1], [a2, b2]]
EOF
sed 's/^/      /' "$TMP/zerohop.yaml"
"$BIN" -c "$TMP/zerohop.yaml" -l info >"$LOG" 2>&1 &
ZH_PID=$!
for _ in {1..300}; do
  grep -q 'zerohop ready' "$LOG" && break
  kill -0 "$ZH_PID" 2>/dev/null || fail "zerohop exited before ready"
  sleep 0.1
done
grep -q 'zerohop ready' "$LOG" || fail "zerohop not ready within 30 s"
ok "zerohop ready (pid $ZH_PID, log $LOG)"

step "move the taps into zhdA2/zhdB2"
zh_ns_tap zhdA2 zhdA2t 10.199.2.1/24
zh_ns_tap zhdB2 zhdB2t 10.199.2.2/24
ok "zhdA2 10.199.2.1 (zhdA2t)   zhdB2 10.199.2.2 (zhdB2t)"

step "ping across both paths"
run_in zhdA1 ping -n -c 3 -i 0.2 -W 2 10.199.1.2 || fail "ping over net_af_packet"
run_in zhdA2 ping -n -c 3 -i 0.2 -W 2 10.199.2.2 || fail "ping over net_tap"

step "HTTP GET across both paths (python3 -m http.server <- curl)"
mkdir -p "$TMP/www"
echo "hello from $PREFIX through zerohop" >"$TMP/www/hello.txt"
http_check zhdA1 zhdB1 10.199.1.2
http_check zhdA2 zhdB2 10.199.2.2

step "stop zerohop (SIGTERM)"
kill -TERM "$ZH_PID"
for _ in {1..150}; do
  kill -0 "$ZH_PID" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$ZH_PID" 2>/dev/null && fail "zerohop still running 15 s after SIGTERM"
rc=0
wait "$ZH_PID" || rc=$?
ZH_PID=
((rc == 0)) || fail "zerohop exited with status $rc"
ok "exit status 0"

step "zerohop counters"
grep -E 'port [a-z0-9]+:.*rx_packets=|mbufs_in_use=' "$LOG" | sed 's/^/    /' || fail "no counters in the log"
grep -q 'mbufs_in_use=0\b' "$LOG" || fail "mbufs leaked (mbufs_in_use != 0)"
ok "all mbufs returned to the pool"
printf '\ndemo passed\n'
