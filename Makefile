# talker-stack — see README.md for what each target does.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lint test test-fast

## install: create/refresh the dev environment in .venv (idempotent)
install: $(STAMP)

$(STAMP): services/talker/pyproject.toml services/dingtalk-relay/pyproject.toml requirements-dev.txt
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q -c constraints.txt -r requirements-dev.txt -e services/talker -e services/dingtalk-relay
	touch $(STAMP)

## lint: ruff + monitoring config checks
lint: install
	$(VENV)/bin/ruff check .

## test: everything CI runs (unit, integration, browser, e2e, compose e2e)
test: install
	$(VENV)/bin/pytest
