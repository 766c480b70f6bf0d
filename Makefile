# Two commands for a new user: `make run` (the whole protecting system) and `make test`.
# Everything runs from .venv, created with a Python >= 3.12 (scripts/find_python.sh).

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
# the record `make native` writes once node/detect is compiled beside its sources (setup.py)
NATIVE    := node/detect/_native.json
PROJECT   := wallarm-mitmproxy-connector
PYTEST_ARGS ?=

.PHONY: help install native run test certs bench fuzz clean distclean which-python

help:
	@echo "make run      start node + demo upstream + mitmdump with the addon (proxy on :8000)"
	@echo "              WORKERS=N: N mitmdump workers behind HAProxy (docs/running.md)"
	@echo "make test     run the whole test suite"
	@echo "make install  create .venv (Python >= 3.12) and install the project with test extras"
	@echo "make native   compile the detection engine (node/detect) with mypyc beside its sources"
	@echo "make certs    generate development certificates in certs/ (FORCE=1 regenerates)"
	@echo "make bench    run the benchmark scripts (scripts/bench_*.py, bounded)"
	@echo "make fuzz     fuzz the wire decoders, the node's HTTP server, engine and endpoint (FUZZ_SECONDS each)"
	@echo "make clean    remove var/ (database, console token) and build artefacts; certs/ is kept"
	@echo "make distclean  clean, and remove .venv too"

which-python:
	@py=$$(scripts/find_python.sh) && echo "using $$py ($$($$py --version))"

# The venv is created once; a venv left by an older Python is refused, not silently reused.
$(PY):
	@py=$$(scripts/find_python.sh) && echo "creating $(VENV) with $$py" && "$$py" -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' || \
	  { echo "error: $(VENV) uses $$($(PY) --version); remove it (rm -rf $(VENV)) and run make again" >&2; exit 1; }

# `pip install -c constraints.txt '.[test,bench]'` is the same install the Dockerfile runs, with
# the same pinned versions (constraints.txt, written by scripts/lock_constraints.py). A developer
# venv that already holds an editable install (pip install -e) stays editable. The venv's copy is
# installed uncompiled (WALLARM_PURE_PYTHON=1): make's processes run the tree's code, which
# `make native` compiles in place, and the Dockerfile's install compiles its own.
install: $(PY)
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' || \
	  { echo "error: $(VENV) uses $$($(PY) --version); remove it (rm -rf $(VENV)) and run make again" >&2; exit 1; }
	@if $(PY) -m pip show $(PROJECT) 2>/dev/null | grep -q '^Editable project location:'; then \
	  echo "pip install -c constraints.txt -e '.[test,bench]' (keeping the existing editable install)"; \
	  WALLARM_PURE_PYTHON=1 $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,bench]'; \
	else \
	  echo "pip install -c constraints.txt '.[test,bench]'"; \
	  WALLARM_PURE_PYTHON=1 $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt '.[test,bench]'; \
	fi
	@touch $(STAMP)

# run/test reinstall only when the project's metadata changed (children run the tree's code
# through PYTHONPATH, so source edits need no reinstall).
$(STAMP): pyproject.toml constraints.txt | $(PY)
	@$(MAKE) --no-print-directory install

# node/detect compiled to C extensions beside its sources (mypyc; setup.py, docs/decisions.md),
# again whenever one of them changed; a tree whose sources changed since imports the sources
# (node/detect/__init__.py). Without a C compiler or Python's headers, or with
# WALLARM_PURE_PYTHON=1, nothing is compiled and the sources run (the same verdicts, slower); a
# compile that fails with them is an error.
$(NATIVE): $(wildcard node/detect/*.py node/detect/*.c) setup.py | $(STAMP)
	@if [ -n "$$WALLARM_PURE_PYTHON" ] || ! command -v cc >/dev/null 2>&1 || \
	    ! $(PY) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then \
	  echo "node/detect runs uncompiled (no C compiler or Python.h, or WALLARM_PURE_PYTHON set): same verdicts, slower"; \
	else \
	  echo "compiling node/detect with mypyc (setup.py build_ext --inplace, about a minute)"; \
	  $(PY) setup.py -q build_ext --inplace >build-native.log 2>&1 || { tail -n 40 build-native.log; exit 1; }; \
	fi

native: $(NATIVE)

certs: | $(STAMP)
	$(PY) scripts/gen_certs.py --out certs $(if $(FORCE),--force,)

run: $(STAMP) $(NATIVE)
	@$(PY) scripts/gen_certs.py --out certs --quiet
	$(PY) scripts/run_system.py

# The suite runs on the compiled engine; then the detection and parsing tests once more on its
# sources (WALLARM_DETECT_SOURCES=1): the same verdicts both ways, and the `sources_only` tests,
# which patch the modules' functions, run there.
SOURCES_TESTS ?= tests/test_detect_*.py tests/test_parse_*.py
test: $(STAMP) $(NATIVE)
	$(PY) -m pytest $(PYTEST_ARGS)
	WALLARM_DETECT_SOURCES=1 $(PY) -m pytest -q $(if $(PYTEST_ARGS),-m sources_only,) $(SOURCES_TESTS)

# Each benchmark is bounded by its own defaults; all run even if one misses its target.
bench: $(STAMP) $(NATIVE)
	@failed=""; for b in scripts/bench_*.py; do \
	  [ -e "$$b" ] || { echo "no scripts/bench_*.py yet"; exit 0; }; \
	  echo "== $$b"; $(PY) "$$b" || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed or missed their target:$$failed"; exit 1; fi

# Each target of tests/fuzz/targets.py for FUZZ_SECONDS under libFuzzer (atheris, the `fuzz` extra,
# installed here at its pinned version if missing; without it the harness says why and runs the
# targets under hypothesis). Corpora grow in tests/fuzz/corpus/<target>/, crashes land in
# tests/fuzz/findings/; exit status 1 when anything was found (docs/reliability.md, "Fuzzing").
# On the sources of node/detect: libFuzzer's coverage sees Python code, not compiled code.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= wire http1 engine endpoint
FUZZ_ENGINE ?= auto
fuzz: $(STAMP)
	@$(PY) -c 'import atheris' 2>/dev/null || \
	  $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt atheris || \
	  echo "atheris did not install; the harness falls back to hypothesis"
	WALLARM_DETECT_SOURCES=1 $(PY) -m tests.fuzz.harness $(FUZZ_TARGETS) --seconds $(FUZZ_SECONDS) --engine $(FUZZ_ENGINE)

# var/ holds make run's database and console token; certs/ is kept (see certs/README.md).
clean:
	rm -rf var build dist .pytest_cache artifacts tests/fuzz/findings build-native.log
	rm -f node/detect/*.so node/detect/_native.json *__mypyc.cpython-*.so
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
