"""Coqui TTS engine (``coqui-tts`` package): released models by name, local checkpoints, XTTS v2
voice cloning.

Voice ids (users pick ids, never paths):

- ``local/<folder>``: an operator checkpoint, ``<folder>/model.pth`` + ``<folder>/config.json``
  inside one of ``SPEECH_STUDIO_COQUI_MODEL_DIRS`` (plus whatever files the config names, e.g.
  ``speaker_ids.json``; XTTS folders also hold ``vocab.json`` and ``speakers_xtts.pth``).
- ``tts_models/<lang>/<dataset>/<model>``: a model from Coqui's catalogue
  (``tts_models/en/ljspeech/vits``). It is used when already on disk (our data dir, Coqui's own
  folder ``~/.local/share/tts`` or ``$TTS_HOME``, or the Hugging Face cache for hub-hosted models)
  and downloaded on first use only when the deployment is online (``SPEECH_STUDIO_OFFLINE=0``).
- ``<model>|<speaker>``: one speaker of a multi-speaker model (``tts_models/en/vctk/vits|p225``,
  ``tts_models/multilingual/multi-dataset/xtts_v2|Ana Florence``). Without ``|speaker`` a
  multi-speaker model speaks with its first speaker. Speakers are listed once the model is loaded
  (listing them needs the weights).

Speed: VITS-family models (anything with a ``length_scale``) and XTTS take it natively; other
models (Tacotron 2 + vocoder...) are time-stretched afterwards with librosa.

Cloning: ``SynthesisOptions.reference`` (already decoded audio) conditions XTTS directly in
memory: no temporary files, no voice cache on disk. Other models refuse a reference clip with a
message instead of silently ignoring it.

Thread safety: a PyTorch model is not safe to call from two threads at once (VITS's speed is a
model attribute, and Coqui's tokenizer keeps state), so each loaded model has its own lock;
different models run in parallel. Coqui's import is slow (about 3 s) so it happens on first
load, never at module import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from webapp.config import Settings
from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import (
    AudioError,
    InputError,
    ModelUnavailableError,
    PipelineError,
    UnknownChoiceError,
)
from webapp.pipeline.tts.base import SynthesisOptions, VoiceInfo

logger = logging.getLogger(__name__)

LOCAL_PREFIX = "local/"
SPEAKER_SEP = "|"
XTTS_V2 = "tts_models/multilingual/multi-dataset/xtts_v2"
# Well-known catalogue models offered in the voice list when the deployment is online.
CURATED_MODELS: tuple[str, ...] = (
    "tts_models/en/ljspeech/vits",
    "tts_models/en/vctk/vits",
    "tts_models/en/jenny/jenny",
    XTTS_V2,
)
# XTTS's authors ask for "> 3 seconds" of reference speech; 6-30 s works best.
MIN_REFERENCE_S = 3.0
_REFERENCE_SILENCE_DBFS = -50.0
_MODEL_NAME = re.compile(r"^tts_models/[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_LATENT_CACHE_SIZE = 8
_CHECKPOINT_NAMES = ("model_file.pth", "model_file.pth.tar", "model.pth", "checkpoint.pth")


@dataclass(frozen=True)
class _ModelFiles:
    model_name: str  # voice id without the speaker part
    model: Path
    config: Path
    vocoder: Path | None = None
    vocoder_config: Path | None = None

    def fingerprint(self) -> str:
        parts = []
        for path in (self.model, self.config, self.vocoder):
            if path is not None:
                stat = path.stat()
                parts.append(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


@dataclass
class _Loaded:
    files: _ModelFiles
    fingerprint: str  # of the files as loaded: replacing them on disk needs a restart
    tts: Any  # TTS.api.TTS
    sample_rate_hz: int
    speakers: list[str]
    is_xtts: bool
    language: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # XTTS conditioning latents per reference clip (sha256 of the samples), newest last.
    latents: OrderedDict[str, tuple[Any, Any]] = field(default_factory=OrderedDict)

    @property
    def model(self) -> Any:
        return self.tts.synthesizer.tts_model


def split_voice(voice: str) -> tuple[str, str | None]:
    """``"model|speaker"`` -> ``("model", "speaker")``; ``"model"`` -> ``("model", None)``."""
    model, sep, speaker = (voice or "").partition(SPEAKER_SEP)
    return model.strip(), (speaker.strip() or None) if sep else None


def validate_reference(reference: Audio, max_s: float) -> Audio:
    """Check a cloning clip and return it with leading/trailing silence trimmed.

    Raises ``AudioError`` for a clip that is too short, silent or too long, with what to do.
    """
    if reference.duration_s > max_s:
        raise AudioError(
            f"The voice sample is {reference.duration_s:.0f} s long; the limit here is "
            f"{max_s:.0f} s. Upload a shorter clip (6-30 s of one person speaking works best)."
        )
    if reference.duration_s < MIN_REFERENCE_S:
        raise AudioError(
            f"The voice sample is only {reference.duration_s:.1f} s long; voice cloning needs at "
            f"least {MIN_REFERENCE_S:.0f} s of clear speech (6-30 s works best)."
        )
    if reference.is_silent(_REFERENCE_SILENCE_DBFS):
        raise AudioError(
            "The voice sample is silent (or nearly so). Record again closer to the microphone, "
            "or upload a clip of one person speaking."
        )
    trimmed = reference.trim(top_db=40.0)
    if trimmed.duration_s < MIN_REFERENCE_S:
        raise AudioError(
            f"The voice sample holds only {trimmed.duration_s:.1f} s of sound between the "
            f"silences; voice cloning needs at least {MIN_REFERENCE_S:.0f} s of speech."
        )
    return trimmed


class CoquiEngine:
    name = "coqui"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded: dict[str, _Loaded] = {}
        self._load_lock = threading.Lock()

    # -- where models live ---------------------------------------------------------------
    @property
    def download_dir(self) -> Path:
        """Where this app downloads catalogue models (Coqui's ModelManager adds ``tts/``)."""
        return self.settings.models_dir / "coqui"

    def _catalogue_roots(self) -> list[Path]:
        return [self.download_dir / "tts", _coqui_user_dir()]

    def _local_models(self) -> dict[str, _ModelFiles]:
        found: dict[str, _ModelFiles] = {}
        for root in self.settings.coqui_model_dirs:
            if not root.is_dir():
                logger.warning("SPEECH_STUDIO_COQUI_MODEL_DIRS entry %s is not a folder", root)
                continue
            for folder in sorted(p for p in root.iterdir() if p.is_dir()):
                model, config = folder / "model.pth", folder / "config.json"
                if _FOLDER_NAME.match(folder.name) and model.is_file() and config.is_file():
                    found.setdefault(LOCAL_PREFIX + folder.name, _ModelFiles(
                        LOCAL_PREFIX + folder.name, model, config))
        return found

    @staticmethod
    def _catalogue() -> dict[str, dict]:
        """Coqui's model catalogue (``.models.json`` shipped inside the package), flattened.
        Read from the package folder without importing it (``import TTS`` costs seconds)."""
        import importlib.util

        spec = importlib.util.find_spec("TTS")
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailableError("The Coqui engine needs the coqui-tts package: pip install coqui-tts.")
        catalogue = Path(next(iter(spec.submodule_search_locations))) / ".models.json"
        raw = json.loads(catalogue.read_text("utf-8"))
        out: dict[str, dict] = {}
        for model_type, langs in raw.items():
            for lang, datasets in langs.items():
                for dataset, models in datasets.items():
                    for model, item in models.items():
                        out[f"{model_type}/{lang}/{dataset}/{model}"] = dict(item, model_type=model_type)
        return out

    def _find_on_disk(self, name: str, item: dict) -> tuple[Path, Path] | None:
        """(checkpoint, config) of an already downloaded catalogue model, without the network
        (and without importing torch: the voice list must stay cheap)."""
        if "repo_id" in item:
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(
                    item["repo_id"], allow_patterns=item.get("allow"),
                    ignore_patterns=item.get("ignore"), local_files_only=True,
                ))
            except Exception:  # noqa: BLE001 - not in the Hugging Face cache (or incomplete)
                return None
            return _find_checkpoint(folder)
        for root in self._catalogue_roots():
            folder = root / name.replace("/", "--")
            if folder.is_dir():
                found = _find_checkpoint(folder)
                if found is not None:
                    return found
                logger.warning("incomplete Coqui model folder %s", folder)
        return None

    def _tos_accepted(self, name: str, item: dict) -> bool:
        import os

        if not item.get("tos_required"):
            return True
        if os.environ.get("COQUI_TOS_AGREED") == "1":
            return True
        return any((root / name.replace("/", "--") / "tos_agreed.txt").is_file()
                   for root in self._catalogue_roots())

    def _download(self, name: str, item: dict) -> tuple[Path, Path]:
        from TTS.utils.manage import ModelManager

        if not self._tos_accepted(name, item):
            # Coqui would ask on stdin (input()) and hang a server: refuse with the reason.
            raise ModelUnavailableError(
                f"Coqui model '{name}' is released under the {item.get('license', 'CPML')} licence "
                "(non-commercial use only). The operator must accept it by setting "
                "COQUI_TOS_AGREED=1 in the environment before it can be downloaded."
            )
        manager = ModelManager(output_prefix=self.download_dir, progress_bar=False)
        logger.info("downloading Coqui model %s into %s", name, self.download_dir)
        try:
            model, config, _ = manager.download_model(name)
        except Exception as exc:  # noqa: BLE001 - network/catalogue errors become one message
            raise ModelUnavailableError(f"Could not download Coqui model '{name}': {exc}") from exc
        return Path(model), Path(config)

    def _resolve(self, model_name: str) -> _ModelFiles:
        local = self._local_models()
        if model_name in local:
            return local[model_name]
        if model_name.startswith(LOCAL_PREFIX):
            raise UnknownChoiceError(
                f"Unknown local Coqui model '{model_name}'. Installed local models: "
                f"{', '.join(sorted(local)) or 'none'} (the operator adds them as folders with "
                "model.pth + config.json inside SPEECH_STUDIO_COQUI_MODEL_DIRS)."
            )
        catalogue = self._catalogue() if _MODEL_NAME.match(model_name) else {}
        item = catalogue.get(model_name)
        if item is None or item.get("model_type") != "tts_models":
            raise UnknownChoiceError(
                f"Unknown Coqui voice '{model_name}'. Use a Coqui model name such as "
                f"{', '.join(CURATED_MODELS[:2])}, or one of the local models: "
                f"{', '.join(sorted(local)) or 'none installed'}."
            )
        found = self._find_on_disk(model_name, item)
        vocoder_name = item.get("default_vocoder")
        vocoder = None
        if vocoder_name:
            vocoder = self._find_on_disk(vocoder_name, catalogue.get(vocoder_name, {}))
        if found is None or (vocoder_name and vocoder is None):
            if self.settings.offline:
                missing = model_name if found is None else f"{model_name}'s vocoder {vocoder_name}"
                raise ModelUnavailableError(
                    f"Coqui model '{missing}' is not downloaded and this deployment is offline. "
                    "Either set SPEECH_STUDIO_OFFLINE=0 to download it on first use, or copy its "
                    "folder (model.pth + config.json) into a folder listed in "
                    "SPEECH_STUDIO_COQUI_MODEL_DIRS and choose the voice 'local/<folder name>'. "
                    f"Looked in: {', '.join(str(r) for r in self._catalogue_roots())} and the "
                    "Hugging Face cache. The other engines (Piper, eSpeak NG) keep working."
                )
            if found is None:
                found = self._download(model_name, item)
            if vocoder_name and vocoder is None:
                vocoder = self._download(vocoder_name, catalogue.get(vocoder_name, {}))
        return _ModelFiles(model_name, found[0], found[1],
                           vocoder[0] if vocoder else None, vocoder[1] if vocoder else None)

    # -- the contract --------------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        out: list[VoiceInfo] = []
        seen: set[str] = set()

        def add(voice_id: str, description: str, **extra: Any) -> None:
            if voice_id not in seen:
                seen.add(voice_id)
                out.append(VoiceInfo(id=voice_id, engine=self.name, description=description, **extra))

        for voice_id, files in self._local_models().items():
            add(voice_id, f"Local Coqui checkpoint {voice_id[len(LOCAL_PREFIX):]}",
                **_describe_config(files.config))
        catalogue: dict[str, dict] | None = None
        for name in CURATED_MODELS:
            try:
                catalogue = catalogue if catalogue is not None else self._catalogue()
                on_disk = self._find_on_disk(name, catalogue[name]) is not None
            except Exception as exc:  # noqa: BLE001 - TTS not importable: list local models only
                logger.warning("cannot read the Coqui catalogue: %s", exc)
                break
            if on_disk or not self.settings.offline:
                item = catalogue[name]
                add(name, f"Coqui {name.split('/', 1)[1]}" + ("" if on_disk else " (downloads on first use)"),
                    language=name.split("/")[1], supports_cloning=name == XTTS_V2,
                    license=str(item.get("license", "")))
        for voice_id, loaded in list(self._loaded.items()):
            add(voice_id, f"Coqui {voice_id}", sample_rate_hz=loaded.sample_rate_hz,
                supports_cloning=loaded.is_xtts)
            for speaker in loaded.speakers:
                add(f"{voice_id}{SPEAKER_SEP}{speaker}", f"Coqui {voice_id}, speaker {speaker}",
                    sample_rate_hz=loaded.sample_rate_hz, supports_cloning=loaded.is_xtts)
        return out

    def model_id(self, voice: str) -> str:
        model_name, _ = split_voice(voice)
        loaded = self._loaded.get(model_name)
        fingerprint = loaded.fingerprint if loaded is not None else self._resolve(model_name).fingerprint()
        return f"coqui/{model_name}@{fingerprint}"

    def load(self, voice: str) -> None:
        loaded = self._load_model(split_voice(voice)[0])
        self._speaker_for(loaded, voice)

    def sample_rate(self, voice: str) -> int:
        return self._load_model(split_voice(voice)[0]).sample_rate_hz

    def _load_model(self, model_name: str) -> _Loaded:
        loaded = self._loaded.get(model_name)
        if loaded is not None:
            return loaded
        with self._load_lock:
            if model_name not in self._loaded:
                files = self._resolve(model_name)
                self._loaded[model_name] = self._instantiate(files)
        return self._loaded[model_name]

    def _instantiate(self, files: _ModelFiles) -> _Loaded:
        try:
            from TTS.api import TTS
        except ImportError as exc:
            raise ModelUnavailableError(
                f"The Coqui engine needs the coqui-tts package (with torchaudio and torchcodec), "
                f"which cannot be imported here: {exc}. Use the Piper or eSpeak NG engine."
            ) from exc
        logger.info("loading Coqui model %s from %s", files.model_name, files.model)
        fingerprint = files.fingerprint()
        try:
            tts = TTS(
                model_path=str(files.model), config_path=str(files.config),
                vocoder_path=str(files.vocoder) if files.vocoder else None,
                vocoder_config_path=str(files.vocoder_config) if files.vocoder_config else None,
                progress_bar=False,
            )
        except Exception as exc:  # noqa: BLE001 - a broken checkpoint must not break the app
            logger.exception("Coqui model %s failed to load", files.model_name)
            raise ModelUnavailableError(
                f"Coqui model '{files.model_name}' could not be loaded ({type(exc).__name__}: "
                f"{exc}). Check that its model.pth and config.json belong together and match "
                "the installed coqui-tts version."
            ) from exc
        model = tts.synthesizer.tts_model
        is_xtts = getattr(tts.synthesizer.tts_config, "model", "") == "xtts"
        speakers: list[str] = []
        manager = getattr(model, "speaker_manager", None)
        if manager is not None:
            names = manager.speakers.keys() if is_xtts else manager.speaker_names
            speakers = [str(s) for s in names]
        language = None
        if tts.is_multi_lingual:
            names = list(getattr(tts.synthesizer.tts_config, "languages", None) or tts.languages or [])
            language = "en" if "en" in names else (names[0] if names else "en")
        loaded = _Loaded(files, fingerprint, tts, int(tts.synthesizer.output_sample_rate), speakers, is_xtts, language)
        if not is_xtts:
            # Warm-up: the first forward pass allocates; XTTS warms up on its first request
            # (it needs a speaker, and its warm-up costs seconds).
            self._run(loaded, "Warm up.", speaker=speakers[0] if speakers else None, speed=1.0)
        return loaded

    def _speaker_for(self, loaded: _Loaded, voice: str) -> str | None:
        _, speaker = split_voice(voice)
        if speaker is None:
            return loaded.speakers[0] if loaded.speakers else None
        if speaker not in loaded.speakers:
            if not loaded.speakers:
                raise UnknownChoiceError(
                    f"Coqui model '{loaded.files.model_name}' has a single voice; choose "
                    f"'{loaded.files.model_name}' without '{SPEAKER_SEP}{speaker}'."
                )
            shown = ", ".join(loaded.speakers[:20]) + (" ..." if len(loaded.speakers) > 20 else "")
            raise UnknownChoiceError(
                f"Unknown speaker '{speaker}' for Coqui model '{loaded.files.model_name}'. "
                f"Speakers: {shown}."
            )
        return speaker

    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Audio]:
        loaded = self._load_model(split_voice(options.voice)[0])
        speaker = self._speaker_for(loaded, options.voice)
        reference = None
        if options.reference is not None:
            reference = validate_reference(options.reference, self.settings.max_clone_clip_s)
            if not loaded.is_xtts:
                raise InputError(
                    f"Coqui voice '{options.voice}' cannot clone a voice from a sample. Choose "
                    f"'{XTTS_V2}' (when installed) or remove the voice sample."
                )
        text = " ".join(text.split())
        if not text:
            return
        if loaded.is_xtts and reference is None and speaker is None:
            raise InputError(
                f"Coqui model '{loaded.files.model_name}' has no built-in speakers here: "
                "upload a voice sample (at least 3 s of speech) to clone."
            )
        yield self._run(loaded, text, speaker=speaker, speed=float(options.speed), reference=reference)

    # -- inference -----------------------------------------------------------------------
    def _run(self, loaded: _Loaded, text: str, *, speaker: str | None, speed: float,
             reference: Audio | None = None) -> Audio:
        model = loaded.model
        native_speed = loaded.is_xtts or isinstance(getattr(model, "length_scale", None), (int, float))
        with loaded.lock:
            try:
                if loaded.is_xtts:
                    samples = self._run_xtts(loaded, text, speaker, speed, reference)
                else:
                    self._check_speakable(loaded, text)
                    samples = self._run_synthesizer(loaded, text, speaker, speed if native_speed else 1.0)
            except PipelineError:
                raise
            except Exception as exc:  # noqa: BLE001 - model failures become one clear message
                logger.exception("Coqui model %s failed on %r", loaded.files.model_name, text[:80])
                raise PipelineError(
                    f"Coqui model '{loaded.files.model_name}' failed on this text "
                    f"({type(exc).__name__}: {exc}). Try simpler wording or another engine."
                ) from exc
        samples = np.nan_to_num(np.asarray(samples, dtype=np.float32).reshape(-1))
        if not native_speed and speed != 1.0 and len(samples):
            import librosa

            samples = librosa.effects.time_stretch(samples, rate=speed)
        return Audio(np.clip(samples, -1.0, 1.0), loaded.sample_rate_hz)

    @staticmethod
    def _check_speakable(loaded: _Loaded, text: str) -> None:
        tokenizer = getattr(loaded.model, "tokenizer", None)
        if tokenizer is None:
            return
        if getattr(loaded.tts.synthesizer.tts_config, "use_phonemes", False) \
                and any(c.isalpha() for c in text):
            return  # espeak-ng reads any letters; skip a second phonemizer run
        ids = tokenizer.text_to_ids(text, language=loaded.language)
        # Unknown characters are dropped by the tokenizer; padding, blanks, BOS/EOS and spaces
        # alone would make a click, not speech.
        chars = tokenizer.characters
        ignored = {chars.pad_id, chars.blank_id, chars.bos_id, chars.eos_id}
        if " " in chars.vocab:
            ignored.add(chars.char_to_id(" "))
        if not any(i not in ignored for i in ids):
            raise InputError(
                f"Coqui model '{loaded.files.model_name}' cannot pronounce any character of this "
                "text. Write it in the model's language and alphabet, or use another engine."
            )

    @staticmethod
    def _run_synthesizer(loaded: _Loaded, text: str, speaker: str | None, speed: float) -> np.ndarray:
        model = loaded.model
        saved_scale = getattr(model, "length_scale", None)
        if saved_scale is not None and speed != 1.0:
            model.length_scale = float(saved_scale) / speed
        try:
            wav = loaded.tts.tts(text, speaker=speaker, language=loaded.language, split_sentences=False)
        finally:
            if saved_scale is not None:
                model.length_scale = saved_scale
        samples = np.asarray(wav, dtype=np.float32)
        # Coqui's Synthesizer appends a fixed pause after every sentence; the synthesis
        # service adds its own pauses, so drop it.
        try:
            from TTS.utils.synthesizer import PAD_SILENCE_SAMPLES
        except ImportError:  # pragma: no cover
            PAD_SILENCE_SAMPLES = 0  # noqa: N806
        if PAD_SILENCE_SAMPLES and len(samples) > PAD_SILENCE_SAMPLES \
                and not np.any(samples[-PAD_SILENCE_SAMPLES:]):
            samples = samples[:-PAD_SILENCE_SAMPLES]
        return samples

    def _run_xtts(self, loaded: _Loaded, text: str, speaker: str | None, speed: float,
                  reference: Audio | None) -> np.ndarray:
        model = loaded.model
        config = loaded.tts.synthesizer.tts_config
        if reference is not None:
            gpt_latent, speaker_embedding = self._xtts_latents(loaded, reference)
        else:
            gpt_latent, speaker_embedding = model.speaker_manager.speakers[speaker].values()
        out = model.inference(
            text, loaded.language or "en", gpt_latent, speaker_embedding,
            temperature=config.temperature, length_penalty=config.length_penalty,
            repetition_penalty=config.repetition_penalty, top_k=config.top_k, top_p=config.top_p,
            speed=speed, enable_text_splitting=True,
        )
        wav = out["wav"]
        return wav.cpu().numpy() if hasattr(wav, "cpu") else np.asarray(wav)

    @staticmethod
    def _xtts_latents(loaded: _Loaded, reference: Audio) -> tuple[Any, Any]:
        """XTTS conditioning from in-memory audio (Coqui's own path reads a file with
        torchaudio); same steps as ``Xtts.get_conditioning_latents``. Called under the lock."""
        import torch

        key = hashlib.sha256(reference.samples.tobytes() + str(reference.sample_rate).encode()).hexdigest()
        if key in loaded.latents:
            loaded.latents.move_to_end(key)
            return loaded.latents[key]
        config = loaded.tts.synthesizer.tts_config
        load_hz = 22_050
        wav = torch.from_numpy(reference.resample(load_hz).samples.copy()).unsqueeze(0)
        wav = wav[:, : load_hz * int(config.max_ref_len)]
        if config.sound_norm_refs:
            wav = (wav / wav.abs().max()) * 0.75
        model = loaded.model
        gpt_latent = model.get_gpt_cond_latents(
            wav, load_hz, length=config.gpt_cond_len, chunk_length=config.gpt_cond_chunk_len)
        speaker_embedding = model.get_speaker_embedding(wav, load_hz)
        loaded.latents[key] = (gpt_latent, speaker_embedding)
        while len(loaded.latents) > _LATENT_CACHE_SIZE:
            loaded.latents.popitem(last=False)
        return gpt_latent, speaker_embedding


