"""Spoken input -> 16 kHz mono s16le PCM, with the bundled ffmpeg, bounded in bytes and in duration.

The formats a conversation accepts (`user_audio_start`'s "format"): a browser's MediaRecorder webm/opus, ogg/opus,
WAV, or raw PCM s16le mono at a given rate. Either a short name or a MIME type:

    webm | audio/webm | audio/webm;codecs=opus        ogg | audio/ogg | audio/ogg;codecs=opus
    wav | audio/wav | audio/wave | audio/x-wav         pcm | pcm_s16le | audio/pcm;rate=48000 | audio/L16;rate=8000

Raw PCM needs its rate (`;rate=N` in the MIME type, or pcm_rate=). Every refusal is an AudioInputError whose
`kind` is one of INPUT_ERROR_KINDS and whose `detail` names the bound or the problem (safe to show a client:
no user content, no paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import wave
from dataclasses import dataclass

from talker.ffmpeg import ffmpeg_exe

SAMPLE_RATE = 16000  # what every recogniser gets: 16 kHz mono s16le
BYTES_PER_SECOND = SAMPLE_RATE * 2
INPUT_FORMATS: tuple[str, ...] = ("webm", "ogg", "wav", "pcm")
PCM_RATES = (8000, 96000)  # accepted range of a raw PCM input's rate, inclusive
# ffmpeg's demuxer per container (webm is Matroska's subset).
_DEMUXERS = {"webm": "matroska", "ogg": "ogg", "wav": "wav"}
_ALIASES = {
    "webm": "webm", "audio/webm": "webm", "video/webm": "webm",
    "ogg": "ogg", "opus": "ogg", "audio/ogg": "ogg", "audio/opus": "ogg",
    "wav": "wav", "wave": "wav", "audio/wav": "wav", "audio/wave": "wav", "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "pcm": "pcm", "pcm_s16le": "pcm", "s16le": "pcm", "audio/pcm": "pcm", "audio/l16": "pcm",
}
DECODE_TIMEOUT_S = 30.0  # an ffmpeg that takes longer on at most max_input_audio_bytes is stuck

# kind -> what it means. too_many_bytes / too_long: a bound; bad_format: the format field; not_audio: ffmpeg could
# not decode it or it held no samples; decoder: ffmpeg itself failed (stuck or missing: a server problem).
INPUT_ERROR_KINDS: tuple[str, ...] = ("too_many_bytes", "too_long", "bad_format", "not_audio", "decoder")


class AudioInputError(Exception):
    """Spoken input refused. `kind` in INPUT_ERROR_KINDS; `field` the input field at fault; `detail` for people."""

    def __init__(self, kind: str, detail: str, *, field: str = "audio") -> None:
        super().__init__(detail)
        self.kind, self.detail, self.field = kind, detail, field

    @property
    def client_error(self) -> bool:
        """The client's fault (a 4xx / recoverable error event); False: ours (decoder)."""
        return self.kind != "decoder"


@dataclass(frozen=True)
class InputLimits:
    """TALKER_MAX_INPUT_AUDIO_SECONDS and TALKER_MAX_INPUT_AUDIO_BYTES."""

    max_seconds: float
    max_bytes: int

    @classmethod
    def from_settings(cls, settings: object) -> InputLimits:
        return cls(max_seconds=float(settings.max_input_audio_seconds),  # type: ignore[attr-defined]
                   max_bytes=int(settings.max_input_audio_bytes))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class InputFormat:
    kind: str  # one of INPUT_FORMATS
    pcm_rate: int | None = None  # raw PCM only


@dataclass(frozen=True)
class DecodedAudio:
    """16 kHz mono signed 16-bit little-endian samples."""

    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND

    def wav_bytes(self) -> bytes:
        """The same samples as a WAV file (what a remote recogniser is sent)."""
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(self.pcm)
        return buffer.getvalue()


