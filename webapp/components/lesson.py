"""Lesson production on the Synthesize tab (issue 12): lesson details and loudness, speakers,
chapters with jump links, the round-trip check, the read-along page and a whole course at once.

Layout and events only; the work is in ``webapp.pipeline.lesson``. Each handler is a named
function of ``Services`` and widget values; failures become one sentence (``refuse``).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from webapp.components.downloads import write_downloads
from webapp.components.inputs import one_choice
from webapp.limits import client_key
from webapp.messages import user_message
from webapp.pipeline.audio import load
from webapp.pipeline.errors import InputError
from webapp.pipeline.lesson import course as course_
from webapp.pipeline.lesson import readalong, roundtrip
from webapp.pipeline.lesson.loudness import DEFAULT_TARGET, TARGETS
from webapp.pipeline.lesson.tags import Tags, tag_file
from webapp.pipeline.subtitles import Chapter, Cue, to_srt, to_vtt, to_vtt_chapters
from webapp.pipeline.synthesis import SynthesisRequest, SynthesisResult
from webapp.services import Services

logger = logging.getLogger(__name__)

SPEAKER_ROWS = 3
LOUDNESS_OFF = "Off (keep the voice's own level)"
COURSE_FILE_TYPES = [".txt", ".md"]
MAX_COURSE_FILE_BYTES = 2_000_000


def refuse(exc: Exception, services: Services) -> gr.Error:
    """Any failure as the one sentence a user may see (the single PipelineError adapter)."""
    return gr.Error(user_message(exc, public=services.settings.public))


def client_of(request: gr.Request | None, services: Services) -> str:
    return client_key(request.client.host if request and request.client else None,
                      request.headers if request else None, services.settings.trust_proxy)


@dataclass
class LessonWidgets:
    """The tab's lesson settings, passed to the synthesis handler as ``values()``."""

    title: gr.Textbox
    teacher: gr.Textbox
    course: gr.Textbox
    loudness: gr.Dropdown
    speaker_names: list[gr.Textbox]
    speaker_voices: list[gr.Dropdown]

    def inputs(self) -> list:
        return [self.title, self.teacher, self.course, self.loudness,
                *self.speaker_names, *self.speaker_voices]


@dataclass(frozen=True)
class LessonSettings:
    tags: Tags
    loudness_lufs: float | None
    speakers: tuple[tuple[str, str], ...]


def lesson_settings(values: list) -> LessonSettings:
    """Widget values (in ``LessonWidgets.inputs()`` order) -> settings."""
    title, teacher, course, loud = (values + [None] * 4)[:4]
    names = values[4:4 + SPEAKER_ROWS]
    voices = values[4 + SPEAKER_ROWS:4 + 2 * SPEAKER_ROWS]
    speakers = tuple((str(n or "").strip(), str(one_choice(v, "voice") or "").strip())
                     for n, v in zip(names, voices, strict=False) if str(n or "").strip())
    return LessonSettings(
        tags=Tags(title=_text(title), artist=_text(teacher), album=_text(course)),
        loudness_lufs=loudness_value(loud), speakers=speakers)


def _text(value, limit: int = 200) -> str:
    return " ".join(str(value or "").split())[:limit]


def loudness_value(choice) -> float | None:
    choice = one_choice(choice, "loudness")
    if choice in (None, ""):
        return DEFAULT_TARGET
    if choice == LOUDNESS_OFF:
        return None
    for target, label in TARGETS.items():
        if choice == label:
            return target
    raise InputError(f"Unknown loudness choice '{choice}'.")


def build_lesson_settings(services: Services, voice_choices: list[tuple[str, str]]) -> LessonWidgets:
    """The "Lesson details" accordion: tags, loudness, speakers."""
    with gr.Accordion("Lesson details: title, loudness, chapters, several voices", open=False,
                      elem_id="lesson-details"):
        gr.Markdown(
            "**Chapters:** start a line with `# ` (or `## `) to begin a chapter; the voice "
            "announces its title and pauses. Without headings, each blank-line-separated "
            "section is a chapter. Chapters appear as jump links under the player and inside "
            "the MP3/OGG/WAV file.\n\n"
            "**Several voices:** name the speakers below, then start their lines with the name "
            "and a colon (`Teacher: What is H2O?`), or with a voice in brackets (`[en-gb] …`).")
        with gr.Row():
            title = gr.Textbox(label="Lesson title (file tag)", max_lines=1, elem_id="lesson-title")
            teacher = gr.Textbox(label="Teacher (artist tag)", max_lines=1, elem_id="lesson-teacher")
            course = gr.Textbox(label="Course (album tag)", max_lines=1, elem_id="lesson-course")
        labels = [TARGETS[DEFAULT_TARGET], *(label for t, label in TARGETS.items()
                                             if t != DEFAULT_TARGET), LOUDNESS_OFF]
        loud = gr.Dropdown(labels, value=TARGETS[DEFAULT_TARGET], elem_id="lesson-loudness",
                           label="Loudness (every lesson equally loud; EBU R128, true peak ≤ −1.5 dBTP)")
        all_voices = _all_voices(services) or voice_choices
        names, voices = [], []
        defaults = [("Teacher", None), ("Student", _second_voice(services)), ("", None)]
        for row in range(SPEAKER_ROWS):
            name_default, voice_default = defaults[row] if row < len(defaults) else ("", None)
            with gr.Row():
                # The voice gets the wider column: its labels are long ("Joe · English (United
                # States) · medium (bundled) · piper") and were cut off at equal widths.
                names.append(gr.Textbox(name_default, label=f"Speaker {row + 1} name",
                                        max_lines=1, elem_id=f"speaker-name-{row}", scale=1))
                voices.append(gr.Dropdown(all_voices, label=f"Speaker {row + 1} voice", scale=2,
                                          value=voice_default or (all_voices[0][1] if all_voices else None),
                                          elem_id=f"speaker-voice-{row}",
                                          allow_custom_value=True))  # voices installed later
    return LessonWidgets(title, teacher, course, loud, names, voices)


