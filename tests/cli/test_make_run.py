"""`make run` (issue 13 item 4): listens on HOST/PORT (or TRUCKX_HOST/TRUCKX_PORT), and on a warm venv runs
no pip at all; it really starts the server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)


def _make(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST", "TRUCKX_PORT", "TRUCKX_HOST")}
    full.update(env or {})
    return subprocess.run(["make", "-C", str(REPO), f"VENV={VENV}", *args], env=full, capture_output=True,
                          text=True, timeout=60, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(autouse=True)
def warm_venv() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if not (VENV / ".installed-run").exists():
        pytest.skip(f"{VENV} was not installed by make (no .installed-run stamp)")


@pytest.mark.parametrize("args, env, expect", [
    ([], {}, "--host '127.0.0.1' --port '8888'"),
    (["PORT=9123", "HOST=0.0.0.0"], {}, "--host '0.0.0.0' --port '9123'"),
    ([], {"PORT": "9124", "HOST": "127.0.0.2"}, "--host '127.0.0.2' --port '9124'"),
    ([], {"TRUCKX_PORT": "9125", "TRUCKX_HOST": "127.0.0.3"}, "--host '127.0.0.3' --port '9125'"),
    ([], {"PORT": "9126", "TRUCKX_PORT": "9125"}, "--port '9126'"),
])
def test_make_run_listens_where_told_and_calls_no_pip(args: list[str], env: dict[str, str], expect: str) -> None:
    result = _make("-n", "run", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert expect in result.stdout
    assert "pip" not in result.stdout and "venv" not in result.stdout.replace(str(VENV), ""), result.stdout


def test_make_run_serves(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if k not in ("PORT", "HOST")},
           "TRUCKX_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(["make", "-C", str(REPO), f"VENV={VENV}", "run", f"PORT={port}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "make run did not answer /healthz in 60 s"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and the server it started: this test's own group
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
    assert (tmp_path / "data" / "admin-password").exists()
