"""OpenAPI: Users: admin login and accounts."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, READ, ROLES, TIME, WRITE, json_response, nullable, obj, op, param, ref)


SCHEMAS: dict[str, Any] = {
    "Token": obj(["token", "expires_at"], {"token": {"type": "string"}, "expires_at": TIME,
                                           "role": {"type": "string", "enum": ROLES}}),
    "AdminLogin": obj(["username", "password"], {"username": {"type": "string", "minLength": 1},
                                                 "password": {"type": "string", "minLength": 1}}),
    "User": obj(["username", "role"], {"username": {"type": "string"}, "role": {"enum": ROLES},
                                       "created_at": nullable(TIME)}),
    "UserList": obj(["items"], {"items": {"type": "array", "items": ref("User")}}),
    "UserNew": obj(["username", "password"], {
        "username": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"},
        "password": {"type": "string", "minLength": 12, "maxLength": 1024},
        "role": {"enum": ROLES, "default": "viewer"}}),
}

PATHS: dict[str, Any] = {
    "/api/v1/admin/login": {"post": op(
        "Admin login", None, {200: json_response("token", ref("Token"))}, body=ref("AdminLogin"),
        errors=(401, 429), op_id="adminLogin", tags=ADMIN,
        description="Rate-limited per username and per address.")},
    "/api/v1/admin/users": {
        "get": op("List users", READ, {200: json_response("users", ref("UserList"))}, op_id="listUsers", tags=ADMIN),
        "post": op("Create a user", WRITE, {201: json_response("created", ref("User"))}, body=ref("UserNew"),
                   errors=(409,), op_id="createUser", tags=ADMIN,
                   description="Password of 12 characters or more, hashed with argon2id."),
    },
    "/api/v1/admin/users/{username}": {
        "parameters": [param("username", "path", {"type": "string"})],
        "delete": op("Delete a user", WRITE, {204: {"description": "deleted; its tokens stop working"}},
                     errors=(404, 409), op_id="deleteUser", tags=ADMIN,
                     description="409 when deleting yourself or the last admin."),
    },
}
