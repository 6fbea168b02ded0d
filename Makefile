# Two entry points for a newcomer: `make sweep` and `make test`; `make help` lists the rest. Each
# creates .venv when missing and installs the project into it; the stamp file makes re-runs skip the
# install until pyproject changes.
# Test tiers (markers in pyproject.toml): `make test` is the lint and the fast tier, what every
# change runs; `make test-full` (and CI, .ci/run) runs everything: the slow end-to-end runs, the
# cluster tests (tests/helpers/cluster.py starts a local SLURM cluster and a PostgreSQL-backed
# mlflow server: scripts/local_cluster.sh, apt-get as root, stopped at the end) and the browser
# test (Debian's chromium). `make cluster` starts the cluster by hand and keeps it up between test
# runs (`make cluster-stop`).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STORE  := sqlite:///$(CURDIR)/mlruns/mlflow.db
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5000
CHROMIUM ?= /usr/bin/chromium
FAST_TIER := not slow and not cluster and not browser

.DEFAULT_GOAL := help
.PHONY: help install sweep test test-full lint ui chromium cluster cluster-stop

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,cluster]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev and cluster extras

sweep: $(STAMP) ## the demo sweep: 3 inits x 3 seeds into ./mlruns, then its report
	$(PY) train.py -m init=xavier,he,zeros seed=0,1,2

test: lint ## lint, then the fast tier: every test not marked slow, cluster or browser
	$(PY) -m pytest -m "$(FAST_TIER)"

test-full: lint chromium ## lint, then every test: slow, cluster (root: SLURM, PostgreSQL), browser
	INITSWEEP_CHROMIUM=$(CHROMIUM) $(PY) -m pytest

# Debian's chromium for the browser test (tests/test_ui.py drives it with Playwright; nothing is
# downloaded at run time). Nothing to do when present; installed when missing and we are root
# (CI); otherwise the browser test skips and says why (in CI, CI=true, it fails instead).
chromium: ## Debian's chromium for the browser test (installed when missing and root)
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "note: no $(CHROMIUM) and not root: the browser test will skip" \
		     "(install it with: sudo apt-get install -y chromium)"; \
	fi

lint: $(STAMP) ## ruff check, ruff format --check, mypy, shellcheck scripts/*.sh
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/shellcheck scripts/*.sh

# The link of the newest sweep's saved view first (its runs grouped by init, test/acc as bars),
# then the UI. MLflow 3's GenAI job runner stays off: this project submits no such jobs.
ui: $(STAMP) ## the MLflow UI on ./mlruns, after the link to the latest sweep's view
	-@$(PY) -m initsweep.cli ui-link --tracking-uri $(STORE) \
		--base-url http://$(UI_HOST):$(UI_PORT) | sed 's/^/open the latest sweep: /'
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri $(STORE) \
		--host $(UI_HOST) --port $(UI_PORT)

cluster: $(STAMP) ## start the local SLURM cluster and mlflow server (root) and keep them up
	VENV=$(VENV) scripts/local_cluster.sh start

cluster-stop: ## stop what `make cluster` started
	VENV=$(VENV) scripts/local_cluster.sh stop
