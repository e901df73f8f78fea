"""Which stores the tests run on, and the fixtures that provide them.

Backends
    ``sqlite``  the embedded default (SQLite files in the test's tmp dir); always available.
    ``mariadb`` a fresh database (``truckx_t_<random>``, dropped at teardown) on the MariaDB/MySQL
                server at ``TRUCKX_TEST_MYSQL_URL`` (default ``mysql://root@127.0.0.1:3306``; only the
                server part of the URL is used).
    ``mongo``   a fresh database on a MongoDB wire-protocol server: ``TRUCKX_TEST_MONGO_URL`` when set,
                else SecantusDB (``secantusd-py``) started once per test session as a separate process
                on a free loopback port and reached over TCP by the real driver.

End-to-end tests (everything built on ``server_factory``) run once per backend *combination* named in
``TRUCKX_TEST_BACKENDS`` (comma separated; default ``sqlite,mariadb+mongo``): ``sqlite`` is SQLite for
both stores, ``mariadb+mongo`` is MariaDB for the relational store and MongoDB for locations. The
store contract suite (tests/storage/) runs every store interface against each of its backends.

A backend whose server cannot be reached is skipped with a one-line reason, unless
``TRUCKX_TEST_REQUIRE_SERVICES=1`` (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

REQUIRE_SERVICES = os.environ.get("TRUCKX_TEST_REQUIRE_SERVICES", "") not in ("", "0")
COMBINATIONS = [c.strip() for c in os.environ.get("TRUCKX_TEST_BACKENDS", "sqlite,mariadb+mongo").split(",")
                if c.strip()]


def unavailable(reason: str) -> None:
    """Skip (or, in CI, fail) a test whose server is not there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- MariaDB / MySQL -----------------------------------------------------------------------------

def mysql_server_url() -> str:
    """``mysql://user:pass@host:port`` of the test server (the database part of the env URL dropped)."""
    from sqlalchemy.engine import make_url

    raw = os.environ.get("TRUCKX_TEST_MYSQL_URL") or "mysql://root@127.0.0.1:3306"
    return make_url(raw).set(database=None).render_as_string(hide_password=False)


def _mysql_connect(url: str) -> Any:
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", connect_timeout=3, autocommit=True, charset="utf8mb4")


@functools.cache
def mysql_problem() -> str | None:
    """None when the MariaDB server answers, else why not."""
    try:
        _mysql_connect(mysql_server_url()).close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"MariaDB not reachable at {mysql_server_url()} ({type(exc).__name__})"


@contextlib.contextmanager
def mysql_database() -> Iterator[str]:
    """A fresh, empty database; yields its URL and drops it afterwards."""
    problem = mysql_problem()
    if problem:
        unavailable(problem)
    name = "truckx_t_" + secrets.token_hex(6)
    conn = _mysql_connect(mysql_server_url())
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        yield f"{mysql_server_url()}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


# -- MongoDB (SecantusDB) ------------------------------------------------------------------------

class SecantusProcess:
    """``secantusd-py`` in its own process, on a free loopback port, with a throwaway data dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="truckx-secantus-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "secantusd.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        exe = shutil.which("secantusd-py", path=str(Path(sys.executable).parent)) or shutil.which("secantusd-py")
        cmd = [exe] if exe else [sys.executable, "-m", "secantus"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.dir / "data"),
                 "--log-level", "WARNING"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        from pymongo import MongoClient

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"secantusd-py exited with {self.proc.returncode}: {self.log.read_text()[-500:]}")
            try:
                with MongoClient(f"mongodb://{self.address}/?directConnection=true", serverSelectionTimeoutMS=500) as c:
                    c.admin.command("ping")
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        raise RuntimeError("secantusd-py did not answer within %.0fs" % timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def mongo_url(address: str, database: str) -> str:
    # directConnection: SecantusDB announces itself as a one-node replica set under its own address;
    # without it the driver would leave a TCP proxy in between and connect to that address directly
    return f"mongodb://{address}/{database}?directConnection=true"


@pytest.fixture(scope="session")
def mongo_address() -> Iterator[str]:
    """host:port of the MongoDB wire-protocol server the tests use."""
    external = os.environ.get("TRUCKX_TEST_MONGO_URL")
    if external:
        yield external.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        return
    try:
        import secantus  # noqa: F401
    except ImportError:
        unavailable("SecantusDB is not installed (pip install secantusdb)")
    server = SecantusProcess()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        server.stop()
        unavailable(f"SecantusDB did not start: {exc}")
    try:
        yield server.address
    finally:
        server.stop()


@contextlib.contextmanager
def mongo_database(address: str) -> Iterator[str]:
    from pymongo import MongoClient

    name = "truckx_t_" + secrets.token_hex(6)
    try:
        yield mongo_url(address, name)
    finally:
        with MongoClient(mongo_url(address, name), serverSelectionTimeoutMS=3000) as c:
            with contextlib.suppress(Exception):
                c.drop_database(name)


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """URL of a fresh MariaDB database (dropped at teardown)."""
    with mysql_database() as url:
        yield url


@pytest.fixture
def mongo_db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh MongoDB database (dropped at teardown)."""
    with mongo_database(request.getfixturevalue("mongo_address")) as url:
        yield url


# -- end-to-end combinations ---------------------------------------------------------------------

@dataclass(frozen=True)
class Backend:
    name: str
    sql_url: str = ""  # "" = the embedded default in the data dir
    locations_url: str = ""


_MARKS = {"mariadb": pytest.mark.mariadb, "mongo": pytest.mark.mongo}


def _params() -> list[Any]:
    out = []
    for combo in COMBINATIONS:
        parts = combo.split("+")
        unknown = [p for p in parts if p not in ("sqlite", "mariadb", "mongo")]
        if unknown:
            raise ValueError(f"TRUCKX_TEST_BACKENDS: unknown backend {unknown[0]!r}")
        out.append(pytest.param(combo, id=combo, marks=[_MARKS[p] for p in parts if p in _MARKS]))
    return out


@pytest.fixture(params=_params())
def backend(request: pytest.FixtureRequest) -> Backend:
    """The store combination an end-to-end test runs on."""
    parts = request.param.split("+")
    sql_url = request.getfixturevalue("mariadb_url") if "mariadb" in parts else ""
    locations_url = request.getfixturevalue("mongo_db_url") if "mongo" in parts else ""
    return Backend(request.param, sql_url, locations_url)


def backend_overrides(tmp_path: Path, backend: Backend | None = None) -> dict[str, Any]:
    """Settings for ``server_factory``: the same URLs on every call, so a restart reopens the same stores."""
    if backend is None:
        return {}
    out: dict[str, Any] = {}
    if backend.sql_url:
        out["sql_url"] = backend.sql_url
    if backend.locations_url:
        out["locations_url"] = backend.locations_url
    return out
