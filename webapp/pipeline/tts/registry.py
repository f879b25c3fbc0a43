"""The engines this deployment offers, created once and shared by every request."""

from __future__ import annotations

import importlib
import importlib.util
import logging

from webapp.config import Settings
from webapp.pipeline.errors import ModelUnavailableError, UnknownChoiceError
from webapp.pipeline.tts.base import TTSEngine, VoiceInfo

logger = logging.getLogger(__name__)

# engine id -> (module, class, default voice)
ENGINES: dict[str, tuple[str, str, str]] = {
    "piper": ("webapp.pipeline.tts.piper", "PiperEngine", "en_US-joe-medium"),
    "coqui": ("webapp.pipeline.tts.coqui", "CoquiEngine", ""),
    "espeak": ("webapp.pipeline.tts.espeak", "EspeakEngine", "en-us"),
}
# Engines whose libraries are optional (an install extra in pyproject.toml; the Hugging Face
# Space has none of them): engine id -> (modules that must be importable, what they are,
# the extra that installs them, engine label).
OPTIONAL_BACKENDS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "coqui": (("TTS", "torch", "torchaudio"), "coqui-tts and PyTorch", "speech-studio[coqui]",
              "Coqui TTS"),
}
ENGINE_LABELS = {
    "piper": "Piper (fast, natural; offline)",
    "coqui": "Coqui TTS (VITS / XTTS voice cloning)",
    "espeak": "eSpeak NG (robotic, always available)",
}


def missing_backend(engine: str) -> str:
    """What to install for ``engine`` to work here; empty when its libraries are installed."""
    if engine not in OPTIONAL_BACKENDS:
        return ""
    modules, packages, extra, label = OPTIONAL_BACKENDS[engine]
    if all(importlib.util.find_spec(m) is not None for m in modules):
        return ""
    return (f"The {label} engine is not installed on this server: it needs {packages} "
            f"(pip install \"{extra}\"). The other engines work without it.")


class TTSRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, TTSEngine] = {}
        self._missing: dict[str, str] = {}  # engine id -> what to install
        for name, (module, cls, _) in ENGINES.items():
            missing = missing_backend(name)
            if missing:
                # Looked up without importing (coqui-tts takes seconds to import): an engine
                # whose libraries are absent is left off the page, and asking for it says why.
                self._missing[name] = missing
                logger.info("TTS engine %s not installed: %s", name, missing)
                continue
            try:
                self._engines[name] = getattr(importlib.import_module(module), cls)(settings)
            except ImportError as exc:
                logger.warning("TTS engine %s unavailable: %s", name, exc)

    def names(self) -> list[str]:
        return list(self._engines)

    def get(self, name: str | None) -> TTSEngine:
        name = name or self.settings.default_engine
        try:
            return self._engines[name]
        except KeyError:
            if name in self._missing:
                raise ModelUnavailableError(self._missing[name]) from None
            raise UnknownChoiceError(
                f"Unknown TTS engine '{name}'. Choose one of: {', '.join(self._engines)}."
            ) from None

    def default_voice(self, engine: str) -> str:
        if engine == self.settings.default_engine and self.settings.default_voice:
            voices = [v.id for v in self.voices(engine)]
            if self.settings.default_voice in voices:
                return self.settings.default_voice
        default = ENGINES.get(engine, ("", "", ""))[2]
        if default:
            return default
        voices = self.voices(engine)
        if not voices:
            raise UnknownChoiceError(
                f"The {engine} engine has no voice available here. See the README "
                "('Models') for how to install one."
            )
        return voices[0].id

    def voices(self, engine: str) -> list[VoiceInfo]:
        try:
            return self.get(engine).voices()
        except UnknownChoiceError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken engine must not break the page
            logger.warning("could not list %s voices: %s", engine, exc)
            return []

    def engine_of(self, voice_id: str) -> str:
        """The engine that has ``voice_id`` installed (ids do not collide: Piper names, eSpeak NG
        language codes, Coqui model names). The default engine is asked first."""
        names = sorted(self._engines, key=lambda n: n != self.settings.default_engine)
        for name in names:
            if any(v.id == voice_id for v in self.voices(name)):
                return name
        installed = [v.id for name in names for v in self.voices(name)]
        raise UnknownChoiceError(
            f"Unknown voice '{voice_id}'. Installed voices: {', '.join(installed[:12])}"
            f"{' …' if len(installed) > 12 else ''}.")

    def preload(self) -> None:
        """Load and warm up the start-up engines' default voices."""
        for name in self.settings.preload:
            if name in self._engines:
                self.get(name).load(self.default_voice(name))
