"""A cell's run fed by another process through Redis, in a real notebook kernel.

The cell's agent shares its run (``agentnb.redis.share``), hands the pickled handle to
a Python subprocess that emits inside ``agentnb.redis.attach``, and waits for it: the
cell's view shows the subprocess's block as a sub-run, with its text, and its end.
The block's question is the cell's, answered in its view; the cell's Stop stops the
block in the subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.kernel import Kernel
from harness.redis import redis_server
from tests.notebook.views import all_items, wait_view

pytestmark = pytest.mark.kernel

# The other process: it reads the handle from stdin and emits into the cell's run.
CHILD = """
import pickle, sys, time
import agentnb
from agentnb.redis import attach

handle = pickle.loads(sys.stdin.buffer.read())
block = attach(handle, name="elsewhere")
try:
    with block:
        if sys.argv[1] == "ask":
            answer = block.ask("Deploy <b>prod</b>?", choices=["yes", "no"])
            agentnb.emit(f"deploying: {answer}\\n")
        elif sys.argv[1] == "forever":
            n = 0
            while True:
                agentnb.emit(f"tick {n}\\n")
                n += 1
                time.sleep(0.01)
        for n in range(3):
            agentnb.emit(f"line {n} <i>from</i> the subprocess\\n")
        if sys.argv[1] == "fail":
            raise KeyError("lost")
except agentnb.RunCancelled:
    sys.exit(3)
"""

AGENT = """
import asyncio, pickle, sys
import agentnb, agentnb.redis

children = []

@agentnb.agent(name="fanout")
async def fanout(mode: str) -> str:
    handle = agentnb.redis.share({url!r})
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", {child!r}, mode.strip(), stdin=asyncio.subprocess.PIPE
    )
    children.append(child)
    await child.communicate(pickle.dumps(handle))
    [run] = await handle.wait()
    return f"{{run.name}} ended {{run.status}}"
"""


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    with redis_server() as server:
        kernel = Kernel()
        try:
            kernel.run_ok("%load_ext agentnb\n" + AGENT.format(url=server.url, child=CHILD))
            yield kernel
        finally:
            kernel.close()


def test_a_subprocess_emits_into_the_cell(k: Kernel) -> None:
    cell = k.wait(k.submit("%%agent -o outcome fanout\nok"), 60)
    assert cell.ok, cell.summary()
    items = all_items(k, wait_view(k, cell.msg_id))
    text = [i for i in items if i[0] == "text"]
    assert {i[1] for i in text} == {"elsewhere"}
    assert "".join(i[2] for i in text) == "".join(
        f"line {n} <i>from</i> the subprocess\n" for n in range(3)
    )
    assert k.value("outcome") == "'elsewhere ended done'"
    assert "line 2 <i>from</i> the subprocess" in cell.final["text/plain"]


def test_a_subprocess_that_raises_shows_its_error(k: Kernel) -> None:
    cell = k.wait(k.submit("%%agent -o outcome fanout\nfail"), 60)
    assert cell.ok, cell.summary()
    items = all_items(k, wait_view(k, cell.msg_id))
    errors = [i for i in items if i[0] == "error"]
    assert [e[1] for e in errors] == ["elsewhere"]
    assert "KeyError: 'lost'" in errors[0][2]
    assert k.value("outcome") == "'elsewhere ended error'"


def test_a_subprocess_asks_and_the_cells_view_answers(k: Kernel) -> None:
    cell_id = k.submit("%%agent -o outcome fanout\nask")  # interactive: the view answers
    comm = wait_view(k, cell_id)
    k.wait_for(lambda: any(i[0] == "ask" for i in all_items(k, comm)), 60, "the question")
    [ask] = [i for i in all_items(k, comm) if i[0] == "ask"]
    assert ask[1] == "elsewhere"
    assert ask[3:] == ["Deploy <b>prod</b>?", ["yes", "no"], None, ""]
    k.comm_send(comm, {"t": "answer", "ask_id": ask[2], "value": "maybe"})
    k.wait_for(lambda: any(c.get("t") == "refused" for c in k.custom(comm)), 20, "a refusal")
    assert not k.idle(cell_id)  # refused here: nothing sent, the block still asks
    k.comm_send(comm, {"t": "answer", "ask_id": ask[2], "value": "yes"})
    cell = k.wait(cell_id, 60)
    assert cell.ok, cell.summary()
    items = all_items(k, comm)
    assert [i for i in items if i[0] == "answer"] == [
        ["answer", "elsewhere", ask[2], "yes", "cell"]
    ]
    text = "".join(i[2] for i in items if i[0] == "text")
    assert text.startswith("deploying: yes\n")
    assert k.value("outcome") == "'elsewhere ended done'"
    assert k.value("repr(children[-1].returncode)") == "'0'"


def test_the_cells_stop_stops_a_subprocess_that_emits_forever(k: Kernel) -> None:
    cell_id = k.submit("%%agent fanout\nforever")
    comm = wait_view(k, cell_id)
    k.wait_for(lambda: any(i[0] == "text" for i in all_items(k, comm)), 60, "the first tick")
    k.comm_send(comm, {"t": "stop"})
    cell = k.wait(cell_id, 60)
    assert cell.ok, cell.summary()  # stopped: Run All goes on
    items = all_items(k, comm)
    ends = [i for i in items if i[0] == "cancelled"]
    assert ends == [
        ["cancelled", "elsewhere", "parent run fanout ended"],
        ["cancelled", "", "stopped from the notebook"],
    ]
    ticks = "".join(i[2] for i in items if i[0] == "text")
    shown = ticks.splitlines()
    assert shown == [f"tick {n}" for n in range(len(shown))]  # in order, none lost
    # The subprocess was told: its block raised RunCancelled (exit code 3).
    k.wait_for(
        lambda: k.value("repr(children[-1].returncode)") == "'3'", 30, "the subprocess's exit"
    )
