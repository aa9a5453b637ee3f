"""Create .env from .env.example on first `make up`, with fresh random secrets where it needs them.

Compose refuses to start without GRAFANA_ADMIN_PASSWORD (there is no default admin password), and
`make smoke FAULT=1` needs TALKER_ADMIN_TOKEN: generating both keeps `make up` a single command without
ever shipping a known password. An existing .env is never touched. Stdlib only: runs before `make install`.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

GENERATED = ("GRAFANA_ADMIN_PASSWORD", "TALKER_ADMIN_TOKEN")
# Compose `secrets:` files (docker-compose.yml), created when missing. The directory is the owner's alone;
# the files themselves must be readable by the containers' non-root users, because compose mounts a file
# secret with its host owner and mode (it cannot chown it to the container's user as swarm does).
SECRETS_DIR = "secrets"
SECRET_FILES = ("relay_webhook_token",)
SECRET_FILE_MODE = 0o644


def ensure_secret_files(root: Path) -> list[Path]:
    """Create each missing secrets/NAME with a random value, atomically (never a moment with other content
    or wider permissions); return the files created."""
    directory = root / SECRETS_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)
    made = []
    for name in SECRET_FILES:
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
        except FileExistsError:
            continue
        os.fchmod(fd, SECRET_FILE_MODE)  # exactly this mode, whatever the umask (still empty here)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        made.append(path)
    return made


def render_env(example: str) -> tuple[str, dict[str, str]]:
    """The example with each GENERATED variable that is empty there set to a new random value."""
    lines, made = [], {}
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in GENERATED and not value.strip():
            made[name] = secrets.token_urlsafe(18)
            line = f"{name}={made[name]}"
        lines.append(line)
    return "\n".join(lines) + "\n", made


def main(root: Path) -> int:
    for path in ensure_secret_files(root):
        print(f"created {path} (random; compose mounts it as /run/secrets/{path.name})")
    env, example = root / ".env", root / ".env.example"
    if env.exists():
        return 0
    text, made = render_env(example.read_text(encoding="utf-8"))
    env.write_text(text, encoding="utf-8")
    env.chmod(0o600)
    print(f"created {env} from .env.example (edit it for real DingTalk / SMTP):")
    for name, value in made.items():
        print(f"  {name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parents[1]))
