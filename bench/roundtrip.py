"""Round-trip check benchmark (issue 12): what checking a lesson costs per minute of audio, and
how its flag threshold was chosen.

    python bench/roundtrip.py [--runs 3] [--calibrate 3] [--json-out bench/results/roundtrip.json]

Cost: a 50-sentence lesson of ordinary school science and history (about 3 minutes with the
bundled Piper voice; a few numbers and formulas) is synthesised (not timed), the recogniser is
warmed up, then ``webapp.pipeline.lesson.roundtrip.check`` runs ``--runs`` times with the
default recogniser (faster-whisper tiny.en int8, 2 CPU threads): compute seconds per minute of
audio, RTF, and how much of it is recognition and how much the comparison.

Calibration (``--calibrate N``): the lesson, and the same lesson with a lexicon of 26 entries
that make the voice say a wrong word ("photosynthesis" -> "banana", "arteries" -> "batteries",
"trains" -> "planes"...) in 27 sentences, each synthesised N times (Piper samples noise, so every
synthesis is a slightly different recording) and checked against the text without those entries
(what the voice should have said): how many correct and how many wrong sentences each rule
flags, with and without the lesson's vocabulary as the recogniser's prompt.

Prints tables and the JSON report (machine noted: ``bench/machine.py``). Numbers from a shared
machine are indicative; the load average is in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import git_commit, machine, save_json  # noqa: E402
from webapp.config import Settings  # noqa: E402
from webapp.pipeline.audio import Audio  # noqa: E402
from webapp.pipeline.cache import DiskSynthesisCache  # noqa: E402
from webapp.pipeline.lesson import roundtrip  # noqa: E402
from webapp.pipeline.stt.base import TranscribeOptions, clean_vocabulary  # noqa: E402
from webapp.pipeline.stt.registry import STTRegistry  # noqa: E402
from webapp.pipeline.synthesis import SynthesisRequest, SynthesisResult, Synthesizer  # noqa: E402
from webapp.pipeline.text.lexicon import Lexicon, LexiconEntry  # noqa: E402
from webapp.pipeline.text.prepare import prepare  # noqa: E402
from webapp.pipeline.tts.registry import TTSRegistry  # noqa: E402

LESSON = """\
Water covers about 71% of the surface of the Earth. Most of it is salty and sits in the oceans. \
Only a small part is fresh water that we can drink.

The sun heats the water in seas, lakes and rivers. Some of the water turns into vapour and rises \
into the air. This process is called evaporation. Plants also release water from their leaves, \
and we call that transpiration.

As the warm air rises, it cools down. The vapour condenses into tiny droplets and forms clouds. \
When the droplets join together and become heavy, they fall as rain, snow or hail. Scientists \
call this precipitation.

Rain that falls on land flows into streams and rivers. Some of it soaks into the ground and \
becomes groundwater. Sooner or later, the water returns to the sea, and the cycle starts again.

Green plants make their own food by photosynthesis. They take in carbon dioxide from the air \
and water from the soil. Chlorophyll in the leaves captures the energy of sunlight. The plant \
uses this energy to make glucose and releases oxygen as a waste product.

Animals cannot make their own food. Herbivores eat plants, and carnivores eat other animals. \
A food chain shows how energy passes from one living thing to the next. At every step, most of \
the energy is lost as heat.

Pure water boils at 100 °C and freezes at 0 °C. Water is H2O at 25 °C. A molecule of carbon \
dioxide, CO2, has one carbon atom and two oxygen atoms. Table salt is NaCl. In 1905 Einstein \
wrote E = mc^2.

A car travels 120 km in 2 hours, so its average speed is 60 km/h. The rocket reached a height \
of 3.5 kilometres in 12 seconds. Light travels at about 300 000 km/s.

The first public railway opened in England in 1825. Within a few decades, trains carried people \
and goods across the whole country. Towns grew quickly around the new stations. Many families \
moved from the countryside to find work in the factories.

Life in the factories was hard. Children often worked for twelve hours a day. Over time, new \
laws limited working hours and sent children to school instead. These changes shaped the world \
we live in today.

