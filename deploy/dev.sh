#!/usr/bin/env bash
# Builds Nimbus and starts it locally for development. Installs missing system packages.
# Today this is a one-node metadata cluster; `nimbus dev` (gateway + worker) replaces it
# when issue 4 lands.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/deps.sh
nimbus_install_deps

data="${NIMBUS_DATA_DIR:-${TMPDIR:-/tmp}/nimbus-dev}"
exec cargo run --release -q -p nimbus -- meta --id 1 --data-dir "$data" --listen 127.0.0.1:17001 \
  --initial-cluster 1=127.0.0.1:17001 "$@"
