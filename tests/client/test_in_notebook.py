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
from tests.notebook.views import has_text, local_run, status_updates, view_of, wait_view
from tests.server.served import Server, served

pytestmark = pytest.mark.kernel


async def slow_poet(topic: str) -> str:
    """The demo poet at model pace (a run that lasts about four seconds)."""
    return await agentnb.demo.poet(topic, speed=1)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=[agentnb.demo.poet, slow_poet])) as server:
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
