# The README's two commands: `make run` and `make test`. Both are idempotent and work on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
ZHIKU  := $(VENV)/bin/zhiku
# chatglm-cpp 0.4.2 needs this with current CMake; harmless for llama-cpp-python.
export CMAKE_ARGS ?= -DCMAKE_POLICY_VERSION_MINIMUM=3.5
# Tests share one model folder so each test's throw-away ZHIKU_HOME does not pull packs again.
TEST_MODELS := $(CURDIR)/.cache/models

.PHONY: run test setup setup-test lint typecheck bench

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml scripts/setup-system.sh | $(PY)
	bash scripts/setup-system.sh
	$(PY) -m pip install -e '.[test,chatglm,st]'
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

run: setup
	$(ZHIKU) start

lint: setup-test typecheck
	$(VENV)/bin/ruff check src tests bench

typecheck: setup-test
	$(VENV)/bin/mypy

test: setup-test lint
	ZHIKU_MODELS_DIR=$(TEST_MODELS) $(ZHIKU) models pull smollm2-135m
	ZHIKU_MODELS_DIR=$(TEST_MODELS) $(ZHIKU) models pull qwen2.5-coder-0.5b
	ZHIKU_MODELS_DIR=$(TEST_MODELS) $(VENV)/bin/pytest

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(PY) -m pip install -e '.[bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(ZHIKU) bench --quick
