"""Lesson production on the Synthesize tab (issue 12) in real Chromium, as a teacher uses it:
lesson details and tags, chapter jump links, loudness, the round-trip check, the read-along page,
a whole course as one zip, and the messages for bad input. Every file is fetched from the page's
own download links and read back here (mutagen, zipfile, the pipeline's decoder). Screenshots:
tests/browser/screenshots/lesson-*.png."""

from __future__ import annotations

import html
import io
import re
import zipfile

import pyloudnorm as pyln
import pytest
from conftest import SCREENSHOT_DIR  # noqa: I001 - the browser harness

from webapp.pipeline.audio import load

pytestmark = pytest.mark.browser

# Two chapters, two speakers (the defaults: Teacher and Student), plain words the recogniser
# hears reliably. Short, so the whole file stays quick on two cores.
LESSON = """# Boiling water
Teacher: Water boils at one hundred degrees.
Student: What happens to the bubbles?

# Melting ice
Teacher: Ice melts when it gets warm.
"""
SENTENCES = ["Water boils at one hundred degrees.", "What happens to the bubbles?",
             "Ice melts when it gets warm."]
TAGS = {"title": "States of water", "teacher": "Ms Rivera", "course": "Science year seven"}

# Every <audio> under an element, through shadow roots (Gradio keeps the replay player's there).
AUDIOS_JS = """(sel) => {
    const all = (root) => [...root.querySelectorAll('audio'),
        ...[...root.querySelectorAll('*')].flatMap(e => e.shadowRoot ? all(e.shadowRoot) : [])];
    return all(document.querySelector(sel));
}"""


def _open(page, accordion_id: str) -> None:
    page.locator(f"#{accordion_id} > button.label-wrap").click()


def _fill_details(page) -> None:
    _open(page, "lesson-details")
    page.fill("#lesson-title input", TAGS["title"])
    page.fill("#lesson-teacher input", TAGS["teacher"])
    page.fill("#lesson-course input", TAGS["course"])
    # The speaker defaults a teacher starts from.
    assert page.input_value("#speaker-name-0 input") == "Teacher"
    assert page.input_value("#speaker-name-1 input") == "Student"


def _synthesize_lesson(page, fmt: str = "mp3") -> str:
    """Type the lesson, pick the format, press Synthesize; the metrics line once it is done."""
    page.fill("#tts-text textarea", LESSON)
    _fill_details(page)
    page.locator(f"#tts-format label[data-testid={fmt}-radio-label]").click()
    page.click("#tts-run")
    # One event fills the metrics, the downloads and the chapter links: wait for all three.
    page.wait_for_function("""(fmt) => document.querySelector('#tts-metrics').innerText.includes('LUFS')
        && [...document.querySelectorAll('#tts-downloads a[href]')].some(a => a.href.endsWith('.' + fmt))
        && document.querySelectorAll('#tts-chapters a[data-seek]').length > 0""",
                           arg=fmt, timeout=90_000)
    return page.inner_text("#tts-metrics")


def _download(page, href: str) -> bytes:
    response = page.request.get(href)
    assert response.ok, (href, response.status)
    return response.body()


def _links(page, selector: str) -> dict[str, str]:
    """File name -> absolute URL of the download links in a File component."""
    return page.evaluate("""(sel) => Object.fromEntries([...document.querySelectorAll(sel + ' a[href]')]
        .map(a => [decodeURIComponent(new URL(a.href).pathname.split('/').pop()), a.href]))""",
                         selector)


def _error_toast(page, text: str) -> str:
    """The message Gradio shows for a refused request (and never a traceback)."""
    toast = page.locator(".toast-body", has_text=text)
    toast.first.wait_for(timeout=30_000)
    shown = toast.first.inner_text()
    # Let the toast finish fading in (short transitions; not its 10 s countdown bar), so the
    # screenshot shows what the teacher reads.
    page.evaluate("""() => Promise.all(document.getAnimations()
        .filter(a => a.effect && a.effect.getTiming().iterations !== Infinity
                     && a.effect.getTiming().duration < 2000)
        .map(a => a.finished.catch(() => null)))""")
    assert "Traceback" not in page.inner_text("body")
    return shown


