"""The one place talker reads its configuration (env vars with the prefix TALKER_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # Compose passes unset variables as "" (`${TALKER_ADMIN_TOKEN:-}`): an empty value means "not set",
    # so an empty admin token keeps /admin disabled instead of enabling it with an unmatchable token.
    model_config = SettingsConfigDict(env_prefix="TALKER_", extra="ignore", env_ignore_empty=True)

    host: str = "0.0.0.0"  # noqa: S104 - a container service listens on all interfaces
    port: int = 8000
    # When set, /metrics is (also) served on this port so a deployment can keep it off the public network.
    metrics_port: int | None = None
    # Serve /metrics on the API port too. Unset = only when metrics_port is unset: choosing a dedicated
    # metrics port means "keep metrics off the public API port" unless this says otherwise.
    metrics_on_api_port: bool | None = None
    # Record Prometheus metrics at all (off only to measure what instrumentation costs, see bench/).
    metrics_enabled: bool = True

    # Engines
    tts_engine: Literal["espeak", "piper"] = "espeak"  # default engine; the other is loaded when available
    enable_piper: bool = True  # load Piper voices too (bundled CC0 English voice + mounted ones)
    models_dir: Path | None = None  # user-mounted Piper voices: X.onnx + X.onnx.json (or X.json), any depth
    avatars_dir: Path | None = None  # user-mounted portraits (*.png/*.jpg) with an optional mouth-box json
    default_voice: str = "en-us"
    default_avatar: str = "aria"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # animator device; auto = CUDA when available
    video_size: int = 256  # output video edge in pixels
    video_fps: int = 25
    # Intra-op threads for torch (animator) and onnxruntime (Piper): the reference box has 2 cores shared
    # by concurrent requests and ffmpeg, so more threads only add contention.
    engine_threads: int = Field(default=2, ge=1)

    # Serving
    max_concurrency: int = Field(default=2, ge=1)
    max_queue: int = Field(default=8, ge=0)
    request_timeout_s: float = Field(default=60.0, gt=0)
    max_text_chars: int = Field(default=500, ge=1)

    # Fault injection (POST/DELETE /admin/faults) is enabled only when this is set.
    admin_token: SecretStr | None = None

    # Logging
    log_level: str = "INFO"
    log_text: bool = False  # log request text (off by default: user content is private)

    @property
    def serve_metrics_on_api_port(self) -> bool:
        if self.metrics_on_api_port is None:
            return self.metrics_port is None
        return self.metrics_on_api_port


@lru_cache
def get_settings() -> Settings:
    return Settings()
