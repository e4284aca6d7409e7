# housing_platform — every command a user needs. `make demo` and `make test` set everything up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HOUSING_HOME ?= $(CURDIR)/.housing
export DAGSTER_HOME := $(HOUSING_HOME)/dagster
# Library phone-home telemetry off: this platform is meant to run offline.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export ITERATIVE_DO_NOT_TRACK := true
export DAGSTER_DISABLE_TELEMETRY := true
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: help install demo test dev mlflow-ui serve validate lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the platform with its dev tools

demo: install ## materialize the whole graph on the embedded default and print what was produced
	$(BIN)/housing-platform init
	$(BIN)/housing-platform demo

test: install ## run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

dev: install ## open the Dagster UI (webserver + daemon) on http://127.0.0.1:3000
	$(BIN)/housing-platform init
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow-ui: install ## open the MLflow UI (runs, registry, drift reports) on http://127.0.0.1:5000
	mkdir -p $(HOUSING_HOME)/mlflow
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(HOUSING_HOME)/mlflow/mlflow.db \
	    --default-artifact-root file://$(HOUSING_HOME)/mlflow/artifacts --host 127.0.0.1 --port 5000

serve: install ## serve the champion on http://127.0.0.1:8080 (docs at /docs, metrics at /metrics)
	$(BIN)/housing-platform serve

validate: install ## validate a CSV: make validate CSV=path/to/file.csv
	$(BIN)/housing-platform validate $(or $(CSV),data/california_housing.csv)

lock: install ## re-pin requirements-lock.txt to what is installed
	{ echo '# Exact versions CI and `make install` use (pip constraints); regenerate with `make lock`.'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^housing.platform'; } > requirements-lock.txt

clean: ## remove the state folder (keeps .venv)
	rm -rf $(HOUSING_HOME)

.PHONY: screenshots
screenshots: install ## refresh docs/images/*.png (the tour, the analyst's guide) with headless Chromium, as the browser tests do
	$(BIN)/python scripts/screenshots.py --output docs/images
