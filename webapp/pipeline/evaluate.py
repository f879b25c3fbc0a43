"""Objective speech quality: metrics -> report dataclasses (issue #4). No gradio, no plotly.

Two families:

* **Audio comparison** (``compare``): a reference recording against a candidate (usually
  synthesised) clip. The design's own metric is kept exactly as specified -- 40 librosa MFCCs
  at 16 kHz, mean over time per coefficient, cosine of the two mean vectors,
  ``production_ready`` when > 0.85 -- and reported as is so users can compare with the article.
  That mean-vector cosine is a weak proxy (almost any two speech clips score > 0.9, because the
  large c0/c1 terms dominate the vector), so stronger companions come alongside:

  - DTW-aligned frame-wise MFCC cosine (c1..c39, cepstral-mean normalised): how similar the
    clips are *moment by moment* once timing differences are aligned away;
  - mel cepstral distortion (MCD, dB) along the same DTW path, c1..c24, the usual TTS measure
    (Kubichek 1993; lower is better);
  - log-F0 correlation and RMSE (cents) on frames voiced in both (librosa.pyin), i.e. intonation;
  - duration ratio (candidate / reference, after trimming leading/trailing silence);
  - optionally a round trip: transcribe the candidate and score WER/CER against the text
    (intelligibility).

* **Text comparison** (``score_text``): WER, CER, substitutions / insertions / deletions of a
  hypothesis against a reference, with an optional normaliser (Whisper's English normaliser).

Every metric becomes a ``MetricResult`` with pass/fail against ``Thresholds``. The features
themselves (MFCC, F0) come from ``webapp.pipeline.features``; batches of rows from a CSV
manifest are in ``webapp.pipeline.manifest``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import AudioError, InputError
from webapp.pipeline.features import (
    DESIGN_HOP_S,
    F0_HOP_S,
    FRAME_HOP_S,
    FRAME_N_MELS,
    MAX_F0_S,
    SAMPLE_RATE_HZ,
    design_mfcc,
    f0_pyin,
    frame_mfcc,
    trim_silence,
)

logger = logging.getLogger(__name__)

MAX_CLIP_S = 600.0
"""Longer clips are refused with a clear message (10 minutes)."""

MIN_CLIP_S = 0.25
"""Shorter clips hold too few frames for any of the measures."""

MAX_DTW_FRAMES = 3000
"""DTW is quadratic; past 30 s at a 10 ms hop, frames are averaged in groups to stay bounded."""

SILENCE_DBFS = -60.0

_MCD_ORDER = 24
_K_MCD = 10.0 / np.log(10.0) * np.sqrt(2.0)
# librosa MFCCs are orthonormal DCTs of 10*log10(mel power). The MCD formula expects true
# cepstra of ln|X| (log|X(w)| = c0 + 2 sum c_n cos(n w)): that is the dB value times ln(10)/20,
# divided by sqrt(2 * n_mels) to undo the orthonormal DCT scaling. Without this, MCD comes out
# ~9x too large and cannot be compared with published figures (4-8 dB for TTS).
_MFCC_TO_CEPSTRUM = np.log(10.0) / 20.0 / np.sqrt(2.0 * FRAME_N_MELS)

Normalizer = Literal["none", "basic", "whisper"]
NORMALIZERS: tuple[str, ...] = ("basic", "whisper", "none")


# ---------------------------------------------------------------------------- report types


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail limits. ``None`` disables a check (the value is still reported).

    Defaults come from the calibration in tests/test_evaluate.py on tests/data/speech: the same
    recording scores ~1.0 / 0 dB; the same sentence read by Piper or time-stretched stays above
    ``min_dtw_similarity`` and below ``max_mcd_db``; a different sentence or noise does not.
    """

    min_mfcc_similarity: float | None = 0.85
    min_dtw_similarity: float | None = 0.55
    max_mcd_db: float | None = 6.0
    min_f0_correlation: float | None = None
    max_f0_rmse_cents: float | None = None
    min_duration_ratio: float | None = 0.5
    max_duration_ratio: float | None = 2.0
    max_wer: float | None = 0.2
    max_cer: float | None = None


