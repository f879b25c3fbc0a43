"""Live captions over a WebSocket: the page's microphone in, caption updates out.

Why not Gradio's streaming audio events: a stream handler that is still running when the next
microphone chunk comes makes Gradio drop that chunk (45 % of the speech was lost with a decode
inside the handler, issue 8), the last part-chunk before Stop is never sent, and the stop event
is reported not to fire while streaming (gradio issue 5396). Here the page captures PCM with an
AudioWorklet (``components/captions.js``) and sends it over this socket; receiving never waits
for decoding, which runs on the session's own thread (``pipeline/live_session.py``), and Stop
flushes the last samples before the final captions are sent.

Protocol (``/api/live/captions``; JSON text frames, binary audio frames):

* client -> ``{"type": "start", "sample_rate": 48000, "vocabulary": "...", "denoise": false}``
* server -> ``{"type": "ready", "max_seconds": 600, "session": ID, "view": "captions/ID"}``:
  the caption view that others can follow read-only (``webapp/caption_view.py``)
* client -> binary frames: little-endian int16 mono PCM at ``sample_rate``, any length
* client -> ``{"type": "stop"}`` (after the last audio frame)
* server -> ``{"type": "captions", ...}`` after each decoding step, then one with ``"final": true``
  once everything received has been decoded and committed, with ``"transcript"``: the
  TXT/SRT/VTT download paths (relative to the app); then the server closes.
  At the recording's time limit the server ends it the same way, with a ``notice`` saying so.
* server -> ``{"type": "error", "message": "..."}`` and closes, for anything that went wrong
  (including 30 s without audio).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from webapp.limits import Busy, client_key
from webapp.messages import user_message
from webapp.pipeline.audio import Audio
from webapp.pipeline.caption_board import TRANSCRIPT_FORMATS
from webapp.pipeline.errors import PipelineError
from webapp.pipeline.live_session import LiveSession, LiveStatus, RecordingLimitReached
from webapp.pipeline.streaming import StreamingOptions, make_transcriber
from webapp.services import Services

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
MIN_RATE_HZ, MAX_RATE_HZ = 8_000, 192_000
MAX_FRAME_S = 2.0
"""Largest audio frame accepted: the page sends 0.1 s at a time."""
IDLE_TIMEOUT_S = 30.0
"""A session that receives nothing for this long is closed (a microphone never pauses)."""
AHEAD_SLACK_S = 5.0
"""Audio may arrive at most this far ahead of the wall clock (a microphone cannot): a client
that sends faster is flooding, not speaking."""


def status_message(status: LiveStatus) -> dict:
    update = status.update
    message = {
        "type": "error" if status.error else "captions",
        "committed": update.committed_text,
        "pending": update.pending_text,
        "new_words": [[w.text, round(w.start_s, 3), round(w.end_s, 3)] for w in update.new_words],
        "received_s": round(status.received_s, 3),
        "processed_s": round(status.processed_s, 3),
        "backlog_s": round(status.backlog_s, 3),
        "compute_s": round(status.compute_s, 3),
        "final": status.final,
    }
    if status.error:
        message["message"] = status.error
    return message


def socket_client(ws: WebSocket, services: Services) -> str:
    """Whom a socket counts against in the per-client limit (as ``api.request_client``)."""
    return client_key(ws.client.host if ws.client else None, ws.headers,
                      services.settings.trust_proxy)


def build_live_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/live")
    limit = services.limits.live
    max_seconds = float(services.settings.stream_time_limit_s)

    @router.websocket("/captions")
    async def captions(ws: WebSocket) -> None:
        await ws.accept()
        if services.stt is None:
            await _fail(ws, "Speech recognition is not available in this build.")
            return
        client = socket_client(ws, services)
        try:
            services.limits.clients.enter(client)  # a recording counts as one of its jobs
        except Busy as exc:
            await _fail(ws, str(exc))
            return
        try:
            if not limit.acquire():
                await _fail(ws, f"All {limit.max_sessions} live-caption slots are in use; "
                                "try again in a minute.")
                return
            try:
                await _run_session(ws, services, max_seconds)
            finally:
                limit.release()
        finally:
            services.limits.clients.leave(client)

    return router


async def _fail(ws: WebSocket, message: str) -> None:
    try:
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code=1008)
    except (WebSocketDisconnect, RuntimeError):
        pass


async def _run_session(ws: WebSocket, services: Services, max_seconds: float) -> None:
    try:
        start = await asyncio.wait_for(ws.receive_text(), START_TIMEOUT_S)
        rate, options = _parse_start(start)
        # Loaded at start-up; get() only looks it up (run off the loop in case it was not).
        engine = await run_in_threadpool(services.stt.get)
        transcriber = make_transcriber(engine, options)
    except TimeoutError:
        await _fail(ws, "No start message: the page must say the microphone's sample rate.")
        return
    except ValueError as exc:
        await _fail(ws, str(exc))
        return
    except PipelineError as exc:
        await _fail(ws, user_message(exc, public=services.settings.public))
        return
    except WebSocketDisconnect:
        return

    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[LiveStatus] = asyncio.Queue()
    board = services.captions
    room = board.open(vocabulary=options.vocabulary, engine=getattr(engine, "name", ""),
                      model=getattr(engine, "model", ""))

    def deliver(status: LiveStatus) -> None:  # on the loop: to the page and to the room's views
        update = status.update
        board.publish(room.id, update.committed_text, update.pending_text, update.new_words,
                      status.received_s)
        if status.final:  # everything committed: the transcript is complete
            board.end(room.id)
        outbox.put_nowait(status)

    session = LiveSession(
        transcriber, lambda status: loop.call_soon_threadsafe(deliver, status),
        max_audio_s=max_seconds)
    extra: dict = {}
    sender = asyncio.create_task(_send_statuses(ws, outbox, extra))
    await ws.send_json({"type": "ready", "max_seconds": max_seconds, "session": room.id,
                        "view": f"captions/{room.id}"})
    opened = time.monotonic()
    stopped = False
    notice = None
    try:
        while not sender.done():
            try:
                message = await asyncio.wait_for(ws.receive(), IDLE_TIMEOUT_S)
            except TimeoutError:
                session.cancel()
                await _fail(ws, f"No audio for {IDLE_TIMEOUT_S:.0f} s: the recording was "
                                "closed. Press Record to start again.")
                break
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is not None:
                try:
                    error = _feed(session, data, rate, time.monotonic() - opened)
                except RecordingLimitReached as exc:
                    # Finish the recording properly (the captions so far are final and
                    # kept), and say why it stopped.
                    session.stop()
                    stopped = True
                    notice = str(exc)
                    break
                if error:
                    session.cancel()
                    await _fail(ws, error)
                    break
                continue
            if _is_stop(message.get("text")):
                session.stop()
                stopped = True
                break
        if stopped:
            if notice:
                extra["notice"] = notice
            # The final status carries where the transcript can be downloaded.
            extra["transcript"] = {fmt: f"captions/{room.id}/transcript.{fmt}"
                                   for fmt in TRANSCRIPT_FORMATS}
            await sender  # ends with the final status (everything decoded and committed)
            await ws.close()
    except WebSocketDisconnect:
        pass
    finally:
        if not stopped:
            session.cancel()
        if not sender.done():
            sender.cancel()
        board.end(room.id)  # the views say it ended; the transcript stays for a while


def _parse_start(text: str) -> tuple[int, StreamingOptions]:
    try:
        start = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("The first message must be JSON: {\"type\": \"start\", ...}.") from None
    if not isinstance(start, dict) or start.get("type") != "start":
        raise ValueError("The first message must be {\"type\": \"start\", \"sample_rate\": N}.")
    rate = start.get("sample_rate")
    if not isinstance(rate, int | float) or not MIN_RATE_HZ <= rate <= MAX_RATE_HZ \
            or int(rate) != rate:
        raise ValueError(f"sample_rate must be a whole number of Hz between {MIN_RATE_HZ} and "
                         f"{MAX_RATE_HZ}; got {rate!r}.")
    vocabulary = start.get("vocabulary") or ""
    if not isinstance(vocabulary, str):
        raise ValueError("vocabulary must be text.")
    options = StreamingOptions(vocabulary=vocabulary.strip(),
                               denoise=bool(start.get("denoise", False)))
    return int(rate), options


def _feed(session: LiveSession, data: bytes, rate: int, elapsed_s: float) -> str | None:
    """Queue one audio frame; an error message for a frame we must refuse (the recording's
    time limit is raised as ``RecordingLimitReached``: it ends the recording, not an error)."""
    if len(data) % 2:
        return "Audio frames must be 16-bit samples (an even number of bytes)."
    if len(data) > MAX_FRAME_S * rate * 2:
        return f"Audio frames are limited to {MAX_FRAME_S:.0f} s each."
    chunk = Audio(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, rate)
    if session.received_s + chunk.duration_s > elapsed_s + AHEAD_SLACK_S:
        return "Audio is arriving faster than real time; live captions take a microphone."
    try:
        session.feed(chunk)
    except RecordingLimitReached:
        raise
    except PipelineError as exc:
        return str(exc)
    return None


def _is_stop(text: str | None) -> bool:
    if not text:
        return False
    try:
        return json.loads(text).get("type") == "stop"
    except (json.JSONDecodeError, AttributeError):
        return False


async def _send_statuses(ws: WebSocket, outbox: asyncio.Queue[LiveStatus], extra: dict
                         ) -> None:
    """Forward the session's statuses; when several are waiting only the newest matters for
    the text, but every committed word is kept (the page logs when each word appeared)."""
    while True:
        status = await outbox.get()
        message = status_message(status)
        while not status.final and not outbox.empty():
            status = outbox.get_nowait()
            newer = status_message(status)
            newer["new_words"] = message["new_words"] + newer["new_words"]
            message = newer
        if status.final:
            message.update(extra)
        try:
            await ws.send_json(message)
            if status.error:
                await ws.close(code=1011)
        except (WebSocketDisconnect, RuntimeError):
            return
        if status.final:
            return
