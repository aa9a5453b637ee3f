"""`make up` on a fresh checkout: .env (0600 from creation, no secrets) and secrets/ (0700) are created, the
secret values are never printed, and neither is ever overwritten."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET_FILES = {"grafana_admin_password", "talker_admin_token", "dingtalk_token", "dingtalk_secret",
                "smtp_auth_password", "relay_webhook_token", "prometheus_remote_write", "talker_api_keys",
                "hf_token"}


def run_init(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (root / "stack").mkdir(exist_ok=True)
    shutil.copy(REPO / "stack" / "init_env.py", root / "stack" / "init_env.py")
    env = {k: v for k, v in os.environ.items() if k != "SECRETS_DIR"}
    return subprocess.run([sys.executable, str(root / "stack" / "init_env.py"), *args], capture_output=True,
                          text=True, check=True, env=env)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_stack_first_make_up_creates_env_and_secret_files_without_printing_them(tmp_path: Path) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    first = run_init(tmp_path)
    assert (tmp_path / ".env").read_text() == (REPO / ".env.example").read_text()
    assert mode(tmp_path / ".env") == 0o600

    secrets_dir = tmp_path / "secrets"
    assert mode(secrets_dir) == 0o700  # the boundary that keeps other host users out
    assert {p.name for p in secrets_dir.iterdir()} == SECRET_FILES  # no temporary file left behind
    values = {p.name: p.read_text() for p in secrets_dir.iterdir()}
    randoms = [values[n] for n in ("grafana_admin_password", "talker_admin_token", "relay_webhook_token")]
    assert all(len(v) >= 24 for v in randoms) and len(set(randoms)) == 3
    # The demo robot is the stand-in's; compose gives the stand-in exactly these (and nothing else).
    assert values["dingtalk_token"] == "demo-token"
    assert values["dingtalk_secret"] == "SECdemo-signing-secret-for-the-standin"
    assert values["smtp_auth_password"] == "" and values["prometheus_remote_write"] == ""
    assert values["hf_token"] == ""  # the llm profile downloads anonymously until a token is written here
    assert values["talker_api_keys"] == ""  # talker's /v1 stays the open demo until keys are written here
    for name in SECRET_FILES:
        assert mode(secrets_dir / name) & 0o022 == 0, name  # nobody else may change a secret
        assert str(secrets_dir / name) in first.stdout  # the user learns where each one is ...
    for value in filter(None, values.values()):
        assert value not in first.stdout + first.stderr  # ... and never its value

    again = run_init(tmp_path)
    assert again.stdout == ""
    assert {p.name: p.read_text() for p in secrets_dir.iterdir()} == values, "secrets must never be regenerated"
    # A lost secret comes back (with a new value) even though .env exists.
    (secrets_dir / "relay_webhook_token").unlink()
    third = run_init(tmp_path)
    assert str(secrets_dir / "relay_webhook_token") in third.stdout
    assert (secrets_dir / "relay_webhook_token").read_text() not in ("", values["relay_webhook_token"])


def test_stack_init_env_moves_secrets_of_an_older_env_into_files(tmp_path: Path) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    (tmp_path / ".env").write_text("DINGTALK_TOKEN=real-robot-token\nGRAFANA_ADMIN_PASSWORD=kept-password\n")
    out = run_init(tmp_path).stdout
    assert (tmp_path / "secrets/dingtalk_token").read_text() == "real-robot-token"
    assert (tmp_path / "secrets/grafana_admin_password").read_text() == "kept-password"
    assert "remove DINGTALK_TOKEN from" in out and "real-robot-token" not in out
    assert (tmp_path / ".env").read_text().startswith("DINGTALK_TOKEN=real-robot-token")  # .env is never rewritten


def test_stack_env_file_never_exists_half_written_or_with_a_wider_mode(tmp_path: Path) -> None:
    """A write that fails half-way leaves no .env at all: the file only appears, complete and 0600, once
    written (write_text + chmod had a window with the umask's mode and could leave a partial file)."""
    sys.path.insert(0, str(REPO / "stack"))
    try:
        import init_env
    finally:
        sys.path.pop(0)
    target = tmp_path / ".env"
    old_umask = os.umask(0)  # the mode must not depend on the caller's umask
    try:
        with pytest.raises(UnicodeEncodeError):
            init_env.create_file(target, "A=1\n" * 1000 + "B=\ud800\n")  # cannot be encoded: fails mid-write
        assert not target.exists()
        assert list(tmp_path.iterdir()) == []  # nor a temporary file
        assert init_env.create_file(target, "A=1\n")
    finally:
        os.umask(old_umask)
    assert mode(target) == 0o600
    assert not init_env.create_file(target, "other")  # never replaced
    assert target.read_text() == "A=1\n"


@pytest.mark.parametrize("name", sorted(SECRET_FILES))
def test_stack_every_secret_is_mounted_from_secrets_dir(name: str) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert f"file: ${{SECRETS_DIR:-./secrets}}/{name}\n" in text


@pytest.mark.parametrize(("settings", "note"), [
    ("COMPOSE_PROFILES=\nTALKER_LLM_BASE_URL=http://llm-standin:8091/v1\n", ""),  # the demo: the LLM stand-in
    ("COMPOSE_PROFILES=\nTALKER_LLM_BASE_URL=\n", ""),  # compose's default: the stand-in too
    ("COMPOSE_PROFILES=llm\nTALKER_LLM_BASE_URL=http://llm:8080/v1\n", ""),
    ("COMPOSE_PROFILES=gpu,llm\nTALKER_LLM_BASE_URL=https://api.example.com/v1\n", ""),  # a hosted LLM
    ("COMPOSE_PROFILES=llm\nTALKER_LLM_BASE_URL=\n", "Set TALKER_LLM_BASE_URL=http://llm:8080/v1"),
    ("COMPOSE_PROFILES=llm\nTALKER_LLM_BASE_URL=http://llm-standin:8091/v1\n",
     "Set TALKER_LLM_BASE_URL=http://llm:8080/v1"),
    # An .env made from the .env.example of before the stand-in: the profile's URL, no profile.
    ("COMPOSE_PROFILES=\nTALKER_LLM_BASE_URL=http://llm:8080/v1\n", "nothing answers there"),
])
def test_stack_make_up_reminds_when_the_llm_profile_and_talkers_llm_url_disagree(
    tmp_path: Path, settings: str, note: str
) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    (tmp_path / ".env").write_text(f"# an operator's .env\n{settings}")
    (tmp_path / "stack").mkdir()
    shutil.copy(REPO / "stack" / "init_env.py", tmp_path / "stack" / "init_env.py")
    env = {k: v for k, v in os.environ.items() if k not in ("SECRETS_DIR", "COMPOSE_PROFILES", "TALKER_LLM_BASE_URL")}
    run = subprocess.run([sys.executable, str(tmp_path / "stack" / "init_env.py")], capture_output=True, text=True,
                         check=True, env=env)
    notes = [line for line in run.stdout.splitlines() if line.startswith("note: ")]
    if note:
        assert len(notes) == 1 and note in notes[0], run.stdout
    else:
        assert notes == [], run.stdout
    # The shell's value wins over .env's, as in compose.
    fixed = subprocess.run([sys.executable, str(tmp_path / "stack" / "init_env.py")], capture_output=True, text=True,
                           check=True, env={**env, "COMPOSE_PROFILES": "llm", "TALKER_LLM_BASE_URL": "http://llm:8080/v1"})
    assert "note: " not in fixed.stdout


def test_stack_init_env_knows_the_llm_profiles_address_from_the_one_source() -> None:
    from stack import init_env
    from stack.defaults import LISTENERS

    assert init_env.LLM_PROFILE_URL == LISTENERS["llm_server"].compose_url("/v1")
    assert init_env.LLM_STANDIN_URL == LISTENERS["llm"].compose_url("/v1")
