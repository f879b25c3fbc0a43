"""Realtime captions over WebSocket, following the OpenAI Realtime transcription session
(issue 11).

URL: ``ws://HOST:PORT/v1/realtime?intent=transcription``, which the official ``openai`` client
builds by itself: ``AsyncOpenAI(base_url="http://HOST:PORT/v1", api_key="unused")
.realtime.connect(extra_query={"intent": "transcription"})``. ``intent`` may be left out (every
session here is a transcription session); a ``model`` in the query that names a transcription
model (see below) picks it, any other (``gpt-realtime``) is ignored. No API key is checked.

It runs on the same streaming transcriber, session thread and limits as the page's live captions
(``webapp.live_captions``): one connection takes one of ``SPEECH_STUDIO_MAX_LIVE_SESSIONS``
slots and one of the client's jobs; decoding runs on the session's own thread, never on the
event loop; audio may not arrive faster than real time (5 s of slack) and frames carry at most
2 s; a connection is closed after 30 s without any event, and after ``STREAM_TIME_LIMIT_S``
of audio (its last item is completed first, then an ``error`` with code ``session_expired``).

Client events (JSON text frames):

* ``session.update`` (GA shape: ``session.type = "transcription"``, ``session.audio.input
  .{format, transcription, turn_detection, noise_reduction}``) or ``transcription_session.update``
  (beta shape: ``input_audio_format``, ``input_audio_transcription``, ``turn_detection``,
  ``input_audio_noise_reduction``). Answered with ``session.updated`` /
  ``transcription_session.updated`` carrying the effective configuration.

  - format: PCM16 little-endian mono. ``pcm16`` / ``{"type": "audio/pcm"}`` is 24 kHz as in
    OpenAI's API; ``{"type": "audio/pcm", "rate": N}`` accepts any whole N from 8 to 192 kHz.
    G.711 (``pcmu``/``pcma``) is refused. A format change applies to the next append.
  - transcription: ``model`` is ``whisper-1``, an OpenAI ``*transcribe*`` name (all mean the
    server's default Whisper model) or an installed model name (``tiny.en``); ``language``
    ``en`` (English models only); ``prompt`` and GA ``keywords`` become the caption vocabulary
    (names and terms, at most 500 characters).
  - turn_detection: ``server_vad`` (the default, as in OpenAI's API; ``semantic_vad`` is
    treated as ``server_vad``) or ``null``. ``silence_duration_ms`` and ``threshold`` set the
    transcriber's utterance end and speech threshold.
  - noise_reduction: ``near_field`` / ``far_field`` turn on denoising before recognition.

  Transcription, turn-detection and noise settings take effect with the next item buffer, i.e.
  at once when no audio is buffered, else after the next ``input_audio_buffer.commit``/``clear``.
* ``input_audio_buffer.append`` ``{"audio": base64 PCM16}``; ``input_audio_buffer.commit``;
  ``input_audio_buffer.clear``.

Server events:

* ``session.created`` (``transcription_session.created`` for clients that send the beta header
  ``OpenAI-Beta: realtime=v1``), then ``session.updated`` / ``transcription_session.updated``.
* Items. Audio is transcribed *while it arrives* (OpenAI transcribes a buffer once it is
  committed), so an item's deltas can come before its ``input_audio_buffer.committed``.
  With ``turn_detection: null`` an item is the audio between two commits. With ``server_vad``
  an item is one utterance as the transcriber hears it: it ends where the transcriber's VAD
  heard ``silence_duration_ms`` of silence (the point where the page's captions commit a whole
  utterance), once the unsure last words it held back there are committed too (by the next
  utterance's decodes, a pause over 2 s, or a commit). It is announced by
  ``input_audio_buffer.speech_started`` (when its first text shows) and ends with
  ``input_audio_buffer.speech_stopped``; a commit ends the current item at once, with all the
  audio since the previous item. For each item, in order (items never interleave):

  - ``conversation.item.input_audio_transcription.delta`` ``{"item_id", "content_index": 0,
    "delta"}``: *committed* words only, never retracted; the deltas of an item joined are its
    transcript.
  - ``x-speech-studio.pending`` ``{"item_id", "content_index": 0, "text"}`` (our extension):
    the current hypothesis after the item's committed words. It may still change; each event
    replaces the previous one, and ``""`` clears it. A caption overlay shows committed text
    followed by pending text; clients that do not know the event can ignore it.
  - ``input_audio_buffer.committed`` ``{"item_id", "previous_item_id"}``: the item's audio is
    closed (sent at once for a client's commit).
  - ``conversation.item.input_audio_transcription.completed`` ``{"item_id", "content_index":
    0, "transcript", "usage": {"type": "duration", "seconds"}}``: the item's whole transcript
    (equal to its deltas joined). A commit always gets one, possibly with an empty transcript.
  - ``input_audio_buffer.cleared`` after a clear: the open item is dropped (no ``completed``).
* ``error`` ``{"error": {"type", "code", "message", "param", "event_id"}}`` (OpenAI's shape;
  ``event_id`` echoes the client event's). Bad events leave the session open (``type``
  ``invalid_request_error``; ``code`` ``invalid_json``, ``invalid_event``,
  ``unsupported_event``, ``missing_required_parameter``, ``invalid_type``, ``invalid_value``,
  ``unsupported_value``, ``input_audio_buffer_commit_empty``). These close it: audio faster
  than real time (``rate_limit_exceeded``, close code 1008), 30 s without an event
  (``idle_timeout``, 1008), the time limit (``session_expired``, 1000), a full server or a client
  over its job limit (``server_busy`` / ``rate_limit_exceeded`` of type ``server_error``, 1013),
  a failed transcription (``transcription_failed``, 1011).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from webapp.limits import Busy
from webapp.live_captions import (
    AHEAD_SLACK_S,
    IDLE_TIMEOUT_S,
    MAX_FRAME_S,
    MAX_RATE_HZ,
    MIN_RATE_HZ,
    socket_client,
)
from webapp.messages import redact_paths, user_message
from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import PipelineError
from webapp.pipeline.live_session import LiveSession, LiveStatus
from webapp.pipeline.streaming import StreamingOptions, make_transcriber
from webapp.pipeline.stt.base import Word, join_words
from webapp.services import Services

logger = logging.getLogger(__name__)

OPENAI_RATE_HZ = 24_000
"""PCM16 in OpenAI's Realtime API is 24 kHz mono."""
MAX_EVENT_CHARS = 2 * 1024 * 1024
"""Largest client event read (a 2 s append at 192 kHz is about 1 MB of base64)."""
PENDING_EVENT = "x-speech-studio.pending"
OPENAI_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
"""OpenAI's transcription model names; these and any other of theirs (``*transcribe*``,
``gpt-realtime-whisper``) mean the server's default model."""
CONVERSATION_EVENTS = frozenset({
    "conversation.item.create", "conversation.item.delete", "conversation.item.retrieve",
    "conversation.item.truncate", "response.create", "response.cancel",
    "output_audio_buffer.clear",
})
SESSION_EXPIRED = "session_expired"


