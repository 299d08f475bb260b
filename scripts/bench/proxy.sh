#!/usr/bin/env bash
# Service proxy benchmark (issue 13), in one command: nftables rule sync time with 1,000
# Services × 10 endpoints (first full sync; p50/p99 after one endpoint or one Service
# changes), and short-connection rate/latency plus bulk throughput through a ClusterIP next to
# the pod IP directly, in the same run. One simulated node (a network namespace); nothing
# touches the host's interfaces. Needs root and nft.
#
# Knobs: SKIFF_BENCH_SERVICES (1000), SKIFF_BENCH_ENDPOINTS (10), SKIFF_BENCH_CHANGES (100),
# SKIFF_BENCH_CONNECTIONS (2000), SKIFF_BENCH_SECONDS per bulk stream (3),
# SKIFF_BENCH_PROFILE (bench; `dev` avoids a release build on a shared machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $(id -u) != 0 ]]; then
  echo "scripts/bench/proxy.sh needs root (network namespaces)" >&2
  exit 1
fi
for tool in nft ip busybox; do
  command -v "$tool" >/dev/null || { echo "scripts/bench/proxy.sh needs $tool" >&2; exit 1; }
done
echo "# skiff service proxy benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r), nft $(nft --version | cut -d' ' -f2), load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
echo
cargo bench -q --workspace --profile "${SKIFF_BENCH_PROFILE:-bench}" --bench proxy
echo; echo "load average at end: $(cut -d" " -f1-3 /proc/loadavg)"
