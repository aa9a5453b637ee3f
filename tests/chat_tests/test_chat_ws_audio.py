"""/v1/chat/ws, spoken input: espeak-ng's voice as a WAV file, sent in frames as a browser would, is heard by
pocketsphinx (offline), shown as a transcript and answered like typed text. A real talker, the LLM stand-in."""

from __future__ import annotations

from chat_tests.asr_speech import KEY_WORDS, speech_file
from chat_tests.chat_ws_client import ChatStack, Frame

FRAME_BYTES = 8192


def events(frames: list[Frame], kind: str) -> list[dict]:
    return [f.event for f in frames if f.type == kind and f.event is not None]


def test_spoken_question_is_transcribed_and_answered(chat_stack: ChatStack) -> None:
    chat_stack.llm.replies = ["It is sunny. Enjoy your day."]
    server = chat_stack.talker
    before = server.value("talker_chat_turns_total", input="audio", outcome="completed")
    wav = speech_file("wav")
    with chat_stack.connect() as client:
        client.send(type="user_audio_start", format="audio/wav")
        for start in range(0, len(wav), FRAME_BYTES):
            client.send_raw(wav[start:start + FRAME_BYTES])
        client.send(type="user_audio_end")
        frames = client.until("turn_end", timeout=120)
    assert events(frames, "turn_start")[0]["input"] == "audio"
    transcript = events(frames, "transcript")
    assert len(transcript) == 1 and all(word in transcript[0]["text"] for word in KEY_WORDS), transcript
    kinds = [f.type for f in frames]
    assert kinds.index("transcript") < kinds.index("reply_delta") < kinds.index("binary")
    assert "".join(e["text"] for e in events(frames, "reply_delta")) == "It is sunny. Enjoy your day."
    end = frames[-1].event
    assert end is not None and end["outcome"] == "completed"
    assert 0 < end["timings"]["asr"] < end["timings"]["first_audio"] < end["timings"]["total"]
    assert server.value("talker_chat_turns_total", input="audio", outcome="completed") == before + 1
    assert server.value("talker_stage_duration_seconds_count", stage="asr") >= 1


def test_spoken_input_bounds_and_format_are_error_events(chat_stack: ChatStack) -> None:
    server = chat_stack.talker
    before = server.value("talker_chat_turns_total", input="audio", outcome="invalid")
    chat_stack.llm.replies = ["Yes."]
    with chat_stack.connect() as client:
        client.send(type="user_audio_start", format="audio/flac-ish")
        error = client.recv().event
        assert error is not None and error["field"] == "format" and error["error"] == "invalid format"
        # Over TALKER_MAX_INPUT_AUDIO_BYTES (2 MiB): refused while the frames arrive, not after the end.
        client.send(type="user_audio_start", format="audio/pcm;rate=16000")
        frame = b"\x00\x01" * 32768
        sent = 0
        while sent <= 2 * 1024 * 1024:
            client.send_raw(frame)
            sent += len(frame)
        error = client.recv().event
        assert error is not None and error["kind"] == "too_many_bytes" and error["status"] == 413
        assert "TALKER_MAX_INPUT_AUDIO_BYTES" in error["detail"]
        client.send(type="user_audio_end")  # nothing to answer: the input was refused
        client.send(type="user_audio_end")
        error = client.recv().event
        assert error is not None and error["error"] == "unexpected user_audio_end"
        # Not audio at all: decoded and refused, then the socket still answers typed text.
        client.send(type="user_audio_start", format="wav")
        client.send_raw(b"this is not a wav file" * 10)
        client.send(type="user_audio_end")
        frames = client.until("turn_end")
        assert events(frames, "error")[0]["field"] == "audio"
        assert frames[-1].event is not None and frames[-1].event["outcome"] == "invalid"
        _, frames = client.turn("Are you there?")
        assert frames[-1].event is not None and frames[-1].event["outcome"] == "completed"
    assert server.value("talker_chat_turns_total", input="audio", outcome="invalid") == before + 2
