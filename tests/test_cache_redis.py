"""The Redis synthesis cache (issue 13) against a real redis-server on loopback: shared by
"replicas" (separate caches and synthesizers on one Redis, as separate processes would be),
single flight across them, old versions' values ignored, and Redis killed or stalled while
requests go on."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from redis_server import RedisServer  # tests/redis_server.py

from webapp.config import Settings
from webapp.pipeline.cache import DiskSynthesisCache, open_cache_url, pack
from webapp.pipeline.cache_redis import SCHEMA, RedisSynthesisCache
from webapp.pipeline.synthesis import SynthesisRequest, Synthesizer
from webapp.pipeline.tts.registry import TTSRegistry

TEXT = "Plants store the energy of sunlight as sugar. Roots take water from the soil."


@pytest.fixture()
def server(tmp_path):
    s = RedisServer(tmp_path).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return TTSRegistry(Settings(data_dir=tmp_path_factory.mktemp("voices")))


def replica(url: str, registry: TTSRegistry, tmp_path, name: str, **kwargs) -> Synthesizer:
    cache = RedisSynthesisCache(url, fallback=DiskSynthesisCache(tmp_path / name), **kwargs)
    return Synthesizer(Settings(data_dir=tmp_path / name), registry, cache)


def test_entries_are_our_envelope_under_a_versioned_key(server):
    cache = RedisSynthesisCache(server.url, ttl_s=60)
    cache.put("k1", b"audio", {"cues": [1]})
    raw = server.client()
    stored = raw.get(f"speech-studio:v{SCHEMA}:a:k1")
    assert stored == pack(b"audio", {"cues": [1]})  # the disk cache's envelope, no pickle
    assert 55_000 < raw.pttl(f"speech-studio:v{SCHEMA}:a:k1") <= 60_000
    entry = cache.get("k1")
    assert (entry.payload, entry.meta) == (b"audio", {"cues": [1]})
    # A value an older version wrote is never read; a corrupt one is a miss and goes.
    raw.set(f"speech-studio:v{SCHEMA - 1}:a:k2", pack(b"old", {}))
    assert cache.get("k2") is None
    raw.set(f"speech-studio:v{SCHEMA}:a:k3", b"SSC2 but not really")
    assert cache.get("k3") is None and raw.get(f"speech-studio:v{SCHEMA}:a:k3") is None
    cache.record_request(True)
    cache.record_request(False)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.lookups_hit, stats.lookups_missed) == (1, 1, 1, 2)
    assert stats.entries >= 1 and stats.size_bytes > 0 and stats.backend_errors == 0
    cache.clear()
    assert cache.get("k1") is None and raw.get(f"speech-studio:v{SCHEMA - 1}:a:k2") == \
        pack(b"old", {})  # clear removes only this version's keys


def test_a_sentence_made_on_one_replica_is_a_hit_on_the_other(server, registry, tmp_path):
    a = replica(server.url, registry, tmp_path, "a")
    b = replica(server.url, registry, tmp_path, "b")
    first = a.run(SynthesisRequest(text=TEXT))
    assert not first.cache_hit and first.units_cached == 0
    again = b.run(SynthesisRequest(text=TEXT))
    assert again.cache_hit and again.data == first.data
    # A new request that shares one sentence reuses it from the other replica's work.
    mixed = b.run(SynthesisRequest(text=TEXT.split(". ")[0] + ". Leaves are green."))
    assert mixed.units_cached == 1


def test_identical_requests_on_two_replicas_synthesise_once(server, registry, tmp_path,
                                                           monkeypatch):
    engine = registry.get("piper")
    calls: list[str] = []
    real = engine.synthesize

    def counted(text, options):  # the real engine, counted
        calls.append(text)
        yield from real(text, options)

    monkeypatch.setattr(engine, "synthesize", counted)
    replicas = [replica(server.url, registry, tmp_path, name) for name in ("a", "b")]
    results, errors = [], []

    def ask(k: int) -> None:
        try:
            results.append(replicas[k % 2].run(SynthesisRequest(text=TEXT)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 20
    assert len(calls) == len(set(calls)) == 2, calls  # each sentence once, in the deployment
    assert len({r.data for r in results}) == 1


def test_redis_killed_then_back(server, registry, tmp_path, caplog):
    synth = replica(server.url, registry, tmp_path, "a", retry_s=0.3)
    cache = synth.cache
    synth.run(SynthesisRequest(text=TEXT))
    server.stop()
    caplog.set_level(logging.INFO, logger="webapp.pipeline.cache_redis")
    caplog.set_level(logging.INFO, logger="webapp.pipeline.cache")
    t0 = time.monotonic()
    for k in range(3):  # requests succeed: synthesised, and kept in the local fallback
        result = synth.run(SynthesisRequest(text=f"Outage sentence number {k}."))
        assert result.audio_s > 0.5
    down = synth.run(SynthesisRequest(text="Outage sentence number 1."))
    assert down.cache_hit  # from the local disk cache while Redis is away
    assert time.monotonic() - t0 < 20
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "Redis" in r.message]
    assert len(warnings) == 1, [r.message for r in warnings]  # one per outage
    assert cache.stats().backend_errors >= 1

    server.start()
    time.sleep(0.4)  # past retry_s: the next call tries Redis again
    back = synth.run(SynthesisRequest(text="A sentence after the outage."))
    assert not back.cache_hit
    assert server.client().dbsize() >= 2  # stored in Redis again
    assert any("answers again" in r.message for r in caplog.records)
    assert cache.stats().hits >= 0  # stats come from Redis again (no exception)


def test_a_stalled_redis_costs_a_timeout_not_the_request(server, registry, tmp_path):
    synth = replica(server.url, registry, tmp_path, "a", timeout_s=0.2, retry_s=30)
    stall = threading.Thread(target=lambda: server.client().execute_command("DEBUG", "SLEEP", 4))
    stall.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    result = synth.run(SynthesisRequest(text="Redis is asleep, the lesson is not."))
    elapsed = time.monotonic() - t0
    stall.join()
    assert result.audio_s > 0.5
    assert elapsed < 2.5, elapsed  # not the 4 s Redis slept
    assert synth.cache.backend_errors >= 1


def test_the_cache_url_picks_the_backend(tmp_path, server):
    assert isinstance(open_cache_url("", tmp_path / "d"), DiskSynthesisCache)
    folder = open_cache_url(str(tmp_path / "elsewhere"), tmp_path / "d")
    assert isinstance(folder, DiskSynthesisCache) and folder.directory == tmp_path / "elsewhere"
    shared = open_cache_url(server.url, tmp_path / "d")
    assert isinstance(shared, RedisSynthesisCache)
    assert isinstance(shared.fallback, DiskSynthesisCache)
    with pytest.raises(ValueError, match="redis://"):
        open_cache_url("memcached://x", tmp_path / "d")


def test_metrics_count_backend_errors_and_readyz_stays_ready(server, tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from webapp.metrics import build_metrics_router
    from webapp.services import build_services

    settings = Settings(data_dir=tmp_path / "app", cache_url=server.url)
    services = build_services(settings, preload=False, with_stt=False)
    services.ready = True
    assert isinstance(services.cache, RedisSynthesisCache)
    app = FastAPI()
    app.include_router(build_metrics_router(services))

    def scrape() -> dict[str, float]:
        text = client.get("/metrics").text
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    with TestClient(app) as client:
        services.synthesizer.run(SynthesisRequest(text="One sentence for the shared cache."))
        before = scrape()
        assert before["speech_studio_cache_backend_errors_total"] == 0
        assert before["speech_studio_cache_entries"] >= 1
        server.stop()
        result = services.synthesizer.run(SynthesisRequest(text="Another one while it is down."))
        assert result.audio_s > 0.5
        after = scrape()
        assert after["speech_studio_cache_backend_errors_total"] >= 1
        assert client.get("/readyz").status_code == 200
