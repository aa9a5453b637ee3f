"""What an API user sees: speech, video, catalogues and clear errors for bad input."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import httpx
import pytest
from talker_app_tests.talker_server import TalkerServer


def read_wav(data: bytes) -> tuple[int, int, int, float]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes() / w.getframerate()


def post(talker: TalkerServer, path: str, **kwargs: object) -> httpx.Response:
    with talker.client() as client:
        return client.post(path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "voice"),
    [
        ("Hello from the on-call assistant.", None),
        ("你好，值班工程师。服务正常。", "cmn"),
        ("Hello from the neural voice.", "piper:en_US-joe-medium"),
    ],
)
def test_talker_tts_returns_playable_wav(talker: TalkerServer, text: str, voice: str | None) -> None:
    body: dict[str, object] = {"text": text, "emotion": "happy", "speed": 1.2}
    if voice:
        body["voice"] = voice
    response = post(talker, "/v1/tts", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-request-id"]
    channels, sample_width, rate, seconds = read_wav(response.content)
    assert (channels, sample_width) == (1, 2)
    assert rate >= 16000
    assert 0.3 < seconds < 15
    assert float(response.headers["x-audio-seconds"]) == pytest.approx(seconds, abs=0.05)


def test_talker_talk_returns_mp4(talker: TalkerServer) -> None:
    response = post(talker, "/v1/talk", json={"text": "The deployment finished.", "avatar": "mei"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp"  # ISO base media file
    assert len(response.content) > 2000
    assert int(response.headers["x-video-frames"]) > 10
    assert "animate;dur=" in response.headers["server-timing"]


def test_talker_catalogues_list_voices_avatars_and_emotions(talker: TalkerServer) -> None:
    with talker.client() as client:
        voices = client.get("/v1/voices").json()
        avatars = client.get("/v1/avatars").json()
    ids = {v["id"] for v in voices["voices"]}
    assert {"en-us", "cmn"} <= ids
    assert voices["default"] in ids
    assert voices["emotions"] == ["neutral", "happy", "sad", "angry", "surprised"]
    assert avatars["default"] in {a["id"] for a in avatars["avatars"]}


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"text": ""}, "text", 422),
        ({"text": "   \n\t "}, "text", 422),
        ({"text": "x" * 501}, "text", 422),
        ({"text": "hi", "speed": 0.2}, "speed", 422),
        ({"text": "hi", "speed": 2.5}, "speed", 422),
        ({"text": "hi", "speed": "fast"}, "speed", 422),
        ({"text": "hi", "speed": True}, "speed", 422),  # a boolean is not a rate (lax mode would read 1.0)
        ({"text": "hi", "emotion": "joyful"}, "emotion", 422),
        ({"text": "hi", "voice": "klingon"}, "voice", 422),
        ({"text": "hi", "emotoin": "happy"}, "emotoin", 422),
        ({"voice": "en-us"}, "text", 422),
        ([1, 2], "body", 422),
    ],
)
def test_talker_rejects_bad_input_naming_the_field(
    talker: TalkerServer, body: object, field: str, status: int
) -> None:
    response = post(talker, "/v1/tts", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert error["error"]
    assert "Traceback" not in response.text


def test_talker_error_lists_allowed_values(talker: TalkerServer) -> None:
    emotion = post(talker, "/v1/tts", json={"text": "hi", "emotion": "joyful"}).json()
    assert emotion["allowed"] == ["neutral", "happy", "sad", "angry", "surprised"]
    voice = post(talker, "/v1/tts", json={"text": "hi", "voice": "klingon"}).json()
    assert "en-us" in voice["allowed"]
    avatar = post(talker, "/v1/talk", json={"text": "hi", "avatar": "nobody"})
    assert avatar.status_code == 422
    assert avatar.json()["field"] == "avatar"
    assert "aria" in avatar.json()["allowed"]


def test_talker_malformed_json_is_a_client_error(talker: TalkerServer) -> None:
    response = post(talker, "/v1/tts", content=b'{"text": "hi', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["field"] == "body"


def test_talker_invalid_requests_are_counted(talker: TalkerServer) -> None:
    before = talker.value("talker_requests_rejected_total", reason="invalid")
    post(talker, "/v1/tts", json={"text": ""})
    post(talker, "/v1/tts", content=b"{", headers={"Content-Type": "application/json"})
    assert talker.value("talker_requests_rejected_total", reason="invalid") == before + 2


def test_talker_unknown_paths_get_json_404(talker: TalkerServer) -> None:
    with talker.client() as client:
        response = client.get("/v1/does-not-exist/12345")
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_talker_probes(talker: TalkerServer) -> None:
    with talker.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        # Load balancers often probe with HEAD.
        assert client.head("/healthz").status_code == 200
        assert client.head("/readyz").status_code == 200
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["device"] == "cpu"
    assert {"espeak", "piper"} <= set(body["load_seconds"])


def test_talker_leaves_no_temp_files(talker: TalkerServer) -> None:
    # onnxruntime's telemetry writes one `.ses` file into TMPDIR when it loads (before any request);
    # what matters is that serving requests adds nothing.
    at_startup = {p.name for p in talker.tmpdir.iterdir()}
    assert at_startup <= {".ses"}
    assert post(talker, "/v1/tts", json={"text": "Nothing on disk."}).status_code == 200
    assert post(talker, "/v1/talk", json={"text": "Nothing on disk."}).status_code == 200
    assert {p.name for p in talker.tmpdir.iterdir()} == at_startup


def test_talker_refuses_huge_bodies_before_reading_them(talker: TalkerServer) -> None:
    response = post(talker, "/v1/tts", json={"text": "x" * 100_000})
    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_talker_refuses_huge_chunked_bodies_too(talker: TalkerServer) -> None:
    # A chunked body declares no Content-Length: the limit must hold while it is being read.
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    before = talker.value("talker_requests_rejected_total", reason="invalid")
    response = post(talker, "/v1/tts", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json() == {"error": "request body too large", "field": "body", "detail": "at most 65536 bytes"}
    assert talker.value("talker_requests_rejected_total", reason="invalid") == before + 1
    # The same kind of body, small enough, is read and validated as usual.
    small = post(talker, "/v1/tts", content=iter([b'{"text": ', b'"chunked"}']),
                 headers={"Content-Type": "application/json"})
    assert small.status_code == 200, small.text


def test_talker_cmn_is_served_as_mandarin_not_cantonese(talker: TalkerServer) -> None:
    # Both are Chinese voices reading the same characters, so mixing up their espeak names would go unnoticed
    # by a user who cannot tell them apart. Here they pace it differently: 15 syllables take espeak-ng's
    # Mandarin about 3.3 s and its Cantonese about 2.7 s. (espeak-ng varies a few samples between runs, so
    # bytes cannot be compared.)
    text = "你好，世界。今天天气很好。"
    mandarin, again = (post(talker, "/v1/tts", json={"text": text, "voice": "cmn"}) for _ in range(2))
    cantonese = post(talker, "/v1/tts", json={"text": text, "voice": "yue"})
    for response in (mandarin, again, cantonese):
        assert response.status_code == 200, response.text
        assert response.headers["x-tts-engine"] == "espeak"
    cmn_s, again_s, yue_s = (read_wav(r.content)[3] for r in (mandarin, again, cantonese))
    assert abs(cmn_s - again_s) < 0.05
    assert 3.0 < cmn_s < 3.7, cmn_s
    assert 2.4 < yue_s < 3.0, yue_s
