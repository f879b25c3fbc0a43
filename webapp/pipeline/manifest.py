"""Batch evaluation from a CSV manifest (issue #4): ``text, reference[, candidate]`` per row.

Where the audio files come from is the caller's decision, made explicit by a *locator*
(``Callable[[str], Path]``), so a manifest can never make the server open a path of its choosing:

* the CLI (an operator on their own machine) uses ``relative_to(manifest_folder)``;
* the web UI uses ``uploaded_files(paths)``, which matches a row's file **by file name only**
  among the files uploaded with the manifest; ``/etc/passwd`` or ``../../x.wav`` in a CSV
  becomes "not uploaded", never a read.

A problem with the manifest itself (not found, not CSV, no header) raises ``InputError``; a
problem with one row (missing file, not audio, silent, nothing to synthesise from) is reported
on that row and the other rows are still evaluated.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from webapp.pipeline.audio import Audio, load
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.evaluate import MAX_CLIP_S, QualityReport, Thresholds, compare

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("text", "reference", "candidate")
MAX_MANIFEST_ROWS = 500
MAX_MANIFEST_BYTES = 2_000_000

Locator = Callable[[str], Path]
"""File name as written in the manifest -> a readable local file; raises ``InputError``."""


@dataclass(frozen=True)
class ManifestRow:
    line: int
    """Line number in the CSV (the header is line 1), for messages."""
    text: str
    reference: str
    """As written in the CSV ("" when empty)."""
    candidate: str


@dataclass(frozen=True)
class ManifestItem:
    row: ManifestRow
    report: QualityReport | None = None
    error: str | None = None
    synthesized: bool = False

    @property
    def passed(self) -> bool:
        return self.error is None and self.report is not None and self.report.passed

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "pass" if self.passed else "FAIL"

    @property
    def problem(self) -> str:
        """Why the row did not pass: the error, or the failed metrics' keys."""
        if self.error is not None:
            return self.error
        return ", ".join(m.key for m in self.report.failures) if self.report else ""

    def to_dict(self) -> dict:
        out: dict = {"line": self.row.line, "text": self.row.text,
                     "reference": self.row.reference or None,
                     "candidate": self.row.candidate or None,
                     "synthesized": self.synthesized, "status": self.status}
        if self.error is not None:
            out["error"] = self.error
        if self.report is not None:
            out.update(self.report.to_dict())
        return out


CSV_METRICS = ("mfcc_similarity", "dtw_similarity", "mcd_db", "f0_correlation",
               "f0_rmse_cents", "duration_ratio", "wer", "cer")


