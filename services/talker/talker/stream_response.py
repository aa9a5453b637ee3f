"""An OpenStream sent as a chunked HTTP body: each write has a deadline, and a disconnect ends it at once.

Starlette's StreamingResponse would wait forever on a client that stops reading (and so would the
producer, holding its slot). Here every send must finish within the stream's write timeout, or the
stream is cut (outcome slow_reader); a task watching `receive` notices a client that went away while
we wait on the producer or the socket (client_closed). A stream cut for any reason other than
completion is left unterminated on the wire, so the client sees a truncated body, not a short file; uvicorn
would call that an ERROR ("returned without completing response"): talker.logs.QuietStreamCuts keeps it quiet
for the outcomes client_closed, slow_reader and timeout (counted, and in the access line).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from talker.engine_contract import STAGE_TTS
from talker.logs import stream_cut
from talker.observe import TRUNCATED_END_REASON, RequestContext
from talker.streaming import OpenStream

STOP_WAIT_S = 5.0


class StreamedResponse(Response):
    def __init__(self, stream: OpenStream[Any], ctx: RequestContext, headers: dict[str, str] | None = None) -> None:
        # Like StreamingResponse: no body attribute, so no Content-Length (the body goes out chunked).
        self.status_code = 200
        self.media_type = stream.spec.media_type
        self.background = None
        self.init_headers(headers)
        self.stream = stream
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.stream
        finishing = False  # once the last byte is sent, the server's own "disconnect" is no client leaving

        def client_left(task: asyncio.Future[None]) -> None:
            if not task.cancelled() and not finishing:
                stream.close("client_closed")  # wakes next() and stops the producer at once

        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        watcher.add_done_callback(client_left)
        outcome = "error"
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            timeout = stream.spec.write_timeout_s
            while True:
                data = await stream.next()
                if stream.outcome is not None:  # closed while we waited (the client went away)
                    outcome = stream.outcome
                    break
                if data is None:
                    outcome = await stream.finished_outcome()
                    if outcome == "completed":
                        finishing = True
                        await asyncio.wait_for(send({"type": "http.response.body", "body": b""}), timeout)
                    break
                if not data:
                    continue
                try:
                    await asyncio.wait_for(
                        send({"type": "http.response.body", "body": data, "more_body": True}), timeout
                    )
                except TimeoutError:
                    outcome = "slow_reader"
                    break
                stream.bytes_sent += len(data)
        except asyncio.CancelledError:
            outcome = "client_closed"
            raise
        finally:
            finishing = True
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
            stream.close(stream.outcome or outcome)
            if stream.outcome != "completed":
                stream_cut.set(stream.outcome)  # a cut on purpose is no server error (talker.logs.QuietStreamCuts)
                # The client is gone or cut: nothing waits on us, so wait for the producer to let go and log
                # how long stopping took (the slot is freed as its thread returns).
                stopped_s = None
                with contextlib.suppress(asyncio.CancelledError):  # already on the way out: just don't wait
                    stopped_s = await stream.sink.wait_producer(STOP_WAIT_S)
                self.ctx.details["stopped_after_s"] = None if stopped_s is None else round(stopped_s, 4)
            self._describe()

    def _describe(self) -> None:
        stream = self.stream
        details = self.ctx.details
        details["stream_outcome"] = stream.outcome
        details["stream_bytes"] = stream.bytes_sent
        if stream.first_bytes_s is not None:
            details["first_bytes_s"] = round(stream.first_bytes_s, 4)
        result = stream.result()
        if result is not None:
            for name in ("engine", "audio_seconds", "characters", "truncated"):
                value = getattr(result, name, None)
                if value is not None:
                    details[name] = round(value, 3) if isinstance(value, float) else value
            tts_seconds = getattr(result, "tts_seconds", None)
            if tts_seconds is not None:
                self.ctx.timings[STAGE_TTS] = tts_seconds
            timings = getattr(result, "timings", None)  # a talk stream: every stage
            if isinstance(timings, dict):
                self.ctx.timings.update(timings)
            frames = getattr(result, "frames", None)
            if frames is not None:
                details["frames"] = frames
            if details.get("truncated"):
                details["end_reason"] = TRUNCATED_END_REASON


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
