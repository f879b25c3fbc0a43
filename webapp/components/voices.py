"""Voice picker extras: a short preview, each voice's language, quality and licence, and (when
online) installing voices from the Piper catalogue (issue 12).

Layout and events only: the preview goes through the synthesizer (cache and synthesis slots like
the Synthesize button), installing through the Piper engine's catalogue
(``webapp.pipeline.tts.catalogue``: catalogue keys only, size and checksum verified). Installing
is an operator action on a public deployment: hidden unless an operator token is configured, and
it always asks for the token when one is.
"""

from __future__ import annotations

import logging
import re

import gradio as gr
from gradio.context import Context

from webapp.api import operator_allowed
from webapp.components.downloads import write_downloads
from webapp.components.inputs import one_choice
from webapp.limits import client_key
from webapp.messages import user_message
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.pipeline.tts.base import VoiceInfo
from webapp.pipeline.tts.catalogue import credit_from_card
from webapp.services import Services

logger = logging.getLogger(__name__)

# Short, in the voice's own language where we have one (Latin script: the text cleaner warns
# about other scripts), no numbers (the normaliser spells numbers in English).
SAMPLES = {
    "en": "Hello! This is how I sound when I read your lesson aloud.",
    "de": "Hallo! So klinge ich, wenn ich deine Lektion vorlese.",
    "fr": "Bonjour ! Voici ma voix quand je lis votre leçon à voix haute.",
    "es": "¡Hola! Así sueno cuando leo tu lección en voz alta.",
    "it": "Ciao! Ecco come suono quando leggo ad alta voce la tua lezione.",
    "nl": "Hallo! Zo klink ik als ik je les voorlees.",
    "pt": "Olá! É assim que eu soo quando leio a sua lição em voz alta.",
}
_QUALITY_ORDER = {"x_low": 0, "low": 1, "medium": 2, "high": 3}
_URL = re.compile(r"https?://[^\s<>()\[\]]+")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~])")


def sample_text(voice: VoiceInfo | None) -> str:
    family = re.split(r"[-_]", (voice.language if voice else "") or "en")[0].lower()
    return SAMPLES.get(family, SAMPLES["en"])


