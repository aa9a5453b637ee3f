"""GPU metrics read at scrape time from NVML (pynvml, from nvidia-ml-py) and torch.cuda.

Reading at scrape time (a custom Collector) instead of a polling thread means the numbers are as
fresh as the scrape and nothing runs when nobody scrapes. Without NVML (no driver, a CPU box) the
per-GPU series are absent rather than zero, so a dashboard shows "no data" instead of a fake idle
GPU, and `talker_gpu_available` says why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

NVML_TEMPERATURE_GPU = 0  # nvmlTemperatureSensors_t.NVML_TEMPERATURE_GPU


def _load_pynvml() -> ModuleType | None:
    try:
        import pynvml  # optional at run time: CPU boxes may lack the driver library

        return pynvml
    except Exception:  # ImportError, or the module failing on a box without the driver
        return None


class TorchCudaMemory:
    """torch.cuda allocated bytes per device; empty when CUDA is unavailable (or torch absent)."""

    def __init__(self, cuda: Any = None) -> None:
        if cuda is None:
            try:
                import torch  # heavy import, only needed once a scrape happens

                cuda = torch.cuda
            except Exception:
                cuda = None
        self._cuda = cuda

    def allocated(self) -> dict[str, float]:
        cuda = self._cuda
        try:
            if cuda is None or not cuda.is_available():
                return {}
            return {f"cuda:{i}": float(cuda.memory_allocated(i)) for i in range(cuda.device_count())}
        except Exception:
            return {}


class GpuCollector(Collector):
    """Prometheus collector for per-GPU NVML readings plus torch's own allocations.

    `nvml` is the pynvml module or a stand-in with the same functions (tests pass a fake one);
    None means import pynvml. NVML is initialised once; a failing call skips just that reading,
    so a GPU falling off the bus never breaks the whole scrape.
    """

    def __init__(self, nvml: ModuleType | Any | None = None, torch_memory: TorchCudaMemory | None = None) -> None:
        self._nvml = nvml if nvml is not None else _load_pynvml()
        self._torch_memory = torch_memory
        self._lock = threading.Lock()  # NVML handles are shared; scrapes on two ports may overlap
        self.available = False
        if self._nvml is not None:
            try:
                self._nvml.nvmlInit()
                self.available = True
            except Exception as exc:
                log.info("NVML unavailable, GPU metrics disabled: %s", type(exc).__name__)

    def describe(self) -> list[Any]:
        # Describing by collecting would call NVML at registration; the metric set is dynamic anyway.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        available = GaugeMetricFamily(
            "talker_gpu_available", "1 when NVML is initialised and reports at least one GPU."
        )
        gpu_families = self._read_gpus() if self.available else None
        available.add_metric([], 1.0 if gpu_families else 0.0)
        yield available
        if gpu_families:
            yield from gpu_families

        torch_memory = self._torch_memory
        if torch_memory is not None:
            allocated = torch_memory.allocated()
            if allocated:
                family = GaugeMetricFamily(
                    "talker_torch_memory_allocated_bytes",
                    "Bytes torch has allocated on the CUDA device.",
                    labels=["device"],
                )
                for device, value in allocated.items():
                    family.add_metric([device], value)
                yield family

    def _read_gpus(self) -> list[GaugeMetricFamily] | None:
        nvml = self._nvml
        labels = ["gpu", "name"]
        used = GaugeMetricFamily("talker_gpu_memory_used_bytes", "GPU memory in use (all processes).", labels=labels)
        total = GaugeMetricFamily("talker_gpu_memory_total_bytes", "GPU memory installed.", labels=labels)
        util = GaugeMetricFamily(
            "talker_gpu_utilization_ratio", "Fraction of the last sample period a kernel ran (0..1).", labels=labels
        )
        temp = GaugeMetricFamily("talker_gpu_temperature_celsius", "GPU core temperature.", labels=labels)
        power = GaugeMetricFamily("talker_gpu_power_watts", "GPU board power draw.", labels=labels)
        with self._lock:
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except Exception:
                return None
            for index in range(count):
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                except Exception:
                    log.debug("NVML lost GPU %d", index)
                    continue  # this GPU vanished; the others still report
                name = _call(lambda h=handle: _text(nvml.nvmlDeviceGetName(h))) or "unknown"
                key = [str(index), name]
                memory = _call(lambda h=handle: nvml.nvmlDeviceGetMemoryInfo(h))
                if memory is not None:
                    used.add_metric(key, float(memory.used))
                    total.add_metric(key, float(memory.total))
                rates = _call(lambda h=handle: nvml.nvmlDeviceGetUtilizationRates(h))
                if rates is not None:
                    util.add_metric(key, float(rates.gpu) / 100.0)
                celsius = _call(lambda h=handle: nvml.nvmlDeviceGetTemperature(h, NVML_TEMPERATURE_GPU))
                if celsius is not None:
                    temp.add_metric(key, float(celsius))
                milliwatts = _call(lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h))
                if milliwatts is not None:
                    power.add_metric(key, float(milliwatts) / 1000.0)
        if count == 0:
            return None
        return [used, total, util, temp, power]

    def shutdown(self) -> None:
        if self.available:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                log.debug("nvmlShutdown failed", exc_info=True)
            self.available = False


def _call(read: Callable[[], Any]) -> Any:
    """One NVML reading, or None when the GPU does not support it or has gone away (NVMLError)."""
    try:
        return read()
    except Exception:
        return None


def _text(value: str | bytes) -> str:
    # Older pynvml returned bytes for names.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