def _all_voices(services: Services) -> list[tuple[str, str]]:
    """Every installed voice of every engine, labelled with its engine."""
    out = []
    for engine in services.tts.names():
        for v in services.tts.voices(engine):
            out.append((f"{v.description or v.id} · {engine}", v.id))
    return out


def _second_voice(services: Services) -> str | None:
    """A voice on this machine that differs from the default, for the example student: another
    Piper voice, else eSpeak NG's. Never one that would download on first use."""
    default = services.settings.default_voice
    for engine in ("piper", "espeak"):
        if engine in services.tts.names():
            english = [v.id for v in services.tts.voices(engine)
                       if v.id != default and v.language.lower().startswith("en")]
            for voice_id in sorted(english, key=lambda v: v not in ("en-gb", "en-us")):
                return voice_id
    return None


# -- after a synthesis ------------------------------------------------------------------------
def lesson_state(result: SynthesisResult, audio_path: str, tags: Tags) -> dict:
    """What the page keeps of the last synthesis (server-side session state) for the check and
    the read-along page."""
    return {"audio": audio_path, "fmt": result.fmt, "title": tags.title,
            "cues": [[c.start_s, c.end_s, c.text] for c in result.cues],
            "spoken": list(result.spoken),
            "chapters": [[c.start_s, c.end_s, c.title] for c in result.chapters],
            "words": None}


def lesson_files(result: SynthesisResult, settings: LessonSettings) -> tuple[str, list[str]]:
    """The tagged audio and its subtitle and chapter files, written for download."""
    files: dict[str, bytes | str] = {
        result.fmt: tag_file(result.data, result.fmt, settings.tags, result.chapters,
                             result.loudness),
        "srt": to_srt(result.cues), "vtt": to_vtt(result.cues)}
    if result.chapters:
        files["chapters.vtt"] = to_vtt_chapters(result.chapters)
    paths = write_downloads(course_.slug(settings.tags.title or "lesson"), files)
    return paths[0], paths


def chapters_html(chapters: list[Chapter]) -> str:
    """Jump links for the replay player (``lesson.js`` seeks on click)."""
    if not chapters:
        return ""
    items = "".join(
        f'<li><a href="#" data-seek="{c.start_s:.3f}">'
        f'<span class="chapter-time">{readalong.clock(c.start_s)}</span> {html.escape(c.title)}</a></li>'
        for c in chapters)
    return f'<nav aria-label="Chapters"><strong>Chapters</strong><ol class="chapters">{items}</ol></nav>'


def _cues(state: dict) -> list[Cue]:
    return [Cue(float(a), float(b), str(t)) for a, b, t in state["cues"]]


def _chapters(state: dict) -> list[Chapter]:
    return [Chapter(float(a), float(b), str(t)) for a, b, t in state["chapters"]]


def run_check(services: Services, state: dict | None, request: gr.Request | None,
              progress=None) -> tuple[str, list[list], dict]:
    """The round-trip check of the last synthesis: (summary, flagged rows, new state)."""
    if not state:
        raise InputError("Synthesize a lesson first, then check it.")
    if services.stt is None:
        raise InputError("Speech recognition is not available on this server.")
    audio = load(state["audio"])
    with services.limits.transcription.hold(client_of(request, services)):
        report = roundtrip.check(audio, _cues(state), state["spoken"], services.stt.get(),
                                 progress=progress)
    flagged = [s for s in report.sentences if s.flagged]
    rows = [[s.index + 1, readalong.clock(s.start_s), s.written, s.heard, f"{s.wer:.0%}"] for s in flagged]
    if flagged:
        summary = (f"⚠️ **{len(flagged)} of {len(report.sentences)} sentences** may have come out "
                   "wrong (listed below). Fix them with the pronunciation lexicon, then synthesize "
                   "again.")
    else:
        summary = (f"✅ All {len(report.sentences)} sentences came out as written (the recogniser "
                   "heard what the voice was asked to say).")
    summary += (f"\n\nWord error rate of the whole lesson: **{report.wer:.1%}** · checked "
                f"{report.audio_s:.0f} s of audio in {report.compute_s:.1f} s")
    state = {**state, "words": [[w.text, w.start_s, w.end_s] for w in report.words]}
    return summary, rows, state


