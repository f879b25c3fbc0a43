"""Round-trip check of produced lesson audio (issue 12): the recogniser hears what the voice
produced, and sentences that came out different from what the voice was asked to say are
flagged, so the teacher can listen to them and fix them with the lexicon before publishing.

``check`` transcribes the whole lesson once with word timestamps (the recogniser's ``words``
also serve the read-along page), gives each recognised word to the sentence whose time span,
widened to the middle of the pauses on either side, holds the word's midpoint, and compares
each sentence's words with the text the voice was asked to say (``spoken``) using jiwer.

Both sides are brought to one comparison form first (``comparison_words``), so that how the
recogniser *writes* what it heard is not an error: the lesson normaliser reads the recogniser's
"25", "1905", "3.5", "71%", "CO2" and "MC" the way the voice was told to say them; then case,
punctuation and hyphens go, British and American spellings fold together ("metres"/"meters"),
a word heard as one where two were expected ("speedup"/"speed up") is split, and "H20"
(a zero for the letter O, what Whisper writes for "H two O") is read as "H2O".

What is flagged was chosen by measurement (bench/roundtrip.py ``--calibrate``; the numbers are
in ``DEFAULT_THRESHOLD``'s docstring): a wrong word in an otherwise right sentence is a WER of
1/4 to 1/16, while tiny.en's own slips on correct Piper speech ("in" heard as "and", "seas" as
"sees", "herbivores" as "Herbie wars") give the same WERs, so no WER threshold separates them.
What does separate them is *which* differences they are: the recogniser's slips are mostly
swaps of short function words or words it was itself unsure of (word probability below
``MIN_WORD_PROBABILITY``), while a wrong word the voice really said is a content word heard
with confidence. So every difference is reported (``wer``), and the flag compares with the
threshold only the differences that count (``confident_wer``), or flags a sentence that came
out mostly different (``wer`` at least ``GARBLED_WER``) whatever the recogniser's confidence.

No prompt by default: measured, giving tiny.en the lesson's vocabulary as ``initial_prompt``
fixed some spellings of rare words ("herbivores", "volcanoes") but broke formulas ("H2O",
"NaCl", "Einstein wrote") and, worse, hid errors: a voice saying "batteries" instead of
"arteries" was heard with probability 0.05 instead of 0.85, and "planes" for "trains" with 0.48
instead of 0.96, because the prompt makes the recogniser expect the lesson's words. A caller
can still pass ``options`` with a prompt. Hearing a flagged sentence a second time on its own
(its audio cut out, no prompt) was tried and left out: over two syntheses of the calibration
lessons it cleared 6 of 15 false flags but also one of the 54 real errors, for a second pass of
recognition; with its expected text as the prompt it hid 7 of 23 wrong words. So there is one
pass.

Limits: a heteronym read the wrong way ("lead" the metal read as "lead" the verb) or a stress
error is spelled the same and cannot be caught from text; a wrong word that sounds like the
right one ("mussel" for "muscle") is not an audible error either. Numbers the recogniser writes
in a form the normaliser reads differently from the voice's text still count as differences.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import AudioError, InputError
from webapp.pipeline.stt.base import SAMPLE_RATE_HZ, TranscribeOptions, Word, join_words
from webapp.pipeline.subtitles import Cue
from webapp.pipeline.text.normalize import ELEMENTS, normalize

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.0
"""A sentence is flagged when its ``confident_wer`` is above this: by default, when one
confident content-word difference is left. Measured with bench/roundtrip.py ``--calibrate`` on
the bundled Piper voice and tiny.en (50 ordinary lesson sentences, 186 s; the same lesson with
26 lexicon entries that make the voice say a wrong word in 27 of its sentences; each lesson
synthesised twice, since Piper's noise makes every synthesis a slightly different recording):

=================================  ==================  =====================
flag when                          correct sentences   sentences with a
                                   flagged             wrong word flagged
=================================  ==================  =====================
``wer`` > 0.0                      13 / 100            54 / 54
``wer`` > 0.1                      8 / 100             26 / 54
``wer`` > 0.2                      2 / 100             5 / 54
``confident_wer`` > 0.0 (default)  6 / 100             54 / 54
=================================  ==================  =====================

A wrong word is one word in the sentence, so any threshold above 0 misses it in every sentence
longer than 1 / threshold words; raise it only to hear fewer, larger problems."""

MIN_WORD_PROBABILITY = 0.5
"""A difference whose heard word the recogniser gave less than this probability does not count
towards the flag (it is still reported). On correct Piper speech, tiny.en's wrong words had
probabilities 0.12-0.49 ("Herbie wars", "sees", "Townes", "tier" for "pure") and wrong words the
voice really said 0.52-1.0 ("mongoose" for "glucose" 0.52, most above 0.7)."""

GARBLED_WER = 0.5
"""A sentence at least this different is flagged whatever the recogniser's confidence: audio
that is mostly something else (or mumbling) is heard with low confidence too."""

FUNCTION_WORDS = frozenset("""
a an the and or in on at of to for with by from as is are was were be it its this that
""".split())
"""Differences made only of these words do not count towards the flag: tiny.en hears the
bundled voice's "in" as "and" in about one sentence in ten, "that" as "the", "is" as "of". A
lexicon mistake does not produce them, and negations ("not", "no") are deliberately absent."""

_LOWER_FORMULA = re.compile(r"\b[a-z]{1,2}\d[a-z\d]{0,4}\b")
_ZERO_FOR_O = re.compile(r"\b([A-Z][a-z]?)(\d?)0(\d?)\b")
_SEPARATORS = re.compile(r"[-‐‑‒–—/]")
_NOT_WORD = re.compile(r"[^\w\s]|_")
_BRITISH_UNITS = re.compile(r"\b(\w*)(met|lit)re(s?)\b")  # what the normaliser itself writes
_FALLBACK_SPELLINGS = {
    "centre": "center", "centres": "centers", "fibre": "fiber", "fibres": "fibers",
    "vapour": "vapor", "colour": "color", "colours": "colors", "behaviour": "behavior",
    "neighbour": "neighbor", "neighbours": "neighbors", "flavour": "flavor", "grey": "gray",
    "sulphur": "sulfur", "aluminium": "aluminum", "favourite": "favorite", "labour": "labor",
    "harbour": "harbor", "mould": "mold", "analyse": "analyze", "organise": "organize",
    "programme": "program", "catalogue": "catalog", "tyre": "tire", "tyres": "tires",
}


# ---------------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class WordDiff:
    """One difference between what the voice was asked to say and what was heard."""

    op: Literal["substitute", "insert", "delete"]
    expected: str  # "" for an insertion
    heard: str  # "" for a deletion
    probability: float | None = None  # the recogniser's confidence in ``heard`` (None: deleted)
    counts: bool = True  # counts towards the flag (not a function-word swap, not doubtful)


@dataclass(frozen=True)
class SentenceCheck:
    index: int
    start_s: float
    end_s: float
    written: str  # as the teacher wrote it (the cue's text)
    spoken: str  # what the voice was asked to say
    heard: str  # what the recogniser heard in this sentence's time span
    wer: float  # every difference, in the comparison form
    confident_wer: float  # only the differences that count (``WordDiff.counts``)
    flagged: bool
    diffs: tuple[WordDiff, ...] = ()
    expected_words: int = 0
    reference: Literal["spoken", "written"] = "spoken"
    """The text the sentence was compared with: what the voice was asked to say, or, when that
    fits what was heard better, the written sentence normalised without the lexicon (so a good
    respelling, "foe toe synthesis" heard as "photosynthesis", is not an error)."""

    @property
    def errors(self) -> int:
        return len(self.diffs)


@dataclass(frozen=True)
class RoundTripReport:
    sentences: tuple[SentenceCheck, ...]
    wer: float  # all sentences: differences / expected words
    words: tuple[Word, ...]  # the recogniser's words with times (read-along highlighting)
    audio_s: float
    compute_s: float
    threshold: float
    engine: str = ""
    model: str = ""
    options: TranscribeOptions = field(default_factory=TranscribeOptions)

    @property
    def flagged(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if s.flagged]

    @property
    def rtf(self) -> float:
        """Compute seconds per audio second."""
        return self.compute_s / self.audio_s if self.audio_s else 0.0

    def to_dict(self) -> dict:
        return {
            "wer": round(self.wer, 4), "threshold": self.threshold,
            "flagged": [s.index for s in self.flagged], "audio_s": round(self.audio_s, 3),
            "compute_s": round(self.compute_s, 3), "rtf": round(self.rtf, 4),
            "engine": self.engine, "model": self.model,
            "sentences": [{**asdict(s), "wer": round(s.wer, 4),
                           "confident_wer": round(s.confident_wer, 4)} for s in self.sentences],
            "words": [asdict(w) for w in self.words],
        }


# -------------------------------------------------------------------------- comparison form


@functools.lru_cache(maxsize=1)
def _spellings() -> dict[str, str]:
    """British -> American spellings: openai-whisper's list (1,700 words, the one its English
    normaliser uses) when that package is installed, else a short list of lesson words. Read
    from the package's folder without importing it (importing whisper imports PyTorch)."""
    spec = importlib.util.find_spec("whisper")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "normalizers" / "english.json"
        try:
            return {**_FALLBACK_SPELLINGS, **json.loads(path.read_text(encoding="utf-8"))}
        except (OSError, ValueError) as exc:
            logger.warning("whisper's spelling list unreadable (%s); using the short one", exc)
    return dict(_FALLBACK_SPELLINGS)


