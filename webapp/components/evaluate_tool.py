"""``/evaluate``: the Evaluate tab's comparison for programs (``gradio_client``) and assistants
(MCP tool), with the default thresholds; what tools share is in ``webapp.components.mcp_tools``."""

from __future__ import annotations

import gradio as gr

from webapp.components import mcp_tools
from webapp.components.evaluate_report import verdict_text
from webapp.components.events import client_of
from webapp.components.inputs import evaluation_text
from webapp.pipeline.audio import load
from webapp.pipeline.errors import InputError
from webapp.pipeline.evaluate import (
    MAX_CLIP_S,
    QualityReport,
    compare,
    default_normalizer,
    stt_transcriber,
)
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.services import Services


def add_evaluate_tool(services: Services) -> None:
    """Register ``/evaluate`` (hidden components, no page trigger)."""
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
        with mcp_tools.refusals(settings):
            text = evaluation_text(text)
            if not reference:
                raise InputError("Give the reference recording (real speech).")
            if not candidate and not text:
                raise InputError("Give a candidate recording, or a text for the server's "
                                 "default voice to read.")
            client = client_of(request, services)
            synthesized, source = None, "the caller's recording"
            if not candidate:
                result = await mcp_tools.synthesis(
                    services, SynthesisRequest(text=text, fmt="wav"), client)
                synthesized = result.audio
                source = f"synthesised from the text by {result.engine} / {result.voice}"
            report = await mcp_tools.in_slot(services.limits.evaluation, client, measure,
                                             reference, candidate, synthesized, text)
        return verdict_text(report), mcp_tools.as_json({**report.to_dict(), "candidate": source})

    mcp_tools.describe(evaluate, max_minutes=MAX_CLIP_S / 60)
    with mcp_tools.hidden():
        reference = gr.Audio(type="filepath", sources=["upload"], label="reference")
        candidate = gr.Audio(type="filepath", sources=["upload"], label="candidate")
        text = gr.Textbox("", label="text")
        verdict = gr.Textbox(label="verdict")
        report = gr.Textbox(label="report (JSON)")
    mcp_tools.register(evaluate, [reference, candidate, text], [verdict, report])
