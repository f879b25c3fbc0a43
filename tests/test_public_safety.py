"""Issue 9, in front of the public: shared slots and limits for the page and the HTTP routes, the
live playback route, operator actions, error messages and what the cache keeps.

Each test sends one of the hostile requests the issue lists (or a close relative) and fails on the
code before the fix."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from serving import serving  # noqa: E402 - tests/serving.py

from webapp.config import Settings
from webapp.pipeline.audio import load


def _app(tmp_path, **settings):
    from webapp.app import create_app
    from webapp.services import build_services

    services = build_services(Settings(data_dir=tmp_path, **settings), with_stt=False)
    return services, create_app(services)


@pytest.fixture()
def held(request):
    """Hold one of the server's model slots from a thread, as a running page job does."""
    releases = []

    def hold(pool, client="page-visitor"):
        taken, release = threading.Event(), threading.Event()

        def job():
            with pool.hold(client):
                taken.set()
                release.wait(30)

        threading.Thread(target=job, daemon=True).start()
        assert taken.wait(5)
        releases.append(release)
        return release

    yield hold
    for release in releases:
        release.set()


# -- the HTTP routes take the same slots as the page ----------------------------------------------

def test_rest_synthesis_waits_for_the_pages_jobs_and_is_refused_when_the_line_is_full(tmp_path, held):
    services, app = _app(tmp_path, concurrency=1, max_queue=0)
    with TestClient(app) as client:
        held(services.limits.synthesis)  # the page's job holds the only slot
        r = client.post("/api/synthesize", json={"text": "Water boils at one hundred degrees."})
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["detail"]


def test_rest_synthesis_runs_when_the_slot_frees(tmp_path, held):
    services, app = _app(tmp_path, concurrency=1, max_queue=4)
    with TestClient(app) as client:
        release = held(services.limits.synthesis)
        threading.Timer(1.0, release.set).start()
        t0 = time.monotonic()
        r = client.post("/api/synthesize", json={"text": "Water boils at one hundred degrees."})
        assert r.status_code == 200 and time.monotonic() - t0 >= 0.9  # it waited its turn
        assert load(r.content).duration_s > 1
        assert services.limits.synthesis.running == 0 and services.limits.synthesis.waiting == 0


def test_one_client_cannot_take_every_slot(tmp_path, held):
    services, app = _app(tmp_path, concurrency=2, max_per_client=1)
    with TestClient(app) as client:  # TestClient's address is "testclient"
        held(services.limits.synthesis, client="testclient")
        r = client.post("/api/synthesize", json={"text": "Hello there."})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "limit is 1" in r.json()["detail"]
        # Another client still gets through.
        other = client.post("/api/synthesize", json={"text": "Hello there."},
                            headers={"x-forwarded-for": "10.0.0.7"})
        assert other.status_code == 429  # the header is ignored unless a proxy is trusted
    services, app = _app(tmp_path / "proxy", concurrency=2, max_per_client=1, trust_proxy=True)
    with TestClient(app) as client:
        held(services.limits.synthesis, client="10.0.0.7")
        assert client.post("/api/synthesize", json={"text": "Hello there."},
                           headers={"x-forwarded-for": "10.0.0.8"}).status_code == 200
        assert client.post("/api/synthesize", json={"text": "Hello again."},  # not cached
                           headers={"x-forwarded-for": "10.0.0.7, 10.0.0.1"}).status_code == 429


def test_waiting_http_requests_hold_no_thread_and_leave_the_line_when_cancelled():
    from webapp.limits import Busy, Limits

    limits = Limits(synthesis_slots=1, transcription_slots=1, evaluation_slots=1,
                    max_waiting=50, max_per_client=0)
    pool = limits.synthesis

    async def scenario():
        order = []
        async with pool.hold_async("a"):
            async def wait(name):
                async with pool.hold_async(name):
                    order.append(name)
            tasks = [asyncio.create_task(wait(f"c{i}")) for i in range(40)]
            await asyncio.sleep(0.1)
            assert pool.waiting == 40 and threading.active_count() < 20  # no thread per waiter
            tasks[0].cancel()  # a client that went away leaves the line
            await asyncio.sleep(0.05)
            assert pool.waiting == 39
        await asyncio.gather(*tasks[1:])
        return order

    order = asyncio.run(scenario())
    assert order == [f"c{i}" for i in range(1, 40)]  # first come, first served
    assert pool.running == 0 and pool.waiting == 0
    # The line is bounded.
    small = Limits(synthesis_slots=1, transcription_slots=1, evaluation_slots=1, max_waiting=1,
                   max_per_client=0).synthesis

    async def overflow():
        async with small.hold_async("a"):
            first = asyncio.create_task(small.hold_async("b").__aenter__())
            await asyncio.sleep(0.05)
            with pytest.raises(Busy) as info:
                async with small.hold_async("c"):
                    pass
            first.cancel()
            return info.value

    assert asyncio.run(overflow()).status == 503


