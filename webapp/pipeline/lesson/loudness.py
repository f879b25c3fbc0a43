"""Even loudness for lesson audio (issue 12): measure, normalise to a target, limit true peaks.

Loudness is ITU-R BS.1770-4 integrated loudness (the EBU R128 measure) from ``pyloudnorm``;
true peak is the BS.1770-4 Annex 2 estimate: 4x oversampling, then the largest absolute value.
A lesson is brought to the target with one static gain; when that gain would push the true
peak over the ceiling, a look-ahead limiter pulls the peaks down smoothly and the gain is
raised again until the limited result meets the target (a few passes).

Targets: -16 LUFS is the usual level for spoken-word podcasts and online listening (AES TD1008
recommends -16 to -20 LUFS, peaks at most -1 dBTP); -23 LUFS is EBU R128 broadcast. The
-1.5 dBTP ceiling holds for the decoded MP3 or Ogg file too (``normalize(..., fmt=...)``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from webapp.pipeline.audio import Audio
from webapp.pipeline.errors import InputError

logger = logging.getLogger(__name__)

TARGETS: dict[float, str] = {
    -16.0: "−16 LUFS (online, podcasts)",
    -23.0: "−23 LUFS (EBU R128 broadcast)",
}
DEFAULT_TARGET = -16.0
CEILING_DBTP = -1.5
TARGET_RANGE_LUFS = (-40.0, -5.0)
CEILING_RANGE_DBTP = (-20.0, 0.0)

BLOCK_S = 0.4
"""BS.1770 gating block. A clip shorter than this is measured as one block of its own length."""
OVERSAMPLING = 4
"""BS.1770-4 Annex 2: 4x for 48 kHz material; lower rates get at least as much."""
TRUE_PEAK_GUARD_DB = 0.15
"""Kept under the ceiling as measured at 4x, so a meter with a finer grid still agrees: on
decoded MP3 of limited Piper speech, 8x oversampling read up to 0.09 dB more than 4x (8
renderings, with the 80 dB/s release below; 0.02 dB was not enough in 1 of 8). The limiter
itself aims LIMITER_MARGIN_DB lower still."""
# The limiter. Look-ahead = attack: the gain starts to fall this long before a peak and is
# back to the level the peak needs when it arrives (a straight ramp, no overshoot).
LOOKAHEAD_S = 0.005
RELEASE_DB_PER_S = 80.0
"""Recovery after a peak: 4 dB in 50 ms, slower than the attack so speech is not pumped.
Chosen by measurement: the bundled Joe voice has a peak-to-loudness ratio near 20 dB, so -16
LUFS under -1.5 dBTP needs 5-11 dB off its loudest peaks; at 40 dB/s the slow recovery held
whole syllables down and short lessons could not get louder than -16.4 LUFS at any gain, at
80 dB/s eight renderings of a short lesson all came within 0.1 LU (WAV and MP3)."""
LIMITER_MARGIN_DB = 0.2
"""The limiter aims this far below the ceiling; the final check then trims what remains."""
MAX_PASSES = 6
LOUDNESS_TOLERANCE_LU = 0.1
"""Aim well inside the +-0.5 LU promise so an encoder's small change cannot break it."""
_CHUNK = 1 << 18  # samples per oversampling chunk: bounds memory on long lessons


@dataclass(frozen=True)
class Measurement:
    """What a loudness meter shows for one clip.

    ``integrated_lufs`` is ``-inf`` for digital silence and for anything the BS.1770 absolute
    gate (-70 LUFS) removes entirely; ``true_peak_dbtp`` is ``-inf`` for digital silence.
    ``gated`` is False for a clip shorter than one 400 ms block: its loudness is then the
    mean-square loudness of the clip itself (no gating is possible on less than one block).
    """

    integrated_lufs: float
    true_peak_dbtp: float
    duration_s: float
    gated: bool = True

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.integrated_lufs)


@dataclass(frozen=True)
class LoudnessReport:
    """The outcome of ``normalize``. ``gain_db`` is the static gain applied before the limiter;
    ``reduction_db`` is the most the limiter took off any peak (0 when ``limited`` is False)."""

    input_lufs: float
    output_lufs: float
    true_peak_dbtp: float
    gain_db: float
    limited: bool
    target_lufs: float
    reduction_db: float = 0.0
    gated: bool = True

    def summary(self) -> str:
        """One line for the page, e.g. "−16.0 LUFS, true peak −2.3 dBTP" (the gain applied and
        the limiter's work stay in the metadata: a teacher checks the level, not the means)."""
        if not math.isfinite(self.output_lufs):
            return "Silent (no speech above −70 LUFS): no gain applied."
        line = (f"{_number(self.output_lufs)} LUFS, true peak "
                f"{_number(self.true_peak_dbtp)} dBTP")
        if self.limited:
            line += f", loudest peaks softened by up to {_number(self.reduction_db)} dB"
        if not self.gated:
            line += " (clip under 0.4 s, measured as one block)"
        return line