The heart is a muscle that pumps blood around the body. Arteries carry blood away from the \
heart, and veins bring it back. The blood carries oxygen to every cell. When you run, your \
heart beats faster to keep up.

Volcanoes form where hot rock from deep inside the Earth reaches the surface. The melted rock is \
called magma while it is underground. Once it flows out, we call it lava. Some islands were \
made entirely by volcanoes.

A magnet has a north pole and a south pole. Opposite poles attract each other, and like poles \
push each other away. The Earth itself behaves like a giant magnet. That is why a compass needle \
always points north.
"""

# term -> the wrong word the voice is made to say (each a lexicon entry, as a teacher's mistake
# would be); none sounds like the right word ("mussel" for "muscle" would not be an error).
WRONG_WORDS = (
    ("salty", "banana"), ("drink", "sink"), ("evaporation", "elevation"),
    ("transpiration", "inspiration"), ("droplets", "pockets"), ("precipitation", "banana"),
    ("groundwater", "sandpaper"), ("photosynthesis", "banana"), ("glucose", "mongoose"),
    ("carnivores", "carnivals"), ("heat", "wheat"), ("molecule", "monocle"),
    ("railway", "runway"), ("factories", "fairies"), ("muscle", "pickle"),
    ("arteries", "batteries"), ("magma", "magnet"), ("compass", "campus"),
    ("attract", "distract"), ("volcanoes", "tornadoes"), ("rocket", "pocket"),
    ("oceans", "potions"), ("Einstein", "Newton"), ("carbon", "cotton"), ("trains", "planes"),
    ("hail", "mail"),
)


def spoken_texts(result: SynthesisResult) -> list[str]:
    """What the voice was asked to say per cue, without any lexicon."""
    return [" ".join(p for p in prepare(c.text, None) if isinstance(p, str)) for c in result.cues]


class TimedSTT:
    """The engine, with the time spent in ``transcribe`` added up."""

    def __init__(self, engine) -> None:
        self.engine, self.name, self.model = engine, engine.name, engine.model
        self.seconds = 0.0

    def transcribe(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.engine.transcribe(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def bench_cost(result: SynthesisResult, stt, runs: int) -> dict:
    spoken = spoken_texts(result)
    timed = TimedSTT(stt)
    totals, recognition, report = [], [], None
    for _ in range(runs):
        timed.seconds = 0.0
        report = roundtrip.check(result.audio, result.cues, spoken, timed)
        totals.append(report.compute_s)
        recognition.append(timed.seconds)
    total_s, stt_s = statistics.median(totals), statistics.median(recognition)
    audio_min = result.audio_s / 60
    return {
        "audio_s": round(result.audio_s, 1), "sentences": len(result.cues), "runs": runs,
        "compute_s": round(total_s, 2), "compute_s_runs": [round(t, 2) for t in totals],
        "recognition_s": round(stt_s, 2), "comparison_s": round(total_s - stt_s, 3),
        "compute_s_per_audio_min": round(total_s / audio_min, 2), "rtf": round(report.rtf, 4),
        "wer": round(report.wer, 4), "flagged": [s.index for s in report.flagged],
    }


class MemoSTT:
    """The engine, each distinct (audio, options) recognised once: the calibration checks the
    same recording under several rules, and the recogniser (beam search at temperature 0) gives
    the same words every time, so only the comparison is re-run."""

    def __init__(self, engine) -> None:
        self.engine, self.name, self.model = engine, engine.name, engine.model
        self.memo: dict = {}

    def transcribe(self, audio: Audio, options=None, progress=None):
        key = (hashlib.sha1(audio.samples.tobytes()).hexdigest(), audio.sample_rate, repr(options))
        if key not in self.memo:
            self.memo[key] = self.engine.transcribe(audio, options, progress)
        return self.memo[key]


def _no_inflections(_expected: str, _heard: str) -> bool:
    return False


# rule -> (check() keyword arguments, module attributes replaced while it runs): the default,
# and the default with one mechanism taken out, to see what each one is worth.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "no probability rule": ({}, {"MIN_WORD_PROBABILITY": 0.0}),
    "no function-word rule": ({}, {"FUNCTION_WORDS": frozenset()}),
    "no inflection rule": ({}, {"same_word": _no_inflections}),
    "no boundary repair": ({}, {"_MAX_SHIFT_WORDS": 0}),
    "no garbled rule": ({}, {"GARBLED_WER": float("inf")}),
}
RULES = ("wer>0", "wer>0.1", "wer>0.2", *VARIANTS)


@contextlib.contextmanager
def patched(attributes: dict):
    saved = {k: getattr(roundtrip, k) for k in attributes}
    try:
        for k, v in attributes.items():
            setattr(roundtrip, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(roundtrip, k, v)


def run_rules(audio, cues, spoken, stt, options) -> dict[str, roundtrip.RoundTripReport]:
    out = {}
    for name, (kwargs, attributes) in VARIANTS.items():
        with patched(attributes):
            out[name] = roundtrip.check(audio, cues, spoken, stt, options=options, **kwargs)
    return out


def _flags(reports: dict[str, roundtrip.RoundTripReport], rows: set[int]) -> dict:
    """How many of ``rows`` each rule flags."""
    first = [x for x in reports["default"].sentences if x.index in rows]
    out = {f"wer>{t:g}": sum(x.wer > t for x in first) for t in (0.0, 0.1, 0.2)}
    for name, report in reports.items():
        out[name] = sum(x.flagged for x in report.sentences if x.index in rows)
    return out


def _add(total: dict, part: dict) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def bench_calibration(settings: Settings, stt, renderings: int, prompts: bool) -> dict:
    """Both lessons synthesised ``renderings`` times (Piper samples its noise: every synthesis
    of the same text is a slightly different recording), each checked under every rule, without
    a prompt and (``prompts``) with the lesson's vocabulary as the prompt."""
    lexicon = Lexicon([LexiconEntry(a, b) for a, b in WRONG_WORDS])
    out: dict = {"renderings": renderings, "prompts": {}}
    registry = TTSRegistry(settings)
    memo = MemoSTT(stt)
    for rendering in range(renderings):
        memo.memo.clear()
        synth = Synthesizer(settings, registry,
                            DiskSynthesisCache(Path(tempfile.mkdtemp(prefix="rt-cal-")), 512))
        clean = synth.run(SynthesisRequest(text=LESSON))
        bad = synth.run(SynthesisRequest(text=LESSON, lexicon=lexicon))
        if [c.text for c in bad.cues] != [c.text for c in clean.cues]:
            raise SystemExit("the lexicon changed the sentence split; pick other entries")
        spoken = spoken_texts(clean)  # what the voice should have said
        wrong = {i for i, c in enumerate(clean.cues) if lexicon.apply(c.text) != c.text}
        right = set(range(len(clean.cues))) - wrong
        out.update(sentences=len(clean.cues), wrong_sentences=len(wrong))
        vocabulary = clean_vocabulary(" ".join(sorted(
            {w for text in spoken for w in text.split() if len(w) >= 7}, key=len, reverse=True)))
        choices = [("none", TranscribeOptions())]
        if prompts:
            choices.append(("vocabulary", TranscribeOptions(initial_prompt=vocabulary)))
        for label, options in choices:
            row = out["prompts"].setdefault(label, {
                "correct_flagged": {}, "wrong_flagged": {}, "other_in_wrong_lesson_flagged": {},
                "false_flags": [], "missed": [], "wrong_word_probabilities": []})
            good = run_rules(clean.audio, clean.cues, spoken, memo, options)
            broken = run_rules(bad.audio, bad.cues, spoken, memo, options)
            _add(row["correct_flagged"], _flags(good, right | wrong))
            _add(row["wrong_flagged"], _flags(broken, wrong))
            _add(row["other_in_wrong_lesson_flagged"], _flags(broken, right))
            row["false_flags"] += [_row(s, rendering) for s in good["default"].flagged]
            row["missed"] += [_row(s, rendering) for s in broken["default"].sentences
                              if s.index in wrong and not s.flagged]
            row["wrong_word_probabilities"] += [
                round(d.probability, 2) for s in broken["default"].sentences if s.index in wrong
                for d in s.diffs if d.probability is not None and d.expected.lower() in
                {a.lower() for a, _ in WRONG_WORDS}]
    for row in out["prompts"].values():
        row["wrong_word_probabilities"].sort()
    return out


