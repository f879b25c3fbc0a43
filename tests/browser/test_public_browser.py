"""The app as a public demo (SPEECH_STUDIO_PUBLIC=1) in real Chromium, two visitors at once.

Issue 9: one visitor's lexicon changed every other visitor's audio, any visitor could clear the
shared cache, and the cache statistics told a visitor what others had synthesised.
"""

from __future__ import annotations

import pytest
from conftest import SCREENSHOT_DIR  # noqa: I001 - the browser harness

pytestmark = pytest.mark.browser

TEXT = "Dr. Nguyen measured the ATP in the cells."


def _preview(page) -> str:
    return page.eval_on_selector("#tts-preview textarea", "e => e.value")


def _wait_preview(page, needle: str) -> None:
    page.wait_for_function(
        f"document.querySelector('#tts-preview textarea').value.includes({needle!r})", timeout=30_000)


def test_each_visitor_has_their_own_lexicon_and_no_operator_actions(new_public_page, tmp_path):
    alice, bob = new_public_page(), new_public_page()
    assert "public demo on a shared CPU" in alice.inner_text("#public-note")
    for page in (alice, bob):
        page.fill("#tts-text textarea", TEXT)
        # The operator's lexicon (ATP -> A T P) applies to everyone.
        _wait_preview(page, "A T P")

    csv = tmp_path / "mine.csv"
    csv.write_text("term,respelling,case_sensitive\nNguyen,win,no\n", encoding="utf-8")
    alice.click("text=Pronunciation lexicon")
    alice.set_input_files("input[type=file][accept='.csv']", str(csv))
    _wait_preview(alice, "Doctor win measured")
    assert "only to this browser session" in alice.inner_text("#component-0, body")

    # Bob's audio is not changed by Alice's entry, even after he edits his own text again.
    bob.fill("#tts-text textarea", TEXT + " ")
    bob.wait_for_timeout(1500)
    assert "Nguyen" in _preview(bob) and "win" not in _preview(bob)

    # A respelling may not smuggle in pause marks.
    bad = tmp_path / "bad.csv"
    bad.write_text("term,respelling\nthe,[pause 10s]\n", encoding="utf-8")
    alice.set_input_files("input[type=file][accept='.csv']", str(bad))
    alice.wait_for_selector("text=square brackets", timeout=30_000)

    # No cache clearing for visitors, and the statistics are the visitor's own.
    bob.click("text=Synthesis cache")
    assert bob.locator("#cache-clear").count() == 0
    assert "This session" in bob.inner_text("#cache-info")
    alice.screenshot(path=str(SCREENSHOT_DIR / "public-lexicon.png"), full_page=True)


def test_cache_status_is_shown_only_for_a_visitors_own_repeats(new_public_page):
    alice, bob = new_public_page(), new_public_page()
    text = "Sound travels at about three hundred and forty metres per second in air."
    for page in (alice, bob):
        page.fill("#tts-text textarea", text)

    def synthesize(page) -> str:
        before = page.inner_text("#tts-metrics")
        page.click("#tts-run")
        page.wait_for_function(
            "([before]) => { const t = document.querySelector('#tts-metrics').innerText;"
            " return t !== before && t.includes('time to first audio') && !t.includes('%') && !t.includes('processing') && !/\\ds\\b/.test(t); }",
            arg=[before], timeout=60_000)
        return page.inner_text("#tts-metrics")

    first = synthesize(alice)
    assert "cache" not in first.lower()
    # Bob's request is answered from the cache Alice filled, but he is not told so.
    bobs = synthesize(bob)
    assert "cache" not in bobs.lower() and "Repeat" not in bobs
    again = synthesize(alice)
    assert "Repeat of your earlier request" in again
    alice.click("text=Synthesis cache")
    alice.click("#cache-refresh")
    alice.wait_for_function(
        "document.querySelector('#cache-info').innerText.includes('2 request(s), 1 of them')",
        timeout=10_000)
    alice.screenshot(path=str(SCREENSHOT_DIR / "public-cache.png"), full_page=True)
