# toxiguard: `make run` sets up and runs the main job; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup clients run stop test test-fast lint secrets-baseline format bench images clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install toxiguard with every extra and its dev tools

# Every extra (transformer, ui, orchestration, monitoring) and the dev tools: the tests use them
# all. A lighter install is `pip install .` (the core) plus the extras wanted (see pyproject.toml).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# Google's Node client for the Perspective API, which the tests run against our server (npm).
NODE_CLIENT := tests/clients/node
clients: $(NODE_CLIENT)/node_modules/.package-lock.json  ## install the Node client the tests use
$(NODE_CLIENT)/node_modules/.package-lock.json: $(NODE_CLIENT)/package-lock.json
	npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund --silent

run: setup  ## train the baselines (if no champion yet), then start MLflow, Prefect and the API
	$(BIN)/toxiguard run

stop: setup  ## stop every service `make run` started
	$(BIN)/toxiguard stack down

test: setup clients  ## run every test (unit, integration, end to end)
	$(BIN)/pytest

test-fast: setup  ## run only the unit tests
	$(BIN)/pytest tests/unit

lint: setup  ## ruff (lint and format check), mypy, the layers contract, bandit, detect-secrets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/bandit -q -r src -ll  # medium and high findings fail; each kept one says why (# nosec)
	$(BIN)/python .ci/check_secrets.py  # no secret in a tracked file unless audited as an example

secrets-baseline: setup  ## re-scan for secrets after moving lines that hold audited examples
	$(BIN)/detect-secrets scan --baseline .secrets.baseline

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup  ## run the baseline benchmark on the shared data
	$(BIN)/python benchmarks/baselines.py

# IMAGES="serve" builds only that one. Needs root, podman and mmdebstrap (deploy/images.sh).
images: setup  ## build the serve and full images with podman, then check serve answers a prediction
	bash deploy/images.sh

clean:  ## remove the venv, caches and embedded state
	rm -rf $(VENV) .toxiguard .mypy_cache .ruff_cache .pytest_cache
