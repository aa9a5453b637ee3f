"""Refuse to start the stack with a Docker Compose older than 2.7, saying why and what to do.

    python3 stack/compose_check.py [COMPOSE COMMAND...]      (default: docker compose)

Older Compose never finishes `up --wait` while a one-shot service (our `config-init`) has exited, and
Compose v1 rejects the compose file's top-level `name:`: both fail in confusing ways, so `make up` checks
first. Stdlib only: runs before `make install`.
"""

from __future__ import annotations

import re
import subprocess
import sys

MINIMUM = (2, 7, 0)
VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
HOW_TO_FIX = ("Install Docker Compose v2.7 or newer (the docker-compose-plugin package, or "
              "`python -m offline.docker_env` on Debian), or point COMPOSE at one: make up COMPOSE='docker compose'.")


def parse_version(output: str) -> tuple[int, int, int] | None:
    """The version in `docker compose version` output ("Docker Compose version v2.26.1", "2.26.1-4", ...)."""
    match = VERSION.search(output)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def check(command: list[str]) -> tuple[bool, str]:
    """(usable, message) for the compose command given."""
    shown = " ".join(command)
    try:
        proc = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return False, f"`{shown}` not found. {HOW_TO_FIX}"
    except subprocess.TimeoutExpired:
        return False, f"`{shown} version` did not answer within 30 s."
    output = (proc.stdout + proc.stderr).strip()
    version = parse_version(proc.stdout) if proc.returncode == 0 else None
    if version is None:
        first_line = output.splitlines()[0] if output else f"exit status {proc.returncode}"
        return False, f"`{shown} version` gave no Compose version ({first_line}). {HOW_TO_FIX}"
    found = ".".join(map(str, version))
    if version < MINIMUM:
        needed = ".".join(map(str, MINIMUM[:2]))
        return False, (f"Docker Compose {found} is too old: talker-stack needs {needed} or newer "
                       f"(older ones never finish `up --wait` with the one-shot config-init). {HOW_TO_FIX}")
    return True, f"Docker Compose {found}"


def main(argv: list[str] | None = None) -> int:
    command = (argv if argv is not None else sys.argv[1:]) or ["docker", "compose"]
    usable, message = check(command)
    if not usable:
        print(f"make up: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
