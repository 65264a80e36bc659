"""The server tests' fixture: what each served run sent, by run id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentnb import Event
from tests.server.served import recording


@pytest.fixture
def sent() -> Iterator[dict[str, list[Event]]]:
    """The events each run served during the test sent, by run id."""
    with recording() as sent:
        yield sent
