"""Tags, chapters and loudness inside the lesson files (issue 12), written and read by mutagen.

- MP3 and WAV: ID3v2.4 (WAV as an ``id3 `` chunk). TIT2/TPE1/TALB/TRCK/COMM; chapters as
  the ID3v2 Chapter Frame Addendum describes them: one top-level, ordered ``CTOC`` listing one
  ``CHAP`` per chapter (element ids ``chp0``, ``chp1``..., start and end in milliseconds, the
  title in a ``TIT2`` sub-frame); loudness as ``TXXX`` frames.
- Ogg Vorbis and FLAC: Vorbis comments TITLE/ARTIST/ALBUM/TRACKNUMBER/COMMENT; chapters in the
  Xiph chapter extension (``CHAPTER001=00:01:02.500``, ``CHAPTER001NAME=...``), which carries
  start times only: read back, a chapter ends where the next begins and the last at the end of
  the file. Loudness as plain comments.

Loudness is written as what it is (``LOUDNESS_LUFS``, ``TRUE_PEAK_DBTP``...), not as
ReplayGain: the file is already at its target, and a ReplayGain-aware player would change it.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from webapp.pipeline.errors import AudioError, InputError
from webapp.pipeline.lesson.loudness import LoudnessReport
from webapp.pipeline.subtitles import Chapter

TAG_FORMATS = ("mp3", "wav", "ogg", "flac")
MAX_CHAPTERS = 999
"""The Vorbis chapter extension numbers chapters with three digits."""
TOC_ID = "toc"

# Loudness tag name -> the LoudnessReport field it holds.
LOUDNESS_TAGS = {
    "LOUDNESS_LUFS": "output_lufs",
    "TRUE_PEAK_DBTP": "true_peak_dbtp",
    "LOUDNESS_TARGET_LUFS": "target_lufs",
    "LOUDNESS_GAIN_DB": "gain_db",
}
_CHAPTER_KEY = re.compile(r"^CHAPTER(\d{3})$")


@dataclass(frozen=True)
class Tags:
    title: str = ""
    artist: str = ""
    album: str = ""
    track: int | None = None
    comment: str = ""


def _text(value: str) -> str:
    # ID3 separates the values of a text frame with NUL: one inside a title would split it.
    return str(value or "").replace("\x00", "")


def _check(fmt: str, tags: Tags, chapters: Sequence[Chapter]) -> tuple[str, list[Chapter]]:
    fmt = (fmt or "").lower()
    if fmt not in TAG_FORMATS:
        raise InputError(f"Cannot tag a '{fmt}' file; tags are written to {', '.join(TAG_FORMATS)}.")
    if tags.track is not None and (isinstance(tags.track, bool) or not isinstance(tags.track, int)
                                   or tags.track < 1):
        raise InputError(f"A track number must be a whole number from 1; got {tags.track!r}.")
    if len(chapters) > MAX_CHAPTERS:
        raise InputError(f"A file can hold at most {MAX_CHAPTERS} chapters; this one has "
                         f"{len(chapters)}.")
    out = []
    for chapter in sorted(chapters, key=lambda c: c.start_s):
        start = max(0.0, chapter.start_s)
        out.append(Chapter(start, max(start, chapter.end_s), _text(chapter.title)))
    return fmt, out


def _loudness_values(loudness: LoudnessReport | None) -> dict[str, str]:
    if loudness is None:
        return {}
    return {name: _number(getattr(loudness, field)) for name, field in LOUDNESS_TAGS.items()}


def _number(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else ("-inf" if value < 0 else "inf")


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


# --- ID3 (mp3, wav) ---------------------------------------------------------------------------

def _id3_frames(tags: Tags, chapters: list[Chapter], loudness: dict[str, str]) -> list:
    from mutagen.id3 import CHAP, COMM, CTOC, TALB, TIT2, TPE1, TRCK, TXXX, CTOCFlags

    utf8 = 3  # ID3v2.4 text encoding
    frames: list = []
    for frame, value in ((TIT2, tags.title), (TPE1, tags.artist), (TALB, tags.album)):
        if _text(value):
            frames.append(frame(encoding=utf8, text=[_text(value)]))
    if tags.track is not None:
        frames.append(TRCK(encoding=utf8, text=[str(tags.track)]))
    if _text(tags.comment):
        frames.append(COMM(encoding=utf8, lang="eng", desc="", text=[_text(tags.comment)]))
    ids = [f"chp{i}" for i in range(len(chapters))]
    if chapters:
        frames.append(CTOC(element_id=TOC_ID, flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                           child_element_ids=ids, sub_frames=[]))
    for element_id, chapter in zip(ids, chapters, strict=True):
        frames.append(CHAP(element_id=element_id, start_time=_ms(chapter.start_s),
                           end_time=_ms(chapter.end_s),
                           sub_frames=[TIT2(encoding=utf8, text=[chapter.title])]))
    for name, value in loudness.items():
        frames.append(TXXX(encoding=utf8, desc=name, text=[value]))
    return frames


def _replace_id3(id3, frames: list) -> None:
    """Drop what an earlier ``tag_file`` wrote (ours only), then add the new frames."""
    for frame_id in ("TIT2", "TPE1", "TALB", "TRCK", "CHAP", "CTOC"):
        id3.delall(frame_id)
    for key in [k for k, f in id3.items() if
                (f.FrameID == "COMM" and f.desc == "") or
                (f.FrameID == "TXXX" and f.desc in LOUDNESS_TAGS)]:
        del id3[key]
    for frame in frames:
        id3.add(frame)


@functools.cache
def _id3_class(fmt: str) -> type:
    """mutagen's ID3 class for ``fmt``, writing CHAP frames in time order.

    mutagen orders frames by size; readers that ignore CTOC (FFmpeg's ID3 demuxer takes CHAP
    frames in file order, so mpv, VLC and many podcast apps do) would list the chapters out
    of order. Only the position of the CHAP frames changes; ``save_frame`` is mutagen's own
    frame writer (if a future mutagen moves it, its own order is kept: still valid, CTOC
    still ordered)."""
    from mutagen.id3 import ID3

    base = ID3
    if fmt == "wav":
        from mutagen.wave import _WaveID3 as base  # the ID3 that lives in a RIFF "id3 " chunk

    class ChaptersInOrder(base):
        def _write(self, config):
            try:
                from mutagen.id3._tags import save_frame
            except ImportError:
                return super()._write(config)
            keys = [key for key, frame in self.items() if frame.FrameID == "CHAP"]
            chaps = [self.pop(key) for key in keys]
            try:
                data = super()._write(config)
            finally:
                for chap in chaps:
                    self.add(chap)
            for chap in sorted(chaps, key=lambda c: (c.start_time, c.end_time)):
                data += save_frame(chap, config=config)
            return data

    return ChaptersInOrder


def _load_id3(buf: io.BytesIO, fmt: str):
    """The file's ID3 tag (an empty one if it has none)."""
    from mutagen.id3 import ID3NoHeaderError

    cls = _id3_class(fmt)
    buf.seek(0)
    try:
        return cls(buf)
    except ID3NoHeaderError:
        return cls()


