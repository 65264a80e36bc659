"""The client's exceptions (all ``agentnb.AgentnbError``)::

AgentnbError
├── ServerError          the server refused the request (4xx/5xx, its JSON error message)
├── ConnectionLost       the stream dropped and could not be resumed (also an OSError)
└── RemoteAgentError     the remote agent raised (``remote()`` re-raises it locally)
"""

from __future__ import annotations

from .._exceptions import AgentnbError

__all__ = ["ConnectionLost", "RemoteAgentError", "ServerError"]


class ServerError(AgentnbError):
    """The server refused: ``status``, ``code`` (e.g. ``"unknown_agent"``) and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.message = message


class ConnectionLost(AgentnbError, OSError):
    """The event stream dropped and resuming it failed *attempts* times in a row."""

    def __init__(self, run_id: str | None, last_event_id: str | None, attempts: int, cause: str):
        where = f"run {run_id}" if run_id else "the run"
        after = f" after event {last_event_id}" if last_event_id else ""
        super().__init__(
            f"lost the stream of {where}{after} and could not resume it ({attempts} attempts; "
            f"last: {cause}); resume later with agentnb.client.resume(url, {run_id!r}, "
            f"{last_event_id!r})"
        )
        self.run_id = run_id
        self.last_event_id = last_event_id


class RemoteAgentError(AgentnbError):
    """The remote agent raised: ``type`` is its exception's class name, ``traceback`` its text."""

    def __init__(self, type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type}: {message}" if message else type)
        self.type = type
        self.message = message
        self.traceback = traceback
        if traceback:
            self.add_note(f"The remote traceback:\n{traceback.rstrip()}")


for _cls in (ServerError, ConnectionLost, RemoteAgentError):
    _cls.__module__ = "agentnb.client"  # what tracebacks show: the public name
