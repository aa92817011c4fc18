# byol-ref: the two commands are `make run` and `make test`; everything else is optional.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HYPOTHESIS_PROFILE ?= ci
export HYPOTHESIS_PROFILE
# On small machines OpenBLAS's threads cost more than they bring for BYOL-sized matmuls
# (measured on the 2-vCPU reference machine: 1 thread is 4-10x faster; docs/benchmarks.md).
# Override with `make run BLAS_THREADS=2`.
BLAS_THREADS ?= 1
run test test-all test-search coverage: export OPENBLAS_NUM_THREADS = $(BLAS_THREADS)
run test test-all test-search coverage: export OMP_NUM_THREADS = $(BLAS_THREADS)

.PHONY: help run test test-all test-search coverage typecheck bench gpu-check collapse-lab clean
.DEFAULT_GOAL := help

## What each target does (plain `make`).
help:
	@awk '/^## /{sub(/^## /, ""); doc = doc (doc ? " " : "") $$0; next} /^[a-z-]+:/{if (doc) {sub(/:.*/, ""); printf "  make %-12s %s\n", $$0, doc}; doc = ""} !/^## /{if (!/^[a-z-]+:/) doc = ""}' $(MAKEFILE_LIST)

# A local virtual environment, created once and reused; the stamp files record which
# extras are installed so a change to pyproject.toml reinstalls. Where no package index can be
# reached, scripts/use_installed.py keeps the environment if it already has what is needed, or else
# gives it the packages $(PYTHON) has, if they are enough (and says what is missing if not);
# byol-ref then runs from this folder.
# (--clear: a venv whose python link points at an interpreter since removed is made again, where a plain
# venv keeps the dead link; a venv that could not be made whole, without pip say, is removed, not kept.)
# Two makes started together (make run and make test in a fresh clone) take these steps one at a time
# (scripts/one_at_a_time.py): the second found a venv without pip yet, and filled it from $(PYTHON)'s
# packages. Each step finds, once it may run, what the other make's did: a venv made is not made again.
ONE_AT_A_TIME := $(PYTHON) scripts/one_at_a_time.py $(VENV).lock
$(VENV)/bin/python:
	$(ONE_AT_A_TIME) sh -c '[ -x $(PY) ] && exit 0; \
	    $(PYTHON) -m venv --clear $(VENV) || { rm -rf $(VENV); exit 1; }; \
	    $(PY) -m pip install -q --upgrade pip || echo "byol-ref: could not upgrade pip; going on with the pip it has"'

# (setuptools warns of every editable install, in a box of asterisks, that a folder named like the
# package in the working directory may be imported instead: here that folder is the package itself.)
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e

$(VENV)/.stamp-test: pyproject.toml | $(VENV)/bin/python
	$(ONE_AT_A_TIME) sh -c '$(EDITABLE) ".[test]" || $(PYTHON) scripts/use_installed.py $(VENV) test'
	touch $@

$(VENV)/.stamp-run: pyproject.toml | $(VENV)/bin/python
	$(ONE_AT_A_TIME) sh -c '$(EDITABLE) ".[plot]" || $(PYTHON) scripts/use_installed.py $(VENV) plot'
	touch $@

## Main job: train BYOL on the embedded digits on CPU and report what it learned.
run: $(VENV)/.stamp-run
	$(PY) -m byol_ref train --data digits --projection-dim 64 --projector-hidden-dim 256 --predictor-dim 256 --lr 6e-3

## CPU test suite (what CI runs).
test: $(VENV)/.stamp-test
	$(PY) -m pytest -m "not gpu" -q

## Every test, the gpu-marked ones included (they skip, with the reason, where no GPU answers).
test-all: $(VENV)/.stamp-test
	$(PY) -m pytest -q -rs

## The CPU suite with many random hypothesis examples (not derandomized): finds rare draws CI's fixed seeds miss.
test-search: $(VENV)/.stamp-test
	HYPOTHESIS_PROFILE=search $(PY) -m pytest -m "not gpu" -q -p no:cacheprovider

# (coverage's data files, one per process, go into the venv: tests check that scripts write nothing in the checkout)
## Which lines of byol_ref the CPU suite runs, its subprocesses included, and which it misses (installs coverage
## 7.10 or newer into .venv; on Python 3.12+ about the suite's time, on 3.10 and 3.11 several times it).
coverage: export COVERAGE_FILE = $(abspath $(VENV))/coverage/.coverage
coverage: $(VENV)/.stamp-test
	$(PY) -m pip install -q "coverage>=7.10" || $(PY) -c "import coverage, sys; sys.exit(coverage.version_info < (7, 10))" \
	    || { echo "byol-ref: make coverage needs coverage 7.10 or newer, and no package index answered" >&2; exit 1; }
	rm -rf $(VENV)/coverage && mkdir -p $(VENV)/coverage
	COVERAGE_CORE=$$($(PY) -c 'import sys; print("sysmon" if sys.version_info >= (3, 12) else "ctrace")') \
	    $(PY) -m coverage run -m pytest -m "not gpu" -q -p no:cacheprovider
	$(PY) -m coverage combine -q
	$(PY) -m coverage report

## Type-check the docs' Python examples against byol-ref's annotations, as a user's mypy reads them (byol-ref
## ships py.typed; installs mypy 1.10 or newer into .venv), and pyright too where it is installed (never by this).
typecheck: $(VENV)/.stamp-test
	$(PY) -m pip install -q "mypy>=1.10" || echo "byol-ref: could not install mypy; going on with the venv's own" >&2
	$(PY) scripts/typecheck.py

## Benchmark (CPU float32, 2 threads); compares with PyTorch eager when torch is installed.
bench: $(VENV)/.stamp-test
	$(PY) benchmarks/bench_step.py --threads 2 --steps 25 --out benchmarks/results/cpu-2t

## The collapse lab of docs/collapse-lab.md: its ablations on digits, rewriting docs/collapse-lab-results.* and
## its figures in docs/img (5 to 10 minutes on 2 cores; `python scripts/collapse_lab.py --out DIR` writes elsewhere).
collapse-lab: $(VENV)/.stamp-run
	OPENBLAS_NUM_THREADS=1 $(PY) scripts/collapse_lab.py --epochs 150

## On a machine with CuPy and a GPU (installs nothing): the gpu tests and the GPU benchmark.
gpu-check:
	bash benchmarks/gpu_check.sh

## Remove the virtual environment and the caches (the next make makes them again).
clean:
	rm -rf $(VENV) $(VENV).lock .pytest_cache .hypothesis build *.egg-info
