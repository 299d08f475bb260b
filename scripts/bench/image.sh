#!/usr/bin/env bash
# Image benchmarks (issue 3), in one command, each next to a reference run by the same command:
#   1. import of the busybox archive (images/busybox/build.sh) vs `umoci unpack` of the same
#      OCI layout (extract archive + unpack);
#   2. unpack throughput of a large layer (a tar of /usr/share: many small files), plain and
#      gzip, vs GNU `tar -x` of the same stream;
#   3. pull from a docker-registry on loopback (busybox, and the large layer as an image) vs
#      `skopeo copy` of the same image to an OCI directory (download only), and vs `skopeo copy`
#      followed by `tar -xzf` of its layers (download + unpack, what skiff pull does).
# Needs root (ownership as in the layer), hyperfine, skopeo, umoci, docker-registry.
#
# Knobs: SKIFF_BENCH_RUNS (5; the large-layer runs use at most 3), SKIFF_BENCH_LAYER_DIR
# (/usr/share), SKIFF_BENCH_WORK (mktemp). The large-layer runs are bound by the disk.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${SKIFF_BENCH_RUNS:-5}"
layer_source="${SKIFF_BENCH_LAYER_DIR:-/usr/share}"
if [[ $(id -u) != 0 ]]; then
  echo "scripts/bench/image.sh needs root" >&2
  exit 1
fi
for tool in hyperfine skopeo umoci docker-registry jq gzip; do
  command -v "$tool" >/dev/null || { echo "scripts/bench/image.sh needs $tool" >&2; exit 1; }
done

