"""``python -m webapp normalize TEXT``: print what the voice will say.

The text is prepared exactly as the synthesis service prepares it (deployment lexicon, pause
marks, normaliser), one output line per input line; pauses print as ``[pause 1s]``. ``--json``
prints one JSON object with the pieces and the versions that enter the synthesis cache key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.errors import InputError

HELP = "Print the speakable form of a text (numbers, units, formulas spelled out)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to normalise; '-' reads standard input")
    parser.add_argument("--file", type=Path, help="read the text from a UTF-8 file")
    parser.add_argument("--no-lexicon", action="store_true", help="ignore the deployment's lexicon")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _read_text(args: argparse.Namespace) -> str:
    if args.file is not None and args.text is not None:
        raise InputError("Give the text either as an argument or with --file, not both.")
    if args.file is not None:
        try:
            return args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"Cannot read {args.file} as UTF-8 text: {exc}") from None
    if args.text == "-":
        try:
            return sys.stdin.read()
        except UnicodeDecodeError:
            raise InputError("Standard input is not UTF-8 text.") from None
    if args.text is not None:
        return args.text
    raise InputError("Give the text as an argument, with --file, or '-' for stdin.")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.pipeline.text.lexicon import Lexicon
    from webapp.pipeline.text.normalize import NORMALIZER_VERSION
    from webapp.pipeline.text.prepare import prepare, text_version

    text = _read_text(args)
    if len(text) > settings.max_text_chars:
        raise InputError(f"The text is {len(text):,} characters long; the limit is "
                         f"{settings.max_text_chars:,} (SPEECH_STUDIO_MAX_TEXT_CHARS).")
    lexicon = None if args.no_lexicon else Lexicon.load(settings.data_dir / "lexicon.csv")
    lines = [(line, prepare(line, lexicon)) for line in text.splitlines() or [""]]
    if args.json:
        print(json.dumps({
            "normalizer_version": NORMALIZER_VERSION,
            "lexicon_entries": len(lexicon.entries) if lexicon is not None else 0,
            "text_version": text_version(lexicon),
            "lines": [{"written": written,
                       "pieces": [p if isinstance(p, str) else {"pause_s": p} for p in pieces]}
                      for written, pieces in lines],
        }, ensure_ascii=False))
        return 0
    for _written, pieces in lines:
        print(" ".join(p if isinstance(p, str) else f"[pause {p:g}s]" for p in pieces))
    return 0
