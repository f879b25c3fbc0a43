"""Composition root: settings -> services (models loaded and warmed once) -> UI + API -> serve.

One ASGI app: FastAPI serves the HTTP routes (``webapp.api``) and has the Gradio Blocks mounted
at ``/``. Models are loaded before the server accepts connections, never per request.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from pathlib import Path

from webapp.config import Settings, disable_telemetry

logger = logging.getLogger(__name__)

_COMPONENTS = Path(__file__).parent / "components"
PAGE_JS = "\n".join((_COMPONENTS / name).read_text(encoding="utf-8")
                    for name in ("player.js", "captions.js", "lesson.js"))
CSS = """
#tts-metrics p { margin: 0.2em 0; }
#live-status { font-weight: 600; color: var(--color-accent); }
.committed-text { color: var(--body-text-color); }
.pending-text { color: var(--body-text-color-subdued); font-style: italic; }
.captions-box { font-size: 1.35em; line-height: 1.5; min-height: 5.5em; max-height: 16em;
  overflow-y: auto; padding: 0.6em 0.8em; border: 1px solid var(--border-color-primary);
  border-radius: 8px; }
#live-panel .live-controls { display: flex; gap: 0.6em; align-items: center; }
#live-panel .live-button { padding: 0.5em 1.4em; border-radius: 8px; font-weight: 600;
  cursor: pointer; border: 1px solid var(--border-color-primary); }
#live-panel .live-button.primary { background: var(--button-primary-background-fill);
  color: var(--button-primary-text-color); }
#live-panel .live-button.secondary { background: var(--button-secondary-background-fill);
  color: var(--button-secondary-text-color); }
#live-panel .live-button:disabled { opacity: 0.45; cursor: default; }
#live-panel[data-recording="1"] #live-stop { outline: 2px solid #d33; }
#live-level { flex: 1; height: 0.6em; background: var(--border-color-primary);
  border-radius: 4px; overflow: hidden; }
#live-level > span { display: block; height: 100%; width: 0; background: #2a9d4b;
  transition: width 0.1s; }
#live-state { margin-top: 0.6em; }
#live-share, #live-transcript { margin-top: 0.6em; line-height: 1.6; }
#live-share a, #live-transcript a { font-weight: 600; text-decoration: underline; }
#live-panel .live-share-hint { font-size: 0.9em; opacity: 0.8; }
#live-panel .live-link-button { text-decoration: underline; color: inherit; background: none;
  border: none; padding: 0; cursor: pointer; font: inherit; }
