"""The README's architecture section matches the code, and the layering it describes holds.

- Imports point one way: nothing under ``webapp/pipeline/`` imports a UI or web framework, or a
  ``webapp`` module outside the pipeline but the settings.
- The module map lists every source file below ``webapp/`` and ``deploy/``, and only those.
- Every module the stage diagram names exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SOURCE_SUFFIXES = (".py", ".js", ".html", ".cfg")
# What the pipeline may not import: the UI and web layers live above it.
FORBIDDEN_IN_PIPELINE = ("gradio", "plotly", "fastapi", "starlette", "uvicorn", "websockets")
PIPELINE_MAY_IMPORT = ("webapp.pipeline", "webapp.config")


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Architecture\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks() -> list[str]:
    return re.findall(r"```text\n(.*?)```", _section(), flags=re.S)


def _module_map() -> set[str]:
    """Paths listed by the module map: an indented tree of ``name/`` folders and files."""
    listed: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indent, folder)
    for line in _blocks()[-1].splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        here = [folder for _, folder in stack]
        name = line.split()[0]
        if name.endswith("/"):
            stack.append((indent, name.rstrip("/")))
            continue
        for name in line.split():  # one file and its description, or several files
            if not name.endswith(SOURCE_SUFFIXES):
                break
            listed.add("/".join([*here, name]))
    return listed


def _source_files() -> set[str]:
    found = set()
    for top in ("webapp", "deploy"):
        for path in (ROOT / top).rglob("*"):
            if (path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts
                    and not (path.name == "__init__.py" and not path.read_text().strip())):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_the_module_map_lists_every_source_file_and_no_other():
    listed, present = _module_map(), _source_files()
    assert sorted(present - listed) == [], "files the README's module map does not mention"
    assert sorted(listed - present) == [], "files the README's module map names but do not exist"


def test_every_module_the_stage_diagram_names_exists():
    diagram = _blocks()[1]
    names = set(re.findall(r"[\w/]+\.py", diagram))
    assert len(names) >= 20
    pipeline = ROOT / "webapp" / "pipeline"
    missing = sorted(n for n in names if not (pipeline / n).exists() and not (ROOT / n).exists())
    assert missing == []


def _imports(path: Path, source: str | None = None) -> list[str]:
    """Every module ``path`` (or ``source`` written there) imports, relative imports made
    absolute."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            if node.module:
                out.append(".".join([*base, node.module]))
            else:  # "from .. import x": each name may be a module
                out += [".".join([*base, alias.name]) for alias in node.names]
    return out


def test_relative_imports_are_made_absolute():
    """So that ``from ...components import events`` under the pipeline cannot slip past the
    layering check below."""
    probe = ROOT / "webapp" / "pipeline" / "tts" / "base.py"
    source = "from ...components import events\nfrom . import piper\nfrom ..audio import Audio\n"
    assert _imports(probe, source) == [
        "webapp.components", "webapp.pipeline.tts.piper", "webapp.pipeline.audio"]


@pytest.mark.parametrize("path", sorted((ROOT / "webapp" / "pipeline").rglob("*.py")),
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_pipeline_imports_no_layer_above_it(path):
    for module in _imports(path):
        top = module.split(".")[0]
        assert top not in FORBIDDEN_IN_PIPELINE, f"{module} imported below the UI line"
        if top == "webapp":
            assert module.startswith(PIPELINE_MAY_IMPORT), f"{module} is a layer above"
