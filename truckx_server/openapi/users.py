"""OpenAPI: Users: admin login, accounts, roles, passwords, who am I."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, RATE_LIMITED, READ, ROLES, TIME, WRITE, json_response, nullable, obj, op, param, ref)

USERNAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"}
PASSWORD = {"type": "string", "minLength": 12, "maxLength": 1024}
REVOKES = "Every token issued to that user before stops working, and its event feeds are closed (4401)."


SCHEMAS: dict[str, Any] = {
    "Token": obj(["token", "expires_at"], {"token": {"type": "string"}, "expires_at": TIME,
                                           "role": {"type": "string", "enum": ROLES}}),
    "AdminLogin": obj(["username", "password"], {"username": {"type": "string", "minLength": 1, "maxLength": 64},
                                                  "password": {"type": "string", "minLength": 1, "maxLength": 1024}}),
    "User": obj(["username", "role"], {"username": {"type": "string"}, "role": {"enum": ROLES},
                                       "created_at": nullable(TIME)}),
    "UserList": obj(["items"], {"items": {"type": "array", "items": ref("User")}}),
    "UserNew": obj(["username", "password"], {
        "username": USERNAME, "password": PASSWORD, "role": {"enum": ROLES, "default": "viewer"}}),
    "UserRole": obj(["role"], {"role": {"enum": ROLES}}),
    "PasswordChange": obj(["password"], {
        "password": PASSWORD,
        "current_password": {"type": "string", "minLength": 1, "maxLength": 1024,
                             "description": "required when changing your own password"}}),
}

PATHS: dict[str, Any] = {
    "/api/v1/admin/login": {"post": op(
        "Admin login", None, {200: json_response("token", ref("Token")), 429: RATE_LIMITED}, body=ref("AdminLogin"),
        errors=(401, 413), op_id="adminLogin", tags=ADMIN,
        description="Rate-limited (429 with Retry-After): --login-rate-per-min attempts a minute per username "
                    "and client address; 5x that many failures a minute per address; and once a username "
                    "has had many failures from addresses that never logged in as it, each such address gets "
                    "one attempt a minute for it (a brake that slows, never locks). The client address is the "
                    "peer's, or from X-Forwarded-For when the peer is in --trusted-proxies. A username over 64 "
                    "or a password over 1024 characters is 400, a body over 16 KiB 413.")},
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
                     description="409 when deleting yourself or the last admin. " + REVOKES),
        "patch": op("Change a user's role", WRITE, {200: json_response("the user", ref("User"))},
                    body=ref("UserRole"), errors=(404, 409), op_id="setUserRole", tags=ADMIN,
                    description="409 when demoting the last admin. Giving the role it has already changes "
                                "nothing. Otherwise: " + REVOKES),
    },
    "/api/v1/admin/users/{username}/password": {
        "parameters": [param("username", "path", {"type": "string"})],
        "post": op("Change a password", READ, {204: {"description": "changed"}}, body=ref("PasswordChange"),
                   errors=(404, 429), op_id="changePassword", tags=ADMIN,
                   description="Your own (with current_password; 403 when it is wrong), or anyone's as an "
                               "admin (403 otherwise). " + REVOKES + " Your own included: log in again."),
    },
    "/api/v1/admin/me": {
        "get": op("The caller's account", READ, {200: json_response("you", ref("User"))}, op_id="me",
                  tags=ADMIN),
    },
}
