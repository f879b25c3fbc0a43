"""The round-trip check of lesson audio (issue 12) on real engines: the bundled Piper voice
makes the lesson through the Synthesizer, the bundled faster-whisper tiny.en hears it.

The spoken texts are what the voice was asked to say without any lexicon
(``prepare(sentence, None)``): a lexicon entry that makes the voice say a wrong word is then an
error, as it is for the teacher."""

from __future__ import annotations

import re

import numpy as np
import pytest

from webapp.config import Settings
from webapp.pipeline.audio import Audio
from webapp.pipeline.cache import DiskSynthesisCache
from webapp.pipeline.errors import AudioError, InputError
from webapp.pipeline.lesson import roundtrip
from webapp.pipeline.lesson.roundtrip import check, compare, comparison_words
from webapp.pipeline.stt.base import Word
from webapp.pipeline.stt.registry import STTRegistry
from webapp.pipeline.subtitles import Cue
from webapp.pipeline.synthesis import SynthesisRequest, SynthesisResult, Synthesizer
from webapp.pipeline.text.lexicon import Lexicon, LexiconEntry
from webapp.pipeline.text.prepare import prepare
from webapp.pipeline.tts.registry import TTSRegistry

# Ordinary lesson sentences, each heard right by tiny.en in bench/roundtrip.py's lesson.
LESSON = ("Most of it is salty and sits in the oceans. Only a small part is fresh water that we "
          "can drink. This process is called evaporation. Green plants make their own food by "
          "photosynthesis. The vapour condenses into tiny droplets and forms clouds. Scientists "
          "call this precipitation.")
PHOTOSYNTHESIS = 3  # the sentence with "photosynthesis"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Synthesizer:
    """The real Synthesizer and Piper voice, with the voice's noise turned off.

    Piper adds random noise to every rendering, so each synthesis is a different recording
    and tiny.en hears a few of them differently: measured on LESSON over 120 renderings
    (default noise), sentence 0 was falsely flagged twice ("and sits" heard as "insits",
    "oceans" as "lotions", probability 0.55) and nothing else ever was; over 40 more renderings
    with the lexicon below, sentence 3 alone was flagged every time. That is the check's
    false-flag rate, which bench/roundtrip.py ``--calibrate`` measures (6 of 100 correct
    sentences); a test that asserts exact flags cannot hold on every random recording (CI once
    failed on one). With noise_scale and noise_w_scale at 0 the voice is deterministic
    (two renderings are sample-identical), so these tests judge the check on one fixed real
    recording, and a test that fails here fails every time.
    """
    data = tmp_path_factory.mktemp("roundtrip")
    settings = Settings(data_dir=data)
    registry = TTSRegistry(settings)
    voice = registry.get("piper").load(settings.default_voice)
    voice.config.noise_scale = voice.config.noise_w_scale = 0.0
    return Synthesizer(settings, registry, DiskSynthesisCache(data / "cache", 64))


@pytest.fixture(scope="module")
def stt(tmp_path_factory):
    return STTRegistry(Settings(data_dir=tmp_path_factory.mktemp("stt"))).get(
        "faster-whisper", "tiny.en")


@pytest.fixture(scope="module")
def lesson(synth) -> SynthesisResult:
    return synth.run(SynthesisRequest(text=LESSON))


def asked(result: SynthesisResult) -> list[str]:
    """What the voice was asked to say per sentence, without any lexicon."""
    return [" ".join(p for p in prepare(c.text, None) if isinstance(p, str)) for c in result.cues]


def span(result: SynthesisResult, index: int) -> Audio:
    cue = result.cues[index]
    rate = result.audio.sample_rate
    return Audio(result.audio.samples[round(cue.start_s * rate):round(cue.end_s * rate)], rate)


# -- real engines ----------------------------------------------------------------------------

def test_a_clean_lesson_passes_with_low_wer(lesson, stt):
    assert len(lesson.cues) == 6
    seen: list[float] = []
    report = check(lesson.audio, lesson.cues, asked(lesson), stt, progress=seen.append)
    assert report.flagged == [], [(s.spoken, s.heard, s.diffs) for s in report.flagged]
    assert report.wer <= 0.05
    assert [s.index for s in report.sentences] == list(range(6))
    for s, cue in zip(report.sentences, lesson.cues, strict=True):
        assert (s.start_s, s.end_s, s.written) == (cue.start_s, cue.end_s, cue.text)
        assert s.heard and s.expected_words >= 3
    # "vapour" heard as "vapor", "photosynthesis" in one piece: neither is a difference.
    assert not report.sentences[4].diffs, report.sentences[4]
    # The recogniser's words, for the read-along page: in time order, inside the audio.
    starts = [w.start_s for w in report.words]
    assert len(report.words) >= 40 and starts == sorted(starts)
    assert all(0 <= w.start_s <= w.end_s <= lesson.audio_s + 0.05 for w in report.words)
    assert report.audio_s == pytest.approx(lesson.audio_s)
    assert 0 < report.compute_s and report.rtf == pytest.approx(report.compute_s / report.audio_s)
    assert seen and seen[-1] == 1.0


