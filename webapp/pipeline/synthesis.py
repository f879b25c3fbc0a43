"""The synthesis service: request -> validated units -> cached/streamed audio -> result.

Stages (each replaceable on its own):
1. validation and clean-up of the raw text (length limit, control characters, emoji, scripts);
2. segmentation of the *written* text into paragraphs and sentences (subtitles show it);
3. text preparation per sentence: lexicon, pause marks, normaliser (``webapp.pipeline.text``);
4. inference per unit through the engine, with a per-unit cache in front of it;
5. delivery: chunks are yielded as soon as they exist (``stream``); the whole request is
   encoded once and cached too, so an identical request is one lookup (``run``).

Never synthesise the same unit twice: cache keys cover everything that changes the audio, and
a per-key lock makes concurrent identical requests wait for the first instead of repeating it.

Lessons (issue 12): Markdown headings become chapters (announced, then a pause), speaker lines
(``Teacher: …``) are spoken by the voice the request maps that speaker to, and the output is
normalised to a target loudness (EBU R128). Cached sentences stay raw; the loudness target is
part of the whole request's key.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from operator import methodcaller
from typing import Protocol

import numpy as np
import soundfile as sf

from webapp.config import Settings
from webapp.pipeline.audio import FORMATS, Audio, encode, load
from webapp.pipeline.cache import SynthesisCache, cache_key
from webapp.pipeline.errors import InputError
from webapp.pipeline.lesson import loudness as loudness_
from webapp.pipeline.subtitles import Chapter, Cue
from webapp.pipeline.text import segment, structure
from webapp.pipeline.text.lexicon import Lexicon
from webapp.pipeline.text.prepare import prepare, text_version
from webapp.pipeline.tts.base import CloningEngine, SynthesisOptions
from webapp.pipeline.tts.registry import TTSRegistry

logger = logging.getLogger(__name__)

SENTENCE_GAP_S = 0.20
PARAGRAPH_GAP_S = 0.75
TURN_GAP_S = 0.40  # between two speakers' lines in one paragraph (a dialogue)
CHAPTER_PAUSE_S = 1.0  # after a chapter's announced title
# Changes whenever the same text could be planned differently (headings, speakers): part of the
# whole request's cache key.
PLAN_VERSION = 2
MAX_SPEAKERS = 12
_PAUSE_MARK = re.compile(r"\[\s*pause[^\]]*\]", re.IGNORECASE)
# Emoji and pictographs: removed (engines read them as nothing, or as their long names).
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U0001F1E6-\U0001F1FF\uFE0E\uFE0F\u200D\u20E3]"
)
_SCRIPTS_OK = ("LATIN", "GREEK", "DIGIT", "SPACE")


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    engine: str | None = None
    voice: str | None = None
    speed: float = 1.0
    fmt: str = "wav"
    reference: Audio | None = None
    # The lexicon for this request (a visitor's own entries layered over the operator's on a
    # public deployment); None means the synthesizer's deployment lexicon.
    lexicon: Lexicon | None = None
    # Speaker name -> voice id ("Teacher" -> "en_US-joe-medium"): lines starting "Teacher:" are
    # spoken by that voice (any installed engine).
    speakers: tuple[tuple[str, str], ...] = ()
    # Target integrated loudness of the output in LUFS (EBU R128); None keeps the engine's level.
    loudness_lufs: float | None = loudness_.DEFAULT_TARGET


@dataclass(frozen=True)
class SynthesisChunk:
    """A piece of the output timeline, yielded as soon as it exists."""

    audio: Audio
    start_s: float
    index: int  # unit number (0-based); pauses carry the index of the unit they precede
    total: int  # number of spoken units in the request
    cached: bool
    cue: Cue | None = None


@dataclass(frozen=True)
class SynthesisResult:
    audio: Audio
    data: bytes
    fmt: str
    cues: list[Cue]
    engine: str
    voice: str
    model_id: str
    cache_hit: bool  # the whole request came from the cache
    units_total: int
    units_cached: int
    ttfa_ms: float  # request start -> first audio ready (server side)
    compute_s: float
    warnings: list[str] = field(default_factory=list)
    request_key: str = ""  # the whole-request cache key (lets a session recognise its repeats)
    chapters: list[Chapter] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)  # per cue: the text the voice was asked to say
    loudness: loudness_.LoudnessReport | None = None

    @property
    def audio_s(self) -> float:
        return self.audio.duration_s

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0

    def metrics(self) -> dict:
        return {
            "engine": self.engine, "voice": self.voice, "model": self.model_id,
            "cache_hit": self.cache_hit, "units": self.units_total,
            "units_cached": self.units_cached, "ttfa_ms": round(self.ttfa_ms, 1),
            "rtf": round(self.rtf, 4), "audio_s": round(self.audio_s, 3),
            "compute_s": round(self.compute_s, 4), "format": self.fmt,
            "warnings": self.warnings, "chapters": len(self.chapters),
            # None: not normalised, or silent (no finite loudness; JSON has no -inf)
            "loudness_lufs": (round(self.loudness.output_lufs, 2)
                              if self.loudness and math.isfinite(self.loudness.output_lufs)
                              else None),
        }


class SynthesisObserver(Protocol):
    """Told about every synthesis, on the thread that runs it (``webapp.metrics`` counts with
    it). Must be quick; an observer that raises is logged and never fails the synthesis."""

    def first_audio(self, engine: str, ttfa_s: float, cache_hit: bool) -> None:
        """The request's first audio is ready, ``ttfa_s`` after it started."""

    def finished(self, result: SynthesisResult) -> None:
        """The request is complete (not called when it failed or its consumer stopped)."""


