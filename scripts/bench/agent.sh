#!/usr/bin/env bash
# Issue 6 benchmark: pod start through the whole cluster, beside `runc run` and `ctr run --rm`
# of the same rootfs in the same command, and the idle footprint of `skiff server` with its
# agent and of `skiff agent` alone. Needs root, runc, skopeo, umoci, jq, kubectl, and
# containerd/ctr for the containerd reference.
#
#   scripts/bench/agent.sh                   # RUNS=50 IDLE_PODS=10 IDLE_SECONDS=60
#   RUNS=20 IDLE_SECONDS=30 scripts/bench/agent.sh
#   SKIP_BUILD=1 scripts/bench/agent.sh      # reuse target/release/{skiff,examples/agent_bench}
#   SKIP_BUILD=1 SKIFF_BIN=target/debug/skiff AGENT_BENCH_BIN=target/debug/examples/agent_bench \
#     RUNS=5 IDLE_SECONDS=5 scripts/bench/agent.sh   # try the script with debug binaries
#
# Topology (as scripts/dev-cluster.sh, with names unique to this run): a bridge in the host
# namespace and one network namespace per skiff process, so the pod network (bridge, routes,
# nftables) stays out of the host's. Pod start: `skiff server` with its local agent; the
# `agent_bench start` client (crates/skiff-agent/examples/agent_bench.rs) creates one busybox
# pod at a time over HTTPS and times create → Running and Ready seen through a watch.
# Footprint: VmRSS and Pss (/proc/PID/status, smaps_rollup) and utime+stime (/proc/PID/stat)
# over IDLE_SECONDS of (1) that server + agent process with IDLE_PODS running pods, (2) a
# `skiff agent` joined to a `skiff server --disable-agent`, with IDLE_PODS pods on it.
# Everything is removed on exit: pods (`skiff agent --cleanup`), processes, namespaces,
# links, mounts, the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${RUNS:-50}"
IDLE_PODS="${IDLE_PODS:-10}"
IDLE_SECONDS="${IDLE_SECONDS:-60}"

[[ $EUID -eq 0 ]] || { echo "needs root" >&2; exit 1; }
for tool in runc skopeo umoci jq kubectl ip python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required (scripts/install-deps.sh)" >&2; exit 1; }
done

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "building release skiff and agent_bench (fat LTO: minutes)..." >&2
  cargo build --release --quiet -p skiff
  cargo build --release --quiet -p skiff-agent --example agent_bench
fi
skiff="${SKIFF_BIN:-$PWD/target/release/skiff}"
bench="${AGENT_BENCH_BIN:-$PWD/target/release/examples/agent_bench}"

id=$$
work="$(mktemp -d /tmp/skiff-agent-bench.XXXXXX)"
bridge="skab$id"
prefix="10.251.78"
if ip -o addr show | grep -q " $prefix\."; then
  echo "$prefix.0/24 is already in use on this host (another agent.sh run?)" >&2
  exit 1
