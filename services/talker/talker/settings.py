"""The one place talker reads its configuration (env vars with the prefix TALKER_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
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
    # Audio one request may produce, on every route: refused up front (422) when the text surely says more,
    # cut cleanly (logged, talker_audio_truncated_total) when it turns out longer while being made.
    max_audio_seconds: float = Field(default=300.0, gt=0)
    # A stream whose client reads nothing for this long is cut (outcome slow_reader) and its slot freed.
    stream_write_timeout_s: float = Field(default=10.0, gt=0)
    # Produced-but-unsent bytes one stream may hold; past it the producer waits for the client.
    stream_buffer_bytes: int = Field(default=256 * 1024, ge=4096)

    # Conversation, ASR stage (talker.asr, talker.audio_input). Spoken input is refused past either bound.
    max_input_audio_seconds: float = Field(default=30.0, gt=0)
    max_input_audio_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # Unset: offline English with pocketsphinx. Set: any OpenAI-compatible /v1/audio/transcriptions server
    # (the base URL ends in /v1, e.g. http://asr:8000/v1), called once per turn, never retried.
    asr_base_url: str | None = None
    asr_model: str = "whisper-1"
    asr_api_key: SecretStr | None = None
    asr_api_key_file: Path | None = None  # a mounted secret; wins over asr_api_key
    asr_language: str | None = None  # ISO-639-1 hint for the remote server ("en", "zh"); pocketsphinx is English
    asr_timeout_s: float = Field(default=30.0, gt=0)

    # API keys (OpenAI style: Authorization: Bearer <key>). Comma-separated, in the variable or a file.
    # When any is set every /v1 route requires one; unset keeps the open demo.
    api_keys: SecretStr | None = None
    api_keys_file: Path | None = None
    # OpenAI voice names (alloy, nova, ...) -> voice ids, e.g. "alloy=en-us,nova=piper:en_US-joe-medium".
    # Names not listed use the default voice of the engine the model selects.
    openai_voice_map: str = ""

    # Fault injection (POST/DELETE /admin/faults) is enabled only when this is set, directly or through
    # admin_token_file (a mounted secret such as /run/secrets/talker_admin_token; an empty file = off).
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None

    # Conversation (issue 11): the LLM stage, an OpenAI-compatible chat-completions server (default: the
    # llm-standin on its default port). Its key in the variable or a file (a mounted secret), never both.
    llm_base_url: str = "http://127.0.0.1:8091/v1"
    llm_model: str = "standin-chat"
    llm_api_key: SecretStr | None = None
    llm_api_key_file: Path | None = None
    llm_system_prompt: str = (
        "You are a friendly digital human. Answer in the language the user speaks, in a few short sentences."
    )
    llm_max_tokens: int = Field(default=256, ge=1)
    # Longest wait for the LLM server: to connect, for the first token, or between two tokens.
    llm_timeout_s: float = Field(default=30.0, gt=0)
    # Chat sessions in memory: history per session (turns, characters), sessions kept, idle time before expiry.
    chat_max_sessions: int = Field(default=1000, ge=1)
    chat_max_turns: int = Field(default=20, ge=1)
    chat_max_history_chars: int = Field(default=8000, ge=1)
    chat_session_ttl_s: float = Field(default=1800.0, gt=0)
    # Sentences sent to TTS: the first one is cut short so the first audio starts early.
    chat_first_sentence_max_chars: int = Field(default=40, ge=8)
    chat_sentence_max_chars: int = Field(default=120, ge=8)
    # Origins (scheme://host[:port], comma-separated, or *) whose pages may open /v1/chat/ws; unset: only pages
    # served by the host the request names (a page elsewhere must not spend the LLM quota through a visitor).
    chat_allowed_origins: str | None = None

    # Logging
    log_level: str = "INFO"
    log_text: bool = False  # log request text (off by default: user content is private)

    def api_key_list(self) -> list[str]:
        """The configured API keys (empty: /v1 is open). An unreadable key file is an error, not "open"."""
        raw = self.api_keys.get_secret_value() if self.api_keys is not None else ""
        if self.api_keys_file is not None:
            raw += "," + self.api_keys_file.read_text(encoding="utf-8")
        return [key.strip() for key in raw.replace("\n", ",").split(",") if key.strip()]

    def openai_voices(self) -> dict[str, str]:
        """TALKER_OPENAI_VOICE_MAP as {openai name: voice id}; a malformed entry is a startup error."""
        mapping: dict[str, str] = {}
        for entry in self.openai_voice_map.split(","):
            if not entry.strip():
                continue
            name, sep, voice = entry.partition("=")
            if not sep or not name.strip() or not voice.strip():
                raise ValueError(f"TALKER_OPENAI_VOICE_MAP entry {entry.strip()!r} is not name=voice_id")
            mapping[name.strip().lower()] = voice.strip()
        return mapping

    @model_validator(mode="after")
    def _read_admin_token_file(self) -> Settings:
        if self.admin_token_file is None:
            return self
        if self.admin_token is not None:
            raise ValueError("set TALKER_ADMIN_TOKEN or TALKER_ADMIN_TOKEN_FILE, not both")
        try:
            token = self.admin_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read TALKER_ADMIN_TOKEN_FILE {self.admin_token_file}: {exc.strerror}") from None
        self.admin_token = SecretStr(token) if token else None
        return self

    @model_validator(mode="after")
    def _read_llm_api_key_file(self) -> Settings:
        if self.llm_api_key_file is None:
            return self
        if self.llm_api_key is not None:
            raise ValueError("set TALKER_LLM_API_KEY or TALKER_LLM_API_KEY_FILE, not both")
        try:
            key = self.llm_api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read TALKER_LLM_API_KEY_FILE {self.llm_api_key_file}: {exc.strerror}") from None
        self.llm_api_key = SecretStr(key) if key else None
        return self

    @property
    def serve_metrics_on_api_port(self) -> bool:
        if self.metrics_on_api_port is None:
            return self.metrics_port is None
        return self.metrics_on_api_port


@lru_cache
def get_settings() -> Settings:
    return Settings()
