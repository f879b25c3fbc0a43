"""The synthesis cache: keys, hits, eviction, corruption, persistence, processes."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from webapp.pipeline.cache import DiskSynthesisCache, cache_key, pack, unpack


def test_key_is_canonical_and_sensitive():
    base = dict(text="Plants store it as sugar.", engine="piper", model="m1", voice="v", speed=1.0,
                text_version="n1")
    assert cache_key(**base) == cache_key(**dict(reversed(list(base.items()))))
    for field, other in [("text", "Plants store it as sugar!"), ("engine", "espeak"),
                         ("model", "m2"), ("voice", "w"), ("speed", 1.05), ("text_version", "n2")]:
        assert cache_key(**{**base, field: other}) != cache_key(**base), field


def test_hit_miss_and_stats(tmp_path):
    cache = DiskSynthesisCache(tmp_path / "c", size_limit_mb=10)
    assert cache.get("k") is None
    cache.put("k", b"payload", {"a": 1})
    entry = cache.get("k")
    assert entry.payload == b"payload" and entry.meta == {"a": 1}
    stats = cache.stats()
    assert stats.entries == 1 and stats.lookups_hit == 1 and stats.lookups_missed == 1
    cache.record_request(True)
    cache.record_request(False)
    cache.record_request(False)
    stats = cache.stats()
    assert stats.entries == 1 and (stats.hits, stats.misses) == (1, 2)
    assert abs(stats.hit_rate - 1 / 3) < 1e-9
    cache.clear()
    assert cache.get("k") is None and cache.stats().entries == 0


def test_survives_restart(tmp_path):
    DiskSynthesisCache(tmp_path / "c").put("k", b"x" * 100)
    assert DiskSynthesisCache(tmp_path / "c").get("k").payload == b"x" * 100


def test_corrupt_entry_is_ignored_and_removed(tmp_path):
    cache = DiskSynthesisCache(tmp_path / "c")
    cache._cache.set("bad", b"garbage that is not an envelope")
    cache._cache.set("pickled", {"a": 1})  # not bytes: written by something else
    assert cache.get("bad") is None
    assert cache.get("pickled") is None
    assert "bad" not in cache._cache


def test_envelope_rejects_truncation():
    blob = pack(b"abc", {"cues": []})
    assert unpack(blob).payload == b"abc"
    with pytest.raises(ValueError):
        unpack(blob[:6])


def test_size_limit_evicts(tmp_path):
    cache = DiskSynthesisCache(tmp_path / "c", size_limit_mb=1)
    for i in range(40):
        cache.put(f"k{i}", bytes(100_000))  # 4 MB in total, limit 1 MB
    cache._cache.cull()
    assert cache.stats().size_bytes <= 1.2 * 1024 * 1024
    assert cache.get("k39") is not None  # the newest survive


def _writer(directory, start):
    cache = DiskSynthesisCache(directory)
    for i in range(start, start + 50):
        cache.put(f"k{i}", str(i).encode())


def test_safe_across_processes(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path / "c", s)) for s in (0, 50)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = DiskSynthesisCache(tmp_path / "c")
    assert all(cache.get(f"k{i}").payload == str(i).encode() for i in range(100))


class _RunsCodeWhenUnpickled:
    """Unpickling this makes a directory: the kind of row a hostile cache folder could hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_a_pickled_row_is_never_unpickled(tmp_path):
    import diskcache

    marker = tmp_path / "unpickled"
    key = cache_key(text="x")
    with diskcache.Cache(str(tmp_path / "cache")) as raw:  # diskcache's default Disk pickles
        raw.set(key, _RunsCodeWhenUnpickled(marker))
    cache = DiskSynthesisCache(tmp_path / "cache", 16)
    assert cache.get(key) is None
    assert not marker.exists()
    cache.put(key, b"audio", {"n": 1})  # the slot is usable again
    assert cache.get(key).payload == b"audio"
