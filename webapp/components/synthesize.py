"""Synthesize tab: lesson text -> live playback, a player, downloads (audio + subtitles), metrics.

Layout and events only; the handlers are in ``synthesize_handlers``, the panels in their own
modules (voice picker extras ``voices``, lesson details ``lesson``, check and read-along
``lesson_tools``, ``course_panel``, ``lexicon_panel``, ``cache_panel``), the API and MCP tools in
``synthesize_tools``. A click first runs a line of JavaScript that makes a random stream token
and starts the page's Web Audio player on it (``player.js``); the Python handler publishes each
chunk under that token while it synthesises, then fills the player and the downloads.
"""

from __future__ import annotations

import gradio as gr

from webapp.components import lesson as lesson_ui
from webapp.components import synthesize_handlers as handlers
from webapp.components.cache_panel import build_cache_panel
from webapp.components.course_panel import SynthesisWidgets, build_course_panel
from webapp.components.events import PAGE_ONLY, bind
from webapp.components.lesson_tools import build_lesson_tools
from webapp.components.lexicon_panel import build_lexicon_panel, safe_preview
from webapp.components.synthesize_tools import add_synthesize_tools
from webapp.components.voices import build_voice_panel
from webapp.pipeline.tts.registry import ENGINE_LABELS
from webapp.services import Services

EXAMPLE = (
    "Photosynthesis turns light into chemical energy. Plants store it as sugar.\n\n"
    "Water, H2O, enters through the roots; carbon dioxide enters through the leaves."
)

SESSION_TTL_S = 6 * 3600
# The click asks the server for a stream token (the player starts on it at once) and passes it
# to the handler, which claims it for this synthesis. The arguments are the click's inputs.
START_PLAYER_JS = """
async (text, engine, voice, speed, fmt, reference, token, ...rest) => {
  let t = "";
  if (window.speechStudio && text && text.trim()) { t = await window.speechStudio.start(); }
  return [text, engine, voice, speed, fmt, reference, t, ...rest];
}
"""


def build_synthesize_tab(services: Services) -> None:
    settings = services.settings
    engines = [(ENGINE_LABELS.get(n, n), n) for n in services.tts.names()]
    default_engine = settings.default_engine if settings.default_engine in services.tts.names() else engines[0][1]
    voice_choices, default_voice = handlers.voice_choices(services, default_engine)

    gr.Markdown(
        "Paste a lesson, choose a voice and press **Synthesize**. Playback starts with the first "
        "sentence; the finished file and sentence-timed subtitles (SRT/VTT for videos) appear below. "
        "Sentences you synthesised before come straight from the cache."
    )
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(
                label=f"Lesson text (up to {settings.max_text_chars:,} characters)",
                value=EXAMPLE, lines=10, max_lines=30, elem_id="tts-text",
                placeholder="Type or paste the text to read aloud…",
            )
            preview = gr.Textbox(
                label="What the voice will say (numbers, units and formulas spelled out)",
                lines=3, max_lines=12, interactive=False, elem_id="tts-preview",
                value=safe_preview(services, EXAMPLE),
            )
            lesson = lesson_ui.build_lesson_settings(services, voice_choices)
        with gr.Column(scale=2):
            engine = gr.Dropdown(engines, value=default_engine, label="Engine", elem_id="tts-engine")
            voice = gr.Dropdown(voice_choices, value=default_voice, label="Voice",
                                # A voice installed after the page was built (voices.py) is
                                # not in the build-time choices Gradio checks against; unknown
                                # ids are refused by the synthesizer with a clear message.
                                elem_id="tts-voice", allow_custom_value=True)
            build_voice_panel(services, engine, voice)
            speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed (1.0 = normal)",
                              elem_id="tts-speed")
            fmt = gr.Radio(["wav", "mp3", "ogg"], value="wav", label="Download format",
                           elem_id="tts-format")
            # Only for a voice that clones (Coqui XTTS): tests/test_tts_coqui.py runs the
            # adapter on a tiny model, not on the real XTTS weights.
            clones, experimental = handlers.cloning(services, default_engine, default_voice)
            with gr.Accordion(handlers.cloning_label(experimental), open=False,
                              elem_id="tts-cloning", visible=clones) as cloning:
                reference = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                     label="A clean 6–30 s clip of the voice to imitate",
                                     elem_id="tts-reference")
            with gr.Row():
                run = gr.Button("Synthesize", variant="primary", elem_id="tts-run")
                stop = gr.Button("Stop playback", elem_id="tts-stop")
    gr.HTML('<div id="live-status" aria-live="polite" style="min-height:1.5em"></div>')
    token = gr.Textbox(visible=False, elem_id="tts-token")
    metrics = gr.Markdown(elem_id="tts-metrics")
    with gr.Row():
        with gr.Column():
            player = gr.Audio(label="Result (replay)", type="filepath", interactive=False,
                              elem_id="tts-audio")
            chapters = gr.HTML(elem_id="tts-chapters")
        downloads = gr.File(label="Downloads: audio, subtitles (.srt, .vtt), chapters",
                            file_count="multiple", interactive=False, elem_id="tts-downloads")
    # Per-visitor state lives in the session (Gradio drops it when the page is closed, and
    # after SESSION_TTL_S at the latest), never in module globals.
    lesson_state = gr.State(None, time_to_live=SESSION_TTL_S)
    session_lexicon = gr.State([], time_to_live=SESSION_TTL_S)
    session_stats = gr.State(None, time_to_live=SESSION_TTL_S)
    build_lesson_tools(services, lesson_state)
    build_course_panel(services, lesson, SynthesisWidgets(engine, voice, speed, session_lexicon))
    build_lexicon_panel(services, text, preview, session_lexicon)
    cache_info = build_cache_panel(services, session_stats)

    # The page's events are not the API (they take a player token and session state):
    # programs and assistants call /synthesize and /normalize (synthesize_tools).
    engine.change(bind(services, handlers.on_engine), engine, voice, queue=False,
                  api_visibility=PAGE_ONLY)
    on_preview = bind(services, handlers.on_preview)
    preview_inputs = [text, session_lexicon, *lesson.inputs()]
    for widget in (text, *lesson.speaker_names, *lesson.speaker_voices):
        widget.change(on_preview, preview_inputs, preview, trigger_mode="always_last",
                      show_progress="hidden", concurrency_limit=4, api_visibility=PAGE_ONLY)
    run.click(
        bind(services, handlers.on_synthesize),
        [text, engine, voice, speed, fmt, reference, token, session_lexicon, session_stats,
         *lesson.inputs()],
        [player, downloads, metrics, cache_info, session_stats, chapters, lesson_state],
        js=START_PLAYER_JS,
        concurrency_limit=settings.concurrency,
        concurrency_id="synthesis",
        api_visibility=PAGE_ONLY,
    )
    stop.click(None, None, None, js="() => { window.speechStudio && window.speechStudio.stop(); }")
    voice.change(bind(services, handlers.on_voice_cloning), [engine, voice], [cloning, reference],
                 queue=False, show_progress="hidden", api_visibility=PAGE_ONLY)
    add_synthesize_tools(services)
