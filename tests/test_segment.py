"""Sentence and paragraph splitting of written lesson text."""

from __future__ import annotations

from webapp.pipeline.text.segment import (
    MAX_UNIT_CHARS,
    split_first_clause,
    split_paragraphs,
    split_sentences,
)


def test_sentences_and_abbreviations():
    text = ("Dr. Curie measured 3.5 g of radium. It glowed! Did it, e.g. in the dark? "
            "Yes. The value was 6.02 × 10^23 per mol.")
    assert split_sentences(text) == [
        "Dr. Curie measured 3.5 g of radium.",
        "It glowed!",
        "Did it, e.g. in the dark?",
        "Yes.",
        "The value was 6.02 × 10^23 per mol.",
    ]


def test_paragraphs():
    assert split_paragraphs("One.\nStill one.\n\n\nTwo.\n \nThree.") == ["One.\nStill one.", "Two.", "Three."]


def test_long_sentence_is_bounded_without_losing_words():
    sentence = ", ".join(["the quick brown fox jumps over the lazy dog"] * 40) + "."
    parts = split_sentences(sentence)
    assert len(parts) > 1
    assert all(len(p) <= MAX_UNIT_CHARS for p in parts)
    assert " ".join(parts).replace(" ", "") == sentence.replace(" ", "")


def test_unbroken_text_is_bounded():
    blob = "a" * 1000
    parts = split_sentences(blob)
    assert "".join(parts) == blob and all(len(p) <= MAX_UNIT_CHARS for p in parts)


def test_first_clause():
    s = "When light reaches the leaf, chlorophyll absorbs it and the plant begins to make sugar from water and air."
    first, rest = split_first_clause(s)
    assert first == "When light reaches the leaf," and rest.startswith("chlorophyll")
    assert split_first_clause("Short one.") == ["Short one."]
    # No cut that would leave a sliver.
    assert split_first_clause("Photosynthesis turns light into chemical energy.") == [
        "Photosynthesis turns light into chemical energy."]