def _number(value: float) -> str:
    return f"{value:.1f}".replace("-", "−")


def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", "−")


def _db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _to_db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0 else -math.inf


# --- measuring --------------------------------------------------------------------------------

def _oversampled_peaks(samples: np.ndarray) -> np.ndarray:
    """Per sample n, the largest |value| from sample n to sample n+1: the sample itself and
    the 4x oversampled points after it (BS.1770-4 Annex 2). The interpolation filter is
    ``resample_poly``'s own (Kaiser-windowed sinc, 81 taps), not the Annex's 48-tap example:
    on Piper speech at 22 kHz that one read up to 0.07 dB under 16x oversampling, this one
    0.01 dB. In overlapping chunks, so a long lesson never needs the whole 4x signal in
    memory."""
    from scipy.signal import resample_poly

    n = len(samples)
    out = np.empty(n, dtype=np.float32)
    margin = 16  # > the filter's reach: 10 input samples each side
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        lo, hi = max(0, start - margin), min(n, stop + margin)
        up = resample_poly(samples[lo:hi].astype(np.float32), OVERSAMPLING, 1)
        up = np.abs(up[(start - lo) * OVERSAMPLING:(stop - lo) * OVERSAMPLING])
        out[start:stop] = up.reshape(-1, OVERSAMPLING).max(axis=1)
    return np.maximum(out, np.abs(samples), out=out)


def true_peak_dbtp(samples: np.ndarray) -> float:
    """True peak in dBTP, 4x oversampled as BS.1770-4 Annex 2 describes (``-inf`` for
    silence or no samples)."""
    if not len(samples):
        return -math.inf
    return _to_db(float(_oversampled_peaks(samples).max()))


def integrated_lufs(samples: np.ndarray, sample_rate: int) -> tuple[float, bool]:
    """Integrated loudness in LUFS and whether it was gated (False: clip shorter than a block).

    A short clip is padded with silence to one block for ``pyloudnorm`` and the result is
    corrected by the padding's share of the block, which is the same as the mean-square
    loudness over the clip's own length (padding alone would read 10*log10(0.4 s / length) low).
    """
    import pyloudnorm

    n = len(samples)
    if n == 0 or not np.any(samples):
        return -math.inf, n > BLOCK_S * sample_rate
    data = samples.astype(np.float64)
    meter = pyloudnorm.Meter(sample_rate, block_size=BLOCK_S)
    block = BLOCK_S * sample_rate
    gated = n > block
    if not gated:
        data = np.concatenate([data, np.zeros(int(math.ceil(block)) + 1 - n)])
    with np.errstate(divide="ignore", invalid="ignore"):
        lufs = float(meter.integrated_loudness(data))
    if not math.isfinite(lufs):
        return -math.inf, gated  # everything below the -70 LUFS absolute gate
    if not gated:
        lufs += 10.0 * math.log10(block / n)
    return lufs, gated


def measure(audio: Audio) -> Measurement:
    lufs, gated = integrated_lufs(audio.samples, audio.sample_rate)
    return Measurement(lufs, true_peak_dbtp(audio.samples), audio.duration_s, gated)


# --- normalising ------------------------------------------------------------------------------

