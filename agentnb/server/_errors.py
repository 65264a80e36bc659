"""Every error the web front answers with, and how it is answered: one place for all of them.

Each is an :class:`ApiError`: a status, a code and a message that says what to
do. Over HTTP it is ``{"error": code, "message": message}`` with the status;
over the WebSocket ``{"type": "error", "error": code, "message": ..., "ref": ...}``.

    ApiError (agentnb.AgentnbError)       any refused request (bad JSON, bad fields, ...)
    ├── UnknownAgent           404        no agent by that name here
    ├── UnknownRun             404        no run by that id (never, or forgotten)
    ├── UnknownQuestion        404        the run has no question by that ask_id
    ├── Answered               409        the question is already answered (one answer is taken)
    ├── Ended                  409        the question's run has ended: it takes no answer
    ├── NotAChoice             422        the value is not one of the question's choices
    ├── Expired                410        the events asked for are gone (or the whole run)
    ├── BadEventId             400        a Last-Event-ID that is not <run id>:<n> of the run
    ├── OverBudget             503        the buffers are full: no new run now
    └── ShuttingDown           503        the server is stopping

An answer refused by the run (``agentnb.InvalidAnswer``) is mapped by
:func:`refused` (its ``reason``: unknown, answered, ended, invalid); a question
still open keeps waiting for a valid answer.

Requests that uvicorn refuses before the app sees them (a malformed request
line, a bad Content-Length, a NUL in a header) get uvicorn's own plain-text 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .._events import JSON
from .._exceptions import AgentnbError, InvalidAnswer

__all__ = [
    "Answered",
    "ApiError",
    "BadEventId",
    "Ended",
    "Expired",
    "NotAChoice",
    "OverBudget",
    "ShuttingDown",
    "UnknownAgent",
    "UnknownQuestion",
    "UnknownRun",
    "refused",
]


class ApiError(AgentnbError):
    """A refused request, answered as ``{"error": code, "message": message}`` with *status*."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"

    def body(self) -> dict[str, str]:
        """The JSON body of the HTTP answer."""
        return {"error": self.code, "message": self.message}

    def ws(self, ref: JSON = None, **fields: JSON) -> str:
        """The WebSocket error message (``ref`` is the request's, to match them up)."""
        message = {"type": "error", "error": self.code, "message": self.message, **fields}
        return json.dumps({**message, "ref": ref}, ensure_ascii=False, separators=(",", ":"))


class UnknownAgent(ApiError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        listing = ", ".join(sorted(known)) or "none"
        super().__init__(
            404, "unknown_agent", f"no agent named {name!r} here; the agents are: {listing}"
        )


class UnknownRun(ApiError):
    def __init__(self, run_id: str, keep_seconds: float) -> None:
        super().__init__(
            404,
            "unknown_run",
            f"no run {run_id!r} here: it never existed, or it ended more than "
            f"{keep_seconds:g} s ago and was forgotten",
        )


class UnknownQuestion(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "unknown_question", message)


class Answered(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, "answered", message)


class Ended(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, "ended", message)

    @classmethod
    def run(cls, run_id: str, status: str) -> Ended:
        return cls(f"run {run_id} has ended ({status}): its questions take no answer now")


class NotAChoice(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(422, "invalid_answer", f'"value": {message}')


def refused(exc: InvalidAnswer) -> ApiError:
    """The answer to send for an answer the run refused (by ``InvalidAnswer.reason``)."""
    message = str(exc)
    if exc.reason == "unknown":
        return UnknownQuestion(message)
    if exc.reason == "answered":
        return Answered(message)
    if exc.reason == "ended":
        return Ended(message)
    return NotAChoice(message)


class Expired(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(410, "expired", message)

    @classmethod
    def position(cls, run_id: str, first: int, keeps: str) -> Expired:
        return cls(
            f"run {run_id}'s events before #{first} are no longer buffered (the replay buffer "
            f"keeps {keeps}); resume from a later id or start a new run"
        )

    @classmethod
    def behind(cls, run_id: str) -> Expired:
        return cls(
            f"this client fell too far behind run {run_id} and was cut off; resume with the "
            "last id it got (if that is still buffered) or start a new run"
        )

    @classmethod
    def evicted(cls, run_id: str, budget: int) -> Expired:
        return cls(
            f"run {run_id}'s events were dropped to keep the server within its memory budget "
            f"for buffered events ({budget / 2**20:g} MiB); start a new run"
        )


class BadEventId(ApiError, ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_event_id", message)


class OverBudget(ApiError):
    def __init__(self, live_bytes: int, budget: int, live_runs: int) -> None:
        super().__init__(
            503,
            "over_budget",
            f"the server's event buffers are full: {live_runs} live runs hold "
            f"{live_bytes / 2**20:.1f} MiB of its {budget / 2**20:g} MiB budget, so it starts "
            "no run now; try again when runs have ended (or raise create_app(max_buffer=...))",
        )


class ShuttingDown(ApiError):
    def __init__(self) -> None:
        super().__init__(503, "shutting_down", "the server is shutting down; start runs elsewhere")
