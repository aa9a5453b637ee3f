"""One real talker (`python -m talker`) per test session, started like a user would, on free ports.

The server runs with one synthesis slot and one queue place so overload and timeouts are cheap to
provoke, an admin token so faults can be injected, a dedicated metrics port, and its own TMPDIR so
a test can prove no temporary files are left behind.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from talker_app_tests.talker_server import (
    ADMIN_TOKEN,
    API_KEY,
    FILE_API_KEY,
    MAX_AUDIO_S,
    REQUEST_TIMEOUT_S,
    SECURED_MAX_AUDIO_S,
    WRITE_TIMEOUT_S,
    TalkerServer,
)

from stack.procs import ManagedProcess, free_port, wait_http

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def run_talker(tmp_path_factory: pytest.TempPathFactory, name: str, **settings: str) -> Iterator[TalkerServer]:
    """`python -m talker` on free ports with the test defaults below, overridden by `settings` (TALKER_*)."""
    base = tmp_path_factory.mktemp(name)
    tmpdir = base / "tmp"
    tmpdir.mkdir()
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "TMPDIR": str(tmpdir),
        "TALKER_HOST": "127.0.0.1",
        "TALKER_PORT": str(port),
        "TALKER_METRICS_PORT": str(metrics_port),
        "TALKER_ADMIN_TOKEN": ADMIN_TOKEN,
        "TALKER_MAX_CONCURRENCY": "1",
        "TALKER_MAX_QUEUE": "1",
        "TALKER_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
        "TALKER_DEVICE": "cpu",
        "TALKER_ENGINE_THREADS": "1",
        "TALKER_LOG_LEVEL": "INFO",
        **settings,
    }
    for unset in ("TALKER_LOG_TEXT", "TALKER_API_KEYS", "TALKER_API_KEYS_FILE"):
        if unset not in settings:
            env.pop(unset, None)
    with ManagedProcess("talker", [sys.executable, "-m", "talker"], log_dir=base, env=env, cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", timeout=90, proc=proc)
        yield TalkerServer(url=url, metrics_url=f"http://127.0.0.1:{metrics_port}/metrics", tmpdir=tmpdir, proc=proc)


@pytest.fixture(scope="session")
def talker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkerServer]:
    with run_talker(tmp_path_factory, "talker_server") as server:
        yield server


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkerServer]:
    """A talker with API keys (one in the variable, one in a file), a 1 s write timeout and 100 s of audio at most."""
    keys_file = tmp_path_factory.mktemp("keys") / "api_keys"
    keys_file.write_text(f"{FILE_API_KEY}\n")
    with run_talker(
        tmp_path_factory, "secured_talker",
        TALKER_API_KEYS=API_KEY, TALKER_API_KEYS_FILE=str(keys_file),
        TALKER_STREAM_WRITE_TIMEOUT_S=str(WRITE_TIMEOUT_S), TALKER_STREAM_BUFFER_BYTES="65536",
        TALKER_MAX_AUDIO_SECONDS=str(SECURED_MAX_AUDIO_S), TALKER_MAX_TEXT_CHARS="3000", TALKER_REQUEST_TIMEOUT_S="30",
    ) as server:
        yield server


@pytest.fixture
def faults(talker: TalkerServer) -> Iterator[TalkerServer]:
    """The shared server, with faults cleared and slots drained after the test whatever it did."""
    yield talker
    talker.clear_faults_and_drain()


@pytest.fixture(scope="session")
def stream_talker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkerServer]:
    """A second talker for streams: minute-long videos need more than the shared server's 3 s deadline.

    One slot and one queue place (overload is cheap to provoke), a 1 s write timeout (slow readers),
    an audio limit a text of numbers passes, 1000 characters of text (a minute of speech), no Piper."""
    base = tmp_path_factory.mktemp("talker_stream_server")
    tmpdir = base / "tmp"
    tmpdir.mkdir()
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "TMPDIR": str(tmpdir),
        "TALKER_HOST": "127.0.0.1",
        "TALKER_PORT": str(port),
        "TALKER_METRICS_PORT": str(metrics_port),
        "TALKER_ADMIN_TOKEN": ADMIN_TOKEN,
        "TALKER_MAX_CONCURRENCY": "1",
        "TALKER_MAX_QUEUE": "1",
        "TALKER_REQUEST_TIMEOUT_S": "30",
        "TALKER_STREAM_WRITE_TIMEOUT_S": str(WRITE_TIMEOUT_S),
        "TALKER_MAX_AUDIO_SECONDS": str(MAX_AUDIO_S),
        "TALKER_MAX_TEXT_CHARS": "1000",
        "TALKER_ENABLE_PIPER": "false",
        "TALKER_DEVICE": "cpu",
        "TALKER_ENGINE_THREADS": "1",
    }
    for name in ("TALKER_LOG_TEXT", "TALKER_API_KEYS", "TALKER_API_KEYS_FILE"):
        env.pop(name, None)
    with ManagedProcess("talker", [sys.executable, "-m", "talker"], log_dir=base, env=env, cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", timeout=90, proc=proc)
        # One stream first, so the threads a server keeps for good (worker pools) exist before tests count them.
        with httpx.stream("POST", f"{url}/v1/talk/stream", json={"text": "Warm up."}, timeout=30) as response:
            response.read()
        yield TalkerServer(url=url, metrics_url=f"http://127.0.0.1:{metrics_port}/metrics", tmpdir=tmpdir, proc=proc)
