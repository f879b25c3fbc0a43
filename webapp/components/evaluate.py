"""Evaluate tab (issue #4): compare a candidate clip with a reference, score a transcript,
or run a manifest batch. Layout and events only; the numbers come from
``webapp.pipeline.evaluate`` and the figures from ``webapp.components.plots``.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import gradio as gr

from webapp.components import mcp_tools, plots
from webapp.components.downloads import write_downloads
from webapp.messages import user_message
from webapp.pipeline.audio import load
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.evaluate import (
    MAX_CLIP_S,
    NORMALIZERS,
    QualityReport,
    TextReport,
    Thresholds,
    compare,
    default_normalizer,
    score_text,
    stt_transcriber,
)
from webapp.pipeline.manifest import (
    ManifestReport,
    evaluate_manifest,
    read_manifest,
    uploaded_files,
)
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.services import Services

logger = logging.getLogger(__name__)

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


MAX_TEXT_CHARS = 2000
"""Longest text to synthesise a candidate from (a paragraph). The text box's max_length only
binds the page; API calls are checked in the handlers."""


def _engine_choice(value, engines: list[str]) -> str | None:
    """The engine dropdown's value. Gradio's Dropdown hands a *list* of valid choices to a
    single-choice handler when an API client sends one (tests/test_fuzz.py), so the type is
    checked here rather than deep in the pipeline."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in engines:
        raise InputError(f"Choose one engine from the list: {', '.join(engines)}.")
    return value


def _checked_text(value) -> str:
    text = (value if isinstance(value, str) else "").strip()
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"The text is {len(text):,} characters long; the limit here is "
                         f"{MAX_TEXT_CHARS:,} (a paragraph). Evaluate a longer lesson in parts.")
    return text


def _thresholds(min_mfcc, min_dtw, max_mcd, min_f0, max_wer) -> Thresholds:
    def opt(v):
        return None if v is None or v == "" else float(v)
    return Thresholds(min_mfcc_similarity=opt(min_mfcc), min_dtw_similarity=opt(min_dtw),
                      max_mcd_db=opt(max_mcd), min_f0_correlation=opt(min_f0),
                      max_wer=opt(max_wer))


