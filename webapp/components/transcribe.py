"""Transcribe tab: live microphone captions and file transcription with subtitle downloads.

Layout and events; the file handler is ``on_transcribe``, the API and MCP tool
``/transcribe``. Live captions are a panel of plain HTML that ``components/captions.js``
drives (microphone -> AudioWorklet -> the app's WebSocket ``webapp/live_captions.py``), because
Gradio's streaming events drop microphone chunks while a handler is busy (issue 8); committed
text and the pending hypothesis are rendered distinctly. Files: decoded with limits,
transcribed with progress, offered as TXT/SRT/VTT.
"""

from __future__ import annotations

import logging

import gradio as gr

from webapp.components import mcp_tools
from webapp.components.downloads import write_downloads
from webapp.components.events import PAGE_ONLY, UserError, bind, client_of
from webapp.components.inputs import one_choice
from webapp.pipeline.stt.base import TranscribeOptions
from webapp.pipeline.stt.files import (
    load_for_transcription,
    render,
    transcribe_audio,
)
from webapp.services import Services

logger = logging.getLogger(__name__)

# The live panel is plain HTML driven by components/captions.js (AudioWorklet -> WebSocket ->
# webapp/live_captions.py), not a Gradio streaming event: see that module for why.
LIVE_PANEL = """
<div id="live-panel" data-recording="0">
  <div class="live-controls">
    <button id="live-record" class="lg primary live-button" type="button">&#9679; Record</button>
    <button id="live-stop" class="lg secondary live-button" type="button" disabled>&#9632; Stop</button>
    <span id="live-level" title="Microphone level"><span></span></span>
  </div>
  <div id="live-state" data-kind="info" aria-live="polite">Press Record and allow the
    microphone. Captions appear while you speak.</div>
  <div id="live-share" hidden>
    <a id="live-view-link" class="live-link" target="_blank" rel="noopener">Open the caption
      view</a> · <a id="live-overlay-link" class="live-link" target="_blank"
      rel="noopener">overlay for streaming</a> ·
    <button id="live-copy-link" type="button" class="live-link-button">copy link</button>
    <div class="live-share-hint">Large captions for a projector, a phone or OBS; anyone with
      the link can follow this recording, read-only.</div>
  </div>
  <div id="live-transcript" hidden>Transcript with the times it was spoken:
    <a id="live-transcript-txt" download>TXT</a> ·
    <a id="live-transcript-srt" download>SRT</a> ·
    <a id="live-transcript-vtt" download>VTT</a>
  </div>
</div>
"""
CAPTIONS_BOX = """
<div id="live-captions-text" class="captions-box" aria-live="polite">
  <span class="pending-text">Captions appear here while you speak.</span>
</div>
"""


def _write_outputs(texts: dict[str, str]) -> list[str]:
    return write_downloads("transcript", texts)


def build_transcribe_tab(services: Services) -> None:
    stt = services.stt
    if stt is None:
        gr.Markdown("Speech recognition is not available in this build.")
        return
    engines = stt.engines()
    models = stt.models()

    gr.Markdown(
        "### Live captions\n"
        "Press **Record** and speak: black words are final, grey words may still change. "
        "Press **Stop** when you are done; each recording starts a fresh transcript. "
        "While it records, **Open the caption view** shows the captions full screen for a "
        "room (or as an overlay for streaming software); after Stop, the transcript is "
        "offered as TXT, SRT and VTT."
    )
    with gr.Row():
        with gr.Column(scale=2):
            gr.HTML(LIVE_PANEL, elem_id="live-mic")
            vocabulary = gr.Textbox(label="Names and terms to expect (optional)",
                                    placeholder="e.g. Dashwood, photosynthesis, Pythagoras",
                                    max_lines=2, max_length=500, elem_id="stt-vocabulary")
            with gr.Accordion("Caption options", open=False):
                gr.Checkbox(False, label="Reduce background noise (takes effect at the next "
                            "Record)", elem_id="live-denoise")
        with gr.Column(scale=3):
            gr.Markdown("**Captions**")
            gr.HTML(CAPTIONS_BOX, elem_id="live-captions")

    gr.Markdown("### Transcribe a recording\nUpload or record a lesson (wav, flac, mp3, ogg, m4a; "
                f"up to {stt.stt.max_transcribe_s / 60:.0f} minutes) and download subtitles.")
    with gr.Row():
        with gr.Column(scale=2):
            file_audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                  label="Recording", elem_id="file-audio")
            with gr.Row():
                engine = gr.Dropdown(engines, value=stt.default_engine, label="Engine",
                                     elem_id="stt-engine")
                model = gr.Dropdown(models, value=stt.default_model, label="Model",
                                    elem_id="stt-model")
            # On by default: it never hurt clean speech and helped every noisy set in
            # bench/stt.py (e.g. pink noise at 5 dB SNR: 9.9 % -> 5.6 % WER); level
            # normalisation on top did not help further, so it stays off.
            file_denoise = gr.Checkbox(True, label="Reduce background noise",
                                       elem_id="file-denoise")
            run = gr.Button("Transcribe", variant="primary", elem_id="file-transcribe")
        with gr.Column(scale=3):
            transcript = gr.Textbox(label="Transcript", lines=8, interactive=False,
                                    elem_id="file-transcript")
            file_status = gr.Markdown("", elem_id="file-status")
            downloads = gr.File(label="Downloads (.txt, .srt, .vtt)", file_count="multiple",
                                interactive=False, elem_id="file-downloads")
            words = gr.Dataframe(headers=["start (s)", "end (s)", "word", "confidence"],
                                 label="Word timings", interactive=False, max_height=240,
                                 elem_id="file-words")

    # The page's event is not the API: programs and assistants call /transcribe below.
    run.click(bind(services, on_transcribe),
              inputs=[file_audio, engine, model, vocabulary, file_denoise],
              outputs=[transcript, file_status, downloads, words],
              concurrency_limit=1, concurrency_id="file-transcription",
              api_visibility=PAGE_ONLY)
    add_transcribe_tool(services)


