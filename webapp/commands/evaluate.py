"""``python -m webapp evaluate REF GEN [--text T] [--json]`` and
``python -m webapp evaluate --manifest M.csv --engine piper --min-mfcc 0.85 [--max-wer 0.1]``.

A quality gate for CI (issue #4): exit 0 when every item passes its thresholds, 1 when any item
falls short (or a manifest row cannot be evaluated), 2 for usage errors (the dispatcher prints
``error:`` for a ``PipelineError``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from webapp.config import Settings

HELP = "Compare reference and generated speech (MFCC, DTW, MCD, pitch, WER); a CI quality gate."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from webapp.pipeline.evaluate import NORMALIZERS, Thresholds, default_normalizer

    d = Thresholds()
    parser.add_argument("reference", nargs="?", type=Path, help="reference audio file")
    parser.add_argument("candidate", nargs="?", type=Path, help="generated (candidate) audio file")
    parser.add_argument("--manifest", type=Path,
                        help="CSV with columns text, reference, candidate (optional); paths are "
                             "relative to the CSV's folder; rows without a candidate are "
                             "synthesised with --engine")
    parser.add_argument("--engine", default=None, help="TTS engine for missing candidates "
                                                       "(default: the deployment's default)")
    parser.add_argument("--voice", default=None, help="voice for missing candidates")
    parser.add_argument("--text", default=None,
                        help="what the candidate says (enables the round trip with --max-wer)")
    parser.add_argument("--round-trip", action="store_true",
                        help="transcribe each candidate and score WER/CER against its text "
                             "(implied by --max-wer)")
    parser.add_argument("--normalizer", choices=NORMALIZERS, default=default_normalizer(),
                        help="text normalisation before WER: whisper (openai-whisper's English "
                             "normaliser, the default when installed), basic (case and "
                             "punctuation) or none")
    parser.add_argument("--min-mfcc", type=float, default=d.min_mfcc_similarity,
                        help=f"design MFCC similarity threshold (default {d.min_mfcc_similarity})")
    parser.add_argument("--min-dtw", type=float, default=d.min_dtw_similarity,
                        help=f"aligned frame similarity threshold (default {d.min_dtw_similarity})")
    parser.add_argument("--max-mcd", type=float, default=d.max_mcd_db,
                        help=f"mel cepstral distortion limit in dB (default {d.max_mcd_db})")
    parser.add_argument("--min-f0-corr", type=float, default=d.min_f0_correlation,
                        help="pitch contour correlation threshold (default: not checked)")
    parser.add_argument("--min-duration-ratio", type=float, default=d.min_duration_ratio,
                        help=f"shortest candidate/reference length ratio (default "
                             f"{d.min_duration_ratio})")
    parser.add_argument("--max-duration-ratio", type=float, default=d.max_duration_ratio,
                        help=f"longest candidate/reference length ratio (default "
                             f"{d.max_duration_ratio})")
    parser.add_argument("--max-wer", type=float, default=None,
                        help="word error rate limit for the round trip (enables it)")
    parser.add_argument("--max-cer", type=float, default=None, help="character error rate limit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _thresholds(args: argparse.Namespace):
    from webapp.pipeline.evaluate import Thresholds

    for name in ("min_mfcc", "min_dtw", "max_mcd", "min_f0_corr", "min_duration_ratio",
                 "max_duration_ratio", "max_wer", "max_cer"):
        value = getattr(args, name)
        if value is not None and (value != value or value < 0):  # NaN or negative
            from webapp.pipeline.errors import InputError

            raise InputError(f"--{name.replace('_', '-')} must be a non-negative number.")
    return Thresholds(min_mfcc_similarity=args.min_mfcc, min_dtw_similarity=args.min_dtw,
                      max_mcd_db=args.max_mcd, min_f0_correlation=args.min_f0_corr,
                      min_duration_ratio=args.min_duration_ratio,
                      max_duration_ratio=args.max_duration_ratio,
                      max_wer=args.max_wer if args.max_wer is not None else Thresholds.max_wer,
                      max_cer=args.max_cer)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.pipeline.errors import InputError

    if args.manifest is not None and (args.reference or args.candidate):
        raise InputError("Give either REF GEN or --manifest, not both.")
    if args.manifest is None and (args.reference is None or args.candidate is None):
        raise InputError("Give two audio files (REF GEN) or --manifest M.csv.")
    thresholds = _thresholds(args)
    round_trip = args.round_trip or args.max_wer is not None
    if args.manifest is not None:
        return _run_manifest(args, settings, thresholds, round_trip)
    return _run_pair(args, settings, thresholds, round_trip)


def _services(settings: Settings, *, with_stt: bool):
    from webapp.services import build_services

    return build_services(settings, preload=False, with_stt=with_stt)


def _transcriber(services):
    from webapp.pipeline.errors import ModelUnavailableError
    from webapp.pipeline.evaluate import stt_transcriber

    if services.stt is None:
        raise ModelUnavailableError("Speech recognition is not available in this build, so the "
                                    "round trip (--max-wer) cannot run.")
    return stt_transcriber(services.stt.get())


def _run_pair(args, settings, thresholds, round_trip: bool) -> int:
    from webapp.pipeline.audio import load
    from webapp.pipeline.errors import InputError
    from webapp.pipeline.evaluate import MAX_CLIP_S, compare

    if round_trip and not (args.text or "").strip():
        raise InputError("The round trip (--max-wer / --round-trip) needs --text: what the "
                         "candidate should say.")
    reference = load(args.reference, max_seconds=MAX_CLIP_S)
    candidate = load(args.candidate, max_seconds=MAX_CLIP_S)
    transcribe = _transcriber(_services(settings, with_stt=True)) if round_trip else None
    report = compare(reference, candidate, text=args.text, transcribe=transcribe,
                     thresholds=thresholds, normalizer=args.normalizer)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_report(report))
    return 0 if report.passed else 1


def _run_manifest(args, settings, thresholds, round_trip: bool) -> int:
    from webapp.pipeline.manifest import evaluate_manifest, read_manifest, relative_to
    from webapp.pipeline.synthesis import SynthesisRequest

    rows = read_manifest(args.manifest)
    needs_tts = any(not r.candidate and r.text for r in rows)
    services = _services(settings, with_stt=round_trip) if (needs_tts or round_trip) else None
    synthesize = None
    if needs_tts and services is not None:
        def synthesize(text: str):
            request = SynthesisRequest(text=text, engine=args.engine, voice=args.voice, fmt="wav")
            return services.synthesizer.run(request).audio
    transcribe = _transcriber(services) if round_trip else None

    def progress(done: int, total: int) -> None:
        if not args.json and done < total:
            print(f"[{done + 1}/{total}] evaluating line {rows[done].line}", file=sys.stderr)

    # Paths in the manifest are relative to its own folder (an operator's file on their machine).
    report = evaluate_manifest(rows, locate=relative_to(args.manifest.parent),
                               synthesize=synthesize, transcribe=transcribe,
                               thresholds=thresholds, normalizer=args.normalizer,
                               progress=progress)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_manifest(report.items))
    return 0 if report.passed else 1


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"


def format_report(report) -> str:
    lines = [f"{'metric':44s} {'value':>9s} {'threshold':>10s}  verdict"]
    for m in report.metrics:
        label = f"{m.label}{f' ({m.unit})' if m.unit else ''}"
        lines.append(f"{label:44s} {_fmt(m.value):>9s} {m.threshold_label:>10s}  {m.verdict}")
    if report.text is not None:
        t = report.text
        lines.append(f"heard: {t.hypothesis!r} (S={t.substitutions} I={t.insertions} "
                     f"D={t.deletions})")
    lines.extend(f"note: {n}" for n in report.notes)
    lines.append(f"production_ready (design: MFCC similarity > 0.85): {report.production_ready}")
    lines.append("PASS" if report.passed else
                 "FAIL: " + ", ".join(m.key for m in report.failures))
    return "\n".join(lines) + "\n"


def format_manifest(items) -> str:
    keys = ("mfcc_similarity", "dtw_similarity", "mcd_db", "f0_correlation", "wer")
    lines = ["line  status " + " ".join(f"{k[:10]:>10s}" for k in keys) + "  text / problem"]
    for item in items:
        if item.report is None:
            vals = " ".join(f"{'-':>10s}" for _ in keys)
            tail = item.error or ""
        else:
            got = {m.key: m.value for m in item.report.metrics}
            vals = " ".join(f"{_fmt(got.get(k)):>10s}" for k in keys)
            failed = ", ".join(m.key for m in item.report.failures)
            tail = item.row.text[:40] + (f"  [failed: {failed}]" if failed else "")
        lines.append(f"{item.row.line:>4d}  {item.status:6s} {vals}  {tail}")
    n_ok = sum(i.passed for i in items)
    lines.append(f"{n_ok}/{len(items)} passed")
    return "\n".join(lines) + "\n"
