"""Revoking an admin-plane user's tokens: a delete, a password change or a role change makes every token
issued to that user before refused (a user deleted and created again under the same name, with the same
role, does not get them back) and closes its open event feeds (4401); ``GET /me``; changing passwords
(your own with the current one, anyone's as an admin) and roles (admin only; never the last admin)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import tornado.httpclient
import tornado.websocket

from tests.support import RunningServer
from tests.server.support import VIEWER_PASSWORD, events_socket, login_headers, make_user

NEW_PASSWORD = "a-brand-new-password"


async def refused(api: RunningServer, headers: dict[str, str]) -> bool:
    r = await api.http.get("/api/v1/admin/devices", headers=headers)
    return r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def open_feed(api: RunningServer, headers: dict[str, str]) -> tornado.websocket.WebSocketClientConnection:
    """An events socket, known to be registered (a ping was answered)."""
    conn = await events_socket(api, headers)
    await conn.write_message(json.dumps({"type": "ping"}))
    assert json.loads(await conn.read_message()) == {"type": "pong"}
    return conn


async def closed_with(conn: tornado.websocket.WebSocketClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes the feed; its close code."""
    try:
        async with asyncio.timeout(timeout):
            while await conn.read_message() is not None:
                pass
    finally:
        conn.close()
    return conn.close_code


async def test_deleted_and_recreated_user_does_not_get_its_old_tokens_back(api: RunningServer) -> None:
    admin = await api.admin_headers()
    old = await make_user(api, "bob", "viewer")
    feed = await open_feed(api, old)
    assert (await api.http.delete("/api/v1/admin/users/bob", headers=admin)).status_code == 204
    assert await closed_with(feed) == 4401  # the feed bob had open stops at once
    assert await refused(api, old)
    # bob again, same name, same role, same password: the old token stays dead
    new = await make_user(api, "bob", "viewer")
    assert await refused(api, old)
    assert (await api.http.get("/api/v1/admin/devices", headers=new)).status_code == 200
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await events_socket(api, old)
    assert info.value.code == 401
    # the row carries a fresh random version (below 2**53: exact in every JSON reader)
    stored = await api.probe.sql.users.get("bob")
    assert 0 < stored["token_version"] < 2**53


async def test_password_change_by_the_user_revokes_its_tokens_and_closes_its_feeds(api: RunningServer) -> None:
    first = await make_user(api, "carol", "operator")
    second = await login_headers(api, "carol", VIEWER_PASSWORD)
    feed = await open_feed(api, second)
    url = "/api/v1/admin/users/carol/password"
    r = await api.http.post(url, json={"password": NEW_PASSWORD}, headers=first)
    assert r.status_code == 400 and "current_password" in r.json()["error"]["message"]
    r = await api.http.post(url, json={"password": NEW_PASSWORD, "current_password": "not-the-password"},
                            headers=first)
    assert r.status_code == 403 and r.json()["error"] == {"code": "forbidden", "message": "current_password is wrong"}
    r = await api.http.post(url, json={"password": "short", "current_password": VIEWER_PASSWORD}, headers=first)
    assert r.status_code == 400 and "password" in r.json()["error"]["message"]
    assert not await refused(api, first)  # refused changes revoke nothing
    r = await api.http.post(url, json={"password": NEW_PASSWORD, "current_password": VIEWER_PASSWORD}, headers=first)
    assert r.status_code == 204 and r.content == b""
    assert await closed_with(feed) == 4401
    assert await refused(api, first) and await refused(api, second)  # every token, the caller's own too
    r = await api.http.post("/api/v1/admin/login", json={"username": "carol", "password": VIEWER_PASSWORD})
    assert r.status_code == 401
    again = await login_headers(api, "carol", NEW_PASSWORD)
    assert (await api.http.get("/api/v1/admin/me", headers=again)).json()["role"] == "operator"


