"""Shared fixtures: a real truckx server on an unused port (``server_factory``, ``server``), on each store
combination named in ``TRUCKX_TEST_BACKENDS`` (default ``sqlite,mariadb+mongo``; see tests/backends.py,
which provides the backend fixtures as a plugin). Helpers and the test API live in tests/support.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

import pytest

pytest_plugins = ["tests.backends"]  # the backend fixtures (each test's databases)
pytest.register_assert_rewrite("tests.support", "tests.server.support")

import httpx  # noqa: E402 (after the assertion-rewrite registration)

from truckx_server import config  # noqa: E402
from truckx_server.app import Server  # noqa: E402
from truckx_server.config import Secret  # noqa: E402

from tests.support import ADMIN_PASSWORD, RunningServer, ServerFactory, stop_server  # noqa: E402

if TYPE_CHECKING:
    from tests.backends import Backend


@pytest.fixture
async def server_factory(tmp_path: Path, backend: "Backend") -> AsyncIterator[ServerFactory]:
    """Start servers with settings overrides; each is stopped at teardown. A second call with the same
    ``data_dir`` is a restart over the same stores."""
    running: list[RunningServer] = []

    async def start(**overrides: Any) -> RunningServer:
        from tests.backends import backend_overrides

        values: dict[str, Any] = dict(
            host="127.0.0.1", port=0, data_dir=tmp_path / "data",
            initial_admin_password=Secret(ADMIN_PASSWORD), batch_interval_ms=10,
            login_rate_per_min=1000, device_login_rate_per_min=1000, store_timeout_s=5.0,
        )
        values.update(backend_overrides(tmp_path, backend))
        values.update(overrides)
        settings = config.load(environ={}, **values)
        srv = Server(settings)
        await srv.start()
        handle = RunningServer(server=srv, settings=settings,
                               http=httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}", timeout=15))
        running.append(handle)
        return handle

    yield start
    for handle in reversed(running):
        await stop_server(handle)


@pytest.fixture
async def server(server_factory: ServerFactory) -> RunningServer:
    return await server_factory()
