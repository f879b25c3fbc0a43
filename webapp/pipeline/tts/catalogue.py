"""The official Piper voice catalogue, and installing a voice from it with checksum verification.

The catalogue is ``voices.json`` in the Hugging Face repository ``rhasspy/piper-voices`` (the file
``piper.download_voices`` reads): one entry per voice key (``en_GB-alan-medium``) with its
``language`` (``code``, ``name_english``, ``country_english``...), ``quality``, ``num_speakers`` and
``files``, ``{path relative to the repository: {size_bytes, md5_digest}}``: the ``.onnx`` weights,
the ``.onnx.json`` config and a ``MODEL_CARD`` that names the data set and its licence.

Only keys of the catalogue are installed (a user never names a path or a URL): each file is
streamed into a temporary file next to its destination, its size and MD5 are checked against the
catalogue, and only then is it renamed into place, weights last, so the engine never sees half a
voice. Installed voices live in ``<data dir>/models/piper`` and work offline from then on.
``piper.download_voices`` is not used: it checks nothing and writes straight to the final names.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from webapp.config import Settings
from webapp.pipeline.errors import ModelUnavailableError, UnknownChoiceError

logger = logging.getLogger(__name__)

CATALOGUE_FILE = "voices.json"
CATALOGUE_TTL_S = 24 * 3600.0
TIMEOUT_S = 30.0
# voices.json is about 1.5 MB; the largest voice file ("high" quality) about 115 MB.
MAX_CATALOGUE_BYTES = 16 * 2**20
MAX_FILE_BYTES = 256 * 2**20
MAX_CARD_BYTES = 64 * 2**10
# Room left on the disk after an install, so one download cannot fill it.
DISK_MARGIN_BYTES = 256 * 2**20
_CHUNK_BYTES = 1 << 20

VOICE_NAME = re.compile(r"^[a-z]{2,3}_[A-Z]{2}-[A-Za-z0-9_]+-(x_low|low|medium|high)$")
"""What a Piper voice key looks like: ``<language>_<REGION>-<name>-<quality>``."""
_REL_PATH = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)*$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
USER_AGENT = "speech-studio (Piper voice installer)"

ProgressFn = Callable[[int, int], None]
"""Called with (bytes done, bytes in total) while a voice downloads."""


def how_to_provide(key: str) -> str:
    return (f"To provide it without the catalogue, put {key}.onnx and {key}.onnx.json in a folder "
            "listed in SPEECH_STUDIO_PIPER_VOICE_DIRS.")


@dataclass(frozen=True)
class VoiceFile:
    path: str  # relative to the catalogue's base URL
    size_bytes: int
    md5: str


@dataclass(frozen=True)
class CatalogueVoice:
    """One voice the catalogue offers."""

    key: str
    name: str
    language_code: str  # en_GB
    language_name: str  # English (Great Britain)
    quality: str
    num_speakers: int
    model: VoiceFile
    config: VoiceFile
    card: VoiceFile | None = None

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def files(self) -> tuple[VoiceFile, ...]:
        return tuple(f for f in (self.card, self.config, self.model) if f is not None)

    @property
    def label(self) -> str:
        speakers = f" · {self.num_speakers} speakers" if self.num_speakers > 1 else ""
        return (f"{self.language_name} · {self.name.replace('_', ' ')} · {self.quality} quality"
                f"{speakers} · {self.size_bytes / 1e6:.0f} MB")


@dataclass(frozen=True)
class InstalledVoice:
    key: str
    model: Path
    config: Path
    card: Path | None


def language_name(language: dict) -> str:
    """``English (United States)`` from a catalogue or voice-config ``language`` object."""
    name = str(language.get("name_english") or language.get("code") or "").strip()
    country = str(language.get("country_english") or "").strip()
    return f"{name} ({country})" if name and country else name


def _file(raw: object) -> VoiceFile | None:
    path, spec = raw if isinstance(raw, tuple) else (None, None)
    if not isinstance(path, str) or not isinstance(spec, dict):
        return None
    size, md5 = spec.get("size_bytes"), str(spec.get("md5_digest", "")).lower()
    # A path, never a URL or a way out of the base: ".." and "//" have no place in it.
    if (not _REL_PATH.match(path) or ".." in path.split("/") or not isinstance(size, int)
            or not 0 < size <= MAX_FILE_BYTES or not _MD5.match(md5)):
        return None
    return VoiceFile(path, size, md5)


def parse_catalogue(raw: object) -> dict[str, CatalogueVoice]:
    """The voices of a ``voices.json``; entries without a well-formed key, weights and config
    (checksum and size included) are left out."""
    out: dict[str, CatalogueVoice] = {}
    if not isinstance(raw, dict):
        raise ValueError("voices.json is not a JSON object")
    for key, entry in raw.items():
        if not isinstance(key, str) or not VOICE_NAME.match(key) or not isinstance(entry, dict):
            continue
        files = entry.get("files") if isinstance(entry.get("files"), dict) else {}
        found: dict[str, VoiceFile] = {}
        for item in files.items():
            spec = _file(item)
            name = item[0].rsplit("/", 1)[-1] if isinstance(item[0], str) else ""
            if spec is None:
                continue
            if name == f"{key}.onnx":
                found["model"] = spec
            elif name == f"{key}.onnx.json":
                found["config"] = spec
            elif name == "MODEL_CARD" and spec.size_bytes <= MAX_CARD_BYTES:
                found["card"] = spec
        if "model" not in found or "config" not in found:
            logger.debug("catalogue entry %s has no usable weights/config; skipped", key)
            continue
        language = entry.get("language") if isinstance(entry.get("language"), dict) else {}
        speakers = entry.get("num_speakers")
        out[key] = CatalogueVoice(
            key=key, name=str(entry.get("name") or key.split("-")[1]),
            language_code=str(language.get("code") or key.split("-")[0]),
            language_name=language_name(language) or key.split("-")[0],
            quality=str(entry.get("quality") or key.rsplit("-", 1)[-1]),
            num_speakers=speakers if isinstance(speakers, int) and speakers > 0 else 1,
            **found,
        )
    return out


# -- model cards -------------------------------------------------------------------------
def _card_fields(text: str) -> tuple[str, dict[str, str], list[str]]:
    """(title, dataset fields, training lines) of a Piper MODEL_CARD (markdown: "# Model card for
    joe (medium)", "## Dataset" with "* URL:" and "* License:" items, "## Training" prose)."""
    title, section = "", ""
    dataset: dict[str, str] = {}
    training: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
            if stripped.startswith("# ") and not title:
                title = heading
            section = heading.lower()
            continue
        item = re.match(r"^[*-]\s*([A-Za-z ]+?)\s*:\s*(.*)$", stripped)
        if section == "dataset" and item:
            dataset[item.group(1).lower()] = item.group(2).strip()
        elif section == "training" and stripped:
            training.append(stripped)
    return title, dataset, training


def _plain(text: str, limit: int = 200) -> str:
    """A card's words on one line, without HTML, bounded (the page escapes Markdown itself)."""
    text = re.sub(r"[<>`]", "", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def credit_from_card(text: str) -> str:
    """The licence/credit line of a MODEL_CARD: "CC0 · data set: <url> · Finetuned from ...".
    Empty when the card names neither a licence nor a data set."""
    _, dataset, training = _card_fields(text)
    parts = []
    if dataset.get("license"):
        parts.append(_plain(dataset["license"]))
    if dataset.get("url"):
        parts.append("data set: " + _plain(dataset["url"]))
    if training:
        parts.append(_plain(" ".join(training)))
    return " · ".join(parts)


def card_for(model: Path, key: str) -> Path | None:
    """The MODEL_CARD of a voice on disk: ``<key>.MODEL_CARD`` beside the weights (how voices are
    installed here), or a ``MODEL_CARD`` in the same folder that names this voice (the catalogue's
    own one-voice-per-folder layout)."""
    own = model.with_name(f"{key}.MODEL_CARD")
    if own.is_file():
        return own
    shared = model.with_name("MODEL_CARD")
    if shared.is_file():
        parts = key.split("-")
        title, _, _ = _card_fields(read_card(shared))
        if len(parts) == 3 and title.lower() == f"model card for {parts[1]} ({parts[2]})".lower():
            return shared
    return None


def read_card(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.read(MAX_CARD_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""


# -- the catalogue -----------------------------------------------------------------------
# URLError, HTTPError and timeouts are OSErrors; a connection closed early is an HTTPException.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


class _Corrupt(Exception):
    """A download that does not match the catalogue (size or checksum)."""


def _base_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ModelUnavailableError(
            f"SPEECH_STUDIO_VOICE_CATALOGUE_URL must be an http(s) URL; got '{url}'.")
    return url.strip() if url.strip().endswith("/") else url.strip() + "/"


class VoiceCatalogue:
    """The catalogue of one deployment: its list (cached in the data dir for ``ttl_s``) and the
    installs into ``<data dir>/models/piper``. Thread-safe; one instance per engine."""

    def __init__(self, settings: Settings, *, ttl_s: float = CATALOGUE_TTL_S) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self.target = settings.models_dir / "piper"
        self.cache_file = settings.models_dir / "piper-voices.json"
        self._lock = threading.Lock()
        self._install_locks: dict[str, threading.Lock] = {}
        self._voices: dict[str, CatalogueVoice] | None = None
        self._loaded_at = 0.0
        self._cards: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return _base_url(self.settings.voice_catalogue_url)

    def _refuse_offline(self, what: str) -> None:
        if self.settings.offline:
            raise ModelUnavailableError(
                f"This deployment is offline (SPEECH_STUDIO_OFFLINE=1), so {what} cannot be "
                "downloaded from the Piper voice catalogue. The operator can set "
                "SPEECH_STUDIO_OFFLINE=0 to allow it.")

    def _open(self, url: str):
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 - http(s) only

    # -- the list ------------------------------------------------------------------------
    def voices(self) -> dict[str, CatalogueVoice]:
        """Every voice of the catalogue, by key. Raises ModelUnavailableError offline, or when
        the catalogue cannot be fetched and no earlier copy is kept."""
        self._refuse_offline("the voice list")
        with self._lock:
            now = time.time()
            if self._voices is not None and now - self._loaded_at < self.ttl_s:
                return self._voices
            cached = self._read_cached(fresh_only=True)
            if cached is None:
                try:
                    cached = self._fetch_catalogue()
                except ModelUnavailableError:
                    cached = self._read_cached(fresh_only=False)
                    if cached is None:
                        raise
                    logger.warning("using the stale Piper catalogue in %s", self.cache_file)
            self._voices, self._loaded_at = cached, now
            return cached

    def _read_cached(self, *, fresh_only: bool) -> dict[str, CatalogueVoice] | None:
        try:
            age = time.time() - self.cache_file.stat().st_mtime
            if fresh_only and age >= self.ttl_s:
                return None
            return parse_catalogue(json.loads(self.cache_file.read_text("utf-8")))
        except (OSError, ValueError) as exc:
            if self.cache_file.exists():
                logger.warning("ignoring the cached Piper catalogue %s: %s", self.cache_file, exc)
            return None

    def _fetch_catalogue(self) -> dict[str, CatalogueVoice]:
        url = self.base_url + CATALOGUE_FILE
        logger.info("fetching the Piper voice catalogue from %s", url)
        try:
            with self._open(url) as response:
                data = response.read(MAX_CATALOGUE_BYTES + 1)
            if len(data) > MAX_CATALOGUE_BYTES:
                raise ValueError(f"larger than {MAX_CATALOGUE_BYTES // 2**20} MB")
            voices = parse_catalogue(json.loads(data))
        except _NETWORK_ERRORS + (ValueError,) as exc:
            raise ModelUnavailableError(
                "The Piper voice catalogue could not be fetched, so no voice can be installed "
                f"right now ({_reason(exc)}). Check the server's internet connection, or put "
                "voices (NAME.onnx + NAME.onnx.json) in a folder listed in "
                "SPEECH_STUDIO_PIPER_VOICE_DIRS.") from exc
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.cache_file, data)
        except OSError as exc:
            logger.warning("could not keep the Piper catalogue in %s: %s", self.cache_file, exc)
        return voices

    def entry(self, key: str) -> CatalogueVoice:
        """The catalogue entry of ``key``; UnknownChoiceError for anything else."""
        if not isinstance(key, str) or not VOICE_NAME.match(key):
            raise UnknownChoiceError(
                f"'{str(key)[:80]}' is not a Piper voice name (they look like en_GB-alan-medium).")
        self._refuse_offline(f"Piper voice '{key}'")
        voice = self.voices().get(key)
        if voice is None:
            raise UnknownChoiceError(
                f"Piper voice '{key}' is not in the voice catalogue. Choose one it lists "
                "(e.g. en_GB-alan-medium, en_US-lessac-medium).")
        return voice

    def model_card(self, key: str) -> str:
        """The MODEL_CARD text of a catalogue voice (a few hundred bytes, checked like the
        weights), so its licence can be read before it is installed; empty if it has none."""
        voice = self.entry(key)
        if voice.card is None:
            return ""
        if key not in self._cards:
            try:
                with self._open(self.base_url + urllib.parse.quote(voice.card.path)) as response:
                    data = response.read(voice.card.size_bytes + 1)
            except _NETWORK_ERRORS as exc:
                raise ModelUnavailableError(
                    f"The model card of Piper voice '{key}' could not be fetched ({_reason(exc)})."
                ) from exc
            if (len(data) != voice.card.size_bytes
                    or hashlib.md5(data, usedforsecurity=False).hexdigest() != voice.card.md5):
                raise ModelUnavailableError(
                    f"The model card of Piper voice '{key}' does not match the catalogue.")
            self._cards[key] = data.decode("utf-8", "replace")
        return self._cards[key]

    # -- installing ----------------------------------------------------------------------
    def installed(self, voice: CatalogueVoice) -> InstalledVoice | None:
        """The voice's files in the install folder if they are all there at the catalogue's
        sizes (they were checked when written)."""
        found = InstalledVoice(voice.key, self.target / f"{voice.key}.onnx",
                               self.target / f"{voice.key}.onnx.json",
                               self.target / f"{voice.key}.MODEL_CARD" if voice.card else None)
        pairs = [(found.model, voice.model), (found.config, voice.config)]
        if voice.card is not None:
            pairs.append((found.card, voice.card))
        try:
            if all(path.stat().st_size == spec.size_bytes for path, spec in pairs):
                return found
        except OSError:
            pass
        return None

    def install(self, key: str, progress: ProgressFn | None = None) -> InstalledVoice:
        """Download ``key`` (weights, config, model card), verify each file's size and MD5 and
        move them into place. Nothing is left behind when a file fails its check."""
        voice = self.entry(key)
        with self._lock:
            lock = self._install_locks.setdefault(key, threading.Lock())
        with lock:  # two clicks on one voice download it once
            done = self.installed(voice)
            if done is not None:
                return done
            return self._download(voice, progress)

    def _download(self, voice: CatalogueVoice, progress: ProgressFn | None) -> InstalledVoice:
        key = voice.key
        try:
            self.target.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.target).free
        except OSError as exc:
            raise ModelUnavailableError(
                f"Piper voice '{key}' cannot be installed: the voice folder is not writable "
                f"({_reason(exc)}).") from exc
        total = voice.size_bytes
        if free < total + DISK_MARGIN_BYTES:
            raise ModelUnavailableError(
                f"Piper voice '{key}' needs {total / 1e6:.0f} MB and the server's disk is nearly "
                "full; the operator has to free space first.")
        logger.info("installing Piper voice %s (%.0f MB) from %s into %s", key, total / 1e6,
                    self.base_url, self.target)
        finals = {voice.model: self.target / f"{key}.onnx",
                  voice.config: self.target / f"{key}.onnx.json"}
        if voice.card is not None:
            finals[voice.card] = self.target / f"{key}.MODEL_CARD"
        parts: dict[VoiceFile, Path] = {}
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        try:
            for spec in voice.files:
                parts[spec] = self._fetch_file(key, spec, tick)
            # Weights last: the engine lists a voice once its .onnx is there.
            for spec in voice.files:
                os.replace(parts.pop(spec), finals[spec])
        except _Corrupt as exc:
            raise ModelUnavailableError(
                f"The download of Piper voice '{key}' did not match the catalogue ({exc}), so "
                "nothing was installed. Try again later; if it keeps failing, the catalogue "
                "or a proxy in between serves damaged files. " + how_to_provide(key)) from None
        except _NETWORK_ERRORS as exc:
            raise ModelUnavailableError(
                f"Could not download Piper voice '{key}' ({_reason(exc)}). Check the server's "
                "internet connection. " + how_to_provide(key)) from exc
        finally:
            for part in parts.values():
                part.unlink(missing_ok=True)
        logger.info("installed Piper voice %s", key)
        return InstalledVoice(key, finals[voice.model], finals[voice.config],
                              finals.get(voice.card) if voice.card else None)

    def _fetch_file(self, key: str, spec: VoiceFile, tick: Callable[[int], None]) -> Path:
        """``spec`` streamed into a temporary file in the install folder, checked."""
        url = self.base_url + urllib.parse.quote(spec.path)
        name = spec.path.rsplit("/", 1)[-1]
        fd, tmp = tempfile.mkstemp(dir=self.target, prefix=f".{key}.", suffix=".part")
        path = Path(tmp)
        try:
            digest = hashlib.md5(usedforsecurity=False)  # the checksum the catalogue publishes
            got = 0
            with os.fdopen(fd, "wb") as out, self._open(url) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) != spec.size_bytes:
                    raise _Corrupt(f"{name}: {int(length):,} bytes offered, "
                                   f"{spec.size_bytes:,} expected")
                while chunk := response.read(_CHUNK_BYTES):
                    got += len(chunk)
                    if got > spec.size_bytes:
                        raise _Corrupt(f"{name}: more than the {spec.size_bytes:,} bytes expected")
                    digest.update(chunk)
                    out.write(chunk)
                    tick(len(chunk))
            if got != spec.size_bytes:
                raise _Corrupt(f"{name}: {got:,} bytes received, {spec.size_bytes:,} expected")
            if digest.hexdigest() != spec.md5:
                raise _Corrupt(f"{name}: checksum mismatch")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or exc.__class__.__name__


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
