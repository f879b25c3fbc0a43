"""Which Coqui models this deployment can speak with, and where their files are (issue 14).

Model ids (users pick ids, never paths):

- ``local/<folder>``: an operator checkpoint, ``<folder>/model.pth`` + ``<folder>/config.json``
  inside one of ``SPEECH_STUDIO_COQUI_MODEL_DIRS`` (plus whatever files the config names, e.g.
  ``speaker_ids.json``; XTTS folders also hold ``vocab.json`` and ``speakers_xtts.pth``).
- ``tts_models/<lang>/<dataset>/<model>``: a model from Coqui's catalogue
  (``tts_models/en/ljspeech/vits``). It is used when already on disk (our data dir, Coqui's own
  folder ``~/.local/share/tts`` or ``$TTS_HOME``, or the Hugging Face cache for hub-hosted models)
  and downloaded on first use only when the deployment is online (``SPEECH_STUDIO_OFFLINE=0``),
  once the operator has accepted its licence where Coqui asks for that (XTTS's CPML).

Nothing here imports coqui-tts or PyTorch until a download: ``import TTS`` costs seconds
(``TTS.utils.manage`` imports torch through trainer), and the voice list must stay cheap. So the
catalogue file, Coqui's download folder and its checkpoint-finding rule are read the way
coqui-tts reads them, without importing it; tests/test_tts_coqui.py checks each against the
installed coqui-tts (pinned in pyproject.toml), so an upgrade that changes them fails a test.
The engine that loads and runs the models is ``webapp.pipeline.tts.coqui``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webapp.config import Settings
from webapp.pipeline.errors import ModelUnavailableError, UnknownChoiceError
from webapp.pipeline.tts.base import VoiceInfo

logger = logging.getLogger(__name__)

LOCAL_PREFIX = "local/"
XTTS_V2 = "tts_models/multilingual/multi-dataset/xtts_v2"
# Well-known catalogue models offered in the voice list when the deployment is online.
CURATED_MODELS: tuple[str, ...] = (
    "tts_models/en/ljspeech/vits",
    "tts_models/en/vctk/vits",
    "tts_models/en/jenny/jenny",
    XTTS_V2,
)
# XTTS cloning has only run on tiny random test models, never on the released weights (issue
# 14): voices that clone say so (VoiceInfo.cloning_experimental) until someone has listened.
XTTS_CLONING_EXPERIMENTAL = True
MODEL_NAME = re.compile(r"^tts_models/[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# The checkpoint names ModelManager._find_files looks for.
CHECKPOINT_NAMES = ("model_file.pth", "model_file.pth.tar", "model.pth", "checkpoint.pth")


@dataclass(frozen=True)
class ModelFiles:
    """The files one Coqui model is loaded from."""

    model_name: str  # voice id without the speaker part
    model: Path
    config: Path
    vocoder: Path | None = None
    vocoder_config: Path | None = None

    def fingerprint(self) -> str:
        parts = []
        for path in (self.model, self.config, self.vocoder):
            if path is not None:
                stat = path.stat()
                parts.append(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def cloning_fields(is_xtts: bool) -> dict[str, Any]:
    """The VoiceInfo fields that say whether a voice clones from a sample."""
    return {"supports_cloning": is_xtts, "cloning_experimental": is_xtts and XTTS_CLONING_EXPERIMENTAL}


def is_xtts_name(model_name: str) -> bool:
    """Whether a catalogue model name is an XTTS (``.../xtts_v2``, ``.../xtts_v1.1``)."""
    return bool(MODEL_NAME.match(model_name)) and model_name.rsplit("/", 1)[-1].startswith("xtts")


class CoquiCatalogue:
    """Local checkpoints and Coqui's released models: listing, licence gate, download, files."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def download_dir(self) -> Path:
        """Where this app downloads catalogue models (Coqui's ModelManager adds ``tts/``)."""
        return self.settings.models_dir / "coqui"

    def roots(self) -> list[Path]:
        """Folders that hold downloaded catalogue models, ours first."""
        return [self.download_dir / "tts", coqui_user_dir()]

    def local_models(self) -> dict[str, ModelFiles]:
        found: dict[str, ModelFiles] = {}
        for root in self.settings.coqui_model_dirs:
            if not root.is_dir():
                logger.warning("SPEECH_STUDIO_COQUI_MODEL_DIRS entry %s is not a folder", root)
                continue
            for folder in sorted(p for p in root.iterdir() if p.is_dir()):
                model, config = folder / "model.pth", folder / "config.json"
                if _FOLDER_NAME.match(folder.name) and model.is_file() and config.is_file():
                    found.setdefault(LOCAL_PREFIX + folder.name, ModelFiles(
                        LOCAL_PREFIX + folder.name, model, config))
        return found

    @staticmethod
    def released() -> dict[str, dict]:
        """Coqui's model catalogue, flattened to ``{"tts_models/en/ljspeech/vits": item}``.

        The file ``ModelManager`` reads (``.models.json`` inside the package), found without
        importing the package."""
        spec = importlib.util.find_spec("TTS")
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailableError("The Coqui engine needs the coqui-tts package: pip install coqui-tts.")
        catalogue = Path(next(iter(spec.submodule_search_locations))) / ".models.json"
        raw = json.loads(catalogue.read_text("utf-8"))
        out: dict[str, dict] = {}
        for model_type, langs in raw.items():
            for lang, datasets in langs.items():
                for dataset, models in datasets.items():
                    for model, item in models.items():
                        out[f"{model_type}/{lang}/{dataset}/{model}"] = dict(item, model_type=model_type)
        return out

    def find_on_disk(self, name: str, item: dict) -> tuple[Path, Path] | None:
        """(checkpoint, config) of an already downloaded catalogue model, without the network."""
        if "repo_id" in item:
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(
                    item["repo_id"], allow_patterns=item.get("allow"),
                    ignore_patterns=item.get("ignore"), local_files_only=True,
                ))
            except Exception:  # noqa: BLE001 - not in the Hugging Face cache (or incomplete)
                return None
            return find_checkpoint(folder)
        for root in self.roots():
            folder = root / _folder_name(name)
            if folder.is_dir():
                found = find_checkpoint(folder)
                if found is not None:
                    return found
                logger.warning("incomplete Coqui model folder %s", folder)
        return None

    def download(self, name: str, item: dict) -> tuple[Path, Path]:
        """Fetch a catalogue model with Coqui's own ModelManager, once its licence is accepted."""
        from TTS.utils.manage import ModelManager

        # ModelManager would ask on stdin (input()) and hang a server: refuse with the reason.
        if not any(ModelManager.tos_agreed(item, root / _folder_name(name)) for root in self.roots()):
            raise ModelUnavailableError(
                f"Coqui model '{name}' is released under the {item.get('license', 'CPML')} licence "
                "(non-commercial use only). The operator must accept it by setting "
                "COQUI_TOS_AGREED=1 in the environment before it can be downloaded."
            )
        manager = ModelManager(output_prefix=self.download_dir, progress_bar=False)
        logger.info("downloading Coqui model %s into %s", name, self.download_dir)
        try:
            model, config, _ = manager.download_model(name)
        except Exception as exc:  # noqa: BLE001 - network/catalogue errors become one message
            raise ModelUnavailableError(f"Could not download Coqui model '{name}': {exc}") from exc
        return Path(model), Path(config)

    def resolve(self, model_name: str) -> ModelFiles:
        """The files of ``model_name``: a local folder, or a catalogue model (downloaded first
        when missing and the deployment is online). Raises with what to do otherwise."""
        local = self.local_models()
        if model_name in local:
            return local[model_name]
        if model_name.startswith(LOCAL_PREFIX):
            raise UnknownChoiceError(
                f"Unknown local Coqui model '{model_name}'. Installed local models: "
                f"{', '.join(sorted(local)) or 'none'} (the operator adds them as folders with "
                "model.pth + config.json inside SPEECH_STUDIO_COQUI_MODEL_DIRS)."
            )
        catalogue = self.released() if MODEL_NAME.match(model_name) else {}
        item = catalogue.get(model_name)
        if item is None or item.get("model_type") != "tts_models":
            raise UnknownChoiceError(
                f"Unknown Coqui voice '{model_name}'. Use a Coqui model name such as "
                f"{', '.join(CURATED_MODELS[:2])}, or one of the local models: "
                f"{', '.join(sorted(local)) or 'none installed'}."
            )
        found = self.find_on_disk(model_name, item)
        vocoder_name = item.get("default_vocoder")
        vocoder = None
        if vocoder_name:
            vocoder = self.find_on_disk(vocoder_name, catalogue.get(vocoder_name, {}))
        if found is None or (vocoder_name and vocoder is None):
            if self.settings.offline:
                missing = model_name if found is None else f"{model_name}'s vocoder {vocoder_name}"
                raise ModelUnavailableError(
                    f"Coqui model '{missing}' is not downloaded and this deployment is offline. "
                    "Either set SPEECH_STUDIO_OFFLINE=0 to download it on first use, or copy its "
                    "folder (model.pth + config.json) into a folder listed in "
                    "SPEECH_STUDIO_COQUI_MODEL_DIRS and choose the voice 'local/<folder name>'. "
                    f"Looked in: {', '.join(str(r) for r in self.roots())} and the "
                    "Hugging Face cache. The other engines (Piper, eSpeak NG) keep working."
                )
            if found is None:
                found = self.download(model_name, item)
            if vocoder_name and vocoder is None:
                vocoder = self.download(vocoder_name, catalogue.get(vocoder_name, {}))
        return ModelFiles(model_name, found[0], found[1],
                          vocoder[0] if vocoder else None, vocoder[1] if vocoder else None)

    def is_xtts(self, model_name: str) -> bool:
        """Whether ``model_name`` is an XTTS (it clones from a sample), without loading it."""
        local = self.local_models().get(model_name)
        if local is not None:
            return bool(describe_config(local.config).get("supports_cloning"))
        return is_xtts_name(model_name)

    def voices(self, engine: str) -> list[VoiceInfo]:
        """The local checkpoints, then the curated catalogue models that are on disk (or all of
        them when the deployment may download)."""
        out = [VoiceInfo(id=voice_id, engine=engine, **describe_config(files.config),
                         description=f"Local Coqui checkpoint {voice_id[len(LOCAL_PREFIX):]}")
               for voice_id, files in self.local_models().items()]
        try:
            catalogue = self.released()
        except Exception as exc:  # noqa: BLE001 - TTS not importable: list local models only
            logger.warning("cannot read the Coqui catalogue: %s", exc)
            return out
        for name in CURATED_MODELS:
            item = catalogue[name]
            on_disk = self.find_on_disk(name, item) is not None
            if on_disk or not self.settings.offline:
                out.append(VoiceInfo(
                    id=name, engine=engine, language=name.split("/")[1],
                    description=f"Coqui {name.split('/', 1)[1]}" + ("" if on_disk else " (downloads on first use)"),
                    license=str(item.get("license", "")), **cloning_fields(is_xtts_name(name))))
        return out


