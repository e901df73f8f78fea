"""``truckx-server`` as a process: it serves on the embedded default, survives ``kill -9`` with what it had
stored, and stops on SIGTERM with exit code 0 (tests/process.py, which other process-level tests use)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.process import ServerProcess
from tests.support import new_imei


def test_kill_9_then_start_again_keeps_what_was_stored(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    try:
        assert srv.rss() > 0
        [dev] = srv.register([new_imei()])
        srv.kill()
        assert srv.proc is not None and srv.proc.returncode == -9
        srv.start()
        r = httpx.post(srv.url + "/api/v1/device/login", json={"imei": dev["imei"], "secret": dev["secret"]})
        assert r.status_code == 200
    finally:
        code = srv.stop()
    assert code == 0, srv.log_text()
