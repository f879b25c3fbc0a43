"""Read-along pages (issue 12): one self-contained HTML file in which the lesson text lights up
sentence by sentence, and word by word where word timings exist, while its audio plays.

A student opens the file from a USB stick or a course zip, with no network: the page loads
nothing from anywhere (no CDN, no web fonts, no analytics; a Content-Security-Policy in the
page itself forbids every fetch but the audio), its CSS and JS are inline, and the audio is
either embedded as a base64 ``data:`` URI or sits beside the file (``audio_href``, for the
course zip, where several pages would otherwise each carry their own copy).

Size of the embedded page: base64 makes the audio 4/3 larger, and the rest of the page is a few
kB plus about 100 bytes per word. Measured on the bundled Piper voice (22.05 kHz mono) through
``webapp.pipeline.audio.encode``, see tests/test_readalong.py: MP3 is about 0.45 MB of audio, so
0.6 MB of page, per minute, which makes 10 minutes about 6 MB; WAV would be 2.6 MB of audio and
3.5 MB of page per minute (35 MB for 10 minutes). So embed MP3.

Word timings come from recognising the generated audio (``align_words``): the recogniser hears
the *spoken* form, and the page shows what the teacher *wrote*.

Nothing here imports a UI framework; ``render`` is a pure function from data to a string.
"""

from __future__ import annotations

import base64
import bisect
import difflib
import html
import re
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import quote

from webapp.pipeline.errors import InputError
from webapp.pipeline.stt.base import Word
from webapp.pipeline.subtitles import Chapter, Cue

PARAGRAPH_GAP_S = 0.5
"""A silence at least this long between two cues starts a new paragraph on the page. The
synthesizer puts 0.2 s between sentences and 0.75 s between paragraphs
(``webapp.pipeline.synthesis.SENTENCE_GAP_S`` / ``PARAGRAPH_GAP_S``); 0.5 s sits between them and
is not imported so that rendering a page does not load the synthesis stack."""

SPEEDS = (0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0)
"""The speed control's choices (``HTMLMediaElement.playbackRate``, pitch preserved)."""

_TOKEN = re.compile(r"[^\W_]+")
_MIME = re.compile(r"^audio/[A-Za-z0-9][A-Za-z0-9.+-]{0,60}$")
_LANG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_UNIT_SYMBOLS = frozenset("°%‰′″")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# C0/C1 controls and lone surrogates are not allowed in HTML text (tab, newline and CR are).
_NOT_HTML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class TimedWord(NamedTuple):
    """A written word of a cue (as ``cue.text.split()`` gives it, punctuation attached) and
    when it is spoken."""

    text: str
    start_s: float
    end_s: float


# -- alignment -------------------------------------------------------------------------------

def _tokens(text: str) -> list[str]:
    """Lower-case alphanumeric runs: "H2O." -> ["h2o"], "°C," -> ["c"], "<" -> []."""
    return _TOKEN.findall(text.lower())


def _windows(cues: Sequence[Cue]) -> list[tuple[float, float]]:
    """For each cue, the span of time whose recognised words belong to it: the cue itself,
    widened to the middle of the silence on either side (the first and last reach to -inf and
    +inf), so a word whose timing slips into a pause still finds its sentence."""
    order = sorted(range(len(cues)), key=lambda i: (cues[i].start_s, cues[i].end_s))
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(cues)
    for rank, i in enumerate(order):
        lo = float("-inf") if rank == 0 else (cues[order[rank - 1]].end_s + cues[i].start_s) / 2
        hi = (float("inf") if rank == len(order) - 1
              else (cues[i].end_s + cues[order[rank + 1]].start_s) / 2)
        out[i] = (lo, hi)
    return out


def _spread(weights: Sequence[int], start_s: float, end_s: float) -> list[tuple[float, float]]:
    """Cut [start_s, end_s] into consecutive pieces proportional to ``weights``."""
    total = sum(weights) or 1
    span = max(0.0, end_s - start_s)
    out, t = [], start_s
    for w in weights:
        step = span * w / total
        out.append((t, t + step))
        t += step
    return out


