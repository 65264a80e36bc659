"""Finding an SDK at use time: a clear error naming the pip command, and version checks."""

from __future__ import annotations

import importlib
import importlib.metadata
from functools import cache
from types import ModuleType

__all__ = ["require", "require_version"]


def require(module: str, extra: str) -> ModuleType:
    """Import *module*, or raise ImportError saying which agentnb extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this needs {module.partition('.')[0]}, which is not installed: "
            f"pip install 'agentnb[{extra}]'"
        ) from exc


def _parse(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@cache
def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None  # installed some other way (a source tree): nothing to compare


def require_version(distribution: str, minimum: str, extra: str, what: str) -> None:
    """Raise ImportError if *distribution* is older than *minimum* (what for, and the fix)."""
    installed = _installed(distribution)
    if installed is None:
        return
    if _parse(installed) < _parse(minimum):
        raise ImportError(
            f"{what} needs {distribution} >= {minimum}, but {installed} is installed: "
            f"pip install -U 'agentnb[{extra}]'"
        )
