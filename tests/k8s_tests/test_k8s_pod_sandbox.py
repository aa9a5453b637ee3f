"""talker and the relay work under the constraints of the chart's own pod specs.

No cluster here, so each service runs as a local process held to what its rendered container asks for:
read-only root filesystem with only the emptyDir mounts writable, the pod's uid/gid/fsGroup, no capabilities,
no_new_privs, secret volumes as read-only 0440 files, and the rendered environment (ports and bind address
changed so the test stays on 127.0.0.1). If talker needed to write anywhere else, or the relay could not read
its mounted secrets, these fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s_tests.k8s_helpers import REPO_ROOT, one
from k8s_tests.pod_sandbox import proc_status, sandbox_argv, write_secret

from deploy.helm import chartctl
from stack.http_client import http_status
from stack.procs import ManagedProcess, free_port, wait_http

# What the image has world-readable under /opt/venv and /app: the interpreter and this checkout.
REACHABLE = [Path(sys.executable), Path(sys.base_prefix), REPO_ROOT]


@pytest.fixture(scope="module", autouse=True)
def _root() -> None:
    # A mount namespace needs root; CI (.ci/run) and this project's machines run as root.
    assert os.geteuid() == 0, "tests/k8s_tests/test_k8s_pod_sandbox.py needs root (mount namespaces)"


def _container(objs: list[dict], component: str) -> tuple[dict, dict]:
    pod = one(objs, "Deployment", component)["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def _env(container: dict, overrides: dict[str, str]) -> dict[str, str]:
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    # The image's environment (services/*/Dockerfile): PATH, unbuffered output, no .pyc writes; HOME=/app in the
    # image is read-only too.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(REPO_ROOT), **env, **overrides,
    }


def _post(url: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("content-type", "")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _assert_held(proc: ManagedProcess, pod: dict) -> None:
    status = proc_status(proc.pid)
    uid = str(pod["securityContext"]["runAsUser"])
    assert status["Uid"].split() == [uid] * 4
    assert status["Gid"].split()[0] == str(pod["securityContext"]["runAsGroup"])
    assert status["Groups"].split() == [str(pod["securityContext"]["fsGroup"])]
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1"


API_KEY = "k8s-sandbox-api-key-0123456789"


@pytest.fixture(scope="module")
def talker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    objs = chartctl.objects(chartctl.render({"talker": {"apiKeys": {"existingSecret": "talker-api-keys"}}}))
    pod, container = _container(objs, "talker")
    base = tmp_path_factory.mktemp("talker-sandbox")
    keys = write_secret(base / "api-keys", {"keys": f"other-key-abcdefghijkl\n{API_KEY}\n"},
                        pod["securityContext"]["fsGroup"])
    port, metrics_port = free_port(), free_port()
    env = _env(container, {
        "TALKER_HOST": "127.0.0.1", "TALKER_PORT": str(port), "TALKER_METRICS_PORT": str(metrics_port),
    })
    argv = sandbox_argv(pod, container, {"api-keys": keys}, [sys.executable, "-m", "talker"], env, REACHABLE)
    with ManagedProcess("talker", argv, log_dir=base, cwd=REPO_ROOT) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", timeout=180, proc=proc)
        _assert_held(proc, pod)
        yield url, f"http://127.0.0.1:{metrics_port}/metrics"
        assert proc.running(), proc.log_tail()


def test_talker_serves_speech_and_video_with_a_read_only_root(talker: tuple[str, str]) -> None:
    url, metrics_url = talker
    auth = {"authorization": f"Bearer {API_KEY}"}
    ready = json.loads(_get(f"{url}/readyz"))
    assert ready["ready"] is True and {"espeak", "piper", "animator"} <= set(ready["engines"])
    status, body, kind = _post(f"{url}/v1/talk", {"text": "Hello from a read-only pod."}, auth)
    assert status == 200 and kind == "video/mp4" and len(body) > 5000 and body[4:8] == b"ftyp"
    request = urllib.request.Request(f"{url}/v1/voices", headers=auth)
    with urllib.request.urlopen(request, timeout=10) as response:
        voices = json.loads(response.read())["voices"]
    piper = next(v["id"] for v in voices if v["engine"] == "piper")  # onnxruntime, which writes to $TMPDIR
    status, body, kind = _post(f"{url}/v1/tts", {"text": "Neural voice, read-only root.", "voice": piper}, auth)
    assert status == 200 and kind == "audio/wav" and body[:4] == b"RIFF" and len(body) > 20000
    assert b"talker_ready 1.0" in _get(metrics_url)


def test_talker_reads_its_api_keys_from_the_mounted_secret(talker: tuple[str, str]) -> None:
    url, _ = talker
    status, _, _ = _post(f"{url}/v1/tts", {"text": "no key"})
    assert status == 401
    status, _, _ = _post(f"{url}/v1/tts", {"text": "other key"}, {"authorization": "Bearer other-key-abcdefghijkl"})
    assert status == 200


@pytest.fixture(scope="module")
def relay(default_objects: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    pod, container = _container(default_objects, "dingtalk-relay")
    fs_group = pod["securityContext"]["fsGroup"]
    base = tmp_path_factory.mktemp("relay-sandbox")
    token = "k8s-sandbox-webhook-token-0123456789"
    secrets = {
        "dingtalk": write_secret(base / "dingtalk", {"token": "sandbox-robot-token", "secret": "SECsandbox"}, fs_group),
        "webhook-token": write_secret(base / "webhook", {"token": token + "\n"}, fs_group),
    }
    port = free_port()
    env = _env(container, {"RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(port)})
    argv = sandbox_argv(pod, container, secrets, [sys.executable, "-m", "dingtalk_relay"], env, REACHABLE)
    with ManagedProcess("relay", argv, log_dir=base, cwd=REPO_ROOT) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", timeout=60, proc=proc)
        _assert_held(proc, pod)
        yield url, token
        assert proc.running(), proc.log_tail()


def test_relay_reads_its_mounted_secrets_and_guards_its_webhooks(relay: tuple[str, str]) -> None:
    url, _ = relay
    assert http_status(f"{url}/readyz") == 200
    # The bearer token came from the mounted file: callers without it, or with another one, are refused
    # before anything is sent to DingTalk.
    status, body, _ = _post(f"{url}/alertmanager/default", {"version": "4", "alerts": []})
    assert status == 401, body
    status, body, _ = _post(f"{url}/heartbeat", {"version": "4", "alerts": []},
                            {"authorization": "Bearer not-the-token-0123456789"})
    assert status == 403, body
    assert b"dingtalk_relay_webhook_auth_failures_total" in _get(f"{url}/metrics")


def test_sandbox_really_is_read_only(default_objects: list[dict]) -> None:
    """The harness itself: a write into the emptyDir works, anywhere else fails."""
    pod, container = _container(default_objects, "talker")
    target = REPO_ROOT / f".k8s-sandbox-probe-{os.getpid()}"
    script = f"open('/tmp/ok', 'w').write('x'); print('tmp ok', flush=True); open('{target}', 'w').write('x')"
    argv = sandbox_argv(pod, container, {}, [sys.executable, "-c", script], _env(container, {}), REACHABLE)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT)
        assert result.stdout == "tmp ok\n", result.stdout + result.stderr
        assert result.returncode == 1 and "Read-only file system" in result.stderr, result.stderr
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)