def _escape(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def credit_markdown(text: str) -> str:
    """A licence/credit line as Markdown: its words escaped, its URLs short links."""
    out, pos = [], 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:")
        out.append(_escape(text[pos:match.start()]))
        out.append(f"[{_escape(url.split('://', 1)[1].rstrip('/'))}]({url})")
        pos = match.start() + len(url)
    out.append(_escape(text[pos:]))
    return "".join(out)


def voice_line(voice: VoiceInfo | None) -> str:
    """What the page says about the chosen voice: language, quality, licence and credit."""
    if voice is None:
        return ""
    first = [f"**{_escape(voice.language_name or voice.language)}**"]
    if voice.quality:
        first.append(f"{voice.quality.replace('_', ' ')} quality")
    licence = credit_markdown(voice.license) if voice.license else "not stated by the voice's files"
    return " · ".join(first) + f"  \nLicence and credit: {licence}"


def _find(services: Services, engine: str | None, voice_id: str | None) -> VoiceInfo | None:
    if not engine or not voice_id:
        return None
    try:
        return next((v for v in services.tts.voices(engine) if v.id == voice_id), None)
    except PipelineError:
        return None


def build_voice_panel(services: Services, engine: gr.Dropdown, voice: gr.Dropdown) -> None:
    """Widgets under the Synthesize tab's voice picker (called inside its column)."""
    settings = services.settings
    public = settings.public
    info = gr.Markdown(voice_line(_find(services, engine.value, voice.value)), elem_id="voice-info")
    preview = gr.Button("▶ Preview this voice", size="sm", elem_id="voice-preview")
    sample = gr.Audio(label="Voice sample", type="filepath", interactive=False, autoplay=True,
                      visible=False, elem_id="voice-sample")

    def fail(exc: Exception) -> gr.Error:
        return gr.Error(user_message(exc, public=public))

    def on_voice(engine_name, voice_id):
        try:
            found = _find(services, one_choice(engine_name, "engine"), one_choice(voice_id, "voice"))
        except InputError:
            found = None
        # A sample belongs to the voice it was made with.
        return voice_line(found), gr.Audio(value=None, visible=False)

    def on_preview(engine_name, voice_id, request: gr.Request):
        client = client_key(request.client.host if request and request.client else None,
                            request.headers if request else None, settings.trust_proxy)
        try:
            engine_name = one_choice(engine_name, "engine") or settings.default_engine
            voice_id = one_choice(voice_id, "voice")
            if not voice_id:
                raise InputError("Choose a voice first, then press Preview.")
            found = _find(services, engine_name, voice_id)
            synth_request = SynthesisRequest(text=sample_text(found), engine=engine_name,
                                             voice=voice_id, fmt="wav")
            # A sample heard before comes from the cache without waiting for a voice.
            result = services.synthesizer.cached(synth_request)
            if result is None:
                with services.limits.synthesis.hold(client):
                    result = services.synthesizer.run(synth_request)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
            raise fail(exc) from None
        path = write_downloads("voice-sample", {"wav": result.data})[0]
        label = found.description if found and found.description else voice_id
        return gr.Audio(value=path, visible=True, label=f"Sample: {label}")

    page_only = "undocumented"
    voice.change(on_voice, [engine, voice], [info, sample], queue=False, api_visibility=page_only)
    preview.click(on_preview, [engine, voice], sample, concurrency_limit=settings.concurrency,
                  concurrency_id="synthesis", api_visibility=page_only)

    if settings.offline:
        return
    # Online, voices are installed while the app runs (here, or on first use by name through
    # the API), and a page's choices are fixed when the app starts: each page load lists the
    # voices installed now.
    def on_load(engine_name, voice_id):
        try:
            engine_name = one_choice(engine_name, "engine")
            choices = [(v.description or v.id, v.id) for v in services.tts.voices(engine_name)]
        except PipelineError:
            return gr.skip()
        return gr.Dropdown(choices=choices, value=voice_id)

    if Context.root_block is not None:
        Context.root_block.load(on_load, [engine, voice], voice, queue=False,
                                api_visibility=page_only)
    if "piper" in services.tts.names() and (not public or settings.operator_token):
        _build_installer(services, engine, voice)


def _piper_choices(services: Services) -> list[tuple[str, str]]:
    return [(v.description or v.id, v.id) for v in services.tts.voices("piper")]


def _build_installer(services: Services, engine: gr.Dropdown, voice: gr.Dropdown) -> None:
    """"Install more voices": the Piper catalogue, searchable, and an Install button."""
    settings = services.settings
    public = settings.public
    piper = services.tts.get("piper")
    with gr.Accordion("Install more voices", open=False, elem_id="voice-install") as accordion:
        gr.Markdown("More Piper voices, in many languages, from the official catalogue. A voice "
                    "is downloaded once (checked against the catalogue's checksums) and works "
                    "offline from then on. Check its licence before publishing what it reads.")
        choice = gr.Dropdown([], value=None, label="Voice to install (type a language or name "
                             "to search)", filterable=True, elem_id="voice-catalogue")
        details = gr.Markdown(elem_id="voice-catalogue-details")
        token = None
        if settings.operator_token:
            token = gr.Textbox(label="Operator token", type="password", max_lines=1,
                               elem_id="voice-install-token")
        install = gr.Button("Install voice", variant="primary", size="sm",
                            elem_id="voice-install-run")

    def catalogue_choices() -> list[tuple[str, str]]:
        installed = {v.id for v in services.tts.voices("piper")}
        offered = [v for v in piper.catalogue.voices().values() if v.key not in installed]
        offered.sort(key=lambda v: (v.language_name, v.name, _QUALITY_ORDER.get(v.quality, 9)))
        return [(v.label, v.key) for v in offered]

    def on_open():
        try:
            choices = catalogue_choices()
        except PipelineError as exc:
            return (gr.Dropdown(choices=[], value=None),
                    f"**The voice catalogue is not available.** {_escape(user_message(exc, public=public))}")
        return (gr.Dropdown(choices=choices, value=None),
                f"{len(choices)} voices can be installed. Choose one to see its licence.")

    def on_choose(key):
        try:
            key = one_choice(key, "voice")
            if not key:
                return ""
            entry = piper.catalogue.entry(key)
            credit = credit_from_card(piper.catalogue.model_card(key))
        except PipelineError as exc:
            return _escape(user_message(exc, public=public))
        licence = credit_markdown(credit) if credit else "not stated in its model card"
        return (f"**{_escape(entry.language_name)}** · {entry.quality.replace('_', ' ')} quality · "
                f"{entry.size_bytes / 1e6:.0f} MB download  \nLicence and credit: {licence}")

    def on_install(key, engine_name, *token_value, progress=gr.Progress()):  # noqa: B008
        if settings.operator_token and not operator_allowed(services, (token_value or [""])[0]):
            gr.Warning("Installing voices needs the operator token.")
            return gr.skip(), gr.skip(), "**Not installed.** Installing voices needs the operator token."
        try:
            key = one_choice(key, "voice")
            if not key:
                raise InputError("Choose a voice from the list first.")
            progress(0, desc=f"Downloading {key}…")

            def report(done: int, total: int) -> None:
                progress(done / total if total else 0,
                         desc=f"Downloading {key}: {done / 1e6:.0f} of {total / 1e6:.0f} MB")

            piper.install(key, progress=report)
            choices = catalogue_choices()
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
            # Said in the panel, not raised: an error would cover the voice picker (an output).
            message = user_message(exc, public=public)
            gr.Warning(message)
            return gr.skip(), gr.skip(), f"**Not installed.** {_escape(message)}"
        found = _find(services, "piper", key)
        name = found.description if found else key
        if engine_name == "piper":
            voice_update = gr.Dropdown(choices=_piper_choices(services), value=key)
            note = "It is now selected above: press **Preview this voice** to hear it."
        else:
            voice_update = gr.skip()
            note = "Choose the Piper engine above to use it."
        gr.Info(f"Installed {name}.")
        return (voice_update, gr.Dropdown(choices=choices, value=None),
                f"**Installed {_escape(name)}.** {note}")

    page_only = "undocumented"
    accordion.expand(on_open, None, [choice, details], api_visibility=page_only)
    # A person's choice only (``input``, not ``change``): the list reset after an install must
    # not replace the "Installed" note.
    choice.input(on_choose, choice, details, api_visibility=page_only)
    # Downloading is an operator action: never part of the API.
    install.click(on_install, [choice, engine, *([token] if token is not None else [])],
                  [voice, choice, details], concurrency_limit=1, concurrency_id="voice-install",
                  show_progress_on=details, api_visibility="private")
