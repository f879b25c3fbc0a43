"""Issue 11, "programs and assistants can use it": the app's MCP server, driven with the official
``mcp`` client package against the real app on loopback (Piper, faster-whisper tiny.en).

An assistant lists the tools (synthesize, transcribe, evaluate, normalize, with descriptions of
every argument), calls them with what an MCP client has (text, base64 ``data:`` URLs of audio
files) and reads what comes back (a URL to the audio on this server, text, JSON). Bad input is a
tool error with a sentence; a tool argument cannot make the server read one of its own files or
fetch from its own network; the tools wait for the same model slots as the page.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import io
import json
import re
import threading
from pathlib import Path

import httpx
import jiwer
import pytest
import soundfile as sf
import srt
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client
from serving import serving  # noqa: E402 - tests/serving.py

from webapp.pipeline.evaluate import score_text

DATA = Path(__file__).parent / "data" / "speech"
LIBRIVOX = DATA / "librivox"
CLIP = "sense_and_sensibility_01_austen_64kb-0880.wav"  # "he was not an ill disposed young man"
OTHER_CLIP = "sense_and_sensibility_01_austen_64kb-0930.wav"
TOOLS = {"synthesize", "transcribe", "evaluate", "normalize"}


def transcripts() -> dict[str, str]:
    with open(LIBRIVOX / "transcripts.tsv", encoding="utf-8") as f:
        return {row["file"]: row["text"] for row in csv.DictReader(f, delimiter="\t")}


def data_url(path: Path) -> str:
    """A file as an MCP client passes it to a tool when it has no URL for it."""
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def words(text: str) -> str:
    """Lower case, punctuation and hyphens as spaces ("ill-disposed" -> "ill disposed")."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


# -- the server and an MCP client ----------------------------------------------------------------

@pytest.fixture(scope="module")
def services(tmp_path_factory):
    from webapp.config import Settings
    from webapp.services import build_services

    return build_services(Settings(data_dir=tmp_path_factory.mktemp("mcp")), with_stt=True)


@pytest.fixture(scope="module")
def url(services):
    from webapp.app import create_app

    with serving(create_app(services)) as base:
        yield base


def mcp(base: str, work, *, headers: dict | None = None, transport: str = "http"):
    """Run ``await work(session)`` in an initialised MCP session with the app at ``base``."""
    async def run():
        if transport == "sse":
            connection = sse_client(base + "/gradio_api/mcp/sse", headers=headers)
        else:
            connection = streamablehttp_client(base + "/gradio_api/mcp/", headers=headers)
        async with connection as streams, ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            return await work(session)

    return asyncio.run(run())


def call(base: str, tool: str, arguments: dict, **kwargs):
    return mcp(base, lambda s: s.call_tool(tool, arguments), **kwargs)


def texts(result) -> list[str]:
    return [c.text for c in result.content if c.type == "text"]


def assert_refused(result, *phrases: str) -> str:
    """A tool error whose message is a sentence (no traceback, no exception class), saying
    ``phrases``."""
    assert result.isError, f"accepted: {texts(result)}"
    message = " ".join(texts(result))
    assert message and "Traceback" not in message and not re.search(r"\w+Error\b", message), message
    for phrase in phrases:
        assert phrase.lower() in message.lower(), message
    return message


# -- listing -------------------------------------------------------------------------------------

def test_tools_are_listed_with_descriptions_of_every_argument(url):
    tools = {t.name: t for t in mcp(url, lambda s: s.list_tools()).tools}
    assert set(tools) == TOOLS  # the page's own events (player token, session state) are not tools
    for tool in tools.values():
        assert len(tool.description) > 80, tool.name
        properties = tool.inputSchema["properties"]
        for name, schema in properties.items():
            assert len(schema.get("description", "")) > 15, f"{tool.name}.{name} undescribed"
    assert tools["synthesize"].inputSchema["required"] == ["text"]
    assert tools["transcribe"].inputSchema["required"] == ["audio"]
    assert tools["evaluate"].inputSchema["required"] == ["reference"]
    voice = tools["synthesize"].inputSchema["properties"]["voice"]
    assert voice["default"] == "en_US-joe-medium" and "en_US-joe-medium" in voice["enum"]
    assert "base64" in tools["transcribe"].inputSchema["properties"]["audio"]["description"]
    # The same tools over the older SSE transport.
    over_sse = mcp(url, lambda s: s.list_tools(), transport="sse")
    assert {t.name for t in over_sse.tools} == TOOLS


def test_gradio_api_lists_the_same_calls(url):
    """What "Use via API" and gradio_client show: the tools, under stable names, and no
    handler of the page."""
    from gradio_client import Client

    client = Client(url + "/", verbose=False, analytics_enabled=False, download_files=False)
    try:
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert set(endpoints) == {"/" + name for name in TOOLS}
        assert [p["parameter_name"] for p in endpoints["/synthesize"]["parameters"]] == \
            ["text", "voice", "speed", "format"]
        assert client.predict("H2O at 25 °C", api_name="/normalize") == \
            "H two O at twenty-five degrees Celsius"
    finally:
        client.close()


