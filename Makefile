# Local voice assistant: every entry point a user or CI needs.
#   make run      install everything, start all services + gateway on 127.0.0.1:8000
#   make test     install test tools, run every test tier
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen
export HF_HUB_OFFLINE := 1
RUN_FLAGS ?=

.PHONY: install install-dev proto run test test-unit test-integration test-e2e \
        test-observability test-deploy test-browser test-load bench rules dashboards generate clean

install:
	scripts/install.sh

install-dev:
	scripts/install.sh --dev

proto:
	PY=$(PY) scripts/gen_protos.sh

## Start the whole stack under one supervisor (Ctrl-C stops everything).
## PROMETHEUS=1 also starts Prometheus with the project's rules when installed.
run: install
	$(PY) -m stack $(if $(PROMETHEUS),--prometheus) $(RUN_FLAGS)

test: install-dev
	$(PYTEST) tests/unit tests/integration tests/e2e tests/observability tests/deploy
	@if command -v chromium >/dev/null 2>&1; then $(MAKE) --no-print-directory test-browser; \
	 else echo "chromium not installed: browser tier skipped"; fi

test-unit: install-dev
	$(PYTEST) tests/unit

test-integration: install-dev
	$(PYTEST) tests/integration

test-e2e: install-dev
	$(PYTEST) tests/e2e

test-observability: install-dev
	$(PYTEST) tests/observability

test-deploy: install-dev
	$(PYTEST) tests/deploy

test-browser: install-dev
	$(PYTEST) tests/browser

test-load: install-dev
	$(PY) -m loadtests.run

## Benchmarks print numbers; docs/benchmarks.md records them with this command.
bench: install-dev
	$(PY) -m bench $(BENCH_FLAGS)

rules: install-dev
	$(PY) -m observability.generate

dashboards: install-dev
	$(PY) -m dashboards.generate

## Regenerate every generated file (rules, dashboards, deploy manifests, the
## configuration doc) after changing SLOs, settings or stack/components.py.
## tests/ check that the committed copies are current.
generate: install-dev
	$(PY) -m observability.generate
	$(PY) -m dashboards.generate
	$(PY) -m deploy.generate
	$(PY) scripts/gen_config_doc.py

clean:
	rm -rf gen var artifacts .pytest_cache
