"""What a visitor is told when something goes wrong: one place for the page and the HTTP routes.

``PipelineError`` messages are written for users and shown as they are, except that on a
public deployment (``SPEECH_STUDIO_PUBLIC=1``) server file paths are replaced by a placeholder
and the text a backend library attached (after "(" or ":" in a download or engine failure) is
kept out; the operator finds it in the log. Anything else is an internal error: logged with its
traceback, shown as one fixed sentence.
"""

from __future__ import annotations

import logging
import re

from webapp.pipeline.errors import ModelUnavailableError, PipelineError

logger = logging.getLogger(__name__)

# An absolute POSIX or Windows path of two or more parts (not the "//host" of a URL).
_PATH = re.compile(r"(?<![\w:/.])(?:[A-Za-z]:\\|/)(?:[^\s/\\'\"(),;:]+[/\\])+[^\s/\\'\"(),;:]*")
INTERNAL = "Something went wrong on the server; the error was logged. Try again, or try another voice or model."


def redact_paths(message: str) -> str:
    return _PATH.sub("<server path>", message)


def user_message(exc: BaseException, *, public: bool) -> str:
    """The sentence to show for ``exc``."""
    if not isinstance(exc, PipelineError):
        logger.error("internal error", exc_info=exc)
        return INTERNAL
    message = str(exc) or exc.__class__.__name__
    if public:
        if isinstance(exc, ModelUnavailableError) and exc.__cause__ is not None:
            logger.warning("model unavailable: %s", message)
            message = ("This model is not available on this server. Choose another one; the "
                       "operator can find the reason in the server log.")
        message = redact_paths(message)
    return message
