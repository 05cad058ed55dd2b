# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are used by the scripts that source it
# The machinery of scripts/bench.sh (scripts/bench_http.sh and scripts/bench_l4.sh are
# thin wrappers over it): CPU lists, setup, the C ⇄ P ⇄ U topology (plus a direct
# C ⇄ U veth for the no-proxy baseline), the upstream servers, every proxy's config,
# starting and stopping proxies, CPU and memory readings, results, cleanup and the
# machine description. Parsers live in scripts/bench_parse.sh. Source both from the
# repository root (bench.sh cd's there first).
#
# Everything lives in the sourcing shell: PROXY_PID (the proxy running now), BG_PIDS
# (servers) and the namespaces named from PREFIX are what the cleanup stops and removes,
# on exit, failure or Ctrl-C.

# shellcheck source=scripts/netns.sh
. scripts/netns.sh

BENCH_NAME=${0##*/}

say() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$BENCH_NAME" "$*" >&2
  exit 1
}

# The usage: the script's header lines from `#   sudo scripts/` to `#   ZEROHOP_BIN`.
bench_usage() {
  sed -n '/^#   sudo scripts/,/^#   ZEROHOP_BIN/s/^#   //p' "$0" >&2
  exit "${1:-2}"
}

# --- CPUs ------------------------------------------------------------------------------

