"""Where messages go: DingTalk robots ("targets") from env (target `default`) and a YAML file.

Secrets (token, secret) come from the value itself, a file (`*_file`, Docker secrets) or a named env var
(`*_env`); they are held as SecretStr so a repr or log line never shows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from dingtalk_relay.settings import RelaySettings, split_list

DEFAULT_TARGET = "default"
TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_TARGET_KEYS = {
    "token",
    "token_file",
    "token_env",
    "secret",
    "secret_file",
    "secret_env",
    "keyword",
    "at_mobiles",
    "at_all",
    "mention_severities",
    "api_base",
}


class TargetConfigError(ValueError):
    """Invalid target configuration; the message names the target and field, never a secret value."""


@dataclass(frozen=True)
class Target:
    name: str
    token: SecretStr
    secret: SecretStr | None = None
    keyword: str | None = None
    at_mobiles: tuple[str, ...] = ()
    at_all: bool = False
    mention_severities: frozenset[str] = frozenset({"critical"})
    api_base: str = "https://oapi.dingtalk.com"

    def secret_values(self) -> list[str]:
        """Every sensitive string of this target (for log redaction)."""
        values = [self.token.get_secret_value()]
        if self.secret is not None:
            values.append(self.secret.get_secret_value())
        return [v for v in values if v]

    def mentions_for(self, severities: set[str]) -> bool:
        return bool(self.at_mobiles or self.at_all) and bool(severities & self.mention_severities)


def _read_secret(
    name: str, field_name: str, value: Any, file: Any, env: Any, environ: Mapping[str, str],
    *, empty_file_is_unset: bool = False,
) -> SecretStr | None:
    given = [k for k, v in (("", value), ("_file", file), ("_env", env)) if v not in (None, "")]
    if len(given) > 1:
        raise TargetConfigError(f"target {name!r}: set only one of {', '.join(field_name + g for g in given)}")
    if value not in (None, ""):
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return SecretStr(text.strip())
    if file not in (None, ""):
        try:
            text = Path(str(file)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TargetConfigError(f"target {name!r}: cannot read {field_name}_file {file} ({exc.strerror})") from None
        if not text:
            if empty_file_is_unset:  # compose always mounts secrets/dingtalk_secret: empty = unsigned robot
                return None
            raise TargetConfigError(f"target {name!r}: {field_name}_file {file} is empty")
        return SecretStr(text)
    if env not in (None, ""):
        text = environ.get(str(env), "").strip()
        if not text:
            raise TargetConfigError(f"target {name!r}: env var {env} named by {field_name}_env is unset or empty")
        return SecretStr(text)
    return None


def _str_list(name: str, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return split_list(value)
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return [str(v).strip() for v in value if str(v).strip()]
    raise TargetConfigError(f"target {name!r}: {key} must be a list of strings")


def build_target(name: str, raw: Mapping[str, Any], default_api_base: str, environ: Mapping[str, str]) -> Target:
    if not TARGET_NAME.match(name):
        raise TargetConfigError(f"target name {name!r} must match {TARGET_NAME.pattern}")
    unknown = set(raw) - _TARGET_KEYS
    if unknown:
        raise TargetConfigError(f"target {name!r}: unknown keys {sorted(unknown)}")
    token = _read_secret(name, "token", raw.get("token"), raw.get("token_file"), raw.get("token_env"), environ)
    if token is None or not token.get_secret_value():
        raise TargetConfigError(f"target {name!r}: token (or token_file / token_env) is required")
    secret = _read_secret(name, "secret", raw.get("secret"), raw.get("secret_file"), raw.get("secret_env"), environ,
                          empty_file_is_unset=True)
    severities = _str_list(name, "mention_severities", raw.get("mention_severities", ["critical"]))
    at_all = raw.get("at_all", False)
    if not isinstance(at_all, bool):
        raise TargetConfigError(f"target {name!r}: at_all must be true or false")
    mobiles = _str_list(name, "at_mobiles", raw.get("at_mobiles"))
    for mobile in mobiles:
        if not re.fullmatch(r"\+?[0-9-]{5,20}", mobile):
            raise TargetConfigError(f"target {name!r}: at_mobiles entry is not a phone number")
    api_base = str(raw.get("api_base") or default_api_base).rstrip("/")
    if not api_base.startswith(("http://", "https://")):
        raise TargetConfigError(f"target {name!r}: api_base must start with http:// or https://")
    keyword = raw.get("keyword")
    return Target(
        name=name,
        token=token,
        secret=secret if secret and secret.get_secret_value() else None,
        keyword=str(keyword) if keyword not in (None, "") else None,
        at_mobiles=tuple(mobiles),
        at_all=at_all,
        mention_severities=frozenset(s.lower() for s in severities),
        api_base=api_base,
    )


def load_targets(settings: RelaySettings, environ: Mapping[str, str] | None = None) -> dict[str, Target]:
    """All configured targets by name; raises TargetConfigError on any invalid or missing piece."""
    environ = os.environ if environ is None else environ
    targets: dict[str, Target] = {}
    if settings.dingtalk_token or settings.dingtalk_token_file:
        raw: dict[str, Any] = {
            "token": settings.dingtalk_token,
            "token_file": settings.dingtalk_token_file,
            "secret": settings.dingtalk_secret,
            "secret_file": settings.dingtalk_secret_file,
            "keyword": settings.dingtalk_keyword,
            "at_mobiles": settings.dingtalk_at_mobiles,
            "at_all": settings.dingtalk_at_all,
            "mention_severities": settings.dingtalk_mention_severities,
        }
        targets[DEFAULT_TARGET] = build_target(DEFAULT_TARGET, raw, settings.dingtalk_api_base, environ)
    elif settings.dingtalk_secret or settings.dingtalk_secret_file:
        raise TargetConfigError("RELAY_DINGTALK_SECRET is set but RELAY_DINGTALK_TOKEN(_FILE) is not")

    if settings.targets_file is not None:
        try:
            document = yaml.safe_load(settings.targets_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TargetConfigError(f"cannot read targets file {settings.targets_file} ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            # yaml's message quotes the offending line, which may hold a token: give the position only.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise TargetConfigError(f"targets file {settings.targets_file} is not valid YAML{where}") from None
        entries = (document or {}).get("targets") if isinstance(document, dict) else None
        if not isinstance(entries, dict):
            raise TargetConfigError(f"targets file {settings.targets_file} needs a top-level `targets:` mapping")
        for name, raw_target in entries.items():
            name = str(name)
            if name in targets:
                raise TargetConfigError(f"target {name!r} is defined both by RELAY_DINGTALK_* env and the file")
            if not isinstance(raw_target, dict):
                raise TargetConfigError(f"target {name!r}: must be a mapping")
            targets[name] = build_target(name, raw_target, settings.dingtalk_api_base, environ)
    if not targets:
        raise TargetConfigError("no DingTalk target configured: set RELAY_DINGTALK_TOKEN or RELAY_TARGETS_FILE")
    return targets
