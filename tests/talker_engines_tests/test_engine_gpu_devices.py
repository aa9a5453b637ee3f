"""On a GPU box (the `gpu` marker; skipped with the reason elsewhere): every visible GPU gets work, and no
engine that could use a GPU silently runs on the CPU. Run with `.venv/bin/pytest -m gpu` on such a box."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from talker.accelerators import DevicePool, resolve_devices
from talker.animator.avatars import drawn_avatar
from talker.animator.renderer import RendererPool
from talker.pipeline import Pipeline
from talker.settings import Settings

pytestmark = pytest.mark.gpu


def require_cuda() -> int:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    return torch.cuda.device_count()


def test_engine_gpu_every_visible_gpu_renders() -> None:
    count = require_cuda()
    devices = resolve_devices("auto", torch.cuda)
    assert devices == [f"cuda:{i}" for i in range(count)]
    pool = DevicePool(devices)
    renderer = RendererPool(drawn_avatar("aria", 256), pool)
    barrier = threading.Barrier(count)
    openness = np.linspace(0.0, 1.0, 32, dtype=np.float32)

    def render() -> np.ndarray:
        barrier.wait(timeout=30)
        return renderer.render(openness)

    threads = [threading.Thread(target=render) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(n >= 1 for n in pool.used().values()), pool.used()
    assert all(torch.cuda.memory_allocated(i) > 0 for i in range(count))


def test_engine_gpu_no_engine_falls_back_to_the_cpu() -> None:
    require_cuda()
    pipeline = Pipeline(Settings(device="auto", enable_piper=True))
    pipeline.load()
    found = {d.engine: d for d in pipeline.engine_devices()}
    assert found["renderer"].provider == "cuda" and not found["renderer"].cpu_fallback
    # In the CUDA image (onnxruntime-gpu for the image's CUDA) Piper's sessions must really be on CUDA.
    assert found["piper"].provider == "CUDAExecutionProvider", pipeline.engine_devices()
    assert not any(d.cpu_fallback for d in pipeline.engine_devices())
