#!/usr/bin/env bash
# zerohop demo: three pairs of network namespaces that can reach each other only
# through zerohop. Two pairs are joined by zerohop's L2 cross-connect, one over DPDK
# net_af_packet on veth pairs, one over DPDK net_tap interfaces: pings and an HTTP GET
# cross each path. The third pair sits on two different subnets and zerohop routes
# between them (L3 ports): ping zerohop itself, routed pings (also to a subnet behind
# zhdB3, by a static route), a routed HTTP GET, a TCP port that zerohop's ACL denies,
# and TTL 1 answered with ICMP time exceeded. On the same L3 ports zerohop terminates
# TCP in userspace and proxies it (Envoy tcp_proxy): a listener on 10.201.1.254:10000
# balances round robin over two HTTP servers in zhdB3 (curl shows them alternate), and
# iperf3 measures a stream through it. The main job last: an Envoy
# http_connection_manager listener on 10.201.1.254:8080 routes HTTP requests to three
# upstream servers in zhdB3 (each answers with its name) by path and by header, splits
# /split/ 80/20 by weight, and answers /healthz itself; the demo prints each request and
# the upstream that answered, and reads zerohop's admin API (Prometheus stats, clusters with
# a health-checked endpoint, the graph's runtime). Then zerohop is stopped with SIGTERM and prints its port
# counters, its graph's runtime, error and ACL counters, and the proxies' Envoy-named
# stats.
#
#   L2  zhdA1 10.199.1.1 ─veth─ zhdA1r [a1] ⇄ xconnect ⇄ [b1] zhdB1r ─veth─ 10.199.1.2 zhdB1
#   L2  zhdA2 10.199.2.1 ─────── zhdA2t [a2] ⇄ xconnect ⇄ [b2] zhdB2t ─────── 10.199.2.2 zhdB2
#                                (net_tap, moved into zhdA2/zhdB2 after zerohop starts)
#   L3  zhdA3 10.201.1.1 ─veth─ zhdA3r [a3 10.201.1.254] ⇄ ip4 ⇄ [b3 10.201.2.254] zhdB3r ─veth─ 10.201.2.1 zhdB3
#       default via .1.254        ACL on a3: no TCP to 8081          default via .2.254, 10.201.100.1 on lo
#                                 static route 10.201.100.0/24 via 10.201.2.1
#                                 tcp_proxy 10.201.1.254:10000 → 10.201.2.1:{9001,9002} (HTTP),
#                                 10.201.1.254:10001 → 10.201.2.1:5201 (iperf3)
#                                 HTTP 10.201.1.254:8080 → 10.201.2.1:{9101,9102,9103}
#                                 by path, header and weight; /healthz answered by zerohop
#
# One zerohop process serves all six ports, inside a namespace of its own, zhdP: the
# proxy ends of the veth pairs (zhd*r) live there, and net_tap creates zhdA2t/zhdB2t
# there before they are moved into zhdA2/zhdB2. Why not the root namespace: DPDK 22.11's
# af_packet PMD joins each socket to PACKET_FANOUT group (pid ^ ifindex) & 0xffff, and
# groups are per namespace, so an af_packet zerohop in the root namespace can collide
# with another af_packet process there (a test run, another tool) and fail to probe.
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

NS_ZH=zhdP       # zerohop's own namespace (see above)
DENIED_PORT=8081 # the TCP port the ACL on port a3 denies

