"""Fixtures for the chart tests: the chart rendered once per variant with Helm's Go library."""

from __future__ import annotations

import pytest

from deploy.helm import chartctl


@pytest.fixture(scope="session")
def variants() -> dict[str, list[dict]]:
    """Variant name (default, gpu, keda) -> the objects `helm template` produces for it."""
    return {
        name: chartctl.objects(chartctl.render(chartctl.load_values(path))) for name, path in chartctl.VARIANTS.items()
    }


@pytest.fixture(scope="session")
def default_objects(variants: dict[str, list[dict]]) -> list[dict]:
    return variants["default"]
