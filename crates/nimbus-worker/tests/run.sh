#!/usr/bin/env bash
# Installs what the sandbox/worker tests need and runs them (as root).
# Usage: bash crates/nimbus-worker/tests/run.sh   (from anywhere)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
bash "$here/setup-system.sh"
bash "$here/setup-python.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo test --manifest-path "$root/crates/nimbus-sandbox/Cargo.toml"
cargo test --manifest-path "$root/crates/nimbus-worker/Cargo.toml"
