#!/usr/bin/env bash
# Prepare this machine to build, test and run zerohop: Debian packages (DPDK 22.11,
# clang for bindgen, the tools the end-to-end tests drive, iperf3 and HAProxy for
# scripts/bench_l4.sh), a Rust toolchain with
# rustfmt and clippy, and 2 MB hugepages mounted at /dev/hugepages.
#
# Idempotent: prints nothing when everything is already in place. Root work goes
# through sudo when not run as root. Environment:
#   ZEROHOP_HUGEPAGES  2 MB pages to reserve (default 1024 = 2 GiB); only raised, never lowered
#   ZEROHOP_SKIP_APT=1 do not install packages (report what is missing and go on)
set -euo pipefail

PACKAGES=(libdpdk-dev dpdk pkg-config clang libclang-dev iproute2 ethtool curl
  iputils-ping python3 procps build-essential iperf3 haproxy socat wrk nghttp2-client)
HUGEPAGES_WANTED=${ZEROHOP_HUGEPAGES:-1024}
HUGEPAGES_SYSFS=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
HUGETLBFS_DIR=/dev/hugepages

say() { printf 'setup: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root for '$*' (run as root or install sudo)"
  fi
}

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ ${ZEROHOP_SKIP_APT:-0} == 1 ]]; then
    say "missing packages (ZEROHOP_SKIP_APT=1, not installing): ${missing[*]}"
    return 0
  fi
  say "installing: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
    say "cargo found in ~/.cargo/bin but not on PATH: add it (source ~/.cargo/env)"
  fi
  command -v cargo >/dev/null || die "cargo not found. Install Rust with rustup:
    curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    . \"\$HOME/.cargo/env\""
  local comp missing=()
  for comp in fmt clippy; do
    cargo "$comp" --version >/dev/null 2>&1 || missing+=("$comp")
  done
  ((${#missing[@]} == 0)) && return 0
  if command -v rustup >/dev/null; then
    say "adding rust components: rustfmt clippy"
    rustup component add rustfmt clippy >/dev/null
  else
    say "warning: cargo ${missing[*]} missing and no rustup; install rustfmt/clippy for scripts/test.sh"
  fi
}

# Reserve 2 MB hugepages (only ever raise the count: other processes may use them) and
# make sure a hugetlbfs is mounted. Failure is not fatal: `hugepages: auto` in the
# zerohop config falls back to EAL --no-huge.
ensure_hugepages() {
  local have got
  if [[ ! -e $HUGEPAGES_SYSFS ]]; then
    say "no 2 MB hugepage support here ($HUGEPAGES_SYSFS); zerohop will fall back to --no-huge (hugepages: auto)"
    return 0
  fi
  have=$(<"$HUGEPAGES_SYSFS")
  if ((have < HUGEPAGES_WANTED)); then
    echo "$HUGEPAGES_WANTED" | as_root tee "$HUGEPAGES_SYSFS" >/dev/null 2>&1 || true
    got=$(<"$HUGEPAGES_SYSFS")
    if ((got == 0)); then
      say "could not reserve 2 MB hugepages; zerohop will fall back to --no-huge (hugepages: auto)"
      return 0
    elif ((got < HUGEPAGES_WANTED)); then
      say "reserved $got of $HUGEPAGES_WANTED 2 MB hugepages (memory fragmented?)"
    else
      say "reserved $got 2 MB hugepages"
    fi
  fi
  if ! awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
    as_root mkdir -p "$HUGETLBFS_DIR"
    if as_root mount -t hugetlbfs -o pagesize=2M nodev "$HUGETLBFS_DIR" 2>/dev/null; then
      say "mounted hugetlbfs at $HUGETLBFS_DIR"
    else
      say "could not mount hugetlbfs at $HUGETLBFS_DIR; zerohop will fall back to --no-huge (hugepages: auto)"
    fi
  fi
}

# The test topologies send from a core that a poll-mode worker keeps busy:
# the kernel's per-CPU receive backlog (1000 frames by default) then
# overflows before softirq gets the CPU, and TCP through zerohop sees losses
# that have nothing to do with zerohop. Measured: 998 drops in one 20 MB
# transfer at 1000, none at 10000.
ensure_backlog() {
  local want=10000 have
  have=$(cat /proc/sys/net/core/netdev_max_backlog 2>/dev/null || echo 0)
  if [ "$have" -lt "$want" ]; then
    if as_root sysctl -qw net.core.netdev_max_backlog=$want 2>/dev/null; then
      say "raised net.core.netdev_max_backlog from $have to $want"
    else
      say "could not raise net.core.netdev_max_backlog (is $have); TCP tests may see losses"
    fi
  fi
}

ensure_packages
ensure_rust
ensure_hugepages
ensure_backlog
