"""Per-deployment pronunciation lexicon: term -> respelling, applied before the normaliser.

Stored as CSV (``term,respelling,case_sensitive``) under the data dir, editable in the
Synthesize tab, importable and exportable as CSV text. ``version`` (a hash of the entries) is
part of the synthesis cache key, so editing the lexicon never serves stale audio.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from webapp.pipeline.errors import InputError

MAX_ENTRIES = 2000
MAX_SESSION_ENTRIES = 200  # a visitor's own entries on a public deployment
MAX_TERM_CHARS = 100
MAX_RESPELLING_CHARS = 200
MAX_CSV_CHARS = 1_000_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRUE = {"1", "true", "yes", "y", "x"}


@dataclass(frozen=True)
class LexiconEntry:
    term: str
    respelling: str
    case_sensitive: bool = False


def _validate(entry: LexiconEntry, row: int | None = None) -> LexiconEntry:
    where = f" (row {row})" if row is not None else ""
    term, respelling = entry.term.strip(), entry.respelling.strip()
    if not term:
        raise InputError(f"A lexicon entry needs a term{where}.")
    if not respelling:
        raise InputError(f"The lexicon entry '{term}' needs a respelling{where}.")
    if _CONTROL.search(term) or _CONTROL.search(respelling):
        raise InputError(f"The lexicon entry '{term[:30]}' contains control characters{where}.")
    if "[" in respelling or "]" in respelling or "[" in term or "]" in term:
        # A respelling is words; brackets would smuggle in pause marks ("the" -> "[pause 10s]")
        # or raw phonemes.
        raise InputError(f"The lexicon entry '{term[:30]}' contains square brackets{where}: "
                         "write the respelling as plain words (pauses belong in the text).")
    if len(term) > MAX_TERM_CHARS or len(respelling) > MAX_RESPELLING_CHARS:
        raise InputError(f"The lexicon entry '{term[:30]}' is too long{where}: terms up to "
                         f"{MAX_TERM_CHARS} characters, respellings up to {MAX_RESPELLING_CHARS}.")
    return LexiconEntry(term, respelling, bool(entry.case_sensitive))


class Lexicon:
    def __init__(self, entries: list[LexiconEntry] | None = None, path: Path | None = None,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._set(entries or [])

    # -- contents ------------------------------------------------------------------------
    def _set(self, entries: list[LexiconEntry]) -> None:
        if len(entries) > self.max_entries:
            raise InputError(f"The lexicon has {len(entries)} entries; the limit is {self.max_entries}.")
        checked = [_validate(e, i + 1) for i, e in enumerate(entries)]
        # Later entries win over earlier ones for the same term.
        unique = {(e.term if e.case_sensitive else e.term.lower(), e.case_sensitive): e for e in checked}
        self._entries = list(unique.values())
        # One pass over the text with one alternation, longest terms first ("sodium chloride"
        # wins over "sodium"), so a respelling is never rewritten by another entry and the cost
        # does not grow with one regex pass per entry.
        ordered = sorted(self._entries, key=lambda e: (-len(e.term), e.term))
        self._exact = {e.term: e.respelling for e in self._entries if e.case_sensitive}
        self._folded = {e.term.lower(): e.respelling for e in self._entries if not e.case_sensitive}
        alternatives = "|".join(re.escape(e.term) if e.case_sensitive else f"(?i:{re.escape(e.term)})"
                                for e in ordered)
        self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)") if ordered else None
        canonical = json.dumps([[e.term, e.respelling, e.case_sensitive] for e in
                                sorted(self._entries, key=lambda e: (e.term, e.case_sensitive))])
        self._version = hashlib.sha256(canonical.encode()).hexdigest()[:12] if self._entries else "0"

    @property
    def entries(self) -> list[LexiconEntry]:
        return list(self._entries)

    @property
    def version(self) -> str:
        return self._version

    @classmethod
    def layered(cls, base: Lexicon | None, own: list[LexiconEntry]) -> Lexicon:
        """``base`` (the operator's lexicon) with ``own`` entries on top: a visitor's entry
        wins over the operator's for the same term. Never saved (no path)."""
        base_entries = base.entries if base is not None else []
        return cls(base_entries + list(own), max_entries=len(base_entries) + MAX_SESSION_ENTRIES)

    def replace(self, entries: list[LexiconEntry]) -> None:
        with self._lock:
            self._set(entries)

    def apply(self, text: str) -> str:
        """Replace whole-word occurrences of each term by its respelling (one pass)."""
        pattern, exact, folded = self._pattern, self._exact, self._folded  # one consistent snapshot
        if pattern is None:
            return text

        def repl(m: re.Match) -> str:
            word = m.group(0)
            return exact.get(word) or folded.get(word.lower(), word)

        return pattern.sub(repl, text)

    # -- CSV -----------------------------------------------------------------------------
    @staticmethod
    def parse_csv(text: str) -> list[LexiconEntry]:
        if len(text) > MAX_CSV_CHARS:
            raise InputError(f"The lexicon CSV is {len(text):,} characters long; the limit is "
                             f"{MAX_CSV_CHARS:,} (at most {MAX_ENTRIES} entries).")
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise InputError(f"The lexicon CSV cannot be read ({exc}); expected rows of "
                             "term,respelling[,case_sensitive].") from None
        entries = []
        for i, row in enumerate(rows, start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if i == 1 and [c.strip().lower() for c in row[:2]] == ["term", "respelling"]:
                continue
            if len(row) < 2:
                raise InputError(f"Lexicon CSV row {i} needs two columns: term,respelling[,case_sensitive].")
            case = len(row) > 2 and row[2].strip().lower() in _TRUE
            entries.append(_validate(LexiconEntry(row[0], row[1], case), i))
        return entries

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["term", "respelling", "case_sensitive"])
        for e in sorted(self._entries, key=lambda e: e.term.lower()):
            writer.writerow([e.term, e.respelling, "yes" if e.case_sensitive else "no"])
        return buf.getvalue()

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        if not path.exists():
            return cls(path=path)
        return cls(cls.parse_csv(path.read_text(encoding="utf-8")), path=path)

    def save(self) -> None:
        """Write atomically (temp file + rename), so a crash never leaves half a lexicon."""
        if self.path is None:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".lexicon-", suffix=".csv")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_csv())
            os.replace(tmp, self.path)
