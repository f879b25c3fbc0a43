"""Fuzzing for the issue "Safe in front of the public": every HTTP route and every Gradio API
endpoint gets random and hostile inputs; no answer may be a server error, and the server stays
up.

* HTTP routes (``test_every_http_route``): schemathesis builds requests from the app's own
  OpenAPI schema (``/api/openapi.json``), for whatever operations it lists: schema-valid ones
  (checked for status, content type, headers and body conformance), schema-violating ones
  (must be refused with a 4xx) and schema-typed hostile ones (path-like names, control
  characters, texts over the limits, extreme numbers, odd headers). Then bodies no generator
  makes (NaN, deep nesting, bad encodings, 3 MB declared or streamed) and traversal in URLs.
* Gradio API (``test_every_gradio_endpoint``): ``gradio_client`` lists the endpoints
  (``view_api``) and hypothesis builds arguments from each parameter's declared type: huge,
  empty, unicode and control-character text, extreme numbers, unknown engine/voice/model
  names, path-like strings, files with random bytes, truncated or lying WAV headers (1000
  channels, 1 Hz, 4 GB), NaN samples, silence, stereo, real clips, hostile CSV manifests and
  lexicons, and now and then a wrongly typed value. Deterministic passes add every odd file in
  every file input, Dropdown values sent as lists (Gradio lets those through), and raw JSON to
  Gradio's REST API (server paths and URLs as FileData, NaN and infinity).
* Public mode (``test_public_mode``): the same on a ``SPEECH_STUDIO_PUBLIC`` server with an
  operator token, plus sessions that save a hostile lexicon and synthesise with it.

A Gradio call either returns or fails with a readable sentence (no traceback, exception class
name or server path). After every case ``GET /api/health`` must answer 200, and nothing may
have been logged at ERROR level or escaped a handler (the server runs in this process, so its
logs are watched directly). Bugs found in code this file's author could not change are kept as
strict xfails (``REPORTED``), and the fuzzing passes steer around them.

The app is served by uvicorn on a free loopback port in a background thread, with real models
(Piper, faster-whisper tiny.en), offline. Examples are bounded and derandomized (a run is
reproducible: the same cases every time); the file runs in about two minutes on two cores and
prints a summary ending in "N fuzz cases, M server errors".
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
from paths import SPEECH  # tests/paths.py

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import httpx  # noqa: E402
import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

# -- bounds (the whole file runs in about two minutes on two cores) ------------------------------
HTTP_EXAMPLES = 25
GRADIO_EXAMPLES = 8  # per Gradio endpoint, on top of the deterministic passes
CALL_TIMEOUT_S = 120.0
SLOW_CALL_S = 60.0  # a single fuzz request holding the server this long is a finding (DoS)

FUZZ_SETTINGS = dict(
    deadline=None, derandomize=True, database=None,
    # No shrinking: a failure is reported with the input that caused it, and a slow endpoint
    # must not spend minutes minimising it.
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)

# -- what the session ran ------------------------------------------------------------------------
CASES: Counter[str] = Counter()
SERVER_ERRORS: Counter[str] = Counter()
REFUSALS: Counter[str] = Counter()  # AppError with a readable message (expected for bad input)
FRAMEWORK: Counter[str] = Counter()  # refused by Gradio's input validation (wrong type)
STATUSES: dict[str, Counter[int]] = {}  # HTTP status codes seen per route
SECONDS: Counter[str] = Counter()  # time spent per route/endpoint


@pytest.fixture(scope="module", autouse=True)
def fuzz_summary():
    yield
    total = sum(CASES.values())
    lines = []
    for k in sorted(CASES):
        detail = (", ".join(f"{n}x {code}" for code, n in sorted(STATUSES[k].items(), key=str))
                  if k in STATUSES else f"{CASES[k] - REFUSALS[k] - FRAMEWORK[k]} answered, "
                  f"{REFUSALS[k]} refused with a message, {FRAMEWORK[k]} wrongly typed "
                  "inputs refused by Gradio")
        lines.append(f"{CASES[k]:4d}  {k}  ({detail}; {SECONDS[k]:.1f} s)")
    print("\n\nFuzz summary (cases per route/endpoint):\n  " + "\n  ".join(lines))
    known = sum(v for k, v in SERVER_ERRORS.items() if "(reported bug)" in k)
    print(f"{total} fuzz cases, {sum(SERVER_ERRORS.values()) - known} server errors"
          + (f" (and {known} from bugs already reported, kept as strict xfails)" if known else ""))


# -- the server, in this process ------------------------------------------------------------------
@dataclass
class ServerProblems:
    """What went wrong on the server side: ERROR log records and exceptions that escaped a
    handler (Gradio prints a traceback for them; ``gr.Error`` is the expected refusal).

    Gradio refuses a wrongly typed API payload (a number where a file is declared) while it
    validates the inputs, before any of our code runs: those are the framework's refusals,
    counted apart (``framework``), not server errors."""

    items: list[str] = field(default_factory=list)
    framework: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, text: str) -> None:
        with self.lock:
            self.items.append(text)

    def add_framework(self, text: str) -> None:
        with self.lock:
            self.framework.append(text)

    def take(self) -> list[str]:
        with self.lock:
            items, self.items = self.items, []
        return items

    def take_framework(self) -> list[str]:
        with self.lock:
            items, self.framework = self.framework, []
        return items


def _in_input_validation(tb) -> bool:
    """The exception comes from Gradio validating the inputs, with none of our code involved."""
    frames = traceback.extract_tb(tb)
    ours = any(f.filename.startswith(str(REPO / "webapp")) for f in frames)
    return not ours and any(f.name == "preprocess_data" for f in frames)


class _ErrorLog(logging.Handler):
    def __init__(self, problems: ServerProblems) -> None:
        super().__init__(level=logging.ERROR)
        self.problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.problems.add(text)


@dataclass
class LiveServer:
    url: str
    services: object
    problems: ServerProblems
    data_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(settings, *, with_stt: bool, preload: bool = True):
    """The app (``create_app(build_services(settings))``) on a free loopback port, in a thread
    of this process, with its errors watched."""
    import gradio
    import uvicorn

    from webapp.app import create_app
    from webapp.services import build_services

    services = build_services(settings, with_stt=with_stt, preload=preload)
    app = create_app(services)
    problems = ServerProblems()

    # Gradio prints a traceback for every exception a handler raises: a gr.Error is the
    # handler's readable refusal (kept quiet here), anything else escaped it.
    previous_print_exc = traceback.print_exc

    def watch_print_exc(*args, **kwargs):
        exc = sys.exc_info()[1]
        if isinstance(exc, gradio.Error):
            return None
        if _in_input_validation(sys.exc_info()[2]):
            problems.add_framework(f"{type(exc).__name__}: {exc}")
            return None
        problems.add("unhandled exception in a Gradio handler:\n" + traceback.format_exc())
        return None

    handler = _ErrorLog(problems)
    logging.getLogger().addHandler(handler)
    traceback.print_exc = watch_print_exc
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                            log_level="warning", timeout_graceful_shutdown=1)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="fuzz-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", services, problems, settings.data_dir)
    finally:
        # Streams the client left open (Gradio's heartbeat) are cut at shutdown: not a finding.
        traceback.print_exc = previous_print_exc
        logging.getLogger().removeHandler(handler)
        uvicorn_log = logging.getLogger("uvicorn.error")
        level = uvicorn_log.level
        uvicorn_log.setLevel(logging.CRITICAL)
        uv.should_exit = True
        thread.join(15)
        uvicorn_log.setLevel(level)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app as it runs on a teacher's computer: private mode, every model loaded."""
    from webapp.config import Settings

    with serve(Settings(data_dir=tmp_path_factory.mktemp("fuzz-data")), with_stt=True) as live:
        yield live


