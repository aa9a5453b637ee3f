"""docker-compose.yml for real: Docker engine + Compose v2 installed and started here, every image built
offline (stand-ins for the upstream images from Debian packages, ours from a host wheel directory), the
stack brought up with `--wait` and two talker replicas (`TALKER_REPLICAS=2`): Prometheus must scrape both
(DNS discovery), talker-lb must spread requests over both, then `make smoke`'s checks run on its network
(the fault drill on every replica, and the LLM drill: chat turns answered by the LLM stand-in, injected LLM
latency, TalkerLLMSlowFirstToken delivered and resolved), then one replica is stopped and TalkerReplicaMissing
must come up in Prometheus, then `down -v`. Prints the time from `up` to both targets up.

The hardening is checked on the running containers: from inside talker (and the LLM stand-in, on its network)
nothing of the monitoring and alerting side answers (while the relay, on that side, reaches it all: the probe
can tell), `docker inspect`
shows no secret, and every container runs with the capabilities, user, root filesystem and memory limit
the compose file promises.

No skipping: if the engine cannot start or an image cannot be built, the test fails with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import images
from offline.docker_env import DockerUnavailable, ensure_docker
from stack import init_env
from stack.procs import free_port, poll_until

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
# Grafana is the one upstream image with no offline stand-in: everything else is started and checked.
SERVICES = ["talker", "talker-lb", "dingtalk-relay", "dingtalk-standin", "llm-standin", "prometheus",
            "alertmanager", "node-exporter", "mailpit"]
REPLICAS = 2


def compose_env(project: str, secrets_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "SECRETS_DIR": str(secrets_dir),
        "ALERT_PROFILE": "fast",
        "PROMETHEUS_RESEND_DELAY": "1s",
        "TALKER_REPLICAS": str(REPLICAS),  # deploy.replicas, and the count config-init renders for the rules
        "PYTHON_BASE_IMAGE": images.PYTHON_IMAGE,
        "PIP_NO_INDEX": "1",
        "PROMETHEUS_IMAGE": images.STANDIN_IMAGES["prometheus"],
        "ALERTMANAGER_IMAGE": images.STANDIN_IMAGES["alertmanager"],
        "NODE_EXPORTER_IMAGE": images.STANDIN_IMAGES["node-exporter"],
        "MAILPIT_IMAGE": images.STANDIN_IMAGES["mailpit"],
        "TALKER_LB_IMAGE": images.STANDIN_IMAGES["talker-lb"],
        "TALKER_IMAGE": "talker-stack/talker:e2e",
        "RELAY_IMAGE": "talker-stack/dingtalk-relay:e2e",
        "DINGTALK_STANDIN_IMAGE": "talker-stack/dingtalk-standin:e2e",
        "LLM_STANDIN_IMAGE": "talker-stack/llm-standin:e2e",
        # Other helpers' stacks may hold the default ports: publish on free ones.
        "TALKER_PUBLISHED_PORT": str(free_port()),
        "GRAFANA_PUBLISHED_PORT": str(free_port()),
        "MAILPIT_PUBLISHED_PORT": str(free_port()),
        "DINGTALK_STANDIN_PUBLISHED_PORT": str(free_port()),
    }


def compose(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "compose", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        pytest.fail(f"{what} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


def step(name: str, started: float) -> None:
    print(f"[compose-e2e] {name} ({time.monotonic() - started:.0f} s)", flush=True)


def prometheus_api(env: dict[str, str], path: str, **params: str) -> Any:
    """GET on Prometheus' API from inside its container (it is not published); the URL its healthcheck uses."""
    ready_url = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["prometheus"]["healthcheck"]
    base = ready_url["test"][-1].removesuffix("/-/ready")
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    proc = compose(env, "exec", "-T", "prometheus", "wget", "-q", "-O", "-", url, timeout=30)
    check(proc, f"wget {url} in the prometheus container")
    return json.loads(proc.stdout)["data"]


def talker_targets_up(env: dict[str, str]) -> list[str]:
    targets = prometheus_api(env, "/api/v1/targets", state="active")["activeTargets"]
    return sorted(t["labels"]["instance"] for t in targets if t["labels"]["job"] == "talker" and t["health"] == "up")


