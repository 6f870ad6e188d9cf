# Every target sets up what it needs: a fresh clone only needs python3 (>= 3.10) and make.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)

.PHONY: install test lint typecheck docs demo standin bench clean

$(STAMP): pyproject.toml Makefile
	scripts/sysdeps.sh
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
	$(PY) scripts/check_layout.py

# mypy --strict on the package (settings in pyproject.toml's [tool.mypy]; tests/ are not checked).
typecheck: install
	$(VENV)/bin/mypy

# The Sphinx site (docs/), warnings as errors, from scratch (-E: autodoc sees every change in the package);
# autodoc imports the package from this checkout.
# Output: docs/_build/html/index.html.
docs: install
	PYTHONPATH=$(CURDIR) $(PY) -m sphinx -E -W --keep-going -q -b html docs docs/_build/html

# The main suite on AIRFLOW_VERSION, then the same suite on every other supported Airflow (test-matrix).
test: lint typecheck docs
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-matrix

# The version matrix: besides AIRFLOW_VERSION (the newest 3.3.x, in $(VENV)), the oldest supported Airflow
# (newest 3.1.x) and the newest 3.2.x, each in its own venv .venv-airflow-<minor>, installed from
# constraints/airflow-<minor>.txt (the Airflow pin plus the era pins that Airflow needs, each explained
# there). `make test-matrix MATRIX=3.1` runs one leg; MATRIX_PYTEST_ARGS go to pytest on every leg.
MATRIX ?= 3.1 3.2
# The `timing` tests (pacing and volume against the wall clock; see pyproject's markers) run on the main
# venv only: what they check does not depend on Airflow, and they are the slowest part of the suite.
# The same goes for the warehouse matrix (`warehouses`: every database x keyed/unkeyed ledger).
# So does the Celery deployment test (`celery`, ~75 s): on every leg it would cost a deployment more,
# and what it checks (the provider's quota and ledger across workers) does not depend on Airflow's version.
MATRIX_PYTEST_ARGS ?= -m "not timing and not warehouses and not celery"
MATRIX_STAMPS := $(foreach minor,$(MATRIX),.venv-airflow-$(minor)/.installed)
MATRIX_TESTS := $(addprefix test-airflow-,$(MATRIX))
.PHONY: test-matrix $(MATRIX_TESTS)

# Like $(STAMP): rebuilt only when the pin file, pyproject.toml or this Makefile changes; pip then updates
# the existing venv in place (a rerun with nothing changed costs nothing).
$(MATRIX_STAMPS): .venv-airflow-%/.installed: constraints/airflow-%.txt pyproject.toml Makefile
	scripts/sysdeps.sh
	$(PYTHON) -m venv .venv-airflow-$*
	.venv-airflow-$*/bin/python -m pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	.venv-airflow-$*/bin/python -m pip install --quiet -c constraints/airflow-$*.txt apache-airflow \
		-e ".[test]" 2>&1 | { grep -v "is ignored" || true; }
	.venv-airflow-$*/bin/python -c "import airflow_provider_gong.operators.meetings, pytest, requests_mock"
	touch $@

test-matrix: $(MATRIX_TESTS)

$(MATRIX_TESTS): test-airflow-%: .venv-airflow-%/.installed
	@.venv-airflow-$*/bin/python -m pip show apache-airflow 2>/dev/null | sed -n 's/^Version: /== Airflow /p'
	.venv-airflow-$*/bin/python -m pytest $(MATRIX_PYTEST_ARGS)

demo: install
	$(PY) scripts/demo.py

# Performance figures, measured side by side in one run (ratios; nothing asserts a timing). ~25 min.
# bench_nochange: a sync run where nothing changed vs a bare read, at 20,000 and 200,000 rows.
bench: install
	$(PY) benchmarks/bench_per_call.py
	$(PY) benchmarks/bench_pacing.py
	$(PY) benchmarks/bench_dag_parse.py
	$(PY) -u benchmarks/bench_warehouse.py $(BENCH_ARGS)
	$(PY) -u benchmarks/bench_nochange.py $(filter --quick,$(BENCH_ARGS))

standin: install
	$(PY) -m airflow_provider_gong.testing --port 8765

clean:
	rm -rf $(VENV) .venv-airflow-* .demo docs/_build

# A real local deployment (API server + UI, scheduler, DAG processor, triggerer; LocalExecutor) with the
# example DAGs, the Gong stand-in and its connections; PostgreSQL metadata DB when reachable, else SQLite.
# EXECUTOR=celery: CeleryExecutor instead, Redis broker (the one on 127.0.0.1:6379, a database of its own;
# a redis-server is started where none answers), PostgreSQL for metadata, Celery results, the warehouse
# and the Gong quota/OAuth store, two workers (2 slots each) with their own hostnames and directories.
# Foreground; Ctrl-C stops everything. Prints the URL, the admin password, the executor and its workers.
EXECUTOR ?= local
.PHONY: airflow
airflow: install
	$(PY) scripts/airflow_local.py --executor $(EXECUTOR) $(AIRFLOW_ARGS)
