"""The local Spaces check (issue 10): prove that the built Space installs and boots before a push.

``run_check`` does what Hugging Face Spaces does with the folder, on this machine:

1. builds the Space (``webapp/space.py``) into a temporary folder, which has no link to this
   repository;
2. installs the Debian packages of ``packages.txt`` with apt when they are missing;
3. creates a fresh virtual environment with the Python named by the front matter's
   ``python_version`` and installs ``requirements.txt`` only, resolved against PyPI alone by
   default (this machine's pip configuration, with its local mirrors, is ignored:
   ``pip --isolated``). Downloads are kept between runs in a wheelhouse
   (``~/.cache/speech-studio-space-check/wheels``) unless ``pip_cache=False``; the venv is new
   every time. Then it checks that pip installed exactly the pinned packages and nothing else;
4. starts ``python app.py`` in that folder with an empty ``PYTHONPATH``, a fresh ``HOME`` and
   nothing of this environment, in a network namespace with only loopback when it can (root),
   so a download attempt at start-up or at use fails the check;
5. waits for ``/api/health``, then with ``gradio_client`` synthesises a sentence, transcribes a
   recorded clip (WER against its transcript), runs one evaluation, asks the HTTP API for an
   engine the Space does not install (a 503 that says what to install), and loads the page in
   Chromium (public-demo note, three tabs, a screenshot).

The probes run in a child process (this interpreter, which has ``gradio_client`` and
Playwright) entered into the app's network namespace. Reported: install size and time, time
from process start to ``/api/health`` and to the first answered ``gradio_client`` call.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from webapp.space import FORBIDDEN, ROOT, SpaceBuildError, build_space, canonical, read_front_matter

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# tests/browser/conftest.py BASE_FLAGS (docs/stack-notes.md: without the background-networking flags
# Chromium keeps trying to reach Google's hosts).
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SPEECH = ROOT / "tests" / "data" / "speech" / "librivox"
SENTENCE = "Plants store the energy of sunlight as sugar."
PYPI = "https://pypi.org/simple"


class SpaceCheckError(Exception):
    """A step of the check failed; the message says which and shows the evidence."""


@dataclass(frozen=True)
class CheckOptions:
    work: Path | None = None  # kept when given; a temporary folder (removed) otherwise
    pip_cache: bool = True
    pypi_only: bool = True
    browser: bool = True
    netns: bool = True
    screenshot: Path | None = None
    boot_timeout_s: float = 600.0
    chromium: str = CHROMIUM
    wheelhouse: Path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
        / "speech-studio-space-check" / "wheels"


def run_check(options: CheckOptions | None = None) -> dict:
    options = options or CheckOptions()
    work = Path(options.work or tempfile.mkdtemp(prefix="space-check-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(options, work)
    finally:
        if options.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(options: CheckOptions, work: Path) -> dict:
    report: dict = {}
    t0 = time.perf_counter()
    try:
        built = build_space(work / "space", force=True)
    except SpaceBuildError as exc:
        raise SpaceCheckError(f"build: {exc}") from None
    space = built.out
    report.update(build_s=round(time.perf_counter() - t0, 2), gradio_version=built.gradio_version,
                  pins=len(built.pins), space_files=len(built.files),
                  space_kb=round(sum((space / f).stat().st_size for f in built.files) / 1024))

    front = read_front_matter(space / "README.md")
    python = find_python(front.get("python_version", ""))
    report["python"] = _run_text([python, "-c", "import platform; print(platform.python_version())"])
    report["apt_installed"] = apt_install(_lines(space / "packages.txt"))

    venv = work / "venv"
    if venv.exists():
        shutil.rmtree(venv)  # the venv is always fresh (pip's download cache may be reused)
    t0 = time.perf_counter()
    _call([python, "-m", "venv", str(venv)], "creating the virtual environment")
    report["venv_create_s"] = round(time.perf_counter() - t0, 1)
    # pip's own HTTP cache stays empty on this machine (the PyPI responses it gets carry no
    # caching headers), so downloads are kept in a wheelhouse of our own: `pip download`
    # resolves every pin against the index on each run and fetches only files it lacks.
    wheelhouse = (options.wheelhouse if options.pip_cache else work / "wheels").resolve()
    wheelhouse.mkdir(parents=True, exist_ok=True)
    index = ["--isolated", "--index-url", PYPI] if options.pypi_only else []
    requirements = ["-r", str(space / "requirements.txt")]
    t0 = time.perf_counter()
    have = {_name_version(f.name) for f in wheelhouse.glob("*.whl")}
    pinned = {(canonical(n), v) for n, _, v in (p.partition("==") for p in built.pins)}
    reused = pinned <= have  # files of a release never change: nothing to fetch or resolve
    if not reused:
        _call([str(venv / "bin" / "python"), "-m", "pip", "download", "-q", "-d", str(wheelhouse),
               "--disable-pip-version-check", "--timeout", "60", "--retries", "5", *index,
               *requirements], "pip download -r requirements.txt")
        build_wheels(venv, wheelhouse, index)
    download_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _call([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
           "--find-links", str(wheelhouse), "--disable-pip-version-check", *requirements],
          "pip install -r requirements.txt")
    install_s = time.perf_counter() - t0
    report.update(pip_download_s=round(download_s, 1), pip_install_s=round(install_s, 1),
                  pip_total_s=round(download_s + install_s, 1), pip_cache=options.pip_cache,
                  downloads_reused=reused,
                  index="PyPI only" if options.pypi_only else "this machine's pip configuration",
                  download_mb=round(sum(f.stat().st_size for f in wheelhouse.iterdir()) / 2**20))
    if options.pip_cache:
        prune_wheelhouse(wheelhouse, built.pins)
    report["unpinned"] = check_installed(venv, built.pins)
    report["venv_mb"] = du_mb(venv)
    report["largest_packages_mb"] = largest(venv)

    env = {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(work / "home"),
           "LANG": "C.UTF-8", "PYTHONPATH": "", "PYTHONUNBUFFERED": "1",
           "SPEECH_STUDIO_PORT": str(_free_port())}
    (work / "home").mkdir(exist_ok=True)
    boot = boot_and_probe([str(venv / "bin" / "python"), "app.py"], cwd=space, env=env,
                          port=int(env["SPEECH_STUDIO_PORT"]), log=work / "app.log",
                          options=options, screenshot=options.screenshot or work / "space.png")
    report.update(boot)
    return report


# -- steps -------------------------------------------------------------------------------------
def find_python(version: str) -> str:
    """The interpreter for ``python_version`` (``3.11``): ``python3.11`` on PATH, checked."""
    if not re.fullmatch(r"3\.\d+", version):
        raise SpaceCheckError(f"the front matter's python_version is {version!r}, not like '3.11'.")
    exe = shutil.which(f"python{version}")
    if exe is None:
        raise SpaceCheckError(f"python{version} (the Space's python_version) is not on PATH.")
    got = _run_text([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    if got != version:
        raise SpaceCheckError(f"{exe} is Python {got}, not {version}.")
    return exe


def apt_install(packages: list[str]) -> list[str]:
    """Install the Debian packages that are missing (as Spaces does from packages.txt)."""
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True,
    ).stdout.strip() != "install ok installed"]
    if not missing:
        return []
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _call([*sudo, "apt-get", "update", "-qq"], "apt-get update", env=env)
    _call([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
          f"apt-get install {' '.join(missing)}", env=env)
    return missing


def check_installed(venv: Path, pins: tuple[str, ...]) -> list[str]:
    """pip must have installed exactly the pins: nothing unpinned, nothing forbidden."""
    frozen = _run_text([str(venv / "bin" / "python"), "-m", "pip", "freeze",
                        "--disable-pip-version-check"]).splitlines()
    have = {canonical(n): v for n, _, v in (line.partition("==") for line in frozen) if v}
    want = {canonical(n): v for n, _, v in (p.partition("==") for p in pins)}
    wrong = sorted(f"{n}=={v} (pinned {want[n]})" for n, v in have.items()
                   if n in want and want[n] != v)
    missing = sorted(set(want) - set(have))
    extra = sorted(f"{n}=={v}" for n, v in have.items() if n not in want)
    forbidden = sorted(set(have) & {canonical(n) for n in FORBIDDEN})
    if wrong or missing or forbidden:
        raise SpaceCheckError(f"the Space's venv differs from requirements.txt: wrong versions "
                              f"{wrong}, missing {missing}, forbidden {forbidden}.")
    if extra:
        raise SpaceCheckError(f"pip installed packages requirements.txt does not pin: {extra}.")
    return extra


def _name_version(filename: str) -> tuple[str, str]:
    stem = filename.removesuffix(".tar.gz").removesuffix(".zip").removesuffix(".whl")
    name, _, rest = stem.rpartition("-") if filename.endswith((".tar.gz", ".zip")) \
        else stem.partition("-")
    return canonical(name), rest.split("-")[0]


def build_wheels(venv: Path, wheelhouse: Path, index: list[str]) -> None:
    """Turn downloaded source distributions into wheels once (kept next to them), so the install
    itself needs no index: pip builds them in an isolated environment fetched from ``index``."""
    wheels = {_name_version(f.name) for f in wheelhouse.glob("*.whl")}
    for sdist in sorted(wheelhouse.iterdir()):
        if sdist.name.endswith((".tar.gz", ".zip")) and _name_version(sdist.name) not in wheels:
            _call([str(venv / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-deps",
                   "--disable-pip-version-check", "-w", str(wheelhouse), *index, str(sdist)],
                  f"building a wheel of {sdist.name}")


def prune_wheelhouse(wheelhouse: Path, pins: tuple[str, ...]) -> None:
    """Drop downloaded files that no pin names any more (a wheelhouse must not grow forever)."""
    keep = {(canonical(n), v) for n, _, v in (p.partition("==") for p in pins)}
    for f in wheelhouse.iterdir():
        if _name_version(f.name) not in keep:
            f.unlink()


def boot_and_probe(cmd: list[str], *, cwd: Path, env: dict[str, str], port: int, log: Path,
                   options: CheckOptions, screenshot: Path | None) -> dict:
    """Start ``cmd`` (the app), probe it from a child process, stop it. Times from the start."""
    isolate = options.netns and netns_available()
    if isolate:
        cmd = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
    url = f"http://127.0.0.1:{port}"
    probe_args = {"url": url, "browser": options.browser, "chromium": options.chromium,
                  "screenshot": str(screenshot) if screenshot else None,
                  "timeout_s": options.boot_timeout_s}
    with log.open("w") as log_file:
        started = time.time()
        app = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            probe_cmd = [sys.executable, "-m", "webapp.space_check", "probe",
                         json.dumps(probe_args), str(app.pid)]
            if isolate:
                _wait_for_own_netns(app)
                probe_cmd = ["nsenter", "-t", str(app.pid), "-n", *probe_cmd]
            probe_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                         "GRADIO_ANALYTICS_ENABLED": "False"}
            done = subprocess.run(probe_cmd, cwd=ROOT, env=probe_env, capture_output=True,
                                  text=True, timeout=options.boot_timeout_s + 300)
        finally:
            app.terminate()
            try:
                app.wait(20)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
    app_log = log.read_text(errors="replace")
    if done.returncode != 0:
        raise SpaceCheckError(f"probe failed:\n{done.stderr[-4000:]}\n--- app log ---\n"
                              f"{app_log[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "Traceback" in app_log:
        raise SpaceCheckError(f"the app logged a traceback:\n{app_log[-4000:]}")
    result["boot_to_health_s"] = round(result.pop("health_at") - started, 2)
    result["boot_to_first_call_s"] = round(result.pop("first_call_at") - started, 2)
    result["app_network"] = "loopback only (network namespace)" if isolate else "host network"
    result["app_log_tail"] = app_log[-600:]
    return result


def _wait_for_own_netns(app: subprocess.Popen) -> None:
    """Until ``unshare`` has made its namespace, nsenter would enter ours: wait for it."""
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and app.poll() is None:
        try:
            if os.readlink(f"/proc/{app.pid}/ns/net") != ours:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SpaceCheckError("the app did not enter its own network namespace")


def netns_available() -> bool:
    return (os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter", "ip"))
            and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0)


# -- the probe (a child process inside the app's network namespace) ----------------------------
def probe(url: str, *, browser: bool, chromium: str, screenshot: str | None, timeout_s: float,
          app_pid: int) -> dict:
    out: dict = {}
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                if r.status == 200:
                    out["health"] = json.loads(r.read())
                    break
        except OSError:
            pass
        if not Path(f"/proc/{app_pid}").exists() or _zombie(app_pid):
            raise SystemExit("the app exited during start-up (see its log)")
        if time.time() > deadline:
            raise SystemExit(f"the app was not ready after {timeout_s:.0f} s")
        time.sleep(0.2)
    out["health_at"] = time.time()

    import soundfile as sf
    from gradio_client import Client, handle_file

    downloads = Path(tempfile.mkdtemp(prefix="space-probe-"))
    client = Client(url + "/", verbose=False, download_files=str(downloads))
    t0 = time.time()
    # The page's own event (undocumented, so every input is passed): text, engine, voice, speed,
    # format, cloning clip, player token, then the lesson details left empty (title, teacher,
    # course, loudness, three speaker names, three speaker voices).
    audio_path, _files, metrics, *_ = client.predict(
        SENTENCE, "piper", "en_US-joe-medium", 1.0, "wav", None, "", "", "", "", None,
        "", "", "", None, None, None, api_name="/on_synthesize")
    out["first_call_at"] = time.time()
    info = sf.info(audio_path)
    out["synthesize"] = {"audio_s": round(info.duration, 2), "sample_rate_hz": info.samplerate,
                         "wall_s": round(out["first_call_at"] - t0, 2),
                         "metrics": (metrics or "").strip().split("\n")[0][:200]}
    if info.duration < 1.0:
        raise SystemExit(f"synthesis returned {info.duration:.2f} s of audio for a sentence")

    clip, reference = _clip()
    t0 = time.time()
    text, status, *_ = client.predict(handle_file(str(clip)), "faster-whisper", "tiny.en", "",
                                      True, api_name="/on_transcribe")
    from webapp.pipeline.evaluate import score_text

    wer = score_text(reference, text, normalizer="basic").wer
    out["transcribe"] = {"clip": clip.name, "text": text, "wer": round(wer, 4),
                         "wall_s": round(time.time() - t0, 2), "status": status}
    if wer > 0.25:
        raise SystemExit(f"transcription WER {wer:.1%} on {clip.name}: {text!r}")

    t0 = time.time()
    verdict, _heard, table, *_ = client.predict(
        handle_file(str(clip)), None, reference, "piper", True, 0.85, 0.55, 6.0, None, 0.2,
        "basic", api_name="/on_evaluate")
    rows = table.get("data", []) if isinstance(table, dict) else []
    out["evaluate"] = {"verdict": verdict.split("–")[0].strip(" *"), "metrics": len(rows),
                       "wall_s": round(time.time() - t0, 2),
                       "rows": [[str(c) for c in row[:3]] for row in rows]}
    if not verdict.startswith(("**PASS**", "**FAIL**")) or not rows:
        raise SystemExit(f"the evaluation returned no report: {verdict!r}")

    # The page's own events are undocumented since issue 11 (the API lists the MCP tools):
    # ask for every endpoint.
    with urllib.request.urlopen(url + "/gradio_api/info?all_endpoints=true", timeout=30) as r:
        api = json.loads(r.read())["named_endpoints"]
    out["tts_engines"] = _enum(api["/on_synthesize"], "engine_name")
    out["stt_engines"] = _enum(api["/on_transcribe"], "engine_name")
    out["missing_engine"] = _missing_engine(url)

    if browser:
        out["page"] = _page(url, chromium, screenshot)
    shutil.rmtree(downloads, ignore_errors=True)
    return out


def _clip() -> tuple[Path, str]:
    rows = [line.split("\t", 1) for line in
            (SPEECH / "transcripts.tsv").read_text("utf-8").splitlines()[1:] if line.strip()]
    name, text = rows[0]
    return SPEECH / name, text.strip()


def _enum(endpoint: dict, parameter: str) -> list[str]:
    for p in endpoint["parameters"]:
        if p["parameter_name"] == parameter:
            return list(p["type"].get("enum", []))
    return []


def _missing_engine(url: str) -> dict:
    """An engine the Space does not install, asked for over HTTP: 503 with what to install."""
    body = json.dumps({"text": "Hello.", "engine": "coqui"}).encode()
    request = urllib.request.Request(url + "/api/synthesize", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return {"status": r.status, "detail": "coqui answered: it is installed"}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "detail": json.loads(exc.read()).get("detail", "")}


def _page(url: str, chromium: str, screenshot: str | None) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            t0 = time.time()
            page.goto(url + "/", wait_until="domcontentloaded")
            note = page.locator("#public-note")
            note.wait_for(state="visible", timeout=60_000)
            page.locator("#tts-run").wait_for(state="visible", timeout=60_000)
            tabs = [t.strip() for t in page.get_by_role("tab").all_inner_texts()]
            result = {"note": note.inner_text().strip(), "tabs": tabs,
                      "load_s": round(time.time() - t0, 2), "errors": errors}
            if screenshot:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=screenshot, full_page=True)
                result["screenshot"] = screenshot
        finally:
            browser.close()
    if "public demo on a shared CPU" not in result["note"]:
        raise SystemExit(f"the page does not say it is a public demo: {result['note']!r}")
    if not {"Synthesize", "Transcribe", "Evaluate"} <= set(tabs):
        raise SystemExit(f"the page's tabs are {tabs}")
    return result


# -- small helpers -----------------------------------------------------------------------------
def du_mb(path: Path) -> float:
    """Disk usage in MiB (as ``du -sk`` counts it)."""
    out = _run_text(["du", "-sk", str(path)])
    return round(int(out.split()[0]) / 1024, 1)


def largest(venv: Path, n: int = 8) -> dict[str, float]:
    site = next((venv / "lib").glob("python3*/site-packages"))
    sizes = {p.name: du_mb(p) for p in site.iterdir() if p.is_dir()}
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:n])


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text("utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def _run_text(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def _call(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SpaceCheckError(f"{what} failed (exit {done.returncode}):\n"
                              f"{(done.stdout + done.stderr)[-4000:]}")


if __name__ == "__main__" and sys.argv[1:2] == ["probe"]:
    _args = json.loads(sys.argv[2])
    print(json.dumps(probe(_args["url"], browser=_args["browser"], chromium=_args["chromium"],
                           screenshot=_args["screenshot"], timeout_s=_args["timeout_s"],
                           app_pid=int(sys.argv[3]))))
