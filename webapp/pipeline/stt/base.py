"""The STT engine contract: a narrow protocol, adapters behind it.

An engine turns 16 kHz mono ``Audio`` into a ``Transcript`` of segments and words with
timestamps and confidence. Engines are loaded once and shared between requests and sessions,
so ``transcribe`` must be safe to call from several worker threads (adapters take a lock when
the backend is not).

Hallucination guards live here too (``guard_segment``, ``loop_start``). They look only at the
segment itself and never delete real speech: Whisper invents text on silence and noise
("Thank you for watching"), caught by a high no-speech probability together with a low average
log-probability; and it can get stuck repeating itself, caught by ``loop_start`` from the word
timings (a loop holds more words than its audio can). The gzip compression ratio is not a
guard here: faster-whisper and openai-whisper report it for the whole 30 s window, so a teacher
who repeats a sentence looks like a loop (issue 8: 149 of 399 words deleted). The libraries
still get ``compression_ratio_threshold`` for their temperature fallback, in file
transcription only when a first pass without it loops (``WhisperEngineBase.transcribe``).
"""

from __future__ import annotations

import logging
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
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

MAX_VOCABULARY_CHARS = 500
MAX_TERM_CHARS = 40
_BREAKS = frozenset(("Cc", "Zl", "Zp"))  # control characters, line breaks: a space
_INVISIBLE = frozenset(("Cf", "Co", "Cs"))  # zero-width, private use, surrogates: dropped


def clean_vocabulary(text: str | None) -> str:
    """The user's "names and terms" as a Whisper prompt: each word once, invisible and control
    characters removed, no 'word' longer than ``MAX_TERM_CHARS``, at most
    ``MAX_VOCABULARY_CHARS``.

    Whisper continues its prompt. Found by tests/test_fuzz.py on tiny.en: the vocabulary
    "word word word ..." (500 characters, what the page allows) turned a 1.1 s clip into 57 s
    of decoding and the transcript "word word word" instead of the speech; 500 "é" gave 21 s
    and a transcript of "éééé...". Each word once is all a prompt needs to bias the spelling
    of a name, and a repeated word is what makes the decoder loop.
    """
    if not text:
        return ""
    visible = "".join(" " if unicodedata.category(c) in _BREAKS else c for c in text
                      if unicodedata.category(c) not in _INVISIBLE)
    seen: set[str] = set()
    terms: list[str] = []
    used = 0
    for word in visible.split():
        key = word.strip(".,;:!?\"'()[]").casefold()
        if not key or len(word) > MAX_TERM_CHARS or key in seen:
            continue
        if used + len(word) + bool(terms) > MAX_VOCABULARY_CHARS:
            break
        seen.add(key)
        terms.append(word)
        used += len(word) + (len(terms) > 1)
    return " ".join(terms)


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
    files) keeps the standard 30 s window. ``compression_ratio_threshold`` only drives the
    library's temperature fallback; no segment is dropped for it (see ``guard_segment``).
    With ``compression_fallback_on_loop`` (the default), ``transcribe`` decodes first without
    that fallback and again with it only if the first pass loops (see
    ``WhisperEngineBase.transcribe`` for why).
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
    no_speech_threshold: float | None = 0.6
    log_prob_threshold: float | None = -1.0
    compression_ratio_threshold: float | None = 2.4
    compression_fallback_on_loop: bool = True
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


@dataclass(frozen=True)
class TranscriptionTiming:
    """One finished piece of recognition work, for whoever measures the server
    (``webapp.metrics``)."""

    mode: str
    """``file``: a whole recording (``files.transcribe_audio``); ``live``: one decode of a
    live-caption buffer (``streaming``)."""
    engine: str
    model: str
    compute_s: float
    audio_s: float


TranscriptionObserver = Callable[[TranscriptionTiming], None]


def notify_observers(engine: object, timing: TranscriptionTiming) -> None:
    """Tell the engine's observers (the list its registry gave it, if any) about ``timing``;
    an observer that raises is logged and never fails the transcription."""
    for observer in getattr(engine, "observers", ()):
        try:
            observer(timing)
        except Exception:  # noqa: BLE001 - measuring must never fail recognition
            logger.exception("transcription observer failed")


@runtime_checkable
class STTEngine(Protocol):
    name: str
    """Engine id used in the UI and CLI: 'faster-whisper', 'openai-whisper'."""
    model: str
    """Model name shown to users (never a server path)."""

    def iter_segments(self, audio: Audio, options: TranscribeOptions) -> Iterator[Segment]:
        """Yield segments as they are decoded (what ``guard_segment`` keeps of them)."""
        ...

    def transcribe(
        self, audio: Audio, options: TranscribeOptions | None = None,
        progress: ProgressFn | None = None,
    ) -> Transcript:
        ...