fi
# name ip veth cgroup-parent data-dir
nodes=(
  "bench-server $prefix.2 skab${id}a /skiff-agent-bench-$id-a $work/a"
  "bench-cp $prefix.3 skab${id}b /skiff-agent-bench-$id-b $work/b"
  "bench-agent $prefix.4 skab${id}c /skiff-agent-bench-$id-c $work/c"
)
ns_of() { echo "skiff-ab-$id-$1"; }
pids=()
containerd_pid=""

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  if ((rc != 0)); then
    for f in "$work"/*.log; do [[ -e $f ]] && { echo "--- $f (last lines)" >&2; tail -n 20 "$f" >&2; }; done
  fi
  for pid in "${pids[@]}"; do
    [[ -n $pid ]] || continue
    kill -0 "$pid" 2>/dev/null || echo "process $pid had exited before the cleanup" >&2
    stop_pid "$pid"
  done
  for n in "${nodes[@]}"; do
    read -r name _ veth cgroup data <<<"$n"
    if [[ -d $data/agent ]]; then
      "$skiff" agent --cleanup --netns "/var/run/netns/$(ns_of "$name")" --data-dir "$data" \
        --cgroup-parent "$cgroup" >>"$work/cleanup.log" 2>&1 || echo "cleanup of $name failed (see $work/cleanup.log)" >&2
    fi
    # The node's (now empty) cgroup parent, in every hierarchy.
    for d in /sys/fs/cgroup/*"$cgroup" /sys/fs/cgroup"$cgroup"; do
      [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    ip netns del "$(ns_of "$name")" 2>/dev/null
    ip link del "$veth" 2>/dev/null
  done
  ip link del "$bridge" 2>/dev/null
  [[ -n $containerd_pid ]] && stop_pid "$containerd_pid"
  for c in $(runc list -q 2>/dev/null | grep "^agent-bench-$id-"); do runc delete -f "$c" >/dev/null 2>&1; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for _ in 1 2 3 4 5; do rm -rf "$work" 2>/dev/null && break; sleep 1; done
  [[ -e $work ]] && echo "could not remove $work" >&2
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket
for _ in range(100):
    t = socket.socket(); t.bind(("", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("", p)); print(p); break
    except OSError:
        pass'
}

# --- Network: a bridge and one namespace per node --------------------------------------
ip link add "$bridge" type bridge
ip addr add "$prefix.1/24" dev "$bridge"
ip link set "$bridge" up
for n in "${nodes[@]}"; do
  read -r name ip veth _ data <<<"$n"
  ns=$(ns_of "$name")
  ip netns add "$ns"
  ip link add "$veth" type veth peer name "${veth}p"
  ip link set "$veth" master "$bridge" up
  ip link set "${veth}p" netns "$ns"
  ip netns exec "$ns" ip link set "${veth}p" name eth0
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip addr add "$ip/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip route add default via "$prefix.1"
  mkdir -p "$data/agent/images"
done

# --- Images and the runc/containerd references -----------------------------------------
echo "building the busybox image, runc bundles and containerd..." >&2
images/busybox/build.sh "$work/busybox.tar" >/dev/null
for n in "${nodes[@]}"; do
  read -r _ _ _ _ data <<<"$n"
  cp "$work/busybox.tar" "$data/agent/images/"
done
skopeo copy --quiet "oci-archive:$work/busybox.tar" "oci:$work/oci:latest"
umoci unpack --image "$work/oci:latest" "$work/base" >/dev/null
for kind in sleep true; do
  mkdir -p "$work/bundles/$kind"
  args='["sleep","3600"]'
  [[ $kind == true ]] && args='["true"]'
  jq --argjson args "$args" '.process.args = $args | .process.terminal = false | .root.path = "'"$work"'/base/rootfs"' \
    "$work/base/config.json" >"$work/bundles/$kind/config.json"
done
have_ctr=0
if command -v containerd >/dev/null && command -v ctr >/dev/null; then
  mkdir -p "$work/containerd"
  printf 'version = 2\nroot = "%s/containerd/root"\nstate = "%s/containerd/state"\n[grpc]\n  address = "%s/containerd.sock"\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n' \
    "$work" "$work" "$work" >"$work/containerd/config.toml"
  containerd --config "$work/containerd/config.toml" >"$work/containerd/log" 2>&1 &
  containerd_pid=$!
  for _ in $(seq 100); do [[ -S "$work/containerd.sock" ]] && break; sleep 0.1; done
  if ctr --address "$work/containerd.sock" images import "$work/busybox.tar" >/dev/null 2>&1; then
    have_ctr=1
  else
    echo "ctr image import failed; no containerd reference" >&2
  fi
fi

# --- Helpers ------------------------------------------------------------------------------
now_ms() { local t=$EPOCHREALTIME; echo "${t/./}" | awk '{printf "%.3f", $1/1000}'; }
# elapsed_ms T0 T1 (values of $EPOCHREALTIME, read right before and after the timed command)
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f\n", (b - a) * 1000}'; }
# stats FILE -> "runs median p99" (median: element n/2 of the sorted list, p99: ceil(0.99 n))
stats() {
  sort -n "$1" | awk '{v[NR]=$1} END {n=NR; m=v[int(n/2)+1]; i=int(0.99*n); if (i<0.99*n) i++; if (i<1) i=1; printf "%d %.1f %.1f", n, m, v[i]}'
}
start_server() { # name port extra-flags... -> pid in $server_pid
  local name=$1 port=$2; shift 2
  local n ip cgroup data
  for n in "${nodes[@]}"; do read -r nn ip _ cgroup data <<<"$n"; [[ $nn == "$name" ]] && break; done
  "$skiff" server --netns "/var/run/netns/$(ns_of "$name")" --data-dir "$data" \
    --https-listen-port "$port" --bind-address 0.0.0.0 --advertise-address "$ip" \
    --node-name "$name" --node-ip "$ip" --cgroup-parent "$cgroup" --flannel-backend host-gw \
    "$@" >"$work/$name.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 300); do
    [[ -e $data/server/node-token && -e $data/server/admin.kubeconfig ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  sed "s#https://127.0.0.1:$port#https://$ip:$port#" "$data/server/admin.kubeconfig" >"$work/$name.kubeconfig"
}
wait_ready() { # kubeconfig node
  for _ in $(seq 600); do
    [[ $(kubectl --kubeconfig "$1" get node "$2" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] && return 0
    sleep 0.2
  done
  echo "node $2 not Ready within 120 s" >&2
  exit 1
}
# footprint NAME PID: RSS, Pss and CPU over IDLE_SECONDS
footprint() {
  local name=$1 pid=$2 hz t0 t1 cpu0 cpu1 rss0 rss1 pss anon file children
  hz=$(getconf CLK_TCK)
  rss0=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
  cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  t0=$(now_ms)
  sleep "$IDLE_SECONDS"
  cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  t1=$(now_ms)
  rss1=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
  pss=$(awk '/^Pss:/{print $2}' "/proc/$pid/smaps_rollup")
  anon=$(awk '/^RssAnon:/{print $2}' "/proc/$pid/status")
  file=$(awk '/^RssFile:/{print $2}' "/proc/$pid/status")
  # (processes may vanish between the glob and the read: awk then fails, which is fine)
  children=$({ awk -v p="$pid" '$4 == p' /proc/[0-9]*/stat 2>/dev/null || true; } | wc -l)
  awk -v n="$name" -v r0="$rss0" -v r1="$rss1" -v p="$pss" -v c0="$cpu0" -v c1="$cpu1" -v hz="$hz" \
    -v t0="$t0" -v t1="$t1" -v ch="$children" -v th="$(ls "/proc/$pid/task" | wc -l)" \
    -v an="$anon" -v fi="$file" 'BEGIN {
      printf "| %s | %.1f → %.1f | %.1f / %.1f | %.1f | %.2f%% (%.2f s CPU in %.0f s) | %d | %d |\n",
        n, r0/1024, r1/1024, an/1024, fi/1024, p/1024, 100*(c1-c0)/hz/((t1-t0)/1000), (c1-c0)/hz, (t1-t0)/1000, th, ch }'
}

echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); load average at start:$(uptime | sed 's/.*load average://')"
echo "skiff: $("$skiff" --version 2>/dev/null || echo '?'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); runc $(runc --version | head -1 | awk '{print $3}'); ctr $(ctr --version 2>/dev/null | awk '{print $3}')"
echo

# --- 1. Pod start: skiff server with its agent ------------------------------------------
port=$(free_port)
start_server bench-server "$port"
kc="$work/bench-server.kubeconfig"
wait_ready "$kc" bench-server
echo "measuring pod start ($RUNS runs each)..." >&2
start_line=$("$bench" start --kubeconfig "$kc" --runs "$RUNS" --node bench-server)
echo "$start_line" >&2
read -r s_med s_p99 <<<"$(echo "$start_line" | sed -E 's/.*median ([0-9.]+) ms.*p99 ([0-9.]+) ms.*/\1 \2/')"

: >"$work/runc-d" ; : >"$work/runc-true"; : >"$work/ctr-rm"; : >"$work/ctr-d"
for i in $(seq "$RUNS"); do
  c="agent-bench-$id-$i"
  t0=$EPOCHREALTIME; runc run -d --bundle "$work/bundles/sleep" "$c" </dev/null >/dev/null 2>&1; t1=$EPOCHREALTIME
  elapsed_ms "$t0" "$t1" >>"$work/runc-d"
  runc delete -f "$c" >/dev/null 2>&1
  t0=$EPOCHREALTIME; runc run --bundle "$work/bundles/true" "$c-t" </dev/null >/dev/null 2>&1; t1=$EPOCHREALTIME
  elapsed_ms "$t0" "$t1" >>"$work/runc-true"
  if ((have_ctr)); then
    t0=$EPOCHREALTIME
    ctr --address "$work/containerd.sock" run --rm docker.io/library/busybox:latest "$c-rm" true </dev/null >/dev/null 2>&1
    t1=$EPOCHREALTIME
    elapsed_ms "$t0" "$t1" >>"$work/ctr-rm"
    t0=$EPOCHREALTIME
    ctr --address "$work/containerd.sock" run -d docker.io/library/busybox:latest "$c-d" sleep 3600 </dev/null >/dev/null 2>&1
    t1=$EPOCHREALTIME
    elapsed_ms "$t0" "$t1" >>"$work/ctr-d"
    ctr --address "$work/containerd.sock" task delete -f "$c-d" >/dev/null 2>&1
    ctr --address "$work/containerd.sock" container delete "$c-d" >/dev/null 2>&1
  fi
