"""Every rendered object is valid for the API server that would receive it.

Built-in kinds: `kubernetes-validate --strict` (the OpenAPI schemas of Kubernetes releases, unknown fields
rejected) for the oldest Kubernetes the chart supports and the newest the tool knows. Custom resources: the
openAPIV3Schema of their CRD (tests/k8s_tests/crds, prometheus-operator v0.93.0, KEDA v2.20.2), made as strict as
`kubectl --validate=strict`. CEL rules (x-kubernetes-validations) and admission webhooks are not run.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from k8s_tests.k8s_helpers import crd_errors, crd_validators

from deploy.helm import chartctl

KUBE_VERSIONS = ("1.27.0", "1.37.0")  # Chart.yaml kubeVersion floor, newest schema kubernetes-validate ships
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig", "ScaledObject"}


def _kubernetes_validate() -> str:
    exe = Path(sys.executable).with_name("kubernetes-validate")
    found = str(exe) if exe.exists() else shutil.which("kubernetes-validate")
    assert found, "kubernetes-validate is missing: make install (requirements-dev.txt)"
    return found


def _write(objs: list[dict], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, obj in chartctl.manifest_files(objs):
        path = directory / file_name
        path.write_text(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True), encoding="utf-8")
        paths.append(path)
    return paths


def _validate(paths: list[Path], kube_version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_kubernetes_validate(), "--strict", "--no-warn", "-k", kube_version, *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_builtin_kinds_pass_kubernetes_validate_strict(
    variants: dict[str, list[dict]], kube_version: str, tmp_path: Path
) -> None:
    paths: list[Path] = []
    for name, objs in variants.items():
        builtin = [o for o in objs if o["kind"] not in CUSTOM_KINDS]
        assert builtin, name
        paths += _write(builtin, tmp_path / name)
    result = _validate(paths, kube_version)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    assert len(passed) == len(paths), result.stdout


def test_kubernetes_validate_rejects_an_unknown_field(default_objects: list[dict], tmp_path: Path) -> None:
    dep = copy.deepcopy(next(o for o in default_objects if o["kind"] == "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {"runAsNonRoot": True}
    result = _validate(_write([dep], tmp_path), KUBE_VERSIONS[-1])
    assert result.returncode != 0 and "securityContxt" in result.stdout + result.stderr


def test_every_custom_resource_matches_its_crd_schema(variants: dict[str, list[dict]]) -> None:
    seen = set()
    for name, objs in variants.items():
        for obj in objs:
            if obj["kind"] in CUSTOM_KINDS:
                seen.add(obj["kind"])
                assert crd_errors(obj) == [], f"{name}: {obj['kind']}/{obj['metadata']['name']}"
    assert seen == CUSTOM_KINDS


def test_a_crd_is_vendored_for_every_custom_kind() -> None:
    assert {kind for _, kind in crd_validators()} == CUSTOM_KINDS


@pytest.mark.parametrize(
    ("kind", "breakage", "expected"),
    [
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(prot="metrics"), "'prot' was unexpected"),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(scheme="ftp"), "'ftp' is not one of"),
        ("PrometheusRule", lambda o: o["spec"]["groups"][0].pop("name"), "'name' is a required property"),
        (
            "AlertmanagerConfig",
            lambda o: o["spec"]["inhibitRules"][0]["sourceMatch"][0].update(matchType="=="),
            "'==' is not one of",
        ),
        (
            "AlertmanagerConfig",
            lambda o: o["spec"]["receivers"][0]["webhookConfigs"][0]["httpConfig"]["authorization"].update(
                credentials="plain-token"),
            "is not of type 'object'",
        ),
    ],
)
def test_crd_validation_catches_a_broken_resource(
    default_objects: list[dict], kind: str, breakage: Callable[[dict], object], expected: str
) -> None:
    obj = copy.deepcopy(next(o for o in default_objects if o["kind"] == kind))
    breakage(obj)
    errors = crd_errors(obj)
    assert any(expected in e for e in errors), errors


def test_crd_validation_catches_a_broken_scaled_object(variants: dict[str, list[dict]]) -> None:
    scaled = copy.deepcopy(next(o for o in variants["keda"] if o["kind"] == "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 2  # KEDA wants strings in trigger metadata
    assert any("is not of type 'string'" in e for e in crd_errors(scaled))


def _child_routes(route: dict) -> list[dict]:
    return [r for child in route.get("routes", []) for r in (child, *_child_routes(child))]


def test_alertmanager_config_child_routes_match_the_route_schema(default_objects: list[dict]) -> None:
    # The CRD leaves spec.route.routes free-form (the operator parses them as routes when it reconciles):
    # validate each child as if it were the top-level route.
    amc = next(o for o in default_objects if o["kind"] == "AlertmanagerConfig")
    children = _child_routes(amc["spec"]["route"])
    assert len(children) == 4
    for child in children:
        probe = copy.deepcopy(amc)
        probe["spec"]["route"] = child
        assert crd_errors(probe) == [], child
    probe["spec"]["route"] = {**children[0], "matchers": [{"name": "x", "value": "y", "matchType": "=="}]}
    assert any("'==' is not one of" in e for e in crd_errors(probe))