def readalong_file(state: dict | None) -> str:
    """The read-along page of the last synthesis (word highlighting after a check)."""
    if not state:
        raise InputError("Synthesize a lesson first, then make its read-along page.")
    from webapp.pipeline.stt.base import Word

    data = Path(state["audio"]).read_bytes()
    words = [Word(str(t), float(a), float(b)) for t, a, b in (state.get("words") or [])]
    page = readalong.render(data, course_.AUDIO_MIME.get(state["fmt"], "audio/wav"),
                            _cues(state), words=words, chapters=_chapters(state),
                            title=state.get("title") or "Lesson")
    return write_downloads(course_.slug(state.get("title") or "lesson") + "-read-along",
                           {"html": page})[0]


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
    lexicon_of: object  # session rows -> Lexicon | None


def build_lesson_tools(services: Services, state: gr.State, lesson: LessonWidgets,
                       synth: SynthesisWidgets) -> None:
    """Under the player: the round-trip check, the read-along page, a whole course."""
    undocumented = "undocumented"  # page events, not the API (session state, page widgets)
    with gr.Accordion("Check and share this lesson", open=False, elem_id="lesson-check"):
        gr.Markdown("**Check what the voice said:** speech recognition listens to the lesson and "
                    "marks sentences that did not come out as written (a misread formula, a "
                    "name). **Read-along page:** one HTML file with the audio inside; the text "
                    "lights up sentence by sentence (word by word after a check) as it plays. It "
                    "works offline: send it to students.")
        with gr.Row():
            check = gr.Button("Check what the voice said", elem_id="lesson-check-run")
            share = gr.Button("Make read-along page", elem_id="lesson-readalong-run")
        check_summary = gr.Markdown(elem_id="lesson-check-summary")
        flagged = gr.Dataframe(headers=["sentence", "at", "written", "heard", "errors"],
                               datatype=["number", "str", "str", "str", "str"],
                               interactive=False, visible=False, elem_id="lesson-check-flagged",
                               label="Sentences to look at")
        # Hidden until there is a file: an empty, dashed file box reads as an upload field.
        page_file = gr.File(label="Read-along page", interactive=False, visible=False,
                            elem_id="lesson-readalong-file")
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

    def on_check(kept, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        try:
            progress(0, desc="Listening to the lesson…")
            summary, rows, kept = run_check(
                services, kept, request,
                progress=lambda f: progress(f, desc="Listening to the lesson…"))
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
            raise refuse(exc, services) from None
        # The table only when there is something to look at (an empty one reads as "broken").
        return summary, gr.Dataframe(value=rows, visible=bool(rows)), kept

    def on_share(kept):
        try:
            return gr.File(value=readalong_file(kept), visible=True)
        except Exception as exc:  # noqa: BLE001
            raise refuse(exc, services) from None

    def on_course(files, engine, voice, speed, fmt, own_rows, title, teacher, course, loud,
                  name0, name1, name2, voice0, voice1, voice2, request: gr.Request,
                  progress=gr.Progress()):  # noqa: B008 - Gradio injects it
        try:
            details = lesson_settings([title, teacher, course, loud, name0, name1, name2,
                                       voice0, voice1, voice2])
            options = course_.CourseOptions(
                engine=one_choice(engine, "engine"), voice=one_choice(voice, "voice"),
                speed=float(speed), fmt=one_choice(fmt, "format") or "mp3",
                loudness_lufs=details.loudness_lufs, speakers=details.speakers,
                teacher=details.tags.artist, course=details.tags.album,
                lexicon=synth.lexicon_of(own_rows))
            path, summary = make_course_zip(services, files, options, request,
                                            progress=progress)
            return gr.File(value=path, visible=True), summary
        except Exception as exc:  # noqa: BLE001
            raise refuse(exc, services) from None

    def on_new_lesson(kept):
        """A new synthesis (its state has no check words yet) makes the last check and
        read-along page stale: clear them rather than show another lesson's results."""
        if kept and kept.get("words") is not None:  # the check itself stored its words
            return gr.skip(), gr.skip(), gr.skip()
        return "", gr.Dataframe(value=[], visible=False), gr.File(value=None, visible=False)

    state.change(on_new_lesson, state, [check_summary, flagged, page_file], queue=False,
                 show_progress="hidden", api_visibility=undocumented)
    check.click(on_check, state, [check_summary, flagged, state],
                concurrency_limit=1, concurrency_id="lesson-check", api_visibility=undocumented)
    share.click(on_share, state, page_file, concurrency_limit=2, api_visibility=undocumented)
    make.click(on_course,
               [uploads, synth.engine, synth.voice, synth.speed, course_fmt,
                synth.session_lexicon, *lesson.inputs()],
               [course_file, course_info], concurrency_limit=services.settings.concurrency,
               concurrency_id="synthesis", api_visibility=undocumented)
