"""The caption view for a room (issue 15): ``/captions/{session}``.

A page of its own, not a Gradio tab: large captions to project, or (``?overlay=1``) on a
transparent background for a streaming program's browser source (OBS, Streamlabs). It follows
a live-caption session read-only over Server-Sent Events (``/captions/{session}/events``:
EventSource reconnects by itself and needs nothing sent back); the session's transcript is at
``/captions/{session}/transcript.{txt,srt,vtt}``. The session id in the link is the only key
(``webapp/pipeline/caption_board.py``): an unknown or expired one gets a page saying so.

The view's options come from the URL and from the keyboard (no controls on screen):
``theme=dark|light``, ``size`` (font px), ``lines`` (lines shown), ``overlay=1``; keys ``+``/``-``
size, up/down lines, ``t`` theme, ``f`` full screen, ``h`` help.
"""

from __future__ import annotations

import functools
import json
import secrets
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse

from webapp.pipeline.caption_board import TRANSCRIPT_FORMATS, ViewerLimit
from webapp.services import Services

PAGE = Path(__file__).parent / "components" / "caption_view.html"
KEEPALIVE_S = 15.0
_MEDIA = {"txt": "text/plain; charset=utf-8", "srt": "application/x-subrip; charset=utf-8",
          "vtt": "text/vtt; charset=utf-8"}
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex, nofollow", "X-Content-Type-Options": "nosniff"}
GONE = ("This caption link is unknown or has expired. A link works while its recording runs "
        "and for a while after it stops; ask the speaker for the link of the current one.")


def _page(session_id: str, message: str = "") -> tuple[str, str]:
    """The view's HTML for a session (or, with ``message``, for a link that does not work)
    and the nonce its script runs under."""
    nonce = secrets.token_urlsafe(16)
    # Inside <script> HTML entities are not decoded: keep "<" out of it as a JSON escape.
    config = json.dumps({"session": session_id, "message": message}).replace("<", "\\u003c")
    return _template().replace("{{NONCE}}", nonce).replace("{{CONFIG}}", config), nonce


@functools.cache
def _template() -> str:
    """The page, read once (not on every view)."""
    return PAGE.read_text(encoding="utf-8")


def _headers(nonce: str | None = None) -> dict[str, str]:
    headers = dict(_PRIVATE)
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src {script}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors *")
    return headers


def build_caption_view_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/captions")
    board = services.captions

    @router.get("/{session_id}", response_class=HTMLResponse, include_in_schema=False)
    async def view(session_id: str) -> HTMLResponse:
        known = board.get(session_id) is not None
        body, nonce = _page(session_id if known else "", "" if known else GONE)
        return HTMLResponse(body, status_code=200 if known else 404, headers=_headers(nonce))

    @router.get("/{session_id}/events", include_in_schema=False)
    async def events(session_id: str) -> Response:
        try:
            stream = board.follow(session_id, keepalive_s=KEEPALIVE_S)
            first = await anext(stream)
        except KeyError:
            return PlainTextResponse(GONE, status_code=404, headers=_PRIVATE)
        except ViewerLimit as exc:
            return PlainTextResponse(str(exc), status_code=429, headers=_PRIVATE)

        async def sse():
            try:
                yield "retry: 2000\n\n"
                yield _event(first)
                async for snapshot in stream:
                    yield _event(snapshot) if snapshot is not None else ": keep-alive\n\n"
            finally:
                await stream.aclose()

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={**_PRIVATE, "X-Accel-Buffering": "no"})

    @router.get("/{session_id}/transcript.{fmt}", include_in_schema=False)
    async def transcript(session_id: str, fmt: str) -> Response:
        session = board.get(session_id)
        if session is None or fmt not in TRANSCRIPT_FORMATS:
            return PlainTextResponse(GONE, status_code=404, headers=_PRIVATE)
        name = f"captions-{session_id[:8]}.{fmt}"
        return Response(session.transcript(fmt), media_type=_MEDIA[fmt],
                        headers={**_PRIVATE,
                                 "Content-Disposition": f'attachment; filename="{name}"'})

    return router


def _event(snapshot: dict) -> str:
    return f"data: {json.dumps(snapshot, ensure_ascii=False)}\n\n"
