"""Live captions end to end: a recording through Chromium's fake microphone into the running app.

    python bench/live_e2e.py [--sessions 1 3] [--runs 1] [--url http://127.0.0.1:7860]
                             [--json-out bench/results/live_e2e.json]

The path a user's audio takes: Chromium (fake microphone playing the file; echo cancellation,
noise suppression and gain control off) -> the page's AudioWorklet -> WebSocket -> the app's
session buffer -> decoding thread -> caption updates -> the page. Without ``--url`` the app is
started here (``python -m webapp serve`` on a free port, its own empty data dir).

The recording is the five LibriVox clips of ``tests/data/speech/librivox`` joined with 0.5 s
gaps, 1 s of silence before and 2 s after (Stop is pressed 1.5 s after the speech ends).
Reported per run, side by side with offline transcription of the same file in the same run
(the app's own file path, ``transcribe_audio``):

* received: audio the server received / audio the page captured before Stop (the page counts
  every sample its AudioWorklet delivered; the server reports what reached the transcriber);
* WER of the committed captions (Whisper's English normaliser on both sides) and offline WER;
* delay from a word's end in the audio to its commit on the page, mean and p90 (the page logs
  when each committed word arrived; word ends are in capture time);
* compute: server decode time / audio time.

With several sessions the pages record at the same time (one browser, one context each).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine, save_json  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "speech" / "librivox"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
LEAD_S, GAP_S, TAIL_S, STOP_AFTER_S = 1.0, 0.5, 2.0, 1.5


def build_recording(out: Path) -> tuple[Path, str, float]:
    """The joined LibriVox file; returns (path, reference text, end of speech in seconds)."""
    rows = [line.split("\t", 1) for line in
            (SPEECH / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    rate = 16_000
    parts = [np.zeros(int(LEAD_S * rate), np.float32)]
    for i, (name, _text) in enumerate(rows):
        data, sr = sf.read(SPEECH / name, dtype="float32")
        assert sr == rate, (name, sr)
        if i:
            parts.append(np.zeros(int(GAP_S * rate), np.float32))
        parts.append(data)
    speech_end_s = sum(len(p) for p in parts) / rate
    parts.append(np.zeros(int(TAIL_S * rate), np.float32))
    sf.write(out, np.concatenate(parts), rate, subtype="PCM_16")
    return out, " ".join(text for _name, text in rows), speech_end_s


def normalise(text: str) -> str:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text)


def wer(ref: str, hyp: str) -> float:
    import jiwer

    return float(jiwer.wer(normalise(ref), normalise(hyp) or "<empty>"))


def start_app() -> tuple[subprocess.Popen, str, Path]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = Path(tempfile.mkdtemp(prefix="live-e2e-"))
    env = {**os.environ, "SPEECH_STUDIO_DATA_DIR": str(data_dir), "GRADIO_ANALYTICS_ENABLED":
           "False", "ORT_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
    log = (data_dir / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "webapp", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the app exited:\n" + (data_dir / "server.log").read_text())
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2):
                return proc, url, data_dir
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start in 240 s")


def open_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  permissions=["microphone"])
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("tab", name="Transcribe").click()
    page.wait_for_selector("#live-record", state="visible", timeout=60_000)
    return page


def record(pages, speech_end_s: float, screenshot: Path | None = None) -> list[dict]:
    """Press Record on every page, Stop ``STOP_AFTER_S`` after the speech ends, wait for the
    final captions; what each page saw."""
    for page in pages:
        page.locator("#live-record").click()
    for page in pages:
        page.wait_for_function("() => window.speechStudioCaptions.stats.t0 > 0", timeout=20_000)
    started = time.monotonic()
    while time.monotonic() - started < speech_end_s + STOP_AFTER_S:
        time.sleep(0.1)
    if screenshot:
        pages[0].screenshot(path=str(screenshot))
    for page in pages:
        page.locator("#live-stop").click()
    results = []
    for page in pages:
        page.wait_for_function("() => window.speechStudioCaptions.stats.ended", timeout=120_000)
        results.append(page.evaluate("() => ({stats: window.speechStudioCaptions.stats, "
                                     "log: window.speechStudioCaptions.log})"))
    return results


def measure(result: dict, reference: str) -> dict:
    stats, log = result["stats"], result["log"]
    sent_s = stats["sentSamples"] / stats["sampleRate"] if stats["sampleRate"] else 0.0
    delays = []
    for entry in log:
        for _text, _start, end in entry["new_words"]:
            delays.append((entry["t"] - (stats["t0"] + 1000 * end)) / 1000)
    return {
        "sent_s": round(sent_s, 3),
        "received_s": round(stats["receivedS"], 3),
        "received_share": round(stats["receivedS"] / sent_s, 4) if sent_s else 0.0,
        "wer": round(wer(reference, stats["committed"]), 4),
        "delay_mean_s": round(float(np.mean(delays)), 3) if delays else None,
        "delay_p90_s": round(float(np.percentile(delays, 90)), 3) if delays else None,
        "compute_share": round(stats["computeS"] / stats["receivedS"], 3)
        if stats["receivedS"] else None,
        "max_backlog_s": round(max((e["backlog_s"] for e in log), default=0.0), 2),
        "updates": len(log),
        "error": stats["error"],
        "text": stats["committed"],
    }


def offline(path: Path, reference: str) -> dict:
    from webapp.config import Settings
    from webapp.pipeline.stt.files import load_for_transcription, transcribe_audio
    from webapp.pipeline.stt.registry import STTRegistry

    engine = STTRegistry(Settings(data_dir=Path(tempfile.mkdtemp()))).get()
    audio = load_for_transcription(path, 3600)
    result = transcribe_audio(engine, audio)
    return {"wer": round(wer(reference, result.transcript.text), 4),
            "rtf": round(result.rtf, 3), "text": result.transcript.text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--url", help="a running app (default: start one here)")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--screenshot", type=Path)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="live-e2e-rec-"))
    wav, reference, speech_end_s = build_recording(work / "librivox_joined.wav")
    proc = None
    url = args.url
    if not url:
        proc, url, _data = start_app()
    from playwright.sync_api import sync_playwright

    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=FLAGS + [f"--use-file-for-fake-audio-capture={wav}"])
            for n in args.sessions:
                for run in range(args.runs):
                    pages = [open_page(browser, url) for _ in range(n)]
                    shot = args.screenshot if (n == 1 and run == 0) else None
                    for i, result in enumerate(record(pages, speech_end_s, shot)):
                        row = {"sessions": n, "run": run, "page": i, **measure(result, reference)}
                        rows.append(row)
                        print(json.dumps({k: v for k, v in row.items() if k != "text"}),
                              file=sys.stderr)
                    for page in pages:
                        page.context.close()
            browser.close()
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
    off = offline(wav, reference)

    print(f"\nLive captions end to end: {speech_end_s:.1f} s recording "
          f"({len(reference.split())} words), Chromium fake microphone -> app")
    print(f"{'sessions':>8} {'received':>9} {'WER':>6} {'offline WER':>11} {'delay mean':>10} "
          f"{'delay p90':>9} {'compute':>8} {'max behind':>10}")
    summary = []
    for n in args.sessions:
        sel = [r for r in rows if r["sessions"] == n]
        agg = {
            "sessions": n,
            "received_share_min": min(r["received_share"] for r in sel),
            "wer_mean": statistics.mean(r["wer"] for r in sel),
            "wer_max": max(r["wer"] for r in sel),
            "delay_mean_s": statistics.mean(r["delay_mean_s"] or 0 for r in sel),
            "delay_p90_s": max(r["delay_p90_s"] or 0 for r in sel),
            "compute_share": statistics.mean(r["compute_share"] or 0 for r in sel),
            "max_backlog_s": max(r["max_backlog_s"] for r in sel),
        }
        summary.append(agg)
        print(f"{n:>8} {agg['received_share_min']:>8.1%} {agg['wer_mean']:>6.1%} "
              f"{off['wer']:>11.1%} {agg['delay_mean_s']:>9.2f}s {agg['delay_p90_s']:>8.2f}s "
              f"{agg['compute_share']:>8.2f} {agg['max_backlog_s']:>9.1f}s")
    out = {"machine": machine(), "recording_s": speech_end_s + TAIL_S, "offline": off,
           "summary": summary, "runs": rows}
    print(json.dumps(out, indent=1))
    save_json(out, args.json_out)


if __name__ == "__main__":
    main()