# -- calls ---------------------------------------------------------------------------------------

def test_synthesize_returns_audio_subtitles_and_details(url):
    result = call(url, "synthesize", {"text": "Hello class."})
    assert not result.isError, texts(result)
    audio_url, srt_url, details_json = texts(result)
    details = json.loads(details_json)
    assert audio_url.startswith(url + "/") and audio_url.endswith(".wav")
    audio = httpx.get(audio_url, timeout=30)
    assert audio.status_code == 200
    samples, rate = sf.read(io.BytesIO(audio.content))
    assert rate == details["sample_rate_hz"] and 0.5 < len(samples) / rate < 3.0
    assert abs(len(samples) / rate - details["duration_s"]) < 0.05
    assert abs(samples).max() > 0.05  # speech, not silence
    cues = list(srt.parse(httpx.get(srt_url, timeout=30).text))
    assert len(cues) == 1 and "Hello class" in cues[0].content
    assert details["engine"] == "piper" and details["voice"] == "en_US-joe-medium"
    assert details["sentences"] == 1 and details["cache_hit"] is False
    # A repeat comes from the cache (a private server says so).
    again = json.loads(texts(call(url, "synthesize", {"text": "Hello class."}))[2])
    assert again["cache_hit"] is True and again["duration_s"] == details["duration_s"]


def test_synthesize_honours_voice_speed_and_format(url):
    text = "The class starts at nine and ends at half past ten."
    normal = json.loads(texts(call(url, "synthesize", {"text": text, "voice": "en-gb"}))[2])
    audio_url, _, details_json = texts(call(url, "synthesize", {
        "text": text, "voice": "en-gb", "speed": 1.5, "format": "mp3"}))
    details = json.loads(details_json)
    assert details["engine"] == normal["engine"] == "espeak" and details["voice"] == "en-gb"
    assert audio_url.endswith(".mp3") and details["format"] == "mp3"
    samples, rate = sf.read(io.BytesIO(httpx.get(audio_url, timeout=30).content))
    assert 1.0 < len(samples) / rate < 0.85 * normal["duration_s"]


def test_transcribe_a_recording_sent_as_base64(url):
    expected = transcripts()
    for name in (CLIP, "sense_and_sensibility_01_austen_64kb-0870.wav"):
        result = call(url, "transcribe", {"audio": data_url(LIBRIVOX / name)})
        assert not result.isError, texts(result)
        text, details_json = texts(result)
        details = json.loads(details_json)
        assert jiwer.wer(words(expected[name]), words(text)) <= 0.2, text
        assert details["model"] == "tiny.en" and details["language"] == "en"
        assert abs(details["duration_s"] - sf.info(LIBRIVOX / name).duration) < 0.1
        segments = details["segments"]
        assert segments and words(" ".join(s["text"] for s in segments)) == words(text)
        assert all(0 <= s["start_s"] < s["end_s"] <= details["duration_s"] + 0.5
                   for s in segments)


def test_evaluate_two_recordings_and_a_synthesised_candidate(url):
    same = call(url, "evaluate", {"reference": data_url(LIBRIVOX / CLIP),
                                  "candidate": data_url(LIBRIVOX / CLIP)})
    assert not same.isError, texts(same)
    verdict, report_json = texts(same)
    report = json.loads(report_json)
    assert verdict.startswith("PASS") and report["passed"] is True
    assert report["production_ready"] is True
    metrics = report["metrics"]
    assert set(metrics) >= {"mfcc_similarity", "dtw_similarity", "mcd_db", "duration_ratio"}
    assert metrics["dtw_similarity"] > 0.99 and metrics["mcd_db"] < 0.5
    assert abs(metrics["duration_ratio"] - 1) < 0.01
    assert report["checks"]["dtw_similarity"] == {"threshold": 0.55, "passed": True}

    other = json.loads(texts(call(url, "evaluate", {
        "reference": data_url(LIBRIVOX / CLIP),
        "candidate": data_url(LIBRIVOX / OTHER_CLIP)}))[1])
    assert other["metrics"]["dtw_similarity"] < metrics["dtw_similarity"] - 0.2

    sentence = transcripts()[CLIP]
    spoken = call(url, "evaluate", {"reference": data_url(LIBRIVOX / CLIP), "text": sentence})
    assert not spoken.isError, texts(spoken)
    report = json.loads(texts(spoken)[1])
    assert "synthesised" in report["candidate"] and "piper" in report["candidate"]
    # The candidate is the sentence spoken by Piper and heard by tiny.en: the WER reported is
    # the one of what was heard, and most of the sentence was heard. Piper samples noise, so each
    # rendering differs; over 24 renderings (with and without loudness normalisation) tiny.en
    # heard "ill disposed" as "Elvis Post" or "ultisposed" in 5 (WER 0.125-0.25), never worse.
    heard = report["text"]["hypothesis"]
    assert report["text"]["wer"] == pytest.approx(
        score_text(sentence, heard, normalizer=report["text"]["normalizer"]).wer)
    assert report["text"]["wer"] <= 0.375 and "young man" in heard.lower(), heard
    assert other["metrics"]["dtw_similarity"] < report["metrics"]["dtw_similarity"] < 0.95


