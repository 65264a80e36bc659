"""Emit-to-visible latency of a streaming cell, in a real browser (issue 3, point 9).

Run from the repository root (needs the ``test`` extra: jupyterlab, playwright;
and Debian's ``chromium``)::

    python benchmarks/bench_latency.py            # 200 chunks x 2 rounds, about a minute
    python benchmarks/bench_latency.py --quick    # 40 chunks x 1 round: a smoke test

A JupyterLab server (127.0.0.1, a token, everything in a temporary directory;
see harness/jupyter.py) runs a notebook in headless Chromium. An agent defined in the
notebook emits N chunks about 50 ms apart; each chunk carries a marker, its
index and the kernel's ``time.time()`` at the emit (``m17@1732412345.123456``).
In the page, a ``MutationObserver`` on the cell notes when each marker first
appears in the live view's text, and the next animation frame (the frame that
paints it) stamps it with ``performance.timeOrigin + performance.now()``.
Latency = that stamp - the emit time: the same machine's clock on both sides
(the offset between the two clocks is measured and printed).

Baseline, measured in the same page and kernel, rounds alternating: the same
chunks written with plain ``print(chunk, flush=True)`` in a cell, which the
browser shows through JupyterLab's own stream output. agentnb batches what
arrives within its flush period (0.1 s) into one message, so it trades some
latency for a bounded message rate; the ratio shows the price.

Goals: agentnb p50 <= 150 ms, p99 <= 300 ms, and every marker seen. Nothing
here is asserted by a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness package, at the repository's root

from harness.browser import (  # noqa: E402
    Page,
    cell,
    launch,
    open_notebook,
    run_cells,
    settle,
    sync_playwright,
    wait_cells,
)
from harness.jupyter import Jupyter  # noqa: E402
from harness.report import Table, percentile  # noqa: E402

SETUP = '''import asyncio
import time

import agentnb


async def ticker(count):
    """Emits `count` chunks, 50 ms apart, each with its index and emit time."""
    for i in range(int(count)):
        agentnb.emit(f"m{i}@{time.time():.6f} ")
        await asyncio.sleep(INTERVAL)


async def printer(count):
    """The same chunks as plain stream output."""
    for i in range(int(count)):
        print(f"m{i}@{time.time():.6f}", flush=True)
        await asyncio.sleep(INTERVAL)
'''
# Where each way's text shows: the live view's text blocks; the cell's stdout.
WAYS = {
    "agentnb": ("%%agent ticker\n{n}", ".agentnb-run .agentnb-text"),
    "print": (
        "await printer({n})",
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]',
    ),
}
OBSERVER = """([index, selector]) => {
    const node = window.jupyterapp.shell.currentWidget.content.widgets[index].node;
    const seen = new Map();
    const marker = /m(\\d+)@(\\d+\\.\\d+)/g;
    const now = () => performance.timeOrigin + performance.now();
    const scan = () => {
        const dom = now();
        const fresh = [];
        for (const el of node.querySelectorAll(selector)) {
            for (const m of el.textContent.matchAll(marker)) {
                const i = Number(m[1]);
                if (!seen.has(i)) {
                    const rec = {i, emit: Number(m[2]), dom, frame: null};
                    seen.set(i, rec);
                    fresh.push(rec);
                }
            }
        }
        if (fresh.length) requestAnimationFrame(() => {
            const t = now();
            for (const rec of fresh) rec.frame = t;
        });
    };
    const observer = new MutationObserver(scan);
    observer.observe(node, {subtree: true, childList: true, characterData: true});
    window.__latency = {seen, observer};
}"""
ALL_PAINTED = """(n) => {
    const seen = [...window.__latency.seen.values()];
    return seen.filter((r) => r.i < n).length >= n && seen.every((r) => r.frame !== null);
}"""
GOALS = {"p50": 150.0, "p99": 300.0}


@dataclass
class Way:
    name: str
    latencies: list[float] = field(default_factory=list)  # ms, to the painting frame
    dom_latencies: list[float] = field(default_factory=list)  # ms, to the DOM insert
    expected: int = 0
    seen: int = 0


def clock_offset(page: Page) -> tuple[float, float]:
    """Browser clock minus Python's time.time(), in ms, and its uncertainty."""
    best: tuple[float, float] | None = None
    for _ in range(5):
        t0 = time.time()
        browser = page.evaluate("() => performance.timeOrigin + performance.now()")
        t1 = time.time()
        guess = (browser - (t0 + t1) / 2 * 1000, (t1 - t0) / 2 * 1000)
        if best is None or guess[1] < best[1]:
            best = guess
    assert best is not None
    return best


