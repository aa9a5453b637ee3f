"""`make up` refuses a Docker Compose older than 2.7 (or none at all) with a clear message, tried against
fake `docker` commands printing what real ones print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def fake_docker(tmp_path: Path, output: str, status: int = 0) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(f"#!/bin/sh\n[ \"$1 $2\" = 'compose version' ] || exit 99\ncat <<'OUT'\n{output}\nOUT\n"
                      f"exit {status}\n")
    script.chmod(0o755)
    return bin_dir


def make_up_check(tmp_path: Path, output: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{fake_docker(tmp_path, output, status)}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, str(REPO / "stack/compose_check.py"), "docker", "compose"],
                          capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize("output", ["Docker Compose version v2.7.0", "Docker Compose version v2.26.1", "2.26.1-4",
                                    "Docker Compose version 2.40.3-desktop.1", "Docker Compose version v10.0.0"])
def test_stack_compose_2_7_and_newer_pass(tmp_path: Path, output: str) -> None:
    proc = make_up_check(tmp_path, output)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize(("output", "status", "expected"), [
    ("Docker Compose version v2.6.1", 0, "Docker Compose 2.6.1 is too old: talker-stack needs 2.7 or newer"),
    ("Docker Compose version v2.0.0-rc.3", 0, "Docker Compose 2.0.0 is too old"),
    ("Docker Compose version v1.29.2", 0, "Docker Compose 1.29.2 is too old"),
    ("docker: 'compose' is not a docker command.\nSee 'docker --help'", 1, "gave no Compose version "
     "(docker: 'compose' is not a docker command.)"),
    ("", 0, "gave no Compose version (exit status 0)"),
])
def test_stack_old_or_missing_compose_is_refused_clearly(tmp_path: Path, output: str, status: int,
                                                         expected: str) -> None:
    proc = make_up_check(tmp_path, output, status)
    assert proc.returncode == 1
    assert expected in proc.stderr, proc.stderr
    assert "Install Docker Compose v2.7 or newer" in proc.stderr


def test_stack_compose_command_not_installed(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "stack/compose_check.py"), str(tmp_path / "no-such-compose")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "not found" in proc.stderr


def test_stack_make_up_runs_the_check_before_compose() -> None:
    recipe = (REPO / "mk/stack.mk").read_text().split("\nup:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert recipe[0].strip() == "@python3 stack/compose_check.py $(COMPOSE)"
    assert recipe[-1].strip().startswith("$(COMPOSE) $(COMPOSE_FILES) up -d --wait")
