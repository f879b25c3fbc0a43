"""HTTP routes of the ASGI app (FastAPI + mounted Gradio) in-process."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from webapp.pipeline.audio import load


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from webapp.app import create_app
    from webapp.config import Settings
    from webapp.services import build_services

    services = build_services(Settings(data_dir=tmp_path_factory.mktemp("api")), with_stt=False)
    with TestClient(create_app(services)) as c:
        c.services = services
        yield c


def test_health_and_page(client):
    assert client.get("/api/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "speechStudio" in page.text  # the live player is on the page


def test_synthesize_endpoint(client):
    r = client.post("/api/synthesize", json={"text": "Water boils at one hundred degrees.", "format": "ogg"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
    metrics = json.loads(r.headers["x-synthesis-metrics"])
    assert metrics["audio_s"] > 1
    assert abs(load(r.content).duration_s - metrics["audio_s"]) < 0.1


@pytest.mark.parametrize("body, status", [
    ({"text": ""}, 422), ({"text": "hi", "voice": "/etc/passwd"}, 422),
    ({"text": "hi", "speed": 7}, 422), ({"text": "x" * 30_000}, 422),
    ({"text": "hi", "voice": "en_GB-alan-medium"}, 503),
])
def test_synthesize_endpoint_rejects_bad_input(client, body, status):
    r = client.post("/api/synthesize", json=body)
    assert r.status_code == status
    assert r.json()["detail"]


def test_live_stream_delivers_published_chunks(client):
    import threading

    from webapp.pipeline.synthesis import SynthesisChunk, SynthesisRequest

    token = client.post("/api/tts/live").json()["token"]
    channel = client.services.live.claim(token)
    assert channel is not None and client.services.live.claim(token) is None  # one job per token

    def job():
        for item in client.services.synthesizer.stream(SynthesisRequest(text="One. Two. Three.")):
            if isinstance(item, SynthesisChunk):
                channel.publish(item.audio.to_int16().tobytes(), item.audio.sample_rate)
        channel.close()

    threading.Thread(target=job).start()
    r = client.get(f"/api/tts/live/{token}")
    assert r.status_code == 200 and r.headers["x-sample-rate"] == "22050"
    assert len(r.content) > 22050  # more than half a second of PCM16
    assert client.get(f"/api/tts/live/{token}").status_code == 404  # read once, then gone
    assert client.get("/api/tts/live/not-a-token!").status_code == 404


def test_synthesize_endpoint_refuses_hours_of_pauses(client):
    r = client.post("/api/synthesize", json={"text": "a [pause 10s] " * 300})
    assert r.status_code == 422 and "30 minutes" in r.json()["detail"]
