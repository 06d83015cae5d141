# toxiguard: `make run` sets up and runs the main job; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint format typecheck bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install toxiguard with its dev tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup  ## train every baseline on data/raw/train.csv (or the demo corpus) and register it
	$(BIN)/toxiguard run

test: setup  ## run every test (unit, integration, end to end)
	$(BIN)/pytest

test-fast: setup  ## run only the unit tests
	$(BIN)/pytest tests/unit

lint: setup  ## ruff (lint and format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup  ## run the baseline benchmark on the shared data
	$(BIN)/python benchmarks/baselines.py

clean:  ## remove the venv, caches and embedded state
	rm -rf $(VENV) .toxiguard .mypy_cache .ruff_cache .pytest_cache
