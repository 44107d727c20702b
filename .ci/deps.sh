#!/usr/bin/env bash
# Installs what a fresh Debian machine (Rust toolchain, gcc, Python 3.11 only) lacks to
# build and test Nimbus. Idempotent; sourced by .ci/test and deploy/dev.sh.
set -euo pipefail

nimbus_apt_packages=(
  libclang-dev   # bindgen for the rocksdb crate
)

nimbus_install_deps() {
  local missing=()
  for p in "${nimbus_apt_packages[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
