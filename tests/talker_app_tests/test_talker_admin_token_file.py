"""TALKER_ADMIN_TOKEN_FILE: the admin token as compose hands it over (a mounted secret), never through env."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from talker.app import create_app
from talker.settings import Settings


def client_for(settings: Settings) -> TestClient:
    # Without its lifespan the app loads no engine: /admin's auth answers before any of that matters.
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_talker_admin_token_is_read_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "talker_admin_token"
    token_file.write_text("s3cret-token-from-file\n")
    monkeypatch.setenv("TALKER_ADMIN_TOKEN_FILE", str(token_file))
    monkeypatch.delenv("TALKER_ADMIN_TOKEN", raising=False)
    settings = Settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret-token-from-file"  # the newline is not part of it
    client = client_for(settings)
    wrong = client.get("/admin/faults", headers={"Authorization": "Bearer s3cret-token-from-fil"})
    assert wrong.status_code == 403
    right = client.get("/admin/faults", headers={"Authorization": "Bearer s3cret-token-from-file"})
    assert right.status_code == 200


def test_talker_empty_admin_token_file_keeps_admin_off(tmp_path: Path) -> None:
    token_file = tmp_path / "talker_admin_token"
    token_file.write_text("\n")
    settings = Settings(admin_token_file=token_file)
    assert settings.admin_token is None
    assert client_for(settings).get("/admin/faults", headers={"Authorization": "Bearer x"}).status_code == 404


def test_talker_admin_token_file_errors_are_loud(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read TALKER_ADMIN_TOKEN_FILE"):
        Settings(admin_token_file=tmp_path / "missing")
    token_file = tmp_path / "t"
    token_file.write_text("x")
    with pytest.raises(ValidationError, match="not both"):
        Settings(admin_token="y", admin_token_file=token_file)
