"""Coqui TTS engine (``coqui-tts`` package): loading, speakers, speed, synthesis and XTTS v2
voice cloning. Which models exist and where their files are is ``coqui_catalogue`` (issue 14).

Voice ids: a model id of the catalogue (``local/<folder>``, ``tts_models/<lang>/<dataset>/<model>``)
or ``<model>|<speaker>`` for one speaker of a multi-speaker model (``tts_models/en/vctk/vits|p225``,
``tts_models/multilingual/multi-dataset/xtts_v2|Ana Florence``). Without ``|speaker`` a
multi-speaker model speaks with its first speaker. Speakers are listed once the model is loaded
(listing them needs the weights).

Models are loaded and run through coqui-tts's public API (``TTS.api.TTS``: ``tts()``,
``speakers``, ``is_multi_lingual``). What it has no API for is done here, kept small, and
tested on the installed version (pyproject.toml pins coqui-tts to the tested range). Mainly:

- speed for VITS-family models: ``Vits.inference`` reads the model attribute ``length_scale``,
  so it is set for one call under the model's lock (XTTS takes ``speed`` per call; other models,
  Tacotron 2 + vocoder..., are time-stretched afterwards with librosa);
- XTTS conditioning from audio in memory: ``Xtts.get_conditioning_latents`` only reads files,
  and a visitor's voice should not be written to disk, so its steps are repeated on the samples
  and ``Xtts.inference`` is called with the settings ``Xtts.synthesize`` uses.

Smaller reads of the library's internals: the model's tokenizer characters (to refuse text it
cannot speak, ``_check_speakable``), ``TTS.utils.synthesizer.PAD_SILENCE_SAMPLES`` (the pause
it adds after each sentence, trimmed), and the synthesizer's ``tts_config`` and
``output_sample_rate``.

Cloning: ``SynthesisOptions.reference`` conditions XTTS directly in memory (no temporary files,
no voice cache on disk). It is experimental (``VoiceInfo.cloning_experimental``) until it has
run on the released weights. The synthesis service gives a reference only to voices for which
``supports_cloning`` is true; called directly, other models refuse one with a message.

Thread safety: a PyTorch model is not safe to call from two threads at once (VITS's speed is a
model attribute, and Coqui's tokenizer keeps state), so each loaded model has its own lock;
different models run in parallel. Coqui's import is slow (about 3 s) so it happens on first
load, never at module import.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from webapp.pipeline.tts.coqui_catalogue import (
    CURATED_MODELS,
    LOCAL_PREFIX,
    XTTS_V2,
    CoquiCatalogue,
    ModelFiles,
    cloning_fields,
)

logger = logging.getLogger(__name__)

__all__ = ["CURATED_MODELS", "LOCAL_PREFIX", "MIN_REFERENCE_S", "SPEAKER_SEP", "XTTS_V2",
           "CoquiEngine", "split_voice", "validate_reference", "xtts_conditioning"]

SPEAKER_SEP = "|"
# XTTS's authors ask for "> 3 seconds" of reference speech; 6-30 s works best.
MIN_REFERENCE_S = 3.0
_REFERENCE_SILENCE_DBFS = -50.0
_LATENT_CACHE_SIZE = 8
# The rate Xtts.get_conditioning_latents loads reference audio at (its load_sr default).
XTTS_REFERENCE_HZ = 22_050


@dataclass
class _Loaded:
    files: ModelFiles
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

    @property
    def config(self) -> Any:
        return self.tts.synthesizer.tts_config


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


def xtts_conditioning(model: Any, config: Any, reference: Audio) -> tuple[Any, Any]:
    """XTTS's (GPT conditioning latent, speaker embedding) for a clip in memory.

    Not public API: the same steps as ``Xtts.get_conditioning_latents`` with the settings
    ``Xtts.synthesize`` passes it, which only reads files (with torchaudio). Checked against it
    on the installed coqui-tts by tests/test_tts_coqui.py."""
    import torch

    wav = torch.from_numpy(reference.resample(XTTS_REFERENCE_HZ).samples.copy()).unsqueeze(0)
    wav = wav[:, : XTTS_REFERENCE_HZ * int(config.max_ref_len)].to(model.device)
    if config.sound_norm_refs:
        wav = (wav / wav.abs().max()) * 0.75
    speaker_embedding = model.get_speaker_embedding(wav, XTTS_REFERENCE_HZ)
    gpt_latent = model.get_gpt_cond_latents(
        wav, XTTS_REFERENCE_HZ, length=config.gpt_cond_len, chunk_length=config.gpt_cond_chunk_len)
    return gpt_latent, speaker_embedding


@contextmanager
def _length_scale(model: Any, speed: float) -> Iterator[None]:
    """Speak ``speed`` times faster for one call of a VITS-family model.

    Not public API: ``Vits.inference`` takes no speed and reads the attribute ``length_scale``
    (coqui-tts 0.28), so it is changed for the call and restored; callers hold the model's lock.
    test_speed_changes_duration_natively checks it on the installed version."""
    saved = model.length_scale
    model.length_scale = float(saved) / speed
    try:
        yield
    finally:
        model.length_scale = saved


class CoquiEngine:
    name = "coqui"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalogue = CoquiCatalogue(settings)
        self._loaded: dict[str, _Loaded] = {}
        self._load_lock = threading.Lock()

    # -- the contract --------------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        out = self.catalogue.voices(self.name)
        seen = {v.id for v in out}
        for voice_id, loaded in list(self._loaded.items()):
            ids = [voice_id] + [f"{voice_id}{SPEAKER_SEP}{s}" for s in loaded.speakers]
            names = [f"Coqui {voice_id}"] + [f"Coqui {voice_id}, speaker {s}" for s in loaded.speakers]
            out += [VoiceInfo(id=i, engine=self.name, description=d, sample_rate_hz=loaded.sample_rate_hz,
                              **cloning_fields(loaded.is_xtts))
                    for i, d in zip(ids, names) if i not in seen]
        return out

    def supports_cloning(self, voice: str) -> bool:
        """Whether ``voice`` is an XTTS (it speaks in the voice of a reference clip)."""
        model_name, _ = split_voice(voice)
        loaded = self._loaded.get(model_name)
        return loaded.is_xtts if loaded is not None else self.catalogue.is_xtts(model_name)

    def model_id(self, voice: str) -> str:
        model_name, _ = split_voice(voice)
        loaded = self._loaded.get(model_name)
        fingerprint = loaded.fingerprint if loaded is not None else self.catalogue.resolve(model_name).fingerprint()
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
                files = self.catalogue.resolve(model_name)
                self._loaded[model_name] = self._instantiate(files)
        return self._loaded[model_name]

    def _instantiate(self, files: ModelFiles) -> _Loaded:
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
        is_xtts = getattr(tts.synthesizer.tts_config, "model", "") == "xtts"
        language = None
        if tts.is_multi_lingual:
            # XTTS declares its languages in its config (it has no language manager).
            names = list(getattr(tts.synthesizer.tts_config, "languages", None) or tts.languages or [])
            language = "en" if "en" in names else (names[0] if names else "en")
        loaded = _Loaded(files, fingerprint, tts, int(tts.synthesizer.output_sample_rate),
                         [str(s) for s in tts.speakers or []], is_xtts, language)
        if not is_xtts:
            # Warm-up: the first forward pass allocates; XTTS warms up on its first request
            # (it needs a speaker, and its warm-up costs seconds).
            self._run(loaded, "Warm up.", speaker=loaded.speakers[0] if loaded.speakers else None, speed=1.0)
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
        native_speed = loaded.is_xtts or isinstance(getattr(loaded.model, "length_scale", None), (int, float))
        with loaded.lock:
            try:
                if reference is not None:
                    samples = self._clone(loaded, text, speed, reference)
                else:
                    if not loaded.is_xtts:
                        self._check_speakable(loaded, text)
                    samples = self._speak(loaded, text, speaker, speed if native_speed else 1.0)
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
        if getattr(loaded.config, "use_phonemes", False) and any(c.isalpha() for c in text):
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
    def _speak(loaded: _Loaded, text: str, speaker: str | None, speed: float) -> np.ndarray:
        """One call of ``TTS.tts`` (a built-in speaker of XTTS too), at ``speed`` when the model
        takes one (else 1.0, and the caller stretches)."""
        if loaded.is_xtts:
            wav = loaded.tts.tts(text, speaker=speaker, language=loaded.language, split_sentences=False,
                                 speed=speed, enable_text_splitting=True)
        elif speed == 1.0 or getattr(loaded.model, "length_scale", None) is None:
            wav = loaded.tts.tts(text, speaker=speaker, language=loaded.language, split_sentences=False)
        else:
            with _length_scale(loaded.model, speed):
                wav = loaded.tts.tts(text, speaker=speaker, language=loaded.language, split_sentences=False)
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

    def _clone(self, loaded: _Loaded, text: str, speed: float, reference: Audio) -> np.ndarray:
        """XTTS in the voice of ``reference``, with the settings ``Xtts.synthesize`` uses."""
        config = loaded.config
        gpt_latent, speaker_embedding = self._latents(loaded, reference)
        out = loaded.model.inference(
            text, loaded.language or "en", gpt_latent, speaker_embedding,
            temperature=config.temperature, length_penalty=config.length_penalty,
            repetition_penalty=config.repetition_penalty, top_k=config.top_k, top_p=config.top_p,
            speed=speed, enable_text_splitting=True,
        )
        wav = out["wav"]
        return wav.cpu().numpy() if hasattr(wav, "cpu") else np.asarray(wav)

    @staticmethod
    def _latents(loaded: _Loaded, reference: Audio) -> tuple[Any, Any]:
        """``xtts_conditioning`` of a clip, remembered for the last few clips (under the lock)."""
        key = hashlib.sha256(reference.samples.tobytes() + str(reference.sample_rate).encode()).hexdigest()
        if key in loaded.latents:
            loaded.latents.move_to_end(key)
            return loaded.latents[key]
        loaded.latents[key] = xtts_conditioning(loaded.model, loaded.config, reference)
        while len(loaded.latents) > _LATENT_CACHE_SIZE:
            loaded.latents.popitem(last=False)
        return loaded.latents[key]
