"""Batches of independent items (a course's lessons, a folder of recordings), the parts that
do not depend on where the work runs.

A batch writes one folder: each item's files, named from the item's ``stem``, and an
``index.json`` listing every item with its ``summary()`` (``ok``, ``error``, ``key``, ``files``
...). A re-run reads that index (``finished``) and skips the items whose key (a hash of
everything that decides the item's files) is unchanged and whose files are all still there;
an item that failed is tried again.

The work itself is done by a *worker*: an object built once with what it needs loaded (a
voice, a recogniser), then called once per item. ``run_in_process`` calls one worker here;
``webapp.ray_batch`` builds one worker per Ray actor and spreads the items over them. Both
report each finished item through ``on_done`` and return the outcomes in the items' order.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from webapp.pipeline.errors import InputError

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Out = TypeVar("Out", bound="Outcome")


class Outcome(Protocol):
    files: dict[str, bytes | str]  # file name -> content (empty for a skipped item)
    error: str
    skipped: bool

    @property
    def ok(self) -> bool: ...

    def summary(self) -> dict: ...


OnDone = Callable[[int, int, "Outcome"], None]
"""``on_done(finished, total, outcome)``, called as each item finishes."""


def run_in_process(worker: Callable[[Item], Out], items: Sequence[Item],
                   fail: Callable[[Item, str], Out], *,
                   on_done: OnDone | None = None) -> list[Out]:
    """Each item through ``worker`` in turn. A worker reports the failures it expects in its
    outcome; anything else it raises fails that item only (logged with its traceback)."""
    outcomes: list[Out] = []
    for item in items:
        try:
            outcome = worker(item)
        except Exception as exc:  # noqa: BLE001 - one broken item must not stop the batch
            logger.exception("batch item failed")
            outcome = fail(item, f"internal error ({type(exc).__name__}: {exc})")
        outcomes.append(outcome)
        if on_done is not None:
            on_done(len(outcomes), len(items), outcome)
    return outcomes


def input_files(path: Path, suffixes: Sequence[str], what: str) -> list[Path]:
    """The files at ``path``: a folder's files with one of ``suffixes``, in name order, or
    ``path`` itself when it is a file. ``what`` names them in the message for an empty folder
    (".txt or .md lesson files")."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise InputError(f"{path} has no {what}.")
        return files
    if path.is_file():
        return [path]
    raise InputError(f"{path} does not exist.")


def write_files(outcomes: Iterable[Outcome], out: Path) -> None:
    """Write each made item's files into ``out`` (each through a temporary name, so a batch
    stopped half-way never leaves a truncated file under a final name)."""
    out.mkdir(parents=True, exist_ok=True)
    for outcome in outcomes:
        if outcome.skipped:
            continue
        for name, content in outcome.files.items():
            write_atomic(out / name, content)


def write_atomic(target: Path, content: bytes | str) -> None:
    tmp = target.with_name(f".{target.name}.part")
    if isinstance(content, str):
        tmp.write_text(content, encoding="utf-8")
    else:
        tmp.write_bytes(content)
    tmp.replace(target)


def index(outcomes: Sequence[Outcome], list_key: str = "items", **fields) -> str:
    """``index.json``: ``fields`` (what the batch was), the date and every item's summary."""
    return json.dumps({**fields, "made": time.strftime("%Y-%m-%d"),
                       list_key: [o.summary() for o in outcomes]},
                      indent=2, ensure_ascii=False) + "\n"


def finished(out: Path, list_key: str = "items") -> dict[str, dict]:
    """Stem -> summary of the items an earlier run made in ``out`` whose files all exist."""
    try:
        data = json.loads((out / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    made = {}
    entries = data.get(list_key, []) if isinstance(data, dict) else []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("ok") and all(
                (out / str(name)).is_file() for name in entry.get("files", [])):
            made[str(entry.get("stem"))] = entry
    return made


def unique_stems(stems: Sequence[str]) -> list[str]:
    """``stems`` with repeats told apart ("talk", "talk-2", ...), so two inputs never write
    the same files."""
    taken: set[str] = set()
    out = []
    for stem in stems:
        name, count = stem, 1
        while name in taken:
            count += 1
            name = f"{stem}-{count}"
        taken.add(name)
        out.append(name)
    return out