@dataclass(frozen=True)
class _Unit:
    written: str  # what the teacher wrote (subtitles)
    pieces: tuple[str | float, ...]  # speakable text and pause seconds
    gap_after_s: float
    voice: str | None = None  # None: the request's voice
    chapter: str | None = None  # the title of the chapter this unit starts

    @property
    def spoken(self) -> str:
        return " ".join(p for p in self.pieces if isinstance(p, str))


@dataclass(frozen=True)
class _Voice:
    """One voice a request speaks with, and the cache-key parts of its sentences."""

    engine: object
    options: SynthesisOptions
    common: dict


class _InstalledVoices:
    """``in`` asks the registry, once, whether a ``[voice]`` prefix names an installed voice."""

    def __init__(self, registry: TTSRegistry) -> None:
        self._registry = registry
        self._ids: set[str] | None = None

    def __contains__(self, voice_id: object) -> bool:
        if self._ids is None:
            self._ids = {v.id for name in self._registry.names() for v in self._registry.voices(name)}
        return voice_id in self._ids


def speaker_table(speakers) -> dict[str, str]:
    """Validated speaker name -> voice id pairs (names as typed, voice ids as strings)."""
    table: dict[str, str] = {}
    for pair in speakers or ():
        try:
            name, voice = pair
        except (TypeError, ValueError):
            raise InputError("Each speaker needs a name and a voice.") from None
        name = str(name or "").strip()
        voice = str(voice or "").strip()
        if not name and not voice:
            continue
        if not name or not voice:
            raise InputError(f"Speaker '{name or voice}' needs both a name and a voice.")
        if len(name) > 40 or not structure.valid_speaker_name(name):
            raise InputError(f"'{name[:40]}' cannot be a speaker name: use a word or two "
                             "(letters, spaces, apostrophes or hyphens), like Teacher or Ms Lee.")
        table[name] = voice
    if len(table) > MAX_SPEAKERS:
        raise InputError(f"A lesson may have at most {MAX_SPEAKERS} speakers; it has {len(table)}.")
    return table


def _used(speakers: dict[str, str], text: str) -> dict[str, str]:
    """The speakers whose lines are in ``text``: the others' voices are not loaded (nor, on an
    online server, downloaded) and do not change the request's key."""
    if not speakers:
        return speakers
    said = {block.label.casefold() for block in structure.parse(text, speakers) if block.label}
    return {name: voice for name, voice in speakers.items() if name.casefold() in said}


