"""Queue positions: sparse integers, so a move updates one row, not the table.

Jobs run by priority (high first), then position (low first). New jobs go
`GAP` after the current tail; a move between two neighbours takes the midpoint.
Only when two neighbours have no integer left between them (after ~20
consecutive inserts at the same spot) are the pending jobs of that priority
renumbered.
"""

from __future__ import annotations

from sqlalchemy import Connection, func
from sqlmodel import Session, col, select

from stablequeue_coordinator.queue.states import JobStatus
from stablequeue_coordinator.store.hot import HotStatement
from stablequeue_coordinator.store.tables import JobRow

GAP = 1 << 20
# Built once: every submit batch asks for the tail (a statement built and keyed per
# call cost as much as the rest of the batch's insert; see `HotStatement`).
HIGHEST = HotStatement(select(func.max(JobRow.position)))
LOWEST = select(func.min(JobRow.position))


def tail_position(connection: Connection) -> int:
    """A position after every job ever queued."""
    highest = HIGHEST.scalar(connection, {})
    return (highest or 0) + GAP


def head_position(session: Session) -> int:
    """A position before every job ever queued."""
    lowest = session.connection().execute(LOWEST).scalar()
    return (lowest or 0) - GAP


def position_beside(session: Session, moving: JobRow, anchor: JobRow, *, before: bool) -> int:
    """A free position directly before or after `anchor` among pending jobs of its priority."""
    for _ in range(2):
        neighbour = _neighbour(session, moving, anchor, before=before)
        if neighbour is None:
            return anchor.position - GAP if before else anchor.position + GAP
        low, high = sorted((neighbour, anchor.position))
        middle = (low + high) // 2
        if low < middle < high:
            return middle
        _renumber(session, anchor.priority)
    raise RuntimeError("no free position after renumbering")  # unreachable: gaps are GAP wide


def _neighbour(session: Session, moving: JobRow, anchor: JobRow, *, before: bool) -> int | None:
    same_band = select(JobRow.position).where(
        JobRow.status == JobStatus.PENDING.value,
        JobRow.priority == anchor.priority,
        JobRow.id != moving.id,
    )
    if before:
        stmt = same_band.where(JobRow.position < anchor.position).order_by(
            col(JobRow.position).desc()
        )
    else:
        stmt = same_band.where(JobRow.position > anchor.position).order_by(col(JobRow.position))
    return session.exec(stmt.limit(1)).first()


def _renumber(session: Session, priority: int) -> None:
    rows = session.exec(
        select(JobRow)
        .where(JobRow.status == JobStatus.PENDING.value, JobRow.priority == priority)
        .order_by(col(JobRow.position), col(JobRow.id))
    ).all()
    if not rows:
        return
    start = rows[0].position
    for i, row in enumerate(rows):
        row.position = start + i * GAP
        session.add(row)
    session.flush()
