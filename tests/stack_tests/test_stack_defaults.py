"""stack/defaults.py is the one source of ports, addresses and shared defaults; every copy that cannot import it
(compose YAML, .env.example, the committed Prometheus/Alertmanager configs, the services' own defaults, the
mail sink that ships alone in an image) must agree with it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from asr_standin.server import DEFAULT_PORT as ASR_STANDIN_PORT
from dingtalk_relay.settings import RelaySettings
from dingtalk_standin.server import DEFAULT_PORT as STANDIN_DEFAULT_PORT
from llm_standin.server import DEFAULT_PORT as LLM_STANDIN_PORT
from talker.settings import Settings as TalkerSettings

from devtools import mailsink
from devtools.devstack import DevStack, StackPorts, alert_timezone
from stack.config_render import CONFIG_SERVICES, DEFAULT_ADDRESSES, ENV_DEFAULTS
from stack.defaults import ALERT_TIMEZONE, LISTENERS, LOCAL_HOST
from stack.smoke import Endpoints

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.gpu.yml", "docker-compose.debug.yml")
DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")
# The compose stack is the demo: these renderer defaults (what `make dev` gets) differ there on purpose.
COMPOSE_DEMO_VALUES = {"SMTP_FROM", "ALERT_EMAIL_TO", "DEPLOY_ENV", "GRAFANA_URL", "ALERTMANAGER_URL",
                       "PROMETHEUS_URL"}


def compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    return loaded


def compose_defaults() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name in COMPOSE_FILES:
        for variable, default in DEFAULTED.findall((ROOT / name).read_text(encoding="utf-8")):
            found.setdefault(variable, set()).add(default)
    return found


def env_example() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(encoding="utf-8"), re.MULTILINE))


def ports_of(service: str) -> set[int]:
    return {listener.port for listener in LISTENERS.values() if listener.compose_service == service}


def strings(node: Any, skip: tuple[str, ...] = ("image",)) -> list[str]:
    """Every string in a parsed compose file except image names (`grafana:11.4.0` is a tag, not a port)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() if key not in skip for s in strings(value, skip)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item, skip)]
    return [node] if isinstance(node, str) else []


def test_compose_reaches_each_service_where_the_one_source_says() -> None:
    hosts = {listener.host for listener in LISTENERS.values()}
    address = re.compile(r"(?<![\w.])(?<![\w.]-)(" + "|".join(map(re.escape, sorted(hosts))) + r"):(\d+)\b")
    checked = 0
    for name in COMPOSE_FILES:
        for text in strings(compose(name)):
            for host, port in address.findall(text):
                checked += 1
                assert int(port) in {lst.port for lst in LISTENERS.values() if lst.host == host}, (name, text)
    assert checked >= 5  # the scan sees them: DINGTALK_API_BASE, SMTP_SMARTHOST, Prometheus' listen address ...


def test_compose_ports_healthchecks_and_service_settings_use_the_one_source() -> None:
    services = compose("docker-compose.yml")["services"]
    every = [item for name in COMPOSE_FILES for item in compose(name)["services"].items()]
    published = 0
    for name, service in every:
        own = ports_of("talker" if name == "talker-lb" else name)  # talker-lb publishes talker's API port
        for mapping in service.get("ports", []):
            container_port = int(str(mapping).rsplit(":", 1)[1])
            assert container_port in own, (name, mapping)
            default = re.search(r"\$\{[A-Z_]+_PORTS?:-(\d+)(?:-\d+)?\}", str(mapping))
            assert default and int(default.group(1)) == container_port, (name, mapping)  # host port = container port
            published += 1
        health = " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
        for port in re.findall(r"127\.0\.0\.1:(\d+)", health):
            if name != "talker-lb":  # HAProxy's own health endpoint
                assert int(port) in own, (name, health)
    assert published >= 9
    talker_env, relay_env = services["talker"]["environment"], services["dingtalk-relay"]["environment"]
    assert int(talker_env["TALKER_PORT"]) == LISTENERS["talker"].port == TalkerSettings.model_fields["port"].default
    assert int(talker_env["TALKER_METRICS_PORT"]) == LISTENERS["talker_metrics"].port
    assert int(relay_env["RELAY_PORT"]) == LISTENERS["relay"].port == RelaySettings.model_fields["port"].default
    assert STANDIN_DEFAULT_PORT == LISTENERS["dingtalk"].port


# Each image's recipe and the compose service it runs as: its EXPOSE, healthcheck and start-up ports.
IMAGE_RECIPES = {
    "services/talker/Dockerfile": "talker",
    "services/dingtalk-relay/Dockerfile": "dingtalk-relay",
    "services/dingtalk-standin/Dockerfile": "dingtalk-standin",
    "services/llm-standin/Dockerfile": "llm-standin",
    "offline/recipes/mailpit/Dockerfile": "mailpit",
    "offline/recipes/mailpit/mailpit.sh": "mailpit",
    "offline/recipes/prometheus/Dockerfile": "prometheus",
    "offline/recipes/alertmanager/Dockerfile": "alertmanager",
    "offline/recipes/node-exporter/Dockerfile": "node-exporter",
}
RECIPE_PORT = re.compile(r"^EXPOSE ([\d ]+)$|127\.0\.0\.1:(\d+)|'(\d{4})'\)|_PORT=(\d+)|-port[\", ]+(\d+)",
                         re.MULTILINE)


