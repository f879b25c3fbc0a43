"""Deployment settings, read from the environment once, in one place.

Everything an operator may set is an environment variable named ``SPEECH_STUDIO_*`` (see the
README's settings table). Nothing here is reachable from a request: local model paths are
operator settings, never user input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SPEECH_STUDIO_{name}", default)


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name, "1" if default else "0").strip().lower()
    return raw in ("1", "true", "yes", "on")


def _env_paths(name: str) -> tuple[Path, ...]:
    raw = _env(name, "")
    return tuple(Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip())


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "speech-studio"


def disable_telemetry() -> None:
    """Stop the libraries we use from phoning home (docs/stack-notes.md: Gradio analytics, onnxruntime
    telemetry, Hugging Face look-ups). Called before any of them is imported."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = field(default_factory=_default_data_dir)
    # Offline by default: models not shipped by an installed package are never downloaded
    # unless the operator sets SPEECH_STUDIO_OFFLINE=0.
    offline: bool = True
    cache_enabled: bool = True
    cache_size_mb: int = 1024
    max_text_chars: int = 20_000
    # Longest audio one synthesis request may produce, pauses included (issue 9: pause marks
    # turned 4,200 characters into 51 minutes of audio).
    max_output_s: float = 1800.0
    # Gradio queue: how many synthesis / transcription jobs run at once (2 cores here).
    concurrency: int = 2
    default_engine: str = "piper"
    default_voice: str = "en_US-joe-medium"
    # Operator-provided local models: folders searched for Piper voices (*.onnx + .onnx.json)
    # and Coqui checkpoints (a folder with model.pth + config.json per model).
    piper_voice_dirs: tuple[Path, ...] = ()
    # Where Piper voices are installed from when online (issue 12): the folder holding the
    # catalogue's voices.json and the voice files it lists (tests serve one from loopback).
    voice_catalogue_url: str = "https://huggingface.co/rhasspy/piper-voices/resolve/main/"
    coqui_model_dirs: tuple[Path, ...] = ()
    # Engines to load at start-up (the rest load on first use).
    preload: tuple[str, ...] = ("piper",)
    # Largest cloning clip / audio upload accepted, in seconds.
    max_clone_clip_s: float = 60.0
    # Speech recognition: local Whisper models (<dir>/<name>/model.bin for CTranslate2,
    # <dir>/<name>.pt for openai-whisper), defaults and limits.
    whisper_model_dirs: tuple[Path, ...] = ()
    default_stt_engine: str = "faster-whisper"
    default_stt_model: str = "tiny.en"
    max_transcribe_s: float = 3600.0
    stream_time_limit_s: float = 600.0
    # Live-caption sessions at once (each has a decoding thread; decodes share the model).
    max_live_sessions: int = 6
    stt_cpu_threads: int = 2
    # Public deployments (issue 9): SPEECH_STUDIO_PUBLIC=1 gives each browser session its own
    # lexicon over the operator's, hides operator actions unless OPERATOR_TOKEN is set, keeps
    # server paths and backend errors out of messages, expires cached audio after
    # CACHE_TTL_S and shows visitors only their own cache statistics.
    public: bool = False
    operator_token: str = ""
    # Behind a reverse proxy (Spaces, HAProxy) the client is the first X-Forwarded-For address.
    trust_proxy: bool = False
    # Jobs waiting for a model slot: Gradio's queue size for the page, and HTTP requests
    # waiting on top of that; beyond it requests are refused (503 + Retry-After).
    max_queue: int = 64
    # Jobs one client (address) may have running or waiting at once; 0 = no limit.
    max_per_client: int = 4
    max_upload_mb: int = 200
    # Largest HTTP request body of the JSON routes (the text limit is far below it).
    max_body_kb: int = 2048
    # Cached audio expires after this long (0 = kept until evicted by size); public default 1 day.
    cache_ttl_s: float = 0.0
    # Where the synthesis cache lives: unset = the data dir's tts-cache folder, a folder, or
    # redis://host:port/db (shared by replicas; the local folder is its fallback while Redis is
    # down, unless CACHE_FALLBACK=0).
    cache_url: str = ""
    cache_fallback: bool = True
    # This replica's name behind a load balancer (deploy/cluster.py sets r1, r2...): caption
    # view links start with it, so the balancer can route a view to its recording's replica.
    replica_id: str = ""
    # Gradio's MCP server (/gradio_api/mcp/): synthesize, transcribe, evaluate, normalize as tools.
    mcp: bool = True

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "tts-cache"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @classmethod
    def from_env(cls) -> Settings:
        public = _env_bool("PUBLIC", False)
        return cls(
            host=_env("HOST", cls.host),
            port=int(_env("PORT", str(cls.port))),
            data_dir=Path(_env("DATA_DIR", str(_default_data_dir()))).expanduser(),
            offline=_env_bool("OFFLINE", True),
            cache_enabled=_env_bool("CACHE", True),
            cache_size_mb=int(_env("CACHE_SIZE_MB", str(cls.cache_size_mb))),
            max_text_chars=int(_env("MAX_TEXT_CHARS", str(cls.max_text_chars))),
            max_output_s=float(_env("MAX_OUTPUT_S", str(cls.max_output_s))),
            concurrency=int(_env("CONCURRENCY", str(cls.concurrency))),
            default_engine=_env("DEFAULT_ENGINE", cls.default_engine),
            default_voice=_env("DEFAULT_VOICE", cls.default_voice),
            piper_voice_dirs=_env_paths("PIPER_VOICE_DIRS"),
            voice_catalogue_url=_env("VOICE_CATALOGUE_URL", cls.voice_catalogue_url).strip(),
            coqui_model_dirs=_env_paths("COQUI_MODEL_DIRS"),
            preload=tuple(p for p in _env("PRELOAD", "piper").split(",") if p.strip()),
            max_clone_clip_s=float(_env("MAX_CLONE_CLIP_S", str(cls.max_clone_clip_s))),
            whisper_model_dirs=_env_paths("WHISPER_MODEL_DIRS"),
            default_stt_engine=_env("DEFAULT_STT_ENGINE", cls.default_stt_engine),
            default_stt_model=_env("DEFAULT_STT_MODEL", cls.default_stt_model),
            max_transcribe_s=float(_env("MAX_TRANSCRIBE_S", str(cls.max_transcribe_s))),
            stream_time_limit_s=float(_env("STREAM_TIME_LIMIT_S", str(cls.stream_time_limit_s))),
            max_live_sessions=int(_env("MAX_LIVE_SESSIONS", str(cls.max_live_sessions))),
            stt_cpu_threads=int(_env("STT_CPU_THREADS", str(cls.stt_cpu_threads))),
            public=public,
            operator_token=_env("OPERATOR_TOKEN", "").strip(),
            trust_proxy=_env_bool("TRUST_PROXY", False),
            max_queue=int(_env("MAX_QUEUE", str(cls.max_queue))),
            max_per_client=int(_env("MAX_PER_CLIENT", str(cls.max_per_client))),
            max_upload_mb=int(_env("MAX_UPLOAD_MB", str(cls.max_upload_mb))),
            max_body_kb=int(_env("MAX_BODY_KB", str(cls.max_body_kb))),
            cache_ttl_s=float(_env("CACHE_TTL_S", "86400" if public else "0")),
            cache_url=_env("CACHE_URL", ""),
            cache_fallback=_env_bool("CACHE_FALLBACK", True),
            replica_id=_env("REPLICA_ID", ""),
            mcp=_env_bool("MCP", True),
        )