class EventError(Exception):
    """A client event we refuse: becomes an ``error`` event (the session stays open)."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None
                 ) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


def error_event(message: str, code: str, *, kind: str = "invalid_request_error",
                param: str | None = None, event_id: str | None = None) -> dict:
    return {"type": "error", "event_id": _new_id("event"),
            "error": {"type": kind, "code": code, "message": message, "param": param,
                      "event_id": event_id}}


def _show(value: object, limit: int = 60) -> str:
    """A client's value quoted in a message, cut short (never echo a whole event back)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


# -- session configuration ------------------------------------------------------------------
@dataclass(frozen=True)
class RealtimeConfig:
    """What a session.update can set (``None`` model: the server's default)."""

    rate_hz: int = OPENAI_RATE_HZ
    model: str | None = None
    model_label: str = "whisper-1"
    """The model name echoed to the client."""
    language: str = "en"
    prompt: str = ""
    keywords: tuple[str, ...] = ()
    server_vad: bool = True
    silence_ms: int = 500
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    noise_reduction: str | None = None

    def streaming_options(self) -> StreamingOptions:
        vocabulary = " ".join(p for p in (self.prompt.strip(), " ".join(self.keywords)) if p)
        return StreamingOptions(vocabulary=vocabulary, denoise=self.noise_reduction is not None,
                                end_silence_s=self.silence_ms / 1000,
                                vad_threshold=self.threshold)

    def turn_detection(self) -> dict | None:
        if not self.server_vad:
            return None
        return {"type": "server_vad", "threshold": self.threshold,
                "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_ms}

    def session(self, session_id: str, *, beta: bool) -> dict:
        transcription = {"model": self.model_label, "language": self.language,
                         "prompt": self.prompt}
        noise = {"type": self.noise_reduction} if self.noise_reduction else None
        if beta:
            fmt: str | dict = ("pcm16" if self.rate_hz == OPENAI_RATE_HZ
                               else {"type": "audio/pcm", "rate": self.rate_hz})
            return {"id": session_id, "object": "realtime.transcription_session",
                    "modalities": ["text"], "input_audio_format": fmt,
                    "input_audio_transcription": transcription,
                    "turn_detection": self.turn_detection(),
                    "input_audio_noise_reduction": noise, "include": []}
        if self.keywords:
            transcription["keywords"] = list(self.keywords)
        return {"id": session_id, "object": "realtime.transcription_session",
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": self.rate_hz},
                                    "transcription": transcription,
                                    "turn_detection": self.turn_detection(),
                                    "noise_reduction": noise}},
                "include": []}


