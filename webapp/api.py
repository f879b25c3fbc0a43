"""HTTP routes beside the Gradio UI (one ASGI app, see ``webapp.app.create_app``).

- ``GET /api/tts/live/{token}``: raw PCM16 chunks of a running Synthesize click, for the page's
  Web Audio player (starts playing as soon as the first sentence exists).
- ``POST /api/synthesize``: JSON in, audio file out, for programs; metrics in headers.
- ``GET /api/health``: liveness and loaded engines.

Inference runs in the thread pool, never on the event loop.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from webapp.pipeline.audio import MIME_TYPES
from webapp.pipeline.delivery import valid_token
from webapp.pipeline.errors import ModelUnavailableError, PipelineError
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.services import Services

logger = logging.getLogger(__name__)


class SynthesizeBody(BaseModel):
    text: str = Field(..., description="Text to speak (plain text, up to the deployment's limit)")
    engine: str | None = None
    voice: str | None = None
    speed: float = 1.0
    format: str = "wav"


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.get("/health")
    def health() -> dict:
        return {"status": "ok", "tts_engines": services.tts.names(),
                "stt": services.stt is not None}

    @router.get("/tts/live/{token}")
    async def live(token: str) -> StreamingResponse:
        if not valid_token(token):
            raise HTTPException(status_code=404, detail="unknown stream")
        channel = services.live.channel(token)
        # The job may be queued behind others: wait for its first chunk before answering.
        rate = await run_in_threadpool(channel.wait_rate, 60.0)
        if rate is None:
            services.live.drop(token)
            raise HTTPException(status_code=404, detail="no audio for this stream")

        async def body():
            try:
                while True:
                    chunk = await run_in_threadpool(channel.next, 60.0)
                    if chunk is None:
                        break
                    yield chunk
            finally:
                services.live.drop(token)

        return StreamingResponse(body(), media_type="application/octet-stream",
                                 headers={"X-Sample-Rate": str(rate), "Cache-Control": "no-store"})

    @router.post("/synthesize")
    async def synthesize(body: SynthesizeBody) -> Response:
        request = SynthesisRequest(text=body.text, engine=body.engine, voice=body.voice,
                                   speed=body.speed, fmt=body.format)
        try:
            result = await run_in_threadpool(services.synthesizer.run, request)
        except ModelUnavailableError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        except PipelineError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return Response(result.data, media_type=MIME_TYPES[result.fmt],
                        headers={"X-Synthesis-Metrics": json.dumps(result.metrics())})

    return router