class WhisperEngineBase:
    """What both Whisper adapters share: input preparation, warm-up, the hallucination guard
    and the ``Transcript``, built from ``decode`` (which each adapter implements)."""

    name: str
    model: str
    observers: Sequence[TranscriptionObserver] = ()  # the registry's (``notify_observers``)

    def decode(self, audio: Audio, options: TranscribeOptions) -> Iterator[Segment]:
        """Yield the recogniser's segments as they are decoded, before any guard."""
        raise NotImplementedError

    def iter_segments(self, audio: Audio, options: TranscribeOptions) -> Iterator[Segment]:
        for segment in self.decode(audio, options):
            kept, _looped = _guard(segment, options)
            if kept is not None:
                yield kept

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
        """The whole recording as one ``Transcript``.

        With ``compression_fallback_on_loop``, the first pass leaves out the library's
        compression-ratio fallback and a second pass with it runs only when the first one
        contains a loop (``loop_start``). Measured for issue 8: the fallback fires on every
        30 s window in which a sentence is said three times (its text compresses like a loop),
        then samples at rising temperatures and prefers any sample that compresses less, i.e.
        one that garbles or drops a repetition. On a 33 s lesson (two sentences said three and
        two times, two cards three times each) 16 runs with the fallback gave 11 different
        transcripts, all 10 repetitions in 3 of them, "seven of clubs" not once in 6 of 8
        denoised runs; without it, the same transcript every run, with 9 of the 10 (tiny.en
        itself misses one card). The fallback stays for what it is good at: when the first
        pass loops, the second pass gets it.
        """
        options = options or TranscribeOptions()
        segments: list[Segment] | None = None
        fallback_on_loop = (options.compression_fallback_on_loop
                            and options.compression_ratio_threshold is not None
                            and len(options.temperature) > 1)  # one temperature: no fallback
        if fallback_on_loop:
            first = replace(options, compression_ratio_threshold=None)
            segments, looped = self._decode_all(audio, first, progress)
            if looped:
                logger.info("Whisper looped; decoding again with the compression-ratio fallback")
                segments = None
        if segments is None:
            segments, _looped = self._decode_all(audio, options, progress)
        if progress:
            progress(1.0)
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcript(text=text, segments=tuple(segments), language=options.language or "en",
                          duration_s=audio.duration_s, engine=self.name, model=self.model,
                          options=options)

    def _decode_all(self, audio: Audio, options: TranscribeOptions,
                    progress: ProgressFn | None) -> tuple[list[Segment], bool]:
        """The guarded segments, and whether any decoded segment contained a loop."""
        duration_s = audio.duration_s
        segments: list[Segment] = []
        looped = False
        for segment in self.decode(audio, options):
            kept, cut = _guard(segment, options)
            looped = looped or cut
            if kept is not None:
                segments.append(kept)
            if progress and duration_s > 0:
                progress(min(1.0, segment.end_s / duration_s))
        return segments, looped


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 1.0


def guard_segment(segment: Segment, options: TranscribeOptions) -> Segment | None:
    """The part of a decoded segment worth keeping: the segment itself, the segment cut before
    a hallucination loop (``loop_start``), or ``None`` for one without words (empty or
    punctuation only) or likely silent.

    Only signals of the segment itself count. No-speech probability above the threshold *and*
    average log-probability below it is openai-whisper's own silence rule. Two old rules are
    gone. Dropping a segment for its window's compression ratio (> 2.4) deleted genuinely
    repeated sentences (issue 8). Dropping it for avg_logprob < -2 fired on 3 of the 998
    segments measured for ``loop_start``: never on real speech, only on text invented over
    10-20 s of a tone or chords under a prompt of repeated words (recordings without speech,
    which file transcription skips and live captions filter with the VAD). It would delete
    hard-to-hear real speech (a song, a noisy room) whole, and a wrong word is easier to fix
    than a missing sentence.
    """
    return _guard(segment, options)[0]


def _guard(segment: Segment, options: TranscribeOptions) -> tuple[Segment | None, bool]:
    """``guard_segment``'s answer, and whether the segment contained a loop."""
    if not _has_words(segment.text):
        return None, False
    if (options.no_speech_threshold is not None and options.log_prob_threshold is not None
            and segment.no_speech_prob > options.no_speech_threshold
            and segment.avg_logprob < options.log_prob_threshold):
        logger.debug("dropping likely-silent segment %r", segment.text)
        return None, False
    words = segment.words or _spread_words(segment)
    cut = loop_start(words)
    if cut is None:
        return segment, False
    kept = words[:cut]
    text = "".join(w.text for w in kept)
    logger.debug("cutting a loop from segment %r after %d of %d words", segment.text, cut,
                 len(words))
    if not _has_words(text):
        return None, True
    return replace(segment, text=text, end_s=kept[-1].end_s,
                   words=tuple(kept) if segment.words else (),
                   compression_ratio=compression_ratio(text)), True


