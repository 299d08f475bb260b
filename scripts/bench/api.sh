#!/usr/bin/env bash
# HTTP-level benchmarks of the API server (docs/benchmarks.md, "API server over HTTPS"):
# start-up time, durable creates/s with 1, 8 and 64 clients, list latency for 10k and 150k
# pods in one namespace, watch fan-out with 5,000 watchers, idle RSS with 100 objects.
# Release binary + the api_bench load generator (crates/skiff-apiserver/examples/api_bench.rs);
# a fresh server and data directory (on disk, under target/) per measurement.
#   scripts/bench/api.sh [create|list|watch|rss|startup]...   (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -q -p skiff
    cargo build --release -q -p skiff-apiserver --example api_bench
fi
BIN=$PWD/target/release/skiff
BENCH=$PWD/target/release/examples/api_bench
ulimit -n 65536 2>/dev/null || ulimit -n 16384
PID=""; DIR=""; PORT=""

start() {
    DIR=$(mktemp -d -p "$PWD/target" bench-api.XXXXXX)
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local t0; t0=$(date +%s%N)
    "$BIN" server --data-dir "$DIR" --disable-agent --bind-address 127.0.0.1 \
        --https-listen-port "$PORT" --log-level warn >"$DIR.log" 2>&1 &
    PID=$!
    until grep -qs ":$PORT\"" "$DIR/server/admin.kubeconfig" && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
        kill -0 "$PID" 2>/dev/null || { cat "$DIR.log"; exit 1; }
        sleep 0.005
    done
    STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
    KC=$DIR/server/admin.kubeconfig
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    rm -rf "$DIR" "$DIR.log"
}
trap stop EXIT

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
# CPU time (user + system) of the server so far, in milliseconds.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$PID/stat"; }

run_startup() {
    start; echo "startup (first start, creates CA and system objects): ${STARTUP_MS} ms"
    kill "$PID"; wait "$PID" 2>/dev/null || true
    local t0; t0=$(date +%s%N)
    "$BIN" server --data-dir "$DIR" --disable-agent --bind-address 127.0.0.1 \
        --https-listen-port "$PORT" --log-level warn >"$DIR.log" 2>&1 &
    PID=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.005; done
    echo "startup (restart on existing data): $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    stop
}

run_create() {
    for spec in "1 3000" "8 10000" "64 30000"; do
        set -- $spec
        start
        local before; before=$(cpu_ms)
        "$BENCH" create "$KC" "$1" "$2" bench
        echo "    server CPU per create: $(( ($(cpu_ms) - before) * 1000 / $2 )) µs"
        stop
    done
}

run_list() {
    start
    "$BENCH" create "$KC" 64 10000 l10k >/dev/null
    "$BENCH" list "$KC" l10k 10
    "$BENCH" list "$KC" l10k 20 500
    "$BENCH" create "$KC" 64 150000 l150k >/dev/null
    "$BENCH" list "$KC" l150k 5
    "$BENCH" list "$KC" l150k 20 500
    echo "server RSS with 160k pods: $(( $(rss_kib) / 1024 )) MiB"
    stop
}

run_watch() {
    start
    "$BENCH" watch "$KC" 5000 300 fanout
    echo "server RSS with 5,000 watches: $(( $(rss_kib) / 1024 )) MiB"
    stop
}

run_rss() {
    start
    "$BENCH" create "$KC" 4 100 idle >/dev/null
    sleep 10
    echo "idle RSS with 100 pods (+ system objects): $(( $(rss_kib) / 1024 )) MiB ($(rss_kib) KiB)"
    stop
}

for what in "${@:-startup create list watch rss}"; do
    for w in $what; do "run_$w"; done
done