def test_request_bodies_are_bounded(tmp_path):
    _, app = _app(tmp_path, max_body_kb=64)
    with TestClient(app) as client:
        r = client.post("/api/synthesize", content=b'{"text": "' + b"a" * 200_000 + b'"}',
                        headers={"content-type": "application/json"})
        assert r.status_code == 413 and "64 KB" in r.json()["detail"]


# -- the live playback route ----------------------------------------------------------------------

@pytest.fixture()
def live_server(tmp_path):
    services, app = _app(tmp_path)
    with serving(app) as url:
        yield services, url


def test_unknown_stream_tokens_are_refused_at_once_and_do_not_starve_health(live_server):
    _, url = live_server

    async def scenario():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            t0 = time.monotonic()
            # Client-chosen tokens, as many as the old route let hold a thread for 60 s each.
            gets = [client.get(f"/api/tts/live/{secrets.token_hex(16)}") for _ in range(80)]
            results = await asyncio.gather(*gets)
            took = time.monotonic() - t0
            health = []
            for _ in range(10):
                h0 = time.monotonic()
                assert (await client.get("/api/health")).status_code == 200
                health.append(time.monotonic() - h0)
            return results, took, health

    results, took, health = asyncio.run(scenario())
    assert {r.status_code for r in results} == {404}
    assert took < 5 and max(health) < 0.5


def test_streams_are_read_once_by_the_token_holder(live_server):
    services, url = live_server
    with httpx.Client(base_url=url, timeout=30) as client:
        token = client.post("/api/tts/live").json()["token"]
        assert services.live.claim("b" * 32) is None  # a token the server never issued
        channel = services.live.claim(token)
        assert channel is not None

        def job():
            time.sleep(0.3)
            for _ in range(5):
                channel.publish(b"\x01\x00" * 2205, 22050)
            channel.close()

        threading.Thread(target=job).start()
        with client.stream("GET", f"/api/tts/live/{token}") as r:
            # A second reader (someone who saw the token) gets nothing while the first reads.
            assert client.get(f"/api/tts/live/{token}").status_code == 404
            body = b"".join(r.iter_bytes())
        assert r.status_code == 200 and len(body) == 5 * 4410
        assert len(services.live) == 0  # dropped once read


def test_stream_tokens_are_bounded_per_client(live_server):
    services, url = live_server
    with httpx.Client(base_url=url, timeout=30) as client:
        codes = [client.post("/api/tts/live").status_code for _ in range(services.live.max_per_client + 2)]
    assert codes.count(200) == services.live.max_per_client and codes[-1] == 429


def test_unread_channels_stop_buffering_and_expire_on_a_timer():
    from webapp.pipeline.delivery import LiveHub

    async def scenario():
        hub = LiveHub(claim_ttl_s=0.3, idle_ttl_s=0.3, max_buffer_bytes=100_000)
        token = hub.issue("visitor")
        channel = hub.claim(token)
        published = [channel.publish(b"\0" * 10_000, 22050) for _ in range(20)]  # nobody reads
        never_claimed = hub.issue("visitor")
        assert len(hub) == 2
        await asyncio.sleep(1.0)  # no other request comes to sweep them
        return hub, published, never_claimed

    hub, published, never_claimed = asyncio.run(scenario())
    assert published[:10] == [True] * 10 and not any(published[10:])  # bounded, then closed
    assert len(hub) == 0 and hub.claim(never_claimed) is None


# -- operator actions, messages, what the cache keeps ------------------------------------------------

def _api_names(app_blocks) -> set[str]:
    return {fn.api_name for fn in app_blocks.fns.values() if fn.api_name}