def parse_session_update(config: RealtimeConfig, session: object, installed: list[str]
                         ) -> RealtimeConfig:
    """Apply a ``session`` object of either shape (GA or beta) to ``config``; ``EventError``
    for anything we cannot honour (the old configuration stays)."""
    if not isinstance(session, dict):
        raise EventError("session must be an object.", "invalid_type", "session")
    kind = session.get("type")
    if kind not in (None, "transcription"):
        raise EventError("This server offers transcription sessions only: session.type must "
                         f"be \"transcription\", not {_show(kind)}.", "invalid_value", "session.type")
    audio = _object(session.get("audio"), "session.audio")
    audio_input = _object(audio.get("input"), "session.audio.input")
    changes: dict = {}
    where = "session.audio.input"
    if "format" in audio_input:
        changes["rate_hz"] = _parse_format(audio_input["format"], f"{where}.format")
    if "input_audio_format" in session:
        changes["rate_hz"] = _parse_format(session["input_audio_format"],
                                           "session.input_audio_format")
    for key, path in (("transcription", f"{where}.transcription"),
                      ("input_audio_transcription", "session.input_audio_transcription")):
        source = audio_input if key == "transcription" else session
        if key in source and source[key] is not None:
            changes.update(_parse_transcription(source[key], path, installed))
    for source, path in ((audio_input, f"{where}.turn_detection"),
                         (session, "session.turn_detection")):
        if "turn_detection" in source:
            changes.update(_parse_turn_detection(source["turn_detection"], path))
    for source, key, path in ((audio_input, "noise_reduction", f"{where}.noise_reduction"),
                              (session, "input_audio_noise_reduction",
                               "session.input_audio_noise_reduction")):
        if key in source:
            changes["noise_reduction"] = _parse_noise(source[key], path)
    config = dataclasses.replace(config, **changes)
    try:
        config.streaming_options()  # the vocabulary's own limits (length)
    except PipelineError as exc:
        raise EventError(str(exc), "invalid_value",
                         f"{where}.transcription.prompt") from None
    return config


def _object(value: object, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"{path} must be an object.", "invalid_type", path)
    return value


def _parse_format(value: object, path: str) -> int:
    if value == "pcm16":
        return OPENAI_RATE_HZ
    if isinstance(value, str) and value.startswith("g711"):
        raise EventError(f"{path}: only PCM16 audio is supported here, not {_show(value)}.",
                         "unsupported_value", path)
    if not isinstance(value, dict):
        raise EventError(f"{path} must be \"pcm16\" or {{\"type\": \"audio/pcm\", \"rate\": "
                         "24000}.", "invalid_type", path)
    kind = value.get("type", "audio/pcm")
    if kind != "audio/pcm":
        raise EventError(f"{path}.type: only \"audio/pcm\" (PCM16 little-endian mono) is "
                         f"supported here, not {_show(kind)}.", "unsupported_value", f"{path}.type")
    rate = value.get("rate", OPENAI_RATE_HZ)
    if (isinstance(rate, bool) or not isinstance(rate, int | float)
            or not MIN_RATE_HZ <= rate <= MAX_RATE_HZ or int(rate) != rate):  # NaN: refused
        raise EventError(f"{path}.rate must be a whole number of Hz between {MIN_RATE_HZ} and "
                         f"{MAX_RATE_HZ}; got {_show(rate)}.", "invalid_value", f"{path}.rate")
    return int(rate)


