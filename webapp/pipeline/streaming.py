"""Live captions: a pure, chunk-fed streaming transcriber (no UI, no threads).

Feed it audio chunks as a browser sends them (any rate, int16 or float, mono or stereo, any
length) with ``push``; each call returns a ``CaptionUpdate`` with the committed text (final,
never changes) and the pending hypothesis (may still change). ``finish`` flushes at the end.
Because it is pure, tests and ``bench/stt.py`` replay recordings through exactly the code the
app runs.

Default policy, ``LocalAgreementTranscriber`` (design after ufal/whisper_streaming, Macháček
et al. 2023, "Turning Whisper into Real-Time Transcription System"; our own code):

* **Silero VAD** scores every 32 ms of the stream. Audio with no speech is never decoded
  (after a pause the buffer keeps only a short lead-in), so silence costs nothing and yields
  no text (no "Thank you for watching" on a quiet microphone).
* The **buffer** (16 kHz audio since the last cut) is re-decoded at most every ``step_s`` of new
  audio, **prompted** with the committed text before the buffer (and the user's vocabulary).
* **LocalAgreement-2**: words are committed when two successive hypotheses agree on them (the
  longest common prefix), so a word is final within about one step after it is heard.
* **Utterance end**: when VAD hears ``end_silence_s`` of silence after speech, the utterance
  is decoded once more and committed as a whole: pauses finalise text at
  once instead of waiting for a second hypothesis. The last ``left_context_s`` of it stays in
  the buffer as acoustic left context for the next sentence (its words are already
  committed and are matched away), which is what fixed sentence starts ("How do you marry"
  for "Had he married").
* **Hallucination guards**: decode only up to the last speech (+``tail_s``); drop words with no
  VAD speech near them, a near-zero-probability tail ("Thank you."), and loops
  (``stt.base.loop_start``: repeats squeezed into less audio than they need; a teacher
  saying the same words again is not a loop).
* **Buffer trimming**: past ``max_buffer_s`` the buffer is cut after the last committed
  sentence (or word), keeping every decode short.
* **Bounded decoding**: the encoder sees only the buffer (``encoder_context_s``: several times
  less work than a padded 30 s window), decoding is greedy with ``max_new_tokens`` bounded.
  When decoding cannot keep up, the caller (``live_session.LiveSession``) feeds the backlog
  with ``push(..., decode=False)`` and decodes once at its end: fewer, longer decodes, and no
  audio skipped.

``OverlapTranscriber`` is the seed article's policy (1 s windows every 0.5 s, each decoded on
its own and merged by time), kept as the baseline the benchmark compares against.
"""

from __future__ import annotations

import difflib
import logging
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import InputError
from webapp.pipeline.stt.base import (
    LOOP_SHORT_WORD_S,
    SAMPLE_RATE_HZ,
    STTEngine,
    TranscribeOptions,
    TranscriptionTiming,
    Word,
    clean_vocabulary,
    join_words,
    loop_start,
    notify_observers,
    word_key,
)
from webapp.pipeline.vad import WINDOW_S, WINDOW_SAMPLES, StreamingVAD

logger = logging.getLogger(__name__)

COVER_MARGIN_S = 0.25
"""Speech this close to a word counts as covered by it (word timings jitter by 0.1-0.2 s)."""
RETRY_BEAM_SIZE = 5
"""Beam width of the second hearing when there is no committed-text prompt to leave out."""

Policy = Literal["local-agreement", "overlap"]
POLICIES: tuple[str, ...] = ("local-agreement", "overlap")


