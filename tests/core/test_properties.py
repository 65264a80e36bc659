"""Ordering and isolation as properties, over random scripts of concurrent, nested runs.

A script is a tree: each run emits events of random kinds (from the loop or a worker
thread, with ``emit`` or ``aemit``), gives the loop away at random points, starts child
runs (one at a time or several at once, some with their own sink) and then returns or
raises. Several such trees run at once, each consumed by ``run()`` or ``stream()`` and
extra sinks. Every sink must then see exactly the events of its run's subtree, each
run's in emission order with ``seq`` 0..n-1, one terminal per run and it last, children
inside the stretch of their parent where they were called, and the same order as every
other sink of that run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentnb
from tests.helpers import Recorder

KINDS = (
    "text",
    "status",
    "tool_call",
    "tool_result",
    "custom",
    "reasoning",
    "tool_call_delta",
    "step_start",
    "state_snapshot",
    "raw",
)


@dataclass
class Emit:
    kind: str
    via: str  # "emit", "aemit" or "thread"


@dataclass
class Pause:
    turns: int


@dataclass
class Children:
    scripts: list[Script]
    together: bool  # asyncio.gather rather than one after another


@dataclass
class Script:
    steps: list[Emit | Pause | Children]
    fails: bool
    own_sink: bool
    label: str = ""
    path: tuple[str, ...] = ()
    sink: Recorder | None = None
    children: list[Script] = field(default_factory=list)


class SlowRecorder(Recorder):
    async def send(self, event: agentnb.Event) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.events.append(event)


class ScriptFailed(Exception):
    pass


emits = st.builds(Emit, st.sampled_from(KINDS), st.sampled_from(("emit", "aemit", "thread")))
pauses = st.builds(Pause, st.integers(1, 3))


def scripts(depth: int) -> st.SearchStrategy[Script]:
    step: st.SearchStrategy[Emit | Pause | Children] = st.one_of(emits, pauses)
    if depth > 0:
        children = st.builds(
            Children, st.lists(scripts(depth - 1), min_size=1, max_size=3), st.booleans()
        )
        step = st.one_of(emits, emits, pauses, children)
    return st.builds(
        Script,
        st.lists(step, max_size=8),
        st.booleans(),
        st.booleans(),
    )


def label_tree(script: Script, label: str, parent_path: tuple[str, ...]) -> None:
    script.label = label
    script.path = (*parent_path, label)
    script.sink = Recorder() if script.own_sink else None
    counter = itertools.count()
    for step in script.steps:
        if isinstance(step, Children):
            for child in step.scripts:
                label_tree(child, f"{label}.{next(counter)}", script.path)
                script.children.append(child)


def walk(script: Script) -> list[Script]:
    return [script, *(s for c in script.children for s in walk(c))]


def make_event(label: str, index: int, kind: str) -> agentnb.Event | str:
    """An event whose payload says which run emitted it, and at which step."""
    tag = f"{label}#{index}"
    if kind == "text":
        return tag
    if kind == "status":
        return agentnb.Status(tag)
    if kind == "tool_call":
        return agentnb.ToolCall("probe", {"tag": tag}, call_id=tag)
    if kind == "tool_result":
        return agentnb.ToolResult("probe", [tag], call_id=tag)
    if kind == "reasoning":
        return agentnb.Reasoning(tag, message_id=tag)
    if kind == "tool_call_delta":
        return agentnb.ToolCallDelta(tag, '{"a": ')
    if kind == "step_start":
        return agentnb.StepStart("step", step_id=tag)
    if kind == "state_snapshot":
        return agentnb.StateSnapshot({"tag": tag})
    if kind == "raw":
        return agentnb.Raw("probe", {"tag": tag})
    return agentnb.Custom("mark", {"tag": tag})


def tag_of(event: agentnb.Event) -> tuple[str, int]:
    if isinstance(event, agentnb.TextChunk):
        tag = event.text
    elif isinstance(event, agentnb.Status):
        tag = event.message
    elif isinstance(event, agentnb.ToolCall | agentnb.ToolResult | agentnb.ToolCallDelta):
        tag = event.call_id
    elif isinstance(event, agentnb.Reasoning):
        tag = event.message_id
    elif isinstance(event, agentnb.StepStart):
        tag = event.step_id
    elif isinstance(event, agentnb.StateSnapshot | agentnb.Raw):
        data = event.state if isinstance(event, agentnb.StateSnapshot) else event.event
        assert isinstance(data, dict)
        tag = str(data["tag"])
    elif isinstance(event, agentnb.Custom):
        assert isinstance(event.data, dict)
        tag = str(event.data["tag"])
    elif isinstance(event, agentnb.Done):
        return str(event.result), -1
    elif isinstance(event, agentnb.Error):
        return event.message, -1
    else:
        raise AssertionError(f"unexpected event {event!r}")
    label, _, index = tag.rpartition("#")
    return label, int(index)


async def perform(script: Script) -> str:
    """The agent: play the script inside its run."""
    for index, step in enumerate(script.steps):
        if isinstance(step, Emit):
            event = make_event(script.label, index, step.kind)
            if step.via == "emit":
                agentnb.emit(event)
            elif step.via == "aemit":
                await agentnb.aemit(event)
            else:
                await asyncio.to_thread(agentnb.emit, event)
        elif isinstance(step, Pause):
            for _ in range(step.turns):
                await asyncio.sleep(0)
        else:
            calls = [
                agentnb.run(perform, child, sink=child.sink, name=child.label)
                for child in step.scripts
            ]
            if step.together:
                await asyncio.gather(*calls, return_exceptions=True)
            else:
                for call in calls:
                    with contextlib.suppress(ScriptFailed):
                        await call
    if script.fails:
        raise ScriptFailed(script.label)
    return script.label


def expected_tags(script: Script) -> list[int]:
    return [i for i, step in enumerate(script.steps) if isinstance(step, Emit)]


def check_sink(owner: Script, events: list[agentnb.Event], everyone: dict[str, Script]) -> None:
    """What one sink of *owner*'s run saw: exactly its subtree, each run in order."""
    subtree = {s.label: s for s in walk(owner)}
    run_of: dict[str, str] = {}  # run_id -> label
    per_run: dict[str, list[tuple[int, agentnb.Event]]] = {}
    for position, event in enumerate(events):
        label, _ = tag_of(event)
        assert label in subtree, f"{label}'s event reached a sink of {owner.label}"
        assert run_of.setdefault(event.run_id, label) == label, "one run_id, two runs"
        assert event.path == everyone[label].path
        assert event.path[: len(owner.path)] == owner.path
        per_run.setdefault(label, []).append((position, event))
    assert set(per_run) == set(subtree), "a run of the subtree is missing"
    assert len(run_of) == len(subtree)

    for label, entries in per_run.items():
        script = subtree[label]
        run_events = [e for _, e in entries]
        assert [e.seq for e in run_events] == list(range(len(run_events)))
        assert [tag_of(e)[1] for e in run_events[:-1]] == expected_tags(script)
        assert [e.terminal for e in run_events].count(True) == 1
        assert run_events[-1].kind == ("error" if script.fails else "done")

    # A child's events lie between its parent's events before and after the call.
    for label, entries in per_run.items():
        script = subtree[label]
        positions = {tag_of(e)[1]: p for p, e in entries[:-1]}
        end = entries[-1][0]
        counter = itertools.count()
        for index, step in enumerate(script.steps):
            if not isinstance(step, Children):
                continue
            before = max((p for i, p in positions.items() if i < index), default=-1)
            after = min((p for i, p in positions.items() if i > index), default=end)
            for _ in step.scripts:
                child = f"{label}.{next(counter)}"
                for descendant in walk(subtree[child]):
                    for p, _e in per_run[descendant.label]:
                        assert before < p < after, f"{descendant.label} outside its call"


