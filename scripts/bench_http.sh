#!/usr/bin/env bash
# HTTP/1.1 proxy benchmark, requests/s and CPU per request: zerohop's
# http_connection_manager against HAProxy (mode http) and nginx (proxy_pass). A thin
# wrapper over scripts/bench.sh (read its header for the topology, the configurations
# and how CPU is counted): its `rps` workload, written to target/bench/http.md,
# http.json, http.png and http-raw/.
#
#   sudo scripts/bench_http.sh [--quick] [--core N] [--only zerohop|haproxy|nginx] [--resilience] [--access-log] [bench.sh options]
#     --quick   1 run of 3 s per proxy instead of 3 runs of 10 s
#     --core N  the CPU for the proxy (default 1)
#     --only P  measure only zerohop, only haproxy or only nginx
#     --resilience  zerohop's route retries (5xx,reset,connect-failure) and its cluster
#               has an HTTP health check (every 1 s) and outlier detection: what those
#               cost per request
#     --access-log  zerohop's listener writes Envoy's default access log line per request
#               (to a file under the temporary directory): what logging costs
#   ZEROHOP_BIN=PATH  use this zerohop binary instead of building target/release/zerohop
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/bench.sh" --name http --workloads rps "$@"
