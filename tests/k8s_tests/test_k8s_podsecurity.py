"""Every pod of every variant passes the "restricted" Pod Security Standard; the NetworkPolicies let only
Prometheus reach the metrics ports and only Alertmanager (and Prometheus, for /metrics) reach the relay."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from k8s_tests.k8s_helpers import by_kind, labels_match, one, pod_specs, restricted_violations

from deploy.helm import chartctl


@pytest.mark.parametrize("variant", list(chartctl.VARIANTS))
def test_every_pod_passes_the_restricted_profile(variants: dict[str, list[dict]], variant: str) -> None:
    pods = list(pod_specs(variants[variant]))
    assert len(pods) == 2
    for where, pod in pods:
        assert restricted_violations(pod) == [], where


def test_talker_runs_as_its_image_user_with_a_read_only_root(default_objects: list[dict]) -> None:
    pod = one(default_objects, "Deployment", "talker")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # uid 10001 is the `talker` user of services/talker/Dockerfile; only /tmp (emptyDir) is writable.
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert pod["automountServiceAccountToken"] is False


def _talker_pod(objs: list[dict]) -> dict:
    return copy.deepcopy(one(objs, "Deployment", "talker")["spec"]["template"]["spec"])


def _container(pod: dict) -> dict:
    return pod["containers"][0]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda p: _container(p)["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
        (lambda p: _container(p)["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "drop must include ALL"),
        (lambda p: _container(p)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "SYS_ADMIN"),
        (lambda p: _container(p)["securityContext"].update(privileged=True), "privileged"),
        (lambda p: (p["securityContext"].pop("runAsNonRoot"), _container(p)["securityContext"].pop("runAsNonRoot")),
         "runAsNonRoot"),
        (lambda p: _container(p)["securityContext"].update(runAsUser=0), "runAsUser must not be 0"),
        (lambda p: (p["securityContext"].pop("seccompProfile"), _container(p)["securityContext"].pop("seccompProfile")),
         "seccompProfile must be set"),
        (lambda p: _container(p)["securityContext"].update(seccompProfile={"type": "Unconfined"}), "Unconfined"),
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
        (lambda p: p["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda p: _container(p)["ports"][0].update(hostPort=8000), "hostPort"),
    ],
)
def test_the_checker_catches_each_restricted_violation(
    default_objects: list[dict], breakage: Callable[[dict], object], expected: str
) -> None:
    pod = _talker_pod(default_objects)
    breakage(pod)
    assert any(expected in v for v in restricted_violations(pod)), restricted_violations(pod)


def _policy(objs: list[dict], component: str) -> tuple[dict, dict]:
    policy = one(objs, "NetworkPolicy", component)
    pod = one(objs, "Deployment", component)["spec"]["template"]
    assert labels_match(policy["spec"]["podSelector"]["matchLabels"], pod["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    return policy, pod


PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
ALERTMANAGER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}},
}


@pytest.mark.parametrize("variant", list(chartctl.VARIANTS))
def test_only_prometheus_reaches_talker_metrics(variants: dict[str, list[dict]], variant: str) -> None:
    policy, pod = _policy(variants[variant], "talker")
    container_ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    rules = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    assert set(rules) == container_ports == {"http", "metrics"}
    assert all(len(rule["ports"]) == 1 for rule in policy["spec"]["ingress"])
    assert rules["metrics"]["from"] == [PROMETHEUS]
    assert "from" not in rules["http"]  # the API is the service: open unless networkPolicy.apiFrom says who


def test_only_alertmanager_and_prometheus_reach_the_relay(default_objects: list[dict]) -> None:
    policy, pod = _policy(default_objects, "dingtalk-relay")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert {p["name"] for p in pod["spec"]["containers"][0]["ports"]} == {"http"}
    assert rule["from"] == [ALERTMANAGER, PROMETHEUS]


def test_api_clients_can_be_restricted() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "frontend"}}}
    objs = chartctl.objects(chartctl.render({"networkPolicy": {"apiFrom": [peer]}}))
    policy = one(objs, "NetworkPolicy", "talker")
    api = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "http")
    assert api["from"] == [peer]
    assert not by_kind(chartctl.objects(chartctl.render({"networkPolicy": {"enabled": False}})), "NetworkPolicy")
