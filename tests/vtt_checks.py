"""A check shared by the subtitle and lesson-tag tests."""

from __future__ import annotations


def assert_cue_text_escaped(content: str) -> None:
    """No raw "<", "&" or "-->" in the cue text of a WebVTT file (WebVTT 4.1: they must be
    escaped); timing lines are skipped."""
    body = content.split("\n\n", 1)[1]
    for line in body.splitlines():
        if " --> " in line and line[:2].isdigit():
            continue
        assert "<" not in line and "-->" not in line, line
        assert "&" not in line.replace("&lt;", "").replace("&gt;", "").replace("&amp;", ""), line
