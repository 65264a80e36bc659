"""The RunView widget as the kernel's messages show it: found by its comm_open, its items and
state updates, and what the demo poet streams when run here (helpers of the kernel tests)."""

from __future__ import annotations

from typing import Any

import agentnb
from agentnb.demo import poet
from agentnb.notebook import Transcript
from agentnb.testing import capture_events
from harness.kernel import WIDGET_MIME, Cell, Kernel, Msg, parent_id


def run_views(k: Kernel) -> dict[str, Msg]:
    """comm id -> comm_open message, for every RunView widget opened so far."""
    return {
        m["content"]["comm_id"]: m
        for m in k.comm_opens()
        if {"key", "title", "status"} <= set(m["content"]["data"].get("state", {}))
    }


def final_shown(cell: Cell) -> bool:
    """The cell shows its run's final transcript (the last thing a run's sink displays)."""
    return any(WIDGET_MIME not in d for d in cell.displays)


def local_run(topic: str) -> tuple[Any, Transcript, list[str]]:
    """Run the demo poet here (speed 0): its value, its transcript, its event kinds."""
    transcript = Transcript()
    with capture_events() as events:
        value = agentnb.run_sync(poet, topic, speed=0)
    for event in events:
        transcript.add(event)
    return value, transcript, events.kinds()


def views_of(k: Kernel, cell_id: str) -> list[str]:
    """Comm ids of the RunViews a cell opened (their comm_open's parent is the cell)."""
    return [cid for cid, op in run_views(k).items() if parent_id(op) == cell_id]


def view_of(k: Kernel, cell_id: str) -> str:
    """The comm id of the one RunView a cell opened."""
    views = views_of(k, cell_id)
    assert len(views) == 1, f"cell opened {len(views)} run views"
    return views[0]


def wait_view(k: Kernel, cell_id: str) -> str:
    """Wait until a running cell has opened its RunView; return its comm id."""
    k.wait_for(lambda: bool(views_of(k, cell_id)), 20, "the cell's run view")
    return view_of(k, cell_id)


def items_of(k: Kernel, comm_id: str) -> list[dict[str, Any]]:
    return [c for c in k.custom(comm_id) if c.get("t") == "items"]


def has_text(k: Kernel, comm_id: str) -> bool:
    return any(item[0] == "text" for msg in items_of(k, comm_id) for item in msg["items"])


def all_items(k: Kernel, comm_id: str) -> list[list[Any]]:
    """The widget's item log rebuilt from its batches, checking they are contiguous."""
    log: list[list[Any]] = []
    for msg in items_of(k, comm_id):
        assert msg["offset"] == len(log), "a batch does not start where the last one ended"
        log.extend(msg["items"])
    return log


def status_updates(k: Kernel, comm_id: str) -> list[str]:
    return [s["status"] for s in k.states(comm_id) if "status" in s]


def state_msg(k: Kernel, comm_id: str, key: str, value: str) -> Msg:
    found = [
        m
        for m in k.comm_msgs(comm_id)
        if m["content"]["data"].get("method") == "update"
        and m["content"]["data"]["state"].get(key) == value
    ]
    assert len(found) == 1, f"{len(found)} updates setting {key}={value!r}"
    return found[0]