@dataclass(frozen=True)
class StreamingOptions:
    """Live-caption policy knobs. Defaults chosen with bench/stt.py (see the README)."""

    policy: Policy = "local-agreement"
    vocabulary: str = ""
    step_s: float = 0.5
    """Decode at most once per this much new audio."""
    beam_size: int = 1
    """Greedy for the frequent mid-utterance decodes (LocalAgreement supplies stability)."""
    start_beam_size: int = 1
    """Beam width while nothing of the current utterance is committed yet. Beam search (5)
    was the default while utterances started without left context; with ``left_context_s``
    greedy is as good and cheaper (bench/live_e2e.py and the replay of the LibriVox and sonnet
    files: 1.4 % / 12.3 % WER greedy against 4.2 % / 14.0 % with beam 5 here)."""
    final_beam_size: int = 1
    """Beam width for the one decode that finalises an utterance (once per pause). Greedy:
    beam search replaced a confident greedy word with an invented one at sentence ends
    ("ill-disposed" -> "the sparrows", p 0.86 -> 0.13), the live captions' only extra error
    against offline transcription on the LibriVox file."""
    primed_gap_s: float = 0.4
    """A hypothesis that leaves this much speech without words (a run of VAD speech no word
    comes within ``COVER_MARGIN_S`` of: it stopped early, or skipped part of the buffer) is
    decoded once more (see ``_decode``)."""
    hold_probability: float = 0.3
    """Words below this probability need three agreeing hypotheses to be committed; at an
    utterance end, an unsure word among the last ``max_held_words`` stays pending (with the
    words after it) until the next utterance gives them right context, the pause exceeds
    ``max_pause_s``, or Stop. 0.5 held too much of the sonnet (WER 12.3 % -> 14.9 %);
    0.3 kept it at 12.3 % and fixed the LibriVox sentence end under every shift tried."""
    max_held_words: int = 2
    start_agreement: int = 2
    """Hypotheses that must agree on the first words of an utterance (2, or 3 for fewer
    errors at about 1 s more delay on those words)."""
    left_context_s: float = 3.0
    """Audio of the previous utterance kept in the buffer as acoustic left context..."""
    max_pause_s: float = 2.0
    """...unless the pause after it is longer than this."""
    pause_lead_in_s: float = 0.5
    """After such a long pause the buffer keeps only this much audio, as a lead-in for the
    next speech (VAD crosses its threshold a little after a soft onset). A judgement, not
    measured: more keeps a late-detected onset, less makes the next decodes shorter."""
    end_lead_in_s: float = 0.3
    """When no words of an utterance stay as left context, the buffer keeps this much of its
    end (or from the speech end, if later). A judgement, like ``pause_lead_in_s``; shorter
    because the pause is short and the next speech starts soon."""
    cut_before_word_s: float = 0.05
    """Where the buffer is cut before a word it keeps (left context, held words): a little
    before the word's timed start so its onset is not clipped. A judgement: word starts
    jitter by tens of milliseconds; more would bring back the end of the word before."""
    first_decode_speech_s: float = 0.5
    """No hypothesis before an utterance holds this much speech."""
    end_silence_s: float = 0.5
    """VAD silence that ends an utterance (and commits its last hypothesis)."""
    max_buffer_s: float = 10.0
    trim_margin_s: float = 0.1
    """Past ``max_buffer_s`` the buffer is cut this long after the last committed sentence
    end (sooner if the next pending word starts sooner). A judgement: enough for the end of
    the word's sound past its timed end, too little to hold a word of the next sentence."""
    vad_threshold: float = 0.5
    silence_margin: float = 0.15
    """Silence, for ending an utterance, is VAD probability below ``vad_threshold`` minus
    this: the hysteresis of Silero VAD's own segmentation (faster-whisper's ``VadOptions``
    takes ``threshold - 0.15`` as its silence threshold), adopted, not tuned here."""
    heard_margin_s: float = 0.2
    """A hypothesis word needs VAD speech within this of it, else it is dropped as invented
    (silence hallucination). A judgement from word timings jittering by 0.1-0.2 s (see
    ``COVER_MARGIN_S``): less would drop real words whose times drifted, more would keep
    inventions next to speech."""
    min_speech_s: float = 0.2
    max_compute_ratio: float | None = None
    """Skip decodes while compute exceeds this share of the audio time (+ ``compute_slack_s``);
    None: never. Off since receiving and decoding were decoupled (issue 8): a session that falls
    behind catches up by decoding its backlog at once, which keeps its pending text fresh,
    where skipping decodes left only utterance-end commits (3 sessions on 2 cores: mean delay
    2.9 s with 0.6)."""
    compute_slack_s: float = 1.0
    """Compute allowed on top of ``max_compute_ratio``, so that one slow decode early in the
    stream, while ratio x audio time is still tiny, does not switch decoding off. A
    judgement; unused while ``max_compute_ratio`` is None (the default)."""
    prompt_chars: int = 200
    max_new_tokens: int = 96
    tail_s: float = 0.5
    """Audio kept after the last speech when decoding (0.3 s before issue 8: with 0.5 s the
    LibriVox file's captions no longer depended on 5-20 ms shifts of the audio)."""
    final_tail_s: float = 0.5
    """The same for the decode that finalises an utterance: more margin, because VAD can end
    speech before a soft last syllable, and this decode is the one that commits. On the
    LibriVox file 0.2 s turned "ill-disposed" into "the sparrows"; 0.3 s did so in the
    browser; 0.5 and 0.8 s did not."""
    min_tail_probability: float = 0.05
    """Hypothesis words in the last ``unsure_tail_s`` below this probability end the
    hypothesis."""
    unsure_tail_s: float = 1.0
    """The end of the decoded audio where ``min_tail_probability`` applies: Whisper invents
    at the ragged end of a buffer ("Thank you.", measured p = 0.01 against > 0.2 for real
    words, see ``_drop_unsure_tail``). The length is a judgement: a real but unsure word
    earlier in the buffer is left to agreement instead."""
    reheard_overlap_s: float = 0.1
    """Held words (unsure, waiting for right context) count as re-heard by the next
    utterance's decodes when its first agreed word starts at least this long before the
    last held word ends (overlaps it by more than timing jitter); else they are committed
    as they were. A judgement from word timings jittering by 0.1-0.2 s."""
    reheard_start_s: float = 0.3
    """The decode that ends that utterance re-heard them when its first word starts no later
    than this after the first held word; else they are put in front of its words. A
    judgement: a re-heard word is timed afresh and its start moves; too small and re-heard
    words are shown twice, too large and held words the decode did not hear are lost."""
    new_word_overlap_s: float = 0.1
    """A hypothesis word is new (not a re-transcription of committed audio) if it starts
    after the last committed word's end minus this, or ends ``new_word_overhang_s`` after
    it. Both a judgement from the 0.1-0.2 s jitter of word timings between decodes: a larger
    overlap or a smaller overhang lets committed words through again, the opposite drops
    new words that Whisper timed early."""
    new_word_overhang_s: float = 0.25
    """See ``new_word_overlap_s``."""
    encoder_context_s: float | None = 10.0
    """Encode only the buffer (at least this many seconds) instead of a padded 30 s window;
    None = the standard window (about 0.3 s more per decode here)."""
    denoise: bool = False
    normalize_level: bool = False
    window_s: float = 1.0
    """Baseline policy only: window length."""
    overlap_s: float = 0.5
    """Baseline policy only: overlap between windows."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InputError(f"Unknown caption policy '{self.policy}'. Choose one of: "
                             f"{', '.join(POLICIES)}.")
        if len(self.vocabulary) > 500:
            raise InputError("The vocabulary field is limited to 500 characters "
                             f"({len(self.vocabulary)} given): keep names and key terms only.")
        # Each term once, nothing invisible: a repeated word makes Whisper loop on its prompt.
        object.__setattr__(self, "vocabulary", clean_vocabulary(self.vocabulary))


@dataclass(frozen=True)
class CaptionUpdate:
    committed_text: str
    """Everything committed so far (final)."""
    pending_text: str
    """The current hypothesis after the committed text (may still change)."""
    new_words: tuple[Word, ...] = ()
    """Words committed by this update, times in seconds from the stream start."""
    pending: tuple[Word, ...] = ()
    committed_count: int = 0
    stream_s: float = 0.0
    decoded: bool = False
    compute_s: float = 0.0
    utterance_end_s: float = 0.0
    """Stream time of the last utterance end (VAD silence); 0 before the first."""
    holding: bool = False
    """Unsure last words of that utterance are held back (shown pending), committed later."""


class CaptionTranscriber(Protocol):
    def push(self, chunk: Audio, decode: bool = True) -> CaptionUpdate:
        """Take a chunk of the stream. ``decode=False`` only listens (VAD, buffer, utterance
        ends): a caller that fell behind feeds its backlog that way and decodes once at the
        end, catching up without skipping any audio."""
        ...

    def finish(self) -> CaptionUpdate: ...


def make_transcriber(engine: STTEngine, options: StreamingOptions | None = None
                     ) -> CaptionTranscriber:
    options = options or StreamingOptions()
    if options.policy == "overlap":
        return OverlapTranscriber(engine, options)
    return LocalAgreementTranscriber(engine, options)


class _Input:
    """Any-rate chunks -> continuous 16 kHz stream (soxr's streaming resampler keeps filter
    state between chunks, so chunk edges leave no clicks)."""

    def __init__(self) -> None:
        self._rate: int | None = None
        self._resampler = None

    def convert(self, chunk: Audio) -> np.ndarray:
        if chunk.sample_rate == SAMPLE_RATE_HZ:
            return chunk.samples
        if chunk.sample_rate != self._rate:
            import soxr

            self._rate = chunk.sample_rate
            self._resampler = soxr.ResampleStream(chunk.sample_rate, SAMPLE_RATE_HZ, 1,
                                                  dtype="float32", quality="HQ")
        return self._resampler.resample_chunk(chunk.samples, last=False).astype(np.float32)

    def flush(self) -> np.ndarray:
        """The resampler's last samples (its filter delay: about 30 ms at 48 kHz), at the end
        of the stream, so the transcriber gets every sample."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._resampler = None
        self._rate = None
        return np.asarray(tail, dtype=np.float32)


