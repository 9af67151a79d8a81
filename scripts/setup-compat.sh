#!/usr/bin/env bash
# A second virtual environment, .venv-compat, holding the real packages that reasonact claims to work with:
# openpi's client (openpi-client 0.1.2, which pins numpy<2 and so cannot share .venv). The compatibility
# tests run their client side in it. Set up once, then reused; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${COMPAT_VENV:-.venv-compat}
PYTHON=${PYTHON:-python3}
say() { printf '\033[1m[setup-compat]\033[0m %s\n' "$*"; }

stamp="$VENV/.compat-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt scripts/setup-compat.sh ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
say "installing openpi-client 0.1.2 into $VENV"
"$VENV/bin/python" -m pip --disable-pip-version-check -q install \
  "openpi-client==0.1.2" "typing_extensions" "numpy<2" 2>&1 | grep -v "is ignored: it is neither" || true
"$VENV/bin/python" -c 'import openpi_client.websocket_client_policy, openpi_client.action_chunk_broker' \
  || { echo "compat set-up failed: openpi_client did not import; see the pip output above" >&2; exit 1; }
touch "$stamp"
