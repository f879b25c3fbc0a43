"""The STT engine contract: a narrow protocol, adapters behind it.

An engine turns 16 kHz mono ``Audio`` into a ``Transcript`` of segments and words with
timestamps and confidence. Engines are loaded once and shared between requests and sessions,
so ``transcribe`` must be safe to call from several worker threads (adapters take a lock when
the backend is not).

Hallucination guards live here too (``keep_segment``): Whisper invents text on silence and
noise ("Thank you for watching"); the three classic signals are the no-speech probability,
the average log-probability and the gzip compression ratio of the text (openai-whisper
``transcribe.py`` uses the same thresholds).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import AudioError, InputError
from webapp.pipeline.subtitles import Cue

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
"""What every Whisper model expects."""

MAX_PROMPT_CHARS = 800
"""Whisper keeps at most 223 prompt tokens; longer vocabulary text is cut from the start."""


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float
    probability: float = 1.0


@dataclass(frozen=True)
class Segment:
    text: str
    start_s: float
    end_s: float
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0


@dataclass(frozen=True)
class TranscribeOptions:
    """Per-call choices; ``None`` means "engine default".

    ``initial_prompt`` carries domain vocabulary (names, terms) and, in live captions, the tail
    of the committed text. ``denoise`` (spectral gating, noisereduce) and ``normalize_level``
    are preprocessing the benchmark decides on (bench/stt.py). ``encoder_context_s`` lets the
    faster-whisper adapter encode only the audio it was given (plus 1 s, at least this many
    seconds) instead of a zero-padded 30 s window, the whisper.cpp ``audio_ctx`` trick: several
    times less encoder work on short live-caption buffers. ``None`` (the default, used for
    files) keeps the standard 30 s window.
    """

    language: str | None = "en"
    initial_prompt: str | None = None
    beam_size: int = 5
    best_of: int = 5
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    word_timestamps: bool = True
    condition_on_previous_text: bool = True
    vad_filter: bool = False
    denoise: bool = False
    normalize_level: bool = False
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    max_new_tokens: int | None = None
    encoder_context_s: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= int(self.beam_size) <= 10:
            raise InputError(f"beam_size must be between 1 and 10; got {self.beam_size}.")
        if self.initial_prompt is not None and len(self.initial_prompt) > MAX_PROMPT_CHARS:
            object.__setattr__(self, "initial_prompt", self.initial_prompt[-MAX_PROMPT_CHARS:])


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: tuple[Segment, ...]
    language: str
    duration_s: float
    engine: str = ""
    model: str = ""
    options: TranscribeOptions = field(default_factory=TranscribeOptions)

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    def cues(self, max_chars: int = 84, max_duration_s: float = 6.0) -> list[Cue]:
        return transcript_cues(self, max_chars=max_chars, max_duration_s=max_duration_s)


ProgressFn = Callable[[float], None]
"""Called with the fraction of the audio done, 0..1."""


@runtime_checkable
class STTEngine(Protocol):
    name: str
    """Engine id used in the UI and CLI: 'faster-whisper', 'openai-whisper'."""
    model: str
    """Model name shown to users (never a server path)."""

    def iter_segments(self, audio: Audio, options: TranscribeOptions) -> Iterator[Segment]:
        """Yield segments as they are decoded (kept ones only, see ``keep_segment``)."""
        ...

    def transcribe(
        self, audio: Audio, options: TranscribeOptions | None = None,
        progress: ProgressFn | None = None,
    ) -> Transcript:
        ...


class WhisperEngineBase:
    """What both Whisper adapters share: input preparation, warm-up and the ``Transcript``
    built from ``iter_segments`` (which each adapter implements)."""

    name: str
    model: str

    def iter_segments(self, audio: Audio, options: TranscribeOptions) -> Iterator[Segment]:
        raise NotImplementedError

    @staticmethod
    def _prepared(audio: Audio, options: TranscribeOptions) -> Audio:
        audio = prepare_audio(audio, options)
        if not len(audio.samples):
            raise AudioError("No audio to transcribe (0 samples).")
        return audio

    def warm_up(self) -> None:
        self.transcribe(Audio.silence(1.0, SAMPLE_RATE_HZ),
                        TranscribeOptions(beam_size=1, word_timestamps=False))

    def transcribe(self, audio: Audio, options: TranscribeOptions | None = None,
                   progress: ProgressFn | None = None) -> Transcript:
        options = options or TranscribeOptions()
        duration_s = audio.duration_s
        segments = []
        for seg in self.iter_segments(audio, options):
            segments.append(seg)
            if progress and duration_s > 0:
                progress(min(1.0, seg.end_s / duration_s))
        if progress:
            progress(1.0)
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcript(text=text, segments=tuple(segments), language=options.language or "en",
                          duration_s=duration_s, engine=self.name, model=self.model,
                          options=options)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 1.0


def keep_segment(segment: Segment, options: TranscribeOptions) -> bool:
    """False for the usual Whisper hallucinations: a likely-silent window decoded with low
    confidence, or text that repeats itself (high compression ratio)."""
    if not segment.text.strip():
        return False
    if (segment.no_speech_prob > options.no_speech_threshold
            and segment.avg_logprob < options.log_prob_threshold):
        logger.debug("dropping likely-silent segment %r", segment.text)
        return False
    if segment.compression_ratio > options.compression_ratio_threshold:
        logger.debug("dropping repetitive segment %r", segment.text)
        return False
    if segment.avg_logprob < 2 * options.log_prob_threshold:
        logger.debug("dropping very-low-confidence segment %r", segment.text)
        return False
    return True


def prepare_audio(audio: Audio, options: TranscribeOptions) -> Audio:
    """16 kHz mono float32, optionally denoised and level-normalised (before recognition)."""
    out = audio.resample(SAMPLE_RATE_HZ)
    if options.denoise and len(out.samples) >= SAMPLE_RATE_HZ // 2:
        import noisereduce

        # Stationary spectral gating, noise profile estimated from the clip itself: the same
        # WER as the non-stationary mode on bench/stt.py's noisy sets at 1/30 of the cost
        # (0.1 s instead of 3.3 s for 26.7 s of audio).
        reduced = noisereduce.reduce_noise(y=out.samples, sr=SAMPLE_RATE_HZ, stationary=True,
                                           prop_decrease=0.8, n_jobs=1)
        out = Audio(np.asarray(reduced, dtype=np.float32), SAMPLE_RATE_HZ)
    if options.normalize_level:
        out = out.loudness_normalize(-20.0, max_gain_db=20.0)
    return out


def join_words(texts: list[str]) -> str:
    """Join Whisper word pieces (which carry their own leading spaces) into clean text."""
    return " ".join("".join(texts).split())


def transcript_cues(transcript: Transcript, max_chars: int = 84,
                    max_duration_s: float = 6.0) -> list[Cue]:
    """Subtitle cues from word timings: at most ``max_chars`` (two 42-char lines, the BBC
    guideline) and ``max_duration_s`` each, broken after sentence punctuation when possible."""
    cues: list[Cue] = []
    for seg in transcript.segments:
        if not seg.words:
            cues.append(Cue(seg.start_s, seg.end_s, seg.text.strip()))
            continue
        current: list[Word] = []
        for word in seg.words:
            if current:
                text = join_words([w.text for w in current] + [word.text])
                too_long = (len(text) > max_chars
                            or word.end_s - current[0].start_s > max_duration_s)
                sentence_end = current[-1].text.rstrip().endswith((".", "?", "!"))
                if too_long or (sentence_end and len(text) > max_chars // 2):
                    cues.append(_cue(current))
                    current = []
            current.append(word)
        if current:
            cues.append(_cue(current))
    return cues


def _cue(words: list[Word]) -> Cue:
    return Cue(words[0].start_s, words[-1].end_s, join_words([w.text for w in words]))
