"""Loudness normalisation (issue 12) on real speech: the bundled Piper voice and a human
recording, quiet and far too loud, to -16 and -23 LUFS, checked on the encoded file decoded
back, with pyloudnorm for loudness and an independent 8x oversampled peak for true peak."""

from __future__ import annotations

import math
import re
from dataclasses import asdict

import numpy as np
import pyloudnorm
import pytest
from paths import SPEECH  # tests/paths.py
from scipy.signal import resample_poly

from webapp.config import Settings
from webapp.pipeline.audio import Audio, encode, load
from webapp.pipeline.errors import InputError
from webapp.pipeline.lesson import loudness
from webapp.pipeline.lesson.loudness import (
    CEILING_DBTP,
    DEFAULT_TARGET,
    TARGETS,
    LoudnessReport,
    measure,
    normalize,
)
from webapp.pipeline.tts.base import SynthesisOptions
from webapp.pipeline.tts.registry import TTSRegistry

VOICE = "en_US-joe-medium"
LESSON = ("Photosynthesis turns light into chemical energy. Plants store it as sugar. "
          "Animals eat the plants, and the energy moves up the food chain. "
          "Water boils at one hundred degrees Celsius at sea level.")


@pytest.fixture(scope="module")
def piper(tmp_path_factory) -> Audio:
    registry = TTSRegistry(Settings(data_dir=tmp_path_factory.mktemp("loudness")))
    engine = registry.get("piper")
    engine.load(VOICE)
    return Audio.concat(list(engine.synthesize(LESSON, SynthesisOptions(voice=VOICE))))


@pytest.fixture(scope="module")
def recorded() -> Audio:
    """A human reader (LibriVox, 16 kHz), 25 s."""
    return Audio.concat([load(p) for p in sorted((SPEECH / "librivox").glob("*.wav"))])


@pytest.fixture(params=["piper", "recorded"])
def speech(request) -> Audio:
    return request.getfixturevalue(request.param)


def reference_lufs(audio: Audio) -> float:
    return float(pyloudnorm.Meter(audio.sample_rate).integrated_loudness(
        audio.samples.astype(np.float64)))


def reference_peak_dbtp(audio: Audio) -> float:
    """8x oversampling with scipy's own filter: finer than the 4x the code under test uses."""
    up = resample_poly(audio.samples.astype(np.float64), 8, 1)
    return 20 * math.log10(max(float(np.abs(up).max()), float(np.abs(audio.samples).max())))


def _quiet(audio: Audio) -> Audio:
    return Audio(audio.samples * 0.02, audio.sample_rate)


def _loud(audio: Audio) -> Audio:
    """Peaks at +12 dBFS: far over full scale, as an engine's float output can be."""
    return Audio(audio.samples * (4.0 / audio.peak), audio.sample_rate)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
@pytest.mark.parametrize("target", [-16.0, -23.0])
@pytest.mark.parametrize("level", [_quiet, _loud], ids=["quiet", "loud"])
def test_the_encoded_file_meets_the_target_and_the_ceiling(speech, level, target, fmt):
    source = level(speech)
    out, report = normalize(source, target, fmt=fmt)
    decoded = load(encode(out, fmt))

    assert reference_lufs(decoded) == pytest.approx(target, abs=0.5)
    assert reference_peak_dbtp(decoded) <= CEILING_DBTP
    # Both voices have 20 dB between peak and loudness: -16 LUFS under -1.5 dBTP needs the
    # limiter, -23 LUFS does not. Whatever the input level.
    assert report.limited is (target == -16.0)
    assert report.reduction_db > 1.0 if report.limited else report.reduction_db == 0.0
    # The report describes the file that is served.
    assert report.output_lufs == pytest.approx(reference_lufs(decoded), abs=0.05)
    assert report.true_peak_dbtp <= CEILING_DBTP
    assert report.input_lufs == pytest.approx(reference_lufs(source), abs=0.05)
    assert report.target_lufs == target