def test_lesson_with_chapters_tags_and_loudness(new_page):
    from mutagen.id3 import ID3

    page = new_page()
    metrics = _synthesize_lesson(page, "mp3")

    # The result line: loudness near the -16 LUFS default, and the two chapters.
    loud = re.search(r"loudness ([−-]?\d+(?:\.\d+)?) LUFS", metrics)
    assert loud, metrics
    assert float(loud.group(1).replace("−", "-")) == pytest.approx(-16.0, abs=0.5)
    assert "2 chapter(s)" in metrics

    # The jump links list both headings, in order.
    links = page.locator("#tts-chapters a[data-seek]")
    assert links.count() == 2
    assert [t.split(" ", 1)[1] for t in links.all_inner_texts()] == ["Boiling water", "Melting ice"]

    # Downloads: the tagged audio, both subtitle formats and the chapters file.
    files = _links(page, "#tts-downloads")
    names = list(files)
    assert [n for n in names if n.endswith(".mp3")], names
    assert [n for n in names if n.endswith(".srt")], names
    assert [n for n in names if n.endswith(".vtt") and not n.endswith(".chapters.vtt")], names
    assert [n for n in names if n.endswith(".chapters.vtt")], names
    mp3 = _download(page, next(u for n, u in files.items() if n.endswith(".mp3")))
    tags = ID3(io.BytesIO(mp3))
    assert str(tags["TIT2"]) == TAGS["title"]
    assert str(tags["TPE1"]) == TAGS["teacher"]
    assert str(tags["TALB"]) == TAGS["course"]
    chapters = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [str(c.sub_frames["TIT2"]) for c in chapters] == ["Boiling water", "Melting ice"]
    assert len(tags.getall("CTOC")) == 1
    second_start_s = chapters[1].start_time / 1000
    assert second_start_s > 1.0
    srt = _download(page, next(u for n, u in files.items() if n.endswith(".srt"))).decode()
    for sentence in SENTENCES:
        assert sentence in srt
    chapters_vtt = _download(page, next(u for n, u in files.items()
                                        if n.endswith(".chapters.vtt"))).decode()
    assert chapters_vtt.startswith("WEBVTT") and "Melting ice" in chapters_vtt

    # The replay player holds that same file; the second link moves it to the second chapter.
    page.wait_for_function(f"({AUDIOS_JS})('#tts-audio').some(a => a.duration > 0)",
                           timeout=30_000)
    duration = page.evaluate(f"Math.max(...({AUDIOS_JS})('#tts-audio').map(a => a.duration || 0))")
    assert duration == pytest.approx(load(mp3).duration_s, abs=0.2)
    page.evaluate(f"""() => ({AUDIOS_JS})('#tts-audio').forEach(a => a.addEventListener(
        'seeked', () => {{ window.__seekedTo = a.currentTime; }}))""")
    links.nth(1).click()
    seeked_to = page.wait_for_function("window.__seekedTo ?? null", timeout=10_000).json_value()
    assert seeked_to == pytest.approx(second_start_s, abs=0.3)
    page.wait_for_function(f"({AUDIOS_JS})('#tts-audio').some(a => !a.paused)", timeout=10_000)
    now_s = page.evaluate(f"""() => {{ const a = ({AUDIOS_JS})('#tts-audio').find(a => !a.paused);
        a.pause(); return a.currentTime; }}""")
    assert second_start_s - 0.05 <= now_s <= second_start_s + 1.5  # it plays from there
    page.screenshot(path=str(SCREENSHOT_DIR / "lesson-synthesized.png"), full_page=True)


