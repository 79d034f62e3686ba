# Meterline — every entry point a developer or CI needs.  `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export METERLINE_HOME ?= $(HOME)/.cache/meterline

.PHONY: help install up down status lint fmt test test-unit test-cluster demo run bench bench-state bench-alerts bench-entitlements bench-scaleout bench-worker bench-layout chaos soak stress reset clean tools browser api

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

# The native event decoder (schemas/native, Rust through PyO3, built by maturin): rebuilt
# when its sources change.  cargo from PATH, else from rustup's default place.
NATIVE_SRC := $(sort $(wildcard schemas/native/src/*.rs)) schemas/native/Cargo.toml schemas/native/Cargo.lock schemas/native/pyproject.toml
NATIVE_STAMP := $(VENV)/.native-$(shell cat $(NATIVE_SRC) | sha1sum | cut -c1-12)
CARGO_DIR := $(shell dirname "$$(command -v cargo || echo $(HOME)/.cargo/bin/cargo)")

$(NATIVE_STAMP): $(STAMP) $(NATIVE_SRC)
	@test -x $(CARGO_DIR)/cargo || { echo "error: cargo not found: the native event decoder (schemas/native) is built with Rust; install it with rustup (https://rustup.rs), then run make install again"; exit 1; }
	PATH="$(CARGO_DIR):$$PATH" $(PY) -m pip install -q ./schemas/native
	@rm -f $(VENV)/.native-*; touch $@

install: $(STAMP) $(NATIVE_STAMP) ## Create .venv and install runtime + dev dependencies, and build the native event decoder

# `make up TOPOLOGY=cluster`: three Kafka nodes, ZooKeeper and ClickHouse 2 shards x 2
# replicas instead of the single node (docs/stack.md, "Cluster").
TOPOLOGY ?= single

up: install ## Start Kafka and ClickHouse on 127.0.0.1 (installs them when missing; TOPOLOGY=cluster for the cluster); idempotent
	$(PY) deploy/stack.py up --topology $(TOPOLOGY)

down: ## Stop what `make up` (either topology), `make run` and `make demo` started (by pid): generator, API, worker, Kafka, ClickHouse, the cluster
	@P=$$([ -x $(PY) ] && echo $(PY) || echo $(PYTHON)); $$P deploy/pipeline.py stop; \
	  if [ -x $(PY) ]; then $(PY) -m api stop >/dev/null; fi; $$P deploy/stack.py down

status: ## Health of each local service (the cluster's too, when started) and pipeline process
	@P=$$([ -x $(PY) ] && echo $(PY) || echo $(PYTHON)); $$P deploy/stack.py status; s=$$?; \
	  $$P deploy/pipeline.py status || s=3; exit $$s

lint: install ## ruff + mypy --strict on the packages, the tests, the benches and the deploy scripts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests
	$(VENV)/bin/mypy bench deploy

fmt: install ## Apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-unit: install ## Fast tests that need no services
	$(PY) -m pytest -m "not integration and not e2e" -q

test: install up lint tools ## Set everything up (the cluster too) and run the whole suite (unit, integration, e2e), then the pipeline e2e again on the cluster
	$(PY) deploy/stack.py up --topology cluster
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-cluster

# The exactness, SIGKILL and billing-run e2e tests of one server, run unchanged against
# the cluster: its brokers, its ClickHouse cluster (METERLINE_CLICKHOUSE_CLUSTER).
CLUSTER_E2E := tests/e2e/test_pipeline.py

test-cluster: install ## The pipeline e2e tests against the cluster topology (`make up TOPOLOGY=cluster` first)
	$(PY) deploy/stack.py up --topology cluster
	set -a && eval "$$($(PY) deploy/stack.py env --topology cluster)" && $(PY) -m pytest -q $(CLUSTER_E2E)

demo: install up ## Run the pipeline on generated telemetry, print the invoices, leave it running live
	$(PY) deploy/demo.py

run: install up ## Start the always-on pipeline (supervised worker + API) without demo data
	$(PY) deploy/pipeline.py start

# What `make tools` builds under $(TOOLS) (outside the clone, kept between runs; a version
# changed here is installed again).  helm and kubeconform come from the Go module proxy,
# the Kubernetes schemas from kubernetes-validate (PyPI, a dev dependency), the
# ServiceMonitor and PrometheusRule CRDs from the prometheus-operator module
# (deploy/kubeconform_schemas.py).
TOOLS := $(METERLINE_HOME)/tools
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
HELM_VERSION := v3.21.4
# What helm's release build stamps in: its version, and the Kubernetes version of its
# k8s.io modules (v0.36 for v3.21) as the default for rendering and deprecation checks.
HELM_LDFLAGS := -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
  $(foreach p,pkg/chartutil pkg/lint/rules,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/$(p).k8sVersionMinor=36)
KUBECONFORM_VERSION := v0.8.0
PROMETHEUS_OPERATOR_VERSION := v0.85.0
# the Operator's CRDs the chart renders (kubeconform schemas from the module above)
PROMETHEUS_CRDS := servicemonitors prometheusrules
# promtool (the Prometheus module's v0.3xx tags are Prometheus 3.x): checks and unit-tests
# the chart's alerting rules (tests/deploy/test_alert_rules.py)
PROMTOOL_VERSION := v0.316.0
KUBE_SCHEMA_VERSIONS := 1.25.0 1.37.0

tools: install ## Install what the tests use when missing: chromium, systemd, docker-compose (Debian); helm, kubeconform, promtool and the schemas (METERLINE_HOME/tools)
	@need=""; test -x /usr/bin/chromium || need="$$need chromium"; \
	  command -v systemd-analyze >/dev/null || need="$$need systemd"; \
	  command -v docker-compose >/dev/null || need="$$need docker-compose"; \
	  [ -z "$$need" ] || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$need; }
	@test -x "$(GO)" || { echo "error: Go not found at $(GO): helm and kubeconform are built with go install; run make GO=/path/to/go"; exit 1; }
	@[ "$$($(TOOLS)/bin/helm version --template '{{.Version}}' 2>/dev/null)" = $(HELM_VERSION) ] || { \
	  echo "go install helm $(HELM_VERSION) into $(TOOLS)/bin (about 4 min on 2 cores the first time)"; \
	  GOBIN=$(TOOLS)/bin $(GO) install -ldflags "$(HELM_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }
	@[ "$$($(TOOLS)/bin/kubeconform -v 2>/dev/null)" = $(KUBECONFORM_VERSION) ] || { \
	  echo "go install kubeconform $(KUBECONFORM_VERSION) into $(TOOLS)/bin"; \
	  GOBIN=$(TOOLS)/bin $(GO) install -ldflags "-X main.version=$(KUBECONFORM_VERSION)" \
	    github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION); }
	@[ "$$($(TOOLS)/bin/promtool --version 2>/dev/null | awk 'NR==1 {print $$3}')" = $(PROMTOOL_VERSION) ] || { \
	  echo "go install promtool $(PROMTOOL_VERSION) into $(TOOLS)/bin (about 6 min on 2 cores the first time)"; \
	  GOBIN=$(TOOLS)/bin $(GO) install -ldflags "-X github.com/prometheus/common/version.Version=$(PROMTOOL_VERSION)" \
	    github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION); }
	@stamp="$(KUBE_SCHEMA_VERSIONS) $(PROMETHEUS_OPERATOR_VERSION) $(PROMETHEUS_CRDS) $$(sha1sum deploy/kubeconform_schemas.py | cut -c1-12)"; \
	  [ "$$(cat $(TOOLS)/schemas/.stamp 2>/dev/null)" = "$$stamp" ] || { \
	  echo "kubeconform schemas into $(TOOLS)/schemas"; rm -rf $(TOOLS)/schemas; \
	  for v in $(KUBE_SCHEMA_VERSIONS); do \
	    $(PY) deploy/kubeconform_schemas.py kubernetes --version $$v --out $(TOOLS)/schemas || exit 1; done; \
	  mod=$$($(GO) mod download -json github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) \
	    | $(PY) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') || exit 1; \
	  $(PY) deploy/kubeconform_schemas.py crd --out $(TOOLS)/schemas \
	    $(foreach c,$(PROMETHEUS_CRDS),$$mod/example/prometheus-operator-crd/monitoring.coreos.com_$(c).yaml) || exit 1; \
	  echo "$$stamp" > $(TOOLS)/schemas/.stamp; }

browser: tools

api: install ## Run the HTTP API and dashboard in the foreground (port $$METERLINE_API_PORT or 8080)
	$(PY) -m api serve --port $${METERLINE_API_PORT:-8080}

chaos: install ## The fault matrix on a stack of its own; writes docs/reliability.md (about 10 min)
	$(PY) bench/chaos.py

soak: install up ## 20M events at a fixed rate through one worker; RSS, lag, events/s to docs/soak.png (EVENTS=, RATE=)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/soak.py --events $${EVENTS:-20000000} --rate $${RATE:-8000}

bench-state: install up ## The dedupe store at 20M retained keys: RSS, bytes per key, restart of the real worker (KEYS=; about 35 min)
	$(PY) bench/dedupe_memory.py --keys $${KEYS:-20000000} --stage all

bench-alerts: install up ## Alert latency at 10k events/s and once-only through a worker SIGKILL (RATE=, PROBES=; about 2 min)
	$(PY) bench/bench_alerts.py --rate $${RATE:-10000} --probes $${PROBES:-40}

bench-scaleout: install ## Events/s and CPU per event for 1, 2 and 3 workers on the cluster topology, and one shard's write rate (EVENTS=, REPEATS=; about 15 min)
	$(PY) deploy/stack.py up --topology cluster
	set -a && eval "$$($(PY) deploy/stack.py env --topology cluster)" && $(PY) bench/bench_scaleout.py --events-per-subject $${EVENTS:-10000} --repeats $${REPEATS:-3}

bench-worker: install up ## The worker's CPU per event: its per-chunk path in one process, then the real worker on the default stage and on a long backfill (LONG= events per subject, 0 skips it; BASELINE=<commit> for a same-run ablation; about 10-25 min)
	@if [ -n "$${BASELINE:-}" ]; then \
		rm -rf .bench-baseline && git worktree add --detach .bench-baseline $$BASELINE >/dev/null && \
		$(PY) bench/hot_path.py --rounds 3 --baseline-code .bench-baseline && \
		$(PY) bench/stream_stage.py --repeats 3 --baseline-code .bench-baseline && \
		{ [ "$${LONG:-50000}" = 0 ] || $(PY) bench/stream_stage.py --repeats 3 --events-per-subject $${LONG:-50000} --baseline-code .bench-baseline; }; \
		rc=$$?; git worktree remove --force .bench-baseline; exit $$rc; \
	else \
		$(PY) bench/hot_path.py --rounds 3 && $(PY) bench/stream_stage.py --repeats 3 && \
		{ [ "$${LONG:-50000}" = 0 ] || $(PY) bench/stream_stage.py --repeats 3 --events-per-subject $${LONG:-50000}; }; \
	fi

bench-compression: install up ## The events topic's codecs against none, one run: bytes the broker stores per event, producer and worker CPU per event, stream stage events/s, exact (CODECS=none,lz4,zstd; about 6 min)
	$(PY) bench/compression.py --repeats 3 --codecs $${CODECS:-none,lz4,zstd}

bench-layout: install up ## ClickHouse CPU per windows-table row on a backfill: the current layout against candidate ones (ROUNDS=; about 6 min)
	$(PY) bench/windows_layout.py --rounds $${ROUNDS:-3}

bench-entitlements: install up ## Entitlement check p50/p95/p99 with 10k customers and a month of windows, against /whoami (CUSTOMERS=, REQUESTS=; about 6 min)
	$(PY) bench/bench_entitlements.py --customers $${CUSTOMERS:-10000} --requests $${REQUESTS:-2000}

stress: install up ## SIGKILL end-to-end tests 20 times in a row beside a CPU hog (RUNS=20)
	$(PY) tests/stress/sigkill_under_load.py --runs $${RUNS:-20}

bench: install tools ## Benchmarks (run `make up` first; the dashboard stage drives chromium, which `tools` installs); writes docs/benchmarks.md (about 25 min)
	$(PY) bench/run.py

reset: install ## Delete the local pipeline's topics, consumer group, database and worker state (asks nothing; stop the pipeline first)
	$(PY) -m streams reset --yes

clean: down ## Stop services and remove the virtualenv and the native build directory (the jar/package cache stays)
	rm -rf $(VENV) schemas/native/target
