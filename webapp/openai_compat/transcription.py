"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``.

Transcription is the Transcribe tab's file transcription (``transcribe_audio``: the same
limits, vocabulary prompt, hallucination guards and no-speech check), taking its slot from
the same pool. The upload is read with its own size limit (``max_upload_mb``) before it is
parsed, decoded outside the slot (as the page does), then transcribed in a worker thread.

``stream=true`` answers with server-sent events: one ``transcript.text.delta`` per segment and
a ``transcript.text.done`` whose ``text`` is the whole transcript, the same text the other
response formats carry (speaches' stream ended with an empty text: its final join read a
generator the deltas had already used up). The deltas are sent once the transcript is final:
the recogniser may decode a second time when its first pass loops, and text already sent
cannot be taken back. While it works, SSE comments keep the connection alive.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from webapp.limits import client_key
from webapp.openai_compat import catalog
from webapp.openai_compat.errors import (
    ApiError,
    error_from_exception,
    error_responses,
    hold_slot,
)
from webapp.services import Services

logger = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
FORM_OVERHEAD_BYTES = 64 * 1024  # the other fields and the multipart boundaries
KEEP_ALIVE_S = 10.0
LANGUAGE_NAMES = {"en": "english"}  # verbose_json names the language as Whisper does
UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations")
"""Routes that take an upload: the app's JSON body limit must leave them to this module."""


class _TooLarge(Exception):
    pass


def _too_large(max_mb: int) -> ApiError:
    return ApiError(413, f"The upload is larger than {max_mb} MB, the most this server "
                    "accepts. Send a shorter or more compressed recording.", param="file",
                    code="file_too_large")


async def read_form(request: Request, max_mb: int) -> FormData:
    """The multipart form, read with a size limit (refused as soon as the body passes it)."""
    limit = max_mb * 1024 * 1024 + FORM_OVERHEAD_BYTES
    try:
        declared = int(request.headers.get("content-length", "0"))
    except ValueError:
        declared = 0
    if declared > limit:
        raise _too_large(max_mb)
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(400, "Send the audio as multipart/form-data with the file in the field "
                       "'file' (curl -F file=@lesson.mp3 -F model=whisper-1).", param="file",
                       code="invalid_request")
    seen = 0

    async def receive():
        nonlocal seen
        message = await request.receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge()
        return message

    try:
        return await Request(request.scope, receive).form(max_files=2, max_fields=50)
    except _TooLarge:
        raise _too_large(max_mb) from None
    except StarletteHTTPException as exc:  # python-multipart's complaint, as a 400
        raise ApiError(400, f"The multipart body cannot be read: {exc.detail}", param="file",
                       code="invalid_request") from None


@dataclass(frozen=True)
class TranscriptionParams:
    upload: UploadFile
    model: str
    language: str | None
    prompt: str | None
    response_format: str
    temperature: float | None
    granularities: tuple[str, ...]
    stream: bool


def _text_field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be a text field, not a file.", param=name,
                       code="invalid_type")
    return value.strip()


def parse_params(form: FormData) -> TranscriptionParams:
    upload = form.get("file")
    if upload is None:
        raise ApiError(400, "Missing required parameter: 'file' (the audio to transcribe).",
                       param="file", code="missing_required_parameter")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "'file' must be a file upload.", param="file", code="invalid_type")
    response_format = (_text_field(form, "response_format") or "json").lower()
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}.",
                       param="response_format", code="invalid_value")
    temperature = None
    raw = _text_field(form, "temperature")
    if raw:
        try:
            temperature = float(raw)
        except ValueError:
            temperature = math.nan
        if not 0.0 <= temperature <= 1.0:  # NaN fails too
            raise ApiError(400, "temperature must be a number between 0 and 1.",
                           param="temperature", code="invalid_value")
    granularities = []
    for name in ("timestamp_granularities[]", "timestamp_granularities"):
        for value in form.getlist(name):
            if not isinstance(value, str) or value.strip() not in GRANULARITIES:
                raise ApiError(400, "timestamp_granularities[] takes 'word' and/or 'segment'.",
                               param="timestamp_granularities", code="invalid_value")
            granularities.append(value.strip())
    stream = (_text_field(form, "stream") or "false").lower()
    if stream not in ("true", "false", "1", "0"):
        raise ApiError(400, "stream must be true or false.", param="stream",
                       code="invalid_value")
    return TranscriptionParams(
        upload=upload, model=_text_field(form, "model") or "whisper-1",
        language=_text_field(form, "language") or None, prompt=_text_field(form, "prompt"),
        response_format=response_format,
        temperature=temperature, granularities=tuple(dict.fromkeys(granularities)),
        stream=stream in ("true", "1"),
    )