def _parse_transcription(value: object, path: str, installed: list[str]) -> dict:
    value = _object(value, path)
    changes: dict = {}
    if "model" in value and value["model"] is not None:
        changes.update(_parse_model(value["model"], f"{path}.model", installed))
    language = value.get("language")
    if language not in (None, "", "en") and not (isinstance(language, str)
                                                  and language.lower().startswith("en")):
        raise EventError(f"{path}.language: only English models are installed here, so "
                         f"live captions are English only (got {_show(language)}).",
                         "unsupported_value", f"{path}.language")
    prompt = value.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise EventError(f"{path}.prompt must be text.", "invalid_type", f"{path}.prompt")
        changes["prompt"] = prompt
    keywords = value.get("keywords")
    if keywords is not None:
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise EventError(f"{path}.keywords must be a list of words or phrases.",
                             "invalid_type", f"{path}.keywords")
        changes["keywords"] = tuple(k.strip() for k in keywords if k.strip())
    return changes


def _parse_model(name: object, path: str, installed: list[str]) -> dict:
    if not isinstance(name, str):
        raise EventError(f"{path} must be a model name.", "invalid_type", path)
    if name in installed:
        return {"model": name, "model_label": name}
    if name in OPENAI_MODELS or "transcribe" in name or name.startswith("gpt-realtime-whisper"):
        return {"model": None, "model_label": name}
    raise EventError(f"{path}: unknown transcription model {_show(name)}. Use one of: "
                     f"{', '.join([*OPENAI_MODELS, *installed])}.", "invalid_value", path)


