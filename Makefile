# Customer health on Airflow. `make demo` sets everything up and runs the daily DAG on the
# synthetic company; `make test` sets up and runs the tests. All state lives in .local/.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.local/venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export AIRFLOW_HOME ?= $(CURDIR)/.local/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)

.PHONY: venv demo test airflow lint lock sandbox clean browser migration-regen

$(VENV)/.installed: requirements.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check uv==0.9.5
	$(UV) pip install -q --python $(PY) -r requirements.txt -c constraints.txt
	@echo "$(CURDIR)/include" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/customer_health.pth"
	@touch $@

venv: $(VENV)/.installed  ## create .local/venv with the pinned set

# DEMO_ARGS: options of `python -m customer_health.demo`, e.g. DEMO_ARGS="--accounts 500 --days 400".
DEMO_ARGS ?=

demo: venv  ## generate the company, start the sandbox, run customer_health_daily for today
	$(PY) -m customer_health.demo $(DEMO_ARGS)

test: venv browser  ## run the whole test suite
	$(PY) -m ruff check include dags plugins tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider --basetemp=$(CURDIR)/.local/pytest $(PYTEST_ARGS)

# The dashboard's browser test drives Debian's Chromium (never a browser downloaded at run time).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (the browser test needs it)"; fi; }

# `airflow standalone` with the venv first on PATH (it starts its components as `airflow`), on
# 127.0.0.1:8080 unless AIRFLOW__API__HOST / AIRFLOW__API__PORT say otherwise; Ctrl-C stops it all.
airflow: venv  ## set up as the demo does, then serve the Airflow UI (airflow standalone) until Ctrl-C
	$(PY) -m customer_health.demo --airflow $(DEMO_ARGS)

sandbox: venv  ## (re)start only the sandbox in the background
	$(PY) -m customer_health.sandbox serve --background

lint: venv
	$(PY) -m ruff check include dags plugins tests benchmarks

lock:  ## re-resolve constraints.txt from requirements.txt
	$(UV) pip compile requirements.txt --python 3.11 --no-header --no-annotate -o constraints.txt

clean:  ## stop the sandbox and remove all local state except the venv
	-$(PY) -m customer_health.sandbox stop
	rm -rf .local/airflow .local/sandbox .local/warehouse.db*

# Until the first release the initial migration is regenerated from schema.py; after it,
# schema changes get a new revision: `$(PY) -m customer_health.warehouse.migrate revision "msg"`.
migration-regen: venv
	rm -f include/customer_health/warehouse/migrations/versions/0001_initial_schema.py /tmp/ch_regen.db
	$(PY) -c "from alembic import command; from customer_health.warehouse.migrate import alembic_config; from customer_health.warehouse.engine import get_engine; command.revision(alembic_config(get_engine('sqlite:////tmp/ch_regen.db')), message='initial schema', autogenerate=True, rev_id='0001')"
	rm -f /tmp/ch_regen.db
