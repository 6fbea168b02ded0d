# Two entry points for a newcomer: `make sweep` and `make test`. Both create .venv when missing and
# install the project into it; the stamp file makes re-runs skip the install until pyproject changes.
# The cluster tests (tests/test_cluster.py) start a local SLURM cluster and a PostgreSQL-backed
# mlflow server themselves (scripts/local_cluster.sh: apt-get as root, stopped at the end);
# `make cluster` starts them by hand and keeps them up between test runs (`make cluster-stop`).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install sweep test test-fast lint ui cluster cluster-stop

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,cluster]"
	@touch $(STAMP)

install: $(STAMP)

sweep: $(STAMP)
	$(PY) train.py -m init=xavier,he,zeros seed=0,1,2

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .

ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db

cluster: $(STAMP)
	VENV=$(VENV) scripts/local_cluster.sh start

cluster-stop:
	VENV=$(VENV) scripts/local_cluster.sh stop
