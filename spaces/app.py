"""Hugging Face Spaces entry point: the same app as ``python -m webapp serve``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.app import serve  # noqa: E402
from webapp.config import Settings  # noqa: E402

if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    serve(Settings.from_env(), host="0.0.0.0", port=int(os.environ.get("PORT", "7860")))
