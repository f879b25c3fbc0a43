"""Files the page offers for download: written once per content, expired after an hour."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

OUTPUT_ROOT = Path(tempfile.gettempdir()) / "speech-studio-outputs"
MAX_AGE_S = 3600


def write_downloads(prefix: str, files: dict[str, bytes | str]) -> list[str]:
    """Write ``{extension: content}`` as ``<prefix>-<hash>.<extension>`` and return the paths.

    Names come from a hash of the content, so a repeated request reuses its files instead of
    piling up copies; files older than ``MAX_AGE_S`` are removed on the way.
    """
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in OUTPUT_ROOT.iterdir():
        try:
            if now - old.stat().st_mtime > MAX_AGE_S:
                old.unlink()
        except OSError:
            pass
    digest = hashlib.sha256()
    for ext, content in files.items():
        digest.update(ext.encode())
        digest.update(content.encode("utf-8") if isinstance(content, str) else content)
    stem = f"{prefix}-{digest.hexdigest()[:10]}"
    paths = []
    for ext, content in files.items():
        path = OUTPUT_ROOT / f"{stem}.{ext}"
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        paths.append(str(path))
    return paths