done
read -r _ rd_med rd_p99 <<<"$(stats "$work/runc-d")"
echo "## Pod start (load average now:$(uptime | sed 's/.*load average://'))"
echo
echo "| what | runs | median ms | p99 ms | median / runc run -d |"
echo "|---|---:|---:|---:|---:|"
echo "| skiff: API create → Running and Ready in a watch (server + scheduler + agent + runtime + status) | $RUNS | $s_med | $s_p99 | $(awk -v a="$s_med" -v b="$rd_med" 'BEGIN {printf "%.2f", a / b}')× |"
row() { # label file
  read -r n med p99 <<<"$(stats "$2")"
  echo "| $1 | $n | $med | $p99 | $(awk -v a="$med" -v b="$rd_med" 'BEGIN {printf "%.2f", a / b}')× |"
}
row "\`runc run -d\` (sleep, → running)" "$work/runc-d"
row "\`runc run\` (\`true\`, foreground, to exit and removal)" "$work/runc-true"
if ((have_ctr)); then
  row "\`ctr run -d\` (sleep, → running; containerd)" "$work/ctr-d"
  row "\`ctr run --rm\` (\`true\`, to exit and removal; containerd)" "$work/ctr-rm"
fi
echo

# --- 2. Idle footprint: server + agent with IDLE_PODS pods --------------------------------
echo "starting $IDLE_PODS pods on bench-server..." >&2
"$bench" idle --kubeconfig "$kc" --pods "$IDLE_PODS" --node bench-server >&2
sleep 10
echo "## Idle footprint (${IDLE_SECONDS} s window, $IDLE_PODS running pods each)"
echo
echo "| process | VmRSS MiB (start → end of window) | RssAnon / RssFile MiB | Pss MiB | CPU (of one core) | threads | child processes |"
echo "|---|---:|---:|---:|---:|---:|---:|"
footprint "\`skiff server\` with its agent" "$server_pid"
"$bench" clean --kubeconfig "$kc" >&2
stop_pid "$server_pid"
pids=("${pids[@]/#$server_pid/}")

# --- 3. Idle footprint: skiff agent alone, joined to a server without agent -------------
port=$(free_port)
start_server bench-cp "$port" --disable-agent
cp_pid=$server_pid
kc="$work/bench-cp.kubeconfig"
read -r _ ip _ cgroup data <<<"${nodes[2]}"
"$skiff" agent --netns "/var/run/netns/$(ns_of bench-agent)" --server "https://$prefix.3:$port" \
  --token "$(cat "$work/b/server/node-token")" --data-dir "$data" --node-name bench-agent \
  --node-ip "$ip" --cgroup-parent "$cgroup" >"$work/bench-agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")
wait_ready "$kc" bench-agent
echo "starting $IDLE_PODS pods on bench-agent..." >&2
"$bench" idle --kubeconfig "$kc" --pods "$IDLE_PODS" --node bench-agent >&2
sleep 10
footprint "\`skiff agent\` (joined to a \`skiff server --disable-agent\`)" "$agent_pid" &
fp=$!
sleep 1
footprint "(for reference: that \`skiff server --disable-agent\`, same window)" "$cp_pid"
wait "$fp"
"$bench" clean --kubeconfig "$kc" >&2
echo
echo "load average at the end:$(uptime | sed 's/.*load average://')"
