"""``python -m webapp batch synthesize LESSONS/ -o OUT/``: a whole course in one command.

LESSONS is a folder of ``.txt``/``.md`` files (read in name order) or one file; each file holds
one lesson or several separated by a line of ``---``. OUT receives, per lesson, the tagged audio
with chapters, SRT/VTT subtitles, WebVTT chapters and a read-along page, plus ``index.html`` and
``index.json`` (``webapp.pipeline.lesson.course``). A re-run skips lessons whose inputs and files
are unchanged; a lesson that fails is reported and the others are still made (exit code 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.audio import FORMATS
from webapp.pipeline.errors import InputError

HELP = "Make a whole course: every lesson file in a folder to audio, subtitles and read-along pages."
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


def read_sources(path: Path) -> list[tuple[str, str]]:
    """(file name, text) of the lesson files at ``path``, in name order."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise InputError(f"{path} has no .txt or .md lesson files.")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"{path} does not exist.")
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


def run(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.pipeline.lesson import course
    from webapp.services import build_services

    sources = read_sources(args.lessons)
    lessons = course.split_lessons(sources)
    options = course.CourseOptions(
        engine=args.engine, voice=args.voice, speed=args.speed, fmt=args.format,
        loudness_lufs=None if args.no_loudness else args.loudness,
        speakers=_speakers(args.speaker), teacher=args.teacher, course=args.course)
    done = course.finished(args.output)
    services = build_services(settings, preload=False, with_stt=False)
    started = time.perf_counter()

    def progress(position: int, total: int, lesson) -> None:
        if position < total:
            print(f"[{position + 1}/{total}] {lesson.title}", file=sys.stderr, flush=True)

    outcomes = course.make_course(lessons, options, services.synthesizer.run,
                                  progress=progress, done=done)
    try:
        course.write_folder(outcomes, options, args.output)
    except OSError as exc:
        raise InputError(f"Cannot write to {args.output}: {exc.strerror}.") from None
    wall_s = time.perf_counter() - started
    failed = [o for o in outcomes if not o.ok]
    audio_s = sum(o.duration_s for o in outcomes if o.ok)
    if args.json:
        print(json.dumps({"output": str(args.output), "wall_s": round(wall_s, 2),
                          "audio_s": round(audio_s, 2),
                          "lessons": [o.summary() for o in outcomes]}))
    else:
        skipped = sum(o.skipped for o in outcomes)
        print(f"{len(outcomes) - len(failed)} of {len(outcomes)} lessons in {args.output} "
              f"({audio_s / 60:.1f} min of audio in {wall_s:.1f} s; {skipped} already made)")
    for o in failed:
        print(f"error: lesson {o.lesson.number} ({o.lesson.title}): {o.error}", file=sys.stderr)
    return 1 if failed else 0
