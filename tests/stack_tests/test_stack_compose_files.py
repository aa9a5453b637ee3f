"""The compose files and Dockerfiles keep the deployment promises (no Docker needed to check these)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import contract
import pytest
import yaml

from stack import defaults

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = {"talker-lb", "grafana", "mailpit", "dingtalk-standin"}
OUR_IMAGES = {"talker": "services/talker/Dockerfile", "dingtalk-relay": "services/dingtalk-relay/Dockerfile",
              "dingtalk-standin": "services/dingtalk-standin/Dockerfile",
              "llm-standin": "services/llm-standin/Dockerfile"}
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / name).read_text(encoding="utf-8")))


def test_stack_only_user_facing_ports_are_published_on_bind_address() -> None:
    services = load("docker-compose.yml")["services"]
    for name, service in services.items():
        ports = service.get("ports", [])
        if name in PUBLISHED:
            assert ports, f"{name} should be reachable from the host"
            assert all(str(p).startswith("${BIND_ADDRESS:-127.0.0.1}:") for p in ports), (name, ports)
        else:
            assert not ports, f"{name} must stay on the internal network, publishes {ports}"
    for name, service in load("docker-compose.debug.yml")["services"].items():
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), name


def test_stack_images_are_pinned_and_overridable() -> None:
    for file in ("docker-compose.yml", "docker-compose.gpu.yml"):
        for name, service in load(file)["services"].items():
            if "image" not in service:
                continue
            match = re.fullmatch(r"\$\{([A-Z_]+_IMAGE):-([^}]+)\}(-cuda)?", service["image"])
            assert match, f"{file}:{name} image must be ${{X_IMAGE:-pinned}}, is {service['image']}"
            if name not in OUR_IMAGES and name not in ("config-init", "smoke"):
                assert not match.group(2).endswith(":latest") and ":" in match.group(2), (name, match.group(2))


def test_stack_services_restart_and_report_health() -> None:
    base = load("docker-compose.yml")["services"]
    # The GPU overlay only adds dcgm-exporter as a whole service; the rest are patches of base services.
    services = {**base, "dcgm-exporter": load("docker-compose.gpu.yml")["services"]["dcgm-exporter"]}
    for name, service in services.items():
        if name == "config-init" or "tools" in service.get("profiles", []):
            assert service.get("restart") == "no"  # one-shot
            continue
        assert service.get("restart") == "unless-stopped", name
        if name in OUR_IMAGES:
            assert "HEALTHCHECK" in (ROOT / OUR_IMAGES[name]).read_text(), f"{name}: Dockerfile HEALTHCHECK"
        else:
            assert "healthcheck" in service, f"{name} needs a healthcheck"
    for name, service in base.items():
        for dep, spec in service.get("depends_on", {}).items():
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)


def test_stack_monitoring_configs_are_rendered_into_read_only_volumes() -> None:
    services = load("docker-compose.yml")["services"]
    assert "--web.enable-lifecycle" in services["prometheus"]["command"]
    assert "prometheus-config:/etc/prometheus/rendered:ro" in services["prometheus"]["volumes"]
    assert "alertmanager-config:/etc/alertmanager/rendered:ro" in services["alertmanager"]["volumes"]
    # SMTP secrets go only where Alertmanager reads them, never into the Prometheus volume.
    assert not any("alertmanager-config" in v for v in services["prometheus"]["volumes"])
    assert all(v.endswith(":ro") for v in services["config-init"]["volumes"] if v.startswith("./"))
    grafana = services["grafana"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    # Grafana logs an error for each provisioning directory it cannot read.
    for kind in ("datasources", "dashboards", "plugins", "alerting"):
        files = [p for p in (ROOT / "grafana/provisioning" / kind).glob("*.yml")]
        assert files and all(yaml.safe_load(f.read_text())["apiVersion"] == 1 for f in files), kind


def test_stack_gpu_overlay_reserves_nvidia_devices_and_adds_dcgm() -> None:
    gpu = load("docker-compose.gpu.yml")["services"]
    devices = gpu["talker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["talker"]["build"]["args"]["TORCH_VARIANT"].startswith("${TORCH_VARIANT:-cu")
    assert "dcgm-exporter" in gpu
    assert "--gpu" in gpu["config-init"]["environment"]["CONFIG_RENDER_ARGS"]


def test_stack_env_example_documents_every_compose_variable() -> None:
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    used: set[str] = set()
    for file in ("docker-compose.yml", "docker-compose.gpu.yml", "docker-compose.debug.yml"):
        # `$${VAR}` is a literal for the container's shell, not a compose variable.
        text = (ROOT / file).read_text().replace("$${", "")
        used |= set(VARIABLE.findall(text))
    assert used - documented == set(), f"undocumented in .env.example: {sorted(used - documented)}"


def test_stack_dockerfiles_take_a_base_image_and_run_unprivileged() -> None:
    for dockerfile in OUR_IMAGES.values():
        text = (ROOT / dockerfile).read_text()
        assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.MULTILINE), dockerfile
        user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
        assert user and user[-1] not in ("root", "0"), dockerfile
    talker = (ROOT / OUR_IMAGES["talker"]).read_text()
    assert "ARG TORCH_VARIANT=cpu" in talker and "ARG PIP_NO_INDEX" in talker


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdwy])", duration))


def test_stack_prometheus_keeps_data_for_the_longest_rule_window() -> None:
    # The 30-day error budget silently covers only the retained days when retention is shorter.
    rules = "".join(path.read_text(encoding="utf-8") for path in sorted((ROOT / "prometheus/rules").glob("*.yml")))
    longest = max(_seconds(window) for window in re.findall(r"\[(\d+[smhdwy])\]", rules))
    command = load("docker-compose.yml")["services"]["prometheus"]["command"]
    flag = next(arg for arg in command if arg.startswith("--storage.tsdb.retention.time="))
    default = re.fullmatch(r"--storage\.tsdb\.retention\.time=\$\{PROMETHEUS_RETENTION:-(\w+)\}", flag)
    assert default and _seconds(default.group(1)) >= longest, (flag, longest)
    example = re.search(r"^PROMETHEUS_RETENTION=(\w+)$", (ROOT / ".env.example").read_text(), re.MULTILINE)
    assert example and _seconds(example.group(1)) >= longest


def test_stack_node_exporter_excludes_host_mountpoints_it_reports() -> None:
    # node-exporter reports mount points as the host sees them (the rootfs prefix stripped), so the
    # exclude pattern must name host paths: a "/rootfs/..." pattern never matches anything.
    command = load("docker-compose.yml")["services"]["node-exporter"]["command"]
    flag = next(arg for arg in command if arg.startswith("--collector.filesystem.mount-points-exclude="))
    pattern = re.compile(flag.split("=", 1)[1].replace("$$", "$"))
    for excluded in ("/proc", "/sys/fs/cgroup", "/dev/shm", "/var/lib/docker/overlay2/abc/merged",
                     "/run/credentials/getty.service"):
        assert pattern.search(excluded), excluded
    for kept in ("/", "/data", "/var/lib/docker", "/home", "/etc-data"):
        assert not pattern.search(kept), kept


# --- hardening -------------------------------------------------------------------------------------
# What may differ from "read-only root, no capabilities, no new privileges, memory limit, non-root":
WRITABLE_ROOT = {"dcgm-exporter"}  # DCGM writes under /var/log and /tmp; no documented read-only mode
# dcgm-exporter: no capability while dcgm-exporter/counters.csv has no profiling field (checked below).
CAPS_ADDED = {"config-init": ["CHOWN"]}
ROOT_USER = {"config-init", "dcgm-exporter", "llm"}  # takes over the config volumes with CHOWN alone; DCGM;
# llm: llama.cpp's and vLLM's images run as root and download into a named volume Docker creates root-owned
# Upstream images whose default user is already non-root (prom/*: nobody; grafana: 472).
NON_ROOT_IMAGES = {"prometheus", "alertmanager", "node-exporter", "grafana"}


def all_services() -> dict[str, dict[str, Any]]:
    return {**load("docker-compose.yml")["services"],
            "dcgm-exporter": load("docker-compose.gpu.yml")["services"]["dcgm-exporter"]}


def test_stack_every_service_is_hardened() -> None:
    for name, service in all_services().items():
        assert service.get("cap_drop") == ["ALL"], name
        assert service.get("cap_add", []) == CAPS_ADDED.get(name, []), name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert bool(service.get("read_only")) is (name not in WRITABLE_ROOT), name
        assert re.fullmatch(r"(\$\{[A-Z_]+_MEMORY_LIMIT:-)?\d+[mg]\}?", str(service.get("mem_limit", ""))), name
        assert "privileged" not in service and "pid" not in service, name
        user = str(service.get("user", ""))
        if name in ROOT_USER:
            continue
        if user:
            assert not user.startswith("0") and not user.startswith("root"), name
        else:
            assert name in OUR_IMAGES or name in NON_ROOT_IMAGES or service["image"].startswith(
                "${RELAY_IMAGE"), f"{name}: runs as the image's user, which is not known to be non-root"


def test_stack_networks_keep_talker_away_from_monitoring_and_alerting() -> None:
    services = all_services()

    def networks(name: str) -> set[str]:
        value = services[name].get("networks", [])
        return set(value if isinstance(value, list) else value.keys())

    assert networks("talker") == {"talker"}
    on_talker_net = {name for name in services if "talker" in networks(name)}
    # Besides talker itself: Prometheus (scrapes it, listens elsewhere), talker-lb (forwards to it, on no other
    # network) and the smoke tool (tools profile).
    # and the LLMs talker calls, the demo's stand-in and the llm profile's server (on no other network, so they
    # reach nothing on the monitoring or alerting side).
    assert on_talker_net == {"talker", "prometheus", "talker-lb", "smoke", "llm", "llm-standin"}
    assert networks("talker-lb") == {"talker"} and networks("llm") == {"talker"}
    assert networks("llm-standin") == {"talker"}
    for name in ("alertmanager", "dingtalk-relay", "mailpit", "node-exporter", "grafana", "dcgm-exporter",
                 "dingtalk-standin"):
        assert "talker" not in networks(name), name
    assert services["config-init"]["network_mode"] == "none"
    assert networks("mailpit") == {"alerting"} and networks("dingtalk-standin") == {"alerting"}

    prometheus = services["prometheus"]
    listen = next(a for a in prometheus["command"] if a.startswith("--web.listen-address="))
    host = listen.split("=", 1)[1].rsplit(":", 1)[0]
    # The alias exists on the monitoring network only, so Prometheus has no open port on the talker one.
    assert prometheus["networks"]["monitoring"]["aliases"] == [host]
    assert not prometheus["networks"]["talker"]
    assert host in " ".join(prometheus["healthcheck"]["test"])
    # Docker publishes a port (debug overlay) on the network whose name sorts first.
    assert sorted(prometheus["networks"])[0] == "monitoring"
    for name in ("prometheus", "alertmanager"):
        assert "--web.route-prefix=/" in services[name]["command"], name


SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSWORD", re.IGNORECASE)


def test_stack_secrets_are_files_never_environment() -> None:
    compose = load("docker-compose.yml")
    declared = set(compose["secrets"])
    for name, service in all_services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key):
                assert key.endswith("_FILE"), f"{name}: {key} would put a secret into `docker inspect`"
                assert str(value).startswith("/run/secrets/"), (name, key, value)
                secret = str(value).removeprefix("/run/secrets/")
                assert secret in declared and (secret in service.get("secrets", []) or name == "config-init"), (
                    name, key)
            # No value is interpolated from a secret-named variable of .env or the shell.
            assert not re.search(r"\$\{[A-Z_]*(TOKEN|SECRET|PASSWORD)", str(value)), (name, key, value)
    # The stand-in knows the demo robot only: no secret is mounted there, no variable passes one on.
    standin = compose["services"]["dingtalk-standin"]
    assert "secrets" not in standin
    assert standin["environment"] == {
        "DINGTALK_STANDIN_ROBOTS": "demo-token:SECdemo-signing-secret-for-the-standin:${DINGTALK_KEYWORD:-告警}"}
    for spec in compose["secrets"].values():
        assert spec["file"].startswith("${SECRETS_DIR:-./secrets}/"), spec
    assert "/secrets/" in (ROOT / ".gitignore").read_text().splitlines()


def test_stack_talker_scales_behind_talker_lb() -> None:
    # `docker compose up --scale talker=N`: nothing in talker may be unique per host (a fixed container name or
    # published port would stop the second replica); talker-lb and Prometheus find every replica by DNS, on
    # the ports talker really listens on.
    services = load("docker-compose.yml")["services"]
    talker, lb = services["talker"], services["talker-lb"]
    assert "container_name" not in talker and "ports" not in talker
    api_port, metrics_port = talker["environment"]["TALKER_PORT"], talker["environment"]["TALKER_METRICS_PORT"]
    assert lb["ports"] == [f"${{BIND_ADDRESS:-127.0.0.1}}:${{TALKER_PUBLISHED_PORT:-8000}}:{api_port}"]
    haproxy = (ROOT / "talker-lb/haproxy.cfg").read_text(encoding="utf-8")
    assert re.search(rf"^\s+bind :{api_port}$", haproxy, re.MULTILINE)
    assert re.search(rf"^\s+server-template talker- 1-\d+ talker:{api_port}$", haproxy, re.MULTILINE)
    assert re.search(r"^\s+http-check send meth GET uri /readyz$", haproxy, re.MULTILINE)
    health_port = re.search(r"^\s+bind 127\.0\.0\.1:(\d+)$", haproxy, re.MULTILINE)
    assert health_port and f"http://127.0.0.1:{health_port.group(1)}/healthz" in lb["healthcheck"]["test"]
    assert "./talker-lb:/usr/local/etc/haproxy:ro" in lb["volumes"]
    for code in ("502", "503", "504"):
        assert f"errorfile {code} /usr/local/etc/haproxy/errors/{code}.http" in haproxy
        head, _, body = (ROOT / f"talker-lb/errors/{code}.http").read_bytes().partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.0 {code} ".encode()) and b"Content-Type: application/json" in head
        assert f"Content-Length: {len(body)}".encode() in head and "error" in json.loads(body)
    prometheus = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "talker")
    assert "static_configs" not in job
    assert job["dns_sd_configs"] == [{"names": ["talker"], "type": "A", "port": int(metrics_port),
                                      "refresh_interval": "5s"}]
    debug = load("docker-compose.debug.yml")["services"]["talker"]["ports"]
    assert debug == ["127.0.0.1:${TALKER_METRICS_PUBLISHED_PORTS:-8001-8016}:8001"]  # a range: one port per replica


def test_stack_dcgm_exporter_exports_every_dcgm_counter_the_dashboards_and_rules_read() -> None:
    dcgm = load("docker-compose.gpu.yml")["services"]["dcgm-exporter"]
    mount = next(v for v in dcgm["volumes"] if v.startswith("./dcgm-exporter/counters.csv:"))
    assert mount.endswith(":ro") and dcgm["environment"]["DCGM_EXPORTER_COLLECTORS"] == mount.split(":")[1]
    rows = [line.split(",")[0].strip() for line in (ROOT / "dcgm-exporter/counters.csv").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert all(re.fullmatch(r"DCGM_FI_[A-Z0-9_]+", row) for row in rows), rows
    used = {name for q in contract.dashboard_queries() + contract.rule_queries() for name in q.metric_names
            if name.startswith(contract.DCGM_PREFIX)}
    assert used and used <= set(rows), f"not exported by dcgm-exporter: {sorted(used - set(rows))}"
    # Profiling fields are what needs CAP_SYS_ADMIN; without them the container gets no extra capability.
    profiling = [row for row in rows if row.startswith("DCGM_FI_PROF_")]
    assert bool(profiling) == ("SYS_ADMIN" in dcgm.get("cap_add", [])), profiling
    image = re.fullmatch(r"\$\{DCGM_EXPORTER_IMAGE:-nvcr\.io/nvidia/k8s/dcgm-exporter:(\d+)\.\d+\.\d+-(\d+)\.\d+\.\d+-"
                         r"distroless\}", dcgm["image"])
    assert image and int(image.group(1)) >= 4 and int(image.group(2)) >= 4, dcgm["image"]  # DCGM 4 / exporter 4


# --- the llm profile: a real LLM server (issue 11) ------------------------------------------------------------

def compose_config(*args: str, **variables: str) -> dict[str, Any]:
    """`docker compose ... config` as JSON: what compose itself makes of the files (merge, profiles, defaults),
    with `variables` set as .env would (TALKER_LLM_BASE_URL unset unless given).

    Needs the Compose v2 CLI only, no engine; like test_stack_compose.py it fails rather than skips without it."""
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                        check=False).returncode != 0:
        pytest.fail("docker compose (Compose v2 CLI) is not installed (docs/stack.md: Tests)")
    env = {**{k: v for k, v in os.environ.items() if k != "TALKER_LLM_BASE_URL"},
           "SECRETS_DIR": "/nonexistent-secrets", "COMPOSE_PROFILES": "", **variables}
    proc = subprocess.run(["docker", "compose", "--project-directory", str(ROOT), *args, "config", "--format", "json"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_stack_llm_profile_runs_llama_cpp_and_points_talker_at_it() -> None:
    llm_listener = defaults.LISTENERS["llm_server"]
    plain = compose_config("-f", "docker-compose.yml")["services"]
    assert "llm" not in plain  # off unless the profile is on
    # The demo asks the LLM stand-in; with the profile, .env's TALKER_LLM_BASE_URL (as .env.example says) the server.
    assert plain["talker"]["environment"]["TALKER_LLM_BASE_URL"] == defaults.LISTENERS["llm"].compose_url("/v1")
    services = compose_config("-f", "docker-compose.yml", "--profile", "llm",
                              TALKER_LLM_BASE_URL=llm_listener.compose_url("/v1"))["services"]
    assert services["talker"]["environment"]["TALKER_LLM_BASE_URL"] == llm_listener.compose_url("/v1")
    llm = services["llm"]
    assert llm["image"] == "ghcr.io/ggml-org/llama.cpp:server-b6715"
    command = llm["command"][0]
    for flag in ("--metrics", f"--port {llm_listener.port}", "--host 0.0.0.0", "--hf-repo", "--hf-file",
                 "--model-url", "--alias"):
        assert flag in command, flag
    assert llm["environment"]["HF_ENDPOINT"] == "https://huggingface.co"
    assert llm["environment"]["LLM_MODEL"] == services["talker"]["environment"]["TALKER_LLM_MODEL"]
    # The Hub token: a secret file the entrypoint reads, never a value in the container's environment.
    assert [s["source"] for s in llm["secrets"]] == ["hf_token"] and "/run/secrets/hf_token" in command
    assert not any("TOKEN" in key for key in llm["environment"])
    assert [(v["source"], v["target"]) for v in llm["volumes"]] == [("llm-models", "/models")]
    assert llm["environment"]["LLAMA_CACHE"].startswith("/models/")
    assert f"http://127.0.0.1:{llm_listener.port}/health" in llm["healthcheck"]["test"]
    assert llm["cap_drop"] == ["ALL"] and "no-new-privileges:true" in llm["security_opt"] and llm["read_only"]
    assert int(llm["mem_limit"]) == 8 * 2**30
    assert set(llm["networks"]) == {"talker"}


def test_stack_llm_profile_runs_vllm_on_the_gpu_overlay() -> None:
    files = ("-f", "docker-compose.yml", "-f", "docker-compose.gpu.yml")
    services = compose_config(*files, "--profile", "llm")["services"]
    llm, talker = services["llm"], services["talker"]
    assert llm["image"] == "vllm/vllm-openai:v0.10.1.1"
    command = llm["command"][0]
    assert "vllm.entrypoints.openai.api_server" in command and '--model "$${LLM_MODEL}"' in command
    assert f"--port {defaults.LISTENERS['llm_server'].port}" in command and "/run/secrets/hf_token" in command
    assert llm["deploy"]["resources"] == talker["deploy"]["resources"]  # the GPUs, like talker's
    assert llm["environment"]["HF_ENDPOINT"] == "https://huggingface.co"
    assert llm["environment"]["XDG_CACHE_HOME"].startswith("/models/")
    assert llm["cap_drop"] == ["ALL"] and "no-new-privileges:true" in llm["security_opt"] and llm["read_only"]
    assert int(llm["mem_limit"]) == 16 * 2**30 and set(llm["networks"]) == {"talker"}
    assert "python3" in llm["healthcheck"]["test"]


def test_stack_llm_standin_answers_the_demo_conversation_as_a_labelled_hardened_stand_in() -> None:
    """The demo converses out of the box (like the DingTalk stand-in answers the robot API): the LLM stand-in,
    built from our recipe, answers to the model name talker asks for, on talker's network alone, with no secret."""
    listener = defaults.LISTENERS["llm"]
    services = compose_config("-f", "docker-compose.yml")["services"]
    standin, talker = services["llm-standin"], services["talker"]
    assert "profiles" not in standin and standin["build"]["dockerfile"] == OUR_IMAGES["llm-standin"]
    assert standin["image"] == "talker-stack/llm-standin:latest"
    assert talker["environment"]["TALKER_LLM_BASE_URL"] == f"http://{listener.compose_service}:{listener.port}/v1"
    assert standin["environment"] == {"LLM_STANDIN_MODEL": talker["environment"]["TALKER_LLM_MODEL"]}
    assert "secrets" not in standin and "ports" not in standin and set(standin["networks"]) == {"talker"}
    assert standin["cap_drop"] == ["ALL"] and "no-new-privileges:true" in standin["security_opt"]
    assert standin["read_only"] and int(standin["mem_limit"]) == 128 * 2**20
    recipe = (ROOT / OUR_IMAGES["llm-standin"]).read_text()
    assert re.search(r"^USER standin$", recipe, re.MULTILINE) and f"EXPOSE {listener.port}" in recipe
    compose_text = (ROOT / "docker-compose.yml").read_text()
    assert "# STAND-IN, demo only" in compose_text.split("  llm-standin:")[0].rsplit("\n\n", 1)[1]


def test_stack_build_context_lets_in_what_each_of_our_dockerfiles_copies() -> None:
    """.dockerignore excludes everything but what is named: a Dockerfile copying anything else fails to build."""
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    copied = 0
    for dockerfile in OUR_IMAGES.values():
        for line in re.findall(r"^COPY (?!--from)(.+)$", (ROOT / dockerfile).read_text(), re.MULTILINE):
            for source in line.split()[:-1]:
                source = source.replace("[s]", "s")  # `.cache/wheel[s]`: copied only when present
                copied += 1
                assert any(source == a or source.startswith(f"{a}/") or a.startswith(f"{source}/")
                           for a in allowed), f"{dockerfile} copies {source}, which .dockerignore leaves out"
    assert copied >= 9
