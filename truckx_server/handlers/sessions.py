"""Browser sign-in of the fleet console: ``POST/GET/DELETE /api/v1/admin/session``.

``POST`` signs in (the users' login, rate-limited alike) and sets the ``truckx_session`` cookie
(``HttpOnly``, ``SameSite=Strict``, ``Path=/``, ``Secure`` when the request came over TLS) and, if the
browser has none yet, the ``_xsrf`` cookie; it is the one change that needs no XSRF token (there is no
session yet to forge a request with). ``GET`` answers who is signed in (401 otherwise); ``DELETE``
signs out: the session is revoked on the server, on every process, and the cookie cleared. Both accept
a bearer token too (``expires_at`` is then null and there is nothing to revoke).
"""

from __future__ import annotations

from ..domain.sessions import COOKIE, session_json
from ..vocab import READ
from .base import AdminHandler


class SessionHandler(AdminHandler):
    roles = {"POST": None, "GET": READ, "DELETE": READ}

    async def post(self) -> None:
        body = self.json_object()
        cookie, session = await self.sessions.sign_in(body.get("username"), body.get("password"),
                                                      self.request.remote_ip or "")
        await self.sessions.sign_out_cookie(self.get_cookie(COOKIE))  # a session this browser had before
        self.set_cookie(COOKIE, cookie, expires=session.expires_at, path="/", httponly=True, samesite="Strict",
                        secure=self.request.protocol == "https")
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie when the browser has none
        self.write_json(session_json(session.principal.sub, session.principal.role, session.expires_at))

    def get(self) -> None:
        assert self.principal is not None
        expires = self.session.expires_at if self.session is not None else None
        self.write_json(session_json(self.principal.sub, self.principal.role, expires))

    async def delete(self) -> None:
        if self.session is not None:
            await self.sessions.sign_out(self.session)
        self.clear_cookie(COOKIE, path="/")
        self.write_no_content()


def routes() -> list:
    return [(r"/api/v1/admin/session", SessionHandler)]
