"""Read-along pages (issue 12): aligning the recogniser's spoken words to the written text, on
constructed cases and on a real lesson (bundled Piper voice, transcribed by the bundled
tiny.en), and the page itself: escaping, no external resources, chapters, the audio_href
variant, and its size per minute of audio."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest

from webapp.config import Settings
from webapp.pipeline.cache import DiskSynthesisCache
from webapp.pipeline.errors import InputError
from webapp.pipeline.lesson.readalong import TimedWord, align_words, render
from webapp.pipeline.stt.base import Word
from webapp.pipeline.stt.registry import STTRegistry
from webapp.pipeline.subtitles import Chapter, Cue
from webapp.pipeline.synthesis import SynthesisRequest, Synthesizer
from webapp.pipeline.tts.registry import TTSRegistry

LESSON = ("Water is H2O. It boils at 100 °C at sea level.\n\n"
          "Ice melts at 0 °C, and 25 °C is room temperature. Is x < 5 & y > 2?")


def heard(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(" " + text, start, end) for text, start, end in items]


def by_text(timed: list[TimedWord]) -> dict[str, TimedWord]:
    return {w.text: w for w in timed}


# -- alignment on constructed cases ----------------------------------------------------------

def test_identical_words_take_the_recognised_times():
    cue = Cue(0.0, 1.5, "Water is H2O.")
    [timed] = align_words([cue], heard(("Water", 0.0, 0.34), ("is", 0.34, 0.6),
                                       ("H2O.", 0.6, 1.45)))
    assert timed == [TimedWord("Water", 0.0, 0.34), TimedWord("is", 0.34, 0.6),
                     TimedWord("H2O.", 0.6, 1.45)]


def test_spoken_forms_share_the_time_of_what_was_said():
    cues = [Cue(0.0, 1.6, "Water is H2O."), Cue(1.8, 4.0, "Room temperature is 25 °C.")]
    words = heard(("Water", 0.0, 0.3), ("is", 0.3, 0.5), ("H", 0.5, 0.8), ("two", 0.8, 1.1),
                  ("O.", 1.1, 1.5),
                  ("Room", 1.8, 2.0), ("temperature", 2.0, 2.5), ("is", 2.5, 2.7),
                  ("25", 2.7, 3.1), ("degrees", 3.1, 3.5), ("Celsius.", 3.5, 3.9))
    first, second = align_words(cues, words)
    assert by_text(first)["H2O."][1:] == (0.5, 1.5)  # "H two O"
    assert by_text(second)["°C."][1:] == (3.1, 3.9)  # "degrees Celsius"
    assert by_text(second)["25"][1:] == (2.7, 3.1)


def test_symbols_without_letters_are_interpolated_between_their_neighbours():
    cue = Cue(10.0, 13.0, "Is x < 5 & y?")
    words = heard(("Is", 10.0, 10.2), ("X", 10.2, 10.4), ("is", 10.4, 10.6), ("less", 10.6, 10.9),
                  ("than", 10.9, 11.2), ("5", 11.2, 11.5), ("and", 11.5, 11.7), ("Y?", 11.7, 12.0))
    [timed] = align_words([cue], words)
    t = by_text(timed)
    assert t["<"][1:] == (10.4, 11.2)  # from "x" to "5": "is less than"
    assert t["&"][1:] == (11.5, 11.7)  # from "5" to "y": "and"
    assert t["y?"][1:] == (11.7, 12.0)


def test_unmatched_words_at_the_edges_reach_the_cue_boundaries():
    cue = Cue(2.0, 4.0, "Well, photosynthesis matters a lot")
    words = heard(("photosynthesis", 2.5, 3.2), ("matters", 3.2, 3.5))
    [timed] = align_words([cue], words)
    t = by_text(timed)
    assert t["Well,"][1:] == (2.0, 2.5)
    assert t["a"].start_s == 3.5 and t["lot"].end_s == 4.0
    assert t["a"].end_s == t["lot"].start_s  # "a" and "lot" share 3.5..4.0 by length
    assert t["lot"].end_s - t["lot"].start_s > t["a"].end_s - t["a"].start_s


def test_words_go_to_the_cue_their_midpoint_falls_in_pauses_included():
    cues = [Cue(0.0, 1.0, "One two."), Cue(2.0, 3.0, "Three four.")]
    # "two" slips into the pause but its midpoint (1.3) is nearer the first cue; "three" starts
    # early, midpoint 1.8, nearer the second.
    words = heard(("One", 0.1, 0.5), ("two.", 0.9, 1.7), ("Three", 1.6, 2.0), ("four.", 2.1, 2.9))
    first, second = align_words(cues, words)
    assert [w.text for w in first] == ["One", "two."]
    assert by_text(first)["two."][1:] == (0.9, 1.0)  # clamped into its cue
    assert by_text(second)["Three"][1:] == (2.0, 2.0)
    assert by_text(second)["four."][1:] == (2.1, 2.9)


def test_a_cue_with_nothing_matching_gets_sentence_highlighting_only():
    cues = [Cue(0.0, 1.0, "Bonjour tout le monde."), Cue(1.2, 2.0, "Hello world.")]
    words = heard(("Bone", 0.0, 0.3), ("jury", 0.3, 0.9), ("Hello", 1.2, 1.5),
                  ("world.", 1.5, 1.9))
    first, second = align_words(cues, words)
    assert first is None
    assert [w.text for w in second] == ["Hello", "world."]
    assert align_words(cues, []) == [None, None]
    assert align_words([], words) == []


def test_written_words_heard_as_one_share_its_time():
    cue = Cue(0.0, 2.0, "It boils at 100 °C here.")
    words = heard(("It", 0.0, 0.2), ("boils", 0.2, 0.5), ("at", 0.5, 0.7),
                  ("100°C", 0.7, 1.6), ("here.", 1.6, 2.0))
    [timed] = align_words([cue], words)
    t = by_text(timed)
    assert t["100"].start_s == 0.7 and t["°C"].end_s == 1.6
    assert t["100"].end_s == t["°C"].start_s  # split by length: "100" 3, "C" 1
    assert t["100"].end_s == pytest.approx(0.7 + 0.9 * 3 / 4, abs=1e-3)


def test_repeated_words_and_out_of_order_timings_stay_in_order_inside_the_cue():
    cue = Cue(5.0, 8.0, "the the cat sat on the mat")
    words = heard(("the", 5.0, 5.2), ("cat", 5.6, 5.9), ("sat", 5.5, 6.2), ("on", 6.2, 6.4),
                  ("the", 6.4, 6.5), ("mat", 6.5, 8.6))
    [timed] = align_words([cue], words)
    assert [w.text for w in timed] == cue.text.split()
    starts = [w.start_s for w in timed]
    assert starts == sorted(starts)
    assert all(cue.start_s <= w.start_s <= w.end_s <= cue.end_s for w in timed)


# -- alignment on a real lesson: Piper speaks it, tiny.en hears it ---------------------------

@pytest.fixture(scope="module")
def lesson(tmp_path_factory):
    """The synthesised lesson as MP3 (what a page embeds) and tiny.en's words on it."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("readalong"))
    synth = Synthesizer(settings, TTSRegistry(settings),
                        DiskSynthesisCache(settings.data_dir / "cache", 64))
    result = synth.run(SynthesisRequest(text=LESSON, fmt="mp3"))
    transcript = STTRegistry(settings).get("faster-whisper", "tiny.en").transcribe(
        result.audio.resample(16_000))
    return result, transcript


