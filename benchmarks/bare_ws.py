"""Baseline for scenario 1: a bare Tornado WebSocket handler that only parses each JSON frame and
acknowledges it (``{"type":"ack","seq":N}``, so the load generator can use the same flow control as
against the real server). Nothing is stored. Usage: python bare_ws.py PORT"""

import asyncio
import json
import sys

import tornado.web
import tornado.websocket


class Bare(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def on_message(self, message):  # noqa: ANN001, ANN201
        msg = json.loads(message)
        try:
            fut = self.write_message('{"type":"ack","seq":%d}' % msg["seq"])
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
