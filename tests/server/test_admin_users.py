"""Admin users: list, create (validated, argon2), delete (not yourself, never the last admin); tokens of a
deleted user stop working at once; viewers read but cannot change."""

from __future__ import annotations

import asyncio

from tests.support import ADMIN_PASSWORD, RunningServer
from tests.server.support import VIEWER_PASSWORD, login_headers, make_user


async def test_create_list_login_and_delete(api: RunningServer) -> None:
    admin = await api.admin_headers()
    viewer = await make_user(api, "vera", "viewer")
    r = await api.http.get("/api/v1/admin/users", headers=viewer)
    assert r.status_code == 200
    assert {(u["username"], u["role"]) for u in r.json()["items"]} == {("admin", "admin"), ("vera", "viewer")}
    r = await api.http.post("/api/v1/admin/login", json={"username": "vera", "password": VIEWER_PASSWORD})
    assert r.json()["role"] == "viewer"
    stored = await api.probe.sql.users.get("vera")
    assert stored["password_hash"].startswith("$argon2id$") and VIEWER_PASSWORD not in stored["password_hash"]

    r = await api.http.delete("/api/v1/admin/users/vera", headers=admin)
    assert r.status_code == 204 and r.content == b""
    # the deleted user's token is refused at once, on REST and on the event feed
    r = await api.http.get("/api/v1/admin/users", headers=viewer)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await api.http.delete("/api/v1/admin/users/vera", headers=admin)
    assert r.status_code == 404


async def test_user_validation(api: RunningServer) -> None:
    admin = await api.admin_headers()
    cases = [
        ({"username": "bob", "password": "short", "role": "viewer"}, "password"),
        ({"username": "bad name", "password": "x" * 12, "role": "viewer"}, "username"),
        ({"username": "-bob", "password": "x" * 12, "role": "viewer"}, "username"),
        ({"username": "bob", "password": "x" * 12, "role": "root"}, "role"),
        ({"username": "bob", "password": 123456789012345, "role": "viewer"}, "password"),
    ]
    for body, word in cases:
        r = await api.http.post("/api/v1/admin/users", json=body, headers=admin)
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "invalid_argument" and word in r.json()["error"]["message"]
    r = await api.http.post("/api/v1/admin/users", json={"username": "bob", "password": "x" * 12}, headers=admin)
    assert r.status_code == 201 and r.json()["role"] == "viewer"  # viewer by default
    r = await api.http.post("/api/v1/admin/users", json={"username": "bob", "password": "y" * 12, "role": "admin"},
                            headers=admin)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


async def test_viewer_cannot_manage_users(api: RunningServer) -> None:
    viewer = await make_user(api, "vic", "viewer")
    r = await api.http.post("/api/v1/admin/users", json={"username": "eve", "password": "x" * 12, "role": "admin"},
                            headers=viewer)
    assert r.status_code == 403
    assert r.json()["error"] == {"code": "forbidden",
                                 "message": "this call needs role admin; your token has role viewer, which may only read"}
    r = await api.http.delete("/api/v1/admin/users/admin", headers=viewer)
    assert r.status_code == 403
    assert await api.probe.sql.users.get("eve") is None


async def test_cannot_delete_yourself_and_one_admin_always_remains(api: RunningServer) -> None:
    admin = await api.admin_headers()
    r = await api.http.delete("/api/v1/admin/users/admin", headers=admin)
    assert r.status_code == 409 and "own account" in r.json()["error"]["message"]

    second = await make_user(api, "ada", "admin", password="ada-password-123")
    # two admins delete each other at the same time: never both
    r1, r2 = await asyncio.gather(api.http.delete("/api/v1/admin/users/ada", headers=admin),
                                  api.http.delete("/api/v1/admin/users/admin", headers=second))
    assert sorted([r1.status_code, r2.status_code])[0] == 204
    assert {r1.status_code, r2.status_code} <= {204, 401, 409}
    remaining = [u for u in await api.probe.sql.users.list() if u["role"] == "admin"]
    assert len(remaining) == 1


async def test_last_admin_is_refused_by_the_store(api: RunningServer) -> None:
    # only reachable through a race (or a stale token), so exercise the store's guard directly
    assert await api.probe.sql.users.delete("admin") == "last_admin"
    assert await api.probe.sql.users.delete("nobody") == "missing"
    await login_headers(api, "admin", ADMIN_PASSWORD)


async def test_user_check_is_cached_and_a_delete_or_role_change_ends_it_at_once(api: RunningServer) -> None:
    admin = await api.admin_headers()
    viewer = await make_user(api, "rita", "viewer")
    rows = api.probe.sql.users
    lookups: list[str] = []
    get_user = rows.get

    async def spy(username: str):  # noqa: ANN202
        lookups.append(username)
        return await get_user(username)

    rows.get = spy
    try:
        for _ in range(5):
            assert (await api.http.get("/api/v1/admin/users", headers=viewer)).status_code == 200
        assert lookups.count("rita") <= 1  # checked once, then reused for a few seconds
        # deleted and created again as an admin: the viewer token is refused at once (its role changed)
        assert (await api.http.delete("/api/v1/admin/users/rita", headers=admin)).status_code == 204
        r = await api.http.post("/api/v1/admin/users", json={"username": "rita", "password": VIEWER_PASSWORD,
                                                             "role": "admin"}, headers=admin)
        assert r.status_code == 201
        r = await api.http.get("/api/v1/admin/users", headers=viewer)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert (await api.http.get("/api/v1/admin/users",
                                   headers=await login_headers(api, "rita", VIEWER_PASSWORD))).status_code == 200
    finally:
        del rows.get
