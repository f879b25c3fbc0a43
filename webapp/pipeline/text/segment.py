"""Split a lesson into paragraphs and sentences *before* normalisation.

Splitting the written text (not the normalised one) lets subtitles show what the teacher wrote
("H2O") while the engine speaks the normalised form ("H two O"), and keeps each synthesis unit
short so the first one is ready quickly and each can be cached on its own.

The rule is deliberately conservative: a sentence ends at . ! ? (or …) followed by whitespace and
an upper-case letter, digit, quote or bracket, unless the word before the full stop is a known
abbreviation ("Dr.", "e.g.") or a single initial. Decimals ("3.5") never contain whitespace, so
they never split.
"""

from __future__ import annotations

import re

# Abbreviations that are usually followed by more of the same sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs e.g i.e cf fig figs eq eqs no approx ca al dept est "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# A run of end punctuation is matched from its first character only, and without backtracking:
# "." * 19,000 took 10 s here (quadratic) before, found by tests/test_fuzz.py.
_SENTENCE_END = re.compile(r"(?<![.!?…])([.!?…]++[\"'”’)\]]*+)(\s+)(?=[\"'“‘(\[A-Z0-9])")
_PARAGRAPH = re.compile(r"\n\s*\n+")
# Long sentences are cut at clause punctuation, then at spaces, so no unit gets too long for
# the engine (and memory stays bounded).
MAX_UNIT_CHARS = 400
_CLAUSE = re.compile(r"(?<=[,;:—–])\s+")


def split_paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH.split(text) if p.strip()]


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph (line breaks inside it are spaces)."""
    text = " ".join(paragraph.split())
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end(1)
        # The word before the punctuation, found from its end (not by splitting everything
        # since ``start``, which grows while abbreviations are skipped: "Dr. " * 5000).
        dot = match.start(1)
        last_word = text[max(text.rfind(" ", start, dot) + 1, start):dot + 1].rstrip(".").lower()
        if match.group(1) == "." and (last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last_word)):
            continue
        out.append(text[start:end].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [piece for s in out for piece in _bound_length(s)]


def split_first_clause(sentence: str, min_chars: int = 12, max_chars: int = 40) -> list[str]:
    """Cut a long first sentence after its first clause (comma, semicolon, colon) so the first
    audio is ready sooner. Returns [sentence] when there is no good cut."""
    if len(sentence) <= max_chars:
        return [sentence]
    for match in _CLAUSE.finditer(sentence):
        if min_chars <= match.start() <= len(sentence) - min_chars:
            return [sentence[:match.start()].strip(), sentence[match.end():].strip()]
    return [sentence]


def _bound_length(sentence: str) -> list[str]:
    if len(sentence) <= MAX_UNIT_CHARS:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for part in _CLAUSE.split(sentence):
        while len(part) > MAX_UNIT_CHARS:
            cut = part.rfind(" ", 0, MAX_UNIT_CHARS)
            cut = cut if cut > 0 else MAX_UNIT_CHARS
            if current:
                pieces.append(current)
                current = ""
            pieces.append(part[:cut].strip())
            part = part[cut:].strip()
        if current and len(current) + 1 + len(part) > MAX_UNIT_CHARS:
            pieces.append(current)
            current = part
        else:
            current = f"{current} {part}".strip()
    if current:
        pieces.append(current)
    return pieces
