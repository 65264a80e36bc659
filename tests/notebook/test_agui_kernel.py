"""An AG-UI agent (pydantic-ai's AGUIAdapter) watched in a real notebook kernel with ``%%agent``.

The AG-UI server runs in this process (a real uvicorn on 127.0.0.1); the kernel is a
real ipykernel that reaches it over HTTP with ``agentnb.client.agui``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.kernel import Kernel
from harness.web import serving
from tests.client.agui_servers import pydantic_app
from tests.notebook.views import all_items, wait_view

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    with serving(pydantic_app()) as base:
        kernel = Kernel()
        try:
            kernel.run_ok(
                "%load_ext agentnb\n"
                "import agentnb, agentnb.client\n"
                f"agentnb.agent(name='adder')(agentnb.client.agui({base + '/'!r}))\n"
                f"agentnb.agent(name='deleter')(agentnb.client.agui({base + '/hitl'!r}))\n"
                f"agentnb.agent(name='page')(agentnb.client.agui({base + '/html'!r}))\n"
            )
            yield kernel
        finally:
            kernel.close()


def test_an_agui_agent_cell_shows_its_text_and_tool_call(k: Kernel) -> None:
    cell = k.wait(k.submit("%%agent -o outcome adder\n1+2?"))
    assert cell.ok, cell.summary()
    comm = wait_view(k, cell.msg_id)
    items = all_items(k, comm)
    assert "The answer is 3." in "".join(i[2] for i in items if i[0] == "text")
    assert "".join(i[2] for i in items if i[0] == "reasoning") == "Let me think."
    assert any(i[0] == "tool" and "add" in i[2] for i in items)
    assert "The answer is 3." in cell.final["text/plain"]
    assert k.value("outcome") == "'The answer is 3.'"


def test_an_agui_approval_is_answered_in_the_cell(k: Kernel) -> None:
    cell_id = k.submit("%%agent -o outcome deleter\ndelete build/x")
    comm = wait_view(k, cell_id)
    k.wait_for(lambda: any(i[0] == "ask" for i in all_items(k, comm)), 20, "the question")
    ask = next(i for i in all_items(k, comm) if i[0] == "ask")
    assert ask[3:5] == ['Approve delete_file({"path":"build/x"})?', ["approve", "deny"]]
    k.comm_send(comm, {"t": "answer", "ask_id": ask[2], "value": "approve"})
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()
    assert k.value("outcome") == "'Done.'"
    assert any(i[0] == "tool" and "deleted build/x" in i[3] for i in all_items(k, comm))


def test_a_server_answering_html_fails_the_cell_with_a_clear_error(k: Kernel) -> None:
    cell = k.wait(k.submit("%%agent page\nhello"))
    assert not cell.ok
    shown = cell.summary()
    assert "ServerError" in shown
    assert "not an event stream" in shown
    assert "text/html" in shown