def _parse_turn_detection(value: object, path: str) -> dict:
    if value is None:
        return {"server_vad": False}
    value = _object(value, path)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise EventError(f"{path}.type must be \"server_vad\" (or null for manual commits), "
                         f"not {_show(kind)}.", "invalid_value", f"{path}.type")
    changes: dict = {"server_vad": True}
    for key, name, low, high in (("silence_duration_ms", "silence_ms", 100, 5000),
                                 ("prefix_padding_ms", "prefix_padding_ms", 0, 5000)):
        if value.get(key) is not None:
            number = value[key]
            if isinstance(number, bool) or not isinstance(number, int) \
                    or not low <= number <= high:
                raise EventError(f"{path}.{key} must be a whole number of ms between {low} "
                                 f"and {high}; got {_show(number)}.", "invalid_value",
                                 f"{path}.{key}")
            changes[name] = number
    if value.get("threshold") is not None:
        threshold = value["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
                or not 0.05 <= threshold <= 0.95:
            raise EventError(f"{path}.threshold must be a number between 0.05 and 0.95; got "
                             f"{_show(threshold)}.", "invalid_value", f"{path}.threshold")
        changes["threshold"] = float(threshold)
    return changes


def _parse_noise(value: object, path: str) -> str | None:
    if value is None:
        return None
    kind = _object(value, path).get("type")
    if kind not in ("near_field", "far_field"):
        raise EventError(f"{path}.type must be \"near_field\" or \"far_field\" (or the whole "
                         f"setting null); got {_show(kind)}.", "invalid_value", f"{path}.type")
    return kind


def decode_append(audio_b64: object, rate_hz: int) -> Audio:
    """An append's audio as float samples; ``EventError`` for anything else."""
    if not isinstance(audio_b64, str):
        raise EventError("audio must be a base64 string of PCM16 samples.", "invalid_type",
                         "audio")
    if len(audio_b64) > (MAX_FRAME_S * rate_hz * 2) * 4 / 3 + 4:
        raise EventError(f"An append carries at most {MAX_FRAME_S:.0f} s of audio; send "
                         "smaller pieces (e.g. 100 ms) as they are recorded.",
                         "invalid_value", "audio")
    try:
        data = base64.b64decode(audio_b64, validate=True)
    except (binascii.Error, ValueError):
        raise EventError("audio is not valid base64.", "invalid_value", "audio") from None
    if len(data) % 2:
        raise EventError("audio must be 16-bit samples (an even number of bytes).",
                         "invalid_value", "audio")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return Audio(samples, rate_hz)


# -- items ----------------------------------------------------------------------------------
@dataclass
class _Item:
    id: str
    from_s: float
    """Stream time where its audio starts."""
    words: list[Word] = field(default_factory=list)
    pending: str = ""
    ends_at_s: float | None = None
    """Server VAD: the utterance end (stream time) that closes it."""

    @property
    def text(self) -> str:
        return join_words([w.text for w in self.words])


@dataclass(eq=False)
class _Stream:
    """One ``LiveSession``: the audio between two commits (or clears)."""

    session: LiveSession
    offset_s: float
    """Connection audio time where it starts (for speech_started/stopped)."""
    server_vad: bool
    item: _Item | None = None
    next_from_s: float = 0.0
    """Stream time where the next item's audio starts (the last item's end)."""
    utterance_end_s: float = 0.0
    """The transcriber's last utterance end seen so far."""
    committing: bool = False
    dropped: bool = False
    done: bool = False
    backlog: deque = field(default_factory=deque)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class _Sender:
    """The one writer of the socket: turns session statuses and commands into events, in
    order, one stream (and so one item) after another."""

    def __init__(self, ws: WebSocket, *, public: bool) -> None:
        self.ws = ws
        self.public = public
        self.queue: asyncio.Queue[tuple] = asyncio.Queue()
        self.streams: deque[_Stream] = deque()
        self.last_item_id: str | None = None

    # -- called on the event loop by the receiving side --------------------------------------
    def event(self, event: dict) -> None:
        self.queue.put_nowait(("event", event))

    def close(self, code: int) -> None:
        self.queue.put_nowait(("close", code))

    def add_stream(self, stream: _Stream) -> None:
        self.streams.append(stream)

    def for_stream(self, stream: _Stream, kind: str, payload: object = None) -> None:
        self.queue.put_nowait(("stream", stream, kind, payload))

    # -- the task ----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                entry = await self.queue.get()
                if entry[0] == "event":
                    await self._send(entry[1])
                elif entry[0] == "close":
                    await self._close(entry[1])
                    return
                else:
                    _, stream, kind, payload = entry
                    if stream.done:  # late statuses of a cleared or finished stream
                        continue
                    stream.backlog.append((kind, payload))
                    if not await self._drain():
                        return
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client went away

    async def _drain(self) -> bool:
        """Handle what the oldest open streams have waiting; False once the socket closed."""
        while self.streams:
            head = self.streams[0]
            while head.backlog and not head.done:
                kind, payload = head.backlog.popleft()
                if not await self._handle(head, kind, payload):
                    return False
            if not head.done:
                return True
            head.backlog.clear()
            head.finished.set()
            self.streams.popleft()
        return True

    async def _handle(self, stream: _Stream, kind: str, payload: object) -> bool:
        if kind == "commit":
            item = stream.item or self._open(stream)
            stream.committing = True
            await self._send({"type": "input_audio_buffer.committed", "item_id": item.id,
                              "previous_item_id": self.last_item_id})
            self.last_item_id = item.id
            return True
        if kind == "clear":
            stream.item = None
            stream.dropped = stream.done = True
            await self._send({"type": "input_audio_buffer.cleared"})
            return True
        if stream.dropped:
            return True
        return await self._status(stream, payload)

    async def _status(self, stream: _Stream, status: LiveStatus) -> bool:
        if status.error:
            stream.done = True
            message = redact_paths(status.error) if self.public else status.error
            await self._send(error_event(message, "transcription_failed", kind="server_error"))
            await self._close(1011)
            return False
        update = status.update
        # With server VAD an item is one of the transcriber's utterances: it ends where the
        # transcriber heard the utterance end (silence_duration_ms of silence), once the words
        # it held back there (unsure, waiting for right context) are committed too. After a
        # client's commit, the rest of the stream is that commit's item.
        split = stream.server_vad and not stream.committing
        ended_s = None
        if split and update.utterance_end_s > stream.utterance_end_s:
            ended_s = stream.utterance_end_s = update.utterance_end_s
        added: list[Word] = []
        for word in update.new_words:
            item = stream.item
            if split and item and item.ends_at_s is not None and word.start_s >= item.ends_at_s:
                await self._delta(item, added)  # a word of the next utterance
                added = []
                await self._end(stream, item.ends_at_s)
            if stream.item is None:
                await self._start(stream, word.start_s)
            added.append(word)
        if stream.item is not None:
            await self._delta(stream.item, added)
        if status.final:
            item = stream.item or self._open(stream)
            if item.pending:
                item.pending = ""
                await self._send_pending(item)
            await self._end(stream, status.received_s)
            stream.done = True
            return True
        item = stream.item
        if ended_s is not None and item is not None and item.ends_at_s is None:
            item.ends_at_s = ended_s
        if split and item is not None and item.ends_at_s is not None \
                and not update.holding:
            await self._end(stream, item.ends_at_s)
        pending = update.pending_text
        if pending and stream.item is None:
            await self._start(stream, update.pending[0].start_s if update.pending else
                              update.stream_s)
        item = stream.item
        if item is not None and pending != item.pending:
            item.pending = pending
            await self._send_pending(item)
        return True

    def _open(self, stream: _Stream) -> _Item:
        stream.item = _Item(_new_id("item"), stream.next_from_s)
        return stream.item

    async def _start(self, stream: _Stream, at_s: float) -> None:
        item = self._open(stream)
        if stream.server_vad:
            await self._send({"type": "input_audio_buffer.speech_started", "item_id": item.id,
                              "audio_start_ms": _ms(stream.offset_s + at_s)})

    async def _delta(self, item: _Item, words: list[Word]) -> None:
        if not words:
            return
        before = item.text
        item.words.extend(words)
        after = item.text
        delta = after[len(before):] if after.startswith(before) else \
            " " + join_words([w.text for w in words])
        if delta:
            await self._send({"type": "conversation.item.input_audio_transcription.delta",
                              "item_id": item.id, "content_index": 0, "delta": delta})

    async def _send_pending(self, item: _Item) -> None:
        await self._send({"type": PENDING_EVENT, "item_id": item.id, "content_index": 0,
                          "text": item.pending})

    async def _end(self, stream: _Stream, until_s: float) -> None:
        """Close the stream's open item: speech_stopped and committed (unless the client's
        commit announced it), then the completed transcript."""
        item = stream.item
        if item is None:
            return
        stream.item = None
        stream.next_from_s = until_s
        if not stream.committing:
            if stream.server_vad:  # its speech_started was sent
                end_s = item.words[-1].end_s if item.words else until_s
                await self._send({"type": "input_audio_buffer.speech_stopped",
                                  "item_id": item.id,
                                  "audio_end_ms": _ms(stream.offset_s + end_s)})
            await self._send({"type": "input_audio_buffer.committed", "item_id": item.id,
                              "previous_item_id": self.last_item_id})
            self.last_item_id = item.id
        if item.pending:
            item.pending = ""
            await self._send_pending(item)
        await self._send({"type": "conversation.item.input_audio_transcription.completed",
                          "item_id": item.id, "content_index": 0, "transcript": item.text,
                          "usage": {"type": "duration",
                                    "seconds": round(max(0.0, until_s - item.from_s), 3)}})

    async def _send(self, event: dict) -> None:
        event.setdefault("event_id", _new_id("event"))
        await self.ws.send_json(event)

    async def _close(self, code: int) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.ws.close(code=code)


def _ms(seconds: float) -> int:
    return max(0, int(round(seconds * 1000)))


# -- the socket -----------------------------------------------------------------------------
def build_realtime_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await ws.accept()
        if services.stt is None:
            await _refuse(ws, "Speech recognition is not available in this build.",
                          "model_not_available", 1011)
            return
        client = socket_client(ws, services)
        try:
            services.limits.clients.enter(client)  # a session counts as one of its jobs
        except Busy as exc:
            await _refuse(ws, str(exc), "rate_limit_exceeded", 1013)
            return
        limit = services.limits.live
        try:
            if not limit.acquire():
                await _refuse(ws, f"All {limit.max_sessions} live-caption sessions of this "
                                  "server are in use; try again in a minute.",
                              "server_busy", 1013)
                return
            try:
                await _Connection(ws, services).run()
            finally:
                limit.release()
        finally:
            services.limits.clients.leave(client)

    return router


async def _refuse(ws: WebSocket, message: str, code: str, close_code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_json(error_event(message, code, kind="server_error"))
        await ws.close(code=close_code)


class _Connection:
    """One realtime session: receives events, owns the current stream, never decodes."""

    def __init__(self, ws: WebSocket, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.public = services.settings.public
        self.max_audio_s = float(services.settings.stream_time_limit_s)
        self.beta = "realtime=v1" in ws.headers.get("openai-beta", "")
        self.session_id = _new_id("sess")
        self.config = RealtimeConfig(model_label=services.stt.default_model)
        self.engine = None
        self.installed: list[str] = []
        self.sender = _Sender(ws, public=self.public)
        self.sender_task: asyncio.Task | None = None
        self.stream: _Stream | None = None
        self.received_s = 0.0
        self.first_audio_at: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            installed = await run_in_threadpool(self.services.stt.models)
            model = self.ws.query_params.get("model")
            if model:
                with contextlib.suppress(EventError):  # a conversation model: ignored
                    self.config = dataclasses.replace(
                        self.config, **_parse_model(model, "model", installed))
            self.installed = installed
            # Loaded at start-up; get() only looks it up (off the loop in case it was not).
            self.engine = await run_in_threadpool(self.services.stt.get, None, self.config.model)
        except PipelineError as exc:
            await _refuse(self.ws, user_message(exc, public=self.public),
                          "model_not_available", 1011)
            return
        sender = self.sender_task = asyncio.create_task(self.sender.run())
        self.sender.event({"type": "transcription_session.created" if self.beta
                           else "session.created",
                           "session": self.config.session(self.session_id, beta=self.beta)})
        try:
            await self._receive(sender)
        finally:
            for stream in self.sender.streams:
                stream.session.cancel()
            if not sender.done():
                self.sender.close(1000)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sender, 5)
            if not sender.done():
                sender.cancel()

    async def _receive(self, sender: asyncio.Task) -> None:
        while not sender.done():
            try:
                message = await asyncio.wait_for(self.ws.receive(), IDLE_TIMEOUT_S)
            except TimeoutError:
                await self._end_with(error_event(
                    f"No event for {IDLE_TIMEOUT_S:.0f} s: the session was closed. Connect "
                    "again to go on.", "idle_timeout"), 1008, sender)
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                self._error("Send JSON text events; audio goes base64-encoded in "
                            "input_audio_buffer.append.", "invalid_event")
                continue
            if len(text) > MAX_EVENT_CHARS:
                self._error(f"Events are limited to {MAX_EVENT_CHARS // 1024} KB; send "
                            "audio in smaller appends.", "invalid_event")
                continue
            try:
                event = json.loads(text)
            except (ValueError, RecursionError):  # not JSON, or nested beyond reason
                self._error("Events must be JSON objects like {\"type\": "
                            "\"input_audio_buffer.append\", \"audio\": \"...\"}.",
                            "invalid_json")
                continue
            event_id = event.get("event_id") if isinstance(event, dict) else None
            if not isinstance(event_id, str):
                event_id = None
            try:
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    raise EventError("Each event must be a JSON object with a \"type\".",
                                     "invalid_event", "type")
                fatal = await self._handle(event)
            except EventError as exc:
                self._error(str(exc), exc.code, param=exc.param, event_id=event_id)
                continue
            except Exception as exc:  # noqa: BLE001 - logged; the client gets one sentence
                self.sender.event(error_event(user_message(exc, public=self.public),
                                              "server_error", kind="server_error",
                                              event_id=event_id))
                continue
            if fatal is not None:
                error, close_code = fatal
                error["error"]["event_id"] = event_id
                await self._end_with(error, close_code, sender)
                return

    async def _end_with(self, error: dict, close_code: int, sender: asyncio.Task) -> None:
        """Send ``error`` after everything already queued, close, and wait for the sender."""
        self.sender.event(error)
        self.sender.close(close_code)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(sender), 5)

    def _error(self, message: str, code: str, *, param: str | None = None,
               event_id: str | None = None) -> None:
        self.sender.event(error_event(message, code, param=param, event_id=event_id))

    # -- events ------------------------------------------------------------------------------
    async def _handle(self, event: dict) -> tuple[dict, int] | None:
        """Handle one client event; an (error, close code) pair when the session must end."""
        kind = event["type"]
        if kind in ("session.update", "transcription_session.update"):
            await self._update(event, beta=self.beta or kind.startswith("transcription_"))
        elif kind == "input_audio_buffer.append":
            return await self._append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            self._commit()
        elif kind == "input_audio_buffer.clear":
            self._clear()
        elif kind in CONVERSATION_EVENTS:
            raise EventError(f"{kind} is not supported here: this is a transcription session "
                             "(session.update, input_audio_buffer.append / commit / clear).",
                             "unsupported_event", "type")
        else:
            raise EventError(f"Unknown event type {_show(kind)}. A transcription session takes "
                             "session.update, input_audio_buffer.append, "
                             "input_audio_buffer.commit and input_audio_buffer.clear.",
                             "invalid_event", "type")
        return None

    async def _update(self, event: dict, *, beta: bool) -> None:
        if "session" not in event:
            raise EventError("session.update needs a \"session\" object.",
                             "missing_required_parameter", "session")
        config = parse_session_update(self.config, event["session"], self.installed)
        if config.model != self.config.model:
            try:
                engine = await run_in_threadpool(self.services.stt.get, None, config.model)
            except PipelineError as exc:
                raise EventError(user_message(exc, public=self.public),
                                 "model_not_available",
                                 "session.audio.input.transcription.model") from None
            self.engine = engine
        self.config = config
        name = ("transcription_session.updated" if event["type"].startswith("transcription_")
                else "session.updated")
        self.sender.event({"type": name, "session": config.session(self.session_id,
                                                                   beta=beta)})

    async def _append(self, audio_b64: object) -> tuple[dict, int] | None:
        if audio_b64 is None:
            raise EventError("input_audio_buffer.append needs \"audio\" (base64 PCM16).",
                             "missing_required_parameter", "audio")
        chunk = decode_append(audio_b64, self.config.rate_hz)
        if not len(chunk.samples):
            return None
        now = time.monotonic()
        if self.first_audio_at is None:
            self.first_audio_at = now
        if self.received_s + chunk.duration_s > now - self.first_audio_at + AHEAD_SLACK_S:
            if self.stream is not None:
                self.stream.session.cancel()
            return (error_event("Audio is arriving faster than real time; this socket takes "
                                "live audio as it is recorded.", "rate_limit_exceeded"), 1008)
        if self.received_s + chunk.duration_s > self.max_audio_s + 1e-6:
            return await self._expire()
        if self.stream is None:
            self.stream = self._new_stream()
        self.stream.session.feed(chunk)
        self.received_s += chunk.duration_s
        return None

    async def _expire(self) -> tuple[dict, int]:
        """The session's time limit: complete the open item, then end with an error."""
        if self.stream is not None:
            stream, self.stream = self.stream, None
            stream.session.stop()
            self.sender.for_stream(stream, "commit")
            finished = asyncio.ensure_future(stream.finished.wait())
            waits = {finished, self.sender_task} if self.sender_task else {finished}
            await asyncio.wait(waits, timeout=60.0, return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
        return (error_event(f"A session is limited to {self.max_audio_s / 60:.0f} minutes of "
                            "audio; connect again to go on.", SESSION_EXPIRED), 1000)

    def _new_stream(self) -> _Stream:
        loop = asyncio.get_running_loop()
        config = self.config
        stream_ref: list[_Stream] = []

        def on_status(status: LiveStatus) -> None:
            loop.call_soon_threadsafe(self.sender.for_stream, stream_ref[0], "status", status)

        transcriber = make_transcriber(self.engine, config.streaming_options())
        session = LiveSession(transcriber, on_status, max_audio_s=self.max_audio_s + 1.0,
                              name="realtime")
        stream = _Stream(session, self.received_s, config.server_vad)
        stream_ref.append(stream)
        self.sender.add_stream(stream)
        return stream

    def _commit(self) -> None:
        if self.stream is None:
            raise EventError("The input audio buffer is empty: append audio before you commit "
                             "it.", "input_audio_buffer_commit_empty")
        stream, self.stream = self.stream, None
        stream.session.stop()  # decode what is left; its final status completes the item
        self.sender.for_stream(stream, "commit")

    def _clear(self) -> None:
        if self.stream is None:
            self.sender.event({"type": "input_audio_buffer.cleared"})
            return
        stream, self.stream = self.stream, None
        stream.session.cancel()
        self.sender.for_stream(stream, "clear")
