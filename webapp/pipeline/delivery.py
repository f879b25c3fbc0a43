"""Live delivery of synthesis chunks to a browser player, decoupled from the UI framework.

The page asks the server for a stream token (``POST /api/tts/live``) when the teacher clicks
Synthesize, starts its player on that token and passes it with the click; the synthesis job
claims the token and publishes its chunks; the player reads them from an HTTP stream
(``webapp.api``). Only tokens the server issued are accepted, each is claimed by one job and
read by one reader, and nothing here can be used to hold a thread or grow memory without bound
(issue 9):

* the reader waits on the event loop (an ``asyncio.Event`` woken from the job's thread), never
  in a worker thread;
* each channel buffers at most ``max_buffer_bytes`` of unread audio; a channel nobody reads is
  closed when it fills, and the job goes on without it (the finished file is still delivered);
* every channel has a deadline, pushed forward by activity and checked by a timer on the event
  loop; unclaimed tokens, unread channels and finished streams are dropped without waiting for
  another request to sweep them;
* the number of outstanding tokens is bounded per client and in total.

No per-user state in globals: the hub is owned by ``Services`` and keyed by unguessable tokens.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque

from webapp.pipeline.errors import InputError

TOKEN_CHARS = 32


def valid_token(token: str | None) -> bool:
    return (isinstance(token, str) and len(token) == TOKEN_CHARS
            and all(c.isalnum() or c in "-_" for c in token))


class TooManyStreams(InputError):
    """A client (or the server) has too many live streams outstanding."""


class LiveChannel:
    """One synthesis job's chunks on their way to one reader."""

    def __init__(self, token: str, client: str, loop: asyncio.AbstractEventLoop,
                 max_buffer_bytes: int) -> None:
        self.token = token
        self.client = client
        self.sample_rate: int | None = None
        self.claimed = False  # a job publishes here
        self.reading = False  # a reader is attached
        self.closed = False  # the job ended (or the channel was dropped)
        self.overflowed = False
        self._loop = loop
        self._max_bytes = max_buffer_bytes
        self._chunks: deque[bytes] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._event = asyncio.Event()  # bound to the loop; set only from the loop
        self.touched = time.monotonic()

    # -- the job's side (a worker thread) ---------------------------------------------------
    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the loop is gone (server shutting down)
            pass

    def publish(self, pcm16: bytes, sample_rate: int) -> bool:
        """Queue a chunk for the reader; False once the channel is closed (the job carries on
        without live playback)."""
        with self._lock:
            if self.closed:
                return False
            if self._bytes + len(pcm16) > self._max_bytes:
                # Nobody is reading fast enough: stop buffering instead of growing.
                self.closed = self.overflowed = True
                self._chunks.clear()
                self._bytes = 0
            else:
                if self.sample_rate is None:
                    self.sample_rate = sample_rate
                self._chunks.append(pcm16)
                self._bytes += len(pcm16)
            self.touched = time.monotonic()
        self._wake()
        return not self.overflowed

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.touched = time.monotonic()
        self._wake()

    # -- the reader's side (the event loop) -------------------------------------------------
    async def wait_rate(self, timeout_s: float) -> int | None:
        """The sample rate once the first chunk exists (the job may wait in the queue first),
        or None if the job ended without audio or nothing came within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.sample_rate is None and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._event.clear()
            if self.sample_rate is not None or self.closed:
                break
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except TimeoutError:
                return None
        return self.sample_rate

    async def chunks(self, idle_timeout_s: float):
        """Chunks as they come, until the job closes the channel (or goes silent for
        ``idle_timeout_s``)."""
        while True:
            with self._lock:
                batch = list(self._chunks)
                self._chunks.clear()
                self._bytes = 0
                done = self.closed
                self.touched = time.monotonic()
                self._event.clear()
            for chunk in batch:
                yield chunk
            if done:
                return
            try:
                await asyncio.wait_for(self._event.wait(), idle_timeout_s)
            except TimeoutError:
                return


class LiveHub:
    """Tokens issued by the server, claimed by one job, read by one reader, dropped on a timer."""

    def __init__(self, *, claim_ttl_s: float = 600.0, idle_ttl_s: float = 180.0,
                 max_per_client: int = 8, max_total: int = 1024,
                 max_buffer_bytes: int = 16 * 1024 * 1024) -> None:
        self.claim_ttl_s = claim_ttl_s  # a click may wait this long in the queue
        self.idle_ttl_s = idle_ttl_s  # a claimed channel with no activity for this long is dropped
        self.max_per_client = max_per_client
        self.max_total = max_total
        self.max_buffer_bytes = max_buffer_bytes
        self._channels: dict[str, LiveChannel] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._channels)

    def issue(self, client: str) -> str:
        """A new token for ``client``; call on the event loop (the channel's timer runs there)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if len(self._channels) >= self.max_total:
                raise TooManyStreams("Too many audio streams are open on this server; try again "
                                     "in a minute.")
            mine = sum(1 for c in self._channels.values() if c.client == client)
            if mine >= self.max_per_client:
                raise TooManyStreams(f"You have {mine} audio streams open (the limit is "
                                     f"{self.max_per_client}); stop one first.")
            token = secrets.token_urlsafe(24)  # 32 characters
            channel = LiveChannel(token, client, loop, self.max_buffer_bytes)
            self._channels[token] = channel
        loop.call_later(self.claim_ttl_s, self._check, token)
        return token

    def claim(self, token: str | None) -> LiveChannel | None:
        """The job's channel for ``token``: only an issued, unclaimed token (any other value means
        no live playback for this job, never an error)."""
        return self._take(token, "claimed")

    def open_reader(self, token: str) -> LiveChannel | None:
        """The channel for the one reader of ``token`` (None: unknown token or already read)."""
        return self._take(token, "reading")

    def _take(self, token: str | None, role: str) -> LiveChannel | None:
        """The channel of ``token`` if its ``role`` ("claimed" or "reading") is still free."""
        if not valid_token(token):
            return None
        with self._lock:
            channel = self._channels.get(token)
            if channel is None or getattr(channel, role):
                return None
            setattr(channel, role, True)
            channel.touched = time.monotonic()
            return channel

    def drop(self, token: str) -> None:
        with self._lock:
            channel = self._channels.pop(token, None)
        if channel is not None:
            channel.close()

    def _check(self, token: str) -> None:
        """Timer on the event loop: drop the channel if it is unused, else look again later."""
        with self._lock:
            channel = self._channels.get(token)
        if channel is None:
            return
        idle = time.monotonic() - channel.touched
        ttl = self.idle_ttl_s if channel.claimed else self.claim_ttl_s
        if channel.closed and not channel.reading:
            ttl = min(ttl, self.idle_ttl_s)
        if idle >= ttl:
            self.drop(token)
        else:
            channel._loop.call_later(ttl - idle + 0.01, self._check, token)
