"""Backend servers, job results, and the backend's id for a running job.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("alias", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("username", sa.String(200), nullable=False, server_default=""),
        sa.Column("password", sa.String(500), nullable=False, server_default=""),
        sa.Column("bearer_token", sa.String(2000), nullable=False, server_default=""),
        sa.Column("max_concurrency", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("labels", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "results",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("mime", sa.String(50), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("height", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("seed", sa.BigInteger(), nullable=False, server_default="-1"),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("infotext", sa.Text(), nullable=False, server_default=""),
        sa.Column("prompt", sa.Text(), nullable=False, server_default=""),
        sa.Column("model", sa.String(500), nullable=False, server_default=""),
        sa.Column("server", sa.String(100), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        # One image per (job, index): a recovered or retried job never saves twice.
        sa.UniqueConstraint("job_id", "idx", name="uq_results_job_idx"),
    )
    op.create_index("ix_results_created", "results", ["created_at", "id"])
    op.create_index("ix_results_model", "results", ["model"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("backend_task_id", sa.String(100)))
        batch.add_column(sa.Column("not_before", sa.DateTime()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("not_before")
        batch.drop_column("backend_task_id")
    op.drop_table("results")
    op.drop_table("servers")
