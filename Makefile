# Two entry points for a newcomer: `make sweep` and `make test`. Both create .venv when missing and
# install the project into it; the stamp file makes re-runs skip the install until pyproject changes.
# The cluster tests (tests/test_cluster.py) start a local SLURM cluster and a PostgreSQL-backed
# mlflow server themselves (scripts/local_cluster.sh: apt-get as root, stopped at the end);
# `make cluster` starts them by hand and keeps them up between test runs (`make cluster-stop`).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STORE  := sqlite:///$(CURDIR)/mlruns/mlflow.db
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5000
CHROMIUM ?= /usr/bin/chromium

.PHONY: install sweep test test-fast lint ui chromium cluster cluster-stop

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,cluster]"
	@touch $(STAMP)

install: $(STAMP)

sweep: $(STAMP)
	$(PY) train.py -m init=xavier,he,zeros seed=0,1,2

test: $(STAMP) chromium
	$(PY) -m ruff check .
	$(PY) -m mypy
	INITSWEEP_CHROMIUM=$(CHROMIUM) $(PY) -m pytest

# Debian's chromium for the browser test (tests/test_ui.py drives it with Playwright; nothing is
# downloaded at run time). Nothing to do when present; installed when missing and we are root
# (CI); otherwise the browser test skips and says why (in CI, CI=true, it fails instead).
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "note: no $(CHROMIUM) and not root: the browser test will skip" \
		     "(install it with: sudo apt-get install -y chromium)"; \
	fi

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

# The link of the newest sweep's saved view first (its runs grouped by init, test/acc as bars),
# then the UI. MLflow 3's GenAI job runner stays off: this project submits no such jobs.
ui: $(STAMP)
	-@$(PY) -m initsweep.cli ui-link --tracking-uri $(STORE) \
		--base-url http://$(UI_HOST):$(UI_PORT) | sed 's/^/open the latest sweep: /'
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri $(STORE) \
		--host $(UI_HOST) --port $(UI_PORT)

cluster: $(STAMP)
	VENV=$(VENV) scripts/local_cluster.sh start

cluster-stop:
	VENV=$(VENV) scripts/local_cluster.sh stop
