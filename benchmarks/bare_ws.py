"""The bare Tornado baselines for the device plane: the least a Tornado server can do for each call.

- ``/api/v1/device/ws``: a WebSocket handler that only parses each JSON frame. So that the load
  generators can use the same flow control as against the real server, it acknowledges cumulatively
  (``{"type":"ack","seq":N}`` for the newest seq, at most once per 5 ms per connection, as the real
  server's group commit does per batch). Nothing is validated or stored. Idle connections cost what a
  bare Tornado WebSocket costs (scenario 2's RSS baseline).
- ``POST /api/v1/device/login``: parses the JSON body and answers a fixed token (any credentials), so
  that truckx-sim can drive this server exactly as it drives truckx (scenarios 2 and 3).
- ``POST /api/v1/device/alarms``: parses the JSON body and answers 201 with a small JSON body
  (scenario 7's baseline).
- ``GET /healthz``.

Usage: python bare_ws.py PORT"""

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

    def on_close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Login(tornado.web.RequestHandler):
    def post(self) -> None:
        json.loads(self.request.body)
        self.set_header("Content-Type", "application/json")
        self.finish('{"token":"bare","expires_at":"2100-01-01T00:00:00Z"}')


class Alarms(tornado.web.RequestHandler):
    def post(self) -> None:
        body = json.loads(self.request.body)
        self.set_status(201)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"id": body.get("id"), "status": "active"}))


class Health(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/api/v1/device/ws", Bare), (r"/api/v1/device/login", Login),
                                   (r"/api/v1/device/alarms", Alarms), (r"/healthz", Health)])
    app.listen(port, "127.0.0.1", backlog=4096)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
