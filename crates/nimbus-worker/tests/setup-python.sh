#!/usr/bin/env bash
# Creates <repo>/.venv with AWS's own Runtime Interface Client (awslambdaric),
# pinned, built on the *system* python (/usr/bin/python3) so the same
# interpreter is visible inside the sandbox (which mounts /usr read-only).
set -euo pipefail
AWSLAMBDARIC_VERSION=4.2.2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import awslambdaric, importlib.metadata as m; assert m.version('awslambdaric') == '$AWSLAMBDARIC_VERSION'" 2>/dev/null; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "awslambdaric==$AWSLAMBDARIC_VERSION"
fi
echo "awslambdaric $AWSLAMBDARIC_VERSION ready in $venv"
