#!/usr/bin/env bash
# Build zerohop as one self-contained binary: DPDK (its libraries and the drivers listed
# in build.rs's STATIC_DRIVERS) linked from Debian's static archives, so the binary needs
# only the C library at run time and can be copied to a machine without DPDK installed
# (for example a bigger machine for multi-core benchmarks: scripts/bench.sh takes
# ZEROHOP_BIN=PATH).
#
#   scripts/build-static.sh [OUT]     # default OUT: target/static/zerohop
#
# Runs scripts/setup.sh first (DPDK's -dev package has the archives). Fails if the result
# still needs a DPDK shared library.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-target/static/zerohop}

bash scripts/setup.sh >&2
export PATH="$HOME/.cargo/bin:$PATH"
CARGO_TARGET_DIR=target/static-build cargo build --release --features static-dpdk --bin zerohop
bin=target/static-build/release/zerohop
if ldd "$bin" | grep -E 'librte_|libnuma|libbpf|libxdp'; then
  echo "build-static.sh: error: $bin still links the libraries above dynamically" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$bin" "$out"
echo "static zerohop: $out ($(du -h "$out" | cut -f1)); needs only:" >&2
ldd "$out" | awk '{print "  " $1}' >&2
