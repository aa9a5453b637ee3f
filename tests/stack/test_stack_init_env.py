"""`make up` on a fresh checkout: .env is created from .env.example with random secrets, never overwritten."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_init(root: Path) -> subprocess.CompletedProcess[str]:
    (root / "stack").mkdir(exist_ok=True)
    shutil.copy(REPO / "stack" / "init_env.py", root / "stack" / "init_env.py")
    return subprocess.run([sys.executable, str(root / "stack" / "init_env.py")], capture_output=True, text=True,
                          check=True)


def parse(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_stack_first_make_up_creates_env_with_random_secrets(tmp_path: Path) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    first = run_init(tmp_path)
    env = (tmp_path / ".env").read_text()
    values, example = parse(env), parse((REPO / ".env.example").read_text())
    assert len(values["GRAFANA_ADMIN_PASSWORD"]) >= 20 and len(values["TALKER_ADMIN_TOKEN"]) >= 20
    assert values["GRAFANA_ADMIN_PASSWORD"] != values["TALKER_ADMIN_TOKEN"]
    assert values["GRAFANA_ADMIN_PASSWORD"] in first.stdout  # the user learns the password once
    assert {k: v for k, v in values.items() if k not in ("GRAFANA_ADMIN_PASSWORD", "TALKER_ADMIN_TOKEN")} == {
        k: v for k, v in example.items() if k not in ("GRAFANA_ADMIN_PASSWORD", "TALKER_ADMIN_TOKEN")
    }
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0  # secrets: readable by the owner only

    run_init(tmp_path)
    assert (tmp_path / ".env").read_text() == env, "an existing .env must never be rewritten"


def test_stack_make_up_creates_the_relay_webhook_token_once(tmp_path: Path) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    first = run_init(tmp_path)
    token_file = tmp_path / "secrets" / "relay_webhook_token"
    token = token_file.read_text()
    assert len(token.strip()) >= 40 and token.endswith("\n")
    assert str(token_file) in first.stdout and token.strip() not in first.stdout  # where, never what
    # The directory is the owner's alone; the file must stay readable by the containers' non-root users
    # (compose bind-mounts file secrets with their host mode).
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert token_file.stat().st_mode & 0o777 == 0o644
    run_init(tmp_path)
    assert token_file.read_text() == token, "an existing secret must never be rewritten"
    token_file.unlink()  # a lost secret comes back (new value) even when .env already exists
    again = run_init(tmp_path)
    assert token_file.read_text() != token and str(token_file) in again.stdout
    assert "/secrets/" in (REPO / ".gitignore").read_text().splitlines()
