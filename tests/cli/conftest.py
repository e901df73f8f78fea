"""Fixtures for the CLI tests: ``env``, one real server per test module with the CLI pointed at it
(see tests/cli/support.py)."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from tests.cli.support import ADMIN_PASSWORD, Env, ServerThread, server_settings


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("cli")
    srv = ServerThread(server_settings(tmp / "data"))
    srv.start()
    password_file = tmp / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    try:
        with httpx.Client(base_url=srv.url, timeout=15) as http:
            r = http.post("/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 200, r.text
            yield Env(srv=srv, tmp=tmp, http=http, admin_token=r.json()["token"], password_file=password_file)
    finally:
        srv.stop()
