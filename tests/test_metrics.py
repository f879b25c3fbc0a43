"""``GET /metrics``, ``/healthz`` and ``/readyz`` of the real app (issue 11).

The server does real work (Piper syntheses, Whisper tiny.en transcriptions, a live-caption
socket), then ``/metrics`` is parsed with ``prometheus_client.parser`` and must count exactly
what was done. Counts are compared as differences between two scrapes, so the tests sharing
the module's server do not depend on their order.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from paths import SPEECH  # tests/paths.py
from prometheus_client.parser import text_string_to_metric_families

from webapp.pipeline.audio import load

CLIP = SPEECH / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav"
VOICE = "en_US-joe-medium"
OPERATOR_TOKEN = "metrics-operator-secret"


def _app(settings, **build):
    from webapp.app import create_app
    from webapp.services import build_services

    services = build_services(settings, **build)
    return services, create_app(services)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from webapp.config import Settings

    services, app = _app(Settings(data_dir=tmp_path_factory.mktemp("metrics")))
    with TestClient(app) as c:
        c.services = services
        yield c


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client, headers: dict | None = None) -> Samples:
    r = client.get("/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str) -> dict[tuple, float]:
    """Label sets of ``name`` whose value changed between two scrapes, and by how much."""
    keys = {k for k in (*before, *after) if k[0] == name}
    changes = {k[1]: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {labels: d for labels, d in changes.items() if d}


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_requests_syntheses_and_cache_are_counted_exactly(client):
    text = "Metrics count this lesson about water and ice."
    before = scrape(client)

    body = {"text": text, "voice": VOICE, "format": "wav"}
    first = client.post("/api/synthesize", json=body)
    second = client.post("/api/synthesize", json=body)
    assert first.status_code == second.status_code == 200
    assert json.loads(first.headers["x-synthesis-metrics"])["cache_hit"] is False
    assert json.loads(second.headers["x-synthesis-metrics"])["cache_hit"] is True
    assert client.post("/api/synthesize", json={"text": "", "voice": VOICE}).status_code == 422
    assert client.post("/api/synthesize", json={"text": text, "speed": "fast"}).status_code == 422
    assert client.get("/no/such/route").status_code == 404
    assert client.get("/api/tts/live/no-such-token").status_code == 404
    assert client.get("/").status_code == 200  # the page: Gradio's
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200

    after = scrape(client)
    requests = "speech_studio_http_requests_total"
    assert grew(before, after, requests) == {
        labels(route="/api/synthesize", method="POST", status="2xx"): 2,
        labels(route="/api/synthesize", method="POST", status="4xx"): 2,
        labels(route="unmatched", method="GET", status="4xx"): 1,
        labels(route="/api/tts/live/{token}", method="GET", status="4xx"): 1,
        labels(route="gradio", method="GET", status="2xx"): 1,
        labels(route="/healthz", method="GET", status="2xx"): 1,
        labels(route="/readyz", method="GET", status="2xx"): 1,
        labels(route="/metrics", method="GET", status="2xx"): 1,  # the first scrape
    }
    assert grew(before, after, "speech_studio_http_request_duration_seconds_count") == {
        labels(route="/api/synthesize"): 4, labels(route="unmatched"): 1,
        labels(route="/api/tts/live/{token}"): 1, labels(route="gradio"): 1,
        labels(route="/healthz"): 1, labels(route="/readyz"): 1, labels(route="/metrics"): 1,
    }
    # One synthesis, one repeat from the cache; the refused requests synthesised nothing.
    for histogram in ("speech_studio_synthesis_first_audio_seconds_count",
                      "speech_studio_synthesis_seconds_count"):
        assert grew(before, after, histogram) == {
            labels(engine="piper", cache="miss"): 1, labels(engine="piper", cache="hit"): 1}
    assert grew(before, after, "speech_studio_synthesis_real_time_factor_count") == {
        labels(engine="piper"): 1}
    assert grew(before, after, "speech_studio_synthesis_real_time_factor_sum")[
        labels(engine="piper")] > 0
    assert grew(before, after, "speech_studio_cache_requests_total") == {
        labels(result="miss"): 1, labels(result="hit"): 1}
    entries = "speech_studio_cache_entries"
    assert value(after, entries) > value(before, entries)
    assert value(after, "speech_studio_cache_size_bytes") > 0

    # No label carries what a request sent, and routes are templates, never raw paths.
    for (_name, label_items) in after:
        for _key, label_value in label_items:
            assert text not in label_value and VOICE not in label_value
            assert "no-such" not in label_value and "/no/such" not in label_value
    routes = {dict(k[1])["route"] for k in after if k[0] == requests}
    assert routes <= {"/api/synthesize", "/api/tts/live/{token}", "/healthz", "/readyz",
                      "/metrics", "/api/health", "gradio", "unmatched"}, routes


def test_file_and_live_transcriptions_are_timed(client):
    from webapp.pipeline.streaming import make_transcriber, replay
    from webapp.pipeline.stt.files import load_for_transcription, transcribe_audio

    engine = client.services.stt.get()
    audio = load_for_transcription(CLIP, max_seconds=60)
    before = scrape(client)
    result = transcribe_audio(engine, audio)
    transcriber = make_transcriber(engine)
    report = replay(transcriber, load(CLIP))
    after = scrape(client)

    assert "young man" in result.transcript.text.lower() and report.text.strip()
    file_labels = labels(mode="file", engine="faster-whisper")
    live_labels = labels(mode="live", engine="faster-whisper")
    assert transcriber.decodes > 0
    assert grew(before, after, "speech_studio_transcription_seconds_count") == {
        file_labels: 1, live_labels: transcriber.decodes}
    seconds = grew(before, after, "speech_studio_transcription_seconds_sum")
    assert seconds[file_labels] == pytest.approx(result.compute_s)
    assert seconds[live_labels] == pytest.approx(transcriber.compute_s)
    assert grew(before, after, "speech_studio_transcription_real_time_factor_count") == {
        file_labels: 1, live_labels: transcriber.decodes}
    assert grew(before, after, "speech_studio_transcription_real_time_factor_sum")[
        file_labels] == pytest.approx(result.rtf)


def test_live_sessions_are_counted_while_open(client):
    import numpy as np

    assert value(scrape(client), "speech_studio_live_sessions") == 0
    with client.websocket_connect("/api/live/captions") as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16_000}))
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(np.zeros(1600, dtype="<i2").tobytes())
        during = scrape(client)
    assert value(during, "speech_studio_live_sessions") == 1
    assert value(during, "speech_studio_live_sessions_max") == \
        client.services.settings.max_live_sessions
    deadline = time.monotonic() + 10
    while client.services.limits.live.active and time.monotonic() < deadline:
        time.sleep(0.05)  # the socket's handler releases its slot after the close
    assert value(scrape(client), "speech_studio_live_sessions") == 0
    # Sockets are sessions, not HTTP requests: no route label for them.
    assert not [k for k in during if "/api/live/captions" in str(k)]


def test_queue_depth_and_running_jobs_per_pool(client):
    pool = client.services.limits.synthesis
    with contextlib.ExitStack() as held:
        for n in range(pool.slots):  # every synthesis slot taken ...
            held.enter_context(pool.hold(f"holder-{n}"))
        entered = threading.Event()

        def wait_for_slot():
            with pool.hold("waiter"):
                entered.set()

        waiter = threading.Thread(target=wait_for_slot)
        waiter.start()  # ... so this job waits in line
        deadline = time.monotonic() + 10
        while pool.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        samples = scrape(client)
    waiter.join(10)
    assert entered.is_set()
    assert value(samples, "speech_studio_queue_waiting", pool="synthesis") == 1
    assert value(samples, "speech_studio_jobs_running", pool="synthesis") == pool.slots
    assert value(samples, "speech_studio_pool_slots", pool="synthesis") == pool.slots
    assert value(samples, "speech_studio_queue_waiting", pool="transcription") == 0
    after = scrape(client)
    assert value(after, "speech_studio_queue_waiting", pool="synthesis") == 0
    assert value(after, "speech_studio_jobs_running", pool="synthesis") == 0


def test_models_loaded_and_ready(client):
    samples = scrape(client)
    assert value(samples, "speech_studio_ready") == 1
    assert value(samples, "speech_studio_models_loaded", kind="tts", engine="piper") == 1
    assert value(samples, "speech_studio_models_loaded", kind="stt", engine="faster-whisper") == 1
    assert value(samples, "speech_studio_models_loaded", kind="tts", engine="espeak") == 0


def test_readyz_says_503_until_the_models_are_warm(tmp_path):
    from webapp.config import Settings
    from webapp.services import preload_models

    services, app = _app(Settings(data_dir=tmp_path), with_stt=False, preload=False)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"].isdigit()
        assert r.json()["status"] == "loading"
        samples = scrape(c)
        assert value(samples, "speech_studio_ready") == 0
        assert value(samples, "speech_studio_models_loaded", kind="tts", engine="piper") == 0
        preload_models(services)
        assert c.get("/readyz").status_code == 200
        samples = scrape(c)
        assert value(samples, "speech_studio_ready") == 1
        assert value(samples, "speech_studio_models_loaded", kind="tts", engine="piper") == 1
        assert c.get("/api/health").json()["status"] == "ok"  # unchanged


def test_public_mode_serves_metrics_only_to_the_operator(tmp_path):
    from webapp.config import Settings

    _, app = _app(Settings(data_dir=tmp_path / "open", public=True), with_stt=False,
                  preload=False)
    with TestClient(app) as c:  # no operator token: no metrics at all
        assert c.get("/metrics").status_code == 404
        assert c.get("/healthz").status_code == 200
    _, app = _app(Settings(data_dir=tmp_path / "token", public=True,
                           operator_token=OPERATOR_TOKEN), with_stt=False, preload=False)
    with TestClient(app) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": OPERATOR_TOKEN}):
            r = c.get("/metrics", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert "speech_studio" not in r.text
        samples = scrape(c, {"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert value(samples, "speech_studio_http_requests_total", route="/metrics",
                     method="GET", status="4xx") == 3
