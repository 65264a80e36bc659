"""The one error the web front answers with: a status, a code and a message that says what to do."""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """A bad request, answered as ``{"error": code, "message": message}`` with *status*.

    Over the WebSocket it becomes ``{"type": "error", "error": code, "message": ...}``.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}
