"""Render the monitoring configs in prometheus/ and alertmanager/ into a directory the servers read.

    python -m stack.config_render --out DIR [--profile default|demo|fast] [--gpu] [--llm]
        [--local talker=127.0.0.1:18001,...]

Prometheus and Alertmanager cannot read environment variables, and the tests need other timings
and addresses than production, so this is the one step between the files in git and the running
servers (compose runs it as the one-shot `config-init` service). It changes only:

- `${VAR}` placeholders in alertmanager.yml and the email templates (values from `env`);
- webhook auth: every webhook to dingtalk-relay gets `http_config.authorization.credentials_file`
  (RELAY_WEBHOOK_TOKEN_FILE, default the compose secret /run/secrets/relay_webhook_token): the relay
  refuses webhooks without that bearer token;
- SMTP auth: `smtp_auth_password_file` from SMTP_AUTH_PASSWORD_FILE, else the password from
  SMTP_AUTH_PASSWORD; both auth fields dropped when SMTP_AUTH_USERNAME is empty;
- timings per profile (scrape/evaluation intervals, alert `for` caps, Alertmanager group timers);
- the expected talker replica count (TALKER_REPLICAS) in rules/replicas_expected.yml;
- target addresses (`addresses`: service name -> host:port, by default where stack.defaults says compose
  runs them; talker's DNS discovery of every compose replica becomes one static target), the
  `gpu_expected` target label and the dcgm-exporter job (`gpu`), the `llm` job (`llm`: the compose profile
  `llm`'s LLM server, also on when COMPOSE_PROFILES names llm), external labels (CLUSTER_NAME, DEPLOY_ENV, STACK_BOX);
- `remote_write` to a fleet's central store (PROMETHEUS_REMOTE_WRITE_URL; PROMETHEUS_REMOTE_WRITE_AUTH basic
  or bearer, the password or token read by Prometheus from PROMETHEUS_REMOTE_WRITE_CREDENTIALS_FILE: the
  secret itself never enters the rendered config);
- runbook links: the rules' `runbook_url`s are written against RUNBOOK_SOURCE (docs/runbook.md of the
  upstream repository); they are rewritten to RUNBOOK_BASE_URL (default: the copy of docs/runbook.md
  rendered here into runbook/index.html, which compose serves from Grafana at /public/runbook/).

Standard library + PyYAML only: it runs in the relay image.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from dingtalk_relay.durations import DurationError, parse_duration  # one parser; re-exported here

from stack.defaults import LISTENERS
from stack.runbook_html import render_runbook

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_SRC = REPO_ROOT / "prometheus"
ALERTMANAGER_SRC = REPO_ROOT / "alertmanager"
RUNBOOK_SRC = REPO_ROOT / "docs" / "runbook.md"
# The base every `runbook_url` in prometheus/rules is written with; each is `RUNBOOK_SOURCE#<alert lowercased>`.
RUNBOOK_SOURCE = "https://github.com/talker-stack/talker-stack/blob/main/docs/runbook.md"
# Where compose's Grafana serves the rendered runbook (relative to GRAFANA_URL): the default base.
GRAFANA_RUNBOOK_PATH = "/public/runbook/index.html"

# The renderer's name for each service (`--local talker=...`) and its listener in stack.defaults: where it
# listens in compose, as written in the committed configs.
CONFIG_SERVICES: dict[str, str] = {
    "talker": "talker_metrics",
    "dingtalk-relay": "relay",
    "node-exporter": "node_exporter",
    "alertmanager": "alertmanager",
    "prometheus": "prometheus",
    "mailpit": "smtp",
    "dcgm-exporter": "dcgm_exporter",
    "llm": "llm_server",
}
DEFAULT_ADDRESSES: dict[str, str] = {service: LISTENERS[key].address for service, key in CONFIG_SERVICES.items()}

# Every variable the templates may use, with the value used when it is unset. SMTP_AUTH_PASSWORD has
# no default on purpose: it is a secret and must come from the environment (or use the _FILE form).
ENV_DEFAULTS: dict[str, str] = {
    "SMTP_SMARTHOST": LISTENERS["smtp"].address,
    "SMTP_FROM": "talker-alerts@talker.local",
    "ALERT_EMAIL_TO": "oncall@talker.local",
    "SMTP_AUTH_USERNAME": "",
    "SMTP_AUTH_PASSWORD": "",
    "SMTP_AUTH_PASSWORD_FILE": "",
    "SMTP_REQUIRE_TLS": "false",
    "CLUSTER_NAME": "talker",
    "DEPLOY_ENV": "dev",
    # Links in notifications, for a person on the machine running the stack.
    "GRAFANA_URL": f"http://localhost:{LISTENERS['grafana'].port}",
    "ALERTMANAGER_URL": f"http://localhost:{LISTENERS['alertmanager'].port}",
    "PROMETHEUS_URL": f"http://localhost:{LISTENERS['prometheus'].port}",
    # Where ALERTMANAGER reads the relay's bearer token (a path in its container, not on this machine).
    "RELAY_WEBHOOK_TOKEN_FILE": "/run/secrets/relay_webhook_token",
    "RUNBOOK_BASE_URL": "",  # empty = GRAFANA_URL + GRAFANA_RUNBOOK_PATH
    # Fleet: each box remote-writes to one central store; `box` tells the boxes of a cluster apart there.
    "STACK_BOX": "",
    "PROMETHEUS_REMOTE_WRITE_URL": "",
    "PROMETHEUS_REMOTE_WRITE_AUTH": "none",  # none | basic | bearer
    "PROMETHEUS_REMOTE_WRITE_USERNAME": "",
    # The password (basic) or token (bearer), a path as Prometheus sees it (compose: the mounted secret).
    "PROMETHEUS_REMOTE_WRITE_CREDENTIALS_FILE": "/run/secrets/prometheus_remote_write",
    # How many talker replicas Prometheus should find (compose: the talker service's deploy.replicas).
    "TALKER_REPLICAS": "1",
}
URL_VARIABLES = ("GRAFANA_URL", "ALERTMANAGER_URL", "PROMETHEUS_URL", "RUNBOOK_BASE_URL")
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")
# Values end up inside HTML and Go templates: refuse anything that could open a tag or an action.
SAFE_URL = re.compile(r"^https?://[^\s\"'<>{}`]+$")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
BOX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_REPLICAS = 256
# The one expression of prometheus/rules/replicas_expected.yml that TALKER_REPLICAS replaces.
EXPECTED_REPLICAS = re.compile(r"(?m)^(\s+- record: talker:replicas:expected\n\s+expr: )vector\(1\)$")


@dataclass(frozen=True)
class Profile:
    scrape_interval: str
    talker_scrape_interval: str
    scrape_timeout: str
    evaluation_interval: str
    for_cap_seconds: float  # alert `for` values above this are lowered to it
    group_wait: str
    group_interval: str
    repeat_interval: str
    critical_repeat_interval: str
    heartbeat_group_wait: str
    heartbeat_group_interval: str
    heartbeat_repeat_interval: str
    resolve_timeout: str
    prometheus_args: tuple[str, ...] = ()


# None = the timings exactly as written in prometheus/ and alertmanager/ (production; their comments and
# docs/alerting.md explain them): the files stay the one place to change them.
PROFILES: dict[str, Profile | None] = {
    "default": None,
    # A person watching a demo: alerts within a minute or two, group updates every minute.
    "demo": Profile(
        "5s", "5s", "4s", "5s", 60, "10s", "1m", "1h", "30m", "5s", "1m", "50s", "5m",
        ("--rules.alert.resend-delay=5s",),
    ),
    # End-to-end tests: an injected fault must reach DingTalk within about a minute.
    "fast": Profile(
        "1s", "1s", "1s", "1s", 5, "1s", "5s", "5m", "5m", "1s", "5s", "9s", "10s",
        ("--rules.alert.resend-delay=1s",),
    ),
}


@dataclass
class RenderedConfig:
    prometheus_config: Path
    alertmanager_config: Path
    rules_dir: Path
    templates_dir: Path
    runbook_page: Path
    profile: str
    # Flags the process starting the server should add (besides --config.file and storage paths).
    prometheus_args: list[str] = field(default_factory=list)
    alertmanager_args: list[str] = field(default_factory=list)


class RenderError(ValueError):
    pass


def _rule_for_seconds(rule: Mapping[str, Any], source: Path) -> float:
    try:
        return parse_duration(rule["for"])
    except DurationError as exc:
        raise RenderError(f"{source.name}: rule {rule.get('alert') or rule.get('record')!r}: {exc}") from None


def _format_duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds >= 1 else f"{int(seconds * 1000)}ms"


def _settings(env: Mapping[str, str]) -> dict[str, str]:
    values = {name: env.get(name, default) or default for name, default in ENV_DEFAULTS.items()}
    values["SMTP_AUTH_PASSWORD"] = env.get("SMTP_AUTH_PASSWORD", "")
    if not values["RUNBOOK_BASE_URL"]:
        values["RUNBOOK_BASE_URL"] = values["GRAFANA_URL"].rstrip("/") + GRAFANA_RUNBOOK_PATH
    if "#" in values["RUNBOOK_BASE_URL"]:
        raise RenderError("RUNBOOK_BASE_URL must not contain '#': each alert appends #<alertname>")
    for name in URL_VARIABLES:
        values[name] = values[name].rstrip("/")
        if not SAFE_URL.match(values[name]):
            raise RenderError(f"{name} must be an http(s) URL without spaces, quotes or braces: {values[name]!r}")
    replicas = values["TALKER_REPLICAS"].strip()
    if not replicas.isdigit() or not 1 <= int(replicas) <= MAX_REPLICAS:
        raise RenderError(f"TALKER_REPLICAS must be a whole number from 1 to {MAX_REPLICAS}: {replicas!r}")
    values["TALKER_REPLICAS"] = str(int(replicas))
    if not SAFE_PATH.match(values["RELAY_WEBHOOK_TOKEN_FILE"]):
        raise RenderError(f"RELAY_WEBHOOK_TOKEN_FILE must be an absolute path: {values['RELAY_WEBHOOK_TOKEN_FILE']!r}")
    return values


def _substitute(text: str, values: Mapping[str, str], source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise RenderError(f"{source}: unknown placeholder ${{{name}}}")
        return values[name]

    return PLACEHOLDER.sub(replace, text)


def _substitute_tree(node: Any, values: Mapping[str, str], source: str) -> Any:
    # Substituting parsed strings (not raw text) means a value with quotes or newlines cannot alter the YAML.
    if isinstance(node, dict):
        return {key: _substitute_tree(value, values, source) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute_tree(item, values, source) for item in node]
    if isinstance(node, str):
        return _substitute(node, values, source)
    return node


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise RenderError(f"{name} must be true or false, not {text!r}")


def _check_addresses(addresses: Mapping[str, str] | None) -> dict[str, str]:
    resolved = dict(DEFAULT_ADDRESSES)
    for service, address in (addresses or {}).items():
        if service not in DEFAULT_ADDRESSES:
            raise RenderError(f"unknown service {service!r}; known: {', '.join(sorted(DEFAULT_ADDRESSES))}")
        if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d+", address):
            raise RenderError(f"address for {service} must be host:port, not {address!r}")
        resolved[service] = address
    return resolved


def _relocate(address: str, moved: Mapping[str, str]) -> str:
    return moved.get(address, address)


def _relocate_url(url: str, moved: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=moved[parts.netloc])) if parts.netloc in moved else url


def _emptied(directory: Path, pattern: str) -> Path:
    """The directory, created if needed, without files from an earlier render (a rule file removed in git
    must not linger in the volume)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(pattern):
        stale.unlink()
    return directory


