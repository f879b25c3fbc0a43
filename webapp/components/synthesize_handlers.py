"""The Synthesize tab's handlers: the voice list of an engine, the spoken-form preview, the
cloning upload of a voice, and the synthesis itself (live chunks, then the player, downloads
and metrics).

Each ``on_*`` is a function of ``Services`` and the event's widget values, bound in
``webapp.components.synthesize`` (``webapp.components.events``: failures become one sentence).
"""

from __future__ import annotations

import gradio as gr

from webapp.components import lesson as lesson_ui
from webapp.components.cache_panel import cache_markdown, count_request, session_cache_markdown
from webapp.components.events import client_of
from webapp.components.inputs import one_choice
from webapp.components.lexicon_panel import Lexicons, safe_preview
from webapp.components.voice_info import find_voice, voice_options
from webapp.pipeline.audio import load
from webapp.pipeline.errors import PipelineError
from webapp.pipeline.synthesis import SynthesisChunk, SynthesisRequest, SynthesisResult
from webapp.pipeline.tts.base import CloningEngine
from webapp.services import Services


def metrics_markdown(result: SynthesisResult, own_repeat: bool | None = None) -> str:
    """What the click did. ``own_repeat`` (public deployments): the cache status is shown only
    for a repeat of the visitor's own request, never for text someone else synthesised."""
    if own_repeat is not None:
        cache = "Repeat of your earlier request, served from the cache" if own_repeat else "Done"
    elif result.cache_hit:
        cache = "**Cache hit** (whole request)"
    elif result.units_cached:
        cache = f"Cache miss (reused {result.units_cached} of {result.units_total} sentences)"
    else:
        cache = "Cache miss"
    lines = [
        f"{cache} · time to first audio **{result.ttfa_ms:.0f} ms** · real-time factor "
        f"**{result.rtf:.3f}** · {result.audio_s:.1f} s of audio · {result.units_total} "
        f"sentence(s) · {result.engine} / {result.voice}",
    ]
    if result.loudness is not None:
        lines[0] += f" · loudness {result.loudness.summary()}"
    if result.chapters:
        lines[0] += f" · {len(result.chapters)} chapter(s)"
    lines += [f"⚠️ {w}" for w in result.warnings]
    return "\n\n".join(lines)


def voice_choices(services: Services, engine: str) -> tuple[list[tuple[str, str]], str | None]:
    choices = voice_options(services, engine)
    try:
        default = services.tts.default_voice(engine)
    except PipelineError:
        default = None
    if default and default not in [c[1] for c in choices]:
        default = choices[0][1] if choices else None
    return choices, default


CLONING_LABEL = "Voice cloning"
CLONING_EXPERIMENTAL_LABEL = "Voice cloning (experimental: not yet verified on real XTTS weights)"


def cloning(services: Services, engine_name, voice_id) -> tuple[bool, bool]:
    """Whether the voice imitates a reference clip, as the synthesis service decides it (the
    engine's ``supports_cloning``: an XTTS speaker counts before its model is loaded), and
    whether that is still experimental (``VoiceInfo.cloning_experimental``)."""
    try:
        engine_name = one_choice(engine_name, "engine")
        voice = one_choice(voice_id, "voice")
        if not (engine_name and voice):
            return False, False
        engine = services.tts.get(engine_name)
        if not (isinstance(engine, CloningEngine) and engine.supports_cloning(voice)):
            return False, False
        found = find_voice(services, engine_name, voice)
    except PipelineError:
        return False, False
    return True, found is None or found.cloning_experimental


def cloning_label(experimental: bool) -> str:
    return CLONING_EXPERIMENTAL_LABEL if experimental else CLONING_LABEL


def on_engine(services: Services, engine_name: str):
    engine_name = one_choice(engine_name, "engine") or services.settings.default_engine
    choices, default = voice_choices(services, engine_name)
    if not choices:
        gr.Warning(f"No {engine_name} voice is installed here; see the README's 'Models' section.")
    return gr.Dropdown(choices=choices, value=default)


def on_voice_cloning(services: Services, engine_name, voice_id):
    """The cloning upload only for a voice that uses it; another voice drops the clip, so it
    is never sent where it does nothing."""
    does, experimental = cloning(services, engine_name, voice_id)
    if does:
        return gr.Accordion(visible=True, label=cloning_label(experimental)), gr.skip()
    return gr.Accordion(visible=False), None


def on_preview(services: Services, value: str, own_rows, *lesson_values) -> str:
    try:
        speakers = lesson_ui.lesson_settings(list(lesson_values)).speakers
    except PipelineError:
        speakers = ()
    return safe_preview(services, value, Lexicons(services).effective(own_rows), speakers)


def _synthesize(services: Services, synth_request: SynthesisRequest, client: str, channel,
                progress) -> SynthesisResult:
    """A repeat straight from the cache, new text in a synthesis slot; each chunk is published
    to the page's live player (``channel``) as it is made."""
    result = services.synthesizer.cached(synth_request)
    if result is not None:
        if channel is not None:
            channel.publish(result.audio.to_int16().tobytes(), result.audio.sample_rate)
        return result
    progress(0, desc="Waiting for a free voice…")
    with services.limits.synthesis.hold(client):
        progress(0, desc="Starting…")
        for item in services.synthesizer.stream(synth_request):
            if isinstance(item, SynthesisChunk):
                if channel is not None:
                    channel.publish(item.audio.to_int16().tobytes(), item.audio.sample_rate)
                progress((item.index + 1) / max(item.total, 1),
                         desc=f"Sentence {item.index + 1} of {item.total}")
            else:
                result = item
    return result


def on_synthesize(services: Services, text_value, engine_name, voice_id, speed_value, fmt_value,
                  reference_path, token_value, own_rows, stats, title, teacher, course, loud,
                  name0, name1, name2, voice0, voice1, voice2, request: gr.Request,
                  progress=gr.Progress()):  # noqa: B008 - Gradio injects it
    settings = services.settings
    channel = services.live.claim(token_value)
    try:
        details = lesson_ui.lesson_settings(
            [title, teacher, course, loud, name0, name1, name2, voice0, voice1, voice2])
        # The synthesis service decides which voices use the clip (and warns when none does).
        ref_audio = None
        if reference_path:
            ref_audio = load(reference_path, max_seconds=settings.max_clone_clip_s)
        synth_request = SynthesisRequest(
            text=text_value if isinstance(text_value, str) else "",
            engine=one_choice(engine_name, "engine"), voice=one_choice(voice_id, "voice"),
            speed=float(speed_value), fmt=one_choice(fmt_value, "format") or "wav",
            reference=ref_audio, lexicon=Lexicons(services).effective(own_rows),
            speakers=details.speakers, loudness_lufs=details.loudness_lufs)
        result = _synthesize(services, synth_request, client_of(request, services), channel,
                             progress)
    finally:
        if channel is not None:
            channel.close()
    audio_path, files = lesson_ui.lesson_files(result, details)
    kept = lesson_ui.lesson_state(result, audio_path, details.tags)
    chapter_links = lesson_ui.chapters_html(result.chapters)
    if settings.public:
        stats = count_request(stats, result)
        return (audio_path, files, metrics_markdown(result, stats["own_repeat"]),
                session_cache_markdown(stats), stats, chapter_links, kept)
    return (audio_path, files, metrics_markdown(result), cache_markdown(services), stats,
            chapter_links, kept)
