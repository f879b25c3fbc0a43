"""STT engines on real weights (bundled tiny.en, and the same weights converted for
openai-whisper), the registry, file transcription outputs, bad inputs, and the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
from paths import LIBRIVOX, ROOT, SPEECH  # tests/paths.py

from webapp.config import Settings
from webapp.pipeline.audio import Audio, load
from webapp.pipeline.errors import AudioError, InputError, ModelUnavailableError, UnknownChoiceError
from webapp.pipeline.stt.base import (
    Segment,
    TranscribeOptions,
    Transcript,
    WhisperEngineBase,
    Word,
    guard_segment,
    loop_start,
)
from webapp.pipeline.stt.files import load_for_transcription, render, transcribe_audio
from webapp.pipeline.stt.registry import STTRegistry

CLIP = "sense_and_sensibility_01_austen_64kb-0870.wav"
SHORT = "sense_and_sensibility_01_austen_64kb-0880.wav"


def reference(folder: Path, name: str) -> str:
    rows = dict(line.split("\t", 1) for line in
                (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:])
    return rows[name]


def wer(ref: str, hyp: str) -> float:
    from whisper.normalizers import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return jiwer.wer(norm(ref), norm(hyp))


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> STTRegistry:
    return STTRegistry(Settings(data_dir=tmp_path_factory.mktemp("stt-data")))


@pytest.fixture(scope="module")
def fw(registry):
    return registry.get("faster-whisper", "tiny.en")


@pytest.fixture(scope="module")
def clip() -> Audio:
    return load(LIBRIVOX / CLIP, target_hz=16_000)


# -- engines on real weights -------------------------------------------------------------

def test_faster_whisper_transcribes_real_speech_with_word_timings(fw, clip):
    t = fw.transcribe(clip)
    assert isinstance(t, Transcript)
    assert wer(reference(LIBRIVOX, CLIP), t.text) <= 0.1, t.text
    assert t.engine == "faster-whisper" and t.model == "tiny.en"
    assert t.duration_s == pytest.approx(clip.duration_s)
    words = t.words
    assert len(words) >= 18
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w.start_s <= w.end_s <= clip.duration_s + 0.05 for w in words)
    assert all(0.0 <= w.probability <= 1.0 for w in words)
    assert t.text.strip().endswith(".")  # punctuation comes through


def test_registry_shares_one_loaded_model(registry, fw):
    assert registry.get() is fw
    assert registry.get("faster-whisper", "tiny.en") is fw


@pytest.mark.slow
def test_openai_whisper_on_converted_real_weights_matches_faster_whisper(registry, fw, clip):
    ow = registry.get("openai-whisper", "tiny.en")
    converted = registry.settings.models_dir / "openai-whisper" / "tiny.en-from-ct2.pt"
    assert converted.is_file()
    a = ow.transcribe(clip)
    b = fw.transcribe(clip)
    assert wer(reference(LIBRIVOX, CLIP), a.text) <= 0.1, a.text
    # Same weights, same beam search: the same words (docs/stack-notes.md); timings close.
    assert wer(b.text, a.text) <= 0.05, (a.text, b.text)
    assert a.words and abs(a.words[-1].end_s - b.words[-1].end_s) < 0.5


def test_converter_maps_every_openai_whisper_parameter(registry):
    import torch
    import whisper

    from webapp.pipeline.stt.convert import ct2_to_openai_state, read_ct2_variables
    from webapp.pipeline.stt.registry import bundled_ct2_dir

    dims, state = ct2_to_openai_state(read_ct2_variables(bundled_ct2_dir() / "model.bin"))
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**dims))
    expected = model.state_dict()
    assert set(state) == set(expected)
    assert all(tuple(expected[k].shape) == state[k].shape for k in state)
    assert dims["n_vocab"] == 51864 and dims["n_audio_layer"] == 4  # tiny.en
    assert torch.isfinite(torch.from_numpy(state["decoder.token_embedding.weight"])).all()


def test_unknown_engine_and_model_names_are_clear(registry):
    with pytest.raises(UnknownChoiceError, match="faster-whisper"):
        registry.get("wav2vec", None)
    with pytest.raises(UnknownChoiceError, match="tiny.en"):
        registry.get("faster-whisper", "huge-v9")
    with pytest.raises(UnknownChoiceError):
        registry.get("faster-whisper", "../../etc/passwd")


def test_other_models_offline_name_the_model_and_the_fix(registry):
    with pytest.raises(ModelUnavailableError) as info:
        registry.get("faster-whisper", "base.en")
    message = str(info.value)
    assert "base.en" in message and "SPEECH_STUDIO_WHISPER_MODEL_DIRS" in message
    assert "SPEECH_STUDIO_OFFLINE=0" in message
    assert registry.models() == ["tiny.en"]


def test_operator_model_dir_is_found_by_name(tmp_path, monkeypatch):
    from webapp.pipeline.stt.registry import bundled_ct2_dir

    (tmp_path / "my-tiny").symlink_to(bundled_ct2_dir())
    monkeypatch.setenv("SPEECH_STUDIO_WHISPER_MODEL_DIRS", str(tmp_path))
    monkeypatch.setenv("SPEECH_STUDIO_DATA_DIR", str(tmp_path / "data"))
    reg = STTRegistry(Settings.from_env())
    assert "my-tiny" in reg.models("faster-whisper")
    engine = reg.get("faster-whisper", "my-tiny")
    assert engine.model == "my-tiny"


# -- hallucination guards and preprocessing ---------------------------------------------

def _spoken(sentence: str, times: int, start_s: float = 0.0, words_per_s: float = 3.0,
            pause_s: float = 0.4) -> list[Word]:
    """Word timings of a sentence said ``times`` times at a normal speaking rate."""
    words, t = [], start_s
    for _ in range(times):
        for token in sentence.split():
            words.append(Word(" " + token, t, t + 0.8 / words_per_s))
            t += 1.0 / words_per_s
        t += pause_s
    return words


def _squeezed(sentence: str, times: int, at_s: float) -> list[Word]:
    """A sentence repeated with no audio under it: Whisper's loop, all words at one instant."""
    return [Word(" " + token, at_s, at_s) for _ in range(times) for token in sentence.split()]


