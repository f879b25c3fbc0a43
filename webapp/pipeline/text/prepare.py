"""Placeholder (the issue-5 work replaces this): lexicon -> pause marks -> normaliser."""

from __future__ import annotations

from webapp.pipeline.text.normalize import NORMALIZER_VERSION, normalize


def prepare(text: str, lexicon: object | None = None) -> list[str | float]:
    out = normalize(text)
    return [out] if out else []


def text_version(lexicon: object | None = None) -> str:
    return f"n{NORMALIZER_VERSION}"