STEP=0
# Each `step "…"` line below is one step: count them, so that [n/total] stays right.
STEPS=$(grep -c '^step "' scripts/demo.sh)
BOLD='' NORMAL=''
if [[ -t 1 ]]; then BOLD=$'\e[1m' NORMAL=$'\e[0m'; fi
step() {
  STEP=$((STEP + 1))
  printf '\n%s==> [%d/%d] %s%s\n' "$BOLD" "$STEP" "$STEPS" "$*" "$NORMAL"
}
ok() { printf '    ok: %s\n' "$*"; }
fail() {
  printf '\n    FAILED: %s\n' "$*" >&2
  if [[ -s ${LOG:-} ]]; then
    printf '    zerohop log (%s), last 30 lines:\n' "$LOG" >&2
    tail -n 30 "$LOG" | sed 's/^/      /' >&2
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

# http_serve NS ADDR PORT [DIR]: start python3 http.server on ADDR:PORT in NS serving DIR
# ($TMP/www by default) and wait until it answers inside NS (local delivery, not through
# zerohop).
http_serve() {
  local ns=$1 addr=$2 port=$3 dir=${4:-$TMP/www}
  ip netns exec "$ns" python3 -m http.server --bind "$addr" --directory "$dir" \
    "$port" >/dev/null 2>&1 &
  HTTP_PIDS+=($!)
  for _ in {1..50}; do
    ip netns exec "$ns" curl -s --noproxy '*' --max-time 1 -o /dev/null \
      "http://$addr:$port/" && return 0
    sleep 0.1
  done
  fail "http.server on $addr:$port in $ns not answering"
}

# http_check NS_CLIENT NS_SERVER SERVER_ADDR [PORT]: python3 http.server in NS_SERVER,
# curl from NS_CLIENT.
http_check() {
  local client=$1 server=$2 addr=$3 port=${4:-$HTTP_PORT} body
  http_serve "$server" "$addr" "$port"
  printf '    [%s] $ curl --max-time 5 http://%s:%s/hello.txt\n' "$client" "$addr" "$port"
  body=$(ip netns exec "$client" curl -sS --fail --noproxy '*' --max-time 5 \
    "http://$addr:$port/hello.txt") || fail "HTTP GET $client -> $addr:$port"
  printf '      %s\n' "$body"
  [[ $body == "hello from $PREFIX through zerohop" ]] || fail "unexpected HTTP body: $body"
  kill "${HTTP_PIDS[-1]}" 2>/dev/null || true
}

# must_fail_in NS WANT_RC CMD...: like run_in, but CMD must fail with exit code WANT_RC.
must_fail_in() {
  local ns=$1 want=$2 rc=0
  shift 2
  run_in "$ns" "$@" || rc=$?
  ((rc == want)) || fail "'$*' in $ns: want exit code $want, got $rc"
}

# log_lines REGEX: zerohop's log lines matching REGEX, without timestamp and level.
log_lines() {
  grep -E "$1" "$LOG" | sed -E 's/^[0-9]{4}-[0-9T:.-]+Z +[A-Z]+ +//'
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

step "create namespaces: $NS_ZH for zerohop; zhdA1..zhdB3 with veth pairs into $NS_ZH (net_af_packet)"
zh_cleanup "$PREFIX" # leftovers of an interrupted run
zh_ns_add "$NS_ZH"
zh_ns_veth zhdA1 zhdA1n zhdA1r 10.199.1.1/24 "$NS_ZH"
zh_ns_veth zhdB1 zhdB1n zhdB1r 10.199.1.2/24 "$NS_ZH"
zh_ns_add zhdA2
zh_ns_add zhdB2
zh_ns_veth zhdA3 zhdA3n zhdA3r 10.201.1.1/24 "$NS_ZH"
zh_ns_veth zhdB3 zhdB3n zhdB3r 10.201.2.1/24 "$NS_ZH"
zh_ns_gw zhdA3 10.201.1.254
zh_ns_gw zhdB3 10.201.2.254
ip -n zhdB3 addr add 10.201.100.1/32 dev lo # reached through zerohop's static route
ok "L2: zhdA1 10.199.1.1 <-veth-> zhdA1r   zhdB1r <-veth-> zhdB1 10.199.1.2"
ok "L2: namespaces zhdA2, zhdB2 (taps arrive when zerohop runs)"
ok "L3: zhdA3 10.201.1.1/24 <-veth-> zhdA3r   zhdB3r <-veth-> zhdB3 10.201.2.1/24 (+10.201.100.1)"
if ip netns exec zhdA1 ping -n -c 1 -W 1 10.199.1.2 >/dev/null 2>&1; then
  fail "10.199.1.2 reachable before zerohop runs"
fi
for dst in 10.201.1.254 10.201.2.1; do
  if ip netns exec zhdA3 ping -n -c 1 -W 1 "$dst" >/dev/null 2>&1; then
    fail "$dst reachable from zhdA3 before zerohop runs"
  fi
done
ok "no path zhdA1 -> zhdB1, nor zhdA3 -> its gateway or zhdB3, without zerohop"
# Forget the failed ARP resolutions.
ip -n zhdA1 neigh flush all
ip -n zhdA3 neigh flush all

step "start zerohop in $NS_ZH"
cat >"$TMP/zerohop.yaml" <<EOF
dataplane:
  cores: [1]
  hugepages: auto
  eal_args: ["--no-pci"]   # never touch the machine's own NIC
  ports:
    # L2 ports: no address; cross-connected below
    - name: a1
      device: "net_af_packet0,iface=zhdA1r"
    - name: b1
      device: "net_af_packet1,iface=zhdB1r"
    - name: a2
      device: "net_tap0,iface=zhdA2t"
    - name: b2
      device: "net_tap1,iface=zhdB2t"
    # L3 ports: an address makes a port routed
    - name: a3
      device: "net_af_packet2,iface=zhdA3r"
      address: 10.201.1.254/24
    - name: b3
      device: "net_af_packet3,iface=zhdB3r"
      address: 10.201.2.254/24
  xconnect: [[a1, b1], [a2, b2]]
  routes:
    - { prefix: 10.201.100.0/24, via: 10.201.2.1 }
  acl: # on packets received on a3; first match wins, no match = deny
    - { port: a3, action: deny, protocol: tcp, dst_port: $DENIED_PORT }
    - { port: a3, action: permit }
  tcp: { delayed_ack_ms: 0 }
# Envoy v3: zerohop terminates TCP on its L3 addresses and proxies it.
admin:   # the admin API: a kernel socket on zhdP's loopback
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
static_resources:
  listeners:
  - name: web
    address: { socket_address: { address: 10.201.1.254, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: web
          cluster: web
          idle_timeout: 30s
  - name: bulk
    address: { socket_address: { address: 10.201.1.254, port_value: 10001 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bulk
          cluster: iperf
  - name: http
    address: { socket_address: { address: 10.201.1.254, port_value: 8080 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          use_remote_address: true
          route_config:
            virtual_hosts:
            - name: demo
              domains: ["*"]
              routes:
              - match: { path: /healthz }
                direct_response: { status: 200, body: { inline_string: "ok from zerohop" } }
              - match: { prefix: /api/, headers: [{ name: x-canary, string_match: { exact: "1" } }] }
                route: { cluster: canary }
              - match: { prefix: /api/ }
                route: { cluster: api }
              - match: { prefix: /split/ }
                route:
                  weighted_clusters:
                    clusters: [{ name: api, weight: 80 }, { name: canary, weight: 20 }]
              - match: { prefix: / }
                route: { cluster: static }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: web
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: web
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.201.2.1, port_value: 9001 } } }
        - endpoint: { address: { socket_address: { address: 10.201.2.1, port_value: 9002 } } }
  - name: iperf
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: iperf
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.201.2.1, port_value: 5201 } } }
  - name: api
    connect_timeout: 1s
    health_checks:   # from worker 0, through the dataplane
    - { timeout: 1s, interval: 1s, no_traffic_interval: 1s, unhealthy_threshold: 2,
        healthy_threshold: 1, http_health_check: { path: /api/health } }
    load_assignment:
      cluster_name: api
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.201.2.1, port_value: 9101 } } }
  - name: canary
    connect_timeout: 1s
    load_assignment:
      cluster_name: canary
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.201.2.1, port_value: 9102 } } }
  - name: static
    connect_timeout: 1s
    load_assignment:
      cluster_name: static
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.201.2.1, port_value: 9103 } } }
EOF
sed 's/^/      /' "$TMP/zerohop.yaml"
# `ip netns exec` execs zerohop, so $! is zerohop's own pid.
ip netns exec "$NS_ZH" "$BIN" -c "$TMP/zerohop.yaml" -l info >"$LOG" 2>&1 &
ZH_PID=$!
for _ in {1..300}; do
  grep -q 'zerohop ready' "$LOG" && break
  kill -0 "$ZH_PID" 2>/dev/null || fail "zerohop exited before ready"
  sleep 0.1
