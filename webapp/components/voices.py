"""Voice picker extras: a short preview, each voice's language, quality and licence, and (when
online) installing voices from the Piper catalogue. Filled in by issue 12's voice work."""

from __future__ import annotations

import gradio as gr

from webapp.services import Services


def build_voice_panel(services: Services, engine: gr.Dropdown, voice: gr.Dropdown) -> None:
    """Widgets under the Synthesize tab's voice picker (called inside its column)."""
