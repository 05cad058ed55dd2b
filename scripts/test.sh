#!/usr/bin/env bash
# The project's test command: set up the machine, then format check, clippy and every
# test (unit and end-to-end). Stops at the first failure. End-to-end tests create
# network namespaces and DPDK virtual devices, so this needs root (setup.sh uses sudo).
#   CARGO_BUILD_JOBS=1 scripts/test.sh   # on a small shared machine
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "setup"
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "all passed"
