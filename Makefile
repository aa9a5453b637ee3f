# talker-stack — see README.md for what each target does.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lint test

## install: create/refresh the dev environment in .venv (idempotent: reruns only when pins change)
install: $(STAMP)

$(STAMP): services/talker/pyproject.toml services/dingtalk-relay/pyproject.toml requirements-dev.txt constraints.txt
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q -c constraints.txt -r requirements-dev.txt -e services/talker -e services/dingtalk-relay
	touch $(STAMP)

# Component targets: monitoring lint (mk/monitoring.mk), stack up/down/dev/smoke/load (mk/stack.mk).
-include mk/*.mk

## lint: ruff, promtool/amtool checks, rule unit tests, dashboard lint
lint: install
	$(VENV)/bin/ruff check .
	$(MAKE) lint-monitoring

## test: everything CI runs (unit, integration, browser, local e2e, compose e2e)
test: lint
	$(VENV)/bin/pytest