async def test_admin_changes_anyones_password_and_nobody_else_does(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dave = await make_user(api, "dave", "viewer")
    operator = await make_user(api, "olga", "operator")
    for headers in (dave, operator):  # another user's password: admins only
        r = await api.http.post("/api/v1/admin/users/admin/password", json={"password": NEW_PASSWORD},
                                headers=headers)
        assert r.status_code == 403 and "only an admin" in r.json()["error"]["message"]
    r = await api.http.post("/api/v1/admin/users/dave/password", json={"password": NEW_PASSWORD}, headers=admin)
    assert r.status_code == 204
    assert await refused(api, dave)
    assert not await refused(api, admin) and not await refused(api, operator)  # only dave's tokens
    await login_headers(api, "dave", NEW_PASSWORD)
    r = await api.http.post("/api/v1/admin/users/nobody/password", json={"password": NEW_PASSWORD}, headers=admin)
    assert r.status_code == 404
    # an admin changing its own password gives the current one, like anyone
    r = await api.http.post("/api/v1/admin/users/admin/password", json={"password": NEW_PASSWORD}, headers=admin)
    assert r.status_code == 400


async def test_role_change_revokes_and_closes_the_open_events_socket(api: RunningServer) -> None:
    admin = await api.admin_headers()
    erin = await make_user(api, "erin", "viewer")
    feed = await open_feed(api, erin)
    other = await open_feed(api, admin)
    r = await api.http.patch("/api/v1/admin/users/erin", json={"role": "operator"}, headers=admin)
    assert r.status_code == 200 and r.json()["username"] == "erin" and r.json()["role"] == "operator"
    assert await closed_with(feed) == 4401
    assert await refused(api, erin)
    promoted = await login_headers(api, "erin", VIEWER_PASSWORD)
    assert (await api.http.get("/api/v1/admin/me", headers=promoted)).json() == \
        {**r.json(), "role": "operator"}
    # the same role again changes nothing: the new token stays good
    r = await api.http.patch("/api/v1/admin/users/erin", json={"role": "operator"}, headers=admin)
    assert r.status_code == 200 and not await refused(api, promoted)
    # other users' feeds stay open
    await other.write_message(json.dumps({"type": "ping"}))
    assert json.loads(await other.read_message()) == {"type": "pong"}
    other.close()


async def test_role_change_rules(api: RunningServer) -> None:
    admin = await api.admin_headers()
    operator = await make_user(api, "oscar", "operator")
    for body in ({"role": "root"}, {}, {"role": None}):
        r = await api.http.patch("/api/v1/admin/users/oscar", json=body, headers=admin)
        assert r.status_code == 400 and "role" in r.json()["error"]["message"]
    r = await api.http.patch("/api/v1/admin/users/nobody", json={"role": "viewer"}, headers=admin)
    assert r.status_code == 404
    r = await api.http.patch("/api/v1/admin/users/oscar", json={"role": "admin"}, headers=operator)
    assert r.status_code == 403 and "your token has role operator" in r.json()["error"]["message"]
    # the last admin cannot be demoted, not even by itself
    r = await api.http.patch("/api/v1/admin/users/admin", json={"role": "viewer"}, headers=admin)
    assert r.status_code == 409 and "last admin" in r.json()["error"]["message"]
    assert not await refused(api, admin)
    # with a second admin it can: its own token then goes
    r = await api.http.patch("/api/v1/admin/users/oscar", json={"role": "admin"}, headers=admin)
    assert r.status_code == 200
    r = await api.http.patch("/api/v1/admin/users/admin", json={"role": "viewer"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert await refused(api, admin)


async def test_me(api: RunningServer) -> None:
    admin = await api.admin_headers()
    r = await api.http.get("/api/v1/admin/me", headers=admin)
    assert r.status_code == 200 and r.json()["username"] == "admin" and r.json()["role"] == "admin"
    assert r.json()["created_at"]
    viewer = await make_user(api, "vince", "viewer")
    assert (await api.http.get("/api/v1/admin/me", headers=viewer)).json()["role"] == "viewer"
    assert (await api.http.get("/api/v1/admin/me")).status_code == 401


async def test_tokens_without_a_current_version_are_refused(api: RunningServer) -> None:
    await api.admin_headers()
    stored = await api.probe.sql.users.get("admin")
    good = {"Authorization": f"Bearer {api.probe.issue_token('admin', 'admin', stored['token_version'])}"}
    assert not await refused(api, good)
    for version in (None, stored["token_version"] + 1, 0):  # issued before versions existed; a guess
        token = api.probe.issue_token("admin", "admin", version)
        assert await refused(api, {"Authorization": f"Bearer {token}"}), version
    # the right version with another role (the role is in the token too) is refused
    token = api.probe.issue_token("admin", "viewer", stored["token_version"])
    assert await refused(api, {"Authorization": f"Bearer {token}"})


async def test_a_feed_opened_while_its_user_is_deleted_is_closed(api: RunningServer) -> None:
    """The delete lands between the feed's token check and the feed's registration: the revocation
    found no feed to close, so the feed checks its token again once registered, and closes."""
    admin = await api.admin_headers()
    gina = await make_user(api, "gina", "viewer")
    rows = api.probe.sql.users
    get = rows.get
    deleted: list[int] = []

    async def delete_right_after_the_check_read(username: str):  # noqa: ANN202
        row = await get(username)
        if username == "gina" and not deleted:
            r = await api.http.delete("/api/v1/admin/users/gina", headers=admin)
            deleted.append(r.status_code)
        return row

    rows.get = delete_right_after_the_check_read
    try:
        conn = await events_socket(api, gina)  # the handshake passed: its check read gina before the delete
    finally:
        del rows.get
    assert deleted == [204]
    assert await closed_with(conn) == 4401
    assert api.probe.feed_count == 0


async def test_console_sessions_are_revoked_with_their_user(api: RunningServer) -> None:
    """A browser session keeps the token version of its sign-in: deleting the user (even if it is created
    again at once, same name and role) or changing its password ends the session and its feed."""
    admin = await api.admin_headers()
    await make_user(api, "sam", "viewer")
    async with httpx.AsyncClient(base_url=api.base_url, timeout=15) as browser:
        r = await browser.post("/api/v1/admin/session", json={"username": "sam", "password": VIEWER_PASSWORD})
        assert r.status_code == 200
        cookie = {"Cookie": f"truckx_session={browser.cookies['truckx_session']}"}
        feed = await open_feed(api, cookie)
        assert (await browser.get("/api/v1/admin/alarms")).status_code == 200
        assert (await api.http.delete("/api/v1/admin/users/sam", headers=admin)).status_code == 204
        await make_user(api, "sam", "viewer")
        assert await closed_with(feed) == 4401
        r = await browser.get("/api/v1/admin/alarms")
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]

        r = await browser.post("/api/v1/admin/session", json={"username": "sam", "password": VIEWER_PASSWORD})
        assert r.status_code == 200
        assert (await browser.get("/api/v1/admin/alarms")).status_code == 200
        r = await api.http.post("/api/v1/admin/users/sam/password", json={"password": NEW_PASSWORD}, headers=admin)
        assert r.status_code == 204
        assert (await browser.get("/api/v1/admin/alarms")).status_code == 401
