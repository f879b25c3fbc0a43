"""Real-browser harness: a live ``python -m webapp serve`` and Debian's Chromium via Playwright.

docs/stack-notes.md: use Debian's /usr/bin/chromium (never ``playwright install``), the background-
networking flags (the machine has no internet), and Chromium's fake microphone fed from a WAV.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

SCREENSHOT_DIR = Path(__file__).parent / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
BASE_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_app(data_dir: Path, extra_env: dict[str, str] | None = None):
    """Start ``python -m webapp serve`` on a free port; returns (url, process, log file)."""
    port = _free_port()
    env = {**os.environ, "SPEECH_STUDIO_DATA_DIR": str(data_dir), "SPEECH_STUDIO_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "ORT_DISABLE_TELEMETRY": "1", **(extra_env or {})}
    log = (data_dir / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "webapp", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the app exited during start-up:\n" + (data_dir / "server.log").read_text())
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the app did not start in 240 s:\n" + (data_dir / "server.log").read_text())
        time.sleep(0.5)
    return url, proc, log


def _stop_app(proc, log) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """A live app on a free port with its own data dir (empty cache), shared by browser tests."""
    url, proc, log = _start_app(tmp_path_factory.mktemp("app-data"))
    yield url
    _stop_app(proc, log)


@pytest.fixture(scope="session")
def public_app_url(tmp_path_factory):
    """The app as a public demo runs it (SPEECH_STUDIO_PUBLIC=1, no operator token)."""
    data_dir = tmp_path_factory.mktemp("public-app-data")
    # The operator's lexicon, which visitors use but cannot change.
    (data_dir / "lexicon.csv").write_text("term,respelling,case_sensitive\nATP,A T P,yes\n",
                                          encoding="utf-8")
    url, proc, log = _start_app(data_dir, {"SPEECH_STUDIO_PUBLIC": "1"})
    yield url
    _stop_app(proc, log)


# Module scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and tests after the browser tests call asyncio.run() (CI failed with
# "asyncio.run() cannot be called from a running event loop" when this was session-scoped).
@pytest.fixture(scope="module")
def _playwright():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run the README's test command "
                    "(it installs Debian's chromium) or set CHROMIUM_PATH.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _page_factory(playwright, url):
    """For a fixture to ``yield from``: gives ``make(fake_audio=None)`` -> a Page on ``url``
    (each call its own browser, fake microphone if given), and closes the browsers after."""
    browsers = []

    def make(fake_audio: Path | None = None):
        args = list(BASE_FLAGS)
        if fake_audio is not None:
            args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={fake_audio}"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        browsers.append(browser)
        context = browser.new_context(viewport={"width": 1280, "height": 1000},
                                      permissions=["microphone"] if fake_audio else [])
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#tab-synthesize, button[role=tab]", timeout=60_000)
        return page

    yield make
    for browser in browsers:
        browser.close()


@pytest.fixture()
def new_page(_playwright, app_url):
    """Factory: ``new_page(fake_audio=None)`` -> a Page on the app, fake microphone if given."""
    yield from _page_factory(_playwright, app_url)


@pytest.fixture()
def new_public_page(_playwright, public_app_url):
    """Factory: a Page on the public-mode app; each call is a separate visitor (own browser)."""
    yield from _page_factory(_playwright, public_app_url)


@pytest.fixture(scope="session", autouse=True)
def _screenshot_dir():
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
