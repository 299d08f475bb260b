#!/usr/bin/env bash
# Quick start on a fresh Debian machine, as root: installs the packages skiff needs, builds the
# release binary, and starts a single-node cluster (embedded datastore, local node) with the
# busybox example image imported and the example workload (configs/manifests/hello.yaml)
# running. Prints how to use the cluster when everything is Ready.
#
#   scripts/quickstart.sh                  # data in /var/lib/skiff, API on port 6443
#   SKIFF_DATA_DIR=/tmp/s SKIFF_PORT=7443 scripts/quickstart.sh
#   scripts/quickstart.sh stop             # stop the cluster started without systemd
#
# With systemd running, skiff is installed as the `skiff` service (scripts/install.sh; remove
# it with /usr/local/bin/skiff-uninstall.sh). Without systemd (containers, build machines) the
# server runs in the background; its log is DIR/skiff.log and `scripts/quickstart.sh stop`
# stops it.
#
# Nothing is fetched but Debian packages and crates: the image is built from Debian's
# busybox-static (images/busybox/build.sh) and imported from DIR/agent/images at start.
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir=${SKIFF_DATA_DIR:-/var/lib/skiff}
port=${SKIFF_PORT:-6443}
pid_file=$data_dir/skiff.pid
kubeconfig=$data_dir/server/admin.kubeconfig

step() { printf '\n==> %s\n' "$*"; }
die() { echo "quickstart: error: $*" >&2; exit 1; }

if [[ ${1:-} == stop ]]; then
  [[ -f $pid_file ]] || die "no cluster started by quickstart in $data_dir ($pid_file missing)"
  pid=$(cat "$pid_file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  rm -f "$pid_file"
  echo "skiff server stopped (pods keep running until the next start; remove them with:"
  echo "  target/release/skiff agent --cleanup --data-dir $data_dir)"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "run as root (skiff runs containers and sets up pod networking)"
command -v cargo >/dev/null || die "cargo is needed to build skiff: install a Rust toolchain (rustup) first"

step "Installing Debian packages (scripts/install-deps.sh)"
scripts/install-deps.sh

step "Building skiff (cargo build --release; a few minutes on a small machine)"
cargo build --release --locked -p skiff
binary=$PWD/target/release/skiff

step "Building the busybox image and the example workload"
mkdir -p "$data_dir/agent/images" "$data_dir/server/manifests"
images/busybox/build.sh "$data_dir/agent/images/busybox.tar" >/dev/null
cp configs/manifests/hello.yaml "$data_dir/server/manifests/hello.yaml"

if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  step "Installing and starting the skiff service (scripts/install.sh)"
  scripts/install.sh --binary "$binary" --data-dir "$data_dir" -- --https-listen-port "$port"
else
  step "Starting skiff server in the background (no systemd here)"
  if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "already running (pid $(cat "$pid_file"))"
  else
    nohup "$binary" server --data-dir "$data_dir" --https-listen-port "$port" \
      >>"$data_dir/skiff.log" 2>&1 &
    echo $! >"$pid_file"
    echo "pid $(cat "$pid_file"), log $data_dir/skiff.log"
  fi
fi

step "Waiting for the node and the example workload"
for _ in $(seq 150); do [[ -f $kubeconfig ]] && break; sleep 0.2; done
[[ -f $kubeconfig ]] || die "the server wrote no $kubeconfig; see $data_dir/skiff.log or journalctl -u skiff"
export KUBECONFIG=$kubeconfig
for _ in $(seq 60); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
for _ in $(seq 60); do [[ -n $(kubectl get nodes -o name 2>/dev/null) ]] && break; sleep 0.5; done
kubectl wait --for=condition=Ready node --all --timeout=120s
for _ in $(seq 60); do kubectl get deployment hello >/dev/null 2>&1 && break; sleep 0.5; done
kubectl rollout status deployment/hello --timeout=180s
kubectl get nodes -o wide
kubectl get pods -o wide

# The server's banner has the exact join line (address and token).
join=$(grep -ho 'skiff agent --server .*' "$data_dir/skiff.log" 2>/dev/null | tail -n 1 || true)
[[ -n $join ]] || join="skiff agent --server https://<this machine's address>:$port --token \$(cat $data_dir/server/node-token)"
cat <<EOF

skiff is running: a single-node cluster with the example workload.
  export KUBECONFIG=$kubeconfig
  kubectl get pods -o wide
  wget -qO- http://\$(kubectl get pod -l app=hello -o jsonpath='{.items[0].status.podIP}'):8080/
Join another machine:
  $join
EOF