async def collect(s: agentnb.RunStream, into: list[agentnb.Event]) -> None:
    """Iterate *s* into *into*, keeping what came before an exception."""
    async for event in s:
        into.append(event)  # noqa: PERF401 (kept if iteration raises)


async def play(trees: list[Script], consumers: list[str]) -> None:
    everyone = {s.label: s for tree in trees for s in walk(tree)}
    seen: dict[str, list[list[agentnb.Event]]] = {}

    async def consume(tree: Script, how: str) -> None:
        plain, slow = Recorder(), SlowRecorder()
        own = [] if tree.sink is None else [tree.sink]
        sinks: list[Any] = [plain, slow, *own]
        streams: list[list[agentnb.Event]] = []
        if how.startswith("stream"):
            maxsize = int(how.partition(":")[2] or 0)  # aemit waits for this consumer
            streamed: list[agentnb.Event] = []
            s = agentnb.stream(perform, tree, sink=sinks, name=tree.label, maxsize=maxsize)
            try:
                await collect(s, streamed)
            except ScriptFailed:
                assert tree.fails
            else:
                assert not tree.fails
            streams.append(streamed)
        else:
            try:
                value = await agentnb.run(perform, tree, sink=sinks, name=tree.label)
            except ScriptFailed:
                assert tree.fails
            else:
                assert value == tree.label
        seen[tree.label] = [plain.events, slow.events, *streams]

    await asyncio.gather(*(consume(t, how) for t, how in zip(trees, consumers, strict=True)))

    for tree in trees:
        views = seen[tree.label]
        for view in views:
            check_sink(tree, view, everyone)
            assert view == views[0], "two sinks of one run disagree on the order"
        for script in walk(tree)[1:]:
            if script.sink is not None:
                check_sink(script, script.sink.events, everyone)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not left, f"tasks left running: {left}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(scripts(depth=2), st.sampled_from(("run", "stream", "stream:1", "stream:3"))),
        min_size=1,
        max_size=4,
    )
)
def test_concurrent_nested_runs_keep_order_and_isolation(
    runs: list[tuple[Script, str]],
) -> None:
    trees = [tree for tree, _ in runs]
    for number, tree in enumerate(trees):
        label_tree(tree, f"r{number}", ())
    asyncio.run(play(trees, [how for _, how in runs]))
    with pytest.raises(agentnb.NoActiveRun):
        agentnb.current_run()