def _coqui_user_dir() -> Path:
    """Where Coqui itself downloads models (same rule as ``trainer.io.get_user_data_dir("tts")``
    on Linux/macOS, without importing trainer, which imports torch)."""
    import os
    import sys

    if os.environ.get("TTS_HOME"):
        base = Path(os.environ["TTS_HOME"]).expanduser()
    elif os.environ.get("XDG_DATA_HOME"):
        base = Path(os.environ["XDG_DATA_HOME"]).expanduser()
    elif sys.platform == "darwin":
        base = Path("~/Library/Application Support/").expanduser()
    else:
        base = Path.home() / ".local" / "share"
    return base / "tts"


def _find_checkpoint(folder: Path) -> tuple[Path, Path] | None:
    """Coqui's own rule (``ModelManager._find_files``) for a downloaded model folder."""
    model = next((folder / n for n in _CHECKPOINT_NAMES if (folder / n).is_file()), None)
    if model is None:
        checkpoints = list(folder.rglob("*.pt*"))
        if len(checkpoints) != 1:
            return None
        model = checkpoints[0]
    configs = sorted(folder.rglob("config.json"), key=lambda p: len(p.parts))
    return (model, configs[0]) if configs else None


def _describe_config(config: Path) -> dict[str, Any]:
    """What a local checkpoint's config.json declares, read without loading the model."""
    try:
        raw = json.loads(config.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    audio = raw.get("audio") or {}
    rate = audio.get("output_sample_rate") or audio.get("sample_rate")
    language = raw.get("phoneme_language") or "en"
    return {
        "sample_rate_hz": int(rate) if isinstance(rate, (int, float)) else None,
        "supports_cloning": raw.get("model") == "xtts",
        "language": str(language).split("-")[0],
    }
