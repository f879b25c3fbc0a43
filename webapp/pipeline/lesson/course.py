"""A whole course at once (issue 12): several lessons in, one folder or zip out.

Input: text or Markdown files, each holding one lesson or several separated by a line of three
or more hyphens (``---``). A lesson's title is its first ``# heading``; without one, the file's
name (with "part N" when the file holds several lessons).

Output per lesson, named ``NN-title``: the audio (MP3 by default, tagged with the lesson title,
the teacher as artist, the course as album, the track number, ID3/Vorbis chapters and its
loudness), SRT and WebVTT subtitles, WebVTT chapters, and a read-along page that plays the
audio beside it. Plus ``index.html`` (a page linking every lesson) and ``index.json`` (what
was made, with durations, loudness and the key of each lesson's inputs). A lesson that fails is
reported in both and the others are still made.

The synthesis itself is a callable, so the page can wrap it in its model-slot limits and the
command line can run it directly; each lesson is one request, so the disk cache makes a re-run
(or a lesson shared by two courses) instant.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from webapp.pipeline import batch
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.lesson import readalong
from webapp.pipeline.lesson.tags import Tags, tag_file
from webapp.pipeline.subtitles import to_srt, to_vtt, to_vtt_chapters
from webapp.pipeline.synthesis import SynthesisRequest, SynthesisResult

MAX_LESSONS = 50
LESSON_SEPARATOR = re.compile(r"^[ \t]*-{3,}[ \t]*$", re.MULTILINE)
_TITLE = re.compile(r"^ {0,3}#[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
AUDIO_MIME = {"mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg"}


@dataclass(frozen=True)
class Lesson:
    number: int  # 1-based, the track number
    title: str
    text: str

    @property
    def stem(self) -> str:
        return f"{self.number:02d}-{slug(self.title)}"


@dataclass(frozen=True)
class CourseOptions:
    """Everything besides the text that decides a lesson's files."""

    engine: str | None = None
    voice: str | None = None
    speed: float = 1.0
    fmt: str = "mp3"
    loudness_lufs: float | None = -16.0
    speakers: tuple[tuple[str, str], ...] = ()
    teacher: str = ""
    course: str = ""
    lexicon: object = None  # a Lexicon, or None for the deployment's

    def request(self, lesson: Lesson) -> SynthesisRequest:
        return SynthesisRequest(text=lesson.text, engine=self.engine, voice=self.voice,
                                speed=self.speed, fmt=self.fmt, lexicon=self.lexicon,
                                speakers=self.speakers, loudness_lufs=self.loudness_lufs)

    def key(self, lesson: Lesson) -> str:
        """Changes whenever the lesson's files would (a re-run skips lessons whose key and
        files are already there)."""
        parts = [lesson.text, lesson.title, lesson.number, self.engine, self.voice, self.speed,
                 self.fmt, self.loudness_lufs, list(self.speakers), self.teacher, self.course,
                 getattr(self.lexicon, "version", None)]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


@dataclass
class LessonOutcome:
    lesson: Lesson
    files: dict[str, bytes | str] = field(default_factory=dict)  # file name -> content
    error: str = ""
    duration_s: float = 0.0
    chapters: int = 0
    loudness_lufs: float | None = None
    key: str = ""
    skipped: bool = False  # a re-run found this lesson already made

    @property
    def ok(self) -> bool:
        return not self.error

    def summary(self) -> dict:
        return {"number": self.lesson.number, "title": self.lesson.title,
                "stem": self.lesson.stem, "ok": self.ok, "error": self.error,
                "duration_s": round(self.duration_s, 2), "chapters": self.chapters,
                "loudness_lufs": self.loudness_lufs, "key": self.key,
                "skipped": self.skipped, "files": sorted(self.files)}


def slug(title: str, limit: int = 40) -> str:
    """A file-name-safe form of a title ("Acids & bases: pH" -> "acids-bases-ph")."""
    ascii_ = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_.lower())
    out = "-".join(words)[:limit].rstrip("-")
    return out or "lesson"


