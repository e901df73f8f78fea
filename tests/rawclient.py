"""A WebSocket client on a plain blocking socket, for tests that need a client to misbehave at the
transport level: one that sends and never reads (its receive buffer can be made small), and then reads
what the server queued for it, close frame included. Real frames (RFC 6455, masked), no library in
between that would read on our behalf.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any


class RawWebSocket:
    def __init__(self, port: int, path: str, token: str, rcvbuf: int | None = None, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # before connect, so that the window is small from the first byte (and no autotuning)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"handshake refused: {status!r}")
        self._buffer = b""

    @staticmethod
    def frame(payload: bytes, opcode: int = 0x1) -> bytes:
        """One final, masked client frame."""
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n <= 0xFFFF:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return header + mask + masked

    def send_json(self, obj: Any) -> None:
        self.sock.sendall(self.frame(json.dumps(obj).encode()))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_exactly(self, n: int) -> bytes | None:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def read_frame(self) -> tuple[int, bytes] | None:
        """``(opcode, payload)`` of the next server frame; None at the end of the stream."""
        head = self._read_exactly(2)
        if head is None:
            return None
        opcode, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            ext = self._read_exactly(2)
            if ext is None:
                return None
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = self._read_exactly(8)
            if ext is None:
                return None
            n = struct.unpack("!Q", ext)[0]
        payload = self._read_exactly(n)
        if payload is None:
            return None
        return opcode, payload

    def read_until_close(self) -> tuple[list[dict[str, Any]], int | None]:
        """Every text frame (as JSON) up to the close frame, and the close code (None: the stream ended
        without a close frame)."""
        messages: list[dict[str, Any]] = []
        while True:
            frame = self.read_frame()
            if frame is None:
                return messages, None
            opcode, payload = frame
            if opcode == 0x8:
                return messages, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            if opcode == 0x1:
                messages.append(json.loads(payload))

    def close(self) -> None:
        self.sock.close()
