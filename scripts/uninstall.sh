#!/usr/bin/env bash
# Removes what scripts/install.sh installed (it installs itself as
# /usr/local/bin/skiff-uninstall.sh): stops and disables the units, stops every pod and removes
# skiff's network set-up (`skiff agent --cleanup`), unmounts what is left under the data
# directory, removes skiff's cgroups, then deletes the unit files, the binary, /etc/skiff and
# the data directory.
#
# Options:
#   --root DIR      remove what was installed below DIR (see install.sh --root); no systemctl,
#                   no cleanup of the running machine
#   --dry-run       print what would be done; change nothing
#   --keep-data     keep the data directory (cluster state, images, node identity)
#   --keep-config   keep /etc/skiff
set -euo pipefail

die() {
  echo "uninstall: error: $*" >&2
  exit 1
}

root=""
dry_run=false
keep_data=false
keep_config=false
while [[ $# -gt 0 ]]; do
  case $1 in
    --root) [[ $# -ge 2 && -n $2 ]] || die "--root needs a value"; root=$2; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --keep-data) keep_data=true; shift ;;
    --keep-config) keep_config=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
if [[ -n $root ]]; then
  [[ $root == /* ]] || root="$(pwd)/$root"
  root=${root%/}
fi
if [[ -z $root && $dry_run == false && $(id -u) -ne 0 ]]; then
  die "run as root (or use --root DIR / --dry-run)"
fi

say() { echo "[uninstall] $*"; }
run() {
  if $dry_run; then say "would run: $*"; else "$@"; fi
}
remove() {
  local path=$root$1
  if [[ -e $path || -L $path ]]; then
    if $dry_run; then
      say "would remove $1"
    else
      rm -rf -- "$path"
      say "removed $1"
    fi
  fi
}

bin=/usr/local/bin/skiff
config=/etc/skiff/config.yaml
units=(skiff.service skiff-agent.service)

# The data directory the config names, else the default.
data_dir=/var/lib/skiff
if [[ -f $root$config ]]; then
  configured=$(sed -n 's/^data-dir:[[:space:]]*//p' "$root$config" | tail -n1 | sed 's/^"\(.*\)"$/\1/; s/^'"'"'\(.*\)'"'"'$/\1/')
  [[ -n $configured ]] && data_dir=$configured
fi
[[ $data_dir == /* && $data_dir != / ]] || die "refusing to work on data directory '$data_dir'"

# --- stop the running node --------------------------------------------------------------------
if [[ -z $root ]]; then
  if [[ -d /run/systemd/system ]]; then
    for unit in "${units[@]}"; do
      if [[ -f /etc/systemd/system/$unit ]]; then
        run systemctl disable --now "$unit" || true
      fi
    done
  fi
  if [[ -x $bin && -d $data_dir/agent ]]; then
    # Stops and removes every pod, the pod network and its nftables table.
    run "$bin" agent --cleanup --data-dir "$data_dir" || say "warning: skiff agent --cleanup failed; continuing"
  fi
  # Mounts left below the data directory (deepest first).
  if [[ -r /proc/self/mounts ]]; then
    while read -r mount; do
      run umount -l "$mount" || true
    done < <(awk -v d="$data_dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  fi
  # skiff's cgroups (default parent /skiff) in every hierarchy, deepest first.
  for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/*/; do
    dir=${hierarchy%/}/skiff
    [[ -d $dir ]] || continue
    while read -r cg; do
      run rmdir "$cg" 2>/dev/null || true
    done < <(find "$dir" -depth -type d 2>/dev/null)
  done
  if command -v nft >/dev/null 2>&1 && nft list table inet skiff >/dev/null 2>&1; then
    run nft delete table inet skiff || true
  fi
fi

# --- files ------------------------------------------------------------------------------------
for unit in "${units[@]}"; do
  remove "/etc/systemd/system/multi-user.target.wants/$unit"
  remove "/etc/systemd/system/$unit"
done
if [[ -z $root && -d /run/systemd/system ]]; then
  run systemctl daemon-reload || true
fi
remove /etc/modules-load.d/skiff.conf
if $keep_config; then
  say "keeping /etc/skiff"
else
  remove /etc/skiff
fi
if $keep_data; then
  say "keeping $data_dir"
else
  remove "$data_dir"
fi
remove "$bin"
remove /usr/local/bin/skiff-uninstall.sh
say "done"