def test_real_lesson_words_are_aligned_inside_their_sentence_and_in_order(lesson):
    result, transcript = lesson
    assert len(result.cues) == 4
    aligned = align_words(result.cues, transcript.words)
    assert all(a is not None for a in aligned), transcript.text
    for cue, timed in zip(result.cues, aligned):
        assert [w.text for w in timed] == cue.text.split()
        starts = [w.start_s for w in timed]
        assert starts == sorted(starts), timed
        assert all(cue.start_s <= w.start_s <= w.end_s <= cue.end_s + 1e-3 for w in timed)
    # A word said as written keeps the recogniser's time ...
    spoken = {w.text.strip(" .,!?").lower(): w for w in transcript.words}
    boils = by_text(aligned[1])["boils"]
    assert abs(boils.start_s - spoken["boils"].start_s) < 0.05
    # ... and a written form spoken differently ("°C" as "degrees Celsius") comes after the
    # number before it and gets a real share of the time they were said in.
    hundred, celsius = by_text(aligned[1])["100"], by_text(aligned[1])["°C"]
    assert celsius.start_s >= hundred.end_s - 0.05, transcript.words
    assert celsius.end_s - celsius.start_s > 0.15


def test_real_lesson_page_embeds_the_audio_and_its_size_per_minute(lesson):
    result, transcript = lesson
    page = render(result.data, "audio/mpeg", result.cues, words=transcript.words,
                  title="States of water")
    src = re.search(r'<source src="data:audio/mpeg;base64,([A-Za-z0-9+/=]+)"', page)
    assert src and base64.b64decode(src.group(1)) == result.data
    minutes = result.audio_s / 60
    audio_mb_per_min = len(result.data) / 1e6 / minutes
    page_mb_per_min = len(page.encode()) / 1e6 / minutes
    print(f"read-along page: {result.audio_s:.1f} s of audio, MP3 {len(result.data)} B, "
          f"page {len(page.encode())} B: {audio_mb_per_min:.2f} MB audio and "
          f"{page_mb_per_min:.2f} MB page per minute")
    # The module docstring promises about 0.6 MB of page per minute (6 MB for 10 minutes).
    assert page_mb_per_min < 0.8
    assert page.count('class="w"') == sum(len(c.text.split()) for c in result.cues)