#live-state[data-kind="error"] { color: #c0392b; font-weight: 600; }
#live-state[data-kind="behind"] { color: #b9770e; font-weight: 600; }
"""
TABS = (
    ("Synthesize", "webapp.components.synthesize", "build_synthesize_tab"),
    ("Transcribe", "webapp.components.transcribe", "build_transcribe_tab"),
    ("Evaluate", "webapp.components.evaluate", "build_evaluate_tab"),
)


PUBLIC_NOTE = (
    "This is a public demo on a shared CPU: requests from all visitors wait in one queue, "
    "your lexicon entries stay in your browser session, and the cache is emptied when the demo "
    "restarts."
)


def build_blocks(services):
    import gradio as gr

    settings = services.settings
    with gr.Blocks(title="Speech Studio", delete_cache=(1800, 3600)) as blocks:
        gr.Markdown(
            "# Speech Studio\n"
            "Read lessons aloud, caption speech live, and check speech quality — "
            + ("running on this server's CPU, no cloud service involved." if settings.public
               else "all on this computer, no internet needed.")
        )
        if settings.public:
            gr.Markdown(PUBLIC_NOTE, elem_id="public-note")
        with gr.Tabs():
            for title, module_name, builder in TABS:
                with gr.Tab(title, id=title.lower(), elem_id=f"tab-{title.lower()}"):
                    try:
                        module = importlib.import_module(module_name)
                    except ModuleNotFoundError as exc:
                        if exc.name != module_name:
                            raise
                        gr.Markdown(f"The {title} tab is not available in this build.")
                        continue
                    getattr(module, builder)(services)
    # Page events wait in Gradio's queue, at most max_queue of them (Gradio refuses more with a
    # "queue is full" message); the work itself takes a slot from services.limits.
    blocks.queue(default_concurrency_limit=settings.concurrency, max_size=settings.max_queue)
    return blocks


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413) before they are read into memory; file
    uploads go through Gradio's own ``max_file_size`` instead, and the OpenAI-compatible
    upload routes (``exempt_paths``) through their own ``max_upload_mb`` limit."""

    def __init__(self, app, max_bytes: int, exempt_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope["path"].endswith("/upload")
                or scope["path"] in self.exempt_paths):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope, send) -> None:
        message = (f"The request is larger than {self.max_bytes // 1024} KB, the most this "
                   "server accepts.")
        if scope["path"].startswith("/v1/"):  # OpenAI's error shape, which its clients read
            payload = {"error": {"message": message, "type": "invalid_request_error",
                                 "param": None, "code": "request_too_large"}}
        else:
            payload = {"detail": message}
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(services):
    """The ASGI app: API routes + the Gradio UI mounted at '/'."""
    import gradio as gr
    from fastapi import FastAPI

    from webapp import metrics
    from webapp.api import build_router
    from webapp.caption_view import build_caption_view_router
    from webapp.live_captions import build_live_router
    from webapp.openai_compat import UPLOAD_PATHS, build_openai_router
    from webapp.realtime import build_realtime_router

    settings = services.settings
    try:
        # Gradio imports matplotlib on the event loop around the first page event after a start
        # (its backend switch in process_api): 1-4 s with nothing else answered, health checks
        # included (bench/load.py). Pay it here, before serving.
        import matplotlib

        matplotlib.get_backend()  # resolves (and imports) the default backend
    except ImportError:
        pass
    app = FastAPI(title="Speech Studio", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.include_router(build_router(services))
    app.include_router(build_live_router(services))
    app.include_router(build_caption_view_router(services))
    app.include_router(build_openai_router(services))
    app.include_router(build_realtime_router(services))
    app.include_router(metrics.build_metrics_router(services))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_kb * 1024,
                       exempt_paths=UPLOAD_PATHS)
    metrics.install(app, services)  # outermost: refusals by BodyLimit are counted too
    _refuse_invalid_requests_without_echo(app)
    blocks = build_blocks(services)
    mounted = gr.mount_gradio_app(
        app, blocks, path="/", footer_links=["api", "settings"],
        head=f"<script>{PAGE_JS}</script>", css=CSS,
        max_file_size=f"{settings.max_upload_mb}mb",
        # Our handlers turn every failure into a sentence; on a public server nothing else
        # (exception text) reaches the page.
        show_error=not settings.public,
        # MCP tools at /gradio_api/mcp/ (streamable HTTP; SSE at /gradio_api/mcp/sse): the
        # public API endpoints, see webapp/components/mcp_tools.py. Needs gradio[mcp].
        mcp_server=settings.mcp and importlib.util.find_spec("mcp") is not None,
    )
    # gr.mount_gradio_app never marks the Blocks as launched, and Gradio checks that a file
    # named in an API call was uploaded by a user only when it is: without this, any server
    # file could be read through an endpoint with a file input (found by tests/test_fuzz.py).
    blocks.has_launched = True
    return mounted


def _refuse_invalid_requests_without_echo(app) -> None:
    """FastAPI's default 422 echoes the input, and its JSON encoder fails (500) on the NaN or
    Infinity a client may send; answer with where and what, never the input."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        errors = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    disable_telemetry()
    import uvicorn

    from webapp.services import build_services

    services = build_services(settings)
    app = create_app(services)
    host = host or settings.host
    port = port or settings.port
    logger.warning("Speech Studio is ready on http://%s:%d", host, port)
    print(f"Speech Studio is ready: open http://{host}:{port} in a browser", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
