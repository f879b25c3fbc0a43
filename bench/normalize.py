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

from webapp.pipeline.text.normalize import NORMALIZER_VERSION, cardinal, normalize, ordinal, year  # noqa: E402
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
    "Neutralisation: NaOH(aq) + HCl(aq) → NaCl(aq) + H2O(l), at 25 °C on 24/11/2026.",
    "For a spring F = −kx, and for a gas PV = nRT with R = 8.314 J/(mol·K).",
    "The density is 1 g/cm^3, the gradient Δy/Δx is 2.5, and f(x) = 3x + 2.",
    "Ca2+ and CO3^2- ions form CaCO3(s); the reaction takes 5-10 min at 10:30.",
    "Prof. Lee, of the BBC, says about 70% of the 1 000 000 pupils passed, i.e. most.",
]


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


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
    def cold() -> None:
        # The lesson repeats its paragraphs; clear the number-word caches so repeats are not free.
        for cached in (cardinal, ordinal, year):
            cached.cache_clear()

    for _ in range(args.runs):
        cold()
        t0 = time.perf_counter()
        normalize(lesson)
        whole.append((time.perf_counter() - t0) * 1000)
        cold()
        t0 = time.perf_counter()
        for s in sentences:
            normalize(s)
        per_sentence.append((time.perf_counter() - t0) * 1000)
    # The lexicon runs first on every sentence: time the largest one a deployment may have.
    from webapp.pipeline.text.lexicon import MAX_ENTRIES, Lexicon, LexiconEntry

    lexicon = Lexicon([LexiconEntry(f"term{i}", f"respelling {i}", i % 2 == 0) for i in range(MAX_ENTRIES)])
    lexicon_ms = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        lexicon.apply(lesson)
        lexicon_ms.append((time.perf_counter() - t0) * 1000)
    result = {"benchmark": "normalize", "version": NORMALIZER_VERSION, "machine": machine(),
              "chars": len(lesson), "sentences": len(sentences), "runs": args.runs,
              "whole_ms": statistics.median(whole), "per_sentence_total_ms": statistics.median(per_sentence),
              "lexicon_2000_entries_ms": statistics.median(lexicon_ms)}
    m = result["machine"]
    print(f"Normaliser benchmark — {m['cpu']}, {m['cores']} cores, Python {m['python']}, median of {args.runs}")
    print(f"{'measure':<44} {'value':>10}  target")
    print(f"{'20,000 characters in one call':<44} {result['whole_ms']:>7.1f} ms  < 100 ms")
    print(f"{'same lesson sentence by sentence (' + str(len(sentences)) + ')':<44} {result['per_sentence_total_ms']:>7.1f} ms  < 100 ms")
    print(f"{'lexicon of ' + str(MAX_ENTRIES) + ' entries on the same lesson':<44} "
          f"{result['lexicon_2000_entries_ms']:>7.1f} ms")
    print(f"({m['platform']}; numbers from a shared machine are indicative only)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
