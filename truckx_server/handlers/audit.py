"""The audit log: every change made through the admin plane, newest first (admins only)."""

from __future__ import annotations

from ..vocab import AUDIT
from .base import AdminHandler


class AuditHandler(AdminHandler):
    roles = {"GET": AUDIT}

    async def get(self) -> None:
        limit, cursor = self.page_args()
        arg = self.get_query_argument
        self.write_json(await self.audit.search(
            actors=self.query_list("actor"), actions=self.query_list("action"), targets=self.query_list("target"),
            since=arg("since", None), until=arg("until", None), limit=limit, cursor=cursor))


def routes() -> list:
    return [(r"/api/v1/admin/audit", AuditHandler)]
