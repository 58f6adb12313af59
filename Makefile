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

.PHONY: venv demo demo-self-serve test airflow lint lock sandbox clean browser migration-regen

# The venv is for the demo and the tests: production (requirements.txt) plus the test and
# development tools (requirements-dev.txt), both resolved in constraints.txt. The production image
# (Dockerfile) installs requirements.txt alone.
$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check uv==0.9.5
	$(UV) pip install -q --python $(PY) -r requirements-dev.txt -c constraints.txt
	@printf '%s\n%s\n' "$(CURDIR)/include" "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/customer_health.pth"
	@touch $@

venv: $(VENV)/.installed  ## create .local/venv with the pinned development set

# DEMO_ARGS: options of `python -m health_sandbox.demo`, e.g. DEMO_ARGS="--accounts 500 --days 400".
DEMO_ARGS ?=

demo: venv  ## generate the company, start the sandbox, run customer_health_daily for today
	$(PY) -m health_sandbox.demo $(DEMO_ARGS)

# The second company, without a CRM (README "A company without a CRM"); its state is in .local/self-serve.
demo-self-serve: venv  ## the same on the self-serve company (Stripe and product DB only), audit printed last
	$(PY) -m health_sandbox.demo --company self-serve $(DEMO_ARGS)

test: venv browser  ## run the whole test suite
	$(PY) -m ruff check include health_sandbox dags plugins tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider --basetemp=$(CURDIR)/.local/pytest $(PYTEST_ARGS)

# The dashboard's browser test drives Debian's Chromium (never a browser downloaded at run time).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (the browser test needs it)"; fi; }

# `airflow standalone` with the venv first on PATH (it starts its components as `airflow`), on
# 127.0.0.1:8080 unless AIRFLOW__API__HOST / AIRFLOW__API__PORT say otherwise; Ctrl-C stops it all.
airflow: venv  ## set up as the demo does, then serve the Airflow UI (airflow standalone) until Ctrl-C
	$(PY) -m health_sandbox.demo --airflow $(DEMO_ARGS)

sandbox: venv  ## (re)start only the sandbox in the background
	$(PY) -m health_sandbox serve --background

lint: venv
	$(PY) -m ruff check include health_sandbox dags plugins tests benchmarks

# One resolution of production and development together, so that both install from the same
# constraints.txt (production's set is a subset of it). uv keeps the pins already in constraints.txt
# unless a requirement moved; `make lock UV_ARGS=--upgrade` re-resolves everything.
UV_ARGS ?=
lock:  ## re-resolve constraints.txt from requirements.txt and requirements-dev.txt
	@test -x $(UV) || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(VENV)/bin/pip install -q --disable-pip-version-check uv==0.9.5; }
	$(UV) pip compile requirements.txt requirements-dev.txt --python 3.11 --no-header --no-annotate $(UV_ARGS) -o constraints.txt

clean:  ## stop the sandbox and remove all local state except the venv
	-$(PY) -m health_sandbox stop
	rm -rf .local/airflow .local/sandbox .local/warehouse.db*

# migration-regen rewrote 0001_initial_schema.py from schema.py. That was only ever right before
# any later migration existed: 0002 and later revise 0001, and every warehouse already upgraded
# went through the 0001 they know, so regenerating it would rewrite history under them. It
# therefore refuses (exit 2, naming the later migrations, deleting nothing) whenever a migration
# other than 0001 exists, which is now always. A schema change is a new revision on top of head:
# autogenerate it against a scratch warehouse upgraded to head, then review and edit it by hand
# (the data it carries over, SQLite batch mode), e.g. for 0006:
#   $(PY) -c "from alembic import command; from customer_health.warehouse.migrate import alembic_config; from customer_health.warehouse.engine import get_engine; cfg = alembic_config(get_engine('sqlite:////tmp/ch_rev.db')); command.upgrade(cfg, 'head'); command.revision(cfg, message='what changed', autogenerate=True, rev_id='0006')"
MIGRATIONS := include/customer_health/warehouse/migrations/versions
migration-regen:
	@later="$$(cd $(MIGRATIONS) && ls [0-9]*.py 2>/dev/null | grep -v '^0001_' | paste -sd ' ' -)"; \
	if [ -n "$$later" ]; then \
	  echo "make migration-regen refuses: $$later revise 0001_initial_schema.py, and warehouses were" >&2; \
	  echo "upgraded through it; regenerating it would rewrite their history. Nothing was deleted." >&2; \
	  echo "Add a new revision on top of head instead (see the comment above migration-regen in the Makefile)." >&2; \
	  exit 2; \
	fi
	$(MAKE) venv
	rm -f $(MIGRATIONS)/0001_initial_schema.py /tmp/ch_regen.db
	$(PY) -c "from alembic import command; from customer_health.warehouse.migrate import alembic_config; from customer_health.warehouse.engine import get_engine; command.revision(alembic_config(get_engine('sqlite:////tmp/ch_regen.db')), message='initial schema', autogenerate=True, rev_id='0001')"
	rm -f /tmp/ch_regen.db
