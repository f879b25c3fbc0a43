"""Subtitle cues and their SRT / WebVTT / plain-text renderings (shared by TTS and STT)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


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
    blocks = [
        f"{i}\n{_timestamp(c.start_s, ',')} --> {_timestamp(c.end_s, ',')}\n{c.text}\n"
        for i, c in enumerate(_clean(cues), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    blocks = [
        f"{_timestamp(c.start_s, '.')} --> {_timestamp(c.end_s, '.')}\n{c.text}\n"
        for c in _clean(cues)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_text(cues: Iterable[Cue]) -> str:
    return " ".join(c.text for c in _clean(cues)) + "\n"