@dataclass(frozen=True)
class MetricResult:
    key: str
    label: str
    value: float | None
    unit: str = ""
    threshold: float | None = None
    higher_is_better: bool = True
    passed: bool | None = None
    """``None`` when there is no threshold or no value (not evaluated)."""
    explanation: str = ""
    strict: bool = False
    upper: float | None = None
    """Upper bound of a two-sided check (duration ratio)."""

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "-"}[self.passed]

    @property
    def threshold_label(self) -> str:
        """What passes, as text: "> 0.85", "<= 6", "0.5 to 2", or "-" (not checked)."""
        low, high = self.threshold, self.upper
        if self.higher_is_better and low is not None and high is not None:
            return f"{low:g} to {high:g}"
        if self.higher_is_better and high is not None:
            return f"<= {high:g}"
        if low is None:
            return "-"
        if self.higher_is_better:
            return f"{'>' if self.strict else '>='} {low:g}"
        return f"{'<' if self.strict else '<='} {low:g}"


@dataclass(frozen=True)
class AlignedWord:
    op: Literal["equal", "substitute", "insert", "delete"]
    ref: str
    hyp: str


@dataclass(frozen=True)
class TextReport:
    reference: str
    hypothesis: str
    normalizer: str
    wer: float
    cer: float
    hits: int
    substitutions: int
    insertions: int
    deletions: int
    ref_words: int
    alignment: tuple[AlignedWord, ...] = ()


@dataclass(frozen=True)
class FeatureArrays:
    """Arrays behind the report, for plots. The design's MFCCs (and their means) cover the whole
    clips; the DTW path and the F0 tracks start where the speech starts (silence at the ends
    trimmed), so their times are seconds from there."""

    mfcc_ref: np.ndarray
    mfcc_cand: np.ndarray
    mfcc_hop_s: float
    mean_ref: np.ndarray
    mean_cand: np.ndarray
    path: np.ndarray
    """DTW path, (n, 2) pairs of (reference frame, candidate frame), in time order."""
    path_similarity: np.ndarray
    dtw_hop_s: float
    f0_ref: np.ndarray
    f0_cand: np.ndarray
    f0_hop_s: float


@dataclass(frozen=True)
class QualityReport:
    metrics: tuple[MetricResult, ...]
    reference_s: float
    candidate_s: float
    features: FeatureArrays | None = None
    text: TextReport | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    compute_s: float = 0.0
    notes: tuple[str, ...] = ()

    def metric(self, key: str) -> MetricResult:
        for m in self.metrics:
            if m.key == key:
                return m
        raise KeyError(key)

    def value(self, key: str) -> float | None:
        return self.metric(key).value

    @property
    def mfcc_similarity(self) -> float:
        return float(self.value("mfcc_similarity"))

    @property
    def production_ready(self) -> bool:
        """The design's verdict, exactly: mean-vector MFCC cosine > 0.85."""
        return self.mfcc_similarity > 0.85

    @property
    def passed(self) -> bool:
        """True when no checked metric failed."""
        return all(m.passed is not False for m in self.metrics)

    @property
    def failures(self) -> list[MetricResult]:
        return [m for m in self.metrics if m.passed is False]

    def to_dict(self) -> dict:
        out: dict = {
            "passed": self.passed,
            "production_ready": self.production_ready,
            "reference_s": round(self.reference_s, 3),
            "candidate_s": round(self.candidate_s, 3),
            "compute_s": round(self.compute_s, 3),
            "metrics": {m.key: _round(m.value) for m in self.metrics},
            "checks": {m.key: {"threshold": m.threshold, "passed": m.passed}
                       for m in self.metrics if m.passed is not None},
            "notes": list(self.notes),
        }
        if self.text is not None:
            t = self.text
            out["text"] = {"reference": t.reference, "hypothesis": t.hypothesis,
                           "normalizer": t.normalizer, "wer": _round(t.wer), "cer": _round(t.cer),
                           "substitutions": t.substitutions, "insertions": t.insertions,
                           "deletions": t.deletions, "hits": t.hits}
        return out


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


