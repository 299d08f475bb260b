#!/usr/bin/env bash
# Runs skiff-runtime's node_hardening tests on a pure cgroup v2 host: Debian's kernel under
# qemu/KVM, booted on a debootstrap root with only the unified hierarchy mounted
# (`cgroup_no_v1=all`), the test binary as init. Prints `v2-vm: PASS` or `v2-vm: FAIL` and exits
# 0 or 1. Not part of CI (needs root, /dev/kvm or V2VM_ACCEL=tcg, and a few minutes the first
# time to debootstrap).
#
#   scripts/v2-vm.sh [TEST_NAME...]
#
# Default tests: the cgroup v2 device filter through libcgroups' manager
# (on_cgroup_v2_a_root_process_cannot_open_a_disk_node_it_made) and a root pod that makes a node
# for the VM's disk and tries to read it (a_root_pod_cannot_read_the_host_disk_through_mknod).
#
# Environment: V2VM_TEST_BIN (a test binary built already: skips the build), V2VM_DIR (cache of
# the root file system and disk image, default /var/tmp/skiff-v2-vm), V2VM_MIRROR (Debian mirror; default
# the first one in this machine's apt sources), V2VM_ACCEL (`kvm`, the default, or `tcg` where
# nested KVM does not boot, e.g. inside a Firecracker VM: then about 30 s of emulation).
set -euo pipefail
cd "$(dirname "$0")/.."

tests=("$@")
if ((${#tests[@]} == 0)); then
  tests=(on_cgroup_v2_a_root_process_cannot_open_a_disk_node_it_made
    a_root_pod_cannot_read_the_host_disk_through_mknod)
fi
accel="${V2VM_ACCEL:-kvm}"
dir="${V2VM_DIR:-/var/tmp/skiff-v2-vm}"
[[ $(id -u) == 0 ]] || { echo "v2-vm: needs root (debootstrap, mkfs)" >&2; exit 2; }
[[ $accel != kvm || -e /dev/kvm ]] || { echo "v2-vm: needs /dev/kvm (or V2VM_ACCEL=tcg)" >&2; exit 2; }
for tool in debootstrap qemu-system-x86_64 mkfs.ext4 jq strings; do
  command -v "$tool" >/dev/null || { echo "v2-vm: needs $tool (apt-get install debootstrap qemu-system-x86 e2fsprogs jq binutils)" >&2; exit 2; }
done

# The test binary (V2VM_TEST_BIN, else built here and taken from the target directory).
bin="${V2VM_TEST_BIN:-}"
if [[ -z "$bin" ]]; then
  bin=$(cargo test --workspace --no-run --test node_hardening --message-format=json |
    jq -r 'select(.target.name == "node_hardening" and .executable != null) | .executable')
fi
echo "v2-vm: test binary $bin" >&2

# The root file system, once: minbase plus the kernel and the tools the tests call.
if [[ ! -e "$dir/root/.done" ]]; then
  mirror="${V2VM_MIRROR:-}"
  if [[ -z "$mirror" ]]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
      true)
    [[ -n "$mirror" ]] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
  fi
  rm -rf "$dir/root"
  mkdir -p "$dir"
  debootstrap --variant=minbase \
    --include=linux-image-amd64,util-linux,mount,kmod,libseccomp2 \
    bookworm "$dir/root" "$mirror" >&2
  touch "$dir/root/.done"
fi

# The test image, at the absolute path the test binary looks for it: skiff-testkit's
# workspace root is compiled in (and with a shared CARGO_TARGET_DIR it may be another checkout's).
workspace=$(strings "$bin" | grep -o '/[^ "]*/crates/skiff-testkit' | head -1)
workspace="${workspace%/crates/skiff-testkit}"
image="${workspace:-$PWD}/target/test-images/busybox-latest.tar"
if [[ ! -e "$image" ]]; then
  mkdir -p "$(dirname "$image")"
  bash images/busybox/build.sh "$image" --tag latest >&2
fi
mkdir -p "$dir/root$(dirname "$image")"
cp "$image" "$dir/root$image"

# The init script: mounts a pure v2 system and runs the tests.
install -m 0755 "$bin" "$dir/root/node_hardening"
cat >"$dir/root/v2-init" <<EOF
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
# The initramfs hands over /proc, /sys, /dev (and /run) already mounted.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
modprobe loop 2>/dev/null
echo "v2-vm: cgroup mounts: \$(grep cgroup /proc/mounts | tr '\n' ';')"
cd /
if SKIFF_E2E_REQUIRED=1 /node_hardening --exact ${tests[*]} --test-threads=1 --nocapture; then
  echo "v2-vm: PASS"
else
  echo "v2-vm: FAIL"
fi
sync
echo o >/proc/sysrq-trigger
sleep 10
EOF
chmod 0755 "$dir/root/v2-init"

# A disk image of the root, and the VM.
rm -f "$dir/root.img"
mkfs.ext4 -q -F -L v2root -d "$dir/root" "$dir/root.img" 2G >&2
kernel=$(ls "$dir"/root/boot/vmlinuz-* | tail -1)
initrd=$(ls "$dir"/root/boot/initrd.img-* | tail -1)
log="$dir/console.log"
if [[ $accel == kvm ]]; then accel_args=(-enable-kvm); else accel_args=(-accel tcg -cpu max); fi
timeout 600 qemu-system-x86_64 "${accel_args[@]}" -m 1024 -smp 2 -nodefaults -display none -serial mon:stdio -no-reboot \
  -kernel "$kernel" -initrd "$initrd" \
  -drive "file=$dir/root.img,format=raw,if=virtio" \
  -append "root=/dev/vda rw console=ttyS0 quiet init=/v2-init cgroup_no_v1=all panic=-1" \
  | tee "$log" >&2 || true
rm -f "$dir/root.img"
if grep -q '^v2-vm: PASS' "$log"; then
  echo "v2-vm: PASS"
  exit 0
fi
echo "v2-vm: FAIL (console log: $log)"
exit 1
