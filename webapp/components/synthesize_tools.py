"""``/synthesize`` and ``/normalize``: the Synthesize tab's work for programs (``gradio_client``)
and assistants (MCP tools); what tools share is in ``webapp.components.mcp_tools``."""

from __future__ import annotations

import gradio as gr

from webapp.components import mcp_tools
from webapp.components.downloads import write_downloads
from webapp.components.events import client_of
from webapp.components.inputs import one_choice
from webapp.pipeline.audio import FORMATS
from webapp.pipeline.errors import InputError
from webapp.pipeline.subtitles import to_srt
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.pipeline.tts.base import MAX_SPEED, MIN_SPEED
from webapp.services import Services


def _voice_engines(services: Services) -> dict[str, str]:
    """Every installed voice id -> its engine (ids do not collide: Piper names, eSpeak NG
    language codes, Coqui model paths)."""
    voices: dict[str, str] = {}
    for engine in services.tts.names():
        for v in services.tts.voices(engine):
            voices.setdefault(v.id, engine)
    return voices


def add_synthesize_tools(services: Services) -> None:
    """Register ``/synthesize`` and ``/normalize`` (hidden components, no page trigger)."""
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
        with mcp_tools.refusals(settings):
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
            result = await mcp_tools.synthesis(services, synth_request, client_of(request, services))
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
        with mcp_tools.refusals(settings):
            return services.synthesizer.preview(text if isinstance(text, str) else "")

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
