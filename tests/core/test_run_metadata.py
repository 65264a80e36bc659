"""``Run.metadata``: what the front end that started a run passes along, read-only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

import agentnb
from agentnb import Event


class Tagged:
    """A sink that gives its run metadata (as a server front does)."""

    def __init__(self, metadata: object) -> None:
        self.metadata = metadata
        self.events: list[Event] = []

    def send(self, event: Event) -> None:
        self.events.append(event)


async def test_a_run_without_metadata_has_an_empty_mapping() -> None:
    async def agent() -> Mapping[str, Any]:
        return agentnb.current_run().metadata

    run = agentnb.start(agent)
    assert dict(await run.wait()) == {}
    assert dict(run.metadata) == {}


async def test_a_sinks_metadata_reaches_the_agent_and_its_sub_runs() -> None:
    seen: dict[str, Any] = {}

    async def child() -> None:
        seen["child"] = dict(agentnb.current_run().metadata)

    async def agent() -> None:
        seen["root"] = dict(agentnb.current_run().metadata)
        await agentnb.run(child)

    given = {"agui": {"thread_id": "t1", "state": {"count": 1}}}
    await agentnb.run(agent, sink=Tagged(given))
    assert seen == {"root": given, "child": given}


async def test_metadata_is_read_only_and_a_copy() -> None:
    given: dict[str, Any] = {"key": "value"}

    async def agent() -> Mapping[str, Any]:
        metadata = agentnb.current_run().metadata
        with pytest.raises(TypeError):
            metadata["key"] = "changed"  # type: ignore[index]
        return metadata

    run = agentnb.start(agent, sink=Tagged(given))
    metadata = await run.wait()
    given["key"] = "changed later"
    assert metadata == {"key": "value"}


async def test_a_childs_own_sink_adds_to_its_parents_metadata() -> None:
    async def child() -> Mapping[str, Any]:
        return agentnb.current_run().metadata

    async def agent() -> Mapping[str, Any]:
        result: Mapping[str, Any] = await agentnb.run(child, sink=Tagged({"b": 2, "a": 3}))
        return result

    got = await agentnb.run(agent, sink=Tagged({"a": 1}))
    assert got == {"a": 3, "b": 2}


async def test_metadata_that_is_not_a_mapping_starts_nothing() -> None:
    started: list[bool] = []

    async def agent() -> None:
        started.append(True)

    with pytest.raises(TypeError, match="metadata must be a mapping"):
        agentnb.start(agent, sink=Tagged(["not", "a", "mapping"]))
    assert started == []