def comparison_words(text: str, *, heard: bool = False) -> list[str]:
    """``text`` in the form both sides are compared in: the lesson normaliser (numbers, units,
    formulas, acronyms), lower case, hyphens and slashes as spaces, no punctuation, American
    spelling. ``heard`` also reads a zero between element symbols and digits as the letter O
    ("H20" -> "H2O"), which Whisper writes for "H two O"."""
    if heard:
        # Under a prompt Whisper may write formulas in lower case ("h2o"): the normaliser reads
        # element symbols only in capitals.
        text = _LOWER_FORMULA.sub(lambda m: m.group(0).upper(), text)
        text = _ZERO_FOR_O.sub(_zero_for_o, text)
    text = _SEPARATORS.sub(" ", normalize(text).lower())
    text = _BRITISH_UNITS.sub(r"\1\2er\3", _NOT_WORD.sub("", text))
    spellings = _spellings()
    return [spellings.get(w, w) for w in text.split()]


def _zero_for_o(m: re.Match) -> str:
    if m.group(1) not in ELEMENTS or not (m.group(2) or m.group(3)):
        return m.group(0)  # "A10", "B0": not an element symbol, or no digit beside the zero
    return f"{m.group(1)}{m.group(2)}O{m.group(3)}"


def _split_compounds(words: list[tuple[str, float | None]],
                     other: Sequence[str]) -> list[tuple[str, float | None]]:
    """A word equal to two adjacent words of ``other`` joined ("speedup", "groundwater"),
    and not itself a word of ``other``, becomes those two words."""
    pairs = {a + b: (a, b) for a, b in zip(other, other[1:], strict=False)}
    known = set(other)
    out: list[tuple[str, float | None]] = []
    for word, p in words:
        if word not in known and word in pairs:
            out.extend((part, p) for part in pairs[word])
        else:
            out.append((word, p))
    return out


