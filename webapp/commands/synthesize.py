"""``python -m webapp synthesize TEXT -o OUT.wav [--engine --voice --speed --format] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.audio import FORMATS
from webapp.pipeline.errors import InputError

HELP = "Synthesise text to an audio file (with the disk cache), optionally printing metrics as JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to speak; '-' reads standard input")
    parser.add_argument("--file", type=Path, help="read the text from a UTF-8 file")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output audio file")
    parser.add_argument("--engine", default=None, help="piper (default), coqui or espeak")
    parser.add_argument("--voice", default=None, help="voice id (default: the engine's default)")
    parser.add_argument("--speed", type=float, default=1.0, help="0.5 to 2.0 (default 1.0)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="audio format (default: from the output file's extension, else wav)")
    parser.add_argument("--reference", type=Path, help="voice-cloning clip (Coqui XTTS)")
    parser.add_argument("--srt", type=Path, help="also write sentence-timed subtitles (SRT)")
    parser.add_argument("--vtt", type=Path, help="also write sentence-timed subtitles (WebVTT)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with metrics")


def _read_text(args: argparse.Namespace, max_chars: int) -> str:
    if args.file is not None:
        try:
            raw = args.file.read_bytes()
        except OSError as exc:
            raise InputError(f"Cannot read {args.file}: {exc.strerror}.") from None
    elif args.text == "-":
        raw = sys.stdin.buffer.read(max_chars * 4 + 1)
    elif args.text is not None:
        return args.text
    else:
        raise InputError("Give the text to speak as an argument, with --file, or '-' for stdin.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("The text is not valid UTF-8.") from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.pipeline.audio import load
    from webapp.pipeline.subtitles import to_srt, to_vtt
    from webapp.pipeline.synthesis import SynthesisRequest
    from webapp.services import build_services

    text = _read_text(args, settings.max_text_chars)
    fmt = args.format or (args.output.suffix.lstrip(".").lower() if args.output.suffix.lstrip(".").lower() in FORMATS else "wav")
    reference = load(args.reference, max_seconds=settings.max_clone_clip_s) if args.reference else None
    services = build_services(settings, preload=False, with_stt=False)
    request = SynthesisRequest(text=text, engine=args.engine, voice=args.voice, speed=args.speed,
                               fmt=fmt, reference=reference)
    # Load (and warm up) outside the timed request, as the server does at start-up.
    engine_name = args.engine or settings.default_engine
    services.tts.get(engine_name).load(args.voice or services.tts.default_voice(engine_name))
    result = services.synthesizer.run(request)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(result.data)
        if args.srt:
            args.srt.write_text(to_srt(result.cues), encoding="utf-8")
        if args.vtt:
            args.vtt.write_text(to_vtt(result.cues), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"Cannot write the output: {exc}") from None
    if args.json:
        print(json.dumps({"output": str(args.output), **result.metrics()}))
    else:
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"wrote {args.output} ({result.audio_s:.1f} s, "
              f"{'cache hit' if result.cache_hit else 'synthesised'}, ttfa {result.ttfa_ms:.0f} ms, "
              f"rtf {result.rtf:.3f})")
    return 0
