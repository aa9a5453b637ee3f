"""`make mutation`: mutmut over the code whose tests must catch one-line mistakes; prints the share killed.

    python -m devtools.mutation [--suite relay-render|relay-delivery|talker] [--max-children N]

Covered: the relay's signing, rendering (render.py and its escaping in markdown.py) and delivery; talker's
limiter and its admin auth (`require_admin` in api.py). mutmut 3 derives module names from file paths, which
our services/<name>/<package> layout does not give, so each suite is staged flat under .cache/mutation/<suite>
(the package, the tests that may kill its mutants, their helpers) and mutmut runs there. Each mutant runs only
the selected tests that cover the mutated function (mutmut's own stats). Not part of `make test`: a full run
takes tens of minutes on two cores.

Survivors are listed by name; see one with `cd .cache/mutation/<suite> && ../../../.venv/bin/mutmut show NAME`.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".cache" / "mutation"
GOAL = 0.85
KILLED = {1, 3, 36, -24, 24, 152, 255, 37}  # killed, pytest internal error, timeouts, caught by type check
NOT_RUN = {None, 2, 34}  # not checked, interrupted, skipped


@dataclass(frozen=True)
class Suite:
    name: str
    package: str  # directory of the package, relative to ROOT
    modules: dict[str, str]  # label -> mutant name pattern (fnmatch)
    files: tuple[str, ...]  # files of the package to mutate
    tests: tuple[str, ...]  # the tests that may kill them
    copy: tuple[str, ...] = ()  # what those tests import besides the package
    env: dict[str, str] = field(default_factory=dict)


SUITES = {
    # Two relay suites: each mutant runs only the selected tests that cover it, and delivery's tests wait for
    # real deadlines, so render mutants must not pay for them.
    "relay-render": Suite(
        "relay-render",
        "services/dingtalk-relay/dingtalk_relay",
        {
            "relay signing": "dingtalk_relay.signing.*",
            "relay render": "dingtalk_relay.render.*",
            "relay render escaping (markdown.py)": "dingtalk_relay.markdown.*",
        },
        ("signing.py", "render.py", "markdown.py"),
        (
            "tests/relay_tests/test_relay_render.py",
            "tests/relay_tests/test_relay_markdown.py",
            "tests/relay_tests/test_relay_poison.py",
            "tests/relay_tests/test_relay_heartbeat.py",
        ),
        ("tests/relay_tests", "stack"),
        {"RELAY_FUZZ_EXAMPLES": "15"},  # the fuzz test is one of many killers here; keep each run short
    ),
    "relay-delivery": Suite(
        "relay-delivery",
        "services/dingtalk-relay/dingtalk_relay",
        {"relay delivery": "dingtalk_relay.delivery.*"},
        ("delivery.py",),
        ("tests/relay_tests/test_relay_delivery.py", "tests/relay_tests/test_relay_heartbeat.py",
         "tests/relay_tests/test_relay_render.py", "tests/relay_tests/test_relay_poison.py"),  # poison: render fallback
        ("tests/relay_tests", "stack"),
    ),
    "talker": Suite(
        "talker",
        "services/talker/talker",
        {"talker limiter": "talker.limiter.*", "talker admin auth (api.require_admin)": "talker.api.x_require_admin_*",
         "talker API key auth (api.require_api_key)": "talker.api.x_require_api_key_*",
         "talker key and token comparison (credentials.py)": "talker.credentials.*"},
        ("limiter.py", "api.py", "credentials.py"),
        ("tests/talker_app_tests/test_talker_limiter.py", "tests/talker_app_tests/test_talker_limiter_details.py",
         "tests/talker_app_tests/test_talker_credentials.py", "tests/talker_app_tests/test_talker_streams.py",
         "tests/talker_app_tests/test_talker_admin_auth.py", "tests/talker_app_tests/test_talker_api_key_auth.py",
         "tests/talker_app_tests/test_talker_admin.py",
         "tests/talker_app_tests/test_talker_limits.py"),
        ("tests/talker_app_tests", "tests/talker_engines_tests", "stack"),
    ),
}


def stage(suite: Suite) -> Path:
    """A fresh flat copy: <package>/, tests/..., stack/, and a pyproject.toml configuring mutmut and pytest."""
    work = STAGE / suite.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    package = Path(suite.package).name
    shutil.copytree(ROOT / suite.package, work / package, ignore=ignore)
    for path in suite.copy:
        shutil.copytree(ROOT / path, work / path, ignore=ignore)
    only = ", ".join(json.dumps(f"{package}/{f}") for f in suite.files)
    tests = ", ".join(json.dumps(t) for t in suite.tests)
    (work / "pyproject.toml").write_text(
        f"""# Written by devtools/mutation.py for this run; edit SUITES there.
