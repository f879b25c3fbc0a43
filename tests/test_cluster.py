"""Replicas behind a real HAProxy sharing a real Redis (issue 13): deploy/cluster.py starts
redis-server, two ``python -m webapp serve`` replicas and haproxy on loopback, as an operator
would. A sentence made through one replica is a cache hit on the other; identical requests
spread over both run the engine once; a live-caption session through the balancer commits the
clip's words; the cookie pins a browser to one replica."""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx
import jiwer
import pytest
from paths import LIBRIVOX, ROOT  # tests/paths.py
from prometheus_client.parser import text_string_to_metric_families

from webapp.pipeline.audio import Audio, load

sys.path.insert(0, str(ROOT / "deploy"))
from cluster import Cluster  # noqa: E402 - deploy/cluster.py

CLIP = "sense_and_sensibility_01_austen_64kb-0930.wav"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # One test machine is every "visitor" here: lift the per-client bound (tested elsewhere).
    c = Cluster(2, folder=tmp_path_factory.mktemp("cluster"),
                env={"SPEECH_STUDIO_MAX_PER_CLIENT": "32", "SPEECH_STUDIO_MAX_QUEUE": "64"})
    try:
        yield c.start()
    finally:
        c.stop()


def speech(url: str, text: str, **headers) -> httpx.Response:
    r = httpx.post(f"{url}/v1/audio/speech", headers=headers, timeout=120, json={
        "model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"})
    assert r.status_code == 200, r.text
    return r


def sentences_made(cluster: Cluster) -> dict[str, float]:
    """Per replica, scraped from the replica itself: sentences from the engine."""
    out = {}
    for i in range(len(cluster.replica_ports)):
        text = httpx.get(f"{cluster.replica_url(i)}/metrics", timeout=10).text
        out[f"r{i + 1}"] = sum(s.value for f in text_string_to_metric_families(text)
                               for s in f.samples
                               if s.name == "speech_studio_synthesis_sentences_total"
                               and s.labels.get("source") == "engine")
    return out


def test_a_sentence_made_through_one_replica_is_a_hit_on_the_other(cluster):
    first = speech(cluster.url, "The heart pumps blood around the body.")
    second = speech(cluster.url, "The heart pumps blood around the body.")
    # No cookie sent: round robin gives the second request to the other replica.
    assert {first.headers["x-replica"], second.headers["x-replica"]} == {"r1", "r2"}
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    # The miss was streamed live (each voice at its estimated gain); the hit is the stored,
    # exactly normalised file: the same length. Back on the first replica, the same file.
    assert len(first.content) == len(second.content)
    third = speech(cluster.url, "The heart pumps blood around the body.")
    assert third.headers["x-replica"] == first.headers["x-replica"]
    assert third.headers["x-cache"] == "hit" and third.content == second.content


def test_identical_requests_over_both_replicas_run_the_engine_once(cluster):
    text = "Sound travels faster in water than in air. It is slowest in a vacuum-free gas."
    before = sentences_made(cluster)
    answers, errors = [], []

    def ask() -> None:
        try:
            answers.append(speech(cluster.url, text))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors and len(answers) == 20
    assert {a.headers["x-replica"] for a in answers} == {"r1", "r2"}
    # Streamed answers (live gain) and stored ones (exact loudness) differ a little in level,
    # never in length: the same sentences, made once.
    assert len({len(a.content) for a in answers}) == 1
    after = sentences_made(cluster)
    made = sum(after.values()) - sum(before.values())
    assert made == 2, (before, after)  # two sentences, each synthesised once in the deployment


def test_the_cookie_pins_a_browser_to_one_replica(cluster):
    with httpx.Client(base_url=cluster.url, timeout=30) as browser:
        first = browser.get("/")
        assert first.status_code == 200 and "SPEECHSTUDIO" in browser.cookies
        replicas = {browser.get("/readyz").headers["x-replica"] for _ in range(6)}
    assert replicas == {first.headers["x-replica"]}


def test_live_captions_through_the_balancer_commit_the_words(cluster):
    from websockets.sync.client import connect

    clip = Audio.concat([Audio.silence(0.3, 16_000), load(LIBRIVOX / CLIP, target_hz=16_000),
                         Audio.silence(0.7, 16_000)])
    pcm = clip.resample(48_000).to_int16().astype("<i2")
    with connect(cluster.url.replace("http", "ws") + "/api/live/captions") as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 48_000}))
        assert json.loads(ws.recv())["type"] == "ready"
        for i in range(0, len(pcm), 4800):
            ws.send(pcm[i:i + 4800].tobytes())
        ws.send(json.dumps({"type": "stop"}))
        while True:
            message = json.loads(ws.recv())
            if message.get("final") or message["type"] == "error":
                break
    assert message["type"] == "captions" and message["final"], message
    rows = dict(line.split("\t", 1) for line in
                (LIBRIVOX / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:])
    from whisper.normalizers import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    assert jiwer.wer(norm(rows[CLIP]), norm(message["committed"])) <= 0.15, message


def test_redis_down_requests_still_succeed_through_the_balancer(cluster):
    cluster.stop_redis()
    try:
        for k in range(4):  # both replicas, each on its own disk cache meanwhile
            r = speech(cluster.url, f"Redis is away for sentence {k}.")
            assert len(r.content) > 10_000
        assert httpx.get(f"{cluster.url}/readyz", timeout=10).status_code == 200
    finally:
        cluster.start_redis()
    time.sleep(6)  # past the replicas' 5 s pause: they try Redis again
    fresh = speech(cluster.url, "Redis is back for this sentence.")
    again = speech(cluster.url, "Redis is back for this sentence.")
    assert {fresh.headers["x-replica"], again.headers["x-replica"]} == {"r1", "r2"}
    assert again.headers["x-cache"] == "hit"


def test_a_caption_link_reaches_its_replica_without_the_cookie(cluster):
    """A projector opening the caption link has no cookie: the link names the replica."""
    from websockets.sync.client import connect

    with connect(cluster.url.replace("http", "ws") + "/api/live/captions") as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 16_000}))
        ready = json.loads(ws.recv())
        replica = ready["session"].split(".", 1)[0]
        assert replica in ("r1", "r2"), ready
        for _ in range(6):  # fresh clients, round robin would alternate: all reach the view
            page = httpx.get(f"{cluster.url}/{ready['view']}", timeout=10)
            assert page.status_code == 200 and page.headers["x-replica"] == replica
        ws.send(json.dumps({"type": "stop"}))
        while not json.loads(ws.recv()).get("final"):
            pass