def test_for_mp3_the_decoded_file_is_held_under_the_ceiling_not_only_the_pcm(piper):
    """Why ``normalize`` takes the format: LAME adds up to a decibel to limited speech peaks.
    Measured over 8 renderings of this lesson (Piper's noise makes each one different): PCM
    limited to the ceiling decoded from MP3 at -1.63 to -0.50 dBTP, over the ceiling in 7 of
    8; normalised with ``fmt="mp3"``, the decoded files stayed at -1.51 to -1.72 dBTP."""
    source = _loud(piper)
    pcm, _ = normalize(source, -16.0)
    assert reference_peak_dbtp(load(encode(pcm, "wav"))) <= CEILING_DBTP
    naive = reference_peak_dbtp(load(encode(pcm, "mp3")))
    aware, report = normalize(source, -16.0, fmt="mp3")
    decoded = load(encode(aware, "mp3"))
    assert reference_peak_dbtp(decoded) <= CEILING_DBTP
    if naive > CEILING_DBTP:  # the encoder pushed the PCM's peaks over: the check pulled them in
        assert reference_peak_dbtp(decoded) < naive
    assert reference_lufs(decoded) == pytest.approx(-16.0, abs=0.5)


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "wav"])
def test_normalize_and_encode_hands_over_the_file_it_checked(piper, fmt):
    out, data, report = loudness.normalize_and_encode(_loud(piper), fmt, -16.0)
    decoded = load(data)
    assert np.array_equal(decoded.samples, load(encode(out, fmt)).samples)
    assert reference_peak_dbtp(decoded) <= CEILING_DBTP
    assert reference_lufs(decoded) == pytest.approx(-16.0, abs=0.5)
    assert report.output_lufs == pytest.approx(reference_lufs(decoded), abs=0.05)
    silent, data, report = loudness.normalize_and_encode(Audio.silence(1.0, 22050), fmt)
    assert load(data).is_silent() and report.gain_db == 0.0


def test_ogg_vorbis_is_held_under_the_ceiling_too(piper):
    out, report = normalize(_quiet(piper), -16.0, fmt="ogg")
    decoded = load(encode(out, "ogg"))
    assert reference_peak_dbtp(decoded) <= CEILING_DBTP
    assert reference_lufs(decoded) == pytest.approx(-16.0, abs=0.5)
    assert report.true_peak_dbtp <= CEILING_DBTP


def test_the_limiter_rides_the_gain_instead_of_clipping(piper):
    """A clipper would flatten each peak (the gain jumps from sample to sample); the limiter's
    gain moves in ramps of at least a few milliseconds and is back to 1 between peaks."""
    source = _loud(piper)
    out, report = normalize(source, -16.0)
    assert report.limited
    driven = source.samples.astype(np.float64) * 10 ** (report.gain_db / 20)
    audible = np.abs(driven) > 0.05
    gain = out.samples[audible] / driven[audible]
    assert np.all(gain <= 1.0 + 1e-4) and np.all(gain > 0)
    index = np.flatnonzero(audible)
    neighbours = np.diff(index) == 1
    steps = np.abs(np.diff(gain))[neighbours]
    assert steps.max() < 0.01  # a clipper here: steps of 0.3 and more
    assert np.mean(gain > 0.99) > 0.4  # untouched between the peaks
    assert np.abs(out.samples).max() < 10 ** (CEILING_DBTP / 20)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_offered_targets_are_accepted_and_the_default_is_one(piper, target):
    assert DEFAULT_TARGET in TARGETS
    out, report = normalize(piper, target)
    assert measure(out).integrated_lufs == pytest.approx(target, abs=0.5)


@pytest.mark.parametrize("target", [-41.0, -4.9, 0.0, float("nan"), float("-inf"), "loud"])
def test_targets_outside_the_usable_range_are_refused(piper, target):
    with pytest.raises(InputError, match="LUFS"):
        normalize(piper, target)
    with pytest.raises(InputError, match="LUFS"):
        loudness.check_target(target)


def test_a_ceiling_outside_the_usable_range_is_refused(piper):
    with pytest.raises(InputError, match="dBTP"):
        normalize(piper, -16.0, ceiling_dbtp=3.0)


@pytest.mark.parametrize("audio", [Audio.silence(3.0, 22050), Audio.silence(0.1, 22050),
                                   Audio(np.zeros(0, dtype=np.float32), 22050),
                                   # under the -70 LUFS absolute gate: no +70 dB on noise
                                   Audio((1e-5 * np.random.default_rng(1).standard_normal(44100))
                                         .astype(np.float32), 22050)],
                         ids=["silence", "short-silence", "empty", "below-the-gate"])
