#!/usr/bin/env bash
# NetworkPolicy enforcer benchmark (issue 13): sync time for 100 pods × 20 ingress rules
# (+10 egress) × 50 peers, the first (full) sync and a change of one pod, next to the same
# table loaded with one plain `nft -f`. One simulated node (a network namespace); nothing
# touches the host's interfaces. Needs root and nft. Runs the ignored test
# `policy_sync_benchmark` of crates/skiff-net/tests/policy.rs in the debug build (no release
# builds on the shared machine; a release build makes the Rust part faster, not nft).
#
# Knobs: SKIFF_BENCH_PODS (100), SKIFF_BENCH_RULES (20), SKIFF_BENCH_PEERS (50).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $(id -u) != 0 ]]; then
  echo "scripts/bench/policy.sh needs root (network namespaces)" >&2
  exit 1
fi
echo "# skiff NetworkPolicy benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r), nft $(nft --version | cut -d' ' -f2), load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
cargo nextest run --workspace --run-ignored only --no-capture -E 'binary(policy) & test(policy_sync_benchmark)' 2>&1 \
  | grep -E '^(pods|full sync|one pod|reference)'
echo "load average at end: $(cut -d" " -f1-3 /proc/loadavg)"
