"""Lesson production on the Synthesize tab (issue 12): the "Lesson details" accordion (tags,
loudness, speakers) and what a synthesis leaves for the lesson tools: tagged files, chapter
jump links and the session state of the last lesson.

The check, the read-along page and the course are in ``webapp.components.lesson_tools``; the
work is in ``webapp.pipeline.lesson``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from webapp.components.downloads import write_downloads
from webapp.components.inputs import one_choice
from webapp.pipeline.errors import InputError
from webapp.pipeline.lesson import course as course_
from webapp.pipeline.lesson import readalong
from webapp.pipeline.lesson.loudness import DEFAULT_TARGET, TARGETS
from webapp.pipeline.lesson.tags import Tags, tag_file
from webapp.pipeline.subtitles import Chapter, to_srt, to_vtt, to_vtt_chapters
from webapp.pipeline.synthesis import SynthesisResult
from webapp.services import Services

SPEAKER_ROWS = 3
LOUDNESS_OFF = "Off (keep the voice's own level)"


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