def clean_text(text: str, max_chars: int) -> tuple[str, list[str]]:
    """Validate and clean raw input; returns (text, warnings) or raises InputError."""
    if not isinstance(text, str):
        raise InputError("Text must be a string.")
    if len(text) > max_chars:
        raise InputError(
            f"The text is {len(text):,} characters long; the limit is {max_chars:,}. "
            "Split the lesson into parts and synthesise them one by one."
        )
    warnings: list[str] = []
    if not text.strip():
        raise InputError("There is no text to synthesise: type or paste a sentence first.")
    text = unicodedata.normalize("NFC", text)
    emoji = len(_EMOJI.findall(text))
    text = _EMOJI.sub(" ", text)
    if emoji:
        warnings.append(f"Removed {emoji} emoji or pictograph character(s) that cannot be spoken.")
    kept = []
    dropped = 0
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\t":
            kept.append(ch)
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
            dropped += 1
            kept.append(" ")
        else:
            kept.append(ch)
    text = "".join(kept)
    if dropped:
        warnings.append(f"Removed {dropped} invisible or control character(s).")
    scripts = sorted({
        unicodedata.name(ch, "UNKNOWN").split()[0]
        for ch in text if ch.isalpha() and not unicodedata.name(ch, "").startswith(_SCRIPTS_OK)
    })
    if scripts:
        warnings.append(
            "The text contains " + ", ".join(s.title() for s in scripts) + " letters: an English "
            "voice may spell them out or skip them. Pick a voice for that language if you have one."
        )
    if not text.strip():
        if emoji or dropped:
            raise InputError("Nothing speakable is left after removing emoji and invisible "
                             "characters: type some words.")
        raise InputError("There is no text to synthesise: type or paste a sentence first.")
    return text, warnings


