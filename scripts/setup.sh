#!/usr/bin/env bash
# One-shot set-up for a fresh machine: offscreen-rendering libraries, a virtual
# environment in .venv, PyTorch (a CPU build unless an NVIDIA GPU is present), and
# reasonact itself with its test dependencies. Safe to re-run: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages: offscreen rendering (EGL, with OSMesa as the fallback) and the headless
#    browser that the steering console's end-to-end test drives.
need_pkgs=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib 'libEGL.so.1 ' || need_pkgs+=(libegl1)
have_lib 'libEGL_mesa.so.0' || need_pkgs+=(libegl-mesa0)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/aarch64-linux-gnu/dri/swrast_dri.so ] \
  || ls /usr/lib/*/dri/*swrast* >/dev/null 2>&1 || need_pkgs+=(libgl1-mesa-dri)
have_lib 'libOSMesa.so' || need_pkgs+=(libosmesa6)
have_lib 'libGL.so.1 ' || need_pkgs+=(libgl1)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing Debian packages: ${need_pkgs[*]}"
    $SUDO apt-get update -qq || say "apt-get update failed; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    say "warning: no apt-get; install these yourself for offscreen rendering: ${need_pkgs[*]}"
  fi
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "reasonact needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)" >&2; exit 1; }
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# 3. PyTorch first, so that nothing later pulls a multi-GB CUDA build onto a CPU machine.
if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    say "NVIDIA GPU found: installing a CUDA build of torch"
    "${PIP[@]}" install torch
  else
    say "no GPU: installing a CPU build of torch"
    "${PIP[@]}" install "torch==$TORCH_CPU_VERSION" 2>/dev/null \
      || "${PIP[@]}" install torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi

# 4. reasonact and the rest, with torch pinned to what is installed.
stamp="$VENV/.reasonact-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  constraints="$VENV/torch-constraint.txt"
  "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -iE '^(torch|nvidia-[a-z0-9-]+|triton)==' > "$constraints" || true
  say "installing reasonact (editable) and its dependencies"
  "${PIP[@]}" install -c "$constraints" -e ".[dev]" 2>&1 | grep -v "is ignored: it is neither" || true
  "$VENV/bin/python" -c 'import reasonact, torch, metaworld' \
    || { echo "set-up failed: reasonact did not import; see the pip output above" >&2; exit 1; }
  touch "$stamp"
fi
say "ready: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)')"
