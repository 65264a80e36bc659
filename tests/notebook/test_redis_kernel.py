"""A cell's run fed by another process through Redis, in a real notebook kernel.

The cell's agent shares its run (``agentnb.redis.share``), hands the pickled handle to
a Python subprocess that emits inside ``agentnb.redis.attach``, and waits for it: the
cell's view shows the subprocess's block as a sub-run, with its text, and its end.
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
import pickle, sys
import agentnb
from agentnb.redis import attach

handle = pickle.loads(sys.stdin.buffer.read())
with attach(handle, name="elsewhere"):
    for n in range(3):
        agentnb.emit(f"line {n} <i>from</i> the subprocess\\n")
    if sys.argv[1] == "fail":
        raise KeyError("lost")
"""

AGENT = """
import asyncio, pickle, sys
import agentnb, agentnb.redis

@agentnb.agent(name="fanout")
async def fanout(mode: str) -> str:
    handle = agentnb.redis.share({url!r})
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", {child!r}, mode.strip(), stdin=asyncio.subprocess.PIPE
    )
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
