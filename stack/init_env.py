"""Create .env from .env.example on first `make up`, with fresh random secrets where it needs them.

Compose refuses to start without GRAFANA_ADMIN_PASSWORD (there is no default admin password), and
`make smoke FAULT=1` needs TALKER_ADMIN_TOKEN: generating both keeps `make up` a single command without
ever shipping a known password. An existing .env is never touched. Stdlib only: runs before `make install`.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

GENERATED = ("GRAFANA_ADMIN_PASSWORD", "TALKER_ADMIN_TOKEN")


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
