"""The hashed locks (locks/*.txt, `make lock`) agree with constraints.txt and the requirements, and every
install (both images, `make install`) verifies those hashes; the PyTorch index serves torch alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools import lock

ROOT = Path(__file__).resolve().parents[2]
STALE = "run `make lock` (constraints.txt or a requirement changed since the locks were made)"


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[str, tuple[str, list[str]]]]:
    return {path.stem: lock.read_lock(path) for path in sorted((ROOT / "locks").glob("*.txt"))}


def test_stack_locks_pin_exactly_what_constraints_pin(locks: dict[str, dict[str, tuple[str, list[str]]]]) -> None:
    assert set(locks) == {"dev", "talker", "relay", "torch-cpu", "mutation"}
    pins = lock.constraint_pins()
    for name, entries in locks.items():
        for package, (version, hashes) in entries.items():
            assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (name, package)
            if package in pins:
                assert version == pins[package], f"locks/{name}.txt has {package}=={version}, " \
                                                 f"constraints.txt {pins[package]}: {STALE}"


def test_stack_locks_hold_every_requirement(locks: dict[str, dict[str, tuple[str, list[str]]]]) -> None:
    for name, requirements in lock.lock_inputs().items():
        for requirement in requirements:
            package = lock.requirement_name(requirement)
            where = "torch-cpu" if package == lock.TORCH else name
            assert package in locks[where], f"{requirement} (for {name}) is not in locks/{where}.txt: {STALE}"
            wanted = re.search(r"==\s*([^\s;]+)", requirement)
            if wanted:
                assert locks[where][package][0].split("+")[0] == wanted.group(1), (name, requirement, STALE)
    assert set(locks["torch-cpu"]) == {"torch"} and locks["torch-cpu"]["torch"][0].endswith("+cpu")
    assert "torch" not in locks["talker"] and "torch" not in locks["dev"]
    assert "setuptools" in locks["talker"] and "setuptools" in locks["relay"]  # builds our packages
    assert "setuptools" in lock.constraint_pins()


def test_stack_every_install_checks_hashes_and_torch_index_serves_torch_alone() -> None:
    talker = (ROOT / "services/talker/Dockerfile").read_text()
    relay = (ROOT / "services/dingtalk-relay/Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text() + (ROOT / "mk/mutation.mk").read_text()
    assert "pip install -q --require-hashes -r /locks/talker.txt" in talker
    assert "pip install -q --require-hashes -r /locks/relay.txt" in relay
    assert "pip install -q --require-hashes -r locks/dev.txt" in makefile
    assert "pip install -q --require-hashes -r locks/mutation.txt" in makefile
    # The CPU torch comes from its own index with its hash; no install may add an index for everything.
    assert '--require-hashes --no-deps --index-url "${TORCH_INDEX_URL}" -r /locks/torch-cpu.txt' in talker
    for text in (talker, relay, makefile):
        assert "--extra-index-url" not in text
        assert "setuptools>=" not in text
    for line in re.findall(r"pip install(?:[^\n]*\\\n)*[^\n]*", talker + relay + makefile):
        if "--index-url" in line:
            assert "torch" in line, line
    assert "!locks/" in (ROOT / ".dockerignore").read_text().splitlines()