def build_evaluate_tab(services: Services) -> None:
    settings = services.settings
    engines = services.tts.names()
    default_engine = settings.default_engine if settings.default_engine in engines else (
        engines[0] if engines else None)
    d = Thresholds()

    gr.Markdown("### Compare speech with a reference\nUpload or record a reference and a "
                "candidate, or type a text and let an engine speak the candidate.")
    with gr.Row():
        reference = gr.Audio(sources=["upload", "microphone"], type="filepath",
                             label="Reference (real speech)", elem_id="eval-reference")
        candidate = gr.Audio(sources=["upload", "microphone"], type="filepath",
                             label="Candidate (leave empty to synthesise from the text)",
                             elem_id="eval-candidate")
    with gr.Row():
        text = gr.Textbox(label="What is said (optional: synthesises a missing candidate and "
                                "checks intelligibility)", lines=2, max_length=MAX_TEXT_CHARS,
                          elem_id="eval-text")
        with gr.Column(scale=0, min_width=220):
            engine = gr.Dropdown(engines, value=default_engine, label="Engine for the candidate",
                                 elem_id="eval-engine")
            round_trip = gr.Checkbox(services.stt is not None,
                                     label="Transcribe the candidate (WER)",
                                     interactive=services.stt is not None,
                                     elem_id="eval-round-trip")
    with gr.Accordion("Thresholds (pass/fail)", open=False, elem_id="eval-thresholds"):
        with gr.Row():
            min_mfcc = gr.Number(d.min_mfcc_similarity, label="MFCC similarity ≥",
                                 elem_id="eval-min-mfcc")
            min_dtw = gr.Number(d.min_dtw_similarity, label="Aligned similarity ≥",
                                elem_id="eval-min-dtw")
            max_mcd = gr.Number(d.max_mcd_db, label="MCD (dB) ≤", elem_id="eval-max-mcd")
            min_f0 = gr.Number(None, label="Pitch correlation ≥ (empty = not checked)",
                               elem_id="eval-min-f0")
            max_wer = gr.Number(d.max_wer, label="WER ≤", elem_id="eval-max-wer")
            normalizer = gr.Dropdown(list(NORMALIZERS), value=default_normalizer(),
                                     label="Text normaliser",
                                     elem_id="eval-normalizer")
    run = gr.Button("Evaluate", variant="primary", elem_id="eval-run")
    verdict = gr.Markdown("", elem_id="eval-verdict")
    synth_audio = gr.Audio(label="Synthesised candidate (what was compared)", interactive=False,
                           visible=False, elem_id="eval-synth-audio")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Metrics", interactive=False,
                         wrap=True, column_widths=["24%", "11%", "10%", "7%", "48%"],
                         max_height=620, elem_id="eval-table")
    alignment = gr.HTML("", elem_id="eval-alignment")
    with gr.Row():
        plot_heatmaps = gr.Plot(label="MFCC heatmaps", elem_id="eval-plot-heatmaps")
        plot_dtw = gr.Plot(label="Similarity over time", elem_id="eval-plot-dtw")
    with gr.Row():
        plot_means = gr.Plot(label="Mean MFCC vectors", elem_id="eval-plot-means")
        plot_f0 = gr.Plot(label="Pitch contours", elem_id="eval-plot-f0")
    with gr.Accordion("What do these numbers mean?", open=False):
        gr.Markdown(EXPLANATION, elem_id="eval-explanation")

    gr.Markdown("### Score a transcript\nType what was said and what a recogniser heard.")
    with gr.Row():
        stt_ref = gr.Textbox(label="Reference text", lines=2, elem_id="stt-eval-reference")
        stt_hyp = gr.Textbox(label="Recognised text", lines=2, elem_id="stt-eval-hypothesis")
    with gr.Row():
        stt_norm = gr.Dropdown(list(NORMALIZERS), value=default_normalizer(),
                               label="Text normaliser",
                               elem_id="stt-eval-normalizer")
        stt_run = gr.Button("Score", elem_id="stt-eval-run")
    stt_out = gr.HTML("", elem_id="stt-eval-alignment")

    gr.Markdown("### Batch\nUpload a CSV manifest (columns `text, reference, candidate`; the "
                "candidate is optional and is then synthesised) together with the audio files "
                "it names.")
    batch_files = gr.File(file_count="multiple", label="Manifest (.csv) and audio files",
                          elem_id="eval-batch-files")
    batch_run = gr.Button("Evaluate batch", elem_id="eval-batch-run")
    batch_verdict = gr.Markdown("", elem_id="eval-batch-verdict")
    batch_table = gr.Dataframe(headers=_BATCH_COLUMNS,
                               label="Batch results", interactive=False, wrap=True,
                               column_widths=["5%", "6%", "25%", *["8%"] * len(_BATCH_KEYS),
                                              "16%"],
                               elem_id="eval-batch-table")
    batch_plot = gr.Plot(label="Batch summary", elem_id="eval-batch-plot")
    batch_csv = gr.File(label="Results (.csv)", interactive=False, elem_id="eval-batch-csv")

    def synthesize(text_value: str, engine_name: str | None):
        request = SynthesisRequest(text=text_value, engine=engine_name or None, fmt="wav")
        return services.synthesizer.run(request).audio

    def transcriber():
        if services.stt is None:
            raise InputError("Speech recognition is not available in this build.")
        return stt_transcriber(services.stt.get())

    # -- single comparison ------------------------------------------------------------------
    def on_evaluate(ref_path, cand_path, text_value, engine_name, round_trip_value, mfcc_v,
                    dtw_v, mcd_v, f0_v, wer_v, norm_v,
                    progress=gr.Progress()):  # noqa: B008 - Gradio injects it
        try:
            text_value = _checked_text(text_value)
            engine_name = _engine_choice(engine_name, engines)
        except PipelineError as exc:
            raise gr.Error(user_message(exc, public=settings.public)) from None
        if not ref_path:
            raise gr.Error("Upload or record a reference clip first.")
        if not cand_path and not text_value:
            raise gr.Error("Upload a candidate clip, or type a text to synthesise one.")
        try:
            thresholds = _thresholds(mfcc_v, dtw_v, mcd_v, f0_v, wer_v)
            progress(0.0, desc="Reading audio")
            ref_audio = load(ref_path, max_seconds=MAX_CLIP_S)
            synthesized = not cand_path
            if cand_path:
                cand_audio = load(cand_path, max_seconds=MAX_CLIP_S)
            else:
                progress(0.1, desc="Synthesising the candidate")
                cand_audio = synthesize(text_value, engine_name)
            transcribe = None
            if text_value and round_trip_value:
                progress(0.3, desc="Loading the speech recogniser")
                transcribe = transcriber()
            progress(0.5, desc="Measuring")
            report = compare(ref_audio, cand_audio, text=text_value or None,
                             transcribe=transcribe, thresholds=thresholds,
                             normalizer=norm_v or "basic")
            progress(0.9, desc="Drawing")
            figs = plots.all_figures(report)
        except PipelineError as exc:
            raise gr.Error(user_message(exc, public=settings.public)) from None
        except Exception:  # noqa: BLE001 - log it, show a readable message
            logger.exception("evaluation failed")
            raise gr.Error("Evaluation failed unexpectedly; the error was logged.") from None
        verdict_md = (("**PASS** – every checked metric is within its threshold."
                       if report.passed else
                       "**FAIL** – outside the threshold: "
                       + ", ".join(m.label for m in report.failures)
                       + ". See *what it tells you* in the table.")
                      + f"  \nDesign verdict (MFCC similarity > 0.85): "
                      f"**{'production ready' if report.production_ready else 'not ready'}**. "
                      f"Computed in {report.compute_s:.2f} s.")
        if report.notes:
            verdict_md += "  \n" + "; ".join(report.notes) + "."
        align = alignment_html(report.text) if report.text is not None else ""
        # Let the user hear a synthesised candidate; hide the player otherwise.
        heard = (gr.Audio(value=(cand_audio.sample_rate, cand_audio.to_int16()), visible=True)
                 if synthesized else gr.Audio(value=None, visible=False))
        return (verdict_md, heard, report_rows(report), align, figs["heatmaps"], figs["dtw"],
                figs["means"], figs["f0"])

    # The page's events are not the API: programs and assistants call /evaluate below.
    page_only = "undocumented"
    run.click(on_evaluate,
              inputs=[reference, candidate, text, engine, round_trip, min_mfcc, min_dtw, max_mcd,
                      min_f0, max_wer, normalizer],
              outputs=[verdict, synth_audio, table, alignment, plot_heatmaps, plot_dtw,
                       plot_means, plot_f0],
              concurrency_limit=1, concurrency_id="evaluate", api_visibility=page_only)

    # -- transcript scoring -----------------------------------------------------------------
    def on_score(ref_text, hyp_text, norm_v):
        try:
            return alignment_html(score_text(ref_text or "", hyp_text or "",
                                             normalizer=norm_v or "basic"))
        except PipelineError as exc:
            raise gr.Error(user_message(exc, public=settings.public)) from None

    stt_run.click(on_score, inputs=[stt_ref, stt_hyp, stt_norm], outputs=[stt_out],
                  api_visibility=page_only)

    # -- batch ------------------------------------------------------------------------------
    def on_batch(files, engine_name, round_trip_value, mfcc_v, dtw_v, mcd_v, f0_v, wer_v,
                 norm_v, progress=gr.Progress()):  # noqa: B008 - Gradio injects it
        paths = [Path(f if isinstance(f, str) else f.name) for f in (files or [])]
        manifests = [p for p in paths if p.suffix.lower() == ".csv"]
        if len(manifests) != 1:
            raise gr.Error("Upload exactly one .csv manifest (plus the audio files it names).")
        try:
            engine_name = _engine_choice(engine_name, engines)
            thresholds = _thresholds(mfcc_v, dtw_v, mcd_v, f0_v, wer_v)
            rows = read_manifest(manifests[0])
            transcribe = transcriber() if round_trip_value else None
            # Files named in the manifest are looked up among this upload, by file name only:
            # a manifest cannot point the server at any other file.
            report = evaluate_manifest(
                rows, locate=uploaded_files(p for p in paths if p not in manifests),
                synthesize=lambda t: synthesize(_checked_text(t), engine_name),
                transcribe=transcribe,
                thresholds=thresholds, normalizer=norm_v or "basic",
                progress=lambda i, n: progress(i / max(n, 1), desc=f"Row {min(i + 1, n)} of {n}"))
        except PipelineError as exc:
            raise gr.Error(user_message(exc, public=settings.public)) from None
        except Exception:  # noqa: BLE001 - log it, show a readable message
            logger.exception("batch evaluation failed")
            raise gr.Error("The batch failed unexpectedly; the error was logged.") from None
        summary = f"**{report.n_passed} of {len(report.items)} passed.**"
        if report.n_failed:
            summary += f" {report.n_failed} fell short of a threshold (column *problem*)."
        if report.n_errors:
            summary += f" {report.n_errors} could not be evaluated (column *problem*)."
        csv_path = write_downloads("evaluation", {"csv": report.to_csv()})[0]
        return summary, batch_rows(report), plots.batch_summary(report.items), csv_path

    batch_run.click(on_batch,
                    inputs=[batch_files, engine, round_trip, min_mfcc, min_dtw, max_mcd, min_f0,
                            max_wer, normalizer],
                    outputs=[batch_verdict, batch_table, batch_plot, batch_csv],
                    concurrency_limit=1, concurrency_id="evaluate", api_visibility=page_only)
    add_evaluate_tool(services)


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


