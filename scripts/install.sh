#!/usr/bin/env bash
# Installs skiff as a systemd service: the binary, /etc/skiff/config.yaml, a unit, an uninstall
# script; then enables and starts it. A server is installed unless a server URL is given, in
# which case this machine joins that server as an agent (as k3s' install script does).
#
# Needs nothing from the network: the binary comes from --binary (or SKIFF_BINARY, or a
# `skiff` beside this script, or target/release/skiff of this checkout).
#
#   scripts/install.sh                                   # server (control plane + node)
#   scripts/install.sh --server https://10.0.0.1:6443 --token K10...   # agent
#   scripts/install.sh --root /tmp/img --dry-run         # show what would be written where
#
# Options (environment variable in brackets):
#   --binary PATH         skiff binary to install [SKIFF_BINARY]
#   --server URL          join this server as an agent [SKIFF_URL]
#   --token TOKEN         join token (DIR/server/node-token on the server) [SKIFF_TOKEN]
#   --node-name NAME      node name (default: the host name) [SKIFF_NODE_NAME]
#   --node-label K=V      node label; repeatable
#   --node-taint K=V:E    node taint; repeatable
#   --data-dir DIR        data directory (default /var/lib/skiff)
#   --images PATH         image archive, or directory of archives, copied to
#                         DIR/agent/images/ and imported at start (air-gapped sites)
#   --root DIR            install below DIR instead of / (an image being prepared, tests):
#                         the unit is enabled by its symlink; systemctl is not called
#   --dry-run             print what would be done; change nothing
#   --no-start            enable, but do not start now [INSTALL_SKIFF_SKIP_START=true]
#   --no-enable           neither enable nor start [INSTALL_SKIFF_SKIP_ENABLE=true]
#   --force-config        overwrite an existing config.yaml
#   -- FLAGS...           extra flags for `skiff server|agent` in the unit's ExecStart
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd)

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

die() {
  echo "install.sh: error: $*" >&2
  exit 1
}

binary=${SKIFF_BINARY:-}
server_url=${SKIFF_URL:-}
token=${SKIFF_TOKEN:-}
node_name=${SKIFF_NODE_NAME:-}
data_dir=""
images=""
root=""
dry_run=false
start=true
enable=true
force_config=false
labels=()
taints=()
extra=()
[[ ${INSTALL_SKIFF_SKIP_START:-} == true ]] && start=false
[[ ${INSTALL_SKIFF_SKIP_ENABLE:-} == true ]] && { enable=false; start=false; }

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --binary) need_value "$@"; binary=$2; shift 2 ;;
    --server) need_value "$@"; server_url=$2; shift 2 ;;
    --token) need_value "$@"; token=$2; shift 2 ;;
    --node-name) need_value "$@"; node_name=$2; shift 2 ;;
    --node-label) need_value "$@"; labels+=("$2"); shift 2 ;;
    --node-taint) need_value "$@"; taints+=("$2"); shift 2 ;;
    --data-dir) need_value "$@"; data_dir=$2; shift 2 ;;
    --images) need_value "$@"; images=$2; shift 2 ;;
    --root) need_value "$@"; root=$2; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --no-start) start=false; shift ;;
    --no-enable) enable=false; start=false; shift ;;
    --force-config) force_config=true; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

