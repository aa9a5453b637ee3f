"""Fixtures for the engine tests: one real, loaded Pipeline per session (loading Piper takes ~2 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from talker.pipeline import Pipeline
from talker.settings import Settings


@pytest.fixture(scope="session")
def pipeline() -> Iterator[Pipeline]:
    p = Pipeline(Settings(device="cpu", enable_piper=True, models_dir=None, avatars_dir=None))
    p.load()
    yield p
