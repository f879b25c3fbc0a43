"""A live-caption session: receiving audio and decoding it, decoupled (no web, no UI).

Why this exists: when the code that receives microphone audio also decodes it, audio that
arrives during a decode is lost or held up. Gradio's streaming events showed the first: with a
Whisper decode inside the handler (up to 2.5 s per call), chunks that came meanwhile were never
delivered and 45 % of the speech went missing (issue 8). WhisperLive and whisper_streaming keep
receiving while they decode; so does this.

``LiveSession.feed`` only appends a chunk to the session's inbox and returns at once, whatever
the decoder is doing. One worker thread per session takes *everything* in the inbox each time
it is free and gives it to the session's ``CaptionTranscriber``. When decoding falls behind (a
slow CPU, several sessions sharing one model) the backlog is listened to first (VAD, utterance
ends) and then decoded in one go: the transcriber catches up by decoding more audio at once,
never by skipping audio. Each status says how far behind it is, so the page can say so.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.streaming import CaptionTranscriber, CaptionUpdate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveStatus:
    """What a session reports after each step of its worker (and once at the end)."""

    update: CaptionUpdate
    received_s: float
    """Audio received from the client so far."""
    processed_s: float
    """Audio the transcriber has taken (the rest is waiting in the inbox)."""
    compute_s: float
    """Time spent in the transcriber so far."""
    final: bool = False
    error: str | None = None

    @property
    def backlog_s(self) -> float:
        return max(0.0, self.received_s - self.processed_s)


StatusFn = Callable[[LiveStatus], None]


class RecordingLimitReached(InputError):
    """The recording reached ``max_audio_s``: end it with ``stop`` (its captions are kept)."""


class LiveSession:
    """Feed audio from any thread; a worker thread of the session's own decodes it.

    ``on_status`` is called from the worker thread after each step and once with
    ``final=True`` (after ``stop``: everything received was decoded and committed) or with an
    ``error``. ``cancel`` ends the worker without decoding what is left (the client went away).
    """

    def __init__(self, transcriber: CaptionTranscriber, on_status: StatusFn, *,
                 max_audio_s: float = 600.0, piece_s: float = 0.5, name: str = "live") -> None:
        self.transcriber = transcriber
        self.max_audio_s = max_audio_s
        self.piece_s = piece_s
        self._on_status = on_status
        self._cond = threading.Condition()
        self._inbox: list[Audio] = []
        self._received_s = 0.0
        self._processed_s = 0.0
        self._compute_s = 0.0
        self._stopping = False
        self._cancelled = False
        self._done = threading.Event()
        self.final_status: LiveStatus | None = None
        self._worker = threading.Thread(target=self._run, name=f"captions-{name}", daemon=True)
        self._worker.start()

    # -- receiving side (never waits for decoding) --------------------------------------------
    def feed(self, chunk: Audio) -> None:
        """Queue a chunk for decoding. Raises ``RecordingLimitReached`` past ``max_audio_s``
        (the chunk is not taken; ``stop`` still finishes what was) and ``InputError`` after
        ``stop``."""
        with self._cond:
            if self._stopping or self._cancelled:
                raise InputError("This recording has ended; start a new one.")
            if self._received_s + chunk.duration_s > self.max_audio_s + 1e-6:
                raise RecordingLimitReached(
                    f"A recording is limited to {self.max_audio_s / 60:.0f} minutes; press "
                    "Record to go on with a new one.")
            self._inbox.append(chunk)
            self._received_s += chunk.duration_s
            self._cond.notify()

    def stop(self) -> None:
        """No more audio: decode what is left, commit everything, report ``final``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._inbox.clear()
            self._cond.notify()

    def wait(self, timeout_s: float | None = None) -> LiveStatus | None:
        """Block until the worker has ended; the final (or error) status, if there was one."""
        self._done.wait(timeout_s)
        return self.final_status

    @property
    def received_s(self) -> float:
        with self._cond:
            return self._received_s

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -- worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._inbox or self._stopping or self._cancelled):
                        self._cond.wait()
                    if self._cancelled:
                        return
                    chunks, self._inbox = self._inbox, []
                    stopping = self._stopping
                    received_s = self._received_s
                if chunks:
                    self._report(self._consume(chunks), received_s)
                if stopping:
                    started = time.perf_counter()
                    update = self.transcriber.finish()
                    self._compute_s += time.perf_counter() - started
                    self.final_status = self._report(update, received_s, final=True)
                    return
        except PipelineError as exc:
            self.final_status = self._report_error(str(exc))
        except Exception:  # noqa: BLE001 - the page must hear about it, and the log keep it
            logger.exception("live-caption session failed")
            self.final_status = self._report_error(
                "Live captions stopped because of an internal error (it was logged). "
                "Start a new recording.")
        finally:
            self._done.set()

    def _consume(self, chunks: list[Audio]) -> CaptionUpdate:
        """Give the transcriber everything that arrived: all but the last piece only to listen,
        the last one to decode (one decode, however long the backlog was)."""
        pieces = _pieces(chunks, self.piece_s)
        update = None
        new_words: list = []
        started = time.perf_counter()
        for i, piece in enumerate(pieces):
            update = self.transcriber.push(piece, decode=(i == len(pieces) - 1))
            new_words.extend(update.new_words)  # an utterance end inside the backlog commits
            self._processed_s += piece.duration_s
        self._compute_s += time.perf_counter() - started
        assert update is not None
        return dataclasses.replace(update, new_words=tuple(new_words))

    def _report(self, update: CaptionUpdate, received_s: float, final: bool = False
                ) -> LiveStatus:
        # Received *now* (the receiving side went on while this step decoded): the backlog the
        # page shows is what is still waiting.
        status = LiveStatus(update, received_s if final else self.received_s, self._processed_s,
                            self._compute_s, final)
        self._publish(status)
        return status

    def _report_error(self, message: str) -> LiveStatus:
        status = LiveStatus(CaptionUpdate("", ""), self.received_s, self._processed_s,
                            self._compute_s, final=True, error=message)
        self._publish(status)
        return status

    def _publish(self, status: LiveStatus) -> None:
        try:
            self._on_status(status)
        except Exception:  # noqa: BLE001 - a listener's failure must not stop decoding
            logger.exception("live-caption listener failed")


def _pieces(chunks: list[Audio], piece_s: float) -> list[Audio]:
    """Join consecutive chunks of one sample rate and cut them into pieces of about
    ``piece_s`` (the transcriber's own step), so a backlog is listened to at the same grain as
    live audio."""
    pieces: list[Audio] = []
    run: list[np.ndarray] = []
    rate = chunks[0].sample_rate

    def flush() -> None:
        if not run:
            return
        samples = np.concatenate(run)
        step = max(1, int(round(piece_s * rate)))
        for start in range(0, len(samples), step):
            pieces.append(Audio(samples[start:start + step], rate))
        run.clear()

    for chunk in chunks:
        if chunk.sample_rate != rate:
            flush()
            rate = chunk.sample_rate
        run.append(chunk.samples)
    flush()
    return pieces
