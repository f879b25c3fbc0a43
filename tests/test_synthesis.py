"""The synthesis service on the real bundled Piper voice: streaming, caching, keys, bad input."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from webapp.config import Settings
from webapp.pipeline import synthesis as synthesis_module
from webapp.pipeline.audio import Audio
from webapp.pipeline.cache import DiskSynthesisCache
from webapp.pipeline.errors import InputError, UnknownChoiceError
from webapp.pipeline.synthesis import SynthesisChunk, SynthesisRequest, SynthesisResult, Synthesizer
from webapp.pipeline.tts.registry import TTSRegistry

PARAGRAPH = ("Photosynthesis turns light into chemical energy. Plants store it as sugar. "
             "Animals eat the plants, and the energy moves up the food chain.")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = TTSRegistry(Settings(data_dir=tmp_path_factory.mktemp("reg")))
    reg.get("piper").load("en_US-joe-medium")
    return reg


@pytest.fixture()
def synth(registry, tmp_path):
    settings = Settings(data_dir=tmp_path)
    return Synthesizer(settings, registry, DiskSynthesisCache(tmp_path / "cache", 64))


class CountingEngine:
    """Passes every call to the real engine and counts the texts it was asked to speak."""

    def __init__(self, engine):
        self._engine = engine
        self.name = engine.name
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __getattr__(self, item):
        return getattr(self._engine, item)

    def synthesize(self, text, options):
        with self._lock:
            self.calls.append(text)
        yield from self._engine.synthesize(text, options)


def test_streams_sentence_by_sentence(synth):
    items = list(synth.stream(SynthesisRequest(text=PARAGRAPH)))
    chunks = [i for i in items if isinstance(i, SynthesisChunk)]
    result = items[-1]
    assert isinstance(result, SynthesisResult) and not result.cache_hit
    assert len([c for c in chunks if c.cue is None and c.audio.duration_s > 0.5]) >= 3
    starts = [c.start_s for c in chunks]
    assert starts == sorted(starts)
    assert abs(sum(c.audio.duration_s for c in chunks) - result.audio_s) < 1e-3
    # Sentence-timed subtitles: one cue per sentence, in order, inside the audio.
    assert [c.text for c in result.cues] == [
        "Photosynthesis turns light into chemical energy.", "Plants store it as sugar.",
        "Animals eat the plants, and the energy moves up the food chain."]
    for a, b in zip(result.cues, result.cues[1:]):
        assert a.end_s <= b.start_s
    assert result.cues[-1].end_s <= result.audio_s + 1e-6
    assert 0 < result.ttfa_ms < result.compute_s * 1000
    assert 0 < result.rtf < 1
    assert result.audio.sample_rate == 22050
    assert np.abs(result.audio.samples).max() > 0.3


def test_second_request_is_a_cache_hit(synth):
    first = synth.run(SynthesisRequest(text=PARAGRAPH))
    t0 = time.perf_counter()
    second = synth.run(SynthesisRequest(text=PARAGRAPH))
    elapsed = time.perf_counter() - t0
    assert second.cache_hit and second.units_cached == second.units_total
    assert second.data == first.data
    assert second.cues == first.cues
    assert elapsed < first.compute_s  # a lookup, not a synthesis


def test_shared_sentences_are_reused(synth, registry):
    synth.run(SynthesisRequest(text="Plants store it as sugar. Roots take in water."))
    counting = CountingEngine(registry.get("piper"))
    synth.registry = _RegistryWith(registry, counting)
    result = synth.run(SynthesisRequest(text="Leaves are green. Plants store it as sugar."))
    assert not result.cache_hit
    assert result.units_cached == 1
    assert counting.calls == ["Leaves are green."]


class _RegistryWith:
    def __init__(self, registry, engine):
        self._registry, self._engine = registry, engine

    def get(self, name):
        return self._engine if name in (None, "piper") else self._registry.get(name)

    def __getattr__(self, item):
        return getattr(self._registry, item)


def _voice_sample(seconds: float = 5.0, rate: int = 16_000) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio((0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), rate)


class OptionsEngine(CountingEngine):
    """A CountingEngine that also keeps the options of each call."""

    def __init__(self, engine):
        super().__init__(engine)
        self.options = []

    def synthesize(self, text, options):
        self.options.append(options)
        yield from super().synthesize(text, options)


class CloningPiper(OptionsEngine):
    """Piper dressed as an engine that clones (CloningEngine), to see the clip kept."""

    def supports_cloning(self, voice):
        return True


def test_a_voice_sample_for_a_voice_that_cannot_clone_is_ignored(synth, registry):
    # Issue 14: the clip used to enter the cache key of every voice, so a sample left in the
    # form re-synthesised (and re-cached) Piper's audio although Piper never reads it.
    counting = OptionsEngine(registry.get("piper"))
    synth.registry = _RegistryWith(registry, counting)
    plain = synth.run(SynthesisRequest(text=PARAGRAPH))
    with_sample = synth.run(SynthesisRequest(text=PARAGRAPH, reference=_voice_sample()))
    assert with_sample.cache_hit and with_sample.request_key == plain.request_key
    assert any("voice sample was ignored" in w for w in with_sample.warnings)
    assert not any("voice sample" in w for w in plain.warnings)
    spoken = len(counting.calls)
    # Sentence by sentence too: a new request reuses the sentences made without the clip.
    again = synth.run(SynthesisRequest(text=PARAGRAPH + " Light is energy.", reference=_voice_sample()))
    assert not again.cache_hit and counting.calls[spoken:] == ["Light is energy."]
    assert all(o.reference is None for o in counting.options)


def test_a_voice_that_clones_keeps_the_sample_in_its_key(synth, registry):
    cloning = CloningPiper(registry.get("piper"))
    synth.registry = _RegistryWith(registry, cloning)
    plain = synth.run(SynthesisRequest(text=PARAGRAPH))
    sample = _voice_sample()
    with_sample = synth.run(SynthesisRequest(text=PARAGRAPH, reference=sample))
    assert not with_sample.cache_hit and with_sample.request_key != plain.request_key
    assert not with_sample.warnings
    assert cloning.options[-1].reference is sample


@pytest.mark.parametrize("change", [
    {"speed": 1.25}, {"fmt": "mp3"}, {"text": PARAGRAPH + " Light is energy."},
])
def test_key_changes_with_inputs(synth, change):
    synth.run(SynthesisRequest(text=PARAGRAPH))
    other = synth.run(SynthesisRequest(**{"text": PARAGRAPH, **change}))
    assert not other.cache_hit


def test_normaliser_version_is_part_of_the_key(synth, monkeypatch):
    synth.run(SynthesisRequest(text=PARAGRAPH))
    monkeypatch.setattr(synthesis_module, "text_version", lambda lexicon=None: "a-new-version")
    again = synth.run(SynthesisRequest(text=PARAGRAPH))
    assert not again.cache_hit and again.units_cached == 0


def test_corrupt_cache_entries_are_ignored(synth):
    first = synth.run(SynthesisRequest(text=PARAGRAPH))
    raw = synth.cache._cache
    for key in list(raw.iterkeys()):
        raw.set(key, b"SSC1\xff\xff\xff\xffbroken")
    again = synth.run(SynthesisRequest(text=PARAGRAPH))
    assert not again.cache_hit
    assert abs(again.audio_s - first.audio_s) < 0.5


def test_speed_changes_duration(synth):
    normal = synth.run(SynthesisRequest(text=PARAGRAPH)).audio_s
    fast = synth.run(SynthesisRequest(text=PARAGRAPH, speed=2.0)).audio_s
    slow = synth.run(SynthesisRequest(text=PARAGRAPH, speed=0.5)).audio_s
    assert fast < 0.7 * normal < slow * 0.7


def test_paragraph_pause_is_longer_than_sentence_gap(synth):
    result = synth.run(SynthesisRequest(text="One sentence here. Another one here.\n\nA new paragraph."))
    gaps = [b.start_s - a.end_s for a, b in zip(result.cues, result.cues[1:])]
    assert gaps[1] > gaps[0] + 0.3


def test_concurrent_identical_requests_synthesise_once(synth, registry):
    counting = CountingEngine(registry.get("piper"))
    synth.registry = _RegistryWith(registry, counting)
    results = []
    threads = [threading.Thread(target=lambda: results.append(synth.run(SynthesisRequest(text=PARAGRAPH))))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3
    assert sorted(counting.calls) == sorted(set(counting.calls))  # no text spoken twice
    assert len(counting.calls) == 3


@pytest.mark.parametrize("text, message", [
    ("", "no text"), ("   \n\t ", "no text"), ("\x00\x01\x02", "Nothing speakable"),
    ("😀🎉👍", "Nothing speakable"),
])
def test_empty_or_unspeakable_text(synth, text, message):
    with pytest.raises(InputError, match=message):
        synth.run(SynthesisRequest(text=text))


def test_huge_text_is_rejected_quickly(synth):
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="limit is 20,000"):
        synth.run(SynthesisRequest(text="a" * 1_000_000))
    assert time.perf_counter() - t0 < 1.0


def test_emoji_and_mixed_scripts_warn_but_speak(synth):
    result = synth.run(SynthesisRequest(text="Hello 😀 class. Привет means hello."))
    assert result.audio_s > 1.0
    assert any("emoji" in w for w in result.warnings)
    assert any("Cyrillic" in w for w in result.warnings)


def test_raw_phoneme_syntax_is_not_passed_to_piper(synth):
    result = synth.run(SynthesisRequest(text="Say [[ h ɛ l oʊ ]] now."))
    assert result.audio_s > 0.5


@pytest.mark.parametrize("request_kwargs, error", [
    ({"voice": "no-such-voice"}, UnknownChoiceError),
    ({"engine": "nonexistent"}, UnknownChoiceError),
    ({"speed": 3.0}, InputError),
    ({"speed": 0.1}, InputError),
    ({"fmt": "exe"}, InputError),
])
def test_bad_choices(synth, request_kwargs, error):
    with pytest.raises(error):
        synth.run(SynthesisRequest(text="Hello.", **request_kwargs))


def test_named_voice_offline_says_how_to_install(synth):
    from webapp.pipeline.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="SPEECH_STUDIO_PIPER_VOICE_DIRS"):
        synth.run(SynthesisRequest(text="Hello.", voice="en_GB-alan-medium"))


def test_paths_are_not_voices(synth):
    for voice in ("/etc/passwd", "../../model.onnx", "~/voice.onnx"):
        with pytest.raises(UnknownChoiceError):
            synth.run(SynthesisRequest(text="Hello.", voice=voice))


def test_preview_shows_spoken_text(synth):
    assert "Plants store it as sugar." in synth.preview(PARAGRAPH)


def test_pause_marks_become_silence(synth):
    plain = synth.run(SynthesisRequest(text="First part. Second part."))
    paused = synth.run(SynthesisRequest(text="First part. [pause 2s] Second part."))
    assert paused.audio_s - plain.audio_s == pytest.approx(2.0, abs=0.1)
    assert [c.text for c in paused.cues] == ["First part.", "Second part."]
    # The silence sits between the two sentences.
    gap = paused.cues[1].start_s - paused.cues[0].end_s
    assert gap > 2.0
    rate = paused.audio.sample_rate
    middle = paused.audio.samples[int((paused.cues[0].end_s + 0.3) * rate):int((paused.cues[1].start_s - 0.3) * rate)]
    assert np.abs(middle).max() < 1e-3


def test_science_text_is_normalised_before_speaking(synth):
    result = synth.run(SynthesisRequest(text="Water is H2O."))
    assert synth.preview("Water is H2O.") == "Water is H two O."
    assert result.cues[0].text == "Water is H2O."  # subtitles keep what the teacher wrote


def test_pause_marks_cannot_make_hours_of_audio(synth):
    # Issue 9: 4,200 characters of "a [pause 10s]" used to return 51 minutes of audio.
    started = time.perf_counter()
    with pytest.raises(InputError, match="at most 30 minutes"):
        synth.run(SynthesisRequest(text="a [pause 10s] " * 300))
    assert time.perf_counter() - started < 2.0  # refused before any synthesis


def test_output_length_is_capped_while_synthesising(registry, tmp_path):
    settings = Settings(data_dir=tmp_path, max_output_s=4.0)
    synth = Synthesizer(settings, registry, DiskSynthesisCache(tmp_path / "cache", 64))
    with pytest.raises(InputError, match="more than 0.0667 minutes|Split it"):
        synth.run(SynthesisRequest(text=PARAGRAPH))
    assert synth.run(SynthesisRequest(text="Plants store it as sugar.")).audio_s < 4.0


def test_piper_raw_phoneme_syntax_never_reaches_the_voice(registry):
    from webapp.pipeline.tts import piper

    for text in ("[[[x]]]", "[[x]]", "[[[[hello]]]] ]]", "[[ [[x]] ]]"):
        cleaned = piper.strip_raw_phonemes(text)
        assert "[[" not in cleaned and "]]" not in cleaned, (text, cleaned)
