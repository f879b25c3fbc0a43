"""Batches (issue 13, part 2): ``python -m webapp batch synthesize|transcribe`` made here and on
Ray, with the bundled Piper voice and faster-whisper tiny.en.

Every Ray run is in a subprocess, the command line as a user runs it (and the scheduler
alone, with a worker that dies mid-item): a local Ray with two workers started on demand (``--ray --workers 2``), kept on loopback. (``--ray-address``, joining
a cluster of machines, is not run here: Ray's cluster mode binds to the machine's network
address, which tests must not use.) Inputs are the real recordings of
tests/data/speech and ten short lessons."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
from paths import ROOT, SPEECH  # tests/paths.py

from webapp.pipeline.evaluate import score_text

pytestmark = pytest.mark.slow

LESSON_TEXTS = [
    "# Light\nPlants need light to grow. Light travels at 300 000 km/s.",
    "# Water\nWater is H2O. It boils at 100 °C at sea level.",
    "# Cells\nEvery living thing is made of cells. The nucleus holds the DNA.",
    "# Forces\nA force is a push or a pull. It is measured in newtons.",
    "# Energy\nEnergy cannot be made or destroyed. It only changes form.",
    "# Sound\nSound is a vibration. It travels at about 340 m/s in air.",
    "# Magnets\nA magnet has a north pole and a south pole. Like poles repel.",
    "# Rocks\nThere are three kinds of rock. Granite is an igneous rock.",
    "# Weather\nClouds are made of tiny droplets. Rain falls when they grow.",
    "# Space\nThe Earth orbits the Sun. One orbit takes about 365 days.",
]
AUDIO_FILES = ("{stem}.txt", "{stem}.srt", "{stem}.vtt", "{stem}.json")


def srt_texts(path: Path) -> list[str]:
    return [cue.content for cue in srt.parse(path.read_text(encoding="utf-8"))]


def transcripts(folder: Path) -> dict[str, str]:
    rows = (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.split("\t", 1) for line in rows if "\t" in line)


def batch(*args: str, data: Path, check: int | None = 0) -> tuple[subprocess.CompletedProcess, dict]:
    """``python -m webapp batch ... --json`` in a subprocess; returns the run and its JSON."""
    env = {**os.environ, "SPEECH_STUDIO_DATA_DIR": str(data), "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-m", "webapp", "batch", *args, "--json"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    if check is not None:
        assert proc.returncode == check, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, (json.loads(lines[-1]) if lines else {})


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """Every clip of tests/data/speech in one folder, a corrupt file and a silent one."""
    folder = tmp_path_factory.mktemp("recordings")
    for clip in sorted(SPEECH.glob("*/*.wav")):
        shutil.copy(clip, folder / f"{clip.parent.name}-{clip.name}")
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt not really audio")
    sf.write(folder / "silence.wav", np.zeros(16_000 * 3, dtype=np.float32), 16_000)
    return folder


def references() -> dict[str, str]:
    out = {}
    for tsv in SPEECH.glob("*/transcripts.tsv"):
        for name, text in transcripts(tsv.parent).items():
            out[f"{tsv.parent.name}-{name}"] = text
    return out


@pytest.fixture(scope="module")
def in_process(recordings, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("transcribed-here")
    _, report = batch("transcribe", str(recordings), "-o", str(out),
                      data=tmp_path_factory.mktemp("data"), check=1)
    return out, report


def test_a_folder_of_recordings_is_transcribed_file_by_file(in_process, recordings):
    out, report = in_process
    by_name = {item["name"]: item for item in report["recordings"]}
    assert len(by_name) == 13
    # The corrupt file fails alone, named, and nothing of it is written.
    broken = by_name.pop("broken.wav")
    assert not broken["ok"] and "broken.wav" in broken["error"], broken
    assert not list(out.glob("broken.*"))
    assert all(item["ok"] for item in by_name.values())
    # Silence gives an empty transcript and says so, never invented words.
    assert by_name["silence.wav"]["text"] == ""
    assert any("No speech" in w for w in by_name["silence.wav"]["warnings"])
    # Each recording has its four files; the subtitles parse and hold the words.
    heard = transcripts(out)
    for name, item in by_name.items():
        stem = item["stem"]
        assert sorted(item["files"]) == sorted(f.format(stem=stem) for f in AUDIO_FILES)
        assert all((out / f).is_file() for f in item["files"])
        if name != "silence.wav":
            cues = srt_texts(out / f"{stem}.srt")
            assert " ".join(cues).split() == heard[name].split()
            assert json.loads((out / f"{stem}.json").read_text())["text"].strip() == heard[name]
    # What was heard is right: the clips' own transcripts against transcripts.tsv.
    refs = references()
    errors = words = 0
    for name, ref in refs.items():
        report_ = score_text(ref, heard[name], normalizer="whisper")
        errors += report_.substitutions + report_.deletions + report_.insertions
        words += report_.ref_words
    assert errors / words < 0.15, errors / words


def test_a_rerun_skips_what_was_made_and_retries_what_failed(in_process, recordings, tmp_path):
    out, first = in_process
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    proc, report = batch("transcribe", str(recordings), "-o", str(out), data=tmp_path, check=1)
    assert "12 of 13 recordings already made" in proc.stderr
    assert [i["skipped"] for i in report["recordings"] if i["ok"]] == [True] * 12
    assert [i["name"] for i in report["recordings"] if not i["ok"]] == ["broken.wav"]
    for name, mtime in before.items():
        if name.endswith((".txt", ".srt", ".vtt")) and name != "transcripts.tsv":
            assert (out / name).stat().st_mtime_ns == mtime, name
    # The index still lists everything, with what the first run heard.
    assert transcripts(out) == {i["name"]: i["text"] for i in first["recordings"] if i["ok"]}


def test_batch_transcribe_refuses_bad_input_clearly(tmp_path):
    proc, _ = batch("transcribe", str(tmp_path / "missing"), "-o", str(tmp_path / "o"),
                    data=tmp_path, check=2)
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "empty").mkdir()
    proc, _ = batch("transcribe", str(tmp_path / "empty"), "-o", str(tmp_path / "o"),
                    data=tmp_path, check=2)
    assert "has no audio files" in proc.stderr
    proc, _ = batch("transcribe", str(SPEECH / "cards"), "-o", str(tmp_path / "o"),
                    "--model", "small.en", data=tmp_path, check=2)
    assert "small.en" in proc.stderr and "Traceback" not in proc.stderr
    proc, _ = batch("transcribe", str(SPEECH / "cards"), "-o", str(tmp_path / "o"),
                    "--workers", "2", data=tmp_path, check=2)
    assert "--workers" in proc.stderr


# -- on Ray ------------------------------------------------------------------------------------

def test_ray_transcribes_the_same_as_in_process(in_process, recordings, tmp_path):
    out, here = in_process
    ray_out = tmp_path / "ray"
    proc, report = batch("transcribe", str(recordings), "-o", str(ray_out), "--ray",
                         "--workers", "2", data=tmp_path / "data", check=1)
    assert report["ray"] is True
    # The same files with the same words and times, the corrupt file failing alone.
    assert ([(i["name"], i["ok"], i["files"]) for i in report["recordings"]]
            == [(i["name"], i["ok"], i["files"]) for i in here["recordings"]])
    for item in here["recordings"]:
        for name in item["files"]:
            assert (ray_out / name).read_text() == (out / name).read_text(), name
    assert (ray_out / "transcripts.tsv").read_text() == (out / "transcripts.tsv").read_text()
    assert "broken.wav" in proc.stderr and "FAILED" in proc.stderr


@pytest.fixture(scope="module")
def lessons(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lessons")
    for number, text in enumerate(LESSON_TEXTS, start=1):
        (folder / f"{number:02d}.md").write_text(text, encoding="utf-8")
    return folder


def test_ray_makes_a_course_with_the_shared_cache(lessons, tmp_path):
    """In-process, then on Ray against the same cache: Piper renders every sentence
    differently each time, so byte-identical audio shows that Ray's workers were served by
    the shared cache, and that the rest of each lesson's files are made the same way. Then
    on Ray with a fresh cache: every lesson made, with the same sentences."""
    data = tmp_path / "data"
    here, ray_hit, ray_fresh = tmp_path / "here", tmp_path / "ray", tmp_path / "fresh"
    _, first = batch("synthesize", str(lessons), "-o", str(here), data=data)
    _, second = batch("synthesize", str(lessons), "-o", str(ray_hit), "--ray", "--workers", "2",
                      data=data)
    assert second["ray"] is True and len(second["lessons"]) == 10
    for lesson in first["lessons"]:
        assert lesson["ok"] and lesson["files"]
        for name in lesson["files"]:
            assert (ray_hit / name).read_bytes() == (here / name).read_bytes(), name

    _, third = batch("synthesize", str(lessons), "-o", str(ray_fresh), "--ray", "--workers", "2",
                     data=tmp_path / "fresh-data")
    for a, b in zip(first["lessons"], third["lessons"], strict=True):
        assert b["ok"] and b["files"] == a["files"] and b["chapters"] == a["chapters"]
        assert b["duration_s"] == pytest.approx(a["duration_s"], rel=0.15)
        subtitles = a["stem"] + ".srt"
        assert srt_texts(ray_fresh / subtitles) == srt_texts(here / subtitles)
        assert (ray_fresh / (a["stem"] + ".mp3")).read_bytes()[:3] == b"ID3"  # tagged MP3


def test_a_lesson_that_fails_on_ray_fails_alone_and_a_rerun_skips_the_rest(lessons, tmp_path):
    folder = tmp_path / "lessons"
    shutil.copytree(lessons, folder)
    (folder / "03.md").write_text("🌱🌱🌱", encoding="utf-8")  # nothing speakable
    out = tmp_path / "out"
    proc, report = batch("synthesize", str(folder), "-o", str(out), "--ray", "--workers", "2",
                         data=tmp_path / "data", check=1)
    assert [x["ok"] for x in report["lessons"]] == [True, True, False] + [True] * 7
    assert "error: lesson 3 " in proc.stderr and "FAILED: lesson 3 " in proc.stderr
    proc, report = batch("synthesize", str(folder), "-o", str(out), "--ray", "--workers", "2",
                         data=tmp_path / "data", check=1)
    assert "9 of 10 lessons already made" in proc.stderr
    assert [x["skipped"] for x in report["lessons"]] == [True, True, False] + [True] * 7


def test_ray_workers_that_cannot_load_their_model_stop_the_batch_clearly(tmp_path):
    proc, _ = batch("transcribe", str(SPEECH / "cards"), "-o", str(tmp_path / "o"), "--ray",
                    "--workers", "2", "--model", "small.en", data=tmp_path, check=2)
    assert "could not start" in proc.stderr and "small.en" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


# A worker whose process dies (as in a crash, or killed for memory) on the item "die", run by
# the --ray scheduler on a local Ray. In its own process, like every Ray run here: Ray must be
# imported after ray_batch keeps it on loopback, and Ray ships classes of __main__ by value.
DYING_WORKER = """
import json, os, sys
from webapp import ray_batch