def _weight(word: str) -> int:
    """Interpolation weight of a written word: its length without punctuation, at least 1
    (spoken length grows with written length, roughly; "<" still takes some time)."""
    return max(1, sum(len(t) for t in _tokens(word)))


def _align_cue(cue: Cue, heard: Sequence[Word]) -> list[TimedWord] | None:
    written = cue.text.split()
    if not written or not heard:
        return None
    w_tok = [(k, t) for k, word in enumerate(written) for t in _tokens(word)]
    h_tok = [(k, t) for k, word in enumerate(heard) for t in _tokens(word.text)]
    matcher = difflib.SequenceMatcher(None, [t for _, t in w_tok], [t for _, t in h_tok],
                                      autojunk=False)
    opcodes = matcher.get_opcodes()
    spans: list[tuple[float, float] | None] = [None] * len(written)

    def widen(k: int, start_s: float, end_s: float) -> None:
        old = spans[k]
        spans[k] = (start_s, end_s) if old is None else (min(old[0], start_s), max(old[1], end_s))

    # 1. Same token: the written word takes the recognised word's time.
    source: dict[int, tuple[int, int]] = {}  # written word -> first, last recognised word
    for tag, i1, i2, j1, _ in opcodes:
        if tag == "equal":
            for a in range(i2 - i1):
                k, h_index = w_tok[i1 + a][0], h_tok[j1 + a][0]
                h = heard[h_index]
                widen(k, h.start_s, h.end_s)
                first, last = source.get(k, (h_index, h_index))
                source[k] = (min(first, h_index), max(last, h_index))
    if not source:
        return None  # the recogniser heard something else: sentence highlighting only
    # Neighbours written apart but heard as one word ("100 °C" / "100°C") share its time.
    k = 0
    while k < len(written):
        run_end = k + 1
        while run_end < len(written) and k in source and source.get(run_end) == source[k]:
            run_end += 1
        if run_end - k > 1:
            span = spans[k]
            assert span is not None
            for m, piece in zip(range(k, run_end),
                                _spread([_weight(w) for w in written[k:run_end]], *span)):
                spans[m] = piece
        k = run_end
    # 2. Written and spoken forms differ ("°C" / "degrees Celsius", "H2O" / "H two O", "0" /
    # "zero"): the written words of the block, those still without a time, share the time of
    # the recognised words of the block.
    for tag, i1, i2, j1, j2 in opcodes:
        if tag != "replace":
            continue
        owners = list(dict.fromkeys(w_tok[i][0] for i in range(i1, i2)))
        owners = [k for k in owners if spans[k] is None]
        if not owners:
            continue
        h_words = [heard[k] for k in dict.fromkeys(h_tok[j][0] for j in range(j1, j2))]
        pieces = _spread([_weight(written[k]) for k in owners],
                         min(h.start_s for h in h_words), max(h.end_s for h in h_words))
        for k, (s, e) in zip(owners, pieces):
            spans[k] = (s, e)
    # 3. Still nothing (no letters or digits, like "<" or "&", or a word the recogniser
    # dropped): interpolate between the matched neighbours, or the cue's edges.
    k = 0
    while k < len(written):
        if spans[k] is not None:
            k += 1
            continue
        gap_end = k
        while gap_end < len(written) and spans[gap_end] is None:
            gap_end += 1
        prev_s = spans[k - 1][1] if k > 0 else cue.start_s  # type: ignore[index]
        next_s = spans[gap_end][0] if gap_end < len(written) else cue.end_s  # type: ignore[index]
        for m, piece in zip(range(k, gap_end),
                            _spread([_weight(w) for w in written[k:gap_end]], prev_s,
                                    max(prev_s, next_s))):
            spans[m] = piece
        k = gap_end
    # Inside the cue and in order, so the page's word highlight never runs ahead of or behind
    # its sentence.
    out: list[TimedWord] = []
    last = cue.start_s
    for word, span in zip(written, spans):
        assert span is not None
        start = min(max(span[0], last, cue.start_s), cue.end_s)
        end = min(max(span[1], start), cue.end_s)
        out.append(TimedWord(word, round(start, 3), round(end, 3)))
        last = start
    return out


