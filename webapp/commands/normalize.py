"""``python -m webapp normalize TEXT``: print what the voice will say."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.errors import InputError

HELP = "Print the speakable form of a text (numbers, units, formulas spelled out)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to normalise; '-' reads standard input")
    parser.add_argument("--file", type=Path, help="read the text from a UTF-8 file")
    parser.add_argument("--no-lexicon", action="store_true", help="ignore the deployment's lexicon")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.pipeline.text.lexicon import Lexicon
    from webapp.pipeline.text.prepare import prepare

    if args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"Cannot read {args.file}: {exc}") from None
    elif args.text == "-":
        text = sys.stdin.read()
    elif args.text is not None:
        text = args.text
    else:
        raise InputError("Give the text as an argument, with --file, or '-' for stdin.")
    if len(text) > settings.max_text_chars:
        raise InputError(f"The text is {len(text):,} characters long; the limit is {settings.max_text_chars:,}.")
    lexicon = None if args.no_lexicon else Lexicon.load(settings.data_dir / "lexicon.csv")
    for line in text.splitlines() or [""]:
        pieces = prepare(line, lexicon)
        print(" ".join(p if isinstance(p, str) else f"[pause {p:g}s]" for p in pieces))
    return 0
