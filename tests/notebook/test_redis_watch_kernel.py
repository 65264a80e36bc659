"""A run served by another process, watched in a real notebook kernel from Redis.

A server process (``tests/redis/shared_app.py``, uvicorn with a ``RedisStore``) runs
the agent; the test starts the run over HTTP and leaves it running. A cell watches it
with ``%agent`` on ``agentnb.redis.watch(run_id, url)``: its view shows the run's
events while the run goes on, its question is answered from the view (the answer
reaches the server process, ``by`` the cell), the result and the transcript show; the
view's Stop cancels the run in the server process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness.kernel import Kernel
from harness.redis import redis_server
from harness.wait import until
from harness.web import ServerProcess
from tests.notebook.views import all_items, status_updates, wait_view
from tests.redis.shared_app import URL_VARIABLE

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Kernel, str]]:
    """A kernel that can watch runs of a server process; the server's base URL."""
    with redis_server() as redis:
        saved = os.environ.get(URL_VARIABLE)
        os.environ[URL_VARIABLE] = redis.url
        try:
            server = ServerProcess(["-m", "tests.redis.shared_app"])
        finally:
            if saved is None:
                os.environ.pop(URL_VARIABLE, None)
            else:
                os.environ[URL_VARIABLE] = saved
        try:
            kernel = Kernel()
            try:
                kernel.run_ok(f"%load_ext agentnb\nimport agentnb.redis\nURL = {redis.url!r}")
                yield kernel, f"http://127.0.0.1:{server.port}"
            finally:
                kernel.close()
        finally:
            server.close()


def start_there(base: str, body: dict[str, Any]) -> str:
    """Start a run on the server and leave it running (its client goes, it continues)."""
    body = {**body, "on_disconnect": "continue"}
    with (
        httpx.Client(base_url=base, timeout=10) as client,
        client.stream("POST", "/api/stream", json=body) as response,
    ):
        assert response.status_code == 200, response.read()
        return response.headers["x-agentnb-run-id"]


def status_there(base: str, run_id: str) -> str:
    status: str = httpx.get(f"{base}/api/runs/{run_id}", timeout=10).json()["status"]
    return status


def events_there(base: str, run_id: str) -> list[dict[str, Any]]:
    """The run's whole event stream, as the server sends it."""
    with httpx.Client(base_url=base, timeout=10) as client:
        text = client.get(f"/api/runs/{run_id}/events").text
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_a_watched_runs_question_is_answered_from_the_cell(setup: tuple[Kernel, str]) -> None:
    k, base = setup
    run_id = start_there(base, {"agent": "choose", "input": "Ship <b>it</b>?"})
    k.run_ok(f"watched = agentnb.redis.watch({run_id!r}, URL)")
    cell_id = k.submit("%agent -o outcome watched")
    comm = wait_view(k, cell_id)
    k.wait_for(lambda: any(i[0] == "ask" for i in all_items(k, comm)), 20, "the question")
    [ask] = [i for i in all_items(k, comm) if i[0] == "ask"]
    assert ask[:2] == ["ask", ""]
    assert ask[3:] == ["Ship <b>it</b>?", ["yes", "no"], None, ""]
    assert status_there(base, run_id) == "running"  # live: the run waits for the answer
    assert not k.idle(cell_id)
    k.comm_send(comm, {"t": "answer", "ask_id": ask[2], "value": "yes"})
    cell = k.wait(cell_id, 30)
    assert cell.ok, cell.summary()
    items = all_items(k, comm)
    assert [i for i in items if i[0] == "answer"] == [["answer", "", ask[2], "yes", "cell"]]
    assert [i[2] for i in items if i[0] == "text"] == ["got yes"]
    assert status_updates(k, comm) == ["done"]
    assert k.value("outcome") == "'yes'"
    assert cell.final["text/plain"] == "? Ship <b>it</b>? [yes/no]\n= yes (by cell)\ngot yes"
    # The answer went to the server process: its run took it, from the cell.
    remote = events_there(base, run_id)
    assert [e["kind"] for e in remote] == ["ask", "answer", "text", "done"]
    assert (remote[1]["value"], remote[1]["by"]) == ("yes", "cell")
    assert status_there(base, run_id) == "done"


def test_stop_in_the_cell_cancels_the_watched_run(setup: tuple[Kernel, str]) -> None:
    k, base = setup
    run_id = start_there(base, {"agent": "waiting"})
    k.run_ok(f"watched = agentnb.redis.watch({run_id!r}, URL)")
    cell_id = k.submit("%agent watched")
    comm = wait_view(k, cell_id)
    k.wait_for(lambda: any(i[0] == "text" for i in all_items(k, comm)), 20, "the run's text")
    assert not k.idle(cell_id)
    k.comm_send(comm, {"t": "stop"})
    cell = k.wait(cell_id, 30)
    assert cell.ok, cell.summary()
    assert status_updates(k, comm) == ["cancelled"]
    assert all_items(k, comm)[-1] == ["cancelled", "", "stopped from the notebook"]
    until(lambda: status_there(base, run_id) == "cancelled", 10, what="the run cancelled")
    remote = events_there(base, run_id)
    assert [e["kind"] for e in remote] == ["text", "cancelled"]
    assert remote[-1]["reason"] == "cancelled by a client"
