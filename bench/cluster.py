"""Replicas behind HAProxy (issue 13): cache-hit time to first byte with each cache, and the
load benchmark with 1 and 2 replicas sharing Redis.

    python bench/cluster.py [--texts 10] [--hits 5] [--no-load] [--json-out bench/results/cluster.json]

Everything runs on loopback through ``deploy/cluster.py`` (Debian's HAProxy and redis-server,
``python -m webapp serve`` replicas with one worker each):

* ``ttfb``: ``--texts`` distinct lesson sentences are synthesised once each through
  ``POST /v1/audio/speech`` (a miss: the engine runs), then asked for ``--hits`` times each (a
  hit, ``X-Cache: hit``, the whole file from the cache). Time to first byte and to the last
  byte of each hit, through HAProxy and, as the control, straight to a replica. Setups:
  ``disk x1`` (one replica with its own diskcache: today's one-machine default behind the
  balancer), ``redis x1`` and ``redis x2`` (the shared cache; with two replicas the miss goes
  to replica 1 and the hits are balanced over both, so half of them are served by the replica
  that never synthesised the sentence).
* ``load``: bench/load.py (syntheses, file transcriptions and live captions at once, every
  answer checked) against HAProxy with 1 and then 2 replicas sharing Redis; its synthesis hit
  rate and p95 latencies. All replicas share this machine's cores, so a second replica adds
  no compute here: what it shows is the cost or gain of the balancer and of a shared cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from machine import ROOT, git_commit, machine, report_footer  # noqa: E402

from deploy.cluster import Cluster  # noqa: E402

SENTENCES = [
    "Plants make glucose from carbon dioxide and water in their leaves.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "A force of ten newtons accelerates a two kilogram mass at five metres per second squared.",
    "The nucleus of a cell holds its DNA.",
    "Sound travels at about three hundred and forty metres per second in air.",
    "Light from the Sun reaches the Earth in about eight minutes.",
    "Friction between two surfaces slows a sliding book.",
    "A magnet has a north pole and a south pole.",
    "Clouds form when water vapour cools and condenses into droplets.",
    "Energy changes from one store to another but is never destroyed.",
    "Acids have a pH below seven and bases a pH above seven.",
    "Granite is an igneous rock that forms when magma cools slowly.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def speech(http: httpx.Client, url: str, text: str) -> tuple[float, float, str, str]:
    """(time to first byte, time to last byte, X-Cache, X-Replica) of one request."""
    body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav"}
    t0 = time.perf_counter()
    with http.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        first = None
        for chunk in response.iter_raw():
            if first is None and chunk:
                first = time.perf_counter() - t0
        last = time.perf_counter() - t0
        return first or last, last, response.headers.get("x-cache", ""), \
            response.headers.get("x-replica", "")


def summary(values: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(values) * 1000, 2),
            "p95_ms": round(percentile(values, 0.95) * 1000, 2),
            "max_ms": round(max(values) * 1000, 2), "n": len(values)}


def ttfb(setup: str, replicas: int, cache: str, texts: int, hits: int) -> dict:
    cluster = Cluster(replicas, cache=cache, folder=Path(tempfile.mkdtemp(prefix="bench-cl-")))
    try:
        cluster.start()
        sentences = SENTENCES[:texts]
        # Each client is a fresh connection pool without the affinity cookie, so HAProxy
        # balances the hits over the replicas.
        with httpx.Client(timeout=120) as http:
            for text in sentences:  # misses, on replica 1
                speech(http, cluster.replica_url(0), text)
        through, direct, replicas_seen, caches = [], [], set(), set()
        for _ in range(hits):
            for text in sentences:
                with httpx.Client(timeout=60) as http:
                    first, last, cache_header, replica = speech(http, cluster.url, text)
                through.append((first, last))
                caches.add(cache_header)
                replicas_seen.add(replica)
                with httpx.Client(timeout=60) as http:
                    first, last, _, _ = speech(http, cluster.replica_url(replicas - 1), text)
                direct.append((first, last))
        return {"setup": setup, "replicas": replicas, "cache": cache, "x_cache": sorted(caches),
                "replicas_answering": sorted(replicas_seen),
                "through_haproxy": {"ttfb": summary([f for f, _ in through]),
                                    "total": summary([t for _, t in through])},
                "direct": {"ttfb": summary([f for f, _ in direct]),
                           "total": summary([t for _, t in direct])}}
    finally:
        cluster.stop()


def load(replicas: int) -> dict:
    cluster = Cluster(replicas, folder=Path(tempfile.mkdtemp(prefix="bench-cl-")))
    try:
        cluster.start()
        out = cluster.folder / "load.json"
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--url",
                               cluster.url, "--json-out", str(out)], cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"bench/load.py failed against {replicas} replicas:\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        report = json.loads(out.read_text())
        kinds = report["kinds"]
        synth = kinds["synthesis"]
        return {"replicas": replicas, "load_s": report["load_s"],
                "errors": len(report["errors"]),
                "synthesis_hit_rate": round(synth["cache_hits"] / synth["count"], 3),
                "synthesis_p95_s": synth["latency_s"]["p95"],
                "transcription_p95_s": kinds["transcription"]["latency_s"]["p95"],
                "live_p95_s": kinds["live"]["latency_s"]["p95"],
                "live_wer_max": kinds["live"]["wer_max"],
                "health_p95_ms": round(report["health"]["load"]["p95"] * 1000, 1)}
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=10)
    parser.add_argument("--hits", type=int, default=5)
    parser.add_argument("--no-load", action="store_true", help="only the cache-hit TTFB part")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    setups = [ttfb("disk x1", 1, "disk", args.texts, args.hits),
              ttfb("redis x1", 1, "redis", args.texts, args.hits),
              ttfb("redis x2", 2, "redis", args.texts, args.hits)]
    loads = [] if args.no_load else [load(1), load(2)]
    report = {"benchmark": "cluster", "machine": machine(), "commit": git_commit(),
              "ttfb": setups, "load": loads}
    print(f"{'cache hit':10} {'via':8} {'ttfb p50 ms':>12} {'ttfb p95 ms':>12} "
          f"{'total p95 ms':>13}  X-Cache / replicas")
    for s in setups:
        for via in ("through_haproxy", "direct"):
            r = s[via]
            print(f"{s['setup']:10} {via.split('_')[0]:8} {r['ttfb']['p50_ms']:12.2f} "
                  f"{r['ttfb']['p95_ms']:12.2f} {r['total']['p95_ms']:13.2f}  "
                  f"{','.join(s['x_cache'])} / {','.join(s['replicas_answering'])}")
    if loads:
        print(f"\n{'replicas':8} {'hit rate':>9} {'synth p95 s':>12} {'transcr p95 s':>14} "
              f"{'live p95 s':>11} {'health p95 ms':>14} {'errors':>7}")
        for r in loads:
            print(f"{r['replicas']:8d} {r['synthesis_hit_rate']:9.2f} {r['synthesis_p95_s']:12.2f} "
                  f"{r['transcription_p95_s']:14.2f} {r['live_p95_s']:11.2f} "
                  f"{r['health_p95_ms']:14.1f} {r['errors']:7d}")
    report_footer(report, args.json_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
