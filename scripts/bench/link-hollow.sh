#!/usr/bin/env bash
# Node-link benchmark (issue 4) with hollow nodes: N real QUIC node sessions from one process
# (`skiff debug hollow-nodes`) against a release `skiff server --disable-agent` on this machine,
# heartbeating every 10 s. Reports, per N: time for all to join, server RSS and CPU at steady
# state, and time for all to rejoin after a server restart (SIGTERM + start on the same port).
#
# Usage: scripts/bench/link-hollow.sh [N...]        (default: 1000 5000)
# Env:   STEADY_SECONDS (default 60), SETTLE_SECONDS (default 30), SKIFF_BIN (default: build
#        target/release/skiff), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."

COUNTS=("$@")
[ ${#COUNTS[@]} -eq 0 ] && COUNTS=(1000 5000)
STEADY=${STEADY_SECONDS:-60}
SETTLE=${SETTLE_SECONDS:-30}
if [ -z "${SKIFF_BIN:-}" ]; then
  cargo build --release -p skiff --quiet
  SKIFF_BIN=target/release/skiff
fi
CLK_TCK=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
wait_line() { # file pattern timeout → prints the matching line
  local deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if grep -q "$2" "$1" 2>/dev/null; then grep "$2" "$1" | tail -1; return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $2 in $1" >&2; return 1
}
seconds() { python3 -c 'import json,sys
t=sys.stdin.read().strip()
print(round(json.loads(t)["seconds"],1) if t else "n/a (timed out)")'; }
start_server() { # dir port → pid
  "$SKIFF_BIN" server --data-dir "$1" --disable-agent --bind-address 127.0.0.1 \
    --https-listen-port "$2" --log-level warn >>"$1.log" 2>&1 &
  echo $!
}
wait_token() { local i; for i in $(seq 1 300); do [ -s "$1/server/node-token" ] && return 0; sleep 0.1; done; return 1; }

echo "| nodes | all joined (s) | server RSS steady (MiB) | server CPU steady (% of one core) | rejoin after restart (s) | server RSS after rejoin (MiB) | hollow process RSS (MiB) |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for N in "${COUNTS[@]}"; do
  WORK=$(mktemp -d /tmp/skiff-link-bench.XXXXXX)
  PORT=$(free_port)
  SPID=$(start_server "$WORK/data" "$PORT")
  wait_token "$WORK/data"
  "$SKIFF_BIN" debug hollow-nodes --data-dir "$WORK/hollow" --server "https://127.0.0.1:$PORT" \
    --token "$(cat "$WORK/data/server/node-token")" --count "$N" --log-level warn \
    >"$WORK/hollow.jsonl" 2>"$WORK/hollow.log" &
  HPID=$!
  JOIN=$( (wait_line "$WORK/hollow.jsonl" all_connected 900 || true) | seconds)
  sleep "$SETTLE"
  T0=$(cpu_ticks "$SPID"); sleep "$STEADY"; T1=$(cpu_ticks "$SPID")
  CPU=$(python3 -c "print(round(100*($T1-$T0)/$CLK_TCK/$STEADY,1))")
  RSS=$(rss_mib "$SPID")
  HRSS=$(rss_mib "$HPID")
  kill -TERM "$SPID"; while kill -0 "$SPID" 2>/dev/null; do sleep 0.05; done
  SPID=$(start_server "$WORK/data" "$PORT")
  REJOIN=$( (wait_line "$WORK/hollow.jsonl" recovered 300 || true) | seconds)
  sleep 5
  RSS2=$(rss_mib "$SPID")
  echo "| $N | $JOIN | $RSS | $CPU | $REJOIN | $RSS2 | $HRSS |"
  kill -TERM "$HPID" 2>/dev/null || true; wait "$HPID" 2>/dev/null || true
  kill -TERM "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
done
