# shellcheck shell=bash
# Network-namespace helpers for zerohop demos and manual tests. Source it:
#
#   . scripts/netns.sh
#   zh_ns_veth zhdA zhdA0 zhdA1 10.199.1.1/24   # nsA:zhdA0 <veth> root:zhdA1 (for net_af_packet)
#   zh_ns_veth zhdA zhdA0 zhdA1 10.199.1.1/24 zhdP  # the same with zhdA1 in namespace zhdP
#   zh_ns_tap  zhdA zhtA0 10.199.2.1/24         # move a net_tap interface into nsA
#   zh_ns_tap  zhdA zhtA0 10.199.2.1/24 zhdP    # the same, from namespace zhdP
#   zh_ns_gw   zhdA 10.199.1.254                # default route of nsA via a router (zerohop)
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

# zh_ns_veth NS NS_IF PROXY_IF ADDR/PLEN [PROXY_NS]
# Create namespace NS and a veth pair: NS_IF inside NS (addressed, up, tx offload off),
# PROXY_IF (up, no address) for DPDK net_af_packet/net_af_xdp to drive, in namespace
# PROXY_NS (created if missing) or, without it, in the root namespace.
# Run zerohop inside PROXY_NS when its af_packet ports are there: DPDK 22.11's af_packet
# PMD picks its PACKET_FANOUT group as (pid ^ ifindex) & 0xffff per namespace, so two
# af_packet processes in one namespace can collide and fail to probe.
zh_ns_veth() {
  local ns=$1 nsif=$2 proxyif=$3 addr=$4 proxyns=${5:-} pexec=() pip=()
  zh_ns_add "$ns"
  if [[ -n $proxyns ]]; then
    zh_ns_add "$proxyns"
    pexec=(ip netns exec "$proxyns")
    pip=(-n "$proxyns")
  fi
  ip "${pip[@]}" link add "$proxyif" type veth peer name "$nsif" netns "$ns"
  "${pexec[@]}" sysctl -qw "net.ipv6.conf.$proxyif.disable_ipv6=1" >/dev/null 2>&1 || true
  ip "${pip[@]}" link set "$proxyif" up
  zh_if_quiet "$ns" "$nsif"
  ip -n "$ns" addr add "$addr" dev "$nsif"
  ip -n "$ns" link set "$nsif" up
}

# zh_ns_tap NS TAP ADDR/PLEN [FROM_NS]
# Move interface TAP (e.g. created by DPDK net_tap in the namespace zerohop runs in:
# FROM_NS, or the root namespace without it) into NS, address it and bring it up.
zh_ns_tap() {
  local ns=$1 tap=$2 addr=$3 fromns=${4:-} fip=()
  [[ -n $fromns ]] && fip=(-n "$fromns")
  zh_ns_add "$ns"
  zh_wait_link "$tap" 10 "$fromns" || return 1
  ip "${fip[@]}" link set "$tap" netns "$ns"
  zh_if_quiet "$ns" "$tap"
  ip -n "$ns" addr add "$addr" dev "$tap"
  ip -n "$ns" link set "$tap" up
}

# zh_ns_gw NS GATEWAY: route everything off-link from NS through GATEWAY (a router such
# as zerohop, on one of NS's subnets).
zh_ns_gw() {
  local ns=$1 gw=$2
  ip -n "$ns" route replace default via "$gw"
}

# zh_wait_link IF [TIMEOUT_S] [NS]: wait until interface IF exists in namespace NS
# (default: the root namespace).
zh_wait_link() {
  local ifname=$1 tries=$((${2:-10} * 10)) ns=${3:-} nip=()
  [[ -n $ns ]] && nip=(-n "$ns")
  while ((tries-- > 0)); do
    ip "${nip[@]}" link show dev "$ifname" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "interface $ifname did not appear${ns:+ in namespace $ns}" >&2
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