work="${SKIFF_BENCH_WORK:-$(mktemp -d /var/tmp/skiff-image-bench.XXXXXX)}"
registry_pid=""
cleanup() {
  [[ -n "$registry_pid" ]] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the benchmark driver (release)..." >&2
cargo build -q --release -p skiff-image --example image_bench
bench="$PWD/target/release/examples/image_bench"

# hyperfine wrapper: NAME PREPARE COMMAND [RUNS] -> prints "mean stddev min" (seconds)
measure() {
  local name="$1" prepare="$2" command="$3" n="${4:-$runs}"
  hyperfine --style none --runs "$n" --warmup 1 --prepare "$prepare" \
    --export-json "$work/$name.json" "$command" >/dev/null 2>&1 ||
    { echo "benchmark $name failed: $command" >&2; hyperfine --runs 1 --prepare "$prepare" "$command" >&2; exit 1; }
  jq -r '.results[0] | "\(.mean) \(.stddev) \(.min)"' "$work/$name.json"
}
ms() { awk -v s="$1" 'BEGIN { printf "%.1f ms", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mbps() { awk -v bytes="$1" -v s="$2" 'BEGIN { printf "%.0f MB/s", bytes / s / 1e6 }'; }

echo "# skiff-image benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r), commit $(git rev-parse --short HEAD)"
echo

# --- 1. import of the busybox archive ------------------------------------------------------------
images/busybox/build.sh "$work/busybox.tar" >/dev/null
read -r import_mean import_sd _ < <(measure import "rm -rf $work/store; sync" "$bench import $work/busybox.tar $work/store")
read -r umoci_mean umoci_sd _ < <(measure umoci "rm -rf $work/layout $work/bundle; mkdir $work/layout; sync" \
  "sh -c 'tar -xf $work/busybox.tar -C $work/layout && umoci unpack --image $work/layout:latest $work/bundle >/dev/null'")
echo "| busybox archive ($(du -k "$work/busybox.tar" | cut -f1) KiB) | skiff import | $(ms "$import_mean") ± $(ms "$import_sd") | umoci unpack (reference) | $(ms "$umoci_mean") ± $(ms "$umoci_sd") | $(ratio "$import_mean" "$umoci_mean")× |"

# --- 2. unpack throughput of a large layer -------------------------------------------------------
tar -C "$(dirname "$layer_source")" -cf "$work/big.tar" "$(basename "$layer_source")"
gzip -1 -k "$work/big.tar"
big_bytes=$(stat -c %s "$work/big.tar")
files=$(tar -tf "$work/big.tar" | wc -l)
big_runs=$((runs < 3 ? runs : 3))
read -r unpack_mean unpack_sd _ < <(measure unpack "rm -rf $work/out; sync" "$bench unpack $work/big.tar $work/out" "$big_runs")
read -r tar_mean tar_sd _ < <(measure tar "rm -rf $work/out; mkdir $work/out; sync" "tar -xf $work/big.tar -C $work/out" "$big_runs")
read -r unpackgz_mean unpackgz_sd _ < <(measure unpackgz "rm -rf $work/out; sync" "$bench unpack $work/big.tar.gz $work/out" "$big_runs")
read -r targz_mean targz_sd _ < <(measure targz "rm -rf $work/out; mkdir $work/out; sync" "tar -xzf $work/big.tar.gz -C $work/out" "$big_runs")
layer_label="$layer_source as a layer ($((big_bytes / 1000000)) MB, $files entries)"
echo "| $layer_label, tar | skiff unpack | $(ms "$unpack_mean") = $(mbps "$big_bytes" "$unpack_mean") | tar -xf (reference) | $(ms "$tar_mean") = $(mbps "$big_bytes" "$tar_mean") | $(ratio "$unpack_mean" "$tar_mean")× |"
echo "| $layer_label, tar.gz | skiff unpack | $(ms "$unpackgz_mean") = $(mbps "$big_bytes" "$unpackgz_mean") | tar -xzf (reference) | $(ms "$targz_mean") = $(mbps "$big_bytes" "$targz_mean") | $(ratio "$unpackgz_mean" "$targz_mean")× |"

# --- 3. pull from a loopback registry -----------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
push() { skopeo copy --quiet --dest-tls-verify=false "oci-archive:$1" "docker://127.0.0.1:$port/$2"; }
push "$work/busybox.tar" bench/busybox:latest
# The large layer as an image: reuse the busybox config with the layer swapped in via umoci.
mkdir -p "$work/biglayout" && tar -xf "$work/busybox.tar" -C "$work/biglayout"
umoci raw add-layer --image "$work/biglayout:latest" --tag big "$work/big.tar" 2>/dev/null ||
  { echo "umoci raw add-layer failed" >&2; exit 1; }
skopeo copy --quiet --dest-tls-verify=false "oci:$work/biglayout:big" "docker://127.0.0.1:$port/bench/big:latest"
big_image_bytes=$(skopeo inspect --tls-verify=false "docker://127.0.0.1:$port/bench/big:latest" --raw |
  jq '[.layers[].size] | add')
# Reference for download + unpack: skopeo copy, then tar -xzf of each layer in order.
cat >"$work/skopeo-unpack.sh" <<'SCRIPT'
#!/bin/sh
set -e
skopeo copy --quiet --src-tls-verify=false "docker://$1" "oci:$2:latest"
manifest=$(jq -r '.manifests[0].digest' "$2/index.json")
mkdir -p "$3"
for layer in $(jq -r '.layers[].digest' "$2/blobs/sha256/${manifest#sha256:}"); do
  tar -xzf "$2/blobs/sha256/${layer#sha256:}" -C "$3"
done
SCRIPT
chmod +x "$work/skopeo-unpack.sh"
for image in busybox big; do
  ref="127.0.0.1:$port/bench/$image:latest"
  n=$runs
  [[ $image == big ]] && n=$big_runs
  read -r pull_mean pull_sd _ < <(measure "pull-$image" "rm -rf $work/pullstore; sync" "$bench pull $ref $work/pullstore --insecure 127.0.0.1:$port" "$n")
  read -r skopeo_mean skopeo_sd _ < <(measure "skopeo-$image" "rm -rf $work/skopeo-dir; sync" \
    "skopeo copy --quiet --src-tls-verify=false docker://$ref oci:$work/skopeo-dir:latest" "$n")
  read -r both_mean both_sd _ < <(measure "skopeo-tar-$image" "rm -rf $work/skopeo-dir $work/skopeo-out; sync" \
    "$work/skopeo-unpack.sh $ref $work/skopeo-dir $work/skopeo-out" "$n")
  label="$image image"
  [[ $image == big ]] && label="large image (busybox + the $layer_source layer, $((big_image_bytes / 1000000)) MB compressed)"
  echo "| pull $label | skiff pull (download + unpack) | $(ms "$pull_mean") ± $(ms "$pull_sd") | skopeo copy + tar -xzf (download + unpack, reference) | $(ms "$both_mean") ± $(ms "$both_sd") | $(ratio "$pull_mean" "$both_mean")× |"
  echo "| pull $label | skiff pull (download + unpack) | $(ms "$pull_mean") ± $(ms "$pull_sd") | skopeo copy to oci: (download only, reference) | $(ms "$skopeo_mean") ± $(ms "$skopeo_sd") | $(ratio "$pull_mean" "$skopeo_mean")× |"
done
