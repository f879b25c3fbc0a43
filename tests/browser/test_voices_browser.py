"""Voice panel in real Chromium: the chosen voice's language, quality and licence, a preview that
plays, and installing a voice from the Piper catalogue (served from loopback: tests never reach
the internet) that then appears in the voice picker and speaks."""

from __future__ import annotations

import pytest
from conftest import SCREENSHOT_DIR, _page_factory, _start_app, _stop_app  # noqa: I001 - the browser harness
from test_voice_catalogue import TEST_VOICE, loopback_catalogue  # tests/: the loopback catalogue

pytestmark = pytest.mark.browser

# The duration of the playable audio inside a Gradio player (kept in a shadow root).
AUDIO_DURATION_JS = """(selector) => {
    const all = (root) => [...root.querySelectorAll('audio'),
        ...[...root.querySelectorAll('*')].flatMap(e => e.shadowRoot ? all(e.shadowRoot) : [])];
    const box = document.querySelector(selector);
    const ok = box && all(box).find(a => a.src && a.duration > 0 && isFinite(a.duration));
    return ok ? ok.duration : null; }"""


@pytest.fixture(scope="module")
def online_app_url(tmp_path_factory):
    """The app online (SPEECH_STUDIO_OFFLINE=0) with the catalogue on loopback."""
    with loopback_catalogue(tmp_path_factory.mktemp("catalogue")) as (catalogue_url, _):
        url, proc, log = _start_app(tmp_path_factory.mktemp("online-app-data"), {
            "SPEECH_STUDIO_OFFLINE": "0", "SPEECH_STUDIO_VOICE_CATALOGUE_URL": catalogue_url})
        try:
            yield url
        finally:
            _stop_app(proc, log)


@pytest.fixture()
def new_online_page(_playwright, online_app_url):
    yield from _page_factory(_playwright, online_app_url)


def test_voice_line_and_preview(new_online_page):
    page = new_online_page()
    info = page.inner_text("#voice-info")
    assert "English (United States)" in info and "medium quality" in info
    assert "Licence and credit:" in info and "CC0" in info and "lessac" in info
    page.click("#voice-preview")
    duration = page.wait_for_function(AUDIO_DURATION_JS, arg="#voice-sample",
                                      timeout=60_000).json_value()
    assert 1.5 < duration < 10  # one short sentence
    assert "Sample: Joe" in page.inner_text("#voice-sample")
    page.screenshot(path=str(SCREENSHOT_DIR / "voices-preview.png"), full_page=True)


def _pick_from_catalogue(page, name: str) -> None:
    """Open "Install more voices", search the catalogue by typing, then pick the voice."""
    page.click("text=Install more voices")
    page.wait_for_function(
        "document.querySelector('#voice-catalogue-details').innerText.includes('can be installed')",
        timeout=60_000)
    page.click("#voice-catalogue input")
    page.keyboard.type(name)
    page.click(f"#voice-catalogue li[role=option]:has-text('· {name} ·')")


def test_install_a_voice_then_pick_and_synthesise_it(new_online_page):
    page = new_online_page()
    _pick_from_catalogue(page, "test")
    page.wait_for_function(
        "document.querySelector('#voice-catalogue-details').innerText.includes('CC BY 4.0')",
        timeout=30_000)
    details = page.inner_text("#voice-catalogue-details")
    assert "English (Great Britain)" in details and "63 MB download" in details
    page.screenshot(path=str(SCREENSHOT_DIR / "voices-catalogue.png"), full_page=True)

    page.click("#voice-install-run")
    page.wait_for_function(
        "document.querySelector('#voice-catalogue-details').innerText.includes('Installed')",
        timeout=120_000)
    # The new voice is chosen in the picker, with its own language and licence line.
    assert page.input_value("#tts-voice input").startswith("Test · English (Great Britain)")
    page.wait_for_function(
        "document.querySelector('#voice-info').innerText.includes('English (Great Britain)')",
        timeout=30_000)
    assert "CC BY 4.0" in page.inner_text("#voice-info")
    page.screenshot(path=str(SCREENSHOT_DIR / "voices-installed.png"), full_page=True)

    # It speaks: a lesson synthesised with it plays and names it.
    page.fill("#tts-text textarea", "Plants make sugar from light. Roots take up water.")
    page.click("#tts-run")
    page.wait_for_function("window.speechStudioStats && window.speechStudioStats.done",
                           timeout=120_000)
    stats = page.evaluate("window.speechStudioStats")
    assert stats["error"] is None and stats["audioSeconds"] > 2
    page.wait_for_function(
        f"document.querySelector('#tts-metrics').innerText.includes('{TEST_VOICE}')",
        timeout=60_000)

    # A new visitor finds it in the list, and no longer among the voices to install.
    other = new_online_page()
    other.click("#tts-voice input")
    assert other.locator("#tts-voice li[role=option]:has-text('Test · English')").count() == 1
    other.keyboard.press("Escape")
    other.click("text=Install more voices")
    other.wait_for_function(
        "document.querySelector('#voice-catalogue-details').innerText.includes('can be installed')",
        timeout=60_000)
    other.click("#voice-catalogue input")
    assert other.locator("#voice-catalogue li[role=option]:has-text('· test ·')").count() == 0


def test_corrupted_download_shows_a_clear_message(new_online_page):
    page = new_online_page()
    _pick_from_catalogue(page, "broken")
    page.click("#voice-install-run")
    page.wait_for_function(
        "document.querySelector('#voice-catalogue-details').innerText.includes('did not match the catalogue')",
        timeout=120_000)
    assert "Not installed" in page.inner_text("#voice-catalogue-details")
    # The voice picker is untouched.
    assert page.input_value("#tts-voice input").startswith("Joe")
    page.screenshot(path=str(SCREENSHOT_DIR / "voices-install-refused.png"), full_page=True)
