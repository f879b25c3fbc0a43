"""openai-whisper (PyTorch) adapter.

Beam search (``beam_size=5, best_of=5``) by default: openai-whisper's own default is greedy
with temperature fallback, which varied from run to run here (docs/stack-notes.md); beam search matched
faster-whisper's output exactly. The PyTorch model installs key/value-cache hooks on itself
during a decode, so calls are serialised with a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from webapp.pipeline.audio import Audio
from webapp.pipeline.stt.base import (
    Segment,
    TranscribeOptions,
    WhisperEngineBase,
    Word,
    compression_ratio,
)

logger = logging.getLogger(__name__)


class OpenAIWhisperEngine(WhisperEngineBase):
    name = "openai-whisper"

    def __init__(self, model: str, source: str | Path, *, download_root: Path | None = None,
                 cpu_threads: int = 2) -> None:
        import torch
        import whisper

        self.model = model
        self._lock = threading.Lock()
        torch.set_num_threads(max(1, cpu_threads))
        logger.info("loading openai-whisper %s", model)
        self._model = whisper.load_model(str(source), device="cpu",
                                         download_root=str(download_root) if download_root else None)
        if Path(str(source)).is_file():
            # Our converted checkpoints carry the alignment heads (for word timestamps);
            # official ones get them from whisper._ALIGNMENT_HEADS by name.
            checkpoint = torch.load(str(source), map_location="cpu", weights_only=True, mmap=True)
            heads = checkpoint.get("alignment_heads") if isinstance(checkpoint, dict) else None
            if heads:
                dims = self._model.dims
                mask = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
                for layer, head in heads:
                    mask[int(layer), int(head)] = True
                self._model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
        self.english_only = not self._model.is_multilingual

    def decode(self, audio: Audio, options: TranscribeOptions) -> Iterator[Segment]:
        import whisper

        audio = self._prepared(audio, options)
        temperature = options.temperature
        decode = {"beam_size": options.beam_size, "best_of": options.best_of, "fp16": False,
                  "language": "en" if self.english_only else options.language}
        with self._lock:
            result = whisper.transcribe(
                self._model, audio.samples, verbose=None, temperature=temperature,
                compression_ratio_threshold=options.compression_ratio_threshold,
                logprob_threshold=options.log_prob_threshold,
                no_speech_threshold=options.no_speech_threshold,
                condition_on_previous_text=options.condition_on_previous_text,
                initial_prompt=options.initial_prompt or None,
                word_timestamps=options.word_timestamps, **decode,
            )
        for seg in result["segments"]:
            words = tuple(Word(text=w["word"], start_s=float(w["start"]), end_s=float(w["end"]),
                               probability=float(w.get("probability", 1.0)))
                          for w in seg.get("words", ()))
            yield Segment(text=seg["text"], start_s=float(seg["start"]), end_s=float(seg["end"]),
                          words=words, avg_logprob=float(seg["avg_logprob"]),
                          no_speech_prob=float(seg["no_speech_prob"]),
                          compression_ratio=float(seg.get("compression_ratio")
                                                  or compression_ratio(seg["text"])))