def on_transcribe(services: Services, path, engine_name, model_name, vocabulary_text,
                  denoise_value, request: gr.Request,
                  progress=gr.Progress()):  # noqa: B008 - Gradio injects it
    if not path:
        raise gr.Error("Upload or record a file first.")
    stt = services.stt
    progress(0.0, desc="Decoding audio")
    audio = load_for_transcription(path, stt.stt.max_transcribe_s)
    progress(0.05, desc="Waiting for the recogniser")
    engine_name, model_name = one_choice(engine_name, "engine"), one_choice(model_name, "model")
    with services.limits.transcription.hold(client_of(request, services)):
        recogniser = stt.get(engine_name, model_name)
        vocabulary_text = vocabulary_text if isinstance(vocabulary_text, str) else ""
        options = TranscribeOptions(initial_prompt=vocabulary_text[:500].strip() or None,
                                    denoise=bool(denoise_value))
        result = transcribe_audio(
            recogniser, audio, options,
            progress=lambda f: progress(0.1 + 0.9 * f, desc="Transcribing"),
            original_rate_hz=_original_rate(path),
        )
    t = result.transcript
    for warning in result.warnings:
        gr.Warning(warning)
    files = _write_outputs({fmt: render(t, fmt) for fmt in ("txt", "srt", "vtt")}) \
        if t.text else None
    rows = [[round(w.start_s, 2), round(w.end_s, 2), w.text.strip(), round(w.probability, 2)]
            for w in t.words]
    status = (f"{t.duration_s:.1f} s of audio transcribed in {result.compute_s:.1f} s "
              f"(real-time factor {result.rtf:.2f}) · {t.engine} / {t.model}")
    return t.text, status, files, rows


def add_transcribe_tool(services: Services) -> None:
    """``/transcribe``: the tab's file transcription for programs (``gradio_client``) and
    assistants (MCP tool); see ``webapp.components.mcp_tools``."""
    settings = services.settings
    stt = services.stt

    def work(path: str, options: TranscribeOptions):
        # Decoding counts as the job's work too: unqueued calls have no other bound on it.
        audio = load_for_transcription(path, stt.stt.max_transcribe_s)
        return transcribe_audio(stt.get(), audio, options, original_rate_hz=_original_rate(path))

    async def transcribe(audio: str, vocabulary: str = "", denoise: bool = True,
                         request: gr.Request = None):
        """Transcribe English speech in a recording (wav, flac, mp3, ogg, m4a; up to {max_minutes:.0f} minutes) to text with timed segments, offline with Whisper {model}.

        Args:
            audio: The recording: a data URL with the file in base64 (data:audio/wav;base64,...), or a public http(s) URL of the file.
            vocabulary: Optional names and terms to expect, e.g. "Dashwood, photosynthesis" (helps with spelling them).
            denoise: Reduce background noise first (default true; it helps noisy recordings and does not hurt clean ones).

        Returns:
            The transcript as plain text, and JSON details: language, duration_s, engine, model, segments (start_s, end_s, text), warnings.
        """
        if not audio:
            raise UserError("Give the recording to transcribe (an audio file).")
        with mcp_tools.refusals(settings):
            vocabulary = vocabulary if isinstance(vocabulary, str) else ""
            options = TranscribeOptions(initial_prompt=vocabulary[:500].strip() or None,
                                        denoise=bool(denoise))
            result = await mcp_tools.in_slot(services.limits.transcription,
                                             client_of(request, services), work, audio, options)
        t = result.transcript
        details = {"language": t.language, "duration_s": round(t.duration_s, 3),
                   "engine": t.engine, "model": t.model,
                   "segments": [{"start_s": round(s.start_s, 2), "end_s": round(s.end_s, 2),
                                 "text": s.text.strip()} for s in t.segments],
                   "warnings": list(result.warnings)}
        return t.text, mcp_tools.as_json(details)

    mcp_tools.describe(transcribe, max_minutes=stt.stt.max_transcribe_s / 60,
                       model=stt.default_model)
    with mcp_tools.hidden():
        audio = gr.Audio(type="filepath", sources=["upload"], label="audio")
        vocabulary = gr.Textbox("", label="vocabulary")
        denoise = gr.Checkbox(True, label="denoise")
        text = gr.Textbox(label="transcript")
        details = gr.Textbox(label="details (JSON)")
    mcp_tools.register(transcribe, [audio, vocabulary, denoise], [text, details])


def _original_rate(path: str) -> int | None:
    import soundfile as sf

    try:
        return int(sf.info(path).samplerate)
    except Exception:  # noqa: BLE001 - not a libsndfile format
        return None
