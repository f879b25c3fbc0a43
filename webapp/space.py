"""Assemble the Hugging Face Space from this repository (issue 10).

``python -m webapp space build OUT`` writes a folder ready to push:

- ``app.py``, ``packages.txt`` and ``README.md`` from the template in ``spaces/``; the README's
  front matter gets ``sdk_version`` (the Gradio version installed here, the one the tests ran)
  and ``python_version`` (this interpreter's ``major.minor``);
- ``webapp/``: a copy of the app's source, without what the Space does not run (the command
  line, this builder, and the adapters of the optional engines it does not install);
- ``requirements.txt``: exact pins, taken from this environment, of every package the Space's
  requirements need (their whole dependency closure), so the Space installs what the tests ran;
- ``LICENSE`` (GPL-3.0-or-later: the source travels with its licence).

Which requirements the Space installs is decided in ``pyproject.toml``: the default dependency
list is the full install, and every package listed in an optional engine's extra
(``speech-studio[coqui]``, ``speech-studio[openai-whisper]``) stays out of the Space, which
runs Piper, eSpeak NG and faster-whisper without PyTorch (``bench/space.py`` measures both).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import platform
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(__file__).resolve().parent
TEMPLATE = ROOT / "spaces"
TEMPLATE_FILES = ("app.py", "README.md", "packages.txt")

# Optional engines: the extra that installs each (pyproject.toml) and the adapter modules that
# only it uses. The Space installs neither; the registries leave them out of the page and say
# what to install when one is asked for.
OPTIONAL_ENGINES: dict[str, tuple[str, ...]] = {
    "coqui": ("pipeline/tts/coqui.py", "pipeline/tts/coqui_catalogue.py"),
    "openai-whisper": ("pipeline/stt/openai_whisper.py", "pipeline/stt/convert.py"),
}
# Default dependencies the app never imports: silero-vad (the VAD runs the Silero model bundled
# in faster-whisper with onnxruntime, webapp/pipeline/vad.py) needs PyTorch.
UNUSED_DEPENDENCIES = ("silero-vad",)
# Source the Space does not run: the command line (with its batch workers and Ray runner) and
# the Space tooling itself. Top-level names, or paths inside the package.
TOOLING = ("__main__.py", "commands", "space.py", "space_check.py", "workers.py",
           "ray_batch.py", "pipeline/stt/recordings.py")
# Packages that must never reach the Space (several GB; nothing on its path uses them).
FORBIDDEN = ("torch", "torchaudio", "torchcodec", "coqui-tts", "openai-whisper", "triton")


class SpaceBuildError(Exception):
    """The Space cannot be assembled from this environment (said with what to do)."""


@dataclass(frozen=True)
class SpaceBuild:
    out: Path
    gradio_version: str
    python_version: str
    requirements: tuple[str, ...]  # the Space's own (pyproject defaults minus the optional engines)
    pins: tuple[str, ...]  # name==version for the whole closure, sorted
    files: tuple[str, ...]  # relative paths written, sorted


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    path = ROOT / "pyproject.toml"
    if not path.is_file():
        raise SpaceBuildError(f"{path} not found: build the Space from a checkout of the repository.")
    return tomllib.loads(path.read_text("utf-8"))


def space_requirements(pyproject: dict | None = None) -> list[str]:
    """The default dependencies without the optional engines' extras and unused packages."""
    from packaging.requirements import Requirement

    project = (pyproject or _pyproject())["project"]
    extras = project.get("optional-dependencies", {})
    left_out = {canonical(n) for n in UNUSED_DEPENDENCIES}
    for extra in OPTIONAL_ENGINES:
        if extra not in extras:
            raise SpaceBuildError(f"pyproject.toml has no '{extra}' extra.")
        left_out.update(canonical(Requirement(r).name) for r in extras[extra])
    return [r for r in project["dependencies"] if canonical(Requirement(r).name) not in left_out]


def pinned_closure(requirements: list[str]) -> dict[str, str]:
    """{canonical name: installed version} of ``requirements`` and everything they need.

    Walks the metadata of the packages installed here (markers evaluated for this interpreter
    and the extras asked for), so the pins are exactly what the tests ran. A requirement that
    is not installed, or installed at a version it does not accept, is an error.
    """
    from packaging.requirements import Requirement

    versions: dict[str, str] = {}
    extras_done: dict[str, set[str]] = {}
    queue: list[tuple[Requirement, str]] = [(Requirement(r), "the Space") for r in requirements]
    while queue:
        req, wanted_by = queue.pop()
        name = canonical(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SpaceBuildError(
                f"{req.name} (needed by {wanted_by}) is not installed in this environment; "
                "build the Space from the full install (bash scripts/studio.sh install)."
            ) from None
        version = dist.version
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            raise SpaceBuildError(f"{wanted_by} needs {req}, but {name} {version} is installed.")
        versions[name] = version
        done = extras_done.setdefault(name, set())
        todo = ({""} | set(req.extras)) - done
        if not todo:
            continue
        done |= todo
        for raw in dist.requires or ():
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in todo):
                queue.append((sub, name))
    return dict(sorted(versions.items()))


def read_front_matter(readme: Path) -> dict[str, str]:
    """The ``key: value`` lines between the README's leading ``---`` lines (quotes stripped)."""
    lines = readme.read_text("utf-8").splitlines()
    if not lines or lines[0].strip() != "---":
        raise SpaceBuildError(f"{readme} has no front matter.")
    out: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            return out
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "#")):
            out[key.strip()] = value.strip().strip("'\"")
    raise SpaceBuildError(f"{readme}: the front matter is not closed by '---'.")


