"""Which devices the engines run on: every GPU the process may use, a pool that spreads jobs over them,
and what each engine really got.

Really got, because asking is not getting: onnxruntime creates a session on the CPU, with only a log
warning, when its CUDA provider cannot load (an onnxruntime-gpu built for CUDA 13 in a CUDA 12 image), and
torch silently is a CPU build in an image meant for CUDA. /readyz and the metrics report the provider each
engine's sessions/tensors ended up with and flag a CPU fallback, so an alert can catch it.

No FastAPI, Prometheus or torch import here: torch.cuda and the onnxruntime metadata are passed in.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

ENGINE_NAMES: tuple[str, ...] = ("espeak", "piper", "renderer")
# Provider names of onnxruntime and torch device types that mean "runs on the CPU".
CPU_PROVIDERS = frozenset({"cpu", "CPUExecutionProvider"})


class DeviceUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class EngineDevice:
    """One engine on one provider: an onnxruntime execution provider name or a torch device type."""

    engine: str  # espeak | piper | renderer
    provider: str  # CPUExecutionProvider, CUDAExecutionProvider, cpu, cuda
    gpu_wanted: bool  # a GPU was requested (TALKER_DEVICE=cuda) or is there to use (auto) for this engine

    @property
    def cpu_fallback(self) -> bool:
        return self.gpu_wanted and self.provider in CPU_PROVIDERS


def gpu_wanted(setting: str, visible_gpus: int) -> bool:
    """TALKER_DEVICE=cuda asks for a GPU; auto asks for one when the box has one (seen by torch or NVML)."""
    return setting == "cuda" or (setting == "auto" and visible_gpus > 0)


def nvml_gpu_count(nvml: Any = None) -> int:
    """GPUs the driver reports (0 without NVML): tells "a GPU is there" apart from "torch can use it".
    `nvml` is pynvml or a stand-in with its function names; None imports pynvml."""
    if nvml is None:
        try:
            import pynvml  # optional at run time: CPU boxes may lack the driver library

            nvml = pynvml
        except Exception:
            return 0
    try:
        nvml.nvmlInit()
    except Exception:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:
        return 0
    finally:
        with suppress(Exception):
            nvml.nvmlShutdown()  # reference-counted: a GpuCollector's own nvmlInit stays in force


def resolve_devices(setting: str, cuda: Any) -> list[str]:
    """Torch devices for TALKER_DEVICE: auto -> every CUDA device torch sees (cuda:0 .. cuda:N-1), or cpu
    without one; cuda -> the same but a configuration error without one; cpu -> cpu.

    Every visible GPU is used (restrict with CUDA_VISIBLE_DEVICES): jobs are spread by a DevicePool."""
    if setting == "cpu":
        return ["cpu"]
    count = 0
    try:
        if cuda is not None and cuda.is_available():
            count = int(cuda.device_count())
    except Exception:  # a broken driver reads as "no GPU" for auto
        count = 0
    if count > 0:
        return [f"cuda:{i}" for i in range(count)]
    if setting == "cuda":
        raise DeviceUnavailable("TALKER_DEVICE=cuda but torch sees no CUDA device; use TALKER_DEVICE=auto or cpu")
    return ["cpu"]


def device_type(device: str) -> str:
    """'cuda:1' -> 'cuda': the provider label (bounded), not one value per GPU."""
    return device.split(":", 1)[0]


class DevicePool:
    """Hands each job the least busy device (ties: the one used least so far), for as long as it runs.

    Thread-safe: jobs run in the limiter's worker threads. With one device it always answers that one."""

    def __init__(self, devices: Sequence[str]) -> None:
        if not devices:
            raise ValueError("a DevicePool needs at least one device")
        self.devices = list(devices)
        self._lock = threading.Lock()
        self._busy = [0] * len(self.devices)
        self._used = [0] * len(self.devices)

    @contextmanager
    def use(self) -> Iterator[int]:
        """The index (into .devices) of the device this job runs on."""
        with self._lock:
            index = min(range(len(self.devices)), key=lambda i: (self._busy[i], self._used[i], i))
            self._busy[index] += 1
            self._used[index] += 1
        try:
            yield index
        finally:
            with self._lock:
                self._busy[index] -= 1

    def busy(self) -> dict[str, int]:
        with self._lock:
            return dict(zip(self.devices, self._busy, strict=True))

    def used(self) -> dict[str, int]:
        with self._lock:
            return dict(zip(self.devices, self._used, strict=True))


# --- the CUDA image: onnxruntime-gpu and torch must be built for the same CUDA major version --------------
_CUDA_RUNTIME_REQ = re.compile(r"^nvidia-cuda-runtime-cu(\d+)\b", re.IGNORECASE)


def onnxruntime_cuda_major(requires: Iterable[str]) -> int | None:
    """CUDA major version an onnxruntime-gpu wheel is built for, from its Requires-Dist
    (1.26.0: `nvidia-cuda-runtime-cu12~=12.0; extra == "cuda"`, 1.27.0 and later: `...-cu13`)."""
    for requirement in requires:
        match = _CUDA_RUNTIME_REQ.match(requirement.strip())
        if match:
            return int(match.group(1))
    return None


def cuda_build_problems(torch_cuda: str | None, installed: dict[str, list[str] | None]) -> list[str]:
    """What makes a CUDA image run Piper or the renderer on the CPU without saying so.

    `torch_cuda` is torch.version.cuda ("12.6", None for a CPU build); `installed` maps the distribution
    names present (onnxruntime, onnxruntime-gpu) to their Requires-Dist."""
    problems: list[str] = []
    if torch_cuda is None:
        problems.append("torch is a CPU build: the renderer cannot use the GPU")
    if "onnxruntime-gpu" not in installed:
        problems.append("onnxruntime-gpu is not installed: Piper cannot use the GPU")
    elif "onnxruntime" in installed:
        problems.append("both onnxruntime and onnxruntime-gpu are installed: one shadows the other's files")
    else:
        ort_major = onnxruntime_cuda_major(installed["onnxruntime-gpu"] or [])
        torch_major = int(torch_cuda.split(".")[0]) if torch_cuda else None
        if ort_major is None:
            problems.append("onnxruntime-gpu names no CUDA runtime in its metadata: cannot check its CUDA version")
        elif torch_major is not None and ort_major != torch_major:
            problems.append(
                f"onnxruntime-gpu is built for CUDA {ort_major} but torch for CUDA {torch_cuda}: Piper would run "
                f"on the CPU (pin a CUDA {torch_major} build: onnxruntime-gpu 1.26.0 is the last for CUDA 12)"
            )
    return problems


def check_cuda_build() -> int:
    """`python -m talker.accelerators check-cuda-build`: the CUDA image's build step fails on a mismatch."""
    from importlib import metadata

    import torch

    installed: dict[str, list[str] | None] = {}
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed[name] = metadata.requires(name)
        except metadata.PackageNotFoundError:
            continue
    problems = cuda_build_problems(torch.version.cuda, installed)
    for problem in problems:
        print(f"CUDA build check: {problem}", file=sys.stderr)
    if not problems:
        ort = metadata.version("onnxruntime-gpu")
        print(f"CUDA build check: torch {torch.__version__} (CUDA {torch.version.cuda}), onnxruntime-gpu {ort}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1:] != ["check-cuda-build"]:
        print("usage: python -m talker.accelerators check-cuda-build", file=sys.stderr)
        sys.exit(2)
    sys.exit(check_cuda_build())
