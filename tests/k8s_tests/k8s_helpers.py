"""Offline checks of rendered Kubernetes objects: CRD schemas and the "restricted" Pod Security Standard.

Importable as k8s_tests.k8s_helpers (tests/ is on sys.path).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
# Copied unchanged from prometheus-operator v0.93.0 and KEDA v2.20.2 (crds/README.md): CI runs in a clone of
# this repository alone, so the schemas travel with the tests.
CRD_DIR = Path(__file__).resolve().parent / "crds"

Obj = dict[str, Any]


class _CRDLoader(yaml.SafeLoader):
    """PyYAML reads a bare `=` (an enum value of AlertmanagerConfig's matchType) as YAML 1.1's "value" tag."""


_CRDLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))

# Go's RE2 allows flags after an anchor (`^(?i)x`); Python wants global flags first.
_LATE_FLAGS = re.compile(r"^(\^?)\(\?([a-z]+)\)")


def _python_pattern(pattern: str) -> str:
    return _LATE_FLAGS.sub(lambda m: f"(?{m.group(2)}){m.group(1)}", pattern)


def _strict(schema: Any) -> Any:
    """Like `kubectl --validate=strict`: unknown fields are errors wherever the CRD lists the known ones."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if isinstance(out.get("pattern"), str):
        out["pattern"] = _python_pattern(out["pattern"])
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator of that served version's openAPIV3Schema, for every vendored CRD."""
    validators: dict[tuple[str, str], jsonschema.Draft7Validator] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(path.read_text(encoding="utf-8"), Loader=_CRDLoader)  # noqa: S506 - SafeLoader subclass
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = _strict(version["schema"]["openAPIV3Schema"])
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def crd_errors(obj: Obj) -> list[str]:
    """Schema violations of a custom resource ("path: message"); KeyError when no CRD is vendored for it."""
    validator = crd_validators()[(obj["apiVersion"], obj["kind"])]
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


# ---------------------------------------------------------------------------------------------------------
# Pod Security Standards, "restricted" profile (kubernetes.io/docs/concepts/security/pod-security-standards),
# which includes every "baseline" control. Written from the published table, field by field.

SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)


def pod_specs(objs: Iterable[Obj]) -> Iterator[tuple[str, Obj]]:
    """(kind/name, pod spec) of every workload object."""
    for obj in objs:
        kind, name = obj["kind"], obj["metadata"]["name"]
        spec = obj.get("spec", {})
        if kind == "Pod":
            yield f"{kind}/{name}", spec
        elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
            yield f"{kind}/{name}", spec["template"]["spec"]
        elif kind == "CronJob":
            yield f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]["spec"]


def restricted_violations(pod: Obj) -> list[str]:
    """Every way this pod spec breaks the restricted profile; [] when it passes."""
    bad: list[str] = []
    psc = pod.get("securityContext") or {}
    containers = [
        (f"{field}[{c.get('name')}]", c)
        for field in ("initContainers", "containers", "ephemeralContainers")
        for c in pod.get(field) or []
    ]
    if not any(field.startswith("containers[") for field, _ in containers):
        bad.append("no containers")

    # Baseline: host namespaces, host processes, host paths and ports.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            bad.append(f"spec.{field} must be unset or false")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("securityContext.windowsOptions.hostProcess must not be true")
    for vol in pod.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if "hostPath" in kinds:
            bad.append(f"volume {vol['name']}: hostPath is forbidden")
        elif not kinds <= RESTRICTED_VOLUME_TYPES:
            bad.append(f"volume {vol['name']}: type {sorted(kinds)} not allowed (restricted)")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            bad.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    bad += _selinux(psc.get("seLinuxOptions"), "securityContext")
    bad += _apparmor(psc.get("appArmorProfile"), "securityContext")

    # Restricted, pod level or on every container.
    if psc.get("runAsUser") == 0:
        bad.append("securityContext.runAsUser must not be 0")
    pod_nonroot = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in {"RuntimeDefault", "Localhost"}:
        bad.append(f"securityContext.seccompProfile.type {pod_seccomp!r} (RuntimeDefault or Localhost)")

    for where, c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{where}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{where}: capabilities.drop must include ALL")
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                bad.append(f"{where}: capability {cap} may not be added (only NET_BIND_SERVICE)")
        if sc.get("runAsNonRoot") is False or not (pod_nonroot or sc.get("runAsNonRoot") is True):
            bad.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            bad.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in {"RuntimeDefault", "Localhost"}:
            bad.append(f"{where}: seccompProfile.type {seccomp!r} (RuntimeDefault or Localhost)")
        if seccomp is None and pod_seccomp is None:
            bad.append(f"{where}: seccompProfile must be set (pod or container)")
        if sc.get("procMount") not in (None, "Default"):
            bad.append(f"{where}: procMount must be Default")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{where}: windowsOptions.hostProcess must not be true")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                bad.append(f"{where}: hostPort {port['hostPort']}")
        bad += _selinux(sc.get("seLinuxOptions"), where)
        bad += _apparmor(sc.get("appArmorProfile"), where)
    return bad


def _selinux(opts: Obj | None, where: str) -> list[str]:
    if not opts:
        return []
    bad = [f"{where}: seLinuxOptions.{f} must be unset" for f in ("user", "role") if opts.get(f)]
    if opts.get("type", "") not in SELINUX_TYPES:
        bad.append(f"{where}: seLinuxOptions.type {opts['type']!r}")
    return bad


def _apparmor(profile: Obj | None, where: str) -> list[str]:
    if profile and profile.get("type") not in {"RuntimeDefault", "Localhost"}:
        return [f"{where}: appArmorProfile.type {profile.get('type')!r}"]
    return []


def by_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Iterable[Obj], kind: str, component: str | None = None) -> Obj:
    """The single object of a kind (and app.kubernetes.io/component label, when given)."""
    found = [
        o
        for o in by_kind(objs, kind)
        if component is None or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())

