"""Voice picker extras (issue 12): a short preview, each voice's language, quality and licence,
and online, the voices installed since start-up in every page's list.

The preview goes through the synthesizer (cache and synthesis slots like the Synthesize
button). Installing voices from the Piper catalogue is ``voice_installer``; what the panel says
about a voice, ``voice_info``.
"""

from __future__ import annotations

import logging

import gradio as gr
from gradio.context import Context

from webapp.components.downloads import write_downloads
from webapp.components.events import PAGE_ONLY, bind, client_of
from webapp.components.inputs import one_choice
from webapp.components.voice_info import find_voice, sample_text, voice_line, voice_options
from webapp.components.voice_installer import build_installer
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.services import Services

logger = logging.getLogger(__name__)


def on_voice(services: Services, engine_name, voice_id):
    try:
        found = find_voice(services, one_choice(engine_name, "engine"), one_choice(voice_id, "voice"))
    except InputError:
        found = None
    # A sample belongs to the voice it was made with.
    return voice_line(found), gr.Audio(value=None, visible=False)


def on_preview(services: Services, engine_name, voice_id, request: gr.Request):
    engine_name = one_choice(engine_name, "engine") or services.settings.default_engine
    voice_id = one_choice(voice_id, "voice")
    if not voice_id:
        raise InputError("Choose a voice first, then press Preview.")
    found = find_voice(services, engine_name, voice_id)
    synth_request = SynthesisRequest(text=sample_text(found), engine=engine_name,
                                     voice=voice_id, fmt="wav")
    # A sample heard before comes from the cache without waiting for a voice.
    result = services.synthesizer.cached(synth_request)
    if result is None:
        with services.limits.synthesis.hold(client_of(request, services)):
            result = services.synthesizer.run(synth_request)
    path = write_downloads("voice-sample", {"wav": result.data})[0]
    label = found.description if found and found.description else voice_id
    return gr.Audio(value=path, visible=True, label=f"Sample: {label}")


def on_load(services: Services, engine_name, voice_id):
    """Online, voices are installed while the app runs (here, or on first use by name through
    the API), and a page's choices are fixed when the app starts: each page load lists the
    voices installed now."""
    try:
        engine_name = one_choice(engine_name, "engine")
        choices = voice_options(services, engine_name)
    except PipelineError:
        return gr.skip()
    return gr.Dropdown(choices=choices, value=voice_id)


def build_voice_panel(services: Services, engine: gr.Dropdown, voice: gr.Dropdown) -> None:
    """Widgets under the Synthesize tab's voice picker (called inside its column)."""
    settings = services.settings
    info = gr.Markdown(voice_line(find_voice(services, engine.value, voice.value)), elem_id="voice-info")
    preview = gr.Button("▶ Preview this voice", size="sm", elem_id="voice-preview")
    sample = gr.Audio(label="Voice sample", type="filepath", interactive=False, autoplay=True,
                      visible=False, elem_id="voice-sample")
    voice.change(bind(services, on_voice), [engine, voice], [info, sample], queue=False,
                 api_visibility=PAGE_ONLY)
    preview.click(bind(services, on_preview), [engine, voice], sample,
                  concurrency_limit=settings.concurrency, concurrency_id="synthesis",
                  api_visibility=PAGE_ONLY)
    if not settings.offline and Context.root_block is not None:
        Context.root_block.load(bind(services, on_load), [engine, voice], voice, queue=False,
                                api_visibility=PAGE_ONLY)
    build_installer(services, engine, voice)
