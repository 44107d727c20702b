#!/usr/bin/env bash
# Starts the Compose cluster: creates the shared cluster key once, builds the images if
# they are missing, then `docker-compose up -d`. Pass service names to start only those
# (for example `up.sh meta1 meta2 meta3`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
mkdir -p secrets
if [ ! -s secrets/cluster.key ]; then
  (umask 077 && head -c 32 /dev/urandom > secrets/cluster.key)
  echo "created secrets/cluster.key (back it up: metadata snapshots are useless without it)"
fi
if ! docker image inspect "${NIMBUS_IMAGE:-nimbus:dev}" >/dev/null 2>&1; then
  "$here/../docker/build.sh"
fi
docker-compose -p "${COMPOSE_PROJECT_NAME:-nimbus}" up -d "$@"
