"""Checks the page's handlers apply to values that arrive through Gradio's API, which does not
enforce what the widgets do in a browser (issue 9 fuzzing: a dropdown value sent as a list
reached the pipeline and failed inside it)."""

from __future__ import annotations

from webapp.pipeline.errors import InputError


def one_choice(value, what: str) -> str | None:
    """A dropdown/radio value: a single name (or nothing), never a list or a number."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"The {what} must be one name, e.g. the one shown in the list.")
    return value


def engine_choice(value, engines: list[str]) -> str | None:
    """The engine dropdown's value. Gradio's Dropdown hands a *list* of valid choices to a
    single-choice handler when an API client sends one (tests/test_fuzz.py), so the type is
    checked here rather than deep in the pipeline."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in engines:
        raise InputError(f"Choose one engine from the list: {', '.join(engines)}.")
    return value


MAX_EVALUATION_TEXT_CHARS = 2000
"""Longest text the Evaluate tab and tool synthesise a candidate from (a paragraph). The text
box's max_length only binds the page; API calls are checked by ``evaluation_text``."""


def evaluation_text(value) -> str:
    text = (value if isinstance(value, str) else "").strip()
    if len(text) > MAX_EVALUATION_TEXT_CHARS:
        raise InputError(f"The text is {len(text):,} characters long; the limit here is "
                         f"{MAX_EVALUATION_TEXT_CHARS:,} (a paragraph). Evaluate a longer lesson "
                         "in parts.")
    return text
