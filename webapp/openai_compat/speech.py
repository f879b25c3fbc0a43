"""``POST /v1/audio/speech``: OpenAI's text-to-speech call on our synthesis service.

A repeat is answered from the synthesis cache without queueing for a model slot (the whole
file at once, ``X-Cache: hit``). Otherwise the request takes a synthesis slot from the same
pool as the page, the synthesis runs in a worker thread, and the audio leaves as each sentence
is ready (``X-Cache: miss``): one encoder per response (``encoding.py``), so a streamed answer
is one file, or with ``stream_format: "sse"`` the same bytes as base64 ``speech.audio.delta``
events and a closing ``speech.audio.done``. Anything that fails before the first audio is a
4xx in OpenAI's error shape; a failure after it ends the stream (audio: the connection closes
without the final chunk, so no client mistakes a cut file for a whole one; SSE: an ``error``
event, which the official client raises as ``APIError``).

Public mode (``SPEECH_STUDIO_PUBLIC=1``): ``X-Cache: hit`` means "you asked for exactly this
before and it came from the cache". A repeat of another visitor's request is served from the
cache as well but reported as a miss, the rule the page follows for its cache statistics
(issue 9); how fast the answer comes can still hint at it (see the README).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from webapp.limits import client_key
from webapp.openai_compat import catalog
from webapp.openai_compat.encoding import (
    CONTENT_TYPES,
    encode_whole,
    encoder_for,
    sample_rate_of,
)
from webapp.openai_compat.errors import (
    ApiError,
    error_from_exception,
    error_responses,
    hold_slot,
)
from webapp.pipeline.errors import InputError, ModelUnavailableError, UnknownChoiceError
from webapp.pipeline.synthesis import (
    SynthesisChunk,
    SynthesisRequest,
    SynthesisResult,
    clean_text,
)
from webapp.pipeline.tts.base import MAX_SPEED, MIN_SPEED
from webapp.services import Services

logger = logging.getLogger(__name__)

MAX_BUFFER_BYTES = 16 * 1024 * 1024
"""Encoded audio waiting for a slow client; beyond it the synthesis waits (holding its slot)."""
STALL_S = 60.0
"""A client that reads nothing for this long while the buffer is full loses its stream."""
SSE_PIECE_BYTES = 48 * 1024
OPENAI_SPEED_RANGE = (0.25, 4.0)


class VoiceRef(BaseModel):
    id: str


class SpeechBody(BaseModel):
    """The request body, as OpenAI defines it (unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(..., description="tts-1, tts-1-hd, gpt-4o-mini-tts (the default engine), "
                       "piper, espeak, coqui, or <engine>/<voice>; see GET /v1/models")
    input: str = Field(..., description="Text to speak, up to the deployment's limit")
    voice: str | VoiceRef = Field(..., description="A voice id or short name (GET "
                                  "/v1/audio/voices) or an OpenAI voice name (alloy, echo, ...)")
    instructions: str | None = Field(None, description="Accepted and ignored (header "
                                     "X-Instructions-Ignored: true)")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, description=f"{MIN_SPEED}-{MAX_SPEED} here (1.0 is normal)",
                         json_schema_extra={"minimum": MIN_SPEED, "maximum": MAX_SPEED})
    stream_format: Literal["audio", "sse"] = "audio"