def assert_server_healthy(live: LiveServer, label: str, what: str) -> None:
    """After each case: the server answers, and nothing went wrong behind the answer."""
    try:
        r = httpx.get(live.url + "/api/health", timeout=30)
    except httpx.HTTPError as exc:
        SERVER_ERRORS[label] += 1
        pytest.fail(f"{label}: the server stopped answering after {what}: {exc}")
    if r.status_code != 200:
        SERVER_ERRORS[label] += 1
        pytest.fail(f"{label}: /api/health answered {r.status_code} after {what}")
    problems = live.problems.take()
    if problems:
        SERVER_ERRORS[label] += 1
        pytest.fail(f"{label}: server-side error after {what}:\n" + "\n".join(problems))


# -- hostile values ------------------------------------------------------------------------------
PATHS = ["/etc/passwd", "../../x", "../../../../etc/passwd", "file:///etc/passwd",
         "C:\\Windows\\win.ini", "~/.ssh/id_rsa", "/proc/self/environ", "\\\\host\\share",
         "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:1/x.wav"]
NAMES = ["", " ", "unknown", "piper ", "PIPER", "coqui", "espeak", "en_GB-alan-medium",
         "tts_models/en/ljspeech/vits", "local/../../etc", "tiny", "large-v3", "base.en", "null",
         "None", "0", "a" * 300, "piper\x00", "🙂", "<script>alert(1)</script>"]
TEXTS = ["", " ", "\n\n\t", "\x00", "\x00\x01\x02\x1b[31m\x7f", "\u202eevil\u202c",
         "\ufeff\u200b\u200d", "é" * 50, "💥🙂" * 40, "١٢٣٤", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Ω≈ç√∫˜µ≤≥÷",
         "[pause 10s]" * 5, "[pause 99999s]", "[pause -1s] [pause nan s] [pause]",
         "1e308 % 10^999 9" * 3, "H2O + CO2 → C6H12O6", "=cmd|' /C calc'!A0",
         "{{7*7}} ${jndi:ldap://x} %s%s%s %n", "' OR 1=1 --", "Dr. e.g. i.e. vs. etc." * 3,
         ] + PATHS
# (piece, times): texts at and over the limits, built on demand
HUGE = [("a", 2001), (".", 19_000), ("\u200b", 19_000), (" ", 19_999),
        ("a", 20_001), ("[pause 10s] ", 2_000), ("x", 100_000)]
NUMBERS = [math.nan, math.inf, -math.inf, -1.0, 0.0, -0.0, 1e-300, 5e-324, 1e308, -1e308,
           2.0 ** 63, 0.49, 2.01, 7.0, 1.0, 0.5, 2.0]


def hostile_text(max_size: int = 300) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(TEXTS), st.sampled_from(HUGE).map(lambda h: h[0] * h[1]),
                     st.text(max_size=max_size),
                     st.text(st.characters(codec="utf-8"), max_size=max_size))


def hostile_name(choices=()) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(list(choices) or ["x"]), st.sampled_from(NAMES + PATHS),
                     st.text(max_size=40))


def hostile_number(finite: bool = False) -> st.SearchStrategy[float]:
    """``finite``: for JSON encoders that refuse NaN and infinities (gradio_client's); the raw
    tests send those as JSON extensions."""
    numbers = [n for n in NUMBERS if math.isfinite(n)] if finite else NUMBERS
    return st.one_of(st.sampled_from(numbers),
                     st.floats(allow_nan=not finite, allow_infinity=not finite),
                     st.integers(-(2 ** 70), 2 ** 70))


# -- HTTP routes: schemathesis against the OpenAPI schema -----------------------------------------
def _checks(full: bool):
    """Schemathesis' checks; 5xx are judged by ``server_error`` (a 503 may be a refusal)."""
    from schemathesis.specs.openapi import checks as oc

    if not full:  # input outside the schema: refused with a 4xx
        return [oc.negative_data_rejection]
    return [oc.status_code_conformance, oc.content_type_conformance,
            oc.response_headers_conformance, oc.response_schema_conformance]


def server_error(status: int, headers, body: bytes) -> str | None:
    """Why an HTTP answer is a server error (None when it is not). 503 is a refusal when it
    says when to come back (Retry-After: busy) or why (a JSON detail: a model that is not
    installed here); 500 and the rest never are."""
    if status < 500:
        return None
    if status == 503:
        retry_after = headers.get("retry-after") or ""
        retry_after = retry_after[0] if isinstance(retry_after, list) else retry_after
        if retry_after.isdigit():
            return None
        try:
            detail = json.loads(body).get("detail")
        except (ValueError, AttributeError):
            detail = None
        if isinstance(detail, str) and len(detail.split()) >= 3:
            return None
    return f"{status}: {body[:300]!r}"


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _value_for(spec: dict, node: dict) -> st.SearchStrategy:
    node = _resolve(spec, node)
    if "anyOf" in node:
        return st.one_of([_value_for(spec, n) for n in node["anyOf"]])
    kind = node.get("type")
    if kind == "string":
        return hostile_name(node.get("enum", ())) | hostile_text()
    if kind in ("number", "integer"):
        finite = [n for n in NUMBERS if math.isfinite(n)]  # JSON has no NaN (see the raw test)
        return st.sampled_from(finite) | st.integers(-(2 ** 70), 2 ** 70)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.none()


HOSTILE_HEADERS = [
    {}, {"X-Forwarded-For": "1.2.3.4, 5.6.7.8"}, {"X-Forwarded-For": "x" * 4000},
    {"X-Forwarded-For": ""}, {"Authorization": "Bearer " + "A" * 500},
    {"Accept": "application/xml"}, {"Accept-Encoding": "gzip;q=abc"}, {"Range": "bytes=9999-"},
    {"Cookie": "session=../../etc/passwd"}, {"Origin": "http://evil.example"},
]


def _hostile_cases(spec: dict, operation) -> st.SearchStrategy:
    """Schema-typed requests whose values are hostile: path-like names, control characters,
    texts over the limits, extreme numbers (schemathesis' own values are mostly benign)."""
    op = spec["paths"][operation.path][operation.method.lower()]
    path_params = {p["name"]: _value_for(spec, p.get("schema", {}))
                   for p in op.get("parameters", []) if p.get("in") == "path"}
    body = (op.get("requestBody", {}).get("content", {}).get("application/json", {})
            .get("schema"))
    body_strategy = st.just(None)
    if body is not None:
        props = _resolve(spec, body).get("properties", {})
        required = set(_resolve(spec, body).get("required", []))
        body_strategy = st.fixed_dictionaries(
            {k: _value_for(spec, v) for k, v in props.items() if k in required},
            optional={k: _value_for(spec, v) for k, v in props.items() if k not in required})

    def build(path_values, body_value, headers):
        kwargs = {"path_parameters": path_values} if path_values else {}
        if body is not None:
            kwargs.update(body=body_value, media_type="application/json")
        return operation.Case(headers=headers, **kwargs)

    return st.builds(build, st.fixed_dictionaries(path_params), body_strategy,
                     st.sampled_from(HOSTILE_HEADERS))


def _case_strategy(spec: dict, operation) -> st.SearchStrategy:
    from schemathesis.generation import GenerationMode

    strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    if operation.body or any(True for _ in operation.iter_parameters()):
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    strategies.append(_hostile_cases(spec, operation))
    return st.one_of(strategies)


H11_MAX_HEAD_BYTES = 16 * 1024  # h11's default max_incomplete_event_size, which uvicorn keeps


