"""Admission control shared by the page and the HTTP routes: model slots, waiting room, clients.

The page's events wait in Gradio's queue (bounded by ``max_queue``) and then run in worker
threads; HTTP routes wait on the event loop. Both take the same ``WorkPool`` slot before they
run a model, so ``SPEECH_STUDIO_CONCURRENCY`` bounds the work of the whole server, not of one
entry point (issue 9: ``POST /api/synthesize`` used to bypass it). Slots are handed over in
arrival order; a waiting HTTP request holds no thread, and one whose client went away leaves
the line. ``ClientLimits`` bounds how many jobs one client (address) has running or waiting at
once, across all pools.

Refusals are ``Busy`` errors carrying the HTTP status (429 for one client's limit, 503 for a
full server) and a Retry-After estimate; the page shows the same sentence.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, contextmanager

from webapp.pipeline.errors import PipelineError


class Busy(PipelineError):
    """The server or this client is at a limit; try again after ``retry_after_s``."""

    def __init__(self, message: str, *, status: int, retry_after_s: float) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = max(1, math.ceil(retry_after_s))


def client_key(host: str | None, headers: Mapping[str, str] | None, trust_proxy: bool) -> str:
    """Who is asking: the socket's peer address, or behind a trusted reverse proxy (a Space, a
    load balancer; ``SPEECH_STUDIO_TRUST_PROXY=1``) the first X-Forwarded-For address. Without
    a proxy the header is ignored, since any client can write it."""
    if trust_proxy and headers:
        forwarded = headers.get("x-forwarded-for") or headers.get("X-Forwarded-For")
        if forwarded:
            first = forwarded.split(",")[0].strip()
            if first:
                return first[:64]
    return (host or "unknown")[:64]


class ClientLimits:
    """At most ``max_jobs`` jobs (running or waiting) per client; 0 switches the limit off."""

    def __init__(self, max_jobs: int) -> None:
        self.max_jobs = max_jobs
        self._jobs: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, client: str) -> None:
        with self._lock:
            count = self._jobs.get(client, 0)
            if self.max_jobs and count >= self.max_jobs:
                raise Busy(f"You already have {count} requests running or waiting (the limit "
                           f"is {self.max_jobs} at a time); wait for one to finish.",
                           status=429, retry_after_s=5)
            self._jobs[client] = count + 1

    def leave(self, client: str) -> None:
        with self._lock:
            count = self._jobs.get(client, 0) - 1
            if count > 0:
                self._jobs[client] = count
            else:
                self._jobs.pop(client, None)

    def active(self, client: str) -> int:
        with self._lock:
            return self._jobs.get(client, 0)


class _Waiter:
    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.granted = False
        self.wake = wake


class WorkPool:
    """``slots`` jobs at once, first come first served, at most ``max_waiting`` HTTP requests
    waiting (page jobs are already bounded by Gradio's queue and never refused here)."""

    def __init__(self, name: str, slots: int, max_waiting: int, clients: ClientLimits) -> None:
        self.name = name
        self.slots = max(1, slots)
        self.max_waiting = max_waiting
        self.clients = clients
        self._free = self.slots
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self._job_s = 2.0  # moving average of a job's duration, for Retry-After

    # -- state -----------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return self.slots - self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> float:
        return self._job_s * (len(self._waiters) + 1) / self.slots

    # -- slot hand-over ----------------------------------------------------------------------
    def _try_take(self, waiter: _Waiter, *, bounded: bool) -> bool:
        """Take a free slot at once, or join the line (True means the slot is ours)."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            if bounded and len(self._waiters) >= self.max_waiting:
                raise Busy(f"The server is busy ({self.running} {self.name} jobs running, "
                           f"{len(self._waiters)} waiting); try again shortly.",
                           status=503, retry_after_s=self.retry_after_s())
            self._waiters.append(waiter)
            return False

    def _release(self, took_s: float | None) -> None:
        with self._lock:
            if took_s is not None:
                self._job_s = 0.8 * self._job_s + 0.2 * took_s
            if self._waiters:  # the slot goes straight to the next in line
                waiter = self._waiters.popleft()
                waiter.granted = True
                waiter.wake()
            else:
                self._free += 1

    def _leave_line(self, waiter: _Waiter) -> None:
        """A waiter gives up: out of the line, or, if the slot was already handed to it, the
        slot goes to the next in line."""
        with self._lock:
            if not waiter.granted:
                self._waiters.remove(waiter)
                return
        self._release(None)

    # -- for worker threads (the page's handlers) --------------------------------------------
    @contextmanager
    def hold(self, client: str):
        with self._entered(client):
            event = threading.Event()
            if not self._try_take(_Waiter(event.set), bounded=False):
                event.wait()
            with self._running():
                yield

    @contextmanager
    def _entered(self, client: str):
        """``client`` counted among those waiting or running, for the per-client limit."""
        self.clients.enter(client)
        try:
            yield
        finally:
            self.clients.leave(client)

    @contextmanager
    def _running(self):
        """A slot held; released, with how long it was held, on the way out."""
        start = time.monotonic()
        try:
            yield
        finally:
            self._release(time.monotonic() - start)

    # -- for the event loop (HTTP routes) ----------------------------------------------------
    @asynccontextmanager
    async def hold_async(self, client: str,
                         disconnected: Callable[[], Awaitable[bool]] | None = None):
        """Wait without a thread; leave the line when ``disconnected()`` says the client left
        (checked every half second) or when cancelled."""
        with self._entered(client):
            loop = asyncio.get_running_loop()
            future: asyncio.Future = loop.create_future()

            def wake() -> None:
                loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

            waiter = _Waiter(wake)
            if not self._try_take(waiter, bounded=True):
                try:
                    while True:
                        try:
                            await asyncio.wait_for(asyncio.shield(future), 0.5)
                            break
                        except TimeoutError:
                            if disconnected is not None and await disconnected():
                                raise ClientGone() from None
                except BaseException:
                    self._leave_line(waiter)
                    raise
            with self._running():
                yield


class ClientGone(Exception):
    """The HTTP client disconnected while its request waited for a slot."""


class SessionLimit:
    """How many live-caption sessions may run at once (each holds a decoding thread), over every
    route that opens one (the page's socket and the realtime API)."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._active = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self._active >= self.max_sessions:
                return False
            self._active += 1
            return True

    @property
    def active(self) -> int:
        return self._active

    def release(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)


class Limits:
    """The server's pools: one per kind of model work, all sharing the per-client bound."""

    def __init__(self, *, synthesis_slots: int, transcription_slots: int, evaluation_slots: int,
                 max_waiting: int, max_per_client: int, live_sessions: int = 4) -> None:
        self.clients = ClientLimits(max_per_client)
        self.live = SessionLimit(live_sessions)
        self.synthesis = WorkPool("synthesis", synthesis_slots, max_waiting, self.clients)
        self.transcription = WorkPool("transcription", transcription_slots, max_waiting,
                                      self.clients)
        self.evaluation = WorkPool("evaluation", evaluation_slots, max_waiting, self.clients)

    def pools(self) -> tuple[WorkPool, ...]:
        return (self.synthesis, self.transcription, self.evaluation)
