"""Batch throughput (issue 13): the same course and the same recordings made in-process and on
a local Ray with 2 workers, as audio seconds per wall second.

    python bench/batch.py [--lessons 10] [--copies 3] [--workers 2]
                          [--json-out bench/results/batch.json]

* ``synthesize``: bench/course.py's ten science lessons (two voices, chapters, -16 LUFS, MP3,
  SRT/VTT and read-along pages), every run on an empty cache, through
  ``python -m webapp batch synthesize [--ray --workers N]``.
* ``transcribe``: every clip of tests/data/speech (88 s of real speech), ``--copies`` times
  over (each copy a different file to the batch, so nothing is skipped), through
  ``python -m webapp batch transcribe [--ray --workers N]``.

Each command runs in a subprocess, as a user runs it; wall time includes starting Python,
starting Ray and loading the models (what the user waits for). ``first_item_s`` is when the
command reported its first finished item (start-up plus one item), so ``steady`` is the rate
once every worker is running: what one more machine of this kind would add to a Ray cluster,
whose workers each hold their own model and share only the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course import write_lessons  # noqa: E402
from machine import ROOT, git_commit, machine, print_table, report_footer  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "speech"


def run(kind: str, source: Path, out: Path, data: Path, ray_workers: int | None) -> dict:
    env = {**os.environ, "SPEECH_STUDIO_DATA_DIR": str(data), "SPEECH_STUDIO_OFFLINE": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "webapp", "batch", kind, str(source), "-o", str(out), "--json"]
    if kind == "synthesize":
        cmd += ["--speaker", "Teacher=en_US-joe-medium", "--speaker", "Student=en-gb"]
    if ray_workers:
        cmd += ["--ray", "--workers", str(ray_workers)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as captured:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=captured, stderr=subprocess.PIPE,
                                text=True)
        first = None
        stderr = []
        for line in proc.stderr:  # "[1/30] done: ..." as each item finishes
            stderr.append(line)
            if first is None and line.startswith("[1/"):
                first = time.perf_counter() - t0
        proc.wait()
        wall_s = time.perf_counter() - t0
        captured.seek(0)
        stdout = captured.read()
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed ({proc.returncode}):\n{''.join(stderr)[-3000:]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    items = report.get("lessons") or report.get("recordings")
    done = [x for x in items if x["ok"] and not x["skipped"]]
    audio_s = report["audio_s"]
    per_item = audio_s / len(done)
    steady = ((audio_s - per_item) / (wall_s - first)) if first and wall_s > first else None
    return {"items": len(items), "made": len(done), "audio_s": round(audio_s, 1),
            "wall_s": round(wall_s, 2), "first_item_s": round(first or 0.0, 2),
            "audio_s_per_wall_s": round(audio_s / wall_s, 2),
            "steady_audio_s_per_wall_s": round(steady, 2) if steady else None}


def recordings(folder: Path, copies: int) -> Path:
    folder.mkdir(parents=True)
    for copy in range(copies):
        for clip in sorted(SPEECH.glob("*/*.wav")):
            shutil.copy(clip, folder / f"{copy}-{clip.parent.name}-{clip.name}")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", type=int, default=10)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp_path = Path(tmp)
        write_lessons(tmp_path / "lessons", args.lessons, edited=False)
        clips = recordings(tmp_path / "recordings", args.copies)
        for kind, source in (("synthesize", tmp_path / "lessons"), ("transcribe", clips)):
            for mode, workers in (("in-process", None), (f"ray x{args.workers}", args.workers)):
                name = f"{kind} {mode}"
                runs[name] = run(kind, source, tmp_path / f"out-{len(runs)}",
                                 tmp_path / f"data-{len(runs)}", workers)
                print(f"{name}: {runs[name]}", file=sys.stderr, flush=True)
    report = {"benchmark": "batch", "machine": machine(), "commit": git_commit(),
              "workers": args.workers, "runs": runs}
    print_table([("run", "run", "24"), ("items", "items", ">5d"), ("audio s", "audio_s", ">8.1f"),
                 ("wall s", "wall_s", ">7.1f"), ("first s", "first_item_s", ">8.1f"),
                 ("audio s/wall s", "audio_s_per_wall_s", ">15.2f"), ("steady", "steady", ">7.2f")],
                [{**r, "run": name, "steady": r["steady_audio_s_per_wall_s"] or 0}
                 for name, r in runs.items()])
    report_footer(report, args.json_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
