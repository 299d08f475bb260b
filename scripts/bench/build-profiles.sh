#!/usr/bin/env bash
# Binary size, idle RSS and API server CPU per durable create of the release builds, side by
# side in one command (rounds alternate between the binaries, so machine noise hits both):
#
#   scripts/bench/build-profiles.sh [PROFILE...]     # default: release release-o3
#   SKIP_BUILD=1 ROUNDS=3 CREATES=20000 scripts/bench/build-profiles.sh
#
# Each round starts `skiff server --disable-agent` on a fresh data dir, measures its RSS after
# 3 s idle, runs the api_bench load generator (64 clients, CREATES pods) and reads the server's
# CPU time (utime + stime) over the load.
set -euo pipefail
cd "$(dirname "$0")/../.."
profiles=("${@:-release release-o3}")
read -r -a profiles <<<"${profiles[*]}"
ROUNDS=${ROUNDS:-2}
CREATES=${CREATES:-20000}

if [[ -z ${SKIP_BUILD:-} ]]; then
  for p in "${profiles[@]}"; do cargo build -q --profile "$p" -p skiff; done
  cargo build -q --release -p skiff-apiserver --example api_bench
fi
bench=$PWD/target/release/examples/api_bench
ulimit -n 65536 2>/dev/null || true

pid="" dir=""
cleanup() {
  [[ -n $pid ]] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  [[ -n $dir ]] && rm -rf "$dir" "$dir.log"
  return 0
}
trap cleanup EXIT

cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %10s\n' profile "size (MB)"
for p in "${profiles[@]}"; do
  printf '%-14s %10.1f\n' "$p" "$(echo "$(stat -c %s "target/$p/skiff") / 1000000" | bc -l)"
done
printf '\n%-6s %-14s %12s %12s %14s\n' round profile "idle RSS MiB" "creates/s" "CPU/create µs"
for round in $(seq "$ROUNDS"); do
  for p in "${profiles[@]}"; do
    dir=$(mktemp -d -p "$PWD/target" bench-profile.XXXXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "target/$p/skiff" server --data-dir "$dir" --disable-agent --bind-address 127.0.0.1 \
      --https-listen-port "$port" --log-level warn >"$dir.log" 2>&1 &
    pid=$!
    until grep -qs ":$port\"" "$dir/server/admin.kubeconfig" && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
      kill -0 "$pid" 2>/dev/null || { cat "$dir.log"; exit 1; }
      sleep 0.01
    done
    sleep 3
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    before=$(cpu_ms "$pid")
    rate=$("$bench" create "$dir/server/admin.kubeconfig" 64 "$CREATES" bench | grep -o 'rate=[0-9]*' | head -n1 | cut -d= -f2)
    per=$(( ($(cpu_ms "$pid") - before) * 1000 / CREATES ))
    printf '%-6s %-14s %12.1f %12s %14s\n' "$round" "$p" "$(echo "$rss / 1024" | bc -l)" "${rate:-?}" "$per"
    cleanup
    pid="" dir=""
  done
done
