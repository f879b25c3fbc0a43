"""What the page says about a voice: its line under the picker (language, quality, licence and
credit), credit text as Markdown, a preview sentence in its language; and finding an installed
voice by engine and id."""

from __future__ import annotations

import re

from webapp.pipeline.errors import PipelineError
from webapp.pipeline.tts.base import VoiceInfo
from webapp.services import Services

# Short, in the voice's own language where we have one (Latin script: the text cleaner warns
# about other scripts), no numbers (the normaliser spells numbers in English).
SAMPLES = {
    "en": "Hello! This is how I sound when I read your lesson aloud.",
    "de": "Hallo! So klinge ich, wenn ich deine Lektion vorlese.",
    "fr": "Bonjour ! Voici ma voix quand je lis votre leçon à voix haute.",
    "es": "¡Hola! Así sueno cuando leo tu lección en voz alta.",
    "it": "Ciao! Ecco come suono quando leggo ad alta voce la tua lezione.",
    "nl": "Hallo! Zo klink ik als ik je les voorlees.",
    "pt": "Olá! É assim que eu soo quando leio a sua lição em voz alta.",
}
_URL = re.compile(r"https?://[^\s<>()\[\]]+")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~])")


def sample_text(voice: VoiceInfo | None) -> str:
    family = re.split(r"[-_]", (voice.language if voice else "") or "en")[0].lower()
    return SAMPLES.get(family, SAMPLES["en"])


def escape_markdown(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def credit_markdown(text: str) -> str:
    """A licence/credit line as Markdown: its words escaped, its URLs short links."""
    out, pos = [], 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:")
        out.append(escape_markdown(text[pos:match.start()]))
        out.append(f"[{escape_markdown(url.split('://', 1)[1].rstrip('/'))}]({url})")
        pos = match.start() + len(url)
    out.append(escape_markdown(text[pos:]))
    return "".join(out)


def voice_line(voice: VoiceInfo | None) -> str:
    """What the page says about the chosen voice: language, quality, licence and credit."""
    if voice is None:
        return ""
    first = [f"**{escape_markdown(voice.language_name or voice.language)}**"]
    if voice.quality:
        first.append(f"{voice.quality.replace('_', ' ')} quality")
    licence = credit_markdown(voice.license) if voice.license else "not stated by the voice's files"
    return " · ".join(first) + f"  \nLicence and credit: {licence}"


def voice_options(services: Services, engine: str) -> list[tuple[str, str]]:
    """The voice dropdown's (label, id) choices for the voices of ``engine`` installed now."""
    return [(v.description or v.id, v.id) for v in services.tts.voices(engine)]


def find_voice(services: Services, engine: str | None, voice_id: str | None) -> VoiceInfo | None:
    """The installed voice ``voice_id`` of ``engine`` (None when there is none)."""
    if not engine or not voice_id:
        return None
    try:
        return next((v for v in services.tts.voices(engine) if v.id == voice_id), None)
    except PipelineError:
        return None