EXPLANATIONS = {
    "mfcc_similarity": "The design's score: do the two clips have the same average timbre? "
                       "Almost all speech scores above 0.9, so it cannot tell sentences apart.",
    "dtw_similarity": "Moment-by-moment likeness of the sounds after lining the two clips up in "
                      "time (1 = identical). The most telling single number.",
    "mcd_db": "Mel cepstral distortion: how far apart the spectra are, in dB, after alignment. "
              "0 = identical; good TTS against its own speaker is 4-6 dB.",
    "f0_correlation": "Does the melody (pitch going up and down) follow the reference? "
                      "1 = same shape; near 0 = unrelated intonation.",
    "f0_rmse_cents": "Average pitch distance in cents (100 cents = one semitone). A different "
                     "speaker (e.g. male vs female) is naturally hundreds of cents away.",
    "duration_ratio": "Candidate length / reference length without the silences at the ends "
                      "(1 = same pace; 1.5 = half again as slow).",
    "wer": "Word error rate of the speech recogniser on the candidate against the text: the "
           "share of words it got wrong (0 = every word understood).",
    "cer": "Character error rate: like WER, but per letter, kinder to small slips.",
}


def _check(key: str, label: str, value: float | None, unit: str, threshold: float | None,
           higher_is_better: bool, *, strict: bool = False,
           upper: float | None = None) -> MetricResult:
    """``threshold`` is the lower bound when ``higher_is_better`` (``upper`` an optional upper
    bound for two-sided checks), else the upper bound."""
    passed: bool | None = None
    if value is not None and (threshold is not None or upper is not None):
        if not np.isfinite(value):
            passed = False  # NaN/inf with a threshold set: cannot vouch for it
        elif higher_is_better:
            low_ok = threshold is None or (value > threshold if strict else value >= threshold)
            passed = bool(low_ok and (upper is None or value <= upper))
        else:
            passed = bool(value < threshold if strict else value <= threshold)
    return MetricResult(key=key, label=label, value=value, unit=unit, threshold=threshold,
                        higher_is_better=higher_is_better, passed=passed,
                        explanation=EXPLANATIONS.get(key, ""), strict=strict, upper=upper)


# ---------------------------------------------------------------------------- audio features


def prepare(audio: Audio, role: str = "clip") -> Audio:
    """Validate and bring a clip to the common rate. Raises ``AudioError`` for bad input."""
    if not isinstance(audio, Audio):
        raise InputError(f"The {role} must be audio, got {type(audio).__name__}.")
    if not len(audio.samples):
        raise AudioError(f"The {role} contains no audio samples.")
    if audio.duration_s > MAX_CLIP_S:
        raise AudioError(
            f"The {role} is {audio.duration_s / 60:.1f} minutes long; evaluation is limited to "
            f"{MAX_CLIP_S / 60:.0f} minutes per clip. Cut it into sentences or paragraphs.")
    if audio.duration_s < MIN_CLIP_S:
        raise AudioError(
            f"The {role} is only {audio.duration_s * 1000:.0f} ms long; at least "
            f"{MIN_CLIP_S:g} s of speech is needed for a comparison.")
    if audio.is_silent(SILENCE_DBFS):
        raise AudioError(
            f"The {role} is silent (below {SILENCE_DBFS:.0f} dBFS): there is no speech to "
            "compare. Check the recording or the microphone.")
    return audio.resample(SAMPLE_RATE_HZ)


