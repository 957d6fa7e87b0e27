"""ListJobs: filters and keyset (cursor) pagination over the order indexes.

A page costs the same at any depth: the cursor holds the sort key of the last
row, and the next page starts right after it on the index.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from stablequeue_coordinator.auth.principal import Principal
from stablequeue_coordinator.errors import InvalidArgument, PermissionDenied
from stablequeue_coordinator.queue.states import JobStatus
from stablequeue_coordinator.store.tables import JobRow

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class JobQuery:
    """What ListJobs asks for. `newest` orders by submission time instead of queue order."""

    statuses: tuple[JobStatus, ...] = ()
    app: str = ""
    server: str = ""
    submitted_by: str = ""
    batch_id: str = ""
    newest: bool = False
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str = ""

    def restricted_to(self, who: Principal) -> JobQuery:
        """Non-admins see only their own jobs.

        Raises:
            PermissionDenied: a non-admin asked for someone else's jobs.
        """
        if who.is_admin:
            return self
        if self.submitted_by and self.submitted_by != who.key_id:
            raise PermissionDenied("submitted_by: a submit-scoped key can list only its own jobs")
        return replace(self, submitted_by=who.key_id)

    def after(self, token: str) -> JobQuery:
        return replace(self, page_token=token)


def list_page(session: Session, query: JobQuery) -> tuple[Sequence[JobRow], str]:
    if not 0 <= query.page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument("page.page_size", f"must be within 0 .. {MAX_PAGE_SIZE}")
    size = query.page_size or DEFAULT_PAGE_SIZE
    stmt = select(JobRow)
    if query.statuses:
        stmt = stmt.where(col(JobRow.status).in_([s.value for s in query.statuses]))
    if query.app:
        stmt = stmt.where(JobRow.app == query.app)
    if query.server:
        stmt = stmt.where(or_(JobRow.server == query.server, JobRow.target_server == query.server))
    if query.submitted_by:
        stmt = stmt.where(JobRow.submitted_by == query.submitted_by)
    if query.batch_id:
        stmt = stmt.where(JobRow.batch_id == query.batch_id)
    cursor = _decode(query.page_token, query.newest)
    if query.newest:
        if cursor:
            created, last_id = datetime.fromisoformat(cursor["c"]), cursor["i"]
            stmt = stmt.where(
                or_(
                    col(JobRow.created_at) < created,
                    and_(JobRow.created_at == created, col(JobRow.id) < last_id),
                )
            )
        stmt = stmt.order_by(col(JobRow.created_at).desc(), col(JobRow.id).desc())
    else:
        if cursor:
            prio, pos, last_id = cursor["p"], cursor["s"], cursor["i"]
            stmt = stmt.where(
                or_(
                    col(JobRow.priority) < prio,
                    and_(JobRow.priority == prio, col(JobRow.position) > pos),
                    and_(
                        JobRow.priority == prio,
                        JobRow.position == pos,
                        col(JobRow.id) > last_id,
                    ),
                )
            )
        stmt = stmt.order_by(col(JobRow.priority).desc(), col(JobRow.position), col(JobRow.id))
    rows = session.exec(stmt.limit(size + 1)).all()
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, _encode(rows[-1], query.newest)


def _encode(row: JobRow, newest: bool) -> str:
    key: dict[str, Any]
    if newest:
        key = {"o": "n", "c": row.created_at.isoformat(), "i": row.id}
    else:
        key = {"o": "q", "p": row.priority, "s": row.position, "i": row.id}
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def _decode(token: str, newest: bool) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        expected = {"o", "c", "i"} if newest else {"o", "p", "s", "i"}
        if not isinstance(key, dict) or set(key) != expected:
            raise ValueError("unexpected fields")
        if key["o"] != ("n" if newest else "q"):
            raise ValueError("token is for another order")
        if not isinstance(key["i"], str) or len(key["i"]) > 64:
            raise ValueError("bad id")
        if newest:
            datetime.fromisoformat(key["c"])
        elif not all(isinstance(key[k], int) and abs(key[k]) < 2**62 for k in ("p", "s")):
            raise ValueError("bad sort key")
        return key
    except (ValueError, TypeError) as e:
        raise InvalidArgument(
            "page.page_token", "malformed or from a different query; start from the first page"
        ) from e
