"""A real ``redis-server`` for tests: on a free loopback port, in memory only, stoppable and
restartable on the same port (to test an outage and the recovery)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from cluster import start_redis_server  # noqa: E402 - deploy/cluster.py


class RedisServer:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: run the README's test command (it installs "
                        "Debian's redis-server).")
        self.folder = folder
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self, *extra: str) -> RedisServer:
        self.proc = start_redis_server(self.port, self.folder / "redis.log",
                                       "--enable-debug-command", "yes", *extra)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)