def test_check_then_read_along_page(new_page):
    page = new_page()
    _synthesize_lesson(page, "mp3")  # the same lesson: a cache hit after the first test

    _open(page, "lesson-check")
    page.click("#lesson-check-run")
    page.wait_for_function(
        "() => /sentences (came out as written|\\*?\\*? ?may have come out wrong)|of \\d+ sentences/"
        ".test(document.querySelector('#lesson-check-summary').innerText)", timeout=60_000)
    summary = page.inner_text("#lesson-check-summary")
    assert "Traceback" not in summary
    everything_ok = re.search(r"All (\d+) sentences came out as written", summary)
    flagged = re.search(r"(\d+) of (\d+) sentences", summary)
    assert everything_ok or flagged, summary
    total = int(everything_ok.group(1) if everything_ok else flagged.group(2))
    assert total >= len(SENTENCES)
    assert "Word error rate of the whole lesson" in summary
    if flagged:  # the table lists exactly the sentences the summary counts, with both texts
        page.wait_for_function("n => document.querySelectorAll('#lesson-check-flagged "
                               "[role=row][data-index]').length === n",
                               arg=int(flagged.group(1)), timeout=10_000)
        written = page.locator("#lesson-check-flagged [role=gridcell][data-col='2']").all_inner_texts()
        # Each as the lesson wrote it (a speaker's line with its label, as in the subtitles).
        known = (*SENTENCES, "Boiling water", "Melting ice")
        assert all(w.endswith(known) for w in written), written
    else:  # nothing to look at: no empty table
        assert not page.locator("#lesson-check-flagged").is_visible()
    page.screenshot(path=str(SCREENSHOT_DIR / "lesson-check.png"), full_page=True)

    page.click("#lesson-readalong-run")
    page.wait_for_function("document.querySelectorAll('#lesson-readalong-file a[href]').length > 0",
                           timeout=30_000)
    (name, url), = _links(page, "#lesson-readalong-file").items()
    assert name.endswith(".html") and "states-of-water" in name
    page_html = _download(page, url).decode("utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page_html)).split())
    text = re.sub(r" ([.,?!])", r"\1", text)  # word spans leave a space before punctuation
    for sentence in SENTENCES:
        assert sentence in text, (sentence, text[:2000])
    assert "<audio" in page_html and "data:audio/mpeg;base64," in page_html
    page.screenshot(path=str(SCREENSHOT_DIR / "lesson-read-along-ready.png"), full_page=True)

    # A new synthesis (the lesson again, as WAV: its sentences come from the cache) makes the
    # check and the page stale: they go, rather than describe the previous audio.
    page.locator("#tts-format label[data-testid=wav-radio-label]").click()
    page.click("#tts-run")
    page.wait_for_function("[...document.querySelectorAll('#tts-downloads a[href]')]"
                           ".some(a => a.href.endsWith('.wav'))", timeout=60_000)
    page.wait_for_function("document.querySelector('#lesson-check-summary').innerText.trim() === ''",
                           timeout=10_000)
    assert page.locator("#lesson-readalong-file a[href]").count() == 0
    assert not page.locator("#lesson-check-flagged").is_visible()


def test_a_whole_course_as_one_zip(new_page, tmp_path):
    first = tmp_path / "01-magnets.md"
    first.write_text("# Magnets\n\nMagnets pull iron.\n\nThey push other magnets away.\n",
                     encoding="utf-8")
    second = tmp_path / "02-light.txt"
    second.write_text("Light travels very fast.\n", encoding="utf-8")

    page = new_page()
    _fill_details(page)
    _open(page, "course")
    page.set_input_files("#course-files input[type=file]", [str(first), str(second)])
    page.wait_for_function("document.querySelector('#course-files').innerText.includes('02-light')",
                           timeout=30_000)
    page.click("#course-run")
    page.wait_for_function("document.querySelectorAll('#course-zip a[href]').length > 0",
                           timeout=90_000)
    summary = page.inner_text("#course-summary")
    assert "2 of 2 lessons" in summary, summary
    assert "Magnets" in summary and "Light" in summary
    assert summary.count("LUFS") == 2  # each lesson's loudness, for "equally loud"
    (name, url), = _links(page, "#course-zip").items()
    assert name.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(_download(page, url))) as archive:
        names = set(archive.namelist())
        assert {"index.html", "index.json"} <= names, names
        index = archive.read("index.html").decode()
        for stem, sentence in (("01-magnets", "Magnets pull iron."),
                               ("02-light", "Light travels very fast.")):
            assert {f"{stem}.mp3", f"{stem}.srt", f"{stem}.vtt"} <= names, names
            assert sentence in archive.read(f"{stem}.srt").decode()
            assert archive.read(f"{stem}.vtt").decode().startswith("WEBVTT")
            audio = load(archive.read(f"{stem}.mp3"))
            assert audio.duration_s > 0.5
            # Equally loud: each decoded file within 0.5 LU of the -16 LUFS default.
            lufs = pyln.Meter(audio.sample_rate).integrated_loudness(audio.samples)
            assert lufs == pytest.approx(-16.0, abs=0.5), (stem, lufs)
            assert f'href="{stem}.mp3"' in index
        assert TAGS["course"] in index
    page.screenshot(path=str(SCREENSHOT_DIR / "lesson-course.png"), full_page=True)


def test_bad_speaker_and_empty_course_show_clear_messages(new_page, tmp_path):
    page = new_page()
    page.fill("#tts-text textarea", LESSON)
    _open(page, "lesson-details")
    page.fill("#speaker-name-2 input", "Teacher #2")  # row 3 already has a voice
    page.click("#tts-run")
    message = _error_toast(page, "cannot be a speaker name")
    assert "Teacher #2" in message and "like Teacher or Ms Lee" in message
    page.screenshot(path=str(SCREENSHOT_DIR / "lesson-bad-speaker.png"), full_page=True)

    page.fill("#speaker-name-2 input", "")
    _open(page, "course")
    page.click("#course-run")  # nothing uploaded
    _error_toast(page, "Upload the lesson files first")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n---\n\n", encoding="utf-8")
    page.set_input_files("#course-files input[type=file]", [str(empty)])
    page.wait_for_function("document.querySelector('#course-files').innerText.includes('empty')",
                           timeout=30_000)
    page.click("#course-run")
    _error_toast(page, "There is no lesson text in the files")
    page.screenshot(path=str(SCREENSHOT_DIR / "lesson-course-empty.png"), full_page=True)
