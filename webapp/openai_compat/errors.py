"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The official clients read this body (``openai.BadRequestError.code``, ``.param``, ``.message``)
and retry 429/5xx answers after ``Retry-After`` on their own. Every refusal of a ``/v1`` route
goes through ``ApiError`` or ``error_from_exception``, never through FastAPI's
``{"detail": ...}`` handlers.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from fastapi.responses import JSONResponse, Response

from webapp.limits import Busy, ClientGone, WorkPool
from webapp.messages import user_message
from webapp.pipeline.errors import ModelUnavailableError, PipelineError, UnknownChoiceError

logger = logging.getLogger(__name__)

_TYPES = {429: "rate_limit_error", 503: "server_error", 500: "server_error"}

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
_DESCRIPTIONS = {
    400: "Invalid request", 404: "Unknown model", 413: "Request or upload too large",
    429: "Too many requests from this client (Retry-After)",
    503: "Server busy (Retry-After)",
}


def error_responses(*statuses: int) -> dict:
    """OpenAPI ``responses`` entries for the refusals a route may answer with."""
    return {status: {"description": f"{_DESCRIPTIONS[status]} (OpenAI's error shape)",
                     "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for status in statuses}


class ApiError(Exception):
    """A refusal with everything the error body and headers need."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = _TYPES.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.status < 500 and self.status != 429:
            # The request itself must change; the official clients would not retry a 4xx
            # anyway, but proxies and other clients read this too.
            headers.setdefault("x-should-retry", "false")
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def busy_error(exc: Busy) -> ApiError:
    code = "rate_limit_exceeded" if exc.status == 429 else "server_overloaded"
    return ApiError(exc.status, str(exc), code=code,
                    headers={"Retry-After": str(exc.retry_after_s)})


def error_from_exception(exc: BaseException, *, public: bool, param: str | None = None,
                         model_param: str | None = None) -> ApiError:
    """The ``ApiError`` for a failure of the pipeline (or anything else: a logged 500 with one
    fixed sentence). ``param`` names the request field an input error is about;
    ``model_param`` the field a missing model was asked for with."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Busy):
        return busy_error(exc)
    message = user_message(exc, public=public)
    if isinstance(exc, ModelUnavailableError):
        return ApiError(404, message, param=model_param or param, code="model_not_found")
    if isinstance(exc, UnknownChoiceError):
        return ApiError(400, message, param=param, code="invalid_value")
    if isinstance(exc, PipelineError):
        return ApiError(400, message, param=param, code="invalid_value")
    return ApiError(500, message, code="internal_error")


async def hold_slot(pool: WorkPool, client: str, request) -> AsyncExitStack | Response:
    """Wait (on the event loop, holding no thread) for a slot of ``pool``: the held slot as an
    ``AsyncExitStack`` to close when the work is done, or the response to send instead (503 /
    429 with Retry-After in OpenAI's shape; 499 when the client went away while waiting)."""
    slot = AsyncExitStack()
    try:
        await slot.enter_async_context(pool.hold_async(client, request.is_disconnected))
    except Busy as exc:
        return busy_error(exc).response()
    except ClientGone:
        return Response(status_code=499)
    return slot
