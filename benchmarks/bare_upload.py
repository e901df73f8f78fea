"""Baseline for scenario 5: a bare ``stream_request_body`` handler that writes each chunk to a file on
disk and answers 201. Usage: python bare_upload.py PORT DIR"""

import asyncio
import os
import sys

import tornado.httpserver
import tornado.web


@tornado.web.stream_request_body
class Sink(tornado.web.RequestHandler):
    def initialize(self, root: str) -> None:
        self.root = root

    def prepare(self) -> None:
        self.f = open(os.path.join(self.root, "upload-%d.bin" % id(self)), "wb")

    def data_received(self, chunk: bytes) -> None:
        self.f.write(chunk)

    def put(self, name: str) -> None:
        self.f.close()
        os.unlink(self.f.name)
        self.set_status(201)
        self.finish('{"ok":true}')


class Health(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def main(port: int, root: str) -> None:
    os.makedirs(root, exist_ok=True)
    app = tornado.web.Application([(r"/api/v1/device/videos/(.+)", Sink, {"root": root}), (r"/healthz", Health)])
    server = tornado.httpserver.HTTPServer(app, max_body_size=4 * 1024**3, body_timeout=600)
    server.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