class DiesOnItem:
    def __call__(self, item):
        if item == "die":
            os._exit(3)
        return ["made", item, os.getpid()]

    @staticmethod
    def fail(item, error):
        return ["failed", item, error]

finished = []
outcomes = ray_batch.run(DiesOnItem, (), sys.argv[1:], DiesOnItem.fail, workers=1,
                         on_done=lambda k, n, outcome: finished.append([k, n]))
print(json.dumps({"outcomes": outcomes, "finished": finished}))
"""


def test_an_actor_that_dies_fails_its_item_and_is_replaced():
    """The item whose actor died is reported failed with the reason, the actor is replaced,
    and every other item is made. One worker: without a replacement nothing after the death
    could be made."""
    items = ["a", "b", "die", "c", "d"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-c", DYING_WORKER, *items], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    outcomes = report["outcomes"]
    assert [o[1] for o in outcomes] == items  # in the items' order
    by_item = {o[1]: o for o in outcomes}
    assert by_item["die"][0] == "failed" and "worker stopped" in by_item["die"][2]
    pid = {item: o[2] for item, o in by_item.items() if o[0] == "made"}
    assert set(pid) == {"a", "b", "c", "d"}
    assert pid["a"] == pid["b"] != pid["c"] == pid["d"]  # a new process after the death
    assert report["finished"] == [[k, len(items)] for k in range(1, len(items) + 1)]