def _title_from_file(name: str) -> str:
    """"03-acids_and_bases.md" -> "Acids and bases" (the number is the lesson's place)."""
    stem = re.sub(r"^[\d\s._-]+", "", Path(name).stem)
    stem = " ".join(stem.replace("_", " ").replace("-", " ").split())
    return stem[:1].upper() + stem[1:] if stem else "Lesson"


def split_lessons(sources: Sequence[tuple[str, str]], max_lessons: int = MAX_LESSONS) -> list[Lesson]:
    """Lessons from ``(file name, text)`` pairs, in the order given (sort the names first for a
    folder: "01-…", "02-…")."""
    found: list[tuple[str, str]] = []
    for name, text in sources:
        parts = [p.strip() for p in LESSON_SEPARATOR.split(text.replace("\r\n", "\n"))]
        parts = [p for p in parts if p]
        stem = _title_from_file(name)
        for index, part in enumerate(parts, start=1):
            heading = _TITLE.search(part)
            if heading:
                title = heading.group(1).strip()
            else:
                title = stem if len(parts) == 1 else f"{stem} part {index}"
            found.append((title, part))
    if not found:
        raise InputError("There is no lesson text in the files: upload .txt or .md files with "
                         "the lessons, one per file or separated by a line of ---.")
    if len(found) > max_lessons:
        raise InputError(f"The files hold {len(found)} lessons; one course may have at most "
                         f"{max_lessons}. Split it into parts.")
    return [Lesson(i, title, text) for i, (title, text) in enumerate(found, start=1)]


def lesson_files(lesson: Lesson, result: SynthesisResult, options: CourseOptions) -> dict[str, bytes | str]:
    """The files of one made lesson (name -> content)."""
    stem = lesson.stem
    tags = Tags(title=lesson.title, artist=options.teacher, album=options.course,
                track=lesson.number)
    audio_name = f"{stem}.{result.fmt}"
    return {
        audio_name: tag_file(result.data, result.fmt, tags, result.chapters, result.loudness),
        f"{stem}.srt": to_srt(result.cues),
        f"{stem}.vtt": to_vtt(result.cues),
        f"{stem}.chapters.vtt": to_vtt_chapters(result.chapters),
        f"{stem}.html": readalong.render(
            b"", AUDIO_MIME.get(result.fmt, "audio/wav"), result.cues, chapters=result.chapters,
            title=lesson.title, audio_href=audio_name),
    }


def make_lesson(lesson: Lesson, options: CourseOptions,
                synthesize: Callable[[SynthesisRequest], SynthesisResult]) -> LessonOutcome:
    """Make one lesson; a lesson that cannot be made is an outcome with its error."""
    key = options.key(lesson)
    try:
        result = synthesize(options.request(lesson))
        files = lesson_files(lesson, result, options)
    except PipelineError as exc:
        return failed(lesson, str(exc), key)
    loud = result.loudness.output_lufs if result.loudness is not None else None
    return LessonOutcome(
        lesson, files=files, duration_s=result.audio_s, chapters=len(result.chapters),
        loudness_lufs=None if loud is None else round(loud, 2), key=key)


def failed(lesson: Lesson, error: str, key: str = "") -> LessonOutcome:
    return LessonOutcome(lesson, error=error, key=key)


def already_made(lesson: Lesson, options: CourseOptions,
                 done: dict[str, dict] | None) -> LessonOutcome | None:
    """The outcome of a lesson an earlier run made with the same inputs (``done`` maps stems
    to earlier ``summary()``s), or None when it must be made."""
    key = options.key(lesson)
    earlier = (done or {}).get(lesson.stem)
    if not (earlier and earlier.get("ok") and earlier.get("key") == key):
        return None
    return LessonOutcome(
        lesson, duration_s=earlier.get("duration_s", 0.0), chapters=earlier.get("chapters", 0),
        loudness_lufs=earlier.get("loudness_lufs"), key=key, skipped=True,
        files=dict.fromkeys(earlier.get("files", []), b""))