def test_public_page_has_no_operator_actions_and_the_api_needs_the_token(tmp_path):
    from webapp.app import build_blocks
    from webapp.services import build_services

    public = build_services(Settings(data_dir=tmp_path / "p", public=True), with_stt=False)
    assert "on_clear" not in _api_names(build_blocks(public))
    _, app = _app(tmp_path / "p2", public=True)
    with TestClient(app) as client:
        assert client.post("/api/cache/clear").status_code in (404, 405)

    services, app = _app(tmp_path / "op", public=True, operator_token="s3cret-token")
    with TestClient(app) as client:
        client.post("/api/synthesize", json={"text": "Keep me."})
        assert services.cache.stats().entries > 0
        assert client.post("/api/cache/clear").status_code == 403
        assert client.post("/api/cache/clear", headers={"authorization": "Bearer wrong"}).status_code == 403
        assert services.cache.stats().entries > 0
        assert client.post("/api/cache/clear",
                           headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert services.cache.stats().entries == 0


def test_public_messages_name_no_server_path(tmp_path):
    from webapp.messages import INTERNAL, user_message
    from webapp.pipeline.errors import InputError, ModelUnavailableError

    err = InputError("Cannot read /srv/speech/data/uploads/abc123/lesson.wav: bad header.")
    assert "/srv/" not in user_message(err, public=True) and "lesson.wav" not in user_message(err, public=True)
    assert "/srv/speech" in user_message(err, public=False)  # a teacher's own machine says where
    try:
        try:
            raise OSError("[Errno 2] /root/.cache/models/x.onnx: HTTPSConnectionPool(host='hf.co')")
        except OSError as cause:
            raise ModelUnavailableError("Could not download Piper voice 'x': " + str(cause)) from cause
    except ModelUnavailableError as exc:
        shown = user_message(exc, public=True)
    assert "root" not in shown and "HTTPSConnectionPool" not in shown and "not available" in shown
    assert user_message(KeyError("secret internals"), public=True) == INTERNAL

    # Through the API: an unknown voice answers with the installed ones, no paths.
    _, app = _app(tmp_path, public=True)
    with TestClient(app) as client:
        r = client.post("/api/synthesize", json={"text": "hi", "voice": "../../etc/passwd"})
        assert r.status_code == 422 and "/" not in r.json()["detail"].replace("../../etc/passwd", "")


def test_public_rest_metrics_do_not_say_whether_someone_else_asked_before(tmp_path):
    _, app = _app(tmp_path, public=True)
    with TestClient(app) as client:
        for _ in range(2):
            r = client.post("/api/synthesize", json={"text": "A private sentence."})
            metrics = json.loads(r.headers["x-synthesis-metrics"])
            assert "cache_hit" not in metrics and "units_cached" not in metrics


def test_cache_metadata_keeps_no_sentence_text(tmp_path):
    from webapp.pipeline.cache import unpack

    services, app = _app(tmp_path)
    with TestClient(app) as client:
        client.post("/api/synthesize", json={"text": "My pupil Zebediah Quill is ill. Another line."})
    cache = services.cache._cache
    units = 0
    for key in cache.iterkeys():
        if str(key).startswith("__stat__"):
            continue
        meta = unpack(cache.get(key)).meta
        if "cues" in meta:  # the whole request: its subtitles need the written text
            continue
        units += 1
        assert "Zebediah" not in json.dumps(meta)
    assert units >= 2


# -- clients that go away ---------------------------------------------------------------------------

def test_a_client_that_disconnects_while_waiting_frees_its_place(tmp_path, held):
    services, app = _app(tmp_path, concurrency=1, max_queue=1)
    with serving(app) as url:
        pool = services.limits.synthesis
        release = held(pool)
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and hangs up
            httpx.post(f"{url}/api/synthesize", json={"text": "Wait for me."},
                       timeout=httpx.Timeout(30, read=0.5))
        deadline = time.monotonic() + 3
        while pool.waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.waiting == 0 and services.limits.clients.active("127.0.0.1") == 0
        # Its place in the line (max_queue=1) is free for the next client.
        threading.Timer(0.5, release.set).start()
        r = httpx.post(f"{url}/api/synthesize", json={"text": "My turn."},
                       timeout=30)
        assert r.status_code == 200


def test_a_player_that_disconnects_mid_stream_frees_its_channel(live_server):
    services, url = live_server
    with httpx.Client(base_url=url, timeout=30) as client:
        token = client.post("/api/tts/live").json()["token"]
        channel = services.live.claim(token)
        channel.publish(b"\0\0" * 22050, 22050)
        with client.stream("GET", f"/api/tts/live/{token}") as r:
            next(r.iter_bytes())  # the first chunk arrives, then the page goes away
    deadline = time.monotonic() + 3
    while len(services.live) and time.monotonic() < deadline:
        channel.publish(b"\0\0" * 2205, 22050)  # the job keeps publishing; no one reads
        time.sleep(0.1)
    assert len(services.live) == 0 and channel.publish(b"\0\0", 22050) is False


def test_a_cached_request_does_not_wait_behind_new_ones(tmp_path, held):
    """bench/load.py found every cache hit finishing last: the lookup came after the slot."""
    services, app = _app(tmp_path, concurrency=1, max_queue=4)
    with TestClient(app) as client:
        body = {"text": "Repeat after me."}
        assert client.post("/api/synthesize", json=body).status_code == 200
        held(services.limits.synthesis)  # a long new lesson holds the only voice
        t0 = time.monotonic()
        r = client.post("/api/synthesize", json=body)
        assert r.status_code == 200 and time.monotonic() - t0 < 2
        assert json.loads(r.headers["x-synthesis-metrics"])["cache_hit"] is True