def _segment(words: list[Word], **kw) -> Segment:
    return Segment("".join(w.text for w in words), words[0].start_s, words[-1].end_s,
                   tuple(words), **kw)


def test_guard_drops_classic_hallucinations():
    opts = TranscribeOptions()
    good = Segment(" Hello there.", 0, 1, avg_logprob=-0.3, no_speech_prob=0.1,
                   compression_ratio=1.2)
    assert guard_segment(good, opts) is good
    silent = Segment(" Thank you for watching.", 0, 1, avg_logprob=-1.2, no_speech_prob=0.9)
    assert guard_segment(silent, opts) is None
    # Words looping from the start, all squeezed into one instant: nothing is kept.
    looping = _segment(_squeezed("the", 40, 0.5), avg_logprob=-0.2, compression_ratio=3.1)
    assert guard_segment(looping, opts) is None
    # No word timings: forty words in two seconds cannot be speech either.
    assert guard_segment(Segment(" the" * 40, 0, 2, avg_logprob=-0.2), opts) is None
    assert guard_segment(Segment(" . . .", 0, 1), opts) is None


def test_a_loop_after_real_speech_is_cut_and_the_speech_kept():
    sentence = "He was not an ill-disposed young man."
    real = _spoken(sentence, 2)
    words = real + _squeezed(sentence, 6, real[-1].end_s)
    assert loop_start(words) == len(real)
    kept = guard_segment(_segment(words, compression_ratio=9.0), TranscribeOptions())
    assert kept is not None and kept.words == tuple(real)
    assert kept.text == "".join(w.text for w in real) and kept.end_s == real[-1].end_s