def _tag_id3(buf: io.BytesIO, fmt: str, frames: list) -> None:
    if fmt == "mp3":  # ID3 alone would happily prepend a tag to anything
        from mutagen.mp3 import MP3

        MP3(buf)
    id3 = _load_id3(buf, fmt)
    _replace_id3(id3, frames)
    id3.save(buf, v2_version=4)


def _read_id3(buf: io.BytesIO, fmt: str) -> tuple[Tags, list[Chapter], dict[str, float]]:
    id3 = _load_id3(buf, fmt)

    def first(frame_id: str) -> str:
        frames = id3.getall(frame_id)
        return str(frames[0].text[0]) if frames and frames[0].text else ""

    comments = [f for f in id3.getall("COMM") if f.desc == ""]
    track = first("TRCK").split("/")[0].strip()
    tags = Tags(title=first("TIT2"), artist=first("TPE1"), album=first("TALB"),
                track=int(track) if track.isdigit() else None,
                comment=str(comments[0].text[0]) if comments and comments[0].text else "")
    chaps = {f.element_id: f for f in id3.getall("CHAP")}
    tocs = [f for f in id3.getall("CTOC") if f.flags & 0x02]  # TOP_LEVEL
    order = [i for i in tocs[0].child_element_ids if i in chaps] if tocs else \
        sorted(chaps, key=lambda i: chaps[i].start_time)
    chapters = []
    for element_id in order:
        chap = chaps[element_id]
        titles = [f for f in chap.sub_frames.values() if f.FrameID == "TIT2"]
        chapters.append(Chapter(chap.start_time / 1000, chap.end_time / 1000,
                                str(titles[0].text[0]) if titles and titles[0].text else ""))
    loudness = {}
    for frame in id3.getall("TXXX"):
        if frame.desc in LOUDNESS_TAGS and frame.text:
            loudness[frame.desc] = float(frame.text[0])
    return tags, chapters, loudness


# --- Vorbis comments (ogg, flac) --------------------------------------------------------------

def _vorbis_file(buf: io.BytesIO, fmt: str):
    if fmt == "flac":
        from mutagen.flac import FLAC

        audio = FLAC(buf)
    else:
        from mutagen.oggvorbis import OggVorbis

        audio = OggVorbis(buf)
    if audio.tags is None:
        audio.add_tags()
    return audio


