"""Subtitle cues and their SRT / WebVTT / plain-text renderings (shared by TTS and STT).

The files are written by the ``srt`` and ``webvtt-py`` libraries (issues 9 and 14: the
hand-written writer broke on "x < 5", "&" and "A --> B", which lessons are full of)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Chapter:
    """A section of a lesson: from a Markdown heading, or a blank-line-separated section."""

    start_s: float
    end_s: float
    title: str


def _timestamp(seconds: float, sep: str) -> str:
    total_ms = max(0, int(round(seconds * 1000)))
    hours, rem = divmod(total_ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    secs, ms = divmod(rem, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _clean(cues: Iterable[Cue]) -> list[Cue]:
    """Drop empty cues and make times monotonic and non-overlapping (players reject both)."""
    out: list[Cue] = []
    last_end = 0.0
    for cue in cues:
        text = " ".join(cue.text.split())
        if not text:
            continue
        start = max(cue.start_s, last_end)
        end = max(cue.end_s, start + 0.001)
        out.append(Cue(start, end, text))
        last_end = end
    return out


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip through the ``srt`` library. SRT has no escapes; an arrow written "-->" in the
    text (chemistry, logic) would look like a timing line to some players, so it becomes "→"."""
    import srt

    return srt.compose([
        srt.Subtitle(i, timedelta(seconds=c.start_s), timedelta(seconds=c.end_s),
                     c.text.replace("-->", "→"))
        for i, c in enumerate(_clean(cues), start=1)
    ])


def to_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT through ``webvtt-py``. Cue text is escaped as the WebVTT spec requires ("&",
    "<" and ">" as character references), so "x < 5" or "A --> B" stay valid and read as
    written."""
    import webvtt

    vtt = webvtt.WebVTT()
    for c in _clean(cues):
        vtt.captions.append(webvtt.Caption(_timestamp(c.start_s, "."), _timestamp(c.end_s, "."),
                                           html.escape(c.text, quote=False)))
    return vtt.content


def to_text(cues: Iterable[Cue]) -> str:
    return " ".join(c.text for c in _clean(cues)) + "\n"


def to_vtt_chapters(chapters: Iterable[Chapter]) -> str:
    """A WebVTT chapters file (for ``<track kind="chapters">``): one cue per chapter whose text
    is the chapter's title, written and escaped as ``to_vtt`` does. An untitled chapter is
    called "Chapter N"; overlapping chapters are made sequential, as cues are."""
    return to_vtt(Cue(c.start_s, c.end_s, c.title if c.title.strip() else f"Chapter {number}")
                  for number, c in enumerate(chapters, start=1))
