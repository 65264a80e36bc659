"""A remote run shown live in a real notebook kernel, through the notebook sink.

The server runs in this process (a real uvicorn on 127.0.0.1); the kernel is a
real ipykernel that reaches it over HTTP with ``agentnb.client.remote``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import agentnb
import agentnb.demo
from agentnb import JSON
from agentnb.server import create_app
from agentnb.server._hub import RunHub
from harness.kernel import WIDGET_MIME, Kernel
from harness.wait import until
from tests.notebook.views import (
    all_items,
    has_text,
    local_run,
    status_updates,
    view_of,
    wait_view,
)
from tests.server.served import Server, served

pytestmark = pytest.mark.kernel


async def janitor(folder: str) -> str:
    """Asks, then answers with what it was told."""
    if await agentnb.ask(f"Delete files in {folder}?", choices=["yes", "no"]) != "yes":
        return "nothing deleted"
    return "deleted"


async def slow_poet(topic: str) -> str:
    """The demo poet at model pace (a run that lasts about four seconds)."""
    return await agentnb.demo.poet(topic, speed=1)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=[agentnb.demo.poet, slow_poet, janitor])) as server:
        yield server


@pytest.fixture(scope="module")
def base(server: Server) -> str:
    return server.base


@pytest.fixture(scope="module")
def k(base: str) -> Iterator[Kernel]:
    kernel = Kernel({"AGENTNB_DEMO_SPEED": "0"})
    try:
        kernel.run_ok(
            "%load_ext agentnb\n"
            "import agentnb, agentnb.client\n"
            f"URL = {base!r}\n"
            "poet = agentnb.client.remote(URL, 'poet')\n"
            "agentnb.agent(name='remote_slow')(agentnb.client.remote(URL, 'slow_poet'))\n"
            "agentnb.agent(name='remote_janitor')(agentnb.client.remote(URL, 'janitor'))\n"
        )
        yield kernel
    finally:
        kernel.close()


def test_show_streams_a_remote_run_into_the_cell_and_leaves_its_transcript(k: Kernel) -> None:
    cell = k.run_ok('result = await agentnb.notebook.show(poet, "the sea")')
    value, transcript, _ = local_run("the sea")
    assert cell.displays[0][WIDGET_MIME]["model_id"] == view_of(k, cell.msg_id)
    assert status_updates(k, view_of(k, cell.msg_id)) == ["done"]
    assert value in cell.final["text/plain"]
    assert cell.final["text/plain"] == transcript.plain()
    assert cell.final["text/markdown"] == transcript.markdown()
    assert k.value("result") == repr(value)


def test_stop_in_the_cell_cancels_the_run_on_the_server(
    k: Kernel, base: str, server: Server
) -> None:
    cell_id = k.submit("%%agent remote_slow\nthe far sea")
    comm = wait_view(k, cell_id)
    k.wait_for(lambda: has_text(k, comm), 20, "streamed text")
    assert k.idle(cell_id) is False, "the run ended before the stop could be tested"
    k.comm_send(comm, {"t": "stop"})
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()
    assert status_updates(k, comm) == ["cancelled"]
    assert cell.final["text/plain"].rstrip("\n").endswith("cancelled: stopped from the notebook")
    assert httpx.get(f"{base}/api/agents").status_code == 200  # the server goes on serving

    def cancelled() -> bool:
        statuses = [r["status"] for r in _served_runs(server, "slow_poet")]
        return bool(statuses) and statuses[-1] == "cancelled"

    until(cancelled, 2, what="the served run cancelled", every=0.01)


def _served_runs(server: Server, agent: str) -> list[dict[str, JSON]]:
    def read() -> list[dict[str, JSON]]:
        hub: RunHub = server.hub
        return [s.describe() for s in hub._runs.values() if s.agent == agent]

    return server.call(read)


def test_a_remote_runs_question_is_asked_in_the_cell_and_its_answer_goes_to_the_server(
    k: Kernel, server: Server
) -> None:
    cell_id = k.submit("%%agent -o outcome remote_janitor\n/srv")
    comm = wait_view(k, cell_id)
    k.wait_for(lambda: any(i[0] == "ask" for i in all_items(k, comm)), 20, "the question")
    ask = next(i for i in all_items(k, comm) if i[0] == "ask")
    assert ask[3:5] == ["Delete files in /srv?", ["yes", "no"]]
    (waiting,) = [r for r in _served_runs(server, "janitor") if r["status"] == "running"]
    k.comm_send(comm, {"t": "answer", "ask_id": ask[2], "value": "yes"})
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()
    assert [i for i in all_items(k, comm) if i[0] == "answer"] == [
        ["answer", "", ask[2], "yes", "cell"]
    ]
    assert k.value("outcome") == "'deleted'"
    assert cell.final["text/plain"].startswith("? Delete files in /srv? [yes/no]\n= yes (by cell)")
    served = [r for r in _served_runs(server, "janitor") if r["run_id"] == waiting["run_id"]]
    assert served[0]["status"] == "done"  # answered on the server, by the cell


def test_headless_a_remote_question_without_a_default_fails_the_cell_naming_it(
    k: Kernel, server: Server
) -> None:
    cell = k.wait(k.submit("%%agent remote_janitor\n/tmp", interactive=False))
    assert not cell.ok
    assert "NoAnswer" in cell.summary()
    assert "Delete files in /tmp?" in cell.summary()

    def cancelled() -> bool:
        return _served_runs(server, "janitor")[-1]["status"] == "cancelled"

    until(cancelled, 5, what="the remote run cancelled, not left waiting", every=0.01)
