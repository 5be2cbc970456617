# Local voice assistant: every entry point a user or CI needs.
#   make run      install everything, start all services + gateway on 127.0.0.1:8000
#   make test     install test tools, run every test tier
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen
export HF_HUB_OFFLINE := 1
RUN_FLAGS ?=
# make load: a bounded steady load against the stack `make run` started.
USERS ?= 2
DURATION ?= 60s
HOST ?= ws://127.0.0.1:8000
# make capacity: user counts stepped through, seconds per step.
CAPACITY_USERS ?= 1,2,3,4,6,8
STEP_SECONDS ?= 120

.PHONY: install install-dev proto run test test-unit test-integration test-e2e \
        test-observability test-deploy test-browser test-fuzz test-load load capacity bench drill eval eval-answers \
        rules dashboards generate clean release-start release-status release-promote release-abort release-events \
        release-run

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

## Every tier runs even when an earlier one fails; the failed tiers are listed
## at the end and the exit status is non-zero if any failed.
test: install-dev
	PY=$(PY) scripts/test_tiers.sh

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

## The protocol fuzzers: FUZZ_EVENTS (default 100,000) seeded client messages, and the
## hypothesis state machine (FUZZ_SM_EXAMPLES sessions of FUZZ_SM_STEPS events, 250 x 50).
test-fuzz: install-dev
	$(PYTEST) tests/fuzz

## The smoke load (2 users, ~60 s, real stack started by the test, SLO gate).
test-load: install-dev
	$(PYTEST) tests/load

## Bounded steady load on a running `make run` stack; exits 1 when the SLO gate fails.
load: install-dev
	$(PY) -m loadtests.run --host $(HOST) --users $(USERS) --run-time $(DURATION) $(LOAD_FLAGS)

## Step users up until the SLO breaks; writes docs/capacity.md and docs/capacity.png.
## Starts its own stack unless HOST is given (make capacity HOST=ws://127.0.0.1:8000).
capacity: install-dev
	$(PY) -m loadtests.capacity --users $(CAPACITY_USERS) --step-seconds $(STEP_SECONDS) \
	  $(if $(filter command line environment,$(origin HOST)),--host $(HOST)) $(CAPACITY_FLAGS)

## An on-call drill against the stack `make run` started (docs/drills.md):
##   make drill NAME=tts-errors DRILL_ADMIN_KEY=... [DRILL_PROMETHEUS=http://127.0.0.1:9090]
## `make drill` alone lists the drills.
drill: install-dev
	$(PY) -m drills $(if $(NAME),$(NAME),--list) $(DRILL_FLAGS)

## Benchmarks print numbers; docs/benchmarks.md records them with this command.
bench: install-dev
	$(PY) -m bench $(BENCH_FLAGS)

## ASR WER/CER by slice (length, speaking rate, noise) and two releases compared:
##   make eval  EVAL_ASR_FLAGS="--a base --b tiny.en"  (report: var/eval/asr.md + .png)
## then each TTS voice's round-trip WER and first-audio latency (var/eval/tts.md),
## then end-to-end latency by stage on the whole stack (var/eval/latency.md + .png;
## EVAL_LATENCY_FLAGS="--url ws://127.0.0.1:8000/v1/realtime" measures a running one).
eval: install-dev
	$(PY) -m eval.asr $(EVAL_ASR_FLAGS)
	$(PY) -m eval.tts $(EVAL_TTS_FLAGS)
	$(PY) -m eval.latency $(EVAL_LATENCY_FLAGS)

## Answers from docs/: retrieval recall@k, key facts stated, "I don't know" outside
## the documents, unsupported claims, latency; docs/answers.md records them.
## EVAL_FLAGS="--gateway ws://127.0.0.1:8000/v1/realtime --rag 127.0.0.1:50054" asks a running stack.
eval-answers: install-dev
	$(PY) -m eval.answers $(EVAL_FLAGS)

rules: install-dev
	$(PY) -m observability.generate

dashboards: install-dev
	$(PY) -m dashboards.generate

## Regenerate every generated file (rules, dashboards, deploy manifests, the
## configuration doc) after changing SLOs, settings or common/components.py.
## tests/ check that the committed copies are current.
generate: install-dev
	$(PY) -m observability.generate
	$(PY) -m dashboards.generate
	$(PY) -m deploy.generate
	$(PY) scripts/gen_config_doc.py

## Canary releases (docs/releases.md), on the Redis the gateways share
## (RELEASE_REDIS_URL). Needs the environment `make install` made.
##   make release-start SERVICE=tts [STEPS=5,25,50,100 INTERVAL=300 HOLD_LIMIT=1800]
##   make release-run     the control loop that judges and steps (keep it running)
SERVICE ?=
STEPS ?= 5,25,50,100
INTERVAL ?= 300
HOLD_LIMIT ?= 1800
release-start:
	$(PY) -m release start --service $(SERVICE) --steps $(STEPS) --interval $(INTERVAL) --hold-limit $(HOLD_LIMIT)

release-status:
	$(PY) -m release status

release-promote:
	$(PY) -m release promote --service $(SERVICE)

release-abort:
	$(PY) -m release abort --service $(SERVICE)

release-events:
	$(PY) -m release events $(if $(SERVICE),--service $(SERVICE))

release-run:
	$(PY) -m release run $(RELEASE_FLAGS)

clean:
	rm -rf gen var artifacts .pytest_cache
