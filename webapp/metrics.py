"""Prometheus metrics, liveness and readiness (issue 11).

- ``GET /metrics``: Prometheus text exposition of this server's own registry (one
  ``CollectorRegistry`` per ``Services``, never the process-wide default, so several apps in
  one process keep apart). Private mode: open, like any exporter on a trusted network. Public
  mode: only with ``Authorization: Bearer <SPEECH_STUDIO_OPERATOR_TOKEN>``, and not served at
  all without a token (the cache counters would tell a visitor whether someone else asked for
  a text before, which public mode keeps from them; see the README's public mode).
- ``GET /healthz``: the process answers (on the event loop, no work): for liveness probes.
- ``GET /readyz``: 200 once the start-up models are loaded and warmed up, 503 (with
  Retry-After) before: for readiness probes and load balancers.

What is measured, and from where:

- HTTP requests by route *template* (``/api/tts/live/{token}``, never the raw path), method
  and status class, and their duration: an ASGI middleware (``RequestMetrics``). Everything
  the mounted Gradio app serves is one route, ``gradio``; a path nothing serves is
  ``unmatched``. WebSockets are counted as live sessions instead.
- Synthesis (every entry point: page, ``/api``, ``/v1``): time to first audio, synthesis time
  and real-time factor, from ``Synthesizer.observers``.
- Transcription: whole files (``pipeline.stt.files.transcribe_audio``) and each live-caption
  decode, from ``STTRegistry.observers``.
- Read at scrape time: cache statistics (``services.cache.stats()``: whole requests answered
  from the cache or not, sentence lookups, size), jobs waiting and running per pool and live
  sessions (``services.limits``), models loaded, readiness.

Label values come only from fixed sets (pools, status classes, modes) and the engine names
the registries installed: never request text, voice names or paths from a request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount

if TYPE_CHECKING:
    from webapp.pipeline.stt.base import TranscriptionTiming
    from webapp.pipeline.synthesis import SynthesisResult
    from webapp.services import Services

logger = logging.getLogger(__name__)

PREFIX = "speech_studio"
GRADIO_ROUTE = "gradio"
UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

FIRST_AUDIO_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
WORK_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
                  600.0, 1800.0)
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class Metrics:
    """This server's metrics: its registry, the instruments the hooks feed, and a collector
    that reads the services' state at scrape time. One per ``Services`` (``for_services``)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.registry = CollectorRegistry()
        self._tts_engines = frozenset(services.tts.names())
        stt_engines = getattr(services.stt, "engines", None)
        self._stt_engines = frozenset(stt_engines() if stt_engines else ())
        self._models: set[tuple[str, str, str]] = set()  # (kind, engine, model), never exposed
        self._models_lock = threading.Lock()
        self._preload_noted = False
        r = self.registry
        self.http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests answered, by route template, method and "
            "status class.", ["route", "method", "status"], registry=r)
        self.http_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds", "Time from request to the end of the "
            "response body, by route template.", ["route"], registry=r)
        self.ttfa_s = Histogram(
            f"{PREFIX}_synthesis_first_audio_seconds", "Synthesis: request start to first audio "
            "ready (server side), by engine and whole-request cache result.",
            ["engine", "cache"], buckets=FIRST_AUDIO_BUCKETS_S, registry=r)
        self.synthesis_s = Histogram(
            f"{PREFIX}_synthesis_seconds", "Synthesis: compute time of a finished request, by "
            "engine and whole-request cache result.", ["engine", "cache"],
            buckets=WORK_BUCKETS_S, registry=r)
        self.synthesis_rtf = Histogram(
            f"{PREFIX}_synthesis_real_time_factor", "Synthesis: compute time / audio duration "
            "of requests not answered whole from the cache.", ["engine"],
            buckets=RTF_BUCKETS, registry=r)
        self.sentences = Counter(
            f"{PREFIX}_synthesis_sentences", "Sentences of finished requests, by engine and "
            "where their audio came from (the engine, or the cache: also a sentence another "
            "request or replica made while this one waited for it).", ["engine", "source"],
            registry=r)
        self.transcription_s = Histogram(
            f"{PREFIX}_transcription_seconds", "Transcription: compute time of a whole file "
            "(mode=file) or of one live-caption decode (mode=live).", ["mode", "engine"],
            buckets=WORK_BUCKETS_S, registry=r)
        self.transcription_rtf = Histogram(
            f"{PREFIX}_transcription_real_time_factor", "Transcription: compute time / audio "
            "duration (live: of the buffer decoded).", ["mode", "engine"],
            buckets=RTF_BUCKETS, registry=r)
        r.register(_StateCollector(self))
        services.synthesizer.observers.append(self)
        if isinstance(getattr(services.stt, "observers", None), list):
            services.stt.observers.append(self.transcribed)

    @classmethod
    def for_services(cls, services: Services) -> Metrics:
        """The services' metrics, made (and hooked up) on first use."""
        if not isinstance(services.metrics, Metrics):
            services.metrics = cls(services)
        return services.metrics

    # -- hooks (called on worker threads) ---------------------------------------------------
    def first_audio(self, engine: str, ttfa_s: float, cache_hit: bool) -> None:
        self.ttfa_s.labels(self._tts(engine), _cache(cache_hit)).observe(ttfa_s)

    def finished(self, result: SynthesisResult) -> None:
        engine = self._tts(result.engine)
        self.synthesis_s.labels(engine, _cache(result.cache_hit)).observe(result.compute_s)
        if not result.cache_hit:
            self.synthesis_rtf.labels(engine).observe(result.rtf)
        made = max(0, result.units_total - result.units_cached)
        self.sentences.labels(engine, "engine").inc(made)
        self.sentences.labels(engine, "cache").inc(result.units_total - made)
        self._loaded("tts", engine, result.model_id)

    def transcribed(self, timing: TranscriptionTiming) -> None:
        engine = timing.engine if timing.engine in self._stt_engines else "other"
        mode = timing.mode if timing.mode in ("file", "live") else "other"
        self.transcription_s.labels(mode, engine).observe(timing.compute_s)
        if timing.audio_s > 0:
            self.transcription_rtf.labels(mode, engine).observe(timing.compute_s / timing.audio_s)
        self._loaded("stt", engine, timing.model)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        self.http_requests.labels(route, method, status_class(status)).inc()
        self.http_seconds.labels(route).observe(seconds)

    # -- models ------------------------------------------------------------------------------
    def _tts(self, engine: str) -> str:
        return engine if engine in self._tts_engines else "other"

    def _loaded(self, kind: str, engine: str, model: str) -> None:
        with self._models_lock:
            self._models.add((kind, engine, model))

    def models_loaded(self) -> dict[tuple[str, str], int]:
        """How many models (voices) each installed engine holds in memory, as far as we saw:
        those loaded at start-up and those that served a request."""
        services = self.services
        if services.ready and not self._preload_noted:
            self._note_preloaded()
        counts = {("tts", name): 0 for name in self._tts_engines}
        counts.update({("stt", name): 0 for name in self._stt_engines})
        with self._models_lock:
            for kind, engine, _model in self._models:
                counts[(kind, engine)] = counts.get((kind, engine), 0) + 1
        return counts

    def _note_preloaded(self) -> None:
        services = self.services
        try:
            for name in services.settings.preload:
                if name in self._tts_engines:
                    engine = services.tts.get(name)
                    self._loaded("tts", name, engine.model_id(services.tts.default_voice(name)))
            if services.stt is not None:
                engine = services.stt.get()  # loaded by the preload: only a look-up
                self._loaded("stt", engine.name, engine.model)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on it
            logger.warning("could not list the preloaded models: %s", exc)
        self._preload_noted = True


