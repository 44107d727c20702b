#!/usr/bin/env bash
# Metadata write benchmark (issue 2): a 3-node Nimbus metadata cluster against a 3-node
# etcd cluster on loopback, same workload, same client runtime. Results: docs/benchmarks.md.
#
# Usage: crates/nimbus-bench/run-meta-bench.sh [nimbus-bench meta-writes flags...]
#   e.g. crates/nimbus-bench/run-meta-bench.sh --rounds 1 --writes 500,5000
set -euo pipefail

cd "$(dirname "$0")/../.."

if ! command -v etcd >/dev/null 2>&1; then
    echo "etcd not found; installing the Debian package etcd-server" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y etcd-server
    else
        sudo apt-get install -y etcd-server
    fi
fi
# The Debian package starts a system etcd on the default ports; the benchmark does not
# use them (it picks free ports), but an idle extra etcd is noise, so say so.
if pgrep -x etcd >/dev/null 2>&1; then
    echo "note: an etcd is already running on this machine (e.g. the etcd-server service);" \
        "consider 'systemctl stop etcd' for quieter figures" >&2
fi

cargo build --release -p nimbus -p nimbus-bench
target_dir="${CARGO_TARGET_DIR:-target}"

exec "$target_dir/release/nimbus-bench" meta-writes \
    --nimbus-bin "$target_dir/release/nimbus" "$@"
