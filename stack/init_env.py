"""Create .env and the secret files of the compose stack on first `make up`; never overwrite either.

- `.env` (settings, no secrets) from .env.example, created with mode 0600 from the first byte: a temporary
  file opened with that mode, then linked into place only if no .env exists yet.
- `secrets/` (mode 0700, git-ignored): one file per secret, mounted by compose as `/run/secrets/NAME`
  (`secrets:` section) and read through the services' `*_FILE` settings, so no secret is ever in a
  container's environment (`docker inspect`) or in the rendered configs. Random values for the Grafana
  admin password, the talker admin token and the relay's webhook token; the DingTalk demo robot's
  credentials (they only work with the bundled stand-in); empty SMTP password (Mailpit needs none).
  The files themselves are mode 0644: outside Swarm, compose bind-mounts a secret file with its host owner
  and mode (the `uid`/`gid`/`mode` of a service's `secrets:` entry are ignored), and every service reads
  its secrets as its own non-root user. The 0700 directory is what keeps other host users out.

Secret values are never printed: the user is told which file holds each one. A value still set in an older
.env (DINGTALK_TOKEN, GRAFANA_ADMIN_PASSWORD, ...) seeds the secret file once, so an upgrade keeps the
robot and the passwords; delete those lines from .env afterwards. Stdlib only: runs before `make install`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Secret:
    name: str  # file name in secrets/ and compose secret name
    what: str  # shown to the user
    default: str | None  # None = random
    legacy_env: str = ""  # the .env variable that held it before secrets/ existed


SECRET_FILE_MODE = 0o644  # inside a 0700 directory; see the module docstring
DINGTALK_DEMO_TOKEN = "demo-token"  # noqa: S105 - the stand-in's public demo robot
DINGTALK_DEMO_SECRET = "SECdemo-signing-secret-for-the-standin"  # noqa: S105 - likewise

SECRETS = (
    Secret("grafana_admin_password", "Grafana admin password", None, "GRAFANA_ADMIN_PASSWORD"),
    Secret("talker_admin_token", "talker admin token (fault injection, make smoke FAULT=1)", None,
           "TALKER_ADMIN_TOKEN"),
    Secret("dingtalk_token", "DingTalk robot access_token (demo stand-in's until you replace it)",
           DINGTALK_DEMO_TOKEN, "DINGTALK_TOKEN"),
    Secret("dingtalk_secret", "DingTalk robot 加签 secret (empty = unsigned robot)", DINGTALK_DEMO_SECRET,
           "DINGTALK_SECRET"),
    Secret("smtp_auth_password", "SMTP password (used when SMTP_AUTH_USERNAME is set)", "", "SMTP_AUTH_PASSWORD"),
    Secret("relay_webhook_token", "bearer token Alertmanager sends to dingtalk-relay", None),
    # Empty = talker's /v1 stays the open demo; write comma- or line-separated keys to require them.
    Secret("talker_api_keys", "talker API keys for /v1 (empty = open demo; comma-separated keys to require one)",
           ""),
    # The compose profile `llm`: a Hugging Face token for gated models (empty = anonymous downloads).
    Secret("hf_token", "Hugging Face token for the llm profile's model download (empty = anonymous)", ""),
    Secret("prometheus_remote_write", "central store's password or token (PROMETHEUS_REMOTE_WRITE_AUTH)", ""),
)


def create_file(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write `text` to `path` with `mode` from creation on; False (and nothing written) if it exists.

    The content goes to a temporary file opened with that mode (the umask can only narrow it) and is
    hard-linked into place, so `path` never exists half-written or with a wider mode, and an existing file
    is never replaced.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def parse_env(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    return values


def ensure_secrets(secrets_dir: Path, legacy: dict[str, str]) -> list[tuple[Secret, str]]:
    """Create each missing secret file; return (secret, where its value came from) for those created."""
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    secrets_dir.chmod(0o700)
    created = []
    for secret in SECRETS:
        path = secrets_dir / secret.name
        if path.exists():
            continue
        if legacy.get(secret.legacy_env):
            value, origin = legacy[secret.legacy_env], f"moved from {secret.legacy_env} in .env"
        elif secret.default is None:
            value, origin = secrets.token_urlsafe(24), "random"
        else:
            value, origin = secret.default, "demo value" if secret.default else "empty"
        if create_file(path, value, SECRET_FILE_MODE):
            created.append((secret, origin))
    return created


# The `llm` profile's server and the demo's LLM stand-in as talker reaches them (stack.defaults LISTENERS
# "llm_server" and "llm"; this script runs before `make install`, without the package:
# tests/stack_tests/test_stack_init_env.py checks they agree).
LLM_PROFILE_URL = "http://llm:8080/v1"
LLM_STANDIN_URL = "http://llm-standin:8091/v1"


def llm_hints(values: Mapping[str, str]) -> list[str]:
    """Reminders when COMPOSE_PROFILES and TALKER_LLM_BASE_URL disagree (compose cannot tie one to the other)."""
    profile_on = "llm" in {part.strip() for part in values.get("COMPOSE_PROFILES", "").split(",")}
    url = values.get("TALKER_LLM_BASE_URL", "").strip().rstrip("/")
    if profile_on and url in ("", LLM_STANDIN_URL):
        return ["COMPOSE_PROFILES has llm but TALKER_LLM_BASE_URL does not point at it: talker keeps asking the "
                f"LLM stand-in (scripted replies). Set TALKER_LLM_BASE_URL={LLM_PROFILE_URL} in .env for the real "
                "server."]
    if not profile_on and url == LLM_PROFILE_URL:
        return [f"TALKER_LLM_BASE_URL={LLM_PROFILE_URL} but COMPOSE_PROFILES has no llm: nothing answers there and "
                f"every chat turn fails. Set TALKER_LLM_BASE_URL={LLM_STANDIN_URL} in .env for the LLM stand-in, "
                "or add llm to COMPOSE_PROFILES."]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--secrets-dir", type=Path, default=None,
                        help="where the secret files go (default: $SECRETS_DIR or ROOT/secrets)")
    args = parser.parse_args(argv)
    root: Path = args.root
    secrets_dir = args.secrets_dir or Path(os.environ.get("SECRETS_DIR") or root / "secrets")
    if not secrets_dir.is_absolute():
        secrets_dir = root / secrets_dir

    env = root / ".env"
    legacy = parse_env(env.read_text(encoding="utf-8")) if env.exists() else {}
    if not env.exists() and create_file(env, (root / ".env.example").read_text(encoding="utf-8")):
        print(f"created {env} (mode 0600) from .env.example: edit it for real DingTalk / SMTP")
    for secret, origin in ensure_secrets(secrets_dir, legacy):
        print(f"created {secrets_dir / secret.name} ({origin}): {secret.what}")
        if origin.startswith("moved"):
            print(f"  remove {secret.legacy_env} from {env}: compose reads the file now")
    # Compose lets the shell's variables win over .env's: so does this check.
    settings = {**parse_env(env.read_text(encoding="utf-8")),
                **{k: os.environ[k] for k in ("COMPOSE_PROFILES", "TALKER_LLM_BASE_URL") if k in os.environ}}
    for hint in llm_hints(settings):
        print(f"note: {hint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
