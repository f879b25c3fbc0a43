"""The "Synthesis cache" panel of the Synthesize tab: what the cache holds and, for the operator,
clearing it.

Private deployments show the shared cache's figures. A public visitor sees only their own
session's: how many of their requests repeated their own earlier ones (whether somebody else
asked for the same text is not shown). Clearing is an operator action: absent on a public page
unless an operator token is configured, and it always asks for that token when one is.
"""

from __future__ import annotations

import gradio as gr

from webapp.api import operator_allowed
from webapp.components.events import PAGE_ONLY, bind
from webapp.pipeline.synthesis import SynthesisResult
from webapp.services import Services


def cache_markdown(services: Services) -> str:
    s = services.cache.stats()
    return (f"**{s.entries}** stored clips (sentences and whole requests) · "
            f"**{s.size_bytes / 1e6:.1f} MB** of {s.limit_bytes / 1e6:.0f} MB · requests served "
            f"from the cache: **{s.hit_rate:.0%}** ({s.hits} of {s.hits + s.misses})")


def session_cache_markdown(stats: dict | None) -> str:
    """A public visitor's own cache statistics: repeats of their own requests, nothing else."""
    stats = stats or {}
    requests, repeats = stats.get("requests", 0), stats.get("repeats", 0)
    return (f"This session: **{requests}** request(s), **{repeats}** of them repeats of your own "
            "earlier ones, served from the cache. The shared cache is emptied when the demo "
            "restarts.")



def count_request(stats: dict | None, result: SynthesisResult) -> dict:
    """Update a public visitor's own statistics. A request counts as a repeat only if this
    session made it before: whether somebody else did is not shown."""
    stats = dict(stats or {"requests": 0, "repeats": 0, "keys": []})
    keys = list(stats.get("keys", []))
    digest = result.request_key[:16]
    own_repeat = bool(digest) and digest in keys
    stats["requests"] = stats.get("requests", 0) + 1
    stats["repeats"] = stats.get("repeats", 0) + int(own_repeat)
    if digest and not own_repeat:
        keys = (keys + [digest])[-200:]
    stats["keys"] = keys
    stats["own_repeat"] = own_repeat
    return stats


def on_clear(services: Services, *token_value) -> str:
    settings = services.settings
    if settings.operator_token and not operator_allowed(services, (token_value or [""])[0]):
        raise gr.Error("Clearing the cache needs the operator token.")
    services.cache.clear()
    gr.Info("Cache cleared.")
    return cache_markdown(services)


def build_cache_panel(services: Services, session_stats: gr.State) -> gr.Markdown:
    """The accordion and its events; returns the figures' Markdown (a synthesis updates it)."""
    settings = services.settings
    public = settings.public
    operator_token = clear = None
    with gr.Accordion("Synthesis cache", open=False):
        cache_info = gr.Markdown(session_cache_markdown(None) if public else cache_markdown(services),
                                 elem_id="cache-info")
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm", elem_id="cache-refresh")
            if not public or settings.operator_token:
                if settings.operator_token:
                    operator_token = gr.Textbox(label="Operator token", type="password",
                                                max_lines=1, elem_id="operator-token")
                clear = gr.Button("Clear cache", size="sm", variant="stop", elem_id="cache-clear")
    if public:
        # The endpoint keeps the name it had when this function was private to the tab.
        refresh.click(session_cache_markdown, session_stats, cache_info, queue=False,
                      api_name="_session_cache_markdown", api_visibility=PAGE_ONLY)
    else:
        refresh.click(lambda: cache_markdown(services), None, cache_info, queue=False,
                      api_visibility=PAGE_ONLY)
    if clear is not None:
        clear.click(bind(services, on_clear),
                    [operator_token] if operator_token is not None else None, cache_info,
                    api_visibility="private")
    return cache_info
