"""The engines behind one facade: text -> speech (espeak-ng or Piper) -> talking-head MP4.

Synchronous and thread-safe: the HTTP layer runs each request in a worker thread and passes a
`should_stop` that turns true when the request timed out; every stage polls it between chunks.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import torch

from talker.accelerators import DevicePool, EngineDevice, device_type, gpu_wanted, nvml_gpu_count, resolve_devices
from talker.animator.avatars import Avatar, load_avatars
from talker.animator.encode import encode_mp4
from talker.animator.mouth import frame_count, openness_track
from talker.animator.renderer import RendererPool
from talker.engine_contract import (
    STAGE_ANIMATE,
    STAGE_ENCODE,
    STAGE_TTS,
    AvatarInfo,
    ShouldStop,
    SpeechOutput,
    TalkOutput,
    UnknownAvatar,
    UnknownVoice,
    VoiceInfo,
)
from talker.settings import Settings
from talker.talk_stream import TalkStream
from talker.tts import SpeechStream, SynthesizedSpeech
from talker.tts.espeak import EspeakEngine, SynthesizerBusy
from talker.tts.piper import ID_PREFIX as PIPER_PREFIX
from talker.tts.piper import PiperEngine
from talker.tts.prosody import prosody_for
from talker.tts.wav import pcm16_to_wav

log = logging.getLogger(__name__)

_RENDER_BATCH = 32
_WARMUP_TEXT = "Hello."
# synthesize_quick(): a text this short in an espeak-ng voice takes a few milliseconds; /v1/tts runs it on the
# limiter's quick thread, a cheaper hand-off than the worker pool's (bench/bench_tts_bare.py). The audio bound caps
# how long that thread is held, and the quick jobs queued behind it wait, whatever the text says (digits and
# Chinese say far more per character): about 8 ms at espeak's ~600x.
QUICK_MAX_CHARS = 120
QUICK_MAX_AUDIO_S = 5.0


def _never() -> bool:
    return False


def _speech_output(speech: SynthesizedSpeech, characters: int, tts_s: float) -> SpeechOutput:
    return SpeechOutput(wav=pcm16_to_wav(speech.samples, speech.sample_rate), sample_rate=speech.sample_rate,
                        audio_seconds=speech.seconds, engine=speech.engine, characters=characters,
                        timings={STAGE_TTS: tts_s}, truncated=speech.truncated)


class Pipeline:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._espeak = EspeakEngine()
        self._piper: PiperEngine | None = None
        self._avatars: dict[str, Avatar] = {}
        self._renderers: dict[str, RendererPool] = {}
        self._device: str | None = None
        self._devices: list[str] = []  # every torch device the renderer uses (all visible GPUs, or cpu)
        self._visible_gpus = 0
        self._load_lock = threading.Lock()
        # Even edge: yuv420p needs even dimensions.
        self._size = max(16, settings.video_size - settings.video_size % 2)

    # --- loading -------------------------------------------------------------------------------------
    def load(self) -> dict[str, float]:
        """Load engines and animator and warm each up once; seconds per part."""
        with self._load_lock:
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            self._espeak.load()
            warm = self._espeak.synthesize(_WARMUP_TEXT, "en-us", prosody_for())
            timings["espeak"] = time.perf_counter() - t0

            # Devices first: TALKER_DEVICE=cuda without a GPU fails here, before anything slow is loaded.
            self._devices = resolve_devices(self._settings.device, torch.cuda)
            self._visible_gpus = max(torch.cuda.device_count() if torch.cuda.is_available() else 0,
                                     nvml_gpu_count())
            gpu_ids = [int(d.split(":")[1]) for d in self._devices if d.startswith("cuda:")]

            if self._settings.enable_piper:
                t0 = time.perf_counter()
                piper = PiperEngine(self._settings.models_dir, device=self._settings.device,
                                    threads=self._settings.engine_threads, gpu_ids=gpu_ids)
                try:
                    piper.load()
                    for voice in piper.voices()[:1]:
                        piper.synthesize(_WARMUP_TEXT, voice.id, prosody_for())
                except Exception:
                    log.exception("Piper unavailable; continuing with espeak-ng only")
                else:
                    if piper.voices():
                        self._piper = piper
                        timings["piper"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            self._device = device_type(self._devices[0])
            if self._device == "cpu":
                torch.set_num_threads(self._settings.engine_threads)
            self._avatars = load_avatars(self._settings.avatars_dir, self._size)
            pool = DevicePool(self._devices)  # shared by all avatars: it balances jobs, not portraits
            self._renderers = {a: RendererPool(avatar, pool) for a, avatar in self._avatars.items()}
            self._animate(warm, self._default_avatar_id(), _never)
            timings["animator"] = time.perf_counter() - t0
            log.info("pipeline loaded on %s: %s", self._device,
                     ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
            return timings

    # --- catalogue -----------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        if self._device is not None:
            return self._device
        if self._settings.device == "cpu":
            return "cpu"
        return "cuda" if self._settings.device == "cuda" or torch.cuda.is_available() else "cpu"

    @property
    def devices(self) -> list[str]:
        return list(self._devices)

    def engine_devices(self) -> list[EngineDevice]:
        """What each engine really runs on (after load): espeak-ng is CPU-only by design; Piper reports its
        sessions' providers, the renderer its torch device type."""
        wanted = gpu_wanted(self._settings.device, self._visible_gpus)
        found = [EngineDevice("espeak", "cpu", gpu_wanted=False)]
        if self._piper is not None:
            found += [EngineDevice("piper", provider, wanted) for provider in self._piper.providers]
        found += [EngineDevice("renderer", kind, wanted) for kind in sorted({device_type(d) for d in self._devices})]
        return found

    @property
    def default_engine(self) -> str:
        return self._engine_for(self._default_voice_id())

    def voices(self) -> list[VoiceInfo]:
        voices = self._espeak.voices()
        if self._piper is not None:
            voices += self._piper.voices()
        return voices

    def avatars(self) -> list[AvatarInfo]:
        return [AvatarInfo(id=a.id, name=a.name, width=a.size, height=a.size) for a in self._avatars.values()]

    def has_voice(self, voice_id: str) -> bool:
        if voice_id.startswith(PIPER_PREFIX):
            return self._piper is not None and self._piper.has_voice(voice_id)
        return self._espeak.has_voice(voice_id)

    def has_avatar(self, avatar_id: str) -> bool:
        return avatar_id in self._avatars

    def engine_of(self, voice_id: str | None) -> str:
        """The engine that speaks this voice (None: the default voice)."""
        return self._engine_for(voice_id or self._default_voice_id())

    def default_voice_of(self, engine: str) -> str | None:
        """The voice an engine uses when a request names only the engine (None: engine not loaded)."""
        default = self._default_voice_id()
        if self._engine_for(default) == engine:
            return default
        if engine == "piper":
            return self._piper.voices()[0].id if self._piper is not None else None
        return "en-us" if engine == "espeak" else None

    def _default_voice_id(self) -> str:
        configured = self._settings.default_voice
        if self._settings.tts_engine == "piper" and self._piper is not None:
            if configured.startswith(PIPER_PREFIX) and self._piper.has_voice(configured):
                return configured
            return self._piper.voices()[0].id
        return configured

    def _default_avatar_id(self) -> str:
        configured = self._settings.default_avatar
        return configured if configured in self._avatars else next(iter(self._avatars))

    def _engine_for(self, voice_id: str) -> str:
        return "piper" if voice_id.startswith(PIPER_PREFIX) else "espeak"

    # --- work ----------------------------------------------------------------------------------------
    def _voice_engine(self, voice: str | None) -> tuple[str, EspeakEngine | PiperEngine]:
        voice_id = voice or self._default_voice_id()
        if not self.has_voice(voice_id):
            raise UnknownVoice(voice_id)
        if voice_id.startswith(PIPER_PREFIX):
            assert self._piper is not None
            return voice_id, self._piper
        return voice_id, self._espeak

    def _speak(self, text: str, voice: str | None, emotion: str, speed: float, should_stop: ShouldStop,
               max_seconds: float | None = None, *, phonemes: bool = True) -> tuple[SynthesizedSpeech, float]:
        voice_id, engine = self._voice_engine(voice)
        max_samples = None if max_seconds is None else int(max_seconds * engine.sample_rate_for(voice_id))
        t0 = time.perf_counter()
        speech = engine.synthesize(text, voice_id, prosody_for(emotion, speed), should_stop, max_samples=max_samples,
                                   phonemes=phonemes)
        return speech, time.perf_counter() - t0

    def synthesize(self, text: str, *, voice: str | None = None, emotion: str = "neutral", speed: float = 1.0,
                   should_stop: ShouldStop = _never, max_seconds: float | None = None) -> SpeechOutput:
        # Audio only: no mouth follows it, so the engine skips phoneme timing.
        speech, tts_s = self._speak(text, voice, emotion, speed, should_stop, max_seconds, phonemes=False)
        return _speech_output(speech, len(text), tts_s)

    def synthesize_quick(self, text: str, *, voice: str | None = None, emotion: str = "neutral", speed: float = 1.0,
                         max_seconds: float | None = None) -> SpeechOutput | None:
        """synthesize(), now and on the calling thread, when that is sure to be quick: an espeak-ng voice, at most
        QUICK_MAX_CHARS characters, the synthesizer not in use, at most QUICK_MAX_AUDIO_S of audio. Else None
        (nothing is returned of a text found to say more): then call synthesize(), in a worker thread."""
        if len(text) > QUICK_MAX_CHARS:
            return None
        voice_id, engine = self._voice_engine(voice)
        if engine is not self._espeak:
            return None
        budget = QUICK_MAX_AUDIO_S if max_seconds is None else min(QUICK_MAX_AUDIO_S, max_seconds)
        t0 = time.perf_counter()
        try:
            speech = self._espeak.synthesize(text, voice_id, prosody_for(emotion, speed),
                                             max_samples=int(budget * self._espeak.sample_rate_for(voice_id)),
                                             phonemes=False, wait=False)
        except SynthesizerBusy:
            return None
        if speech.truncated and budget != max_seconds:
            return None  # cut by the quick bound, not by the request's own limit
        return _speech_output(speech, len(text), time.perf_counter() - t0)

    def stream_speech(self, text: str, *, voice: str | None = None, emotion: str = "neutral", speed: float = 1.0,
                      should_stop: ShouldStop = _never, max_seconds: float | None = None) -> SpeechStream:
        """The speech as it is synthesized, piece by piece (see tts/segment.py)."""
        voice_id, engine = self._voice_engine(voice)
        rate = engine.sample_rate_for(voice_id)
        max_samples = None if max_seconds is None else int(max_seconds * rate)
        pieces = engine.stream(text, voice_id, prosody_for(emotion, speed), should_stop, max_samples=max_samples)
        return SpeechStream(engine=engine.name, sample_rate=rate, characters=len(text), pieces=pieces)

    def talk(self, text: str, *, avatar: str | None = None, voice: str | None = None, emotion: str = "neutral",
             speed: float = 1.0, should_stop: ShouldStop = _never, max_seconds: float | None = None) -> TalkOutput:
        if not self._renderers:
            raise RuntimeError("Pipeline.load() must run before talk()")
        avatar_id = avatar or self._default_avatar_id()
        if avatar_id not in self._renderers:
            raise UnknownAvatar(avatar_id)
        speech, tts_s = self._speak(text, voice, emotion, speed, should_stop, max_seconds)
        mp4, frames, animate_s, encode_s = self._animate(speech, avatar_id, should_stop)
        timings = {STAGE_TTS: tts_s, STAGE_ANIMATE: animate_s, STAGE_ENCODE: encode_s}
        return TalkOutput(mp4=mp4, audio_seconds=speech.seconds, frames=frames, engine=speech.engine,
                          characters=len(text), timings=timings, truncated=speech.truncated)

    def talk_stream(self, text: str, *, avatar: str | None = None, voice: str | None = None,
                    emotion: str = "neutral", speed: float = 1.0, should_stop: ShouldStop = _never,
                    max_seconds: float | None = None) -> TalkStream:
        """Like talk(), as fragmented MP4 segments produced while speech is synthesized and rendered.

        Unknown voices/avatars raise here, before anything is produced; the work starts on iteration."""
        if not self._renderers:
            raise RuntimeError("Pipeline.load() must run before talk_stream()")
        avatar_id = avatar or self._default_avatar_id()
        if avatar_id not in self._renderers:
            raise UnknownAvatar(avatar_id)
        speech = self.stream_speech(text, voice=voice, emotion=emotion, speed=speed, should_stop=should_stop,
                                    max_seconds=max_seconds)
        return TalkStream(speech, self._renderers[avatar_id], fps=self._settings.video_fps, should_stop=should_stop)

    def _animate(self, speech: SynthesizedSpeech, avatar_id: str,
                 should_stop: ShouldStop) -> tuple[bytes, int, float, float]:
        fps = self._settings.video_fps
        samples = speech.samples
        if len(samples) == 0:  # e.g. punctuation only: one silent frame keeps the MP4 valid
            samples = np.zeros(speech.sample_rate // fps, dtype=np.int16)
        n_frames = frame_count(len(samples) / speech.sample_rate, fps)
        openness = openness_track(samples, speech.sample_rate, speech.phonemes, fps=fps, n_frames=n_frames)
        renderer = self._renderers[avatar_id]
        video = encode_mp4(renderer.render_batches(openness, batch_size=_RENDER_BATCH, should_stop=should_stop),
                           pcm16_to_wav(samples, speech.sample_rate), size=self._size, fps=fps,
                           should_stop=should_stop)
        return video.mp4, video.frames, video.produce_seconds, video.encode_seconds