def align_words(cues: Sequence[Cue], words: Sequence[Word]) -> list[list[TimedWord] | None]:
    """Times for the *written* words of each cue, from the recogniser's *spoken* words.

    The rule, per cue (the answer has one entry per cue, in the order given):

    1. By time: a recognised word belongs to the cue its midpoint falls in. Each cue is widened
       to the middle of the silence before and after it (the first and last cue to the start
       and end of time), so a word whose timing slips into a pause is not lost.
    2. By text: the cue's written words (``cue.text.split()``, punctuation attached) and those
       recognised words are both cut into lower-case alphanumeric tokens and matched with
       ``difflib.SequenceMatcher``. A written word with an identical token takes that
       recognised word's time ("H2O." / "H2O").
    3. Where the matcher pairs a run of written tokens with a run of different recognised ones
       (a "replace": "°C" / "degrees Celsius", "H2O" / "H two O", "0" / "zero"), the written
       words of the run that have no time yet share the recognised run's time, in proportion
       to their length.
    4. Written words still without a time (no letters or digits, like "<" or "&", or a word
       the recogniser missed) are interpolated between their matched neighbours in the cue, or
       the cue's start and end, in proportion to their length.
    5. If no token of the cue matched at all (step 2), the cue gets ``None``: the page then
       highlights the sentence only, rather than words at invented times.

    Times are finally clamped into the cue and made non-decreasing.
    """
    cues = list(cues)
    if not cues:
        return []
    windows = _windows(cues)
    heard = sorted(words, key=lambda w: (w.start_s, w.end_s))
    mids = [(w.start_s + w.end_s) / 2 for w in heard]
    out: list[list[TimedWord] | None] = []
    for cue, (lo, hi) in zip(cues, windows):
        first = bisect.bisect_left(mids, lo)
        last = bisect.bisect_left(mids, hi)
        out.append(_align_cue(cue, heard[first:last]))
    return out


# -- rendering -------------------------------------------------------------------------------

def _esc(text: str) -> str:
    """Text for an HTML text node or a quoted attribute: every "<", ">", "&", '"' and "'"
    escaped, characters HTML forbids removed, whitespace runs collapsed."""
    return html.escape(" ".join(_NOT_HTML.sub("", text).split()), quote=True)