@dataclass
class _Buffer:
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    offset_s: float = 0.0
    """Stream time of samples[0]."""

    @property
    def end_s(self) -> float:
        return self.offset_s + len(self.samples) / SAMPLE_RATE_HZ

    def cut(self, at_s: float) -> None:
        """Drop audio before stream time ``at_s``."""
        n = int(round((at_s - self.offset_s) * SAMPLE_RATE_HZ))
        n = max(0, min(n, len(self.samples)))
        self.samples = self.samples[n:]
        self.offset_s += n / SAMPLE_RATE_HZ


class _Captioner:
    """What both policies share: input conversion, the audio buffer, committed words, timing."""

    def __init__(self, engine: STTEngine, options: StreamingOptions) -> None:
        self.engine = engine
        self.options = options
        self._input = _Input()
        self._buffer = _Buffer()
        self._committed: list[Word] = []
        self._stream_s = 0.0
        self._compute_s = 0.0
        self.decodes = 0
        self.retries = 0
        """Decodes heard again because the first hypothesis left speech without words."""

    @property
    def committed_words(self) -> list[Word]:
        return list(self._committed)

    @property
    def compute_s(self) -> float:
        return self._compute_s

    def _decoded(self, started: float, audio_s: float) -> None:
        """Account for one decode that began at ``started`` (``time.perf_counter``)."""
        compute_s = time.perf_counter() - started
        self.decodes += 1
        self._compute_s += compute_s
        notify_observers(self.engine, TranscriptionTiming(
            "live", self.engine.name, self.engine.model, compute_s, audio_s))

    def _flush_input(self) -> np.ndarray:
        samples = self._input.flush()
        if len(samples):
            self._buffer.samples = np.concatenate([self._buffer.samples, samples])
            self._stream_s += len(samples) / SAMPLE_RATE_HZ
        return samples

    def _ingest(self, chunk: Audio) -> np.ndarray:
        """Convert a browser chunk to 16 kHz mono, append it to the buffer, advance the clock."""
        samples = self._input.convert(chunk)
        self._buffer.samples = np.concatenate([self._buffer.samples, samples])
        self._stream_s += len(samples) / SAMPLE_RATE_HZ
        return samples


