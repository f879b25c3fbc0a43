"""Silero VAD speech probabilities, 32 ms at a time (16 kHz).

Uses the Silero VAD v6 ONNX model that ships inside faster-whisper (no torch, no download).
faster-whisper's ``SileroVADModel`` scores every 512-sample window independently given the 64
samples before it, so probabilities can be computed incrementally on new audio only, and one
loaded model is safely shared by all sessions (ONNX Runtime sessions are thread-safe).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from webapp.pipeline.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

VAD_RATE_HZ = 16_000
WINDOW_SAMPLES = 512
WINDOW_S = WINDOW_SAMPLES / VAD_RATE_HZ
_CONTEXT_SAMPLES = 64


@functools.lru_cache(maxsize=1)
def _model():
    try:
        from faster_whisper.vad import get_vad_model
    except ImportError as exc:  # pragma: no cover - faster-whisper is a core dependency
        raise ModelUnavailableError("Silero VAD needs faster-whisper and onnxruntime: "
                                    "pip install faster-whisper onnxruntime.") from exc
    return get_vad_model()


class StreamingVAD:
    """Speech probability per 32 ms window of a 16 kHz stream fed in pieces of any length.

    The model's recurrent state (h, c) and the last 64 samples carry over between calls, so
    feeding a stream piece by piece gives the same probabilities as scoring it at once. One
    instance per stream; the ONNX session behind it is shared.
    """

    def __init__(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities for every window completed by ``samples`` (a partial window waits)."""
        audio = np.concatenate([self._rest, np.asarray(samples, dtype=np.float32)])
        n = len(audio) // WINDOW_SAMPLES
        self._rest = audio[n * WINDOW_SAMPLES:]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        windows = audio[: n * WINDOW_SAMPLES].reshape(n, WINDOW_SAMPLES)
        before = np.empty((n, _CONTEXT_SAMPLES), dtype=np.float32)
        before[0] = self._context
        before[1:] = windows[:-1, -_CONTEXT_SAMPLES:]
        self._context = windows[-1, -_CONTEXT_SAMPLES:].copy()
        batch = np.ascontiguousarray(np.concatenate([before, windows], axis=1))
        out, self._h, self._c = _model().session.run(
            None, {"input": batch, "h": self._h, "c": self._c})
        return np.asarray(out, dtype=np.float32).reshape(-1)[:n]


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """One speech probability per whole 512-sample window of 16 kHz ``samples``."""
    return StreamingVAD().feed(samples)