@dataclass(frozen=True)
class ManifestReport:
    items: tuple[ManifestItem, ...]

    @property
    def passed(self) -> bool:
        return bool(self.items) and all(i.passed for i in self.items)

    @property
    def n_passed(self) -> int:
        return sum(i.passed for i in self.items)

    @property
    def n_failed(self) -> int:
        return sum(i.status == "FAIL" for i in self.items)

    @property
    def n_errors(self) -> int:
        return sum(i.status == "error" for i in self.items)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "items": len(self.items), "failed": self.n_failed,
                "errors": self.n_errors, "results": [i.to_dict() for i in self.items]}

    def to_csv(self) -> str:
        """One row per manifest row: line, status, problem, every metric, text."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["line", "status", "problem", "reference", "candidate",
                         "synthesized", *CSV_METRICS, "text"])
        for item in self.items:
            values = {m.key: m.value for m in item.report.metrics} if item.report else {}
            writer.writerow([item.row.line, item.status, item.problem, item.row.reference,
                             item.row.candidate, item.synthesized,
                             *("" if values.get(k) is None else f"{values[k]:.4f}"
                               for k in CSV_METRICS),
                             item.row.text])
        return buf.getvalue()


# ---------------------------------------------------------------------------- reading


def parse_manifest(content: str, name: str = "the manifest") -> list[ManifestRow]:
    """Rows of a CSV text with a header naming ``text`` and ``reference`` (``candidate``
    optional; column order and case free). Blank lines are skipped."""
    if len(content) > MAX_MANIFEST_BYTES:
        raise InputError(f"{name} is larger than {MAX_MANIFEST_BYTES // 1_000_000} MB; split it.")
    try:
        reader = csv.DictReader(io.StringIO(content))
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise InputError(f"{name} is not a readable CSV file ({exc}).") from exc
    if "reference" not in columns or "text" not in columns:
        raise InputError(
            f"{name} needs a header row with the columns text, reference and optionally "
            f"candidate; found: {', '.join(columns) or 'nothing'}.")
    rows: list[ManifestRow] = []
    try:
        for raw in reader:
            rec = {(k or "").strip().lower(): (v.strip() if isinstance(v, str) else "")
                   for k, v in raw.items()}
            if not any(rec.values()):
                continue
            if len(rows) >= MAX_MANIFEST_ROWS:
                raise InputError(f"{name} has more than {MAX_MANIFEST_ROWS} rows; split it.")
            # reader.line_num is the physical line the row ended on (quoted newlines count).
            rows.append(ManifestRow(line=reader.line_num, text=rec.get("text", ""),
                                    reference=rec.get("reference", ""),
                                    candidate=rec.get("candidate", "")))
    except csv.Error as exc:
        raise InputError(f"{name}, line {reader.line_num}: not valid CSV ({exc}).") from exc
    if not rows:
        raise InputError(f"{name} has no rows to evaluate (only a header).")
    return rows


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read and parse a manifest file (UTF-8, a BOM is fine)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Manifest not found: {path.name}.")  # a name: no server path shown
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"{path.name} is larger than {MAX_MANIFEST_BYTES // 1_000_000} MB; "
                         "split it.")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name} is not a UTF-8 text CSV file.") from exc
    return parse_manifest(content, path.name)


# ---------------------------------------------------------------------------- locators


def relative_to(folder: str | Path) -> Locator:
    """CLI: a name is a path relative to ``folder`` (the manifest's folder)."""
    base = Path(folder)

    def locate(name: str) -> Path:
        path = base / name
        if not path.is_file():
            raise InputError(f"{name}: file not found (paths are relative to the manifest's "
                             f"folder, {base}).")
        return path

    return locate


def _file_name(name: str) -> str:
    # Both separators: a manifest written on Windows says audio\ref.wav.
    return PurePosixPath(PureWindowsPath(name).as_posix()).name


def uploaded_files(paths: Iterable[str | Path]) -> Locator:
    """Web UI: a name matches an uploaded file with the same file name; folders in the
    manifest are ignored and nothing outside ``paths`` is ever returned."""
    by_name = {Path(p).name: Path(p) for p in paths}

    def locate(name: str) -> Path:
        found = by_name.get(_file_name(name))
        if found is None:
            raise InputError(f"{name}: not uploaded (upload the audio files with the manifest; "
                             "they are matched by file name).")
        return found

    return locate


# ---------------------------------------------------------------------------- evaluation


def evaluate_manifest(
    rows: list[ManifestRow],
    *,
    locate: Locator,
    synthesize: Callable[[str], Audio] | None = None,
    transcribe: Callable[[Audio], str] | None = None,
    thresholds: Thresholds | None = None,
    normalizer: str = "basic",
    progress: Callable[[int, int], None] | None = None,
) -> ManifestReport:
    """Evaluate every row; a bad row becomes an item with ``error`` and the rest go on.
    Rows without a candidate are synthesised with ``synthesize(text)``; with ``transcribe``
    every candidate is also transcribed and scored against its text (round trip)."""
    items: list[ManifestItem] = []
    for i, row in enumerate(rows):
        if progress is not None:
            progress(i, len(rows))
        synthesized = False
        try:
            if not row.reference:
                raise InputError("no reference audio in this row")
            reference = load(locate(row.reference), max_seconds=MAX_CLIP_S)
            if row.candidate:
                candidate = load(locate(row.candidate), max_seconds=MAX_CLIP_S)
            elif not row.text:
                raise InputError("no candidate audio and no text to synthesise one from")
            elif synthesize is None:
                raise InputError("no candidate audio, and no engine chosen to synthesise it")
            else:
                candidate = synthesize(row.text)
                synthesized = True
            report = compare(reference, candidate, text=row.text or None, transcribe=transcribe,
                             thresholds=thresholds, normalizer=normalizer)
            items.append(ManifestItem(row=row, report=report, synthesized=synthesized))
        except PipelineError as exc:
            items.append(ManifestItem(row=row, error=str(exc), synthesized=synthesized))
        except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
            logger.exception("manifest line %d failed", row.line)
            items.append(ManifestItem(row=row, error=f"unexpected error ({type(exc).__name__}); "
                                                     "see the server log"))
    if progress is not None:
        progress(len(rows), len(rows))
    return ManifestReport(items=tuple(items))
