# logpipe developer entry points. `make test` and `make demo` work on a fresh machine of this kind.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit proto demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

proto: install
	$(PY) -m service.protogen

lint: install
	$(VENV)/bin/ruff check service replicator tests
	$(VENV)/bin/ruff format --check service replicator tests

typecheck: install
	$(VENV)/bin/mypy service replicator

test: install lint typecheck
	$(VENV)/bin/pytest tests

clean:
	rm -rf $(VENV) .logpipe .pytest_cache .mypy_cache .ruff_cache
