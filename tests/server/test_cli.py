"""``python -m agentnb serve``: a real process, its page and API, its guards, and a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from httpx_sse import connect_sse

from harness.wire import read_until_closed

_RUNNING = re.compile(r"Uvicorn running on http://(\S+):(\d+) ")


@dataclass
class Served:
    """A ``python -m agentnb serve`` process, its port, and what it wrote to stderr to start."""

    process: subprocess.Popen[str]
    port: int
    log: str

    def get(self, path: str, host: str, address: str = "127.0.0.1") -> httpx.Response:
        """GET *path* from the server at *address*, naming *host* in the Host header."""
        return httpx.get(f"http://{address}:{self.port}{path}", headers={"Host": host})


# ``python -m agentnb`` in a process whose soft open-file limit is first set to argv[1].
_WITH_FILE_LIMIT = """
import resource, runpy, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard))
sys.argv = ["agentnb", *sys.argv[2:]]
runpy.run_module("agentnb", run_name="__main__")
"""


@contextmanager
def serving_cli(*args: str, file_limit: int | None = None) -> Iterator[Served]:
    """Run ``python -m agentnb serve --port 0 *args`` until the block ends (then Ctrl-C).

    With *file_limit*, the process starts with that soft open-file limit.
    """
    env = os.environ | {"AGENTNB_DEMO_SPEED": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "agentnb"]
    if file_limit is not None:
        command = [sys.executable, "-c", _WITH_FILE_LIMIT, str(file_limit)]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        log = []
        for line in process.stderr:
            log.append(line)
            found = _RUNNING.search(line)
            if found:
                break
        else:
            raise AssertionError("the server did not start:\n" + "".join(log))
        yield Served(process, int(found.group(2)), "".join(log))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_serve_runs_the_demo_agents_and_stops_cleanly_on_ctrl_c() -> None:
    with serving_cli() as served:
        base = f"http://127.0.0.1:{served.port}"
        page = httpx.get(base + "/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        names = [a["name"] for a in httpx.get(base + "/api/agents").json()]
        assert names == ["counter", "flaky", "poet", "researcher", "summarizer"]
        kinds = []
        with (
            httpx.Client(timeout=10) as client,
            connect_sse(
                client, "POST", base + "/api/stream", json={"agent": "poet", "input": "x"}
            ) as source,
        ):
            for sse in source.iter_sse():
                kinds.append(sse.event)
                if len(kinds) == 3:
                    # Ctrl-C with a stream open: the stream ends, the run is cancelled,
                    # the process exits.
                    served.process.send_signal(signal.SIGINT)
                    stopped = time.monotonic()
        assert kinds[-1] == "cancelled"
        assert served.process.wait(10) == 0
        assert time.monotonic() - stopped < 5


def test_a_bind_to_another_loopback_address_keeps_the_host_guard() -> None:
    try:
        socket.create_server(("127.0.0.2", 0)).close()
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here (it is on Linux)")
    with serving_cli("--host", "127.0.0.2") as served:
        evil = served.get("/api/agents", "evil.example", "127.0.0.2")
        assert evil.status_code == 400
        assert evil.json()["error"] == "bad_host"
        assert served.get("/api/agents", f"127.0.0.2:{served.port}", "127.0.0.2").is_success
        assert served.get("/api/agents", "localhost", "127.0.0.2").is_success
        assert "127.0.0.1, localhost, ::1, 127.0.0.2" in served.log
        assert "no authentication" not in served.log  # 127.0.0.2 is this machine


def test_allow_host_adds_a_name_and_the_limits_reach_the_server() -> None:
    args = ("--allow-host", "agents.example", "--header-timeout", "0.5", "--max-connections", "3")
    with serving_cli(*args) as served:
        idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(3)]
        try:
            with socket.create_connection(("127.0.0.1", served.port)) as surplus:
                assert read_until_closed(surplus, 0.4).startswith(b"HTTP/1.1 503 ")
            for sock in idle:
                assert read_until_closed(sock, 0.5 + 2) == b""
        finally:
            for sock in idle:
                sock.close()
        assert served.get("/api/agents", "agents.example").is_success
        assert served.get("/api/agents", "evil.example").status_code == 400


@pytest.mark.skipif(sys.platform == "win32", reason="open-file limits are POSIX")
def test_the_server_raises_its_own_open_file_limit_for_its_connections() -> None:
    # At a soft limit of 256 the cap would be 192 connections; raised, it is 4096.
    with serving_cli(file_limit=256) as served:
        idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(300)]
        try:
            assert served.get("/api/agents", "127.0.0.1").is_success
        finally:
            for sock in idle:
                sock.close()


def test_a_wildcard_bind_keeps_the_host_guard_and_says_which_names_it_answers() -> None:
    with serving_cli("--host", "0.0.0.0") as served:
        assert "127.0.0.1, localhost, ::1;" in served.log
        assert "--allow-host NAME (repeatable)" in served.log
        assert "no authentication" in served.log
        evil = served.get("/api/agents", "evil.example")
        assert evil.status_code == 400
        assert evil.json()["error"] == "bad_host"
        assert served.get("/api/agents", f"127.0.0.1:{served.port}").is_success


def test_allow_host_star_answers_any_host_and_says_what_that_allows() -> None:
    with serving_cli("--allow-host", "*") as served:
        assert "DNS rebinding" in served.log
        assert served.get("/api/agents", "evil.example").is_success


def test_allow_host_does_not_apply_to_an_app_of_ones_own() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentnb", "serve", "--app", "x:app", "--allow-host", "a.example"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "create_app(allowed_hosts=[...])" in done.stderr
