"""Several Speech Studio replicas behind HAProxy, sharing one Redis cache, on this machine
(issue 13).

    python deploy/cluster.py [--replicas 2] [--port 8080] [--redis-url redis://…]

Starts ``redis-server`` (unless ``--redis-url`` names one), N replicas (``python -m webapp
serve``, one uvicorn worker each, on free loopback ports, ``SPEECH_STUDIO_CACHE_URL`` pointing at
Redis) and HAProxy (Debian's package) in front of them on ``--port``, with the configuration
written from ``deploy/haproxy.cfg``. Ctrl+C stops everything.

Why sticky sessions: Gradio's queue sends an event's request and its result stream as separate
HTTP requests, the Synthesize button's live player reads a channel that lives in the replica
that runs the job, and a caption view follows a recording held by the replica recording it. So
HAProxy pins a browser to one replica with a cookie (``SPEECHSTUDIO``); WebSockets (live
captions, the realtime API) are one connection and stay where they started. What is shared
through Redis: the synthesis cache and its single-flight locks. What stays per replica and is
pinned by the cookie: live playback channels, a public visitor's own lexicon (kept in the
page's state) and each replica's metrics. Caption sessions stay on the replica recording them,
and their links start with its name (``SPEECH_STUDIO_REPLICA_ID``), which HAProxy routes on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("haproxy.cfg")
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, what: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready in {timeout_s:.0f} s:\n"
                               f"{log.read_text()[-3000:]}")
        time.sleep(0.3)


def start_redis_server(port: int, log: Path, *extra: str,
                       timeout_s: float = 10.0) -> subprocess.Popen:
    """``redis-server`` on loopback ``port``, in memory only; returns once it answers PING."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(log.parent), *extra],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError), \
                socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return proc
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"redis-server did not start on port {port}:\n"
                               f"{log.read_text()[-2000:]}")
        time.sleep(0.05)


def haproxy_config(port: int, replicas: list[int]) -> str:
    # A caption view goes to the replica holding its recording (its id starts "rN."), cookie
    # or not: a projector opening the link fresh has none.
    routes = [f"    use-server r{i} if {{ path_beg /captions/r{i}. }}"
              for i in range(1, len(replicas) + 1)]
    servers = [f"    server r{i} 127.0.0.1:{p} check cookie r{i}"
               for i, p in enumerate(replicas, start=1)]
    servers = "\n".join(routes + servers)
    return TEMPLATE.read_text(encoding="utf-8").replace("{port}", str(port)).replace(
        "{servers}", servers)


class Cluster:
    """Redis + N replicas + HAProxy on loopback; ``start()`` returns once all are ready."""

    def __init__(self, replicas: int = 2, port: int | None = None, *, folder: Path | None = None,
                 redis_url: str | None = None, env: dict[str, str] | None = None,
                 cache: str = "redis") -> None:
        """``cache``: "redis" (shared: ``redis_url``, or a redis-server started here) or
        "disk" (each replica its own diskcache, no Redis: the one-machine default)."""
        if cache not in ("redis", "disk"):
            raise ValueError(f"cache must be 'redis' or 'disk', not {cache!r}")
        self.cache = cache
        needs_redis = cache == "redis" and not redis_url
        for binary in ("haproxy",) + (("redis-server",) if needs_redis else ()):
            if shutil.which(binary) is None:
                raise RuntimeError(f"{binary} not found: install Debian's package "
                                   f"(apt-get install {binary}).")
        self.folder = Path(folder or tempfile.mkdtemp(prefix="speech-studio-cluster-"))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        self.redis_port: int | None = None
        self.replica_ports = [free_port() for _ in range(replicas)]
        self.env = env or {}
        self.procs: list[subprocess.Popen] = []
        self.redis: subprocess.Popen | None = None

    def start_redis(self) -> None:
        self.redis_port = self.redis_port or free_port()
        self.redis = start_redis_server(self.redis_port, self.folder / "redis.log",
                                        "--maxmemory", "512mb", "--maxmemory-policy",
                                        "allkeys-lru")
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait(10)
            self.redis = None

    def start(self, timeout_s: float = 300.0) -> Cluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.cache == "redis" and self.redis_url is None:
            self.start_redis()
        starting = []
        for i, port in enumerate(self.replica_ports, start=1):
            data = self.folder / f"replica-{i}"
            data.mkdir(exist_ok=True)
            log = data / "server.log"
            env = {**os.environ, "SPEECH_STUDIO_DATA_DIR": str(data),
                   "SPEECH_STUDIO_CACHE_URL": self.redis_url or "",
                   "SPEECH_STUDIO_TRUST_PROXY": "1",
                   "SPEECH_STUDIO_REPLICA_ID": f"r{i}",
                   "SPEECH_STUDIO_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                   "GRADIO_ANALYTICS_ENABLED": "False", **self.env}
            proc = subprocess.Popen([sys.executable, "-m", "webapp", "serve", "--host",
                                     "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                                    stdout=log.open("w"), stderr=subprocess.STDOUT)
            self.procs.append(proc)
            starting.append((port, proc, log))
        for port, proc, log in starting:
            _wait(f"http://127.0.0.1:{port}/readyz", proc, f"replica on port {port}", log,
                  timeout_s)
        config = self.folder / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, self.replica_ports), encoding="utf-8")
        log = self.folder / "haproxy.log"
        proxy = subprocess.Popen(["haproxy", "-f", str(config), "-db"],
                                 stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.procs.append(proxy)
        _wait(f"{self.url}/readyz", proxy, "haproxy", log, 30)
        return self

    def replica_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.replica_ports[i]}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []
        self.stop_redis()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--redis-url", help="an existing Redis (default: start one)")
    args = parser.parse_args()
    cluster = Cluster(args.replicas, args.port, redis_url=args.redis_url)
    try:
        cluster.start()
        print(f"Speech Studio: {cluster.url} -> {args.replicas} replicas "
              f"({', '.join(str(p) for p in cluster.replica_ports)}), cache {cluster.redis_url}; "
              f"logs in {cluster.folder}. Ctrl+C stops.", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
