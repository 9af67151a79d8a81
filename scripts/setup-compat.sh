#!/usr/bin/env bash
# A second virtual environment, .venv-compat, holding the real packages that reasonact claims to work with:
# openpi's client (openpi-client 0.1.2, which pins numpy<2 and so cannot share .venv) and LeRobot's dataset
# code (lerobot 0.4.4, which pins torch<2.11 and a long list of robot and training packages: it is
# installed without them, beside the CPU torch .venv uses and the packages its dataset code imports). The
# compatibility tests run their client and LeRobot sides in it. Set up once, then reused; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${COMPAT_VENV:-.venv-compat}
PYTHON=${PYTHON:-python3}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}
say() { printf '\033[1m[setup-compat]\033[0m %s\n' "$*"; }
quiet() { grep -v "is ignored: it is neither" || true; }

stamp="$VENV/.compat-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt scripts/setup-compat.sh ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  say "installing a CPU build of torch into $VENV"
  { "${PIP[@]}" install "torch==$TORCH_CPU_VERSION" 2>&1 \
      || "${PIP[@]}" install torch --index-url https://download.pytorch.org/whl/cpu 2>&1; } | quiet
fi
constraints="$VENV/torch-constraint.txt"
"$VENV/bin/python" -m pip freeze 2>/dev/null | grep -iE '^torch==' > "$constraints"
say "installing openpi-client 0.1.2 and lerobot 0.4.4 into $VENV"
"${PIP[@]}" install -c "$constraints" "openpi-client==0.1.2" "typing_extensions" "numpy<2" \
  "pandas<3" "pyarrow<26" "datasets>=4,<5" "huggingface-hub>=0.34.2,<0.36" "accelerate>=1.10,<2" \
  "packaging<26" "draccus==0.10.0" "av>=15,<16" "jsonlines" "einops" "termcolor" "deepdiff" "pillow" 2>&1 | quiet
"${PIP[@]}" install --no-deps "lerobot==0.4.4" 2>&1 | quiet
"$VENV/bin/python" -c 'import openpi_client.websocket_client_policy, openpi_client.action_chunk_broker' \
  || { echo "compat set-up failed: openpi_client did not import; see the pip output above" >&2; exit 1; }
"$VENV/bin/python" tests/compat/lerobot_check.py import \
  || { echo "compat set-up failed: lerobot's dataset code did not import; see above" >&2; exit 1; }
touch "$stamp"