_UNIT_AFTER_NUMBER = re.compile(r"\s*[^\W\d_]{1,3}\W{0,2}|\s*[°%‰/][^\s]{0,4}")


def _heard_tokens(words: Sequence[Word]) -> list[tuple[str, float]]:
    """Comparison words of the recogniser's words, each with its probability. Whisper gives
    some words in pieces (" 300", ",000"; " 71", "%"): a piece without a leading space joins
    the word before it, and so does a short word after a number ("120" " km", "25" " °C"),
    which the normaliser reads only together; the whole takes the lowest probability."""
    groups: list[tuple[str, float]] = []
    for w in words:
        joins = groups and w.text[:1] and not w.text[:1].isspace()
        if groups and not joins and groups[-1][0].rstrip()[-1:].isdigit():
            joins = (_UNIT_AFTER_NUMBER.fullmatch(w.text) is not None
                     and w.text.strip(" .,;:!?").lower() not in FUNCTION_WORDS)
        if joins:
            text, p = groups[-1]
            groups[-1] = (text + w.text, min(p, w.probability))
        else:
            groups.append((w.text, w.probability))
    return [(t, p) for text, p in groups for t in comparison_words(text, heard=True)]


_ENDINGS = (("ies", "y"), ("ied", "y"), ("ing", ""), ("es", ""), ("ed", ""), ("s", ""), ("d", ""))


def _stems(word: str) -> set[str]:
    return {word} | {word[:-len(end)] + new for end, new in _ENDINGS
                     if word.endswith(end) and len(word) - len(end) >= 3}


def same_word(expected: str, heard: str) -> bool:
    """The same word but for an inflection ending ("carried"/"carry", "changes"/"change",
    "volcanoes"/"volcanos"): the voice or the recogniser dropped or added an ending."""
    return bool(expected and heard and _stems(expected) & _stems(heard))


