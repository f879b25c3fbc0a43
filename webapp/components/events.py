"""How the tabs' handlers meet Gradio: bound to the app's ``Services``, failures as one sentence.

A page handler is a module-level function whose first parameter is ``services``, followed by
the event's widget values in the order the event lists its inputs. ``bind`` makes it the event
function: Gradio sees the handler's own name and parameters (the page's API endpoints are
named after them, e.g. ``/on_synthesize``, and tests/test_fuzz.py calls them by name) and its
``gr.Request`` / ``gr.Progress`` parameters, and any exception the handler lets through reaches
the visitor through ``user_error``, the one adapter from an exception to ``gr.Error``
(``webapp.messages`` decides the wording: no server paths or backend text in public mode; an
unexpected error is logged and shown as one fixed sentence).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gradio as gr

from webapp.limits import Busy, client_key
from webapp.messages import user_message

# The page's events take session state and page widgets: callable as Gradio endpoints (the
# page needs them), listed nowhere. Programs and assistants use the tools (``mcp_tools``).
PAGE_ONLY = "undocumented"


class UserError(gr.Error):
    """A refusal the visitor reads. The page and ``gradio_client`` show ``message``; an MCP
    client gets ``str(exc)``, which for a plain ``gr.Error`` is the message's repr, quotes
    included. Not printed to the console: unexpected errors are logged where they are turned
    into a sentence (``webapp.messages``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)

    def __str__(self) -> str:
        return self.message


def user_error(exc: BaseException, *, public: bool, retry_hint: bool = False) -> gr.Error:
    """``exc`` as the ``gr.Error`` a visitor may see. A ``gr.Error`` the code raised itself is
    already that sentence. ``retry_hint``: add the wait a ``Busy`` refusal names (for programs,
    which get no Retry-After header through Gradio)."""
    if isinstance(exc, gr.Error):
        return exc
    message = user_message(exc, public=public)
    if retry_hint and isinstance(exc, Busy):
        message += f" (Retry in about {exc.retry_after_s} s.)"
    return UserError(message)


@contextmanager
def user_errors(*, public: bool, retry_hint: bool = False) -> Iterator[None]:
    """Every exception in the block leaves it as ``user_error(exc)``."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
        raise user_error(exc, public=public, retry_hint=retry_hint) from None


def bind(services, handler: Callable) -> Callable:
    """``handler(services, *values)`` as an event function of ``*values`` whose failures reach
    the visitor as ``user_error``. Only for plain (not async, not generator) handlers."""

    @functools.wraps(handler)
    def event(*args, **kwargs):
        with user_errors(public=services.settings.public):
            return handler(services, *args, **kwargs)

    # Gradio reads the parameters (names, gr.Request, gr.Progress) from the signature; the
    # type hints it resolves through ``__wrapped__``, in the handler's module.
    signature = inspect.signature(handler)
    event.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return event


def client_of(request: gr.Request | None, services) -> str:
    """Who an event or tool call counts against (``services.limits``, ``MAX_PER_CLIENT``): the
    visitor's or API client's address, or behind a trusted proxy the first X-Forwarded-For
    address."""
    client = getattr(request, "client", None)
    return client_key(client.host if client else None, getattr(request, "headers", None),
                      services.settings.trust_proxy)
