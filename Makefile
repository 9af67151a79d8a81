# `make demo` and `make test` do all set-up themselves (scripts/setup.sh) on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: setup setup-libero demo test test-fast lint bench clean

setup:
	@bash scripts/setup.sh

# LIBERO (robosuite 1.4, the four suites' BDDL files and init states, verified assets) in the same environment.
setup-libero: setup
	@bash scripts/setup-libero.sh

demo: setup
	$(PY) -m reasonact quickstart --out demo

test: setup lint setup-libero
	@bash scripts/setup-compat.sh
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check src tests benchmarks

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/collect.py
	$(PY) benchmarks/dataset.py
	$(PY) benchmarks/decode.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/matmul.py

clean:
	rm -rf demo .pytest_cache
