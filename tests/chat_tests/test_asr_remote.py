"""Remote ASR: talker's OpenAI-compatible recogniser against the ASR stand-in, a real HTTP server.

The stand-in counts every request it receives, so "no retry" is a count of exactly one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from asr_standin.server import AsrStandin
from chat_tests.asr_speech import espeak_pcm, speech_file
from pydantic import SecretStr
from talker.asr import ENGINE_REMOTE, AsrError, OpenAITranscriptionRecogniser, SpeechToText, asr_api_key
from talker.audio_input import InputLimits
from talker.metrics import TalkerMetrics
from talker.settings import Settings

KEY = "sk-asr-test-key"
LIMITS = InputLimits(max_seconds=10.0, max_bytes=1024 * 1024)


@pytest.fixture
def standin() -> Iterator[AsrStandin]:
    with AsrStandin(["what is the weather today"], api_key=KEY) as server:
        yield server


def remote(standin: AsrStandin, *, key: str | None = KEY, timeout_s: float = 10.0,
           language: str | None = None) -> OpenAITranscriptionRecogniser:
    return OpenAITranscriptionRecogniser(base_url=f"{standin.base_url}/v1", model="whisper-large-v3", api_key=key,
                                         timeout_s=timeout_s, language=language)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_transcript_model_and_key_reach_the_server(standin: AsrStandin) -> None:
    metrics = TalkerMetrics(tts_engine="espeak")
    stt = SpeechToText(remote(standin, language="en"), LIMITS, metrics)
    result = run(stt.transcribe(speech_file("webm"), "audio/webm;codecs=opus"))
    assert result.text == "what is the weather today"
    assert result.engine == ENGINE_REMOTE
    [request] = standin.requests
    assert request["model"] == "whisper-large-v3" and request["authorized"] is True
    assert request["language"] == "en" and request["response_format"] == "json"
    # The decoded input is what is sent: 16 kHz mono WAV (44-byte header + 2 bytes per sample).
    assert request["bytes"] == 44 + round(result.audio_seconds * 16000) * 2
    assert abs(result.audio_seconds - len(espeak_pcm()[0]) / 2 / espeak_pcm()[1]) < 0.1
    assert metrics.registry.get_sample_value("talker_stage_duration_seconds_count", {"stage": "asr"}) == 1


def test_wrong_key_is_unauthorized_and_not_retried(standin: AsrStandin) -> None:
    with pytest.raises(AsrError) as err:
        run(SpeechToText(remote(standin, key="wrong"), LIMITS).transcribe(speech_file("wav"), "wav"))
    assert err.value.kind == "unauthorized" and "TALKER_ASR_API_KEY" in err.value.detail
    assert "wrong" not in err.value.detail
    assert [r["authorized"] for r in standin.requests] == [False]


def test_server_error_is_clear_and_not_retried(standin: AsrStandin) -> None:
    metrics = TalkerMetrics(tts_engine="espeak")
    standin.set_fault({"http_status": 500, "count": 1})
    stt = SpeechToText(remote(standin), LIMITS, metrics)

    async def two_turns() -> str:  # one event loop, as in the service (the client's pool belongs to it)
        with pytest.raises(AsrError) as err:
            await stt.transcribe(speech_file("wav"), "wav")
        assert err.value.kind == "upstream" and "HTTP 500" in err.value.detail
        assert len(standin.requests) == 1
        # A failed turn is not a stage duration; the next turn works (the fault was for one request).
        assert metrics.registry.get_sample_value("talker_stage_duration_seconds_count", {"stage": "asr"}) is None
        return (await stt.transcribe(speech_file("wav"), "wav")).text

    async def two_turns_then_close() -> str:
        try:
            return await two_turns()
        finally:
            await stt.aclose()

    assert run(two_turns_then_close()) == "what is the weather today"
    assert len(standin.requests) == 2


def test_timeout_is_clear_and_not_retried(standin: AsrStandin) -> None:
    standin.set_fault({"hang": True, "count": 1})  # the stand-in holds its answer until the fault is cleared
    try:
        with pytest.raises(AsrError) as err:
            run(SpeechToText(remote(standin, timeout_s=0.5), LIMITS).transcribe(speech_file("wav"), "wav"))
    finally:
        standin.clear_fault()
    assert err.value.kind == "timeout" and "TALKER_ASR_TIMEOUT_S (0.5 s)" in err.value.detail
    assert len(standin.requests) == 1


def test_unreachable_server() -> None:
    with AsrStandin() as gone:
        url = gone.base_url
    rec = OpenAITranscriptionRecogniser(base_url=f"{url}/v1", model="m", api_key=None, timeout_s=5.0)
    with pytest.raises(AsrError) as err:
        run(SpeechToText(rec, LIMITS).transcribe(speech_file("wav"), "wav"))
    assert err.value.kind == "upstream" and "TALKER_ASR_BASE_URL" in err.value.detail


def test_settings_choose_the_remote_recogniser_with_the_key_file(standin: AsrStandin, tmp_path: Path) -> None:
    key_file = tmp_path / "asr_key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    settings = Settings(asr_base_url=f"{standin.base_url}/v1", asr_model="sensevoice", asr_api_key_file=key_file,
                        asr_timeout_s=7.0)
    stt = SpeechToText.from_settings(settings)
    assert stt.engine == ENGINE_REMOTE
    assert run(stt.transcribe(speech_file("ogg"), "ogg")).text == "what is the weather today"
    assert standin.requests[-1]["model"] == "sensevoice" and standin.requests[-1]["authorized"] is True
    assert asr_api_key(Settings(asr_api_key=SecretStr("k"))) == "k"
    assert asr_api_key(Settings()) is None
    with pytest.raises(ValueError, match="not both"):
        asr_api_key(Settings(asr_api_key=SecretStr("k"), asr_api_key_file=key_file))
    with pytest.raises(ValueError, match="cannot read TALKER_ASR_API_KEY_FILE"):
        asr_api_key(Settings(asr_api_key_file=tmp_path / "missing"))


def test_bad_input_never_reaches_the_server(standin: AsrStandin) -> None:
    from talker.audio_input import AudioInputError

    with pytest.raises(AudioInputError):
        run(SpeechToText(remote(standin), LIMITS).transcribe(b"not audio" * 50, "wav"))
    assert standin.requests == []
