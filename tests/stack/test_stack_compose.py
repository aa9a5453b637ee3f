"""docker-compose.yml for real: Docker engine + Compose v2 installed and started here, every image built
offline (stand-ins for the upstream images from Debian packages, ours from a host wheel directory), the
stack brought up with `--wait`, `make smoke`'s checks run on its network, then `down -v`.

No skipping: if the engine cannot start or an image cannot be built, the test fails with the reason.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import images
from stack.docker_env import DockerUnavailable, ensure_docker
from stack.init_env import ensure_secret_files
from stack.procs import free_port

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
# Grafana is the one upstream image with no offline stand-in: everything else is started and checked.
SERVICES = ["talker", "dingtalk-relay", "dingtalk-standin", "prometheus", "alertmanager", "node-exporter", "mailpit"]


def compose_env(project: str) -> dict[str, str]:
    return {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "GRAFANA_ADMIN_PASSWORD": "compose-e2e",
        "TALKER_ADMIN_TOKEN": secrets.token_urlsafe(16),
        "ALERT_PROFILE": "fast",
        "PROMETHEUS_RESEND_DELAY": "1s",
        "PYTHON_BASE_IMAGE": images.PYTHON_IMAGE,
        "PIP_NO_INDEX": "1",
        "PROMETHEUS_IMAGE": images.STANDIN_IMAGES["prometheus"],
        "ALERTMANAGER_IMAGE": images.STANDIN_IMAGES["alertmanager"],
        "NODE_EXPORTER_IMAGE": images.STANDIN_IMAGES["node-exporter"],
        "MAILPIT_IMAGE": images.STANDIN_IMAGES["mailpit"],
        "TALKER_IMAGE": "talker-stack/talker:e2e",
        "RELAY_IMAGE": "talker-stack/dingtalk-relay:e2e",
        "DINGTALK_STANDIN_IMAGE": "talker-stack/dingtalk-standin:e2e",
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


@pytest.fixture(scope="module")
def docker_compose_ready() -> str:
    try:
        return ensure_docker()
    except DockerUnavailable as exc:
        pytest.fail(f"Docker engine / Compose v2 unavailable: {exc}")


@pytest.fixture(scope="module")
def project_env(docker_compose_ready: str) -> Iterator[dict[str, str]]:
    env = compose_env(f"talkerstack-e2e-{os.getpid()}")
    ensure_secret_files(ROOT)  # what `make up` does first: the compose file mounts secrets/*
    yield env
    compose(env, "down", "-v", "--remove-orphans", "--timeout", "5", timeout=180)


def test_stack_compose_config_validates_plain_and_gpu(docker_compose_ready: str) -> None:
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "validate"}
    for files in (["-f", "docker-compose.yml"], ["-f", "docker-compose.yml", "-f", "docker-compose.gpu.yml"],
                  ["-f", "docker-compose.yml", "-f", "docker-compose.debug.yml"]):
        check(compose(env, *files, "config", "-q", timeout=60), f"docker compose {' '.join(files)} config")
    # The Grafana password is required: a stack must not come up with a default admin password.
    no_password = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    refused = compose(no_password, "-f", "docker-compose.yml", "--env-file", "/dev/null", "config", "-q", timeout=60)
    assert refused.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in refused.stderr


def test_stack_compose_up_and_smoke_offline(project_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    with capsys.disabled():
        try:
            images.build_standin_images()
        except images.ImageBuildError as exc:
            pytest.fail(f"offline stand-in images: {exc}")
        step("base and stand-in images ready", started)
        check(compose(project_env, "build", "talker", "dingtalk-relay", "dingtalk-standin"), "compose build")
        step("talker, dingtalk-relay, dingtalk-standin built from .cache/wheels", started)
        print("[compose-e2e] NOTE: Grafana is not started: no Grafana image can exist offline "
              "(its provisioning is covered by the monitoring tests).", flush=True)
        up = compose(project_env, "up", "-d", "--wait", *SERVICES, timeout=300)
        if up.returncode != 0:
            logs = compose(project_env, "logs", "--tail=30", timeout=60)
            pytest.fail(f"compose up --wait failed:\n{up.stderr[-3000:]}\n--- logs ---\n{logs.stdout[-6000:]}")
        step("compose up --wait: all services healthy", started)

        smoke = compose(project_env, "run", "--rm", "--no-deps", "-T", "smoke", "--fault", "--timeout", "150",
                        timeout=420)
        print(smoke.stdout, flush=True)
        if smoke.returncode != 0:
            logs = compose(project_env, "logs", "--tail=20", "dingtalk-relay", "alertmanager", "prometheus", timeout=60)
            pytest.fail(f"smoke failed on the compose stack:\n{smoke.stderr[-3000:]}\n{logs.stdout[-5000:]}")
        step("make smoke --fault passed on the compose network", started)
    assert "alert path OK" in smoke.stdout