def test_a_word_whose_timing_slips_over_the_pause_counts_once(lesson, stt):
    """Cue times that put the first sentence's last word ("oceans") on the far side of the
    middle of the pause: the word is moved back to the sentence it fits, rather than being
    missing from one sentence and extra in the next."""
    first = check(lesson.audio, lesson.cues, asked(lesson), stt)
    last = [w for w in first.words if w.end_s <= lesson.cues[0].end_s + 0.1][-1]
    assert "oceans" in last.text.lower()
    cut = (last.start_s + last.end_s) / 2 - 0.05
    cues = [Cue(lesson.cues[0].start_s, cut, lesson.cues[0].text),
            Cue(cut, lesson.cues[1].end_s, lesson.cues[1].text), *lesson.cues[2:]]
    assert roundtrip._owners(cues, first.words)[1][0] == last  # by time alone it slips

    report = check(lesson.audio, cues, asked(lesson), stt)
    assert report.flagged == []
    assert not report.sentences[0].diffs and not report.sentences[1].diffs
    assert report.sentences[0].heard.endswith("oceans.")


def test_a_sentence_replaced_by_another_sentences_audio_is_flagged_alone(lesson, synth, stt):
    other = synth.run(SynthesisRequest(text="The heart is a muscle that pumps blood around the body."))
    replacement = span(other, 0)
    target = 2  # "This process is called evaporation."
    cue = lesson.cues[target]
    rate = lesson.audio.sample_rate
    before = lesson.audio.samples[:round(cue.start_s * rate)]
    after = lesson.audio.samples[round(cue.end_s * rate):]
    shift = replacement.duration_s - (cue.end_s - cue.start_s)
    spliced = Audio(np.concatenate([before, replacement.samples, after]), rate)
    cues = [c if i < target else
            Cue(c.start_s, c.start_s + replacement.duration_s, c.text) if i == target else
            Cue(c.start_s + shift, c.end_s + shift, c.text)
            for i, c in enumerate(lesson.cues)]

    report = check(spliced, cues, asked(lesson), stt)
    assert [s.index for s in report.flagged] == [target], [(s.heard, s.diffs) for s in report.sentences]
    wrong = report.sentences[target]
    assert "heart" in wrong.heard.lower() and wrong.wer >= 0.5
    assert {"evaporation", "called"} <= {d.expected for d in wrong.diffs}


def test_a_lexicon_entry_that_says_a_wrong_word_is_flagged(lesson, synth, stt):
    lexicon = Lexicon([LexiconEntry("photosynthesis", "banana")])
    bad = synth.run(SynthesisRequest(text=LESSON, lexicon=lexicon))
    assert [c.text for c in bad.cues] == [c.text for c in lesson.cues]

    report = check(bad.audio, bad.cues, asked(lesson), stt)
    assert [s.index for s in report.flagged] == [PHOTOSYNTHESIS]
    wrong = report.sentences[PHOTOSYNTHESIS]
    assert any(d.expected == "photosynthesis" and d.heard == "banana" and d.counts
               for d in wrong.diffs), wrong.diffs
    assert wrong.confident_wer > roundtrip.DEFAULT_THRESHOLD

    # Checked against what the voice was asked to say *with* that entry, the sentence is
    # right: the check judges the audio, not the lexicon.
    with_entry = [" ".join(p for p in prepare(c.text, lexicon) if isinstance(p, str))
                  for c in bad.cues]
    assert check(bad.audio, bad.cues, with_entry, stt).flagged == []


def test_a_good_respelling_is_not_an_error(synth, stt):
    """The lexicon respells a word so that the voice says it well; the recogniser writes the
    word as it is spelt, so the written sentence (normalised without the lexicon) is the
    reference that fits, and the sentence is not flagged."""
    lexicon = Lexicon([LexiconEntry("mitochondria", "my toe kon dree uh")])
    result = synth.run(SynthesisRequest(text="The mitochondria release energy from glucose.",
                                        lexicon=lexicon))
    spoken = [" ".join(p for p in prepare(c.text, lexicon) if isinstance(p, str))
              for c in result.cues]
    assert spoken == ["The my toe kon dree uh release energy from glucose."]
    report = check(result.audio, result.cues, spoken, stt)
    assert report.flagged == [], report.sentences
    assert report.sentences[0].reference == "written" and report.sentences[0].wer == 0.0