def _limiter_gain(peaks: np.ndarray, sample_rate: int, ceiling: float | np.ndarray) -> np.ndarray:
    """A smooth gain curve (<= 1) that keeps a signal whose per-sample true peaks are ``peaks``
    at or below ``ceiling`` (linear; one value, or one per sample).

    1. ``need``: the gain each sample needs, from the peaks on both sides of it.
    2. ``hold``: the minimum of ``need`` over +-W samples (W = look-ahead).
    3. release: the gain may rise again at most RELEASE_DB_PER_S (a running minimum in dB).
    4. a moving average over the same +-W samples. Every value it averages is a minimum over a
       window that contains sample n, so the average is never above ``need[n]``: the peak is
       always caught, and the gain falls and rises as ramps, not steps.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    both = peaks.astype(np.float64)
    both[1:] = np.maximum(both[1:], peaks[:-1])  # the interval before sample n, too
    need = np.minimum(1.0, np.broadcast_to(ceiling, both.shape) / np.maximum(both, 1e-12))
    del both
    width = 2 * max(1, int(round(LOOKAHEAD_S * sample_rate))) + 1
    hold_db = 20.0 * np.log10(minimum_filter1d(need, size=width, mode="nearest"))
    slope = np.arange(len(need), dtype=np.float64)
    slope *= RELEASE_DB_PER_S / sample_rate
    hold_db -= slope
    released_db = np.minimum.accumulate(hold_db)
    released_db += slope
    np.minimum(released_db, 0.0, out=released_db)
    gain = uniform_filter1d(10.0 ** (released_db / 20.0), size=width, mode="nearest")
    return np.minimum(gain, need, out=gain)  # the running mean's rounding must not give back a peak


def _check_levels(target_lufs: float, ceiling_dbtp: float) -> None:
    low, high = TARGET_RANGE_LUFS
    if not (isinstance(target_lufs, (int, float)) and math.isfinite(target_lufs)
            and low <= target_lufs <= high):
        raise InputError(f"A loudness target of {target_lufs} LUFS is outside the usable range "
                         f"{low:.0f} to {high:.0f} LUFS; choose e.g. −16 (online) or −23 "
                         "(broadcast).")
    low, high = CEILING_RANGE_DBTP
    if not (isinstance(ceiling_dbtp, (int, float)) and math.isfinite(ceiling_dbtp)
            and low <= ceiling_dbtp <= high):
        raise InputError(f"A true-peak ceiling of {ceiling_dbtp} dBTP is outside {low:.0f} to "
                         f"{high:.0f} dBTP; −1.5 dBTP is the usual choice.")


def check_target(target_lufs: float) -> None:
    """Raise ``InputError`` for a loudness target outside -40 ... -5 LUFS."""
    _check_levels(target_lufs, CEILING_DBTP)


def voice_gain(audio: Audio, target_lufs: float) -> float:
    """The static gain in dB that brings ``audio`` (e.g. a voice's first sentence) to the target;
    0.0 for silence. Meant for live chunks before the finished file is normalised."""
    check_target(target_lufs)
    lufs, _ = integrated_lufs(audio.samples, audio.sample_rate)
    return target_lufs - lufs if math.isfinite(lufs) else 0.0


def apply_gain(audio: Audio, gain_db: float, ceiling_dbtp: float = CEILING_DBTP) -> Audio:
    """Scale a live chunk by ``gain_db``, with the limiter on the chunk where a peak would pass
    the ceiling (a voice with loud peaks, e.g. the bundled one, needs several dB of limiting at
    -16 LUFS: without it the live stream clips). The finished file is normalised exactly
    afterwards (``normalize``)."""
    if gain_db == 0.0:
        return audio
    x = audio.samples * np.float32(_db_to_gain(gain_db))
    peaks = _oversampled_peaks(x)
    aim = _db_to_gain(ceiling_dbtp - LIMITER_MARGIN_DB)
    if len(x) and float(peaks.max()) > aim:
        x = (x * _limiter_gain(peaks, audio.sample_rate, aim)).astype(np.float32)
    return Audio(x, audio.sample_rate)


@dataclass(frozen=True)
class _Pass:
    samples: np.ndarray
    lufs: float
    peak_dbtp: float
    gain_db: float
    limited: bool
    reduction_db: float


def _gain_and_limit(x: np.ndarray, rate: int, peaks: np.ndarray, target_lufs: float,
                    ceiling_dbtp: float, gain_db: float,
                    headroom_db: np.ndarray | None = None) -> _Pass:
    """``x`` times ``gain_db``; if that breaks the ceiling, limited, and the gain raised until the
    limited result is within LOUDNESS_TOLERANCE_LU of the target (at most MAX_PASSES).

    ``peaks`` are ``_oversampled_peaks(x)``: a gain scales them, so they are computed once.
    ``headroom_db`` (per sample, >= 0) lowers the ceiling locally: where an encoder was found
    to push peaks up."""
    ceiling = _db_to_gain(ceiling_dbtp)
    if headroom_db is not None:
        ceiling = ceiling / 10.0 ** (headroom_db / 20.0)
    if np.all(peaks * _db_to_gain(gain_db) <= ceiling):
        out = (x * _db_to_gain(gain_db)).astype(np.float32)
        peak_db = _to_db(float(peaks.max())) + gain_db  # a gain scales the true peak exactly
        return _Pass(out, integrated_lufs(out, rate)[0], peak_db, gain_db, False, 0.0)

    # Limit, measure, raise the gain by what the limiter cost, repeat. The loudness rises
    # monotonically but less than 1:1 with the gain, so after the first step the correction is
    # a secant through the last two passes. The curve keeps the peaks LIMITER_MARGIN_DB under
    # the ceiling; the true peak of the result is checked once at the end.
    aim = ceiling * _db_to_gain(-LIMITER_MARGIN_DB)
    tried: list[tuple[float, float]] = []
    best: tuple[float, float, np.ndarray, float] | None = None  # (lufs, gain, curve, reduction)
    for _ in range(MAX_PASSES):
        scale = _db_to_gain(gain_db)
        curve = _limiter_gain(peaks * np.float32(scale), rate, aim)
        out = (x * scale * curve).astype(np.float32)
        lufs = integrated_lufs(out, rate)[0]
        if best is None or abs(target_lufs - lufs) < abs(target_lufs - best[0]):
            best = (lufs, gain_db, curve, -_to_db(float(curve.min())))
        error = target_lufs - lufs
        if abs(error) <= LOUDNESS_TOLERANCE_LU:
            break
        tried.append((gain_db, lufs))
        if len(tried) >= 2 and tried[-1][0] != tried[-2][0]:
            (g0, l0), (g1, l1) = tried[-2], tried[-1]
            gain_db += error / max((l1 - l0) / (g1 - g0), 0.2)
        else:
            gain_db += error
    assert best is not None
    lufs, gain_db, curve, reduction = best
    out = (x * _db_to_gain(gain_db) * curve).astype(np.float32)
    out_peaks = _oversampled_peaks(out)
    over_db = float(np.max(20.0 * np.log10(np.maximum(out_peaks, 1e-12) / ceiling)))
    if over_db > 0:  # what the smooth curve's approximation let through: trim it
        out *= np.float32(_db_to_gain(-over_db - 0.01))
        out_peaks = _oversampled_peaks(out)
        lufs = integrated_lufs(out, rate)[0]
    return _Pass(out, lufs, _to_db(float(out_peaks.max())), gain_db, True, reduction)


LOSSY = ("mp3", "ogg")
CODEC_PASSES = 4
CODEC_WINDOW_S = 0.1
"""Where a decoded peak is over the ceiling, the limiter's ceiling is lowered around it by this
much time (longer than an MP3 granule or a long Vorbis block at 22 kHz)."""


def normalize(audio: Audio, target_lufs: float = DEFAULT_TARGET,
              ceiling_dbtp: float = CEILING_DBTP, *,
              fmt: str | None = None) -> tuple[Audio, LoudnessReport]:
    """Bring ``audio`` to ``target_lufs`` (within 0.1 LU) with its true peak at or below
    ``ceiling_dbtp``. Silence (or anything under the -70 LUFS gate) is returned unchanged.

    With ``fmt`` "mp3" or "ogg" the promise is kept for the *encoded file*. A lossy encoder
    moves peaks, most in sibilants near the top of the band (measured: Piper speech limited to
    -1.7 dBTP decoded at -0.7 to -1.3 dBTP from MP3 and -0.5 dBTP from Vorbis; a LibriVox
    reader -1.5 and -1.2), and lowering the ceiling everywhere costs far more loudness than it
    wins. So the result is encoded, decoded and measured, and
    the limiter's ceiling is lowered only around the peaks that came out too high, by what they
    overshot, until the decoded file is under the ceiling. The report then describes the decoded
    file, and ``encode(result, fmt)`` decodes to those same samples.
    """
    out, report, _ = _normalize(audio, target_lufs, ceiling_dbtp, fmt)
    return out, report


def normalize_and_encode(audio: Audio, fmt: str, target_lufs: float = DEFAULT_TARGET,
                         ceiling_dbtp: float = CEILING_DBTP) -> tuple[Audio, bytes, LoudnessReport]:
    """``normalize(audio, ..., fmt=fmt)`` and the encoded file: for MP3 and Ogg the very file
    that was decoded and measured (no second encode: on 5 minutes of 22 kHz speech an MP3
    encode takes about 3 s)."""
    from webapp.pipeline.audio import encode

    out, report, data = _normalize(audio, target_lufs, ceiling_dbtp, fmt)
    return out, data if data is not None else encode(out, fmt), report


def _normalize(audio: Audio, target_lufs: float, ceiling_dbtp: float,
               fmt: str | None) -> tuple[Audio, LoudnessReport, bytes | None]:
    """``normalize``, plus the encoded file it checked (None when it checked none)."""
    _check_levels(target_lufs, ceiling_dbtp)
    target_lufs, ceiling_dbtp = float(target_lufs), float(ceiling_dbtp)
    rate = audio.sample_rate
    input_lufs, gated = integrated_lufs(audio.samples, rate)
    if not math.isfinite(input_lufs):
        report = LoudnessReport(input_lufs, input_lufs, true_peak_dbtp(audio.samples), 0.0,
                                False, target_lufs, 0.0, gated)
        return audio, report, None

    x = audio.samples
    limit_dbtp = ceiling_dbtp - TRUE_PEAK_GUARD_DB
    peaks = _oversampled_peaks(x)
    fmt = (fmt or "wav").lower()
    lossy = fmt in LOSSY
    headroom = np.zeros(len(x), dtype=np.float32) if lossy else None
    data = None
    gain_db = target_lufs - input_lufs
    for attempt in range(CODEC_PASSES if lossy else 1):
        done = _gain_and_limit(x, rate, peaks, target_lufs, limit_dbtp, gain_db, headroom)
        out = Audio(done.samples, rate)
        lufs, peak_db = done.lufs, done.peak_dbtp
        if not lossy:
            break
        data, lufs, peak_db, needed_db = _decoded_overshoot(out, fmt, limit_dbtp)
        if peak_db <= limit_dbtp:
            break
        logger.debug("%s: decoded peaks up to %.2f dB over %.1f dBTP (pass %d)", fmt,
                     peak_db - limit_dbtp, limit_dbtp, attempt + 1)
        np.maximum(headroom, needed_db, out=headroom)
        gain_db = done.gain_db  # start the next pass where this one ended
    else:
        # Still over after every pass: static trims, which cost a little loudness.
        for _ in range(CODEC_PASSES):
            if peak_db <= limit_dbtp:
                break
            out = Audio(out.samples * np.float32(_db_to_gain(limit_dbtp - peak_db - 0.05)),
                        rate)
            data, lufs, peak_db, _ = _decoded_overshoot(out, fmt, limit_dbtp)
    if abs(target_lufs - lufs) > 0.5 or peak_db > ceiling_dbtp:
        logger.warning("normalised to %.2f LUFS, %.2f dBTP; asked for %.1f LUFS under %.1f dBTP",
                       lufs, peak_db, target_lufs, ceiling_dbtp)
    return out, LoudnessReport(input_lufs, lufs, peak_db, done.gain_db, done.limited,
                               target_lufs, done.reduction_db, gated), data


def _decoded_overshoot(audio: Audio, fmt: str,
                       ceiling_dbtp: float) -> tuple[bytes, float, float, np.ndarray]:
    """Encode, decode and measure: (the file, LUFS, dBTP, per-sample headroom in dB the limiter
    needs).

    Where the decoded file is over the ceiling, the headroom is what the encoder added there
    (the decoded peak over the PCM peak, both the largest within CODEC_WINDOW_S) plus the
    margin: the PCM must stay that far under the ceiling for the decoded file to be under it.
    Measured against the PCM, not the ceiling, because an encoder also adds peaks where the
    PCM was well under the ceiling and the limiter did nothing (pre-echo before a consonant)."""
    from scipy.ndimage import maximum_filter1d

    from webapp.pipeline.audio import encode, load

    data = encode(audio, fmt)
    decoded = load(data)
    peaks = _oversampled_peaks(decoded.samples)
    lufs = integrated_lufs(decoded.samples, decoded.sample_rate)[0]
    peak_db = _to_db(float(peaks.max())) if len(peaks) else -math.inf
    if decoded.sample_rate != audio.sample_rate or len(peaks) != len(audio.samples):
        # MP3 at an odd rate is resampled by encode(): map back by time.
        index = np.arange(len(audio.samples), dtype=np.int64) * decoded.sample_rate // audio.sample_rate
        peaks = peaks[np.minimum(index, len(peaks) - 1)]
    width = 2 * int(CODEC_WINDOW_S * audio.sample_rate / 2) + 1
    decoded_db = 20.0 * np.log10(np.maximum(maximum_filter1d(peaks, size=width), 1e-9))
    pcm_db = 20.0 * np.log10(np.maximum(
        maximum_filter1d(_oversampled_peaks(audio.samples), size=width), 1e-9))
    added_db = np.maximum(decoded_db - pcm_db, 0.0) + LIMITER_MARGIN_DB
    headroom = np.where(decoded_db > ceiling_dbtp, added_db, 0.0).astype(np.float32)
    return data, lufs, peak_db, maximum_filter1d(headroom, size=width, mode="nearest")
