"""What the ``/v1`` routes call models and voices, and how those names map onto our engines.

Unmodified OpenAI clients send OpenAI's names: ``tts-1`` with ``alloy``, ``whisper-1``. They
map onto what is installed here: OpenAI's speech models onto the deployment's default TTS
engine, OpenAI's voice names onto that engine's default voice (one deployment voice, not a
guess at which local voice sounds like "nova"), OpenAI's transcription models onto the default
Whisper engine and model. Our own names work too: ``piper``, ``espeak``, ``coqui`` or
``coqui/<model>`` as the speech model, a voice id (``en_US-joe-medium``) or a Piper voice's
short name (``joe``) as the voice; ``faster-whisper``, ``faster-whisper/tiny.en`` or
``tiny.en`` as the transcription model. An unknown name is refused with the list of what
exists. These functions run in a worker thread: listing voices may read model folders.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from webapp.openai_compat.errors import ApiError
from webapp.pipeline.tts.base import VoiceInfo
from webapp.pipeline.tts.registry import ENGINES as TTS_ENGINES
from webapp.pipeline.tts.registry import missing_backend as missing_tts_backend
from webapp.services import Services

OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                 "shimmer", "verse", "marin", "cedar")
OPENAI_STT_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                     "gpt-transcribe")
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # gpt-4o-mini-tts-2025-12-15 and the like
_PIPER_ID = re.compile(r"^[a-z]{2,3}_[A-Z]{2}-(?P<name>[A-Za-z0-9_]+)-(x_low|low|medium|high)$")
_LISTED = 24  # voices named in an "unknown voice" message before "and N more"
OWNER = "speech-studio"
CREATED = int(time.time())


def _undated(name: str) -> str:
    return _DATED.sub("", name)


def short_name(voice: VoiceInfo) -> str:
    """What a person calls the voice: ``joe`` for Piper's ``en_US-joe-medium``."""
    match = _PIPER_ID.match(voice.id)
    return match.group("name") if match else voice.id


# -- speech ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeechChoice:
    engine: str
    voice: str


def _tts_engine_or_404(services: Services, engine: str, asked: str) -> str:
    if engine in services.tts.names():
        return engine
    missing = missing_tts_backend(engine)
    raise ApiError(404, missing or f"The model '{asked}' is not available on this server. "
                   f"Models here: {', '.join(speech_model_ids(services))}.",
                   param="model", code="model_not_found")


def speech_model_ids(services: Services) -> list[str]:
    return [*OPENAI_TTS_MODELS, *services.tts.names()]


def resolve_speech(services: Services, model: str, voice: str) -> SpeechChoice:
    """The engine and voice id for an OpenAI ``model`` and ``voice`` (``ApiError`` when one of
    them does not exist here)."""
    asked = model.strip()
    voice = voice.strip()
    if _undated(asked.lower()) in OPENAI_TTS_MODELS:
        engine = _tts_engine_or_404(services, services.settings.default_engine, asked)
        if not voice or voice.lower() in OPENAI_VOICES:
            return SpeechChoice(engine, services.tts.default_voice(engine))
        # OpenAI's model names leave the engine open: a voice of another installed engine
        # (picked from /v1/audio/voices by a client that always sends "tts-1") is spoken by
        # that engine.
        others = [e for e in services.tts.names() if e != engine]
        for candidate in (engine, *others):
            found = _find_voice(services.tts.voices(candidate), voice, None)
            if found is not None:
                return SpeechChoice(candidate, found)
        return _not_installed_voice(services, engine, voice)
    name, _, implied = asked.partition("/")  # "coqui/<model>", "piper/<voice>"
    if name.lower() not in TTS_ENGINES:
        raise ApiError(404, f"Unknown model '{asked}'. Models here: "
                       f"{', '.join(speech_model_ids(services))}, or <engine>/<voice> for a "
                       "voice of one engine (piper/en_US-joe-medium, coqui/<model>).",
                       param="model", code="model_not_found")
    engine = _tts_engine_or_404(services, name.lower(), asked)
    if not voice or voice.lower() in OPENAI_VOICES:
        return SpeechChoice(engine, implied or services.tts.default_voice(engine))
    found = _find_voice(services.tts.voices(engine), voice, implied or None)
    if found is not None:
        return SpeechChoice(engine, found)
    return _not_installed_voice(services, engine, voice)


def _not_installed_voice(services: Services, engine: str, voice: str) -> SpeechChoice:
    """A voice not installed here: online, one of the engine's catalogue (downloaded on first
    use); offline, a 400 that lists what exists."""
    if not services.settings.offline:
        return SpeechChoice(engine, voice)
    raise ApiError(400, unknown_voice_message(services, engine, voice), param="voice",
                   code="voice_not_found")


