"""Receiving and decoding decoupled (issue 8): a live session takes every chunk at once, however
slow decoding is, and its transcriber still gets every sample.

The slow engine is the real bundled faster-whisper engine with a delay added to each decode (as
on a loaded CPU), not a stand-in for the transcriber.
"""

from __future__ import annotations

import threading
import time

import jiwer
import numpy as np
import pytest
from paths import LIBRIVOX  # tests/paths.py

from webapp.config import Settings
from webapp.pipeline.audio import Audio, load
from webapp.pipeline.errors import InputError
from webapp.pipeline.live_session import LiveSession, LiveStatus
from webapp.pipeline.streaming import LocalAgreementTranscriber, StreamingOptions
from webapp.pipeline.stt.registry import STTRegistry

CLIPS = ("sense_and_sensibility_01_austen_64kb-0870.wav",
         "sense_and_sensibility_01_austen_64kb-0930.wav")


def _norm(text: str) -> str:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text)


def _refs() -> dict[str, str]:
    return dict(line.split("\t", 1) for line in
                (LIBRIVOX / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:])


class SlowEngine:
    """The real engine, each decode made ``delay_s`` slower (a busy CPU)."""

    def __init__(self, engine, delay_s: float) -> None:
        self._engine = engine
        self.delay_s = delay_s
        self.name, self.model = engine.name, engine.model
        self.decodes = 0

    def iter_segments(self, audio, options):
        self.decodes += 1
        time.sleep(self.delay_s)
        yield from self._engine.iter_segments(audio, options)

    def transcribe(self, audio, options=None, progress=None):
        return self._engine.transcribe(audio, options, progress)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return STTRegistry(Settings(data_dir=tmp_path_factory.mktemp("live-data"))).get()


@pytest.fixture(scope="module")
def speech() -> tuple[Audio, str]:
    """Two real sentences at 48 kHz (a browser's rate), with pauses around them."""
    refs = _refs()
    parts = [Audio.silence(0.5, 16_000), load(LIBRIVOX / CLIPS[0], target_hz=16_000),
             Audio.silence(0.8, 16_000), load(LIBRIVOX / CLIPS[1], target_hz=16_000),
             Audio.silence(1.0, 16_000)]
    return Audio.concat(parts).resample(48_000), " ".join(refs[n] for n in CLIPS)


def _chunks(audio: Audio, chunk_s: float = 0.1) -> list[Audio]:
    step = int(chunk_s * audio.sample_rate)
    return [Audio(audio.samples[i:i + step], audio.sample_rate)
            for i in range(0, len(audio.samples), step)]


def test_slow_decoding_never_holds_up_receiving_and_loses_no_audio(engine, speech):
    audio, ref = speech
    slow = SlowEngine(engine, delay_s=0.6)
    transcriber = LocalAgreementTranscriber(slow, StreamingOptions())
    statuses: list[LiveStatus] = []
    session = LiveSession(transcriber, statuses.append)
    chunks = _chunks(audio)
    feed_times = []
    for chunk in chunks:  # 4x real time: decoding cannot keep up
        started = time.perf_counter()
        session.feed(chunk)
        feed_times.append(time.perf_counter() - started)
        time.sleep(0.025)
    session.stop()
    final = session.wait(120)

    assert final is not None and final.final and final.error is None
    # Receiving never waited for a decode (each takes > 0.6 s).
    assert max(feed_times) < 0.05, max(feed_times)
    # Every sample reached the transcriber (16 kHz stream time = the audio's duration).
    assert final.received_s == pytest.approx(audio.duration_s, abs=1e-6)
    assert final.processed_s == pytest.approx(audio.duration_s, abs=1e-6)
    assert final.update.stream_s == pytest.approx(audio.duration_s, abs=0.02)
    # It fell behind, said so, and caught up by decoding backlogs at once (fewer decodes than
    # a session that keeps up makes), not by skipping audio: the words are all there.
    assert max(s.backlog_s for s in statuses) > 1.0
    assert slow.decodes < len(chunks) / 5
    assert jiwer.wer(_norm(ref), _norm(final.update.committed_text)) <= 0.15, final.update
    # Words committed inside a backlog are reported too (the page logs when each appeared).
    reported = [w.text for s in statuses for w in s.update.new_words]
    assert " ".join("".join(reported).split()) == final.update.committed_text


def test_statuses_come_while_audio_arrives_and_text_only_grows(engine, speech):
    audio, ref = speech
    statuses: list[LiveStatus] = []
    done = threading.Event()

    def on_status(status: LiveStatus) -> None:
        statuses.append(status)
        if status.final:
            done.set()

    session = LiveSession(LocalAgreementTranscriber(engine), on_status)
    for chunk in _chunks(audio):
        session.feed(chunk)
        time.sleep(0.02)
    assert statuses and not statuses[-1].final  # updates before Stop
    session.stop()
    assert done.wait(60)
    previous = ""
    for status in statuses:
        assert status.update.committed_text.startswith(previous)
        previous = status.update.committed_text
    assert statuses[-1].update.pending_text == ""
    assert jiwer.wer(_norm(ref), _norm(previous)) <= 0.15, previous


def test_limits_and_errors_are_reported_not_raised_in_the_worker(engine):
    statuses: list[LiveStatus] = []
    session = LiveSession(LocalAgreementTranscriber(engine), statuses.append, max_audio_s=1.0)
    session.feed(Audio.silence(0.6, 16_000))
    with pytest.raises(InputError, match="limited to"):
        session.feed(Audio.silence(0.6, 16_000))
    session.stop()
    with pytest.raises(InputError, match="ended"):
        session.feed(Audio.silence(0.1, 16_000))
    final = session.wait(30)
    assert final.final and final.update.committed_text == "" and final.error is None

    class Broken:
        name, model = "broken", "none"

        def iter_segments(self, audio, options):
            raise RuntimeError("backend crashed")

    statuses.clear()
    session = LiveSession(LocalAgreementTranscriber(Broken()), statuses.append)
    clip = load(LIBRIVOX / CLIPS[1], target_hz=16_000)
    session.feed(clip)
    session.stop()
    final = session.wait(30)
    assert final.error and "internal error" in final.error and "backend" not in final.error


def test_cancel_ends_the_worker_without_decoding(engine, speech):
    audio, _ref = speech
    slow = SlowEngine(engine, delay_s=0.2)
    session = LiveSession(LocalAgreementTranscriber(slow), lambda s: None)
    for chunk in _chunks(audio)[:40]:
        session.feed(chunk)
    session.cancel()
    assert session.wait(10) is None and session.done


def test_pieces_keep_every_sample_across_rate_changes():
    from webapp.pipeline.live_session import _pieces

    a = Audio(np.ones(4_800, np.float32), 48_000)
    b = Audio(np.ones(1_600, np.float32), 16_000)
    pieces = _pieces([a, a, a, b, a], piece_s=0.25)
    assert sum(p.duration_s for p in pieces) == pytest.approx(4 * 0.1 + 0.1)
    assert [p.sample_rate for p in pieces] == [48_000, 48_000, 16_000, 48_000]
