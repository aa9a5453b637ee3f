"""The CUDA variant of the talker image uses one CUDA major version throughout: base image, torch wheels and
onnxruntime-gpu. onnxruntime-gpu 1.27.0 and later require the CUDA 13 runtime (their package metadata names
nvidia-cuda-runtime-cu13), 1.26.0 is the last CUDA 12 build; a mismatch runs Piper on the CPU without error.
The image build itself also checks the installed metadata (`python -m talker.accelerators check-cuda-build`,
tested in tests/talker_engines_tests/test_engine_devices_fake.py)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def default_of(value: str) -> str:
    """'${VAR:-default}' -> 'default'."""
    match = re.fullmatch(r"\$\{\w+:-(.+)\}", value)
    assert match, value
    return match.group(1)


def onnxruntime_gpu_cuda_major(version: str) -> int:
    major, minor = (int(part) for part in version.split(".")[:2])
    return 13 if (major, minor) >= (1, 27) else 12


def test_stack_cuda_image_base_torch_and_onnxruntime_gpu_agree_on_the_cuda_major() -> None:
    args = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["talker"]["build"]["args"]
    base = default_of(args["BASE_IMAGE"])
    torch_variant = default_of(args["TORCH_VARIANT"])
    ort_gpu = default_of(args["ONNXRUNTIME_GPU_VERSION"])
    base_major = int(re.match(r"nvidia/cuda:(\d+)\.", base).group(1))  # type: ignore[union-attr]
    torch_major = int(re.fullmatch(r"cu(\d+)\d", torch_variant).group(1))  # type: ignore[union-attr]  # cu126 -> 12
    assert base_major == torch_major == onnxruntime_gpu_cuda_major(ort_gpu), (base, torch_variant, ort_gpu)
    assert ort_gpu == "1.26.0"  # the last CUDA 12 build

    dockerfile = (ROOT / "services/talker/Dockerfile").read_text()
    assert f"ARG ONNXRUNTIME_GPU_VERSION={ort_gpu}" in dockerfile  # building without compose: same pin
    assert '"onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"' in dockerfile
    assert "python -m talker.accelerators check-cuda-build" in dockerfile
    env_example = (ROOT / ".env.example").read_text()
    assert f"ONNXRUNTIME_GPU_VERSION={ort_gpu}\n" in env_example
    assert f"CUDA_BASE_IMAGE={base}\n" in env_example and f"TORCH_VARIANT={torch_variant}\n" in env_example