def _head_bytes(case, live: LiveServer) -> int:
    """Size of the request line and headers ``case`` sends (URL-encoded)."""
    kwargs = case.as_transport_kwargs(base_url=live.url)
    prepared = requests.Request(kwargs["method"], kwargs["url"], headers=kwargs["headers"],
                                params=kwargs.get("params")).prepare()
    return len(prepared.url) + sum(len(k) + len(str(v)) + 4 for k, v in prepared.headers.items())


def _is_negative(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_negative


def fuzz_operation(live: LiveServer, spec: dict, operation, *, examples: int = HTTP_EXAMPLES,
                   prefix: str = "HTTP") -> None:
    label = f"{prefix} {operation.label}"
    STATUSES.setdefault(label, Counter())

    @settings(max_examples=examples, **FUZZ_SETTINGS)
    @given(case=_case_strategy(spec, operation))
    def run(case):
        CASES[label] += 1
        live.problems.take(), live.problems.take_framework()  # a failed case's leftovers
        started = time.monotonic()
        try:
            response = case.call(base_url=live.url, timeout=CALL_TIMEOUT_S)
        except requests.ConnectionError:
            # uvicorn (h11) closes the connection on a request line or headers over 16 KB:
            # a refusal at the transport, fine for a request that large (and only for one).
            if _head_bytes(case, live) <= H11_MAX_HEAD_BYTES:
                raise
            STATUSES[label]["closed (request head over 16 KB)"] += 1
            assert_server_healthy(live, label, case.as_curl_command()[:300])
            return
        SECONDS[label] += time.monotonic() - started
        STATUSES[label][response.status_code] += 1
        error = server_error(response.status_code, response.headers, response.content)
        if error:
            SERVER_ERRORS[label] += 1
            pytest.fail(f"{label}: {error}\n{case.as_curl_command()[:2000]}")
        case.validate_response(response, checks=_checks(full=not _is_negative(case)))
        if response.status_code in (429, 503):
            retry_after = response.headers.get("retry-after") or [""]  # schemathesis: lists
            assert retry_after[0].isdigit(), f"{label}: {response.status_code} without Retry-After"
        assert_server_healthy(live, label, case.as_curl_command())

    run()


# The schemathesis pytest plugin's lazy loader (``schemathesis.pytest.from_fixture``) fails on
# pytest 9.2 ("'Function' object has no attribute '_nodeid'"), and its eager loader would need
# the server at collection time: the operations are walked here instead, one subtest each.
@pytest.mark.timeout(300)
def test_every_http_route(server, subtests):
    spec = httpx.get(server.url + "/api/openapi.json", timeout=30).json()
    api = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in api.get_all_operations()]
    assert operations, "the OpenAPI schema lists no operation"
    for operation in operations:
        with subtests.test(msg=operation.label):
            fuzz_operation(server, spec, operation)


