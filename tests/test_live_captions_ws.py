"""The live-caption WebSocket (/api/live/captions) in-process: the protocol the page speaks, real
speech in, final captions out; bad clients get a clear message and a closed socket."""

from __future__ import annotations

import json

import jiwer
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from paths import LIBRIVOX  # tests/paths.py

from webapp.pipeline.audio import Audio, load

CLIP = "sense_and_sensibility_01_austen_64kb-0930.wav"  # 2.9 s


def _norm(text: str) -> str:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text)


def _ref() -> str:
    rows = dict(line.split("\t", 1) for line in
                (LIBRIVOX / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:])
    return rows[CLIP]


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    from webapp.config import Settings
    from webapp.services import build_services

    settings = Settings(data_dir=tmp_path_factory.mktemp("ws"), max_live_sessions=1)
    return build_services(settings, preload=False)


@pytest.fixture()
def client(services):
    from webapp.live_captions import build_live_router

    app = FastAPI()
    app.include_router(build_live_router(services))
    with TestClient(app) as c:
        yield c


def _pcm_frames(audio: Audio, rate: int, frame_s: float = 0.1) -> list[bytes]:
    pcm = audio.resample(rate).to_int16()
    step = int(rate * frame_s)
    return [pcm[i:i + step].astype("<i2").tobytes() for i in range(0, len(pcm), step)]


def test_real_speech_in_final_captions_out(client):
    clip = Audio.concat([Audio.silence(0.3, 16_000), load(LIBRIVOX / CLIP, target_hz=16_000),
                         Audio.silence(0.7, 16_000)])
    frames = _pcm_frames(clip, 44_100)
    with client.websocket_connect("/api/live/captions") as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 44_100,
                                 "vocabulary": "amiable", "denoise": False}))
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["max_seconds"] > 0
        for frame in frames:
            ws.send_bytes(frame)
        ws.send_text(json.dumps({"type": "stop"}))
        messages = []
        while True:
            message = ws.receive_json()
            messages.append(message)
            if message.get("final") or message["type"] == "error":
                break
    final = messages[-1]
    assert final["type"] == "captions" and final["final"] and final["pending"] == ""
    sent_s = sum(len(f) for f in frames) / 2 / 44_100
    assert final["received_s"] == pytest.approx(sent_s, abs=1e-3)
    assert final["processed_s"] == pytest.approx(sent_s, abs=1e-3)
    assert jiwer.wer(_norm(_ref()), _norm(final["committed"])) <= 0.15, final
    words = [w for m in messages for w in m["new_words"]]
    assert " ".join(w[0].strip() for w in words) == final["committed"]
    assert all(0 <= start <= end <= sent_s + 0.1 for _t, start, end in words)


@pytest.mark.parametrize("start, needle", [
    ("hello", "must be JSON"),
    (json.dumps({"type": "start"}), "sample_rate"),
    (json.dumps({"type": "start", "sample_rate": 1_000_000}), "sample_rate"),
    (json.dumps({"type": "start", "sample_rate": 44_100.5}), "sample_rate"),
    (json.dumps({"type": "start", "sample_rate": 48_000, "vocabulary": "x" * 600}), "500"),
    (json.dumps({"type": "start", "sample_rate": 48_000, "vocabulary": ["a"]}), "text"),
])
def test_bad_start_messages_get_a_clear_error(client, start, needle):
    with client.websocket_connect("/api/live/captions") as ws:
        ws.send_text(start)
        message = ws.receive_json()
    assert message["type"] == "error" and needle in message["message"], message


@pytest.mark.parametrize("frame, needle", [
    (b"\x00" * 3, "16-bit"),
    (b"\x00" * (2 * 16_000 * 3), "limited to 2 s"),
])
def test_bad_audio_frames_close_the_session(client, frame, needle):
    with client.websocket_connect("/api/live/captions") as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16_000}))
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(frame)
        message = ws.receive_json()
    assert message["type"] == "error" and needle in message["message"], message


def test_audio_faster_than_a_microphone_is_refused(client):
    second = np.zeros(16_000, dtype="<i2").tobytes()
    with client.websocket_connect("/api/live/captions") as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16_000}))
        assert ws.receive_json()["type"] == "ready"
        message = None
        for _ in range(10):  # 10 s of audio within a fraction of a second
            ws.send_bytes(second)
        while message is None or message["type"] != "error":
            message = ws.receive_json()
    assert "faster than real time" in message["message"]


def test_session_slots_are_limited_and_released(client):
    with client.websocket_connect("/api/live/captions") as first:
        first.send_text(json.dumps({"type": "start", "sample_rate": 16_000}))
        assert first.receive_json()["type"] == "ready"
        with client.websocket_connect("/api/live/captions") as second:
            message = second.receive_json()
        assert message["type"] == "error" and "slots are in use" in message["message"]
    # The first one went away: its slot is free again.
    with client.websocket_connect("/api/live/captions") as third:
        third.send_text(json.dumps({"type": "start", "sample_rate": 16_000}))
        assert third.receive_json()["type"] == "ready"


def test_time_limit_ends_the_recording_with_final_captions(tmp_path):
    from webapp.config import Settings
    from webapp.live_captions import build_live_router
    from webapp.services import build_services

    services = build_services(Settings(data_dir=tmp_path, stream_time_limit_s=2.0),
                              preload=False)
    app = FastAPI()
    app.include_router(build_live_router(services))
    frames = _pcm_frames(load(LIBRIVOX / CLIP, target_hz=16_000), 16_000, frame_s=0.5)
    with TestClient(app) as client, client.websocket_connect("/api/live/captions") as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16_000}))
        assert ws.receive_json()["type"] == "ready"
        for frame in frames:
            ws.send_bytes(frame)
        message = ws.receive_json()
        while not message.get("final"):
            message = ws.receive_json()
    assert message["type"] == "captions" and "limited to" in message["notice"]
    assert message["received_s"] == pytest.approx(2.0)
    assert message["committed"].lower().startswith("he might")


def test_a_silent_client_is_closed(client, monkeypatch):
    from webapp import live_captions

    monkeypatch.setattr(live_captions, "IDLE_TIMEOUT_S", 0.5)
    with client.websocket_connect("/api/live/captions") as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16_000}))
        assert ws.receive_json()["type"] == "ready"
        message = ws.receive_json()
    assert message["type"] == "error" and "No audio" in message["message"]
