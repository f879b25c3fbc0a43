"""Batches on Ray (``python -m webapp batch ... --ray``): one worker per Ray actor, each with
its model loaded once, and the items spread over the actors as they become free.

Without ``address`` a local Ray is started for the batch (as many CPUs as workers) and stopped
after it; with ``address`` (``--ray-address host:6379`` or ``auto``) the batch joins an
existing cluster, whose machines must have Speech Studio installed (``pip install
speech-studio[cluster]``) and the same offline models. Items travel to the actors through
Ray's object store, so actors need no shared disk; what they share is the deployment's
synthesis cache (set ``SPEECH_STUDIO_CACHE_URL=redis://...`` for a cluster of machines).

Failures stay per item: a worker reports the failures it expects (an unreadable file, a
lesson with an unknown voice) in the item's outcome; an exception it did not expect fails
that item; an actor that dies (a crash, killed for memory) fails the item it held and is
replaced. A worker that cannot start (a model that is not installed) stops the batch at once
with the worker's own message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from webapp.pipeline.batch import OnDone
from webapp.pipeline.errors import ModelUnavailableError, PipelineError

logger = logging.getLogger(__name__)

INSTALL_HINT = ("Ray is not installed: pip install 'speech-studio[cluster]' (or pip install "
                "ray), or run the batch without --ray.")


class _Host:
    """A Ray actor holding one worker. A worker that cannot start with one of our errors (a
    model that is not installed) leaves its message for ``ready`` to return, because Ray
    keeps only the text of an exception raised while an actor is created."""

    def __init__(self, worker_cls: type, args: tuple, kwargs: dict) -> None:
        self.worker = None
        self.problem: str | None = None
        try:
            self.worker = worker_cls(*args, **kwargs)
        except PipelineError as exc:
            self.problem = str(exc)

    def ready(self) -> str | None:
        """None once the worker has started, else why it could not."""
        return self.problem

    def run(self, item: Any) -> Any:
        return self.worker(item)


def _ray(address: str | None):
    if not address:
        # A Ray started here for the batch is one machine's: keep all of its traffic on
        # loopback (Ray otherwise binds and connects through the machine's network address).
        # Read by Ray when imported; the processes it starts inherit it.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ModelUnavailableError(INSTALL_HINT) from None
    return ray


def _start(ray, workers: int, address: str | None) -> bool:
    """Connect to Ray; True if this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "logging_level": logging.WARNING,
             "log_to_driver": False, "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=workers, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ModelUnavailableError(f"Could not start or reach {where}: {exc}") from None
    return True


def run(worker_cls: type, args: tuple, items: Sequence[Any],
        fail: Callable[[Any, str], Any], *, workers: int | None = None,
        address: str | None = None, kwargs: dict | None = None,
        prepare: Callable[[Any], Any] | None = None,
        on_done: OnDone | None = None) -> list[Any]:
    """Run ``worker_cls(*args, **kwargs)(item)`` for every item on ``workers`` Ray actors
    (default: one per CPU of the cluster). ``prepare`` turns an item into what is sent to an
    actor (e.g. a recording with its bytes), just before it is sent. Returns the outcomes in
    the items' order."""
    ray = _ray(address)
    from ray.exceptions import RayActorError, RayTaskError

    if not items:
        return []
    started = _start(ray, workers or os.cpu_count() or 1, address)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = min(workers, len(items))
        host = ray.remote(num_cpus=1, max_restarts=0)(_Host)

        def check(actor):
            """``actor`` once its worker has started; stops the batch if it cannot."""
            try:
                problem = ray.get(actor.ready.remote())
            except RayActorError as exc:  # died while starting, with an error not ours
                logger.error("ray batch: a worker could not start: %s", exc)
                problem = "a worker process stopped while starting; see the log"
            if problem is not None:
                raise ModelUnavailableError(f"The batch workers could not start: {problem}")
            return actor

        def new_actor():
            return host.remote(worker_cls, args, kwargs or {})

        # Start the actors together (each loads its model), then check each one.
        actors = [check(actor) for actor in [new_actor() for _ in range(workers)]]
        logger.info("ray batch: %d items on %d actors", len(items), len(actors))

        outcomes: list[Any] = [None] * len(items)
        pending = iter(range(len(items)))
        running: dict[Any, tuple[int, Any]] = {}  # object ref -> (item index, actor)
        finished = 0

        def submit(actor) -> None:
            index = next(pending, None)
            if index is not None:
                item = items[index] if prepare is None else prepare(items[index])
                running[actor.run.remote(item)] = (index, actor)

        for actor in actors:
            submit(actor)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            index, actor = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                logger.error("ray batch: item %d failed: %s", index, exc)
                outcome = fail(items[index], f"internal error ({type(cause).__name__}: {cause})")
            except RayActorError as exc:
                logger.error("ray batch: the actor working on item %d died: %s", index, exc)
                outcome = fail(items[index], "the worker stopped while making it (crashed or "
                               "out of memory); run the batch again to retry it")
                actor = check(new_actor())
            outcomes[index] = outcome
            finished += 1
            if on_done is not None:
                on_done(finished, len(items), outcome)
            submit(actor)
        return outcomes
    finally:
        if started:
            ray.shutdown()