def make_course(lessons: Sequence[Lesson], options: CourseOptions,
                synthesize: Callable[[SynthesisRequest], SynthesisResult], *,
                progress: Callable[[int, int, Lesson], None] | None = None,
                done: dict[str, dict] | None = None) -> list[LessonOutcome]:
    """Make every lesson in turn; a failing lesson is recorded and the others go on. Lessons
    in ``done`` (see ``already_made``) are skipped; their files are already where the caller
    keeps them."""
    outcomes = []
    for position, lesson in enumerate(lessons):
        if progress is not None:
            progress(position, len(lessons), lesson)
        outcomes.append(already_made(lesson, options, done)
                        or make_lesson(lesson, options, synthesize))
    if progress is not None:
        progress(len(lessons), len(lessons), lessons[-1])
    return outcomes


def index_json(outcomes: Sequence[LessonOutcome], options: CourseOptions) -> str:
    return batch.index(outcomes, "lessons", course=options.course, teacher=options.teacher,
                       format=options.fmt, loudness_target_lufs=options.loudness_lufs)


def index_html(outcomes: Sequence[LessonOutcome], options: CourseOptions) -> str:
    """A page that lists the lessons with their audio, subtitles and read-along pages."""
    esc = html.escape
    title = options.course or "Course"
    rows = []
    for o in outcomes:
        stem = o.lesson.stem
        if o.ok:
            audio = f"{stem}.{options.fmt}"
            minutes, seconds = divmod(round(o.duration_s), 60)
            rows.append(
                f"<tr><td>{o.lesson.number}</td><td>{esc(o.lesson.title)}</td>"
                f"<td>{minutes}:{seconds:02d}</td>"
                f'<td><a href="{esc(stem)}.html">read along</a> · '
                f'<a href="{esc(audio)}">audio</a> · <a href="{esc(stem)}.srt">SRT</a> · '
                f'<a href="{esc(stem)}.vtt">VTT</a></td></tr>')
        else:
            rows.append(f"<tr><td>{o.lesson.number}</td><td>{esc(o.lesson.title)}</td>"
                        f"<td>—</td><td>not made: {esc(o.error)}</td></tr>")
    teacher = f"<p>{esc(options.teacher)}</p>" if options.teacher else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{esc(title)}</title>
<style>body{{font:1.1rem/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{padding:.4rem .6rem;border-bottom:1px solid #ccc;
text-align:left}}@media (prefers-color-scheme:dark){{body{{background:#111;color:#eee}}a{{color:#9cf}}}}
</style></head><body><h1>{esc(title)}</h1>{teacher}
<table><thead><tr><th>#</th><th>Lesson</th><th>Length</th><th>Files</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></body></html>
"""


def course_zip(outcomes: Sequence[LessonOutcome], options: CourseOptions) -> bytes:
    """Every lesson's files plus ``index.html`` and ``index.json`` in one zip (audio stored,
    text deflated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for o in outcomes:
            for name, content in o.files.items():
                data = content.encode("utf-8") if isinstance(content, str) else content
                compress = zipfile.ZIP_DEFLATED if isinstance(content, str) else zipfile.ZIP_STORED
                archive.writestr(name, data, compress_type=compress)
        archive.writestr("index.html", index_html(outcomes, options), zipfile.ZIP_DEFLATED)
        archive.writestr("index.json", index_json(outcomes, options), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def write_folder(outcomes: Sequence[LessonOutcome], options: CourseOptions, out: Path) -> None:
    """Write the lessons' files (skipped lessons' files are already there) and the index."""
    batch.write_files(outcomes, out)
    batch.write_atomic(out / "index.html", index_html(outcomes, options))
    batch.write_atomic(out / "index.json", index_json(outcomes, options))


def finished(out: Path) -> dict[str, dict]:
    """Stem -> summary of the lessons an earlier run made in ``out`` whose files all exist."""
    return batch.finished(out, "lessons")
