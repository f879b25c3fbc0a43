"""Synthesize tab: lesson text -> live playback, a player, downloads (audio + subtitles), metrics.

Layout and events only: widget values become a ``SynthesisRequest``; the pipeline does the work.
A click first runs a line of JavaScript that makes a random stream token and starts the page's
Web Audio player on it (``player.js``); the Python handler publishes each chunk under that token
while it synthesises, then fills the player and the downloads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from webapp.api import operator_allowed
from webapp.components import lesson as lesson_ui
from webapp.components import mcp_tools
from webapp.components.downloads import write_downloads
from webapp.components.inputs import one_choice
from webapp.components.voices import build_voice_panel
from webapp.limits import client_key
from webapp.messages import user_message
from webapp.pipeline.audio import FORMATS, load
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.subtitles import to_srt
from webapp.pipeline.synthesis import SynthesisChunk, SynthesisRequest, SynthesisResult
from webapp.pipeline.text.lexicon import MAX_CSV_CHARS, MAX_SESSION_ENTRIES, Lexicon, LexiconEntry
from webapp.pipeline.tts.base import MAX_SPEED, MIN_SPEED
from webapp.pipeline.tts.registry import ENGINE_LABELS
from webapp.services import Services

logger = logging.getLogger(__name__)

EXAMPLE = (
    "Photosynthesis turns light into chemical energy. Plants store it as sugar.\n\n"
    "Water, H2O, enters through the roots; carbon dioxide enters through the leaves."
)

SESSION_TTL_S = 6 * 3600
# The click asks the server for a stream token (the player starts on it at once) and passes it
# to the handler, which claims it for this synthesis.
START_PLAYER_JS = """
async (text, engine, voice, speed, fmt, reference, token, ...rest) => {
  let t = "";
  if (window.speechStudio && text && text.trim()) { t = await window.speechStudio.start(); }
  return [text, engine, voice, speed, fmt, reference, t, ...rest];
}
"""


def _metrics_markdown(result: SynthesisResult, own_repeat: bool | None = None) -> str:
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


def _cache_markdown(services: Services) -> str:
    s = services.cache.stats()
    return (f"**{s.entries}** stored clips (sentences and whole requests) · "
            f"**{s.size_bytes / 1e6:.1f} MB** of {s.limit_bytes / 1e6:.0f} MB · requests served "
            f"from the cache: **{s.hit_rate:.0%}** ({s.hits} of {s.hits + s.misses})")


def _session_cache_markdown(stats: dict | None) -> str:
    """A public visitor's own cache statistics: repeats of their own requests, nothing else."""
    stats = stats or {}
    requests, repeats = stats.get("requests", 0), stats.get("repeats", 0)
    return (f"This session: **{requests}** request(s), **{repeats}** of them repeats of your own "
            "earlier ones, served from the cache. The shared cache is emptied when the demo "
            "restarts.")


def _voice_choices(services: Services, engine: str) -> tuple[list[tuple[str, str]], str | None]:
    voices = services.tts.voices(engine)
    choices = [(v.description or v.id, v.id) for v in voices]
    try:
        default = services.tts.default_voice(engine)
    except PipelineError:
        default = None
    if default and default not in [c[1] for c in choices]:
        default = choices[0][1] if choices else None
    return choices, default


def _rows(entries: list[LexiconEntry]) -> list[list]:
    return [[e.term, e.respelling, e.case_sensitive] for e in entries]


def _entries(rows) -> list[LexiconEntry]:
    """Table rows (a DataFrame or lists) -> entries; blank rows are skipped."""
    entries = []
    values = rows.values.tolist() if hasattr(rows, "values") else (rows or [])
    for row in values:
        term = str(row[0] or "").strip() if len(row) > 0 else ""
        respelling = str(row[1] or "").strip() if len(row) > 1 else ""
        if not term and not respelling:
            continue
        flag = str(row[2]).lower() if len(row) > 2 else ""
        entries.append(LexiconEntry(term, respelling, flag not in ("", "false", "0", "no", "none", "nan")))
    return entries


