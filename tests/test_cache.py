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


# -- the checksummed envelope, expiry ---------------------------------------------------------------

def test_envelope_rejects_every_flipped_bit_truncation_and_padding():
    blob = pack(b"\x00\x01audio" * 8, {"cues": [[0.0, 1.5, "Hello."]], "sr": 22050})
    assert unpack(blob).meta["sr"] == 22050
    for i in range(len(blob)):  # header, checksum, metadata and payload are all covered
        for bit in (0x01, 0x80):
            damaged = bytearray(blob)
            damaged[i] ^= bit
            with pytest.raises(ValueError):
                unpack(bytes(damaged))
    for n in range(len(blob)):
        with pytest.raises(ValueError):
            unpack(blob[:n])
    with pytest.raises(ValueError):
        unpack(blob + b"\x00")


def test_an_entry_of_the_unchecked_old_envelope_is_a_quiet_miss(tmp_path, caplog):
    cache = DiskSynthesisCache(tmp_path / "c")
    old = b"SSC1" + (2).to_bytes(4, "little") + b"{}" + b"audio"  # what the previous version wrote
    cache._cache.set("k", old)
    with caplog.at_level("DEBUG", logger="webapp.pipeline.cache"):
        assert cache.get("k") is None
    assert "k" not in cache._cache  # removed: the slot is filled again on the next synthesis
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_expiry_is_stored_with_each_entry_and_expired_entries_are_misses(tmp_path):
    import sqlite3
    import time

    for expire_s, expect_expiry in [(None, False), (0, False), (3600.0, True)]:
        directory = tmp_path / f"c{expire_s}"
        cache = DiskSynthesisCache(directory, expire_s=expire_s)
        before = time.time()
        cache.put("k", b"audio", {"n": 1})
        _, expire_time = cache._cache.get("k", expire_time=True)
        if expect_expiry:
            assert before + 3600 <= expire_time <= time.time() + 3600
        else:
            assert expire_time is None  # 0 means "never", as in SPEECH_STUDIO_CACHE_TTL_S=0
        cache.close()
    # Time passes: the entry is a miss for diskcache's lookup and for the read-only index.
    cache = DiskSynthesisCache(tmp_path / "c3600.0", expire_s=3600.0)
    con = sqlite3.connect(tmp_path / "c3600.0" / "cache.db", isolation_level=None)
    con.execute("UPDATE Cache SET expire_time = ? WHERE key = 'k'", (time.time() - 1,))
    con.close()
    assert cache.get("k") is None
    assert cache._index.fetch("k") is None
    cache.close()
    # Reopening removes what expired, so visitors' text does not wait for the next write to go.
    cache = DiskSynthesisCache(tmp_path / "c3600.0", expire_s=3600.0)
    assert len(cache._cache) == 0
    cache.close()
