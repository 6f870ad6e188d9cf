# Every target sets up what it needs: a fresh clone only needs python3 (>= 3.10) and make.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)

.PHONY: install test lint demo standin bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	@# The machine's pip config names local indexes that may not exist; drop that noise, keep errors.
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -m pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]" 2>&1 \
		| { grep -v "is ignored" || true; }
	$(PY) -c "import airflow_provider_gong, airflow.sdk, pytest, requests_mock"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) scripts/demo.py

# Performance figures, measured side by side in one run (ratios; nothing asserts a timing). ~15 min.
bench: install
	$(PY) benchmarks/bench_per_call.py
	$(PY) benchmarks/bench_pacing.py
	$(PY) benchmarks/bench_dag_parse.py
	$(PY) -u benchmarks/bench_warehouse.py $(BENCH_ARGS)

standin: install
	$(PY) -m airflow_provider_gong.testing --port 8765

clean:
	rm -rf $(VENV) .demo

# A real local deployment (API server + UI, scheduler, DAG processor, triggerer; LocalExecutor) with the
# example DAGs, the Gong stand-in and its connections; PostgreSQL metadata DB when reachable, else SQLite.
# Foreground; Ctrl-C stops everything. Prints the URL and the admin password.
.PHONY: airflow
airflow: install
	$(PY) scripts/airflow_local.py $(AIRFLOW_ARGS)