def _find_voice(voices: list[VoiceInfo], voice: str, implied: str | None) -> str | None:
    ids = {v.id: v for v in voices}
    if voice in ids:
        return voice
    folded = voice.casefold()
    exact = [v.id for v in voices if v.id.casefold() == folded]
    if len(exact) == 1:
        return exact[0]
    short = [v.id for v in voices if short_name(v).casefold() == folded]
    if len(short) == 1:
        return short[0]
    if implied is not None:
        # A speaker of a multi-speaker Coqui model, named without the model:
        # "coqui/tts_models/en/vctk/vits" + "p225" (Coqui's "<model>|<speaker>").
        speaker = f"{implied}|{voice}"
        if speaker in ids:
            return speaker
    return None


def unknown_voice_message(services: Services, engine: str, voice: str) -> str:
    voices = services.tts.voices(engine)
    default = services.tts.default_voice(engine)
    names = []
    for v in voices[:_LISTED]:
        short = short_name(v)
        names.append(v.id if short == v.id else f"{v.id} ('{short}')")
    more = f" and {len(voices) - _LISTED} more" if len(voices) > _LISTED else ""
    return (f"Unknown voice '{voice}' for the {engine} engine. Voices here: "
            f"{', '.join(names) or 'none'}{more} (GET /v1/audio/voices lists them all). "
            f"OpenAI's voice names ({', '.join(OPENAI_VOICES)}) are accepted too and speak "
            f"with {default}.")


# -- transcription -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TranscriptionChoice:
    engine: str
    model: str

    @property
    def english_only(self) -> bool:
        return self.model.endswith(".en")


def _stt_or_404(services: Services):
    if services.stt is None:
        raise ApiError(404, "Speech recognition is not available on this server.",
                       param="model", code="model_not_found")
    return services.stt


def transcription_model_ids(services: Services) -> list[str]:
    if services.stt is None:
        return []
    stt = services.stt
    ids = list(OPENAI_STT_MODELS)
    for engine in stt.engines():
        ids.append(engine)
        ids.extend(f"{engine}/{model}" for model in stt.models(engine))
    return ids


def resolve_transcription(services: Services, model: str) -> TranscriptionChoice:
    stt = _stt_or_404(services)
    asked = model.strip()
    name = _undated(asked.lower())
    if name in OPENAI_STT_MODELS or name.startswith("gpt-4o-transcribe"):
        return TranscriptionChoice(stt.default_engine, stt.default_model)
    engine, _, model_name = asked.partition("/")
    if engine.lower() in stt.engines():
        return TranscriptionChoice(engine.lower(), model_name or stt.default_model)
    if not model_name and asked in stt.models():
        return TranscriptionChoice(stt.default_engine, asked)
    from webapp.pipeline.stt.registry import ENGINES, missing_backend

    missing = missing_backend(engine.lower()) if engine.lower() in ENGINES else ""
    if missing:
        raise ApiError(404, missing, param="model", code="model_not_found")
    raise ApiError(404, f"Unknown model '{asked}'. Models here: "
                   f"{', '.join(transcription_model_ids(services))}.",
                   param="model", code="model_not_found")


def only_english_models(services: Services) -> bool:
    stt = services.stt
    if stt is None:
        return True
    return all(m.endswith(".en") for engine in stt.engines() for m in stt.models(engine))


# -- listings ------------------------------------------------------------------------------
def _model(model_id: str, task: str, engine: str, **extra) -> dict:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": OWNER,
            "task": task, "engine": engine, **extra}


def list_models(services: Services) -> list[dict]:
    """``GET /v1/models``: OpenAI's names (with what they stand for here) and our own."""
    default = services.settings.default_engine
    out = [_model(m, "text-to-speech", default, alias_of=default) for m in OPENAI_TTS_MODELS]
    out += [_model(e, "text-to-speech", e) for e in services.tts.names()]
    stt = services.stt
    if stt is not None:
        target = f"{stt.default_engine}/{stt.default_model}"
        out += [_model(m, "speech-to-text", stt.default_engine, alias_of=target)
                for m in OPENAI_STT_MODELS]
        for engine in stt.engines():
            out.append(_model(engine, "speech-to-text", engine,
                              alias_of=f"{engine}/{stt.default_model}"))
            out += [_model(f"{engine}/{m}", "speech-to-text", engine) for m in stt.models(engine)]
    return out


def list_voices(services: Services) -> list[dict]:
    """``GET /v1/audio/voices``: every voice of every installed engine, with the model names
    that speak with it and, for each engine's default voice, the OpenAI names mapped to it."""
    out = []
    default_engine = services.settings.default_engine
    for engine in services.tts.names():
        voices = services.tts.voices(engine)
        try:
            default = services.tts.default_voice(engine) if voices else None
        except Exception:  # noqa: BLE001 - an engine without a default voice still lists
            default = None
        aliases = list(OPENAI_TTS_MODELS) if engine == default_engine else []
        for v in voices:
            out.append({
                "id": v.id, "object": "voice", "name": short_name(v), "engine": engine,
                "language": v.language, "licence": v.license, "description": v.description,
                "models": [*aliases, engine, f"{engine}/{v.id}"],
                "openai_voices": list(OPENAI_VOICES) if v.id == default else [],
                "default": v.id == default,
            })
    return out
