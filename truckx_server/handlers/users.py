"""Admin-plane users: login, list, create, delete."""

from __future__ import annotations

from ..models import format_time
from ..vocab import READ, WRITE
from .base import P, AdminHandler, BaseHandler


#: a login body holds a username and a password of at most 1024 characters (JSON-escaped, 12 KiB at worst)
LOGIN_BODY_MAX = 16 * 1024


class LoginHandler(BaseHandler):
    roles = {"POST": None}
    max_body_bytes = LOGIN_BODY_MAX

    async def post(self) -> None:
        body = self.json_object()
        token, expires, role = await self.users.login(body.get("username"), body.get("password"),
                                                      self.client_address)
        self.write_json({"token": token, "expires_at": format_time(expires), "role": role})


class UsersHandler(AdminHandler):
    roles = {"GET": READ, "POST": WRITE}

    async def get(self) -> None:
        self.write_json({"items": await self.users.list()})

    async def post(self) -> None:
        self.write_json(await self.users.create(self.json_object()), 201)


class UserHandler(AdminHandler):
    roles = {"DELETE": WRITE}

    async def delete(self, username: str) -> None:
        await self.users.delete(self.actor, username)
        self.write_no_content()


def routes() -> list:
    return [
        (r"/api/v1/admin/login", LoginHandler),
        (r"/api/v1/admin/users", UsersHandler),
        (rf"/api/v1/admin/users/(?P<username>{P})", UserHandler),
    ]
