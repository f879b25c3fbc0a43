"""One exception family for the pipeline.

Every message says what was expected and how to fix it; the UI and the CLI show it as is
(the UI turns it into ``gr.Error`` in one place, the CLI prints it and exits non-zero).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a problem the user (or operator) can act on. Never shown with a traceback."""


class InputError(PipelineError):
    """The request itself is invalid: empty text, speed out of range, unreadable audio..."""


class AudioError(InputError):
    """Audio that cannot be decoded, is empty, silent where speech is required, or too long."""


class UnknownChoiceError(InputError):
    """An engine, voice or model name that this deployment does not know."""


class ModelUnavailableError(PipelineError):
    """A model that exists in principle but cannot be loaded here (offline, not installed)."""
