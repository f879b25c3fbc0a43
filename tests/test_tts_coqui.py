"""The Coqui engine on tiny, randomly initialised VITS checkpoints built from Coqui's real config
classes (tests/coqui_tiny.py) and loaded through the engine's real operator path
(``SPEECH_STUDIO_COQUI_MODEL_DIRS``). Random weights make noise, so the tests assert rates,
types and lengths. The tiny models predict a constant duration per token, so lengths are
deterministic and speed changes show exactly.

The parts of coqui-tts the engine and its catalogue use without a public API (VITS's
``length_scale``, XTTS conditioning from memory, the catalogue file, Coqui's download folder and
checkpoint rule) are each checked here against the installed coqui-tts, which pyproject.toml pins
to the tested range (issue 14).
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from coqui_tiny import TINY_SAMPLE_RATE_HZ, build_tiny_vits, build_tiny_xtts  # noqa: E402

from webapp.config import Settings  # noqa: E402
from webapp.pipeline.audio import Audio  # noqa: E402
from webapp.pipeline.errors import (  # noqa: E402
    AudioError,
    InputError,
    ModelUnavailableError,
    UnknownChoiceError,
)
from webapp.pipeline.tts.base import CloningEngine, SynthesisOptions, TTSEngine  # noqa: E402
from webapp.pipeline.tts.coqui import (  # noqa: E402
    XTTS_REFERENCE_HZ,
    XTTS_V2,
    CoquiEngine,
    split_voice,
    validate_reference,
    xtts_conditioning,
)
from webapp.pipeline.tts.coqui_catalogue import (  # noqa: E402
    CoquiCatalogue,
    coqui_user_dir,
    find_checkpoint,
)

SHORT = "Hello."
LONG = "Hello there, this sentence has quite a few more words in it."


@pytest.fixture(scope="module")
def model_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coqui-models")
    build_tiny_vits(root / "tiny", use_phonemes=True)  # espeak-ng phonemes, like Coqui's VITS
    build_tiny_vits(root / "duo", use_phonemes=False, speakers=["alice", "bob"])  # characters
    (root / "broken").mkdir()
    (root / "broken" / "model.pth").write_bytes(b"not a checkpoint")
    (root / "broken" / "config.json").write_text('{"model": "vits"}')
    (root / "incomplete").mkdir()  # no config.json: not offered
    (root / "incomplete" / "model.pth").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def engine(model_root, tmp_path_factory) -> CoquiEngine:
    settings = Settings(coqui_model_dirs=(model_root,), data_dir=tmp_path_factory.mktemp("data"))
    eng = CoquiEngine(settings)
    eng.load("local/tiny")
    return eng


@pytest.fixture(autouse=True)
def _private_coqui_home(tmp_path, monkeypatch):
    # Coqui's own model folder (~/.local/share/tts) must not leak into the tests.
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "tts-home"))


def speak(engine: CoquiEngine, text: str, voice: str = "local/tiny", speed: float = 1.0,
          reference: Audio | None = None) -> Audio:
    chunks = list(engine.synthesize(text, SynthesisOptions(voice=voice, speed=speed, reference=reference)))
    assert len(chunks) == 1
    return chunks[0]


def test_implements_the_engine_protocol(engine):
    assert isinstance(engine, TTSEngine)
    assert engine.name == "coqui"


def test_voices_are_local_folders_and_offline_hides_the_catalogue(engine):
    ids = [v.id for v in engine.voices()]
    assert "local/tiny" in ids and "local/duo" in ids
    assert "local/incomplete" not in ids
    assert not [i for i in ids if i.startswith("tts_models/")]  # offline, nothing downloaded
    tiny = next(v for v in engine.voices() if v.id == "local/tiny")
    assert tiny.sample_rate_hz == TINY_SAMPLE_RATE_HZ and not tiny.supports_cloning
    assert all("/" not in v.id.removeprefix("local/").split("|")[0] for v in engine.voices())


def test_online_voice_list_offers_curated_models(model_root, tmp_path):
    online = CoquiEngine(Settings(coqui_model_dirs=(model_root,), data_dir=tmp_path, offline=False))
    voices = {v.id: v for v in online.voices()}
    assert "tts_models/en/ljspeech/vits" in voices
    # XTTS clones, and says its cloning is experimental until it has run on real weights.
    assert voices[XTTS_V2].supports_cloning and voices[XTTS_V2].cloning_experimental
    vits = voices["tts_models/en/ljspeech/vits"]
    assert not vits.supports_cloning and not vits.cloning_experimental
    assert "downloads on first use" in voices["tts_models/en/ljspeech/vits"].description


def test_synthesizes_float32_audio_at_the_model_rate(engine):
    audio = speak(engine, SHORT)
    assert audio.sample_rate == TINY_SAMPLE_RATE_HZ
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert len(audio.samples) > 0 and np.all(np.isfinite(audio.samples))
    assert audio.peak <= 1.0


def test_length_grows_with_text(engine):
    short, long = speak(engine, SHORT), speak(engine, LONG)
    assert len(long.samples) > 3 * len(short.samples)


def test_coqui_sentence_padding_is_removed(engine):
    # Coqui appends 10,000 zero samples per sentence; the synthesis service adds its own pauses.
    audio = speak(engine, SHORT)
    assert audio.duration_s < 0.5
    assert np.any(audio.samples[-200:] != 0)


@pytest.mark.parametrize("speed, ratio", [(0.5, 2.0), (2.0, 0.6)])
def test_speed_changes_duration_natively(engine, speed, ratio):
    # 5 frames per token: x0.5 speed -> 10 frames, x2 -> ceil(2.5) = 3 frames.
    normal = speak(engine, LONG)
    changed = speak(engine, LONG, speed=speed)
    assert len(changed.samples) / len(normal.samples) == pytest.approx(ratio, rel=0.03)
    # The model's own setting is restored afterwards.
    assert len(speak(engine, LONG).samples) == len(normal.samples)


def test_two_threads_at_once_keep_their_own_speed(engine):
    # Speed is a model attribute in VITS: without the engine's lock one request's speed leaks
    # into the other's audio.
    expected = {speed: len(speak(engine, LONG, speed=speed).samples) for speed in (0.5, 1.0, 2.0)}
    barrier = threading.Barrier(2)

    def job(speed: float, together: bool) -> tuple[float, int]:
        if together:
            barrier.wait(timeout=10)  # the first two jobs start at the same moment
        return speed, len(speak(engine, LONG, speed=speed).samples)

    jobs = [(0.5, True), (2.0, True), (1.0, False), (2.0, False), (0.5, False), (1.0, False)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda j: job(*j), jobs))
    assert [n for _, n in results] == [expected[s] for s, _ in results]


def test_character_input_multi_speaker_model(engine):
    engine.load("local/duo|bob")
    ids = {v.id for v in engine.voices()}
    assert {"local/duo|alice", "local/duo|bob"} <= ids
    audio = speak(engine, LONG, voice="local/duo|bob")
    assert audio.sample_rate == TINY_SAMPLE_RATE_HZ and len(audio.samples) > 0
    assert len(speak(engine, LONG, voice="local/duo").samples) > 0  # first speaker by default
    with pytest.raises(UnknownChoiceError, match="alice, bob"):
        engine.load("local/duo|carol")
    with pytest.raises(UnknownChoiceError, match="single voice"):
        engine.load("local/tiny|bob")


def test_model_id_follows_the_checkpoint_file(model_root, tmp_path):
    build_tiny_vits(tmp_path / "models" / "v", use_phonemes=False)
    eng = CoquiEngine(Settings(coqui_model_dirs=(tmp_path / "models",), data_dir=tmp_path))
    first = eng.model_id("local/v")
    assert first.startswith("coqui/local/v@") and first == eng.model_id("local/v|x")
    checkpoint = tmp_path / "models" / "v" / "model.pth"
    stat = checkpoint.stat()
    os.utime(checkpoint, (stat.st_atime, stat.st_mtime + 60))  # new weights copied in
    assert eng.model_id("local/v") != first


def test_unknown_catalogue_model_offline_is_a_clear_error(engine):
    with pytest.raises(ModelUnavailableError) as err:
        engine.load("tts_models/en/ljspeech/vits")
    message = str(err.value)
    assert "tts_models/en/ljspeech/vits" in message and "offline" in message
    assert "SPEECH_STUDIO_COQUI_MODEL_DIRS" in message and "SPEECH_STUDIO_OFFLINE=0" in message
    with pytest.raises(ModelUnavailableError):
        engine.model_id("tts_models/en/ljspeech/vits")


def test_downloaded_catalogue_model_is_found_offline(model_root, tmp_path, monkeypatch):
    # A model fetched earlier by Coqui itself (its folder layout) is used without the network.
    home = tmp_path / "coqui-home"
    monkeypatch.setenv("TTS_HOME", str(home))
    build_tiny_vits(home / "tts" / "tts_models--en--ljspeech--vits", use_phonemes=False)
    eng = CoquiEngine(Settings(data_dir=tmp_path / "data"))
    assert "tts_models/en/ljspeech/vits" in [v.id for v in eng.voices()]
    audio = speak(eng, SHORT, voice="tts_models/en/ljspeech/vits")
    assert audio.sample_rate == TINY_SAMPLE_RATE_HZ and len(audio.samples) > 0
    assert eng.model_id("tts_models/en/ljspeech/vits").startswith("coqui/tts_models/en/ljspeech/vits@")


@pytest.mark.parametrize("voice", ["local/nope", "tts_models/en/nowhere/vits", "../../etc/passwd",
                                   "/root/model.pth", "vocoder_models/en/ljspeech/hifigan_v2", ""])
def test_unknown_or_path_like_voices_are_refused(engine, voice):
    with pytest.raises(UnknownChoiceError):
        engine.load(voice)


def test_xtts_online_without_licence_acceptance_refuses_instead_of_prompting(tmp_path, monkeypatch):
    monkeypatch.delenv("COQUI_TOS_AGREED", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    eng = CoquiEngine(Settings(data_dir=tmp_path, offline=False))
    with pytest.raises(ModelUnavailableError, match="COQUI_TOS_AGREED=1"):
        eng.load(XTTS_V2)


def test_broken_checkpoint_is_a_clear_error(engine):
    with pytest.raises(ModelUnavailableError, match="local/broken"):
        engine.load("local/broken")


def test_unpronounceable_text_is_an_input_error(engine):
    with pytest.raises(InputError, match="cannot pronounce"):
        speak(engine, "漢字 ☃", voice="local/duo")
    with pytest.raises(InputError, match="cannot pronounce"):
        speak(engine, "\U0001f600 \U0001f600", voice="local/duo")
    assert list(engine.synthesize("   ", SynthesisOptions(voice="local/tiny"))) == []


def _speech_like(seconds: float, rate: int = 16_000) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-rate amplitude modulation
    return Audio((0.3 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32), rate)


def test_reference_clip_is_validated(engine):
    with pytest.raises(AudioError, match="silent"):
        speak(engine, SHORT, reference=Audio.silence(5.0, 16_000))
    with pytest.raises(AudioError, match="at least 3 s"):
        speak(engine, SHORT, reference=_speech_like(1.0))
    padded = Audio(np.concatenate([np.zeros(16_000 * 4, np.float32), _speech_like(1.0).samples,
                                   np.zeros(16_000 * 4, np.float32)]), 16_000)
    with pytest.raises(AudioError, match="only 1"):
        speak(engine, SHORT, reference=padded)  # 9 s long, 1 s of sound
    with pytest.raises(AudioError, match="limit"):
        validate_reference(_speech_like(5.0), max_s=4.0)
    ok = validate_reference(_speech_like(5.0), max_s=60.0)
    assert 4.5 < ok.duration_s <= 5.0


def test_reference_on_a_model_that_cannot_clone_says_so(engine):
    with pytest.raises(InputError, match="cannot clone") as err:
        speak(engine, SHORT, reference=_speech_like(5.0))
    assert not isinstance(err.value, AudioError)
    assert XTTS_V2 in str(err.value)


def test_split_voice():
    assert split_voice("tts_models/en/vctk/vits|p225") == ("tts_models/en/vctk/vits", "p225")
    assert split_voice("local/x") == ("local/x", None)
    assert split_voice(f"{XTTS_V2}|Ana Florence") == (XTTS_V2, "Ana Florence")


def test_through_the_synthesis_service_with_cache(model_root, tmp_path):
    """The engine behind the real service: registry, per-sentence streaming, cache hit."""
    from webapp.pipeline.cache import DiskSynthesisCache
    from webapp.pipeline.synthesis import SynthesisRequest, Synthesizer
    from webapp.pipeline.tts.registry import TTSRegistry

    settings = Settings(coqui_model_dirs=(model_root,), data_dir=tmp_path, preload=())
    service = Synthesizer(settings, TTSRegistry(settings), DiskSynthesisCache(tmp_path / "cache", 64))
    request = SynthesisRequest(text="Plants store energy. They use light.", engine="coqui",
                               voice="local/tiny", speed=1.5)
    first = service.run(request)
    assert not first.cache_hit and first.audio.sample_rate == TINY_SAMPLE_RATE_HZ
    assert len(first.cues) == 2 and first.model_id.startswith("coqui/local/tiny@")
    second = service.run(request)
    assert second.cache_hit and len(second.audio.samples) == len(first.audio.samples)
    # A voice sample for a model that cannot clone is ignored: same key, same audio (issue 14).
    with_sample = service.run(replace(request, reference=_speech_like(5.0)))
    assert with_sample.cache_hit and with_sample.request_key == first.request_key
    assert any("voice sample was ignored" in w for w in with_sample.warnings)



def test_which_voices_clone(engine):
    assert isinstance(engine, CloningEngine)
    assert engine.supports_cloning(XTTS_V2) and engine.supports_cloning(f"{XTTS_V2}|Ana Florence")
    assert not engine.supports_cloning("local/tiny")  # loaded
    assert not engine.supports_cloning("local/duo|bob")
    assert not engine.supports_cloning("tts_models/en/ljspeech/vits")  # not loaded, not on disk


def test_local_xtts_folder_is_known_to_clone_before_loading(tmp_path):
    folder = tmp_path / "models" / "myxtts"
    folder.mkdir(parents=True)
    (folder / "model.pth").write_bytes(b"")
    (folder / "config.json").write_text('{"model": "xtts", "audio": {"output_sample_rate": 24000}}')
    eng = CoquiEngine(Settings(coqui_model_dirs=(tmp_path / "models",), data_dir=tmp_path))
    assert eng.supports_cloning("local/myxtts")
    info = next(v for v in eng.voices() if v.id == "local/myxtts")
    assert info.supports_cloning and info.cloning_experimental and info.sample_rate_hz == 24_000


# -- coqui-tts without a public API: each use checked against the installed version ----------
def test_installed_coqui_tts_is_in_the_pinned_range():
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text("utf-8"))["project"]
    pins = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["coqui"]
            if Requirement(r).name == "coqui-tts"]
    assert len(pins) == 2 and pins[0].specifier == pins[1].specifier
    # An upper bound: a newer coqui-tts is installed only once these tests have passed on it.
    assert any(s.operator in ("<", "<=", "==", "~=") for s in pins[0].specifier)
    assert version("coqui-tts") in pins[0].specifier


@pytest.mark.parametrize("sound_norm_refs", [False, True])
def test_xtts_conditioning_from_memory_matches_coqui_from_a_file(tmp_path, sound_norm_refs):
    import soundfile as sf
    import torch

    model, config = build_tiny_xtts(max_ref_len=3, sound_norm_refs=sound_norm_refs)
    clip = _speech_like(4.0, XTTS_REFERENCE_HZ)  # longer than max_ref_len: both cut it
    sf.write(tmp_path / "ref.wav", clip.samples, XTTS_REFERENCE_HZ, subtype="FLOAT")
    # What Xtts.synthesize does with a file (voice_settings from the config).
    theirs = model.get_conditioning_latents(
        audio_path=str(tmp_path / "ref.wav"), max_ref_length=config.max_ref_len,
        gpt_cond_len=config.gpt_cond_len, gpt_cond_chunk_len=config.gpt_cond_chunk_len,
        sound_norm_refs=config.sound_norm_refs)
    ours = xtts_conditioning(model, config, clip)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_xtts_inference_takes_the_settings_the_engine_passes():
    import inspect

    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    config = XttsConfig()
    inspect.signature(Xtts.inference).bind(
        None, "Hello.", "en", None, None, temperature=config.temperature,
        length_penalty=config.length_penalty, repetition_penalty=config.repetition_penalty,
        top_k=config.top_k, top_p=config.top_p, speed=1.0, enable_text_splitting=True)
    for name in ("max_ref_len", "sound_norm_refs", "gpt_cond_len", "gpt_cond_chunk_len", "languages"):
        assert hasattr(config, name)


def test_vits_reads_its_speed_from_length_scale(engine):
    # _length_scale changes this attribute for one call; the speed tests above hear the effect.
    import inspect

    model = engine._loaded["local/tiny"].model
    assert isinstance(model.length_scale, float)
    assert "length_scale" not in inspect.signature(type(model).inference).parameters


def test_coqui_download_folder_is_coquis_own(tmp_path, monkeypatch):
    from trainer.io import get_user_data_dir

    assert coqui_user_dir() == get_user_data_dir("tts")  # TTS_HOME (the autouse fixture)
    monkeypatch.delenv("TTS_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert coqui_user_dir() == get_user_data_dir("tts")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert coqui_user_dir() == get_user_data_dir("tts")


def test_catalogue_file_is_the_one_coqui_reads():
    from TTS.utils.manage import ModelManager

    manager = ModelManager(progress_bar=False)
    expected = {f"{t}/{lang}/{d}/{m}" for t, langs in manager.models_dict.items()
                for lang, datasets in langs.items() for d, models in datasets.items() for m in models}
    released = CoquiCatalogue.released()
    assert set(released) == expected and XTTS_V2 in released
    assert released[XTTS_V2]["tos_required"] and released[XTTS_V2]["model_type"] == "tts_models"


@pytest.mark.parametrize("layout", [
    ("model.pth", "config.json"),
    ("checkpoint.pth", "sub/config.json", "config.json"),
    ("weights/best.pth.tar", "config.json"),  # no usual name: the one *.pt* file
    ("a.pt", "b.pth", "config.json"),  # two candidates: not found
    ("model.pth",),  # no config: not found
])
def test_checkpoint_rule_is_coquis(tmp_path, layout):
    from TTS.utils.manage import ModelManager

    for name in layout:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    try:
        expected = ModelManager._find_files(tmp_path)
    except ValueError:
        expected = None
    assert find_checkpoint(tmp_path) == expected


def test_licence_accepted_by_the_operator_lets_the_download_start(tmp_path, monkeypatch):
    from TTS.utils.manage import ModelManager

    asked = []

    def no_network(self, name):
        asked.append(name)
        raise OSError("no network in tests")

    monkeypatch.setattr(ModelManager, "download_model", no_network)
    monkeypatch.setenv("COQUI_TOS_AGREED", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    eng = CoquiEngine(Settings(data_dir=tmp_path, offline=False))
    with pytest.raises(ModelUnavailableError, match="Could not download .*no network"):
        eng.load(XTTS_V2)
    assert asked == [XTTS_V2]


def test_the_page_offers_the_cloning_upload_only_where_the_service_uses_it(tmp_path, model_root):
    """The Synthesize tab asks the engine, as the synthesis service does: the bundled Piper voice
    and a VITS do not clone, a local XTTS does (labelled experimental), and so does an XTTS
    speaker typed in before its model is loaded (it is not in the voice list yet)."""
    from types import SimpleNamespace

    from webapp.components import synthesize_handlers as handlers
    from webapp.pipeline.tts.registry import TTSRegistry

    folder = tmp_path / "models" / "myxtts"
    folder.mkdir(parents=True)
    (folder / "model.pth").write_bytes(b"")
    (folder / "config.json").write_text('{"model": "xtts", "audio": {"output_sample_rate": 24000}}')
    settings = Settings(coqui_model_dirs=(model_root, tmp_path / "models"), data_dir=tmp_path)
    services = SimpleNamespace(tts=TTSRegistry(settings), settings=settings)  # what the handlers read
    assert handlers.cloning(services, "piper", "joe") == (False, False)
    assert handlers.cloning(services, "coqui", "local/tiny") == (False, False)
    assert handlers.cloning(services, "coqui", "local/myxtts") == (True, True)
    assert handlers.cloning(services, "coqui", f"{XTTS_V2}|Ana Florence") == (True, True)
    assert handlers.cloning(services, "coqui", ["not", "a", "voice"]) == (False, False)
    assert handlers.cloning_label(True) == handlers.CLONING_EXPERIMENTAL_LABEL
