"""What programs and assistants call: the tabs' work as Gradio API endpoints and MCP tools.

Each tab registers its tools when it is built (``/synthesize`` and ``/normalize`` in
``synthesize_tools``, ``/transcribe`` in ``transcribe``, ``/evaluate`` in ``evaluate_tool``);
this module holds what they share. Gradio lists every *public* endpoint in "Use via API"
(``gradio_client``) and, with ``mcp_server=True`` (``webapp.app``), as an MCP tool named after
the function, described by its docstring (the "Args:" lines become the parameters'
descriptions). The page's own events take player tokens and session state, so they are
``api_visibility="undocumented"`` (``events.PAGE_ONLY``): callable as before, listed nowhere.

Why the tools look the way they do:

- **Hidden components, not ``gr.api``.** A file parameter on a real ``gr.Audio`` goes through
  Gradio's preprocessing, which takes only uploads, the base64 ``data:`` URLs the MCP server
  stores for its clients, and http(s) URLs it downloads with SSRF protection: never a path on
  the server (the guard ``blocks.has_launched`` in ``webapp.app``; tests/test_mcp.py tries).
  ``gr.api`` skips preprocessing and would hand the caller's raw ``{"path": ...}`` to the tool.
- **Unqueued coroutines.** For a queued event Gradio's MCP server calls the app back over HTTP
  with a ``gradio_client`` it creates once, for the address in the *first* caller's Host /
  X-Forwarded-Host header, which any client can write. Unqueued, it runs the tool in-process.
  Nothing then waits in a thread: a tool waits for its model slot on the event loop
  (``services.limits``, the same pools as the page; a full line is refused with a message) and
  runs the model in the thread pool, as ``webapp.api`` does.
- **Plain results.** A file comes back as a URL on this server, everything else as text: a
  sentence, or JSON an assistant can quote and a program can parse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TypeVar

import gradio as gr
from starlette.concurrency import run_in_threadpool

from webapp.components.events import user_errors
from webapp.config import Settings
from webapp.limits import WorkPool
from webapp.pipeline.synthesis import SynthesisRequest, SynthesisResult

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def in_slot(pool: WorkPool, client: str, fn: Callable[..., T], *args) -> T:
    """Run ``fn(*args)`` in the thread pool once ``pool`` has a slot for ``client``; waiting
    holds no thread, and a full line raises ``Busy`` at once (``refusals`` words it)."""
    async with pool.hold_async(client):
        return await run_in_threadpool(fn, *args)


async def synthesis(services, request: SynthesisRequest, client: str) -> SynthesisResult:
    """A synthesis as the page and ``POST /api/synthesize`` run it: a repeat straight from the
    cache, new text in a synthesis slot."""
    result = await run_in_threadpool(services.synthesizer.cached, request)
    if result is None:
        result = await in_slot(services.limits.synthesis, client, services.synthesizer.run,
                               request)
    return result


def refusals(settings: Settings):
    """``with refusals(settings):`` a tool's failures leave as the sentence the caller reads
    (``events.user_error``, the page's adapter), a full line with the wait to retry after."""
    return user_errors(public=settings.public, retry_hint=True)


def as_json(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1)


def describe(fn: Callable, **values) -> Callable:
    """Fill the ``{placeholders}`` of ``fn``'s docstring (limits and defaults of this
    deployment): the docstring is the tool's description."""
    fn.__doc__ = (fn.__doc__ or "").format(**values)
    return fn


def register(fn: Callable, inputs: list, outputs: list) -> None:
    """``fn`` as the public endpoint ``/<fn.__name__>`` and MCP tool ``<fn.__name__>``: no
    trigger on the page, not queued (see the module docstring)."""
    gr.on(triggers=[], fn=fn, inputs=inputs, outputs=outputs, api_name=fn.__name__,
          api_visibility="public", queue=False, show_progress="hidden")


def hidden():
    """The container of a tool's components: in the page's config (Gradio describes an
    endpoint from its components), never shown."""
    return gr.Group(visible=False)
