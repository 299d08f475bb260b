#!/usr/bin/env bash
# Pod start/stop latency of skiff-runtime beside `runc run` of the same rootfs and containerd's
# `ctr run --rm` (containerd started on a private socket), and N pods on one node. One command,
# one machine, same image. Needs root.
#
#   scripts/bench/runtime.sh            # RUNS=50 PODS=110 by default
#   RUNS=20 PODS=0 scripts/bench/runtime.sh
#   SKIP_BUILD=1 scripts/bench/runtime.sh   # reuse target/release/skiff-runtime-driver
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${RUNS:-50}"
PODS="${PODS:-110}"

[[ $EUID -eq 0 ]] || { echo "needs root" >&2; exit 1; }
for tool in runc skopeo umoci jq; do
  command -v "$tool" >/dev/null || { echo "$tool is required (scripts/install-deps.sh)" >&2; exit 1; }
done

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --quiet -p skiff-runtime --bin skiff-runtime-driver
fi
driver="$PWD/target/release/skiff-runtime-driver"

work="$(mktemp -d /tmp/skiff-bench.XXXXXX)"
containerd_pid=""
driver_pid=""
cleanup() {
  set +e
  if [[ -n "$driver_pid" ]]; then
    kill "$driver_pid" 2>/dev/null
    wait "$driver_pid" 2>/dev/null
    # Whatever the driver left in its pods' cgroups (it removes them itself on success).
    for d in /sys/fs/cgroup/*/skiff-bench-"$driver_pid" /sys/fs/cgroup/skiff-bench-"$driver_pid"; do
      [[ -d $d ]] || continue
      find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
      sleep 0.2
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  fi
  if [[ -n "$containerd_pid" ]]; then
    kill "$containerd_pid" 2>/dev/null
    wait "$containerd_pid" 2>/dev/null
  fi
  for c in $(runc list -q 2>/dev/null | grep '^runc-bench-'); do runc delete -f "$c" >/dev/null 2>&1; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  # containerd's shims may still be writing below $work for a moment after it exits.
  for _ in 1 2 3 4 5; do rm -rf "$work" 2>/dev/null && break; sleep 1; done
  [[ -e $work ]] && echo "could not remove $work" >&2
  return 0
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
"$driver" bench --root "$work/skiff" --store "$work/store" --image-archive "$work/busybox.tar" --runs "$RUNS" --pods "$PODS" \
  --runc-bundle "$work/bundles" "${ctr_args[@]}" &
driver_pid=$!
wait "$driver_pid"
driver_pid=""
