# Monitoring as code: promtool/amtool checks, rule unit tests and the dashboard lint.
# Included from the root Makefile. Alertmanager's file has ${VAR} placeholders, so the checks run on
# a rendered copy (stack/config_render.py), exactly what the servers read.
MON_RENDER_DIR ?= .cache/monitoring-render

.PHONY: lint-monitoring dashboards slo-rules

## lint-monitoring: promtool check config/rules, promtool test rules, amtool check-config, dashboard lint
lint-monitoring: install
	rm -rf $(MON_RENDER_DIR)
	$(VPY) -m stack.config_render --out $(MON_RENDER_DIR) --profile default >/dev/null
	promtool check config prometheus/prometheus.yml
	promtool check config $(MON_RENDER_DIR)/prometheus/prometheus.yml
	promtool check rules prometheus/rules/*.yml
	promtool test rules prometheus/tests/*.yml
	amtool check-config $(MON_RENDER_DIR)/alertmanager/alertmanager.yml
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/monitoring_tests -m monitoring_lint

## dashboards: regenerate grafana/dashboards/*.json from grafana/build_dashboards.py
dashboards: install
	$(VPY) -m grafana.build_dashboards

## slo-rules: regenerate prometheus/rules/slo.yml from the SLO spec prometheus/slo/slos.yml
slo-rules: install
	$(VPY) -m prometheus.slo.generate
