"""What the tests and the benchmarks share: one copy of each tool that drives a real front.

* :mod:`harness.wait`: polling a condition with a deadline (no "sleep long enough").
* :mod:`harness.kernel`: a real ipykernel, its IOPub read raw off its socket in a thread.
* :mod:`harness.jupyter`: jupyter_server, JupyterLab or Notebook 7 in a temporary
  directory, and a kernel's websocket as a browser uses it.
* :mod:`harness.browser`: Debian's Chromium through Playwright, and JupyterLab's page.
* :mod:`harness.web`: uvicorn, in a thread of this process or in a child process.
* :mod:`harness.wire`: HTTP/1.1 and Server-Sent Events by hand: requests, chunked
  bodies, a spec-correct SSE parser, raw sockets.
* :mod:`harness.report`: the benchmarks' tables and figures.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ROOT", "child_env"]

ROOT = Path(__file__).resolve().parent.parent


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment for a child process that imports this checkout (agentnb, tests).

    The repository's root goes first on ``PYTHONPATH``, whatever the child's working
    directory; pytest's ``PYTEST_CURRENT_TEST`` is left out; *extra* is set last.
    """
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env