# -- refusals ------------------------------------------------------------------------------------

def test_bad_input_is_a_tool_error_with_a_sentence(url):
    assert_refused(call(url, "synthesize", {"text": ""}), "no text to synthesise")
    assert_refused(call(url, "synthesize", {"text": "   \n "}), "no text")
    assert_refused(call(url, "synthesize", {"text": "x" * 20_001}), "20,000")
    assert_refused(call(url, "synthesize", {"text": "Hi.", "speed": 5}), "speed", "0.5", "2.0")
    assert_refused(call(url, "synthesize", {"text": "Hi.", "voice": "alloy"}), "alloy")
    assert_refused(call(url, "synthesize", {}), "text")
    junk = "data:audio/wav;base64," + base64.b64encode(b"RIFF" + bytes(range(256)) * 8).decode()
    assert_refused(call(url, "transcribe", {"audio": junk}))
    assert_refused(call(url, "evaluate", {"reference": data_url(LIBRIVOX / CLIP)}),
                   "candidate", "text")
    assert_refused(call(url, "normalize", {"text": "x" * 20_001}), "20,000")


def test_a_tool_cannot_read_server_files_or_fetch_from_the_servers_network(url):
    """The audio arguments take what an MCP client has: base64 or a public URL. A server path
    (as a string or as Gradio's FileData), a file: URL or an address on the server's own network
    is refused; were one read, the clip's words would come back."""
    secret = LIBRIVOX / CLIP  # on the server's disk; its words are known
    attempts = [str(secret), "/etc/passwd", f"file://{secret}", "../" * 8 + "etc/passwd",
                {"path": str(secret), "meta": {"_type": "gradio.FileData"}},
                url + "/gradio_api/file=" + str(secret),  # the app's own loopback address
                "http://169.254.169.254/latest/meta-data/"]
    for audio in attempts:
        for tool, arguments in (("transcribe", {"audio": audio}),
                                ("evaluate", {"reference": data_url(secret), "candidate": audio})):
            result = call(url, tool, arguments)
            shown = " ".join(texts(result))
            assert result.isError, f"{tool} accepted {audio!r}: {shown[:200]}"
            assert "disposed" not in shown and "root:x:0:0" not in shown, shown


def test_a_callers_host_header_cannot_redirect_tool_calls(services):
    """Gradio's MCP server would call a *queued* tool back over HTTP, at the address the first
    caller's Host / X-Forwarded-Host header names, for every later caller too. The tools run
    inside the server instead: a forged first call changes nothing."""
    from webapp.app import create_app

    forged = {"Host": "speech-studio.evil.example", "X-Forwarded-Host": "evil.example"}
    with serving(create_app(services)) as base:  # a fresh server: this is its first tool call
        for headers in (forged, None):
            result = call(base, "normalize", {"text": "3 kg"}, headers=headers)
            assert not result.isError and texts(result) == ["three kilograms"], texts(result)


def test_tools_wait_for_the_same_model_slots_as_the_page(url, services):
    """With the only synthesis slot held (a page visitor's job) and no room to wait, a new text
    is refused with the busy message; a cached one is still answered."""
    from webapp.services import make_limits

    call(url, "synthesize", {"text": "Cached before the rush."})
    saved = services.limits
    services.limits = make_limits(dataclasses.replace(services.settings, concurrency=1,
                                                      max_queue=0))
    taken, release = threading.Event(), threading.Event()

    def page_job():
        with services.limits.synthesis.hold("page-visitor"):
            taken.set()
            release.wait(30)

    threading.Thread(target=page_job, daemon=True).start()
    try:
        assert taken.wait(5)
        assert_refused(call(url, "synthesize", {"text": "A brand new sentence to read."}),
                       "busy", "try again")
        cached = call(url, "synthesize", {"text": "Cached before the rush."})
        assert not cached.isError and json.loads(texts(cached)[2])["cache_hit"] is True
    finally:
        release.set()
        services.limits = saved


def test_public_server_offers_the_same_tools_and_keeps_the_cache_to_itself(services):
    from webapp.app import create_app
    from webapp.services import Services

    settings = dataclasses.replace(services.settings, public=True, operator_token="op-token")
    public = Services(settings=settings, cache=services.cache, tts=services.tts,
                      synthesizer=services.synthesizer, stt=services.stt,
                      lexicon=services.lexicon)
    with serving(create_app(public)) as base:
        tools = mcp(base, lambda s: s.list_tools()).tools
        assert {t.name for t in tools} == TOOLS  # no cache clearing, no lexicon editing
        for _ in range(2):
            result = call(base, "synthesize", {"text": "Plants store energy as sugar."})
            details = json.loads(texts(result)[2])
            assert "cache_hit" not in details and details["duration_s"] > 1
        message = assert_refused(call(base, "transcribe", {"audio": data_url(
            Path(__file__))}))
        assert str(Path(__file__).parent) not in message and "/tmp" not in message
