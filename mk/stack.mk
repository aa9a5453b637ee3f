# The stack: compose (up/down/clean/ps/logs), the same without Docker (dev), smoke and load tests.
# Included from the root Makefile (which defines VENV and VPY).

COMPOSE ?= docker compose
# GPU hosts get the CUDA talker and dcgm-exporter; everything else the CPU stack.
GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
COMPOSE_FILES := -f docker-compose.yml $(if $(GPU),-f docker-compose.gpu.yml)
SMOKE_ARGS ?= $(if $(FAULT),--fault)

.PHONY: up down clean ps logs build images dev smoke load compose-config

## up: start the compose stack (GPU overlay when nvidia-smi works) and wait until every service is healthy
up:
	@python3 stack/compose_check.py $(COMPOSE)
	@python3 stack/init_env.py
	$(COMPOSE) $(COMPOSE_FILES) up -d --wait

## build: build talker, dingtalk-relay and the DingTalk and LLM stand-in images
build:
	$(COMPOSE) $(COMPOSE_FILES) build

## images: offline prerequisites: .cache/wheels and the stand-in base images (see docs/stack.md)
images:
	$(VPY) -m offline.images

## down: stop and remove the containers; data volumes (Prometheus, Alertmanager, Grafana) are kept
down:
	$(COMPOSE) $(COMPOSE_FILES) down

## clean: stop and remove containers AND the data volumes
clean:
	$(COMPOSE) $(COMPOSE_FILES) down -v --remove-orphans

ps:
	$(COMPOSE) $(COMPOSE_FILES) ps

logs:
	$(COMPOSE) $(COMPOSE_FILES) logs -f --tail=100

## dev: the same stack as local processes on 127.0.0.1 (no Docker, no Grafana); Ctrl-C stops all
dev: install
	$(VPY) -m devtools.devstack

## smoke: prove the alert path (FAULT=1 adds the fault-injection scenario); compose stack if up, else dev
smoke:
	@if $(COMPOSE) ps -q prometheus 2>/dev/null | grep -q .; then \
		echo "compose stack is up: running the smoke test on its network"; \
		$(COMPOSE) $(COMPOSE_FILES) run --rm --no-deps -T smoke $(SMOKE_ARGS); \
	else \
		$(VPY) -m stack.smoke $(SMOKE_ARGS); \
	fi

## load: demo traffic against talker (RATE requests/s for DURATION s; defaults in devtools/loadgen.py)
load:
	$(VPY) -m devtools.loadgen $(if $(RATE),--rate $(RATE)) $(if $(DURATION),--duration $(DURATION))

## compose-config: validate docker-compose.yml alone and with the GPU and debug overlays
compose-config:
	$(COMPOSE) -f docker-compose.yml config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.gpu.yml config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.debug.yml config -q
	@echo "compose files valid"
