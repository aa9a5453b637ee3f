"""/v1/chat/ws with output "video": each sentence of the answer arrives as a fragmented MP4 (talk_stream.py)
announced by a media event, while the LLM stand-in is still writing. A real talker, real ffmpeg decoding."""

from __future__ import annotations

import subprocess

from chat_tests.chat_ws_client import ChatStack, Frame
from talker.animator.stream_encode import MIME_TYPE
from talker.ffmpeg import ffmpeg_exe


def test_video_turn_sends_one_playable_fmp4_per_sentence(chat_stack: ChatStack) -> None:
    chat_stack.llm.replies = ["Hi there. This is a video answer, and it keeps going for a little while longer."]
    with chat_stack.connect() as client:
        client.send(type="config", output="video", avatar="mei")
        ready = client.until("ready")[-1].event
        assert ready is not None and ready["output"] == "video" and ready["avatar"] == "mei"
        _, frames = client.turn("Show yourself.", timeout=120)
    end = frames[-1].event
    assert end is not None and end["outcome"] == "completed", frames[-1]
    parts: list[list[Frame]] = []
    for frame in frames:
        if frame.type == "media":
            assert frame.event is not None
            assert frame.event["kind"] == "video" and frame.event["mime_type"] == MIME_TYPE
            assert frame.event["part"] == len(parts) + 1
            parts.append([])
        elif frame.type == "binary":
            parts[-1].append(frame)
    assert len(parts) == 2  # two sentences, two fMP4 streams
    deltas = [f for f in frames if f.type == "reply_delta"]
    assert parts[0][0].at < deltas[-1].at  # the first video is out before the LLM has finished
    for part in parts:
        data = b"".join(f.data or b"" for f in part)
        assert data[4:8] == b"ftyp"
        decoded = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", "pipe:0", "-f", "null", "-"],
                                 input=data, capture_output=True, timeout=60)
        assert decoded.returncode == 0 and not decoded.stderr, decoded.stderr.decode()
