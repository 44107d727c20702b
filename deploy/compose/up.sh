#!/usr/bin/env bash
# Starts the Compose cluster: creates the shared cluster key and the TLS certificates
# once, builds the images if they are missing, then `docker-compose up -d`. Pass service names to start only those
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
# The cluster CA and one certificate per service, made once with the image's own
# `nimbus cert` (secrets/tls/ca holds the CA key: keep it off the nodes and backed up).
tls="$(mkdir -p "${NIMBUS_TLS:-$here/secrets/tls}" && cd "${NIMBUS_TLS:-$here/secrets/tls}" && pwd)"
nimbus_cert() { docker run --rm -v "$tls:/tls" "${NIMBUS_IMAGE:-nimbus:dev}" cert "$@" >/dev/null; }
[ -s "$tls/ca/ca-key.pem" ] || { nimbus_cert init-ca --out /tls/ca; echo "created the cluster CA in $tls/ca"; }
issue() { # ROLE NAME
  [ -s "$tls/$2/cert.pem" ] || nimbus_cert issue --ca /tls/ca --role "$1" --name "$2" --san "$2,localhost,127.0.0.1" --out "/tls/$2"
}
for m in meta1 meta2 meta3; do issue meta "$m"; done
for g in gateway1 gateway2; do issue gateway "$g"; done
for w in worker-a1 worker-a2 worker-b1; do issue worker "$w"; done
issue admin admin
docker-compose -p "${COMPOSE_PROJECT_NAME:-nimbus}" up -d "$@"
