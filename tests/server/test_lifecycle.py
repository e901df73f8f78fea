"""Start-up (secrets, first admin, migrations), shutdown order, logging and metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from tests.support import RunningServer, ServerFactory, stop_server
from truckx_server import config
from truckx_server.migrate import alembic_config
from truckx_server.storage.sql.schema import metadata


async def test_first_start_generates_secrets_and_admin(server_factory: ServerFactory, tmp_path) -> None:
    data = tmp_path / "fresh"
    server = await server_factory(data_dir=data, initial_admin_password=None)
    for name in ("jwt-secret", "device-hash-key", "admin-password"):
        mode = stat.S_IMODE(os.stat(data / name).st_mode)
        assert mode == 0o600, name
    password = (data / "admin-password").read_text().strip()
    assert server.probe.initial_admin_password == password and len(password) >= 16
    r = await server.http.post("/api/v1/admin/login", json={"username": "admin", "password": password})
    assert r.status_code == 200
    secret = (data / "jwt-secret").read_text()
    await stop_server(server)
    again = await server_factory(data_dir=data, initial_admin_password=None)
    assert (data / "jwt-secret").read_text() == secret  # kept, so tokens survive restarts
    assert again.probe.initial_admin_password is None  # printed only once


def test_settings_from_env_and_flags(tmp_path) -> None:
    _cmd, args = config.parse_args(["serve", "--port", "9001"])
    s = config.load(args, environ={"TRUCKX_PORT": "9000", "TRUCKX_DATA_DIR": str(tmp_path),
                                   "TRUCKX_JWT_SECRET": "s3cret"})
    assert s.port == 9001 and s.data_dir == tmp_path
    assert "s3cret" not in repr(s)
    with pytest.raises(config.ConfigError):
        config.load(environ={"TRUCKX_PORT": "eighty"})
    with pytest.raises(config.ConfigError):
        config.load(environ={"TRUCKX_SQL_URL": "oracle://x"})


def test_migrate_command_and_schema_match_the_tables(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "truckx_server", "migrate", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    head = ScriptDirectory.from_config(alembic_config(f"sqlite:///{tmp_path / 'truckx.db'}")).get_current_head()
    assert f"migrated to {head}" in out.stdout
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'truckx.db'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


async def test_shutdown_flushes_acks_then_closes_sockets(server_factory: ServerFactory) -> None:
    server = await server_factory(batch_interval_ms=60_000, batch_max_points=10_000)
    dev = await server.register()
    ws = await server.connect(dev)
    await ws.send({"type": "location", "seq": 1, "ts": "2026-11-01T08:00:00Z", "lat": 1, "lon": 2})
    await asyncio.sleep(0.1)
    assert server.probe.batcher.queued_points == 1  # waiting for its (long) interval
    locations = server.probe.location_store
    await server.server.stop()
    server._stopped = True  # type: ignore[attr-defined]
    # the ack came before the close frame
    assert await ws.wait_for(lambda m: m["type"] == "ack") == {"type": "ack", "seq": 1}
    assert await ws.wait_closed() == 1001
    ws.close()
    await server.http.aclose()
    # reopen the store the server closed and look
    await locations.open()
    try:
        assert len(await locations.track(dev.imei, None, None, 10)) == 1
    finally:
        await locations.close()


async def test_tokens_are_scrubbed_from_the_access_log(server: RunningServer, caplog) -> None:
    dev = await server.register()
    caplog.set_level(logging.INFO, logger="truckx.access")
    await server.http.get(f"/api/v1/device/ws?token={dev.token}")  # not an upgrade: refused, but logged
    await server.http.get(f"/healthz?token={dev.token}&x=1")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "/healthz?token=[redacted]&x=1" in text
    assert dev.token not in text


async def test_metrics_are_prometheus_text(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    await ws.send({"type": "location", "seq": 1, "ts": "2026-11-01T08:00:00Z", "lat": 1, "lon": 2})
    await ws.wait_ack(1)
    r = await server.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ("truckx_ws_connections 1.0", "truckx_acks_sent_total", "truckx_location_flush_seconds_bucket",
                 "truckx_location_points_stored_total 1.0", 'truckx_ws_messages_total{type="location"} 1.0'):
        assert name in text, name
