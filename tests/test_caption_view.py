"""Captions for a room (issue 15) without a browser: the board that caption views follow, the
view's routes on a real server, and the transcript a stopped recording leaves, with times
checked against the recogniser's own word times for the same audio."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import srt
import webvtt
from fastapi import FastAPI
from paths import LIBRIVOX  # tests/paths.py
from serving import serving  # tests/serving.py

from webapp.pipeline.audio import Audio, load
from webapp.pipeline.caption_board import CaptionBoard, ViewerLimit
from webapp.pipeline.stt.base import Word
from webapp.pipeline.stt.files import live_transcript, render

FIRST = "sense_and_sensibility_01_austen_64kb-0880.wav"
SECOND = "sense_and_sensibility_01_austen_64kb-0930.wav"
PAUSE_S = 2.5


def words(*spec: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(" " + text, start, end) for text, start, end in spec)


# -- the board ------------------------------------------------------------------------------

def test_viewers_get_the_newest_state_then_the_end():
    async def scenario():
        board = CaptionBoard()
        room = board.open()
        seen: list[dict] = []

        async def viewer():
            async for snapshot in board.follow(room.id, keepalive_s=5):
                seen.append(snapshot)

        task = asyncio.create_task(viewer())
        await asyncio.sleep(0)
        board.publish(room.id, "", "hello", (), 0.5)
        await asyncio.sleep(0)
        board.publish(room.id, "Hello there.", "", words(("Hello", 0.2, 0.5),
                                                           ("there.", 0.6, 0.9)), 1.0)
        board.publish(room.id, "Hello there. How", "are", words(("How", 1.2, 1.4)), 1.5)
        await asyncio.sleep(0)
        board.end(room.id)
        await asyncio.wait_for(task, 2)
        return board, room, seen

    board, room, seen = asyncio.run(scenario())
    assert seen[0]["committed"] == "" and not seen[0]["ended"]
    # Two updates published while the viewer was busy arrive as the newer one, not lost:
    # the view shows the state, and the state is never older than the last publish.
    assert seen[-1] == {**seen[-1], "committed": "Hello there. How", "pending": "",
                        "ended": True, "words": 3}
    assert [s["version"] for s in seen] == sorted({s["version"] for s in seen})
    assert "00:00:00,200 --> 00:00:01,400" in room.transcript("srt")
    assert board.get(room.id) is room  # ended, still there for its transcript


def test_links_are_unguessable_and_expire_after_the_session_ends():
    now = [1000.0]
    board = CaptionBoard(keep_s=60, clock=lambda: now[0])
    rooms = [board.open() for _ in range(50)]
    ids = {r.id for r in rooms}
    assert len(ids) == 50 and all(len(i) >= 22 for i in ids)  # 128 random bits each
    assert board.get("not-a-session") is None
    board.end(rooms[0].id)
    now[0] += 59
    assert board.get(rooms[0].id) is not None
    now[0] += 2
    assert board.get(rooms[0].id) is None  # expired with its session
    assert board.get(rooms[1].id) is not None  # still recording: never expires


def test_a_full_board_drops_the_oldest_ended_session_and_a_full_room_refuses_viewers():
    board = CaptionBoard(max_sessions=3, max_viewers=1)
    a, b, c = board.open(), board.open(), board.open()
    board.end(b.id)
    d = board.open()
    assert board.get(b.id) is None and all(board.get(r.id) for r in (a, c, d))

    async def two_viewers():
        first = board.follow(a.id)
        await anext(first)
        with pytest.raises(ViewerLimit):
            await anext(board.follow(a.id))
        await first.aclose()
        await anext(board.follow(a.id))  # the first left: room again

    asyncio.run(two_viewers())


def test_pauses_split_the_transcript_into_cues_with_escaped_text():
    spoken = words(("We", 0.5, 0.7), ("heat", 0.8, 1.0), ("x", 1.1, 1.2), ("<", 1.3, 1.4),
                   ("5", 1.5, 1.6), ("&", 1.7, 1.8), ("stop.", 1.9, 2.2),
                   ("Then", 5.0, 5.3), ("we", 5.4, 5.5), ("wait.", 5.6, 6.0))
    transcript = live_transcript(spoken, 6.5)
    cues = list(srt.parse(render(transcript, "srt")))
    assert [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == [
        (0.5, 2.2, "We heat x < 5 & stop."), (5.0, 6.0, "Then we wait.")]
    vtt = webvtt.from_string(render(transcript, "vtt"))
    assert [c.text for c in vtt] == ["We heat x &lt; 5 &amp; stop.", "Then we wait."]
    assert render(transcript, "txt") == "We heat x < 5 & stop. Then we wait.\n"
    assert render(live_transcript((), 3.0), "srt") == ""


# -- the routes, on a real server, with real speech -------------------------------------------

@pytest.fixture(scope="module")
def services(tmp_path_factory):
    from webapp.config import Settings
    from webapp.services import build_services

    return build_services(Settings(data_dir=tmp_path_factory.mktemp("room")), preload=False)


@pytest.fixture(scope="module")
def url(services):
    from webapp.caption_view import build_caption_view_router
    from webapp.live_captions import build_live_router

    app = FastAPI()
    app.include_router(build_live_router(services))
    app.include_router(build_caption_view_router(services))
    with serving(app) as base:
        yield base


LEAD_S = 0.5


@pytest.fixture(scope="module")
def recording() -> Audio:
    """Two sentences with a pause between them, as a speaker would leave one (both clips have
    speech from their first to their last 0.1 s)."""
    return Audio.concat([Audio.silence(LEAD_S, 16_000), load(LIBRIVOX / FIRST, target_hz=16_000),
                         Audio.silence(PAUSE_S, 16_000), load(LIBRIVOX / SECOND, target_hz=16_000),
                         Audio.silence(1.0, 16_000)])


def sentence_times() -> tuple[float, float, float]:
    """Where the first sentence starts, the second starts and the second ends in ``recording``."""
    first, second = load(LIBRIVOX / FIRST).duration_s, load(LIBRIVOX / SECOND).duration_s
    return LEAD_S, LEAD_S + first + PAUSE_S, LEAD_S + first + PAUSE_S + second


def _record(base: str, audio: Audio, on_ready, rate: int = 48_000) -> list[dict]:
    """Stream ``audio`` like the page does (0.1 s frames, never far ahead of real time)."""
    from websockets.sync.client import connect

    pcm = audio.resample(rate).to_int16().astype("<i2")
    step = rate // 10
    messages = []
    with connect(base.replace("http", "ws") + "/api/live/captions") as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": rate}))
        ready = json.loads(ws.recv())
        assert ready["type"] == "ready", ready
        on_ready(ready)
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), step)):
            ahead = (k + 1) * 0.1 - (time.monotonic() - t0)
            if ahead > 3.0:  # the server refuses audio more than 5 s ahead of the clock
                time.sleep(ahead - 3.0)
            ws.send(pcm[i:i + step].tobytes())
        ws.send(json.dumps({"type": "stop"}))
        while True:
            message = json.loads(ws.recv())
            messages.append(message)
            if message.get("final") or message["type"] == "error":
                break
    return messages


def test_a_viewer_follows_the_recording_and_the_transcript_matches_the_audio(url, recording):
    seen: list[tuple[float, dict]] = []
    view: dict = {}

    def follow(ready: dict) -> None:
        view.update(ready)

        def read():
            with httpx.stream("GET", f"{url}/{ready['view']}/events", timeout=60) as r:
                view["status"] = r.status_code
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        seen.append((time.monotonic(), json.loads(line[6:])))
                        if seen[-1][1]["ended"]:
                            return

        threading.Thread(target=read, daemon=True).start()

    messages = _record(url, recording, follow)
    final = messages[-1]
    assert final["final"], final
    deadline = time.monotonic() + 10
    while not (seen and seen[-1][1]["ended"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert view["status"] == 200
    # The viewer saw the captions grow while the recording ran, and ends with the final text.
    growing = [s["words"] for _t, s in seen]
    assert growing == sorted(growing) and len(set(growing)) >= 3, growing
    assert seen[-1][1]["committed"] == final["committed"] and seen[-1][1]["ended"]

    # The page: the view itself, private and locked down.
    page = httpx.get(f"{url}/{view['view']}")
    assert page.status_code == 200 and view["session"] in page.text
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"

    # The transcript: offered in the final message, times from the start of the recording,
    # within 0.5 s of where each sentence is in the audio (known: it was put together here).
    assert set(final["transcript"]) == {"txt", "srt", "vtt"}
    got = httpx.get(f"{url}/{final['transcript']['srt']}")
    assert got.status_code == 200 and "attachment" in got.headers["content-disposition"]
    cues = list(srt.parse(got.text))
    assert len(cues) >= 2, got.text  # the pause starts a new cue
    first_s, second_s, end_s = sentence_times()
    starts = [c.start.total_seconds() for c in cues]
    assert abs(starts[0] - first_s) <= 0.5, starts
    assert min(abs(s - second_s) for s in starts) <= 0.5, (starts, second_s)
    assert abs(cues[-1].end.total_seconds() - end_s) <= 0.5, (cues[-1], end_s)
    assert " ".join(c.content for c in cues) == final["committed"]
    vtt = httpx.get(f"{url}/{final['transcript']['vtt']}")
    assert [c.text for c in webvtt.from_string(vtt.text)] == [c.content for c in cues]
    assert httpx.get(f"{url}/{final['transcript']['txt']}").text.strip() == final["committed"]


def test_unknown_links_get_a_clear_page_and_nothing_else(url):
    page = httpx.get(f"{url}/captions/no-such-session")
    assert page.status_code == 404
    assert "unknown or has expired" in page.text and "Traceback" not in page.text
    assert httpx.get(f"{url}/captions/no-such-session/events").status_code == 404
    assert httpx.get(f"{url}/captions/no-such-session/transcript.srt").status_code == 404
    # Not a way to reach files: the format is one of three, the id only a key.
    assert httpx.get(f"{url}/captions/..%2F..%2Fetc%2Fpasswd/transcript.txt").status_code == 404
