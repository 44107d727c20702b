#!/usr/bin/env bash
# Builds Nimbus and starts `nimbus dev` (metadata node + gateway + worker in one process)
# on 127.0.0.1:9000. Installs missing system packages first. Run as root (the sandbox
# needs namespaces and cgroups); extra flags go to `nimbus dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/deps.sh
nimbus_install_deps
bash crates/nimbus-worker/tests/setup-system.sh >/dev/null
exec cargo run --release -q -p nimbus -- dev --data-dir "${NIMBUS_DATA_DIR:-.nimbus-dev}" "$@"
