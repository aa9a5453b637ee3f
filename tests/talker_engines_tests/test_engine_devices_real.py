"""The real engines on this (CPU) box report the providers they really use: Piper's onnxruntime sessions
on CPUExecutionProvider, the renderer on torch's cpu, espeak-ng on the CPU, and no fallback flagged."""

from __future__ import annotations

import torch
from talker.accelerators import EngineDevice
from talker.pipeline import Pipeline
from talker.tts.piper import PiperEngine


def test_engine_real_piper_on_cpu_reports_cpu_execution_provider() -> None:
    engine = PiperEngine(None, device="cpu", threads=1)
    engine.load()
    assert engine.providers == ["CPUExecutionProvider"]
    assert engine.devices == ["cpu"]


def test_engine_real_pipeline_reports_what_each_engine_runs_on(pipeline: Pipeline) -> None:
    assert pipeline.devices == ["cpu"]
    assert pipeline.engine_devices() == [
        EngineDevice("espeak", "cpu", gpu_wanted=False),
        EngineDevice("piper", "CPUExecutionProvider", gpu_wanted=False),  # TALKER_DEVICE=cpu: chosen, not fallen
        EngineDevice("renderer", "cpu", gpu_wanted=False),
    ]
    assert not any(d.cpu_fallback for d in pipeline.engine_devices())
    assert not torch.cuda.is_available() or pipeline.device == "cpu"
