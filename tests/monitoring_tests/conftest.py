"""Fixtures for the monitoring-as-code tests: rendered configs and the real promtool/amtool."""

from __future__ import annotations

import shutil

import pytest
from monitoring_tests.mon_helpers import TOOLS

from stack.config_render import RenderedConfig, render


@pytest.fixture(scope="session", autouse=True)
def _tools_installed() -> None:
    # The project requires these Debian packages; a missing one is a broken environment, not a skip.
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    assert not missing, f"install the Debian packages providing {missing} (see README)"


@pytest.fixture(scope="session")
def rendered_profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RenderedConfig]:
    """Each profile rendered once with an SMTP login, the way a production .env would configure it."""
    env = {
        "SMTP_SMARTHOST": "smtp.example.com:587",
        "SMTP_AUTH_USERNAME": "alerts@example.com",
        "SMTP_AUTH_PASSWORD": "not-a-real-password",
        "SMTP_REQUIRE_TLS": "true",
        "ALERT_EMAIL_TO": "oncall@example.com",
    }
    base = tmp_path_factory.mktemp("rendered")
    return {profile: render(base / profile, profile=profile, env=env) for profile in ("default", "demo", "fast")}
