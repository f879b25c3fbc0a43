"""What the Evaluate tab shows of a report: the metrics table, the word alignment, the verdict
in words and the batch table (``webapp.pipeline.evaluate`` computes them; ``plots`` draws)."""

from __future__ import annotations

import html

from webapp.pipeline.evaluate import QualityReport, TextReport
from webapp.pipeline.manifest import ManifestReport

EXPLANATION = """
**What the numbers mean.** Each row compares the *candidate* (for example a synthetic voice)
with the *reference* (a real recording of the same sentence).
- **MFCC similarity (design)** – the original design's score: the average "colour" of the two
  voices. Above 0.85 counts as *production ready*, but almost any two speech clips pass it, so
  read the rows below too.
- **Aligned frame similarity** – the clips are lined up in time, then compared moment by
  moment (1 = identical). Same sentence, natural voice: about 0.6 or more; a different
  sentence: about 0.5 or less; noise: near 0. The plot shows *where* they differ.
- **Mel cepstral distortion** – how far apart the sound spectra are, in dB (0 = identical;
  good synthetic speech against a different speaker is typically 4–6 dB).
- **Pitch correlation / distance** – does the voice go up and down in the same places?
  (100 cents = one semitone; a man and a woman are naturally far apart.)
- **Duration ratio** – candidate length ÷ reference length, silences at the ends ignored.
- **Word / character error rate** – with a text, the speech recogniser listens to the
  candidate: the share of words it got wrong (0 = fully intelligible).
"""

TABLE_HEADERS = ["metric", "value", "threshold", "result", "what it tells you"]
_ALIGN_STYLE = {
    "equal": "",
    "substitute": "background:#fde68a",
    "delete": "background:#fecaca;text-decoration:line-through",
    "insert": "background:#bbf7d0",
}


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"


def report_rows(report: QualityReport) -> list[list[str]]:
    rows = []
    for m in report.metrics:
        thr = m.threshold_label
        thr = "–" if thr == "-" else (thr.replace(">=", "≥").replace("<=", "≤")
                                      .replace(" to ", " – "))
        unit = f" {m.unit}" if m.unit and m.value is not None else ""
        verdict = "not checked" if m.passed is None else m.verdict
        rows.append([m.label, _fmt(m.value) + unit, thr, verdict, m.explanation])
    return rows


def alignment_html(report: TextReport) -> str:
    """Reference above hypothesis, word by word; errors highlighted (colour + symbol)."""
    cells = []
    for w in report.alignment:
        style = _ALIGN_STYLE[w.op]
        ref = html.escape(w.ref) or "∅"
        hyp = html.escape(w.hyp) or "∅"
        cells.append(f'<span class="align-word align-{w.op}" title="{w.op}" '
                     f'style="display:inline-block;margin:2px;padding:2px 4px;border-radius:4px;'
                     f'{style}"><span style="display:block">{ref}</span>'
                     f'<span style="display:block;opacity:.8">{hyp}</span></span>')
    summary = (f"<p><b>WER {report.wer:.1%}</b> · CER {report.cer:.1%} · "
               f"{report.substitutions} substituted, {report.insertions} inserted, "
               f"{report.deletions} deleted of {report.ref_words} words "
               f"(normaliser: {html.escape(report.normalizer)}). Top line: reference; bottom "
               "line: what was heard. Yellow = substituted, red = missed, green = extra.</p>")
    return f'<div id="eval-alignment-words">{summary}<div>{"".join(cells)}</div></div>'


def verdict_text(report: QualityReport) -> str:
    """The verdict in one or two plain sentences."""
    if report.passed:
        out = "PASS: every checked metric is within its threshold."
    else:
        out = ("FAIL: outside the threshold: " + ", ".join(m.label for m in report.failures)
               + ".")
    out += (" Design verdict (MFCC similarity > 0.85): "
            f"{'production ready' if report.production_ready else 'not ready'}.")
    return out


def verdict_markdown(report: QualityReport) -> str:
    """The page's verdict: PASS/FAIL, the design's verdict, the time it took, any notes."""
    out = (("**PASS** – every checked metric is within its threshold."
            if report.passed else
            "**FAIL** – outside the threshold: "
            + ", ".join(m.label for m in report.failures)
            + ". See *what it tells you* in the table.")
           + f"  \nDesign verdict (MFCC similarity > 0.85): "
           f"**{'production ready' if report.production_ready else 'not ready'}**. "
           f"Computed in {report.compute_s:.2f} s.")
    if report.notes:
        out += "  \n" + "; ".join(report.notes) + "."
    return out


def batch_summary(report: ManifestReport) -> str:
    summary = f"**{report.n_passed} of {len(report.items)} passed.**"
    if report.n_failed:
        summary += f" {report.n_failed} fell short of a threshold (column *problem*)."
    if report.n_errors:
        summary += f" {report.n_errors} could not be evaluated (column *problem*)."
    return summary


BATCH_KEYS = ("mfcc_similarity", "dtw_similarity", "mcd_db", "f0_correlation",
               "duration_ratio", "wer")
# Headers a reader understands; the CSV download keeps the metric keys.
BATCH_COLUMNS = ["line", "status", "problem", "MFCC similarity", "aligned similarity",
                  "MCD (dB)", "pitch correlation", "duration ratio", "WER", "text"]


def batch_rows(report: ManifestReport) -> list[list]:
    """The page's table: the problem first, values rounded, long texts shortened (the CSV
    download keeps everything)."""
    rows = []
    for item in report.items:
        values = {m.key: m.value for m in item.report.metrics} if item.report else {}
        text = item.row.text if len(item.row.text) <= 50 else item.row.text[:49] + "…"
        rows.append([item.row.line, item.status, item.problem,
                     *(None if values.get(k) is None else round(float(values[k]), 3)
                       for k in BATCH_KEYS),
                     text])
    return rows
