"""Text preparation for one sentence: lexicon -> pause marks -> normaliser."""

from __future__ import annotations

from webapp.pipeline.text.lexicon import Lexicon
from webapp.pipeline.text.normalize import NORMALIZER_VERSION, normalize
from webapp.pipeline.text.pauses import split_pauses


def prepare(text: str, lexicon: Lexicon | None = None) -> list[str | float]:
    """Speakable text pieces and pause seconds for ``text``."""
    if lexicon is not None:
        text = lexicon.apply(text)
    out: list[str | float] = []
    for piece in split_pauses(text):
        if isinstance(piece, float):
            out.append(piece)
        else:
            spoken = normalize(piece)
            if spoken and any(ch.isalnum() for ch in spoken):
                out.append(spoken)
    return out


def text_version(lexicon: Lexicon | None = None) -> str:
    """Part of the synthesis cache key: changes whenever the spoken text could change."""
    return f"n{NORMALIZER_VERSION}-l{lexicon.version if lexicon is not None else '0'}"
