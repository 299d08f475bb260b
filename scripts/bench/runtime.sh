#!/usr/bin/env bash
# Pod start/stop latency of skiff-runtime beside `runc run` of the same rootfs and containerd's
# `ctr run --rm` (containerd started on a private socket), and N pods on one node. One command,
# one machine, same image. Needs root.
#
#   scripts/bench/runtime.sh            # RUNS=50 PODS=110 by default
#   RUNS=20 PODS=0 scripts/bench/runtime.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${RUNS:-50}"
PODS="${PODS:-110}"

[[ $EUID -eq 0 ]] || { echo "needs root" >&2; exit 1; }
for tool in runc skopeo umoci jq; do
  command -v "$tool" >/dev/null || { echo "$tool is required (scripts/install-deps.sh)" >&2; exit 1; }
done

cargo build --release --quiet -p skiff-runtime --bin skiff-runtime-driver
driver="$PWD/target/release/skiff-runtime-driver"

work="$(mktemp -d /tmp/skiff-bench.XXXXXX)"
containerd_pid=""
cleanup() {
  if [[ -n "$containerd_pid" ]]; then
    kill "$containerd_pid" 2>/dev/null || true
    wait "$containerd_pid" 2>/dev/null || true
  fi
  for c in $(runc list -q 2>/dev/null | grep '^runc-bench-' || true); do runc delete -f "$c" >/dev/null 2>&1 || true; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the busybox image and the runc bundles..." >&2
images/busybox/build.sh "$work/busybox.tar" >/dev/null
skopeo copy --quiet "oci-archive:$work/busybox.tar" "oci:$work/oci:latest"
umoci unpack --image "$work/oci:latest" "$work/base" >/dev/null
mkdir -p "$work/bundles"
for kind in sleep true; do
  mkdir -p "$work/bundles/$kind"
  args='["sleep","3600"]'
  [[ $kind == true ]] && args='["true"]'
  jq --argjson args "$args" '.process.args = $args | .process.terminal = false | .root.path = "'"$work"'/base/rootfs"' \
    "$work/base/config.json" >"$work/bundles/$kind/config.json"
done

ctr_args=()
if command -v containerd >/dev/null && command -v ctr >/dev/null; then
  echo "starting containerd on a private socket..." >&2
  mkdir -p "$work/containerd"
  printf 'version = 2\nroot = "%s/containerd/root"\nstate = "%s/containerd/state"\n[grpc]\n  address = "%s/containerd.sock"\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n' \
    "$work" "$work" "$work" >"$work/containerd/config.toml"
  containerd --config "$work/containerd/config.toml" >"$work/containerd/log" 2>&1 &
  containerd_pid=$!
  for _ in $(seq 100); do [[ -S "$work/containerd.sock" ]] && break; sleep 0.1; done
  if ctr --address "$work/containerd.sock" images import --no-unpack=false "$work/busybox.tar" >/dev/null 2>&1; then
    ctr_args=(--ctr-socket "$work/containerd.sock" --ctr-image docker.io/library/busybox:latest)
  else
    echo "ctr image import failed; running without the containerd reference" >&2
  fi
fi

echo "measuring ($RUNS runs, $PODS pods)..." >&2
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), runc $(runc --version | head -1 | awk '{print $3}')"
echo
"$driver" bench --root "$work/skiff" --store "$work/store" --runs "$RUNS" --pods "$PODS" \
  --runc-bundle "$work/bundles" "${ctr_args[@]}"