def parse_input_format(text: str, *, pcm_rate: int | None = None) -> InputFormat:
    """A format name or MIME type (see the module doc) -> InputFormat; AudioInputError(bad_format) otherwise."""
    if not isinstance(text, str) or not text.strip() or len(text) > 100:
        raise AudioInputError("bad_format", f"format must be one of {', '.join(INPUT_FORMATS)} or their MIME types",
                              field="format")
    base, *params = [part.strip() for part in text.split(";")]
    kind = _ALIASES.get(base.lower())
    if kind is None:
        raise AudioInputError("bad_format", f"unsupported audio format; use one of {', '.join(INPUT_FORMATS)} "
                              "(or audio/webm, audio/ogg, audio/wav, audio/pcm;rate=N)", field="format")
    if kind != "pcm":
        return InputFormat(kind)
    rate = pcm_rate
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "rate":
            try:
                rate = int(value.strip())
            except ValueError:
                rate = None
                break
    if rate is None or not (PCM_RATES[0] <= rate <= PCM_RATES[1]):
        raise AudioInputError("bad_format", f"raw PCM needs its sample rate, {PCM_RATES[0]}..{PCM_RATES[1]} Hz "
                              "(e.g. audio/pcm;rate=16000)", field="format")
    return InputFormat(kind, rate)


def check_input_bytes(size: int, limits: InputLimits) -> None:
    """Raise too_many_bytes when `size` bytes of input exceed the byte bound (call it while frames arrive)."""
    if size > limits.max_bytes:
        raise AudioInputError("too_many_bytes", f"spoken input over TALKER_MAX_INPUT_AUDIO_BYTES "
                              f"({limits.max_bytes} bytes)")


def _too_long(limits: InputLimits) -> AudioInputError:
    return AudioInputError("too_long", f"spoken input longer than TALKER_MAX_INPUT_AUDIO_SECONDS "
                           f"({limits.max_seconds:g} s)")


def _ffmpeg_command(fmt: InputFormat, limits: InputLimits) -> list[str]:
    if fmt.kind == "pcm":
        source = ["-f", "s16le", "-ar", str(fmt.pcm_rate), "-ac", "1"]
    else:
        source = ["-f", _DEMUXERS[fmt.kind]]
    # -t stops decoding just past the bound: the output (and the work) stay bounded whatever the input claims.
    limit = f"{limits.max_seconds + 0.5:.3f}"
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *source, "-i", "pipe:0",
            "-t", limit, "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"]


async def decode_input_audio(data: bytes, fmt: InputFormat | str, limits: InputLimits, *,
                             pcm_rate: int | None = None) -> DecodedAudio:
    """Decode spoken input to 16 kHz mono s16le. ffmpeg runs as a subprocess (the event loop only waits).

    Raises AudioInputError: too_many_bytes (before any decoding), bad_format, too_long, not_audio, decoder."""
    check_input_bytes(len(data), limits)
    if isinstance(fmt, str):
        fmt = parse_input_format(fmt, pcm_rate=pcm_rate)
    if fmt.kind == "pcm" and fmt.pcm_rate is not None and len(data) / (2 * fmt.pcm_rate) > limits.max_seconds:
        raise _too_long(limits)
    if not data:
        raise AudioInputError("not_audio", "no audio received")
    try:
        proc = await asyncio.create_subprocess_exec(
            *_ffmpeg_command(fmt, limits), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise AudioInputError("decoder", f"cannot start ffmpeg: {exc.strerror}") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(data), DECODE_TIMEOUT_S)
    except TimeoutError:
        raise AudioInputError("decoder", f"ffmpeg did not finish decoding within {DECODE_TIMEOUT_S:g} s") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0 or not out:
        raise AudioInputError("not_audio", f"the input is not decodable {fmt.kind} audio")
    out = out[: len(out) - len(out) % 2]
    decoded = DecodedAudio(out)
    if decoded.seconds > limits.max_seconds:
        raise _too_long(limits)
    return decoded
