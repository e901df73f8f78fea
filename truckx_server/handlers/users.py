"""Admin-plane users: login, list, create, delete, change a role or a password, who am I."""

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


class MeHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        assert self.principal is not None
        self.write_json(await self.users.me(self.principal))


class UsersHandler(AdminHandler):
    roles = {"GET": READ, "POST": WRITE}

    async def get(self) -> None:
        self.write_json({"items": await self.users.list()})

    async def post(self) -> None:
        self.write_json(await self.users.create(self.json_object(), self.actor), 201)


class UserHandler(AdminHandler):
    roles = {"DELETE": WRITE, "PATCH": WRITE}

    async def delete(self, username: str) -> None:
        await self.users.delete(self.actor, username)
        self.write_no_content()

    async def patch(self, username: str) -> None:
        self.write_json(await self.users.set_role(self.actor, username, self.json_object()))


class UserPasswordHandler(AdminHandler):
    # any user for its own password; the domain refuses another user's unless the caller is an admin
    roles = {"POST": READ}

    async def post(self, username: str) -> None:
        assert self.principal is not None
        await self.users.change_password(self.principal, username, self.json_object(), self.client_address)
        self.write_no_content()


def routes() -> list:
    return [
        (r"/api/v1/admin/login", LoginHandler),
        (r"/api/v1/admin/me", MeHandler),
        (r"/api/v1/admin/users", UsersHandler),
        (rf"/api/v1/admin/users/(?P<username>{P})", UserHandler),
        (rf"/api/v1/admin/users/(?P<username>{P})/password", UserPasswordHandler),
    ]