[tool.mutmut]
source_paths = ["{package}"]
only_mutate = [{only}]
also_copy = ["stack"]
pytest_add_cli_args_test_selection = [{tests}]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]
use_git_change_detection = false

[tool.pytest.ini_options]
pythonpath = [".", "tests"]
addopts = "--import-mode=importlib"
timeout = 300
markers = ["gpu", "e2e", "docker"]
""",
        encoding="utf-8",
    )
    return work


def results(work: Suite | Path, suite: Suite) -> dict[str, dict[str, list[str]]]:
    """label -> {"killed": [...], "survived": [...]} from mutmut's .meta files."""
    directory = Path(work) / "mutants" / Path(suite.package).name
    codes: dict[str, int | None] = {}
    for meta in directory.glob("*.py.meta"):
        codes.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    out: dict[str, dict[str, list[str]]] = {}
    for label, pattern in suite.modules.items():
        bucket: dict[str, list[str]] = {"killed": [], "survived": []}
        for name, code in sorted(codes.items()):
            if fnmatch.fnmatch(name, pattern) and code not in NOT_RUN:
                bucket["killed" if code in KILLED else "survived"].append(name)
        out[label] = bucket
    return out


def run_suite(suite: Suite, max_children: int) -> dict[str, dict[str, list[str]]]:
    work = stage(suite)
    mutmut = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, **suite.env, "PYTHONDONTWRITEBYTECODE": "1"}
    print(f"[mutation] {suite.name}: mutmut in {work.relative_to(ROOT)} ...", flush=True)
    proc = subprocess.run([str(mutmut), "run", "--max-children", str(max_children), *suite.modules.values()],
                          cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise SystemExit(f"[mutation] mutmut failed for {suite.name} (exit {proc.returncode}):\n{tail}")
    return results(work, suite)


def report(all_results: dict[str, dict[str, list[str]]]) -> float:
    killed = total = 0
    print(f"\n{'module':45} {'killed':>7} {'total':>6} {'share':>7}")
    for label, bucket in all_results.items():
        k, n = len(bucket["killed"]), len(bucket["killed"]) + len(bucket["survived"])
        killed, total = killed + k, total + n
        print(f"{label:45} {k:7d} {n:6d} {k / n if n else 0:7.1%}")
    share = killed / total if total else 0.0
    print(f"{'TOTAL':45} {killed:7d} {total:6d} {share:7.1%}   (goal >= {GOAL:.0%})")
    survivors = [name for bucket in all_results.values() for name in bucket["survived"]]
    if survivors:
        print("\nsurvived (mutmut show NAME in .cache/mutation/<suite>):")
        for name in survivors:
            print(f"  {name}")
    return share


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=list(SUITES), action="append", help="default: all, in this order")
    parser.add_argument("--max-children", type=int, default=max(1, (os.cpu_count() or 2)))
    args = parser.parse_args(argv)
    if shutil.which("mutmut", path=str(Path(sys.executable).parent)) is None:
        print("mutmut is not installed in this environment: make mutation installs it", file=sys.stderr)
        return 2
    combined: dict[str, dict[str, list[str]]] = {}
    for name in args.suite or list(SUITES):
        combined.update(run_suite(SUITES[name], args.max_children))
    share = report(combined)
    return 0 if share >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
