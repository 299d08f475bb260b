#!/usr/bin/env bash
# Networking benchmarks (issue 7), in one command: the time PodNetwork::attach adds to a pod
# start (median, p99), and pod-to-pod TCP throughput (iperf3) and latency (1-byte TCP
# ping-pong) on one node and across two nodes with host-gw and VXLAN, next to node-to-node
# over the same links. Simulated nodes are network namespaces; nothing touches the host's
# interfaces. Needs root, iperf3 and busybox.
#
# Knobs: SKIFF_BENCH_PODS (200), SKIFF_BENCH_SECONDS per iperf3 run (5), SKIFF_BENCH_PINGS
# (5000), SKIFF_BENCH_ROUNDS (3, interleaved; medians are reported).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $(id -u) != 0 ]]; then
  echo "scripts/bench/net.sh needs root (network namespaces)" >&2
  exit 1
fi
for tool in iperf3 busybox nft ip; do
  command -v "$tool" >/dev/null || { echo "scripts/bench/net.sh needs $tool" >&2; exit 1; }
done
echo "# skiff-net benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r), load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
echo
cargo bench -q -p skiff-net --bench net
echo; echo "load average at end: $(cut -d" " -f1-3 /proc/loadavg)"
