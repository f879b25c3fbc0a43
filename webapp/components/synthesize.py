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

from webapp.components.downloads import OUTPUT_ROOT, write_downloads
from webapp.pipeline.audio import load
from webapp.pipeline.errors import PipelineError
from webapp.pipeline.subtitles import to_srt, to_vtt
from webapp.pipeline.synthesis import SynthesisChunk, SynthesisRequest, SynthesisResult
from webapp.pipeline.tts.registry import ENGINE_LABELS
from webapp.services import Services

logger = logging.getLogger(__name__)

EXAMPLE = (
    "Photosynthesis turns light into chemical energy. Plants store it as sugar.\n\n"
    "Water, H2O, enters through the roots; carbon dioxide enters through the leaves."
)

START_PLAYER_JS = """
(text, engine, voice, speed, fmt, reference, token) => {
  const t = window.speechStudio ? window.speechStudio.newToken() : "";
  if (window.speechStudio && text && text.trim()) { window.speechStudio.play(t); }
  return [text, engine, voice, speed, fmt, reference, t];
}
"""


def _write_outputs(result: SynthesisResult) -> tuple[str, list[str]]:
    paths = write_downloads("lesson", {result.fmt: result.data, "srt": to_srt(result.cues),
                                       "vtt": to_vtt(result.cues)})
    return paths[0], paths


def _metrics_markdown(result: SynthesisResult) -> str:
    if result.cache_hit:
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
    lines += [f"⚠️ {w}" for w in result.warnings]
    return "\n\n".join(lines)


def _cache_markdown(services: Services) -> str:
    s = services.cache.stats()
    return (f"**{s.entries}** stored clips (sentences and whole requests) · "
            f"**{s.size_bytes / 1e6:.1f} MB** of {s.limit_bytes / 1e6:.0f} MB · requests served "
            f"from the cache: **{s.hit_rate:.0%}** ({s.hits} of {s.hits + s.misses})")


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


def _lexicon_rows(services: Services) -> list[list]:
    if services.lexicon is None:
        return []
    return [[e.term, e.respelling, e.case_sensitive] for e in services.lexicon.entries]


def _lexicon_file(services: Services) -> str | None:
    if services.lexicon is None:
        return None
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_ROOT / "lexicon.csv"
    path.write_text(services.lexicon.to_csv(), encoding="utf-8")
    return str(path)


