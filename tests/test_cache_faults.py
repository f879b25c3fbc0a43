"""The synthesis cache under real faults: a writer killed with SIGKILL, bytes damaged on disk, a
directory the process may not write, a file-size limit, a full filesystem.

Every fault is real. The processes that suffer one are children (``sys.executable -c``), so this
process keeps its privileges and limits; each child reports what it saw as one JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from webapp.pipeline.cache import DiskSynthesisCache, NullCache, open_cache

REPO = Path(__file__).resolve().parents[1]
SMALL_VALUE_LIMIT = 32 * 1024  # diskcache keeps values under this in the SQLite row, others in files

# A payload derived from its key, so a reader can tell the right entry from a torn or mixed-up
# one. Sizes are log-uniform from 1 KB to 2 MB: about half stay in SQLite rows, half go to files.
_PAYLOAD_SRC = '''
import hashlib


def expected_payload(i):
    seed = hashlib.sha256(f"k{i}".encode()).digest()
    size = int(1024 * 2048 ** (int.from_bytes(seed[:4], "big") / 2**32))
    return (seed * (size // len(seed) + 1))[:size]
'''
_namespace: dict = {}
exec(_PAYLOAD_SRC, _namespace)
expected_payload = _namespace["expected_payload"]

# What every child runs first: the cache module, its log lines kept in ``records``, a clock the
# child moves by hand past the cache's 30 s retry pause (no sleeping), and the payloads.
_PREAMBLE = _PAYLOAD_SRC + '''
import errno, json, logging, os, sqlite3, sys, time
from pathlib import Path
from webapp.pipeline.cache import DiskSynthesisCache, NullCache, open_cache

records = []


class _Keep(logging.Handler):
    def emit(self, record):
        records.append([record.levelname, record.getMessage()])


_log = logging.getLogger("webapp.pipeline.cache")
_log.addHandler(_Keep())
_log.setLevel(logging.DEBUG)
_log.propagate = False


def lines(level):
    return [message for levelname, message in records if levelname == level]


class Clock:
    def __init__(self):
        self.now = time.monotonic()  # where the cache's own clock was when it was handed over

    def __call__(self):
        return self.now


def value_files(directory):
    """(files on disk, files the index refers to): equal when no failed write left one behind."""
    on_disk = {str(p.relative_to(directory)) for p in directory.rglob("*.val")}
    con = sqlite3.connect((directory / "cache.db").as_uri() + "?mode=ro", uri=True)
    referenced = {row[0] for row in con.execute(
        "SELECT filename FROM Cache WHERE filename IS NOT NULL")}
    con.close()
    return sorted(on_disk), sorted(referenced)


def report(**result):
    print("RESULT " + json.dumps(result), flush=True)
'''


def _child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _run_child(body: str, *args: str, prefix: tuple[str, ...] = ()) -> tuple[dict | None, str]:
    """Run ``_PREAMBLE + body`` in a child; its RESULT line (None if it printed none) and stderr."""
    proc = subprocess.run([*prefix, sys.executable, "-c", _PREAMBLE + body, *args], cwd=REPO,
                          env=_child_env(), capture_output=True, text=True, timeout=120)
    results = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not results:
        return None, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, proc.stderr
    return json.loads(results[-1]), proc.stderr


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "webapp.pipeline.cache" and r.levelno == logging.WARNING]


# -- a writer killed mid-write ----------------------------------------------------------------------

_WRITER = _PAYLOAD_SRC + '''
import sys
from pathlib import Path
from webapp.pipeline.cache import DiskSynthesisCache

cache = DiskSynthesisCache(Path(sys.argv[1]), size_limit_mb=1 << 20)  # 1 TB: nothing is evicted
start = int(sys.argv[2])
print("ready", flush=True)
for i in range(start, start + 3000):
    cache.put(f"k{i}", expected_payload(i), {"i": i})
    print(i, flush=True)  # only after put returned
'''


def _check_after_kill(directory: Path, attempted: set[int], reported: set[int]) -> None:
    cache = DiskSynthesisCache(directory, size_limit_mb=1 << 20)
    try:
        stored = {k for k in cache._cache.iterkeys() if not k.startswith("__stat__")}
        assert stored <= {f"k{i}" for i in attempted}
        for i in sorted(attempted):
            entry = cache.get(f"k{i}")
            if i in reported:
                assert entry is not None, f"k{i} was stored before the kill and is gone"
            if entry is not None:
                assert entry.meta == {"i": i}
                assert entry.payload == expected_payload(i), f"k{i} served with a wrong payload"
    finally:
        cache.close()


def test_a_writer_killed_at_any_moment_leaves_only_whole_entries(tmp_path, caplog):
    sizes = [len(expected_payload(i)) for i in range(200)]
    assert min(sizes) < SMALL_VALUE_LIMIT < max(sizes)  # both kinds of storage are exercised
    directory = tmp_path / "cache"
    rng = random.Random(20240607)  # the kill moments vary with timing; the delays do not
    attempted: set[int] = set()
    reported: set[int] = set()
    start = 0
    try:
        for _round in range(5):
            child = subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(directory), str(start)], cwd=REPO,
                env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert child.stdout.readline() == "ready\n", child.stderr.read()
                done = [int(child.stdout.readline()) for _ in range(3)]  # some writes are in
                time.sleep(rng.uniform(0.0, 0.3))
                child.send_signal(signal.SIGKILL)
                out, err = child.communicate(timeout=30)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.communicate()
            assert child.returncode == -signal.SIGKILL, err
            done += [int(line) for line in out.split("\n")[:-1]]  # the last piece: "" or cut
            reported |= set(done)
            attempted |= set(range(start, max(done) + 2))  # +1: the put the kill interrupted
            with caplog.at_level(logging.WARNING, logger="webapp.pipeline.cache"):
                _check_after_kill(directory, attempted, reported)
            # The next writer starts a little back, so it also replaces entries (old file
            # removed after the new row commits) when it is killed.
            start = max(done) - rng.randint(0, 20)
        assert len(reported) > 20
        assert not _warnings(caplog)  # nothing torn was even found: SQLite commits, files first
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # a few hundred MB; pytest keeps tmp dirs


# -- bytes damaged on disk --------------------------------------------------------------------------

def test_damaged_value_files_and_rows_are_never_served(tmp_path, caplog):
    directory = tmp_path / "cache"
    cache = DiskSynthesisCache(directory, 64)
    payloads = {"file-flip": b"F" * 100_000, "file-cut": b"C" * 100_000, "row-flip": b"R" * 1000,
                "file-ok": b"f" * 100_000, "row-ok": b"r" * 1000}
    for key, payload in payloads.items():
        cache.put(key, payload, {"key": key})
    con = sqlite3.connect(directory / "cache.db", isolation_level=None)
    files = dict(con.execute("SELECT key, filename FROM Cache WHERE filename IS NOT NULL"))
    assert set(files) == {"file-flip", "file-cut", "file-ok"}  # these three live in .val files

    flipped = directory / files["file-flip"]
    with open(flipped, "r+b") as f:  # one bit in the middle of the audio
        f.seek(50_000)
        byte = f.read(1)[0]
        f.seek(50_000)
        f.write(bytes([byte ^ 0x01]))
    cut = directory / files["file-cut"]
    os.truncate(cut, cut.stat().st_size - 4096)  # the tail of a write that never made it
    (blob,) = con.execute("SELECT value FROM Cache WHERE key = 'row-flip'").fetchone()
    damaged = bytearray(blob)
    damaged[-10] ^= 0x40
    con.execute("UPDATE Cache SET value = ? WHERE key = 'row-flip'", (bytes(damaged),))
    con.close()

    with caplog.at_level(logging.WARNING, logger="webapp.pipeline.cache"):
        for key in ("file-flip", "file-cut", "row-flip"):
            assert cache.get(key) is None, key
        for key in ("file-ok", "row-ok"):
            entry = cache.get(key)
            assert entry.payload == payloads[key] and entry.meta == {"key": key}
    warned = _warnings(caplog)
    assert len(warned) == 3 and all("corrupt" in w for w in warned)
    assert any("checksum" in w for w in warned) and any("header says" in w for w in warned)
    for key in ("file-flip", "file-cut", "row-flip"):  # removed, files included
        assert key not in cache._cache
    assert not flipped.exists() and not cut.exists()
    cache.close()


# -- directories that cannot be used --------------------------------------------------------------

@pytest.mark.parametrize("fault", ["path is a file", "cache.db is not a database"])
def test_open_cache_without_a_usable_directory_gives_no_cache_and_one_warning(tmp_path, caplog,
                                                                               fault):
    directory = tmp_path / "cache"
    if fault == "path is a file":
        directory.write_bytes(b"not a directory")
    else:
        directory.mkdir()
        (directory / "cache.db").write_bytes(os.urandom(8192))
    with caplog.at_level(logging.DEBUG, logger="webapp.pipeline.cache"):
        cache = open_cache(directory, 16, expire_s=60)
        assert isinstance(cache, NullCache)
        cache.put("k", b"audio", {})
        assert cache.get("k") is None
    (warning,) = _warnings(caplog)
    assert str(directory) in warning


_READ_ONLY_CHILD = '''
import diskcache  # imported while we may still read the venv (it may live under /root)

base = Path(sys.argv[1])
if os.geteuid() == 0:  # root writes anywhere: become nobody
    try:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    except PermissionError as exc:
        report(unavailable=f"cannot drop root privileges: {exc}")
        sys.exit(0)
try:  # the control: is the cache directory really unwritable for this process?
    (base / "cache" / "probe").touch()
except PermissionError:
    pass
else:
    report(unavailable=f"uid {os.geteuid()} can still write a directory of mode 0o555")
    sys.exit(0)

new = open_cache(base / "new" / "cache", 16)
new_warnings = lines("WARNING")
records.clear()

clock = Clock()
cache = open_cache(base / "cache", 64)
if not isinstance(cache, DiskSynthesisCache):
    report(kind=type(cache).__name__, records=records)
    sys.exit(0)
cache._writes.clock = clock
served = [i for i in range(12)
          if (e := cache.get(f"k{i}")) and e.payload == expected_payload(i) and e.meta == {"i": i}]
puts_raised = 0
for i in range(20):
    if i >= 10:
        clock.now += 31  # past the retry pause: these ten try to write again
    try:
        cache.put(f"new{i}", b"x" * (100_000 if i % 2 else 100), {"i": i})
        cache.record_request(False)
    except Exception:
        puts_raised += 1
stats = cache.stats()
report(new_is_null=isinstance(new, NullCache), new_warnings=new_warnings,
       kind=type(cache).__name__, served=served, puts_raised=puts_raised,
       missing_is_none=cache.get("new3") is None, served_after=cache.get("k0") is not None,
       stats=[stats.entries, stats.hits, stats.misses], records=records)
'''


@pytest.fixture()
def world_readable_dir():
    """A directory the unprivileged child can reach: pytest's tmp_path is private to root."""
    base = Path(tempfile.mkdtemp(prefix="speech-studio-ro-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)  # so that rmtree also works for a user other than root
        shutil.rmtree(base, ignore_errors=True)


def test_a_read_only_cache_serves_its_entries_and_warns_once(world_readable_dir):
    base = world_readable_dir
    cache = DiskSynthesisCache(base / "cache", 64)
    for i in range(12):
        cache.put(f"k{i}", expected_payload(i), {"i": i})
    cache.record_request(True)
    cache.close()
    sizes = [len(expected_payload(i)) for i in range(12)]
    assert min(sizes) < SMALL_VALUE_LIMIT < max(sizes)  # rows and files both
    assert not list((base / "cache").glob("cache.db-*"))  # closed cleanly: no WAL, no shm
    for path in [base, *base.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)

    result, stderr = _run_child(_READ_ONLY_CHILD, str(base))
    assert result is not None, stderr
    if "unavailable" in result:
        pytest.skip(f"no read-only directory for this process: {result['unavailable']}")
    # A cache directory that cannot be created: no cache, one warning naming it and why.
    assert result["new_is_null"]
    (new_warning,) = result["new_warnings"]
    assert str(base / "new" / "cache") in new_warning and "Permission denied" in new_warning
    # An existing cache made read-only: every entry is served, 20 puts raise nothing and cost
    # one warning in all (the ten after each retry pause fail again at debug level).
    assert result["kind"] == "DiskSynthesisCache", result["records"]
    assert result["served"] == list(range(12)) and result["served_after"]
    assert result["missing_is_none"] and result["puts_raised"] == 0
    warnings = [m for level, m in result["records"] if level == "WARNING"]
    assert len(warnings) == 1, result["records"]
    assert "cache writes to" in warnings[0] and "readonly database" in warnings[0]
    failing_again = [m for level, m in result["records"]
                     if level == "DEBUG" and "are failing" in m]
    assert len(failing_again) == 10, result["records"]
    assert result["stats"] == [12, 1, 0]


# -- a disk that is full ----------------------------------------------------------------------------

_FILE_SIZE_LIMIT_CHILD = '''
import hashlib, resource, signal, threading

directory = Path(sys.argv[1])
cache = DiskSynthesisCache(directory, 64)
clock = Clock()
cache._writes.clock = clock
earlier = {f"s{i}": bytes([i]) * 2000 for i in range(10)}  # kept in SQLite rows
earlier.update({f"m{i}": bytes([i]) * 100_000 for i in range(2)})  # kept in files
for key, payload in earlier.items():
    cache.put(key, payload, {"key": key})

# Nothing may grow past the biggest file now (the write-ahead log included); a write past the
# limit fails with EFBIG instead of killing the process.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = max(p.stat().st_size for p in directory.rglob("*") if p.is_file())
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

big = bytes(range(256)) * 8000  # 2 MB: a whole lesson's audio
errors = []


def request(n):  # what a request does: produce audio, cache it, hand it out
    audio = hashlib.sha256(b"%d" % n).digest() + big
    try:
        cache.put(f"req{n}", audio, {"n": n})
        cache.record_request(False)
    except Exception as exc:
        errors.append(repr(exc))
    return audio


produced = []
threads = [threading.Thread(target=lambda t=t: produced.extend(request(t * 10 + j) for j in range(5)))
           for t in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
records_concurrent, records[:] = list(records), []
for n in range(100, 120):
    clock.now += 31 if n % 2 else 0  # half of them come after the retry pause
    produced.append(request(n))
read_back = sorted(k for k, p in earlier.items() if (e := cache.get(k)) and e.payload == p)
files_while_failing = value_files(directory)

resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
clock.now += 31
cache.put("after", big, {"n": -1})
report(records_concurrent=records_concurrent, records=records, errors=errors,
       produced=len(produced), read_back=read_back,
       earlier=sorted(earlier), files_while_failing=files_while_failing,
       after=(e := cache.get("after")) is not None and e.payload == big)
'''


def test_writes_past_a_file_size_limit_fail_quietly_and_reads_go_on(tmp_path):
    result, stderr = _run_child(_FILE_SIZE_LIMIT_CHILD, str(tmp_path / "cache"))
    assert result is not None, stderr
    assert result["errors"] == [] and result["produced"] == 60
    assert result["read_back"] == result["earlier"]
    # 40 requests from 8 threads at once: one warning (requests already writing when the
    # first failed fail at debug level), then the 20 that follow: none.
    concurrent, sequential = result["records_concurrent"], result["records"]
    warnings = [m for level, m in concurrent + sequential if level == "WARNING"]
    assert len(warnings) == 1, concurrent + sequential
    assert "File too large" in warnings[0]
    assert "audio is still produced but not cached until writes succeed again" in warnings[0]
    # After a failure, puts are skipped until the retry pause is over; the ten that came after
    # a pause tried again and failed at debug level.
    assert sum(level == "DEBUG" and "are failing" in m for level, m in sequential) == 10
    levels = [level for level, _ in sequential]
    on_disk, referenced = result["files_while_failing"]
    assert on_disk == referenced  # no half-written value file left behind
    assert result["after"] and levels.count("INFO") == 1
    assert "succeed again" in [m for level, m in result["records"] if level == "INFO"][0]


_FULL_TMPFS_CHILD = '''
mount = Path(sys.argv[1])
directory = mount / "cache"
cache = DiskSynthesisCache(directory, 64)
clock = Clock()
cache._writes.clock = clock
earlier = {f"s{i}": bytes([i]) * 2000 for i in range(10)}
earlier.update({f"m{i}": bytes([i]) * 100_000 for i in range(3)})
for key, payload in earlier.items():
    cache.put(key, payload, {"key": key})

ballast = os.open(mount / "ballast", os.O_WRONLY | os.O_CREAT)
for chunk in (1 << 16, 1 << 12, 1):  # fill the filesystem to the last byte
    while True:
        try:
            os.write(ballast, bytes(chunk))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            break
big = bytes(range(256)) * 8000  # 2 MB
errors = []


def put(key, payload):
    clock.now += 31  # each put comes after the retry pause of the failure before it
    try:
        cache.put(key, payload, {})
        cache.record_request(False)
    except Exception as exc:
        errors.append(repr(exc))


for n in range(10):  # full: everything fails
    put(f"big{n}", big)
    put(f"small{n}", b"s" * 500)
read_back = sorted(k for k, p in earlier.items() if (e := cache.get(k)) and e.payload == p)
size = os.fstat(ballast).st_size
os.ftruncate(ballast, size - 768 * 1024)  # nearly full: small entries fit again, big ones not
for n in range(10, 20):
    put(f"big{n}", big)
    put(f"small{n}", b"s" * 500)
small_stored = sum(cache.get(f"small{n}") is not None for n in range(10, 20))
files_while_failing = value_files(directory)
os.ftruncate(ballast, 0)
put("after", big)
report(records=records, errors=errors, read_back=read_back, earlier=sorted(earlier),
       small_stored=small_stored, files_while_failing=files_while_failing,
       after=(e := cache.get("after")) is not None and e.payload == big)
'''


def test_a_full_filesystem_costs_one_warning_and_no_reads(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare to mount a private tmpfs")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    # A private mount namespace: the 4 MB tmpfs exists for the child only and goes with it.
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount -t tmpfs -o size=4m tmpfs "$0" || exit 77; exec "$@"', str(mount))
    result, stderr = _run_child(_FULL_TMPFS_CHILD, str(mount), prefix=prefix)
    if result is None and ("exit 77" in stderr or "unshare failed" in stderr):
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {stderr.strip()[-200:]}")
    assert result is not None, stderr
    assert result["errors"] == []
    assert result["read_back"] == result["earlier"]
    warnings = [m for level, m in result["records"] if level == "WARNING"]
    infos = [m for level, m in result["records"] if level == "INFO"]
    # Failures and successes alternate once small entries fit again: still one warning, and
    # one info line when writes first succeed again.
    assert len(warnings) == 1 and "No space left on device" in warnings[0], result["records"]
    assert result["small_stored"] == 10 and len(infos) == 1 and "succeed again" in infos[0]
    on_disk, referenced = result["files_while_failing"]
    assert on_disk == referenced  # no half-written value file left behind
    assert result["after"]