def _row(s: roundtrip.SentenceCheck, rendering: int) -> dict:
    return {"rendering": rendering, "index": s.index, "spoken": s.spoken, "heard": s.heard,
            "wer": round(s.wer, 3),
            "diffs": [f"{d.op} {d.expected!r}->{d.heard!r} p="
                      f"{d.probability and round(d.probability, 2)}"
                      f"{'' if d.counts else ' (not counted)'}" for d in s.diffs]}


def print_tables(result: dict) -> None:
    m, c = result["machine"], result["cost"]
    print(f"Round-trip check — {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
          f"load {m['load_avg'][0]:.2f}; {result['engine']} {result['model']}, "
          f"median of {c['runs']}")
    print(f"{'measure':<40}{'value':>12}")
    for label, value in (
            ("lesson audio", f"{c['audio_s']:.1f} s"), ("sentences", c["sentences"]),
            ("check, total", f"{c['compute_s']:.2f} s"),
            ("  recognition", f"{c['recognition_s']:.2f} s"),
            ("  comparison", f"{c['comparison_s'] * 1000:.0f} ms"),
            ("compute per minute of audio", f"{c['compute_s_per_audio_min']:.2f} s"),
            ("RTF", f"{c['rtf']:.3f}"), ("WER (whole lesson)", f"{c['wer']:.1%}"),
            ("sentences flagged", len(c["flagged"]))):
        print(f"{label:<40}{value!s:>12}")
    if "calibration" in result:
        cal = result["calibration"]
        n, bad = cal["sentences"], cal["wrong_sentences"]
        r = cal["renderings"]
        print(f"\nCalibration: {n} sentences, {bad} of them made to say a wrong word; "
              f"{r} syntheses of each lesson")
        print(f"{'prompt':<12}{'rule':<24}{'correct flagged':>17}{'wrong flagged':>15}"
              f"{'others (wrong lesson)':>23}")
        for prompt, row in cal["prompts"].items():
            for rule in RULES:
                if rule not in row["correct_flagged"]:
                    continue
                print(f"{prompt:<12}{rule:<24}"
                      f"{row['correct_flagged'][rule]:>10} / {n * r:<4}"
                      f"{row['wrong_flagged'][rule]:>8} / {bad * r:<4}"
                      f"{row['other_in_wrong_lesson_flagged'][rule]:>14} / {(n - bad) * r:<4}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calibrate", type=int, default=0, metavar="RENDERINGS",
                        help="also calibrate the flag on this many syntheses of the lessons")
    parser.add_argument("--prompts", action="store_true",
                        help="calibrate also with the lesson's vocabulary as the prompt")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    data = Path(os.environ.get("SPEECH_STUDIO_DATA_DIR") or tempfile.mkdtemp(prefix="rt-bench-"))
    settings = Settings(data_dir=data)
    synth = Synthesizer(settings, TTSRegistry(settings), DiskSynthesisCache(data / "cache", 512))
    t0 = time.perf_counter()
    clean = synth.run(SynthesisRequest(text=LESSON))
    synth_s = time.perf_counter() - t0
    stt = STTRegistry(settings).get("faster-whisper", "tiny.en")
    stt.transcribe(Audio.silence(1.0, 16_000), TranscribeOptions(beam_size=1))  # warm up

    result: dict = {"bench": "roundtrip", "machine": machine(), "commit": git_commit(),
                    "date": time.strftime("%Y-%m-%d %H:%M"), "engine": stt.name,
                    "model": stt.model, "synthesis_s": round(synth_s, 1),
                    "cost": bench_cost(clean, stt, args.runs)}
    if args.calibrate:
        result["calibration"] = bench_calibration(settings, stt, args.calibrate, args.prompts)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    print_tables(result)
    print(json.dumps(result, indent=1))
    save_json(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
