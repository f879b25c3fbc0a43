"""Time to make a 10-lesson course (issue 12), the way a teacher makes one.

    python bench/course.py [--lessons 10] [--format mp3] [--json-out bench/results/course.json]

Ten science lessons (two chapters each, a teacher/student dialogue in each, about a minute of
speech apiece) go through ``python -m webapp batch synthesize`` in a subprocess, exactly as a
teacher runs it: the bundled Piper voice and eSpeak NG for the student, loudness -16 LUFS, MP3
with tags and chapters, SRT/VTT, chapter VTT and a read-along page per lesson. Three runs, each
in a fresh output folder:

* ``cold``: an empty cache (every sentence synthesised);
* ``edited``: one sentence changed in every lesson (the rest of each lesson from the cache);
* ``rerun``: the same command again into the same folder (finished lessons are skipped).

Wall time includes starting Python and loading the voice (what the teacher waits for).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import ROOT, git_commit, machine, print_table, report_footer  # noqa: E402

TOPICS = [
    ("Plants and light", "Photosynthesis turns 6 CO2 and 6 H2O into glucose and oxygen.",
     "Plants grow towards a window because light is their food."),
    ("States of matter", "Water boils at 100 °C and freezes at 0 °C at sea level.",
     "Ice, liquid water and steam are the same H2O in three states."),
    ("Forces", "A force of 10 N on a 2 kg mass gives an acceleration of 5 m/s².",
     "Friction slows a sliding book because the surfaces grip each other."),
    ("Electric circuits", "A 9 V battery drives 0.3 A through a 30 Ω resistor.",
     "A switch breaks the loop so no current can flow."),
    ("The water cycle", "About 71% of the Earth's surface is covered by water.",
     "Clouds form when water vapour cools and condenses into droplets."),
    ("Cells", "A typical animal cell is about 20 µm across.",
     "The nucleus holds the cell's DNA, its set of instructions."),
    ("Sound", "Sound travels at about 343 m/s in air at 20 °C.",
     "A louder sound has a larger amplitude, not a higher pitch."),
    ("Acids and bases", "Pure water has a pH of 7; lemon juice is close to 2.",
     "Sodium hydroxide, NaOH, is a strong base used to make soap."),
    ("The solar system", "Light from the Sun takes about 8 minutes to reach the Earth.",
     "Jupiter is the largest planet, more than 300 times the mass of the Earth."),
    ("Energy", "A 60 W lamp left on for 2 h uses 0.12 kWh of energy.",
     "Energy is never destroyed; it changes from one store to another."),
]


def lesson_text(number: int, edited: bool) -> str:
    title, fact, idea = TOPICS[(number - 1) % len(TOPICS)]
    change = " This sentence was edited after the first run." if edited else ""
    return f"""# {title}

## What we know

{fact} {idea} Scientists test ideas like this with careful experiments.{change}
We write down what we measure, and we repeat each measurement at least three times.

## Questions

Teacher: What did we learn today about {title.lower()}?
Student: {idea}
Teacher: Well done. Next lesson we build on this, so read your notes again tonight.
"""


def write_lessons(folder: Path, count: int, edited: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, count + 1):
        (folder / f"{number:02d}-lesson.md").write_text(lesson_text(number, edited), encoding="utf-8")


def run_batch(lessons: Path, out: Path, data_dir: Path, fmt: str) -> dict:
    env = {**os.environ, "SPEECH_STUDIO_DATA_DIR": str(data_dir), "SPEECH_STUDIO_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "webapp", "batch", "synthesize", str(lessons), "-o", str(out),
           "--format", fmt, "--speaker", "Teacher=en_US-joe-medium", "--speaker", "Student=en-gb",
           "--teacher", "Ms Lee", "--course", "Science 7", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"batch failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    lessons_ = report["lessons"]
    return {"wall_s": round(wall_s, 2), "audio_s": report["audio_s"],
            "lessons": len(lessons_), "skipped": sum(bool(x.get("skipped")) for x in lessons_),
            "files": sum(len(x["files"]) for x in lessons_),
            "loudness_lufs": [min(x["loudness_lufs"] for x in lessons_),
                              max(x["loudness_lufs"] for x in lessons_)],
            "chapters": sum(x["chapters"] for x in lessons_),
            "audio_s_per_wall_s": round(report["audio_s"] / wall_s, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", type=int, default=10)
    parser.add_argument("--format", default="mp3", choices=("mp3", "wav", "ogg"))
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-course-") as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "data"
        write_lessons(tmp_path / "lessons", args.lessons, edited=False)
        write_lessons(tmp_path / "edited", args.lessons, edited=True)
        runs = {
            "cold": run_batch(tmp_path / "lessons", tmp_path / "out1", data, args.format),
            "edited": run_batch(tmp_path / "edited", tmp_path / "out2", data, args.format),
            "rerun": run_batch(tmp_path / "edited", tmp_path / "out2", data, args.format),
        }
    report = {"benchmark": "course", "machine": machine(), "commit": git_commit(),
              "lessons": args.lessons, "format": args.format, "runs": runs}
    print_table([("run", "run", "8"), ("wall s", "wall_s", ">8.1f"),
                 ("audio min", "audio_min", ">10.1f"),
                 ("audio s/wall s", "audio_s_per_wall_s", ">15.1f"),
                 ("skipped", "skipped", ">8d"), ("files", "files", ">6d"),
                 ("loudness LUFS (min, max)", "loudness_lufs", "")],
                [{**r, "run": name, "audio_min": r["audio_s"] / 60} for name, r in runs.items()])
    report_footer(report, args.json_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
