# kedge: `make test` and `make demo` work on a fresh Debian 12 machine as root.
PYTHON ?= /usr/bin/python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test lint typecheck unit demo bench clean

setup: $(STAMP)

$(STAMP): requirements/dev.txt pyproject.toml scripts/setup-host
	scripts/setup-host
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest

test: lint typecheck unit

demo: setup
	$(BIN)/python -m tests.harness.demo

bench: setup
	$(BIN)/python -m bench.check_latency

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
