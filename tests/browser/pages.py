"""What the browser tests share: the quickstart's cells, and reading a sampler's samples.

Each test puts a sampler in the page (``window.__agentnbSampler``: ``samples``,
taken every few tens of ms, each with a ``status``, and ``read()``) that notes
what a live view shows; these helpers wait on it and read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from harness import ROOT
from harness.browser import Page, wait_for

QUICKSTART = ROOT / "notebooks" / "01_quickstart.ipynb"
# Cells appended to the copy of the quickstart (the repository's file is never touched).
LONG_RUN = "%%agent counter\n300"  # 30 s at speed 1: long enough to be stopped
SLOW_POET = (
    "import agentnb.notebook\n"
    "from agentnb.demo import poet\n"
    'await agentnb.notebook.show(poet, "the sea", speed=0.25)'
)
ENDED = ("done", "error", "cancelled")
# The last sample shows the run ended.
SAMPLED_END = """(ended) => {
    const s = window.__agentnbSampler.samples;
    return s.length && ended.includes(s[s.length - 1].status);
}"""
# At least three different texts sampled: the run has streamed a while.
STREAMED_A_LITTLE = (
    "() => new Set(window.__agentnbSampler.samples.map((s) => s.text).filter(Boolean)).size >= 3"
)


def agent_cell(nb: Any, source: Path = QUICKSTART) -> tuple[int, str, str]:
    """The notebook's first ``%%agent`` cell: its index, agent name and input."""
    for index, c in enumerate(nb.cells):
        if c.cell_type == "code" and c.source.startswith("%%agent "):
            first, _, body = c.source.partition("\n")
            return index, first.split()[1], body.rstrip("\n")
    raise AssertionError(f"{source} has no %%agent cell")


def load_cell(nb: Any, source: Path = QUICKSTART) -> int:
    """The index of the notebook's ``%load_ext agentnb`` cell."""
    for index, c in enumerate(nb.cells):
        if c.cell_type == "code" and c.source.startswith("%load_ext agentnb"):
            return index
    raise AssertionError(f"{source} has no '%load_ext agentnb' cell")


def sampled_after(page: Page, statuses: Sequence[str], count: int, timeout: float = 30) -> None:
    """Wait until *count* samples have been taken since the first one in one of *statuses*.

    For "nothing changes after the end": the samples are the observations, and
    the test looks at them once there are enough.
    """
    wait_for(
        page,
        """([statuses, count]) => {
            const s = window.__agentnbSampler.samples;
            const at = s.findIndex((x) => statuses.includes(x.status));
            return at >= 0 && s.length - 1 - at >= count;
        }""",
        [list(statuses), count],
        timeout=timeout,
    )


class _Reading(Protocol):
    status: str | None
    text: str | None


R = TypeVar("R", bound=_Reading)


def growth_moments(seen: Sequence[R], final: str) -> list[R]:
    """Samples, while running and before the end, whose text is longer than the one before."""
    moments = []
    before = ""
    for s in seen:
        text = s.text or ""
        if s.status == "running" and len(text) > len(before) and text != final:
            moments.append(s)
        before = text
    return moments


def stopped_text(seen: Sequence[R], expected: str) -> tuple[int, str]:
    """After a stop: the first cancelled sample's index, and the one text every sample from
    it on shows (not empty, and a beginning of *expected*: the text stopped, and stays)."""
    stopped = next(i for i, s in enumerate(seen) if s.status == "cancelled")
    after = {s.text for s in seen[stopped:]}
    assert len(after) == 1, f"the text changed after the run was cancelled: {after}"
    final = after.pop() or ""
    assert final
    assert expected.startswith(final)
    return stopped, final
