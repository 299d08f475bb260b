#!/usr/bin/env bash
# Builds a stand-in for the `nginx` image, with no network: the busybox image (../busybox) whose
# Cmd is busybox httpd serving nginx's default welcome page on port 80 from
# /usr/share/nginx/html, as the real image does. Clients' own test suites use `nginx` and check
# for "Welcome to nginx!".
#
#   images/nginx/build.sh OUT.tar [--tag TAG] [--name REPO]     (default docker.io/library/nginx:latest)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="docker.io/library/nginx"
# shellcheck source=../args.sh
source "$here/../args.sh"
parse_image_args "$@"

overlay="$(mktemp -d)"
trap 'rm -rf "$overlay"' EXIT
mkdir -p "$overlay/usr/share/nginx/html"
cat >"$overlay/usr/share/nginx/html/index.html" <<'HTML'
<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>
<p><em>Thank you for using nginx.</em></p>
</body>
</html>
HTML
chmod -R u=rwX,go=rX "$overlay"
exec bash "$here/../busybox/build.sh" "$out" --name "$repo" --tag "$tag" --overlay "$overlay" \
  --cmd '["httpd","-f","-p","80","-h","/usr/share/nginx/html"]'
