"""Captions for a room (issue 15): one live-caption session, followed read-only by any number
of caption views (a projector, a phone, a streaming overlay), and its transcript kept after it.

A session gets an unguessable id (128 random bits) when its recording starts; the id is the
only way to reach it. While it records, every caption status is published here and each viewer
is woken to read the newest state (the views show the last lines only, so they get the tail of
the committed text, not every update). When the recording stops the session ends: viewers are
told, the transcript (TXT/SRT/VTT, times from the start of the recording) stays downloadable
for ``keep_s``, and then the session is forgotten, so an old link says it has expired.

All methods run on the server's event loop (the socket handlers publish from there), so there
is no locking; nothing here is per user in a module global: the app owns one board.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from webapp.pipeline.stt.base import Word
from webapp.pipeline.stt.files import live_transcript, render

KEEP_S = 30 * 60.0
"""How long an ended session's transcript stays downloadable (and its link says "ended")."""
MAX_SESSIONS = 200
"""Sessions kept at once, live and ended; the oldest ended ones go first."""
MAX_VIEWERS = 50
"""Viewers following one session at once (a room, a stream, a few phones)."""
TAIL_CHARS = 600
"""Committed text sent to viewers: enough for the last lines at any size the view allows."""
TRANSCRIPT_FORMATS = ("txt", "srt", "vtt")


class ViewerLimit(Exception):
    """The session already has ``MAX_VIEWERS`` viewers."""


@dataclass
class CaptionSession:
    id: str
    vocabulary: str = ""
    words: list[Word] = field(default_factory=list)
    committed: str = ""
    pending: str = ""
    received_s: float = 0.0
    ended_at: float | None = None
    engine: str = ""
    model: str = ""
    viewers: int = 0
    version: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def snapshot(self) -> dict:
        """What a view shows: the end of the committed text, the pending words, the state."""
        tail = self.committed[-TAIL_CHARS:]
        if len(self.committed) > TAIL_CHARS and " " in tail:
            tail = tail.split(" ", 1)[1]  # never half a word
        return {"committed": tail, "pending": self.pending, "ended": self.ended,
                "words": len(self.words), "received_s": round(self.received_s, 2),
                "version": self.version}

    def transcript(self, fmt: str) -> str:
        return render(live_transcript(self.words, self.received_s, engine=self.engine,
                                      model=self.model), fmt)

    def _touch(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()


class CaptionBoard:
    def __init__(self, keep_s: float = KEEP_S, max_sessions: int = MAX_SESSIONS,
                 max_viewers: int = MAX_VIEWERS,
                 clock: Callable[[], float] = time.monotonic, replica: str = "") -> None:
        """``replica`` (``SPEECH_STUDIO_REPLICA_ID``) starts every session id ("r2.…"), so a
        load balancer can send a caption view to the replica holding its recording."""
        self.keep_s, self.max_sessions, self.max_viewers = keep_s, max_sessions, max_viewers
        self.replica = replica
        self._clock = clock
        self._sessions: dict[str, CaptionSession] = {}

    def open(self, *, vocabulary: str = "", engine: str = "", model: str = "") -> CaptionSession:
        """A new session for a recording that starts now."""
        self._expire()
        if len(self._sessions) >= self.max_sessions:
            ended = sorted((s for s in self._sessions.values() if s.ended),
                           key=lambda s: s.ended_at or 0.0)
            for old in ended[:len(self._sessions) - self.max_sessions + 1]:
                del self._sessions[old.id]
        token = secrets.token_urlsafe(16)
        session = CaptionSession(f"{self.replica}.{token}" if self.replica else token,
                                 vocabulary=vocabulary,
                                 engine=engine, model=model)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> CaptionSession | None:
        """The session, live or recently ended; None when unknown or expired."""
        self._expire()
        return self._sessions.get(session_id)

    def publish(self, session_id: str, committed: str, pending: str,
                new_words: tuple[Word, ...], received_s: float) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.ended:
            return
        session.words.extend(new_words)
        session.committed, session.pending = committed, pending
        session.received_s = max(session.received_s, received_s)
        session._touch()

    def end(self, session_id: str) -> None:
        """The recording stopped (or failed): what was committed is the transcript."""
        session = self._sessions.get(session_id)
        if session is None or session.ended:
            return
        session.pending = ""
        session.ended_at = self._clock()
        session._touch()

    async def follow(self, session_id: str, keepalive_s: float = 15.0
                     ) -> AsyncIterator[dict | None]:
        """Snapshots of the session: the current one at once, then one after each change
        (several changes while the viewer was busy become one), the last once it has ended;
        ``None`` after ``keepalive_s`` without a change (the caller may send a keep-alive).
        Raises ``KeyError`` for an unknown session and ``ViewerLimit`` when it is full."""
        session = self.get(session_id)
        if session is None:
            raise KeyError(session_id)
        if session.viewers >= self.max_viewers:
            raise ViewerLimit(f"This caption session already has {self.max_viewers} viewers.")
        session.viewers += 1
        seen = -1
        try:
            while True:
                if session.version != seen:
                    seen = session.version
                    yield session.snapshot()
                    if session.ended:
                        return
                changed = session._changed
                if session.version != seen:  # changed while the snapshot was being sent
                    continue
                try:
                    await asyncio.wait_for(changed.wait(), keepalive_s)
                except TimeoutError:
                    yield None
        finally:
            session.viewers -= 1

    def _expire(self) -> None:
        now = self._clock()
        for sid in [s.id for s in self._sessions.values()
                    if s.ended_at is not None and now - s.ended_at > self.keep_s]:
            del self._sessions[sid]
