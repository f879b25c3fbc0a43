""""Install more voices" under the Synthesize tab's voice picker (issue 12): the Piper catalogue,
searchable, each voice's licence, and an Install button.

Installing goes through the Piper engine's catalogue (``webapp.pipeline.tts.catalogue``:
catalogue keys only, size and checksum verified). It is an operator action: never part of the
API, hidden on a public deployment unless an operator token is configured, and it
always asks for the token when one is. Its problems are said in the panel, not raised: an
error would cover the voice picker, which the install updates.
"""

from __future__ import annotations

import gradio as gr

from webapp.api import operator_allowed
from webapp.components.events import PAGE_ONLY, bind
from webapp.components.inputs import one_choice
from webapp.components.voice_info import credit_markdown, escape_markdown, find_voice, voice_options
from webapp.messages import user_message
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.tts.catalogue import credit_from_card
from webapp.services import Services

_QUALITY_ORDER = {"x_low": 0, "low": 1, "medium": 2, "high": 3}


def _catalogue_choices(services: Services) -> list[tuple[str, str]]:
    """The catalogue's voices not installed yet, by language, name and quality."""
    installed = {v.id for v in services.tts.voices("piper")}
    catalogue = services.tts.get("piper").catalogue
    offered = [v for v in catalogue.voices().values() if v.key not in installed]
    offered.sort(key=lambda v: (v.language_name, v.name, _QUALITY_ORDER.get(v.quality, 9)))
    return [(v.label, v.key) for v in offered]


def on_open(services: Services):
    try:
        choices = _catalogue_choices(services)
    except PipelineError as exc:
        message = user_message(exc, public=services.settings.public)
        return (gr.Dropdown(choices=[], value=None),
                f"**The voice catalogue is not available.** {escape_markdown(message)}")
    return (gr.Dropdown(choices=choices, value=None),
            f"{len(choices)} voices can be installed. Choose one to see its licence.")


def on_choose(services: Services, key):
    catalogue = services.tts.get("piper").catalogue
    try:
        key = one_choice(key, "voice")
        if not key:
            return ""
        entry = catalogue.entry(key)
        credit = credit_from_card(catalogue.model_card(key))
    except PipelineError as exc:
        return escape_markdown(user_message(exc, public=services.settings.public))
    licence = credit_markdown(credit) if credit else "not stated in its model card"
    return (f"**{escape_markdown(entry.language_name)}** · {entry.quality.replace('_', ' ')} "
            f"quality · {entry.size_bytes / 1e6:.0f} MB download  \nLicence and credit: {licence}")


def on_install(services: Services, key, engine_name, *token_value,
               progress=gr.Progress()):  # noqa: B008 - Gradio injects it
    settings = services.settings
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

        services.tts.get("piper").install(key, progress=report)
        choices = _catalogue_choices(services)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
        message = user_message(exc, public=settings.public)
        gr.Warning(message)
        return gr.skip(), gr.skip(), f"**Not installed.** {escape_markdown(message)}"
    found = find_voice(services, "piper", key)
    name = found.description if found else key
    if engine_name == "piper":
        voice_update = gr.Dropdown(choices=voice_options(services, "piper"), value=key)
        note = "It is now selected above: press **Preview this voice** to hear it."
    else:
        voice_update = gr.skip()
        note = "Choose the Piper engine above to use it."
    gr.Info(f"Installed {name}.")
    return (voice_update, gr.Dropdown(choices=choices, value=None),
            f"**Installed {escape_markdown(name)}.** {note}")


def build_installer(services: Services, engine: gr.Dropdown, voice: gr.Dropdown) -> None:
    """The accordion and its events (``voice``: the picker an install selects the voice in);
    nothing offline, without Piper, or on a public deployment without an operator token."""
    settings = services.settings
    if (settings.offline or "piper" not in services.tts.names()
            or (settings.public and not settings.operator_token)):
        return
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
    accordion.expand(bind(services, on_open), None, [choice, details], api_visibility=PAGE_ONLY)
    # A person's choice only (``input``, not ``change``): the list reset after an install must
    # not replace the "Installed" note.
    choice.input(bind(services, on_choose), choice, details, api_visibility=PAGE_ONLY)
    # Downloading is an operator action: never part of the API.
    install.click(bind(services, on_install), [choice, engine, *([token] if token is not None else [])],
                  [voice, choice, details], concurrency_limit=1, concurrency_id="voice-install",
                  show_progress_on=details, api_visibility="private")
