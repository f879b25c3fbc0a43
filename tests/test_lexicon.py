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
    services.lexicon.replace([LexiconEntry("Nguyen", "win")])
    services.lexicon.save()
    edited = services.synthesizer.run(SynthesisRequest(text=text))
    assert not edited.cache_hit
    assert "win" in services.synthesizer.preview(text)
    assert abs(edited.audio_s - first.audio_s) > 0.05  # a different word was spoken
    # The saved lexicon is there after a restart.
    restarted = build_services(Settings(data_dir=tmp_path), preload=False, with_stt=False)
    assert restarted.lexicon.version == services.lexicon.version
