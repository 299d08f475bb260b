#!/usr/bin/env bash
# Builds a stand-in for the `python` image, with no network: the busybox image (../busybox) plus
# Debian's CPython 3 interpreter (python3.11-minimal, libpython3.11-stdlib) and the shared
# libraries it and its extension modules load. `python`, `python3` and `python3.11` are on PATH;
# Cmd `python3`. Tests, IDLE, tkinter, ensurepip, lib2to3 and byte-code caches are left out.
#
#   images/python/build.sh OUT.tar [--tag TAG] [--name REPO]    (default docker.io/library/python:latest)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="docker.io/library/python"
# shellcheck source=../args.sh
source "$here/../args.sh"
parse_image_args "$@"

python=/usr/bin/python3.11
stdlib=/usr/lib/python3.11
[[ -x "$python" && -d "$stdlib" ]] || { echo "$python is missing: apt-get install python3.11" >&2; exit 1; }

overlay="$(mktemp -d)"
trap 'rm -rf "$overlay"' EXIT
mkdir -p "$overlay/usr/bin" "$overlay/usr/lib"
cp -a "$python" "$overlay/usr/bin/python3.11"
ln -s python3.11 "$overlay/usr/bin/python3"
ln -s python3.11 "$overlay/usr/bin/python"
tar -C /usr/lib --exclude='__pycache__' --exclude='python3.11/test' --exclude='python3.11/idlelib' \
  --exclude='python3.11/tkinter' --exclude='python3.11/ensurepip' --exclude='python3.11/lib2to3' \
  --exclude='python3.11/config-*' --exclude='python3.11/dist-packages' -cf - python3.11 \
  | tar -C "$overlay/usr/lib" -xf -

# Every shared library the interpreter and its extension modules need, at the path the host's
# loader resolves it to (the image has no ld.so.cache).
mapfile -t objects < <(printf '%s\n' "$python"; find "$stdlib/lib-dynload" -name '*.so')
mapfile -t libraries < <(ldd "${objects[@]}" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/[^ ]*ld-linux/{print $1}' | sort -u)
for lib in "${libraries[@]}"; do
  mkdir -p "$overlay$(dirname "$lib")"
  cp -L "$lib" "$overlay$lib"
done
chmod -R u+w,go-w "$overlay"
exec bash "$here/../busybox/build.sh" "$out" --name "$repo" --tag "$tag" --overlay "$overlay" \
  --cmd '["python3"]'
