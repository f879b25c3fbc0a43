"""Live captions in a real browser: Chromium's fake microphone plays a real LibriVox recording
(padded with silence) into the Transcribe tab; captions must appear while it plays and match
the transcript. Also a file upload to SRT. Screenshots go to tests/browser/screenshots/."""

from __future__ import annotations

import difflib
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


def _reference(name: str) -> str:
    rows = dict(line.split("\t", 1) for line in
                (SPEECH / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:])
    return rows[name]


def _normalise(text: str) -> str:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text)


@pytest.fixture(scope="module")
def fake_mic_wav(tmp_path_factory) -> Path:
    """1 s of silence, the clip, then 4 s of silence (the fake device loops the file)."""
    data, rate = sf.read(SPEECH / CLIP, dtype="float32")
    silence = np.zeros(rate, dtype=np.float32)
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    sf.write(path, np.concatenate([silence, data, silence, silence, silence, silence]), rate,
             subtype="PCM_16")
    return path


def _open_tab(page) -> None:
    page.get_by_role("tab", name="Transcribe").click()
    page.wait_for_selector("#live-mic", state="visible", timeout=30_000)


def _record_once(page) -> tuple[float | None, str, str]:
    page.locator("#live-mic button.record-button").click()
    started = time.monotonic()
    first_caption_s = None
    mid_text = ""
    # The clip's speech ends at about 8.1 s of the file; stop after 10.5 s.
    while time.monotonic() - started < 10.5:
        text = page.locator("#live-captions").inner_text().strip()
        if first_caption_s is None and "Captions appear here" not in text and text:
            first_caption_s = time.monotonic() - started
        if 4.0 < time.monotonic() - started < 4.6 and not mid_text:
            mid_text = text
            page.screenshot(path=str(SCREENSHOT_DIR / "transcribe_live_during.png"))
        time.sleep(0.2)
    page.locator("#live-mic button.stop-button").click()
    time.sleep(1.5)
    final = page.locator("#live-captions").inner_text().strip()
    page.screenshot(path=str(SCREENSHOT_DIR / "transcribe_live_after.png"), full_page=True)
    return first_caption_s, mid_text, final


def _problems(first_caption_s, mid_text, final) -> list[str]:
    reference = _normalise(_reference(CLIP))
    hypothesis = _normalise(final)
    words = hypothesis.split()
    problems = []
    if first_caption_s is None or first_caption_s >= 8.0:
        problems.append(f"no caption while the recording played (final text: {final!r})")
    if not mid_text or "Captions appear here" in mid_text:
        problems.append("captions did not update mid-speech")
    matcher = difflib.SequenceMatcher(a=reference.split(), b=words, autojunk=False)
    in_order = sum(b.size for b in matcher.get_matching_blocks()) / len(reference.split())
    if in_order < 0.6:
        problems.append(f"only {in_order:.0%} of the words in order: {hypothesis!r}")
    if jiwer.wer(reference, hypothesis) > 0.45:
        problems.append(f"WER {jiwer.wer(reference, hypothesis):.0%}: {hypothesis!r}")
    if any(words[i] == words[i + 1] for i in range(len(words) - 1)):
        problems.append(f"a word repeated: {hypothesis!r}")
    if len(words) > len(reference.split()) + 2:
        problems.append(f"more words than were spoken: {hypothesis!r}")
    return problems


def test_live_captions_from_fake_microphone(new_page, fake_mic_wav):
    # Browser echo cancellation / noise suppression / gain control off: the chunks then
    # arrive as 44.1 kHz 2-D stereo int16 (the 48 kHz mono path is covered in
    # tests/test_streaming.py), and the test measures our pipeline, not Chromium's DSP.
    #
    # What Chromium's fake microphone delivers is not exactly the file: on a busy 2-core
    # machine it drops stretches of it (measured: 6.0-6.5 s arrived for the 7.1 s clip, and
    # offline transcription of that received audio itself had about 20 % WER). So the bar is
    # loose (words in order, none repeated, most of the transcript there), and up to three
    # recordings are allowed when one lost audio; every result is reported.
    attempts = []
    for _ in range(3):
        page = new_page(fake_mic_wav, disable_audio_processing=True)
        _open_tab(page)
        problems = _problems(*_record_once(page))
        if not problems:
            return
        attempts.append(problems)
    pytest.fail(f"live captions failed three times: {attempts}")


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
