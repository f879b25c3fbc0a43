"""Tags, chapters and loudness written into real lesson files (MP3, Ogg Vorbis, WAV, FLAC) and
read back with mutagen, FFmpeg and webvtt-py, whatever the chapter titles hold."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import webvtt
from mutagen.id3 import ID3, TCON, CTOCFlags
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE
from vtt_checks import assert_cue_text_escaped  # tests/vtt_checks.py

from webapp.config import Settings
from webapp.pipeline.audio import Audio, encode, load
from webapp.pipeline.errors import AudioError, InputError
from webapp.pipeline.lesson.loudness import normalize
from webapp.pipeline.lesson.tags import Tags, read_tags, tag_file
from webapp.pipeline.subtitles import Chapter, to_vtt_chapters
from webapp.pipeline.tts.base import SynthesisOptions
from webapp.pipeline.tts.registry import TTSRegistry

VOICE = "en_US-joe-medium"
FORMATS = ["mp3", "ogg", "wav", "flac"]
HARD_TITLES = [
    "Intro: x < 5 & y > 2",
    "A --> B",
    "2 H₂ + O₂ → 2 H₂O",
    "Ünïcødé, 中文, עברית, 🌱",
    "<b>not a tag</b> & <i>",
]
TAGS = Tags(title="Lesson 3: Light & <Plants>", artist="Ms Lee", album="Biology 7 — Année 1",
            track=3, comment="Made for class 7B --> revise before Friday")


@pytest.fixture(scope="module")
def lesson(tmp_path_factory) -> Audio:
    registry = TTSRegistry(Settings(data_dir=tmp_path_factory.mktemp("tags")))
    engine = registry.get("piper")
    engine.load(VOICE)
    text = ("Plants need light. Light gives them energy. They store it as sugar. "
            "Roots take in water. Leaves breathe out oxygen.")
    return Audio.concat(list(engine.synthesize(text, SynthesisOptions(voice=VOICE))))


def chapters_for(audio: Audio) -> list[Chapter]:
    """Contiguous chapters with the hard titles, at times that are not whole milliseconds."""
    edges = np.linspace(0.0, audio.duration_s, len(HARD_TITLES) + 1)
    edges[1:-1] += 0.0006  # off the millisecond grid: rounding and truncating differ
    return [Chapter(float(edges[i]), float(edges[i + 1]), title)
            for i, title in enumerate(HARD_TITLES)]


@pytest.fixture(scope="module")
def files(lesson):
    """Per format: (untagged bytes, tagged bytes, chapters, loudness report)."""
    out = {}
    for fmt in FORMATS:
        audio, report = normalize(lesson, -16.0, fmt=fmt)
        data = encode(audio, fmt)
        chapters = chapters_for(audio)
        out[fmt] = (data, tag_file(data, fmt, TAGS, chapters, report), chapters, report)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_tags_chapters_and_loudness_read_back(files, fmt):
    _, tagged, chapters, report = files[fmt]
    tags, read, loud = read_tags(tagged, fmt)
    assert tags == TAGS
    assert [c.title for c in read] == HARD_TITLES
    for got, want in zip(read, chapters, strict=True):
        assert abs(got.start_s - want.start_s) <= 0.001
        assert abs(got.end_s - want.end_s) <= 0.001  # Vorbis: the next start, or the file's end
    assert loud["LOUDNESS_LUFS"] == pytest.approx(report.output_lufs, abs=0.01)
    assert loud["TRUE_PEAK_DBTP"] == pytest.approx(report.true_peak_dbtp, abs=0.01)
    assert loud["LOUDNESS_TARGET_LUFS"] == -16.0
    assert loud["LOUDNESS_GAIN_DB"] == pytest.approx(report.gain_db, abs=0.01)


@pytest.mark.parametrize("fmt", FORMATS)
def test_tagging_leaves_the_audio_as_it_was(files, fmt):
    data, tagged, _, _ = files[fmt]
    before, after = load(data), load(tagged)
    assert after.sample_rate == before.sample_rate
    assert np.array_equal(after.samples, before.samples)


def test_mp3_has_id3v24_with_an_ordered_top_level_toc_and_chap_frames(files):
    _, tagged, chapters, _ = files["mp3"]
    id3 = ID3(io.BytesIO(tagged))
    assert id3.version == (2, 4, 0)
    assert str(id3["TIT2"]) == TAGS.title and str(id3["TRCK"]) == "3"
    assert id3.getall("COMM")[0].text == [TAGS.comment]
    (toc,) = id3.getall("CTOC")
    assert toc.flags == CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED
    assert toc.child_element_ids == [f"chp{i}" for i in range(len(chapters))]
    for i, chapter in enumerate(chapters):
        chap = id3[f"CHAP:chp{i}"]
        assert (chap.start_time, chap.end_time) == (round(chapter.start_s * 1000),
                                                    round(chapter.end_s * 1000))
        assert chap.sub_frames["TIT2"].text == [chapter.title]
    assert {f.desc for f in id3.getall("TXXX")} == {
        "LOUDNESS_LUFS", "TRUE_PEAK_DBTP", "LOUDNESS_TARGET_LUFS", "LOUDNESS_GAIN_DB"}
    assert b"REPLAYGAIN" not in tagged.upper()


def _chap_order(data: bytes) -> list[str]:
    """Element ids of the CHAP frames in the order they sit in the file."""
    return [m.group(1).decode() for m in re.finditer(rb"CHAP.{6}(chp\d+)\x00", data, re.DOTALL)]


@pytest.mark.parametrize("fmt", ["mp3", "wav"])
def test_chap_frames_sit_in_time_order(files, fmt):
    """Readers that ignore CTOC (FFmpeg, so mpv and VLC) list CHAP frames as they come; mutagen
    on its own sorts them by size, which put "Summary" first."""
    _, tagged, chapters, _ = files[fmt]
    assert _chap_order(tagged) == [f"chp{i}" for i in range(len(chapters))]


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
@pytest.mark.parametrize("fmt", ["mp3", "ogg", "wav"])
def test_ffmpeg_reads_the_chapters_in_order(files, fmt, tmp_path):
    _, tagged, chapters, _ = files[fmt]
    path = tmp_path / f"lesson.{fmt}"
    path.write_bytes(tagged)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-show_format",
                            "-show_streams", "-of", "json", str(path)],
                           capture_output=True, check=True, timeout=60)
    info = json.loads(probe.stdout)
    assert [c["tags"]["title"] for c in info["chapters"]] == HARD_TITLES
    assert [float(c["start_time"]) for c in info["chapters"]] == pytest.approx(
        [c.start_s for c in chapters], abs=0.001)
    # Vorbis comments belong to the stream, ID3 to the file.
    tags = {k.lower(): v for k, v in (info["format"].get("tags")
                                      or info["streams"][0].get("tags", {})).items()}
    assert (tags["title"], tags["artist"], tags["album"]) == (TAGS.title, TAGS.artist, TAGS.album)


def test_wav_carries_the_same_frames_in_an_id3_chunk(files):
    _, tagged, chapters, _ = files["wav"]
    wave = WAVE(io.BytesIO(tagged))
    assert wave.tags.version == (2, 4, 0)
    assert str(wave.tags["TALB"]) == TAGS.album
    assert len(wave.tags.getall("CHAP")) == len(chapters)
    assert wave.tags.getall("CTOC")[0].child_element_ids == [f"chp{i}" for i in range(len(chapters))]


def test_ogg_uses_the_vorbis_chapter_extension(files):
    _, tagged, chapters, _ = files["ogg"]
    comments = OggVorbis(io.BytesIO(tagged)).tags
    assert comments["TITLE"] == [TAGS.title] and comments["TRACKNUMBER"] == ["3"]
    assert comments["CHAPTER001"] == ["00:00:00.000"]
    assert comments["CHAPTER001NAME"] == [HARD_TITLES[0]]
    start_ms = round(chapters[1].start_s * 1000)
    assert comments["CHAPTER002"] == [f"00:00:{start_ms // 1000:02d}.{start_ms % 1000:03d}"]
    assert comments["CHAPTER005NAME"] == [HARD_TITLES[4]]
    assert "CHAPTER006" not in comments
    assert not [k for k in comments.keys() if k.upper().startswith("REPLAYGAIN")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_tags_and_no_chapters_still_make_a_valid_file(files, fmt):
    data, _, _, _ = files[fmt]
    bare = tag_file(data, fmt, Tags())
    assert read_tags(bare, fmt) == (Tags(), [], {})
    assert np.array_equal(load(bare).samples, load(data).samples)
    assert read_tags(data, fmt) == (Tags(), [], {})  # a file never tagged reads as empty


@pytest.mark.parametrize("fmt", FORMATS)
def test_tagging_again_replaces_ours_and_keeps_the_rest(files, fmt):
    _, tagged, _, _ = files[fmt]
    if fmt in ("mp3", "wav"):  # someone else's frame, e.g. a genre set in a tag editor
        buf = io.BytesIO(tagged)
        holder = WAVE(buf) if fmt == "wav" else None
        id3 = holder.tags if holder else ID3(buf)
        id3.add(TCON(encoding=3, text=["Education"]))
        (holder or id3).save(buf, v2_version=4)
        tagged = buf.getvalue()
    again = tag_file(tagged, fmt, Tags(title="Lesson 3, revised"), [Chapter(0.0, 1.5, "Only")])
    tags, chapters, loud = read_tags(again, fmt)
    assert tags == Tags(title="Lesson 3, revised")
    assert [c.title for c in chapters] == ["Only"] and chapters[0].start_s == 0.0
    assert loud == {}
    if fmt in ("mp3", "wav"):
        id3 = WAVE(io.BytesIO(again)).tags if fmt == "wav" else ID3(io.BytesIO(again))
        assert str(id3["TCON"]) == "Education"
        assert len(id3.getall("CHAP")) == 1


def test_chapters_given_out_of_order_are_written_in_time_order(files):
    data = files["mp3"][0]
    shuffled = [Chapter(2.0, 4.0, "Second"), Chapter(0.0, 2.0, "First")]
    _, chapters, _ = read_tags(tag_file(data, "mp3", Tags(), shuffled), "mp3")
    assert [c.title for c in chapters] == ["First", "Second"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_that_are_not_that_format_are_refused(fmt):
    with pytest.raises(AudioError, match=fmt):
        tag_file(b"this is not audio at all" * 20, fmt, TAGS)


def test_unknown_format_and_bad_track_are_refused(files):
    data = files["mp3"][0]
    with pytest.raises(InputError, match="aac"):
        tag_file(data, "aac", TAGS)
    with pytest.raises(InputError, match="track"):
        tag_file(data, "mp3", Tags(track=0))


def test_vtt_chapters_parse_back_with_every_title(lesson):
    chapters = chapters_for(lesson) + [Chapter(lesson.duration_s, lesson.duration_s + 1, " ")]
    content = to_vtt_chapters(chapters)
    parsed = webvtt.from_string(content)
    assert [html.unescape(c.raw_text) for c in parsed.captions] == HARD_TITLES + ["Chapter 6"]
    assert parsed.captions[0].start == "00:00:00.000"
    for caption, chapter in zip(parsed.captions[:-1], chapters, strict=False):
        hours, minutes, seconds = caption.start.split(":")
        assert abs(int(hours) * 3600 + int(minutes) * 60 + float(seconds) - chapter.start_s) <= 0.001
    assert_cue_text_escaped(content)
