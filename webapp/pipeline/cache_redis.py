"""The synthesis cache in Redis, shared by replicas (issue 13).

Chosen with ``SPEECH_STUDIO_CACHE_URL=redis://host:port/db`` (``open_cache_url``); diskcache
stays the embedded default. Same keys and values as the disk cache: the SHA-256 key of
``cache_key`` and our checked byte envelope (``cache.pack``), never pickles.

Keys are ``{prefix}:v{SCHEMA}:a:{key}`` for audio and ``{prefix}:v{SCHEMA}:stats`` (a hash of
counters). The schema version is part of every key, so a value an older version wrote is never
read, let alone served; a change of the envelope or of what a key covers bumps ``SCHEMA``.
Nothing here lists keys (no ``KEYS``): ``clear`` walks the prefix with ``SCAN``; the entry count
and memory come from ``INFO``, so they describe the whole database (give the cache an instance
or a database of its own). Eviction is Redis's: ``maxmemory`` with ``allkeys-lru``; the
evicted-keys counter is reported in ``stats``.

Single flight across replicas: ``hold(key)`` takes a lock per key (``SET NX PX`` with a random
token, released only by its holder, by a compare-and-delete script), so N identical requests on
N replicas synthesise once: the others wait for the lock and then find the audio in the cache.
A holder that dies leaves a lock that expires after ``lock_ttl_s``.

Redis down or slow costs sharing, never a request: every call has a short timeout; a failure
logs one warning, then for ``retry_s`` the cache goes straight to ``fallback`` (the local disk
cache when configured, else nothing) without waiting on Redis, and tries Redis again after it;
one info line when it answers again. ``backend_errors`` counts the failures for ``/metrics``.
The connection pool reconnects by itself.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from webapp.pipeline.cache import (
    CacheEntry,
    CacheStats,
    NullCache,
    StaleEnvelope,
    SynthesisCache,
    _FailureLog,
    pack,
    unpack,
)

logger = logging.getLogger(__name__)

SCHEMA = 2
"""Part of every key; bump it when the envelope or what a key covers changes."""
TIMEOUT_S = 0.25
"""Per call (connect and read): a slow Redis must not hold a request up for long."""
RETRY_S = 5.0
"""After a failure, Redis is skipped this long before it is tried again."""
LOCK_TTL_S = 30.0
"""A single-flight lock expires after this long (its holder died, or hangs)."""
LOCK_POLL_S = 0.02
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_COUNTERS = ("request_hits", "request_misses", "lookups_hit", "lookups_missed")


class RedisSynthesisCache:
    """``SynthesisCache`` on Redis with a local fallback; see the module docstring."""

    def __init__(self, url: str, *, prefix: str = "speech-studio", ttl_s: float | None = None,
                 fallback: SynthesisCache | None = None, timeout_s: float = TIMEOUT_S,
                 retry_s: float = RETRY_S, lock_ttl_s: float = LOCK_TTL_S,
                 max_connections: int = 32) -> None:
        import redis

        self.url = url
        self._redis = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            max_connections=max_connections, timeout=timeout_s))
        self._errors_type = redis.RedisError
        self._release = self._redis.register_script(_RELEASE)
        self.prefix = f"{prefix}:v{SCHEMA}:"
        self.ttl_ms = int(ttl_s * 1000) if ttl_s and ttl_s > 0 else None
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.fallback: SynthesisCache = fallback if fallback is not None else NullCache()
        where = _redacted(url)
        self._health = _FailureLog(
            f"the Redis cache at {where} is failing (%s); serving from the local cache and "
            "synthesising until it answers again", f"the Redis cache at {where} answers again",
            retry_s)
        self._lock = threading.Lock()
        self.backend_errors = 0

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, fn, *args, **kwargs) -> tuple[bool, Any]:
        """(True, result) or, when Redis is paused or fails, (False, None)."""
        if self._health.paused():
            return False, None
        try:
            result = fn(*args, **kwargs)
        except self._errors_type as exc:
            with self._lock:
                self.backend_errors += 1
            self._health.failed(exc)
            return False, None
        self._health.succeeded()
        return True, result

    def _audio(self, key: str) -> str:
        return f"{self.prefix}a:{key}"

    # -- SynthesisCache ---------------------------------------------------------------------
    def get(self, key: str) -> CacheEntry | None:
        ok, blob = self._call(self._redis.get, self._audio(key))
        if not ok:
            return self.fallback.get(key)
        entry = None
        if blob is not None:
            try:
                entry = unpack(blob)
            except StaleEnvelope as exc:
                logger.debug("cache entry %s: %s; ignoring it", key[:12], exc)
            except ValueError as exc:
                logger.warning("cache entry %s is corrupt (%s); ignoring it", key[:12], exc)
            if entry is None:
                self._call(self._redis.delete, self._audio(key))
        self._count("lookups_hit" if entry is not None else "lookups_missed")
        return entry

    def put(self, key: str, payload: bytes, meta: dict[str, Any] | None = None) -> None:
        ok, _ = self._call(self._redis.set, self._audio(key), pack(payload, meta or {}),
                           px=self.ttl_ms)
        if not ok:
            self.fallback.put(key, payload, meta)

    def record_request(self, hit: bool) -> None:
        if not self._count("request_hits" if hit else "request_misses"):
            self.fallback.record_request(hit)

    def _count(self, name: str) -> bool:
        ok, _ = self._call(self._redis.hincrby, f"{self.prefix}stats", name, 1)
        return ok

    def stats(self) -> CacheStats:
        ok, counters = self._call(self._redis.hmget, f"{self.prefix}stats", list(_COUNTERS))
        if not ok:
            return dataclasses.replace(self.fallback.stats(), backend_errors=self.backend_errors)
        hits, misses, l_hit, l_missed = (int(c or 0) for c in counters)
        _, memory = self._call(self._redis.info, "memory")
        _, keyspace = self._call(self._redis.dbsize)
        _, info_stats = self._call(self._redis.info, "stats")
        memory = memory or {}
        return CacheStats(
            entries=max(0, int(keyspace or 0) - 1),  # the stats hash is not an entry
            size_bytes=int(memory.get("used_memory", 0)),
            limit_bytes=int(memory.get("maxmemory", 0)),
            hits=hits, misses=misses, lookups_hit=l_hit, lookups_missed=l_missed,
            evictions=int((info_stats or {}).get("evicted_keys", 0)),
            backend_errors=self.backend_errors)

    def clear(self) -> None:
        def wipe() -> None:
            batch: list[bytes] = []
            for name in self._redis.scan_iter(match=f"{self.prefix}*", count=500):
                batch.append(name)
                if len(batch) >= 500:
                    self._redis.delete(*batch)
                    batch = []
            if batch:
                self._redis.delete(*batch)

        self._call(wipe)
        self.fallback.clear()

    # -- single flight across replicas ------------------------------------------------------
    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold the replicas' lock for ``key`` while the body runs: at most one replica makes
        a given entry at a time. Waits for another holder; without Redis, does not lock."""
        name, token = f"{self.prefix}lock:{key}", secrets.token_hex(16)
        deadline = time.monotonic() + self.lock_ttl_ms / 1000 + 5.0
        held = False
        while True:
            ok, got = self._call(self._redis.set, name, token, nx=True, px=self.lock_ttl_ms)
            if not ok:
                break  # Redis is failing: go on alone
            if got:
                held = True
                break
            if time.monotonic() > deadline:
                logger.warning("waited %.0f s for the lock of %s; going on without it",
                               self.lock_ttl_ms / 1000, key[:12])
                break
            time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            if held:
                self._call(self._release, keys=[name], args=[token])

    def close(self) -> None:
        self._redis.close()


def _redacted(url: str) -> str:
    """The URL without a password, for log lines."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
