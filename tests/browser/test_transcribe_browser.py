"""Live captions in a real browser: Chromium's fake microphone plays a real LibriVox recording
(padded with silence) into the Transcribe tab; the page's AudioWorklet sends it over the app's
WebSocket. Every captured sample must reach the server, captions must appear while it plays and
match the transcript. Also a file upload to SRT. Screenshots go to tests/browser/screenshots/."""

from __future__ import annotations

import time
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from tests.browser.conftest import SCREENSHOT_DIR

pytestmark = pytest.mark.browser

SPEECH = Path(__file__).resolve().parents[1] / "data" / "speech" / "librivox"
CLIP = "sense_and_sensibility_01_austen_64kb-0870.wav"
LEAD_S, TAIL_S = 1.0, 4.0


def _reference(name: str) -> str:
    rows = dict(line.split("\t", 1) for line in
                (SPEECH / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:])
    return rows[name]


def _normalise(text: str) -> str:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text)


@pytest.fixture(scope="module")
def fake_mic_wav(tmp_path_factory) -> tuple[Path, float]:
    """1 s of silence, the clip, then 4 s of silence (the fake device loops the file)."""
    data, rate = sf.read(SPEECH / CLIP, dtype="float32")
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    sf.write(path, np.concatenate([np.zeros(int(LEAD_S * rate), np.float32), data,
                                   np.zeros(int(TAIL_S * rate), np.float32)]), rate,
             subtype="PCM_16")
    return path, LEAD_S + len(data) / rate


def _open_tab(page) -> None:
    page.get_by_role("tab", name="Transcribe").click()
    page.wait_for_selector("#live-record", state="visible", timeout=30_000)


def test_live_captions_from_fake_microphone(new_page, fake_mic_wav):
    wav, speech_end_s = fake_mic_wav
    page = new_page(wav)
    _open_tab(page)
    page.locator("#live-record").click()
    page.wait_for_function("() => window.speechStudioCaptions.stats.t0 > 0", timeout=20_000)
    started = time.monotonic()
    first_caption_s = None
    mid_state = ""
    while time.monotonic() - started < speech_end_s + 1.5:
        text = page.locator("#live-captions-text").inner_text().strip()
        if first_caption_s is None and text and "Captions appear here" not in text:
            first_caption_s = time.monotonic() - started
        if not mid_state and time.monotonic() - started > 4.0:
            mid_state = page.locator("#live-state").inner_text()
            page.screenshot(path=str(SCREENSHOT_DIR / "transcribe_live_during.png"))
        time.sleep(0.1)
    page.locator("#live-stop").click()
    page.wait_for_function("() => window.speechStudioCaptions.stats.ended", timeout=60_000)
    stats = page.evaluate("() => window.speechStudioCaptions.stats")
    log = page.evaluate("() => window.speechStudioCaptions.log")
    final = page.locator("#live-captions-text").inner_text().strip()
    page.screenshot(path=str(SCREENSHOT_DIR / "transcribe_live_after.png"), full_page=True)

    assert stats["error"] is None and stats["final"], stats
    sent_s = stats["sentSamples"] / stats["sampleRate"]
    # Every sample the page captured before Stop reached the transcriber.
    assert sent_s > speech_end_s, stats
    assert stats["receivedS"] >= 0.98 * sent_s, stats
    # Captions appeared while the clip played, and updated often.
    assert first_caption_s is not None and first_caption_s < speech_end_s, first_caption_s
    assert "Recording" in mid_state, mid_state
    updates_while_speaking = [e for e in log if not e["final"] and e["received_s"] < speech_end_s]
    assert len(updates_while_speaking) >= speech_end_s / 0.5 - 2, len(updates_while_speaking)
    # The words are right, in order, once each.
    assert final == stats["committed"]
    hypothesis = _normalise(final)
    assert jiwer.wer(_normalise(_reference(CLIP)), hypothesis) <= 0.15, hypothesis
    words = hypothesis.split()
    assert all(words[i] != words[i + 1] for i in range(len(words) - 1)), hypothesis
    assert "Stopped" in page.locator("#live-state").inner_text()


def test_blocked_microphone_gets_a_clear_message(new_page):
    page = new_page()  # no fake device, no permission
    _open_tab(page)
    page.locator("#live-record").click()
    page.wait_for_function("() => window.speechStudioCaptions.stats.ended", timeout=20_000)
    message = page.locator("#live-state").inner_text()
    assert "microphone" in message.lower(), message
    assert page.locator("#live-record").is_enabled()


def test_file_upload_gives_transcript_and_subtitles(new_page):
    page = new_page()
    _open_tab(page)
    clip = SPEECH / "sense_and_sensibility_01_austen_64kb-0930.wav"
    page.locator("#file-audio input[type=file]").set_input_files(str(clip))
    page.wait_for_timeout(1000)
    page.locator("#file-transcribe").click()
    box = page.locator("#file-transcript textarea")
    deadline = time.monotonic() + 60
    while not box.input_value().strip() and time.monotonic() < deadline:
        time.sleep(0.3)
    text = box.input_value()
    page.wait_for_selector("#file-downloads a", timeout=10_000)
    links = page.locator("#file-downloads a").evaluate_all(
        "els => els.map(e => (e.getAttribute('href') || '') + ' ' + (e.getAttribute('download') || ''))")
    page.screenshot(path=str(SCREENSHOT_DIR / "transcribe_file.png"), full_page=True)
    assert jiwer.wer(_normalise(_reference(clip.name)), _normalise(text)) <= 0.15, text
    for ext in (".txt", ".srt", ".vtt"):
        assert any(ext in link for link in links), links
