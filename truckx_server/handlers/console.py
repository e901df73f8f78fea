"""The fleet console: ``GET /`` (the page) and ``/static/...`` (its scripts, styles, images, licences).

The page is ``truckx_server/static/index.html`` with the map's tile URL (``--tile-url``) filled in,
HTML-escaped, and its asset links made ``/static/<file>?v=<hash of the file>``, so that browsers may
keep them for a year and still see a new release at once; made once at start-up. Loading it sets
Tornado's ``_xsrf`` cookie (readable by the page's script, which sends it back in ``X-XSRFToken``).
Every response carries a strict Content-Security-Policy: scripts, styles, fonts, media and connections
(the events WebSocket included) from this origin only, images also from the tile server, nothing inline,
no plug-ins, no framing.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

import tornado.web

from ..config import tile_source
from .base import ApiMixin, BaseHandler

log = logging.getLogger("truckx.console")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_ASSET_LINK = re.compile(r'(?P<attr>src|href)="/static/(?P<path>[A-Za-z0-9._/-]+)"')
#: the console's assets are versioned by content in the page's links: cached for a year
ONE_YEAR_S = 365 * 24 * 3600


def content_security_policy(tile_url: str) -> str:
    tiles = tile_source(tile_url)
    img = "'self'" + (f" {tiles}" if tiles else "")
    return ("default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; media-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class ConsolePage:
    """The page and its policy, made once from ``static_dir`` and the tile URL."""

    def __init__(self, static_dir: Path, tile_url: str) -> None:
        self.static_dir = static_dir
        self.csp = content_security_policy(tile_url)
        try:
            template = (static_dir / "index.html").read_text(encoding="utf-8")
        except FileNotFoundError:
            log.warning("the console is not installed: %s is missing", static_dir / "index.html")
            self.html: bytes | None = None
            return
        page = template.replace("{{TILE_URL}}", html.escape(tile_url, quote=True))
        self.html = _ASSET_LINK.sub(self._versioned, page).encode()

    def _versioned(self, m: re.Match[str]) -> str:
        version = tornado.web.StaticFileHandler.get_version({"static_path": str(self.static_dir)}, m["path"])
        suffix = f"?v={version}" if version else ""
        return f'{m["attr"]}="/static/{m["path"]}{suffix}"'


def set_security_headers(handler: tornado.web.RequestHandler, csp: str) -> None:
    handler.set_header("Content-Security-Policy", csp)
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("X-Frame-Options", "DENY")
    # tile servers (OpenStreetMap's asks for one) learn the console's origin, never more
    handler.set_header("Referrer-Policy", "strict-origin-when-cross-origin")


class IndexHandler(BaseHandler):
    roles = {"GET": None}

    @property
    def page(self) -> ConsolePage:
        return self.application.settings["console"]  # type: ignore[no-any-return]

    def set_default_headers(self) -> None:
        super().set_default_headers()
        set_security_headers(self, self.page.csp)

    def get(self) -> None:
        if self.page.html is None:
            raise tornado.web.HTTPError(404, "the console is not installed")
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie when the browser has none
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(self.page.html)


class StaticHandler(ApiMixin, tornado.web.StaticFileHandler):
    """The console's files (Tornado's handler: path checks, ETag, Last-Modified, ranges), with the
    contract's JSON errors and the console's headers."""

    roles = {"GET": None, "HEAD": None}

    def set_default_headers(self) -> None:
        set_security_headers(self, self.application.settings["console"].csp)

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return ONE_YEAR_S if "v" in self.request.arguments else 0

    def set_extra_headers(self, path: str) -> None:
        if "v" in self.request.arguments:
            self.set_header("Cache-Control", f"public, max-age={ONE_YEAR_S}, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")  # revalidate (ETag / Last-Modified): 304


def routes() -> list:
    return [
        (r"/", IndexHandler),
        (r"/static/(.*)", StaticHandler, {"path": str(STATIC_DIR)}),
    ]