def test_real_repetitions_with_normal_timings_are_kept():
    """A teacher's repetitions: whole segments kept, however well their window compresses."""
    opts = TranscribeOptions()
    cases = [
        _spoken("Repeat after me: the mitochondria is the powerhouse of the cell.", 3),
        _spoken("five", 8, pause_s=0.3),  # a drill word
        _spoken("Ten of clubs.", 6, words_per_s=5.0, pause_s=0.1),  # fast and tight
    ]
    for words in cases:
        assert loop_start(words) is None
        segment = _segment(words, avg_logprob=-0.2, no_speech_prob=0.1, compression_ratio=4.5)
        assert guard_segment(segment, opts) is segment
    # Zero-length words are a Whisper timing glitch in real speech too: a few do not make a loop.
    drill = _spoken("five", 6)
    drill[2] = Word(" five", drill[2].start_s, drill[2].start_s)
    drill[4] = Word(" five", drill[4].start_s, drill[4].start_s)
    assert loop_start(drill) is None
    # Without word timings, repetitions at a speaking rate are kept too.
    untimed = Segment(" Ten of clubs." * 3, 0, 4.0, compression_ratio=2.6)
    assert guard_segment(untimed, opts) is untimed
    # Low confidence alone is no reason to delete words (the old avg_logprob < -2 rule).
    mumbled = Segment(" Photosynthesis makes sugar.", 0, 2, avg_logprob=-2.5, no_speech_prob=0.2)
    assert guard_segment(mumbled, opts) is mumbled


def test_compression_fallback_only_reruns_a_looping_first_pass():
    """The library's compression-ratio fallback garbles repeated speech; ``transcribe`` decodes
    without it first and hands it the threshold only when the first pass loops."""
    sentence = "He was not an ill-disposed young man."

    class Recorder(WhisperEngineBase):
        name, model = "fake", "fake"

        def __init__(self, loops: bool) -> None:
            self.loops, self.thresholds = loops, []

        def decode(self, audio, options):
            self.thresholds.append(options.compression_ratio_threshold)
            real = _spoken(sentence, 3)
            looping = self.loops and options.compression_ratio_threshold is None
            words = real + (_squeezed(sentence, 5, real[-1].end_s) if looping else [])
            yield _segment(words)

    audio = Audio.silence(10.0, 16_000)
    clean = Recorder(loops=False)
    assert clean.transcribe(audio).text.count("young man") == 3
    assert clean.thresholds == [None]
    looping = Recorder(loops=True)
    assert looping.transcribe(audio).text.count("young man") == 3
    assert looping.thresholds == [None, 2.4]
    greedy = Recorder(loops=True)  # one temperature: nothing to fall back to, one pass
    greedy.transcribe(audio, TranscribeOptions(temperature=(0.0,)))
    assert greedy.thresholds == [2.4]
    literal = Recorder(loops=True)
    literal.transcribe(audio, TranscribeOptions(compression_fallback_on_loop=False))
    assert literal.thresholds == [2.4]


def test_silence_and_noise_give_no_text(fw):
    silence = Audio.silence(5.0, 16_000)
    noise = Audio((np.random.default_rng(1).standard_normal(16_000 * 5) * 0.05)
                  .astype(np.float32), 16_000)
    for audio in (silence, noise):
        result = transcribe_audio(fw, audio)
        assert result.transcript.text == ""
        assert any("No speech" in w for w in result.warnings)


def test_denoise_and_normalise_keep_speech_recognisable(fw, clip):
    quiet = Audio(clip.samples * 0.05, clip.sample_rate)
    t = fw.transcribe(quiet, TranscribeOptions(denoise=True, normalize_level=True))
    assert wer(reference(LIBRIVOX, CLIP), t.text) <= 0.15, t.text


# -- outputs -------------------------------------------------------------------------------

def test_srt_vtt_json_outputs_parse_and_are_monotonic(fw, clip):
    import srt
    import webvtt

    t = fw.transcribe(clip)
    subs = list(srt.parse(render(t, "srt")))
    assert subs
    ends = [s.end.total_seconds() for s in subs]
    starts = [s.start.total_seconds() for s in subs]
    assert all(a <= b for a, b in zip(starts, ends, strict=True))
    assert all(ends[i] <= starts[i + 1] for i in range(len(subs) - 1))
    assert wer(reference(LIBRIVOX, CLIP), " ".join(s.content for s in subs)) <= 0.1
    cues = webvtt.from_string(render(t, "vtt"))
    assert [c.text for c in cues] == [s.content for s in subs]
    data = json.loads(render(t, "json"))
    assert data["text"] == t.text and data["segments"][0]["words"][0]["start_s"] >= 0
    assert render(t, "txt").strip() == " ".join(s.content for s in subs)
    with pytest.raises(InputError):
        render(t, "docx")


# -- bad input -----------------------------------------------------------------------------

