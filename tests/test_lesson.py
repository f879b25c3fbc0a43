"""Lesson production on real engines (issue 12): chapters from headings, several voices in one
lesson, even loudness through the synthesizer, a whole course as a zip and from the CLI."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from webapp.config import Settings
from webapp.pipeline.audio import Audio, load
from webapp.pipeline.cache import DiskSynthesisCache, NullCache
from webapp.pipeline.errors import InputError, UnknownChoiceError
from webapp.pipeline.lesson import course
from webapp.pipeline.lesson.tags import read_tags
from webapp.pipeline.synthesis import (
    CHAPTER_PAUSE_S,
    SynthesisRequest,
    Synthesizer,
    speaker_table,
)
from webapp.pipeline.text import structure
from webapp.pipeline.tts.registry import TTSRegistry

PIPER = "en_US-joe-medium"
ESPEAK = "en-gb"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = TTSRegistry(Settings(data_dir=tmp_path_factory.mktemp("reg")))
    reg.get("piper").load(PIPER)
    reg.get("espeak").load(ESPEAK)
    return reg


@pytest.fixture()
def synth(registry, tmp_path):
    return Synthesizer(Settings(data_dir=tmp_path), registry,
                       DiskSynthesisCache(tmp_path / "cache", 256))


def _lufs(data: bytes) -> float:
    import pyloudnorm

    samples, rate = sf.read(io.BytesIO(data), dtype="float64")
    return pyloudnorm.Meter(rate).integrated_loudness(samples)


def _segment(audio: Audio, start_s: float, end_s: float) -> Audio:
    rate = audio.sample_rate
    return Audio(audio.samples[int(start_s * rate):int(end_s * rate)], rate)


# -- structure --------------------------------------------------------------------------------
def test_headings_speakers_and_breaks_are_read_as_structure():
    text = ("Intro words here.\n\n# Plants\nPlants need light.\nTeacher: What do plants need?\n"
            "student: Light and water.\nThey also need air.\n\n---\n\n"
            "Note: this is not a speaker.\n[pause 1s] Still the narrator.\n[en-gb] A voice by id.")
    blocks = structure.parse(text, {"Teacher": "T-voice", "Student": "S-voice"}, {"en-gb"})
    assert [(b.text, b.heading, b.voice, b.label) for b in blocks] == [
        ("Intro words here.", False, None, ""),
        ("Plants", True, None, ""),
        ("Plants need light.", False, None, ""),
        ("What do plants need?", False, "T-voice", "Teacher"),
        # A speaker's turn goes on over the next lines until another turn or a blank line.
        ("Light and water. They also need air.", False, "S-voice", "student"),
        ("Note: this is not a speaker. [pause 1s] Still the narrator.", False, None, ""),
        ("A voice by id.", False, "en-gb", ""),
    ]
    assert [b.new_paragraph for b in blocks] == [True, True, True, False, False, True, False]
    assert structure.chapter_starts(blocks) == {0: "Intro words here.", 1: "Plants"}


def test_sections_without_headings_are_chapters_named_by_their_first_words():
    blocks = structure.parse("Light is energy for every green plant on Earth. More.\n\nWater.")
    assert structure.chapter_starts(blocks) == {0: "Light is energy for every green plant on…",
                                                1: "Water."}
    assert structure.chapter_starts(structure.parse("One paragraph only. Two sentences.")) == {}


def test_speaker_names_are_checked():
    assert speaker_table([("Teacher", PIPER), ("", "")]) == {"Teacher": PIPER}
    for bad in ([("Teacher", "")], [("Ms: Lee", PIPER)], [("x" * 41, PIPER)]):
        with pytest.raises(InputError):
            speaker_table(bad)


# -- chapters ---------------------------------------------------------------------------------
def test_headings_become_announced_chapters_with_a_pause(synth):
    text = ("# Light\nPlants need light. They turn it into sugar.\n\n"
            "## Water\nWater is H2O. It enters through the roots.")
    result = synth.run(SynthesisRequest(text=text))
    assert [c.title for c in result.chapters] == ["Light", "Water"]
    titles = [c for c in result.cues if c.text in ("Light", "Water")]
    assert [c.start_s for c in titles] == pytest.approx([c.start_s for c in result.chapters])
    assert result.chapters[0].end_s == pytest.approx(result.chapters[1].start_s)
    assert result.chapters[-1].end_s == pytest.approx(result.audio.duration_s, abs=0.01)
    # The title is spoken (its spoken text is the heading), then a pause of at least a second.
    first = result.cues.index(titles[0])
    assert result.spoken[first] == "Light"
    assert result.cues[first + 1].start_s - titles[0].end_s >= CHAPTER_PAUSE_S - 0.01
    assert "#" not in " ".join(result.spoken)


# -- several voices ---------------------------------------------------------------------------
def _voiceprint(audio: Audio) -> np.ndarray:
    """Mean MFCCs 1-19 over the voiced frames: what a voice sounds like, roughly."""
    import librosa

    mfcc = librosa.feature.mfcc(y=audio.samples, sr=audio.sample_rate, n_mfcc=20)[1:]
    energy = librosa.feature.rms(y=audio.samples)[0][:mfcc.shape[1]]
    return mfcc[:, energy > 0.1 * energy.max()].mean(axis=1)


def test_each_line_of_a_dialogue_is_spoken_by_its_speakers_voice(synth, registry, tmp_path):
    lines = {"Teacher": "What do plants need to grow?", "Student": "They need light and water.",
             "Teacher ": "Good, and what gas do they take in?", "Student ": "Carbon dioxide."}
    text = "\n".join(f"{who.strip()}: {line}" for who, line in lines.items())
    speakers = (("Teacher", PIPER), ("Student", ESPEAK))
    result = synth.run(SynthesisRequest(text=text, speakers=speakers, loudness_lufs=None))
    assert len(result.cues) == 4
    # Each line alone in each voice, made afresh (no cache shared with the dialogue).
    solo_synth = Synthesizer(Settings(data_dir=tmp_path / "solo"), registry, NullCache())
    solo = {voice: {line: _voiceprint(solo_synth.run(SynthesisRequest(
        text=line, engine=engine, voice=voice, loudness_lufs=None)).audio) for line in lines.values()}
        for engine, voice in (("piper", PIPER), ("espeak", ESPEAK))}
    for cue, (who, line) in zip(result.cues, lines.items(), strict=True):
        assert cue.text == f"{who.strip()}: {line}"
        part = _voiceprint(_segment(result.audio, cue.start_s, cue.end_s))
        right = PIPER if who.strip() == "Teacher" else ESPEAK
        wrong = ESPEAK if right == PIPER else PIPER
        near = np.linalg.norm(part - solo[right][line])
        far = np.linalg.norm(part - solo[wrong][line])
        assert near < 0.5 * far, (cue.text, near, far)


def test_an_unknown_speaker_voice_is_refused_before_any_work(synth):
    with pytest.raises(UnknownChoiceError, match="Unknown voice 'no-such-voice'"):
        synth.run(SynthesisRequest(text="Teacher: hello.", speakers=(("Teacher", "no-such-voice"),)))


# -- loudness through the synthesizer ---------------------------------------------------------
@pytest.mark.parametrize("engine,voice", [("piper", PIPER), ("espeak", ESPEAK)])
@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_every_output_meets_its_loudness_target(synth, engine, voice, target):
    text = ("Light is a form of energy. Plants catch it with chlorophyll. "
            "The energy is stored as sugar, which the plant uses to grow.")
    result = synth.run(SynthesisRequest(text=text, engine=engine, voice=voice, fmt="wav",
                                        loudness_lufs=target))
    assert _lufs(result.data) == pytest.approx(target, abs=0.5)
    assert result.loudness.output_lufs == pytest.approx(target, abs=0.5)
    assert result.loudness.true_peak_dbtp <= -1.5 + 1e-6


def test_voices_in_a_dialogue_come_out_equally_loud(synth):
    text = "Teacher: Plants need light to grow well.\nStudent: And they need water every day."
    result = synth.run(SynthesisRequest(text=text, speakers=(("Teacher", PIPER), ("Student", ESPEAK))))
    teacher, student = (_lufs(_wav(_segment(result.audio, c.start_s, c.end_s))) for c in result.cues)
    assert abs(teacher - student) < 1.5, (teacher, student)


def test_the_live_stream_is_near_the_target_and_never_clips(synth):
    """The bundled voice needs several dB of limiting at -16 LUFS: the live chunks are limited
    too (they used to reach 1.75 full scale), and the finished file is the same speech."""
    from webapp.pipeline.synthesis import SynthesisChunk

    text = "Every name for the same voice gives the same audio. Sound needs air to travel."
    items = list(synth.stream(SynthesisRequest(text=text, loudness_lufs=-16.0)))
    live = np.concatenate([i.audio.samples for i in items if isinstance(i, SynthesisChunk)])
    result = items[-1]
    assert np.abs(live).max() <= 10 ** (-1.5 / 20)
    assert len(live) == len(result.audio.samples)
    assert np.corrcoef(live, result.audio.samples)[0, 1] > 0.995
    assert _lufs(_wav(Audio(live, result.audio.sample_rate))) == pytest.approx(-16.0, abs=1.5)


def _wav(audio: Audio) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio.samples, audio.sample_rate, format="WAV")
    return buffer.getvalue()


def test_sentences_stay_cached_raw_when_only_the_loudness_target_changes(synth):
    text = "Sound is a wave. It travels through air at about 343 metres per second."
    first = synth.run(SynthesisRequest(text=text, loudness_lufs=-16.0))
    second = synth.run(SynthesisRequest(text=text, loudness_lufs=-23.0))
    assert not second.cache_hit and second.units_cached == second.units_total
    assert second.request_key != first.request_key
    # The same audio at another level: a gain of about 7 dB between the two.
    ratio = np.sqrt(np.mean(first.audio.samples ** 2) / np.mean(second.audio.samples ** 2))
    assert 20 * np.log10(ratio) == pytest.approx(7.0, abs=0.6)


# -- a course ---------------------------------------------------------------------------------
TOPICS = ["Light", "Water", "Air", "Soil", "Roots", "Leaves", "Flowers", "Seeds", "Fruit", "Trees"]


def _course_text() -> str:
    return "\n---\n".join(
        f"# Lesson {i}: {topic}\n{topic} matters to plants. Here is why.\n\n"
        f"## Summary\n{topic} helps a plant grow." for i, topic in enumerate(TOPICS, start=1))


def test_a_ten_lesson_course_zip_has_every_file_tagged_and_playable(synth):
    lessons = course.split_lessons([("biology.md", _course_text())])
    assert [lesson.title for lesson in lessons] == [f"Lesson {i}: {t}" for i, t in enumerate(TOPICS, 1)]
    options = course.CourseOptions(teacher="Ms Lee", course="Biology 7")
    seen = []
    outcomes = course.make_course(lessons, options, synth.run,
                                  progress=lambda i, n, lesson: seen.append(i))
    assert seen == list(range(11))
    archive = zipfile.ZipFile(io.BytesIO(course.course_zip(outcomes, options)))
    names = set(archive.namelist())
    index = json.loads(archive.read("index.json"))
    assert len(index["lessons"]) == 10 and all(entry["ok"] for entry in index["lessons"])
    assert "index.html" in names
    for lesson in lessons:
        stem = lesson.stem
        assert {f"{stem}.mp3", f"{stem}.srt", f"{stem}.vtt", f"{stem}.chapters.vtt",
                f"{stem}.html"} <= names
        data = archive.read(f"{stem}.mp3")
        audio = load(data)
        assert audio.duration_s > 2.0 and not audio.is_silent(-50.0)
        tags, chapters, loud = read_tags(data, "mp3")
        assert (tags.title, tags.artist, tags.album, tags.track) == (lesson.title, "Ms Lee",
                                                                     "Biology 7", lesson.number)
        assert [c.title for c in chapters] == [lesson.title, "Summary"]
        assert f'href="{stem}.html"' in archive.read("index.html").decode()
        assert f"{stem}.mp3" in archive.read(f"{stem}.html").decode()


def test_a_lesson_that_fails_is_reported_and_the_others_are_made(synth):
    lessons = course.split_lessons([("a.txt", "Plants need light."), ("b.txt", "🌱🌱🌱"),
                                    ("c.txt", "Roots take in water.")])
    outcomes = course.make_course(lessons, course.CourseOptions(), synth.run)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "emoji" in outcomes[1].error
    assert "not made" in course.index_html(outcomes, course.CourseOptions())


def test_batch_command_makes_a_course_and_a_rerun_skips_finished_lessons(tmp_path, capsys, monkeypatch):
    from webapp.__main__ import main

    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "01-light.md").write_text("# Light\nPlants need light.", encoding="utf-8")
    (lessons / "02-water.txt").write_text("Water is H2O.", encoding="utf-8")
    out = tmp_path / "out"
    monkeypatch.setenv("SPEECH_STUDIO_DATA_DIR", str(tmp_path / "data"))
    args = ["batch", "synthesize", str(lessons), "-o", str(out), "--teacher", "Ms Lee"]
    assert main(args) == 0
    assert "2 of 2 lessons" in capsys.readouterr().out
    made = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {"01-light.mp3", "02-water.mp3", "index.json"} <= set(made)
    assert main(args) == 0
    assert "2 already made" in capsys.readouterr().out
    assert out.joinpath("01-light.mp3").stat().st_mtime_ns == made["01-light.mp3"]
    (lessons / "02-water.txt").write_text("Water is H2O. It boils at 100 °C.", encoding="utf-8")
    assert main(args) == 0
    assert "1 already made" in capsys.readouterr().out
    assert out.joinpath("02-water.mp3").stat().st_mtime_ns != made["02-water.mp3"]
    assert main(["batch", "synthesize", str(tmp_path / "missing"), "-o", str(out)]) == 2
