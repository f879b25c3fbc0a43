"""The Hugging Face Space against the full install: install size, install time, boot to ready.

    python bench/space.py [--cold] [--full] [--json-out bench/results/space.json]

Space: the local Spaces check (``webapp/space_check.py``): ``python -m webapp space build``,
a fresh venv with Python 3.11 and ``pip install -r requirements.txt`` resolved against PyPI
alone, ``app.py`` booted from a temporary copy (``PYTHONPATH`` empty, fresh ``HOME``, loopback
only), then ``gradio_client`` on the three tabs and the page in Chromium. The first run reuses
earlier downloads (``~/.cache/speech-studio-space-check/wheels``); ``--cold`` adds a run that
downloads everything again.

Full (``--full``): what the README's commands give, ``SPEECH_STUDIO_VENV=<fresh folder> bash
scripts/studio.sh install`` (this machine's pip configuration: torch 2.14.1 comes from local
disk here, so its download is not in the time), then ``python -m webapp serve`` in public mode
from the repository, probed the same way.

Boot to ready: from starting the process to ``/api/health`` answering 200 (the server listens
only once models are loaded and warmed) and to the first ``gradio_client`` call answered (a
one-sentence synthesis, client set-up included). Each boot is the first of a fresh venv, as on
Spaces, where every cold start begins from the built image: numba compiles librosa's kernels
on the evaluation warm-up then (its cache in ``site-packages`` is not in the image).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine, save_json  # noqa: E402
from webapp.space_check import (  # noqa: E402
    CheckOptions,
    _free_port,
    boot_and_probe,
    du_mb,
    largest,
    run_check,
)


def space_variant(cold: bool) -> dict:
    t0 = time.perf_counter()
    report = run_check(CheckOptions(pip_cache=not cold))
    report["check_s"] = round(time.perf_counter() - t0, 1)
    report.pop("app_log_tail", None)
    return report


def full_variant() -> dict:
    work = Path(tempfile.mkdtemp(prefix="space-bench-full-"))
    try:
        venv = work / "venv"
        env = {**os.environ, "SPEECH_STUDIO_VENV": str(venv)}
        t0 = time.perf_counter()
        subprocess.run(["bash", "scripts/studio.sh", "install"], cwd=ROOT, env=env, check=True)
        install_s = time.perf_counter() - t0
        (work / "home").mkdir()
        port = _free_port()
        boot_env = {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                    "HOME": str(work / "home"), "LANG": "C.UTF-8", "PYTHONPATH": "",
                    "PYTHONUNBUFFERED": "1", "SPEECH_STUDIO_PUBLIC": "1",
                    "SPEECH_STUDIO_TRUST_PROXY": "1", "HF_HUB_OFFLINE": "1",
                    "GRADIO_ANALYTICS_ENABLED": "False", "ORT_DISABLE_TELEMETRY": "1"}
        boot = boot_and_probe([str(venv / "bin" / "python"), "-m", "webapp", "serve", "--host",
                               "0.0.0.0", "--port", str(port)], cwd=ROOT, env=boot_env,
                              port=port, log=work / "app.log",
                              options=CheckOptions(browser=False), screenshot=None)
        boot.pop("app_log_tail", None)
        return {"install_s": round(install_s, 1), "venv_mb": du_mb(venv),
                "largest_packages_mb": largest(venv), **boot}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold", action="store_true", help="also a Space install downloading everything")
    ap.add_argument("--full", action="store_true", help="also a fresh full install (about 7 GB)")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    rows: dict[str, dict] = {"space": space_variant(cold=False)}
    print(json.dumps({"space": "done"}), file=sys.stderr)
    if args.cold:
        rows["space_cold"] = space_variant(cold=True)
    if args.full:
        rows["full"] = full_variant()

    print("\nHugging Face Space vs the full install (each boot the first of a fresh venv)")
    print(f"{'variant':<34} {'venv':>9} {'pip':>9} {'health':>8} {'1st call':>9} "
          f"{'TTS engines':<22} {'STT engines':<30}")
    labels = {"space": "Space (downloads reused)", "space_cold": "Space (downloads from scratch)",
              "full": "full install (studio.sh install)"}
    for key, r in rows.items():
        pip_s = r.get("pip_total_s", r.get("install_s"))
        print(f"{labels[key]:<34} {r['venv_mb'] / 1024:>7.2f} G {pip_s:>8.0f}s "
              f"{r['boot_to_health_s']:>7.1f}s {r['boot_to_first_call_s']:>8.1f}s "
              f"{', '.join(r['tts_engines']):<22} {', '.join(r['stt_engines']):<30}")
    out = {"machine": machine(), "variants": rows}
    print(json.dumps(out, indent=1))
    save_json(out, args.json_out)


if __name__ == "__main__":
    main()
