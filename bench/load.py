"""Load: a class's worth of visitors at once against one app, every answer checked.

    python bench/load.py [--url http://127.0.0.1:7860] [--syntheses 50] [--transcriptions 10]
                         [--live 3] [--json-out bench/results/load.json]

Without ``--url`` the app is started here (``python -m webapp serve`` on a free port, its own
empty data dir, offline, ``SPEECH_STUDIO_TRUST_PROXY=1``). Everything is started at the same
moment (asyncio) and talks to loopback only:

* ``--syntheses`` ``POST /api/synthesize`` over 20 distinct lesson texts (repeats are the
  cache's business), as WAV, MP3 or OGG. Each answer must decode, not be silent, last as long
  as its ``X-Synthesis-Metrics`` says, and last 0.035-0.095 s per character of its spoken form
  (what the normaliser makes of it): Piper's joe-medium voice measures 0.045-0.071 s on these
  texts, so a missing or doubled sentence falls outside.
* ``--transcriptions`` file transcriptions through the page's own Gradio endpoint
  (``/on_transcribe``: upload, queue, tiny.en with noise reduction, as the Transcribe tab sends
  them) of the LibriVox clips and Sonnet 1 (``tests/data/speech``). Each transcript must be
  within 15 % WER of its reference (the project's ``score_text``, Whisper's English normaliser;
  alone they score 0-10 %), report the clip's duration, have word timings inside the clip and a
  TXT download with the same words.
* ``--live`` live-caption sessions over ``/api/live/captions``: the five LibriVox clips joined
  (rotated per session, 28 s) sent as 0.1 s int16 frames at 48 kHz in real time, then stop.
  The final captions must say everything received was decoded, contain every committed word
  once, and be within 20 % WER.
* A prober in its own process (so the load generator's work never delays it) GETs
  ``/api/health`` every 100 ms on a fresh connection, as a load balancer does, from 2 s before
  the load (idle, the control) until the last answer; p95 under load must stay below 100 ms.

Every simulated visitor has its own address, sent as ``X-Forwarded-For`` as a reverse proxy
would, so the per-client bound (``SPEECH_STUDIO_MAX_PER_CLIENT``, 4 by default) applies as in
production instead of being switched off: synthesis visitors send 2 requests each. A server
given with ``--url`` must trust the proxy header too, or all of them count as one client.

Latency: synthesis from request to the last byte; transcription from ``predict`` (upload,
queue, work, downloads) to its return; live captions from Stop to the final captions.
Throughput: answers and audio seconds per second of the kind's own window (first request to
last answer). Outputs are checked after the load, so checking costs the server nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import http.client
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# gradio_client reports each Client to a telemetry server unless this says no (and its own
# argument alone is not enough: it is or-ed with this variable).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import git_commit, save_json  # noqa: E402
from bench.machine import machine as bench_machine  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "speech"
LIBRIVOX = SPEECH / "librivox"

TEXTS = (
    "Plants make their own food by photosynthesis. Chlorophyll in the leaves absorbs light.",
    "Mitochondria release energy from glucose during cellular respiration.",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes it boils at a lower "
    "temperature.",
    "An atom has a small, dense nucleus made of protons and neutrons. Electrons move around it.",
    "The formula for water is H2O: two hydrogen atoms bonded to one oxygen atom.",
    "Sound is a longitudinal wave. It cannot travel through a vacuum.",
    "Newton's second law says that force equals mass times acceleration.",
    "Enzymes are biological catalysts. They speed up reactions without being used up.",
    "The Earth takes about 365 days to orbit the Sun, and one day to spin on its axis.",
    "Igneous rock forms when magma cools. Sedimentary rock forms from layers of sediment.",
    "Light travels at about 300,000 kilometres per second in a vacuum.",
    "DNA carries the genetic instructions for the growth and function of living things.",
    "When an acid reacts with a base, the products are a salt and water. This is called "
    "neutralisation.",
    "Friction is a force that opposes motion between two surfaces in contact.",
    "The heart pumps blood around the body. Arteries carry blood away from the heart, and veins "
    "carry it back.",
    "Evaporation turns a liquid into a gas. Condensation turns the gas back into a liquid.",
    "Ohm's law states that the current through a conductor is proportional to the voltage "
    "across it.",
    "The periodic table arranges the elements by atomic number.",
    "Volcanoes form where tectonic plates meet. Earthquakes happen there too.",
    "Carbon dioxide is a greenhouse gas. It traps heat in the atmosphere, and the planet warms.",
)
FORMATS = ("wav", "wav", "mp3", "wav", "ogg")  # text j is always asked for as FORMATS[j % 5]
SECONDS_PER_CHAR = (0.035, 0.095)
MIN_SPEECH_DBFS = -40.0
FILE_CLIPS = (  # (folder, file): cycled through
    ("librivox", "sense_and_sensibility_01_austen_64kb-0870.wav"),
    ("librivox", "sense_and_sensibility_01_austen_64kb-0880.wav"),
    ("sonnet", "sonnet_001.wav"),
    ("librivox", "sense_and_sensibility_01_austen_64kb-0890.wav"),
    ("librivox", "sense_and_sensibility_01_austen_64kb-0920.wav"),
    ("librivox", "sense_and_sensibility_01_austen_64kb-0930.wav"),
)
MAX_FILE_WER = 0.15
MAX_LIVE_WER = 0.20
LIVE_RATE_HZ = 48_000  # what browsers capture at
FRAME_S = 0.1  # what the page sends
LEAD_S, GAP_S, TAIL_S = 0.5, 0.5, 1.0
HEALTH_INTERVAL_S = 0.1
HEALTH_IDLE_S = 2.0
MAX_HEALTH_P95_S = 0.100
REQUEST_TIMEOUT_S = 300.0
FINAL_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Scenario:
    syntheses: int = 50
    transcriptions: int = 10
    live_sessions: int = 3
    syntheses_per_client: int = 2


@dataclass
class Outcome:
    """One request: timing from the load, then what checking its output found."""

    kind: str
    index: int
    client: str
    start: float = 0.0  # time.monotonic()
    end: float = 0.0
    audio_s: float = 0.0
    wer: float | None = None
    checked: bool = False
    error: str | None = None
    detail: dict = field(default_factory=dict)

    @property
    def latency_s(self) -> float:
        return self.detail.get("latency_s", self.end - self.start)


class CheckFailed(Exception):
    pass


# -- the app ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(data_dir: Path, extra_env: dict[str, str] | None = None
              ) -> tuple[subprocess.Popen, str, object]:
    """``python -m webapp serve`` on a free port with its own data dir, trusting the proxy
    header; returns (process, url, log file) once ``/api/health`` answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "SPEECH_STUDIO_DATA_DIR": str(data_dir), "SPEECH_STUDIO_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "ORT_DISABLE_TELEMETRY": "1", "SPEECH_STUDIO_TRUST_PROXY": "1", **(extra_env or {})}
    log = (data_dir / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "webapp", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        if proc.poll() is not None:
            log.close()
            raise RuntimeError("the app exited during start-up:\n"
                               + (data_dir / "server.log").read_text())
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url, log
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise RuntimeError("the app did not start in 240 s:\n"
                               + (data_dir / "server.log").read_text())
        time.sleep(0.5)


def stop_app(proc: subprocess.Popen, log) -> bool:
    """SIGTERM, then SIGKILL after 10 s; True when the app stopped on SIGTERM."""
    proc.terminate()
    try:
        proc.wait(10)
        clean = True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        clean = False
    log.close()
    return clean


# -- inputs ----------------------------------------------------------------------------------
def transcripts(folder: str) -> dict[str, str]:
    lines = (SPEECH / folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.split("\t", 1) for line in lines)


def client_address(kind: int, n: int) -> str:
    """A distinct documentation-range-like private address per simulated visitor."""
    return f"10.{kind}.{n // 250}.{n % 250 + 1}"


def live_recording(session: int) -> tuple[bytes, str]:
    """The five LibriVox clips, rotated by ``session``, joined with gaps, as 48 kHz int16 PCM;
    returns (pcm, reference)."""
    from webapp.pipeline.audio import Audio, load

    rows = list(transcripts("librivox").items())
    rows = rows[session % len(rows):] + rows[:session % len(rows)]
    parts = [Audio.silence(LEAD_S, 16_000)]
    for i, (name, _text) in enumerate(rows):
        if i:
            parts.append(Audio.silence(GAP_S, 16_000))
        parts.append(load(LIBRIVOX / name, target_hz=16_000))
    parts.append(Audio.silence(TAIL_S, 16_000))
    pcm = Audio.concat(parts).resample(LIVE_RATE_HZ).to_int16().astype("<i2").tobytes()
    return pcm, " ".join(text for _name, text in rows)


# -- the health prober (own process) ---------------------------------------------------------
def probe_health(url: str, interval_s: float, running, stop, conn) -> None:
    """GET /api/health every ``interval_s`` (start to start) on a fresh connection until
    ``stop`` is set (``running`` is set after the first answer); sends back
    [(monotonic start, latency s, ok)]."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/api/health"
    samples = []
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        t0 = time.perf_counter()
        ok = False
        try:
            c = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=5)
            try:
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
            finally:
                c.close()
            ok = r.status == 200 and json.loads(body).get("status") == "ok"
        except (OSError, http.client.HTTPException, ValueError):
            ok = False
        samples.append((started, time.perf_counter() - t0, ok))
        running.set()
        next_at += interval_s
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()
    conn.send(samples)
    conn.close()


class HealthProber:
    """``probe_health`` in a process of its own, so the load generator never delays a probe."""

    def __init__(self, url: str, interval_s: float = HEALTH_INTERVAL_S) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that has threads
        self._running, self._stop = ctx.Event(), ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=probe_health, daemon=True,
                                 args=(url, interval_s, self._running, self._stop, send))
        self._proc.start()
        send.close()
        if not self._running.wait(60):
            self._proc.kill()
            raise RuntimeError("the health prober did not start")

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def stop(self) -> list[tuple[float, float, bool]]:
        self._stop.set()
        samples = self._recv.recv() if self._recv.poll(30) else []
        self._proc.join(10)
        return samples


# -- the load --------------------------------------------------------------------------------
async def _synthesize(http, url: str, outcome: Outcome, text: str, fmt: str) -> None:
    outcome.detail.update(text=text, format=fmt)
    outcome.start = time.monotonic()
    try:
        r = await http.post(url + "/api/synthesize", json={"text": text, "format": fmt},
                            headers={"X-Forwarded-For": outcome.client})
        outcome.end = time.monotonic()
        outcome.detail.update(status=r.status_code, content_type=r.headers.get("content-type"),
                              metrics=r.headers.get("x-synthesis-metrics"), body=r.content)
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the load
        outcome.end = time.monotonic()
        outcome.error = f"{type(exc).__name__}: {exc}"


def _predict(client, clip: Path):
    from gradio_client import handle_file

    job = client.submit(handle_file(str(clip)), "faster-whisper", "tiny.en", "", True,
                        api_name="/on_transcribe")
    return job.result(timeout=REQUEST_TIMEOUT_S)


async def _transcribe(pool, client, outcome: Outcome, clip: Path) -> None:
    loop = asyncio.get_running_loop()
    outcome.start = time.monotonic()
    try:
        outcome.detail["result"] = await loop.run_in_executor(pool, _predict, client, clip)
    except Exception as exc:  # noqa: BLE001
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.end = time.monotonic()


async def _live(url: str, outcome: Outcome, pcm: bytes) -> None:
    from websockets.asyncio.client import connect

    ws_url = "ws" + url[len("http"):] + "/api/live/captions"
    frame_bytes = int(LIVE_RATE_HZ * FRAME_S) * 2
    frames = [pcm[i:i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]
    messages: list[dict] = []
    outcome.start = time.monotonic()
    try:
        async with connect(ws_url, additional_headers={"X-Forwarded-For": outcome.client},
                           proxy=None, max_size=None, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": LIVE_RATE_HZ}))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if ready.get("type") != "ready":
                raise CheckFailed(f"no ready message: {ready}")

            async def read() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    message["_t"] = time.monotonic()
                    messages.append(message)
                    if message.get("final") or message.get("type") == "error":
                        return

            reader = asyncio.create_task(read())
            sent = 0
            t0 = time.monotonic()
            for i, frame in enumerate(frames):  # real time: frame i leaves at t0 + i * 0.1 s
                delay = t0 + i * FRAME_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if reader.done():
                    break  # the server ended the session (an error): the check reports it
                await ws.send(frame)
                sent += len(frame)
            stopped = time.monotonic()
            if not reader.done():
                await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(reader, FINAL_TIMEOUT_S)
            outcome.detail.update(sent_s=sent / 2 / LIVE_RATE_HZ,
                                  latency_s=messages[-1]["_t"] - stopped if messages else None)
    except Exception as exc:  # noqa: BLE001
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.end = time.monotonic()
    outcome.detail["messages"] = messages


def _gradio_client(url: str, address: str, downloads: Path):
    from gradio_client import Client

    # A browser waits for an upload or a download as long as it takes; gradio_client's
    # default (httpx's 5 s read timeout) would count a slow answer as a lost one.
    return Client(url, verbose=False, headers={"X-Forwarded-For": address},
                  download_files=str(downloads), analytics_enabled=False,
                  httpx_kwargs={"timeout": REQUEST_TIMEOUT_S})


async def _run_all(url: str, outcomes: list[Outcome], inputs: dict, clients: list,
                   pool) -> None:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits,
                                 trust_env=False) as http:
        tasks = []
        for o in outcomes:
            if o.kind == "synthesis":
                text, fmt = inputs[("synthesis", o.index)]
                tasks.append(_synthesize(http, url, o, text, fmt))
            elif o.kind == "transcription":
                tasks.append(_transcribe(pool, clients[o.index], o,
                                         inputs[("transcription", o.index)][0]))
            else:
                tasks.append(_live(url, o, inputs[("live", o.index)][0]))
        await asyncio.gather(*tasks)


def run_scenario(url: str, scenario: Scenario = Scenario(), work: Path | None = None,
                 server_pid: int | None = None) -> dict:
    """Run the load against ``url``, check every output, return the report (see ``summarise``).
    ``server_pid`` (when the server runs on this machine) splits the CPU use in the report."""
    import soundfile as sf

    work = work or Path(tempfile.mkdtemp(prefix="load-"))
    work.mkdir(parents=True, exist_ok=True)
    url = url.rstrip("/")
    outcomes: list[Outcome] = []
    inputs: dict = {}
    for i in range(scenario.syntheses):
        j = i % len(TEXTS)
        inputs[("synthesis", i)] = (TEXTS[j], FORMATS[j % len(FORMATS)])
        outcomes.append(Outcome("synthesis", i,
                                client_address(1, i // max(1, scenario.syntheses_per_client))))
    for i in range(scenario.transcriptions):
        folder, name = FILE_CLIPS[i % len(FILE_CLIPS)]
        clip = SPEECH / folder / name
        inputs[("transcription", i)] = (clip, transcripts(folder)[name], sf.info(clip).duration)
        outcomes.append(Outcome("transcription", i, client_address(2, i)))
    for i in range(scenario.live_sessions):
        inputs[("live", i)] = live_recording(i)
        outcomes.append(Outcome("live", i, client_address(3, i)))

    # Visitors open the page before they press anything: clients connect outside the window.
    setup_started = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max(1, scenario.transcriptions))
    clients = list(pool.map(
        lambda i: _gradio_client(url, client_address(2, i), work / "downloads" / str(i)),
        range(scenario.transcriptions)))
    setup_s = time.monotonic() - setup_started

    prober = HealthProber(url)
    try:
        idle_cpu = cpu_snapshot(server_pid, prober.pid)
        time.sleep(HEALTH_IDLE_S + 0.2)
        load_cpu = cpu_snapshot(server_pid, prober.pid)
        load_started = time.monotonic()
        asyncio.run(_run_all(url, outcomes, inputs, clients, pool))
        load_ended = time.monotonic()
        end_cpu = cpu_snapshot(server_pid, prober.pid)
    finally:
        health = prober.stop()
        for client in clients:
            client.close()
        pool.shutdown(wait=False, cancel_futures=True)

    for o in outcomes:
        check(o, inputs)
    report = summarise(outcomes, health, load_started, load_ended, scenario, setup_s)
    report["cpu_cores_busy"] = {"idle": cpu_use(idle_cpu, load_cpu, server_pid is not None),
                                "load": cpu_use(load_cpu, end_cpu, server_pid is not None)}
    return report


# -- checks ----------------------------------------------------------------------------------
def check(o: Outcome, inputs: dict) -> None:
    """Check one output; sets ``checked`` when there was an output to check, ``error`` on any
    failure (transport or check)."""
    if o.error is None:
        try:
            if o.kind == "synthesis":
                check_synthesis(o, *inputs[("synthesis", o.index)])
            elif o.kind == "transcription":
                check_transcription(o, *inputs[("transcription", o.index)][1:])
            else:
                check_live(o, inputs[("live", o.index)][1])
            o.checked = True
        except CheckFailed as exc:
            o.checked = True
            o.error = f"check: {exc}"
        except Exception as exc:  # noqa: BLE001 - an output that breaks the checker fails it
            o.checked = True
            o.error = f"check: {type(exc).__name__}: {exc}"
    for key in ("body", "result", "messages"):  # raw outputs are not part of the report
        o.detail.pop(key, None)


def _wer(reference: str, hypothesis: str) -> float:
    from webapp.pipeline.evaluate import score_text

    return score_text(reference, hypothesis, normalizer="whisper").wer


def spoken_chars(text: str) -> int:
    from webapp.pipeline.text.prepare import prepare

    return len(" ".join(p for p in prepare(text) if isinstance(p, str)))


def check_synthesis(o: Outcome, text: str, fmt: str) -> None:
    from webapp.pipeline.audio import MIME_TYPES, load

    d = o.detail
    if d["status"] != 200:
        raise CheckFailed(f"HTTP {d['status']}: {d['body'][:300]!r}")
    if not (d["content_type"] or "").startswith(MIME_TYPES[fmt]):
        raise CheckFailed(f"content type {d['content_type']} for {fmt}")
    audio = load(d["body"])
    o.audio_s = audio.duration_s
    metrics = json.loads(d["metrics"] or "{}")
    d["cache_hit"] = metrics.get("cache_hit")
    chars = spoken_chars(text)
    d["s_per_char"] = round(audio.duration_s / chars, 4)
    d["rms_dbfs"] = round(audio.rms_dbfs, 1)
    if not SECONDS_PER_CHAR[0] <= d["s_per_char"] <= SECONDS_PER_CHAR[1]:
        raise CheckFailed(f"{audio.duration_s:.2f} s for {chars} spoken characters "
                          f"({d['s_per_char']} s each, expected {SECONDS_PER_CHAR})")
    if audio.rms_dbfs < MIN_SPEECH_DBFS:
        raise CheckFailed(f"silent: {audio.rms_dbfs:.1f} dBFS")
    if abs(metrics.get("audio_s", -1) - audio.duration_s) > 0.05:
        raise CheckFailed(f"decoded {audio.duration_s:.3f} s, metrics say {metrics.get('audio_s')}")


def check_transcription(o: Outcome, reference: str, clip_s: float) -> None:
    text, status, files, table = o.detail["result"]
    o.audio_s = clip_s
    o.wer = _wer(reference, text)
    o.detail.update(wer=round(o.wer, 4), text=text)
    if o.wer > MAX_FILE_WER:
        raise CheckFailed(f"WER {o.wer:.1%} > {MAX_FILE_WER:.0%}: {text!r}")
    m = re.match(r"([\d.]+) s of audio transcribed", status or "")
    if not m or abs(float(m.group(1)) - clip_s) > 0.06:
        raise CheckFailed(f"status {status!r} for a {clip_s:.2f} s clip")
    by_ext = {Path(p).suffix: Path(p) for p in files or []}
    if sorted(by_ext) != [".srt", ".txt", ".vtt"]:
        raise CheckFailed(f"downloads {files}")
    if by_ext[".txt"].read_text(encoding="utf-8").split() != text.split():
        raise CheckFailed("the TXT download differs from the transcript")
    rows = (table or {}).get("data") or []
    starts = [row[0] for row in rows]
    if not rows or starts != sorted(starts) or \
            any(not 0 <= r[0] <= r[1] <= clip_s + 0.1 for r in rows):
        raise CheckFailed(f"word timings outside the clip or out of order: {rows[:5]}...")


def check_live(o: Outcome, reference: str) -> None:
    messages = o.detail["messages"]
    sent_s = o.detail["sent_s"]
    o.audio_s = sent_s
    errors = [m for m in messages if m.get("type") == "error"]
    if errors:
        raise CheckFailed(f"server error: {errors[0].get('message')}")
    if not messages or not messages[-1].get("final"):
        raise CheckFailed(f"no final captions ({len(messages)} messages)")
    final = messages[-1]
    o.wer = _wer(reference, final["committed"])
    o.detail.update(wer=round(o.wer, 4), text=final["committed"], updates=len(messages),
                    max_backlog_s=max(m.get("backlog_s", 0.0) for m in messages),
                    compute_s=final.get("compute_s"))
    if final["type"] != "captions" or final["pending"]:
        raise CheckFailed(f"final message not settled: {final}")
    if abs(final["received_s"] - sent_s) > 2e-3 or abs(final["processed_s"] - sent_s) > 2e-3:
        raise CheckFailed(f"sent {sent_s:.3f} s, received {final['received_s']} s, decoded "
                          f"{final['processed_s']} s")
    words = [w for m in messages for w in m.get("new_words", [])]
    if " ".join(w[0].strip() for w in words).split() != final["committed"].split():
        raise CheckFailed("committed words arrived twice or not at all")
    if any(not 0 <= start <= end <= sent_s + 0.1 for _text, start, end in words):
        raise CheckFailed("word times outside the recording")
    if o.wer > MAX_LIVE_WER:
        raise CheckFailed(f"WER {o.wer:.1%} > {MAX_LIVE_WER:.0%}: {final['committed']!r}")


# -- where the CPU went --------------------------------------------------------------------
def _cpu_s(pid: int | str = "self") -> float:
    """CPU seconds (user + system, all threads) of a process so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def cpu_snapshot(server_pid: int | None, prober_pid: int | None) -> dict:
    return {"t": time.monotonic(), "all": _busy_s(),
            "server": _cpu_s(server_pid) if server_pid else 0.0,
            "generator": _cpu_s() + (_cpu_s(prober_pid) if prober_pid else 0.0)}


def cpu_use(before: dict, after: dict, server_known: bool) -> dict:
    """Average cores busy over the window: the server, this load generator (and its prober),
    and everything else on the machine (other work skews latencies: reported, not hidden)."""
    span = after["t"] - before["t"]
    cores = {k: (after[k] - before[k]) / span for k in ("all", "server", "generator")}
    out = {"all": round(cores["all"], 2), "generator": round(cores["generator"], 2)}
    if server_known:
        out["server"] = round(cores["server"], 2)
        out["other"] = round(max(0.0, cores["all"] - cores["server"] - cores["generator"]), 2)
    return out


# -- report ----------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    a = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(a, 50)), 4),
            "p95": round(float(np.percentile(a, 95)), 4), "max": round(float(a.max()), 4)}


