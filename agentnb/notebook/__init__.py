"""The notebook front: watch a run live in a Jupyter cell.

::

    %load_ext agentnb          # %agent / %%agent, and the demo agents

    await agentnb.notebook.show(poet, "the sea")                     # one line
    await agentnb.run(poet, "the sea", sink=agentnb.notebook.NotebookSink())

Needs the ``notebook`` extra (ipywidgets, anywidget, nest-asyncio2); without it,
or in a terminal IPython, runs stream to the console with a one-line hint.
"""

from __future__ import annotations

from typing import Any

from ._display import NotebookSink, RunView, notebook_sink, show, start_in_cell
from ._markdown import escape_markdown
from ._transcript import Transcript

__all__ = [
    "NotebookSink",
    "RunView",
    "Transcript",
    "escape_markdown",
    "load_ipython_extension",
    "notebook_sink",
    "show",
    "start_in_cell",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext agentnb``: the %agent / %%agent magics and the demo agents."""
    from ._magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from ._magics import unload_ipython_extension as unload

    unload(ipython)
