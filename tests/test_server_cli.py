"""``python -m agentnb serve``: a real process, its page and API, and a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
from httpx_sse import connect_sse


def test_serve_runs_the_demo_agents_and_stops_cleanly_on_ctrl_c() -> None:
    env = os.environ | {"AGENTNB_DEMO_SPEED": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agentnb", "serve", "--port", "0"],
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
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                base = found.group(1)
                break
        else:
            raise AssertionError("the server did not start:\n" + "".join(log))
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
                    process.send_signal(signal.SIGINT)
                    stopped = time.monotonic()
        assert kinds[-1] == "cancelled"
        assert process.wait(10) == 0
        assert time.monotonic() - stopped < 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