def _clock(seconds: float) -> str:
    total_ms = _ms(max(0.0, seconds))
    hours, rem = divmod(total_ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rem // 1000:02d}.{rem % 1000:03d}"


def _seconds(clock: str) -> float:
    parts = clock.strip().split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(clock)
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def _tag_vorbis(buf: io.BytesIO, fmt: str, tags: Tags, chapters: list[Chapter],
                loudness: dict[str, str]) -> None:
    audio = _vorbis_file(buf, fmt)
    comments = audio.tags
    for key in list(comments.keys()):
        upper = key.upper()
        if (upper in ("TITLE", "ARTIST", "ALBUM", "TRACKNUMBER", "COMMENT")
                or upper in LOUDNESS_TAGS or upper.startswith("CHAPTER")):
            del comments[key]
    for key, value in (("TITLE", tags.title), ("ARTIST", tags.artist), ("ALBUM", tags.album),
                       ("COMMENT", tags.comment)):
        if _text(value):
            comments[key] = [_text(value)]
    if tags.track is not None:
        comments["TRACKNUMBER"] = [str(tags.track)]
    for number, chapter in enumerate(chapters, start=1):
        comments[f"CHAPTER{number:03d}"] = [_clock(chapter.start_s)]
        comments[f"CHAPTER{number:03d}NAME"] = [chapter.title]
    for name, value in loudness.items():
        comments[name] = [value]
    buf.seek(0)  # FLAC's save reads the header from where the file object stands
    audio.save(buf)


def _read_vorbis(buf: io.BytesIO, fmt: str) -> tuple[Tags, list[Chapter], dict[str, float]]:
    audio = _vorbis_file(buf, fmt)
    comments = {key.upper(): values for key, values in audio.tags.as_dict().items()}

    def first(key: str) -> str:
        values = comments.get(key) or [""]
        return str(values[0])

    track = first("TRACKNUMBER").split("/")[0].strip()
    tags = Tags(title=first("TITLE"), artist=first("ARTIST"), album=first("ALBUM"),
                track=int(track) if track.isdigit() else None, comment=first("COMMENT"))
    starts = []
    for key in comments:
        match = _CHAPTER_KEY.match(key)
        if match:
            try:
                starts.append((_seconds(first(key)), first(f"{key}NAME"), int(match.group(1))))
            except ValueError:
                continue  # a malformed time: skip the chapter, keep the rest
    starts.sort(key=lambda item: (item[0], item[2]))
    length = float(audio.info.length)
    chapters = [Chapter(start, starts[i + 1][0] if i + 1 < len(starts) else max(start, length),
                        title) for i, (start, title, _) in enumerate(starts)]
    loudness = {}
    for name in LOUDNESS_TAGS:
        if name in comments:
            try:
                loudness[name] = float(first(name))
            except ValueError:
                continue
    return tags, chapters, loudness


# --- public -----------------------------------------------------------------------------------

def tag_file(data: bytes, fmt: str, tags: Tags, chapters: Sequence[Chapter] = (),
             loudness: LoudnessReport | None = None) -> bytes:
    """``data`` (an encoded ``fmt`` file) with title, artist, album, track, comment, chapters
    and loudness written in; earlier values of these tags are replaced, others kept.

    Works in memory. Chapters are written in time order; times are rounded to milliseconds."""
    fmt, chapters = _check(fmt, tags, chapters)
    values = _loudness_values(loudness)
    buf = io.BytesIO(data)
    from mutagen import MutagenError

    try:
        if fmt in ("mp3", "wav"):
            _tag_id3(buf, fmt, _id3_frames(tags, chapters, values))
        else:
            _tag_vorbis(buf, fmt, tags, chapters, values)
    except MutagenError as exc:
        raise AudioError(f"Cannot write tags into this {fmt} file ({exc}); is it really "
                         f"{fmt}?") from exc
    return buf.getvalue()


def read_tags(data: bytes, fmt: str) -> tuple[Tags, list[Chapter], dict[str, float]]:
    """What ``tag_file`` wrote: (tags, chapters in order, loudness tag name -> value)."""
    fmt = (fmt or "").lower()
    if fmt not in TAG_FORMATS:
        raise InputError(f"Cannot read tags from a '{fmt}' file; tags are read from "
                         f"{', '.join(TAG_FORMATS)}.")
    from mutagen import MutagenError

    buf = io.BytesIO(data)
    try:
        if fmt in ("mp3", "wav"):
            return _read_id3(buf, fmt)
        return _read_vorbis(buf, fmt)
    except MutagenError as exc:
        raise AudioError(f"Cannot read the tags of this {fmt} file ({exc}).") from exc
