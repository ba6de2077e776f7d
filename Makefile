# Two entry points: `make demo` (the main job end to end on the embedded defaults) and `make test`.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := $(CURDIR)/demo
PG_VERSION_DIR := $(firstword $(wildcard /etc/postgresql/*))

.PHONY: demo test lint install services browser azurite emulators clean cluster cluster-stop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first with pip (takes the local CPU build where one lies on disk), then uv resolves the rest
# in seconds and keeps that torch.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0" uv
	$(BIN)/uv pip install --python $(BIN)/python -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

services:
	@if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $(notdir $(PG_VERSION_DIR)) main start; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi
	@pg_isready -h 127.0.0.1 -p 5432
	@if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
	  echo "starting Redis"; redis-server --daemonize yes --bind 127.0.0.1 --port 6379; \
	  for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done; \
	fi
	@redis-cli -h 127.0.0.1 -p 6379 ping

# Airflow 3 with the CeleryExecutor as plain processes (api-server, scheduler, dag-processor, a worker
# on queue `default` and one on queue `gpu`); state, logs and PID file in .cluster/.
cluster: $(STAMP) services
	$(BIN)/python -m airflow_provider_deepocr.testing.cluster start

cluster-stop:
	$(BIN)/python -m airflow_provider_deepocr.testing.cluster stop

# Debian's chromium for the review page's browser test (Playwright drives it; it cannot download
# its own browser here). Installed when missing and we are root, as in CI.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	fi

# Azurite (Microsoft's Azure Storage emulator, an npm package) for the Azure Blob tests, into the
# git-ignored .node/ (Node 20 and npm are on the machine; the tests start it on a free port).
AZURITE := .node/node_modules/.bin/azurite-blob
$(AZURITE):
	npm install --prefix .node --no-audit --no-fund --loglevel=error azurite@3.37.0

azurite: $(AZURITE)

# The Snowflake and BigQuery emulators, each in its own venv: fakesnow and bqemulator pin two
# different sqlglot versions (and fakesnow a snowflake-connector 4.x; the project uses 5.x), so
# neither shares .venv. The tests start them as servers on loopback (tests/core/warehouse/conftest.py).
# bqemulator needs DuckDB's spatial extension: installed from its PyPI wheel into the emulator's
# own HOME (DuckDB would otherwise download it at start).
SF_VENV := .venv-sf
BQ_VENV := .venv-bq
$(SF_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(SF_VENV)
	$(SF_VENV)/bin/pip install -q "fakesnow[server]==0.12.1" "snowflake-connector-python>=4.8,<5"
	touch $@
$(BQ_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/pip install -q "bqemulator==1.4.0" "duckdb==1.5.5" "duckdb-extension-spatial==1.5.5" numpy
	mkdir -p $(BQ_VENV)/home
	HOME=$(CURDIR)/$(BQ_VENV)/home $(BQ_VENV)/bin/python -c "import duckdb, pathlib, duckdb_extension_spatial as m; \
	  ext = next(pathlib.Path(m.__file__).parent.glob('extensions/*/spatial.duckdb_extension')); \
	  duckdb.connect().execute(f\"INSTALL '{ext}'\")"
	touch $@
emulators: $(SF_VENV)/.installed $(BQ_VENV)/.installed

test: $(STAMP) services browser azurite emulators
	$(BIN)/ruff check airflow_provider_deepocr tests dags bench
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# mypy's settings (files: core/) are in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check airflow_provider_deepocr tests dags bench
	$(BIN)/ruff format --check airflow_provider_deepocr tests dags bench
	$(BIN)/python -m mypy

demo: $(STAMP)
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/airflow
	@start=$$(date +%s)
	@echo "== writing sample documents to $(DEMO)/docs"
	@$(BIN)/python -m airflow_provider_deepocr.testing.samples $(DEMO)/docs
	@export AIRFLOW_HOME=$(DEMO)/airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	  AIRFLOW__CORE__LOAD_EXAMPLES=False \
	  DEEPOCR_SOURCE_URI=$(DEMO)/docs DEEPOCR_WAREHOUSE=sqlite:///$(DEMO)/warehouse.db \
	  DEEPOCR_WORK_URI=$(DEMO)/work DEEPOCR_OCR_QUEUE=default DEEPOCR_ENGINE=auto
	@echo "== initialising the Airflow metadata database (log: $(DEMO)/airflow-db-migrate.log)"
	@$(BIN)/airflow db migrate > $(DEMO)/airflow-db-migrate.log 2>&1
	@echo "== airflow dags test deepocr_documents_to_warehouse (log: $(DEMO)/dags-test.log); per task:"
	@if ! $(BIN)/airflow dags test deepocr_documents_to_warehouse > $(DEMO)/dags-test.log 2>&1; then \
	  tail -40 $(DEMO)/dags-test.log; echo "the DAG run failed"; exit 1; fi
	@grep -E "airflow.task.operators" $(DEMO)/dags-test.log \
	  | grep -oE "(listed [0-9]+ documents|OCR engine .*|OCR: .*|parsed .*|loaded [0-9]+ documents.*)" \
	  | sed -E 's/ \[airflow\.task.*//; s/^listed/list   | listed/; s/^OCR/ocr    | OCR/; s/^parsed/parse  | parsed/; s/^loaded/load   | loaded/; s/^/   /' || true
	@echo "== what landed"
	@$(BIN)/deepocr show --warehouse sqlite:///$(DEMO)/warehouse.db
	@echo "demo finished in $$(( $$(date +%s) - start )) s; warehouse: $(DEMO)/warehouse.db"

clean:
	rm -rf $(VENV) $(SF_VENV) $(BQ_VENV) $(DEMO) .node .deepocr-work .pytest_cache .ruff_cache .cluster