class LocalAgreementTranscriber(_Captioner):
    """The default live-caption policy (see the module docstring)."""

    def __init__(self, engine: STTEngine, options: StreamingOptions | None = None) -> None:
        super().__init__(engine, options or StreamingOptions())
        self._vad = StreamingVAD()
        self._probs: list[float] = []  # one per 32 ms window of the stream
        self._pending: list[Word] = []
        self._previous: list[Word] = []  # the hypothesis before the pending one
        self._utterance_words = 0  # committed so far in the current utterance
        self._decoded_until_s = 0.0
        self._decoded_audio_until_s = 0.0
        self._utterance_has_speech = False
        self._utterance_from_s = 0.0  # VAD speech before this belongs to a finished utterance
        self._prompt_words = 0  # committed words whose audio has left the buffer
        self._held: list[Word] = []  # unsure last words of the previous utterance (shown pending)

    # -- public -----------------------------------------------------------------------------
    def push(self, chunk: Audio, decode: bool = True) -> CaptionUpdate:
        started = time.perf_counter()
        samples = self._ingest(chunk)
        self._probs.extend(self._vad.feed(samples).tolist())
        new = self._step(final=False, decode=decode)
        return self._update(new, started)

    def finish(self) -> CaptionUpdate:
        """End of the recording: decode what is left and commit all of it."""
        started = time.perf_counter()
        tail = self._flush_input()
        if len(tail):
            self._probs.extend(self._vad.feed(tail).tolist())
        new = self._step(final=True)
        return self._update(new, started)

    # -- policy -----------------------------------------------------------------------------
    def _step(self, final: bool, decode: bool = True) -> list[Word]:
        opts = self.options
        probs = np.asarray(self._probs[self._window(self._buffer.offset_s):], dtype=np.float32)
        fresh = np.asarray(self._probs[self._window(self._utterance_from_s):], dtype=np.float32)
        if (fresh > opts.vad_threshold).any():  # speech after the last utterance ended
            self._utterance_has_speech = True
        if not self._utterance_has_speech:
            # Nothing said since the last utterance: decode nothing. Words held back at the
            # last utterance end (unsure, waiting for right context) are committed at Stop or
            # when the pause grows long; after a long pause the left context is no longer
            # useful: keep only a short lead-in.
            held: list[Word] = []
            long_pause = self._buffer.end_s - self._utterance_from_s > opts.max_pause_s
            if self._held and (final or long_pause):
                held, self._held = self._held, []
                self._commit(held)
            if long_pause:
                self._buffer.cut(self._buffer.end_s - opts.pause_lead_in_s)
                self._prompt_words = len(self._committed)
            return held
        silent_tail = probs < max(0.0, opts.vad_threshold - opts.silence_margin)
        trailing_silence_s = _trailing_true(silent_tail) * WINDOW_S
        utterance_ended = trailing_silence_s >= opts.end_silence_s
        if final or utterance_ended:
            return self._end_utterance(trailing_silence_s, final)
        if not decode:
            return []
        if self._stream_s - self._decoded_until_s < opts.step_s - 1e-6:
            return []
        if self._speech_s() < opts.first_decode_speech_s:
            return []
        if (opts.max_compute_ratio is not None
                and self._compute_s > opts.max_compute_ratio * self._stream_s + opts.compute_slack_s):
            logger.debug("skipping a decode: compute %.1fs over budget", self._compute_s)
            return []
        # Decode up to the last speech (+ a short tail): trailing silence only invites
        # hallucinated words, and a decode with no new speech would repeat the last one.
        speech_end_s = self._last_speech_end_s()
        until_s = min(self._buffer.end_s, speech_end_s + opts.tail_s)
        if until_s <= self._decoded_audio_until_s + 1e-6:
            return []
        starting = self._utterance_words == 0
        hypothesis = self._decode(opts.start_beam_size if starting else None, until_s,
                                  speech_end_s)
        agreed = _common_prefix(self._pending, hypothesis)
        if starting and agreed and opts.start_agreement >= 3:
            # First words of an utterance: Whisper guesses them from little audio, and two
            # guesses can agree on the wrong words ("How do you marry" for "Had he married"),
            # so they also need the hypothesis before (LocalAgreement-3).
            agreed = _common_prefix(self._previous, agreed)
        agreed = self._sure_prefix(agreed)
        self._previous = self._pending
        self._pending = hypothesis[len(agreed):]
        if agreed and self._held:
            if agreed[0].start_s > self._held[-1].end_s - opts.reheard_overlap_s:
                self._commit(self._held)  # not re-heard: keep them as they were
            self._held = []  # else re-decoded with right context and now agreed on
        self._commit(agreed)
        self._utterance_words += len(agreed)
        if self._buffer.end_s - self._buffer.offset_s > opts.max_buffer_s:
            self._trim()
        return agreed

    def _sure_prefix(self, agreed: list[Word]) -> list[Word]:
        """Words Whisper is unsure of (probability below ``hold_probability``) need a third
        hypothesis to agree (LocalAgreement-3) before they are committed: two greedy guesses
        from nearly the same audio agreed on "the sparrows" for "ill-disposed"."""
        for i, w in enumerate(agreed):
            if w.probability < self.options.hold_probability:
                if len(_common_prefix(self._previous, agreed)) <= i:
                    return agreed[:i]
                break
        return agreed

    def _end_utterance(self, trailing_silence_s: float, final: bool = False) -> list[Word]:
        opts = self.options
        speech_end_s = self._buffer.end_s - trailing_silence_s
        enough = self._speech_s() >= opts.min_speech_s
        last_speech_s = self._last_speech_end_s()
        until_s = min(self._buffer.end_s, last_speech_s + opts.final_tail_s)
        hypothesis = (self._decode(opts.final_beam_size, until_s, last_speech_s)
                      if enough else [])
        words = [w for w in hypothesis if w.start_s < speech_end_s]
        if self._held and (not words
                           or words[0].start_s > self._held[0].start_s + opts.reheard_start_s):
            words = self._held + words  # this decode did not re-hear them: keep them as were
        self._held = []
        held: list[Word] = []
        if not final:
            # An unsure last word is often one Whisper cannot tell without what follows:
            # keep it pending; the next utterance's decodes see it with right context
            # (its audio stays in the buffer) and commit it by agreement, or the pause
            # grows long / Stop commits it as it is. On the LibriVox file the sentence end
            # "ill-disposed" came out as "the sparrows" (p 0.13 / 0.38) whenever the
            # browser's audio was shifted by 5-20 ms, and right context fixed it.
            tail = range(max(0, len(words) - opts.max_held_words), len(words))
            unsure = [i for i in tail if words[i].probability < opts.hold_probability]
            if unsure:
                words, held = words[:unsure[0]], words[unsure[0]:]
        self._commit(words)
        self._held = held
        self._pending = []
        self._previous = []
        self._utterance_words = 0
        self._utterance_has_speech = False
        self._utterance_from_s = self._buffer.end_s
        # Keep the last words of this utterance as acoustic left context for the next one
        # (Whisper hears a sentence start better after the end of the previous sentence; the
        # re-transcribed words are dropped by _after_committed), else a little lead-in.
        keep_from = self._buffer.end_s - self.options.left_context_s
        kept = [i for i in range(self._prompt_words, len(self._committed))
                if self._committed[i].start_s >= keep_from]
        if self.options.left_context_s > 0 and kept:
            self._prompt_words = kept[0]
            self._buffer.cut(self._committed[kept[0]].start_s - opts.cut_before_word_s)
        else:
            self._prompt_words = len(self._committed)
            cut_s = max(speech_end_s, self._buffer.end_s - opts.end_lead_in_s)
            if held:
                cut_s = min(cut_s, held[0].start_s - opts.cut_before_word_s)
            self._buffer.cut(cut_s)
        return words

    def _last_speech_end_s(self) -> float:
        first = self._window(self._buffer.offset_s)
        probs = np.asarray(self._probs[first:])
        speech = np.flatnonzero(probs > self.options.vad_threshold)
        if not len(speech):
            return self._buffer.offset_s
        return (first + int(speech[-1]) + 1) * WINDOW_S

    def _speech_s(self) -> float:
        """Speech heard in the current utterance (not the kept left context)."""
        start = max(self._buffer.offset_s, self._utterance_from_s)
        probs = np.asarray(self._probs[self._window(start):])
        return float(np.sum(probs > self.options.vad_threshold)) * WINDOW_S

    def _window(self, at_s: float) -> int:
        return int(at_s / WINDOW_S)

    def _prompt(self) -> str:
        before = [w.text for w in self._committed[:self._prompt_words]]
        tail = join_words(before)[-self.options.prompt_chars:] if self.options.prompt_chars > 0 else ""
        vocabulary = self.options.vocabulary.strip()
        return " ".join(p for p in (vocabulary, tail) if p)

    def _decode(self, beam_size: int | None, until_s: float, speech_end_s: float) -> list[Word]:
        """Decode the buffer up to ``until_s`` (the last speech, ending at ``speech_end_s``,
        plus a tail); return the words after the committed ones, in stream time."""
        opts = self.options
        beam = beam_size or opts.beam_size
        self._decoded_until_s = self._stream_s
        end = max(0, min(len(self._buffer.samples),
                         int(round((until_s - self._buffer.offset_s) * SAMPLE_RATE_HZ))))
        self._decoded_audio_until_s = self._buffer.offset_s + end / SAMPLE_RATE_HZ
        if end < WINDOW_SAMPLES:
            return []
        audio = Audio(self._buffer.samples[:end], SAMPLE_RATE_HZ)
        words = self._run_engine(audio, self._prompt(), beam)
        missed = self._missed_speech_s(words, speech_end_s)
        primed = (len(_drop_collapsed(words)) < len(words)
                  or (words and words[-1].end_s < speech_end_s - opts.primed_gap_s))
        if missed >= opts.primed_gap_s or (primed and self._prompt_words):
            # Whisper was primed to repeat by a prompt that ends with the words it is hearing
            # again (a teacher saying a sentence twice, a drill): it writes a copy out onto
            # one instant, or loops and stops early (the adapter cuts the loop, and with it
            # the real last words). Or it skipped part of a long buffer (issue 9's load test:
            # a sentence and a half never reached the captions). Words cut off here are lost
            # for good once the buffer moves on, so hear the buffer again: without the
            # committed text as prompt when there is one, else with a beam search; keep the
            # second hearing unless it leaves more speech without words.
            self.retries += 1
            if self._prompt_words:
                retry = self._run_engine(audio, opts.vocabulary.strip(), beam)
            else:
                retry = self._run_engine(audio, self._prompt(), max(beam, RETRY_BEAM_SIZE))
            if self._missed_speech_s(retry, speech_end_s) <= missed:
                words = retry
        words = _drop_unsure_tail(words, self._decoded_audio_until_s - opts.unsure_tail_s,
                                  opts.min_tail_probability)
        heard = _drop_collapsed([w for w in words if self._heard(w)])
        cut = loop_start(heard)  # a loop has more words than its audio can hold
        return self._after_committed(heard if cut is None else heard[:cut])

    def _missed_speech_s(self, words: list[Word], speech_end_s: float) -> float:
        """The longest run of speech (VAD) in the buffer up to ``speech_end_s`` that no word
        comes near: not a word of the hypothesis that has audio under it, nor a committed or
        held word still in the buffer. Words squeezed onto one instant cover nothing."""
        first = self._window(self._buffer.offset_s)
        last = self._window(speech_end_s)
        speech = np.asarray(self._probs[first:last], dtype=np.float32) > self.options.vad_threshold
        if not speech.any():
            return 0.0
        covered = np.zeros(len(speech), dtype=bool)
        for w in [*_drop_collapsed(words), *self._committed[self._prompt_words:], *self._held]:
            a = max(0, self._window(w.start_s - COVER_MARGIN_S) - first)
            b = max(0, self._window(w.end_s + COVER_MARGIN_S) + 1 - first)
            covered[a:b] = True
        return _longest_run(speech & ~covered) * WINDOW_S

    def _run_engine(self, audio: Audio, prompt: str, beam_size: int) -> list[Word]:
        opts = self.options
        started = time.perf_counter()
        options = TranscribeOptions(
            initial_prompt=prompt or None, beam_size=beam_size, best_of=beam_size,
            temperature=(0.0,), word_timestamps=True, condition_on_previous_text=False,
            denoise=opts.denoise, normalize_level=opts.normalize_level,
            max_new_tokens=opts.max_new_tokens, encoder_context_s=opts.encoder_context_s,
        )
        offset = self._buffer.offset_s
        segments = list(self.engine.iter_segments(audio, options))
        self._decoded(started, audio.duration_s)
        words = _glue([self._onset(Word(w.text, w.start_s + offset, w.end_s + offset,
                                        w.probability)) for s in segments for w in s.words])
        logger.debug("t=%.1f buffer %.1f-%.1f prompt %r -> %s", self._stream_s, offset,
                     self._buffer.end_s, options.initial_prompt,
                     [(w.text, round(w.start_s, 2), round(w.end_s, 2), round(w.probability, 2))
                      for w in words])
        return words

    def _onset(self, word: Word) -> Word:
        """The word, starting where the VAD first hears speech inside it. Whisper stretches a
        word that follows silence back over the silence (the first word of a buffer often
        starts at the buffer's start: 0.5 s early after a 0.5 s pause, measured), which would
        put a subtitle on screen before anyone speaks."""
        first, last = self._window(word.start_s), self._window(word.end_s)
        for i in range(max(first, 0), min(last, len(self._probs))):
            if self._probs[i] > self.options.vad_threshold:
                if i == first:
                    return word
                return Word(word.text, i * WINDOW_S, word.end_s, word.probability)
        return word

    def _heard(self, word: Word) -> bool:
        """VAD guard against hallucinated words: some speech within ``heard_margin_s``."""
        margin_s = self.options.heard_margin_s
        a = max(0, self._window(word.start_s - margin_s))
        b = self._window(word.end_s + margin_s) + 1
        probs = self._probs[a:b]
        return bool(probs) and max(probs) > self.options.vad_threshold

    def _after_committed(self, words: list[Word]) -> list[Word]:
        """Drop the words of a new hypothesis that re-transcribe committed audio still in the
        buffer. Aligned by words first (difflib), since timestamps jitter between decodes and
        hallucinated text skews them; then by time."""
        if not self._committed:
            return words
        in_buffer = self._committed[self._prompt_words:]
        if in_buffer and words:
            matcher = difflib.SequenceMatcher(a=[word_key(w.text) for w in in_buffer],
                                              b=[word_key(w.text) for w in words], autojunk=False)
            blocks = [b for b in matcher.get_matching_blocks() if b.size]
            if blocks and blocks[-1].a + blocks[-1].size >= len(in_buffer) - 1:
                words = words[blocks[-1].b + blocks[-1].size:]
        opts = self.options
        last_end = self._committed[-1].end_s
        return [w for w in words if w.start_s > last_end - opts.new_word_overlap_s
                or w.end_s > last_end + opts.new_word_overhang_s]

    def _commit(self, words: list[Word]) -> None:
        self._committed.extend(words)

    def _trim(self) -> None:
        """Cut the buffer after the last committed sentence end (else the last committed word)
        that lies inside it, so the next decodes stay short."""
        inside = [w for w in self._committed if w.end_s > self._buffer.offset_s]
        if not inside:
            return
        cut = next((w for w in reversed(inside) if w.text.rstrip().endswith((".", "?", "!"))),
                   inside[-1])
        next_start = self._pending[0].start_s if self._pending else cut.end_s
        self._buffer.cut(min(cut.end_s + self.options.trim_margin_s, max(cut.end_s, next_start)))
        self._prompt_words = self._committed.index(cut) + 1

    def _update(self, new: list[Word], started: float) -> CaptionUpdate:
        # Held words are shown as pending until a decode of the next utterance re-hears them.
        pending = self._pending or self._held
        return CaptionUpdate(
            committed_text=join_words([w.text for w in self._committed]),
            pending_text=join_words([w.text for w in pending]),
            new_words=tuple(new), pending=tuple(pending),
            committed_count=len(self._committed), stream_s=self._stream_s,
            decoded=bool(self._decoded_until_s == self._stream_s),
            compute_s=time.perf_counter() - started,
            utterance_end_s=self._utterance_from_s, holding=bool(self._held),
        )


