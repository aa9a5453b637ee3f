"""Render, lint and package the talker-stack Helm chart offline with Helm's own Go library.

helm-python-sdk wraps Helm v4's SDK in a shared library, so no `helm` binary and no cluster are needed:

    python deploy/helm/chartctl.py lint                      # helm lint + render: default and ci/*-values.yaml
    python deploy/helm/chartctl.py render -f ci/gpu-values.yaml --out out/gpu   # one file per object
    python deploy/helm/chartctl.py package --out dist        # .tgz with the rule/dashboard symlinks resolved

Used by `make lint-chart` / `make chart` (mk/helm.mk) and by tests/k8s_tests.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parent / "talker-stack"
RELEASE = "talker-stack"
NAMESPACE = "talker"
# The variants CI proves: chart defaults plus each chart-testing values file.
VARIANTS: dict[str, Path | None] = {
    "default": None,
    "gpu": CHART_DIR / "ci" / "gpu-values.yaml",
    "keda": CHART_DIR / "ci" / "keda-values.yaml",
}


def _helm() -> Any:
    import helm_python

    # The loader logs one INFO line per symlink (files/rules, files/dashboards): expected, not news.
    helm_python.disable_logging()
    return helm_python


def load_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> manifest text, as `helm template` prints them (schema-validated first)."""
    helm = _helm()
    with helm.Chart.load(CHART_DIR) as chart:
        rendered: dict[str, str] = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    return rendered


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render (NOTES.txt and empty documents dropped)."""
    out: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue
        out.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return out


def lint(values: dict[str, Any] | None = None) -> list[str]:
    """Helm's lint findings of severity warning or error ("path: message"); empty means clean."""
    report = _helm().lint(CHART_DIR, values or {}, strict=True, namespace=NAMESPACE)
    return [f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2]


def manifest_files(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, object) with one file per object: kind-name.yaml."""
    for obj in objs:
        yield f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml", obj


def _cmd_lint(_: argparse.Namespace) -> int:
    failed = False
    for variant, path in VARIANTS.items():
        values = load_values(path)
        findings = lint(values)
        objs = objects(render(values))
        kinds = sorted({o["kind"] for o in objs})
        status = "FAIL" if findings else "ok"
        print(f"{variant:8s} {status}: {len(objs)} objects ({', '.join(kinds)})")
        for finding in findings:
            print(f"  {finding}")
        failed = failed or bool(findings)
    return 1 if failed else 0


def _cmd_render(args: argparse.Namespace) -> int:
    values = load_values(Path(args.values) if args.values else None)
    objs = objects(render(values, name=args.name, namespace=args.namespace))
    if not args.out:
        print(yaml.safe_dump_all(objs, sort_keys=False, allow_unicode=True), end="")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for file_name, obj in manifest_files(objs):
        (out / file_name).write_text(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True), encoding="utf-8")
    print(f"{len(objs)} objects written to {out}")
    return 0


def _cmd_package(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(_helm().package(CHART_DIR, destination=out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lint", help="helm lint (strict) and render the default and ci/*-values.yaml variants")
    rend = sub.add_parser("render", help="render the chart (stdout, or one file per object with --out)")
    rend.add_argument("-f", "--values", help="values file (e.g. deploy/helm/talker-stack/ci/gpu-values.yaml)")
    rend.add_argument("--name", default=RELEASE)
    rend.add_argument("--namespace", default=NAMESPACE)
    rend.add_argument("--out", help="directory for kind-name.yaml files")
    pkg = sub.add_parser("package", help="package the chart as a .tgz (symlinked rules and dashboards resolved)")
    pkg.add_argument("--out", default="dist")
    args = parser.parse_args(argv)
    return {"lint": _cmd_lint, "render": _cmd_render, "package": _cmd_package}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
