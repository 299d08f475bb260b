#!/usr/bin/env bash
# Builds a busybox test image from Debian's busybox-static, with no network.
#
#   images/busybox/build.sh OUT.tar [--tag TAG] [--name REPO] [--docker-archive OUT2.tar]
#                           [--overlay DIR] [--cmd JSON-ARRAY]
#
# OUT.tar is an OCI image-layout archive holding one image named
# docker.io/library/busybox:latest (or REPO:TAG), annotated with both
# `io.containerd.image.name` (the full name) and `org.opencontainers.image.ref.name` (the tag).
# The rootfs: /bin/busybox with every applet as a hard link in /bin (as the upstream busybox
# image), /etc/passwd and /etc/group with root and nobody, /etc/skiff-image-tag holding TAG
# (so every tag is a different image, e.g. for rolling-update tests), empty /tmp /root /home
# /proc /sys /dev. Default Cmd `sh`, PATH as upstream.
#
# The output is deterministic: fixed mtimes, owners and order, `gzip -n`, so the same busybox
# package always gives the same digests.
#
# --docker-archive OUT2.tar also writes the same image as a `docker save` archive (via skopeo).
# --overlay DIR copies DIR's tree over the rootfs (the other recipes in images/ build on this);
# --cmd sets the image's Cmd (a JSON array, default ["sh"]).
set -euo pipefail

usage() {
  echo "usage: $0 OUT.tar [--tag TAG] [--name REPO] [--docker-archive OUT2.tar] [--overlay DIR] [--cmd JSON]" >&2
  exit 2
}

out=""
tag="latest"
repo="docker.io/library/busybox"
docker_out=""
overlay=""
cmd='["sh"]'
while (($#)); do
  case "$1" in
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    --name) repo="${2:?--name needs a value}"; shift 2 ;;
    --docker-archive) docker_out="${2:?--docker-archive needs a value}"; shift 2 ;;
    --overlay) overlay="${2:?--overlay needs a directory}"; shift 2 ;;
    --cmd) cmd="${2:?--cmd needs a JSON array}"; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [[ -z "$out" ]] || usage; out="$1"; shift ;;
  esac
done
[[ -n "$out" ]] || usage
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "invalid tag '$tag'" >&2; exit 2; }
[[ -z "$overlay" || -d "$overlay" ]] || { echo "--overlay $overlay is not a directory" >&2; exit 2; }
jq -e 'type == "array" and all(type == "string")' <<<"$cmd" >/dev/null 2>&1 \
  || { echo "--cmd must be a JSON array of strings, got '$cmd'" >&2; exit 2; }

busybox_bin=/bin/busybox
if ! "$busybox_bin" --list >/dev/null 2>&1 || ldd "$busybox_bin" >/dev/null 2>&1; then
  echo "$busybox_bin is missing or not static: apt-get install busybox-static" >&2
  exit 1
fi
for tool in jq sha256sum gzip tar; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
  amd64|x86_64) arch=amd64; variant="" ;;
  arm64|aarch64) arch=arm64; variant="v8" ;;
  armhf|armv7l) arch=arm; variant="v7" ;;
  i386|i686) arch=386; variant="" ;;
  *) arch="$(dpkg --print-architecture)"; variant="" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
layout="$work/layout"

# --- rootfs -----------------------------------------------------------------------------------
mkdir -p "$rootfs"/{bin,dev,etc,home,proc,root,sys,tmp,usr,var}
chmod 0755 "$rootfs" "$rootfs"/{bin,dev,etc,home,proc,sys,usr,var}
chmod 0700 "$rootfs/root"
chmod 1777 "$rootfs/tmp"
install -m 0755 "$busybox_bin" "$rootfs/bin/busybox"
for applet in $("$busybox_bin" --list); do
  [[ "$applet" == busybox ]] && continue
  ln "$rootfs/bin/busybox" "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$rootfs/etc/group"
printf '%s\n' "$tag" >"$rootfs/etc/skiff-image-tag"
chmod 0644 "$rootfs"/etc/{passwd,group,skiff-image-tag}
if [[ -n "$overlay" ]]; then
  cp -a "$overlay"/. "$rootfs"/
  chmod 0755 "$rootfs"  # the overlay's own mode (often a 0700 temp dir) is not the image root's
fi

# --- layer --------------------------------------------------------------------------------------
deterministic_tar=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu)
mkdir -p "$layout/blobs/sha256"
tar -C "$rootfs" "${deterministic_tar[@]}" -cf "$work/layer.tar" .
diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
gzip -n -9 "$work/layer.tar"

# put FILE into the blob store and print its descriptor fields "digest size"
add_blob() {
  local hex size
  hex="$(sha256sum "$1" | cut -d' ' -f1)"
  size="$(stat -c %s "$1")"
  mv "$1" "$layout/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}
read -r layer_digest layer_size < <(add_blob "$work/layer.tar.gz")

# --- config, manifest, index --------------------------------------------------------------------
jq -cnS --arg arch "$arch" --arg variant "$variant" --arg diff_id "$diff_id" --arg tag "$tag" \
  --argjson cmd "$cmd" --arg repo "$repo" '{
  created: "2024-01-01T00:00:00Z",
  architecture: $arch,
  os: "linux",
  config: {
    Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    Cmd: $cmd
  },
  rootfs: { type: "layers", diff_ids: [$diff_id] },
  history: [{ created: "2024-01-01T00:00:00Z", created_by: ("images/busybox/build.sh --name " + $repo + " --tag " + $tag) }]
} + (if $variant == "" then {} else { variant: $variant } end)' | tr -d '\n' >"$work/config.json"
read -r config_digest config_size < <(add_blob "$work/config.json")

jq -cnS --arg cd "$config_digest" --argjson cs "$config_size" \
  --arg ld "$layer_digest" --argjson ls "$layer_size" '{
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs },
  layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls }]
}' | tr -d '\n' >"$work/manifest.json"
read -r manifest_digest manifest_size < <(add_blob "$work/manifest.json")

jq -cnS --arg md "$manifest_digest" --argjson ms "$manifest_size" --arg name "$repo:$tag" \
  --arg tag "$tag" --arg arch "$arch" --arg variant "$variant" '{
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [{
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: $md,
    size: $ms,
    platform: ({ architecture: $arch, os: "linux" } + (if $variant == "" then {} else { variant: $variant } end)),
    annotations: { "io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $tag }
  }]
}' | tr -d '\n' >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

# --- archive ------------------------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
tar -C "$layout" "${deterministic_tar[@]}" -cf "$out.tmp.$$" oci-layout index.json blobs
mv "$out.tmp.$$" "$out"
echo "$out: $repo:$tag $manifest_digest (image id $config_digest)"

if [[ -n "$docker_out" ]]; then
  command -v skopeo >/dev/null || { echo "skopeo is required for --docker-archive" >&2; exit 1; }
  rm -f "$docker_out"
  skopeo copy --quiet "oci-archive:$out" "docker-archive:$docker_out:$repo:$tag"
  echo "$docker_out: docker-save archive of $repo:$tag"
fi
