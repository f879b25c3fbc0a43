"""The synthesis cache behind a small interface.

``SynthesisCache`` is what the rest of the app sees. ``DiskSynthesisCache`` (diskcache: SQLite
index + files, size-limited LRU eviction, safe across threads and processes, survives restarts
and killed processes) is the embedded default, ``NullCache`` is caching switched off, and
``cache_redis.RedisSynthesisCache`` is shared by replicas. ``open_cache_url`` picks one from
``SPEECH_STUDIO_CACHE_URL``; ``open_cache`` opens the disk cache.

Keys are explicit strings: a SHA-256 of canonical JSON of everything that changes the audio
(diskcache's tutorial warns that pickled tuple keys serialise inconsistently).

Values are raw bytes in our own envelope, never pickles, and nothing read from the directory is
ever unpickled (a cache directory someone else wrote could otherwise run code, issue 9). The
envelope is the magic ``SSC2``, the lengths of the JSON metadata and of the payload, the first
16 bytes of a SHA-256 over those three fields, the metadata and the payload, then metadata and
payload. An entry that does not parse, is truncated or padded, or fails its checksum is never
served: it is a miss and is removed. Entries of the older, unchecked ``SSC1`` envelope are
misses too.

Faults cost caching, never a request (issue "Safe in front of the public"):

- a directory that cannot be created or opened: ``open_cache`` returns a ``NullCache`` and logs
  one warning;
- an existing cache this process may only read (read-only mount, files of another user): its
  entries are served, nothing new is stored;
- writes that fail (disk full, read-only, file too large): one warning, then writes are skipped
  for 30 s at a time and tried again, and one info line when they succeed again. Lookups keep
  working meanwhile: diskcache's own lookup writes (LRU access time, hit counter), so when it
  fails we read the SQLite index over a read-only connection instead.

``expire_s`` makes entries expire (public deployments: visitors' text should not stay forever).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sqlite3
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

_MAGIC = b"SSC2"
_OLD_MAGICS = (b"SSC1",)
_PREFIX = struct.Struct("<4sIQ")  # magic, metadata length, payload length
_DIGEST_SIZE = 16  # bytes of SHA-256 kept: corruption, not an attacker, is what this catches
_HEADER_SIZE = _PREFIX.size + _DIGEST_SIZE

_WRITE_RETRY_S = 30.0  # after a failed write, skip writes this long before trying again


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
    evictions: int = 0  # entries the backend dropped for room (Redis; diskcache does not say)
    backend_errors: int = 0  # calls to a shared backend that failed (Redis down or slow)

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

    def hold(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Held while ``key`` is being made: shared caches make other processes wait for it
        (single flight across replicas); local ones need nothing beyond the in-process lock."""
        ...


