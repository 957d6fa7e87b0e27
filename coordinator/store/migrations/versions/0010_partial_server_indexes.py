"""The server columns' indexes hold only the jobs that name a server.

`jobs.server` is empty until a job is claimed and `jobs.target_server` is empty for
most jobs, yet every submitted job added an entry to both indexes: two of the twelve
pages each submit's commit wrote. Lookups by server (`server = :alias`) imply the
condition, so SQLite and PostgreSQL still use these indexes for them.

Revision ID: 0010
"""

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = ("server", "target_server")


def upgrade() -> None:
    for column in COLUMNS:
        op.drop_index(f"ix_jobs_{column}", "jobs")
        condition = text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_jobs_{column}",
            "jobs",
            [column],
            sqlite_where=condition,
            postgresql_where=condition,
        )


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index(f"ix_jobs_{column}", "jobs")
        op.create_index(f"ix_jobs_{column}", "jobs", [column])
