"""The one audio value type and its edges: decode, mono, resample, normalise, trim, encode.

Inside the pipeline audio is float32 mono in [-1, 1] (``Audio``); int16 and container formats
exist only at the edges (``load``/``from_array`` in, ``encode`` out). Decoding uses libsndfile
(soundfile: WAV, FLAC, OGG/Vorbis/Opus, MP3) and falls back to ffmpeg for everything else
(M4A/AAC, WebM from browsers). Resampling is soxr (librosa's default), trimming is librosa.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from webapp.pipeline.errors import AudioError, InputError

logger = logging.getLogger(__name__)

Format = Literal["wav", "mp3", "ogg", "flac"]
FORMATS: tuple[str, ...] = ("wav", "mp3", "ogg", "flac")
MIME_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac"}

# What libsndfile is asked to write for each container.
_SF_FORMAT = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1] at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise AudioError(f"Sample rate must be positive, got {self.sample_rate}.")
        arr = np.asarray(self.samples, dtype=np.float32)
        if arr.ndim != 1:
            raise AudioError(f"Audio must be mono (1-D); got shape {arr.shape}. Use from_array().")
        object.__setattr__(self, "samples", arr)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def peak(self) -> float:
        return float(np.max(np.abs(self.samples))) if len(self.samples) else 0.0

    @property
    def rms_dbfs(self) -> float:
        if not len(self.samples):
            return -np.inf
        rms = float(np.sqrt(np.mean(np.square(self.samples, dtype=np.float64))))
        return 20 * np.log10(rms) if rms > 0 else -np.inf

    def is_silent(self, threshold_dbfs: float = -60.0) -> bool:
        return self.rms_dbfs < threshold_dbfs

    @classmethod
    def silence(cls, seconds: float, sample_rate: int) -> Audio:
        return cls(np.zeros(int(round(seconds * sample_rate)), dtype=np.float32), sample_rate)

    @classmethod
    def concat(cls, parts: list[Audio]) -> Audio:
        if not parts:
            raise AudioError("Nothing to join: no audio parts.")
        rate = parts[0].sample_rate
        joined = [p.resample(rate).samples for p in parts]
        return cls(np.concatenate(joined), rate)

    def resample(self, target_hz: int) -> Audio:
        if target_hz == self.sample_rate or not len(self.samples):
            return Audio(self.samples, target_hz) if target_hz != self.sample_rate else self
        import soxr

        out = soxr.resample(self.samples, self.sample_rate, target_hz, quality="HQ")
        return Audio(out.astype(np.float32, copy=False), target_hz)

    def peak_normalize(self, target_peak: float = 0.95) -> Audio:
        peak = self.peak
        if peak <= 0:
            return self
        return Audio(self.samples * (target_peak / peak), self.sample_rate)

    def loudness_normalize(self, target_dbfs: float = -20.0, max_gain_db: float = 30.0) -> Audio:
        """Scale to an RMS level (a simple loudness proxy), never amplifying more than
        ``max_gain_db`` (so near-silence does not become loud noise) and never clipping."""
        level = self.rms_dbfs
        if not np.isfinite(level):
            return self
        gain_db = min(target_dbfs - level, max_gain_db)
        out = self.samples * (10 ** (gain_db / 20))
        peak = float(np.max(np.abs(out)))
        if peak > 0.999:
            out = out * (0.999 / peak)
        return Audio(out, self.sample_rate)

    def trim(self, top_db: float = 40.0) -> Audio:
        """Trim leading and trailing silence (librosa.effects.trim)."""
        if not len(self.samples) or self.peak == 0:
            return self
        import librosa

        trimmed, _ = librosa.effects.trim(self.samples, top_db=top_db)
        return Audio(trimmed, self.sample_rate)

    def to_int16(self) -> np.ndarray:
        return (np.clip(self.samples, -1.0, 1.0) * 32767.0).astype(np.int16)

    def encode(self, fmt: str = "wav") -> bytes:
        return encode(self, fmt)


def from_array(data: np.ndarray, sample_rate: int) -> Audio:
    """Accept what browsers and libraries hand over: int16/int32/uint8/float, 1-D or 2-D
    (channels first or last), and return mono float32.

    Gradio's microphone gives ``(n,)`` or ``(n, channels)`` int16; other libraries give
    ``(channels, n)``. The shorter axis is taken as channels.
    """
    arr = np.asarray(data)
    if arr.size == 0:
        return Audio(np.zeros(0, dtype=np.float32), int(sample_rate))
    if arr.ndim > 2:
        raise AudioError(f"Audio array must be 1-D or 2-D, got shape {arr.shape}.")
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == np.uint8:
            arr = (arr.astype(np.float32) - 128.0) / 128.0
        else:
            arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=-1.0)
    else:
        raise AudioError(f"Unsupported audio sample type {arr.dtype}.")
    if arr.ndim == 2:
        channel_axis = 0 if arr.shape[0] < arr.shape[1] else 1
        arr = arr.mean(axis=channel_axis)
    return Audio(np.clip(arr, -1.0, 1.0), int(sample_rate))


MAX_CHANNELS = 8
MAX_RATE_HZ = 192_000
MIN_RATE_HZ = 1_000
DECODED_RATE_BUDGET_HZ = 2 * 48_000
"""Decoded samples allowed per second of the duration limit: two channels at 48 kHz."""
DEFAULT_MAX_SECONDS = 3600.0


def _check_header(source: str | Path | bytes, name: str, max_seconds: float | None) -> None:
    """Refuse from the header, before decoding: too long, too many channels, an odd rate, or
    more decoded samples than the limit allows (issue 9: a few MB of many-channel high-rate
    silence passed the duration check and decoded to tens of GB)."""
    try:
        info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except Exception:  # noqa: BLE001 - not a libsndfile format: ffmpeg decodes to mono 48 kHz
        return
    if info.channels > MAX_CHANNELS:
        raise AudioError(f"{name} has {info.channels} channels; at most {MAX_CHANNELS} are "
                         "accepted. Export it as mono or stereo.")
    if not MIN_RATE_HZ <= info.samplerate <= MAX_RATE_HZ:
        raise AudioError(f"{name} has a sample rate of {info.samplerate} Hz; accepted are "
                         f"{MIN_RATE_HZ}-{MAX_RATE_HZ} Hz.")
    duration = info.frames / info.samplerate
    limit_s = DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds
    if max_seconds is not None and duration > max_seconds:
        raise AudioError(
            f"{name} is {duration / 60:.1f} minutes long; the limit here is "
            f"{max_seconds / 60:.0f} minutes. Split it into shorter files."
        )
    if info.frames * info.channels > limit_s * DECODED_RATE_BUDGET_HZ:
        raise AudioError(
            f"{name} would decode to {info.frames * info.channels / 1e6:.0f} million samples "
            f"({info.channels} channels at {info.samplerate} Hz); the limit is "
            f"{limit_s * DECODED_RATE_BUDGET_HZ / 1e6:.0f} million. Export it as mono or "
            "stereo at 48 kHz or less."
        )


def load(
    source: str | Path | bytes,
    *,
    target_hz: int | None = None,
    max_seconds: float | None = None,
    name: str | None = None,
) -> Audio:
    """Decode a file (path or bytes) of any common format to mono float32, optionally resampled.

    Raises ``AudioError`` with a readable message for empty, truncated, non-audio or too-long
    input, naming the file as ``name`` (default: the path's file name, or "the upload").
    """
    name = name or ("the upload" if isinstance(source, bytes) else Path(source).name)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"Audio file not found: {name}.")
        if path.stat().st_size == 0:
            raise AudioError(f"{name} is empty (0 bytes): record or upload a real audio file.")
    elif not source:
        raise AudioError(f"{name[:1].upper()}{name[1:]} is empty (0 bytes).")

    _check_header(source, name, max_seconds)

    try:
        data, rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else str(source),
                             dtype="float32", always_2d=True)
        audio = from_array(data, rate)
    except Exception as exc:  # noqa: BLE001 - libsndfile cannot read it; try ffmpeg
        logger.debug("soundfile could not read %s (%s); trying ffmpeg", name, exc)
        audio = _decode_with_ffmpeg(source, name, max_seconds)

    if not len(audio.samples):
        raise AudioError(f"{name} contains no audio samples (truncated or empty recording).")
    if max_seconds is not None and audio.duration_s > max_seconds:
        raise AudioError(
            f"{name} is {audio.duration_s / 60:.1f} minutes long; the limit here is "
            f"{max_seconds / 60:.0f} minutes."
        )
    if target_hz is not None:
        audio = audio.resample(target_hz)
    return audio


_FFMPEG_RATE = 48_000


def _decode_with_ffmpeg(source: str | Path | bytes, name: str, max_seconds: float | None) -> Audio:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            f"Cannot decode {name}: not WAV/FLAC/OGG/MP3, and ffmpeg (needed for other formats "
            "such as M4A) is not installed."
        )
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i",
           "pipe:0" if isinstance(source, bytes) else str(source)]
    if max_seconds is not None:
        # Decode one second past the limit so an over-long file is reported, not silently cut.
        cmd += ["-t", str(max_seconds + 1)]
    cmd += ["-vn", "-ac", "1", "-ar", str(_FFMPEG_RATE), "-f", "f32le", "pipe:1"]
    try:
        proc = subprocess.run(cmd, input=source if isinstance(source, bytes) else None,
                              capture_output=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioError(f"Decoding {name} took too long.") from exc
    samples = np.frombuffer(proc.stdout, dtype=np.float32)
    if proc.returncode != 0 or samples.size == 0:
        raise AudioError(
            f"{name} is not a readable audio file (corrupt, truncated, or not audio). "
            "Supported: WAV, FLAC, MP3, OGG, M4A."
        )
    return Audio(samples.copy(), _FFMPEG_RATE)


_ENCODE_BLOCK = 1 << 16  # frames per write


def encode(audio: Audio, fmt: str = "wav") -> bytes:
    """Encode to a container: wav (PCM16), flac, ogg (Vorbis) or mp3, all through libsndfile."""
    fmt = fmt.lower()
    if fmt not in _SF_FORMAT:
        raise InputError(f"Unknown audio format '{fmt}'. Choose one of: {', '.join(FORMATS)}.")
    container, subtype = _SF_FORMAT[fmt]
    buf = io.BytesIO()
    if fmt == "mp3" and audio.sample_rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000):
        audio = audio.resample(22050)
    samples = np.clip(audio.samples, -1.0, 1.0)
    # Written in blocks: one large Vorbis write crashes libsndfile (minutes of audio in one call
    # segfaulted; libsndfile issue #1095), and blocks cost nothing for the other formats.
    with sf.SoundFile(buf, "w", samplerate=audio.sample_rate, channels=1, format=container,
                      subtype=subtype) as out:
        for start in range(0, len(samples), _ENCODE_BLOCK):
            out.write(samples[start:start + _ENCODE_BLOCK])
    return buf.getvalue()


def wav_header(sample_rate: int, num_samples: int | None = None, channels: int = 1) -> bytes:
    """A PCM16 WAV header. With ``num_samples=None`` the sizes are set to the maximum, the usual
    way to start a WAV whose length is not known yet (progressive streaming)."""
    bits = 16
    data_bytes = 0xFFFFFFFF - 36 if num_samples is None else num_samples * channels * bits // 8
    riff_size = min(36 + data_bytes, 0xFFFFFFFF)
    byte_rate = sample_rate * channels * bits // 8
    return b"".join([
        b"RIFF", riff_size.to_bytes(4, "little"), b"WAVE",
        b"fmt ", (16).to_bytes(4, "little"), (1).to_bytes(2, "little"),
        channels.to_bytes(2, "little"), sample_rate.to_bytes(4, "little"),
        byte_rate.to_bytes(4, "little"), (channels * bits // 8).to_bytes(2, "little"),
        bits.to_bytes(2, "little"),
        b"data", data_bytes.to_bytes(4, "little"),
    ])
