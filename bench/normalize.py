"""Normaliser benchmark: a 20,000-character science lesson, median of several runs.

    python bench/normalize.py [--runs 20]

Prints a table and one JSON line (machine noted). Target: < 100 ms.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webapp.pipeline.text.normalize import NORMALIZER_VERSION, normalize  # noqa: E402
from webapp.pipeline.text.segment import split_paragraphs, split_sentences  # noqa: E402

LESSON_PARTS = [
    "Water, H2O, boils at 100 °C and freezes at 0 °C.",
    "A car accelerates at 3.5 m/s^2 for 12 s, reaching 42 m/s.",
    "Avogadro's number is 6.02 × 10^23 per mol.",
    "In 1905 Einstein wrote E = mc^2.",
    "The angle θ is 30°, so sin(θ) = ½.",
    "Photosynthesis: 6CO2 + 6H2O → C6H12O6 + 6O2.",
    "By Pythagoras, a^2 + b^2 = c^2.",
    "Dr. Curie measured 0.25 g of radium, i.e. very little.",
    "Sulfate ions, SO4^2-, and sodium ions, Na+, are in the solution.",
    "Prices rose 3.5% from $1,200 to $1,242 in the 1990s.",
    "Plants grow towards the light, and their roots grow down into the soil.",
]


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    lesson = ""
    while len(lesson) < 20_000:
        lesson += " ".join(LESSON_PARTS) + "\n\n"
    lesson = lesson[:20_000]
    normalize(lesson)
    whole, per_sentence = [], []
    sentences = [s for p in split_paragraphs(lesson) for s in split_sentences(p)]
    for _ in range(args.runs):
        t0 = time.perf_counter()
        normalize(lesson)
        whole.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        for s in sentences:
            normalize(s)
        per_sentence.append((time.perf_counter() - t0) * 1000)
    result = {"benchmark": "normalize", "version": NORMALIZER_VERSION, "machine": machine(),
              "chars": len(lesson), "sentences": len(sentences), "runs": args.runs,
              "whole_ms": statistics.median(whole), "per_sentence_total_ms": statistics.median(per_sentence)}
    m = result["machine"]
    print(f"Normaliser benchmark — {m['cpu']}, {m['cores']} cores, Python {m['python']}, median of {args.runs}")
    print(f"{'measure':<44} {'value':>10}  target")
    print(f"{'20,000 characters in one call':<44} {result['whole_ms']:>7.1f} ms  < 100 ms")
    print(f"{'same lesson sentence by sentence (' + str(len(sentences)) + ')':<44} {result['per_sentence_total_ms']:>7.1f} ms  < 100 ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