def test_image_recipes_expose_and_check_the_ports_of_the_one_source() -> None:
    seen = 0
    for recipe, service in IMAGE_RECIPES.items():
        text = (ROOT / recipe).read_text(encoding="utf-8")
        ports = {int(port) for match in RECIPE_PORT.findall(text) for group in match for port in group.split()}
        assert ports and ports <= ports_of(service), (recipe, sorted(ports), sorted(ports_of(service)))
        seen += len(ports)
    assert seen >= 10


def test_compose_defaults_and_env_example_agree_with_each_other_and_the_one_source() -> None:
    defaults, example = compose_defaults(), env_example()
    for variable, values in defaults.items():
        assert len(values) == 1, f"{variable} has different defaults in the compose files: {values}"
        assert variable in example and {example[variable]} == values, (variable, values, example.get(variable))
    assert example["ALERT_TIMEZONE"] == ALERT_TIMEZONE
    assert example["DINGTALK_API_BASE"] == example["SMOKE_DINGTALK_URL"] == LISTENERS["dingtalk"].compose_url()
    for variable, default in ENV_DEFAULTS.items():
        if variable in defaults and variable not in COMPOSE_DEMO_VALUES:
            assert defaults[variable] == {default}, (variable, defaults[variable], default)
    for variable, listener in (("GRAFANA_URL", "grafana"), ("ALERTMANAGER_URL", "alertmanager"),
                               ("PROMETHEUS_URL", "prometheus")):
        for url in (ENV_DEFAULTS[variable], *defaults[variable]):
            assert url.endswith(f":{LISTENERS[listener].port}"), (variable, url)


def test_committed_monitoring_configs_use_the_addresses_the_renderer_relocates() -> None:
    """`make dev` and the tests move services by replacing these exact addresses: a drifted copy would stay."""
    assert DEFAULT_ADDRESSES == {service: LISTENERS[key].address for service, key in CONFIG_SERVICES.items()}
    prometheus = (ROOT / "prometheus/prometheus.yml").read_text(encoding="utf-8")
    alertmanager = (ROOT / "alertmanager/alertmanager.yml").read_text(encoding="utf-8")
    for service in ("dingtalk-relay", "node-exporter", "alertmanager", "prometheus"):
        assert DEFAULT_ADDRESSES[service] in prometheus, service
    talker = LISTENERS["talker_metrics"]
    assert re.search(rf"names: \[{talker.host}\]\s+type: A\s+port: {talker.port}\b", prometheus)
    assert f"http://{DEFAULT_ADDRESSES['dingtalk-relay']}/" in alertmanager
    assert "${SMTP_SMARTHOST}" in alertmanager and ENV_DEFAULTS["SMTP_SMARTHOST"] == DEFAULT_ADDRESSES["mailpit"]


def test_dev_stack_smoke_and_mail_sink_default_to_the_one_source(monkeypatch: Any) -> None:
    ports = StackPorts()
    assert {name: getattr(ports, name) for name in vars(ports)} == {
        name: LISTENERS[name].port for name in vars(ports)}
    dev = DevStack(ports="default")
    try:
        local = Endpoints()
        assert (local.talker, local.prometheus, local.alertmanager, local.relay, local.dingtalk, local.mailpit) == (
            dev.urls["talker"], dev.urls["prometheus"], dev.urls["alertmanager"], dev.urls["relay"],
            dev.urls["dingtalk"], dev.urls["mailpit"])
        assert local.talker_metrics == dev.urls["talker_metrics"]
        assert all(url.startswith(f"http://{LOCAL_HOST}:") for url in dev.urls.values() if "//" in url)
    finally:
        dev.stop()  # never started: only removes its work directory
    # `make smoke` in compose: every host it calls is a compose service or network alias.
    services = compose("docker-compose.yml")["services"]
    networks = [service["networks"] for service in services.values() if isinstance(service.get("networks"), dict)]
    names = set(services) | {alias for attached in networks for network in attached.values()
                             for alias in (network or {}).get("aliases", [])}
    in_compose = Endpoints.compose()
    for url in (in_compose.talker, in_compose.talker_metrics, in_compose.prometheus, in_compose.alertmanager,
                in_compose.relay, in_compose.dingtalk, in_compose.mailpit):
        assert urlsplit(url).hostname in names, url
    assert (mailsink.SMTP_PORT, mailsink.HTTP_PORT) == (LISTENERS["smtp"].port, LISTENERS["mail_http"].port)
    sink = inspect.signature(mailsink.MailSink).parameters
    assert (sink["smtp_port"].default, sink["http_port"].default) == (mailsink.SMTP_PORT, mailsink.HTTP_PORT)
    monkeypatch.delenv("ALERT_TIMEZONE", raising=False)
    assert alert_timezone() == ALERT_TIMEZONE


def test_conversation_stand_ins_and_talkers_llm_default_use_the_one_source() -> None:
    assert LLM_STANDIN_PORT == LISTENERS["llm"].port == StackPorts().llm
    assert ASR_STANDIN_PORT == LISTENERS["asr"].port
    assert TalkerSettings.model_fields["llm_base_url"].default == LISTENERS["llm"].local_url("/v1")
