# Sourced by the stand-in recipes built on the busybox image (nginx, python): reads
# `OUT.tar [--tag TAG] [--name REPO]` into $out, $tag and $repo. Set $repo's default first.
parse_image_args() {
  out="${1:?usage: $0 OUT.tar [--tag TAG] [--name REPO]}"
  shift
  tag="latest"
  while (($#)); do
    case "$1" in
      --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
      --name) repo="${2:?--name needs a value}"; shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
}
