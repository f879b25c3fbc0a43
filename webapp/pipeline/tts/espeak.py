"""eSpeak NG engine: the always-available fallback (Debian package ``espeak-ng``).

Robotic but tiny, fast and multilingual. Each call runs the ``espeak-ng`` binary once with the
text on stdin (never on the command line, never through a shell, so text starting with ``-``
is just text) and reads a WAV from stdout. Separate processes share nothing, so no lock is
needed and requests run in parallel.

Voice ids are espeak-ng's language codes from ``espeak-ng --voices`` (``en-us``, ``en-gb``,
``de``, ...); English voices are listed first, ``en-us`` is the default.
Speed maps to ``-s`` words per minute: 175 (espeak's default) times the speed factor.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator

from webapp.config import Settings
from webapp.pipeline.audio import Audio, load
from webapp.pipeline.errors import (
    AudioError,
    ModelUnavailableError,
    PipelineError,
    UnknownChoiceError,
)
from webapp.pipeline.tts.base import SynthesisOptions, VoiceInfo

logger = logging.getLogger(__name__)

DEFAULT_VOICE = "en-us"
BASE_WORDS_PER_MINUTE = 175
_LIST_TIMEOUT_S = 10.0
# A sentence takes espeak-ng milliseconds; the limit only stops a stuck process.
_BASE_TIMEOUT_S = 10.0
_TIMEOUT_S_PER_CHAR = 0.01
_INSTALL_HINT = "Install it with: apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng."


class EspeakEngine:
    name = "espeak"

    def __init__(self, settings: Settings, binary: str | None = None) -> None:
        self.settings = settings
        self._binary_name = binary or "espeak-ng"
        self._lock = threading.Lock()  # guards the lazily filled voice list and version
        self._voices: dict[str, VoiceInfo] | None = None
        self._version: str | None = None

    # -- the binary ----------------------------------------------------------------------
    def _binary(self) -> str:
        path = shutil.which(self._binary_name)
        if path is None:
            raise ModelUnavailableError(f"The eSpeak NG engine needs the '{self._binary_name}' "
                                        f"program, which is not installed. {_INSTALL_HINT}")
        return path

    def _run_text(self, args: list[str], timeout_s: float, stdin: bytes | None = None) -> bytes:
        try:
            proc = subprocess.run([self._binary(), *args], input=stdin, capture_output=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PipelineError(
                f"eSpeak NG did not finish within {timeout_s:.0f} s; try a shorter text."
            ) from exc
        except OSError as exc:
            raise ModelUnavailableError(f"Cannot run eSpeak NG ({exc}). {_INSTALL_HINT}") from exc
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip()
            raise PipelineError(f"eSpeak NG failed (exit code {proc.returncode}): {message}")
        return proc.stdout

    def version(self) -> str:
        with self._lock:
            if self._version is None:
                out = self._run_text(["--version"], _LIST_TIMEOUT_S).decode("utf-8", "replace")
                match = re.search(r"\b(\d+\.\d+(?:\.\d+)?)", out)
                self._version = match.group(1) if match else "unknown"
        return self._version

    def _voice_table(self) -> dict[str, VoiceInfo]:
        with self._lock:
            if self._voices is None:
                out = self._run_text(["--voices"], _LIST_TIMEOUT_S).decode("utf-8", "replace")
                self._voices = _parse_voices(out, self.name)
        return self._voices

    # -- the contract --------------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        return list(self._voice_table().values())

    def model_id(self, voice: str) -> str:
        self._check_voice(voice)
        # Voice data ships with the binary, so its version identifies the "weights".
        return f"espeak-ng/{self.version()}/{voice}"

    def load(self, voice: str) -> None:
        self._check_voice(voice)

    def _check_voice(self, voice: str) -> None:
        table = self._voice_table()
        if voice not in table:
            english = [v for v in table if v.startswith("en")]
            raise UnknownChoiceError(
                f"Unknown eSpeak NG voice '{voice}'. English voices: {', '.join(english)}; "
                f"{len(table)} voices in all (see the voice list)."
            )

    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Audio]:
        self._check_voice(options.voice)
        # "[[...]]" is espeak's inline phoneme syntax; user text must not reach it.
        text = " ".join(text.replace("[[", "[").replace("]]", "]").split())
        if not text:
            return
        words_per_minute = int(round(BASE_WORDS_PER_MINUTE * float(options.speed)))
        args = ["-v", options.voice, "-s", str(words_per_minute), "-b", "1", "--stdout"]
        timeout_s = _BASE_TIMEOUT_S + _TIMEOUT_S_PER_CHAR * len(text)
        wav = self._run_text(args, timeout_s, stdin=text.encode("utf-8"))
        try:
            audio = load(wav)
        except AudioError as exc:
            raise PipelineError(f"eSpeak NG produced no audio for this text ({exc}).") from exc
        yield audio


def _parse_voices(listing: str, engine: str) -> dict[str, VoiceInfo]:
    """Parse ``espeak-ng --voices``: ``Pty Language Age/Gender VoiceName File Other Languages``."""
    voices: dict[str, VoiceInfo] = {}
    for line in listing.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5 or not parts[0].isdigit():
            continue
        code, gender, name = parts[1], parts[2], parts[3]
        voices.setdefault(code, VoiceInfo(
            id=code, engine=engine, language=code.split("-")[0],
            description=f"eSpeak NG {name.replace('_', ' ')} ({gender.split('/')[-1]})",
            sample_rate_hz=22_050, license="GPL-3.0-or-later (espeak-ng)",
        ))
    # English first (default first of all), then the rest alphabetically.
    order = sorted(voices, key=lambda v: (v != DEFAULT_VOICE, not v.startswith("en"), v))
    return {v: voices[v] for v in order}