def _source_files() -> list[Path]:
    """The app's source files the Space runs, relative to the package folder."""
    optional = {p for files in OPTIONAL_ENGINES.values() for p in files}
    out = []
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE)
        if not path.is_file() or path.suffix not in (".py", ".js", ".html") or "__pycache__" in rel.parts:
            continue
        if rel.parts[0] in TOOLING or rel.as_posix() in TOOLING or rel.as_posix() in optional:
            continue
        out.append(rel)
    return out


def _requirements_txt(direct: list[str], pins: dict[str, str], gradio: str, python: str) -> str:
    from packaging.requirements import Requirement

    top = {canonical(Requirement(r).name) for r in direct}
    lines = [
        "# Generated by `python -m webapp space build` from the environment the tests ran",
        f"# (Python {python}, gradio {gradio}): exact pins for the whole dependency closure.",
        "# Edit pyproject.toml and rebuild instead of editing this file.",
        "",
        "# the Space's requirements",
        *(f"{n}=={v}" for n, v in pins.items() if n in top),
        "",
        "# what they need",
        *(f"{n}=={v}" for n, v in pins.items() if n not in top),
    ]
    return "\n".join(lines) + "\n"


def build_space(out: Path, *, force: bool = False) -> SpaceBuild:
    """Write the Space into ``out`` (which must be empty or absent, unless ``force``)."""
    out = out.resolve()
    if out == ROOT or ROOT in out.parents and out.parts[len(ROOT.parts)] in ("webapp", "spaces"):
        raise SpaceBuildError(f"Refusing to build into {out}: pick a folder outside the source.")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise SpaceBuildError(f"{out} is not empty (use --force to replace its contents).")
        shutil.rmtree(out)
    for name in TEMPLATE_FILES:
        if not (TEMPLATE / name).is_file():
            raise SpaceBuildError(f"The Space template {TEMPLATE / name} is missing.")

    direct = space_requirements()
    pins = pinned_closure(direct)
    leaked = sorted(set(pins) & {canonical(n) for n in FORBIDDEN})
    if leaked:
        raise SpaceBuildError(f"The Space's requirements pull {', '.join(leaked)}; it must run "
                              "without them (move what needs them into an optional extra).")
    gradio = pins.get("gradio")
    if gradio is None:
        raise SpaceBuildError("gradio is not among the Space's requirements.")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"

    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def write(rel: str, text: str) -> None:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, "utf-8")
        written.append(rel)

    readme = (TEMPLATE / "README.md").read_text("utf-8")
    for key, value in (("sdk_version", gradio), ("python_version", python)):
        readme = readme.replace("{{" + key + "}}", value)
    if "{{" in readme:
        raise SpaceBuildError("spaces/README.md has a placeholder the builder does not know.")
    write("README.md", readme)
    write("app.py", (TEMPLATE / "app.py").read_text("utf-8"))
    write("packages.txt", (TEMPLATE / "packages.txt").read_text("utf-8"))
    write("requirements.txt", _requirements_txt(direct, pins, gradio, platform.python_version()))
    write("LICENSE", (ROOT / "LICENSE").read_text("utf-8"))
    for rel in _source_files():
        write(f"webapp/{rel.as_posix()}", (PACKAGE / rel).read_text("utf-8"))

    unused = unused_files(out)
    if unused:
        raise SpaceBuildError(f"The Space would carry files nothing in it uses: {', '.join(unused)}.")
    front = read_front_matter(out / "README.md")
    if front.get("sdk_version") != gradio or front.get("python_version") != python:
        raise SpaceBuildError("The built README's front matter does not name this environment's "
                              "Gradio and Python versions.")
    return SpaceBuild(out=out, gradio_version=gradio, python_version=python,
                      requirements=tuple(direct),
                      pins=tuple(f"{n}=={v}" for n, v in pins.items()),
                      files=tuple(sorted(written)))


# Files of a Space that Spaces itself reads (the rest must be used by the app).
SPACE_FILES = ("README.md", "requirements.txt", "packages.txt", "LICENSE", "app.py")
_MODULE_NAME = re.compile(r"^webapp(?:\.\w+)+$")


def unused_files(folder: Path) -> list[str]:
    """Files in a built Space that ``app.py`` can never load, found statically.

    Follows every import (at any depth, including those inside functions) and every string
    that names a ``webapp`` module (``importlib`` tables such as the tabs and engines) from
    ``app.py``; a ``.js`` or ``.html`` file counts as used when a reachable module names it.
    """
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

    def module_file(name: str) -> str | None:
        base = name.replace(".", "/")
        for candidate in (f"{base}.py", f"{base}/__init__.py"):
            if candidate in files:
                return candidate
        return None

    used: set[str] = set()
    strings: set[str] = set()
    todo = ["app.py"]
    while todo:
        rel = todo.pop()
        if rel in used:
            continue
        used.add(rel)
        names: set[str] = set()
        for node in ast.walk(ast.parse((folder / rel).read_text("utf-8"), rel)):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
                if _MODULE_NAME.match(node.value):
                    names.add(node.value)
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
                found = module_file(".".join(parts[:i]))
                if found and found not in used:
                    todo.append(found)
    used |= {f for f in files if f.endswith((".js", ".html")) and Path(f).name in strings}
    return sorted(files - used - set(SPACE_FILES))
