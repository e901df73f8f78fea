"""A real HTTP receiver of webhooks on 127.0.0.1, in its own thread (so it answers whatever the test's
event loop is doing), with a Standard Webhooks signature check written from the specification, not
from the server's code (the ``standardwebhooks`` package is not available on this machine's index).

    with Receiver(secret_of=lambda: secret, fail_first=3) as rx:
        ...  # POST to rx.url
        rx.wait_for(lambda msgs: len(msgs) >= 5)
        rx.delivered   # messages answered 2xx, in arrival order

Every request is kept: ``webhook-id``, ``webhook-timestamp``, the body parsed, whether its signature
verified, and the status answered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import socketserver
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

#: the specification's tolerance for webhook-timestamp
TOLERANCE_S = 5 * 60


def verify(secret: str, msg_id: str, timestamp: str, body: bytes, signature_header: str) -> bool:
    """Standard Webhooks verification: the signed content is ``msg_id.timestamp.body``, the key is the
    base64 part of ``whsec_...``; the header is a space-separated list of ``v1,<base64>``; the timestamp
    must be within the tolerance of now."""
    if not secret.startswith("whsec_"):
        return False
    key = base64.b64decode(secret[len("whsec_"):])
    if len(key) < 24:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > TOLERANCE_S:
        return False
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for part in signature_header.split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return True
    return False


@dataclass
class Message:
    msg_id: str
    timestamp: str
    body: dict[str, Any]
    verified: bool
    status: int
    headers: dict[str, str]


class Receiver:
    def __init__(self, secret_of: Callable[[], str | None] = lambda: None, fail_first: int = 0,
                 hang_first: int = 0, response_bytes: int = 0, port: int = 0) -> None:
        self.secret_of = secret_of
        self.fail_first = fail_first
        self.hang_first = hang_first
        self.response_bytes = response_bytes
        self.requested_port = port
        self.messages: list[Message] = []
        #: requests that arrived (a hanging one is in ``messages`` only once it is answered)
        self.arrivals = 0
        #: bytes of a big response written before the client stopped reading
        self.response_written: list[int] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    n = receiver.arrivals
                    receiver.arrivals += 1
                if n < receiver.hang_first:
                    receiver._release.wait(30)  # past the server's timeout; then answer too late
                    status = 200
                elif n < receiver.hang_first + receiver.fail_first:
                    status = 500
                else:
                    status = 200
                secret = receiver.secret_of() or ""
                msg = Message(self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", ""),
                              json.loads(body), verify(secret, self.headers.get("webhook-id", ""),
                                                       self.headers.get("webhook-timestamp", ""), body,
                                                       self.headers.get("webhook-signature", "")),
                              status, {k.lower(): v for k, v in self.headers.items()})
                with receiver._lock:
                    receiver.messages.append(msg)
                try:
                    self.send_response(status)
                    size = receiver.response_bytes if status == 200 else 0
                    self.send_header("content-length", str(size))
                    self.end_headers()
                    written = 0
                    chunk = b"x" * 65536
                    while written < size:
                        self.wfile.write(chunk[:size - written])
                        written += min(len(chunk), size - written)
                    if size:
                        receiver.response_written.append(written)
                except OSError:
                    receiver.response_written.append(-1)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", self.requested_port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def delivered(self) -> list[Message]:
        """Messages answered 2xx, in arrival order (each webhook-id once: a repeat is a duplicate)."""
        with self._lock:
            return [m for m in self.messages if 200 <= m.status < 300]

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)


async def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` (a plain function) until it is truthy."""
    import asyncio
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
