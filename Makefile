# 心桥 (Xinqiao). `make run` starts everything on SQLite; `make test` runs every test. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENGINE_VENV := .venv-engine
APP_VENV    := .venv
RASA        := $(ENGINE_VENV)/bin/rasa
PY          := $(APP_VENV)/bin/python
# Rasa may not phone home (no network but the package registries), and its SQLAlchemy 1.4 warnings are noise.
export RASA_TELEMETRY_ENABLED := false
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export TF_CPP_MIN_LOG_LEVEL := 2

MODEL_INPUTS := bot/config.yml $(wildcard bot/domain/*.yml) $(wildcard data/nlu/*.yml data/rules/*.yml data/stories/*.yml)
TRAIN_ARGS   := --config bot/config.yml --domain bot/domain --data data/nlu data/rules data/stories

# The learned second screen of the triage: trained from data in the repository, in the application
# environment, in seconds, only when the data, the protocol (its masks and examples) or the training code changed.
LEARNED_DIR    := triage_protocols/learned/model
LEARNED_INPUTS := data/risk_corpus/psysuicide/valid.json data/risk_corpus/everyday/everyday.tsv data/risk_corpus/guidance_topics.yml tests/triage/data/own_labelled.tsv $(wildcard data/risk_corpus/written/*.tsv) $(wildcard data/nlu/*.yml) $(wildcard data/guidance/*.yml) \
	$(filter-out triage_protocols/protocols/learned.yml,$(wildcard triage_protocols/protocols/*.yml triage_protocols/protocols/signals/*.yml)) \
	triage_protocols/learned/corpus.py triage_protocols/learned/train.py

.PHONY: help setup model learned browser migrate run test validate bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

setup: $(ENGINE_VENV)/.installed $(APP_VENV)/.installed ## create both environments if missing

$(ENGINE_VENV)/.installed: bot/requirements.txt
	@echo "creating the engine environment (Python 3.10, Rasa; about 3 minutes and 2.7 GB)"
	test -x $(ENGINE_VENV)/bin/python || "$$(scripts/find_python.sh 3.10)" -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/pip install --quiet --upgrade pip wheel
	$(ENGINE_VENV)/bin/pip install --quiet -r bot/requirements.txt
	touch $@

$(APP_VENV)/.installed: pyproject.toml
	@echo "creating the application environment (Python 3.12)"
	test -x $(APP_VENV)/bin/python || "$$(scripts/find_python.sh 3.12)" -m venv $(APP_VENV)
	$(APP_VENV)/bin/pip install --quiet --upgrade pip
	$(APP_VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

model: bot/models/.trained ## train the model if the training data changed

# Make skips training when no input is newer than the last model; Rasa skips it too when the
# fingerprint of config, domain and data is unchanged.
bot/models/.trained: $(MODEL_INPUTS) $(ENGINE_VENV)/.installed
	$(RASA) train $(TRAIN_ARGS) --out bot/models --fixed-model-name xinqiao
	touch $@

learned: $(LEARNED_DIR)/.trained ## train the triage's learned screen if its data changed

$(LEARNED_DIR)/.trained: $(LEARNED_INPUTS) $(APP_VENV)/.installed
	$(PY) -m triage_protocols.learned.train --out $(LEARNED_DIR)
	touch $@

migrate: $(APP_VENV)/.installed ## apply the database migrations
	$(PY) -m records upgrade

run: setup model learned migrate ## set up what is missing and start engine, action server and gateway
	$(PY) -m integrations.launcher

validate: setup ## check the training data
	$(RASA) data validate $(TRAIN_ARGS) --fail-on-warnings

# The console's browser test (tests/e2e/test_console_browser.py) drives Debian's chromium through
# Playwright; `playwright install` is never used. Installed only when missing and only as root.
browser: ## install chromium and a Chinese font for the browser test if missing (as root)
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and fonts-wqy-microhei for the console's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	fi

test: setup model learned browser ## run every test (unit, engine data, conversation tests, end to end, browser)
	$(PY) -m pytest

bench: setup model learned ## run the benchmarks and print their tables
	$(PY) benchmarks/triage_eval.py
	$(PY) benchmarks/nlu_eval.py
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/escalation.py
	$(PY) benchmarks/alert_latency.py
	$(PY) benchmarks/live_path.py
	$(PY) benchmarks/parent_eval.py

clean: ## remove trained models and local databases (keeps the environments)
	rm -rf bot/models var $(LEARNED_DIR)