def _folder_name(model_name: str) -> str:
    """The folder ModelManager downloads ``model_name`` into (``tts_models--en--ljspeech--vits``)."""
    return model_name.replace("/", "--")


def coqui_user_dir() -> Path:
    """Where Coqui itself downloads models: ``trainer.io.get_user_data_dir("tts")`` on Linux and
    macOS, without importing trainer (which imports torch)."""
    if os.environ.get("TTS_HOME") is not None:
        base = Path(os.environ["TTS_HOME"]).expanduser().resolve(strict=False)
    elif os.environ.get("XDG_DATA_HOME") is not None:
        base = Path(os.environ["XDG_DATA_HOME"]).expanduser().resolve(strict=False)
    elif sys.platform == "darwin":
        base = Path("~/Library/Application Support/").expanduser()
    else:
        base = Path.home() / ".local" / "share"
    return base / "tts"


def find_checkpoint(folder: Path) -> tuple[Path, Path] | None:
    """(checkpoint, config) in a downloaded model folder by ``ModelManager._find_files``'s rule
    (a private method, so mirrored here), or None where that raises."""
    model = next((folder / n for n in CHECKPOINT_NAMES if (folder / n).is_file()), None)
    if model is None:
        checkpoints = list(folder.rglob("*.pt*"))
        if len(checkpoints) != 1:
            return None
        model = checkpoints[0]
    configs = list(folder.rglob("config.json"))
    config = min(configs, key=lambda p: len(p.parts), default=None)
    return (model, config) if config is not None else None


def describe_config(config: Path) -> dict[str, Any]:
    """What a checkpoint's config.json declares (rate, language, cloning), without loading it."""
    try:
        raw = json.loads(config.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    audio = raw.get("audio") or {}
    rate = audio.get("output_sample_rate") or audio.get("sample_rate")
    language = raw.get("phoneme_language") or "en"
    return {
        "sample_rate_hz": int(rate) if isinstance(rate, (int, float)) else None,
        "language": str(language).split("-")[0],
        **cloning_fields(raw.get("model") == "xtts"),
    }
