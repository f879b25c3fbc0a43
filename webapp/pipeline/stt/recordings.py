"""A folder of recordings transcribed at once (``python -m webapp batch transcribe``).

Per recording, named from its file name: the text (``.txt``), SRT and WebVTT subtitles and the
JSON transcript with word times; for the whole folder, ``index.json`` (what was made, each
file's length, warnings and error) and ``transcripts.tsv`` (``file<TAB>text``, the format of
the test recordings' references, ready for a WER check). Each recording goes through
``files.transcribe_audio``, the path the Transcribe tab and ``python -m webapp transcribe``
take, so a batch gives what one file at a time would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from webapp.pipeline import batch
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.lesson.course import slug
from webapp.pipeline.stt.base import STTEngine, TranscribeOptions
from webapp.pipeline.stt.files import load_for_transcription, render, transcribe_audio

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm")
MAX_RECORDINGS = 1000
FORMATS = ("txt", "srt", "vtt", "json")


@dataclass
class Recording:
    name: str  # the file's name, as the user knows it
    stem: str  # what its outputs are called (unique in the batch)
    path: Path | None = None
    data: bytes | None = None  # the file's bytes, for workers that do not share the disk
    sha256: str = ""  # of the bytes, once computed (see ``digest``)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise InputError(f"{self.name} has no audio.")
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"Cannot read {self.name}: {exc.strerror}.") from None

    def digest(self, data: bytes | None = None) -> str:
        """SHA-256 of the recording's bytes, computed once (from ``data`` if already read)."""
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.read() if data is None else data).hexdigest()
        return self.sha256

    def portable(self) -> Recording:
        """The same recording carrying its bytes (to ship to a machine without this disk)."""
        if self.data is not None:
            return self
        data = self.read()
        return Recording(self.name, self.stem, None, data, self.digest(data))


@dataclass(frozen=True)
class RecordingOptions:
    """Everything besides the audio that decides a recording's files."""

    engine: str | None = None
    model: str | None = None
    vocabulary: str = ""
    denoise: bool = True

    def transcribe_options(self) -> TranscribeOptions:
        return TranscribeOptions(initial_prompt=self.vocabulary.strip() or None,
                                 denoise=self.denoise)

    def key(self, recording: Recording, data: bytes | None = None) -> str:
        """Changes whenever the recording's files would (``data``: its bytes, if read)."""
        parts = [recording.digest(data), recording.stem, self.engine, self.model, self.vocabulary.strip(),
                 self.denoise]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@dataclass
class RecordingOutcome:
    recording: Recording
    files: dict[str, bytes | str] = field(default_factory=dict)
    error: str = ""
    duration_s: float = 0.0
    compute_s: float = 0.0
    text: str = ""
    warnings: tuple[str, ...] = ()
    key: str = ""
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return not self.error

    def summary(self) -> dict:
        return {"name": self.recording.name, "stem": self.recording.stem, "ok": self.ok,
                "error": self.error, "duration_s": round(self.duration_s, 2),
                "compute_s": round(self.compute_s, 2), "text": self.text,
                "warnings": list(self.warnings), "key": self.key, "skipped": self.skipped,
                "files": sorted(self.files)}


def find_recordings(path: Path, max_recordings: int = MAX_RECORDINGS) -> list[Recording]:
    """The audio files at ``path`` (a folder, in name order, or one file)."""
    files = batch.input_files(path, AUDIO_SUFFIXES, f"audio files ({', '.join(AUDIO_SUFFIXES)})")
    if len(files) > max_recordings:
        raise InputError(f"{path} holds {len(files)} recordings; one batch takes at most "
                         f"{max_recordings}. Split it into folders.")
    stems = batch.unique_stems([slug(p.stem, limit=60) for p in files])
    return [Recording(p.name, stem, p) for p, stem in zip(files, stems, strict=True)]


def transcribe_recording(recording: Recording, options: RecordingOptions, engine: STTEngine,
                         max_seconds: float) -> RecordingOutcome:
    """Transcribe one recording; one that cannot be read or decoded is an outcome with its
    error."""
    try:
        data = recording.read()
        key = options.key(recording, data)
        audio = load_for_transcription(data, max_seconds, name=recording.name)
        result = transcribe_audio(engine, audio, options.transcribe_options())
    except PipelineError as exc:
        return failed(recording, str(exc))
    transcript = result.transcript
    files: dict[str, bytes | str] = {f"{recording.stem}.{fmt}": render(transcript, fmt)
                                     for fmt in FORMATS}
    return RecordingOutcome(recording, files=files, duration_s=audio.duration_s,
                            compute_s=result.compute_s, text=transcript.text.strip(),
                            warnings=result.warnings, key=key)


def failed(recording: Recording, error: str) -> RecordingOutcome:
    return RecordingOutcome(recording, error=error)


def already_made(recording: Recording, options: RecordingOptions,
                 done: dict[str, dict]) -> RecordingOutcome | None:
    earlier = done.get(recording.stem)
    if not earlier:
        return None
    try:
        if earlier.get("key") != options.key(recording):
            return None
    except PipelineError:  # unreadable now: transcribing it reports why, by name
        return None
    return RecordingOutcome(
        recording, duration_s=earlier.get("duration_s", 0.0),
        compute_s=earlier.get("compute_s", 0.0), text=earlier.get("text", ""),
        warnings=tuple(earlier.get("warnings", ())), key=earlier["key"], skipped=True,
        files=dict.fromkeys(earlier.get("files", []), b""))


def write_folder(outcomes: list[RecordingOutcome], options: RecordingOptions, out: Path) -> None:
    batch.write_files(outcomes, out)
    batch.write_atomic(out / "transcripts.tsv", "file\ttext\n" + "".join(
        f"{o.recording.name}\t{' '.join(o.text.split())}\n" for o in outcomes if o.ok))
    batch.write_atomic(out / "index.json", batch.index(
        outcomes, "recordings", engine=options.engine, model=options.model,
        vocabulary=options.vocabulary, denoise=options.denoise))


def finished(out: Path) -> dict[str, dict]:
    return batch.finished(out, "recordings")
