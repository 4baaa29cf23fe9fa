# Lumen build/test entry point. `make test` is the single test command (CI runs it via .ci/run).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
TOOLS := .tools
CACHE := .cache
VPY := $(VENV)/bin/python
VPIP := $(VENV)/bin/pip
LOCK := operator/requirements.lock
UPSTREAM_CRDS := $(CURDIR)/$(CACHE)/upstream-crds
SHARED_CRDS := $(abspath $(CURDIR)/../shared/upstream-crds)
LINT_PATHS := $(wildcard operator tests bench tools)

# root needs no sudo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export LUMEN_UPSTREAM_CRDS := $(UPSTREAM_CRDS)
export PATH := $(CURDIR)/$(TOOLS)/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

STAMP_APT := $(TOOLS)/.stamp-apt
STAMP_VENV := $(VENV)/.stamp-deps
STAMP_HELM := $(TOOLS)/.stamp-helm
STAMP_CRDS := $(CACHE)/upstream-crds/.stamp

.PHONY: help setup test lint bench bench-render bench-operator bench-threader bench-exporter lock crds docs rbac run clean

help: ## show this help
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: $(STAMP_APT) $(STAMP_VENV) $(STAMP_HELM) $(STAMP_CRDS) ## install everything tests need (idempotent)

test: setup lint ## lint + full pytest run (the single test command)
	$(VENV)/bin/pytest

lint: $(STAMP_VENV) ## ruff, import contracts (.importlinter), mypy --strict (tests and bench too)
	$(VENV)/bin/ruff check --config operator/pyproject.toml $(LINT_PATHS)
	$(VENV)/bin/ruff format --check --config operator/pyproject.toml $(LINT_PATHS)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy --config-file operator/pyproject.toml operator/lumen_alerting tests bench

bench: bench-render bench-operator bench-threader bench-exporter ## run every benchmark (numbers: docs/PERFORMANCE.md)

bench-render: setup ## render throughput (bench/render.py)
	$(VPY) bench/render.py

bench-operator: setup ## 200 policies at once, then 1,000 over 42 s, until Ready; CPU per policy (bench/operator.py)
	$(VPY) bench/operator.py --scale

bench-threader: setup ## webhook acknowledgements/s and latency vs a floor, Redis and SQLite (bench/threader.py)
	$(VPY) bench/threader.py

bench-exporter: setup ## scrape latency vs a floor with 100 probes (10 hung); probe schedule (bench/exporter.py)
	$(VPY) bench/exporter.py

# Debian packages providing promtool, amtool, redis-server and chromium (skipped when all are on
# PATH; the threader's fault tests start private redis-servers, the report's tests screenshot
# the HTML report in headless chromium). Rechecked when this file changes: a new package here
# reaches checkouts set up before it.
$(STAMP_APT): Makefile
	@mkdir -p $(@D)
	@if command -v promtool >/dev/null && command -v amtool >/dev/null \
	    && command -v redis-server >/dev/null && command -v chromium >/dev/null; then \
	  echo ">> promtool/amtool/redis-server/chromium present"; \
	else \
	  echo ">> apt-get install prometheus prometheus-alertmanager redis-server chromium"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    prometheus prometheus-alertmanager redis-server chromium; \
	  command -v promtool && command -v amtool && command -v redis-server && command -v chromium; \
	fi
	@touch $@

$(STAMP_VENV): $(LOCK) operator/pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPIP) install -q -r $(LOCK)
	$(VPIP) install -q --no-deps -e operator
	@touch $@

$(STAMP_HELM): tools/install-helm.sh
	tools/install-helm.sh $(CURDIR)/$(TOOLS)/bin
	@touch $@

$(STAMP_CRDS): tools/fetch_upstream_crds.py
	$(PYTHON) tools/fetch_upstream_crds.py --dest $(UPSTREAM_CRDS) --source $(SHARED_CRDS)
	@touch $@

# Regenerate the fully pinned, hashed lock from operator/pyproject.toml (needs PyPI).
lock: ## regenerate operator/requirements.lock with pip-compile
	@test -x $(TOOLS)/lock-venv/bin/pip-compile || \
	  { $(PYTHON) -m venv $(TOOLS)/lock-venv && $(TOOLS)/lock-venv/bin/pip install -q pip-tools; }
	$(TOOLS)/lock-venv/bin/pip-compile --quiet --extra test --generate-hashes --strip-extras \
	  --allow-unsafe --no-emit-index-url --no-emit-find-links \
	  --output-file $(LOCK) operator/pyproject.toml
	@{ echo '# Regenerate with: make lock'; \
	   echo '#   (= .tools/lock-venv/bin/pip-compile --extra test --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --output-file operator/requirements.lock operator/pyproject.toml)'; \
	   cat $(LOCK); } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)

crds: $(STAMP_VENV) ## regenerate crds/ from the Python model (lumenctl crd)
	@mkdir -p crds
	$(VENV)/bin/lumenctl crd > crds/lumen.dev_lumenalertpolicies.yaml.tmp
	mv crds/lumen.dev_lumenalertpolicies.yaml.tmp crds/lumen.dev_lumenalertpolicies.yaml

docs: $(STAMP_VENV) ## regenerate docs/policy-reference.md from the model
	$(VPY) tools/policy_reference.py

rbac: $(STAMP_VENV) ## regenerate files/operator-rbac.yaml from the operator's rules
	$(VPY) tools/operator_rbac.py

# ARGS passes flags through, e.g. make run ARGS="-n shop --log-format json".
run: $(STAMP_VENV) ## run the operator against the current kubeconfig context
	$(VENV)/bin/lumen-operator $(ARGS)

clean: ## remove venv, tools, caches and build output
	rm -rf $(VENV) $(TOOLS) $(CACHE) .pytest_cache .ruff_cache build dist test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find operator -name '*.egg-info' -type d -prune -exec rm -rf {} +
