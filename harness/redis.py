"""A real ``redis-server`` on 127.0.0.1 and a port the OS chose, in a temporary directory.

::

    with redis_server() as server:                 # no persistence (``--save ''``)
        RedisStore(server.url)                     # "redis://127.0.0.1:PORT/0"
    with redis_server(appendonly=True) as server:  # every write logged (AOF)
        server.stop(); server.start()              # a restart: same port, same directory

``redis-server`` must be installed (Debian's ``redis-server`` package): without it,
starting one raises :class:`RedisMissing`, so a test that needs it fails and says
what to install. Nothing here needs a Redis client library: readiness is a raw
``PING`` on the socket.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["RedisMissing", "RedisServer", "redis_server"]

HOST = "127.0.0.1"
_START_TIMEOUT = 10.0  # seconds for redis-server to answer PING
_STOP_TIMEOUT = 10.0  # seconds for it to exit after SIGTERM (it writes its AOF first)


class RedisMissing(RuntimeError):
    """``redis-server`` is not on PATH."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _pong(port: int) -> bool:
    """Whether a Redis on *port* answers ``PING`` (and has loaded its data)."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; ``start()`` and ``stop()`` may alternate (a restart
    keeps the port and the directory, so with ``appendonly`` the data comes back)."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisMissing(
                "redis-server is not installed (it is not on PATH): install Debian's "
                "redis-server package (apt-get install redis-server), or any Redis 7"
            )
        if self.process is not None:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        args = [
            executable,
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", str(self.log),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT
        while not _pong(self.port):
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer PING within "
                    f"{_START_TIMEOUT} s (exit code {code}); its log ends:\n{tail}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Shut it down as an operator would (SIGTERM: it writes its AOF and exits)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@contextmanager
def redis_server(*, appendonly: bool = False) -> Iterator[RedisServer]:
    """A started ``redis-server`` in a temporary directory, stopped (and removed) after."""
    with tempfile.TemporaryDirectory(prefix="agentnb-redis-") as directory:
        server = RedisServer(Path(directory), appendonly=appendonly)
        server.start()
        try:
            yield server
        finally:
            server.stop()
