"""Fixtures for the CLI tests: ``env``, one real server per test module with the CLI pointed at it
(see tests/cli/support.py)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.cli.support import Env, running_env, server_settings


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("cli")
    with running_env(tmp, server_settings(tmp / "data")) as env:
        yield env
