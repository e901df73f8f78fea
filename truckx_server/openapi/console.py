"""OpenAPI: the fleet console: its page and files, and browser sign-in (the session cookie)."""

from __future__ import annotations

from typing import Any

from .common import ADMIN, READ, ROLES, TIME, json_response, nullable, obj, op, param, ref

CONSOLE = ["console"]

SCHEMAS: dict[str, Any] = {
    "Session": obj(["username", "role", "expires_at"], {
        "username": {"type": "string"}, "role": {"type": "string", "enum": ROLES},
        "expires_at": {**nullable(TIME), "description": "when the session ends; null for a bearer token"}}),
}

_HTML = {"text/html": {"schema": {"type": "string"}}}

PATHS: dict[str, Any] = {
    "/": {"get": op(
        "The fleet console (single-page app)", None, {200: {
            "description": "the page; sets the readable _xsrf cookie; Content-Security-Policy, X-Frame-Options, "
                           "X-Content-Type-Options and Referrer-Policy headers", "content": _HTML}},
        errors=(404,), op_id="console", tags=CONSOLE)},
    "/static/{path}": {
        "parameters": [param("path", "path", {"type": "string"}, "a file of the console (may contain /)")],
        "get": op("The console's scripts, styles, images and licences", None, {
            200: {"description": "the file; with ?v= (as the page links it) cached for a year, else revalidated",
                  "content": {"*/*": {"schema": {"type": "string"}}}},
            304: {"description": "not modified"}}, errors=(404,), op_id="consoleFile", tags=CONSOLE),
        "head": op("A console file's headers", None, {200: {"description": "headers only"},
                                                       304: {"description": "not modified"}},
                   errors=(404,), op_id="consoleFileInfo", tags=CONSOLE),
    },
    "/api/v1/admin/session": {
        "post": op("Browser sign-in", None, {200: json_response(
            "signed in: sets the truckx_session cookie (HttpOnly, SameSite=Strict, Path=/, Secure over TLS) and, "
            "when missing, the _xsrf cookie", ref("Session"))}, body=ref("AdminLogin"), errors=(401, 429),
            op_id="signIn", tags=ADMIN + CONSOLE,
            description="The same password check and rate limits as POST /api/v1/admin/login. Needs no XSRF "
                        "token. A session the browser had before is ended."),
        "get": op("Who is signed in", READ, {200: json_response("the session", ref("Session"))},
                  op_id="getSession", tags=ADMIN + CONSOLE,
                  description="401 when the cookie names no live session (signed out, expired, user gone)."),
        "delete": op("Sign out", READ, {204: {"description": "the session is revoked on every process and the "
                                                             "cookie cleared"}},
                     op_id="signOut", tags=ADMIN + CONSOLE,
                     description="With the cookie, needs X-XSRFToken like every change made with it."),
    },
}
