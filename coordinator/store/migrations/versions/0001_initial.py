"""Jobs, API keys, idempotency keys and coordinator state.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("app", sa.String(16), nullable=False),
        sa.Column("target_server", sa.String(100)),
        sa.Column("server", sa.String(100)),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("submitted_by", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("batch_id", sa.String(32)),
        sa.Column("batch_index", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("label", sa.String(200), nullable=False, server_default=""),
        sa.Column("spec", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime()),
        sa.Column("finished_at", sa.DateTime()),
    )
    desc = sa.text("priority DESC")
    op.create_index("ix_jobs_status_order", "jobs", ["status", desc, "position", "id"])
    op.create_index("ix_jobs_order", "jobs", [desc, "position", "id"])
    op.create_index(
        "ix_jobs_owner_status_order",
        "jobs",
        ["submitted_by", "status", desc, "position", "id"],
    )
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"])
    op.create_index("ix_jobs_position", "jobs", ["position"])
    op.create_index("ix_jobs_batch", "jobs", ["batch_id", "batch_index"])
    op.create_index("ix_jobs_server", "jobs", ["server"])
    op.create_index("ix_jobs_target_server", "jobs", ["target_server"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime()),
        sa.Column("revoked_at", sa.DateTime()),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "coordinator_state",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("coordinator_state")
    op.drop_table("idempotency_keys")
    op.drop_table("api_keys")
    op.drop_table("jobs")
