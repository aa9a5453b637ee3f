# The Kubernetes Helm chart (deploy/helm/talker-stack): lint, render and package it offline with Helm's own
# Go library (helm-python-sdk, pinned in requirements-dev.txt), no helm binary and no cluster needed.
# Included from the root Makefile. The chart's tests (tests/k8s_tests) also run in `make test`.
CHART_OUT ?= dist

.PHONY: chart lint-chart

## chart: package the chart into $(CHART_OUT)/ (rules and dashboards symlinks resolved) and render each variant
chart: install
	$(VPY) deploy/helm/chartctl.py package --out $(CHART_OUT)
	@for v in default gpu keda; do \
		f=deploy/helm/talker-stack/ci/$$v-values.yaml; [ $$v = default ] && f=; \
		$(VPY) deploy/helm/chartctl.py render $${f:+-f $$f} --out $(CHART_OUT)/manifests/$$v || exit 1; \
	done

## lint-chart: helm lint (strict) + render default/GPU/KEDA, then the offline proofs (schemas, PSS, rules)
lint-chart: install
	$(VPY) deploy/helm/chartctl.py lint
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/k8s_tests
