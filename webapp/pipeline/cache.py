"""The synthesis cache behind a small interface.

``SynthesisCache`` is what the rest of the app sees; ``DiskSynthesisCache`` (diskcache: SQLite
index + files, size-limited LRU eviction, safe across threads and processes, survives restarts)
is the embedded default, and a Redis implementation can stand beside it for replicas.

Keys are explicit strings: a SHA-256 of canonical JSON of everything that changes the audio
(diskcache's tutorial warns that pickled tuple keys serialise inconsistently). Values are raw
bytes in our own small envelope (magic, JSON metadata, payload), never pickles, so a cache
directory someone else wrote cannot make us unpickle anything; an entry that does not parse is
treated as a miss and removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

_MAGIC = b"SSC1"
_HEADER = struct.Struct("<4sI")  # magic, metadata length


def cache_key(**parts: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    payload: bytes
    meta: dict[str, Any]


@dataclass(frozen=True)
class CacheStats:
    entries: int
    size_bytes: int
    limit_bytes: int
    hits: int  # requests answered whole from the cache
    misses: int  # requests that needed synthesis (possibly reusing cached sentences)
    lookups_hit: int = 0  # every lookup, sentences included
    lookups_missed: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class SynthesisCache(Protocol):
    def get(self, key: str) -> CacheEntry | None: ...
    def put(self, key: str, payload: bytes, meta: dict[str, Any] | None = None) -> None: ...
    def record_request(self, hit: bool) -> None: ...
    def stats(self) -> CacheStats: ...
    def clear(self) -> None: ...


def pack(payload: bytes, meta: dict[str, Any]) -> bytes:
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(_MAGIC, len(meta_bytes)) + meta_bytes + payload


def unpack(blob: bytes) -> CacheEntry:
    """Parse an envelope; raises ValueError on anything malformed."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < _HEADER.size:
        raise ValueError("not a cache envelope")
    magic, meta_len = _HEADER.unpack_from(blob)
    if magic != _MAGIC or _HEADER.size + meta_len > len(blob):
        raise ValueError("bad cache envelope header")
    meta = json.loads(blob[_HEADER.size:_HEADER.size + meta_len].decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("cache metadata is not an object")
    return CacheEntry(bytes(blob[_HEADER.size + meta_len:]), meta)


def _no_pickle_disk():
    """A diskcache ``Disk`` that refuses to unpickle. diskcache's own ``Disk.fetch`` unpickles
    any row stored in pickle mode before our envelope is looked at (issue 9), so a cache
    directory someone else wrote could run code on load. Our values are bytes and counters are
    ints, never pickled; a pickled row is reported as unreadable instead."""
    import diskcache

    class NoPickleDisk(diskcache.Disk):
        def fetch(self, mode, filename, value, read):
            if mode == diskcache.core.MODE_PICKLE:
                raise ValueError("refusing to unpickle a cache value")
            return super().fetch(mode, filename, value, read)

        def get(self, key, raw):
            if not raw:
                raise ValueError("refusing to unpickle a cache key")
            return super().get(key, raw)

    return NoPickleDisk


class DiskSynthesisCache:
    """diskcache-backed ``SynthesisCache`` with LRU eviction at ``size_limit_mb``."""

    def __init__(self, directory: Path, size_limit_mb: int = 1024) -> None:
        import diskcache

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._cache = diskcache.Cache(
            str(directory), disk=_no_pickle_disk(),
            size_limit=size_limit_mb * 1024 * 1024,
            eviction_policy="least-recently-used",
            statistics=True,  # hit/miss counters kept in the database, shared by processes
        )

    def get(self, key: str) -> CacheEntry | None:
        try:
            blob = self._cache.get(key, default=None)
        except Exception as exc:  # noqa: BLE001 - a broken value file must not break a request
            logger.warning("cache entry %s unreadable (%s); ignoring it", key[:12], exc)
            self._discard(key)
            return None
        if blob is None:
            return None
        try:
            return unpack(blob)
        except (ValueError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("cache entry %s is corrupt (%s); ignoring it", key[:12], exc)
            self._discard(key)
            return None

    def put(self, key: str, payload: bytes, meta: dict[str, Any] | None = None) -> None:
        try:
            self._cache.set(key, pack(payload, meta or {}))
        except Exception as exc:  # noqa: BLE001 - a full disk degrades to "no cache", not an error
            logger.warning("could not write cache entry %s: %s", key[:12], exc)

    def _discard(self, key: str) -> None:
        try:
            self._cache.delete(key)
        except Exception:  # noqa: BLE001
            pass

    # Request counters live in diskcache's own settings table (shared by processes, atomic
    # increments), not among the entries, so they are never evicted or counted as audio.
    _COUNTERS = ("request_hits", "request_misses")

    def record_request(self, hit: bool) -> None:
        name = "request_hits" if hit else "request_misses"
        try:
            with self._cache.transact():
                value = self._cache.get(f"__stat__{name}", default=0, read=False)
                self._cache.set(f"__stat__{name}", int(value) + 1, tag="stat")
        except Exception as exc:  # noqa: BLE001 - statistics are best effort
            logger.debug("could not record cache statistics: %s", exc)

    def _counter(self, name: str) -> int:
        try:
            value = self._cache.get(f"__stat__{name}", default=0)
            return int(value) if isinstance(value, int) else 0
        except Exception:  # noqa: BLE001
            return 0

    def stats(self) -> CacheStats:
        hits, misses = self._cache.stats(enable=True)
        counters = sum(1 for name in self._COUNTERS if f"__stat__{name}" in self._cache)
        return CacheStats(
            entries=len(self._cache) - counters,
            size_bytes=int(self._cache.volume()),
            limit_bytes=int(self._cache.size_limit),
            hits=self._counter("request_hits"),
            misses=self._counter("request_misses"),
            lookups_hit=int(hits),
            lookups_missed=int(misses),
        )

    def clear(self) -> None:
        self._cache.clear()
        self._cache.stats(enable=True, reset=True)

    def close(self) -> None:
        self._cache.close()


class NullCache:
    """Caching switched off (SPEECH_STUDIO_CACHE=0): every lookup misses."""

    def get(self, key: str) -> CacheEntry | None:
        return None

    def put(self, key: str, payload: bytes, meta: dict[str, Any] | None = None) -> None:
        return None

    def record_request(self, hit: bool) -> None:
        return None

    def stats(self) -> CacheStats:
        return CacheStats(0, 0, 0, 0, 0)

    def clear(self) -> None:
        return None
