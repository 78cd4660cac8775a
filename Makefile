# logpipe developer entry points. `make test` and `make demo` work on a fresh machine of this kind.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The BigQuery emulator (local-bigquery) needs Python >= 3.13 and lives in its own venv; see docs/local-cloud.md.
PY313 ?= $(or $(shell p=$$(pyenv prefix 3.13.0 2>/dev/null) && test -x "$$p/bin/python3" && echo "$$p/bin/python3"),$(shell command -v python3.13),python3.13)
BQ_VENV := .venv-bq
BQ_STAMP := $(BQ_VENV)/.installed
BQ_REQS := service/local/bq-emulator-requirements.txt

.PHONY: install install-emulators test lint typecheck unit proto demo local clean tf-check tf-scan chaos soak bench

# The C accelerators are compiled by the install (hatch_build.py), so a changed source reinstalls.
NATIVE_SRCS := $(shell find service replicator -name '_*.c' 2>/dev/null)

$(STAMP): pyproject.toml hatch_build.py $(NATIVE_SRCS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# --no-deps: the pins are a complete, known-good set (local-bigquery's own duckdb>=2.0 pin cannot work offline).
$(BQ_STAMP): $(BQ_REQS) service/local/install_duckdb_extensions.py
	@command -v "$(PY313)" >/dev/null || { echo "error: Python 3.13 not found (tried pyenv 3.13.0 and python3.13); set PY313=/path/to/python3.13" >&2; exit 1; }
	rm -rf $(BQ_VENV)
	"$(PY313)" -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/python -m pip install -qq --no-deps -r $(BQ_REQS)
	$(BQ_VENV)/bin/python service/local/install_duckdb_extensions.py $(BQ_VENV)/duckdb-home
	touch $(BQ_STAMP)

install-emulators: $(BQ_STAMP)

proto: install
	$(PY) -m service.protogen

lint: install
	$(VENV)/bin/ruff check service replicator tests
	$(VENV)/bin/ruff format --check service replicator tests

typecheck: install
	$(VENV)/bin/mypy service replicator

unit: install
	$(VENV)/bin/pytest -m unit tests

# pytest exits 5 when it collected no test; that fails `make test` too, on purpose.
test: install install-emulators lint typecheck tf-check
	$(VENV)/bin/pytest tests

# The end-to-end demo (service/demo), or the local-cloud smoke check where it is missing; see README.
demo: install install-emulators
	$(VENV)/bin/logpipe demo

local: install install-emulators
	$(VENV)/bin/logpipe local

# The full chaos suite (200k events, >= 12 replicator SIGKILLs, a front-end SIGKILL, a 30 s Pub/Sub cut, GCS faults).
# `make test` runs a shorter version of the same test. Replay a failure with LOGPIPE_CHAOS_SEED=<printed seed>.
chaos: install install-emulators
	LOGPIPE_CHAOS_SCALE=full $(VENV)/bin/pytest tests/e2e/test_chaos.py -s -p no:cacheprovider

# Ten minutes at 50% of the capacity measured by the latest `make bench`; RSS/fds/threads must stay flat.
soak: install install-emulators
	$(VENV)/bin/logpipe bench soak --minutes $${SOAK_MINUTES:-10}

# Every benchmark, each with its baselines in the same run; results under bench/results/.
bench: install install-emulators
	$(VENV)/bin/logpipe bench ingest
	$(VENV)/bin/logpipe bench replicate
	$(VENV)/bin/logpipe bench finalize
	$(VENV)/bin/logpipe bench e2e

# Terraform offline: fmt, validate (module + examples) and `terraform test` through the fake providers in
# tests/fixtures/tf_provider (their schema is ours and can drift from the real providers; see docs/deploy.md).
tf-check: install
	$(PY) tests/fixtures/tf_provider/tf_harness.py check

# checkov (own venv, pinned; ~60 s to install once), offline; skips and their reasons: deploy/terraform/.checkov.yaml.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-3.3.30
$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q checkov==3.3.30
	touch $(CHECKOV_STAMP)

tf-scan: $(CHECKOV_STAMP)
	cd deploy/terraform && ../../$(CHECKOV_VENV)/bin/checkov -d . --config-file .checkov.yaml

clean:
	rm -rf $(VENV) $(BQ_VENV) .logpipe .pytest_cache .mypy_cache .ruff_cache