def test_bad_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio\n" * 50)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes((LIBRIVOX / CLIP).read_bytes()[:40])
    with pytest.raises(AudioError, match="empty"):
        load_for_transcription(empty, 3600)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_for_transcription(fake, 3600)
    with pytest.raises(AudioError):
        load_for_transcription(truncated, 3600)


def _flac_claiming(seconds: float, rate_hz: int = 8000) -> bytes:
    """A FLAC file of 1 s of silence whose header (STREAMINFO's total-samples field) says it
    lasts ``seconds``: what the header check sees differs from what decoding would give."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(rate_hz, np.float32), rate_hz, format="FLAC")
    data = bytearray(buf.getvalue())
    # "fLaC", the 4-byte block header, then STREAMINFO: 10 bytes of block and frame sizes,
    # then 64 bits holding rate (20), channels - 1 (3), bits - 1 (5) and total samples (36).
    at = 4 + 4 + 10
    field = int.from_bytes(data[at:at + 8], "big")
    total_mask = (1 << 36) - 1
    field = (field & ~total_mask) | int(seconds * rate_hz)
    data[at:at + 8] = field.to_bytes(8, "big")
    return bytes(data)


def test_three_hours_is_refused_before_decoding(tmp_path, monkeypatch):
    """Refused from the header, nothing decoded. The file's body is 1 s long, so a check made
    after decoding would pass it (or fail on its truncated frames with another message); and
    both decoders are spied on, so any decoding fails the test too."""
    path = tmp_path / "long.flac"
    path.write_bytes(_flac_claiming(3 * 3600))
    assert sf.info(str(path)).duration == 3 * 3600  # the header really claims 3 hours
    import webapp.pipeline.audio as audio_module

    def no_decoding(*args, **kwargs):
        raise AssertionError("the samples were decoded")

    # Both decoders: soundfile's and the ffmpeg fallback.
    monkeypatch.setattr(audio_module.sf, "read", no_decoding)
    monkeypatch.setattr(audio_module, "_decode_with_ffmpeg", no_decoding)
    with pytest.raises(AudioError, match="180.0 minutes long"):
        load_for_transcription(path, 3600)


def test_telephone_rate_eight_channels_and_clipping(fw, clip, tmp_path):
    ref = reference(LIBRIVOX, CLIP)
    phone = tmp_path / "phone.wav"
    sf.write(phone, clip.resample(8000).samples, 8000)
    audio = load_for_transcription(phone, 3600)
    result = transcribe_audio(fw, audio, original_rate_hz=8000)
    assert wer(ref, result.transcript.text) <= 0.25
    assert any("8000 Hz" in w for w in result.warnings)

    multi = tmp_path / "eight.wav"
    sf.write(multi, np.tile(clip.samples[:, None], (1, 8)) * 0.5, 16_000)
    result = transcribe_audio(fw, load_for_transcription(multi, 3600))
    assert wer(ref, result.transcript.text) <= 0.1

    clipped = Audio(np.clip(clip.samples * 8, -1, 1), 16_000)
    result = transcribe_audio(fw, clipped)
    assert any("clipped" in w for w in result.warnings)
    assert wer(ref, result.transcript.text) <= 0.3


# -- CLI -----------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1",
           "SPEECH_STUDIO_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "webapp", "transcribe", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=180)


def test_cli_prints_valid_srt_matching_the_transcript(tmp_path):
    import srt

    proc = _cli(str(LIBRIVOX / CLIP), "--format", "srt")
    assert proc.returncode == 0, proc.stderr
    subs = list(srt.parse(proc.stdout))
    assert subs and subs[0].start.total_seconds() >= 0
    assert all(s.start < s.end for s in subs)
    assert all(a.end <= b.start for a, b in zip(subs, subs[1:], strict=False))
    assert wer(reference(LIBRIVOX, CLIP), " ".join(s.content for s in subs)) <= 0.1


def test_cli_json_and_errors(tmp_path):
    proc = _cli(str(SPEECH / "cards" / "001.wav"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "clubs" in data["text"].lower() and data["rtf"] > 0
    bad = tmp_path / "x.wav"
    bad.write_text("nope")
    proc = _cli(str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    proc = _cli(str(LIBRIVOX / SHORT), "--model", "small.en")
    assert proc.returncode == 2 and "SPEECH_STUDIO_WHISPER_MODEL_DIRS" in proc.stderr
