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

.PHONY: help setup test lint bench bench-render bench-operator bench-threader bench-exporter bench-incidents lock crds docs rbac run clean
.PHONY: demo
.PHONY: image test-image

help: ## show this help
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: $(STAMP_APT) $(STAMP_VENV) $(STAMP_HELM) $(STAMP_CRDS) ## install everything tests need (idempotent)

# The image is built first so that tests/image runs against it (LUMEN_IMAGE_REQUIRED: a missing
# image fails the run instead of skipping those tests). Lint (CPU) and the image build (mostly
# disk) run side by side, each one's output kept together. pytest runs TEST_WORKERS processes
# (pytest-xdist): most tests wait on real servers (Prometheus, Redis, helm, the image), so two
# workers use both cores; worksteal hands the long tests' neighbours to the idle worker.
TEST_WORKERS ?= 2
test: setup ## lint, build the image, then the full pytest run (the single test command)
	$(MAKE) --no-print-directory -j2 --output-sync=target lint image
	LUMEN_IMAGE=$(IMAGE) LUMEN_PODMAN="$(PODMAN)" LUMEN_IMAGE_REQUIRED=1 \
	  $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP_VENV) ## ruff, import contracts (.importlinter), mypy --strict (tests and bench too)
	$(VENV)/bin/ruff check --config operator/pyproject.toml $(LINT_PATHS)
	$(VENV)/bin/ruff format --check --config operator/pyproject.toml $(LINT_PATHS)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy --config-file operator/pyproject.toml operator/lumen_alerting tests bench

bench: bench-render bench-operator bench-threader bench-exporter bench-incidents ## run every benchmark (numbers: docs/PERFORMANCE.md)

bench-render: setup ## render throughput (bench/render.py)
	$(VPY) bench/render.py

bench-operator: setup ## 200 policies at once, then 1,000 over 42 s, until Ready; CPU per policy (bench/operator.py)
	$(VPY) bench/operator.py --scale

bench-threader: setup ## webhook acknowledgements/s and latency vs a one-write floor, every store side by side (bench/threader.py)
	$(VPY) bench/threader.py

bench-incidents: setup ## webhook acks/s with vs without the incident store; list p99 over 100,000 incidents on PostgreSQL (bench/incidents.py)
	$(VPY) bench/incidents.py

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

.PHONY: chart-docs
chart-docs: $(STAMP_VENV) ## regenerate README.md's chart values table, and charts/*/values.schema.json and README.md
	$(VPY) tools/chart_values.py
	$(VPY) tools/standalone_chart_values.py --write

# Loopback only, no cluster and no Slack account (docs/demo.md); DEMO_KEEP=1 stays up until
# Ctrl-C; SLACK_BOT_TOKEN and SLACK_CHANNEL post to that real Slack channel instead of the sink.
demo: setup ## Lumen end to end on loopback: operator + kubectl on the API emulator, exporter, Prometheus, Alertmanager, threader, Slack view (docs/demo.md)
	$(VPY) -m lumen_alerting.demo

# ARGS passes flags through, e.g. make run ARGS="-n shop --log-format json".
run: $(STAMP_VENV) ## run the operator against the current kubeconfig context
	$(VENV)/bin/lumen-operator $(ARGS)

# The container image (Dockerfile), built with podman as ../shared/containers/README.md describes:
# vfs storage, runc, the host network, and a Debian base made once by mmdebstrap (cached in
# .cache/image) instead of a pulled one. IMAGE is the name the renderer writes into workloads.
IMAGE ?= $(shell sed -n 's/^DEFAULT_IMAGE = "\(.*\)"$$/\1/p' operator/lumen_alerting/render/objects.py)
IMAGE_BASE ?= localhost/lumen-base:bookworm
IMAGE_BASE_TAR := $(CACHE)/image/base-bookworm.tar
IMAGE_CONTAINERS_CONF := $(wildcard $(abspath $(CURDIR)/../shared/containers/containers.conf))
PODMAN ?= $(if $(IMAGE_CONTAINERS_CONF),env CONTAINERS_CONF=$(IMAGE_CONTAINERS_CONF) )podman \
  --storage-driver vfs --runtime runc --cgroup-manager cgroupfs
# The revision is a --label: with --build-arg REVISION podman 4.3 reuses the cached LABEL step
# when only the argument's value changed, and the image would name an old commit.
# A TLS-intercepting proxy's CA is in the host's bundle: the build's pip uses it (Dockerfile).
IMAGE_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
STAMP_APT_IMAGE := $(TOOLS)/.stamp-apt-image

image: $(STAMP_APT_IMAGE) ## build the container image (IMAGE, default: the renderer's image name) with podman
	@test -n "$(IMAGE)" || { echo "no DEFAULT_IMAGE in render/objects.py; set IMAGE=" >&2; exit 1; }
	$(PODMAN) image exists $(IMAGE_BASE) \
	  || { $(MAKE) --no-print-directory $(IMAGE_BASE_TAR) && $(PODMAN) import $(IMAGE_BASE_TAR) $(IMAGE_BASE); }
	$(PODMAN) build --network host --layers --build-arg BASE=$(IMAGE_BASE) \
	  --label org.opencontainers.image.revision=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  $(if $(wildcard $(IMAGE_CA_BUNDLE)),--volume $(IMAGE_CA_BUNDLE):/etc/ssl/certs/ca-certificates.crt:ro) \
	  --tag $(IMAGE) .
	@echo "built $(IMAGE)"

# Starts the image read-only as 65532 and checks each entry point (tests/image).
test-image: image $(STAMP_VENV) ## build the image, then run tests/image against it
	LUMEN_IMAGE=$(IMAGE) LUMEN_PODMAN="$(PODMAN)" LUMEN_IMAGE_REQUIRED=1 $(VENV)/bin/pytest tests/image

$(IMAGE_BASE_TAR):
	@mkdir -p $(@D)
	mmdebstrap --variant=apt --include=python3-minimal,python3-venv,ca-certificates \
	  bookworm $(@D)/base.partial.tar
	mv $(@D)/base.partial.tar $@

$(STAMP_APT_IMAGE):
	@mkdir -p $(@D)
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null \
	  || { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q \
	       && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	            --no-install-recommends podman runc mmdebstrap; }
	@touch $@

clean: ## remove venv, tools, caches and build output
	rm -rf $(VENV) $(TOOLS) $(CACHE) .pytest_cache .ruff_cache build dist test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find operator -name '*.egg-info' -type d -prune -exec rm -rf {} +
