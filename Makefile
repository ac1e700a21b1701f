# pccc: the two commands a newcomer runs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pccc-setup
# the CPU build; pip finds it on disk, and it must be installed before the package
TORCH  := torch==2.13.0

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-heavy test-fast lint format typecheck check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv, install torch==2.13.0, then pccc with its dev tools

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup ## set up, then run the main job on the embedded default (pccc demo)
	$(BIN)/pccc demo

test: setup ## set up, then run the whole test suite (one worker per CPU: pytest-xdist)
	$(BIN)/python -m pytest -q -n auto

test-heavy: setup ## only the tests marked heavy (minutes; not part of make test)
	$(BIN)/python -m pytest -q -m heavy

test-fast: setup ## the tests without those marked slow
	$(BIN)/python -m pytest -q -m 'not slow and not heavy'

lint: setup ## ruff on the code and the tests
	$(BIN)/ruff check pccc ir passes backends tests

format: setup ## ruff format (rewrites files)
	$(BIN)/ruff format pccc ir passes backends tests

typecheck: setup ## mypy on the pccc package
	$(BIN)/mypy

check: lint typecheck test ## lint, typecheck and test

clean: ## remove build outputs and caches (keeps .venv)
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis pccc-demo