def _cache(hit: bool) -> str:
    return "hit" if hit else "miss"


class _StateCollector:
    """Gauges and counters read from the services at scrape time (cache, pools, sessions)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self):
        services = self.metrics.services
        yield GaugeMetricFamily(f"{PREFIX}_ready", "1 when the start-up models are loaded and "
                                "warmed up.", value=1 if services.ready else 0)
        stats = services.cache.stats()
        requests = CounterMetricFamily(
            f"{PREFIX}_cache_requests", "Synthesis requests answered whole from the cache (hit) "
            "or synthesised (miss), as counted by the cache (kept across restarts).",
            labels=["result"])
        requests.add_metric(["hit"], stats.hits)
        requests.add_metric(["miss"], stats.misses)
        yield requests
        lookups = CounterMetricFamily(
            f"{PREFIX}_cache_lookups", "Cache look-ups of whole requests and sentences.",
            labels=["result"])
        lookups.add_metric(["hit"], stats.lookups_hit)
        lookups.add_metric(["miss"], stats.lookups_missed)
        yield lookups
        yield GaugeMetricFamily(f"{PREFIX}_cache_size_bytes", "Bytes the cache uses on disk.",
                                value=stats.size_bytes)
        yield GaugeMetricFamily(f"{PREFIX}_cache_limit_bytes", "Size at which the cache evicts "
                                "least recently used entries (0: caching off).",
                                value=stats.limit_bytes)
        yield GaugeMetricFamily(f"{PREFIX}_cache_entries", "Audio entries in the cache.",
                                value=stats.entries)
        yield CounterMetricFamily(f"{PREFIX}_cache_evictions", "Entries a shared cache (Redis) "
                                  "dropped for room.", value=stats.evictions)
        yield CounterMetricFamily(f"{PREFIX}_cache_backend_errors", "Calls to a shared cache "
                                  "(Redis) that failed or timed out; requests went on without "
                                  "it.", value=stats.backend_errors)

        waiting = GaugeMetricFamily(f"{PREFIX}_queue_waiting", "Jobs waiting for a model slot, "
                                    "by pool.", labels=["pool"])
        running = GaugeMetricFamily(f"{PREFIX}_jobs_running", "Jobs holding a model slot, by "
                                    "pool.", labels=["pool"])
        slots = GaugeMetricFamily(f"{PREFIX}_pool_slots", "Model slots, by pool.",
                                  labels=["pool"])
        for pool in services.limits.pools():
            waiting.add_metric([pool.name], pool.waiting)
            running.add_metric([pool.name], pool.running)
            slots.add_metric([pool.name], pool.slots)
        yield waiting
        yield running
        yield slots
        live = services.limits.live
        yield GaugeMetricFamily(f"{PREFIX}_live_sessions", "Live-caption sessions open (page "
                                "socket and realtime API).", value=live.active)
        yield GaugeMetricFamily(f"{PREFIX}_live_sessions_max", "Live-caption sessions allowed "
                                "at once.", value=live.max_sessions)

        models = GaugeMetricFamily(f"{PREFIX}_models_loaded", "Models (voices) in memory per "
                                   "installed engine: loaded at start-up or used since.",
                                   labels=["kind", "engine"])
        for (kind, engine), count in sorted(self.metrics.models_loaded().items()):
            models.add_metric([kind, engine], count)
        yield models


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by route template.

    The route is read from the scope after the app answered: the router stores the route it
    matched in ``scope["route"]`` (its ``path`` is the template, prefix included) and a mounted
    app (Gradio) puts itself in ``scope["app"]``. So the label is the template of one of the
    app's own routes, ``gradio`` for anything the mounted app served, or ``unmatched``.
    """

    def __init__(self, app, metrics: Metrics, outer: object) -> None:
        self.app = app
        self.metrics = metrics
        self.outer = outer  # the FastAPI app this middleware was added to

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        started = time.perf_counter()

        async def measured_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, measured_send)
        except Exception:
            status = status or 500
            raise
        except BaseException:  # cancelled: the client went away before an answer
            status = status or 499
            raise
        finally:
            try:
                self.metrics.request(self.route_label(scope), scope.get("method", ""),
                                     status or 500, time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - measuring must never fail a request
                logger.exception("could not count a request")

    def route_label(self, scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if route is None or isinstance(route, Mount) or not isinstance(path, str):
            return UNMATCHED_ROUTE  # no route (or only a mount) took the path
        if scope.get("app") is not self.outer:
            return GRADIO_ROUTE
        return path


def build_metrics_router(services: Services) -> APIRouter:
    """``GET /metrics``, ``GET /healthz``, ``GET /readyz``."""
    from webapp.api import operator_allowed

    metrics = Metrics.for_services(services)
    settings = services.settings
    router = APIRouter()

    @router.get("/healthz", responses={200: {"description": "The server answers"}})
    async def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/readyz", responses={
        200: {"description": "Models loaded and warmed up"},
        503: {"description": "Still loading (Retry-After says when to ask again)"}})
    async def readyz():
        if services.ready:
            return {"status": "ready"}
        return JSONResponse({"status": "loading",
                             "detail": "The models are still loading; try again shortly."},
                            status_code=503, headers={"Retry-After": "5"})

    if settings.public and not settings.operator_token:
        return router  # no metrics for visitors, and no operator to ask for them

    @router.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        if settings.public:
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
            if not operator_allowed(services, token):
                return JSONResponse({"detail": "operator token required"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        # Off the event loop: the cache statistics read its SQLite index.
        body = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


def install(app, services: Services) -> None:
    """Add what measures every request (middleware) to the ASGI app."""
    app.add_middleware(RequestMetrics, metrics=Metrics.for_services(services), outer=app)