def summarise(outcomes: list[Outcome], health: list[tuple[float, float, bool]],
              load_started: float, load_ended: float, scenario: Scenario,
              setup_s: float) -> dict:
    kinds = {}
    for kind in ("synthesis", "transcription", "live"):
        sel = [o for o in outcomes if o.kind == kind]
        if not sel:
            continue
        window = max(o.end for o in sel) - min(o.start for o in sel)
        latencies = [o.latency_s for o in sel if o.error is None]
        wers = [o.wer for o in sel if o.wer is not None]
        kinds[kind] = {
            "count": len(sel), "checked": sum(o.checked for o in sel),
            "errors": sum(o.error is not None for o in sel),
            "latency_s": _stats(latencies), "window_s": round(window, 3),
            "per_s": round(len(sel) / window, 3) if window > 0 else None,
            "audio_s": round(sum(o.audio_s for o in sel), 3),
            "audio_s_per_s": round(sum(o.audio_s for o in sel) / window, 3) if window else None,
            "wer_mean": round(float(np.mean(wers)), 4) if wers else None,
            "wer_max": round(max(wers), 4) if wers else None,
        }
        if kind == "synthesis":
            kinds[kind]["cache_hits"] = sum(bool(o.detail.get("cache_hit")) for o in sel)
        if kind == "live":  # how far the decoder fell behind the speaker
            kinds[kind]["max_backlog_s"] = max((o.detail.get("max_backlog_s") or 0.0
                                                for o in sel), default=0.0)
    idle = [s for s in health if s[0] < load_started]
    during = [s for s in health if load_started <= s[0] <= load_ended]

    def health_stats(samples):
        slowest = sorted(samples, key=lambda s: -s[1])[:10]
        return {"count": len(samples), "failures": sum(not ok for _t, _l, ok in samples),
                "over_100ms": sum(lat >= 0.1 for _t, lat, _ok in samples),
                **_stats([lat for _t, lat, _ok in samples]),
                # when the slowest answers came (s from the start of the load), for diagnosis
                "slowest": [[round(t - load_started, 2), round(lat, 4), ok]
                            for t, lat, ok in slowest]}

    return {
        "machine": machine(), "scenario": asdict(scenario),
        "bounds": {"seconds_per_char": SECONDS_PER_CHAR, "max_file_wer": MAX_FILE_WER,
                   "max_live_wer": MAX_LIVE_WER, "max_health_p95_s": MAX_HEALTH_P95_S},
        "setup_s": round(setup_s, 2), "load_s": round(load_ended - load_started, 3),
        "kinds": kinds,
        "health": {"idle": health_stats(idle), "load": health_stats(during)},
        "errors": [{"kind": o.kind, "index": o.index, "client": o.client, "error": o.error}
                   for o in outcomes if o.error],
        "requests": [{**o.detail, "kind": o.kind, "index": o.index, "client": o.client,
                      "start_s": round(o.start - load_started, 3),
                      "latency_s": round(o.latency_s, 3) if o.latency_s is not None else None,
                      "audio_s": round(o.audio_s, 3), "error": o.error}
                     for o in outcomes],
    }


