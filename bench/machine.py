"""What every benchmark records about the machine it ran on (one definition for all scripts)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg": os.getloadavg()}


def print_table(columns: list[tuple[str, str, str]], rows: list[dict]) -> None:
    """A benchmark's table: ``columns`` are (header, key, format spec such as ">8.1f")."""
    def width(spec: str) -> str:
        match = re.match(r"[<>^]?\d*", spec)
        return match.group(0) if match else ""

    print(" ".join(f"{header:{width(spec)}}" for header, _, spec in columns).rstrip())
    for row in rows:
        print(" ".join(f"{row[key]:{spec}}" if spec else str(row[key])
                       for _, key, spec in columns).rstrip())


def report_footer(report: dict, path: Path | None) -> None:
    """A benchmark's closing lines: the machine it ran on, the JSON report on stdout, and the
    report saved to ``path`` (``--json-out``) when one was given."""
    import json

    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, load {m['load_avg'][0]:.2f}")
    print(json.dumps(report))
    save_json(report, path)


def save_json(report: dict, path: Path | None) -> None:
    """Write a benchmark's JSON report to ``path`` (``--json-out``), when one was given."""
    if path is None:
        return
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
