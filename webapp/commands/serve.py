"""``python -m webapp serve``: load the models and serve the web app."""

from __future__ import annotations

import argparse

from webapp.config import Settings

HELP = "Serve the web app (Synthesize, Transcribe, Evaluate) on the offline default models."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.app import serve

    serve(settings, host=args.host, port=args.port)
    return 0
