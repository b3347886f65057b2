# tripod_pl — two commands on a fresh machine: `make train` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU-only torch wheel installs much faster than the CUDA build; use the local one when this machine has it.
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-*+cpu-*.whl))
TORCH ?= $(if $(TORCH_WHEEL),$(TORCH_WHEEL),torch)
CONFIG ?= configs/quickstart.yaml
PYTEST_ARGS ?=
PARALLEL ?= 2
LINT_PATHS := src tests scripts benchmarks notebooks

.PHONY: help venv train test test-slow lint format bench bench-gpu wheelhouse configs results clean

help:
	@echo "make train      create $(VENV), install tripod_pl and train $(CONFIG)"
	@echo "make test       create $(VENV), install tripod_pl[dev] and run the test suite (fast tests)"
	@echo "make test-slow  run the slow tests too"
	@echo "make lint       ruff check + format check"
	@echo "make bench      run the benchmarks (JSON results in benchmarks/results/)"
	@echo "make bench-gpu  the GPU checks on a CUDA machine: CUDA tests, train_step bf16 (eager, compiled), metrics"
	@echo "make wheelhouse the requirements' wheels for a machine with no package index (WHEEL_PYTHON=, ONLY=)"
	@echo "make results    the procedural sweep (8 methods x 3 seeds; resumable): results/procedural.{md,json,png}"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

train: venv
	$(VENV)/bin/tripod-train fit --config $(CONFIG)

# pytest exits 5 when it collects nothing: report it, but do not fail on it; any other failure fails.
test: venv
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

test-slow: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: venv
	$(VENV)/bin/ruff format $(LINT_PATHS)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)

configs: venv
	$(PY) scripts/make_configs.py

# Hours on a 2-core CPU: rerun after an interruption, finished runs (results/procedural/runs/) are skipped.
results: venv
	$(VENV)/bin/tripod-sweep run sweeps/procedural.yaml --parallel $(PARALLEL) --collect results

bench: venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Uses the python that holds a CUDA torch (PYTHON=..., default python3) with this checkout's src/; no venv.
bench-gpu:
	PYTHON=$(PYTHON) bash benchmarks/gpu_check.sh

# The requirements' wheels (and theirs) in wheelhouse/, for a machine with no package index: every one but torch,
# or those in ONLY; for CPython WHEEL_PYTHON (default: this venv's) on x86-64 Linux. bench-gpu installs from it.
WHEEL_PYTHON ?=
ONLY ?=
wheelhouse: venv
	$(PY) scripts/wheelhouse.py download $(if $(WHEEL_PYTHON),--python $(WHEEL_PYTHON)) $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