def _counts(expected: str, heard: str, probability: float | None) -> bool:
    if {expected, heard} - {""} <= FUNCTION_WORDS or same_word(expected, heard):
        return False
    return probability is None or probability >= MIN_WORD_PROBABILITY


def compare(expected: str, heard: Sequence[Word]) -> tuple[int, tuple[WordDiff, ...]]:
    """(expected words, differences) of the recogniser's ``heard`` words against the text
    ``expected``, both in the comparison form, aligned by jiwer."""
    import jiwer

    ref = [w for w, _ in _split_compounds([(w, None) for w in comparison_words(expected)],
                                          [t for t, _ in _heard_tokens(heard)])]
    hyp = _split_compounds(_heard_tokens(heard), ref)
    if not ref or not hyp:
        diffs = [WordDiff("delete", w, "", None) for w in ref]
        diffs += [WordDiff("insert", "", w, p, _counts("", w, p)) for w, p in hyp]
        return len(ref), tuple(diffs)
    out = jiwer.process_words(" ".join(ref), " ".join(w for w, _ in hyp))
    diffs = []
    for chunk in out.alignments[0]:
        r = range(chunk.ref_start_idx, chunk.ref_end_idx)
        h = range(chunk.hyp_start_idx, chunk.hyp_end_idx)
        if chunk.type == "substitute":
            pairs = [(ref[i], *hyp[j]) for i, j in zip(r, h, strict=True)]
        elif chunk.type == "delete":
            pairs = [(ref[i], "", None) for i in r]
        elif chunk.type == "insert":
            pairs = [("", *hyp[j]) for j in h]
        else:
            continue
        diffs.extend(WordDiff(chunk.type, e, w, p, _counts(e, w, p)) for e, w, p in pairs)
    return len(ref), tuple(diffs)


def _rates(n: int, diffs: Sequence[WordDiff]) -> tuple[float, float]:
    if not n:
        return (1.0, 1.0) if diffs else (0.0, 0.0)
    return len(diffs) / n, sum(d.counts for d in diffs) / n


# -------------------------------------------------------------------------------- the check


def _owners(cues: Sequence[Cue], words: Sequence[Word]) -> list[list[Word]]:
    """The recognised words of each cue: a word belongs to the cue whose span, widened to the
    middle of the pauses on either side (the first and last cue reach to the ends of the
    audio), holds the word's midpoint."""
    bounds = [(a.end_s + b.start_s) / 2 for a, b in zip(cues, cues[1:], strict=False)]
    out: list[list[Word]] = [[] for _ in cues]
    for w in words:
        out[bisect.bisect_right(bounds, (w.start_s + w.end_s) / 2)].append(w)
    return out


LEAD_IN_S = 0.5
"""Silence put before the lesson for the recogniser (see ``check``)."""

_Verdict = tuple[str, int, tuple[WordDiff, ...]]  # (reference, expected words, differences)
_MAX_SHIFT_WORDS = 2


def _references(cue: Cue, said: str) -> list[tuple[str, str]]:
    """What a sentence may be compared with: the spoken text, and the written sentence
    normalised without the lexicon when that differs."""
    refs = [("spoken", said)]
    written = normalize(cue.text)
    if comparison_words(written) != comparison_words(said):
        refs.append(("written", written))
    return refs


def _cost(verdict: _Verdict) -> tuple[float, float]:
    """Sort key: the confident WER first, then the WER."""
    return _rates(verdict[1], verdict[2])[::-1]


def _judge(references: list[tuple[str, str]], heard: Sequence[Word]) -> _Verdict:
    """The comparison with the reference that explains more of what was heard."""
    return min(((name, *compare(text, heard)) for name, text in references), key=_cost)


def _errors(pair: tuple[_Verdict, _Verdict]) -> tuple[int, int]:
    """(differences that count, differences) of two neighbouring sentences."""
    return sum(d.counts for v in pair for d in v[2]), sum(len(v[2]) for v in pair)


