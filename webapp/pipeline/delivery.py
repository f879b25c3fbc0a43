"""Live delivery of synthesis chunks to a browser player, decoupled from the UI framework.

A Synthesize click creates a random token in the page; the synthesis job publishes its chunks
under that token and the page's player reads them from an HTTP stream (``webapp.api``). The hub
holds only short-lived channels keyed by unguessable tokens: no per-user state in globals, and
a replica-local hub is enough because the page talks to the replica that runs its job.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_END = object()


def valid_token(token: str | None) -> bool:
    return bool(token) and bool(_TOKEN.match(token))


@dataclass
class LiveChannel:
    token: str
    created: float = field(default_factory=time.monotonic)
    sample_rate: int | None = None
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _rate_ready: threading.Event = field(default_factory=threading.Event)
    closed: bool = False

    def publish(self, pcm16: bytes, sample_rate: int) -> None:
        if self.sample_rate is None:
            self.sample_rate = sample_rate
            self._rate_ready.set()
        self._queue.put(pcm16)

    def close(self, error: str | None = None) -> None:
        self.closed = True
        self._rate_ready.set()
        self._queue.put(_END if error is None else RuntimeError(error))

    def wait_rate(self, timeout_s: float) -> int | None:
        self._rate_ready.wait(timeout_s)
        return self.sample_rate

    def next(self, timeout_s: float) -> bytes | None:
        """Next chunk, or None at the end (or after ``timeout_s`` without data)."""
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if item is _END or isinstance(item, Exception):
            return None
        return item


class LiveHub:
    """Channels by token; a reader may arrive before or after the writer."""

    def __init__(self, ttl_s: float = 600.0) -> None:
        self._channels: dict[str, LiveChannel] = {}
        self._lock = threading.Lock()
        self._ttl_s = ttl_s

    def channel(self, token: str) -> LiveChannel:
        with self._lock:
            self._expire()
            chan = self._channels.get(token)
            if chan is None:
                chan = self._channels[token] = LiveChannel(token)
            return chan

    def drop(self, token: str) -> None:
        with self._lock:
            self._channels.pop(token, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, c in self._channels.items() if now - c.created > self._ttl_s]:
            del self._channels[token]
