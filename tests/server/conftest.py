"""Fixtures of the server tests: ``api`` is the ``server`` fixture with an OpenAPI checker on its httpx
client; it fails the test at teardown if any response did not match the served document."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from tests.server.support import attach_checker
from tests.support import RunningServer


@pytest.fixture
async def api(server: RunningServer) -> AsyncIterator[RunningServer]:
    """The server, with every response checked against the OpenAPI document."""
    checker = attach_checker(server)
    yield server
    assert not checker.failures, "responses that disagree with the OpenAPI document:\n" + "\n".join(checker.failures)


# -- helpers ---------------------------------------------------------------------------------------
