"""Composition root: settings -> services (models loaded and warmed once) -> UI + API -> serve.

One ASGI app: FastAPI serves the HTTP routes (``webapp.api``) and has the Gradio Blocks mounted
at ``/``. Models are loaded before the server accepts connections, never per request.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from webapp.config import Settings, disable_telemetry

logger = logging.getLogger(__name__)

PLAYER_JS = (Path(__file__).parent / "components" / "player.js").read_text(encoding="utf-8")
CSS = """
#tts-metrics p { margin: 0.2em 0; }
#live-status { font-weight: 600; color: var(--color-accent); }
.committed-text { color: var(--body-text-color); }
.pending-text { color: var(--body-text-color-subdued); font-style: italic; }
"""
TABS = (
    ("Synthesize", "webapp.components.synthesize", "build_synthesize_tab"),
    ("Transcribe", "webapp.components.transcribe", "build_transcribe_tab"),
    ("Evaluate", "webapp.components.evaluate", "build_evaluate_tab"),
)


def build_blocks(services):
    import gradio as gr

    with gr.Blocks(title="Speech Studio", delete_cache=(1800, 3600)) as blocks:
        gr.Markdown(
            "# Speech Studio\n"
            "Read lessons aloud, caption speech live, and check speech quality — "
            "all on this computer, no internet needed."
        )
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
    blocks.queue(default_concurrency_limit=services.settings.concurrency)
    return blocks


def create_app(services):
    """The ASGI app: API routes + the Gradio UI mounted at '/'."""
    import gradio as gr
    from fastapi import FastAPI

    from webapp.api import build_router

    app = FastAPI(title="Speech Studio", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.include_router(build_router(services))
    blocks = build_blocks(services)
    return gr.mount_gradio_app(
        app, blocks, path="/", footer_links=["api", "settings"],
        head=f"<script>{PLAYER_JS}</script>", css=CSS,
        max_file_size="200mb", show_error=True,
    )


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