LOOP_MIN_REPEATS = 3
"""Consecutive copies of a word sequence before a loop is considered at all."""
LOOP_MAX_WORDS_PER_S = 6.0
"""Fastest plausible speech (about 360 words a minute, beyond fast talkers)."""
LOOP_SHORT_WORD_S = 0.03
"""A word shorter than this has no audio under it (timings come in 20 ms steps)."""
LOOP_MIN_EXCESS_WORDS = 8
"""Words beyond what the audio can hold before a run counts as a loop (and at least two
copies' worth)."""

_WORD_KEY = re.compile(r"[^\w']+")


def loop_start(words: Sequence[Word]) -> int | None:
    """Index of the first word of a hallucination loop in ``words`` (keep ``words[:index]``),
    or ``None`` when there is none.

    A loop is at least ``LOOP_MIN_REPEATS`` consecutive copies of the same word sequence
    (compared without case and punctuation) whose timings are implausible as speech. For each
    copy k of such a run, the tail from copy k to the end of the run gets an excess: how many
    more words it holds than ``LOOP_MAX_WORDS_PER_S`` allows in its duration, or how many more
    zero-length words (shorter than ``LOOP_SHORT_WORD_S``) than words with audio under them,
    whichever is larger. The run is a loop when the largest excess reaches
    ``LOOP_MIN_EXCESS_WORDS`` and two copies; the loop starts at the copy with the largest
    excess, which is where plausible timings give way to squeezed ones, so repetitions that
    were really spoken before the loop stay.

    Measured on tiny.en for issue 8: 998 decoded segments, 155 of them with a run of three or
    more copies, from the LibriVox, sonnet and card recordings said 2-6 times with 0.1-0.6 s
    pauses and a 3.3-minute lesson (file, greedy and live-caption settings, growing live
    buffers), and from tones, hum, music and noise with and without prompts that prime a
    repetition. Real repetitions reached at most 58 % of their threshold (4.6 excess words,
    drills of two- to four-word cards with Whisper's timing glitches; 47 % for a sentence whose
    last copy Whisper squeezed at the end of a live buffer). Genuine loops reached 1.05-27
    times theirs ("5-5-5..." 112 times, "to do for him" 53 times, a card 50 times, "." 223
    times, mostly stacked on the window's last instant), from the real drills themselves as
    much as from tones and music. The only loops left alone were three copies of a prompted
    sentence on white noise (0.93), which the silence and VAD checks are for. The verdicts
    were the same for 5-8 words per second and 4-8 excess words.

    Segments without word timings can be checked by spreading their words evenly over the
    segment (``guard_segment`` does): then only "more words than the duration allows" counts.
    """
    keys = [word_key(w.text) for w in words]
    total = len(keys)
    for i in range(total):
        for n in range(1, (total - i) // LOOP_MIN_REPEATS + 1):
            if i >= n and keys[i - n:i] == keys[i:i + n]:
                continue  # inside a run already seen from an earlier start
            copies = 1
            while keys[i + copies * n:i + (copies + 1) * n] == keys[i:i + n]:
                copies += 1
            if copies < LOOP_MIN_REPEATS:
                continue
            copy, excess = _most_squeezed_tail(words, i, n, copies)
            if excess >= max(LOOP_MIN_EXCESS_WORDS, 2 * n):
                return i + copy * n
    return None


def _most_squeezed_tail(words: Sequence[Word], i: int, n: int, copies: int) -> tuple[int, float]:
    """(copy index, excess words) of the tail of the run that the audio can least hold;
    ties go to the later copy, so as little as possible is cut."""
    end_s = words[i + copies * n - 1].end_s
    best_copy, best = copies - 1, float("-inf")
    count = short = 0
    for copy in range(copies - 1, -1, -1):
        for w in words[i + copy * n:i + (copy + 1) * n]:
            count += 1
            short += (w.end_s - w.start_s) < LOOP_SHORT_WORD_S
        duration_s = max(0.0, end_s - words[i + copy * n].start_s)
        excess = max(count - LOOP_MAX_WORDS_PER_S * duration_s, float(2 * short - count))
        if excess > best:
            best_copy, best = copy, excess
    return best_copy, best


def _has_words(text: str) -> bool:
    """False for empty text and for punctuation alone (a loop of "." is common)."""
    return any(ch.isalnum() for ch in text)


def word_key(text: str) -> str:
    """Comparison form of a word: lower case, no punctuation ("Mr." == "mr")."""
    return _WORD_KEY.sub("", text.lower())


def _spread_words(segment: Segment) -> tuple[Word, ...]:
    """Words of a segment decoded without word timings, spread evenly over its duration."""
    tokens = segment.text.split()
    if not tokens:
        return ()
    step = max(0.0, segment.end_s - segment.start_s) / len(tokens)
    return tuple(Word(" " + t, segment.start_s + k * step, segment.start_s + (k + 1) * step)
                 for k, t in enumerate(tokens))


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
            # Whisper returns some words in pieces (" self", "-substantial"): a piece with no
            # leading space continues the word before it, so a cue never starts with it.
            if current and word.text[:1].isspace():
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
