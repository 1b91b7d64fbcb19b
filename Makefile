# Two commands: `make run` (install, generate the default data, materialize every asset, print
# the plan) and `make test` (install, lint, run the test suite). `make ui` opens Dagster's UI.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
DATA_DIR ?= data
export GX_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export DAGSTER_HOME := $(abspath $(DATA_DIR))/dagster_home

.PHONY: install run test lint ui clean-data

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/launch-pipeline run --data-dir $(DATA_DIR)

test: install lint
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check launch_pipeline launch_pipeline_tests
	$(VENV)/bin/ruff format --check launch_pipeline launch_pipeline_tests

ui: install
	$(VENV)/bin/launch-pipeline prepare-instance --data-dir $(DATA_DIR)
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean-data:
	rm -rf $(DATA_DIR)/raw $(DATA_DIR)/warehouse.duckdb* $(DATA_DIR)/lake $(DATA_DIR)/models \
		$(DATA_DIR)/model_inputs $(DATA_DIR)/user_vectors $(DATA_DIR)/reports $(DATA_DIR)/logs \
		$(DATA_DIR)/dagster_home
