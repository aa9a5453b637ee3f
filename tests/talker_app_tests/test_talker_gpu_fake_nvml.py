"""GPU collector against a fake NVML module (same function names as pynvml) and a fake torch.cuda."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from talker.app import create_app
from talker.gpu import GpuCollector, TorchCudaMemory
from talker.settings import Settings

from stack.procs import poll_until
from stack.prometheus_text import samples

REPO = Path(__file__).resolve().parents[2]


class NVMLError(Exception):
    pass


class FakeNvml:
    """Two GPUs by default; `broken` maps a function name to the GPU indexes where it raises."""

    def __init__(self, gpus: list[dict[str, Any]] | None = None, init_fails: bool = False) -> None:
        self.gpus = gpus if gpus is not None else [
            {"name": "NVIDIA H100 80GB HBM3", "used": 10 * 2**30, "total": 80 * 2**30, "util": 57, "temp": 61,
             "power_mw": 312_500},
            {"name": b"NVIDIA A10", "used": 2**30, "total": 24 * 2**30, "util": 0, "temp": 35, "power_mw": 21_000},
        ]
        self.init_fails = init_fails
        self.broken: dict[str, set[int]] = {}
        self.count_fails = False
        self.init_calls = 0

    def nvmlInit(self) -> None:  # pynvml's camelCase names
        self.init_calls += 1
        if self.init_fails:
            raise NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        if self.count_fails:
            raise NVMLError("Unknown Error")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._maybe_fail("handle", index)
        return index

    def nvmlDeviceGetName(self, h: int) -> str | bytes:
        self._maybe_fail("name", h)
        return self.gpus[h]["name"]

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        self._maybe_fail("memory", h)
        gpu = self.gpus[h]
        return SimpleNamespace(used=gpu["used"], total=gpu["total"], free=gpu["total"] - gpu["used"])

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        self._maybe_fail("util", h)
        return SimpleNamespace(gpu=self.gpus[h]["util"], memory=0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == 0
        self._maybe_fail("temp", h)
        return self.gpus[h]["temp"]

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        self._maybe_fail("power", h)
        return self.gpus[h]["power_mw"]

    def _maybe_fail(self, what: str, index: int) -> None:
        if index in self.broken.get(what, set()):
            raise NVMLError("GPU is lost")


class FakeCuda:
    def __init__(self, allocated: list[int]) -> None:
        self._allocated = allocated

    def is_available(self) -> bool:
        return bool(self._allocated)

    def device_count(self) -> int:
        return len(self._allocated)

    def memory_allocated(self, index: int) -> int:
        return self._allocated[index]


def scrape(collector: GpuCollector) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples(text)}
    return text, values


def gpu(index: int, name: str) -> tuple[tuple[str, str], ...]:
    return (("gpu", str(index)), ("name", name))


def test_talker_gpu_fake_nvml_two_gpus_report_every_series() -> None:
    nvml = FakeNvml()
    text, values = scrape(GpuCollector(nvml=nvml, torch_memory=TorchCudaMemory(FakeCuda([123, 456]))))
    h100, a10 = gpu(0, "NVIDIA H100 80GB HBM3"), gpu(1, "NVIDIA A10")
    assert values[("talker_gpu_available", ())] == 1
    assert values[("talker_gpu_memory_used_bytes", h100)] == 10 * 2**30
    assert values[("talker_gpu_memory_total_bytes", h100)] == 80 * 2**30
    assert values[("talker_gpu_utilization_ratio", h100)] == pytest.approx(0.57)
    assert values[("talker_gpu_temperature_celsius", h100)] == 61
    assert values[("talker_gpu_power_watts", h100)] == pytest.approx(312.5)
    assert values[("talker_gpu_memory_total_bytes", a10)] == 24 * 2**30  # bytes names are decoded
    assert values[("talker_gpu_utilization_ratio", a10)] == 0
    assert values[("talker_torch_memory_allocated_bytes", (("device", "cuda:0"),))] == 123
    assert values[("talker_torch_memory_allocated_bytes", (("device", "cuda:1"),))] == 456
    promtool = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr


def test_talker_gpu_fake_nvml_init_failure_leaves_only_gpu_available_zero() -> None:
    _, values = scrape(GpuCollector(nvml=FakeNvml(init_fails=True), torch_memory=TorchCudaMemory(FakeCuda([]))))
    assert values == {("talker_gpu_available", ()): 0}


@pytest.mark.parametrize(
    ("breakage", "missing"),
    [
        (lambda n: n.broken.update(memory={0}), ["talker_gpu_memory_used_bytes", "talker_gpu_memory_total_bytes"]),
        (lambda n: n.broken.update(power={0}, temp={0}), ["talker_gpu_power_watts", "talker_gpu_temperature_celsius"]),
        (lambda n: n.broken.update(handle={0}), ["talker_gpu_memory_used_bytes", "talker_gpu_utilization_ratio",
                                                 "talker_gpu_temperature_celsius", "talker_gpu_power_watts"]),
    ],
)
def test_talker_gpu_fake_nvml_failing_call_keeps_the_scrape_alive(
    breakage: Callable[[FakeNvml], None], missing: list[str]
) -> None:
    nvml = FakeNvml()
    breakage(nvml)
    _, values = scrape(GpuCollector(nvml=nvml))
    assert values[("talker_gpu_available", ())] == 1
    for name in missing:
        assert not any(key[0] == name and ("gpu", "0") in key[1] for key in values), name
    assert values[("talker_gpu_utilization_ratio", gpu(1, "NVIDIA A10"))] == 0  # the healthy GPU still reports


def test_talker_gpu_fake_nvml_name_failure_and_lost_driver() -> None:
    nvml = FakeNvml()
    nvml.broken["name"] = {1}
    collector = GpuCollector(nvml=nvml)
    _, values = scrape(collector)
    assert values[("talker_gpu_temperature_celsius", gpu(1, "unknown"))] == 35

    nvml.count_fails = True  # the driver went away after start-up
    _, values = scrape(collector)
    assert values == {("talker_gpu_available", ()): 0}
    assert nvml.init_calls == 1  # initialised once, not per scrape


def test_talker_gpu_real_pynvml_on_this_machine() -> None:
    # The real pynvml: on a CPU box (no driver) nvmlInit fails and only gpu_available 0 remains;
    # on a GPU box every GPU reports its memory.
    _, values = scrape(GpuCollector())
    if values[("talker_gpu_available", ())] == 0:
        assert values == {("talker_gpu_available", ()): 0}
    else:
        assert any(name == "talker_gpu_memory_total_bytes" and value > 0 for (name, _), value in values.items())


GPU_FAMILIES = (
    "talker_gpu_memory_used_bytes",
    "talker_gpu_memory_total_bytes",
    "talker_gpu_utilization_ratio",
    "talker_gpu_temperature_celsius",
    "talker_gpu_power_watts",
)


@pytest.mark.parametrize("count", [2, 3, 4])
def test_talker_gpu_fake_nvml_every_gpu_of_a_multi_gpu_box_has_its_own_series(count: int) -> None:
    # Identical cards (same name): only the `gpu` index tells them apart, and none may be merged or dropped.
    nvml = FakeNvml([{"name": "NVIDIA H200", "used": (i + 1) * 2**30, "total": 141 * 2**30, "util": 10 * i,
                      "temp": 40 + i, "power_mw": 100_000 + i * 1000} for i in range(count)])
    allocated = [(i + 1) * 1000 for i in range(count)]
    text, values = scrape(GpuCollector(nvml=nvml, torch_memory=TorchCudaMemory(FakeCuda(allocated))))
    for family in GPU_FAMILIES:
        series = {dict(labels)["gpu"]: value for (name, labels), value in values.items() if name == family}
        assert sorted(series) == [str(i) for i in range(count)], family
    for i in range(count):
        key = gpu(i, "NVIDIA H200")
        assert values[("talker_gpu_memory_used_bytes", key)] == (i + 1) * 2**30
        assert values[("talker_gpu_utilization_ratio", key)] == pytest.approx(i / 10)
        assert values[("talker_torch_memory_allocated_bytes", (("device", f"cuda:{i}"),))] == (i + 1) * 1000
    promtool = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr


def test_talker_gpu_fake_nvml_dashboard_shows_each_gpu_not_an_aggregate() -> None:
    # Every GPU panel query keeps the per-GPU series (a plain selector, or an aggregation `by` gpu) and
    # names the GPU in its legend, so the 2-4 series above stay 2-4 lines on the dashboard.
    dashboard = json.loads((REPO / "grafana/dashboards/talker-gpu.json").read_text(encoding="utf-8"))
    checked = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            if not any(family in expr for family in (*GPU_FAMILIES, "DCGM_FI_")):
                continue
            checked += 1
            aggregated = re.search(r"\b(sum|avg|max|min|count|topk|bottomk|quantile)\b", expr)
            assert not aggregated or re.search(r"by\s*\([^)]*\bgpu\b", expr), (panel["title"], expr)
            assert "{{gpu}}" in target.get("legendFormat", ""), (panel["title"], target.get("legendFormat"))
    assert checked >= len(GPU_FAMILIES)


def test_talker_gpu_fake_nvml_box_whose_engines_cannot_use_its_gpus_reports_cpu_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The silent failure of a wrong image: the driver shows two GPUs (fake NVML as `pynvml`), but this torch is a
    # CPU build and this onnxruntime has no CUDA provider. The real app, engines and probes must say so.
    if torch.cuda.is_available():
        pytest.skip("needs a torch without CUDA (this box's torch can use its GPU)")
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    app = create_app(Settings(device="auto", enable_piper=True, admin_token=None, engine_threads=1))
    with TestClient(app, raise_server_exceptions=False) as client:
        poll_until(lambda: client.get("/readyz").status_code == 200, timeout=120, what="engines loaded")
        body = client.get("/readyz").json()
        metrics = client.get("/metrics").text
    assert body["engine_providers"] == {"espeak": ["cpu"], "piper": ["CPUExecutionProvider"], "renderer": ["cpu"]}
    assert body["cpu_fallback"] == {"espeak": False, "piper": True, "renderer": True}
    assert 'talker_engine_cpu_fallback{engine="piper"} 1.0' in metrics
    assert 'talker_engine_cpu_fallback{engine="renderer"} 1.0' in metrics
    assert 'talker_engine_cpu_fallback{engine="espeak"} 0.0' in metrics
    assert 'talker_engine_info{engine="piper",provider="CPUExecutionProvider"} 1.0' in metrics
    assert 'talker_gpu_utilization_ratio{gpu="1",name="NVIDIA A10"} 0.0' in metrics  # both GPUs still listed