def post_tts(port: str, text: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tts", data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:  # talker-lb's 503 while no replica is ready
        return int(error.code)


@pytest.fixture(scope="module")
def docker_compose_ready() -> str:
    try:
        return ensure_docker()
    except DockerUnavailable as exc:
        pytest.fail(f"Docker engine / Compose v2 unavailable: {exc}")


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make up` creates on first run: random passwords/tokens, the demo robot, empty SMTP password."""
    directory = tmp_path_factory.mktemp("stack") / "secrets"
    init_env.ensure_secrets(directory, {})
    return directory


@pytest.fixture(scope="module")
def project_env(docker_compose_ready: str, secrets_dir: Path) -> Iterator[dict[str, str]]:
    env = compose_env(f"talkerstack-e2e-{os.getpid()}", secrets_dir)
    yield env
    compose(env, "down", "-v", "--remove-orphans", "--timeout", "5", timeout=180)


def test_stack_compose_config_validates_plain_and_gpu(docker_compose_ready: str, secrets_dir: Path) -> None:
    env = {**os.environ, "SECRETS_DIR": str(secrets_dir)}
    for files in (["-f", "docker-compose.yml"], ["-f", "docker-compose.yml", "-f", "docker-compose.gpu.yml"],
                  ["-f", "docker-compose.yml", "-f", "docker-compose.debug.yml"]):
        proc = compose(env, *files, "config", timeout=60)
        check(proc, f"docker compose {' '.join(files)} config")
        for name, value in random_secrets(secrets_dir).items():
            assert value not in proc.stdout, f"{name} is in the resolved compose config"


def random_secrets(secrets_dir: Path) -> dict[str, str]:
    """The generated secrets (the DingTalk demo robot's values are the stand-in's own, public ones)."""
    demo = {init_env.DINGTALK_DEMO_TOKEN, init_env.DINGTALK_DEMO_SECRET, ""}
    values = {p.name: p.read_text() for p in secrets_dir.iterdir() if p.read_text() not in demo}
    assert set(values) == {"grafana_admin_password", "talker_admin_token", "relay_webhook_token"}
    return values


# Run inside a container: which of these answer a TCP connect? ("refused"/"unresolvable" = unreachable.)
PROBE = """
import json, socket, sys
result = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        result[target] = "open"
    except socket.gaierror:
        result[target] = "unresolvable"
    except OSError as exc:
        result[target] = type(exc).__name__
print(json.dumps(result))
"""
# The monitoring and alerting side: Prometheus (lifecycle API), Alertmanager (silences), the relay (pages
# on-call), the mail server, node-exporter. `prometheus-web` is Prometheus' listening alias.
GUARDED = ["prometheus:9090", "prometheus-web:9090", "alertmanager:9093", "dingtalk-relay:8060", "mailpit:1025",
           "mailpit:8025", "node-exporter:9100", "dingtalk-standin:8070"]


def probe_from(env: dict[str, str], service: str, targets: list[str]) -> dict[str, str]:
    proc = compose(env, "exec", "-T", service, "python3", "-c", PROBE, *targets, timeout=120)
    check(proc, f"probe from {service}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def check_isolation(env: dict[str, str]) -> None:
    # talker reaches the LLM it asks (the demo's stand-in) and nothing of the monitoring and alerting side.
    from_talker = probe_from(env, "talker", ["127.0.0.1:8000", "llm-standin:8091", *GUARDED])
    assert from_talker.pop("127.0.0.1:8000") == "open", "the probe itself does not work"
    assert from_talker.pop("llm-standin:8091") == "open", "talker cannot reach the LLM stand-in"
    reachable = [target for target, outcome in from_talker.items() if outcome == "open"]
    assert reachable == [], f"talker reaches {reachable}: {from_talker}"
    # The LLM stand-in, on talker's network alone, neither.
    from_llm = probe_from(env, "llm-standin", ["127.0.0.1:8091", *GUARDED])
    assert from_llm.pop("127.0.0.1:8091") == "open", "the probe itself does not work"
    reachable = [target for target, outcome in from_llm.items() if outcome == "open"]
    assert reachable == [], f"llm-standin reaches {reachable}: {from_llm}"
    # The same probe from the relay (monitoring + alerting side) reaches what it must: not a dead probe.
    from_relay = probe_from(env, "dingtalk-relay", ["prometheus-web:9090", "alertmanager:9093", "mailpit:1025",
                                                    "dingtalk-standin:8070", "talker:8001", "llm-standin:8091"])
    assert from_relay == {"prometheus-web:9090": "open", "alertmanager:9093": "open", "mailpit:1025": "open",
                          "dingtalk-standin:8070": "open", "talker:8001": "unresolvable",
                          "llm-standin:8091": "unresolvable"}, from_relay


def check_containers(env: dict[str, str], secrets_dir: Path) -> None:
    ids = compose(env, "ps", "-q", timeout=60).stdout.split()
    assert len(ids) == len(SERVICES) + REPLICAS - 1, ids
    inspected = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    robot = {init_env.DINGTALK_DEMO_TOKEN, init_env.DINGTALK_DEMO_SECRET}
    for container in json.loads(inspected):
        name, host = container["Config"]["Labels"]["com.docker.compose.service"], container["HostConfig"]
        text = json.dumps(container)
        for secret, value in random_secrets(secrets_dir).items():
            assert value not in text, f"{secret} is visible in `docker inspect` of {name}"
        if name != "dingtalk-standin":  # the stand-in's demo robot is its own configuration, nobody else's
            assert not any(value in text for value in robot), f"DingTalk robot credentials in {name}'s inspect"
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], name
        assert "no-new-privileges:true" in host["SecurityOpt"], name
        assert host["ReadonlyRootfs"] is True, name
        assert host["Memory"] > 0, name
        assert host["Privileged"] is False, name
        user = container["Config"]["User"] or "root"
        assert user.split(":")[0] not in ("root", "0"), f"{name} runs as {user}"


# Builds alone took 7 minutes on the shared 2-core machine while other stacks were building: more than the
# suite's 600 s default for one test.
@pytest.mark.timeout(1200)
def test_stack_compose_up_and_smoke_offline(project_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    with capsys.disabled():
        try:
            images.build_standin_images()
        except images.ImageBuildError as exc:
            pytest.fail(f"offline stand-in images: {exc}")
        step("base and stand-in images ready", started)
        check(compose(project_env, "build", "talker", "dingtalk-relay", "dingtalk-standin", "llm-standin"),
              "compose build")
        step("talker, dingtalk-relay, dingtalk-standin, llm-standin built from .cache/wheels", started)
        print("[compose-e2e] NOTE: Grafana is not started: no Grafana image can exist offline "
              "(its provisioning is covered by the monitoring tests).", flush=True)
        up_started = time.monotonic()
        up = compose(project_env, "up", "-d", "--wait", *SERVICES, timeout=300)
        if up.returncode != 0:
            logs = compose(project_env, "logs", "--tail=30", timeout=60)
            pytest.fail(f"compose up --wait failed:\n{up.stderr[-3000:]}\n--- logs ---\n{logs.stdout[-6000:]}")
        healthy = time.monotonic() - up_started
        step(f"compose up --wait (TALKER_REPLICAS={REPLICAS}): all services healthy", started)

        try:
            instances = poll_until(lambda: len(talker_targets_up(project_env)) == REPLICAS
                                   and talker_targets_up(project_env), timeout=60, interval=0.5,
                                   what=f"{REPLICAS} talker targets up in Prometheus")
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{prometheus_api(project_env, '/api/v1/targets')}")
        print(f"[compose-e2e] time from `up` to both talker targets up in Prometheus: "
              f"{time.monotonic() - up_started:.1f} s (up --wait returned after {healthy:.1f} s); "
              f"targets {instances}", flush=True)

        check_isolation(project_env)
        step("from inside talker and llm-standin: Prometheus, Alertmanager, relay, mail server unreachable",
             started)
        check_containers(project_env, Path(project_env["SECRETS_DIR"]))
        step("docker inspect: no secret; dropped caps, no-new-privileges, read-only, memory limit, non-root",
             started)

        # talker-lb answers 503 until a replica's /readyz says its engines are loaded, then spreads the
        # published port over both replicas (least connections, round robin on ties).
        port = project_env["TALKER_PUBLISHED_PORT"]
        try:
            poll_until(lambda: post_tts(port, "first") == 200, timeout=120, interval=0.5, what="talker-lb serving")
        except TimeoutError as exc:
            logs = compose(project_env, "logs", "--tail=40", "talker-lb", "talker", timeout=60)
            pytest.fail(f"{exc}\n{logs.stdout[-5000:]}")
        print(f"[compose-e2e] time from `up` to the first request served through talker-lb: "
              f"{time.monotonic() - up_started:.1f} s", flush=True)

        def both_ready() -> bool:
            result = prometheus_api(project_env, "/api/v1/query", query='sum(talker_ready{job="talker"})')["result"]
            return bool(result) and float(result[0]["value"][1]) == REPLICAS

        poll_until(both_ready, timeout=120, interval=0.5, what=f"talker_ready on {REPLICAS} replicas")
        print(f"[compose-e2e] time from `up` to both replicas ready: {time.monotonic() - up_started:.1f} s",
              flush=True)

        # HAProxy's own readiness check (every 2 s) may still lag Prometheus': keep sending small rounds until
        # each replica has served some (at most 60 requests), or fail with what each one served.
        sent = 0

        def served_by_both() -> dict[str, float]:
            nonlocal sent
            assert all(post_tts(port, f"replica check {sent + i}") == 200 for i in range(4))
            sent += 4
            result = prometheus_api(project_env, "/api/v1/query",
                                    query='sum by (instance) (talker_http_requests_total{route="/v1/tts"})')["result"]
            counts = {r["metric"]["instance"]: float(r["value"][1]) for r in result}
            if sent >= 60:
                pytest.fail(f"talker-lb kept sending to one replica: {counts} after {sent} requests")
            return counts if len(counts) == REPLICAS and all(n >= 2 for n in counts.values()) else {}

        counts = poll_until(served_by_both, timeout=90, interval=0.5, what="/v1/tts requests served by both replicas")
        step(f"talker-lb spread {sent + 1} requests over the replicas: {counts}", started)

        smoke = compose(project_env, "run", "--rm", "--no-deps", "-T", "smoke", "--fault", "--timeout", "150",
                        timeout=420)
        print(smoke.stdout, flush=True)
        if smoke.returncode != 0:
            logs = compose(project_env, "logs", "--tail=20", "dingtalk-relay", "alertmanager", "prometheus", timeout=60)
            pytest.fail(f"smoke failed on the compose stack:\n{smoke.stderr[-3000:]}\n{logs.stdout[-5000:]}")
        step("make smoke --fault (5xx and LLM drills) passed on the compose network", started)
        check_talk_video(project_env)
        step("POST /v1/talk from the host: an MP4 made under a read-only root (scratch files in tmpfs /tmp)",
             started)
        check_replica_lost(project_env)
        step("one of two replicas stopped: it left DNS discovery and TalkerReplicaMissing came up", started)
    assert "alert path OK" in smoke.stdout
    # The LLM drill ran: real chat turns answered by the LLM stand-in, the alert delivered and resolved.
    assert "ok  chat turn answered (no fault yet)" in smoke.stdout
    assert "ok  DingTalk: TalkerLLMSlowFirstToken resolved" in smoke.stdout


def check_replica_lost(env: dict[str, str]) -> None:
    """A stopped replica vanishes from Docker's DNS (no `up == 0` for TalkerDown): the expected count catches it."""

    def replica_alert() -> list[dict[str, Any]]:
        return [alert for alert in prometheus_api(env, "/api/v1/alerts")["alerts"]
                if alert["labels"]["alertname"] == "TalkerReplicaMissing"]

    assert replica_alert() == [], "TalkerReplicaMissing before any replica was lost"
    victim = compose(env, "ps", "-q", "talker", timeout=60).stdout.split()[0]
    subprocess.run(["docker", "stop", "--time", "5", victim], capture_output=True, text=True, check=True)
    try:
        alerts = poll_until(replica_alert, timeout=90, interval=1, what="TalkerReplicaMissing in Prometheus")
    except TimeoutError as exc:
        pytest.fail(f"{exc}\ntargets: {talker_targets_up(env)}")
    assert alerts[0]["labels"]["severity"] == "warning", alerts
    assert alerts[0]["annotations"]["summary"].endswith(f"只发现 1 个副本，期望 {REPLICAS} 个"), alerts


def check_talk_video(env: dict[str, str]) -> None:
    """The whole pipeline (speech, renderer, ffmpeg) works inside the hardened talker container."""
    base = f"http://127.0.0.1:{env['TALKER_PUBLISHED_PORT']}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    poll_until(ready, timeout=180, what="talker /readyz")
    request = urllib.request.Request(f"{base}/v1/talk", data=json.dumps({"text": "read only"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        body = answer.read()
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("video/mp4")
    assert body[4:8] == b"ftyp" and len(body) > 5000, body[:64]