class _KeyedLocks:
    """One lock per cache key, created on demand and dropped when nobody holds it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str):
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


def _wav_bytes(audio: Audio) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.samples, audio.sample_rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _from_wav_bytes(data: bytes) -> Audio:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    return Audio(np.asarray(samples, dtype=np.float32).reshape(-1), int(rate))


class Synthesizer:
    def __init__(self, settings: Settings, registry: TTSRegistry, cache: SynthesisCache,
                 lexicon=None) -> None:
        self.settings = settings
        self.registry = registry
        self.cache = cache
        self.lexicon = lexicon
        self._locks = _KeyedLocks()
        self.observers: list[SynthesisObserver] = []

    def _notify(self, tell: Callable[[SynthesisObserver], None]) -> None:
        for observer in self.observers:
            try:
                tell(observer)
            except Exception:  # noqa: BLE001 - measuring must never fail a synthesis
                logger.exception("synthesis observer failed")

    # -- planning ------------------------------------------------------------------------
    def _lexicon(self, lexicon: Lexicon | None) -> Lexicon | None:
        return lexicon if lexicon is not None else self.lexicon

    def plan(self, text: str, lexicon: Lexicon | None = None,
             speakers: dict[str, str] | None = None) -> list[_Unit]:
        """Split written text into spoken units: sentences (the first one's first clause on its
        own, so the first audio is ready sooner), chapter titles, speakers' lines; the gap after
        each unit depends on what follows it (``webapp.pipeline.text.structure``)."""
        lexicon = self._lexicon(lexicon)
        blocks = structure.parse(text, speakers, _InstalledVoices(self.registry))
        starts = structure.chapter_starts(blocks)
        units: list[_Unit] = []
        kinds: list[tuple[int, bool]] = []  # per unit: (block index, block is a heading)
        pending_chapter: str | None = None
        for b_index, block in enumerate(blocks):
            pending_chapter = starts.get(b_index, pending_chapter)
            sentences = [block.text] if block.heading else segment.split_sentences(block.text)
            if not units and sentences and not block.heading:
                sentences = segment.split_first_clause(sentences[0]) + sentences[1:]
            first_in_block = True
            for sentence in sentences:
                pieces = tuple(prepare(sentence, lexicon))
                if not pieces:
                    continue
                written = _PAUSE_MARK.sub(" ", sentence).strip()
                if block.label and first_in_block:
                    written = f"{block.label}: {written}"
                units.append(_Unit(written, pieces, 0.0, block.voice, pending_chapter))
                kinds.append((b_index, block.heading))
                pending_chapter = None
                first_in_block = False
        for i in range(len(units) - 1):
            (block, heading), (next_block, _) = kinds[i], kinds[i + 1]
            if heading:
                gap = CHAPTER_PAUSE_S
            elif block == next_block:
                gap = SENTENCE_GAP_S
            elif blocks[next_block].new_paragraph:
                gap = PARAGRAPH_GAP_S
            else:
                gap = TURN_GAP_S
            units[i] = replace(units[i], gap_after_s=gap)
        return units

    def preview(self, text: str, lexicon: Lexicon | None = None, speakers=()) -> str:
        """The text the engine will speak, pauses shown as [pause Ns] and other voices as
        "(voice) …" (UI preview)."""
        text, _ = clean_text(text, self.settings.max_text_chars)
        lines = []
        for unit in self.plan(text, lexicon, speaker_table(speakers)):
            line = " ".join(p if isinstance(p, str) else f"[pause {p:g}s]" for p in unit.pieces)
            if unit.chapter is not None:
                lines.append(f"— chapter: {unit.chapter} —")
            lines.append(f"({unit.voice}) {line}" if unit.voice else line)
        return "\n".join(lines)

    # -- keys ----------------------------------------------------------------------------
    def _voice(self, request: SynthesisRequest, engine_name: str, voice: str) -> _Voice:
        """A voice of this request; an unknown voice fails here, before any work."""
        engine = self.registry.get(engine_name)
        model = engine.model_id(voice)
        # A voice that does not clone never sees the clip, and the clip is not in its keys:
        # the same text with or without one is the same audio (issue 14).
        reference = request.reference
        if not (isinstance(engine, CloningEngine) and engine.supports_cloning(voice)):
            reference = None
        ref = None
        if reference is not None:
            ref = hashlib.sha256(reference.samples.tobytes()).hexdigest()[:16]
        common = {
            "engine": engine_name, "model": model, "voice": voice,
            "speed": round(float(request.speed), 3),
            "text_version": text_version(self._lexicon(request.lexicon)),
            "reference": ref,
        }
        options = SynthesisOptions(voice=voice, speed=float(request.speed), reference=reference)
        return _Voice(engine, options, common)

    def _speaker_voices(self, request: SynthesisRequest,
                        speakers: dict[str, str]) -> dict[str, _Voice]:
        """The voices the speaker table names, each on the engine that has it."""
        voices: dict[str, _Voice] = {}
        for voice_id in dict.fromkeys(speakers.values()):
            voices[voice_id] = self._voice(request, self.registry.engine_of(voice_id), voice_id)
        return voices

    # -- synthesis -----------------------------------------------------------------------
    def cached(self, request: SynthesisRequest) -> SynthesisResult | None:
        """The whole request from the cache, or None. No model work: callers answer repeats
        with this before they queue for a model slot, so a cached lesson is never stuck behind
        new ones."""
        for item in self.stream(request, cache_only=True):
            if isinstance(item, SynthesisResult):
                return item
        return None

    def stream(self, request: SynthesisRequest, *,
               cache_only: bool = False) -> Iterator[SynthesisChunk | SynthesisResult]:
        """Yield ``SynthesisChunk``s as audio becomes ready, then one ``SynthesisResult``
        (with ``cache_only``, only when the whole request is cached; nothing otherwise).

        With a loudness target, each chunk is yielded at its voice's gain (measured on that
        voice's first sentence, so the live stream is already close to the target and two
        voices sound equally loud); the finished file is then normalised exactly."""
        t0 = time.perf_counter()
        busy_s = 0.0  # time spent here, not in the consumer
        resume = t0
        fmt = (request.fmt or "wav").lower()
        if fmt not in FORMATS:
            raise InputError(f"Unknown output format '{request.fmt}'. Choose one of: {', '.join(FORMATS)}.")
        target = request.loudness_lufs
        if target is not None:
            loudness_.check_target(target)
        engine_name = request.engine or self.settings.default_engine
        self.registry.get(engine_name)
        voice = request.voice or self.registry.default_voice(engine_name)
        text, warnings = clean_text(request.text, self.settings.max_text_chars)
        speakers = _used(speaker_table(request.speakers), text)
        main = self._voice(request, engine_name, voice)  # unknown voice: fails here
        others = self._speaker_voices(request, speakers)
        common = main.common
        if request.reference is not None and all(
                v.options.reference is None for v in (main, *others.values())):
            warnings.append(f"The voice sample was ignored: voice '{voice}' does not clone voices.")

        request_key = cache_key(
            kind="request", text=text, fmt=fmt, **common, plan=PLAN_VERSION, loudness=target,
            speakers=sorted((name.casefold(), v, others[v].common["model"])
                            for name, v in speakers.items()))
        hit = self.cache.get(request_key)
        if hit is not None:
            try:
                # WAV entries hold float WAV (lossless); others hold the encoded file as served.
                audio = _from_wav_bytes(hit.payload) if fmt == "wav" else load(hit.payload)
                cues = [Cue(float(a), float(b), str(c)) for a, b, c in hit.meta["cues"]]
                chapters = [Chapter(float(a), float(b), str(c)) for a, b, c in hit.meta["chapters"]]
                spoken = [str(t) for t in hit.meta["spoken"]]
                loudness = (loudness_.LoudnessReport(**hit.meta["loudness"])
                            if hit.meta["loudness"] else None)
                units_total = int(hit.meta["units"])
            except (KeyError, TypeError, ValueError, RuntimeError, InputError) as exc:
                logger.warning("request cache entry unusable (%s); synthesising again", exc)
            else:
                ttfa = (time.perf_counter() - t0) * 1000
                self.cache.record_request(True)
                self._notify(methodcaller("first_audio", engine_name, ttfa / 1000, True))
                yield SynthesisChunk(audio, 0.0, 0, units_total, True, None)
                result = SynthesisResult(
                    audio=audio, data=encode(audio, "wav") if fmt == "wav" else hit.payload,
                    fmt=fmt, cues=cues, engine=engine_name, voice=voice,
                    model_id=common["model"], cache_hit=True, units_total=units_total,
                    units_cached=units_total, ttfa_ms=ttfa,
                    compute_s=time.perf_counter() - t0, warnings=warnings,
                    request_key=request_key, chapters=chapters, spoken=spoken, loudness=loudness,
                )
                self._notify(methodcaller("finished", result))
                yield result
                return
        if cache_only:
            return

        self.cache.record_request(False)
        units = self.plan(text, request.lexicon, speakers)
        if not units:
            raise InputError("Nothing speakable is left after removing symbols: type some words.")
        voices = {None: main, **others}
        for unit in units:
            if unit.voice not in voices:  # a "[voice id]" line naming an installed voice
                voices[unit.voice] = self._voice(request, self.registry.engine_of(unit.voice),
                                                 unit.voice)
        for v in voices.values():
            v.engine.load(v.options.voice)  # unavailable model: fail before any work
        limit_s = self.settings.max_output_s
        pauses_s = sum(p for u in units for p in u.pieces if isinstance(p, float))
        if pauses_s > limit_s:
            raise InputError(f"The pause marks alone add up to {pauses_s / 60:.0f} minutes; one "
                             f"request may produce at most {limit_s / 60:g} minutes of audio. "
                             "Use shorter or fewer pauses, or split the lesson.")
        pieces_total = len(units)
        timeline: list[Audio] = []
        cues: list[Cue] = []
        spoken: list[str] = []
        chapter_marks: list[tuple[float, str]] = []
        gains: dict[str | None, float] = {}  # per voice, with a loudness target
        position_s = 0.0
        rate: int | None = None
        pending_pause_s = 0.0
        ttfa_ms: float | None = None
        cached_units = 0

        for index, unit in enumerate(units):
            unit_start_s: float | None = None
            speaker = voices[unit.voice]
            for piece in unit.pieces:
                if isinstance(piece, float):
                    pending_pause_s += piece
                    continue
                for audio, cached in self._speak(piece, speaker):
                    rate = rate or audio.sample_rate
                    if target is not None:
                        if unit.voice not in gains:
                            gains[unit.voice] = loudness_.voice_gain(audio, target)
                        audio = loudness_.apply_gain(audio, gains[unit.voice])
                    chunks = []
                    if pending_pause_s > 0:
                        chunks.append(Audio.silence(pending_pause_s, rate))
                        pending_pause_s = 0.0
                    chunks.append(audio.resample(rate))
                    if position_s + sum(c.duration_s for c in chunks) > limit_s:
                        raise InputError(
                            f"This text makes more than {limit_s / 60:g} minutes of audio, the "
                            "most one request may produce here. Split it into shorter lessons.")
                    for chunk in chunks:
                        if chunk is chunks[-1] and unit_start_s is None:
                            unit_start_s = position_s
                        timeline.append(chunk)
                        start = position_s
                        position_s += chunk.duration_s
                        if ttfa_ms is None:
                            ttfa_ms = (time.perf_counter() - t0) * 1000
                            self._notify(methodcaller("first_audio", engine_name,
                                                      ttfa_ms / 1000, False))
                        busy_s += time.perf_counter() - resume
                        yield SynthesisChunk(chunk, start, index, pieces_total, cached)
                        resume = time.perf_counter()
                    if cached:
                        cached_units += 1
            if unit_start_s is not None:
                cues.append(Cue(unit_start_s, position_s, unit.written))
                spoken.append(unit.spoken)
                if unit.chapter is not None:
                    chapter_marks.append((unit_start_s, unit.chapter))
            pending_pause_s += unit.gap_after_s

        if rate is None:
            raise InputError("Nothing speakable is left after removing symbols: type some words.")
        if pending_pause_s > 0:
            tail = Audio.silence(min(pending_pause_s, 10.0), rate)
            timeline.append(tail)
            busy_s += time.perf_counter() - resume
            yield SynthesisChunk(tail, position_s, len(units) - 1, pieces_total, True)
            resume = time.perf_counter()

        audio = Audio.concat(timeline)
        report = None
        if target is not None:
            audio, report = loudness_.normalize(audio, target, fmt=fmt)
        chapters = [Chapter(start, chapter_marks[i + 1][0] if i + 1 < len(chapter_marks)
                            else audio.duration_s, title)
                    for i, (start, title) in enumerate(chapter_marks)]
        data = encode(audio, fmt)
        busy_s += time.perf_counter() - resume
        meta = {"cues": [[c.start_s, c.end_s, c.text] for c in cues], "units": pieces_total,
                "samples": len(audio.samples), "rate": audio.sample_rate,
                "chapters": [[c.start_s, c.end_s, c.title] for c in chapters], "spoken": spoken,
                "loudness": asdict(report) if report is not None else None}
        self.cache.put(request_key, data if fmt != "wav" else _wav_bytes(audio), meta)
        result = SynthesisResult(
            audio=audio, data=data, fmt=fmt, cues=cues, engine=engine_name, voice=voice,
            model_id=common["model"], cache_hit=False, units_total=pieces_total,
            units_cached=min(cached_units, pieces_total), ttfa_ms=ttfa_ms or 0.0,
            compute_s=busy_s, warnings=warnings, request_key=request_key,
            chapters=chapters, spoken=spoken, loudness=report,
        )
        self._notify(methodcaller("finished", result))
        yield result

    def _cached_unit(self, key: str) -> Audio | None:
        hit = self.cache.get(key)
        if hit is None:
            return None
        try:
            return _from_wav_bytes(hit.payload)
        except (RuntimeError, ValueError) as exc:
            logger.warning("unit cache entry unusable (%s); synthesising again", exc)
            return None

    def _speak(self, text: str, voice: _Voice) -> Iterator[tuple[Audio, bool]]:
        """Audio for one piece of normalised text: from the cache, or from the engine (yielding
        each engine chunk at once) and then cached (raw: loudness is applied per request)."""
        engine, options = voice.engine, voice.options
        key = cache_key(kind="unit", text=text, **voice.common)
        cached = self._cached_unit(key)
        if cached is None:
            # Identical requests wait for the first: in this process, and (with a shared
            # cache) on other replicas.
            with self._locks.hold(key), self.cache.hold(key):
                # Another request may have made it while we waited for the lock.
                cached = self._cached_unit(key)
                if cached is None:
                    parts: list[Audio] = []
                    for audio in engine.synthesize(text, options):
                        if len(audio.samples):
                            parts.append(audio)
                            yield audio, False
                    if parts:
                        # No text in the metadata: the key covers it, and a visitor's words
                        # should not sit in the cache's index (issue 9).
                        self.cache.put(key, _wav_bytes(Audio.concat(parts)), {})
                    return
        yield cached, True

    def run(self, request: SynthesisRequest) -> SynthesisResult:
        for item in self.stream(request):
            if isinstance(item, SynthesisResult):
                return item
        raise RuntimeError("synthesis ended without a result")  # pragma: no cover

