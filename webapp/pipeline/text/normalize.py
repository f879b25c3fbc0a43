"""Written text -> speakable text. (Placeholder stage; issue 5 builds the science normaliser.)"""

from __future__ import annotations

import re
import unicodedata

NORMALIZER_VERSION = "0"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    return re.sub(r"[ \t]+", " ", text).strip()
