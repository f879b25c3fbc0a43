"""``python -m webapp space build OUT`` / ``python -m webapp space check``: the Hugging Face Space.

``build`` writes the folder to push (``webapp/space.py``); ``check`` proves it before a push:
it builds the Space into a temporary folder, installs its ``requirements.txt`` into a fresh
virtual environment with the Python its front matter names, boots ``app.py`` with no access to
this repository, and drives all three tabs with ``gradio_client`` and the page in Chromium
(``webapp/space_check.py``; ``bench/space.py`` adds the full install for comparison).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.errors import InputError

HELP = "Build the Hugging Face Space folder (build OUT) or prove that it installs and boots (check)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="space_command", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="write the Space into OUT (empty or absent)")
    build.add_argument("out", type=Path, help="folder to write (pushed to the Space as it is)")
    build.add_argument("--force", action="store_true", help="replace OUT's contents")
    check = sub.add_parser("check", help="build, install from PyPI into a fresh venv, boot, drive")
    check.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed)")
    check.add_argument("--no-pip-cache", action="store_true",
                       help="download everything again (a cold install; by default downloads "
                            "are kept in ~/.cache/speech-studio-space-check/wheels)")
    check.add_argument("--pip-config", action="store_true",
                       help="use this machine's pip configuration (mirrors, constraints) "
                            "instead of PyPI alone")
    check.add_argument("--no-browser", action="store_true", help="skip the Chromium page check")
    check.add_argument("--no-netns", action="store_true",
                       help="boot the app with network access (default: in a network namespace "
                            "with only loopback, when running as root)")
    check.add_argument("--screenshot", type=Path, help="where to save the page's screenshot")
    check.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.space_command == "build":
        from webapp.space import SpaceBuildError, build_space

        try:
            built = build_space(args.out, force=args.force)
        except SpaceBuildError as exc:
            raise InputError(str(exc)) from None
        print(f"Space written to {built.out}: {len(built.files)} files, {len(built.pins)} pinned "
              f"packages, gradio {built.gradio_version}, Python {built.python_version}.")
        return 0

    from webapp.space_check import CheckOptions, SpaceCheckError, run_check

    options = CheckOptions(work=args.work, pip_cache=not args.no_pip_cache,
                           pypi_only=not args.pip_config, browser=not args.no_browser,
                           netns=not args.no_netns, screenshot=args.screenshot)
    try:
        report = run_check(options)
    except SpaceCheckError as exc:
        raise InputError(f"Space check failed: {exc}") from None
    print(json.dumps(report, indent=1) if args.json else report_text(report))
    return 0


def report_text(report: dict) -> str:
    return "\n".join([
        f"Space check passed (Python {report['python']}, gradio {report['gradio_version']}, "
        f"{report['pins']} pinned packages, network during boot: {report['app_network']}).",
        f"  install: venv {report['venv_mb']:.0f} MiB; pip {report['pip_total_s']:.0f} s "
        f"(download {report['pip_download_s']:.0f} s "
        f"{'all reused' if report['downloads_reused'] else 'resolved and fetched'}, "
        f"{report['index']}; install {report['pip_install_s']:.0f} s)",
        f"  boot: /api/health after {report['boot_to_health_s']:.1f} s, first gradio_client "
        f"call answered after {report['boot_to_first_call_s']:.1f} s",
        f"  synthesize {report['synthesize']['audio_s']:.2f} s of audio; transcribe WER "
        f"{report['transcribe']['wer']:.1%}; evaluate: {report['evaluate']['verdict']}",
    ])