# -- the page --------------------------------------------------------------------------------

class Page(HTMLParser):
    """Every part of a document, sorted into text (what the reader sees) and the rest."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.code: list[str] = []  # script and style contents, comments, declarations
        self.text: list[str] = []
        self.by_id: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        element_id = dict(attrs).get("id")
        if tag not in ("meta", "source", "br", "input", "link", "img"):
            self._open.append((tag, element_id))
        if element_id:
            self.by_id[element_id] = []

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        if self._open and self._open[-1][0] in ("script", "style"):
            self.code.append(data)
            return
        self.text.append(data)
        for _, element_id in self._open:
            if element_id:
                self.by_id[element_id].append(data)

    def handle_comment(self, data):
        self.code.append("<!--" + data)

    def handle_decl(self, decl):
        self.code.append(decl)

    def text_of(self, element_id: str) -> str:
        return " ".join("".join(self.by_id[element_id]).split())


HOSTILE = [
    Cue(0.0, 1.0, 'If x < 5 && y > 2 --> "done", it\'s true.'),
    Cue(1.2, 2.0, "</span></p><script>alert(1)</script><!-- a comment -->"),
    Cue(2.2, 3.0, "See https://cdn.example.net/a.js and //example.org/b.css &amp; more."),
]
HOSTILE_TITLE = '<img src=x onerror="alert(1)"> Tom & "Jerry"'


@pytest.mark.parametrize("with_words", [False, True])
def test_all_lesson_text_is_escaped_and_reads_as_written(with_words):
    words = [Word(" " + t, i * 0.1, i * 0.1 + 0.1)
             for i, t in enumerate(" ".join(c.text for c in HOSTILE).split())] if with_words else ()
    chapters = [Chapter(0.0, 3.0, 'Part <1> & "intro" -->')]
    doc = Page(render(b"ID3fake", "audio/mpeg", HOSTILE, words=words, chapters=chapters,
                      title=HOSTILE_TITLE))
    assert doc.tags.count("script") == 1 and doc.tags.count("style") == 1
    assert "img" not in doc.tags
    assert not [c for c in doc.code if c.startswith("<!--")]
    for i, cue in enumerate(HOSTILE, start=1):
        assert doc.text_of(f"s{i}") == cue.text
    assert doc.text_of("chapter-1") == chapters[0].title
    assert HOSTILE_TITLE in doc.text
    assert (doc.attrs.count(("span", "class", "w")) > 0) == with_words
    assert not [v for _, name, v in doc.attrs if name.startswith("on")]


def test_the_page_loads_nothing_from_anywhere():
    page = render(b"ID3fake", "audio/mpeg", HOSTILE, title="Links are only text",
                  chapters=[Chapter(0.0, 3.0, "https://example.com/chapter")])
    doc = Page(page)
    url = re.compile(r"(?i)\b(?:https?|ftp|wss?|file):|(?<![:/\w])//[\w.-]+\.[a-z]{2,}")
    outside_text = [v for _, _, v in doc.attrs] + doc.code
    assert not [part for part in outside_text if url.search(part)]
    # Lesson text may mention addresses; they stay text, never links or sources.
    assert any("https://cdn.example.net/a.js" in t for t in doc.text)
    for tag, name, value in doc.attrs:
        if name in ("src", "href", "action", "poster", "srcset", "data"):
            assert value.startswith(("data:audio/mpeg;base64,", "#")), (tag, name, value)
    assert "url(" not in "".join(doc.code) and "@import" not in "".join(doc.code)
    script = "".join(doc.code)
    for api in ("fetch(", "XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon",
                "import(", "importScripts"):
        assert api not in script
    csp = [v for tag, name, v in doc.attrs if tag == "meta" and name == "content"
           and "default-src" in v]
    assert csp and "default-src 'none'" in csp[0] and "connect-src" not in csp[0]


def test_audio_beside_the_page():
    page = render(b"", "audio/mpeg", HOSTILE, audio_href="lesson 1.mp3")
    assert "base64" not in page
    doc = Page(page)
    assert ("source", "src", "lesson%201.mp3") in doc.attrs
    csp = next(v for tag, name, v in doc.attrs if name == "content" and "default-src" in v)
    assert "media-src 'self' data:" in csp
    for bad in ("https://example.com/a.mp3", "//example.com/a.mp3", "/abs/a.mp3",
                "javascript:alert(1)", "C:\\a.mp3", ""):
        with pytest.raises(InputError, match="relative path"):
            render(b"", "audio/mpeg", HOSTILE, audio_href=bad)


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(InputError, match="audio"):
        render(b"", "audio/mpeg", HOSTILE)
    with pytest.raises(InputError, match="mime"):
        render(b"x", 'audio/mpeg" onload="x', HOSTILE)
    with pytest.raises(InputError, match="lang"):
        render(b"x", "audio/mpeg", HOSTILE, lang='en"><script>')


def test_chapters_paragraphs_and_controls():
    cues = [Cue(0.0, 1.0, "One."), Cue(1.2, 2.0, "Two."),  # 0.2 s: same paragraph
            Cue(2.75, 3.5, "Three."),  # 0.75 s: a new paragraph
            Cue(3.7, 4.5, "Four.")]
    chapters = [Chapter(0.0, 3.5, "Start"), Chapter(3.7, 4.5, "End")]
    page = render(b"x", "audio/wav", cues, chapters=chapters, title="T", lang="pt-BR")
    assert '<html lang="pt-BR">' in page
    assert re.search(r'<a href="#chapter-1" data-start="0.000">Start</a>', page)
    assert re.search(r'<a href="#chapter-2" data-start="3.700">End</a>', page)
    sections = page.split('<section class="chapter"')[1:]
    assert len(sections) == 2
    assert 'id="s1"' in sections[0] and 'id="s3"' in sections[0] and 'id="s4"' in sections[1]
    assert re.search(r'id="s2".*?</span></p><p><span class="s" id="s3"', sections[0])
    for i in range(1, 5):
        assert re.search(rf'<span class="s" id="s{i}" role="button" tabindex="0"', page)
    speeds = re.findall(r'<option value="([\d.]+)"', page)
    assert speeds[0] == "0.5" and speeds[-1] == "2" and "1" in speeds
    assert '<audio id="audio" controls' in page and 'type="audio/wav"' in page
    assert "<kbd>Space</kbd>" in page and "<kbd>←</kbd>" in page  # shortcuts on the page
    assert "@media (prefers-color-scheme:dark)" in page


@pytest.mark.parametrize("with_words", [False, True])
def test_a_unit_stays_on_the_line_of_its_number(with_words):
    cue = Cue(0.0, 2.0, "Water boils at 100 °C, and 50 % of 2 cats.")
    words = heard(*[(w, 0.1 * i, 0.1 * i + 0.1) for i, w in enumerate(cue.text.split())])
    page = render(b"x", "audio/mpeg", [cue], words=words if with_words else ())
    doc = Page(page)
    assert doc.text_of("s1") == cue.text
    text = "".join(doc.by_id["s1"])
    assert "100\u00a0°C," in text and "50\u00a0%" in text and "2 cats" in text


def test_no_chapters_no_words_no_text():
    page = render(b"x", "audio/mpeg", [Cue(0.0, 1.0, "Only.")])
    assert "Chapters" not in page and 'class="w"' not in page
    assert "sentence by sentence as it is read" in page
    empty = render(b"x", "audio/mpeg", [Cue(0.0, 1.0, "  ")])
    assert "no text to follow" in empty and 'class="s"' not in empty
