"""The bearer key our own clients (`make smoke`, `make load`) send to talker's /v1 routes, when one is configured.

talker requires `Authorization: Bearer <key>` on every /v1 route once TALKER_API_KEYS or TALKER_API_KEYS_FILE
holds a key (services/talker/README.md). A client of ours uses the first key it finds in, in this order:

1. TALKER_API_KEY: one key (a client's own variable);
2. TALKER_API_KEYS: the server's comma-separated list (the first key);
3. TALKER_API_KEYS_FILE: the server's key file (compose mounts secrets/talker_api_keys as
   /run/secrets/talker_api_keys into the smoke container too);
4. `default_file` when it exists (`make load` on the host: $SECRETS_DIR or ./secrets/talker_api_keys).

No key anywhere (or only empty ones: an empty secrets/talker_api_keys is the open demo) means no header.
The key is never printed: callers say only where it came from. Standard library only (runs in the relay image).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KEYS_FILE_NAME = "talker_api_keys"  # secrets/NAME, made empty by stack/init_env.py


@dataclass(frozen=True)
class ClientKey:
    value: str  # "" = send no Authorization header
    source: str  # where it came from, safe to print ("" when none)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"} if self.value else {}

    def __repr__(self) -> str:  # never the value, even in a traceback or a debugger
        return f"ClientKey(source={self.source!r}, set={bool(self.value)})"


def first_key(text: str) -> str:
    """The first non-empty key of a comma- or line-separated list (talker's format)."""
    return next((key.strip() for key in text.replace("\n", ",").split(",") if key.strip()), "")


def default_key_file(root: Path) -> Path:
    secrets_dir = Path(os.environ.get("SECRETS_DIR") or root / "secrets")
    return (secrets_dir if secrets_dir.is_absolute() else root / secrets_dir) / KEYS_FILE_NAME


def client_key(environ: Mapping[str, str] | None = None, default_file: Path | None = None) -> ClientKey:
    """The key to send (see the module docstring). An unreadable file named by a variable is an error."""
    env = os.environ if environ is None else environ
    for name in ("TALKER_API_KEY", "TALKER_API_KEYS"):
        if key := first_key(env.get(name, "")):
            return ClientKey(key, name)
    if env.get("TALKER_API_KEYS_FILE"):
        path = Path(env["TALKER_API_KEYS_FILE"])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read TALKER_API_KEYS_FILE {path}: {exc.strerror}") from None
        if key := first_key(text):
            return ClientKey(key, str(path))
    if default_file is not None and default_file.is_file():
        try:
            key = first_key(default_file.read_text(encoding="utf-8"))
        except OSError:
            key = ""  # e.g. another user's 0700 secrets/: no key, as before keys existed
        if key:
            return ClientKey(key, str(default_file))
    return ClientKey("", "")