def mfcc_similarity(reference: Audio, candidate: Audio) -> float:
    """The design's metric exactly: cosine of the per-coefficient time means of 40 MFCCs."""
    ref = prepare(reference, "reference")
    cand = prepare(candidate, "candidate")
    return _cosine(design_mfcc(ref.samples).mean(axis=1), design_mfcc(cand.samples).mean(axis=1))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def _pool(frames: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return frames
    n = frames.shape[1] // factor * factor
    if n == 0:
        return frames.mean(axis=1, keepdims=True)
    return frames[:, :n].reshape(frames.shape[0], -1, factor).mean(axis=2)


@dataclass(frozen=True)
class _Aligned:
    path: np.ndarray
    similarity: np.ndarray
    mcd_frames: np.ndarray
    factor: int


def _align(ref_mfcc: np.ndarray, cand_mfcc: np.ndarray) -> _Aligned:
    import librosa

    longest = max(ref_mfcc.shape[1], cand_mfcc.shape[1])
    factor = int(np.ceil(longest / MAX_DTW_FRAMES))
    a = _pool(ref_mfcc, factor)
    b = _pool(cand_mfcc, factor)
    # c0 is loudness: leave it out, so a quieter take of the same speech still matches.
    # Cepstral mean normalisation removes the fixed channel/microphone colouring, so the cosine
    # measures what is said and how, not the room.
    a_shape = a[1:] - a[1:].mean(axis=1, keepdims=True)
    b_shape = b[1:] - b[1:].mean(axis=1, keepdims=True)
    from scipy.spatial.distance import cdist

    # Our own cost matrix: an all-zero frame makes the cosine undefined (NaN), which librosa
    # rejects; treat it as "unrelated" (distance 1) instead.
    cost = np.nan_to_num(cdist(a_shape.T, b_shape.T, metric="cosine"), nan=1.0)
    _, wp = librosa.sequence.dtw(C=cost, backtrack=True)
    path = np.ascontiguousarray(wp[::-1])
    ai, bi = path[:, 0], path[:, 1]
    num = np.einsum("ij,ij->j", a_shape[:, ai], b_shape[:, bi])
    den = np.linalg.norm(a_shape[:, ai], axis=0) * np.linalg.norm(b_shape[:, bi], axis=0)
    sim = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    # MCD on the same path, c1..c24, converted to cepstra of the natural-log amplitude.
    diff = (a[1:_MCD_ORDER + 1, ai] - b[1:_MCD_ORDER + 1, bi]) * _MFCC_TO_CEPSTRUM
    mcd = _K_MCD * np.sqrt(np.sum(diff * diff, axis=0))
    return _Aligned(path=path, similarity=sim, mcd_frames=mcd, factor=factor)


def _f0_stats(f0_ref: np.ndarray, f0_cand: np.ndarray, path: np.ndarray,
              frames_per_f0: float) -> tuple[float | None, float | None, int]:
    """Log-F0 correlation and RMSE (cents) over DTW-path pairs voiced in both clips."""
    ri = (path[:, 0] / frames_per_f0).astype(int)
    ci = (path[:, 1] / frames_per_f0).astype(int)
    # Pitch covers at most MAX_F0_S of each clip: path pairs past either end are left out.
    inside = (ri < len(f0_ref)) & (ci < len(f0_cand))
    a, b = f0_ref[ri[inside]], f0_cand[ci[inside]]
    both = np.isfinite(a) & np.isfinite(b)
    n = int(both.sum())
    if n < 5:
        return None, None, n
    la, lb = np.log2(a[both]), np.log2(b[both])
    rmse = float(1200.0 * np.sqrt(np.mean((la - lb) ** 2)))
    if np.std(la) < 1e-9 or np.std(lb) < 1e-9:
        return None, rmse, n
    return float(np.corrcoef(la, lb)[0, 1]), rmse, n


# ---------------------------------------------------------------------------- text metrics


_BASIC_PUNCT = re.compile(r"[^\w\s']|_")


def normalize_text(text: str, normalizer: str = "basic") -> str:
    """``none``: as typed; ``basic``: lower case, punctuation removed, spaces collapsed;
    ``whisper``: openai-whisper's EnglishTextNormalizer (numbers, spellings, contractions)."""
    if normalizer == "none":
        return " ".join(text.split())
    if normalizer == "basic":
        return " ".join(_BASIC_PUNCT.sub(" ", text.lower()).replace(" '", " ").split())
    if normalizer == "whisper":
        return _whisper_normalizer()(text)
    raise InputError(f"Unknown text normaliser '{normalizer}'. Choose one of: {', '.join(NORMALIZERS)}.")


_WHISPER_NORMALIZER = None


def default_normalizer() -> str:
    """``whisper`` when openai-whisper is installed (it forgives "Mr."/"mister", "2"/"two",
    British/American spellings, as WER for Whisper models is usually reported), else ``basic``."""
    import importlib.util

    return "whisper" if importlib.util.find_spec("whisper") is not None else "basic"


def _whisper_normalizer():
    global _WHISPER_NORMALIZER
    if _WHISPER_NORMALIZER is None:
        try:
            from whisper.normalizers import EnglishTextNormalizer
        except ImportError as exc:
            raise InputError("The 'whisper' normaliser needs the openai-whisper package "
                             "(pip install openai-whisper); use 'basic' instead.") from exc
        _WHISPER_NORMALIZER = EnglishTextNormalizer()
    return _WHISPER_NORMALIZER


def score_text(reference: str, hypothesis: str, *, normalizer: str = "basic") -> TextReport:
    """WER/CER and the word alignment of ``hypothesis`` against ``reference`` (jiwer)."""
    import jiwer

    ref = normalize_text(reference or "", normalizer)
    hyp = normalize_text(hypothesis or "", normalizer)
    if not ref:
        raise InputError("The reference text is empty (after normalisation): type what was said.")
    if not hyp:
        words = ref.split()
        return TextReport(reference=ref, hypothesis="", normalizer=normalizer, wer=1.0, cer=1.0,
                          hits=0, substitutions=0, insertions=0, deletions=len(words),
                          ref_words=len(words),
                          alignment=tuple(AlignedWord("delete", w, "") for w in words))
    out = jiwer.process_words(ref, hyp)
    cer = jiwer.cer(ref, hyp)
    rw, hw = out.references[0], out.hypotheses[0]
    aligned: list[AlignedWord] = []
    for chunk in out.alignments[0]:
        kind = chunk.type
        if kind in ("equal", "substitute"):
            for i, j in zip(range(chunk.ref_start_idx, chunk.ref_end_idx),
                            range(chunk.hyp_start_idx, chunk.hyp_end_idx), strict=True):
                aligned.append(AlignedWord(kind, rw[i], hw[j]))
        elif kind == "delete":
            aligned.extend(AlignedWord("delete", rw[i], "")
                           for i in range(chunk.ref_start_idx, chunk.ref_end_idx))
        else:
            aligned.extend(AlignedWord("insert", "", hw[j])
                           for j in range(chunk.hyp_start_idx, chunk.hyp_end_idx))
    return TextReport(reference=ref, hypothesis=hyp, normalizer=normalizer, wer=float(out.wer),
                      cer=float(cer), hits=out.hits, substitutions=out.substitutions,
                      insertions=out.insertions, deletions=out.deletions, ref_words=len(rw),
                      alignment=tuple(aligned))


def text_metrics(report: TextReport, thresholds: Thresholds) -> list[MetricResult]:
    return [
        _check("wer", "Word error rate (round trip)", report.wer, "", thresholds.max_wer, False),
        _check("cer", "Character error rate (round trip)", report.cer, "", thresholds.max_cer, False),
    ]


# ---------------------------------------------------------------------------- comparison


def compare(
    reference: Audio,
    candidate: Audio,
    *,
    text: str | None = None,
    transcribe: Callable[[Audio], str] | None = None,
    thresholds: Thresholds | None = None,
    normalizer: str = "basic",
    with_f0: bool = True,
) -> QualityReport:
    """Compare ``candidate`` with ``reference``; with ``text`` and ``transcribe`` also score
    the intelligibility round trip (transcribe the candidate, WER/CER against ``text``)."""
    thresholds = thresholds or Thresholds()
    t0 = time.perf_counter()
    ref = prepare(reference, "reference")
    cand = prepare(candidate, "candidate")
    notes: list[str] = []

    # 1. The design's metric, exactly (no trimming, librosa defaults).
    d_ref, d_cand = design_mfcc(ref.samples), design_mfcc(cand.samples)
    mean_ref, mean_cand = d_ref.mean(axis=1), d_cand.mean(axis=1)
    mfcc_sim = _cosine(mean_ref, mean_cand)

    # 2. Frame-wise metrics on speech only (leading/trailing silence would dominate the path).
    ref_t = trim_silence(ref, min_s=MIN_CLIP_S)
    cand_t = trim_silence(cand, min_s=MIN_CLIP_S)
    f_ref, f_cand = frame_mfcc(ref_t.samples), frame_mfcc(cand_t.samples)
    aligned = _align(f_ref, f_cand)
    if aligned.factor > 1:
        notes.append(f"long clips: frames averaged in groups of {aligned.factor} for alignment")
    dtw_sim = float(np.mean(aligned.similarity))
    mcd = float(np.mean(aligned.mcd_frames))
    duration_ratio = cand_t.duration_s / ref_t.duration_s

    # 3. Intonation.
    f0_corr = f0_rmse = None
    f0_ref = f0_cand = np.zeros(0)
    if with_f0:
        track_ref, track_cand = f0_pyin(ref_t.samples), f0_pyin(cand_t.samples)
        f0_ref, f0_cand = track_ref.f0_hz, track_cand.f0_hz
        frames_per_f0 = F0_HOP_S / FRAME_HOP_S / aligned.factor
        f0_corr, f0_rmse, voiced = _f0_stats(f0_ref, f0_cand, aligned.path, frames_per_f0)
        if track_ref.truncated or track_cand.truncated:
            notes.append(f"pitch analysed on the first {MAX_F0_S:.0f} s of each clip")
        if f0_corr is None:
            notes.append(f"too few frames voiced in both clips ({voiced}) for a pitch correlation")

    metrics = [
        # Strictly greater, as the design's "production ready when > 0.85".
        _check("mfcc_similarity", "MFCC similarity (design, mean vectors)", mfcc_sim, "",
               thresholds.min_mfcc_similarity, True, strict=True),
        _check("dtw_similarity", "Aligned frame similarity (DTW)", dtw_sim, "",
               thresholds.min_dtw_similarity, True),
        _check("mcd_db", "Mel cepstral distortion (DTW)", mcd, "dB", thresholds.max_mcd_db, False),
        _check("f0_correlation", "Pitch contour correlation", f0_corr, "",
               thresholds.min_f0_correlation, True),
        _check("f0_rmse_cents", "Pitch distance (RMSE)", f0_rmse, "cents",
               thresholds.max_f0_rmse_cents, False),
        _check("duration_ratio", "Duration ratio (candidate / reference)", duration_ratio, "",
               thresholds.min_duration_ratio, True, upper=thresholds.max_duration_ratio),
    ]

    text_report = None
    if text and transcribe is not None:
        hypothesis = transcribe(candidate)
        text_report = score_text(text, hypothesis, normalizer=normalizer)
        metrics.extend(text_metrics(text_report, thresholds))

    features = FeatureArrays(
        mfcc_ref=d_ref, mfcc_cand=d_cand, mfcc_hop_s=DESIGN_HOP_S,
        mean_ref=mean_ref, mean_cand=mean_cand, path=aligned.path,
        path_similarity=aligned.similarity, dtw_hop_s=FRAME_HOP_S * aligned.factor,
        f0_ref=f0_ref, f0_cand=f0_cand, f0_hop_s=F0_HOP_S)
    return QualityReport(metrics=tuple(metrics), reference_s=reference.duration_s,
                         candidate_s=candidate.duration_s, features=features, text=text_report,
                         thresholds=thresholds, compute_s=time.perf_counter() - t0,
                         notes=tuple(notes))


def round_trip(candidate: Audio, text: str, transcribe: Callable[[Audio], str], *,
               normalizer: str = "basic") -> TextReport:
    """Intelligibility alone: transcribe ``candidate`` and score it against ``text``."""
    prepare(candidate, "candidate")
    return score_text(text, transcribe(candidate), normalizer=normalizer)


def stt_transcriber(stt_engine) -> Callable[[Audio], str]:
    """Adapt an STT engine (``.transcribe(Audio) -> Transcript``) to ``Audio -> str``."""
    def transcribe(audio: Audio) -> str:
        return stt_engine.transcribe(audio.resample(SAMPLE_RATE_HZ)).text
    return transcribe
