"""Silero VAD speech probabilities, 32 ms at a time (16 kHz).

Runs the Silero VAD v6 ONNX model that ships inside faster-whisper, with ONNX Runtime (no
torch, no download: the Hugging Face Space has no PyTorch, so the ``silero-vad`` package,
which imports torch, cannot be used there).

Why not faster-whisper's public ``SileroVADModel.__call__``: the model is recurrent. It scores
the rows of its input as one sequence, carrying its LSTM state (h, c) from each 512-sample
window (plus the 64 samples before it) to the next, and ``__call__`` starts every call from a
zero state and a zero context. Fed a live stream piece by piece it would therefore not give
the probabilities of the whole stream (measured on a LibriVox clip: restarting the state moves
probabilities by up to 0.4, and re-scoring 1-3 s of history before each piece does not
converge: still 0.4-0.6 off at worst), and calling it on the whole stream every time costs
more with every chunk. So ``StreamingVAD`` carries the state itself and needs the model's
inputs and outputs. Rather than reach into ``SileroVADModel.session`` (undocumented), it opens
its own ONNX Runtime session on the model file, found with faster-whisper's public
``faster_whisper.utils.get_assets_path``, and checks the model's inputs at load, so a
faster-whisper that ships another model fails here with a clear message. The test
``test_streaming_vad_matches_whole_file_vad`` holds it equal to ``__call__`` on a whole clip.
One session is shared by all streams (``InferenceSession.run`` is thread-safe).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from webapp.pipeline.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

VAD_RATE_HZ = 16_000
WINDOW_SAMPLES = 512
WINDOW_S = WINDOW_SAMPLES / VAD_RATE_HZ
_CONTEXT_SAMPLES = 64
_STATE_SHAPE = (1, 1, 128)
MODEL_FILE = "silero_vad_v6.onnx"
"""The model faster-whisper 1.2 ships (1.0 and 1.1 shipped other Silero versions)."""
_MODEL_INPUTS = ("input", "h", "c")


@functools.lru_cache(maxsize=1)
def _session():
    try:
        import onnxruntime
        from faster_whisper.utils import get_assets_path
    except ImportError as exc:  # pragma: no cover - both are core dependencies
        raise ModelUnavailableError("Silero VAD needs faster-whisper and onnxruntime: "
                                    "pip install faster-whisper onnxruntime.") from exc
    path = Path(get_assets_path()) / MODEL_FILE
    if not path.is_file():
        raise ModelUnavailableError(
            f"The installed faster-whisper does not ship {MODEL_FILE} (the Silero VAD model "
            "this app runs): install faster-whisper 1.2 (pip install 'faster-whisper~=1.2').")
    # The same settings as faster-whisper's own session: one thread (a 32 ms window is too
    # little work to share out), no memory arena, quiet logs.
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                           sess_options=opts)
    inputs = tuple(i.name for i in session.get_inputs())
    if inputs != _MODEL_INPUTS:
        raise ModelUnavailableError(
            f"{path} takes inputs {inputs}, not {_MODEL_INPUTS}: not the Silero VAD model "
            "this app was written for. Install faster-whisper 1.2.")
    return session


class StreamingVAD:
    """Speech probability per 32 ms window of a 16 kHz stream fed in pieces of any length.

    The model's recurrent state (h, c) and the last 64 samples carry over between calls, so
    feeding a stream piece by piece gives the same probabilities as scoring it at once. One
    instance per stream; the ONNX session behind it is shared.
    """

    def __init__(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
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
        out, self._h, self._c = _session().run(
            None, {"input": batch, "h": self._h, "c": self._c})
        return np.asarray(out, dtype=np.float32).reshape(-1)[:n]


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """One speech probability per whole 512-sample window of 16 kHz ``samples``."""
    return StreamingVAD().feed(samples)