done
grep -q 'zerohop ready' "$LOG" || fail "zerohop not ready within 30 s"
ok "zerohop ready (pid $ZH_PID, log $LOG)"

step "move the taps from $NS_ZH into zhdA2/zhdB2"
zh_ns_tap zhdA2 zhdA2t 10.199.2.1/24 "$NS_ZH" || fail "moving zhdA2t"
zh_ns_tap zhdB2 zhdB2t 10.199.2.2/24 "$NS_ZH" || fail "moving zhdB2t"
ok "zhdA2 10.199.2.1 (zhdA2t)   zhdB2 10.199.2.2 (zhdB2t)"

step "L2: ping across both cross-connects"
run_in zhdA1 ping -n -c 3 -i 0.2 -W 2 10.199.1.2 || fail "ping over net_af_packet"
run_in zhdA2 ping -n -c 3 -i 0.2 -W 2 10.199.2.2 || fail "ping over net_tap"

step "L2: HTTP GET across both cross-connects (python3 -m http.server <- curl)"
mkdir -p "$TMP/www"
echo "hello from $PREFIX through zerohop" >"$TMP/www/hello.txt"
http_check zhdA1 zhdB1 10.199.1.2
http_check zhdA2 zhdB2 10.199.2.2

step "L3: ping zerohop's own addresses; ARP gave zhdA3 zerohop's port MAC"
run_in zhdA3 ping -n -c 2 -i 0.2 -W 2 10.201.1.254 || fail "ping zerohop's address 10.201.1.254"
run_in zhdA3 ping -n -c 2 -i 0.2 -W 2 10.201.2.254 || fail "ping zerohop's address 10.201.2.254"
run_in zhdA3 ip neigh show 10.201.1.254
mac_a3=$(ip -n "$NS_ZH" -o link show zhdA3r | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
ip -n zhdA3 neigh show 10.201.1.254 | grep -q "lladdr $mac_a3 " ||
  fail "zhdA3 has no ARP entry for 10.201.1.254 with zerohop's MAC $mac_a3"
ok "10.201.1.254 is at $mac_a3 (zhdA3r, zerohop's port a3)"

step "L3: routed pings between the subnets, and by the static route to 10.201.100.0/24"
run_in zhdA3 ping -n -c 3 -i 0.2 -W 2 10.201.2.1 || fail "routed ping zhdA3 -> zhdB3"
run_in zhdB3 ping -n -c 3 -i 0.2 -W 2 10.201.1.1 || fail "routed ping zhdB3 -> zhdA3"
run_in zhdA3 ping -n -c 3 -i 0.2 -W 2 10.201.100.1 || fail "ping by the static route"
ok "replies carry ttl=63: the far host's 64 minus one router hop"

step "L3: routed HTTP GET; the ACL on port a3 denies TCP port $DENIED_PORT"
http_check zhdA3 zhdB3 10.201.2.1 "$HTTP_PORT"
http_serve zhdB3 10.201.2.1 "$DENIED_PORT"
ok "a server answers on 10.201.2.1:$DENIED_PORT inside zhdB3; from zhdA3 (curl exit 28 = timeout):"
must_fail_in zhdA3 28 curl -sS --noproxy '*' --max-time 2 -o /dev/null \
  "http://10.201.2.1:$DENIED_PORT/hello.txt"
kill "${HTTP_PIDS[-1]}" 2>/dev/null || true
ok "TCP to port $DENIED_PORT dropped by zerohop's ACL"

step "L3: TTL 1 gets ICMP time exceeded from zerohop (ping -t 1), TTL 2 gets through"
printf '    [zhdA3] $ ping -n -c 1 -t 1 -W 2 10.201.2.1\n'
out=$(ip netns exec zhdA3 ping -n -c 1 -t 1 -W 2 10.201.2.1 2>&1) || true
sed 's/^/      /' <<<"$out"
grep -q 'From 10.201.1.254 .*Time to live exceeded' <<<"$out" ||
  fail "no 'Time to live exceeded' from 10.201.1.254"
run_in zhdA3 ping -n -c 1 -t 2 -W 2 10.201.2.1 || fail "ping -t 2 should reach 10.201.2.1"
ok "hop 1 is zerohop (10.201.1.254), hop 2 is 10.201.2.1"

step "L4 proxy: curl 10.201.1.254:10000 four times; round robin over two upstreams in zhdB3"
for p in 9001 9002; do
  mkdir -p "$TMP/www$p"
  echo "upstream 10.201.2.1:$p" >"$TMP/www$p/name.txt"
  http_serve zhdB3 10.201.2.1 "$p" "$TMP/www$p"
done
names=()
for i in 1 2 3 4; do
  printf '    [zhdA3] $ curl --max-time 5 http://10.201.1.254:10000/name.txt\n'
  body=$(ip netns exec zhdA3 curl -sS --fail --noproxy '*' --max-time 5 \
    http://10.201.1.254:10000/name.txt) || fail "HTTP GET through the tcp_proxy listener"
  printf '      %s\n' "$body"
  names+=("$body")
done
[[ ${names[0]} != "${names[1]}" && ${names[0]} == "${names[2]}" && ${names[1]} == "${names[3]}" ]] ||
  fail "round robin should alternate the two upstreams: ${names[*]}"
ok "zerohop accepted each connection itself and opened a new one to the next upstream"
for pid in "${HTTP_PIDS[@]: -2}"; do kill "$pid" 2>/dev/null || true; done

step "L4 proxy: iperf3 for 3 s through 10.201.1.254:10001 to iperf3 -s in zhdB3"
ip netns exec zhdB3 iperf3 -s -1 -B 10.201.2.1 -p 5201 >/dev/null 2>&1 &
HTTP_PIDS+=($!)
for _ in {1..50}; do
  ip netns exec zhdB3 ss -ltn | grep -q ':5201 ' && break
  sleep 0.1
done
run_in zhdA3 timeout 20 iperf3 -c 10.201.1.254 -p 10001 -t 3 -f m |
  grep -E 'sender|receiver' || fail "iperf3 through the tcp_proxy listener"
ok "the stream crossed zerohop's userspace TCP twice (client side, upstream side)"

step "HTTP proxy: route by path and header, split by weight, answer /healthz directly"
UPSTREAM_PY=$PWD/tests/fixtures/http/upstream.py
for spec in api:9101 canary:9102 static:9103; do
  ip netns exec zhdB3 python3 "$UPSTREAM_PY" --addr 10.201.2.1 --port "${spec#*:}" \
    --name "${spec%:*}" >"$TMP/upstream-${spec%:*}.log" 2>&1 &
  HTTP_PIDS+=($!)
done
for spec in api canary static; do
  for _ in {1..100}; do grep -q ready "$TMP/upstream-$spec.log" && break; sleep 0.1; done
  grep -q ready "$TMP/upstream-$spec.log" || fail "upstream $spec did not start"
done
http_route() { # WANT [CURL ARGS...] URL: print the request and who answered
  local want=$1 body got
  shift
  printf '    [zhdA3] $ curl %s\n' "$*"
  body=$(ip netns exec zhdA3 curl -sS --fail --noproxy '*' --max-time 5 "$@") ||
    fail "HTTP through the http_connection_manager listener: curl $*"
  got=$(sed -n 's/^name=//p' <<<"$body" | head -1)
  got=${got:-$body} # a direct response has no upstream name
  printf '      -> %s\n' "$got"
  [[ $got == "$want" ]] || fail "want $want, got $got"
}
http_route api http://10.201.1.254:8080/api/users
http_route canary -H 'x-canary: 1' http://10.201.1.254:8080/api/users
http_route static http://10.201.1.254:8080/index.html
http_route "ok from zerohop" http://10.201.1.254:8080/healthz
printf '    [zhdA3] $ curl http://10.201.1.254:8080/split/[1-100]   (one keep-alive connection)\n'
split=$(ip netns exec zhdA3 curl -sS --fail --noproxy '*' --max-time 30 \
  'http://10.201.1.254:8080/split/[1-100]' | sed -n 's/^name=//p' | sort | uniq -c) ||
  fail "HTTP split through the http_connection_manager listener"
sed 's/^/      /' <<<"$split"
api=$(awk '$2 == "api" { print $1 }' <<<"$split")
((${api:-0} >= 60 && ${api:-0} <= 95)) || fail "the 80/20 split sent ${api:-0} of 100 to api"
ok "zerohop parsed each request, picked a route and a cluster, and reused its upstream connections"

step "the admin API (http://127.0.0.1:9901 in $NS_ZH): Prometheus stats, clusters, runtime"
admin() { ip netns exec "$NS_ZH" curl -sS --fail --noproxy '*' --max-time 5 "http://127.0.0.1:9901$1"; }
# The api upstream started after zerohop, so its first checks failed; one
# passing check (every second) makes it healthy.
for _ in {1..50}; do
  clusters=$(admin /clusters) || fail "GET /clusters"
  grep -q '^api::10.201.2.1:9101::health_flags::healthy$' <<<"$clusters" && break
  sleep 0.1
done
printf '    [%s] $ curl http://127.0.0.1:9901/stats/prometheus | grep ...\n' "$NS_ZH"
prom=$(admin /stats/prometheus) || fail "GET /stats/prometheus"
grep -E '^envoy_http_downstream_rq_total|^envoy_cluster_upstream_rq_total|^envoy_cluster_upstream_rq_time_(count|bucket\{envoy_cluster_name="api",le="(1|5)"\})|^envoy_cluster_membership_healthy|^zerohop_dataplane_port_rx_packets' \
  <<<"$prom" | sed 's/^/      /'
grep -Eq '^envoy_http_downstream_rq_total\{envoy_http_conn_manager_prefix="http"\} 104$' <<<"$prom" ||
  fail "Prometheus: the HTTP listener should count 104 requests"
printf '    [%s] $ curl http://127.0.0.1:9901/clusters | grep api\n' "$NS_ZH"
grep '^api::' <<<"$clusters" | sed 's/^/      /'
grep -q '^api::10.201.2.1:9101::health_flags::healthy$' <<<"$clusters" ||
  fail "the health-checked api endpoint should be healthy"
printf '    [%s] $ curl http://127.0.0.1:9901/runtime/nodes\n' "$NS_ZH"
admin /runtime/nodes | sed 's/^/      /' || fail "GET /runtime/nodes"
ok "the traffic above, live: Envoy's metric names, endpoint health, per-node cycles"

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

step "zerohop counters: ports, graph runtime, errors (drops and events by reason), ACL hits"
log_lines 'port [a-z0-9]+:.*rx_packets=|mbufs_in_use=' | sed 's/^/    /' ||
  fail "no counters in the log"
echo
log_lines 'worker [0-9]+ (runtime|error|acl):' | sed 's/^/    /' ||
  fail "no runtime/error/acl counters in the log"
grep -q 'mbufs_in_use=0\b' "$LOG" || fail "mbufs leaked (mbufs_in_use != 0)"
ok "all mbufs returned to the pool"
grep -Eq 'acl: port=a3 rule=0 hits=[1-9]' "$LOG" || fail "the deny rule (a3 rule 0) counted no hits"
grep -Eq 'error: node=acl reason=deny count=[1-9]' "$LOG" || fail "no acl deny drops counted"
ok "the deny rule counted the dropped SYNs to port $DENIED_PORT"
grep -Eq 'error: node=ip4-local reason=icmp-echo-replied count=[1-9]' "$LOG" ||
  fail "no echo replies counted"
grep -Eq 'error: node=ip4-rewrite reason=ttl-expired count=[1-9]' "$LOG" ||
  fail "no TTL expiry counted"
ok "echo replies and TTL expiry counted"
echo
log_lines 'worker [0-9]+ tcp:|stat (tcp|cluster)\.|stat http\.http\.(downstream_rq_(total|2xx)|rq_direct_response)' |
  sed 's/^/    /' || fail "no TCP stats in the log"
grep -Eq 'stat cluster.web.endpoint.10.201.2.1:9001.cx_total: 2$' "$LOG" &&
  grep -Eq 'stat cluster.web.endpoint.10.201.2.1:9002.cx_total: 2$' "$LOG" ||
  fail "each web upstream should count 2 connections"
grep -Eq 'stat tcp.web.downstream_cx_active: 0$' "$LOG" || fail "downstream connections left open"
ok "the proxy's Envoy-named stats: 2 connections per upstream, none left open"
grep -Eq 'stat http.http.downstream_rq_total: 104$' "$LOG" || fail "the HTTP listener should count 104 requests"
ok "the HTTP listener counted 104 requests, one answered directly"
if grep -Eq 'error: node=ip4-lookup reason=no-route' "$LOG"; then
  ok "ip4-lookup no-route: python's http.server in zhdB3 asks DNS for its own name; the" \
    "resolver is off-link, zerohop has no route to it and answers ICMP net unreachable"
fi
printf '\ndemo passed\n'
