# Meterline — every entry point a developer or CI needs.  `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export METERLINE_HOME ?= $(HOME)/.cache/meterline

.PHONY: help install up down status lint fmt test test-unit demo bench reset clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## Create .venv and install runtime + dev dependencies

up: install ## Start Kafka and ClickHouse on 127.0.0.1 (installs them when missing); idempotent
	$(PY) deploy/stack.py up

down: ## Stop only the processes `make up` started (by pid)
	@if [ -x $(PY) ]; then $(PY) deploy/stack.py down; else $(PYTHON) deploy/stack.py down; fi

status: ## Health of each local service
	@if [ -x $(PY) ]; then $(PY) deploy/stack.py status; else $(PYTHON) deploy/stack.py status; fi

lint: install ## ruff + mypy --strict on the packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install ## Apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-unit: install ## Fast tests that need no services
	$(PY) -m pytest -m "not integration and not e2e" -q

test: install up lint ## Set everything up and run the whole suite (unit, integration, e2e)
	$(PY) -m pytest -q

demo: install up ## Run the pipeline on generated telemetry and print the invoices
	$(PY) deploy/demo.py

bench: install ## Benchmarks (run `make up` first); writes docs/benchmarks.md
	$(PY) bench/run.py

reset: install ## Delete the local pipeline's topics, consumer group and database (asks nothing)
	$(PY) -m streams reset --yes

clean: down ## Stop services and remove the virtualenv (the jar/package cache stays)
	rm -rf $(VENV)