# Bodies a JSON generator never produces: JSON extensions (NaN), nesting deep enough to hit the
# parser's recursion limit, bad encodings, the wrong media type, and bodies over the size limit,
# declared or streamed.
RAW_BODIES: list[tuple[str, bytes, dict[str, str]]] = [
    ("NaN speed", b'{"text": "Hello.", "speed": NaN}', {}),
    ("Infinity speed", b'{"text": "Hello.", "speed": Infinity}', {}),
    ("-Infinity speed", b'{"text": "Hello.", "speed": -Infinity}', {}),
    ("1e999 speed", b'{"text": "Hello.", "speed": 1e999}', {}),
    ("deep nesting", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}),
    ("deep object", b'{"text": "a", "x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}", {}),
    ("invalid UTF-8", b'{"text": "\xff\xfe\xc0\x80"}', {}),
    ("lone surrogate", b'{"text": "\\ud800"}', {}),
    ("NUL in text", b'{"text": "a\\u0000b"}', {}),
    ("duplicate keys", b'{"text": "a", "text": "b", "format": "wav", "format": "exe"}', {}),
    ("voice not installed", b'{"text": "Hello.", "voice": "en_GB-alan-medium"}', {}),
    ("empty body", b"", {}),
    ("null", b"null", {}),
    ("array", b"[]", {}),
    ("number", b"123", {}),
    ("text/plain", b'{"text": "Hello."}', {"Content-Type": "text/plain"}),
    ("form", b"text=Hello.", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("multipart garbage", b"--x\r\n\r\n", {"Content-Type": "multipart/form-data; boundary=x"}),
    ("charset lie", '{"text": "é"}'.encode("utf-16"), {"Content-Type": "application/json; charset=utf-8"}),
    ("3 MB body", b'{"text": "' + b"a" * 3_000_000 + b'"}', {}),
]


def _chunked(size: int):
    yield b'{"text": "'
    for _ in range(size // 65536):
        yield b"a" * 65536
    yield b'"}'


@pytest.mark.timeout(120)
def test_http_routes_refuse_malformed_bodies(server):
    """Every route that takes a body, with bodies no schema-based generator makes."""
    spec = httpx.get(server.url + "/api/openapi.json", timeout=30).json()
    with httpx.Client(base_url=server.url, timeout=CALL_TIMEOUT_S) as client:
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                label = f"HTTP {method.upper()} {path}"
                STATUSES.setdefault(label, Counter())
                url = re.sub(r"\{[^}]+\}", "x" * 32, path)
                cases = []
                if "requestBody" in op:
                    cases += [(name, dict(content=body, headers={
                        "Content-Type": "application/json", **headers}))
                        for name, body, headers in RAW_BODIES]
                    cases.append(("3 MB chunked", dict(
                        content=_chunked(3_000_000), headers={"Content-Type": "application/json"})))
                # Methods the route does not have, and query strings it does not expect.
                other = next(m for m in ("put", "delete", "patch", "get", "post") if m not in ops)
                cases.append((f"{other.upper()} instead", dict(method=other.upper())))
                cases.append(("junk query", dict(params={"a" * 100: "b" * 5000, "%00": ""})))
                for name, kwargs in cases:
                    CASES[label] += 1
                    response = client.request(kwargs.pop("method", method.upper()), url, **kwargs)
                    STATUSES[label][response.status_code] += 1
                    what = f"{name} ({method.upper()} {url})"
                    error = server_error(response.status_code, response.headers,
                                         response.content)
                    if error:
                        SERVER_ERRORS[label] += 1
                        pytest.fail(f"{label}: {what} answered {error}")
                    assert_server_healthy(server, label, what)


@pytest.mark.timeout(60)
def test_http_paths_stay_inside_the_api(server):
    """Traversal and odd tokens in the URL path: a 4xx, never a file or a server error."""
    label = "HTTP GET (hostile paths)"
    STATUSES.setdefault(label, Counter())
    paths = ["/api/tts/live/..%2F..%2F..%2Fetc%2Fpasswd", "/api/tts/live/%2e%2e/%2e%2e/etc/passwd",
             "/api/tts/live/" + "a" * 10_000, "/api/tts/live/%00", "/api/tts/live/%ff%fe",
             "/api/../../etc/passwd", "/api/health/../../../etc/passwd", "/api/%2e%2e/openapi.json",
             "/file=/etc/passwd", "/gradio_api/file=/etc/passwd",
             "/gradio_api/file=../../../../etc/passwd", "/static/../../../etc/passwd",
             "/api/tts/live/" + "A" * 32 + "?token=" + "B" * 32]
    paths.append("/api/tts/live/" + "%E2%80%8B" * 20_000)  # a 180 KB request line
    with requests.Session() as client:  # httpx refuses to send a URL that long
        for path in paths:
            CASES[label] += 1
            try:
                response = client.get(server.url + path, timeout=CALL_TIMEOUT_S)
            except requests.ConnectionError:
                assert len(path) > H11_MAX_HEAD_BYTES, f"GET {path[:80]}: connection dropped"
                STATUSES[label]["closed (request head over 16 KB)"] += 1
                assert_server_healthy(server, label, f"GET {path[:80]}…")
                continue
            STATUSES[label][response.status_code] += 1
            assert response.status_code < 500, f"GET {path}: {response.status_code}"
            assert "root:x:0:0" not in response.text, f"GET {path} served /etc/passwd"
            assert_server_healthy(server, label, f"GET {path}")


@pytest.mark.parametrize("body", [b'{"text": NaN}', b'{"text": "Hi.", "voice": Infinity}',
                                  b'{"text": "Hi.", "format": -Infinity}', b'{"text": [NaN]}'])
@pytest.mark.timeout(60)
def test_http_nan_where_text_is_expected_is_refused(server, body):
    label = "HTTP POST /api/synthesize (reported bug)"
    CASES[label] += 1
    STATUSES.setdefault(label, Counter())
    response = httpx.post(server.url + "/api/synthesize", content=body, timeout=30,
                          headers={"Content-Type": "application/json"})
    STATUSES[label][response.status_code] += 1
    server.problems.take()  # the 500 is the finding; the log records are its echo
    if response.status_code != 422:
        SERVER_ERRORS[label] += 1
        pytest.fail(f"{response.status_code}: {response.text[:200]}", pytrace=False)


# -- Gradio API: gradio_client + hypothesis -------------------------------------------------------
def _encoded(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    return _encoded(samples, rate, "WAV", subtype)


def _lying_wav(channels: int, rate: int, payload: bytes, *, bits: int = 16,
               data_bytes: int | None = None) -> bytes:
    """A PCM WAV header that says whatever we like, followed by ``payload``."""
    data_bytes = len(payload) if data_bytes is None else data_bytes
    block = channels * bits // 8
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", (36 + data_bytes) & 0xFFFFFFFF, b"WAVE",
                         b"fmt ", 16, 1, channels, rate, (rate * block) & 0xFFFFFFFF,
                         block & 0xFFFF, bits, b"data", data_bytes & 0xFFFFFFFF)
    return header + payload


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Files to upload: broken, lying, silent, odd and real audio, and CSV files."""
    folder = tmp_path_factory.mktemp("fuzz-files")
    rng = np.random.default_rng(0)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes | str) -> None:
        path = folder / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        files[name] = path

    real = (SPEECH / "cards" / "001.wav").read_bytes()
    speech, rate = sf.read(SPEECH / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav",
                           dtype="float32")
    t = np.arange(2 * 16000) / 16000
    put("random.wav", rng.bytes(4096))
    put("random.mp3", rng.bytes(4096))
    put("random.bin", rng.bytes(4096))
    put("text.wav", "this is not audio, just a text file with a .wav name\n")
    put("empty.wav", b"")
    put("truncated-header.wav", real[:30])
    put("truncated-data.wav", real[:1000])
    put("channels-1000.wav", _lying_wav(1000, 16000, rng.bytes(8000)))
    put("rate-1hz.wav", _lying_wav(1, 1, np.zeros(20, "<i2").tobytes()))
    put("rate-1hz-hours.wav",  # 20,000 samples at 1 Hz: five and a half hours
        _lying_wav(1, 1, rng.integers(-3000, 3000, 20_000, dtype="<i2").tobytes()))
    put("rate-0.wav", _lying_wav(1, 0, np.zeros(1600, "<i2").tobytes()))
    put("data-size-4gb.wav", _lying_wav(1, 16000, real[44:], data_bytes=0xFFFFFFF0))
    put("one-sample.wav", _wav_bytes(np.zeros(1, "float32"), 16000))
    put("silence.wav", _wav_bytes(np.zeros(2 * 16000, "float32"), 16000))
    put("clipped.wav", _wav_bytes(np.sign(np.sin(2 * np.pi * 220 * t)).astype("float32"), 16000))
    put("nan-inf.wav", _wav_bytes(np.array([np.nan, np.inf, -np.inf, 0.5] * 8000, "float32"),
                                  16000, "FLOAT"))
    stereo = np.stack([speech, rng.normal(0, 0.05, len(speech)).astype("float32")], axis=1)
    put("stereo-44k.wav", _wav_bytes(
        np.repeat(stereo, 2, axis=0)[: len(stereo) * 2], 44100))  # not resampled: pitch shifts
    put("speech-8k.wav", _wav_bytes(speech[::2], 8000))
    put("speech.flac", _encoded(speech, rate, "FLAC"))
    put("speech.ogg", _encoded(speech, rate, "OGG"))
    put("001.wav", real)
    put("0880.wav", _wav_bytes(speech, rate))
    # CSV files: pronunciation lexicons and evaluation manifests.
    put("lexicon.csv", "term,respelling,case_sensitive\nATP,A T P,yes\nNguyen,win,no\n")
    put("lexicon-hostile.csv",
        "term,respelling,case_sensitive\n=cmd|' /C calc'!A0,calc,yes\nthe,[pause 10s],no\n"
        "a\x01b,c,no\n,empty,no\nx,,no\n" + "long," + "y" * 5000 + ",no\n")
    put("lexicon-latin1.csv", "term,respelling\nCafé,ka fay\n".encode("latin-1"))
    put("lexicon-big.csv", "term,respelling\n" + "".join(f"term{i},respelling {i}\n"
                                                         for i in range(6000)))
    put("random.csv", rng.bytes(2048))
    put("manifest.csv", "text,reference,candidate\nThat was a rare gift.,001.wav,0880.wav\n")
    put("manifest-synth.csv", "text,reference\nHello there.,001.wav\n")
    put("manifest-hostile.csv", "text,reference,candidate\n" + "".join(
        f'"x",{json.dumps(p)},001.wav\n' for p in PATHS[:6]) + '=HYPERLINK("http://x"),001.wav,\n')
    put("manifest-many.csv", "text,reference,candidate\n" + "x,missing.wav,missing.wav\n" * 600)
    put("manifest-header-only.csv", "text,reference,candidate\n")
    put("manifest-semicolons.csv", "text;reference\n1;2\n")
    put("manifest-quotes.csv", 'text,reference\n"unterminated,001.wav\n')
    return files


AUDIO_FILES = ("random.wav", "random.mp3", "random.bin", "text.wav", "empty.wav",
               "truncated-header.wav", "truncated-data.wav", "channels-1000.wav", "rate-1hz.wav",
               "rate-1hz-hours.wav", "rate-0.wav", "data-size-4gb.wav", "one-sample.wav",
               "silence.wav", "clipped.wav", "nan-inf.wav", "stereo-44k.wav", "speech-8k.wav",
               "speech.flac", "speech.ogg", "001.wav", "0880.wav")
# Odd audio that decodes (so a model runs on it) and costs a second or so per call.
DECODABLE = frozenset(("truncated-data.wav", "data-size-4gb.wav", "one-sample.wav", "silence.wav",
                       "clipped.wav", "nan-inf.wav", "stereo-44k.wav", "speech-8k.wav",
                       "speech.ogg"))
# The corpus pass's share (time budget): no real clips, one file per kind of oddity.
ODD_AUDIO = tuple(n for n in AUDIO_FILES
                  if n not in ("001.wav", "0880.wav", "random.bin", "rate-1hz.wav", "speech.flac"))
CSV_FILES = ("lexicon.csv", "lexicon-hostile.csv", "lexicon-latin1.csv", "lexicon-big.csv",
             "random.csv", "manifest.csv", "manifest-synth.csv", "manifest-hostile.csv",
             "manifest-many.csv", "manifest-header-only.csv", "manifest-semicolons.csv",
             "manifest-quotes.csv")
# Strings where a file is expected: the server must never read a path it was not sent.
SERVER_FILES = ["/etc/passwd", str(SPEECH / "cards" / "001.wav"), "../../etc/passwd",
                "file:///etc/passwd", "http://169.254.169.254/latest/meta-data/"]
WRONG_TYPES = st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.booleans(),
                        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _file_value(corpus: dict[str, Path], component: str) -> st.SearchStrategy:
    """Mostly the kind of file the widget is for (audio for gr.Audio, CSV for a file picker),
    sometimes anything."""
    from gradio_client import handle_file

    usual = AUDIO_FILES if component == "audio" else CSV_FILES
    return _mostly(st.sampled_from(usual), st.sampled_from(sorted(corpus))).map(
        lambda n: handle_file(str(corpus[n])))


def _dataframe_value(default, well_formed: bool) -> st.SearchStrategy:
    headers = (default or {}).get("headers") or ["a", "b", "c"]
    cell = st.one_of(hostile_text(60), st.booleans(), st.none(), hostile_number(finite=True))
    if well_formed:  # the table's own shape, hostile cells, sometimes thousands of rows
        rows = st.lists(st.lists(cell, min_size=len(headers), max_size=len(headers)),
                        max_size=12)
        many = st.sampled_from([300, 2_500]).map(
            lambda n: [[f"term{i}", f"respelling {i}", i % 2 == 0] for i in range(n)])
        return st.fixed_dictionaries({"headers": st.just(headers), "data": rows | many,
                                      "metadata": st.none()})
    return st.fixed_dictionaries({
        "headers": st.lists(st.text(max_size=8), max_size=5),
        "data": st.lists(st.lists(cell, max_size=len(headers) + 2), max_size=6),
        "metadata": st.none() | st.dictionaries(st.text(max_size=5), st.none(), max_size=2),
    })


def param_strategy(param: dict, corpus: dict[str, Path]
                   ) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    """Values for one parameter of a Gradio endpoint, from its declared type: (well-typed but
    hostile values, wrongly typed values)."""
    kind = param["python_type"]["type"]
    schema_ = param.get("type") or {}
    component = param.get("component", "").lower()
    wrong = WRONG_TYPES
    if "filepath" in kind:
        one = _file_value(corpus, component)
        good = (st.lists(one, max_size=4) | _manifest_bundle(corpus)) if kind.startswith("list") \
            else one
        # A server path where a file is expected: the server must never read a path it was
        # not sent (Gradio wants an uploaded FileData; the raw test sends FileData paths too).
        wrong = WRONG_TYPES | st.sampled_from(SERVER_FILES)
    elif component == "dataframe":
        good = _dataframe_value(param.get("parameter_default"), well_formed=True)
        wrong = WRONG_TYPES | _dataframe_value(param.get("parameter_default"), well_formed=False)
    elif schema_.get("type") == "string" and "enum" in schema_:
        # Gradio refuses a value outside the choices before our code runs: mostly valid
        # choices, so that the other arguments reach the handler.
        good = _mostly(st.sampled_from(schema_["enum"]), hostile_name(schema_["enum"]))
        # Gradio's Dropdown checks each item of a list against the choices and then hands the
        # list to a single-choice handler: valid choices in a list reach our code.
        wrong = WRONG_TYPES | st.lists(st.sampled_from(schema_["enum"]), max_size=2)
    elif schema_.get("type") == "string":
        good = hostile_text()
    elif schema_.get("type") in ("number", "integer"):
        good = hostile_number(finite=True)
        bounds = re.search(r"between (\S+) and (\S+)", schema_.get("description", ""))
        if bounds:  # a slider: Gradio refuses values outside its range
            low, high = float(bounds.group(1)), float(bounds.group(2))
            good = _mostly(st.sampled_from([low, high, (low + high) / 2])
                           | st.floats(low, high), good)
    elif schema_.get("type") == "boolean":
        good = st.booleans()
    else:
        good = hostile_text(40)
    if param.get("parameter_has_default"):
        good = st.one_of(good, st.just(param.get("parameter_default")))
    return good, wrong


def _mostly(usual: st.SearchStrategy, rare: st.SearchStrategy, one_in: int = 5):
    return st.integers(1, one_in).flatmap(lambda i: rare if i == 1 else usual)


def args_strategy(params: list[dict], corpus: dict[str, Path]) -> st.SearchStrategy[list]:
    """Mostly well-typed arguments (each may be None, a cleared widget); one example in five
    has wrongly typed ones (a list for a dropdown, a number for a file), which Gradio's input
    validation or our handler must refuse."""
    typed = [param_strategy(p, corpus) for p in params]
    good = st.tuples(*[_mostly(g, st.none(), 10) for g, _ in typed])
    bad = st.tuples(*[_mostly(g, w, 3) for g, w in typed])
    return _mostly(good, bad).map(list)


def _manifest_bundle(corpus: dict[str, Path]) -> st.SearchStrategy:
    """A manifest plus audio files (what the batch endpoint is for)."""
    from gradio_client import handle_file

    manifests = [n for n in CSV_FILES if n.startswith("manifest")]
    return st.tuples(st.sampled_from(manifests),
                     st.lists(st.sampled_from(AUDIO_FILES), max_size=3)).map(
        lambda mt: [handle_file(str(corpus[n])) for n in (mt[0], "001.wav", *mt[1])])


# What a visitor must never be shown: tracebacks, exception class names, internals, server paths.
_TECHNICAL = re.compile(
    r"Traceback|File \"|\b[A-Z]\w*(?:Error|Exception|Warning)\b|object has no attribute|"
    r"NoneType|unsupported operand|invalid literal|\[Errno|not subscriptable|is not iterable|"
    r"positional argument|keyword argument|site-packages|dist-packages|__\w+__|0x[0-9a-f]{6,}")


def _server_paths(live: LiveServer) -> list[str]:
    return sorted({str(REPO), str(Path.home()), str(live.data_dir), tempfile.gettempdir() + "/",
                   sys.prefix, "/root/", "/tmp/", "/usr/lib/", "site-packages"}, key=len,
                  reverse=True)


def message_problem(message: str, sent: str, live: LiveServer) -> str | None:
    """Why ``message`` is not a readable sentence for a visitor (None when it is)."""
    text = (message or "").strip()
    if text in ("", "None", "Error", "error", "Error raised."):
        return "empty message"
    if len(re.findall(r"[^\W\d_]{2,}", text)) < 3:
        return "not a sentence"
    match = _TECHNICAL.search(text)
    if match and match.group(0) not in sent:
        return f"technical detail {match.group(0)!r}"
    for path in _server_paths(live):
        if path in text and path not in sent:
            return f"server path {path!r}"
    return None


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in ("path", "url") for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


# Bugs found by this file in code its author may not edit, reported with a reproduction. The
# fuzzing passes skip these inputs; test_reported_gradio_bug below keeps each one as a strict
# xfail, so the fix shows up as XPASS: then delete its entry here and there.
REPORTED: dict = {}  # all reported bugs are fixed; their cases stay below as regression tests
REPORTED_MESSAGES: dict = {}


def reported_message(name: str, message: str) -> str | None:
    pattern, bug = REPORTED_MESSAGES.get(name, ("\0", ""))
    return bug if pattern in (message or "") else None


def reported_bug(name: str, params: list[dict], args: list) -> str | None:
    if name not in REPORTED:
        return None
    names, hits, bug = REPORTED[name]
    for p, value in zip(params, args):
        if p.get("parameter_name") in names and hits(value):
            return bug
    return None


def call_endpoint(client, live: LiveServer, name: str, args: list, label: str = "", *,
                  fresh_session: bool = True) -> object:
    """One case: call, judge the answer, check the server. Returns the answer (None when
    refused)."""
    from gradio_client.exceptions import AppError

    label = label or f"Gradio {name}"
    CASES[label] += 1
    live.problems.take(), live.problems.take_framework()  # a failed case's leftovers
    sent = repr(args)
    what = f"{name} with {sent[:600]}"
    result = None
    if fresh_session:  # each case on a fresh page: no state from the previous one
        client.reset_session()
    started = time.monotonic()
    try:
        result = client.submit(*args, api_name=name).result(timeout=CALL_TIMEOUT_S)
    except AppError as exc:
        SECONDS[label] += time.monotonic() - started
        if reported_message(name, exc.message) and "(reported bug)" not in label:
            CASES[label] -= 1
            CASES[f"Gradio {name} (reported bug)"] += 1
            SERVER_ERRORS[f"Gradio {name} (reported bug)"] += 1
            live.problems.take()
            assert_server_healthy(live, label, what)
            return None
        if live.problems.take_framework():
            FRAMEWORK[label] += 1
            assert_server_healthy(live, label, what)
            return None
        REFUSALS[label] += 1
        problem = message_problem(exc.message, sent, live)
        if problem:
            SERVER_ERRORS[label] += 1
            pytest.fail(f"{label}: refused with an unreadable message ({problem}): "
                        f"{exc.message!r}\nafter {what}")
    else:
        SECONDS[label] += time.monotonic() - started
        for text in _strings(result):
            problem = message_problem(text + " filler words here", sent, live) \
                if _TECHNICAL.search(text) or any(p in text for p in _server_paths(live)) else None
            if problem:
                SERVER_ERRORS[label] += 1
                pytest.fail(f"{label}: answer shows {problem}: {text[:300]!r}\nafter {what}")
    took = time.monotonic() - started
    if took > SLOW_CALL_S:
        SERVER_ERRORS[label] += 1
        pytest.fail(f"{label}: took {took:.0f} s (a request this cheap to send must not hold "
                    f"the server that long)\nafter {what}")
    assert_server_healthy(live, label, what)
    return result


@pytest.fixture(scope="module")
def gradio_api(server):
    """A gradio_client on the app (no telemetry, files left on the server) and the endpoints it
    lists."""
    from gradio_client import Client

    client = Client(server.url + "/", verbose=False, analytics_enabled=False,
                    download_files=False)
    # The page's own events are undocumented (issue 11: "Use via API" and the MCP tools list
    # /synthesize, /transcribe, /evaluate, /normalize); they stay callable, so they stay fuzzed.
    info = httpx.get(server.url + "/gradio_api/info", params={"all_endpoints": "true"},
                     timeout=30).json()
    yield client, info["named_endpoints"]
    client.close()


@pytest.mark.timeout(400)
def test_every_gradio_endpoint(server, gradio_api, corpus, subtests):
    """Hypothesis-built arguments for every endpoint the API lists."""
    client, endpoints = gradio_api
    assert endpoints, "the app lists no Gradio API endpoint"
    for name, info in endpoints.items():
        params = info["parameters"]
        examples = GRADIO_EXAMPLES if params else 2
        with subtests.test(msg=name):
            fuzz_endpoint(client, server, name, params, corpus, examples)


def fuzz_endpoint(client, live: LiveServer, name: str, params: list[dict],
                  corpus: dict[str, Path], examples: int, label: str = "") -> None:
    @settings(max_examples=examples, **FUZZ_SETTINGS)
    @given(args=args_strategy(params, corpus))
    def run(args):
        assume(reported_bug(name, params, args) is None)
        call_endpoint(client, live, name, args, label=label)

    run()


def default_args(params: list[dict]) -> list:
    """What a fresh page sends: each widget's default (a short sentence for a long example
    text, to keep the run short), or empty."""
    out = []
    for p in params:
        value = p.get("parameter_default") if p.get("parameter_has_default") else None
        if (p.get("type") or {}).get("type") == "string" and "enum" not in p["type"]:
            value = "Hi there." if value and len(value) > 40 else (value or "")
        out.append(value)
    return out


@pytest.mark.timeout(300)
def test_every_file_on_every_file_input(server, gradio_api, corpus, subtests):
    """Odd files in every file input, the other arguments as a fresh page sends them: audio
    that does not decode on every audio endpoint, audio that does on one of them in turn, CSV
    and junk where a file is, and in a multi-file input each CSV file with the clips the
    manifests name (manifest-hostile.csv names server paths, manifest-many.csv has 600 rows)."""
    from gradio_client import handle_file

    client, endpoints = gradio_api
    clips = [handle_file(str(corpus[n])) for n in ("001.wav", "0880.wav")]
    audio_endpoints = [name for name, info in endpoints.items()
                       if any(p.get("component", "").lower() == "audio" for p in info["parameters"])]
    for name, info in endpoints.items():
        params = info["parameters"]
        slots = [i for i, p in enumerate(params) if "filepath" in p["python_type"]["type"]]
        if not slots:
            continue
        with subtests.test(msg=name):
            many = any(params[i]["python_type"]["type"].startswith("list") for i in slots)
            audio_only = all(params[i].get("component", "").lower() == "audio" for i in slots)
            if many:
                files = CSV_FILES
            elif audio_only:  # time budget: decodable odd files on one audio endpoint each
                k = audio_endpoints.index(name)
                files = tuple(f for j, f in enumerate(ODD_AUDIO) if f not in DECODABLE
                              or j % len(audio_endpoints) == k)
            else:
                files = CSV_FILES + ("random.bin", "text.wav", "empty.wav")
            for f in files:
                upload = [handle_file(str(corpus[f])), *clips] if many \
                    else handle_file(str(corpus[f]))
                args = default_args(params)
                for i in slots:
                    args[i] = upload
                if reported_bug(name, params, args) is None:
                    call_endpoint(client, server, name, args)


def working_args(params: list[dict], corpus: dict[str, Path], *, files: str) -> list:
    """Arguments that get past the handler's first checks: a short text, and real clips in
    every file input (``files="all"``), only in the first (``"first"``) or none (``"none"``)."""
    from gradio_client import handle_file

    args = default_args(params)
    first = True
    for i, p in enumerate(params):
        kind = p["python_type"]["type"]
        if "filepath" in kind and files != "none":
            if first or files == "all":
                args[i] = ([handle_file(str(corpus[n])) for n in ("manifest.csv", "001.wav",
                                                                  "0880.wav")]
                           if kind.startswith("list") else handle_file(str(corpus["001.wav"])))
            first = False
        elif args[i] == "" and (p.get("type") or {}).get("type") == "string":
            args[i] = "Hi there."
    return args


@pytest.mark.timeout(180)
def test_dropdown_values_given_as_lists(server, gradio_api, corpus, subtests):
    """Gradio's Dropdown lets a list of valid choices through to a single-choice handler."""
    client, endpoints = gradio_api
    for name, info in endpoints.items():
        params = info["parameters"]
        for i, p in enumerate(params):
            choices = (p.get("type") or {}).get("enum")
            if not choices or p.get("component") != "Dropdown":
                continue
            with subtests.test(msg=f"{name} {p.get('parameter_name')}"):
                tried = []
                for files, value in (("all", [choices[0]]), ("first", choices[:2])):
                    args = working_args(params, corpus, files=files)
                    args[i] = value
                    if reported_bug(name, params, args) is None and repr(args[:i]) not in tried:
                        tried.append(repr(args[:i]))
                        call_endpoint(client, server, name, args)


# -- Gradio's REST API without gradio_client: what a client library never sends ------------------
def raw_gradio_call(live: LiveServer, api_name: str, body: bytes) -> tuple[str, str]:
    """POST /gradio_api/call/<name> with a raw JSON body, then read the event stream:
    (last event name, its data); ("http", text) when the POST itself is refused."""
    with httpx.Client(base_url=live.url, timeout=CALL_TIMEOUT_S) as http:
        r = http.post(f"/gradio_api/call{api_name}", content=body,
                      headers={"Content-Type": "application/json"})
        if r.status_code != 200:
            return "http", f"{r.status_code} {r.text[:500]}"
        event_id = r.json()["event_id"]
        event, data = "", ""
        with http.stream("GET", f"/gradio_api/call{api_name}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                    if event in ("complete", "error"):
                        break
        return event, data


def _upload(live: LiveServer, path: Path) -> dict:
    """Upload ``path`` the way the page does; the FileData that names it."""
    name = httpx.post(live.url + "/gradio_api/upload", timeout=30,
                      files={"files": (path.name, path.read_bytes())}).json()[0]
    return {"path": name, "meta": {"_type": "gradio.FileData"}, "orig_name": path.name}


def _raw_args(params: list[dict], upload: dict, bundle: list[dict]) -> list:
    """A fresh page's arguments with an uploaded clip in every file input (a manifest and its
    clips in a multi-file input)."""
    args = default_args(params)
    for i, p in enumerate(params):
        kind = p["python_type"]["type"]
        if "filepath" in kind:
            args[i] = list(bundle) if kind.startswith("list") else upload
    return args


@pytest.fixture(scope="module")
def uploaded(server, corpus) -> tuple[dict, list[dict]]:
    """A clip, and a manifest with the clips it names, uploaded as the page uploads them."""
    bundle = [_upload(server, corpus[n]) for n in ("manifest.csv", "001.wav", "0880.wav")]
    return bundle[1], bundle


def _raw_cases(endpoints: dict, upload: dict, bundle: list[dict], live: LiveServer):
    """(what, endpoint, JSON body): paths and URLs in each endpoint's first file input, NaN
    and infinity in each number input."""
    hostile_files = {
        "/etc/passwd": {"path": "/etc/passwd"},
        "traversal from the upload": {"path": upload["path"] + "/../../../../../etc/passwd"},
        "relative traversal": {"path": "../../../../etc/passwd"},
        "metadata URL": {"path": "x.wav", "url": "http://169.254.169.254/latest/meta-data/"},
        "loopback URL": {"path": "x.wav", "url": live.url + "/api/openapi.json"},
    }
    for name, info in endpoints.items():
        params = info["parameters"]
        files = [i for i, p in enumerate(params) if "filepath" in p["python_type"]["type"]]
        for label, value in hostile_files.items() if files else ():
            args = _raw_args(params, upload, bundle)
            value = {**value, "meta": {"_type": "gradio.FileData"}}
            list_input = params[files[0]]["python_type"]["type"].startswith("list")
            args[files[0]] = [value] if list_input else value
            yield f"{label} as {params[files[0]].get('parameter_name')}", name, args
        numbers = [i for i, p in enumerate(params)
                   if (p.get("type") or {}).get("type") in ("number", "integer")]
        for value in (math.nan, math.inf) if numbers else ():
            args = _raw_args(params, upload, bundle)
            for i in numbers:
                args[i] = value
            yield f"{value} in every number input", name, args


def _judge_raw(live: LiveServer, name: str, what: str, args: list) -> tuple[str, str]:
    label = f"Gradio {name} (raw JSON)"
    CASES[label] += 1
    live.problems.take(), live.problems.take_framework()
    body = json.dumps({"data": args}).encode()  # NaN and Infinity go out as JSON extensions
    started = time.monotonic()
    event, data = raw_gradio_call(live, name, body)
    SECONDS[label] += time.monotonic() - started
    if live.problems.take_framework():
        FRAMEWORK[label] += 1
    elif event != "complete":
        REFUSALS[label] += 1
    assert event != "http" or data.startswith("4"), f"{name} {what}: {data}"
    assert "root:x:0:0" not in data, f"{name}: {what} shows /etc/passwd"
    if event == "error" and data not in ("", "null"):
        message = json.loads(data) if data.startswith(("\"", "{")) else data
        if isinstance(message, dict):
            message = message.get("error") or message.get("message") or ""
        # Gradio's own refusal of a file that was not uploaded repeats the path the client
        # sent, resolved against the server's working directory; the client named it.
        gradio_refusal = "was not uploaded by a user" in str(message)
        problem = message and not gradio_refusal and message_problem(str(message), what + body.decode(), live)
        assert not problem, f"{name} {what}: {problem}: {message!r}"
    assert_server_healthy(live, label, f"{name} with {what}")
    return event, data


@pytest.mark.timeout(180)
def test_gradio_api_raw_paths_urls_and_nan(server, gradio_api, uploaded, subtests):
    """What a client library never sends, as raw JSON to Gradio's REST API: file inputs that
    name /etc/passwd, a traversal out of the upload folder or a URL instead of an upload, and
    NaN or infinite numbers. Refused or answered; no crash, no leak."""
    _, endpoints = gradio_api
    for what, name, args in _raw_cases(endpoints, *uploaded, server):
        with subtests.test(msg=f"{name} {what}"):
            event, data = _judge_raw(server, name, what, args)
            if "URL" in what or "passwd" in what:
                assert event != "complete", f"{name}: {what} was accepted: {data[:300]}"


@pytest.mark.timeout(120)
def test_gradio_file_inputs_take_only_uploads(server, gradio_api, uploaded, tmp_path):
    """A FileData naming a file that exists on the server but was never uploaded."""
    _, endpoints = gradio_api
    upload, bundle = uploaded
    secret = tmp_path / "secrets.csv"
    secret.write_text("term,respelling\nDB_PASSWORD,hunter two\n", encoding="utf-8")
    accepted = []
    for name, info in endpoints.items():
        params = info["parameters"]
        for i, p in enumerate(params):
            kind = p["python_type"]["type"]
            if "filepath" not in kind:
                continue
            for target in (SPEECH / "cards" / "001.wav", secret):
                value = {"path": str(target), "meta": {"_type": "gradio.FileData"},
                         "orig_name": target.name}
                args = _raw_args(params, upload, bundle)
                args[i] = [value, *bundle[1:]] if kind.startswith("list") else value
                event, data = raw_gradio_call(server, name, json.dumps({"data": args}).encode())
                if event == "complete" or "DB_PASSWORD" in data or "needs a header" in data \
                        or "not a readable audio file" in data:
                    accepted.append(f"{name} {p.get('parameter_name')} <- {target}: "
                                    f"{event} {data[:160]}")
    server.problems.take(), server.problems.take_framework()
    if accepted:
        pytest.fail("server files read through the API:\n" + "\n".join(accepted), pytrace=False)


REPORTED_CASES = [  # (endpoint, parameter, value) of bugs the fuzzing found, now fixed
    ("/on_engine", "engine_name", []),
    ("/on_lexicon_import", "file", None),
    ("/on_synthesize", "engine_name", ["piper"]),
    ("/on_synthesize", "voice_id", ["en_US-joe-medium"]),
    ("/on_transcribe", "engine_name", ["faster-whisper"]),
    ("/on_transcribe", "model_name", ["tiny.en"]),
]


@pytest.mark.parametrize("endpoint, parameter, value", REPORTED_CASES)
@pytest.mark.timeout(60)
def test_reported_gradio_bug(server, gradio_api, corpus, endpoint, parameter, value):
    client, endpoints = gradio_api
    params = endpoints[endpoint]["parameters"]
    args = working_args(params, corpus, files="all")
    args[[p.get("parameter_name") for p in params].index(parameter)] = value
    try:
        call_endpoint(client, server, endpoint, args, label=f"Gradio {endpoint} (reported bug)")
    except pytest.fail.Exception as exc:
        pytest.fail(str(exc).splitlines()[0], pytrace=False)


def _timed_call(client, live: LiveServer, name: str, args: list) -> tuple[float, object]:
    client.reset_session()
    started = time.monotonic()
    try:
        result = client.submit(*args, api_name=name).result(timeout=CALL_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - judged by the caller
        result = exc
    CASES[f"Gradio {name}"] += 1
    SECONDS[f"Gradio {name}"] += time.monotonic() - started
    assert_server_healthy(live, f"Gradio {name}", f"{name} with {repr(args)[:200]}")
    return time.monotonic() - started, result


@pytest.mark.timeout(180)
def test_cheap_requests_stay_cheap(server, gradio_api, corpus):
    """Regressions for what the fuzzing found: texts that took seconds to split into
    sentences ("." * 19,000: 10 s, a quadratic regex in text/segment.py), and a vocabulary that
    made Whisper loop on a 1 s clip (57 s, and "word word word" instead of the speech)."""
    client, endpoints = gradio_api
    if "/on_preview" in endpoints:
        params = endpoints["/on_preview"]["parameters"]
        for piece, times in HUGE:
            args = default_args(params)
            args[0] = piece * times
            took, _ = _timed_call(client, server, "/on_preview", args)
            assert took < 5, f"preview of {piece!r} * {times} took {took:.1f} s"
    if "/on_transcribe" in endpoints:
        params = endpoints["/on_transcribe"]["parameters"]
        names = [p.get("parameter_name") for p in params]
        for vocabulary in ("word " * 100, "é" * 500, "\u200b" * 400 + "clubs " * 80):
            args = working_args(params, corpus, files="all")
            args[names.index("vocabulary_text")] = vocabulary
            took, result = _timed_call(client, server, "/on_transcribe", args)
            assert not isinstance(result, Exception), f"{vocabulary[:12]!r}: {result}"
            assert "clubs" in str(result[0]).lower(), f"{vocabulary[:12]!r}: heard {result[0]!r}"
            assert took < 20, f"{vocabulary[:12]!r}: transcribing a 1.1 s clip took {took:.0f} s"


@pytest.mark.timeout(60)
def test_reported_missing_upload_on_lexicon_import(server, gradio_api):
    """Deterministic form of the upload race: a FileData in the upload folder that is not there
    (what a file being moved into place, or already cleaned up, looks like to the handler)."""
    from gradio.utils import get_upload_folder

    _, endpoints = gradio_api
    params = endpoints["/on_lexicon_import"]["parameters"]
    args = default_args(params)
    args[0] = {"path": str(Path(get_upload_folder()) / ("0" * 64) / "lexicon.csv"),
               "meta": {"_type": "gradio.FileData"}}
    event, data = raw_gradio_call(server, "/on_lexicon_import", json.dumps({"data": args}).encode())
    server.problems.take()
    message = json.loads(data).get("error", "") if data.startswith("{") else data
    problem = message_problem(message, "", server) if event == "error" else None
    if problem:
        pytest.fail(f"{problem}: {message!r}", pytrace=False)


# -- public mode (SPEECH_STUDIO_PUBLIC=1): the deployment the issue is about --------------------
PUBLIC_HTTP_EXAMPLES = 8
PUBLIC_GRADIO_EXAMPLES = 3
PUBLIC_SESSIONS = 3
OPERATOR_TOKEN = "fuzz-operator-token-0123456789"


@pytest.mark.timeout(300)
def test_public_mode(tmp_path_factory, gradio_api, corpus, subtests):
    """The public demo's settings: show_error off, a lexicon per browser session over the
    operator's, an operator token (so POST /api/cache/clear exists). Every HTTP route and
    Gradio endpoint again (fewer examples), then sessions that save a hostile lexicon and
    synthesise with it, the one path only a session can reach."""
    from gradio_client import Client

    from webapp.config import Settings

    data_dir = tmp_path_factory.mktemp("fuzz-public")
    (data_dir / "lexicon.csv").write_text("term,respelling,case_sensitive\nATP,A T P,yes\n",
                                          encoding="utf-8")
    settings = Settings(data_dir=data_dir, public=True, operator_token=OPERATOR_TOKEN)
    with serve(settings, with_stt=False, preload=False) as live:
        spec = httpx.get(live.url + "/api/openapi.json", timeout=30).json()
        api = schemathesis.openapi.from_dict(spec)
        for operation in (result.ok() for result in api.get_all_operations()):
            with subtests.test(msg=f"public {operation.label}"):
                fuzz_operation(live, spec, operation, examples=PUBLIC_HTTP_EXAMPLES,
                               prefix="HTTP public")
        client = Client(live.url + "/", verbose=False, analytics_enabled=False,
                        download_files=False)
        try:
            endpoints = public_endpoints(client, private=gradio_api[1])
            for name, info in endpoints.items():
                with subtests.test(msg=f"public {name}"):
                    fuzz_endpoint(client, live, name, info["parameters"], corpus,
                                  PUBLIC_GRADIO_EXAMPLES if info["parameters"] else 1,
                                  label=f"Gradio public {name}")
            if {"/on_lexicon_save", "/on_synthesize"} <= set(endpoints):
                with subtests.test(msg="public session: lexicon, then synthesis"):
                    fuzz_session(client, live, endpoints, corpus)
        finally:
            client.close()


def public_endpoints(client, private: dict) -> dict:
    """Every endpoint a client may call: the documented ones, and those the public page keeps
    out of its API docs (``api_visibility="undocumented"``, still callable), described as the
    private app describes them (same handlers)."""
    endpoints = dict(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    for dependency in client.config["dependencies"]:
        name = "/" + str(dependency.get("api_name"))
        if (dependency.get("api_visibility") == "undocumented" and name not in endpoints
                and name in private):
            endpoints[name] = private[name]
    return endpoints


def fuzz_session(client, live: LiveServer, endpoints: dict, corpus: dict[str, Path]) -> None:
    save = endpoints["/on_lexicon_save"]["parameters"]
    synth = endpoints["/on_synthesize"]["parameters"]
    term = st.one_of(st.sampled_from(["ATP", "the", "a", "H2O", "1", ".", "é", "Dr."]),
                     hostile_text(30))
    rows = st.lists(st.tuples(term, hostile_text(40), st.booleans()).map(list), max_size=6)

    @settings(max_examples=PUBLIC_SESSIONS, **FUZZ_SETTINGS)
    @given(rows=rows, text=hostile_text(200))
    def run(rows, text):
        client.reset_session()  # a new visitor, who saves a lexicon and then uses it
        args = default_args(save)
        args[0] = {"headers": ["term", "respelling", "case sensitive"], "data": rows,
                   "metadata": None}
        args[1] = text
        call_endpoint(client, live, "/on_lexicon_save", args, label="Gradio public session",
                      fresh_session=False)
        args = working_args(synth, corpus, files="none")
        args[0] = text or "ATP is the energy of the cell."
        call_endpoint(client, live, "/on_synthesize", args, label="Gradio public session",
                      fresh_session=False)

    run()
