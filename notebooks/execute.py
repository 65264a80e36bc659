"""Re-execute the tutorial notebooks headless and save them with their outputs.

::

    python notebooks/execute.py                     # every notebooks/NN_*.ipynb
    python notebooks/execute.py 02_magics.ipynb     # just these
    python notebooks/execute.py --speed 1           # the demo agents at model pace

Each notebook runs top to bottom in a fresh ``python3`` kernel (nbclient), with
the notebook's folder as the working directory, the way ``pytest --nbval``
replays it. The outputs are written back into the file, consecutive stream
outputs merged (how the kernel happened to flush them does not show).

The demo agents run with ``AGENTNB_DEMO_SPEED=0`` (no pauses) by default. The
saved outputs must not depend on it, and they do not: a demo agent's text
depends only on its input, and final transcripts hold no times or ids, so a
fast run saves what a model-paced one would (``pytest --nbval`` replays the
notebooks at whatever pace its environment sets, model pace if none).
Notebook 03 sets its own pace, because its background runs must outlive their
cells.

A cell tagged ``raises-exception`` must fail (this script says so if it does
not); an error in any other cell stops the script. The tag is the one marker
that JupyterLab's Run All, nbclient and nbval all read (Run All goes on past
such a cell; nbval warns if a ``# NBVAL_RAISES_EXCEPTION`` comment says it too).
Execution times and widget state are not saved: they change on every run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
TAG = "raises-exception"  # a cell that fails on purpose


def _marked(cell: Any) -> bool:
    return cell.cell_type == "code" and TAG in cell.metadata.get("tags", [])


def execute(path: Path, *, timeout: int) -> float:
    """Run the notebook at *path* and save it with its outputs; return the seconds taken."""
    book = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    marked = {i for i, cell in enumerate(book.cells) if _marked(cell)}
    failed: set[int] = set()

    def on_cell_executed(cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        if execute_reply["content"]["status"] == "error":
            failed.add(cell_index)

    client = NotebookClient(
        book,
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=False,
        coalesce_streams=True,
        on_cell_executed=on_cell_executed,
    )
    started = time.perf_counter()
    client.execute()
    took = time.perf_counter() - started
    if marked - failed:
        cells = ", ".join(str(i) for i in sorted(marked - failed))
        raise SystemExit(f"{path.name}: cell(s) {cells} are tagged {TAG} but did not fail")
    for cell in book.cells:  # a traceback names files of this machine: keep the error only
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output['ename']}: {output['evalue']}"]
    nbformat.write(book, path)  # type: ignore[no-untyped-call]
    return took


def _find(path: Path) -> Path:
    """*path* as given, else the notebook of that name next to this script."""
    if path.exists():
        return path.resolve()
    if (HERE / path.name).exists():
        return HERE / path.name
    raise SystemExit(f"no notebook {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb")
    parser.add_argument(
        "--speed", default="0", help="AGENTNB_DEMO_SPEED for the demo agents (default: 0)"
    )
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = [_find(p) for p in args.notebooks] or sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    os.environ["AGENTNB_DEMO_SPEED"] = args.speed  # the kernels inherit it
    total = 0.0
    for path in paths:
        took = execute(path, timeout=args.timeout)
        total += took
        print(f"{path.name}: executed and saved in {took:.1f} s")
    print(f"{len(paths)} notebook(s) in {total:.1f} s (AGENTNB_DEMO_SPEED={args.speed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
