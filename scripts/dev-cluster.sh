#!/usr/bin/env bash
# A multi-node skiff cluster on this machine, by hand: the same topology as the test harness
# (tests/harness/): a bridge in the host namespace, one network namespace per node with its
# own address, `skiff server` and N `skiff agent`s running with `--netns`, each with its own
# data directory and cgroup parent. Needs root.
#
#   scripts/dev-cluster.sh up [--agents N] [--server-agent] [--dir DIR] [--port PORT]
#                             [--backend host-gw|vxlan] [-- EXTRA SERVER FLAGS...]
#   scripts/dev-cluster.sh status [--dir DIR]
#   scripts/dev-cluster.sh down [--dir DIR] [--purge]
#
# `up` prints the KUBECONFIG to use; kubectl on the host reaches the server at its node address.
# Every node gets the busybox test image (images/busybox/build.sh) in DIR/<node>/agent/images.
# `down` stops every node, runs `skiff agent --cleanup` in each namespace (pods, mounts,
# cgroups, pod network), and removes the namespaces and the bridge; `--purge` also deletes DIR.
# SKIFF_BIN picks the binary (default: target/debug/skiff, built if missing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
shift || true
dir=/tmp/skiff-dev-cluster
agents=2
server_agent=0
port=16443
backend=host-gw
purge=0
extra=()
while (($#)); do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --server-agent) server_agent=1; shift ;;
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --purge) purge=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

bin=${SKIFF_BIN:-$root/target/debug/skiff}
bridge=skdev0
prefix=10.251.77

need_root() {
  if [[ $(id -u) != 0 ]]; then
    echo "dev-cluster.sh needs root (network namespaces, cgroups, mounts)" >&2
    exit 1
  fi
}

node_ns() { echo "skiff-dev-$1"; }

up() {
  need_root
  if [[ -e $dir/cluster.env ]]; then
    echo "a cluster is already up in $dir (run: $0 down --dir $dir)" >&2
    exit 1
  fi
  [[ -x $bin ]] || (cd "$root" && cargo build -p skiff)
  mkdir -p "$dir"
  local image=$dir/busybox.tar
  [[ -e $image ]] || "$root/images/busybox/build.sh" "$image" >/dev/null

  ip link add "$bridge" type bridge
  ip addr add "$prefix.1/24" dev "$bridge"
  ip link set "$bridge" up
  local nodes=(server)
  for i in $(seq 1 "$agents"); do nodes+=("agent-$i"); done
  local n=0
  for node in "${nodes[@]}"; do
    local ns ip
    ns=$(node_ns "$node")
    if [[ $node == server ]]; then ip=$prefix.2; else ip=$prefix.$((10 + n)); fi
    ip netns add "$ns"
    ip link add "skdv$n" type veth peer name "skdp$n"
    ip link set "skdv$n" master "$bridge" up
    ip link set "skdp$n" netns "$ns"
    ip netns exec "$ns" ip link set "skdp$n" name eth0
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$ip/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip route add default via "$prefix.1"
    mkdir -p "$dir/$node/agent/images"
    cp "$image" "$dir/$node/agent/images/"
    echo "$node $ns $ip skdv$n /skiff-dev-$node" >>"$dir/nodes"
    n=$((n + 1))
  done

  local server_ip=$prefix.2
  local server_flags=(server --netns "/var/run/netns/$(node_ns server)" --data-dir "$dir/server"
    --https-listen-port "$port" --bind-address 0.0.0.0 --advertise-address "$server_ip"
    --node-name server --node-ip "$server_ip" --cgroup-parent /skiff-dev-server
    --flannel-backend "$backend")
  ((server_agent)) || server_flags+=(--disable-agent)
  "$bin" "${server_flags[@]}" "${extra[@]}" >"$dir/server.log" 2>&1 &
  echo "server $!" >"$dir/pids"
  for _ in $(seq 1 300); do
    [[ -e $dir/server/server/node-token && -e $dir/server/server/admin.kubeconfig ]] && break
    sleep 0.1
  done
  if [[ ! -e $dir/server/server/node-token ]]; then
    echo "the server did not start; see $dir/server.log" >&2
    exit 1
  fi
  sed "s#https://127.0.0.1:$port#https://$server_ip:$port#" \
    "$dir/server/server/admin.kubeconfig" >"$dir/kubeconfig"
  local token
  token=$(cat "$dir/server/server/node-token")
  while read -r node ns ip _ cgroup; do
    [[ $node == server ]] && continue
    "$bin" agent --netns "/var/run/netns/$ns" --server "https://$server_ip:$port" --token "$token" \
      --data-dir "$dir/$node" --node-name "$node" --node-ip "$ip" --cgroup-parent "$cgroup" \
      >"$dir/$node.log" 2>&1 &
    echo "$node $!" >>"$dir/pids"
  done <"$dir/nodes"
  cat >"$dir/cluster.env" <<EOF
KUBECONFIG=$dir/kubeconfig
SERVER=https://$server_ip:$port
EOF
  local want=$agents
  ((server_agent)) && want=$((want + 1))
  for _ in $(seq 1 300); do
    local ready
    ready=$(KUBECONFIG=$dir/kubeconfig kubectl get nodes --no-headers 2>/dev/null | grep -c " Ready" || true)
    ((ready >= want)) && break
    sleep 0.2
  done
  KUBECONFIG=$dir/kubeconfig kubectl get nodes -o wide || true
  echo
  echo "cluster up; logs in $dir/*.log"
  echo "  export KUBECONFIG=$dir/kubeconfig"
}

status() {
  [[ -e $dir/cluster.env ]] || { echo "no cluster in $dir"; exit 1; }
  while read -r node pid; do
    if kill -0 "$pid" 2>/dev/null; then echo "$node: running (pid $pid)"; else echo "$node: stopped"; fi
  done <"$dir/pids"
  KUBECONFIG=$dir/kubeconfig kubectl get nodes -o wide || true
}

down() {
  need_root
  if [[ -e $dir/pids ]]; then
    # Agents first, then the server.
    tac "$dir/pids" | while read -r _ pid; do
      kill "$pid" 2>/dev/null || true
    done
    sleep 1
    while read -r _ pid; do kill -9 "$pid" 2>/dev/null || true; done <"$dir/pids"
  fi
  if [[ -e $dir/nodes ]]; then
    while read -r node ns _ veth cgroup; do
      if [[ -d $dir/$node/agent && -x $bin ]]; then
        "$bin" agent --cleanup --netns "/var/run/netns/$ns" --data-dir "$dir/$node" \
          --cgroup-parent "$cgroup" >>"$dir/$node.log" 2>&1 || true
      fi
      ip netns del "$ns" 2>/dev/null || true
      ip link del "$veth" 2>/dev/null || true
    done <"$dir/nodes"
  fi
  ip link del "$bridge" 2>/dev/null || true
  rm -f "$dir/pids" "$dir/nodes" "$dir/cluster.env"
  if ((purge)); then
    rm -rf "$dir"
  fi
  echo "cluster down"
}

case "$cmd" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
