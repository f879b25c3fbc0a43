"""Under the Synthesize tab's player (issue 12): the round-trip check of the last lesson (speech
recognition listens and flags sentences that did not come out as written) and its read-along page.

The work is in ``webapp.pipeline.lesson``; the handlers (``on_*``) are functions of ``Services``
and widget values, bound in ``build_lesson_tools`` (``webapp.components.events``). The last
synthesis reaches them as session state (``lesson.lesson_state``). A whole course at once is
``course_panel``.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webapp.components.downloads import write_downloads
from webapp.components.events import PAGE_ONLY, bind, client_of
from webapp.pipeline.audio import load
from webapp.pipeline.errors import InputError
from webapp.pipeline.lesson import course as course_
from webapp.pipeline.lesson import readalong, roundtrip
from webapp.pipeline.subtitles import Chapter, Cue
from webapp.services import Services


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


def on_check(services: Services, kept, request: gr.Request, progress=gr.Progress()):  # noqa: B008
    progress(0, desc="Listening to the lesson…")
    summary, rows, kept = run_check(services, kept, request,
                                    progress=lambda f: progress(f, desc="Listening to the lesson…"))
    # The table only when there is something to look at (an empty one reads as "broken").
    return summary, gr.Dataframe(value=rows, visible=bool(rows)), kept


def on_share(services: Services, kept):
    return gr.File(value=readalong_file(kept), visible=True)


def on_new_lesson(kept):
    """A new synthesis (its state has no check words yet) makes the last check and read-along
    page stale: clear them rather than show another lesson's results."""
    if kept and kept.get("words") is not None:  # the check itself stored its words
        return gr.skip(), gr.skip(), gr.skip()
    return "", gr.Dataframe(value=[], visible=False), gr.File(value=None, visible=False)


def build_lesson_tools(services: Services, state: gr.State) -> None:
    """The "Check and share" accordion under the player and its events (``state``: the last
    synthesis, ``lesson.lesson_state``)."""
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

    state.change(on_new_lesson, state, [check_summary, flagged, page_file], queue=False,
                 show_progress="hidden", api_visibility=PAGE_ONLY)
    check.click(bind(services, on_check), state, [check_summary, flagged, state],
                concurrency_limit=1, concurrency_id="lesson-check", api_visibility=PAGE_ONLY)
    share.click(bind(services, on_share), state, page_file, concurrency_limit=2,
                api_visibility=PAGE_ONLY)