def _lexicon_file(entries: list[LexiconEntry]) -> str:
    return write_downloads("lexicon", {"csv": Lexicon(entries).to_csv()})[0]


class _Lexicons:
    """Which lexicon a click uses and edits. Private: the deployment's own (saved to its file,
    shared by everyone on this computer). Public: the visitor's entries, kept in their session
    only, layered over the operator's lexicon, which visitors cannot change."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.public = services.settings.public

    def own(self, session_rows: list | None) -> list[LexiconEntry]:
        if self.public:
            return [LexiconEntry(*row) for row in (session_rows or [])]
        return self.services.lexicon.entries if self.services.lexicon is not None else []

    def effective(self, session_rows: list | None) -> Lexicon | None:
        if self.public and session_rows:
            return Lexicon.layered(self.services.lexicon, self.own(session_rows))
        return None  # the synthesizer's deployment lexicon

    def store(self, entries: list[LexiconEntry]) -> list:
        """Validate and keep ``entries``; returns the new session rows (public)."""
        if self.public:
            if len(entries) > MAX_SESSION_ENTRIES:
                raise InputError(f"Your lexicon has {len(entries)} entries; on this shared demo the "
                                 f"limit is {MAX_SESSION_ENTRIES}.")
            checked = Lexicon(entries).entries  # validates; later entries win
            return [[e.term, e.respelling, e.case_sensitive] for e in checked]
        self.services.lexicon.replace(entries)
        self.services.lexicon.save()
        return []


def _safe_preview(services: Services, value: str, lexicon: Lexicon | None = None,
                  speakers=()) -> str:
    if not value or not value.strip():
        return ""
    try:
        return services.synthesizer.preview(value, lexicon, speakers)
    except PipelineError as exc:
        return f"({user_message(exc, public=services.settings.public)})"


def build_synthesize_tab(services: Services) -> None:
    settings = services.settings
    engines = [(ENGINE_LABELS.get(n, n), n) for n in services.tts.names()]
    default_engine = settings.default_engine if settings.default_engine in services.tts.names() else engines[0][1]
    voice_choices, default_voice = _voice_choices(services, default_engine)

    gr.Markdown(
        "Paste a lesson, choose a voice and press **Synthesize**. Playback starts with the first "
        "sentence; the finished file and sentence-timed subtitles (SRT/VTT for videos) appear below. "
        "Sentences you synthesised before come straight from the cache."
    )
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(
                label=f"Lesson text (up to {settings.max_text_chars:,} characters)",
                value=EXAMPLE, lines=10, max_lines=30, elem_id="tts-text",
                placeholder="Type or paste the text to read aloud…",
            )
            preview = gr.Textbox(
                label="What the voice will say (numbers, units and formulas spelled out)",
                lines=3, max_lines=12, interactive=False, elem_id="tts-preview",
                value=_safe_preview(services, EXAMPLE),
            )
            lesson = lesson_ui.build_lesson_settings(services, voice_choices)
        with gr.Column(scale=2):
            engine = gr.Dropdown(engines, value=default_engine, label="Engine", elem_id="tts-engine")
            voice = gr.Dropdown(voice_choices, value=default_voice, label="Voice",
                                # A voice installed after the page was built (voices.py) is
                                # not in the build-time choices Gradio checks against; unknown
                                # ids are refused by the synthesizer with a clear message.
                                elem_id="tts-voice", allow_custom_value=True)
            build_voice_panel(services, engine, voice)
            speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed (1.0 = normal)",
                              elem_id="tts-speed")
            fmt = gr.Radio(["wav", "mp3", "ogg"], value="wav", label="Download format",
                           elem_id="tts-format")
            with gr.Accordion("Voice cloning reference (Coqui XTTS only)", open=False,
                              visible="coqui" in services.tts.names()):
                reference = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                     label="A clean 6–30 s clip of the voice to imitate",
                                     elem_id="tts-reference")
            with gr.Row():
                run = gr.Button("Synthesize", variant="primary", elem_id="tts-run")
                stop = gr.Button("Stop playback", elem_id="tts-stop")
    gr.HTML('<div id="live-status" aria-live="polite" style="min-height:1.5em"></div>')
    token = gr.Textbox(visible=False, elem_id="tts-token")
    metrics = gr.Markdown(elem_id="tts-metrics")
    with gr.Row():
        with gr.Column():
            player = gr.Audio(label="Result (replay)", type="filepath", interactive=False,
                              elem_id="tts-audio")
            chapters = gr.HTML(elem_id="tts-chapters")
        downloads = gr.File(label="Downloads: audio, subtitles (.srt, .vtt), chapters",
                            file_count="multiple", interactive=False, elem_id="tts-downloads")
    lesson_state = gr.State(None, time_to_live=SESSION_TTL_S)
    lexicons = _Lexicons(services)
    public = settings.public
    # Per-visitor state lives in the session (Gradio drops it when the page is closed, and
    # after SESSION_TTL_S at the latest), never in module globals.
    session_lexicon = gr.State([], time_to_live=SESSION_TTL_S)
    session_stats = gr.State(None, time_to_live=SESSION_TTL_S)
    lesson_ui.build_lesson_tools(services, lesson_state, lesson, lesson_ui.SynthesisWidgets(
        engine, voice, speed, session_lexicon, lexicons.effective))
    with gr.Accordion("Pronunciation lexicon (applied before numbers and formulas)", open=False):
        if public:
            operator_count = len(services.lexicon.entries) if services.lexicon is not None else 0
            gr.Markdown("Teach the voice a name or term: write how it should be said, e.g. "
                        "*Nguyen → win*, *ATP → A T P*. Your entries apply only to this browser "
                        "session and are forgotten when you close the page; the server's own "
                        f"list ({operator_count} entries) applies too.")
        else:
            gr.Markdown("Teach the voice a name or term: write how it should be said, e.g. "
                        "*Nguyen → win*, *ATP → A T P*. Saved for everyone using this computer.")
        initial_rows = _rows(lexicons.own([]))
        lexicon_table = gr.Dataframe(
            headers=["term", "respelling", "case sensitive"], datatype=["str", "str", "bool"],
            value=initial_rows, column_count=(3, "fixed"), interactive=True,
            row_count=(max(3, len(initial_rows) + 1), "dynamic"), elem_id="lexicon-table",
        )
        with gr.Row():
            lexicon_save = gr.Button("Save lexicon", size="sm", variant="primary", elem_id="lexicon-save")
            lexicon_import = gr.UploadButton("Import CSV", file_types=[".csv"], size="sm",
                                             elem_id="lexicon-import")
            lexicon_export = gr.DownloadButton("Export CSV", size="sm", elem_id="lexicon-export",
                                               value=_lexicon_file(lexicons.own([])))
    operator_token = None
    clear = None
    with gr.Accordion("Synthesis cache", open=False):
        cache_info = gr.Markdown(_session_cache_markdown(None) if public else _cache_markdown(services),
                                 elem_id="cache-info")
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm", elem_id="cache-refresh")
            # Clearing is an operator action: absent on a public page unless an operator token
            # is configured, and it always asks for that token when one is.
            if not public or settings.operator_token:
                if settings.operator_token:
                    operator_token = gr.Textbox(label="Operator token", type="password",
                                                max_lines=1, elem_id="operator-token")
                clear = gr.Button("Clear cache", size="sm", variant="stop", elem_id="cache-clear")

    def fail(exc: Exception) -> gr.Error:
        return gr.Error(user_message(exc, public=public))

    def on_engine(engine_name: str):
        try:
            engine_name = one_choice(engine_name, "engine") or settings.default_engine
        except InputError as exc:
            raise fail(exc) from None
        choices, default = _voice_choices(services, engine_name)
        if not choices:
            gr.Warning(f"No {engine_name} voice is installed here; see the README's 'Models' section.")
        return gr.Dropdown(choices=choices, value=default)

    def on_preview(value: str, own_rows, *lesson_values) -> str:
        try:
            speakers = lesson_ui.lesson_settings(list(lesson_values)).speakers
        except PipelineError:
            speakers = ()
        return _safe_preview(services, value, lexicons.effective(own_rows), speakers)

    def on_synthesize(text_value, engine_name, voice_id, speed_value, fmt_value, reference_path,
                      token_value, own_rows, stats, title, teacher, course, loud,
                      name0, name1, name2, voice0, voice1, voice2, request: gr.Request,
                      progress=gr.Progress()):  # noqa: B008 - Gradio injects it
        client = client_key(request.client.host if request and request.client else None,
                            request.headers if request else None, settings.trust_proxy)
        channel = services.live.claim(token_value)
        try:
            details = lesson_ui.lesson_settings(
                [title, teacher, course, loud, name0, name1, name2, voice0, voice1, voice2])
            ref_audio = None
            if reference_path:
                ref_audio = load(reference_path, max_seconds=settings.max_clone_clip_s)
            synth_request = SynthesisRequest(
                text=text_value if isinstance(text_value, str) else "",
                engine=one_choice(engine_name, "engine"), voice=one_choice(voice_id, "voice"),
                speed=float(speed_value), fmt=one_choice(fmt_value, "format") or "wav",
                reference=ref_audio,
                lexicon=lexicons.effective(own_rows), speakers=details.speakers,
                loudness_lufs=details.loudness_lufs)
            # A repeat is answered from the cache at once, without queueing for a voice.
            result = services.synthesizer.cached(synth_request)
            if result is not None:
                if channel is not None:
                    channel.publish(result.audio.to_int16().tobytes(), result.audio.sample_rate)
            else:
                progress(0, desc="Waiting for a free voice…")
                with services.limits.synthesis.hold(client):
                    progress(0, desc="Starting…")
                    for item in services.synthesizer.stream(synth_request):
                        if isinstance(item, SynthesisChunk):
                            if channel is not None:
                                channel.publish(item.audio.to_int16().tobytes(),
                                                item.audio.sample_rate)
                            progress((item.index + 1) / max(item.total, 1),
                                     desc=f"Sentence {item.index + 1} of {item.total}")
                        else:
                            result = item
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
            raise fail(exc) from None
        finally:
            if channel is not None:
                channel.close()
        audio_path, files = lesson_ui.lesson_files(result, details)
        kept = lesson_ui.lesson_state(result, audio_path, details.tags)
        chapter_links = lesson_ui.chapters_html(result.chapters)
        if public:
            stats = _count_request(stats, result)
            return (audio_path, files, _metrics_markdown(result, stats["own_repeat"]),
                    _session_cache_markdown(stats), stats, chapter_links, kept)
        return (audio_path, files, _metrics_markdown(result), _cache_markdown(services), stats,
                chapter_links, kept)

    # The page's events are not the API (they take a player token and session state):
    # programs and assistants call /synthesize and /normalize below.
    page_only = "undocumented"
    engine.change(on_engine, engine, voice, queue=False, api_visibility=page_only)
    preview_inputs = [text, session_lexicon, *lesson.inputs()]
    text.change(on_preview, preview_inputs, preview, trigger_mode="always_last",
                show_progress="hidden", concurrency_limit=4, api_visibility=page_only)
    for speaker_widget in (*lesson.speaker_names, *lesson.speaker_voices):
        speaker_widget.change(on_preview, preview_inputs, preview, trigger_mode="always_last",
                              show_progress="hidden", concurrency_limit=4,
                              api_visibility=page_only)
    run.click(
        on_synthesize,
        [text, engine, voice, speed, fmt, reference, token, session_lexicon, session_stats,
         *lesson.inputs()],
        [player, downloads, metrics, cache_info, session_stats, chapters, lesson_state],
        js=START_PLAYER_JS,
        concurrency_limit=settings.concurrency,
        concurrency_id="synthesis",
        api_visibility=page_only,
    )
    stop.click(None, None, None, js="() => { window.speechStudio && window.speechStudio.stop(); }")
    if public:
        refresh.click(_session_cache_markdown, session_stats, cache_info, queue=False,
                      api_visibility=page_only)
    else:
        refresh.click(lambda: _cache_markdown(services), None, cache_info, queue=False,
                      api_visibility=page_only)

    def lexicon_outputs(own_rows, text_value):
        own = lexicons.own(own_rows)
        return (_rows(own), _safe_preview(services, text_value, lexicons.effective(own_rows)),
                _lexicon_file(own), own_rows)

    def on_lexicon_save(rows, text_value, own_rows):
        try:
            entries = _entries(rows)
            own_rows = lexicons.store(entries)
        except PipelineError as exc:
            raise fail(exc) from None
        gr.Info(f"Lexicon saved ({len(entries)} entries).")
        return lexicon_outputs(own_rows, text_value)

    def on_lexicon_import(file, text_value, own_rows):
        if not file:
            raise gr.Error("Choose a CSV file to import.")
        try:
            raw = Path(file).read_bytes()[:MAX_CSV_CHARS + 1].decode("utf-8-sig")
            entries = Lexicon.parse_csv(raw)
            own_rows = lexicons.store(lexicons.own(own_rows) + entries)
        except UnicodeDecodeError:
            raise gr.Error("The lexicon file is not UTF-8 text.") from None
        except OSError:
            raise gr.Error("The uploaded file could not be read; upload it again.") from None
        except PipelineError as exc:
            raise fail(exc) from None
        gr.Info(f"Imported {len(entries)} entries.")
        return lexicon_outputs(own_rows, text_value)

    if services.lexicon is not None:
        lexicon_outputs_list = [lexicon_table, preview, lexicon_export, session_lexicon]
        # Lexicon editing belongs to the page (and, in private mode, to the operator): never
        # an API call or an MCP tool.
        lexicon_save.click(on_lexicon_save, [lexicon_table, text, session_lexicon],
                           lexicon_outputs_list, api_visibility=page_only)
        lexicon_import.upload(on_lexicon_import, [lexicon_import, text, session_lexicon],
                              lexicon_outputs_list, api_visibility=page_only)

    if clear is not None:
        def on_clear(*token_value) -> str:
            if settings.operator_token and not operator_allowed(services, (token_value or [""])[0]):
                raise gr.Error("Clearing the cache needs the operator token.")
            services.cache.clear()
            gr.Info("Cache cleared.")
            return _cache_markdown(services)

        clear.click(on_clear, [operator_token] if operator_token is not None else None, cache_info,
                    api_visibility="private")

    add_synthesize_tools(services)


def _voice_engines(services: Services) -> dict[str, str]:
    """Every installed voice id -> its engine (ids do not collide: Piper names, eSpeak NG
    language codes, Coqui model paths)."""
    voices: dict[str, str] = {}
    for engine in services.tts.names():
        for v in services.tts.voices(engine):
            voices.setdefault(v.id, engine)
    return voices


def add_synthesize_tools(services: Services) -> None:
    """``/synthesize`` and ``/normalize``: the tab's work for programs (``gradio_client``) and
    assistants (MCP tools); see ``webapp.components.mcp_tools``."""
    settings = services.settings
    voices = _voice_engines(services)
    default_voice = settings.default_voice if settings.default_voice in voices else (
        next(iter(voices), None))
    espeak = [v for v, engine in voices.items() if engine == "espeak"]

    async def synthesize(text: str, voice: str | None = None, speed: float = 1.0,
                         format: str = "wav", request: gr.Request = None):
        """Read a text aloud with a natural offline voice and return the recording. Numbers, units, chemical formulas and equations are spoken in words ("H2O" -> "H two O"), the server's pronunciation lexicon applies, and [pause 2s] marks become silence.

        Args:
            text: What to say, in English, up to {max_chars:,} characters (a lesson, a paragraph, a sentence).
            voice: Voice id. Default {default_voice}{voice_note}
            speed: Speaking rate from {min_speed} to {max_speed}; 1.0 is normal, 0.8 slower, 1.2 faster.
            format: Audio file format: {formats}.

        Returns:
            The audio file (a URL on this server), subtitles timed to each sentence (an SRT file URL), and JSON details: duration_s, sentences, engine, voice, format, sample_rate_hz, warnings.
        """
        try:
            voice = one_choice(voice, "voice") or default_voice
            if voice not in voices:  # installed since start-up (the page's voice installer)?
                voices.update(_voice_engines(services))
            if voice not in voices:
                raise InputError(f"Unknown voice '{voice}'. Installed voices: "
                                 f"{', '.join(list(voices)[:12])}{' …' if len(voices) > 12 else ''}.")
            synth_request = SynthesisRequest(
                text=text if isinstance(text, str) else "", engine=voices[voice], voice=voice,
                speed=1.0 if speed is None else float(speed),
                fmt=one_choice(format, "format") or "wav")
            result = await mcp_tools.synthesis(services, synth_request,
                                               mcp_tools.caller(request, settings))
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
            raise mcp_tools.refusal(exc, settings) from None
        audio_path, srt_path = write_downloads("speech", {result.fmt: result.data,
                                                          "srt": to_srt(result.cues)})
        details = {"duration_s": round(result.audio_s, 3), "sentences": result.units_total,
                   "engine": result.engine, "voice": result.voice, "format": result.fmt,
                   "sample_rate_hz": result.audio.sample_rate, "warnings": result.warnings}
        if not settings.public:  # whether others asked for this text before is not public
            details["cache_hit"] = result.cache_hit
        return audio_path, srt_path, mcp_tools.as_json(details)

    others = [f"eSpeak NG ({len(espeak)} languages and accents, robotic, e.g. en-us, en-gb)"
              ] if espeak else []
    others += [v for v, engine in voices.items() if engine != "espeak" and v != default_voice]
    voice_note = " (Piper, natural)." if voices.get(default_voice) == "piper" else "."
    if others:
        voice_note += " Other voices: " + "; ".join(others[:10]) + "."
    mcp_tools.describe(synthesize, max_chars=settings.max_text_chars,
                       default_voice=default_voice, voice_note=voice_note,
                       min_speed=MIN_SPEED, max_speed=MAX_SPEED, formats=", ".join(FORMATS))

    def normalize(text: str) -> str:
        """Show the words a voice will say for a text: numbers, units, formulas, equations and abbreviations spelled out, the pronunciation lexicon applied, one line per sentence, [pause Ns] for pauses. No audio is made.

        Args:
            text: The text to check, up to {max_chars:,} characters.

        Returns:
            The spoken form, one sentence per line.
        """
        try:
            return services.synthesizer.preview(text if isinstance(text, str) else "")
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable sentence
            raise mcp_tools.refusal(exc, settings) from None

    mcp_tools.describe(normalize, max_chars=settings.max_text_chars)

    with mcp_tools.hidden():
        text = gr.Textbox(label="text")
        voice = gr.Dropdown(list(voices), value=default_voice, label="voice")
        # A Number, not a Slider: the Slider's own range check would answer "Value 5 is greater
        # than maximum value 2.0." without saying which value; the pipeline names the speed.
        speed = gr.Number(1.0, label="speed")
        fmt = gr.Dropdown(list(FORMATS), value="wav", label="format")
        audio = gr.Audio(type="filepath", label="audio", interactive=False)
        subtitles = gr.File(label="subtitles (SRT)", interactive=False)
        details = gr.Textbox(label="details (JSON)")
        spoken = gr.Textbox(label="spoken text")
    mcp_tools.register(synthesize, [text, voice, speed, fmt], [audio, subtitles, details])
    mcp_tools.register(normalize, [text], [spoken])


def _count_request(stats: dict | None, result: SynthesisResult) -> dict:
    """Update a public visitor's own statistics. A request counts as a repeat only if this
    session made it before: whether somebody else did is not shown."""
    stats = dict(stats or {"requests": 0, "repeats": 0, "keys": []})
    keys = list(stats.get("keys", []))
    digest = result.request_key[:16]
    own_repeat = bool(digest) and digest in keys
    stats["requests"] = stats.get("requests", 0) + 1
    stats["repeats"] = stats.get("repeats", 0) + int(own_repeat)
    if digest and not own_repeat:
        keys = (keys + [digest])[-200:]
    stats["keys"] = keys
    stats["own_repeat"] = own_repeat
    return stats