def _repair_boundaries(references: list[list[tuple[str, str]]], owners: list[list[Word]],
                       verdicts: list[_Verdict]) -> None:
    """Where two neighbouring sentences both have differences, try moving up to
    ``_MAX_SHIFT_WORDS`` words across the boundary between them and keep the split with the
    fewest differences: a word whose timing slipped over the middle of the pause would
    otherwise count twice, missing from one sentence and extra in the other. In place."""
    for i in range(len(owners) - 1):
        if not (verdicts[i][2] and verdicts[i + 1][2]):
            continue
        a, b = owners[i], owners[i + 1]
        best = (verdicts[i], verdicts[i + 1])
        best_split = (a, b)
        for k in range(-min(_MAX_SHIFT_WORDS, len(a)), min(_MAX_SHIFT_WORDS, len(b)) + 1):
            if k == 0:
                continue
            na, nb = (a + b[:k], b[k:]) if k > 0 else (a[:k], a[k:] + b)
            trial = (_judge(references[i], na), _judge(references[i + 1], nb))
            if _errors(trial) < _errors(best):
                best, best_split = trial, (na, nb)
        verdicts[i], verdicts[i + 1] = best
        owners[i], owners[i + 1] = list(best_split[0]), list(best_split[1])


def check(audio: Audio, cues: Sequence[Cue], spoken: Sequence[str], stt, *,
          threshold: float = DEFAULT_THRESHOLD, options: TranscribeOptions | None = None,
          progress: Callable[[float], None] | None = None) -> RoundTripReport:
    """Recognise ``audio`` once and flag the sentences that came out wrong.

    ``cues[i]`` is sentence i as the teacher wrote it with its time span in ``audio``;
    ``spoken[i]`` is what the voice was asked to say for it (``SynthesisResult.spoken``).
    ``stt`` is an STT engine (``transcribe(audio, options, progress) -> Transcript``).
    ``options`` default to the engine's file settings with word timestamps (always on) and no
    prompt. ``progress`` gets the fraction of the audio recognised, 0..1.
    """
    t0 = time.perf_counter()
    if len(cues) != len(spoken):
        raise InputError(f"The round-trip check needs one spoken text per sentence; got "
                         f"{len(cues)} sentences and {len(spoken)} spoken texts.")
    if not cues:
        raise InputError("There are no sentences to check: synthesise the lesson first.")
    if any(b.start_s < a.start_s for a, b in zip(cues, cues[1:], strict=False)):
        raise InputError("The sentences' time spans must be in order of time.")
    if not len(audio.samples):
        raise AudioError("There is no audio to check: synthesise the lesson first.")
    options = replace(options or TranscribeOptions(), word_timestamps=True)
    # Lesson audio starts with speech at its first sample, and Whisper then tends to lose the
    # first phoneme ("Boiling water" heard as "oiling water"): it hears the lesson after a
    # short silence, and the word times are moved back by it.
    lead = Audio.silence(LEAD_IN_S, SAMPLE_RATE_HZ)
    transcript = stt.transcribe(Audio.concat([lead, audio.resample(SAMPLE_RATE_HZ)]), options,
                                progress)
    words = tuple(replace(w, start_s=max(0.0, w.start_s - LEAD_IN_S),
                          end_s=max(0.0, w.end_s - LEAD_IN_S)) for w in transcript.words)

    references = [_references(cue, said) for cue, said in zip(cues, spoken, strict=True)]
    owners = _owners(cues, words)
    verdicts = [_judge(refs, heard) for refs, heard in zip(references, owners, strict=True)]
    _repair_boundaries(references, owners, verdicts)

    def flags(verdict: _Verdict) -> bool:
        wer, confident = _rates(verdict[1], verdict[2])
        return confident > threshold or wer >= GARBLED_WER

    checks: list[SentenceCheck] = []
    total_words = total_diffs = 0
    for i, (cue, said, heard, verdict) in enumerate(
            zip(cues, spoken, owners, verdicts, strict=True)):
        reference, n, diffs = verdict
        wer, confident = _rates(n, diffs)
        checks.append(SentenceCheck(
            index=i, start_s=cue.start_s, end_s=cue.end_s, written=cue.text, spoken=said,
            heard=join_words([w.text for w in heard]), wer=wer, confident_wer=confident,
            flagged=flags(verdict), diffs=diffs, expected_words=n, reference=reference))
        total_words += n
        total_diffs += len(diffs)
    report = RoundTripReport(
        sentences=tuple(checks), wer=total_diffs / total_words if total_words else 0.0,
        words=words, audio_s=audio.duration_s, compute_s=time.perf_counter() - t0,
        threshold=threshold, engine=getattr(stt, "name", ""), model=getattr(stt, "model", ""),
        options=options)
    logger.info("round trip: %d of %d sentences flagged, WER %.3f, %.1f s for %.1f s of audio",
                len(report.flagged), len(checks), report.wer, report.compute_s, report.audio_s)
    return report
