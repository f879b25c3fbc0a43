"""Command line: ``python -m webapp {serve,synthesize,transcribe,evaluate,normalize,batch,space} ...``.

Each subcommand lives in ``webapp/commands/<name>.py`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args, settings) -> int``. User errors are ``PipelineError``s:
printed as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from webapp.config import Settings, disable_telemetry

COMMANDS = ("serve", "synthesize", "transcribe", "evaluate", "normalize", "batch", "space")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(prog="python -m webapp", description="Speech Studio")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules: dict[str, object] = {}
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"webapp.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"webapp.commands.{name}":
                continue  # not built yet
            raise
        modules[name] = module
        cmd_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd_parser)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    disable_telemetry()
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from webapp.pipeline.errors import PipelineError

    try:
        return int(modules[args.command].run(args, Settings.from_env()) or 0)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
