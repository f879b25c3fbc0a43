"""Acoustic features (issue #4): shapes and hops as documented, pitch on signals whose pitch is
known (a pure tone; real speech of a male and of a synthetic voice), bounded pYIN."""

from __future__ import annotations

import numpy as np
import pytest
from paths import SPEECH  # tests/paths.py

from webapp.pipeline import features as feat
from webapp.pipeline.audio import Audio, load

SR = feat.SAMPLE_RATE_HZ


def _tone(freq_hz: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_mfcc_shapes_and_frame_rates():
    y = _tone(220.0, 2.0)
    design = feat.design_mfcc(y)
    frames = feat.frame_mfcc(y)
    mel = feat.log_mel(y)
    assert design.shape == (40, 1 + len(y) // feat.DESIGN_HOP)
    assert frames.shape == (40, 1 + len(y) // feat.FRAME_HOP)
    assert mel.shape == (feat.FRAME_N_MELS, frames.shape[1])
    # 2 s of audio span 2 s of frames, in both flavours.
    assert (design.shape[1] - 1) * feat.DESIGN_HOP_S == pytest.approx(2.0, abs=feat.DESIGN_HOP_S)
    assert (frames.shape[1] - 1) * feat.FRAME_HOP_S == pytest.approx(2.0, abs=feat.FRAME_HOP_S)
    # The design's MFCCs are librosa's defaults, nothing else.
    import librosa

    np.testing.assert_allclose(design, librosa.feature.mfcc(y=y, sr=SR, n_mfcc=40), rtol=1e-5)
    with pytest.raises(ValueError, match="mono"):
        feat.frame_mfcc(np.zeros((2, 1600), np.float32))


def test_log_mel_puts_a_tone_in_its_band():
    low, high = feat.log_mel(_tone(300.0, 1.0)), feat.log_mel(_tone(3000.0, 1.0))
    assert int(np.argmax(low.mean(axis=1))) < int(np.argmax(high.mean(axis=1)))


@pytest.mark.parametrize("freq_hz", [110.0, 220.0, 400.0])
def test_pyin_finds_a_pure_tone(freq_hz):
    track = feat.f0_pyin(_tone(freq_hz, 1.5))
    voiced = track.f0_hz[np.isfinite(track.f0_hz)]
    assert track.voiced_fraction > 0.8
    cents = 1200 * np.abs(np.log2(voiced / freq_hz))
    assert np.median(cents) < 25  # within a quarter semitone (0.2-semitone bins)
    assert track.hop_s == feat.F0_HOP_S and not track.truncated


def test_pyin_on_real_speech_agrees_with_a_reference_tracker():
    """Our bounded pYIN settings (coarser bins, larger hop) give the same median pitch on a real
    recording as librosa's plain YIN with default settings; silence has no pitch."""
    import librosa

    reader = load(SPEECH / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav",
                  target_hz=SR)
    track = feat.f0_pyin(reader.samples)
    reference_hz = float(np.median(librosa.yin(reader.samples, fmin=60, fmax=500, sr=SR)))
    assert track.median_hz == pytest.approx(reference_hz, rel=0.1)
    assert 0.2 < track.voiced_fraction < 0.9  # speech has unvoiced sounds and pauses
    silent = feat.f0_pyin(np.zeros(SR, np.float32))
    assert silent.median_hz is None and silent.voiced_fraction == 0.0
    short = feat.f0_pyin(np.zeros(100, np.float32))  # shorter than one frame
    assert len(short.f0_hz) == 1 and short.median_hz is None


def test_pyin_is_bounded_on_long_clips():
    y = np.tile(_tone(150.0, 1.0), 3)
    track = feat.f0_pyin(y, max_s=1.0)
    assert track.truncated and track.analysed_s == pytest.approx(1.0)
    assert len(track.f0_hz) == 1 + SR // feat.F0_HOP


def test_trim_silence_keeps_speech_and_short_bursts():
    speech = load(SPEECH / "cards" / "001.wav", target_hz=SR)
    pad = np.zeros(SR, np.float32)
    padded = Audio(np.concatenate([pad, speech.samples, pad]), SR)
    trimmed = feat.trim_silence(padded)
    assert trimmed.duration_s < padded.duration_s - 1.5
    assert trimmed.duration_s > 0.5 * speech.duration_s
    burst = Audio(np.concatenate([pad, _tone(200, 0.1), pad]), SR)
    assert feat.trim_silence(burst, min_s=0.25).duration_s == burst.duration_s
