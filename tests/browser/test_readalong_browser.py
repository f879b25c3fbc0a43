"""A read-along page in a real browser, offline: a real lesson (bundled Piper voice, word
timings from the bundled tiny.en) written to a file, opened from file:// in Debian's Chromium
with every network request blocked. The highlight must follow the audio's time, clicks and keys
must seek, the speed control must change the playback rate. Screenshots go to
tests/browser/screenshots/ (readalong.png, readalong-dark.png)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import BASE_FLAGS, CHROMIUM, SCREENSHOT_DIR
from webapp.config import Settings
from webapp.pipeline.cache import DiskSynthesisCache
from webapp.pipeline.lesson.readalong import align_words, render
from webapp.pipeline.stt.registry import STTRegistry
from webapp.pipeline.subtitles import Chapter
from webapp.pipeline.synthesis import SynthesisRequest, Synthesizer
from webapp.pipeline.tts.registry import TTSRegistry

pytestmark = pytest.mark.browser

LESSON = ("Water is H2O. It boils at 100 °C at sea level.\n\n"
          "Ice melts at 0 °C. Salt water freezes below that, at about minus 2 °C.")


@pytest.fixture(scope="module")
def lesson(tmp_path_factory):
    """The page on disk (audio embedded), one beside its audio file, and the timings."""
    folder = tmp_path_factory.mktemp("readalong")
    settings = Settings(data_dir=folder / "data")
    synth = Synthesizer(settings, TTSRegistry(settings),
                        DiskSynthesisCache(settings.data_dir / "cache", 64))
    result = synth.run(SynthesisRequest(text=LESSON, fmt="mp3"))
    cues = result.cues
    assert len(cues) == 4, cues
    words = STTRegistry(settings).get("faster-whisper", "tiny.en").transcribe(
        result.audio.resample(16_000)).words
    chapters = [Chapter(0.0, cues[1].end_s, "Boiling"),
                Chapter(cues[2].start_s, result.audio_s, "Melting and freezing")]
    page = folder / "lesson.html"
    page.write_text(render(result.data, "audio/mpeg", cues, words=words, chapters=chapters,
                           title="States of water"), encoding="utf-8")
    (folder / "lesson.mp3").write_bytes(result.data)
    beside = folder / "beside.html"
    beside.write_text(render(b"", "audio/mpeg", cues, words=words, chapters=chapters,
                             title="States of water", audio_href="lesson.mp3"),
                      encoding="utf-8")
    return {"page": page, "beside": beside, "cues": cues, "chapters": chapters,
            "aligned": align_words(cues, words), "audio_s": result.audio_s}


@pytest.fixture(scope="module")
def browser(_playwright):
    browser = _playwright.chromium.launch(executable_path=CHROMIUM, args=BASE_FLAGS,
                                          headless=True)
    yield browser
    browser.close()


@pytest.fixture()
def open_page(browser):
    """Factory: open a file offline; afterwards, check it asked for nothing but files and
    logged no error (a Content-Security-Policy refusal is logged as one)."""
    contexts, requests, blocked, errors = [], [], [], []

    def block_network(route):
        if route.request.url.startswith(("file://", "data:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    def make(path, color_scheme="light"):
        context = browser.new_context(viewport={"width": 1100, "height": 900},
                                      color_scheme=color_scheme)
        contexts.append(context)
        context.route("**/*", block_network)
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_function("document.getElementById('audio').readyState >= 1",
                               timeout=20_000)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not blocked, blocked
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    assert not errors, errors


def seek(page, seconds: float) -> None:
    page.evaluate("""t => new Promise(done => {
        audio.addEventListener('seeked', () => done(), {once: true});
        audio.currentTime = t;
    })""", seconds)


def highlighted(page) -> dict:
    return page.evaluate("""() => {
        const s = document.querySelector('.s.on'), w = document.querySelector('.w.on');
        return {sentence: s && s.id, word: w && w.textContent,
                word_in: w && w.closest('.s').id,
                current: document.querySelectorAll('[aria-current]').length};
    }""")


def current_time(page) -> float:
    return page.evaluate("audio.currentTime")


def test_the_highlight_follows_the_audio_sentence_and_word(open_page, lesson):
    page = open_page(lesson["page"])
    assert page.evaluate("audio.duration") == pytest.approx(lesson["audio_s"], abs=0.15)
    second = lesson["cues"][1]
    seek(page, (second.start_s + second.end_s) / 2)
    page.evaluate("audio.play()")
    page.wait_for_function("audio.currentTime > 0 && !audio.paused")
    page.wait_for_timeout(150)
    page.evaluate("audio.pause()")
    t = current_time(page)
    assert second.start_s < t < second.end_s
    state = highlighted(page)
    assert state["sentence"] == "s2" and state["current"] == 1

    # A word: the longest one of sentence 2 (tiny.en gave it a time, align_words placed it).
    timed = lesson["aligned"][1]
    assert timed is not None
    index, word = max(enumerate(timed), key=lambda iw: iw[1].end_s - iw[1].start_s)
    seek(page, (word.start_s + word.end_s) / 2)
    state = highlighted(page)
    assert state == {"sentence": "s2", "word": word.text, "word_in": "s2", "current": 1}
    assert page.evaluate("i => document.querySelector('.w.on') === "
                         "document.querySelectorAll('#s2 .w')[i]", index)
    # The chapter list shows where the audio is.
    assert page.locator(".chapters li.on").inner_text().startswith("Boiling")
    seek(page, lesson["cues"][3].start_s + 0.3)
    assert highlighted(page)["sentence"] == "s4"
    assert page.locator(".chapters li.on").inner_text().startswith("Melting")


def test_clicking_a_sentence_or_a_chapter_plays_from_its_start(open_page, lesson):
    page = open_page(lesson["page"])
    third = lesson["cues"][2]
    page.locator("#s3").click()
    t = current_time(page)
    page.evaluate("audio.pause()")
    assert third.start_s - 0.01 <= t < third.start_s + 0.5
    assert highlighted(page)["sentence"] == "s3"
    page.get_by_role("link", name="Boiling").click()
    t = current_time(page)
    page.evaluate("audio.pause()")
    assert 0.0 <= t < 0.5 and highlighted(page)["sentence"] == "s1"


def test_speed_control_sets_the_playback_rate(open_page, lesson):
    page = open_page(lesson["page"])
    assert page.evaluate("audio.playbackRate") == 1.0
    page.get_by_label("Speed").select_option("1.5")
    assert page.evaluate("audio.playbackRate") == 1.5
    page.get_by_label("Speed").select_option("0.5")
    assert page.evaluate("audio.playbackRate") == 0.5
    # The keys as documented on the page, away from any control.
    page.locator("h1").click()
    page.keyboard.press("+")
    assert page.evaluate("audio.playbackRate") == 0.75
    for _ in range(12):
        page.keyboard.press("+")
    assert page.evaluate("audio.playbackRate") == 2.0
    page.keyboard.press("-")
    assert page.evaluate("audio.playbackRate") == 1.75
    assert page.get_by_label("Speed").input_value() == "1.75"


def test_keyboard_reaches_everything_and_seeks(open_page, lesson):
    page = open_page(lesson["page"])
    cues = lesson["cues"]
    reached = []
    for _ in range(30):
        page.keyboard.press("Tab")
        reached.append(page.evaluate(
            "document.activeElement.id || document.activeElement.tagName.toLowerCase()"))
        if reached[-1] == "s3":
            break
    # The player, the speed control, both chapter links, then the sentences in order.
    assert reached.index("audio") < reached.index("speed") < reached.index("s1")
    assert reached[-3:] == ["s1", "s2", "s3"], reached
    assert page.evaluate("[...document.querySelectorAll('.chapters a')]"
                         ".every(a => a.tabIndex === 0)")
    page.keyboard.press("Enter")
    t = current_time(page)
    assert cues[2].start_s - 0.01 <= t < cues[2].start_s + 0.5
    # Arrow keys on a sentence move to the next one, with focus.
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "s4"
    assert cues[3].start_s - 0.01 <= current_time(page) < cues[3].start_s + 0.5
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.id") == "s2"
    # Space on a sentence plays it; Space elsewhere plays and pauses.
    page.keyboard.press(" ")
    assert not page.evaluate("audio.paused")
    assert cues[1].start_s - 0.01 <= current_time(page) < cues[1].start_s + 0.5
    page.locator("h1").click()
    page.keyboard.press(" ")
    assert page.evaluate("audio.paused")
    page.keyboard.press(" ")
    assert not page.evaluate("audio.paused")
    page.keyboard.press(" ")
    # Away from a sentence, the arrows follow the audio: next sentence after the playing one.
    seek(page, cues[0].start_s + 0.2)
    page.keyboard.press("ArrowRight")
    page.evaluate("audio.pause()")
    assert cues[1].start_s - 0.01 <= current_time(page) < cues[1].start_s + 0.5


def test_audio_beside_the_page_plays_offline(open_page, lesson):
    page = open_page(lesson["beside"])
    assert page.evaluate("audio.currentSrc").endswith("/lesson.mp3")
    assert page.evaluate("audio.duration") == pytest.approx(lesson["audio_s"], abs=0.15)
    seek(page, lesson["cues"][2].start_s + 0.3)
    assert highlighted(page)["sentence"] == "s3"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshot(open_page, lesson, scheme):
    page = open_page(lesson["page"], color_scheme=scheme)
    timed = lesson["aligned"][2]
    assert timed is not None
    word = timed[len(timed) // 2]
    seek(page, (word.start_s + word.end_s) / 2)
    page.evaluate("window.scrollTo(0, 0)")
    assert highlighted(page)["word"] == word.text
    page.wait_for_timeout(400)  # the highlight fades from the previous sentence in 0.15 s
    name = "readalong.png" if scheme == "light" else "readalong-dark.png"
    page.screenshot(path=str(SCREENSHOT_DIR / name))