def _inline_refs(node, defs: dict):
    """A JSON schema without ``$defs`` (OpenAPI resolves "#/$defs/..." from its own root)."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline_refs(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def request_schema() -> dict:
    schema = SpeechBody.model_json_schema()
    return _inline_refs(schema, schema.pop("$defs", {}))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> dict:
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise ApiError(400, "The request body is not valid JSON. Send a JSON object such as "
                       '{"model": "tts-1", "input": "Hello class.", "voice": "alloy"}.',
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return data


def validation_error(exc: ValidationError) -> ApiError:
    """The first problem, named by its field; the input itself is never echoed."""
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    param = loc[0] if loc else None
    if first.get("type") == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param,
                        code="missing_required_parameter")
    return ApiError(400, f"Invalid value for '{'.'.join(loc)}': {first.get('msg', 'invalid')}.",
                    param=param, code="invalid_value")


def parse_body(data: dict) -> SpeechBody:
    try:
        body = SpeechBody.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if not math.isfinite(body.speed) or not MIN_SPEED <= body.speed <= MAX_SPEED:
        low, high = OPENAI_SPEED_RANGE
        raise ApiError(400, f"speed must be between {MIN_SPEED} and {MAX_SPEED} on this server "
                       f"(1.0 is normal; got {body.speed:g}). OpenAI's range is {low}-{high}; "
                       "the voices here cannot go that far.", param="speed",
                       code="invalid_value")
    return body


class SeenRequests:
    """Public mode: the whole requests each client has had answered (client, cache key), so
    that ``X-Cache: hit`` only ever tells a client about its own requests."""

    def __init__(self, ttl_s: float, max_entries: int = 20_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, client: str, key: str) -> None:
        if not key:
            return
        with self._lock:
            self._seen[(client, key)] = time.monotonic()
            self._seen.move_to_end((client, key))
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)

    def seen(self, client: str, key: str) -> bool:
        with self._lock:
            at = self._seen.get((client, key))
        return at is not None and time.monotonic() - at < self.ttl_s


# -- streaming a synthesis ---------------------------------------------------------------
class _Done:
    def __init__(self, result: SynthesisResult) -> None:
        self.result = result


class _Cancelled(Exception):
    pass


class StreamAborted(Exception):
    """Raised into the ASGI server when a synthesis fails after its first audio was sent: the
    connection closes without the last chunk, so the client sees an incomplete answer."""


_RUNNING: set[asyncio.Task] = set()


class SpeechJob:
    """One synthesis streamed to one client. The synthesis runs in a worker thread and holds
    its model slot until it ends (not until the client has read everything); encoded bytes
    wait for the client in a buffer of at most ``MAX_BUFFER_BYTES``."""

    def __init__(self, services: Services, request: SynthesisRequest, fmt: str,
                 on_result) -> None:
        self._synthesizer = services.synthesizer
        self._request = request
        self._fmt = fmt
        self._on_result = on_result
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._space = threading.Condition()
        self._buffered = 0
        self._cancelled = False
        self.rate_hz: int | None = None

    def start(self, slot: AsyncExitStack) -> None:
        async def run() -> None:
            try:
                await run_in_threadpool(self._produce)
            finally:
                await slot.aclose()

        task = asyncio.create_task(run())
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    # -- worker thread ------------------------------------------------------------------------
    def _send(self, item) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _put(self, data: bytes) -> None:
        with self._space:
            deadline = time.monotonic() + STALL_S
            while (self._buffered and self._buffered + len(data) > MAX_BUFFER_BYTES
                   and not self._cancelled):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Cancelled("the client stopped reading")
                self._space.wait(left)
            if self._cancelled:
                raise _Cancelled()
            self._buffered += len(data)
        self._send(data)

    def _produce(self) -> None:
        stream = self._synthesizer.stream(self._request)
        encoder = None
        result = None
        try:
            for item in stream:
                if isinstance(item, SynthesisChunk):
                    if encoder is None:
                        self.rate_hz = item.audio.sample_rate
                        encoder = encoder_for(self._fmt, item.audio.sample_rate)
                    data = encoder.feed(item.audio)
                    if data:
                        self._put(data)
                elif isinstance(item, SynthesisResult):
                    result = item
                if self._cancelled:
                    raise _Cancelled()
            if encoder is not None:
                tail = encoder.finish()
                if tail:
                    self._put(tail)
            if result is None:  # pragma: no cover - the synthesizer always ends with a result
                raise RuntimeError("synthesis ended without a result")
            self._on_result(result)
            self._send(_Done(result))
        except _Cancelled:
            logger.info("speech stream dropped before it ended")
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop as the answer
            self._send(exc)
        finally:
            stream.close()

    # -- event loop ---------------------------------------------------------------------------
    async def next(self):
        item = await self._queue.get()
        if isinstance(item, bytes):
            with self._space:
                self._buffered -= len(item)
                self._space.notify_all()
        return item

    def cancel(self) -> None:
        with self._space:
            self._cancelled = True
            self._space.notify_all()

    async def items(self, first) -> AsyncIterator:
        try:
            yield first
            while True:
                item = await self.next()
                yield item
                if not isinstance(item, bytes):
                    return
        finally:
            self.cancel()


async def _whole(data: bytes, result: SynthesisResult) -> AsyncIterator:
    for start in range(0, len(data), SSE_PIECE_BYTES):
        yield data[start:start + SSE_PIECE_BYTES]
    yield _Done(result)


async def _audio_body(items: AsyncIterator, public: bool) -> AsyncIterator[bytes]:
    async for item in items:
        if isinstance(item, bytes):
            yield item
        elif isinstance(item, BaseException):
            message = error_from_exception(item, public=public).message
            logger.warning("speech stream failed after its first audio: %s", message)
            raise StreamAborted(message)


def _ascii(value: str) -> str:
    """Header values are Latin-1; a Coqui speaker name may not be."""
    return value.encode("ascii", "backslashreplace").decode("ascii")


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def _sse_body(items: AsyncIterator, characters: int, public: bool) -> AsyncIterator[bytes]:
    async for item in items:
        if isinstance(item, bytes):
            yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(item).decode()})
        elif isinstance(item, _Done):
            # No tokens here: usage counts the input's characters (what tts-1 is billed by).
            yield _sse({"type": "speech.audio.done",
                        "usage": {"input_tokens": characters, "output_tokens": 0,
                                  "total_tokens": characters}})
        else:
            yield _sse(error_from_exception(item, public=public).body())


def _speech_error(exc: BaseException, public: bool) -> ApiError:
    """A pipeline failure named by the field it is about: an unknown or missing voice is the
    voice's; anything else the synthesis refuses (nothing speakable, too long) the input's."""
    voice = isinstance(exc, (UnknownChoiceError, ModelUnavailableError))
    return error_from_exception(exc, public=public, param="voice" if voice else "input",
                                model_param="voice")


# -- the route -----------------------------------------------------------------------------
def add_speech_route(router: APIRouter, services: Services) -> None:
    settings = services.settings
    seen = SeenRequests(settings.cache_ttl_s or 86_400.0)
    schema = request_schema()

    def prepare(body: SpeechBody) -> tuple[catalog.SpeechChoice, SynthesisRequest,
                                           SynthesisResult | None]:
        """Validate and resolve everything, and look the request up in the cache (no model
        work; runs in a worker thread)."""
        if len(body.input) > settings.max_text_chars:
            raise ApiError(400, f"input is {len(body.input):,} characters long; this server "
                           f"accepts at most {settings.max_text_chars:,}. Split the text into "
                           "parts.", param="input", code="string_above_max_length")
        try:
            clean_text(body.input, settings.max_text_chars)
        except InputError as exc:
            raise ApiError(400, str(exc), param="input", code="invalid_value") from None
        voice = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
        choice = catalog.resolve_speech(services, body.model, voice)
        synth_request = SynthesisRequest(text=body.input, engine=choice.engine,
                                         voice=choice.voice, speed=float(body.speed), fmt="wav")
        return choice, synth_request, services.synthesizer.cached(synth_request)

    @router.post(
        "/audio/speech", summary="Text to speech (OpenAI-compatible)",
        openapi_extra={"requestBody": {"required": True,
                                       "content": {"application/json": {"schema": schema}}}},
        responses={200: {"description": "The audio, or server-sent events",
                         "content": {t: {} for t in (*CONTENT_TYPES.values(),
                                                     "text/event-stream")}},
                   **error_responses(400, 404, 413, 429, 503)})
    async def speech(request: Request) -> Response:
        client = client_key(request.client.host if request.client else None, request.headers,
                            settings.trust_proxy)
        # Read outside the try: the app's body limit refuses an oversize body by raising
        # through this read, and a client that went away is Starlette's business.
        raw = await request.body()
        try:
            body = parse_body(parse_json(raw))
            choice, synth_request, hit = await run_in_threadpool(prepare, body)
        except Exception as exc:  # noqa: BLE001 - every refusal in OpenAI's shape
            return _speech_error(exc, settings.public).response()
        fmt = body.response_format
        headers = {"X-Engine": _ascii(choice.engine), "X-Voice": _ascii(choice.voice),
                   "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if body.instructions:
            headers["X-Instructions-Ignored"] = "true"

        def on_result(result: SynthesisResult) -> None:
            if settings.public:
                seen.add(client, result.request_key)

        if hit is not None:
            try:
                data = await run_in_threadpool(encode_whole, hit.audio, fmt)
            except Exception as exc:  # noqa: BLE001
                return error_from_exception(exc, public=settings.public).response()
            reported = seen.seen(client, hit.request_key) if settings.public else True
            on_result(hit)
            headers["X-Cache"] = "hit" if reported else "miss"
            headers["X-Sample-Rate"] = str(sample_rate_of(fmt, hit.audio.sample_rate))
            if body.stream_format == "sse":
                return StreamingResponse(_sse_body(_whole(data, hit), len(body.input),
                                                   settings.public),
                                         media_type="text/event-stream", headers=headers)
            return Response(data, media_type=CONTENT_TYPES[fmt], headers=headers)

        slot = await hold_slot(services.limits.synthesis, client, request)
        if isinstance(slot, Response):
            return slot
        job = SpeechJob(services, synth_request, fmt, on_result)
        job.start(slot)
        first = await job.next()
        if isinstance(first, BaseException):
            return _speech_error(first, settings.public).response()
        headers["X-Cache"] = "miss"
        headers["X-Sample-Rate"] = str(sample_rate_of(fmt, job.rate_hz or 0))
        items = job.items(first)
        if body.stream_format == "sse":
            return StreamingResponse(_sse_body(items, len(body.input), settings.public),
                                     media_type="text/event-stream", headers=headers)
        return StreamingResponse(_audio_body(items, settings.public),
                                 media_type=CONTENT_TYPES[fmt], headers=headers)