# --- validate -------------------------------------------------------------------------------
if [[ -n $server_url ]]; then
  role=agent
  unit=skiff-agent.service
  [[ $server_url == https://* ]] || die "--server must be https://HOST:PORT, not '$server_url'"
  [[ -n $token ]] || die "an agent needs --token (the server prints it; it is in DIR/server/node-token)"
else
  role=server
  unit=skiff.service
fi
for label in ${labels[@]+"${labels[@]}"}; do
  [[ $label == ?*=* ]] || die "--node-label '$label' is not KEY=VALUE"
done
for taint in ${taints[@]+"${taints[@]}"}; do
  [[ $taint =~ ^[^=:]+(=[^:]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$ ]] \
    || die "--node-taint '$taint' is not KEY=VALUE:EFFECT (EFFECT: NoSchedule, PreferNoSchedule or NoExecute)"
done
if [[ -n $data_dir && $data_dir != /* ]]; then
  die "--data-dir must be an absolute path, not '$data_dir'"
fi
if [[ -n $images && ! -e $images ]]; then
  die "--images '$images' is not a file or directory"
fi
if [[ -n $root ]]; then
  [[ $root == /* ]] || root="$(pwd)/$root"
  root=${root%/}
fi

if [[ -z $binary ]]; then
  for candidate in "$script_dir/skiff" "$script_dir/../target/release/skiff"; do
    if [[ -x $candidate ]]; then binary=$candidate; break; fi
  done
fi
[[ -n $binary ]] || die "no skiff binary: pass --binary PATH (build one with: cargo build --release)"
[[ -f $binary && -x $binary ]] || die "--binary '$binary' is not an executable file"

if [[ -z $root && $dry_run == false && $(id -u) -ne 0 ]]; then
  die "run as root (or use --root DIR / --dry-run)"
fi

bin_dir=/usr/local/bin
etc_dir=/etc/skiff
unit_dir=/etc/systemd/system
effective_data_dir=${data_dir:-/var/lib/skiff}

# --- actions (printed in --dry-run) ---------------------------------------------------------
say() { echo "[install] $*"; }

# write_file MODE PATH < content
write_file() {
  local mode=$1 path=$root$2 content
  content=$(cat)
  if $dry_run; then
    say "would write $2 (mode $mode):"
    sed 's/^/    | /' <<<"$content"
    return
  fi
  mkdir -p "$(dirname "$path")"
  local tmp="$path.tmp.$$"
  (umask 077; printf '%s\n' "$content" >"$tmp")
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$path"
  say "wrote $2"
}

copy_file() {
  local mode=$1 from=$2 to=$3
  if $dry_run; then
    say "would install $from as $to (mode $mode)"
    return
  fi
  mkdir -p "$(dirname "$root$to")"
  local tmp="$root$to.tmp.$$"
  cp -f "$from" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$root$to"
  say "installed $to"
}

yaml_quote() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

config_yaml() {
  echo "# skiff $role configuration, written by install.sh. Keys are the flag names of"
  echo "# \`skiff $role --help\`; flags and SKIFF_* environment variables override them."
  echo "# Check it with: skiff check-config"
  if [[ $role == agent ]]; then
    echo "server: $(yaml_quote "$server_url")"
    echo "token: $(yaml_quote "$token")"
  fi
  [[ -n $data_dir ]] && echo "data-dir: $(yaml_quote "$data_dir")"
  [[ -n $node_name ]] && echo "node-name: $(yaml_quote "$node_name")"
  if ((${#labels[@]})); then
    echo "node-label:"
    for label in "${labels[@]}"; do echo "  - $(yaml_quote "$label")"; done
  fi
  if ((${#taints[@]})); then
    echo "node-taint:"
    for taint in "${taints[@]}"; do echo "  - $(yaml_quote "$taint")"; done
  fi
  return 0
}

unit_file() {
  local exec="$bin_dir/skiff $role"
  local arg
  for arg in ${extra[@]+"${extra[@]}"}; do
    exec+=" $(printf '%q' "$arg")"
  done
  local description
  if [[ $role == server ]]; then
    description="skiff server: Kubernetes-style edge cluster (control plane and node)"
  else
    description="skiff agent: Kubernetes-style edge cluster node"
  fi
  cat <<EOF
[Unit]
Description=$description
Documentation=https://github.com/skiff-dev/skiff
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
EnvironmentFile=-$etc_dir/skiff.env
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$exec
# Containers run in their own cgroups and outlive restarts of skiff; only skiff itself is
# stopped (on hybrid cgroup v1 hosts they share the unit's name=systemd cgroup).
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s

[Install]
WantedBy=multi-user.target
EOF
}

say "installing skiff $role from $binary${root:+ under $root}"
$dry_run && say "dry run: nothing is changed"

copy_file 0755 "$binary" "$bin_dir/skiff"
if [[ -f $script_dir/uninstall.sh ]]; then
  copy_file 0755 "$script_dir/uninstall.sh" "$bin_dir/skiff-uninstall.sh"
fi

config_path=$etc_dir/config.yaml
if [[ -e $root$config_path && $force_config == false ]]; then
  say "keeping the existing $config_path (use --force-config to replace it)"
else
  config_yaml | write_file 0600 "$config_path"
fi
printf 'overlay\nvxlan\n' | write_file 0644 /etc/modules-load.d/skiff.conf
unit_file | write_file 0644 "$unit_dir/$unit"

if [[ -n $images ]]; then
  image_dir=$effective_data_dir/agent/images
  if [[ -d $images ]]; then
    shopt -s nullglob
    archives=("$images"/*.tar "$images"/*.tar.gz "$images"/*.tgz "$images"/*.tar.zst)
    shopt -u nullglob
  else
    archives=("$images")
  fi
  ((${#archives[@]})) || die "--images '$images' holds no image archives (*.tar, *.tar.gz, *.tgz, *.tar.zst)"
  for archive in "${archives[@]}"; do
    [[ -f $archive ]] || die "--images: '$archive' is not a file"
    copy_file 0644 "$archive" "$image_dir/$(basename "$archive")"
  done
fi

# --- enable and start -----------------------------------------------------------------------
if [[ -z $root && $dry_run == false ]]; then
  if ! command -v nft >/dev/null 2>&1; then
    say "warning: nftables (nft) is not installed; pods need it: apt-get install nftables"
  fi
  "$bin_dir/skiff" check-config --role "$role" --config "$config_path" >/dev/null 2>&1 \
    || say "warning: skiff check-config reports problems; run it to see them: skiff check-config"
fi
if ! $enable; then
  say "not enabled (--no-enable)"
elif [[ -n $root ]]; then
  # What `systemctl enable` does, without a running systemd.
  link=$unit_dir/multi-user.target.wants/$unit
  if $dry_run; then
    say "would link $link -> $unit_dir/$unit"
  else
    mkdir -p "$root$unit_dir/multi-user.target.wants"
    ln -sfn "$unit_dir/$unit" "$root$link"
    say "enabled $unit (linked $link)"
  fi
elif $dry_run; then
  say "would run: systemctl daemon-reload && systemctl enable $unit"
  $start && say "would run: systemctl restart $unit"
elif [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemctl enable "$unit" >/dev/null 2>&1
  say "enabled $unit"
  if $start; then
    systemctl restart "$unit"
    say "started $unit; follow it with: journalctl -u $unit -f"
  fi
else
  say "systemd is not running here: $unit is installed but not enabled; run skiff directly:"
  say "  $bin_dir/skiff $role"
fi

if [[ $role == server ]]; then
  say "when it runs: export KUBECONFIG=$effective_data_dir/server/admin.kubeconfig; kubectl get nodes"
  say "join agents with the line the server prints at its first start (journalctl -u $unit)"
fi
say "uninstall with: $bin_dir/skiff-uninstall.sh"
