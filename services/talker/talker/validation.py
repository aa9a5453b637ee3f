"""The one place a speech request is checked: text length, voice, avatar, audio budget, OpenAI's names.

TalkerService makes every SpeechRequest here; a failed check is a Refusal (INVALID) naming the field, raised
before the request waits for a slot. (The engines check voice and avatar again as their own precondition:
only a misconfigured default voice reaches that check through the service.)
"""

from __future__ import annotations

from dataclasses import dataclass

from talker.engine_contract import Catalogue
from talker.openai_voices import resolve_voice
from talker.refusals import invalid, unknown_value
from talker.tts.prosody import min_audio_seconds, prosody_for


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str | None  # None: the default voice
    emotion: str
    speed: float
    avatar: str | None = None  # None: the default avatar (or no video)


class RequestRules:
    def __init__(self, catalogue: Catalogue, *, max_text_chars: int, max_audio_seconds: float,
                 openai_voice_map: dict[str, str]) -> None:
        self._catalogue = catalogue
        self._max_text_chars = max_text_chars  # TALKER_MAX_TEXT_CHARS
        self._max_audio_seconds = max_audio_seconds  # TALKER_MAX_AUDIO_SECONDS
        self._openai_voice_map = openai_voice_map  # TALKER_OPENAI_VOICE_MAP: OpenAI voice name -> voice id

    def speech_request(self, text: str, *, voice: str | None, emotion: str, speed: float,
                       avatar: str | None = None) -> SpeechRequest:
        """A request of /v1/tts, /v1/talk(/stream); raises Refusal naming the first bad field."""
        self._check_text_length(text, field="text")
        catalogue = self._catalogue
        if voice is not None and not catalogue.has_voice(voice):
            raise unknown_value("voice", [v.id for v in catalogue.voices()])
        if avatar is not None and not catalogue.has_avatar(avatar):
            raise unknown_value("avatar", [a.id for a in catalogue.avatars()])
        req = SpeechRequest(text=text, voice=voice, emotion=emotion, speed=speed, avatar=avatar)
        self._check_audio_budget(req, field="text")
        return req

    def openai_speech_request(self, *, model: str, text: str, voice: str, speed: float) -> SpeechRequest:
        """A request in OpenAI's names (openai_voices.py); the text is its `input`."""
        self._check_text_length(text, field="input")
        voice_id = resolve_voice(self._catalogue, self._openai_voice_map, model, voice)
        req = SpeechRequest(text=text, voice=voice_id, emotion="neutral", speed=speed)
        self._check_audio_budget(req, field="input")
        return req

    def _check_text_length(self, text: str, *, field: str) -> None:
        limit = self._max_text_chars
        if len(text) > limit:
            raise invalid("text too long", field=field, detail=f"at most {limit} characters, got {len(text)}",
                          max_chars=limit)

    def _check_audio_budget(self, req: SpeechRequest, *, field: str) -> None:
        """Refuse up front a text that surely says more than TALKER_MAX_AUDIO_SECONDS."""
        expected = min_audio_seconds(req.text, prosody_for(req.emotion, req.speed))
        limit = self._max_audio_seconds
        if expected > limit:
            raise invalid("audio too long", field=field,
                          detail=f"this text at this speed makes about {expected:.0f} s of audio or more; "
                                 f"at most {limit:g} s (TALKER_MAX_AUDIO_SECONDS)",
                          max_audio_seconds=limit)
