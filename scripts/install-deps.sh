#!/usr/bin/env bash
# Installs the Debian packages skiff's build and tests need (idempotent; needs root).
set -euo pipefail
packages=(
  build-essential pkg-config libseccomp-dev   # libcontainer's seccomp support
  libelf-dev zlib1g-dev                        # the vendored libbpf of the cgroup v2 device filter
  busybox-static                               # test images (images/busybox/build.sh)
  iproute2 nftables iptables iputils-ping      # pod networking and the multi-node harness
  runc crun skopeo umoci docker-registry       # reference runtimes, registry tests
  jq curl
  apache2-utils openssl                        # registry tests (htpasswd, token signing)
  dnsmasq-base dnsperf                         # the cluster DNS benchmark (docs/benchmarks.md)
  python3.11 python3.11-venv                   # the python stand-in image; the Python client's venv
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
