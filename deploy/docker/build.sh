#!/usr/bin/env bash
# Builds the Nimbus images locally, with no registry: the Debian base (cached), the
# `nimbus` binary on the host, then the images on top of the base.
#
#   deploy/docker/build.sh [--release] [--no-prometheus]
#     -> nimbus-base:bookworm, nimbus:dev, nimbus-prometheus:dev
#
# Env: CARGO_TARGET_DIR (default ./target), NIMBUS_IMAGE (default nimbus:dev),
#      NIMBUS_BIN (use this prebuilt binary instead of running cargo).
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=debug; prometheus=1
for a in "$@"; do
  case "$a" in
    --release) profile=release ;;
    --no-prometheus) prometheus=0 ;;
    *) echo "usage: $0 [--release] [--no-prometheus]" >&2; exit 2 ;;
  esac
done
image="${NIMBUS_IMAGE:-nimbus:dev}"
base="${NIMBUS_BASE_IMAGE:-nimbus-base:bookworm}"
export NIMBUS_BASE_IMAGE="$base"
deploy/docker/base-image.sh

bin="${NIMBUS_BIN:-}"
if [ -z "$bin" ]; then
  flag=(); [ "$profile" = release ] && flag=(--release)
  # Ask cargo where it put the binary (the target dir may be redirected).
  bin="$(cargo build -q -p nimbus --locked "${flag[@]}" --message-format=json \
    | grep -o '"executable":"[^"]*/nimbus"' | tail -1 | cut -d'"' -f4)"
  [ -x "$bin" ] || { echo "cargo build did not produce the nimbus binary" >&2; exit 1; }
fi
ctx="$(mktemp -d /var/tmp/nimbus-image.XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/nimbus"
strip --strip-debug "$ctx/nimbus" 2>/dev/null || true
docker build -q --build-arg BASE_IMAGE="$base" -t "$image" -f deploy/docker/Dockerfile "$ctx" >/dev/null
echo "built $image from $bin"
if [ "$prometheus" = 1 ]; then
  if docker image inspect nimbus-prometheus:dev >/dev/null 2>&1; then
    echo "nimbus-prometheus:dev exists"
  else
    docker build -q --build-arg BASE_IMAGE="$base" -t nimbus-prometheus:dev \
      -f deploy/docker/prometheus.Dockerfile deploy/docker >/dev/null
    echo "built nimbus-prometheus:dev"
  fi
fi
