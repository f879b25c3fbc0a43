"""Speech-to-text benchmark: file WER/RTF, noise preprocessing, live-caption replay.

    python bench/stt.py [--runs 3] [--json-out bench/results/stt.json] [--skip-noise]

* File transcription: WER (Whisper's ``EnglishTextNormalizer`` on both sides) and RTF of the
  default engine (faster-whisper tiny.en int8) against plain faster-whisper with its default
  settings, clip by clip and on the LibriVox clips joined with 0.5 s of silence.
* Noise: the joined LibriVox file mixed with white and pink noise (seeded) at 10 and 5 dB SNR,
  transcribed with and without noise reduction / level normalisation: the default follows this.
* Live captions: the joined file (26.7 s) replayed in 0.1 s chunks (as the page sends them)
  on a simulated real-time clock that counts compute time (``streaming.replay``): committed
  WER, committed delay (word end in the audio -> committed), pending delay, compute share of
  real time; our policy and the seed's 1 s / 0.5 s overlap baseline, ``--runs`` times each.

Numbers depend on the machine and on what else runs on it: the JSON notes both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webapp.config import Settings  # noqa: E402
from webapp.pipeline.audio import Audio, load  # noqa: E402
from webapp.pipeline.streaming import StreamingOptions, make_transcriber, replay  # noqa: E402
from webapp.pipeline.stt.base import TranscribeOptions  # noqa: E402
from webapp.pipeline.stt.registry import STTRegistry, bundled_ct2_dir  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "speech"
RATE = 16_000


def normaliser():
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    norm = normaliser()
    r = [norm(x) for x in refs]
    h = [norm(x) for x in hyps]
    return float(jiwer.wer(r, h))


def read_set(name: str) -> list[tuple[Audio, str, str]]:
    folder = SPEECH / name
    rows = [line.split("\t", 1) for line in
            (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:] if line]
    return [(load(folder / f, target_hz=RATE), text, f) for f, text in rows]


def joined_librivox() -> tuple[Audio, str]:
    clips = read_set("librivox")
    parts: list[Audio] = []
    for i, (audio, _text, _f) in enumerate(clips):
        if i:
            parts.append(Audio.silence(0.5, RATE))
        parts.append(audio)
    return Audio.concat(parts), " ".join(t for _a, t, _f in clips)


def mix_noise(audio: Audio, snr_db: float, kind: str, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(audio.samples))
    if kind == "pink":  # 1/f spectrum
        spec = np.fft.rfft(noise)
        f = np.arange(len(spec))
        f[0] = 1
        noise = np.fft.irfft(spec / np.sqrt(f), n=len(audio.samples))
    speech_rms = np.sqrt(np.mean(audio.samples ** 2))
    noise *= speech_rms / (np.sqrt(np.mean(noise ** 2)) * 10 ** (snr_db / 20))
    return Audio(np.clip(audio.samples + noise, -1, 1).astype(np.float32), audio.sample_rate)


def bench_files(registry: STTRegistry) -> dict:
    from faster_whisper import WhisperModel

    engine = registry.get()
    plain = WhisperModel(str(bundled_ct2_dir()), device="cpu", compute_type="int8", cpu_threads=2)

    def plain_text(audio: Audio) -> str:
        segments, _ = plain.transcribe(audio.samples)
        return " ".join(s.text.strip() for s in segments)

    out: dict = {}
    for name in ("librivox", "cards", "sonnet"):
        clips = read_set(name)
        refs = [t for _a, t, _f in clips]
        ours, base, compute, seconds = [], [], 0.0, 0.0
        for audio, _t, _f in clips:
            t0 = time.perf_counter()
            ours.append(engine.transcribe(audio).text)
            compute += time.perf_counter() - t0
            seconds += audio.duration_s
            base.append(plain_text(audio))
        out[name] = {"clips": len(clips), "audio_s": round(seconds, 1),
                     "wer": round(wer(refs, ours), 4), "plain_wer": round(wer(refs, base), 4),
                     "rtf": round(compute / seconds, 4)}
    audio, ref = joined_librivox()
    t0 = time.perf_counter()
    text = engine.transcribe(audio).text
    rtf = (time.perf_counter() - t0) / audio.duration_s
    out["librivox_joined"] = {"audio_s": round(audio.duration_s, 1),
                              "wer": round(wer([ref], [text]), 4),
                              "plain_wer": round(wer([ref], [plain_text(audio)]), 4),
                              "rtf": round(rtf, 4)}
    return out


def bench_noise(registry: STTRegistry) -> list[dict]:
    engine = registry.get()
    audio, ref = joined_librivox()
    rows = []
    for kind, snr in (("clean", None), ("white", 10), ("white", 5), ("pink", 10), ("pink", 5)):
        noisy = audio if snr is None else mix_noise(audio, snr, kind)
        row = {"noise": kind, "snr_db": snr}
        for label, opts in (("plain", TranscribeOptions()),
                            ("denoise", TranscribeOptions(denoise=True)),
                            ("normalize", TranscribeOptions(normalize_level=True)),
                            ("denoise+normalize",
                             TranscribeOptions(denoise=True, normalize_level=True))):
            row[label] = round(wer([ref], [engine.transcribe(noisy, opts).text]), 4)
        rows.append(row)
    return rows


def bench_live(registry: STTRegistry, runs: int, policies: list[str], chunk_s: float = 0.1,
               extra: dict | None = None) -> dict:
    engine = registry.get()
    audio, ref = joined_librivox()
    out: dict = {}
    for policy in policies:
        results = []
        for _ in range(runs):
            transcriber = make_transcriber(engine, StreamingOptions(policy=policy, **(extra or {})))
            report = replay(transcriber, audio, chunk_s=chunk_s)
            committed = np.array(report.committed_delays_s or [np.nan])
            pending = np.array(report.pending_delays_s or [np.nan])
            results.append({
                "wer": round(wer([ref], [report.text]), 4),
                "delay_mean_s": round(float(np.mean(committed)), 3),
                "delay_p90_s": round(float(np.percentile(committed, 90)), 3),
                "pending_mean_s": round(float(np.mean(pending)), 3),
                "compute_ratio": round(report.compute_ratio, 3),
                "text": report.text,
            })
        out[policy] = {"runs": results,
                       "identical_text": len({r["text"] for r in results}) == 1,
                       **{k: round(statistics.mean(r[k] for r in results), 4)
                          for k in ("wer", "delay_mean_s", "delay_p90_s", "pending_mean_s",
                                    "compute_ratio")}}
    return out


def print_tables(result: dict) -> None:
    if "files" in result:
        print("\nFile transcription (faster-whisper tiny.en int8)")
        print(f"{'set':<17}{'audio s':>8}{'WER':>8}{'plain':>8}{'RTF':>8}")
        for name, r in result["files"].items():
            print(f"{name:<17}{r['audio_s']:>8}{r['wer']:>8.1%}{r['plain_wer']:>8.1%}{r['rtf']:>8.3f}")
    if "noise" in result:
        print("\nNoisy LibriVox (joined) WER")
        print(f"{'noise':<12}{'plain':>8}{'denoise':>9}{'normalize':>11}{'both':>8}")
        for r in result["noise"]:
            label = r["noise"] + (f" {r['snr_db']} dB" if r["snr_db"] is not None else "")
            print(f"{label:<12}{r['plain']:>8.1%}"
                  f"{r['denoise']:>9.1%}{r['normalize']:>11.1%}{r['denoise+normalize']:>8.1%}")
    if "live" in result:
        print("\nLive captions, LibriVox joined (26.7 s), 0.1 s chunks, real-time replay")
        print(f"{'policy':<17}{'WER':>7}{'delay':>8}{'p90':>7}{'pending':>9}{'compute':>9}"
              f"{'same text':>11}")
        for name, r in result["live"].items():
            print(f"{name:<17}{r['wer']:>7.1%}{r['delay_mean_s']:>7.2f}s{r['delay_p90_s']:>6.2f}s"
                  f"{r['pending_mean_s']:>8.2f}s{r['compute_ratio']:>9.0%}"
                  f"{str(r['identical_text']):>11}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-files", action="store_true")
    parser.add_argument("--skip-noise", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--options", default="{}", help="JSON StreamingOptions overrides")
    args = parser.parse_args()

    registry = STTRegistry(Settings(data_dir=Path(os.environ.get("SPEECH_STUDIO_DATA_DIR",
                                                                  "/tmp/speech-studio-bench"))))
    registry.preload()
    load_avg = os.getloadavg()
    result: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                "python": platform.python_version(),
                                "load_avg_at_start": [round(x, 2) for x in load_avg],
                                "note": "shared machine: other jobs may have been running"},
                    "date": time.strftime("%Y-%m-%d %H:%M")}
    if not args.skip_files:
        result["files"] = bench_files(registry)
    if not args.skip_noise:
        result["noise"] = bench_noise(registry)
    policies = ["local-agreement"] + ([] if args.skip_baseline else ["overlap"])
    result["live"] = bench_live(registry, args.runs, policies, extra=json.loads(args.options))
    result["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print_tables(result)
    text = json.dumps(result, indent=2)
    print("\n" + text)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
