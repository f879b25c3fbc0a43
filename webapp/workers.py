"""Batch workers: built once with their model loaded, then called once per item. The same
classes run in-process (``webapp.pipeline.batch.run_in_process``) and as Ray actors
(``webapp.ray_batch``), so a batch gives the same files wherever it runs.

A worker is built from the deployment's ``Settings``, so every worker of a batch shares its
synthesis cache (the disk cache on one machine, ``SPEECH_STUDIO_CACHE_URL=redis://`` across
machines) and its lexicon. A recording worker's ``threads`` bounds the recogniser's CPU
threads (one per worker when several share a machine's cores); Piper's ONNX session takes
its thread count from the machine.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.lesson import course
from webapp.pipeline.stt import recordings

logger = logging.getLogger(__name__)


class LessonWorker:
    """Makes lessons: the voices of ``options`` loaded once."""

    def __init__(self, settings: Settings, options: course.CourseOptions) -> None:
        from webapp.services import build_services

        self.options = options
        self.services = build_services(settings, preload=False, with_stt=False)
        # Load the course's voice now: a voice that cannot be had fails the worker at start,
        # with the engine's message, instead of every lesson one by one. (Speakers' voices
        # load on first use; a lesson whose speaker cannot be had fails alone.)
        tts = self.services.tts
        name = options.engine or settings.default_engine
        tts.get(name).load(options.voice or tts.default_voice(name))

    def __call__(self, lesson: course.Lesson) -> course.LessonOutcome:
        return course.make_lesson(lesson, self.options, self.services.synthesizer.run)

    @staticmethod
    def fail(lesson: course.Lesson, error: str) -> course.LessonOutcome:
        return course.failed(lesson, error)


class RecordingWorker:
    """Transcribes recordings: the recogniser of ``options`` loaded once."""

    def __init__(self, settings: Settings, options: recordings.RecordingOptions,
                 threads: int | None = None) -> None:
        from webapp.pipeline.stt.registry import STTRegistry

        if threads:
            settings = replace(settings, stt_cpu_threads=threads)
        self.options = options
        registry = STTRegistry(settings)
        self.max_seconds = registry.stt.max_transcribe_s
        model = options.model
        # A local model folder or checkpoint is the operator's (command line only).
        if model and (Path(model).expanduser().exists() or "/" in model):
            self.engine = registry.load_path(options.engine, Path(model))
        else:
            self.engine = registry.get(options.engine, model)

    def __call__(self, recording: recordings.Recording) -> recordings.RecordingOutcome:
        return recordings.transcribe_recording(recording, self.options, self.engine,
                                               self.max_seconds)

    @staticmethod
    def fail(recording: recordings.Recording, error: str) -> recordings.RecordingOutcome:
        return recordings.failed(recording, error)
