"""The engines this deployment offers, created once and shared by every request."""

from __future__ import annotations

import importlib
import logging

from webapp.config import Settings
from webapp.pipeline.errors import UnknownChoiceError
from webapp.pipeline.tts.base import TTSEngine, VoiceInfo

logger = logging.getLogger(__name__)

# engine id -> (module, class, default voice)
ENGINES: dict[str, tuple[str, str, str]] = {
    "piper": ("webapp.pipeline.tts.piper", "PiperEngine", "en_US-joe-medium"),
    "coqui": ("webapp.pipeline.tts.coqui", "CoquiEngine", ""),
    "espeak": ("webapp.pipeline.tts.espeak", "EspeakEngine", "en-us"),
}
ENGINE_LABELS = {
    "piper": "Piper (fast, natural; offline)",
    "coqui": "Coqui TTS (VITS / XTTS voice cloning)",
    "espeak": "eSpeak NG (robotic, always available)",
}


class TTSRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, TTSEngine] = {}
        for name, (module, cls, _) in ENGINES.items():
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

    def preload(self) -> None:
        """Load and warm up the start-up engines' default voices."""
        for name in self.settings.preload:
            if name in self._engines:
                self.get(name).load(self.default_voice(name))