def add_evaluate_tool(services: Services) -> None:
    """``/evaluate``: the tab's comparison for programs (``gradio_client``) and assistants (MCP
    tool), with the default thresholds; see ``webapp.components.mcp_tools``."""
    settings = services.settings

    def measure(ref_path: str, cand_path: str | None, synthesized, text: str) -> QualityReport:
        # Decoding counts as the job's work too: unqueued calls have no other bound on it.
        ref_audio = load(ref_path, max_seconds=MAX_CLIP_S)
        cand_audio = synthesized if synthesized is not None else load(cand_path,
                                                                      max_seconds=MAX_CLIP_S)
        transcribe = (stt_transcriber(services.stt.get())
                      if text and services.stt is not None else None)
        return compare(ref_audio, cand_audio, text=text or None, transcribe=transcribe,
                       normalizer=default_normalizer())

    async def evaluate(reference: str, candidate: str | None = None, text: str = "",
                       request: gr.Request = None):
        """Check how close a speech recording (for example a synthetic voice) is to a reference recording of the same sentence, and with a text how intelligible it is. Reports MFCC similarity, aligned frame similarity (DTW), mel cepstral distortion, pitch correlation, duration ratio and, with a text, the word error rate of a speech recogniser listening to the candidate, each against a default pass/fail threshold.

        Args:
            reference: The reference recording (real speech, up to {max_minutes:.0f} minutes): a data URL with the file in base64 (data:audio/wav;base64,...), or a public http(s) URL of the file.
            candidate: The recording to check, in the same forms. Leave it out to check the server's default voice reading the text.
            text: What is said (optional; needed without a candidate). With it the candidate is transcribed and its word error rate reported.

        Returns:
            A verdict (PASS or FAIL, and the design's production-ready verdict), and the JSON report: passed, production_ready, metrics (mfcc_similarity, dtw_similarity, mcd_db, f0_correlation, f0_rmse_cents, duration_ratio, wer, cer), checks (threshold and passed for each checked metric), text (reference, hypothesis, wer, cer, ...), candidate, notes.
        """
        try:
            text = _checked_text(text)
            if not reference:
                raise InputError("Give the reference recording (real speech).")
            if not candidate and not text:
                raise InputError("Give a candidate recording, or a text for the server's "
                                 "default voice to read.")
            client = mcp_tools.caller(request, settings)
            synthesized, source = None, "the caller's recording"
            if not candidate:
                result = await mcp_tools.synthesis(
                    services, SynthesisRequest(text=text, fmt="wav"), client)
                synthesized = result.audio
                source = f"synthesised from the text by {result.engine} / {result.voice}"
            report = await mcp_tools.in_slot(services.limits.evaluation, client, measure,
                                             reference, candidate, synthesized, text)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
            raise mcp_tools.refusal(exc, settings) from None
        return verdict_text(report), mcp_tools.as_json({**report.to_dict(), "candidate": source})

    mcp_tools.describe(evaluate, max_minutes=MAX_CLIP_S / 60)
    with mcp_tools.hidden():
        reference = gr.Audio(type="filepath", sources=["upload"], label="reference")
        candidate = gr.Audio(type="filepath", sources=["upload"], label="candidate")
        text = gr.Textbox("", label="text")
        verdict = gr.Textbox(label="verdict")
        report = gr.Textbox(label="report (JSON)")
    mcp_tools.register(evaluate, [reference, candidate, text], [verdict, report])


_BATCH_KEYS = ("mfcc_similarity", "dtw_similarity", "mcd_db", "f0_correlation",
               "duration_ratio", "wer")
# Headers a reader understands; the CSV download keeps the metric keys.
_BATCH_COLUMNS = ["line", "status", "problem", "MFCC similarity", "aligned similarity",
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
                       for k in _BATCH_KEYS),
                     text])
    return rows
