"""OpenAI-compatible audio API (``/v1/...``), beside the page (issue 11).

- ``POST /v1/audio/speech``: text to speech (``speech.py``), six formats, streamed as produced.
- ``POST /v1/audio/transcriptions``: speech to text (``transcription.py``), five formats and SSE.
- ``POST /v1/audio/translations``: a clear 400 (no model here can translate).
- ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /v1/audio/voices``: what exists here and
  which OpenAI names map onto it (``catalog.py``).

Requests are parsed here, not by FastAPI's validation, so that every refusal has OpenAI's
error shape (``errors.py``); the official clients read it. Model work takes its slot from the
same pools as the page (``services.limits``) and runs in worker threads.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from webapp.openai_compat import catalog
from webapp.openai_compat.errors import ApiError, error_responses
from webapp.openai_compat.speech import add_speech_route
from webapp.openai_compat.transcription import UPLOAD_PATHS, add_transcription_routes
from webapp.services import Services

__all__ = ["UPLOAD_PATHS", "build_openai_router"]


def build_openai_router(services: Services) -> APIRouter:
    """``/v1/audio/speech``, ``/v1/audio/transcriptions``, ``/v1/audio/translations``,
    ``/v1/models``, ``/v1/audio/voices``."""
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
    add_speech_route(router, services)
    add_transcription_routes(router, services)

    @router.get("/models", summary="Models (OpenAI list shape)")
    async def models() -> JSONResponse:
        data = await run_in_threadpool(catalog.list_models, services)
        return JSONResponse({"object": "list", "data": data})

    @router.get("/models/{model_id:path}", summary="One model",
                responses=error_responses(404))
    async def model(model_id: str) -> JSONResponse:
        data = await run_in_threadpool(catalog.list_models, services)
        for entry in data:
            if entry["id"] == model_id:
                return JSONResponse(entry)
        return ApiError(404, f"The model '{model_id}' does not exist here. Models: "
                        f"{', '.join(e['id'] for e in data)}.", param="model",
                        code="model_not_found").response()

    @router.get("/audio/voices", summary="Voices of every installed engine")
    async def voices() -> JSONResponse:
        # "data" is OpenAI's list shape; "voices" is what Open WebUI and Kokoro-FastAPI's
        # clients read (a list of objects with "id" and "name"). Same entries in both.
        data = await run_in_threadpool(catalog.list_voices, services)
        return JSONResponse({"object": "list", "data": data, "voices": data})

    return router
