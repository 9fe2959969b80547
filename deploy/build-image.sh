#!/usr/bin/env bash
# Builds Relay's container image from the repository's Dockerfile without
# reaching a registry: the static binary is built here with the host's Go,
# then copied onto scratch with the host's CA certificates.
#
#   deploy/build-image.sh [--save FILE]
#
#   IMAGE       the tag (default relay:dev)
#   CONTAINER   the engine: podman (the default when installed) or docker
#   CA_CERTS    the CA bundle to copy (default /etc/ssl/certs/ca-certificates.crt)
#   GOARCH      the image's architecture (default the host's)
#   --save FILE also write the image to FILE as a docker-archive tar
#               (what `podman load` / `docker load` read, and what
#               deploy/image_test.go checks)
#
# Needs Go, git (optional: the version is "dev" without it) and podman or docker.
set -euo pipefail

usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; }

save=""
while [ $# -gt 0 ]; do
  case "$1" in
    --save) [ $# -ge 2 ] || { echo "build-image.sh: --save needs a file" >&2; exit 2; }
            save="$2"; shift 2 ;;
    --save=*) save="${1#--save=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
image="${IMAGE:-relay:dev}"
certs="${CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"

engine="${CONTAINER:-}"
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then
    engine=podman
  elif command -v docker >/dev/null 2>&1; then
    engine=docker
  else
    echo "build-image.sh: neither podman nor docker is installed (Debian: apt-get install podman)" >&2
    exit 1
  fi
fi
if [ ! -s "$certs" ]; then
  echo "build-image.sh: no CA certificates at $certs (Debian: apt-get install ca-certificates, or set CA_CERTS)" >&2
  exit 1
fi

version="$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)"
commit="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/relay-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT

goarch="${GOARCH:-$(go env GOARCH)}"
echo "building relay $version (commit $commit) for linux/$goarch with $(go version)" >&2
(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" \
  go build -trimpath -ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
  -o "$ctx/relay" ./cmd/relay)

cp "$root/Dockerfile" "$ctx/Dockerfile"
cp "$certs" "$ctx/ca-certificates.crt"
cp "$root/deploy/relay.container.yaml" "$ctx/relay.yaml"
printf 'root:x:0:0:root:/:/sbin/nologin\nrelay:x:65532:65532:relay:/data:/sbin/nologin\n' >"$ctx/passwd"
printf 'root:x:0:\nrelay:x:65532:\n' >"$ctx/group"
mkdir "$ctx/data"
chmod 0755 "$ctx/relay" "$ctx/data"
chmod 0644 "$ctx/ca-certificates.crt" "$ctx/relay.yaml" "$ctx/passwd" "$ctx/group"

args=(build -f "$ctx/Dockerfile" -t "$image"
  --build-arg "VERSION=$version" --build-arg "COMMIT=$commit")
if [ "$goarch" != "$(go env GOHOSTARCH)" ]; then
  args+=(--platform "linux/$goarch") # the image's architecture is the binary's
fi
if [ "$(basename "$engine")" = podman ]; then
  # The OCI image format has no HEALTHCHECK: keep Docker's.
  args+=(--format docker)
fi
echo "building image $image with $engine" >&2
"$engine" "${args[@]}" "$ctx"

if [ -n "$save" ]; then
  rm -f "$save"
  if [ "$(basename "$engine")" = podman ]; then
    "$engine" save --format docker-archive -o "$save" "$image"
  else
    "$engine" save -o "$save" "$image"
  fi
  echo "saved $image to $save" >&2
fi
echo "$image"