def _dump_yaml(data: Any, path: Path) -> None:
    class LiteralDumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    LiteralDumper.add_representer(str, represent_str)
    header = "# Rendered by stack/config_render.py from the files in git. Do not edit: edit those and re-render.\n"
    text = yaml.dump(data, Dumper=LiteralDumper, sort_keys=False, allow_unicode=True, width=200)
    path.write_text(header + text, encoding="utf-8")


def _external_labels(values: Mapping[str, str]) -> dict[str, str]:
    labels = {"cluster": values["CLUSTER_NAME"], "env": values["DEPLOY_ENV"]}
    if values["STACK_BOX"]:
        if not BOX_NAME.match(values["STACK_BOX"]):
            raise RenderError(f"STACK_BOX must be letters, digits, '_', '.', '-' (max 63): {values['STACK_BOX']!r}")
        labels["box"] = values["STACK_BOX"]
    return labels


def _remote_write(values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The remote_write section for PROMETHEUS_REMOTE_WRITE_* (empty list: this box keeps its data to itself)."""
    url = values["PROMETHEUS_REMOTE_WRITE_URL"]
    auth = values["PROMETHEUS_REMOTE_WRITE_AUTH"].strip().lower()
    username = values["PROMETHEUS_REMOTE_WRITE_USERNAME"]
    credentials = values["PROMETHEUS_REMOTE_WRITE_CREDENTIALS_FILE"]
    if auth not in ("none", "basic", "bearer"):
        raise RenderError(f"PROMETHEUS_REMOTE_WRITE_AUTH must be none, basic or bearer, not {auth!r}")
    if not url:
        if auth != "none" or username:
            raise RenderError("PROMETHEUS_REMOTE_WRITE_AUTH/_USERNAME are set but PROMETHEUS_REMOTE_WRITE_URL is empty")
        return []
    parts = urlsplit(url)
    if not SAFE_URL.match(url) or not parts.hostname:
        raise RenderError(f"PROMETHEUS_REMOTE_WRITE_URL must be an http(s) URL without spaces or quotes: {url!r}")
    if parts.username or parts.password:
        raise RenderError("PROMETHEUS_REMOTE_WRITE_URL must not carry credentials: use PROMETHEUS_REMOTE_WRITE_AUTH "
                          "with the password or token in the credentials file")
    if not values["STACK_BOX"]:
        raise RenderError("PROMETHEUS_REMOTE_WRITE_URL needs STACK_BOX: a name unique among the boxes that write "
                          "to the central store (their series would collide without it)")
    if (auth == "basic") != bool(username):
        raise RenderError("PROMETHEUS_REMOTE_WRITE_USERNAME goes with PROMETHEUS_REMOTE_WRITE_AUTH=basic, and only "
                          f"with it (AUTH is {auth!r})")
    if auth != "none" and not credentials.startswith("/"):
        raise RenderError("PROMETHEUS_REMOTE_WRITE_CREDENTIALS_FILE must be an absolute path (in Prometheus): "
                          f"{credentials!r}")
    target: dict[str, Any] = {"name": "central", "url": url}
    if auth == "basic":
        target["basic_auth"] = {"username": username, "password_file": credentials}
    elif auth == "bearer":
        target["authorization"] = {"type": "Bearer", "credentials_file": credentials}
    return [target]


def _render_prometheus(
    out: Path, profile: Profile | None, values: Mapping[str, str], moved: Mapping[str, str], gpu: bool,
    llm: bool = False,
) -> tuple[Path, Path]:
    config = yaml.safe_load((PROMETHEUS_SRC / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"]["external_labels"] = _external_labels(values)
    remote_write = _remote_write(values)
    if remote_write:
        config["remote_write"] = remote_write
    if profile is not None:
        config["global"].update(
            scrape_interval=profile.scrape_interval,
            scrape_timeout=profile.scrape_timeout,
            evaluation_interval=profile.evaluation_interval,
        )
    for am in config["alerting"]["alertmanagers"]:
        for static in am["static_configs"]:
            static["targets"] = [_relocate(t, moved) for t in static["targets"]]
    if gpu:
        config["scrape_configs"].append(
            {"job_name": "dcgm-exporter", "static_configs": [{"targets": [DEFAULT_ADDRESSES["dcgm-exporter"]]}]}
        )
    if llm:
        # The compose profile `llm`: llama-server (--metrics) or vLLM, both at /metrics. Without the profile the
        # job does not exist, so no `up{job="llm"}` series (and no alert on it) exists either.
        config["scrape_configs"].append(
            {"job_name": "llm", "static_configs": [{"targets": [DEFAULT_ADDRESSES["llm"]]}]}
        )
    for job in config["scrape_configs"]:
        if job["job_name"] == "talker":
            if profile is not None:
                job["scrape_interval"] = profile.talker_scrape_interval
                job["scrape_timeout"] = profile.scrape_timeout
            _localise_dns_discovery(job, moved)
            for relabel in job.get("relabel_configs", []):
                if relabel.get("target_label") == "gpu_expected":
                    relabel["replacement"] = "true" if gpu else "false"
        for static in job.get("static_configs", []):
            static["targets"] = [_relocate(t, moved) for t in static["targets"]]

    prom_dir = out / "prometheus"
    rules_dir = _emptied(prom_dir / "rules", "*.yml")
    for source in sorted((PROMETHEUS_SRC / "rules").glob("*.yml")):
        target = rules_dir / source.name
        # A plain text replacement keeps the comments; the URL was checked against SAFE_URL (no spaces,
        # quotes or braces), so it cannot change the YAML around it.
        text = source.read_text(encoding="utf-8").replace(RUNBOOK_SOURCE, values["RUNBOOK_BASE_URL"])
        if source.name == "replicas_expected.yml":
            text, found = EXPECTED_REPLICAS.subn(rf"\g<1>vector({values['TALKER_REPLICAS']})", text)
            if found != 1:
                raise RenderError(f"{source}: talker:replicas:expected must be written `expr: vector(1)`")
        if profile is None:
            target.write_text(text, encoding="utf-8")  # verbatim keeps the comments for whoever reads the volume
            continue
        rules = yaml.safe_load(text)
        for group in rules.get("groups", []):
            for rule in group.get("rules", []):
                if "for" in rule and _rule_for_seconds(rule, source) > profile.for_cap_seconds:
                    rule["for"] = _format_duration(profile.for_cap_seconds)
        _dump_yaml(rules, target)
    config["rule_files"] = ["rules/*.yml"]  # relative to the rendered prometheus.yml
    config_path = prom_dir / "prometheus.yml"
    _dump_yaml(config, config_path)
    return config_path, rules_dir


def _localise_dns_discovery(job: dict[str, Any], moved: Mapping[str, str]) -> None:
    """A DNS-discovered compose service that runs as a local process: one static target instead."""
    kept, static = [], []
    for sd in job.get("dns_sd_configs", []):
        addresses = [f"{name}:{sd['port']}" for name in sd["names"]]
        if all(address in moved for address in addresses):
            static.append({"targets": [moved[address] for address in addresses]})
        else:
            kept.append(sd)
    if not static:
        return
    job["static_configs"] = job.get("static_configs", []) + static
    if kept:
        job["dns_sd_configs"] = kept
    else:
        del job["dns_sd_configs"]


def _render_alertmanager(
    out: Path, profile: Profile | None, values: Mapping[str, str], moved: Mapping[str, str]
) -> tuple[Path, Path]:
    source = ALERTMANAGER_SRC / "alertmanager.yml"
    config = _substitute_tree(yaml.safe_load(source.read_text(encoding="utf-8")), values, str(source))

    smtp = config["global"]
    smtp["smtp_require_tls"] = _parse_bool("SMTP_REQUIRE_TLS", str(smtp["smtp_require_tls"]))
    smtp["smtp_smarthost"] = _relocate(smtp["smtp_smarthost"], moved)
    if not values["SMTP_AUTH_USERNAME"]:
        smtp.pop("smtp_auth_username", None)
        smtp.pop("smtp_auth_password", None)
    elif values["SMTP_AUTH_PASSWORD_FILE"]:
        smtp.pop("smtp_auth_password", None)
        smtp["smtp_auth_password_file"] = values["SMTP_AUTH_PASSWORD_FILE"]

    if profile is not None:
        _apply_alertmanager_timings(config, profile)
    relay = DEFAULT_ADDRESSES["dingtalk-relay"]
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            if urlsplit(webhook["url"]).netloc == relay:
                # The relay answers 401 without its bearer token: no receiver to it can forget the token.
                http_config = webhook.setdefault("http_config", {})
                token_file = values["RELAY_WEBHOOK_TOKEN_FILE"]
                http_config["authorization"] = {"type": "Bearer", "credentials_file": token_file}
            webhook["url"] = _relocate_url(webhook["url"], moved)

    am_dir = out / "alertmanager"
    templates_dir = _emptied(am_dir / "templates", "*.tmpl")
    for template in sorted((ALERTMANAGER_SRC / "templates").glob("*.tmpl")):
        text = _substitute(template.read_text(encoding="utf-8"), values, str(template))
        (templates_dir / template.name).write_text(text, encoding="utf-8")
    config_path = am_dir / "alertmanager.yml"
    _dump_yaml(config, config_path)
    return config_path, templates_dir


def _apply_alertmanager_timings(config: dict[str, Any], profile: Profile) -> None:
    config["global"]["resolve_timeout"] = profile.resolve_timeout
    route = config["route"]
    route.update(
        group_wait=profile.group_wait, group_interval=profile.group_interval, repeat_interval=profile.repeat_interval
    )
    for child in route.get("routes", []):
        if child["receiver"] == "heartbeat":
            child.update(
                group_wait=profile.heartbeat_group_wait,
                group_interval=profile.heartbeat_group_interval,
                repeat_interval=profile.heartbeat_repeat_interval,
            )
        elif child["receiver"] == "oncall-critical":
            child["repeat_interval"] = profile.critical_repeat_interval


def render(
    out_dir: Path,
    *,
    profile: str = "default",
    env: Mapping[str, str] = os.environ,
    gpu: bool = False,
    addresses: Mapping[str, str] | None = None,
    llm: bool = False,
) -> RenderedConfig:
    """Write prometheus/ and alertmanager/ under out_dir; return their paths and the flags to start them with."""
    if profile not in PROFILES:
        raise RenderError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    chosen = PROFILES[profile]
    values = _settings(env)
    resolved = _check_addresses(addresses)
    moved = {DEFAULT_ADDRESSES[s]: a for s, a in resolved.items() if a != DEFAULT_ADDRESSES[s]}
    out_dir = Path(out_dir)
    prometheus_config, rules_dir = _render_prometheus(out_dir, chosen, values, moved, gpu, llm)
    alertmanager_config, templates_dir = _render_alertmanager(out_dir, chosen, values, moved)
    runbook_page = out_dir / "runbook" / "index.html"
    runbook_page.parent.mkdir(parents=True, exist_ok=True)
    runbook_page.write_text(render_runbook(RUNBOOK_SRC.read_text(encoding="utf-8")), encoding="utf-8")
    return RenderedConfig(
        prometheus_config=prometheus_config,
        alertmanager_config=alertmanager_config,
        rules_dir=rules_dir,
        templates_dir=templates_dir,
        runbook_page=runbook_page,
        profile=profile,
        prometheus_args=[f"--web.external-url={values['PROMETHEUS_URL']}", *(chosen.prometheus_args if chosen else ())],
        # A single Alertmanager: no gossip port (9094) to collide with or to expose.
        alertmanager_args=[f"--web.external-url={values['ALERTMANAGER_URL']}", "--cluster.listen-address="],
    )


def _parse_local(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        service, sep, address = item.partition("=")
        if not sep:
            raise RenderError(f"--local expects service=host:port, got {item!r}")
        pairs[service.strip()] = address.strip()
    return pairs


def llm_profile_enabled(compose_profiles: str) -> bool:
    """Whether COMPOSE_PROFILES (compose's own comma-separated setting, passed to config-init) names `llm`."""
    return "llm" in {part.strip() for part in compose_profiles.split(",")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.config_render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write prometheus/ and alertmanager/ into")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=os.environ.get("ALERT_PROFILE", "default"))
    parser.add_argument("--gpu", action="store_true", help="expect a GPU on talker and scrape dcgm-exporter")
    parser.add_argument("--llm", action="store_true",
                        help="scrape the LLM server of the compose profile `llm` (implied by llm in COMPOSE_PROFILES)")
    parser.add_argument("--local", default="", help="service=host:port,... to replace compose addresses")
    args = parser.parse_args(argv)
    try:
        rendered = render(args.out, profile=args.profile, gpu=args.gpu, addresses=_parse_local(args.local),
                          llm=args.llm or llm_profile_enabled(os.environ.get("COMPOSE_PROFILES", "")))
    except (RenderError, OSError, yaml.YAMLError) as exc:
        print(f"config_render: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(rendered), default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