class OverlapTranscriber(_Captioner):
    """Baseline: every ``window_s - overlap_s`` seconds decode the last ``window_s`` on its
    own and append the words that start after the last appended word (no pending text)."""

    def __init__(self, engine: STTEngine, options: StreamingOptions | None = None) -> None:
        super().__init__(engine, options or StreamingOptions(policy="overlap"))
        self._next_decode_s = self.options.window_s

    def push(self, chunk: Audio, decode: bool = True) -> CaptionUpdate:
        # The baseline decodes every window it has (``decode`` is ignored): it is only the
        # benchmark's point of comparison.
        started = time.perf_counter()
        self._ingest(chunk)
        new: list[Word] = []
        while self._stream_s >= self._next_decode_s - 1e-6:
            new += self._decode_window(self._next_decode_s)
            self._next_decode_s += self.options.window_s - self.options.overlap_s
        self._buffer.cut(self._stream_s - self.options.window_s)
        return self._update(new, started)

    def finish(self) -> CaptionUpdate:
        started = time.perf_counter()
        self._flush_input()
        new = self._decode_window(self._stream_s) if self._buffer.samples.size else []
        return self._update(new, started)

    def _decode_window(self, end_s: float) -> list[Word]:
        start_s = max(0.0, end_s - self.options.window_s)
        a = int(round((start_s - self._buffer.offset_s) * SAMPLE_RATE_HZ))
        b = int(round((end_s - self._buffer.offset_s) * SAMPLE_RATE_HZ))
        window = self._buffer.samples[max(0, a):max(0, b)]
        if len(window) < WINDOW_SAMPLES:
            return []
        started = time.perf_counter()
        options = TranscribeOptions(
            initial_prompt=self.options.vocabulary or None, beam_size=self.options.beam_size,
            best_of=self.options.beam_size, temperature=(0.0,), word_timestamps=True,
            condition_on_previous_text=False, denoise=self.options.denoise,
            normalize_level=self.options.normalize_level,
        )
        segments = list(self.engine.iter_segments(Audio(window, SAMPLE_RATE_HZ), options))
        self._decoded(started, len(window) / SAMPLE_RATE_HZ)
        last_end = self._committed[-1].end_s if self._committed else -1.0
        new = []
        for s in segments:
            for w in s.words:
                word = Word(w.text, w.start_s + start_s, w.end_s + start_s, w.probability)
                if (word.start_s + word.end_s) / 2 > last_end:
                    new.append(word)
                    last_end = word.end_s
        self._committed.extend(new)
        return new

    def _update(self, new: list[Word], started: float) -> CaptionUpdate:
        return CaptionUpdate(
            committed_text=join_words([w.text for w in self._committed]), pending_text="",
            new_words=tuple(new), committed_count=len(self._committed),
            stream_s=self._stream_s, decoded=bool(new),
            compute_s=time.perf_counter() - started,
        )


