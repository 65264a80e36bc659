"""agentnb's own AG-UI out, read back by agentnb's AG-UI client: the same run, both ways.

A run served at ``/ag-ui/{agent}`` and read with ``agentnb.client.agui`` shows what the
same agent shows run locally (text per run, tool calls, results, custom events, state,
usage, sub-runs, the result); a question asked by the served agent is asked in the local
run, and the local answer resumes the served run, exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import agentnb
from agentnb import Answer, Ask, Custom, Event, TextChunk, ToolCall, ToolResult
from agentnb.client import agui
from agentnb.server import create_app
from agentnb.testing import capture_events
from harness.wait import eventually
from harness.web import serving
from tests.helpers import Recorder


async def helper(topic: str) -> str:
    agentnb.emit(f"helping with {topic}")
    return "helped"


async def family(topic: str) -> str:
    """Text, a tool call and its result, custom events, state, usage, a sub-run."""
    agentnb.emit(ToolCall("look_up", {"term": topic, "deep": True}, call_id="c1"))
    agentnb.emit(ToolResult("look_up", {"found": [1, 2]}, call_id="c1"))
    agentnb.emit(Custom("progress", {"done": 1, "of": 2}))
    agentnb.emit(agentnb.StateSnapshot({"count": 1}))
    agentnb.emit(agentnb.StateDelta([{"op": "replace", "path": "/count", "value": 2}]))
    await agentnb.run(helper, topic)
    agentnb.emit(f"about {topic} </script><img src=x onerror=alert(1)>")
    agentnb.emit(agentnb.Usage(model="m", provider="p", input_tokens=10, output_tokens=5))
    return f"done with {topic}"


async def janitor(folder: str) -> str:
    if not await agentnb.approve("rm", {"path": folder}, call_id="c9"):
        return "kept"
    name = await agentnb.ask("Name for the backup?")
    return f"removed {folder}, backed up as {name}"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serving(create_app(agents=[family, janitor])) as url:
        yield url


def shown(events: list[Event]) -> dict[str, Any]:
    """What a sink shows of a run, without ids, times or the root's name."""
    texts: dict[tuple[str, ...], str] = {}
    for event in events:
        if isinstance(event, TextChunk):
            where = event.path[1:]
            texts[where] = texts.get(where, "") + event.text
    return {
        "texts": texts,
        "calls": [(e.name, e.args) for e in events if isinstance(e, ToolCall)],
        "results": [(e.name, e.result) for e in events if isinstance(e, ToolResult)],
        "custom": [(e.name, e.data) for e in events if isinstance(e, Custom)],
        "state": [
            e.payload() for e in events if isinstance(e, agentnb.StateSnapshot | agentnb.StateDelta)
        ],
        "usage": [
            (e.input_tokens, e.output_tokens) for e in events if isinstance(e, agentnb.Usage)
        ],
        "runs": sorted({e.path[1:] for e in events}),
        "end": [(e.path[1:], e.kind) for e in events if e.terminal],
    }


async def test_a_served_run_read_back_over_ag_ui_shows_what_the_local_run_shows(
    base: str,
) -> None:
    with capture_events() as local:
        assert await agentnb.run(family, "tides") == "done with tides"
    with capture_events() as remote:
        result = await agentnb.run(agui(f"{base}/ag-ui/family", name="family"), "tides")
    assert result == "done with tides"
    assert shown(list(remote)) == shown(list(local))


async def test_a_served_question_is_asked_locally_and_the_answer_resumes_it_once(
    base: str,
) -> None:
    class Answering(Recorder):
        answers = True

    sink = Answering()
    run = agentnb.start(agui(f"{base}/ag-ui/janitor", name="janitor"), "/srv", sink=sink)
    await eventually(lambda: run.questions)
    approval = run.questions[0]
    assert (approval.prompt, approval.choices, approval.call_id) == (
        'Run rm(path="/srv")?',
        ["approve", "deny"],
        "c9",
    )
    run.answer(approval.ask_id, "approve", by="cell")
    await eventually(lambda: [q.ask_id for q in run.questions] not in ([], [approval.ask_id]))
    name = run.questions[0]
    assert (name.prompt, name.choices) == ("Name for the backup?", None)
    run.answer(name.ask_id, "archive-7", by="cell")
    assert await run.wait() == "removed /srv, backed up as archive-7"
    asks = [e for e in sink.events if isinstance(e, Ask)]
    answers = [e for e in sink.events if isinstance(e, Answer)]
    assert len(asks) == 2
    assert [(a.ask_id, a.value, a.by) for a in answers if a.by == "cell"] == [
        (approval.ask_id, "approve", "cell"),
        (name.ask_id, "archive-7", "cell"),
    ]
