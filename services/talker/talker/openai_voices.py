"""OpenAI's model and voice names, and which talker voice speaks for them (no HTTP here).

- model: OpenAI's names select the default engine; "espeak" / "piper" select that engine.
- voice: a talker voice id (GET /v1/voices), or an OpenAI voice name mapped by TALKER_OPENAI_VOICE_MAP,
  else the default voice of the selected engine.
"""

from __future__ import annotations

from talker.engine_contract import Catalogue
from talker.refusals import unknown_value

OPENAI_MODELS: tuple[str, ...] = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
ENGINE_MODELS: tuple[str, ...] = ("espeak", "piper")
OPENAI_VOICES: tuple[str, ...] = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin", "cedar",
)


def resolve_voice(catalogue: Catalogue, voice_map: dict[str, str], model: str, voice: str) -> str:
    """The talker voice id for OpenAI's (model, voice); raises Refusal (unknown model/voice) naming what is allowed."""
    loaded_engines = [e for e in ENGINE_MODELS if catalogue.default_voice_of(e) is not None]
    if model in OPENAI_MODELS:
        engine = None  # whatever engine the voice belongs to; OpenAI names get the default voice
    elif model in loaded_engines:
        engine = model
    else:
        raise unknown_value("model", [*OPENAI_MODELS, *loaded_engines])

    if catalogue.has_voice(voice):
        if engine is not None and catalogue.engine_of(voice) != engine:
            raise unknown_value("voice", _allowed_voices(catalogue, voice_map, engine))
        return voice
    name = voice.lower()
    if name in OPENAI_VOICES or name in voice_map:
        mapped = voice_map.get(name)
        if mapped is not None and catalogue.has_voice(mapped) and engine in (None, catalogue.engine_of(mapped)):
            return mapped
        default = catalogue.default_voice_of(engine or catalogue.default_engine)
        assert default is not None  # the engine is loaded (checked above)
        return default
    raise unknown_value("voice", _allowed_voices(catalogue, voice_map, engine))


def _allowed_voices(catalogue: Catalogue, voice_map: dict[str, str], engine: str | None) -> list[str]:
    ids = [v.id for v in catalogue.voices() if engine is None or v.engine == engine]
    return ids + sorted(set(OPENAI_VOICES) | set(voice_map))