def measure(page: Page, index: int, selector: str, n: int) -> list[dict[str, Any]]:
    """Run cell *index* once; return each marker's record (emit, dom, frame)."""
    page.evaluate(
        "(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs.clear()",
        index,
    )
    cell(page, index)
    page.evaluate(OBSERVER, [index, selector])
    started = time.time()
    run_cells(page, index)
    wait_cells(page, timeout=n * 0.2 + 60)
    # Every marker seen and painted (its frame stamped); a marker missing is counted below.
    settle(page, ALL_PAINTED, n, timeout=5)
    records: list[dict[str, Any]] = page.evaluate(
        "() => { window.__latency.observer.disconnect();"
        " return [...window.__latency.seen.values()]; }"
    )
    stale = [r for r in records if r["emit"] < started - 1]
    if stale:
        raise RuntimeError(f"markers from an earlier run were counted: {stale[:3]}")
    return records


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=200, help="chunks per run (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each way (default 2)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between chunks")
    parser.add_argument("--quick", action="store_true", help="40 chunks, 1 round: a smoke test")
    args = parser.parse_args(argv)
    n, rounds = (40, 1) if args.quick else (args.chunks, args.rounds)

    began = time.monotonic()
    ways = {name: Way(name) for name in WAYS}
    offsets: list[tuple[float, float]] = []
    with Jupyter() as lab, sync_playwright() as p:
        cells = [
            "%load_ext agentnb\nimport agentnb.demo",
            SETUP.replace("INTERVAL", repr(args.interval)),
            *(code.format(n=n) for code, _ in WAYS.values()),
        ]
        lab.add_notebook("latency.ipynb", cells)
        browser = launch(p)
        try:
            page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            open_notebook(page, lab, "latency.ipynb")
            run_cells(page, 0, 1)
            wait_cells(page)
            order = list(WAYS)
            for r in range(rounds):
                for name in order if r % 2 == 0 else order[::-1]:
                    index = 2 + list(WAYS).index(name)
                    offsets.append(clock_offset(page))
                    records = measure(page, index, WAYS[name][1], n)
                    way = ways[name]
                    way.expected += n
                    way.seen += len({rec["i"] for rec in records if 0 <= rec["i"] < n})
                    way.dom_latencies += [(rec["dom"] - rec["emit"] * 1000) for rec in records]
                    way.latencies += [
                        (rec["frame"] - rec["emit"] * 1000)
                        for rec in records
                        if rec["frame"] is not None
                    ]
                    print(
                        f"round {r + 1} {name:8} seen {len(records)}/{n}, "
                        f"p50 {fmt_ms(statistics.median(way.latencies[-len(records) :]))}",
                        flush=True,
                    )
            offsets.append(clock_offset(page))
        finally:
            browser.close()
            lab.shutdown_kernels()
    took = time.monotonic() - began

    agent, base = ways["agentnb"], ways["print"]
    print()
    print(
        f"Emit-to-visible latency, {n} chunks {args.interval * 1000:.0f} ms apart x {rounds} "
        f"round(s), JupyterLab + Chromium headless, {took:.0f} s in all"
    )
    worst = max(offsets, key=lambda o: abs(o[0]))
    print(f"clock check: browser - kernel clock = {worst[0]:+.1f} ms (+/- {worst[1]:.1f} ms)")
    print()
    figures = Table("measure", "agentnb (widget)", "print (stream)", "detail")
    for label, fn in (
        ("p50, painted", lambda w: percentile(w.latencies, 50)),
        ("p99, painted", lambda w: percentile(w.latencies, 99)),
        ("max, painted", lambda w: max(w.latencies)),
        ("p50, in the DOM", lambda w: percentile(w.dom_latencies, 50)),
        ("p99, in the DOM", lambda w: percentile(w.dom_latencies, 99)),
    ):
        values = [fn(w) if w.latencies else None for w in (agent, base)]
        ratio = f"ratio {values[0] / values[1]:.1f}x" if values[1] and values[0] else ""
        figures.add(label, fmt_ms(values[0]), fmt_ms(values[1]), ratio)
    figures.add(
        "markers seen", f"{agent.seen}/{agent.expected}", f"{base.seen}/{base.expected}", ""
    )
    figures.print(markdown=True)

    print()
    print("Summary")
    summary = Table("figure", "value", "goal", "met")
    met_all = True
    for q, goal in GOALS.items():
        value = percentile(agent.latencies, float(q[1:])) if agent.latencies else None
        met = value is not None and value <= goal
        met_all &= met
        summary.add(
            f"agentnb {q} emit-to-visible",
            fmt_ms(value),
            f"<= {goal:.0f} ms",
            "yes" if met else "NO",
        )
    complete = agent.seen == agent.expected
    met_all &= complete
    summary.add(
        "agentnb markers seen", f"{agent.seen}/{agent.expected}", "all", "yes" if complete else "NO"
    )
    for q in ("p50", "p99"):
        a = percentile(agent.latencies, float(q[1:])) if agent.latencies else None
        b = percentile(base.latencies, float(q[1:])) if base.latencies else None
        ratio = f"{a / b:.1f}x" if a and b else "-"
        summary.add(
            f"{q} agentnb / print baseline", f"{ratio} ({fmt_ms(a)} / {fmt_ms(b)})", "reported", "-"
        )
    summary.print(markdown=True)
    print(f"\nall goals met: {'yes' if met_all else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