def _glue(words: list[Word]) -> list[Word]:
    """Join pieces that Whisper returns without a leading space ("ill" + "-disposed") so that
    agreement and commits work on whole words."""
    out: list[Word] = []
    for w in words:
        if out and w.text and not w.text[0].isspace():
            prev = out[-1]
            out[-1] = Word(prev.text + w.text, prev.start_s, w.end_s,
                           min(prev.probability, w.probability))
        else:
            out.append(w)
    return out


def _drop_unsure_tail(words: list[Word], tail_start_s: float, min_probability: float
                      ) -> list[Word]:
    """Cut a hypothesis at a near-zero-probability word in its last second: Whisper's
    "Thank you." and "And..." inventions at the ragged end of a buffer start this way
    (measured: p = 0.01 for the invented word, > 0.2 for real ones)."""
    for i, w in enumerate(words):
        if w.start_s >= tail_start_s and w.probability < min_probability:
            return words[:i]
    return words


def _drop_collapsed(words: list[Word], min_run: int = 2) -> list[Word]:
    """Drop runs of ``min_run`` or more words in a row with no audio under them (each shorter
    than ``LOOP_SHORT_WORD_S``). When the buffer holds the same sentence twice, Whisper can
    write it out once more, collapsed onto one instant (measured: a sentence said three times
    came out four times, the extra copy's words all at 10.24 s, between two real words).
    Words without audio under them were not said; the real words around them stay."""
    short = [w.end_s - w.start_s < LOOP_SHORT_WORD_S for w in words]
    keep = [True] * len(words)
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and short[j]:
            j += 1
        if j - i >= min_run:
            keep[i:j] = [False] * (j - i)
        i = max(j, i + 1)
    return [w for w, k in zip(words, keep, strict=True) if k]


