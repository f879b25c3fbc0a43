"""The pronunciation lexicon: matching, CSV, validation, persistence, cache-key effect."""

from __future__ import annotations

import pytest

from webapp.pipeline.errors import InputError
from webapp.pipeline.text.lexicon import Lexicon, LexiconEntry
from webapp.pipeline.text.prepare import prepare, text_version


def test_whole_word_and_case_rules():
    lex = Lexicon([LexiconEntry("Nguyen", "win"), LexiconEntry("ATP", "A T P", case_sensitive=True),
                   LexiconEntry("sodium chloride", "table salt")])
    assert lex.apply("Ms nguyen and NGUYEN; Nguyens") == "Ms win and win; Nguyens"
    assert lex.apply("ATP and atp") == "A T P and atp"
    assert lex.apply("Sodium chloride dissolves") == "table salt dissolves"


def test_applied_before_the_normaliser():
    lex = Lexicon([LexiconEntry("H2O", "water")])
    assert prepare("Drink H2O and CO2.", lex) == ["Drink water and C O two."]


def test_version_changes_with_entries():
    lex = Lexicon()
    empty = text_version(lex)
    lex.replace([LexiconEntry("Nguyen", "win")])
    one = text_version(lex)
    lex.replace([LexiconEntry("Nguyen", "new win")])
    assert len({empty, one, text_version(lex)}) == 3
    # Same entries in another order: same version.
    a = Lexicon([LexiconEntry("a", "x"), LexiconEntry("b", "y")]).version
    assert a == Lexicon([LexiconEntry("b", "y"), LexiconEntry("a", "x")]).version


def test_csv_round_trip_and_persistence(tmp_path):
    path = tmp_path / "lexicon.csv"
    lex = Lexicon([LexiconEntry("Nguyen", "win"), LexiconEntry("ATP", "A T P", True)], path=path)
    lex.save()
    again = Lexicon.load(path)
    assert sorted(again.entries, key=lambda e: e.term) == sorted(lex.entries, key=lambda e: e.term)
    assert again.version == lex.version
    parsed = Lexicon.parse_csv("term,respelling,case_sensitive\nPythagoras,pie thag oh ras,no\n\nNaCl,salt,yes\n")
    assert parsed == [LexiconEntry("Pythagoras", "pie thag oh ras", False), LexiconEntry("NaCl", "salt", True)]


@pytest.mark.parametrize("entry, message", [
    (LexiconEntry("", "x"), "needs a term"),
    (LexiconEntry("x", " "), "needs a respelling"),
    (LexiconEntry("x\x00", "y"), "control characters"),
    (LexiconEntry("x" * 101, "y"), "too long"),
])
def test_validation(entry, message):
    with pytest.raises(InputError, match=message):
        Lexicon([entry])


def test_bad_csv_rows_are_reported():
    with pytest.raises(InputError, match="row 2"):
        Lexicon.parse_csv("a,b\nlonely\n")


def test_edit_changes_synthesis_cache_key(tmp_path):
    """Editing the lexicon never serves stale audio: the next request misses the cache."""
    from webapp.config import Settings
    from webapp.pipeline.synthesis import SynthesisRequest
    from webapp.services import build_services

    services = build_services(Settings(data_dir=tmp_path), preload=False, with_stt=False)
    text = "Mister Nguyen teaches chemistry."
    first = services.synthesizer.run(SynthesisRequest(text=text))
    assert services.synthesizer.run(SynthesisRequest(text=text)).cache_hit
    # A much longer respelling, so the engine's small run-to-run duration jitter cannot hide it.
    services.lexicon.replace([LexiconEntry("Nguyen", "win, of the long respelled family name")])
    services.lexicon.save()
    edited = services.synthesizer.run(SynthesisRequest(text=text))
    assert not edited.cache_hit
    assert "win, of the long respelled family name" in services.synthesizer.preview(text)
    assert edited.audio_s > first.audio_s + 0.5  # the respelling was spoken
    # The saved lexicon is there after a restart.
    restarted = build_services(Settings(data_dir=tmp_path), preload=False, with_stt=False)
    assert restarted.lexicon.version == services.lexicon.version


def test_one_pass_a_respelling_is_never_rewritten():
    lex = Lexicon([LexiconEntry("ATP", "adenosine triphosphate", True), LexiconEntry("adenosine", "a-DEN-o-seen")])
    assert lex.apply("ATP contains adenosine.") == "adenosine triphosphate contains a-DEN-o-seen."


def test_csv_round_trip_keeps_commas_quotes_and_unicode():
    entries = [LexiconEntry("Schrödinger", "SHROH-ding-er"), LexiconEntry('"Ca(OH)2"', "slaked lime, wet"),
               LexiconEntry("μ", "mew", True)]
    again = Lexicon.parse_csv(Lexicon(entries).to_csv())
    assert sorted(again, key=lambda e: e.term) == sorted(entries, key=lambda e: e.term)
    assert Lexicon(again).apply("Schrödinger's μ") == "SHROH-ding-er's mew"


def test_large_lexicon_is_fast_and_bounded():
    import time

    from webapp.pipeline.text.lexicon import MAX_CSV_CHARS, MAX_ENTRIES

    lex = Lexicon([LexiconEntry(f"term{i}", f"respelling {i}", i % 3 == 0) for i in range(MAX_ENTRIES)])
    text = ("The lesson mentions term5, Term77 and TERM1998 again. " * 400)[:20_000]
    t0 = time.perf_counter()
    out = lex.apply(text)
    assert time.perf_counter() - t0 < 1.0  # one pass, not one regex per entry
    assert out.startswith("The lesson mentions respelling 5, respelling 77 and TERM1998 again.")
    with pytest.raises(InputError, match="limit is 2000"):
        Lexicon([LexiconEntry(f"t{i}", "x") for i in range(MAX_ENTRIES + 1)])
    with pytest.raises(InputError, match="characters long"):
        Lexicon.parse_csv("a,b\n" * (MAX_CSV_CHARS // 4 + 1))


@pytest.mark.parametrize("respelling", ["[pause 10s]", "the [[[x]]]", "a]b"])
def test_respellings_cannot_smuggle_pause_marks_or_phonemes(respelling):
    """Issue 9: 'the' -> '[pause 10s]' turned every 'the' of every teacher into ten seconds of
    silence."""
    with pytest.raises(InputError, match="square brackets"):
        Lexicon([LexiconEntry("the", respelling)])
    with pytest.raises(InputError, match="square brackets"):
        Lexicon.parse_csv(f"term,respelling\nthe,{respelling}\n")


def test_layered_lexicon_puts_a_visitors_entries_over_the_operators():
    operator = Lexicon([LexiconEntry("ATP", "A T P", True), LexiconEntry("Nguyen", "nwen")])
    mine = Lexicon.layered(operator, [LexiconEntry("Nguyen", "win")])
    assert mine.apply("Nguyen and ATP") == "win and A T P"
    assert operator.apply("Nguyen and ATP") == "nwen and A T P"  # the operator's is unchanged
    assert mine.version != operator.version and mine.path is None
