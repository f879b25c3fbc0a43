"""File transcription shared by the Transcribe tab and ``python -m webapp transcribe``:
decode with limits, check the input, transcribe with progress, render TXT/SRT/VTT/JSON."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from webapp.pipeline.audio import Audio, load
from webapp.pipeline.errors import InputError
from webapp.pipeline.stt.base import (
    SAMPLE_RATE_HZ,
    ProgressFn,
    Segment,
    STTEngine,
    TranscribeOptions,
    Transcript,
    TranscriptionTiming,
    Word,
    clean_vocabulary,
    join_words,
    notify_observers,
)
from webapp.pipeline.subtitles import to_srt, to_text, to_vtt

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("txt", "srt", "vtt", "json")
# Bound on the text a short recording can produce: fast speech is about 5 tokens/s. Without
# it a clip under 30 s could still be decoded into a full window's worth of tokens, at every
# fallback temperature (tests/test_fuzz.py).
MAX_TOKENS_PER_S = 10
MAX_TOKENS_MARGIN = 20
_WINDOW_S = 30.0


@dataclass(frozen=True)
class FileTranscriptionResult:
    transcript: Transcript
    warnings: tuple[str, ...]
    compute_s: float

    @property
    def rtf(self) -> float:
        d = self.transcript.duration_s
        return self.compute_s / d if d else 0.0


def load_for_transcription(source: str | Path | bytes, max_seconds: float, *,
                           name: str | None = None) -> Audio:
    """Decode any supported file to 16 kHz mono, refusing files over ``max_seconds`` before
    decoding them when the container says how long they are (so 3 hours never hit memory).
    ``name`` is what error messages call the file."""
    return load(source, target_hz=SAMPLE_RATE_HZ, max_seconds=max_seconds, name=name)


def input_warnings(audio: Audio, original_rate_hz: int | None = None) -> list[str]:
    """Things worth telling the user that do not stop the transcription."""
    warnings: list[str] = []
    if len(audio.samples):
        clipped = float(np.mean(np.abs(audio.samples) >= 0.99))
        if clipped > 0.005:
            warnings.append(f"{clipped:.1%} of the samples are clipped (recorded too loud); "
                            "words may be misheard. Lower the input gain next time.")
    if original_rate_hz is not None and original_rate_hz < SAMPLE_RATE_HZ:
        warnings.append(f"The recording is {original_rate_hz} Hz (telephone quality); "
                        "accuracy is lower than for 16 kHz or better.")
    return warnings


def speech_seconds(audio: Audio) -> float:
    from webapp.pipeline.vad import WINDOW_S, speech_probabilities

    probs = speech_probabilities(audio.resample(SAMPLE_RATE_HZ).samples)
    return float(np.sum(probs > 0.5)) * WINDOW_S


def transcribe_audio(engine: STTEngine, audio: Audio, options: TranscribeOptions | None = None,
                     progress: ProgressFn | None = None, *,
                     original_rate_hz: int | None = None) -> FileTranscriptionResult:
    """Transcribe a whole recording. Silence or noise without speech gives an empty transcript
    and a warning (never invented text). The prompt is the user's vocabulary
    (``clean_vocabulary``); a recording shorter than Whisper's 30 s window gets a bound on the
    tokens decoded for it."""
    options = options or TranscribeOptions()
    vocabulary = clean_vocabulary(options.initial_prompt)
    if vocabulary != (options.initial_prompt or ""):
        options = replace(options, initial_prompt=vocabulary or None)
    if options.max_new_tokens is None and audio.duration_s < _WINDOW_S:
        options = replace(options, max_new_tokens=int(audio.duration_s * MAX_TOKENS_PER_S)
                          + MAX_TOKENS_MARGIN)
    warnings = input_warnings(audio, original_rate_hz)
    started = time.perf_counter()
    if speech_seconds(audio) < 0.2:
        transcript = Transcript(text="", segments=(), language=options.language or "en",
                                duration_s=audio.duration_s, engine=engine.name,
                                model=engine.model, options=options)
        warnings.append("No speech was found in this recording (silence or noise only).")
    else:
        transcript = engine.transcribe(audio, options, progress=progress)
        if not transcript.text:
            warnings.append("No words were recognised with enough confidence.")
    result = FileTranscriptionResult(transcript, tuple(warnings), time.perf_counter() - started)
    notify_observers(engine, TranscriptionTiming("file", engine.name, engine.model,
                                                 result.compute_s, audio.duration_s))
    return result


def render(transcript: Transcript, fmt: str) -> str:
    fmt = fmt.lower()
    if fmt == "srt":
        return to_srt(transcript.cues())
    if fmt == "vtt":
        return to_vtt(transcript.cues())
    if fmt == "txt":
        return to_text(transcript.cues()) if transcript.segments else "\n"
    if fmt == "json":
        return json.dumps(transcript_dict(transcript), ensure_ascii=False) + "\n"
    raise InputError(f"Unknown output format '{fmt}'. Choose one of: {', '.join(OUTPUT_FORMATS)}.")


def transcript_dict(transcript: Transcript) -> dict:
    return {
        "text": transcript.text,
        "language": transcript.language,
        "duration_s": round(transcript.duration_s, 3),
        "engine": transcript.engine,
        "model": transcript.model,
        "segments": [
            {"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "text": s.text.strip(),
             "avg_logprob": round(s.avg_logprob, 4), "no_speech_prob": round(s.no_speech_prob, 4),
             "words": [{k: (round(v, 3) if isinstance(v, float) else v.strip())
                        for k, v in asdict(w).items()} for w in s.words]}
            for s in transcript.segments
        ],
    }


PAUSE_SPLIT_S = 1.5
"""A pause at least this long in live speech starts a new subtitle cue (a lecturer's pause
should not stretch one cue over the silence)."""


def live_transcript(words: Sequence[Word], duration_s: float, *, engine: str = "",
                    model: str = "") -> Transcript:
    """The committed words of a live-caption session as a ``Transcript`` (times from the start
    of the recording), so ``render`` writes its TXT/SRT/VTT like a file's: one segment per run
    of speech between pauses of ``PAUSE_SPLIT_S`` or more."""
    segments: list[Segment] = []
    run: list[Word] = []
    for word in words:
        if run and word.start_s - run[-1].end_s >= PAUSE_SPLIT_S and word.text[:1].isspace():
            segments.append(_segment(run))
            run = []
        run.append(word)
    if run:
        segments.append(_segment(run))
    text = join_words([w.text for w in words])
    return Transcript(text=text, segments=tuple(segments), language="en",
                      duration_s=duration_s, engine=engine, model=model)


def _segment(words: list[Word]) -> Segment:
    return Segment(join_words([w.text for w in words]), words[0].start_s, words[-1].end_s,
                   tuple(words))