def test_numbers_and_formulas_are_not_false_flags(synth, stt):
    """The recogniser writes "H20", "25", "CO2", "1905", "MC", "3.5", "12", "300,000", "120",
    "60" where the voice said "H two O", "twenty-five", "C O two"...: the comparison reads both
    the same way, so no sentence is flagged for a number.

    Measured exceptions, left out here because the recogniser hears something else, not
    because the comparison misreads it: "Table salt is NaCl." (measured when the voice said
    "N A C L": tiny.en wrote "NSCL", probability 0.63; since normaliser 4 it says "sodium
    chloride", not measured again here), and "Water covers about 71% of the surface of the
    Earth." after these sentences, heard as "7 to 1%" (probability 0.54; the same audio alone,
    and in bench/roundtrip.py's lesson, is heard as "71%"). Not a number but measured here too:
    "A car travels ..." starts with "high car" (the voice's sentence-initial "A", probability
    0.56), so this test says "The car". Forgiving such differences would forgive a voice that
    really says a wrong word or number."""
    text = ("Water is H2O at 25 °C. A molecule of carbon dioxide, CO2, has one carbon atom and "
            "two oxygen atoms. In 1905 Einstein wrote E = mc^2. The rocket reached a height of "
            "3.5 kilometres in 12 seconds. Light travels at about 300 000 km/s. The car travels "
            "120 km in 2 hours, so its average speed is 60 km/h.")
    result = synth.run(SynthesisRequest(text=text))
    spoken = asked(result)
    assert spoken[0] == "Water is H two O at twenty-five degrees Celsius."
    report = check(result.audio, result.cues, spoken, stt)
    assert any(ch.isdigit() for ch in " ".join(s.heard for s in report.sentences))
    # No difference that counts involves the words a number or formula is read as ("twenty",
    # "five", "degrees", "H", "O"...): a misread number form would always show up there.
    # Differences elsewhere are the recogniser's own and vary with Piper's random rendering
    # (measured over 12 renderings: "Einstein" heard as "line, sine" once, and once a
    # "1.5 kilometers per hour" invented after the last sentence), so they are not asserted.
    for s in report.sentences:
        literal = set(re.findall(r"[a-z]+", s.written.lower()))
        readings = set(comparison_words(s.spoken)) - literal
        counted = [d for d in s.diffs if d.counts]
        assert not [d for d in counted if d.expected in readings], (s.spoken, s.heard, counted)
    assert report.wer <= 0.15, [(s.spoken, s.heard) for s in report.sentences]


# -- the comparison form (no engines) -------------------------------------------------------

def heard(text: str, probability: float = 0.9) -> list[Word]:
    return [Word(" " + t, k * 0.3, k * 0.3 + 0.25, probability) for k, t in enumerate(text.split())]


@pytest.mark.parametrize(("expected", "written_by_recogniser"), [
    ("Water is H two O at twenty-five degrees Celsius.", "Water is H20 at 25 degrees celsius,"),
    ("In nineteen oh five Einstein wrote E equals m c squared.",
     "In 1905, Einstein wrote E equals MC squared."),
    ("three point five kilometres per second", "3.5 kilometers per second"),
    ("The vapour rises.", "the vapor rises"),
    ("Enzymes speed up reactions.", "Enzymes speedup reactions."),
])
def test_how_the_recogniser_writes_a_word_is_not_a_difference(expected, written_by_recogniser):
    n, diffs = compare(expected, heard(written_by_recogniser))
    assert diffs == () and n == len(comparison_words(expected))


def test_what_counts_towards_the_flag():
    _n, diffs = compare("Trains carried people in the town.", heard("Trains carry people and the"))
    by_word = {(d.expected, d.heard): d.counts for d in diffs}
    assert by_word == {("carried", "carry"): False, ("in", "and"): False, ("town", ""): True}
    _n, diffs = compare("Plants need water.", heard("Plants need walter", probability=0.3))
    assert [(d.heard, d.counts) for d in diffs] == [("walter", False)]  # the recogniser doubted
    _n, diffs = compare("Plants need water.", heard("Plants need butter"))
    assert [(d.op, d.expected, d.heard, d.counts) for d in diffs] == [
        ("substitute", "water", "butter", True)]


def test_inputs_that_do_not_fit_are_refused(lesson, stt):
    with pytest.raises(InputError, match="one spoken text per sentence"):
        check(lesson.audio, lesson.cues, asked(lesson)[:-1], stt)
    with pytest.raises(InputError, match="no sentences"):
        check(lesson.audio, [], [], stt)
    with pytest.raises(InputError, match="order of time"):
        check(lesson.audio, lesson.cues[::-1], asked(lesson)[::-1], stt)
    with pytest.raises(AudioError, match="no audio"):
        check(Audio(np.zeros(0, np.float32), lesson.audio.sample_rate), lesson.cues,
              asked(lesson), stt)
