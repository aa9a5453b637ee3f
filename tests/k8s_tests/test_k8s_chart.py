"""The Helm chart renders and lints with Helm's own library, and each variant says what it should.

No cluster exists here: these tests prove what `helm template` / `helm lint` would show (docs/kubernetes.md).
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import contract
import pytest
from k8s_tests.k8s_helpers import by_kind, labels_match, one

from deploy.helm import chartctl

ALWAYS = {
    "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "AlertmanagerConfig",
    "ConfigMap", "NetworkPolicy",
}


@pytest.mark.parametrize("variant", list(chartctl.VARIANTS))
def test_helm_lint_is_clean_in_strict_mode(variant: str) -> None:
    assert chartctl.lint(chartctl.load_values(chartctl.VARIANTS[variant])) == []


def test_helm_lint_reports_a_broken_value() -> None:
    findings = chartctl.lint({"talker": {"replicas": 0}})
    assert any("/talker/replicas" in f and "minimum" in f for f in findings), findings


def test_each_variant_renders_the_expected_kinds(variants: dict[str, list[dict]]) -> None:
    kinds = {name: {o["kind"] for o in objs} for name, objs in variants.items()}
    assert kinds["default"] == ALWAYS
    assert kinds["gpu"] == ALWAYS
    assert kinds["keda"] == ALWAYS | {"ScaledObject"}


def test_every_object_is_namespaced_and_labelled(variants: dict[str, list[dict]]) -> None:
    for objs in variants.values():
        for obj in objs:
            meta = obj["metadata"]
            assert meta["namespace"] == chartctl.NAMESPACE, meta["name"]
            assert meta["labels"]["app.kubernetes.io/instance"] == chartctl.RELEASE, meta["name"]
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", meta["name"]


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"talker": {"replicas": "three"}}, "/talker/replicas", "got string, want integer"),
        # A secret as a plain value is not a key the chart knows: only existingSecret references are.
        ({"relay": {"dingtalk": {"token": "abc"}}}, "/relay/dingtalk", "additional properties 'token' not allowed"),
        ({"relay": {"replicas": 2}}, "/relay", "additional properties 'replicas' not allowed"),
        ({"talker": {"gpu": {"enabled": "yes"}}}, "/talker/gpu/enabled", "got string, want boolean"),
        ({"serviceMonitor": {"talker": {"interval": "5 seconds"}}}, "/serviceMonitor/talker/interval", "pattern"),
        ({"relay": {"webhookToken": {"existingSecret": ""}}}, "/relay/webhookToken/existingSecret", "minLength"),
        ({"alertmanagerConfig": {"email": {"smarthost": "smtp.example.com"}}}, "/alertmanagerConfig/email/smarthost",
         "pattern"),
    ],
)
def test_a_wrong_value_fails_rendering_naming_the_value(values: dict, path: str, message: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError) as failure:
        chartctl.render(values)
    text = str(failure.value)
    assert f"at '{path}'" in text and message in text, text


def test_no_secret_objects_and_no_secret_values(variants: dict[str, list[dict]]) -> None:
    secretish = re.compile(r"TOKEN|SECRET|PASSWORD", re.IGNORECASE)
    for objs in variants.values():
        assert not by_kind(objs, "Secret")
        for dep in by_kind(objs, "Deployment"):
            for container in dep["spec"]["template"]["spec"]["containers"]:
                for env in container.get("env", []):
                    if secretish.search(env["name"]):
                        # Either a mounted file's path or a reference to a Secret key, never the value.
                        assert env["name"].endswith("_FILE") or "valueFrom" in env, env
                        if "value" in env:
                            assert env["value"].startswith("/run/secrets/"), env


def test_relay_runs_exactly_one_replica_and_never_two_during_an_update(default_objects: list[dict]) -> None:
    relay = one(default_objects, "Deployment", "dingtalk-relay")
    assert relay["spec"]["replicas"] == 1
    assert relay["spec"]["strategy"] == {"type": "Recreate"}


def test_relay_reads_its_secrets_from_mounted_files(default_objects: list[dict]) -> None:
    pod = one(default_objects, "Deployment", "dingtalk-relay")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert secrets == {"dingtalk": "dingtalk-robot", "webhook-token": "relay-webhook-token"}
    for var, volume in [
        ("RELAY_DINGTALK_TOKEN_FILE", "dingtalk"),
        ("RELAY_DINGTALK_SECRET_FILE", "dingtalk"),
        ("RELAY_WEBHOOK_TOKEN_FILE", "webhook-token"),
    ]:
        directory = env[var].rsplit("/", 1)[0]
        assert mounts[directory] == volume, var
    # Readable by the relay's group (fsGroup), by nobody else.
    assert {v["secret"]["defaultMode"] for v in pod["volumes"] if "secret" in v} == {0o440}
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_talker_probes_and_ports(default_objects: list[dict]) -> None:
    dep = one(default_objects, "Deployment", "talker")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert ports == {"http": 8000, "metrics": 8001}
    assert env["TALKER_PORT"] == "8000" and env["TALKER_METRICS_PORT"] == "8001"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert dep["spec"]["replicas"] == 2


def test_pdb_covers_the_talker_pods_without_blocking_a_drain(default_objects: list[dict]) -> None:
    pdb = one(default_objects, "PodDisruptionBudget")
    pod_labels = one(default_objects, "Deployment", "talker")["spec"]["template"]["metadata"]["labels"]
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]


def _talker(objs: list[dict]) -> tuple[dict, dict]:
    dep = one(objs, "Deployment", "talker")
    return dep, dep["spec"]["template"]["spec"]


def _gpu_expected(objs: list[dict]) -> str:
    monitor = one(objs, "ServiceMonitor", "talker")
    relabel = [r for r in monitor["spec"]["endpoints"][0]["relabelings"] if r["targetLabel"] == "gpu_expected"]
    assert len(relabel) == 1
    return relabel[0]["replacement"]


def test_gpu_variant_asks_for_gpus_on_gpu_nodes(variants: dict[str, list[dict]]) -> None:
    _, pod = _talker(variants["gpu"])
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert env["TALKER_DEVICE"] == "cuda"  # a missing GPU fails the start instead of running on the CPU
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"
    assert container["image"].endswith("-cuda")
    assert _gpu_expected(variants["gpu"]) == "true"


def test_default_variant_asks_for_no_gpu(default_objects: list[dict]) -> None:
    _, pod = _talker(default_objects)
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert env["TALKER_DEVICE"] == "cpu"
    assert "runtimeClassName" not in pod and "nodeSelector" not in pod
    assert _gpu_expected(default_objects) == "false"


def test_keda_scales_the_talker_deployment_on_its_load(variants: dict[str, list[dict]]) -> None:
    objs = variants["keda"]
    dep, _ = _talker(objs)
    scaled = one(objs, "ScaledObject")
    service = one(objs, "Service", "talker")
    # The ScaledObject (its HPA) owns the replica count; a replicas field would fight it on every upgrade.
    assert "replicas" not in dep["spec"]
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": dep["metadata"]["name"]}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 6)
    # Prometheus unreachable: hold 2 replicas rather than whatever the last answer was; no flapping down.
    assert scaled["spec"]["fallback"] == {"failureThreshold": 3, "replicas": 2}
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert meta["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    assert meta["threshold"] == "2"  # talker.config.maxConcurrency
    names = contract.promql_metric_names(meta["query"])
    assert names == {"talker_queue_depth", "talker_active_sessions"}
    assert names <= contract.contract_series()
    # Only this release's talkers: the operator adds namespace and service labels to every target.
    for selector in re.findall(r"\{([^}]*)\}", meta["query"]):
        assert selector == f'namespace="{chartctl.NAMESPACE}",service="{service["metadata"]["name"]}"'


def test_keda_threshold_can_be_set() -> None:
    objs = chartctl.objects(chartctl.render({"keda": {"enabled": True, "threshold": "3.5"}}))
    assert one(objs, "ScaledObject")["spec"]["triggers"][0]["metadata"]["threshold"] == "3.5"


def test_alertmanager_config_without_the_relay_fails_with_a_reason() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=r"alertmanagerConfig\.enabled needs relay\.enabled"):
        chartctl.render({"relay": {"enabled": False}})
    objs = chartctl.objects(chartctl.render({"relay": {"enabled": False}, "alertmanagerConfig": {"enabled": False}}))
    assert [d["metadata"]["name"] for d in by_kind(objs, "Deployment")] == ["talker-stack-talker"]


def test_smtp_login_references_a_secret() -> None:
    values = {"alertmanagerConfig": {"email": {"authUsername": "alerts@example.com",
                                               "authPassword": {"existingSecret": "smtp", "key": "pw"}}}}
    amc = one(chartctl.objects(chartctl.render(values)), "AlertmanagerConfig")
    (email,) = next(r for r in amc["spec"]["receivers"] if r["name"] == "oncall-critical")["emailConfigs"]
    assert email["authUsername"] == "alerts@example.com"
    assert email["authPassword"] == {"name": "smtp", "key": "pw"}


def test_api_keys_come_from_a_mounted_secret() -> None:
    objs = chartctl.objects(chartctl.render({"talker": {"apiKeys": {"existingSecret": "keys", "key": "k"}}}))
    pod = one(objs, "Deployment", "talker")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert env["TALKER_API_KEYS_FILE"] == "/run/secrets/talker-api-keys/k"
    assert mounts["/run/secrets/talker-api-keys"] == "api-keys"
    assert volume["secret"] == {"secretName": "keys", "defaultMode": 0o440}
    assert "TALKER_API_KEYS" not in env


def test_packaged_chart_renders_the_same_objects(default_objects: list[dict], tmp_path: Path) -> None:
    """`make chart`'s archive carries the rules and dashboards themselves (symlinks resolved)."""
    import helm_python

    archive = Path(helm_python.package(chartctl.CHART_DIR, destination=tmp_path))
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["talker-stack/files/rules/alerts.yml"].isfile()
    assert members["talker-stack/files/dashboards/talker-overview.json"].isfile()
    assert not any(m.issym() for m in members.values())
    with helm_python.Chart.load(archive) as chart:
        rendered = chart.render({}, name=chartctl.RELEASE, namespace=chartctl.NAMESPACE, is_install=True)
    assert chartctl.objects(rendered) == default_objects
