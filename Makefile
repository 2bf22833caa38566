# finsent — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
FINSENT := $(VENV)/bin/finsent
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: bootstrap run test test-fast test-all check-deploy model bench kafka-start kafka-stop lint lock clean

bootstrap:            ## create/refresh .venv, install finsent, fetch the Kafka jars (idempotent)
	@deploy/bootstrap.sh

run: bootstrap        ## the daemon on its embedded defaults with the demo feed (Ctrl-C stops it); a new home trains its first model meanwhile
	@exec $(FINSENT) run

test: ## the default suite (everything but @slow), real Kafka broker, Prometheus and Alertmanager included
	@deploy/bootstrap.sh --with-test-tools
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory check-deploy
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

check-deploy:         ## promtool/amtool on the shipped Prometheus and Alertmanager files, rule unit tests
	@promtool check config deploy/prometheus/prometheus.yml
	@promtool check rules deploy/prometheus/rules.yml
	@cd deploy/prometheus && promtool test rules rules.test.yml
	@amtool check-config deploy/alertmanager/alertmanager.yml

test-fast: bootstrap  ## unit tests only: no broker, no training
	@$(PY) -m pytest -m "not slow and not kafka and not e2e" $(PYTEST_ARGS)

test-all:             ## every test, slow training ones included
	@deploy/bootstrap.sh --with-test-tools
	@$(PY) -m pytest $(PYTEST_ARGS)

model: bootstrap      ## train the default model and promote it if it is the first
	@$(FINSENT) train

bench: bootstrap      ## classifier benchmark vs the transformers pipeline baseline
	@$(FINSENT) bench --json

kafka-start: bootstrap
	@deploy/kafka/kafka-local start
kafka-stop:
	@deploy/kafka/kafka-local stop

lint: bootstrap       ## ruff (lint + format check), mypy and the import-linter layers, configured in pyproject.toml; zero findings
	@$(VENV)/bin/ruff check --quiet monitor models connectors alerts tests
	@$(VENV)/bin/ruff format --check --quiet monitor models connectors alerts tests
	@$(VENV)/bin/mypy --no-error-summary
	@out=$$($(VENV)/bin/lint-imports --no-cache --no-logo 2>&1) || { echo "$$out"; exit 1; }
	@echo "lint: clean"

lock:                 ## refresh deploy/requirements.lock from pyproject.toml (keeps pins; UPGRADE=1 takes the newest)
	@test -x .cache/uv/bin/uv || { python3 -m venv .cache/uv && .cache/uv/bin/pip install -q uv; }
	@.cache/uv/bin/uv pip compile pyproject.toml --extra test --generate-hashes --universal --quiet \
	    $(if $(UPGRADE),--upgrade,) --custom-compile-command "make lock" -o deploy/requirements.lock
	@echo "deploy/requirements.lock refreshed; run make test before committing it"

clean:
	rm -rf .pytest_cache build *.egg-info deploy/kafka/libs .cache