def machine() -> dict:
    return {**bench_machine(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "commit": git_commit()}


def print_table(report: dict) -> None:
    s, m = report["scenario"], report["machine"]
    print(f"\nLoad: {s['syntheses']} syntheses ({len(TEXTS)} texts), {s['transcriptions']} file "
          f"transcriptions, {s['live_sessions']} live-caption sessions at once; "
          f"{m['cores']}-core {m['cpu']}, Python {m['python']}, {m['commit']}, "
          f"load {report['load_s']:.1f} s")
    print(f"{'kind':<14} {'count':>5} {'errors':>6} {'p50':>7} {'p95':>7} {'max':>7} "
          f"{'req/s':>6} {'audio s/s':>9} {'WER mean':>8} {'WER max':>7}")
    for kind, k in report["kinds"].items():
        lat = k["latency_s"]

        def sec(v):
            return f"{v:6.2f}s" if v is not None else "     - "

        def pct(v):
            return f"{v:.1%}" if v is not None else "-"

        print(f"{kind:<14} {k['count']:>5} {k['errors']:>6} {sec(lat['p50'])} {sec(lat['p95'])} "
              f"{sec(lat['max'])} {k['per_s']:>6.2f} {k['audio_s_per_s']:>9.2f} "
              f"{pct(k['wer_mean']):>8} {pct(k['wer_max']):>7}")
    for phase, h in report["health"].items():
        def ms(v):
            return f"{1000 * v:5.1f}ms" if v is not None else "     - "

        print(f"{'health ' + phase:<14} {h['count']:>5} {h['failures']:>6} {ms(h['p50'])} "
              f"{ms(h['p95'])} {ms(h['max'])}  ({h['over_100ms']} at or over 100 ms)")
    for phase, use in report.get("cpu_cores_busy", {}).items():
        print(f"cores busy ({phase}): " + ", ".join(f"{k} {v:.2f}" for k, v in use.items()))
    print("latency: synthesis request -> last byte; transcription predict() (upload, queue, "
          "work, downloads); live Stop -> final captions")
    if "synthesis" in report["kinds"]:
        print(f"synthesis cache hits: {report['kinds']['synthesis']['cache_hits']}")
    if "live" in report["kinds"]:
        print(f"live captions at most {report['kinds']['live']['max_backlog_s']:.1f} s behind "
              "the speaker")
    for e in report["errors"]:
        print(f"ERROR {e['kind']} #{e['index']} ({e['client']}): {e['error']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running app that trusts X-Forwarded-For (default: start "
                                  "one here)")
    ap.add_argument("--syntheses", type=int, default=Scenario.syntheses)
    ap.add_argument("--transcriptions", type=int, default=Scenario.transcriptions)
    ap.add_argument("--live", type=int, default=Scenario.live_sessions)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    scenario = Scenario(syntheses=args.syntheses, transcriptions=args.transcriptions,
                        live_sessions=args.live)
    work = Path(tempfile.mkdtemp(prefix="load-"))
    proc = log = None
    url = args.url
    if not url:
        proc, url, log = start_app(work / "data")
    try:
        report = run_scenario(url, scenario, work / "client",
                              server_pid=proc.pid if proc is not None else None)
    finally:
        if proc is not None and not stop_app(proc, log):
            print(f"the app did not stop within 10 s of SIGTERM (killed); log: {work}/data",
                  file=sys.stderr)
    print_table(report)
    save_json(report, args.json_out)
    sys.exit(1 if report["errors"] else 0)


if __name__ == "__main__":
    main()