# bench_cpus_init: check PROXY_CPUS, CLIENT_CPUS and UPSTREAM_CPUS (taskset lists; an
# empty one gets the default) against this machine, and count them (N_PROXY, N_CLIENT,
# N_UPSTREAM). Defaults: the proxy on CPU 1 (0 on a one-CPU machine); the client and
# the upstream share the other CPUs, or split them when there are four or more.
bench_cpus_init() {
  local ncpu rest=() half v c name proxy
  ncpu=$(nproc)
  NCPU=$ncpu
  if [[ -z $PROXY_CPUS ]]; then
    if ((ncpu > 1)); then PROXY_CPUS=1; else PROXY_CPUS=0; fi
  fi
  proxy=$(bench_cpu_list "$PROXY_CPUS") || die "--proxy-cpus: '$PROXY_CPUS' is not a CPU list"
  for c in $(seq 0 $((ncpu - 1))); do
    [[ " $proxy " == *" $c "* ]] || rest+=("$c")
  done
  ((${#rest[@]})) || rest=("${proxy%% *}") # one CPU: everything shares it
  if ((${#rest[@]} >= 3)); then
    half=$(((${#rest[@]} + 1) / 2))
    [[ -n $CLIENT_CPUS ]] || CLIENT_CPUS=$(printf '%s\n' "${rest[@]:0:half}" | paste -sd, -)
    [[ -n $UPSTREAM_CPUS ]] || UPSTREAM_CPUS=$(printf '%s\n' "${rest[@]:half}" | paste -sd, -)
  else
    [[ -n $CLIENT_CPUS ]] || CLIENT_CPUS=$(printf '%s\n' "${rest[@]}" | paste -sd, -)
    [[ -n $UPSTREAM_CPUS ]] || UPSTREAM_CPUS=$CLIENT_CPUS
  fi
  for name in PROXY_CPUS CLIENT_CPUS UPSTREAM_CPUS; do
    v=$(bench_cpu_list "${!name}") || die "--$(tr 'A-Z_' 'a-z-' <<<"$name"): '${!name}' is not a CPU list"
    for c in $v; do
      ((c < ncpu)) || die "--$(tr 'A-Z_' 'a-z-' <<<"$name") lists CPU $c; this machine has CPUs 0-$((ncpu - 1))"
    done
    # taskset and YAML take the expanded form.
    printf -v "$name" '%s' "${v// /,}"
  done
  N_PROXY=$(tr ',' '\n' <<<"$PROXY_CPUS" | wc -l)
  N_CLIENT=$(tr ',' '\n' <<<"$CLIENT_CPUS" | wc -l)
  N_UPSTREAM=$(tr ',' '\n' <<<"$UPSTREAM_CPUS" | wc -l)
  for c in ${PROXY_CPUS//,/ }; do
    if [[ ",$CLIENT_CPUS,$UPSTREAM_CPUS," == *",$c,"* ]]; then
      note "warning: proxy CPU $c is also a client or upstream CPU: the proxy shares it"
    fi
  done
}

# --- setup -----------------------------------------------------------------------------

# bench_apt PACKAGE...: install the Debian packages that are missing.
bench_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# bench_setup TOOL...: scripts/setup.sh (packages, hugepages), then each TOOL must be
# on PATH.
bench_setup() {
  local tool
  say "setup"
  bash scripts/setup.sh
  export PATH="$HOME/.cargo/bin:$PATH"
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh or bench_setup installs it)"
  done
}

# oha, the fixed-rate HTTP load generator (wrk2 is not packaged): `cargo install oha
# --locked` the first time, which compiles it for several minutes.
bench_ensure_oha() {
  export PATH="$HOME/.cargo/bin:$PATH"
  command -v oha >/dev/null && return 0
  command -v cargo >/dev/null || die "oha not found and no cargo to install it with"
  say "cargo install oha --locked (the first time only; takes minutes)"
  cargo install oha --locked >&2 || die "cargo install oha failed"
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

# --- names, cleanup, topology ----------------------------------------------------------

# bench_names TAG: the names of everything the benchmark creates, the temporary
# directory, and the cleanup that removes it all again on exit, failure or Ctrl-C.
bench_names() {
  # Unique names: namespaces and interfaces are machine-wide (tests may run beside us).
  PREFIX=$1$(printf '%05d' $(($$ % 100000)))
  NS_C=${PREFIX}c NS_P=${PREFIX}p NS_U=${PREFIX}u
  IF_C=${PREFIX}c0 IF_PC=${PREFIX}c1 IF_U=${PREFIX}u0 IF_PU=${PREFIX}u1
  IF_DC=${PREFIX}d0 IF_DU=${PREFIX}d1
  PROXY_DOWN=10.0.0.1 PROXY_UP=10.0.1.1 UPSTREAM=10.0.1.2
  CLIENT=10.0.0.2 DIRECT_UPSTREAM=10.0.2.1 DIRECT_CLIENT=10.0.2.2
  TMP=$(mktemp -d /tmp/zerohop-bench.XXXXXX)
  RESULTS=$TMP/results # lines: PROXY WORKLOAD POINT RUN KEY VALUE
  : >"$RESULTS"
  PROXY_PID= # the proxy running now
  BG_PIDS=() # servers
  DPDK_PREFIXES=() # --file-prefix names to clean after
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
  local rc=$? pid ns p
  trap - EXIT INT TERM
  set +e
  exec 2>/dev/null # best effort from here; also hides bash's "Killed" job notices
  [[ -n ${PROXY_PID:-} ]] && stop_pid "$PROXY_PID"
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n ${PREFIX:-} ]]; then
    for ns in "$NS_C" "$NS_P" "$NS_U"; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    zh_cleanup "$PREFIX"
  fi
  for p in "${DPDK_PREFIXES[@]}"; do
    [[ -n $p ]] && rm -rf "/var/run/dpdk/$p" /dev/hugepages/"$p"map_* 2>/dev/null
  done
  [[ -n ${TMP:-} ]] && rm -rf "$TMP"
  exit "$rc"
}

# Run a command in a namespace. Background processes use `ip netns exec` directly
# instead, so that $! is the program's own pid (ip netns exec and taskset exec).
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# The namespaces: C ⇄ P ⇄ U for the proxies, and C ⇄ U directly (10.0.2.0/24) for
# the no-proxy baseline. No TIME-WAIT in C and U (the load generators' and servers'
# namespaces): a connection-rate run leaves tens of thousands of 4-tuples there, and
# the next proxy's SYNs on the same tuples would meet them (bench_l4.sh measured
# HAProxy after zerohop falling from 6,800 to 400-4,500 conn/s that way). P, where
# the kernel proxies run, keeps the kernel's defaults.
bench_topology() {
  say "topology $NS_C ⇄ $NS_P ⇄ $NS_U (+ $NS_C ⇄ $NS_U direct); CPUs: proxy $PROXY_CPUS, client $CLIENT_CPUS, upstream $UPSTREAM_CPUS"
  zh_ns_veth "$NS_C" "$IF_C" "$IF_PC" "$CLIENT/24" "$NS_P"
  zh_ns_veth "$NS_U" "$IF_U" "$IF_PU" "$UPSTREAM/24" "$NS_P"
  zh_if_quiet "$NS_P" "$IF_PC"
  zh_if_quiet "$NS_P" "$IF_PU"
  zh_ns_gw "$NS_C" "$PROXY_DOWN"
  zh_ns_gw "$NS_U" "$PROXY_UP"
  if ((FAR_NAPI)); then
    bench_far_napi "$NS_C" "$IF_C" "$CLIENT_CPUS"
    bench_far_napi "$NS_U" "$IF_U" "$UPSTREAM_CPUS"
  fi
  # The direct pair, both ends addressed, kernel to kernel.
  ip -n "$NS_C" link add "$IF_DC" type veth peer name "$IF_DU" netns "$NS_U"
  zh_if_quiet "$NS_C" "$IF_DC"
  zh_if_quiet "$NS_U" "$IF_DU"
  ip -n "$NS_C" addr add "$DIRECT_CLIENT/24" dev "$IF_DC"
  ip -n "$NS_U" addr add "$DIRECT_UPSTREAM/24" dev "$IF_DU"
  ip -n "$NS_C" link set "$IF_DC" up
  ip -n "$NS_U" link set "$IF_DU" up
  if ((FAR_NAPI)); then
    bench_far_napi "$NS_C" "$IF_DC" "$CLIENT_CPUS"
    bench_far_napi "$NS_U" "$IF_DU" "$UPSTREAM_CPUS"
  fi
  local ns
  if ((MTU != 1500)); then
    bench_mtu "$NS_C" "$IF_C" "$IF_DC"
    bench_mtu "$NS_U" "$IF_U" "$IF_DU"
    bench_mtu "$NS_P" "$IF_PC" "$IF_PU"
  fi
  for ns in "$NS_C" "$NS_U"; do
    in_ns "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
    in_ns "$ns" sysctl -qw net.ipv4.tcp_max_tw_buckets=0
    in_ns "$ns" sysctl -qw net.core.somaxconn=65535
    in_ns "$ns" sysctl -qw net.ipv4.tcp_max_syn_backlog=65535
  done
  in_ns "$NS_P" sysctl -qw net.core.somaxconn=65535
  in_ns "$NS_P" sysctl -qw net.ipv4.tcp_max_syn_backlog=65535
  in_ns "$NS_P" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
}

# bench_mtu NS IF... (--mtu): the interfaces' MTU. A veth drops frames larger than the
# receiving end's MTU, so both ends of every pair get it (zerohop sets its own ends again,
# from its config).
bench_mtu() {
  local ns=$1 ifname
  shift
  for ifname in "$@"; do
    ip -n "$ns" link set "$ifname" mtu "$MTU" || die "--mtu: cannot set MTU $MTU on $ifname"
  done
}

# bench_far_napi NS IF CPUS (--far-napi): veth IF in namespace NS receives through
# NAPI with GRO, in a kernel thread of its own pinned to CPUS. By default a veth runs
# the receiver's whole stack inside the sender's transmit, on the sender's CPU: every
# frame a proxy sends to the upstream also costs, on the proxy's CPU, the upstream
# kernel's TCP receive and the wake-up of its server, and every ACK it sends to the
# client the client's ACK processing and the transmissions that ACK releases. On a
# network those run on the other hosts. With this, the client's and the upstream's
# receive work runs on their CPUs, for every proxy alike.
bench_far_napi() {
  local ns=$1 ifname=$2 cpus=$3 pids
  in_ns "$ns" ethtool -K "$ifname" gro on >/dev/null
  in_ns "$ns" sh -c "echo 1 > /sys/class/net/$ifname/threaded" ||
    die "--far-napi: cannot turn on threaded NAPI on $ifname (kernel too old?)"
  pids=$(pgrep -f "^\[?napi/$ifname-") || die "--far-napi: no NAPI thread for $ifname"
  for pid in $pids; do taskset -pc "$cpus" "$pid" >/dev/null; done
  say "far NAPI: $ifname receives with GRO in thread(s) $(paste -sd, - <<<"$pids") on CPU(s) $cpus"
}

# The file-descriptor limit: as high as this process may go (200,000 wanted; a
# container without CAP_SYS_RESOURCE keeps its hard limit, 20,000 on the development
# VM). The proxies inherit it; NOFILE is what came of it.
bench_raise_nofile() {
  ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  NOFILE=$(ulimit -n)
}

# HAProxy's maxconn: the FD limit less a margin. HAProxy would size for two sockets
# per connection, but idle keep-alive clients share a few upstream connections
# (http-reuse always), and the idle workload needs one FD per client connection; with
# a lower limit than maxconn × 2 HAProxy only warns.
bench_haproxy_maxconn() {
  local maxconn=$((NOFILE - 200))
  ((maxconn > 100000)) && maxconn=100000
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
# PID (or a child of it) listens on TCP PORT in namespace NS; fails if PID exits or the
# time runs out.
bench_wait_listen() {
  local ns=$1 port=$2 pid=$3 tries=${4:-50} pids
  for _ in $(seq "$tries"); do
    pids=$(bench_pids "$pid" | sed 's/.*/pid=&,/' | paste -sd'|' -)
    in_ns "$ns" ss -Hltnp "sport = :$port" | grep -qE "$pids" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# bench_pids PID: PID and its children (nginx's workers), one per line.
bench_pids() {
  echo "$1"
  pgrep -P "$1" 2>/dev/null || true
}

# --- upstream --------------------------------------------------------------------------

UPSTREAM_PORT=9000 IPERF_PORT=5201 RESPOND_PORT=9100
HTTP_PORT=8080 L4_IPERF_PORT=8000 L4_CPS_PORT=8001 ADMIN_PORT=9901
BODY_1M=1048576

# nginx_head NAME: the common head of an nginx config, all of it under $TMP.
nginx_head() {
  cat <<EOF
daemon off;
user root;
pid $TMP/$1.pid;
error_log stderr;
worker_rlimit_nofile $NOFILE;
EOF
}

# The upstream servers in U, on the upstream CPUs: nginx :9000 (on the proxies' subnet
# and on the direct veth) answering `/` with "hello\n" and `/1m` with 1 MiB; iperf3 -s
# :5201; tests/fixtures/tcp/server.py respond :9100 (`ok\n` to each connection).
bench_start_upstreams() {
  local procs=$1
  mkdir -p "$TMP/www"
  head -c "$BODY_1M" /dev/zero | tr '\0' 'z' >"$TMP/www/1m"
  say "upstream in $NS_U: nginx :$UPSTREAM_PORT (/ and /1m, $N_UPSTREAM workers), iperf3 -s :$IPERF_PORT, server.py respond :$RESPOND_PORT ($procs processes); CPUs $UPSTREAM_CPUS"
  {
    nginx_head upstream
    cat <<EOF
worker_processes $N_UPSTREAM;
events { worker_connections $((NOFILE - 100)); }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen $UPSTREAM:$UPSTREAM_PORT reuseport backlog=65535;
    listen $DIRECT_UPSTREAM:$UPSTREAM_PORT reuseport backlog=65535;
    root $TMP/www;
    location = / { return 200 "hello\n"; }
    location = /1m { default_type application/octet-stream; }
  }
}
EOF
  } >"$TMP/upstream.conf"
  ip netns exec "$NS_U" taskset -c "$UPSTREAM_CPUS" nginx -c "$TMP/upstream.conf" -p "$TMP/" -e stderr >"$TMP/upstream.log" 2>&1 &
  BG_PIDS+=($!)
  bench_wait_listen "$NS_U" "$UPSTREAM_PORT" "${BG_PIDS[-1]}" ||
    die "upstream nginx did not start: $(tail -n 3 "$TMP/upstream.log" | tr '\n' ' ')"
  local body
  body=$(in_ns "$NS_U" curl -sS -m 3 "http://$UPSTREAM:$UPSTREAM_PORT/" 2>&1) || true
  [[ $body == hello ]] || die "upstream nginx answers '${body:0:200}' instead of hello"
  body=$(in_ns "$NS_U" curl -sS -m 3 -o /dev/null -w '%{size_download}' "http://$UPSTREAM:$UPSTREAM_PORT/1m" 2>&1) || true
  [[ $body == "$BODY_1M" ]] || die "upstream nginx /1m gave '${body:0:200}' bytes instead of $BODY_1M"

  ip netns exec "$NS_U" taskset -c "$UPSTREAM_CPUS" iperf3 -s -B "$UPSTREAM" -p "$IPERF_PORT" >"$TMP/iperf3-server.log" 2>&1 &
  BG_PIDS+=($!)
  ip netns exec "$NS_U" taskset -c "$UPSTREAM_CPUS" python3 tests/fixtures/tcp/server.py respond \
    --addr "$UPSTREAM" --port "$RESPOND_PORT" --procs "$procs" >"$TMP/respond.log" 2>&1 &
  BG_PIDS+=($!)
  for _ in $(seq 100); do grep -q ready "$TMP/respond.log" && break; sleep 0.1; done
  grep -q ready "$TMP/respond.log" || die "server.py respond did not start: $(cat "$TMP/respond.log")"
  bench_wait_listen "$NS_U" "$IPERF_PORT" "${BG_PIDS[-2]}" ||
    die "iperf3 -s did not start: $(tail -n 3 "$TMP/iperf3-server.log" | tr '\n' ' ')"
}

# --- the proxies' configurations -------------------------------------------------------

# Each proxy serves, at once: HTTP on 10.0.0.1:8080 → nginx 10.0.1.2:9000 (keep-alive
# to the upstream), TCP on :8000 → iperf3 :5201 and TCP on :8001 → server.py :9100.
# No access logs, one worker (process or thread) per proxy CPU.

# The `dataplane:` section of zerohop's config on the proxy namespace's two veth ends
# (net_af_packet), one worker per proxy CPU. With N workers each af_packet port gets
# N queue pairs (qpairs=N: N sockets in one PACKET_FANOUT group, the kernel hashes
# frames over them; replies that land on another worker's queue are handed over).
# With --mtu the ports get it too. For experiments: ZH_TCP_EXTRA adds keys to its
# `tcp:` section (e.g. other buffer sizes), ZH_DEV_EXTRA driver arguments to both
# devices (e.g. `,framecnt=4096`, af_packet's ring size).
zh_dataplane_yaml() {
  local q=''
  ((N_PROXY > 1)) && q=",qpairs=$N_PROXY"
  cat <<EOF
dataplane:
  cores: [$PROXY_CPUS]
  hugepages: auto
  eal_args: ["--no-pci"]
  ports:
    - name: down
      device: "net_af_packet0,iface=$IF_PC$q${ZH_DEV_EXTRA:-}"
      address: $PROXY_DOWN/24
      mtu: $MTU
    - name: up
      device: "net_af_packet1,iface=$IF_PU$q${ZH_DEV_EXTRA:-}"
      address: $PROXY_UP/24
      mtu: $MTU
  tcp:
    max_connections: 131072${ZH_TCP_EXTRA:-}
EOF
}

# zh_static_yaml: the admin API (for per-run CPU readings) and the listeners and
# clusters. ZH_HCM_EXTRA, ZH_ROUTE_EXTRA and ZH_CLUSTER_EXTRA (optional) add to the HTTP
# connection manager, its route and its cluster (bench_http.sh --access-log,
# --resilience).
zh_static_yaml() {
  local cluster name port
  cat <<EOF
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
          generate_request_id: false${ZH_HCM_EXTRA:-}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: up${ZH_ROUTE_EXTRA:-} }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
EOF
  for name in iperf:$L4_IPERF_PORT respond:$L4_CPS_PORT; do
    cat <<EOF
  - name: l4_${name%:*}
    address: { socket_address: { address: 0.0.0.0, port_value: ${name#*:} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: l4_${name%:*}
          cluster: ${name%:*}
          idle_timeout: 60s
EOF
  done
  echo "  clusters:"
  for cluster in up:$UPSTREAM_PORT iperf:$IPERF_PORT respond:$RESPOND_PORT; do
    name=${cluster%:*} port=${cluster#*:}
    cat <<EOF
  - name: $name
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    # Envoy's default limits (1024) would cap the connection-rate and idle runs.
    circuit_breakers: { thresholds: [{ max_connections: 1000000, max_pending_requests: 1000000, max_requests: 1000000 }] }
    load_assignment:
      cluster_name: $name
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: $UPSTREAM, port_value: $port } } }
EOF
    if [[ $name == up && -n ${ZH_CLUSTER_EXTRA:-} ]]; then printf '%s\n' "$ZH_CLUSTER_EXTRA"; fi
  done
}

# HAProxy: nbthread = proxy CPUs, keep-alive both ways (`http-reuse always`: idle
# upstream connections serve any client's request, as nginx's and zerohop's pools do;
# HAProxy's default `safe` opens a new one for each client connection's first request,
# which would make the connection-rate test open upstream connections too), no log.
bench_haproxy_cfg() {
  local maxconn
  maxconn=$(bench_haproxy_maxconn)
  cat <<EOF
global
  nbthread $N_PROXY
  maxconn $maxconn
  # Size for maxconn even where the FD limit is lower (HAProxy 2.6 would refuse to start).
  no strict-limits
defaults
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend http
  mode http
  option http-keep-alive
  bind $PROXY_DOWN:$HTTP_PORT
  maxconn $maxconn
  default_backend up
backend up
  mode http
  http-reuse always
  server s1 $UPSTREAM:$UPSTREAM_PORT
frontend l4_iperf
  mode tcp
  bind $PROXY_DOWN:$L4_IPERF_PORT
  maxconn $maxconn
  default_backend iperf
backend iperf
  mode tcp
  server s1 $UPSTREAM:$IPERF_PORT
frontend l4_respond
  mode tcp
  bind $PROXY_DOWN:$L4_CPS_PORT
  maxconn $maxconn
  default_backend respond
backend respond
  mode tcp
  server s1 $UPSTREAM:$RESPOND_PORT
EOF
}

# nginx: worker_processes = proxy CPUs, proxy_pass over HTTP/1.1 with an upstream
# keepalive pool, and `stream` for TCP (Debian: libnginx-mod-stream), no access log.
NGINX_STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
bench_nginx_proxy_conf() {
  echo "load_module $NGINX_STREAM_MODULE;"
  nginx_head proxy
  cat <<EOF
worker_processes $N_PROXY;
events { worker_connections $((NOFILE - 100)); }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream up {
    server $UPSTREAM:$UPSTREAM_PORT;
    keepalive 256;
    keepalive_requests 10000000;
  }
  server {
    listen $PROXY_DOWN:$HTTP_PORT backlog=65535;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
stream {
  server { listen $PROXY_DOWN:$L4_IPERF_PORT backlog=65535; proxy_pass $UPSTREAM:$IPERF_PORT; }
  server { listen $PROXY_DOWN:$L4_CPS_PORT backlog=65535; proxy_pass $UPSTREAM:$RESPOND_PORT; }
}
EOF
}

# --- starting and stopping -------------------------------------------------------------

# bench_start_zerohop CONFIG: run zerohop with CONFIG in P, its log to $ZH_LOG (set by
# the caller), and wait for `zerohop ready`. Else FAIL_WHY says why, and it returns 1.
bench_start_zerohop() {
  local cfg=$1
  ip -n "$NS_P" addr flush dev "$IF_PC"
  ip -n "$NS_P" addr flush dev "$IF_PU"
  flush_neigh
  ip netns exec "$NS_P" "$BIN" -c "$cfg" --mode serve -l info --drain-time-s 1 >"$ZH_LOG" 2>&1 &
  PROXY_PID=$!
  for _ in $(seq 300); do
    grep -qs "zerohop ready" "$ZH_LOG" && return 0
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
# COMMAND in P on the proxy CPUs, its output to LOG, and wait until it listens on PORT.
# Else FAIL_WHY says why, and it returns 1.
bench_start_pinned() {
  local name=$1 port=$2 log=$3
  shift 3
  p_addrs add
  flush_neigh
  ip netns exec "$NS_P" taskset -c "$PROXY_CPUS" "$@" >"$log" 2>&1 &
  PROXY_PID=$!
  bench_wait_listen "$NS_P" "$port" "$PROXY_PID" && return 0
  FAIL_WHY="$name did not start: $(tail -n 3 "$log" | tr '\n' ' ')"
  stop_pid "$PROXY_PID"
  PROXY_PID=
  p_addrs del 2>/dev/null || true
  return 1
}

# stop_proxy PROXY: stop the proxy running now. The kernel proxies: remove P's addresses
# again.
stop_proxy() {
  [[ -n $PROXY_PID ]] || return 0
  stop_pid "$PROXY_PID"
  PROXY_PID=
  [[ $1 == zerohop ]] || p_addrs del
}
ZH_LOG=

# --- readings and results --------------------------------------------------------------

# bench_sum_pids PID FILE PARSER KEY: KEY as PARSER reads it from /proc/P/FILE, summed
# over PID and its children.
bench_sum_pids() {
  local pid total=0 v
  for pid in $(bench_pids "$1"); do
    v=$("$3" <"/proc/$pid/$2" | awk -v k="$4" '$1 == k { print $2 }') || return 1
    total=$((total + v))
  done
  echo "$total"
}

# bench_rss_kb PID: VmRSS of PID and its children, summed (KiB).
bench_rss_kb() { bench_sum_pids "$1" status bench_parse_rss rss_kb; }

# bench_kmem NS: machine-wide slab and TCP buffer memory, read in namespace NS.
bench_kmem() {
  in_ns "$1" cat /proc/meminfo /proc/net/sockstat | bench_parse_kmem
}

# record PROXY WORKLOAD POINT RUN KEY VALUE: one raw number (or, for KEY `error`, a
# reason) into the results file the report reads. POINT `-` when the workload has none;
# RUN 0 for what belongs to the whole workload.
record() {
  if [[ -z ${6-} ]]; then
    note "internal: no value for $1 $2 $3 run $4 $5 (not recorded)"
    return 0
  fi
  echo "$1 $2 $3 $4 $5 $6" >>"$RESULTS"
}
# record_parsed PROXY WORKLOAD POINT RUN < KEY VALUE lines
record_parsed() {
  local key value
  while read -r key value; do record "$1" "$2" "$3" "$4" "$key" "$value"; done
}
log_hint() { if [[ $1 == zerohop ]]; then echo " (zerohop log: $ZH_LOG)"; fi; }
fail() { # PROXY WORKLOAD POINT WHY
  note "FAILED: $1 $2 ${3#-}: $4"
  record "$1" "$2" "$3" 0 error "$(tr -s '\n\t' '  ' <<<"$4" | cut -c1-400)"
}

# bench_machine FILE NAME=COMMAND...: write this machine as a JSON object to FILE:
# cpu_model, nproc, kernel, memory, then NAME: the first line COMMAND prints (a
# version), then python.
bench_machine() {
  python3 - "$@" <<'PY'
import json, os, platform, subprocess, sys

def first_line(cmd):
    try:
        out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10)
        return ((out.stdout or out.stderr).splitlines() or ["(no output)"])[0].strip()
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"

cpu_model = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
machine = {"cpu_model": cpu_model, "nproc": os.cpu_count(), "kernel": platform.release(),
           "memory_gib": round(mem_kb / 2**20, 1)}
for arg in sys.argv[2:]:
    name, cmd = arg.split("=", 1)
    machine[name] = first_line(cmd)
machine["python"] = platform.python_version()
with open(sys.argv[1], "w") as f:
    json.dump(machine, f, indent=2)
PY
}
