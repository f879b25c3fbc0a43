"""faster-whisper (CTranslate2) adapter: the offline default, int8 on CPU."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from webapp.pipeline.audio import Audio
from webapp.pipeline.stt.base import (
    Segment,
    TranscribeOptions,
    WhisperEngineBase,
    Word,
)

logger = logging.getLogger(__name__)

_FRAMES_PER_S = 100  # Whisper log-mel hop: 10 ms
_CONTEXT_MARGIN_FRAMES = 100  # 1 s of padding after the audio, as the model is used to


def _fitting_model_class():
    """A WhisperModel whose encoder sees only as much of the 30 s window as holds audio when
    the calling thread asked for it (``_local.frames``, from ``encoder_context_s``). CTranslate2 accepts shorter mel inputs;
    the positional embeddings of the first N frames are unchanged, so the decoder reads the
    same text from a fraction of the encoder work (measured: 0.04 s instead of 0.32 s for
    10 s of context on this CPU, identical text). Thread-local, so sharing one model between
    file transcription and live captions stays safe."""
    from faster_whisper import WhisperModel

    class FittingWhisperModel(WhisperModel):
        _local = threading.local()

        def encode(self, features: np.ndarray):  # type: ignore[override]
            frames = getattr(self._local, "frames", None)
            if frames is not None and features.shape[-1] > frames:
                features = np.ascontiguousarray(features[..., :frames])
            return super().encode(features)

    return FittingWhisperModel


class FasterWhisperEngine(WhisperEngineBase):
    name = "faster-whisper"

    def __init__(self, model: str, source: str | Path, *, compute_type: str = "int8",
                 cpu_threads: int = 2, download_root: Path | None = None,
                 local_files_only: bool = True) -> None:
        self.model = model
        cls = _fitting_model_class()
        logger.info("loading faster-whisper %s (%s)", model, compute_type)
        self._model = cls(
            str(source), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
            download_root=str(download_root) if download_root else None,
            local_files_only=local_files_only,
        )
        self.english_only = not self._model.model.is_multilingual

    def decode(self, audio: Audio, options: TranscribeOptions) -> Iterator[Segment]:
        audio = self._prepared(audio, options)
        local = self._model._local
        language = "en" if self.english_only else options.language
        kwargs = dict(
            language=language, beam_size=options.beam_size, best_of=options.best_of,
            temperature=list(options.temperature), word_timestamps=options.word_timestamps,
            condition_on_previous_text=options.condition_on_previous_text,
            initial_prompt=options.initial_prompt or None, vad_filter=options.vad_filter,
            no_speech_threshold=options.no_speech_threshold,
            log_prob_threshold=options.log_prob_threshold,
            compression_ratio_threshold=options.compression_ratio_threshold,
            max_new_tokens=options.max_new_tokens,
        )
        if options.encoder_context_s is not None:
            frames = int(audio.duration_s * _FRAMES_PER_S) + _CONTEXT_MARGIN_FRAMES
            floor = int(options.encoder_context_s * _FRAMES_PER_S)
            local.frames = min(3000, max(floor, frames))
        try:
            segments, _info = self._model.transcribe(audio.samples, **kwargs)
            for seg in segments:
                yield _segment(seg)
        finally:
            local.frames = None


def _segment(seg) -> Segment:
    words = tuple(
        Word(text=w.word, start_s=float(w.start), end_s=float(w.end),
             probability=float(w.probability))
        for w in (seg.words or ())
    )
    return Segment(text=seg.text, start_s=float(seg.start), end_s=float(seg.end), words=words,
                   avg_logprob=float(seg.avg_logprob), no_speech_prob=float(seg.no_speech_prob),
                   compression_ratio=float(seg.compression_ratio))
