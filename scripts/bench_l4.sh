#!/usr/bin/env bash
# L4 proxy benchmark: zerohop's tcp_proxy against HAProxy (mode tcp) and nginx (stream):
# single-connection throughput (iperf3) and new connections per second
# (tests/fixtures/tcp/client.py cps). A thin wrapper over scripts/bench.sh (read its
# header for the topology, the configurations and how CPU is counted): its
# `l4_throughput` and `l4_cps` workloads, written to target/bench/l4.md, l4.json and
# l4-raw/.
#
#   sudo scripts/bench_l4.sh [--quick] [--core N] [--only zerohop|haproxy|nginx] [--procs N] [bench.sh options]
#     --quick   1 run of 3 s per metric instead of 3 runs of 10 s
#     --core N  the CPU for the proxy (default 1)
#     --only P  measure only zerohop, only haproxy or only nginx
#     --procs N client and server processes for the connection rate (default: client
#               CPUs, at least 2)
#   ZEROHOP_BIN=PATH  use this zerohop binary instead of building target/release/zerohop
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/bench.sh" --name l4 --workloads l4 "$@"
