"""HTTP routes beside the Gradio UI (one ASGI app, see ``webapp.app.create_app``).

- ``POST /api/tts/live``: a stream token for the page's live player (server-issued, bounded).
- ``GET /api/tts/live/{token}``: raw PCM16 chunks of a running Synthesize click, for the page's
  Web Audio player (starts playing as soon as the first sentence exists).
- ``POST /api/synthesize``: JSON in, audio file out, for programs; metrics in headers.
- ``POST /api/cache/clear``: operator action, only when an operator token is configured.
- ``GET /api/health``: liveness and loaded engines (answered on the event loop, never queued).

Model work takes a slot from the same pools as the page (``webapp.limits``): waiting holds no
thread, a full server answers 503 and a client over its limit 429, both with Retry-After.
Inference runs in the thread pool, never on the event loop.
"""

from __future__ import annotations

import hmac
import json
import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from webapp.limits import Busy, ClientGone, client_key
from webapp.messages import user_message
from webapp.pipeline.audio import MIME_TYPES
from webapp.pipeline.delivery import TooManyStreams
from webapp.pipeline.errors import ModelUnavailableError, PipelineError
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.services import Services

logger = logging.getLogger(__name__)


class SynthesizeBody(BaseModel):
    text: str = Field(..., description="Text to speak (plain text, up to the deployment's limit)")
    engine: str | None = Field(None, description="Engine name (see /api/health)")
    voice: str | None = Field(None, description="Voice id of that engine")
    speed: float = Field(1.0, description="Speaking rate, 1.0 = normal")
    format: str = Field("wav", description="wav, mp3 or ogg")


class StreamToken(BaseModel):
    token: str


def busy_response(exc: Busy) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status,
                        headers={"Retry-After": str(exc.retry_after_s)})


def request_client(request: Request, services: Services) -> str:
    host = request.client.host if request.client else None
    return client_key(host, request.headers, services.settings.trust_proxy)


def operator_allowed(services: Services, token: str | None) -> bool:
    expected = services.settings.operator_token
    return bool(expected) and bool(token) and hmac.compare_digest(expected.encode(), token.encode())


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api")
    settings = services.settings

    @router.get("/health")
    async def health() -> dict:
        return {"status": "ok", "tts_engines": services.tts.names(),
                "stt": services.stt is not None}

    @router.post("/tts/live", response_model=StreamToken,
                 responses={429: {"description": "Too many streams open"}})
    async def issue_stream(request: Request):
        try:
            token = services.live.issue(request_client(request, services))
        except TooManyStreams as exc:
            return JSONResponse({"detail": str(exc)}, status_code=429,
                                headers={"Retry-After": "30"})
        return {"token": token}

    @router.get("/tts/live/{token}", responses={404: {"description": "Unknown stream"}})
    async def live(token: str) -> StreamingResponse:
        channel = services.live.open_reader(token)
        if channel is None:
            raise HTTPException(status_code=404, detail="unknown stream")
        # The job may wait in the queue first: wait (on the event loop) for its first chunk.
        rate = await channel.wait_rate(services.live.claim_ttl_s)
        if rate is None:
            services.live.drop(token)
            raise HTTPException(status_code=404, detail="no audio for this stream")

        async def body():
            try:
                async for chunk in channel.chunks(services.live.idle_ttl_s):
                    yield chunk
            finally:
                services.live.drop(token)

        return StreamingResponse(body(), media_type="application/octet-stream",
                                 headers={"X-Sample-Rate": str(rate), "Cache-Control": "no-store"})

    @router.post("/synthesize", responses={
        200: {"content": {"audio/wav": {}, "audio/mpeg": {}, "audio/ogg": {}}},
        422: {"description": "Invalid input"}, 429: {"description": "Too many requests"},
        503: {"description": "Busy or model unavailable"}})
    async def synthesize(body: SynthesizeBody, request: Request) -> Response:
        synth_request = SynthesisRequest(text=body.text, engine=body.engine, voice=body.voice,
                                         speed=body.speed, fmt=body.format)
        try:
            # A repeat is answered from the cache at once, without queueing for a model slot.
            result = await run_in_threadpool(services.synthesizer.cached, synth_request)
            if result is None:
                async with services.limits.synthesis.hold_async(
                        request_client(request, services), request.is_disconnected):
                    result = await run_in_threadpool(services.synthesizer.run, synth_request)
        except Busy as exc:
            return busy_response(exc)
        except ClientGone:
            return Response(status_code=499)
        except ModelUnavailableError as exc:
            raise HTTPException(status_code=503, detail=user_message(exc, public=settings.public)) from None
        except PipelineError as exc:
            raise HTTPException(status_code=422, detail=user_message(exc, public=settings.public)) from None
        metrics = result.metrics()
        if settings.public:  # whether someone else asked for this text before is not ours to tell
            metrics.pop("cache_hit", None)
            metrics.pop("units_cached", None)
        return Response(result.data, media_type=MIME_TYPES[result.fmt],
                        headers={"X-Synthesis-Metrics": json.dumps(metrics)})

    if settings.operator_token:
        @router.post("/cache/clear", responses={403: {"description": "Operator token required"}})
        async def clear_cache(request: Request) -> dict:
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
            if not operator_allowed(services, token):
                raise HTTPException(status_code=403, detail="operator token required")
            await run_in_threadpool(services.cache.clear)
            return {"status": "cleared"}

    return router