def _not_shared(key: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


class StaleEnvelope(ValueError):
    """An entry in an envelope an older version wrote: a miss, not a fault."""


def _digest(prefix: bytes | memoryview, meta: bytes | memoryview,
            payload: bytes | memoryview) -> bytes:
    h = hashlib.sha256(prefix)
    h.update(meta)
    h.update(payload)
    return h.digest()[:_DIGEST_SIZE]


def pack(payload: bytes, meta: dict[str, Any]) -> bytes:
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    prefix = _PREFIX.pack(_MAGIC, len(meta_bytes), len(payload))
    return b"".join((prefix, _digest(prefix, meta_bytes, payload), meta_bytes, payload))


def unpack(blob: bytes) -> CacheEntry:
    """Parse and verify an envelope; raises ValueError on anything malformed, truncated or
    altered (``StaleEnvelope`` for an older version's envelope)."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < 4:
        raise ValueError("not a cache envelope")
    if bytes(blob[:4]) in _OLD_MAGICS:
        raise StaleEnvelope(f"{bytes(blob[:4])!r} envelope of an older version")
    if len(blob) < _HEADER_SIZE:
        raise ValueError("not a cache envelope")
    view = memoryview(blob)
    magic, meta_len, payload_len = _PREFIX.unpack_from(view)
    if magic != _MAGIC:
        raise ValueError("not a cache envelope")
    meta_end = _HEADER_SIZE + meta_len
    if meta_end + payload_len != len(blob):
        raise ValueError(f"cache envelope is {len(blob)} bytes, its header says "
                         f"{meta_end + payload_len}")
    stored = bytes(view[_PREFIX.size:_HEADER_SIZE])
    if _digest(view[:_PREFIX.size], view[_HEADER_SIZE:meta_end], view[meta_end:]) != stored:
        raise ValueError("cache envelope checksum mismatch")
    meta = json.loads(bytes(view[_HEADER_SIZE:meta_end]).decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("cache metadata is not an object")
    return CacheEntry(bytes(view[meta_end:]), meta)


def _reason(exc: BaseException) -> str:
    """What went wrong, for a log line. diskcache reports a database it cannot lock or write as
    a bare ``Timeout`` raised ``from None``; the SQLite error behind it is the useful part."""
    text = str(exc)
    if not text:
        cause = exc.__cause__ or exc.__context__
        text = f"{type(exc).__name__}: {cause}" if cause else type(exc).__name__
    return text


def _faults() -> tuple[type[BaseException], ...]:
    """What the environment (disk, permissions, locks) can raise from diskcache."""
    import diskcache

    return (OSError, sqlite3.Error, diskcache.Timeout)


@functools.cache
def _no_pickle_disk() -> type:
    """A diskcache ``Disk`` that refuses to unpickle. diskcache's own ``Disk.fetch`` unpickles
    any row stored in pickle mode before our envelope is looked at (issue 9), so a cache
    directory someone else wrote could run code on load. Our values are bytes and counters are
    ints, never pickled; a pickled row is reported as unreadable instead.

    It also remembers, per thread, the value file its last ``store`` created: when the write of
    that file or the SQLite transaction after it fails (disk full), diskcache leaves the file
    behind, unreferenced and never evicted; ``DiskSynthesisCache.put`` removes it."""
    import diskcache

    class NoPickleDisk(diskcache.Disk):
        def __init__(self, directory, **kwargs):
            super().__init__(directory, **kwargs)
            self.written = threading.local()

        def fetch(self, mode, filename, value, read):
            if mode == diskcache.core.MODE_PICKLE:
                raise ValueError("refusing to unpickle a cache value")
            return super().fetch(mode, filename, value, read)

        def get(self, key, raw):
            if not raw:
                raise ValueError("refusing to unpickle a cache key")
            return super().get(key, raw)

        def filename(self, key=diskcache.core.UNKNOWN, value=diskcache.core.UNKNOWN):
            name, full_path = super().filename(key, value)
            self.written.path = full_path
            return name, full_path

    return NoPickleDisk


class _FailureLog:
    """Reports an operation that keeps failing once: a warning when it starts failing, debug
    lines while it goes on, one info line when it works again. For ``retry_s`` after a failure
    ``paused()`` is true, so the caller skips the operation instead of failing on every request.

    A nearly full disk fails big writes while small ones still fit, so failures and successes
    alternate; a new warning (and its info line) comes at most every ``rewarn_s``, between them
    such a relapse is logged at debug.
    """

    def __init__(self, warning: str, recovered: str, retry_s: float, rewarn_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._warning = warning  # one %s: the reason
        self._recovered = recovered
        self.retry_s = retry_s
        self.rewarn_s = rewarn_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failing = False
        self._retry_at = 0.0
        self._warned_at: float | None = None
        self._owe_recovery = False  # a warning was logged, its info line not yet

    def paused(self) -> bool:
        return self._failing and self.clock() < self._retry_at

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            now = self.clock()
            warn = not self._failing and (self._warned_at is None
                                          or now - self._warned_at >= self.rewarn_s)
            self._failing = True
            self._retry_at = now + self.retry_s
            if warn:
                self._warned_at = now
                self._owe_recovery = True
        logger.log(logging.WARNING if warn else logging.DEBUG, self._warning, _reason(exc))

    def succeeded(self) -> None:
        if not self._failing:  # the common case, without the lock
            return
        with self._lock:
            self._failing = False
            announce, self._owe_recovery = self._owe_recovery, False
        if announce:
            logger.info(self._recovered)


class _Held:
    """A connection in a holder, because ``sqlite3.Connection`` takes no weak references."""

    __slots__ = ("con", "__weakref__")

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con


class _ReadOnlyIndex:
    """Lookups on diskcache's SQLite index over read-only connections (one per thread).

    diskcache's own ``get`` writes (LRU access time, hit counter), so it fails when the disk is
    full or read-only; these plain SELECTs do not. They use diskcache's table layout (``Cache``:
    key, raw, expire_time, mode, filename, value; ``Settings``: key, value) and its ``Disk`` to
    read values.

    A WAL database in a directory we cannot write cannot be opened with ``mode=ro`` when its
    shared-memory file is absent (SQLite would have to create it), as after a clean shutdown.
    With ``read_only_directory`` such a database is opened ``immutable``: changes other
    processes make meanwhile may go unseen, which costs misses, not wrong audio (keys name
    their content, value files are never reused, every envelope is checked).
    """

    def __init__(self, directory: Path, *, read_only_directory: bool = False) -> None:
        self._uri = (directory / "cache.db").absolute().as_uri()
        self._flags = ("mode=ro", "mode=ro&immutable=1") if read_only_directory else ("mode=ro",)
        self._disk = _no_pickle_disk()(str(directory))
        self._local = threading.local()
        # Weak: a thread's connection goes with its thread; close() closes those still alive.
        self._connections: weakref.WeakSet[_Held] = weakref.WeakSet()

    def _con(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = _Held(self._connect())
            self._connections.add(held)
        return held.con

    def _connect(self) -> sqlite3.Connection:
        error: sqlite3.Error | None = None
        for flags in self._flags:
            con = sqlite3.connect(f"{self._uri}?{flags}", uri=True, isolation_level=None,
                                  check_same_thread=False)  # closed by close() from any thread
            try:
                con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                con.close()
                error = exc
                continue
            return con
        assert error is not None
        raise error

    def fetch(self, key: str) -> Any:
        """The stored value of ``key`` (None when absent or expired); raises ValueError for a
        pickled row, FileNotFoundError when its value file is gone, sqlite3.Error/OSError."""
        db_key, raw = self._disk.put(key)
        rows = self._con().execute(
            "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = ?"
            " AND (expire_time IS NULL OR expire_time > ?)", (db_key, raw, time.time()),
        ).fetchall()
        if not rows:
            return None
        ((mode, filename, value),) = rows
        return self._disk.fetch(mode, filename, value, False)

    def settings(self) -> dict[str, Any]:
        return dict(self._con().execute("SELECT key, value FROM Settings").fetchall())

    def page_bytes(self) -> int:
        con = self._con()
        ((count,),) = con.execute("PRAGMA page_count").fetchall()
        ((size,),) = con.execute("PRAGMA page_size").fetchall()
        return int(count) * int(size)

    def close(self) -> None:
        for held in list(self._connections):
            with contextlib.suppress(sqlite3.Error):
                held.con.close()


class DiskSynthesisCache:
    """diskcache-backed ``SynthesisCache`` with LRU eviction at ``size_limit_mb``.

    ``expire_s`` (None or 0: never) makes every entry expire that long after it was stored.
    Raises OSError/sqlite3.Error when ``directory`` can be neither opened for writing nor read
    as an existing cache; ``open_cache`` turns that into a ``NullCache``.
    """

    # Request counters are rows of their own (``__stat__*`` keys, size 0), kept apart from the
    # audio entries in ``stats``.
    _COUNTERS = ("request_hits", "request_misses")

    def __init__(self, directory: Path, size_limit_mb: int = 1024,
                 expire_s: float | None = None) -> None:
        self.directory = Path(directory)
        self.limit_bytes = size_limit_mb * 1024 * 1024
        self.expire_s = expire_s if expire_s and expire_s > 0 else None
        self._writes = _FailureLog(
            f"cache writes to {self.directory} are failing (%s); audio is still produced but "
            "not cached until writes succeed again",
            f"cache writes to {self.directory} succeed again", _WRITE_RETRY_S)
        self._reads = _FailureLog(
            f"cache reads from {self.directory} are failing (%s); audio is synthesised again "
            "until they work", f"cache reads from {self.directory} work again", 0.0)
        self._open_lock = threading.Lock()
        self._cache: Any = None  # diskcache.Cache; None while the directory is read-only to us
        try:
            self._cache = self._open()
        except _faults() as exc:
            # Perhaps an existing cache we may only read (read-only mount, another user's
            # files): serve what it holds. Anything else is the caller's (open_cache's) problem.
            index = _ReadOnlyIndex(self.directory, read_only_directory=True)
            try:
                index.settings()
            except (sqlite3.Error, OSError):
                index.close()
                raise exc from None
            self._index = index
            self._writes.failed(exc)
        else:
            self._index = _ReadOnlyIndex(self.directory)

    def _open(self) -> Any:
        import diskcache

        self.directory.mkdir(parents=True, exist_ok=True)
        cache = diskcache.Cache(
            str(self.directory), disk=_no_pickle_disk(),
            size_limit=self.limit_bytes,
            eviction_policy="least-recently-used",
            statistics=True,  # hit/miss counters kept in the database, shared by processes
        )
        if self.expire_s is not None:
            try:
                cache.expire()  # what expired while nobody was writing goes now
            except BaseException:
                cache.close()
                raise
        return cache

    def _writable(self) -> Any:
        """The diskcache handle, opening it if the directory was read-only until now."""
        with self._open_lock:
            if self._cache is None:
                self._cache = self._open()
                old, self._index = self._index, _ReadOnlyIndex(self.directory)
                old.close()  # its connections may be immutable ones, blind to writes
            return self._cache

    hold = staticmethod(_not_shared)

    # -- reading --------------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        try:
            blob = self._lookup(key)
            return None if blob is None else unpack(blob)
        except StaleEnvelope as exc:
            logger.debug("cache entry %s: %s; ignoring it", key[:12], exc)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
            logger.warning("cache entry %s is corrupt (%s); ignoring it", key[:12], exc)
        self._discard(key)
        return None

    def _lookup(self, key: str) -> Any:
        cache = self._cache
        if cache is not None and not self._writes.paused():
            try:
                blob = cache.get(key, default=None)
            except _faults() as exc:
                logger.debug("cache lookup failed (%s); reading the index without updating "
                             "access time and statistics", _reason(exc))
            else:
                self._reads.succeeded()
                return blob
        try:
            blob = self._index.fetch(key)
        except FileNotFoundError:
            return None  # evicted by another process between the index and the file
        except (sqlite3.Error, OSError) as exc:
            self._reads.failed(exc)
            return None
        self._reads.succeeded()
        return blob

    def _discard(self, key: str) -> None:
        if self._cache is None or self._writes.paused():
            return
        try:
            self._cache.delete(key)
        except _faults() as exc:
            logger.debug("could not remove cache entry %s: %s", key[:12], _reason(exc))

    # -- writing --------------------------------------------------------------------------------

    def put(self, key: str, payload: bytes, meta: dict[str, Any] | None = None) -> None:
        if self._writes.paused():
            logger.debug("cache writes paused; not storing %s", key[:12])
            return
        blob = pack(payload, meta or {})
        disk = None
        try:
            cache = self._writable()
            disk = cache.disk
            disk.written.path = None
            cache.set(key, blob, expire=self.expire_s)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot write must not fail a request
            leftover = getattr(disk.written, "path", None) if disk is not None else None
            if leftover:
                with contextlib.suppress(OSError):
                    os.remove(leftover)
            self._writes.failed(exc)
            return
        self._writes.succeeded()

    def record_request(self, hit: bool) -> None:
        name = "request_hits" if hit else "request_misses"
        if self._cache is None or self._writes.paused():
            logger.debug("cache writes paused; request not counted")
            return
        try:
            self._cache.incr(f"__stat__{name}", 1, default=0)
        except Exception as exc:  # noqa: BLE001 - statistics are best effort
            logger.debug("could not record cache statistics: %s", _reason(exc))

    # -- the rest ---------------------------------------------------------------------------

    def _counter(self, name: str) -> int | None:
        value = self._index.fetch(f"__stat__{name}")
        return value if isinstance(value, int) else None

    def stats(self) -> CacheStats:
        """Read-only, so it works on a full or read-only disk; zeros if the index is unreadable."""
        try:
            settings = self._index.settings()
            counters = [self._counter(name) for name in self._COUNTERS]
            size = self._index.page_bytes() + int(settings.get("size", 0))
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._reads.failed(exc)
            return CacheStats(0, 0, self.limit_bytes, 0, 0)
        return CacheStats(
            entries=int(settings.get("count", 0)) - sum(c is not None for c in counters),
            size_bytes=size,
            limit_bytes=self.limit_bytes,
            hits=counters[0] or 0,
            misses=counters[1] or 0,
            lookups_hit=int(settings.get("hits", 0)),
            lookups_missed=int(settings.get("misses", 0)),
        )

    def clear(self) -> None:
        """Remove every entry; raises OSError/sqlite3.Error when the directory is read-only."""
        cache = self._writable()
        cache.clear()
        cache.stats(enable=True, reset=True)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
        self._index.close()


def open_cache(directory: Path, size_limit_mb: int = 1024, *,
               expire_s: float | None = None) -> SynthesisCache:
    """A ``DiskSynthesisCache`` in ``directory``, or a ``NullCache`` (and one warning naming the
    directory and the reason) when it can be neither created nor opened: no cache is better
    than no app."""
    try:
        return DiskSynthesisCache(directory, size_limit_mb, expire_s=expire_s)
    except _faults() as exc:
        logger.warning("cannot use the cache directory %s (%s); synthesising without a cache",
                       directory, _reason(exc))
        return NullCache()


class NullCache:
    """Caching switched off (SPEECH_STUDIO_CACHE=0, or a directory we cannot use)."""

    hold = staticmethod(_not_shared)

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


def open_cache_url(url: str | None, directory: Path, size_limit_mb: int = 1024, *,
                   expire_s: float | None = None, local_fallback: bool = True) -> SynthesisCache:
    """The cache ``SPEECH_STUDIO_CACHE_URL`` names: unset (or a folder) -> the disk cache there
    (``directory`` when unset); ``redis://`` / ``rediss://`` / ``unix://`` -> Redis, with the
    disk cache in ``directory`` as its fallback while Redis is down (``local_fallback``)."""
    url = (url or "").strip()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from webapp.pipeline.cache_redis import RedisSynthesisCache

        fallback = (open_cache(directory, size_limit_mb, expire_s=expire_s) if local_fallback
                    else NullCache())
        return RedisSynthesisCache(url, ttl_s=expire_s, fallback=fallback)
    if "://" in url:
        raise ValueError(f"SPEECH_STUDIO_CACHE_URL must be a folder or a redis:// URL; got "
                         f"{url.split('://', 1)[0]}://…")
    return open_cache(Path(url) if url else directory, size_limit_mb, expire_s=expire_s)
