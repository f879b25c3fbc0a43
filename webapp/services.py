"""The composition root's product: every long-lived object, built once at start-up.

Tabs, the CLI and the HTTP routes receive a ``Services`` and never build models themselves.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from webapp.config import Settings
from webapp.limits import Limits
from webapp.pipeline.cache import NullCache, SynthesisCache, open_cache_url
from webapp.pipeline.caption_board import CaptionBoard
from webapp.pipeline.delivery import LiveHub
from webapp.pipeline.errors import PipelineError
from webapp.pipeline.synthesis import Synthesizer
from webapp.pipeline.text.lexicon import Lexicon
from webapp.pipeline.tts.registry import TTSRegistry

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    cache: SynthesisCache
    tts: TTSRegistry
    synthesizer: Synthesizer
    stt: object | None = None
    lexicon: Lexicon | None = None
    live: LiveHub = field(default_factory=LiveHub)
    # Live-caption sessions that caption views follow (issue 15).
    captions: CaptionBoard = field(default_factory=CaptionBoard)
    limits: Limits | None = None
    # True once the start-up models are loaded and warmed up (``preload_models``): ``/readyz``.
    ready: bool = False
    # ``webapp.metrics.Metrics``, made by ``webapp.metrics.install`` (the CLI never needs one).
    metrics: object | None = None

    def __post_init__(self) -> None:
        if self.limits is None:
            self.limits = make_limits(self.settings)


def make_limits(settings: Settings) -> Limits:
    # Evaluation and file transcription run one at a time: each already uses both cores.
    return Limits(synthesis_slots=settings.concurrency, transcription_slots=1,
                  evaluation_slots=1, max_waiting=settings.max_queue,
                  max_per_client=settings.max_per_client,
                  live_sessions=settings.max_live_sessions)


def _load_lexicon(settings: Settings) -> Lexicon:
    path = settings.data_dir / "lexicon.csv"
    try:
        return Lexicon.load(path)
    except PipelineError as exc:  # a broken lexicon file must not stop the app
        logger.warning("could not read the lexicon at %s (%s); starting with an empty one", path, exc)
        return Lexicon(path=path)


def _warm_up_evaluation() -> None:
    """The first MFCC/DTW/pitch analysis in a process pays ~2 s for librosa's compiled code;
    pay it at start-up instead of in the first user's request."""
    try:
        import numpy as np

        from webapp.pipeline.audio import Audio
        from webapp.pipeline.evaluate import compare
    except ImportError:
        return
    t = np.arange(16000) / 16000
    tone = Audio((0.3 * np.sin(2 * np.pi * 150 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32), 16000)
    try:
        compare(tone, tone)
    except Exception as exc:  # noqa: BLE001 - a warm-up must never stop the app
        logger.warning("evaluation warm-up failed: %s", exc)


def build_services(settings: Settings, *, preload: bool = True, with_stt: bool = True) -> Services:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # an unwritable data dir: no cache, no saved lexicon, still serving
        logger.warning("cannot create the data directory %s (%s)", settings.data_dir, exc)
    cache: SynthesisCache
    if settings.cache_enabled:
        cache = open_cache_url(settings.cache_url, settings.cache_dir, settings.cache_size_mb,
                               expire_s=settings.cache_ttl_s or None,
                               local_fallback=settings.cache_fallback)
    else:
        cache = NullCache()
    tts = TTSRegistry(settings)
    lexicon = _load_lexicon(settings)
    synthesizer = Synthesizer(settings, tts, cache, lexicon=lexicon)
    stt = None
    if with_stt:
        try:
            from webapp.pipeline.stt.registry import STTRegistry
        except ImportError:
            logger.warning("speech recognition is not available in this build")
        else:
            stt = STTRegistry(settings)
    replica = re.sub(r"[^A-Za-z0-9_-]", "", settings.replica_id)[:32]
    services = Services(settings=settings, cache=cache, tts=tts, synthesizer=synthesizer,
                        stt=stt, lexicon=lexicon, captions=CaptionBoard(replica=replica))
    if preload:
        preload_models(services)
    return services


def preload_models(services: Services) -> None:
    """Load and warm up the start-up models, then mark the services ready."""
    t0 = time.perf_counter()
    services.tts.preload()
    if services.stt is not None and hasattr(services.stt, "preload"):
        services.stt.preload()
    _warm_up_evaluation()
    services.ready = True
    logger.info("models loaded and warmed up in %.1f s", time.perf_counter() - t0)
