"""The TTS engine contract: a narrow protocol, adapters behind it.

An engine turns *one short piece of normalised text* (a sentence or clause; the synthesis
service does the splitting, caching and pausing) into audio chunks. Engines are loaded once and
shared between requests, so ``synthesize`` must be safe to call from several worker threads
(take a lock inside if the backend is not).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import InputError

MIN_SPEED = 0.5
MAX_SPEED = 2.0


@dataclass(frozen=True)
class VoiceInfo:
    """What a voice declares. ``id`` is what users pick; it never names a file."""

    id: str
    engine: str
    language: str = "en"
    description: str = ""
    sample_rate_hz: int | None = None
    supports_cloning: bool = False  # a reference clip (SynthesisOptions.reference) sets the voice
    # Cloning has not yet run on the released weights (issue 14: XTTS): the UI labels it
    # experimental.
    cloning_experimental: bool = False
    license: str = ""  # licence and credit line (data set, what it was trained from)
    quality: str = ""  # what the voice declares, e.g. Piper's x_low / low / medium / high
    language_name: str = ""  # for people: "English (United States)"; ``language`` is the code


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-call choices. ``reference`` is a cloning clip (XTTS) already decoded by the caller;
    the synthesis service passes it only to voices that clone (``CloningEngine``)."""

    voice: str
    speed: float = 1.0
    reference: Audio | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.speed, (int, float)) or not (MIN_SPEED <= float(self.speed) <= MAX_SPEED):
            raise InputError(f"Speed must be between {MIN_SPEED} and {MAX_SPEED} (1.0 is normal); got {self.speed}.")


@runtime_checkable
class TTSEngine(Protocol):
    name: str
    """Engine id used in the UI, CLI and cache key: 'piper', 'coqui', 'espeak'."""

    def voices(self) -> list[VoiceInfo]:
        """Voices this engine can speak with right now (loaded or loadable here)."""
        ...

    def model_id(self, voice: str) -> str:
        """A stable identifier of the weights behind ``voice`` (name + version or file hash),
        part of the synthesis cache key so new weights never serve old audio."""
        ...

    def load(self, voice: str) -> None:
        """Load and warm up ``voice`` (idempotent). Raises UnknownChoiceError or
        ModelUnavailableError with a message that says how to get it."""
        ...

    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Audio]:
        """Yield audio for ``text`` as soon as each piece is ready (usually one per sentence)."""
        ...


@runtime_checkable
class CloningEngine(Protocol):
    """An engine some of whose voices clone a voice from a reference clip. Engines without this
    method clone with none: the synthesis service leaves a clip out of their calls and their
    cache keys (issue 14)."""

    def supports_cloning(self, voice: str) -> bool:
        """Whether ``voice`` speaks in the voice of ``SynthesisOptions.reference``; cheap
        (no model load)."""
        ...
