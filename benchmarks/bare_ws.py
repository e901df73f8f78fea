"""Baseline for scenario 1: a bare Tornado WebSocket handler that only parses each JSON frame. So that the
load generator can use the same flow control as against the real server, it acknowledges cumulatively
(``{"type":"ack","seq":N}`` for the newest seq, at most once per 5 ms per connection, as the real server's
group commit does per batch). Nothing is validated or stored. Usage: python bare_ws.py PORT"""

import asyncio
import json
import sys

import tornado.web
import tornado.websocket


class Bare(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.last_seq = 0
        self.timer = None

    def on_message(self, message):  # noqa: ANN001, ANN201
        msg = json.loads(message)
        self.last_seq = msg["seq"]
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(0.005, self.ack)

    def ack(self) -> None:
        self.timer = None
        try:
            fut = self.write_message('{"type":"ack","seq":%d}' % self.last_seq)
            fut.add_done_callback(lambda f: f.exception())
        except tornado.websocket.WebSocketClosedError:
            pass


class Health(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/api/v1/device/ws", Bare), (r"/healthz", Health)])
    app.listen(port, "127.0.0.1", backlog=4096)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
