# shellcheck shell=bash
# Network-namespace helpers for zerohop demos and manual tests. Source it:
#
#   . scripts/netns.sh
#   zh_ns_veth zhdA zhdA0 zhdA1 10.199.1.1/24   # nsA:zhdA0 <veth> root:zhdA1 (for net_af_packet)
#   zh_ns_tap  zhdA zhtA0 10.199.2.1/24         # move a net_tap interface into nsA
#   zh_cleanup zhd                              # delete every namespace/link named zhd*
#
# Kernel-side interfaces get `ethtool -K IF tx off`: with tx checksum offload the veth/tap
# hands DPDK frames with partial TCP/UDP checksums, which the far namespace then drops.
# IPv6 is disabled on every interface created here so that router solicitations and
# MLD reports do not show up in the port counters. Needs root.

# Create namespace NS (if missing) with loopback up.
zh_ns_add() {
  local ns=$1
  ip netns list | awk '{print $1}' | grep -qxF -- "$ns" || ip netns add "$ns"
  ip -n "$ns" link set lo up
}

# Quiet the kernel side of interface IF in namespace NS ("" = root namespace):
# no IPv6, no tx checksum offload.
zh_if_quiet() {
  local ns=$1 ifname=$2 exec=()
  [[ -n $ns ]] && exec=(ip netns exec "$ns")
  "${exec[@]}" sysctl -qw "net.ipv6.conf.$ifname.disable_ipv6=1" >/dev/null 2>&1 || true
  "${exec[@]}" ethtool -K "$ifname" tx off >/dev/null 2>&1 || true
}

# zh_ns_veth NS NS_IF ROOT_IF ADDR/PLEN
# Create namespace NS and a veth pair: NS_IF inside NS (addressed, up, tx offload off),
# ROOT_IF in the root namespace (up, no address) for DPDK net_af_packet/net_af_xdp to drive.
zh_ns_veth() {
  local ns=$1 nsif=$2 rootif=$3 addr=$4
  zh_ns_add "$ns"
  ip link add "$rootif" type veth peer name "$nsif" netns "$ns"
  sysctl -qw "net.ipv6.conf.$rootif.disable_ipv6=1" >/dev/null 2>&1 || true
  ip link set "$rootif" up
  zh_if_quiet "$ns" "$nsif"
  ip -n "$ns" addr add "$addr" dev "$nsif"
  ip -n "$ns" link set "$nsif" up
}

# zh_ns_tap NS TAP ADDR/PLEN
# Move interface TAP (e.g. created by DPDK net_tap in the root namespace) into NS,
# address it and bring it up.
zh_ns_tap() {
  local ns=$1 tap=$2 addr=$3
  zh_ns_add "$ns"
  ip link set "$tap" netns "$ns"
  zh_if_quiet "$ns" "$tap"
  ip -n "$ns" addr add "$addr" dev "$tap"
  ip -n "$ns" link set "$tap" up
}

# zh_wait_link IF [TIMEOUT_S]: wait until interface IF exists in the root namespace.
zh_wait_link() {
  local ifname=$1 tries=$((${2:-10} * 10))
  while ((tries-- > 0)); do
    ip link show dev "$ifname" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "interface $ifname did not appear" >&2
  return 1
}

# zh_cleanup PREFIX: delete every namespace and every root-namespace link whose name
# starts with PREFIX (3+ characters, so that it can never match eth0 or lo by accident).
# Deleting a namespace deletes the veth ends inside it, and with them their peers.
zh_cleanup() {
  local prefix=$1 ns link
  if ((${#prefix} < 3)); then
    echo "zh_cleanup: prefix '$prefix' too short" >&2
    return 1
  fi
  for ns in $(ip netns list | awk '{print $1}'); do
    [[ $ns == "$prefix"* ]] && ip netns del "$ns" 2>/dev/null
  done
  for link in $(ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}'); do
    [[ $link == "$prefix"* ]] && ip link del "$link" 2>/dev/null
  done
  return 0
}
