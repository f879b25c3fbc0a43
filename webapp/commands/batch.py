"""``python -m webapp batch synthesize LESSONS/ -o OUT/`` and ``python -m webapp batch
transcribe RECORDINGS/ -o OUT/``: a whole course, or a folder of recordings, in one command.

LESSONS is a folder of ``.txt``/``.md`` files (read in name order) or one file; each file holds
one lesson or several separated by a line of ``---``. OUT receives, per lesson, the tagged audio
with chapters, SRT/VTT subtitles, WebVTT chapters and a read-along page, plus ``index.html`` and
``index.json`` (``webapp.pipeline.lesson.course``). RECORDINGS is a folder of audio files; OUT
receives per recording its text, SRT, VTT and JSON transcript, plus ``index.json`` and
``transcripts.tsv`` (``webapp.pipeline.stt.recordings``).

A re-run skips the items whose inputs and files are unchanged; an item that fails is reported
and the others are still made (exit code 1). With ``--ray`` the items are spread over Ray
actors, one model loaded per actor (``webapp.ray_batch``); without it they are made here, one
after another, by the same worker code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webapp.config import Settings
from webapp.pipeline.audio import FORMATS
from webapp.pipeline.errors import InputError

HELP = ("Make a whole course (lesson texts to audio, subtitles and read-along pages) or transcribe "
        "a folder of recordings, here or on Ray.")
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
MAX_FILE_BYTES = 2_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="batch_kind", required=True, metavar="KIND")
    synth = sub.add_parser("synthesize", help="lesson texts -> audio, subtitles, read-along pages")
    synth.add_argument("lessons", type=Path, help="a folder of .txt/.md lesson files, or one file")
    synth.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    synth.add_argument("--engine", default=None, help="piper (default), coqui or espeak")
    synth.add_argument("--voice", default=None, help="voice id (default: the engine's default)")
    synth.add_argument("--speed", type=float, default=1.0, help="0.5 to 2.0 (default 1.0)")
    synth.add_argument("--format", choices=FORMATS, default="mp3", help="audio format (default mp3)")
    synth.add_argument("--loudness", type=float, default=-16.0,
                       help="target loudness in LUFS (default -16; -23 for EBU R128 broadcast)")
    synth.add_argument("--no-loudness", action="store_true", help="keep the voices' own level")
    synth.add_argument("--speaker", action="append", default=[], metavar="NAME=VOICE",
                       help="lines starting 'NAME:' are spoken by VOICE (repeatable)")
    synth.add_argument("--teacher", default="", help="the artist tag (the teacher's name)")
    synth.add_argument("--course", default="", help="the album tag (the course's name)")
    synth.add_argument("--json", action="store_true", help="print the index as JSON at the end")
    _ray_arguments(synth)

    trans = sub.add_parser("transcribe", help="recordings -> text, SRT, VTT and JSON transcripts")
    trans.add_argument("recordings", type=Path, help="a folder of audio files, or one file")
    trans.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    trans.add_argument("--engine", default=None, help="faster-whisper (default) or openai-whisper")
    trans.add_argument("--model", default=None,
                       help="model name (default tiny.en), or a local CTranslate2 directory / "
                            ".pt checkpoint (operator use)")
    trans.add_argument("--vocabulary", default="", help="names and terms to expect (prompt)")
    trans.add_argument("--no-denoise", dest="denoise", action="store_false",
                       help="skip noise reduction")
    trans.add_argument("--json", action="store_true", help="print the index as JSON at the end")
    _ray_arguments(trans)


def _ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", action="store_true",
                        help="spread the work over Ray actors (a local Ray unless --ray-address)")
    parser.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                        help="join this Ray cluster ('auto' for the one on this machine); "
                             "implies --ray")
    parser.add_argument("--workers", type=int, default=None,
                        help="how many workers (default: one per CPU of the Ray cluster; 1 "
                             "without --ray)")


def read_sources(path: Path) -> list[tuple[str, str]]:
    """(file name, text) of the lesson files at ``path``, in name order."""
    from webapp.pipeline.batch import input_files

    files = input_files(path, TEXT_SUFFIXES, ".txt or .md lesson files")
    sources = []
    for file in files:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{file.name} is larger than {MAX_FILE_BYTES // 1_000_000} MB; is it "
                             "really a lesson text?")
        try:
            sources.append((file.name, file.read_text(encoding="utf-8-sig")))
        except UnicodeDecodeError:
            raise InputError(f"{file.name} is not UTF-8 text.") from None
    return sources


def _speakers(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        name, sep, voice = pair.partition("=")
        if not sep or not name.strip() or not voice.strip():
            raise InputError(f"--speaker takes NAME=VOICE (e.g. Student=en-gb); got '{pair}'.")
        out.append((name.strip(), voice.strip()))
    return tuple(out)


@dataclass
class _Job:
    """One batch: its items, the worker that makes one, and how its folder is written."""

    noun: str
    items: list
    worker: type
    worker_args: tuple
    already_made: Callable[[Any], Any]  # item -> outcome of an earlier run, or None
    write: Callable[[list, Path], None]
    label: Callable[[Any], str]  # an outcome's name in messages
    worker_kwargs: dict = field(default_factory=dict)
    prepare: Callable[[Any], Any] | None = None  # an item as sent to a Ray actor


def _synthesize_job(args: argparse.Namespace, settings: Settings) -> _Job:
    from webapp.pipeline.lesson import course
    from webapp.workers import LessonWorker

    lessons = course.split_lessons(read_sources(args.lessons))
    options = course.CourseOptions(
        engine=args.engine, voice=args.voice, speed=args.speed, fmt=args.format,
        loudness_lufs=None if args.no_loudness else args.loudness,
        speakers=_speakers(args.speaker), teacher=args.teacher, course=args.course)
    done = course.finished(args.output)
    return _Job(
        "lesson", lessons, LessonWorker, (settings, options),
        already_made=lambda lesson: course.already_made(lesson, options, done),
        write=lambda outcomes, out: course.write_folder(outcomes, options, out),
        label=lambda o: f"lesson {o.lesson.number} ({o.lesson.title})")


def _transcribe_job(args: argparse.Namespace, settings: Settings, threads: int | None) -> _Job:
    from webapp.pipeline.stt import recordings
    from webapp.workers import RecordingWorker

    found = recordings.find_recordings(args.recordings)
    options = recordings.RecordingOptions(engine=args.engine, model=args.model,
                                          vocabulary=args.vocabulary, denoise=args.denoise)
    done = recordings.finished(args.output)
    return _Job(
        "recording", found, RecordingWorker, (settings, options),
        worker_kwargs={"threads": threads},
        already_made=lambda rec: recordings.already_made(rec, options, done),
        write=lambda outcomes, out: recordings.write_folder(outcomes, options, out),
        label=lambda o: o.recording.name,
        prepare=lambda rec: rec.portable())


def run(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.pipeline import batch

    use_ray = args.ray or bool(args.ray_address)
    if args.workers is not None and (args.workers < 1 or not use_ray):
        raise InputError("--workers takes a number of at least 1, with --ray.")
    if args.batch_kind == "transcribe":
        # Several Ray workers on this machine share its cores: one recogniser thread each
        # (a cluster's actors get one CPU each).
        threads = None
        if use_ray:
            local = max(1, (os.cpu_count() or 1) // (args.workers or os.cpu_count() or 1))
            threads = 1 if args.ray_address else local
        job = _transcribe_job(args, settings, threads)
    else:
        job = _synthesize_job(args, settings)
    started = time.perf_counter()
    outcomes = [job.already_made(item) for item in job.items]
    todo = [item for item, made in zip(job.items, outcomes, strict=True) if made is None]
    skipped = len(job.items) - len(todo)
    if skipped:
        print(f"{skipped} of {len(job.items)} {job.noun}s already made; skipping them",
              file=sys.stderr, flush=True)

    def on_done(position: int, total: int, outcome) -> None:
        state = "done" if outcome.ok else "FAILED"
        print(f"[{position}/{total}] {state}: {job.label(outcome)}", file=sys.stderr, flush=True)

    if not todo:
        made = []
    elif use_ray:
        from webapp import ray_batch

        made = ray_batch.run(job.worker, job.worker_args, todo, job.worker.fail,
                             kwargs=job.worker_kwargs, workers=args.workers,
                             address=args.ray_address, prepare=job.prepare, on_done=on_done)
    else:
        worker = job.worker(*job.worker_args, **job.worker_kwargs)
        made = batch.run_in_process(worker, todo, job.worker.fail, on_done=on_done)
    fresh = iter(made)
    outcomes = [o if o is not None else next(fresh) for o in outcomes]
    try:
        job.write(outcomes, args.output)
    except OSError as exc:
        raise InputError(f"Cannot write to {args.output}: {exc.strerror}.") from None
    wall_s = time.perf_counter() - started
    failed = [o for o in outcomes if not o.ok]
    audio_s = sum(o.duration_s for o in outcomes if o.ok)
    if args.json:
        print(json.dumps({"output": str(args.output), "wall_s": round(wall_s, 2),
                          "audio_s": round(audio_s, 2), "ray": use_ray,
                          f"{job.noun}s": [o.summary() for o in outcomes]}))
    else:
        print(f"{len(outcomes) - len(failed)} of {len(outcomes)} {job.noun}s in {args.output} "
              f"({audio_s / 60:.1f} min of audio in {wall_s:.1f} s; {skipped} already made)")
    for o in failed:
        print(f"error: {job.label(o)}: {o.error}", file=sys.stderr)
    return 1 if failed else 0