def _safe_preview(services: Services, value: str) -> str:
    if not value or not value.strip():
        return ""
    try:
        return services.synthesizer.preview(value)
    except PipelineError as exc:
        return f"({exc})"


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
        with gr.Column(scale=2):
            engine = gr.Dropdown(engines, value=default_engine, label="Engine", elem_id="tts-engine")
            voice = gr.Dropdown(voice_choices, value=default_voice, label="Voice",
                                elem_id="tts-voice", allow_custom_value=False)
            speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed (1.0 = normal)",
                              elem_id="tts-speed")
            fmt = gr.Radio(["wav", "mp3", "ogg"], value="wav", label="Download format",
                           elem_id="tts-format")
            with gr.Accordion("Voice cloning reference (Coqui XTTS only)", open=False):
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
        player = gr.Audio(label="Result (replay)", type="filepath", interactive=False,
                          elem_id="tts-audio")
        downloads = gr.File(label="Downloads: audio, subtitles (.srt, .vtt)", file_count="multiple",
                            interactive=False, elem_id="tts-downloads")
    with gr.Accordion("Pronunciation lexicon (applied before numbers and formulas)", open=False):
        gr.Markdown("Teach the voice a name or term: write how it should be said, e.g. "
                    "*Nguyen → win*, *ATP → A T P*. Saved for everyone using this computer.")
        lexicon_table = gr.Dataframe(
            headers=["term", "respelling", "case sensitive"], datatype=["str", "str", "bool"],
            value=_lexicon_rows(services), column_count=(3, "fixed"), interactive=True,
            row_count=(max(3, len(_lexicon_rows(services)) + 1), "dynamic"), elem_id="lexicon-table",
        )
        with gr.Row():
            lexicon_save = gr.Button("Save lexicon", size="sm", variant="primary", elem_id="lexicon-save")
            lexicon_import = gr.UploadButton("Import CSV", file_types=[".csv"], size="sm",
                                             elem_id="lexicon-import")
            lexicon_export = gr.DownloadButton("Export CSV", size="sm", elem_id="lexicon-export",
                                               value=_lexicon_file(services))
    with gr.Accordion("Synthesis cache", open=False):
        cache_info = gr.Markdown(_cache_markdown(services), elem_id="cache-info")
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm", elem_id="cache-refresh")
            clear = gr.Button("Clear cache", size="sm", variant="stop", elem_id="cache-clear")

    def on_engine(engine_name: str):
        choices, default = _voice_choices(services, engine_name)
        note = None
        if not choices:
            note = f"No {engine_name} voice is installed here; see the README's 'Models' section."
            gr.Warning(note)
        return gr.Dropdown(choices=choices, value=default)

    def on_preview(value: str) -> str:
        return _safe_preview(services, value)

    def on_synthesize(text_value, engine_name, voice_id, speed_value, fmt_value, reference_path,
                      token_value, progress=gr.Progress()):
        channel = services.live.channel(token_value) if token_value else None
        try:
            ref_audio = None
            if reference_path:
                ref_audio = load(reference_path, max_seconds=settings.max_clone_clip_s)
            request = SynthesisRequest(text=text_value or "", engine=engine_name, voice=voice_id,
                                       speed=float(speed_value), fmt=fmt_value, reference=ref_audio)
            progress(0, desc="Starting…")
            result = None
            for item in services.synthesizer.stream(request):
                if isinstance(item, SynthesisChunk):
                    if channel is not None:
                        channel.publish(item.audio.to_int16().tobytes(), item.audio.sample_rate)
                    progress((item.index + 1) / max(item.total, 1),
                             desc=f"Sentence {item.index + 1} of {item.total}")
                else:
                    result = item
            if channel is not None:
                channel.close()
        except PipelineError as exc:
            if channel is not None:
                channel.close(str(exc))
            raise gr.Error(str(exc)) from None
        except Exception:
            if channel is not None:
                channel.close("internal error")
            logger.exception("synthesis failed")
            raise gr.Error("Synthesis failed unexpectedly; the error was logged. Try again, or try another voice.") from None
        audio_path, files = _write_outputs(result)
        return audio_path, files, _metrics_markdown(result), _cache_markdown(services)

    engine.change(on_engine, engine, voice, queue=False)
    text.change(on_preview, text, preview, trigger_mode="always_last", show_progress="hidden",
                concurrency_limit=4)
    run.click(
        on_synthesize,
        [text, engine, voice, speed, fmt, reference, token],
        [player, downloads, metrics, cache_info],
        js=START_PLAYER_JS,
        concurrency_limit=settings.concurrency,
        concurrency_id="synthesis",
    )
    stop.click(None, None, None, js="() => { window.speechStudio && window.speechStudio.stop(); }")
    refresh.click(lambda: _cache_markdown(services), None, cache_info, queue=False)

    def on_lexicon_save(rows, text_value):
        from webapp.pipeline.text.lexicon import LexiconEntry

        entries = []
        values = rows.values.tolist() if hasattr(rows, "values") else (rows or [])
        for row in values:
            term = str(row[0] or "").strip() if len(row) > 0 else ""
            respelling = str(row[1] or "").strip() if len(row) > 1 else ""
            if not term and not respelling:
                continue
            case = bool(row[2]) if len(row) > 2 and str(row[2]).lower() not in ("", "false", "0", "no", "none", "nan") else False
            entries.append(LexiconEntry(term, respelling, case))
        try:
            services.lexicon.replace(entries)
            services.lexicon.save()
        except PipelineError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"Lexicon saved ({len(entries)} entries).")
        return _lexicon_rows(services), _safe_preview(services, text_value), _lexicon_file(services)

    def on_lexicon_import(file, text_value):
        from webapp.pipeline.text.lexicon import Lexicon

        try:
            raw = Path(file).read_bytes()[:1_000_000].decode("utf-8-sig")
            entries = Lexicon.parse_csv(raw)
            services.lexicon.replace(services.lexicon.entries + entries)
            services.lexicon.save()
        except UnicodeDecodeError:
            raise gr.Error("The lexicon file is not UTF-8 text.") from None
        except PipelineError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"Imported {len(entries)} entries.")
        return _lexicon_rows(services), _safe_preview(services, text_value), _lexicon_file(services)

    if services.lexicon is not None:
        lexicon_save.click(on_lexicon_save, [lexicon_table, text], [lexicon_table, preview, lexicon_export])
        lexicon_import.upload(on_lexicon_import, [lexicon_import, text], [lexicon_table, preview, lexicon_export])

    def on_clear() -> str:
        services.cache.clear()
        gr.Info("Cache cleared.")
        return _cache_markdown(services)

    clear.click(on_clear, None, cache_info)

