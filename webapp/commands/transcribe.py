"""``python -m webapp transcribe FILE [--engine --model --format txt|srt|vtt|json] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from webapp.config import Settings

HELP = "Transcribe an audio file (wav, flac, mp3, ogg, m4a) to text or subtitles."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="audio file to transcribe")
    parser.add_argument("--engine", default=None, help="faster-whisper (default) or openai-whisper")
    parser.add_argument("--model", default=None,
                        help="model name (default tiny.en), or a local CTranslate2 directory / "
                             ".pt checkpoint (operator use)")
    parser.add_argument("--format", choices=("txt", "srt", "vtt", "json"), default="txt",
                        help="what to print (default txt)")
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    parser.add_argument("--vocabulary", default="", help="names and terms to expect (prompt)")
    parser.add_argument("--no-denoise", dest="denoise", action="store_false",
                        help="skip noise reduction (on by default: bench/stt.py measured "
                             "lower WER on noisy speech, the same on clean speech)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (transcript + metrics) instead of --format")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.pipeline.stt.base import TranscribeOptions
    from webapp.pipeline.stt.files import (
        load_for_transcription,
        render,
        transcribe_audio,
        transcript_dict,
    )
    from webapp.pipeline.stt.registry import STTRegistry

    registry = STTRegistry(settings)
    audio = load_for_transcription(args.file, registry.stt.max_transcribe_s)
    original_rate = _original_rate(args.file)
    model = args.model
    if model and (Path(model).expanduser().exists() or "/" in model):
        engine = registry.load_path(args.engine, Path(model))
    else:
        engine = registry.get(args.engine, model)
    options = TranscribeOptions(initial_prompt=args.vocabulary.strip() or None,
                                denoise=args.denoise)
    result = transcribe_audio(engine, audio, options, original_rate_hz=original_rate)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        out = json.dumps({**transcript_dict(result.transcript),
                          "warnings": list(result.warnings),
                          "compute_s": round(result.compute_s, 3),
                          "rtf": round(result.rtf, 4)}, ensure_ascii=False) + "\n"
    else:
        out = render(result.transcript, args.format)
    if args.output:
        args.output.write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    return 0


def _original_rate(path: Path) -> int | None:
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except Exception:  # noqa: BLE001 - not a libsndfile format (decoded through ffmpeg)
        return None
