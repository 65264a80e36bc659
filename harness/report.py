"""The benchmarks' figures and summary tables.

::

    table = Table("measure", "agentnb", "baseline", "ratio", "goal", "met")
    table.add("per event, burst", "181 ns", "150 ns", "1.21x", "<= 1.5x", met(True, True))
    table.print()                 # aligned columns; table.print(markdown=True) for | a | b |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Table", "met", "ms", "percentile", "plural", "yes"]


class Table:
    """Rows of text under a header, printed with their columns aligned."""

    def __init__(self, *header: str) -> None:
        self.header = header
        self.rows: list[tuple[str, ...]] = []

    def add(self, *cells: str) -> None:
        if len(cells) != len(self.header):
            raise ValueError(f"{len(cells)} cells for {len(self.header)} columns: {cells}")
        self.rows.append(cells)

    def extend(self, rows: Sequence[Sequence[str]]) -> None:
        for row in rows:
            self.add(*row)

    def print(self, *, markdown: bool = False) -> None:
        if markdown:
            for cells in (self.header, ["---"] * len(self.header), *self.rows):
                print("| " + " | ".join(cells) + " |")
            return
        table = [self.header, *self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.header))]
        for row in table:
            line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            print(("  " + line).rstrip())


def met(ok_median: bool, ok_best: bool) -> str:
    """Whether a goal is met: "yes" (by the median), "best only", or "no"."""
    if ok_median:
        return "yes"
    return "best only" if ok_best else "no"


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (*p* in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(len(ordered) * p / 100)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    """*seconds* in milliseconds, two decimals below 1 ms, one above."""
    return f"{seconds * 1e3:.2f} ms" if seconds < 0.001 else f"{seconds * 1e3:.1f} ms"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