def _common_prefix(previous: list[Word], current: list[Word]) -> list[Word]:
    """LocalAgreement-2: the longest prefix on which two successive hypotheses agree (taken
    from the newer one, whose timestamps and punctuation saw more audio)."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if word_key(a.text) != word_key(b.text):
            break
        n += 1
    return current[:n]


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in ``mask``."""
    if not mask.any():
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return int(np.max(edges[1::2] - edges[::2]))


def _trailing_true(mask: np.ndarray) -> int:
    if not len(mask) or not mask[-1]:
        return 0
    falses = np.flatnonzero(~mask)
    return len(mask) - (int(falses[-1]) + 1 if len(falses) else 0)


@dataclass(frozen=True)
class ReplayReport:
    """A recording replayed as a browser would send it, on a simulated clock: chunk k arrives
    at (k+1)*chunk_s, is processed when the previous one is done, and takes its measured
    compute time. Delays are from a word's end in the audio to its appearance."""

    text: str
    words: tuple[Word, ...]
    committed_delays_s: tuple[float, ...]
    pending_delays_s: tuple[float, ...]
    compute_s: float
    committed_lags_s: tuple[float, ...]
    """How much audio had arrived after each word's end when it was committed: the policy's
    own delay, without compute time, so the same on any machine."""
    audio_s: float
    updates: tuple[CaptionUpdate, ...]

    @property
    def compute_ratio(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0


def replay(transcriber: CaptionTranscriber, audio: Audio, chunk_s: float = 0.5) -> ReplayReport:
    step = max(1, int(round(chunk_s * audio.sample_rate)))
    clock = 0.0
    compute = 0.0
    first_seen: dict[int, float] = {}  # word index -> time something showed at that position
    committed_at: list[float] = []
    arrived_at: list[float] = []
    updates: list[CaptionUpdate] = []
    words: list[Word] = []
    starts = list(range(0, len(audio.samples), step))
    for k, start in enumerate(starts):
        arrival = min(len(audio.samples), start + step) / audio.sample_rate
        clock = max(clock, arrival)
        t0 = time.perf_counter()
        update = transcriber.push(Audio(audio.samples[start:start + step], audio.sample_rate))
        if k == len(starts) - 1:
            final = transcriber.finish()
            update = CaptionUpdate(final.committed_text, final.pending_text,
                                   update.new_words + final.new_words, final.pending,
                                   final.committed_count, final.stream_s)
        took = time.perf_counter() - t0
        compute += took
        clock += took
        updates.append(update)
        words.extend(update.new_words)
        committed_at.extend([clock] * len(update.new_words))
        arrived_at.extend([arrival] * len(update.new_words))
        shown = update.committed_count + len(update.pending)
        for i in range(shown):
            first_seen.setdefault(i, clock)
    committed = tuple(max(0.0, t - w.end_s) for w, t in zip(words, committed_at, strict=True))
    pending = tuple(max(0.0, min(first_seen.get(i, t), t) - w.end_s)
                    for i, (w, t) in enumerate(zip(words, committed_at, strict=True)))
    lags = tuple(max(0.0, t - w.end_s) for w, t in zip(words, arrived_at, strict=True))
    return ReplayReport(join_words([w.text for w in words]), tuple(words), committed, pending,
                        compute, lags, audio.duration_s, tuple(updates))
