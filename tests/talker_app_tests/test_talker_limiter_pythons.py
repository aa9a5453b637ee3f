"""The limiter's tests under Python 3.12 and 3.13 too: their asyncio.wait_for raises TimeoutError even when
the awaited future completed in the same loop turn, which once leaked a slot for good (issue 9).

limiter.py needs only the standard library, and test_talker_limiter.py runs as a plain script, so each
interpreter runs that module as a subprocess. The interpreters come from pyenv (`~/.pyenv/versions/3.12.*`,
as on every machine of this project) or PATH; a missing one fails the test with what to install, because a
skipped check here would hide exactly the bug it exists for.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIMITER_TESTS = Path(__file__).with_name("test_talker_limiter.py")


def find_python(minor: str) -> Path | None:
    """The newest pyenv CPython `minor`.x, else `python<minor>` on PATH (not pyenv's shim: it may be unset)."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = sorted(
        (p for p in (pyenv_root / "versions").glob(f"{minor}.*") if re.fullmatch(rf"{re.escape(minor)}\.\d+", p.name)),
        key=lambda p: int(p.name.rsplit(".", 1)[1]),
    )
    for version_dir in reversed(candidates):
        exe = version_dir / "bin" / "python3"
        if os.access(exe, os.X_OK):
            return exe
    found = shutil.which(f"python{minor}")
    if found and ".pyenv/shims" not in found:
        return Path(found)
    return None


def limiter_test_names() -> list[str]:
    tree = ast.parse(LIMITER_TESTS.read_text(encoding="utf-8"))
    return sorted(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"))


@pytest.mark.parametrize("minor", ["3.12", "3.13"])
def test_talker_limiter_tests_pass_on_python(minor: str) -> None:
    python = find_python(minor)
    assert python is not None, (
        f"Python {minor} not found (looked in $PYENV_ROOT/versions/{minor}.* and for python{minor} on PATH): "
        f"install it, e.g. `pyenv install {minor}`, so the limiter is tested on it"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(REPO / "services" / "talker")
    # -I would drop PYTHONPATH; -s -E are not wanted either: the script must find talker.limiter and nothing
    # from the 3.11 venv (PYTHONHOME/PYTHONPATH from the outer interpreter are removed above).
    done = subprocess.run(
        [str(python), str(LIMITER_TESTS)], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"limiter tests failed on {python}:\n{output}"
    passed = sorted(re.findall(r"^ok (test_\w+)$", done.stdout, flags=re.MULTILINE))
    assert passed == limiter_test_names(), output
    assert re.search(rf"^python {re.escape(minor)}\.\d+: {len(passed)} passed, 0 failed$", done.stdout, re.MULTILINE), (
        output
    )
