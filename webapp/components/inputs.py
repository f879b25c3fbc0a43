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
