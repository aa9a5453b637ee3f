"""Fixtures for the stack tests: one local-process stack per e2e module (starting it costs ~10 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.devstack import DevStack


@pytest.fixture(scope="module")
def dev_stack() -> Iterator[DevStack]:
    # Fast profile: 1 s scrapes/evaluations, `for` capped at 5 s, 1 s group_wait; heartbeat timeout short
    # enough that a broken Watchdog path would show within the module.
    with DevStack(profile="fast", ports="auto", env={"TALKER_ENABLE_PIPER": "false"}) as stack:
        yield stack