def test_silence_is_left_alone_and_reported_clearly(audio):
    out, report = normalize(audio, -16.0)
    assert np.array_equal(out.samples, audio.samples)
    assert report.gain_db == 0.0 and not report.limited
    assert report.input_lufs == report.output_lufs == -math.inf
    values = [v for v in asdict(report).values() if isinstance(v, float)]
    assert not any(math.isnan(v) for v in values)
    assert report.summary().startswith("Silent")
    assert measure(audio).silent


def test_a_clip_shorter_than_a_block_is_measured_and_normalised(piper):
    clip = Audio(piper.samples[int(1.2 * piper.sample_rate):int(1.4 * piper.sample_rate)],
                 piper.sample_rate)
    assert clip.duration_s == pytest.approx(0.2, abs=0.001)
    m = measure(clip)
    assert math.isfinite(m.integrated_lufs) and not m.gated
    out, report = normalize(clip, -16.0)
    assert measure(out).integrated_lufs == pytest.approx(-16.0, abs=0.5)
    assert math.isfinite(report.output_lufs) and report.true_peak_dbtp <= CEILING_DBTP
    assert "0.4 s" in report.summary()


def test_a_short_clip_reads_as_loud_as_the_same_sound_held_longer():
    """Padding 0.2 s to the 0.4 s block with silence, uncorrected, would read 3 dB low."""
    rate = 22050
    t = np.arange(2 * rate) / rate
    tone = (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    long = measure(Audio(tone, rate))
    short = measure(Audio(tone[: rate // 5], rate))
    assert long.gated and not short.gated
    assert short.integrated_lufs == pytest.approx(long.integrated_lufs, abs=0.1)
    assert long.integrated_lufs == pytest.approx(reference_lufs(Audio(tone, rate)), abs=0.01)


def test_true_peak_sees_the_peaks_between_samples():
    """A sine at a quarter of the rate, sampled 45 degrees off its crests: every sample is at
    0.707 (-3 dBFS), the waveform between them reaches 1.0 (0 dBTP). Faded in and out over
    0.1 s: a sine that starts at full level really does overshoot at its start."""
    n = np.arange(22050)
    fade = np.minimum(1.0, np.minimum(n, n[::-1]) / 2205)
    x = (np.sin(np.pi / 2 * n + np.pi / 4) * fade).astype(np.float32)
    m = measure(Audio(x, 22050))
    assert 20 * math.log10(np.abs(x).max()) == pytest.approx(-3.01, abs=0.01)
    assert m.true_peak_dbtp == pytest.approx(0.0, abs=0.05)


def test_true_peak_agrees_with_a_finer_reference(recorded):
    assert measure(recorded).true_peak_dbtp == pytest.approx(reference_peak_dbtp(recorded),
                                                             abs=0.05)


def test_summary_is_one_line_for_the_page(piper):
    _, report = normalize(_loud(piper), -16.0)
    line = report.summary()
    assert "\n" not in line
    assert re.fullmatch(r"−16\.\d LUFS, true peak −\d+\.\d dBTP, "
                        r"loudest peaks softened by up to \d+\.\d dB", line), line
    _, report = normalize(_quiet(piper), -23.0)
    assert re.fullmatch(r"−23\.\d LUFS, true peak −\d+\.\d dBTP",
                        report.summary()), report.summary()


def test_report_survives_a_round_trip_through_a_dict(piper):
    """The synthesizer caches it as ``asdict`` and rebuilds it with ``LoudnessReport(**d)``."""
    _, report = normalize(piper, -16.0)
    assert LoudnessReport(**asdict(report)) == report


def test_voice_gain_brings_a_first_sentence_to_the_target(piper):
    first = Audio(piper.samples[: int(2.5 * piper.sample_rate)], piper.sample_rate)
    gain = loudness.voice_gain(first, -23.0)
    assert measure(loudness.apply_gain(first, gain)).integrated_lufs == pytest.approx(-23.0,
                                                                                      abs=0.01)
    assert loudness.voice_gain(Audio.silence(1.0, 22050), -23.0) == 0.0
