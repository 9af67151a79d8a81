#!/usr/bin/env bash
# openpi's own LIBERO evaluation script (examples/libero/main.py of a checkout of
# github.com/Physical-Intelligence/openpi), run unmodified against `reasonact serve` holding a LIBERO policy.
#
#   bash scripts/openpi-libero-example.sh OPENPI_DIR [CHECKPOINT] [-- ARGS FOR main.py]
#   bash scripts/openpi-libero-example.sh ~/openpi checkpoints/libero-spatial -- --args.num-trials-per-task 1
#
# The script needs LIBERO, openpi-client (which pins numpy<2), tyro and imageio in one environment, so it gets its
# own: .venv-openpi-libero (CPU torch, robosuite 1.4.0, hf-libero 0.1.4 with the packages its environment code
# imports, openpi-client 0.1.2), made once and reused.
# LIBERO's assets and config are the ones `make setup-libero` verified into .venv. The server runs from .venv on
# PORT (default 8000, the example's); its log and main.py's log and videos go to OUT (default runs/openpi-libero).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '5,6p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
OPENPI=$1; shift
CHECKPOINT=checkpoints/libero-spatial
if [ $# -ge 1 ] && [ "$1" != "--" ]; then CHECKPOINT=$1; shift; fi
[ $# -ge 1 ] && [ "$1" = "--" ] && shift
[ -f "$OPENPI/examples/libero/main.py" ] || { echo "no examples/libero/main.py in $OPENPI: pass the folder of an openpi checkout" >&2; exit 2; }
MAIN=$(realpath "$OPENPI/examples/libero/main.py")
[ -f "$CHECKPOINT/config.json" ] || { echo "no checkpoint in $CHECKPOINT (config.json missing)" >&2; exit 2; }
PORT=${PORT:-8000}
OUT=${OUT:-runs/openpi-libero}
VENV=$(realpath -m "${OPENPI_LIBERO_VENV:-.venv-openpi-libero}")
say() { printf '\033[1m[openpi-libero]\033[0m %s\n' "$*"; }
quiet() { grep -v "is ignored: it is neither\|dependency resolver\|hf-libero 0.1.4 requires\|bddl 1.0.1 requires" || true; }

make -s setup-libero
LIBERO_HOME=$(.venv/bin/python -c 'from reasonact.envs.libero import home, _libero; _libero(); print(home())')

stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ "$stamp" -ot "$0" ]; then
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  say "installing a CPU torch, robosuite 1.4.0, LIBERO (hf-libero 0.1.4), openpi-client 0.1.2, tyro, imageio"
  "${PIP[@]}" install "torch==$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')" 2>&1 | quiet
  constraints="$VENV/constraints.txt"
  { "$VENV/bin/python" -m pip freeze | grep -iE '^torch=='; .venv/bin/python -m pip freeze | grep -iE '^mujoco=='
    echo "numpy<2"; } > "$constraints"
  "${PIP[@]}" install -c "$constraints" "openpi-client==0.1.2" typing_extensions "robosuite==1.4.0" easydict \
    termcolor future pyyaml matplotlib cloudpickle gymnasium tyro imageio imageio-ffmpeg tqdm 2>&1 | quiet
  "${PIP[@]}" install -c "$constraints" --no-deps "hf-libero==0.1.4" "bddl==1.0.1" 2>&1 | quiet
  touch "$stamp"
fi
# hf-libero looks for its assets beside its own code before it tries a hub download: link the verified ones there
pkg=$("$VENV/bin/python" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("libero").origin).parent)')
ln -sfn "$LIBERO_HOME/assets" "$pkg/libero/assets"

mkdir -p "$OUT"
say "serving $CHECKPOINT on port $PORT (log: $OUT/server.log)"
.venv/bin/reasonact serve --checkpoint "$CHECKPOINT" --port "$PORT" --device cpu > "$OUT/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  .venv/bin/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/healthz', timeout=2)" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
  sleep 1
done
say "running $MAIN $* (log: $OUT/main.log)"
cd "$OUT"
LIBERO_CONFIG_PATH="$LIBERO_HOME" MUJOCO_GL=${MUJOCO_GL:-egl} "$VENV/bin/python" "$MAIN" --args.port "$PORT" --args.video-out-path videos "$@" 2>&1 | tee main.log
