"""Synthesize tab in real Chromium: type, click, hear audio start, get files, cache hit."""

from __future__ import annotations

import pytest
from conftest import SCREENSHOT_DIR  # noqa: I001 - the browser harness

pytestmark = pytest.mark.browser

PARAGRAPH = ("Sound is a wave that travels through air. It moves at about three hundred and "
             "forty metres per second. Light is much faster than sound.")


def _click_and_wait(page, outcome: str):
    """Click Synthesize; the live player's stats once its stream ended, with ``fileShownAt``: when
    the finished file reached the page (the same output shows ``outcome`` in the metrics)."""
    page.evaluate("""(outcome) => {
        window.__fileShownAt = 0;
        const el = document.querySelector('#tts-metrics');
        new MutationObserver((_, observer) => {
            if (el.innerText.includes(outcome)) {
                window.__fileShownAt = performance.now();
                observer.disconnect();
            }
        }).observe(el, {subtree: true, childList: true, characterData: true});
    }""", outcome)
    page.click("#tts-run")
    page.wait_for_function("window.speechStudioStats && window.speechStudioStats.done", timeout=60_000)
    stats = page.evaluate("window.speechStudioStats")
    stats["fileShownAt"] = page.wait_for_function("window.__fileShownAt || null",
                                                  timeout=60_000).json_value()
    return stats


def _replay_wav(page) -> tuple[int, int]:
    """(frames, sample rate) of the WAV file in the replay player (a blob: URL; Gradio keeps the
    non-streaming player's <audio> in a shadow root)."""
    import base64
    import io
    import wave

    page.wait_for_function("""() => {
        const all = (root) => [...root.querySelectorAll('audio'),
            ...[...root.querySelectorAll('*')].flatMap(e => e.shadowRoot ? all(e.shadowRoot) : [])];
        const ok = all(document.querySelector('#tts-audio')).find(a => a.duration > 0 && isFinite(a.duration));
        if (!ok) return null;
        window.__replaySrc = ok.currentSrc;
        return true; }""", timeout=30_000)
    data = page.evaluate("""async () => {
        const bytes = new Uint8Array(await (await fetch(window.__replaySrc)).arrayBuffer());
        let s = '';
        for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return btoa(s); }""")
    with wave.open(io.BytesIO(base64.b64decode(data))) as wav:
        return wav.getnframes(), wav.getframerate()


def _served_from_cache(page) -> tuple[int, int]:
    """(hits, requests) from the cache panel (other tests share the app, so compare changes)."""
    import re

    page.click("#cache-refresh")
    page.wait_for_timeout(500)
    text = page.inner_text("#cache-info").replace("\n", " ")
    m = re.search(r"requests served from the cache: \d+% \((\d+) of (\d+)\)", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def test_synthesize_plays_downloads_and_caches(new_page):
    page = new_page()
    page.click("text=Synthesis cache")
    hits_before, requests_before = _served_from_cache(page)
    page.fill("#tts-text textarea", PARAGRAPH)
    # The preview shows what the voice will say before synthesising.
    page.wait_for_function(
        "document.querySelector('#tts-preview textarea').value.includes('Light is much faster')",
        timeout=30_000)

    stats = _click_and_wait(page, "Cache miss")
    assert stats["error"] is None
    assert stats["audioSeconds"] > 6
    assert stats["underruns"] == 0  # no silent gaps between chunks
    first_sound_ms = stats["firstSoundAt"] - stats["clickAt"]
    assert 0 < first_sound_ms < 5_000  # the benchmark measures the real figure
    # Live: the sound started before the finished file reached the page. (How fetch() grouped
    # the bytes, stats["reads"], is no measure of this: when synthesis outruns the page, every
    # sentence arrives in one read.)
    assert stats["firstSoundAt"] < stats["fileShownAt"]
    # Everything synthesised was played: the live player got exactly the replay file's samples.
    assert _replay_wav(page) == (stats["samples"], stats["sampleRate"])
    files = page.inner_text("#tts-downloads")
    assert ".wav" in files and ".srt" in files and ".vtt" in files
    page.screenshot(path=str(SCREENSHOT_DIR / "synthesize-first.png"), full_page=True)

    again = _click_and_wait(page, "Cache hit")
    assert again["error"] is None and again["samples"] == stats["samples"]
    assert again["firstSoundAt"] < again["fileShownAt"]
    hits, requests = _served_from_cache(page)
    assert (hits - hits_before, requests - requests_before) == (1, 2)
    page.screenshot(path=str(SCREENSHOT_DIR / "synthesize-cache-hit.png"), full_page=True)


def test_empty_text_shows_a_clear_message(new_page):
    page = new_page()
    page.fill("#tts-text textarea", "   ")
    page.click("#tts-run")
    page.wait_for_selector("text=There is no text to synthesise", timeout=30_000)
    page.screenshot(path=str(SCREENSHOT_DIR / "synthesize-empty-error.png"), full_page=True)


def test_preview_and_lexicon_import(new_page, tmp_path):
    page = new_page()
    page.fill("#tts-text textarea", "Dr. Nguyen heated H2O to 100 °C.")
    page.wait_for_function(
        "document.querySelector('#tts-preview textarea').value.includes('H two O to one hundred degrees Celsius')",
        timeout=30_000)
    csv = tmp_path / "lexicon.csv"
    csv.write_text("term,respelling,case_sensitive\nNguyen,win,no\n", encoding="utf-8")
    page.click("text=Pronunciation lexicon")
    page.set_input_files("input[type=file][accept='.csv']", str(csv))  # the Import CSV button
    page.wait_for_function(
        "document.querySelector('#tts-preview textarea').value.includes('Doctor win heated')",
        timeout=30_000)
    assert "Nguyen" in page.inner_text("#lexicon-table")
    page.screenshot(path=str(SCREENSHOT_DIR / "synthesize-lexicon.png"), full_page=True)


def test_cloning_upload_only_for_a_voice_that_clones(new_page):
    """The bundled Piper voice ignores a reference clip, so the page offers no cloning upload
    (issue 14); nor after switching to eSpeak NG, which does not clone either."""
    page = new_page()
    page.wait_for_selector("#tts-run", state="visible", timeout=30_000)
    assert page.input_value("#tts-voice input").startswith("Joe")
    assert not page.locator("#tts-cloning").is_visible()
    assert "Voice cloning" not in page.inner_text("#tab-synthesize")
    page.click("#tts-engine input")
    page.click("#tts-engine li[role=option]:has-text('eSpeak NG')")
    page.wait_for_function("!document.querySelector('#tts-voice input').value.startsWith('Joe')",
                           timeout=30_000)
    page.wait_for_timeout(500)  # the voice change's own event (it would show the upload)
    assert not page.locator("#tts-cloning").is_visible()
    assert not page.locator("#tts-reference").is_visible()
    page.screenshot(path=str(SCREENSHOT_DIR / "synthesize-no-cloning.png"), full_page=True)
