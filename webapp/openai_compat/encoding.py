"""The six response formats of ``POST /v1/audio/speech``, written as the audio is produced.

One encoder per response: it gets the synthesis chunks in order and returns the bytes ready to
send, so a streamed answer is one stream with one container header (a WAV header whose sizes
say "unknown length", one Ogg/MP3/ADTS stream), never a file per chunk. A cache hit goes
through the same encoder in one piece, so hits and misses are the same kind of file.

- ``pcm``: what OpenAI's clients expect: 24 kHz, 16-bit signed little-endian, mono, no header
  (resampled with soxr's streaming resampler, so chunk boundaries leave no clicks).
- ``wav``: PCM16 at the voice's own rate; streamed with the sizes set to the maximum (the usual
  header of a WAV of unknown length; libsndfile, ffmpeg and browsers read to the end).
- ``mp3``, ``opus`` (Ogg), ``aac`` (ADTS): PyAV (FFmpeg's encoders, already installed with
  faster-whisper), muxed into a write-only sink. Ogg pages are flushed every 20 ms of audio
  instead of every second, so each sentence leaves as soon as it is encoded.
- ``flac``: sent whole. A FLAC header holds the stream's length, and a streamed FLAC without it
  is valid but unreadable by libsndfile (``soundfile``), the library Python clients use most.
"""

from __future__ import annotations

import functools
import io

import numpy as np

from webapp.pipeline.audio import Audio, encode, wav_header

SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CONTENT_TYPES = {
    "mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "aac": "audio/aac",
    "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm",
}
PCM_RATE_HZ = 24_000
PROGRESSIVE = frozenset({"mp3", "opus", "aac", "wav", "pcm"})

# response format -> (muxer, encoder, fixed output rate or None, bit rate)
_AV_FORMATS = {
    "mp3": ("mp3", "libmp3lame", None, 64_000),
    "opus": ("ogg", "libopus", 48_000, 32_000),
    "aac": ("adts", "aac", None, 64_000),
}


def _int16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class Encoder:
    """``feed`` chunks in order, then ``finish``; each returns the bytes to send next."""

    def feed(self, audio: Audio) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError


class _Pcm(Encoder):
    def __init__(self, rate_hz: int) -> None:
        self._stream = None
        if rate_hz != PCM_RATE_HZ:
            import soxr

            self._stream = soxr.ResampleStream(rate_hz, PCM_RATE_HZ, 1, dtype="float32",
                                               quality="HQ")

    def feed(self, audio: Audio) -> bytes:
        samples = audio.samples
        if self._stream is not None:
            samples = self._stream.resample_chunk(samples)
        return _int16(samples)

    def finish(self) -> bytes:
        if self._stream is None:
            return b""
        return _int16(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))


class _Wav(Encoder):
    def __init__(self, rate_hz: int, total_samples: int | None) -> None:
        self._header = wav_header(rate_hz, total_samples)

    def _take_header(self) -> bytes:
        header, self._header = self._header, b""
        return header

    def feed(self, audio: Audio) -> bytes:
        return self._take_header() + _int16(audio.samples)

    def finish(self) -> bytes:
        return self._take_header()


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file for PyAV: the muxer writes, we take what it wrote."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class _Av(Encoder):
    def __init__(self, fmt: str, rate_hz: int) -> None:
        import av

        muxer, codec, _, bit_rate = _AV_FORMATS[fmt]
        self._rate_hz = rate_hz
        self._sink = _Sink()
        options = {"page_duration": "20000"} if muxer == "ogg" else {}
        self._container = av.open(self._sink, mode="w", format=muxer, options=options)
        self._stream = self._container.add_stream(codec, rate=sample_rate_of(fmt, rate_hz))
        self._stream.layout = "mono"
        self._stream.bit_rate = bit_rate
        self._closed = False

    def _mux(self, frame) -> bytes:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def feed(self, audio: Audio) -> bytes:
        import av

        if not len(audio.samples):
            return b""
        samples = np.ascontiguousarray(np.clip(audio.samples, -1.0, 1.0), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self._rate_hz
        return self._mux(frame)

    def finish(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        data = self._mux(None)
        self._container.close()
        return data + self._sink.take()


class _Whole(Encoder):
    """Formats sent in one piece (FLAC): the file is written when the audio is complete."""

    def __init__(self, fmt: str) -> None:
        self._fmt = fmt
        self._parts: list[Audio] = []

    def feed(self, audio: Audio) -> bytes:
        self._parts.append(audio)
        return b""

    def finish(self) -> bytes:
        parts, self._parts = self._parts, []
        return encode(Audio.concat(parts), self._fmt) if parts else b""


def encoder_for(fmt: str, rate_hz: int, total_samples: int | None = None) -> Encoder:
    """A fresh encoder for one response; ``total_samples`` when the length is known (a WAV
    header with the real sizes)."""
    if fmt == "pcm":
        return _Pcm(rate_hz)
    if fmt == "wav":
        return _Wav(rate_hz, total_samples)
    if fmt in _AV_FORMATS:
        return _Av(fmt, rate_hz)
    return _Whole(fmt)


def encode_whole(audio: Audio, fmt: str) -> bytes:
    """The whole file at once (a cache hit), through the same encoder as a stream."""
    encoder = encoder_for(fmt, audio.sample_rate, len(audio.samples))
    return encoder.feed(audio) + encoder.finish()


def sample_rate_of(fmt: str, rate_hz: int) -> int:
    """The sample rate of the audio sent in ``fmt`` for a voice of ``rate_hz``: the voice's
    own, except for pcm (24 kHz, OpenAI's), Opus (48 kHz) and a rate the MP3/AAC encoder
    does not take (the next one up it does; FFmpeg resamples)."""
    if fmt == "pcm":
        return PCM_RATE_HZ
    if fmt not in _AV_FORMATS:
        return rate_hz
    _, codec, fixed_rate, _ = _AV_FORMATS[fmt]
    if fixed_rate:
        return fixed_rate
    return _encoder_rate(codec, rate_hz)


@functools.cache
def _encoder_rate(codec: str, rate_hz: int) -> int:
    import av

    rates = sorted(av.Codec(codec, "w").audio_rates or ())
    if not rates or rate_hz in rates:
        return rate_hz
    return next((r for r in rates if r >= rate_hz), rates[-1])
