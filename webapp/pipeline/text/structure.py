"""The shape of a lesson before it is split into sentences: chapters and speakers (issue 12).

A lesson is a list of ``Block``s, read line by line:

* a Markdown heading (``# Title``, ``## Title``: up to three spaces, one to six ``#``, a space)
  is a block of its own and starts a chapter; the voice announces the title, then pauses;
* a line starting with a speaker the teacher defined (``Teacher: …``, case-insensitive) or
  with a voice in brackets (``[Student] …``, ``[en_US-joe-medium] …``) starts a turn spoken by
  that voice; the lines after it, up to the next blank line or turn, belong to the same turn.
  Only names in the request's speaker table (or installed voices, in brackets) count, so
  "Note: …" or "[pause 1s]" at the start of a line stay ordinary text;
* blank lines separate paragraphs; a line of only ``---``, ``***`` or ``___`` (Markdown's
  thematic break) is a paragraph break that is not read aloud.

Chapters: with headings, one per heading (text before the first heading is a chapter named by
its first words). Without headings, each blank-line-separated section is a chapter, named by its
first words, when there are at least two; a lesson of one paragraph has none.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_NAMED_TURN = re.compile(r"^[ \t]*([^\W\d][\w .'-]{0,38}?)[ \t]*:[ \t]+(.*)$")
_BRACKET_TURN = re.compile(r"^[ \t]*\[([^\]\n]{1,60})\][ \t]*(.*)$")
TITLE_WORDS = 8


@dataclass(frozen=True)
class Block:
    text: str  # written text (a heading's title without the #s; a turn without its prefix)
    heading: bool = False
    voice: str | None = None  # voice id for this block; None is the request's voice
    label: str = ""  # the speaker as written ("Teacher"), shown in subtitles
    new_paragraph: bool = True  # a blank line, heading or break comes before it


def parse(text: str, speakers: Mapping[str, str] | None = None,
          voice_ids: Container[str] = ()) -> list[Block]:
    """Blocks of ``text``. ``speakers`` maps speaker names (any case) to voice ids;
    ``voice_ids`` are the installed voices that ``[voice]`` may name directly."""
    by_name = {name.strip().casefold(): voice for name, voice in (speakers or {}).items()
               if name and name.strip()}
    blocks: list[Block] = []
    lines: list[str] = []
    voice: str | None = None
    label = ""
    new_paragraph = True

    def flush() -> None:
        nonlocal lines, new_paragraph
        joined = " ".join(line.strip() for line in lines).strip()
        if joined:
            blocks.append(Block(joined, voice=voice, label=label, new_paragraph=new_paragraph))
            new_paragraph = False
        lines = []

    for line in text.splitlines():
        if not line.strip() or _BREAK.match(line):
            flush()
            voice, label, new_paragraph = None, "", True
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            blocks.append(Block(heading.group(2).strip(), heading=True))
            voice, label, new_paragraph = None, "", True
            continue
        turn = _turn(line, by_name, voice_ids)
        if turn is not None:
            flush()
            voice, label, rest = turn
            lines = [rest]
            continue
        lines.append(line)
    flush()
    return blocks


def _turn(line: str, by_name: Mapping[str, str],
          voice_ids: Container[str]) -> tuple[str, str, str] | None:
    """(voice id, label, rest of the line) when ``line`` starts a speaker's turn."""
    named = _NAMED_TURN.match(line)
    if named and named.group(1).strip().casefold() in by_name:
        name = named.group(1).strip()
        return by_name[name.casefold()], name, named.group(2)
    bracket = _BRACKET_TURN.match(line)
    if bracket:
        name = bracket.group(1).strip()
        if name.casefold() in by_name:
            return by_name[name.casefold()], name, bracket.group(2)
        if name in voice_ids:
            return name, "", bracket.group(2)
    return None


def chapter_starts(blocks: list[Block]) -> dict[int, str]:
    """Block index -> chapter title, for the blocks that start a chapter."""
    if any(b.heading for b in blocks):
        starts = {i: b.text for i, b in enumerate(blocks) if b.heading}
        if blocks and not blocks[0].heading:
            starts[0] = first_words(blocks[0].text)
        return starts
    paragraphs = [i for i, b in enumerate(blocks) if b.new_paragraph]
    if len(paragraphs) < 2:
        return {}
    return {i: first_words(blocks[i].text) for i in paragraphs}


def first_words(text: str, count: int = TITLE_WORDS) -> str:
    """A title made of the first sentence's first words ("Plants need light to…")."""
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    words = sentence.split()
    title = " ".join(words[:count])
    if len(words) > count:
        title = title.rstrip(",;:.") + "…"
    return title


def valid_speaker_name(name: str) -> bool:
    """A name that ``Name: …`` at the start of a line can match."""
    match = _NAMED_TURN.match(f"{name}: x")
    return bool(match) and match.group(1).strip() == name.strip()
