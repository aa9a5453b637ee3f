"""Which device each engine really runs on, and every GPU used, proven against fakes of the hardware side.

No GPU exists on CI, so onnxruntime's GPU behaviour is played by a fake module (same names as the real one:
get_available_providers, SessionOptions, InferenceSession.get_providers/run), torch.cuda by a fake with
is_available/device_count, and NVML by a fake pynvml. Piper's own code (phonemes, PiperVoice) is real.
The real CPU case is in test_engine_devices_real.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from talker.accelerators import (
    DevicePool,
    DeviceUnavailable,
    EngineDevice,
    cuda_build_problems,
    gpu_wanted,
    nvml_gpu_count,
    onnxruntime_cuda_major,
    resolve_devices,
)
from talker.metrics import TalkerMetrics
from talker.tts.piper import PiperEngine
from talker.tts.prosody import prosody_for

from stack.prometheus_text import sample_values

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
VOICE = "piper:en_US-joe-medium"


class FakeSession:
    def __init__(self, ort: FakeOnnxruntime, model: str, providers: list[Any]) -> None:
        self.requested = providers
        self.device_id = providers[0][1]["device_id"] if isinstance(providers[0], tuple) else None
        self._ort = ort
        self._got = ort.session_gets

    def get_providers(self) -> list[str]:
        return list(self._got)

    def run(self, outputs: None, feeds: dict[str, np.ndarray], run_options: object = None) -> list[np.ndarray]:
        with self._ort.lock:
            self._ort.runs[self.device_id] += 1
        self._ort.barrier_wait()
        return [np.full((1, 1, 2205), 0.25, dtype=np.float32)]  # 0.1 s of audio per sentence


class FakeOnnxruntime:
    """`available`: what the build offers; `session_gets`: the providers a session really ends up with
    (onnxruntime puts the CPU first, with only a warning, when the CUDA provider library cannot load)."""

    def __init__(self, available: list[str], session_gets: list[str]) -> None:
        self.available = available
        self.session_gets = session_gets
        self.sessions: list[FakeSession] = []
        self.runs: Counter[int | None] = Counter()
        self.lock = threading.Lock()
        self.barrier: threading.Barrier | None = None

    def get_available_providers(self) -> list[str]:
        return list(self.available)

    class SessionOptions:
        intra_op_num_threads = 0
        inter_op_num_threads = 0

    def InferenceSession(self, model: str, sess_options: object, providers: list[Any]) -> FakeSession:
        session = FakeSession(self, model, providers)
        self.sessions.append(session)
        return session

    def barrier_wait(self) -> None:
        if self.barrier is not None:
            self.barrier.wait(timeout=10)


class FakeCuda:
    def __init__(self, count: int) -> None:
        self.count = count

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count


class FakeNvml:
    def __init__(self, gpus: int, init_fails: bool = False) -> None:
        self.gpus, self.init_fails, self.open = gpus, init_fails, 0

    def nvmlInit(self) -> None:
        if self.init_fails:
            raise RuntimeError("Driver Not Loaded")
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus


def samples(metrics: TalkerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return sample_values(text)


def loaded_piper(ort: FakeOnnxruntime, device: str = "auto", gpu_ids: list[int] | None = None) -> PiperEngine:
    engine = PiperEngine(None, device=device, threads=1, gpu_ids=gpu_ids, onnxruntime_module=ort)
    engine.load()
    assert VOICE in {v.id for v in engine.voices()}
    return engine


def test_engine_fake_onnxruntime_cuda_build_that_silently_runs_on_cpu_is_reported_as_fallback() -> None:
    # A CUDA 13 onnxruntime-gpu in a CUDA 12 image: the build lists CUDA, the session gets the CPU.
    ort = FakeOnnxruntime(available=[CUDA, CPU], session_gets=[CPU])
    engine = loaded_piper(ort, device="auto", gpu_ids=[0])
    assert ort.sessions[0].requested == [(CUDA, {"device_id": 0}), CPU]  # CUDA was asked for
    assert engine.providers == [CPU]  # ... and what really runs is reported
    devices = [EngineDevice("piper", p, gpu_wanted("auto", visible_gpus=1)) for p in engine.providers]
    assert [d.cpu_fallback for d in devices] == [True]

    metrics = TalkerMetrics(tts_engine="piper")
    metrics.set_engine_devices([EngineDevice("espeak", "cpu", False), *devices,
                                EngineDevice("renderer", "cuda", True)])
    got = samples(metrics)
    assert got[("talker_engine_info", frozenset({("engine", "piper"), ("provider", CPU)}))] == 1
    assert got[("talker_engine_cpu_fallback", frozenset({("engine", "piper")}))] == 1
    assert got[("talker_engine_cpu_fallback", frozenset({("engine", "renderer")}))] == 0
    assert got[("talker_engine_cpu_fallback", frozenset({("engine", "espeak")}))] == 0
    assert got[("talker_engine_info", frozenset({("engine", "renderer"), ("provider", "cuda")}))] == 1

    # Fixed later (reloaded on a good image): the old series go, none is left saying CPU.
    metrics.set_engine_devices([EngineDevice("piper", CUDA, True)])
    got = samples(metrics)
    assert ("talker_engine_info", frozenset({("engine", "piper"), ("provider", CPU)})) not in got
    assert got[("talker_engine_cpu_fallback", frozenset({("engine", "piper")}))] == 0


def test_engine_fake_onnxruntime_cpu_only_build_on_a_gpu_box_is_a_fallback_but_not_on_a_cpu_box() -> None:
    ort = FakeOnnxruntime(available=[CPU], session_gets=[CPU])
    engine = loaded_piper(ort, device="auto", gpu_ids=[0, 1])
    assert [s.requested for s in ort.sessions] == [[CPU]]  # nothing to put on a GPU: one CPU session
    assert engine.providers == [CPU] and engine.devices == ["cpu"]
    assert EngineDevice("piper", CPU, gpu_wanted("auto", visible_gpus=2)).cpu_fallback
    assert not EngineDevice("piper", CPU, gpu_wanted("auto", visible_gpus=0)).cpu_fallback  # a CPU box
    assert not EngineDevice("piper", CPU, gpu_wanted("cpu", visible_gpus=2)).cpu_fallback  # chosen on purpose
    assert EngineDevice("piper", CPU, gpu_wanted("cuda", visible_gpus=0)).cpu_fallback


def test_engine_fake_onnxruntime_piper_has_a_session_per_gpu_and_spreads_work_over_them() -> None:
    ort = FakeOnnxruntime(available=[CUDA, CPU], session_gets=[CUDA, CPU])
    engine = loaded_piper(ort, device="auto", gpu_ids=[0, 1, 2])
    assert sorted(s.device_id for s in ort.sessions) == [0, 1, 2]  # the bundled voice on each GPU
    assert engine.devices == ["cuda:0", "cuda:1", "cuda:2"]
    assert engine.providers == [CUDA]
    # Three synthesis jobs, each held inside session.run until all three are there: all busy at once, so
    # the least-busy choice must have put each on its own GPU.
    ort.barrier = threading.Barrier(3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: engine.synthesize("Hello.", VOICE, prosody_for()), range(3)))
    assert all(r.engine == "piper" and r.seconds == pytest.approx(0.1, abs=0.01) for r in results)
    assert ort.runs == Counter({0: 1, 1: 1, 2: 1})
    ort.barrier = None
    for _ in range(6):  # one after another: still spread evenly (ties go to the least used)
        engine.synthesize("Hello.", VOICE, prosody_for())
    assert ort.runs == Counter({0: 3, 1: 3, 2: 3})


def test_engine_fake_cuda_resolve_devices_uses_every_gpu() -> None:
    assert resolve_devices("auto", FakeCuda(4)) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert resolve_devices("cuda", FakeCuda(2)) == ["cuda:0", "cuda:1"]
    assert resolve_devices("cpu", FakeCuda(2)) == ["cpu"]
    assert resolve_devices("auto", FakeCuda(0)) == ["cpu"]
    assert resolve_devices("auto", None) == ["cpu"]
    with pytest.raises(DeviceUnavailable, match="TALKER_DEVICE=cuda"):
        resolve_devices("cuda", FakeCuda(0))


def test_engine_fake_nvml_gpu_count_sees_gpus_torch_cannot_use() -> None:
    nvml = FakeNvml(3)
    assert nvml_gpu_count(nvml) == 3
    assert nvml.open == 0  # its init is released again (NVML counts them)
    assert nvml_gpu_count(FakeNvml(3, init_fails=True)) == 0


def test_engine_device_pool_gives_the_least_busy_device_and_takes_it_back() -> None:
    pool = DevicePool(["cuda:0", "cuda:1"])
    with pool.use() as first, pool.use() as second:
        assert {first, second} == {0, 1}
        assert pool.busy() == {"cuda:0": 1, "cuda:1": 1}
        with pool.use() as third:
            assert pool.busy()[pool.devices[third]] == 2
    assert pool.busy() == {"cuda:0": 0, "cuda:1": 0}
    with pytest.raises(RuntimeError), pool.use():
        raise RuntimeError("a failing job")
    assert pool.busy() == {"cuda:0": 0, "cuda:1": 0}  # freed on errors too
    assert sum(pool.used().values()) == 4
    with pytest.raises(ValueError):
        DevicePool([])


# Requires-Dist of the real wheels (PyPI metadata of onnxruntime-gpu 1.26.0 and 1.27.0, abridged).
ORT_GPU_1_26 = ["flatbuffers", "numpy>=1.21.6", 'nvidia-cuda-nvrtc-cu12~=12.0; extra == "cuda"',
                'nvidia-cuda-runtime-cu12~=12.0; extra == "cuda"', 'nvidia-cudnn-cu12~=9.0; extra == "cudnn"']
ORT_GPU_1_27 = ["flatbuffers", "numpy>=1.21.6", 'nvidia-cuda-nvrtc-cu13~=13.0; extra == "cuda"',
                'nvidia-cuda-runtime-cu13~=13.0; extra == "cuda"', 'nvidia-cudnn-cu13~=9.0; extra == "cudnn"']


def test_engine_cuda_build_check_catches_a_cuda13_onnxruntime_in_a_cuda12_image() -> None:
    assert onnxruntime_cuda_major(ORT_GPU_1_26) == 12
    assert onnxruntime_cuda_major(ORT_GPU_1_27) == 13
    assert cuda_build_problems("12.6", {"onnxruntime-gpu": ORT_GPU_1_26}) == []
    mismatch = cuda_build_problems("12.6", {"onnxruntime-gpu": ORT_GPU_1_27})
    assert len(mismatch) == 1 and "CUDA 13" in mismatch[0] and "1.26.0" in mismatch[0]
    assert cuda_build_problems("13.0", {"onnxruntime-gpu": ORT_GPU_1_27}) == []
    assert any("CPU build" in p for p in cuda_build_problems(None, {"onnxruntime-gpu": ORT_GPU_1_26}))
    assert any("not installed" in p for p in cuda_build_problems("12.6", {"onnxruntime": []}))
    both = cuda_build_problems("12.6", {"onnxruntime": [], "onnxruntime-gpu": ORT_GPU_1_26})
    assert any("both" in p for p in both)
