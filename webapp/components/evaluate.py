"""Evaluate tab (issue #4): compare a candidate clip with a reference, score a transcript,
or run a manifest batch.

Layout, events and the handlers (``on_*``: functions of ``Services`` and widget values, bound
with ``webapp.components.events``). The numbers come from ``webapp.pipeline.evaluate``, the
tables and words from ``evaluate_report``, the figures from ``plots``; ``/evaluate`` for
programs and assistants is ``evaluate_tool``.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webapp.components import plots
from webapp.components.downloads import write_downloads
from webapp.components.evaluate_report import (
    BATCH_COLUMNS,
    BATCH_KEYS,
    EXPLANATION,
    TABLE_HEADERS,
    alignment_html,
    batch_rows,
    batch_summary,
    report_rows,
    verdict_markdown,
)
from webapp.components.evaluate_tool import add_evaluate_tool
from webapp.components.events import PAGE_ONLY, bind
from webapp.components.inputs import MAX_EVALUATION_TEXT_CHARS, engine_choice, evaluation_text
from webapp.pipeline.audio import Audio, load
from webapp.pipeline.errors import InputError
from webapp.pipeline.evaluate import (
    MAX_CLIP_S,
    NORMALIZERS,
    Thresholds,
    compare,
    default_normalizer,
    score_text,
    stt_transcriber,
)
from webapp.pipeline.manifest import evaluate_manifest, read_manifest, uploaded_files
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.services import Services


def _thresholds(min_mfcc, min_dtw, max_mcd, min_f0, max_wer) -> Thresholds:
    def opt(v):
        return None if v is None or v == "" else float(v)
    return Thresholds(min_mfcc_similarity=opt(min_mfcc), min_dtw_similarity=opt(min_dtw),
                      max_mcd_db=opt(max_mcd), min_f0_correlation=opt(min_f0),
                      max_wer=opt(max_wer))


def _synthesize(services: Services, text_value: str, engine_name: str | None) -> Audio:
    request = SynthesisRequest(text=text_value, engine=engine_name or None, fmt="wav")
    return services.synthesizer.run(request).audio


def _transcriber(services: Services):
    if services.stt is None:
        raise InputError("Speech recognition is not available in this build.")
    return stt_transcriber(services.stt.get())


def on_evaluate(services: Services, ref_path, cand_path, text_value, engine_name,
                round_trip_value, mfcc_v, dtw_v, mcd_v, f0_v, wer_v, norm_v,
                progress=gr.Progress()):  # noqa: B008 - Gradio injects it
    text_value = evaluation_text(text_value)
    engine_name = engine_choice(engine_name, services.tts.names())
    if not ref_path:
        raise gr.Error("Upload or record a reference clip first.")
    if not cand_path and not text_value:
        raise gr.Error("Upload a candidate clip, or type a text to synthesise one.")
    thresholds = _thresholds(mfcc_v, dtw_v, mcd_v, f0_v, wer_v)
    progress(0.0, desc="Reading audio")
    ref_audio = load(ref_path, max_seconds=MAX_CLIP_S)
    synthesized = not cand_path
    if cand_path:
        cand_audio = load(cand_path, max_seconds=MAX_CLIP_S)
    else:
        progress(0.1, desc="Synthesising the candidate")
        cand_audio = _synthesize(services, text_value, engine_name)
    transcribe = None
    if text_value and round_trip_value:
        progress(0.3, desc="Loading the speech recogniser")
        transcribe = _transcriber(services)
    progress(0.5, desc="Measuring")
    report = compare(ref_audio, cand_audio, text=text_value or None, transcribe=transcribe,
                     thresholds=thresholds, normalizer=norm_v or "basic")
    progress(0.9, desc="Drawing")
    figs = plots.all_figures(report)
    align = alignment_html(report.text) if report.text is not None else ""
    # Let the user hear a synthesised candidate; hide the player otherwise.
    heard = (gr.Audio(value=(cand_audio.sample_rate, cand_audio.to_int16()), visible=True)
             if synthesized else gr.Audio(value=None, visible=False))
    return (verdict_markdown(report), heard, report_rows(report), align, figs["heatmaps"],
            figs["dtw"], figs["means"], figs["f0"])


def on_score(services: Services, ref_text, hyp_text, norm_v):
    return alignment_html(score_text(ref_text or "", hyp_text or "", normalizer=norm_v or "basic"))


def on_batch(services: Services, files, engine_name, round_trip_value, mfcc_v, dtw_v, mcd_v,
             f0_v, wer_v, norm_v, progress=gr.Progress()):  # noqa: B008 - Gradio injects it
    paths = [Path(f if isinstance(f, str) else f.name) for f in (files or [])]
    manifests = [p for p in paths if p.suffix.lower() == ".csv"]
    if len(manifests) != 1:
        raise gr.Error("Upload exactly one .csv manifest (plus the audio files it names).")
    engine_name = engine_choice(engine_name, services.tts.names())
    thresholds = _thresholds(mfcc_v, dtw_v, mcd_v, f0_v, wer_v)
    rows = read_manifest(manifests[0])
    transcribe = _transcriber(services) if round_trip_value else None
    # Files named in the manifest are looked up among this upload, by file name only: a
    # manifest cannot point the server at any other file.
    report = evaluate_manifest(
        rows, locate=uploaded_files(p for p in paths if p not in manifests),
        synthesize=lambda t: _synthesize(services, evaluation_text(t), engine_name),
        transcribe=transcribe, thresholds=thresholds, normalizer=norm_v or "basic",
        progress=lambda i, n: progress(i / max(n, 1), desc=f"Row {min(i + 1, n)} of {n}"))
    csv_path = write_downloads("evaluation", {"csv": report.to_csv()})[0]
    return batch_summary(report), batch_rows(report), plots.batch_summary(report.items), csv_path


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
                                "checks intelligibility)", lines=2, max_length=MAX_EVALUATION_TEXT_CHARS,
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
    batch_table = gr.Dataframe(headers=BATCH_COLUMNS,
                               label="Batch results", interactive=False, wrap=True,
                               column_widths=["5%", "6%", "25%", *["8%"] * len(BATCH_KEYS),
                                              "16%"],
                               elem_id="eval-batch-table")
    batch_plot = gr.Plot(label="Batch summary", elem_id="eval-batch-plot")
    batch_csv = gr.File(label="Results (.csv)", interactive=False, elem_id="eval-batch-csv")

    # The page's events are not the API: programs and assistants call /evaluate (evaluate_tool).
    run.click(bind(services, on_evaluate),
              inputs=[reference, candidate, text, engine, round_trip, min_mfcc, min_dtw, max_mcd,
                      min_f0, max_wer, normalizer],
              outputs=[verdict, synth_audio, table, alignment, plot_heatmaps, plot_dtw,
                       plot_means, plot_f0],
              concurrency_limit=1, concurrency_id="evaluate", api_visibility=PAGE_ONLY)
    stt_run.click(bind(services, on_score), inputs=[stt_ref, stt_hyp, stt_norm], outputs=[stt_out],
                  api_visibility=PAGE_ONLY)
    batch_run.click(bind(services, on_batch),
                    inputs=[batch_files, engine, round_trip, min_mfcc, min_dtw, max_mcd, min_f0,
                            max_wer, normalizer],
                    outputs=[batch_verdict, batch_table, batch_plot, batch_csv],
                    concurrency_limit=1, concurrency_id="evaluate", api_visibility=PAGE_ONLY)
    add_evaluate_tool(services)
