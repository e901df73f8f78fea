"""The audit log, read by admins: every change made through the admin plane, newest first.

Writing is not here: each change's domain service builds one :class:`models.AuditEntry` and hands it to the
store call that makes the change, which writes it in the same transaction (``storage/sql/audit.py``).
To audit a new kind of change: add its action to ``vocab.AUDIT_ACTIONS``, give the store call an ``audit``
argument that calls ``storage.sql.audit.record(conn, entry)`` once the change succeeded, and pass
``AuditEntry(actor, action, target, detail)`` from the domain service. A change that is not a SQL write
(a file deleted) appends its entry right after, with ``AuditRows.append``.
"""

from __future__ import annotations

from typing import Any, Sequence

from .. import paging
from ..errors import InvalidArgument
from ..models import format_time, time_arg
from ..storage.sql.audit import AuditRows
from ..vocab import AUDIT_ACTIONS

#: at most this many values per repeatable filter
MAX_FILTER_VALUES = 100
FILTER_VALUE_MAX = 192


def audit_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"at": format_time(row["at"]), "actor": row["actor"], "action": row["action"], "target": row["target"],
            "detail": row.get("detail")}


def _values(values: Sequence[str], name: str) -> list[str]:
    if len(values) > MAX_FILTER_VALUES or any(len(v) > FILTER_VALUE_MAX for v in values):
        raise InvalidArgument(f"{name}: at most {MAX_FILTER_VALUES} values of at most {FILTER_VALUE_MAX} characters")
    return list(dict.fromkeys(values))


class AuditService:
    def __init__(self, rows: AuditRows) -> None:
        self.rows = rows

    async def search(self, *, actors: Sequence[str], actions: Sequence[str], targets: Sequence[str],
                     since: str | None, until: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        for action in actions:
            if action not in AUDIT_ACTIONS:
                raise InvalidArgument("action must be one of " + ", ".join(AUDIT_ACTIONS))
        after = paging.decode(cursor, paging.time, paging.integer)
        filters = dict(actors=_values(actors, "actor"), actions=list(dict.fromkeys(actions)),
                       targets=_values(targets, "target"), since=time_arg(since, "since"),
                       until=time_arg(until, "until"), before=tuple(after) if after else None)
        page = await paging.keyset(lambda n: self.rows.search(**filters, limit=n), limit,
                                   lambda r: [format_time(r["at"]), r["id"]])
        return page.json(audit_json)
