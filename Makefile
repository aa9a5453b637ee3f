# talker-stack — see README.md for what each target does.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Where pip finds torch's CPU build (only torch: everything else comes from the configured index). Empty =
# pip's own configuration (here: the local wheel directory); elsewhere https://download.pytorch.org/whl/cpu.
TORCH_INDEX_URL ?=

.PHONY: install lint test lock

## install: create/refresh the dev environment in .venv from the hash-checked locks (reruns when they change)
install: $(STAMP)

$(STAMP): services/talker/pyproject.toml services/dingtalk-relay/pyproject.toml services/dingtalk-standin/pyproject.toml \
		services/asr-standin/pyproject.toml services/llm-standin/pyproject.toml locks/dev.txt locks/torch-cpu.txt
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --require-hashes -r locks/dev.txt
	$(VPY) -m pip install -q --require-hashes --no-deps $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) \
		-r locks/torch-cpu.txt
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e services/talker -e services/dingtalk-relay \
		-e services/dingtalk-standin -e services/asr-standin \
		-e services/llm-standin
	touch $(STAMP)

## lock: re-resolve constraints.txt + requirements into the hashed locks/*.txt (after changing any of them)
lock:
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m devtools.lock

# Component targets: monitoring lint (mk/monitoring.mk), stack up/down/dev/smoke/load (mk/stack.mk).
-include mk/*.mk

## lint: ruff, promtool/amtool checks, rule unit tests, dashboard lint
lint: install
	$(VENV)/bin/ruff check .
	$(MAKE) lint-monitoring

## test: everything CI runs (unit, integration, browser, local e2e, compose e2e)
test: lint
	$(VENV)/bin/pytest
