"""SSML-like pause marks: ``[pause 1s]``, ``[pause 500ms]``, ``[pause: 2 seconds]``, ``[pause]``
(one second), case-insensitive.

A mark whose duration cannot be read (``[pause soon]``) is still a pause of the default length:
the teacher clearly wanted one, and reading the bracket aloud would be worse. A single pause is
capped at ``MAX_PAUSE_S``; marks with no text between them merge into one pause, also capped.
A zero-length mark is dropped. An unclosed ``[pause`` is ordinary text.
"""

from __future__ import annotations

import re

DEFAULT_PAUSE_S = 1.0
MAX_PAUSE_S = 10.0
PAUSE_MARK = re.compile(r"\[\s*pause\b([^\]]{0,40})\]", re.IGNORECASE)
_DURATION = re.compile(r"^\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?)?\s*$", re.IGNORECASE)


def _seconds(spec: str) -> float:
    m = _DURATION.match(spec)
    if not m:
        return DEFAULT_PAUSE_S
    value = float(m.group(1))
    if (m.group(2) or "s").lower() == "ms":
        value /= 1000.0
    return min(value, MAX_PAUSE_S)


def split_pauses(text: str) -> list[str | float]:
    """Text pieces and pause lengths in seconds, in order (empty pieces dropped)."""
    out: list[str | float] = []
    pos = 0
    for m in PAUSE_MARK.finditer(text):
        piece = text[pos:m.start()]
        if piece.strip():
            out.append(piece.strip())
        seconds = _seconds(m.group(1))
        if seconds > 0 and out and isinstance(out[-1], float):
            out[-1] = min(out[-1] + seconds, MAX_PAUSE_S)
        elif seconds > 0:
            out.append(seconds)
        pos = m.end()
    tail = text[pos:]
    if tail.strip():
        out.append(tail.strip())
    return out