def clock(seconds: float) -> str:
    """A time for people: "4:05", or "1:02:05" past the hour."""
    total = max(0, int(seconds))
    hours, rem = divmod(total, 3600)
    minutes, secs = divmod(rem, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _t(seconds: float) -> str:
    return f"{max(0.0, seconds):.3f}"


def _audio_src(audio: bytes, mime: str, audio_href: str | None) -> str:
    if audio_href is not None:
        href = audio_href.strip()
        if not href or _SCHEME.match(href) or href.startswith(("/", "\\")) or "\\" in href:
            raise InputError("audio_href must be a relative path to a file beside the page "
                             f"(like 'lesson.mp3'); got {audio_href!r}.")
        return quote(href, safe="/-._~")
    if not audio:
        raise InputError("The read-along page needs the lesson audio: pass its bytes, or "
                         "audio_href for a file beside the page.")
    return f"data:{mime};base64,{base64.b64encode(audio).decode('ascii')}"


def _space(before: str, after: str) -> str:
    """The space between two written words: a no-break space between a number and a unit
    symbol ("25 °C", "50 %"), so a line never starts with the unit."""
    return "\u00a0" if before[-1:].isdigit() and after[:1] in _UNIT_SYMBOLS else " "


def _sentence(index: int, cue: Cue, timed: list[TimedWord] | None) -> str:
    texts = [w.text for w in timed] if timed else cue.text.split()
    pieces = [_esc(t) for t in texts]
    if timed:
        pieces = [f'<span class="w" data-start="{_t(w.start_s)}" data-end="{_t(w.end_s)}">'
                  f"{piece}</span>" for w, piece in zip(timed, pieces)]
    inner = "".join(piece if k == 0 else _space(texts[k - 1], texts[k]) + piece
                    for k, piece in enumerate(pieces))
    return (f'<span class="s" id="s{index}" role="button" tabindex="0" '
            f'data-start="{_t(cue.start_s)}" data-end="{_t(cue.end_s)}">{inner}</span>')


def _body_text(cues: list[Cue], aligned: list[list[TimedWord] | None],
               chapters: list[Chapter]) -> str:
    """Sections (one per chapter, plus any text before the first) of paragraphs of sentences.
    ``cues`` and ``chapters`` are in time order."""
    if not cues:
        return '<p class="note">This lesson has no text to follow.</p>'
    # A cue belongs to the last chapter that starts before it (50 ms of slack for rounding).
    chapter_starts = [c.start_s for c in chapters]
    parts: list[str] = []
    current: int | None = None
    for i, cue in enumerate(cues):
        owner = bisect.bisect_right(chapter_starts, cue.start_s + 0.05) - 1
        if owner != current:
            if current is not None:
                parts.append("</p></section>")
            current = owner
            if owner >= 0:
                parts.append(f'<section class="chapter" aria-labelledby="chapter-{owner + 1}">'
                             f'<h2 id="chapter-{owner + 1}" tabindex="-1">'
                             f"{_esc(chapters[owner].title)}</h2>")
            else:
                parts.append("<section>")
            parts.append("<p>")
        elif cue.start_s - cues[i - 1].end_s >= PARAGRAPH_GAP_S:
            parts.append("</p><p>")
        else:
            parts.append(" ")
        parts.append(_sentence(i + 1, cue, aligned[i]))
    parts.append("</p></section>")
    return "".join(parts)


def _chapter_nav(chapters: list[Chapter]) -> str:
    if not chapters:
        return ""
    items = "".join(
        f'<li><a href="#chapter-{k}" data-start="{_t(ch.start_s)}">{_esc(ch.title)}</a> '
        f'<span class="time">{clock(ch.start_s)}</span></li>'
        for k, ch in enumerate(chapters, start=1))
    return (f'<nav class="chapters" aria-labelledby="chapters-h"><h2 id="chapters-h">Chapters'
            f"</h2><ol>{items}</ol></nav>")


def render(audio: bytes, mime: str, cues: Sequence[Cue], *, words: Sequence[Word] = (),
           chapters: Sequence[Chapter] = (), title: str = "", lang: str = "en",
           audio_href: str | None = None) -> str:
    """One HTML document: the lesson text that follows its audio.

    ``audio`` (encoded, ``mime`` like "audio/mpeg") is embedded as a base64 ``data:`` URI; MP3
    keeps the page small (about 0.6 MB per minute of speech from the bundled voice, so 6 MB for
    10 minutes, against 35 MB for WAV; see the module docstring). With ``audio_href`` (a
    relative path such as "lesson.mp3", percent-encoded here) the page plays that file from
    beside it instead, and ``audio`` is ignored (it may be empty).

    ``cues`` are the sentences (``SynthesisResult.cues``); ``words``, the recogniser's word
    timings on the same audio, add word highlighting where ``align_words`` can place them;
    ``chapters`` add headings in the text and a list of jump links. All text is escaped; the
    page contains no URL but the audio's, and its own Content-Security-Policy forbids loading
    anything else.
    """
    if not _MIME.match(mime or ""):
        raise InputError(f"mime must be an audio type like 'audio/mpeg'; got {mime!r}.")
    if not _LANG.match(lang or ""):
        raise InputError(f"lang must be a language tag like 'en' or 'pt-BR'; got {lang!r}.")
    src = _audio_src(audio, mime, audio_href)
    # In time order: the page finds the sentence being spoken by binary search.
    cue_list = sorted((c for c in cues if c.text.strip()), key=lambda c: c.start_s)
    aligned = align_words(cue_list, words) if words else [None] * len(cue_list)
    chapter_list = sorted(chapters, key=lambda c: c.start_s)
    heading = _esc(title) or "Lesson"
    media = "media-src data:" if audio_href is None else "media-src 'self' data:"
    speeds = "".join(f'<option value="{s:g}"{" selected" if s == 1.0 else ""}>{s:g}×</option>'
                     for s in SPEEDS)
    has_words = any(aligned)
    return _PAGE.format(
        lang=html.escape(lang, quote=True), title=heading, csp=media, css=_CSS, js=_JS,
        src=html.escape(src, quote=True), mime=html.escape(mime, quote=True), speeds=speeds,
        nav=_chapter_nav(chapter_list), text=_body_text(cue_list, aligned, chapter_list),
        follow="sentence by sentence, and word by word" if has_words else "sentence by sentence",
    )


_CSS = """
:root{color-scheme:light dark;--bg:#fbfaf6;--fg:#1d2125;--muted:#59606b;--card:#ffffff;
--line:#dcd8cc;--accent:#1d5fb8;--hl:#fff0b3;--hlw:#f6c343;--focus:#1d5fb8}
@media (prefers-color-scheme:dark){:root{--bg:#141619;--fg:#e9e7e2;--muted:#a9b0ba;
--card:#1d2024;--line:#363a41;--accent:#8ab4f8;--hl:#3b3520;--hlw:#8a6a00;--focus:#8ab4f8}}
*{box-sizing:border-box}
html{background:var(--bg);color:var(--fg)}
body{margin:0;font:1.05rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",
"DejaVu Sans",sans-serif}
.wrap{max-width:46rem;margin:0 auto;padding:0 1.25rem 4rem}
header h1{font-size:1.7rem;line-height:1.25;margin:1.5rem 0 .25rem}
.lead{color:var(--muted);margin:0 0 1rem}
.player{position:sticky;top:0;z-index:2;background:var(--bg);border-bottom:1px solid var(--line);
padding:.75rem 0;display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center}
.player audio{flex:1 1 20rem;min-width:16rem;height:2.5rem}
.speed{display:flex;align-items:center;gap:.4rem;font-weight:600}
.speed select{font:inherit;font-weight:400;padding:.3rem .4rem;border-radius:.4rem;
border:1px solid var(--line);background:var(--card);color:var(--fg)}
.keys{color:var(--muted);font-size:.9rem;margin:.6rem 0 0;display:flex;flex-wrap:wrap;
gap:.2rem 1.1rem}
.keys-h{font-weight:600}
kbd{font:.85em ui-monospace,"DejaVu Sans Mono",monospace;border:1px solid var(--line);
border-bottom-width:2px;border-radius:.3rem;padding:0 .3rem;background:var(--card);color:var(--fg)}
.chapters{margin:1.25rem 0;padding:.75rem 1rem;border:1px solid var(--line);border-radius:.6rem;
background:var(--card)}
.chapters h2{font-size:1rem;margin:0 0 .3rem}
.chapters ol{margin:0;padding-left:1.4rem}
.chapters li{margin:.15rem 0}
.chapters a{color:var(--accent)}
.chapters .time{color:var(--muted);font-variant-numeric:tabular-nums;font-size:.9rem}
.chapters li.on a{font-weight:700}
main{font-family:Charter,"Bitstream Charter","Sitka Text",Cambria,Georgia,"DejaVu Serif",serif;
font-size:1.3rem;line-height:1.75;hyphens:auto}
main h2{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif;
font-size:1.25rem;margin:2rem 0 .5rem}
main p{margin:0 0 1.1em}
.s{cursor:pointer;border-radius:.25em;padding:.05em 0;transition:background-color .15s}
.s:hover{text-decoration:underline;text-decoration-color:var(--line);text-underline-offset:.2em}
.s.on{background:var(--hl);box-shadow:0 0 0 .12em var(--hl)}
.w.on{background:var(--hlw);border-radius:.2em;box-shadow:0 0 0 .08em var(--hlw)}
.s:focus-visible,a:focus-visible,select:focus-visible,audio:focus-visible{
outline:3px solid var(--focus);outline-offset:2px}
.note{color:var(--muted)}
@media (prefers-reduced-motion:reduce){.s{transition:none}}
@media print{.player,.chapters{display:none}.s.on,.w.on{background:none;box-shadow:none}}
"""

# Timings live in data-* attributes written by Python (numbers only), so no lesson text ever
# reaches the script. No network API is used; the page's CSP forbids it anyway.
_JS = r"""
(function () {
  "use strict";
  var audio = document.getElementById("audio");
  var speed = document.getElementById("speed");
  var sentences = Array.prototype.slice.call(document.querySelectorAll(".s"));
  var starts = sentences.map(function (s) { return parseFloat(s.dataset.start); });
  var words = sentences.map(function (s) {
    return Array.prototype.slice.call(s.querySelectorAll(".w"));
  });
  var wordStarts = words.map(function (ws) {
    return ws.map(function (w) { return parseFloat(w.dataset.start); });
  });
  var chapterLinks = Array.prototype.slice.call(document.querySelectorAll(".chapters a"));
  var chapterStarts = chapterLinks.map(function (a) { return parseFloat(a.dataset.start); });
  var current = -1, currentWord = null, currentChapter = -1;
  var EPS = 0.02;  // a seek to a sentence's start may read back a hair earlier
  var reduceMotion = window.matchMedia &&
    window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function lastAtOrBefore(list, t) {  // index of the last value <= t, or -1
    var lo = 0, hi = list.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (list[mid] <= t) lo = mid + 1; else hi = mid; }
    return lo - 1;
  }

  function showSentence(i) {
    if (i === current) return;
    if (current >= 0) {
      sentences[current].classList.remove("on");
      sentences[current].removeAttribute("aria-current");
    }
    current = i;
    if (i < 0) return;
    var el = sentences[i];
    el.classList.add("on");
    el.setAttribute("aria-current", "true");
    var r = el.getBoundingClientRect(), h = window.innerHeight || 0;
    if (h && (r.top < h * 0.2 || r.bottom > h * 0.85)) {
      el.scrollIntoView({block: "center", behavior: reduceMotion ? "auto" : "smooth"});
    }
  }

  function showWord(w) {
    if (w === currentWord) return;
    if (currentWord) currentWord.classList.remove("on");
    currentWord = w;
    if (w) w.classList.add("on");
  }

  function showChapter(t) {
    if (!chapterLinks.length) return;
    var k = lastAtOrBefore(chapterStarts, t + EPS);
    if (k === currentChapter) return;
    if (currentChapter >= 0) chapterLinks[currentChapter].parentNode.classList.remove("on");
    currentChapter = k;
    if (k >= 0) chapterLinks[k].parentNode.classList.add("on");
  }

  function update() {
    var t = audio.currentTime;
    // The sentence that started last stays lit through the pause after it.
    var i = lastAtOrBefore(starts, t + EPS);
    showSentence(i);
    var w = null;
    if (i >= 0 && words[i].length && t <= parseFloat(sentences[i].dataset.end) + EPS) {
      var k = lastAtOrBefore(wordStarts[i], t + EPS);
      if (k >= 0) w = words[i][k];
    }
    showWord(w);
    showChapter(t);
  }

  var ticking = false;
  function tick() {
    update();
    if (!audio.paused && !audio.ended) { requestAnimationFrame(tick); } else { ticking = false; }
  }
  function startTicking() { if (!ticking) { ticking = true; requestAnimationFrame(tick); } }

  ["timeupdate", "seeking", "seeked", "pause", "ended", "loadedmetadata"].forEach(
    function (e) { audio.addEventListener(e, update); });
  audio.addEventListener("play", startTicking);

  function playFrom(seconds) {
    audio.currentTime = Math.max(0, seconds);
    update();
    var p = audio.play();
    if (p && p.catch) p.catch(function () {});
  }

  function goToSentence(i, moveFocus) {
    if (!sentences.length) return;
    i = Math.max(0, Math.min(sentences.length - 1, i));
    playFrom(starts[i]);
    if (moveFocus) sentences[i].focus({preventScroll: true});
  }

  sentences.forEach(function (s, i) {
    s.addEventListener("click", function () { goToSentence(i, false); });
    s.addEventListener("keydown", function (e) {
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault(); e.stopPropagation(); goToSentence(i, false);
      } else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        e.preventDefault(); e.stopPropagation();
        goToSentence(i + (e.key === "ArrowLeft" ? -1 : 1), true);
      }
    });
  });

  chapterLinks.forEach(function (a) {
    a.addEventListener("click", function () {
      playFrom(parseFloat(a.dataset.start));
    });
  });

  function setSpeed(v) {
    v = Math.max(0.5, Math.min(2, v));
    audio.playbackRate = v;
    audio.defaultPlaybackRate = v;
  }
  speed.addEventListener("change", function () { setSpeed(parseFloat(speed.value)); });
  audio.addEventListener("ratechange", function () {
    // The browser's own menu can change the rate too: keep the control honest.
    var best = speed.options[0];
    Array.prototype.forEach.call(speed.options, function (o) {
      if (Math.abs(o.value - audio.playbackRate) < Math.abs(best.value - audio.playbackRate))
        best = o;
    });
    speed.value = best.value;
  });
  function stepSpeed(dir) {
    var k = speed.selectedIndex + dir;
    if (k < 0 || k >= speed.options.length) return;
    speed.selectedIndex = k;
    setSpeed(parseFloat(speed.value));
  }

  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || e.defaultPrevented) return;
    var tag = (e.target && e.target.tagName || "").toLowerCase();
    if (["input", "select", "textarea", "button", "audio", "video", "a", "summary"]
        .indexOf(tag) >= 0 || (e.target && e.target.isContentEditable)) return;
    if (e.key === " " || e.key === "k" || e.key === "K") {
      e.preventDefault();
      if (audio.paused) { var p = audio.play(); if (p && p.catch) p.catch(function () {}); }
      else audio.pause();
    } else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      var here = lastAtOrBefore(starts, audio.currentTime + EPS);
      goToSentence(e.key === "ArrowLeft" ? here - 1 : here + 1, false);
    } else if (e.key === "r" || e.key === "R") {
      e.preventDefault();
      goToSentence(Math.max(0, lastAtOrBefore(starts, audio.currentTime + EPS)), false);
    } else if (e.key === "-" || e.key === "_") {
      e.preventDefault(); stepSpeed(-1);
    } else if (e.key === "+" || e.key === "=") {
      e.preventDefault(); stepSpeed(1);
    }
  });

  update();
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; {csp}; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; form-action 'none'">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<div class="wrap">
<header>
<h1>{title}</h1>
<p class="lead">Press play and follow the text: it is highlighted {follow} as it is read.
Click a sentence to hear it from there.</p>
</header>
<div class="player" role="region" aria-label="Player">
<audio id="audio" controls preload="auto"><source src="{src}" type="{mime}">\
Your browser cannot play this audio.</audio>
<label class="speed" for="speed">Speed <select id="speed">{speeds}</select></label>
</div>
<p class="keys" id="keys"><span class="keys-h">Keyboard:</span>
<span><kbd>Tab</kbd> to a sentence, then <kbd>Enter</kbd> plays it</span>
<span><kbd>Space</kbd> play / pause</span>
<span><kbd>←</kbd> <kbd>→</kbd> previous / next sentence</span>
<span><kbd>R</kbd> repeat the sentence</span>
<span><kbd>-</kbd> <kbd>+</kbd> slower / faster</span></p>
{nav}
<main id="text" lang="{lang}">{text}</main>
</div>
<script>{js}</script>
</body>
</html>
"""
