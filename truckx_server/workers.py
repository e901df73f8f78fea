"""``--workers N``: N server processes on one host sharing the listening port, each a full node of the
cluster (its own event loop, stores' connection pools, sockets and bus connection).

The parent applies the migrations once, reserves the port (a socket bound with ``SO_REUSEPORT`` that
never listens, so it takes no connection and keeps the port while workers come and go), then forks the
workers; each binds its own listening socket on that port with ``SO_REUSEPORT`` and the kernel spreads
new connections across them (evenly, by connection hash, unlike one shared listening socket where the
busiest process tends to win the accepts). The parent only supervises: a worker that dies is started
again after a backoff (1 s doubling to 30 s; back to 1 s once a worker ran a minute), and SIGTERM or
SIGINT is passed on to every worker, each of which shuts down in order (stop accepting, flush the
location batch, close the sockets, close the stores); the parent exits once they all have.

It does not import ``app``: the function that serves one worker is handed in.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import sys
import time
import traceback
from typing import Callable

from . import migrate
from .config import Settings

log = logging.getLogger("truckx.workers")

#: restart backoff of a dead worker
RESTART_FIRST_S, RESTART_CAP_S = 1.0, 30.0
#: a worker that ran this long gets the first delay again when it dies
HEALTHY_AFTER_S = 60.0
#: how long the workers have to shut down on SIGTERM before they are killed
STOP_TIMEOUT_S = 30.0


class PortTaken(Exception):
    """The port cannot be reserved for the workers (taken, not local, not allowed)."""


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT that never listens: it keeps the port (and
    resolves port 0) without taking any connection."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def worker_settings(settings: Settings, index: int, port: int) -> Settings:
    """Worker ``index`` (1-based) serves the reserved port; the parent migrated already. Named
    ``<node-id>-<index>`` when a node id is set, else host, port and its own pid."""
    node_id = f"{settings.node_id}-{index}" if settings.node_id else ""
    return dataclasses.replace(settings, port=port, workers=1, migrate_on_start=False, node_id=node_id)


class Supervisor:
    def __init__(self, settings: Settings, serve_one: Callable[[Settings], int]) -> None:
        self.settings = settings
        self.serve_one = serve_one
        self.children: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}  # worker index -> monotonic start
        self.delays: dict[int, float] = {}  # worker index -> next restart delay
        self.pending: dict[int, float] = {}  # worker index -> monotonic time to start it again
        self.stopping = False
        self.port = settings.port

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        # the port first (as one process binds before it opens a store): a taken one fails with nothing to undo
        try:
            reserved = reserve_port(self.settings.host, self.settings.port)
        except OSError as exc:
            raise PortTaken(f"cannot listen on {self.settings.host}:{self.settings.port}: "
                            f"{(exc.strerror or str(exc)).lower()}") from exc
        if self.settings.migrate_on_start:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                migrate.upgrade(self.settings.resolved_sql_url)
            except BaseException:
                reserved.close()
                raise
        self.port = reserved.getsockname()[1]
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        log.info("truckx supervisor %d: %d workers on http://%s:%d", os.getpid(), self.settings.workers,
                 self.settings.host, self.port)
        try:
            for index in range(1, self.settings.workers + 1):
                self._fork(index, reserved)
            while not self.stopping:
                self._reap()
                now = time.monotonic()
                for index, when in list(self.pending.items()):
                    if when <= now and not self.stopping:
                        del self.pending[index]
                        self._fork(index, reserved)
                time.sleep(0.1)
            return self._stop_all()
        finally:
            reserved.close()

    def _fork(self, index: int, reserved: socket.socket) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                reserved.close()
                code = self.serve_one(worker_settings(self.settings, index, self.port))
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = index
        self.started[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, pid)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.children.pop(pid, None)
            if index is None:
                continue
            ran = time.monotonic() - self.started.get(index, 0.0)
            delay = RESTART_FIRST_S if ran >= HEALTHY_AFTER_S else self.delays.get(index, RESTART_FIRST_S)
            self.delays[index] = min(delay * 2, RESTART_CAP_S)
            self.pending[index] = time.monotonic() + delay
            log.warning("worker %d (pid %d) exited with %s after %.0f s; starting it again in %.0f s", index, pid,
                        _describe(status), ran, delay)

    def _stop_all(self) -> int:
        log.info("stopping %d workers", len(self.children))
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        failed = False
        while self.children and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            # a worker still starting when SIGTERM came ends by the signal itself: a clean stop too
            if self.children.pop(pid, None) is not None and os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM):
                failed = True
        for pid in list(self.children):
            log.warning("worker pid %d did not stop in time: killed", pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            failed = True
        log.info("stopped")
        return 1 if failed else 0


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"code {code}"


def supervise(settings: Settings, serve_one: Callable[[Settings], int]) -> int:
    return Supervisor(settings, serve_one).run()
