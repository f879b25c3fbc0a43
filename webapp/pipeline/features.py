"""Acoustic features for evaluation (issue #4): MFCCs, log-mel spectrogram, F0. librosa does
the signal processing; this module only fixes the settings, in one place, and bounds the cost.

Every function takes float32 mono samples at ``SAMPLE_RATE_HZ`` (bring an ``Audio`` there with
``Audio.resample``) and returns ``(n_features, n_frames)`` arrays, time on the last axis, as
librosa does. Frame times are ``frame_index * <hop>_S``.

Two MFCC flavours, on purpose:

* ``design_mfcc``: the design's metric exactly, ``librosa.feature.mfcc(y, sr=16000, n_mfcc=40)``
  with librosa's defaults (2048-sample windows, 512-sample hop, 128 mels), so the number we
  report can be compared with the article that defined it;
* ``frame_mfcc``: the speech-processing convention (25 ms windows every 10 ms, 40 mels,
  20-7600 Hz) behind the frame-wise measures (DTW similarity, mel cepstral distortion).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from webapp.pipeline.audio import Audio

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
"""The common rate every comparison runs at (the design's "common sample rate")."""

N_MFCC = 40

# The design's MFCCs: librosa defaults.
DESIGN_HOP = 512
DESIGN_HOP_S = DESIGN_HOP / SAMPLE_RATE_HZ

# Frame-wise analysis: 25 ms windows every 10 ms.
FRAME_N_FFT = 512
FRAME_WIN = 400
FRAME_HOP = 160
FRAME_HOP_S = FRAME_HOP / SAMPLE_RATE_HZ
FRAME_N_MELS = 40
FRAME_FMIN_HZ = 20.0
FRAME_FMAX_HZ = 7600.0

# Pitch: 64 ms windows every 20 ms (two MFCC frames), the speech range 60-500 Hz. pYIN is by
# far the slowest feature (its Viterbi decoding over pitch states), so its resolution is coarser
# than librosa's default (0.2 instead of 0.1 semitone bins, 50 thresholds instead of 100) and at
# most MAX_F0_S seconds are analysed: ~130 ms for a 10 s clip here instead of ~1 s.
F0_FRAME = 1024
F0_HOP = 320
F0_HOP_S = F0_HOP / SAMPLE_RATE_HZ
F0_MIN_HZ = 60.0
F0_MAX_HZ = 500.0
MAX_F0_S = 30.0

TRIM_TOP_DB = 40.0


def _mono(samples: np.ndarray) -> np.ndarray:
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"features expect mono 1-D samples, got shape {arr.shape}")
    return arr


def design_mfcc(samples: np.ndarray) -> np.ndarray:
    """The design's features: ``librosa.feature.mfcc(y, sr=16000, n_mfcc=40)``, defaults kept.
    Shape ``(40, frames)``, one frame every ``DESIGN_HOP_S``."""
    import librosa

    return librosa.feature.mfcc(y=_mono(samples), sr=SAMPLE_RATE_HZ, n_mfcc=N_MFCC)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Log-mel power spectrogram in dB (25 ms / 10 ms frames, 40 mels), ``(40, frames)``: the
    representation ``frame_mfcc`` is the DCT of."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=_mono(samples), sr=SAMPLE_RATE_HZ, n_fft=FRAME_N_FFT, win_length=FRAME_WIN,
        hop_length=FRAME_HOP, n_mels=FRAME_N_MELS, fmin=FRAME_FMIN_HZ, fmax=FRAME_FMAX_HZ)
    return librosa.power_to_db(mel)


def frame_mfcc(samples: np.ndarray) -> np.ndarray:
    """40 MFCCs on 25 ms / 10 ms frames, ``(40, frames)``, one frame every ``FRAME_HOP_S``."""
    import librosa

    return librosa.feature.mfcc(
        y=_mono(samples), sr=SAMPLE_RATE_HZ, n_mfcc=N_MFCC, n_fft=FRAME_N_FFT,
        win_length=FRAME_WIN, hop_length=FRAME_HOP, n_mels=FRAME_N_MELS, fmin=FRAME_FMIN_HZ,
        fmax=FRAME_FMAX_HZ)


@dataclass(frozen=True)
class F0Track:
    """Pitch per frame in Hz, NaN where unvoiced; frame ``i`` is at ``i * hop_s`` seconds."""

    f0_hz: np.ndarray
    hop_s: float = F0_HOP_S
    analysed_s: float = 0.0
    """How much of the clip was analysed (at most ``MAX_F0_S``)."""
    truncated: bool = False

    @property
    def voiced_fraction(self) -> float:
        return float(np.mean(np.isfinite(self.f0_hz))) if len(self.f0_hz) else 0.0

    @property
    def median_hz(self) -> float | None:
        voiced = self.f0_hz[np.isfinite(self.f0_hz)]
        return float(np.median(voiced)) if len(voiced) else None


def f0_pyin(samples: np.ndarray, *, max_s: float = MAX_F0_S) -> F0Track:
    """pYIN F0 (librosa.pyin) on at most ``max_s`` seconds: time stays bounded for long clips."""
    import librosa

    y = _mono(samples)
    limit = int(max_s * SAMPLE_RATE_HZ)
    truncated = len(y) > limit
    y = y[:limit]
    if len(y) < F0_FRAME:
        return F0Track(np.full(1, np.nan), analysed_s=len(y) / SAMPLE_RATE_HZ)
    f0, voiced, _ = librosa.pyin(y, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=SAMPLE_RATE_HZ,
                                 frame_length=F0_FRAME, hop_length=F0_HOP, center=True,
                                 resolution=0.2, n_thresholds=50)
    return F0Track(np.where(voiced, f0, np.nan), analysed_s=len(y) / SAMPLE_RATE_HZ,
                   truncated=truncated)


def trim_silence(audio: Audio, *, min_s: float = 0.25) -> Audio:
    """Leading and trailing silence removed (``top_db=40`` below the peak). A clip that would
    become shorter than ``min_s`` (a short burst) keeps its original samples."""
    trimmed = audio.trim(top_db=TRIM_TOP_DB)
    return trimmed if trimmed.duration_s >= min_s else audio
