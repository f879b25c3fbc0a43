"""The "A whole course at once" panel of the Synthesize tab (issue 12): uploaded lesson files
become one zip of tagged audio files with chapters, subtitles and read-along pages, made with the
voice, speed, speakers, loudness and lexicon chosen on the tab.

The work is in ``webapp.pipeline.lesson.course``; ``on_course`` is bound in
``build_course_panel`` (``webapp.components.events``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from webapp.components.downloads import write_downloads
from webapp.components.events import PAGE_ONLY, bind, client_of
from webapp.components.inputs import one_choice
from webapp.components.lesson import LessonWidgets, lesson_settings
from webapp.components.lexicon_panel import Lexicons
from webapp.pipeline.errors import InputError
from webapp.pipeline.lesson import course as course_
from webapp.pipeline.lesson import readalong
from webapp.pipeline.synthesis import SynthesisRequest, SynthesisResult
from webapp.services import Services

COURSE_FILE_TYPES = [".txt", ".md"]
MAX_COURSE_FILE_BYTES = 2_000_000


def make_course_zip(services: Services, files, options: course_.CourseOptions,
                    request: gr.Request | None, progress=None) -> tuple[str, str]:
    """Uploaded lesson files -> (zip path, summary Markdown)."""
    if not files:
        raise InputError("Upload the lesson files first (.txt or .md; one lesson per file, or "
                         "several separated by a line of ---).")
    sources = []
    for file in files if isinstance(files, list) else [files]:
        path = Path(file if isinstance(file, str) else getattr(file, "name", ""))
        if path.suffix.lower() not in COURSE_FILE_TYPES:
            raise InputError(f"{path.name} is not a .txt or .md lesson file.")
        raw = path.read_bytes()[:MAX_COURSE_FILE_BYTES + 1]
        if len(raw) > MAX_COURSE_FILE_BYTES:
            raise InputError(f"{path.name} is larger than 2 MB; is it really a lesson text?")
        try:
            sources.append((_original_name(path), raw.decode("utf-8-sig")))
        except UnicodeDecodeError:
            raise InputError(f"{path.name} is not UTF-8 text.") from None
    sources.sort(key=lambda pair: pair[0])
    lessons = course_.split_lessons(sources)
    client = client_of(request, services)

    def synthesize(synth_request: SynthesisRequest) -> SynthesisResult:
        cached = services.synthesizer.cached(synth_request)
        if cached is not None:
            return cached
        with services.limits.synthesis.hold(client):
            return services.synthesizer.run(synth_request)

    def tell(position: int, total: int, lesson: course_.Lesson) -> None:
        if progress is not None:
            desc = (f"Lesson {position + 1} of {total}: {lesson.title}" if position < total
                    else "Packing the zip…")
            progress(position / max(total, 1), desc=desc)

    outcomes = course_.make_course(lessons, options, synthesize, progress=tell)
    data = course_.course_zip(outcomes, options)
    path = write_downloads(course_.slug(options.course or "course"), {"zip": data})[0]
    return path, course_summary(outcomes)


def _original_name(path: Path) -> str:
    """Gradio keeps an upload's own name as the file name inside its temp folder."""
    return path.name


def course_summary(outcomes: list[course_.LessonOutcome]) -> str:
    made = [o for o in outcomes if o.ok]
    minutes = sum(o.duration_s for o in made) / 60
    lines = [f"**{len(made)} of {len(outcomes)} lessons** made · {minutes:.1f} min of audio",
             "", "| # | Lesson | Length | Chapters | Loudness |", "|---|---|---|---|---|"]
    for o in outcomes:
        title = html.escape(o.lesson.title).replace("|", "\\|")
        if o.ok:
            # The minus sign as the result line above writes it ("−16.0 LUFS").
            loud = (f"{o.loudness_lufs:.1f} LUFS".replace("-", "−")
                    if o.loudness_lufs is not None else "as made")
            lines.append(f"| {o.lesson.number} | {title} | {readalong.clock(o.duration_s)} | "
                         f"{o.chapters} | {loud} |")
        else:
            error = html.escape(o.error).replace("|", "\\|")
            lines.append(f"| {o.lesson.number} | {title} | ⚠️ not made: {error} | | |")
    return "\n".join(lines)


@dataclass
class SynthesisWidgets:
    """The Synthesize tab's own choices that a course reuses."""

    engine: gr.Dropdown
    voice: gr.Dropdown
    speed: gr.Slider
    session_lexicon: gr.State


def on_course(services: Services, files, engine, voice, speed, fmt, own_rows, title, teacher,
              course, loud, name0, name1, name2, voice0, voice1, voice2, request: gr.Request,
              progress=gr.Progress()):  # noqa: B008 - Gradio injects it
    details = lesson_settings([title, teacher, course, loud, name0, name1, name2,
                               voice0, voice1, voice2])
    options = course_.CourseOptions(
        engine=one_choice(engine, "engine"), voice=one_choice(voice, "voice"),
        speed=float(speed), fmt=one_choice(fmt, "format") or "mp3",
        loudness_lufs=details.loudness_lufs, speakers=details.speakers,
        teacher=details.tags.artist, course=details.tags.album,
        lexicon=Lexicons(services).effective(own_rows))
    path, summary = make_course_zip(services, files, options, request, progress=progress)
    return gr.File(value=path, visible=True), summary


def build_course_panel(services: Services, lesson: LessonWidgets,
                       synth: SynthesisWidgets) -> None:
    """The accordion and its event."""
    with gr.Accordion("A whole course at once", open=False, elem_id="course"):
        gr.Markdown("Upload the lessons as `.txt` or `.md` files (one per file, or several in one "
                    "file separated by a line of `---`). Each becomes a tagged audio file with "
                    "chapters, SRT/VTT subtitles and a read-along page, using the voice, speed, "
                    "speakers, loudness, teacher and course chosen above; you get one zip with an "
                    "index page.")
        with gr.Row():
            uploads = gr.File(file_count="multiple", file_types=COURSE_FILE_TYPES,
                              label="Lesson files", elem_id="course-files")
            with gr.Column():
                course_fmt = gr.Radio(["mp3", "ogg", "wav"], value="mp3", label="Audio format",
                                      elem_id="course-format")
                make = gr.Button("Make the course zip", variant="primary", elem_id="course-run")
        course_file = gr.File(label="Course zip", interactive=False, visible=False,
                              elem_id="course-zip")
        course_info = gr.Markdown(elem_id="course-summary")
    make.click(bind(services, on_course),
               [uploads, synth.engine, synth.voice, synth.speed, course_fmt,
                synth.session_lexicon, *lesson.inputs()],
               [course_file, course_info], concurrency_limit=services.settings.concurrency,
               concurrency_id="synthesis", api_visibility=PAGE_ONLY)