# -- rendering ---------------------------------------------------------------------------------
def _usage(transcript) -> dict:
    return {"type": "duration", "seconds": round(transcript.duration_s, 3)}


def verbose(transcript, granularities: tuple[str, ...]) -> dict:
    temperature = transcript.options.temperature[0] if transcript.options.temperature else 0.0
    body = {"task": "transcribe",
            "language": LANGUAGE_NAMES.get(transcript.language, transcript.language),
            "duration": round(transcript.duration_s, 3), "text": transcript.text}
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {"id": i, "seek": int(s.start_s // 30) * 3000, "start": round(s.start_s, 3),
             "end": round(s.end_s, 3), "text": s.text, "tokens": [],
             "temperature": temperature, "avg_logprob": round(s.avg_logprob, 4),
             "compression_ratio": round(s.compression_ratio, 4),
             "no_speech_prob": round(s.no_speech_prob, 4)}
            for i, s in enumerate(transcript.segments)]
    if "word" in granularities:
        body["words"] = [{"word": w.text.strip(), "start": round(w.start_s, 3),
                          "end": round(w.end_s, 3)} for w in transcript.words]
    body["usage"] = _usage(transcript)
    return body


def render_response(transcript, params: TranscriptionParams) -> Response:
    from webapp.pipeline.stt.files import render

    fmt = params.response_format
    if fmt == "json":
        return JSONResponse({"text": transcript.text, "usage": _usage(transcript)})
    if fmt == "verbose_json":
        return JSONResponse(verbose(transcript, params.granularities))
    if fmt == "text":
        return PlainTextResponse(transcript.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(render(transcript, "srt"))
    return Response(render(transcript, "vtt"), media_type="text/vtt; charset=utf-8")


def deltas(transcript) -> list[str]:
    """Pieces whose concatenation is exactly ``transcript.text``: one per segment."""
    out: list[str] = []
    for segment in transcript.segments:
        piece = segment.text.strip()
        if piece:
            out.append((" " if out else "") + piece)
    joined = "".join(out)
    if joined != transcript.text:  # a transcript not built segment by segment
        return [transcript.text] if transcript.text else []
    return out


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def sse_events(job: asyncio.Task, public: bool) -> AsyncIterator[bytes]:
    try:
        while True:
            done, _ = await asyncio.wait({job}, timeout=KEEP_ALIVE_S)
            if done:
                break
            yield b": transcribing\n\n"
        try:
            transcript = job.result().transcript
        except Exception as exc:  # noqa: BLE001 - told to the client as an error event
            yield _sse(error_from_exception(exc, public=public).body())
            return
        for piece in deltas(transcript):
            yield _sse({"type": "transcript.text.delta", "delta": piece, "logprobs": None})
        yield _sse({"type": "transcript.text.done", "text": transcript.text, "logprobs": None})
    finally:
        if not job.done():
            logger.info("transcription stream closed by the client before it ended")


# -- routes ------------------------------------------------------------------------------
_RUNNING: set[asyncio.Task] = set()


def add_transcription_routes(router: APIRouter, services: Services) -> None:
    settings = services.settings
    upload_doc = {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"},
            "model": {"type": "string", "default": "whisper-1"},
            "language": {"type": "string"}, "prompt": {"type": "string"},
            "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "timestamp_granularities[]": {"type": "array", "items": {
                "type": "string", "enum": list(GRANULARITIES)}},
            "stream": {"type": "boolean"}}}}}}}

    def decode(data: bytes):
        import soundfile as sf

        from webapp.pipeline.stt.files import load_for_transcription

        audio = load_for_transcription(data, settings.max_transcribe_s)
        try:
            rate = int(sf.info(io.BytesIO(data)).samplerate)
        except Exception:  # noqa: BLE001 - not a libsndfile format
            rate = None
        return audio, rate

    def options_for(params: TranscriptionParams, choice: catalog.TranscriptionChoice):
        from webapp.pipeline.stt.base import TranscribeOptions

        # ISO-639-1 as OpenAI asks ("en"); "en-US" and "english" mean the same here.
        language = re.split(r"[-_]", params.language.lower())[0] if params.language else None
        if language == "english":
            language = "en"
        if language is not None and not re.fullmatch(r"[a-z]{2,3}", language):
            raise ApiError(400, "language must be an ISO-639-1 code such as 'en'.",
                           param="language", code="invalid_value")
        if choice.english_only and language not in (None, "en"):
            raise ApiError(400, f"The model here ({choice.model}) understands English only; "
                           f"language '{params.language}' is not available.",
                           param="language", code="unsupported_language")
        kwargs = {"language": language or ("en" if choice.english_only else None),
                  "initial_prompt": params.prompt or None}
        if params.temperature:  # 0 (the default) keeps Whisper's rising-temperature fallback
            kwargs["temperature"] = (params.temperature,)
        return TranscribeOptions(**kwargs)

    @router.post("/audio/transcriptions", summary="Speech to text (OpenAI-compatible)",
                 openapi_extra=upload_doc,
                 responses={200: {"description": "The transcript in the format asked for",
                                  "content": {"application/json": {}, "text/plain": {},
                                              "text/vtt": {}, "text/event-stream": {}}},
                            **error_responses(400, 404, 413, 429, 503)})
    async def transcriptions(request: Request) -> Response:
        from webapp.pipeline.stt.files import transcribe_audio

        client = client_key(request.client.host if request.client else None, request.headers,
                            settings.trust_proxy)
        public = settings.public
        try:
            form = await read_form(request, settings.max_upload_mb)
        except ApiError as exc:  # anything else (a body limit's refusal) goes up to its owner
            return exc.response()
        try:
            try:
                params = parse_params(form)
                data = await params.upload.read()
            finally:
                await form.close()
            choice = await run_in_threadpool(catalog.resolve_transcription, services,
                                             params.model)
            options = options_for(params, choice)
        except Exception as exc:  # noqa: BLE001 - every refusal in OpenAI's shape
            return error_from_exception(exc, public=public, param="file",
                                        model_param="model").response()
        try:
            audio, rate = await run_in_threadpool(decode, data)
        except Exception as exc:  # noqa: BLE001
            return error_from_exception(exc, public=public, param="file").response()
        del data

        slot = await hold_slot(services.limits.transcription, client, request)
        if isinstance(slot, Response):
            return slot
        try:
            engine = await run_in_threadpool(services.stt.get, choice.engine, choice.model)
        except Exception as exc:  # noqa: BLE001
            await slot.aclose()
            return error_from_exception(exc, public=public, param="model",
                                        model_param="model").response()

        async def run():
            try:
                return await run_in_threadpool(transcribe_audio, engine, audio, options,
                                               original_rate_hz=rate)
            finally:
                await slot.aclose()

        job = asyncio.create_task(run())
        _RUNNING.add(job)
        job.add_done_callback(_RUNNING.discard)
        if params.stream:
            return StreamingResponse(sse_events(job, public), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store",
                                              "X-Accel-Buffering": "no"})
        try:
            result = await job
        except Exception as exc:  # noqa: BLE001
            return error_from_exception(exc, public=public, param="file").response()
        return render_response(result.transcript, params)

    @router.post("/audio/translations", summary="Speech translation (not available here)",
                 openapi_extra=upload_doc, responses=error_responses(400, 413))
    async def translations() -> Response:
        if await run_in_threadpool(catalog.only_english_models, services):
            message = ("Translation needs a multilingual Whisper model, and this server has "
                       "English-only models. For English speech use /v1/audio/transcriptions.")
        else:
            message = ("Translation is not available on this server; /v1/audio/transcriptions "
                       "transcribes speech in its own language.")
        return ApiError(400, message, param="model", code="unsupported_task").response()
