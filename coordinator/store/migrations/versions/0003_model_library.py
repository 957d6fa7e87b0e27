"""The model library: models by hash, their locations, and a job's model hash.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("autov2", sa.String(10), nullable=False),
        sa.Column("autov1", sa.String(8), nullable=False, server_default=""),
        sa.Column("autov3", sa.String(64), nullable=False, server_default=""),
        sa.Column("blake3", sa.String(64), nullable=False, server_default=""),
        sa.Column("name", sa.String(500), nullable=False, server_default=""),
        sa.Column("type", sa.String(32), nullable=False, server_default=""),
        sa.Column("base_model", sa.String(64), nullable=False, server_default=""),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("trained_words", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("tags", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("civitai_model_id", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("civitai_version_id", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("version_name", sa.String(500), nullable=False, server_default=""),
        sa.Column("source_url", sa.String(1000), nullable=False, server_default=""),
        sa.Column("preview_url", sa.String(1000), nullable=False, server_default=""),
        sa.Column("preview_path", sa.String(2000), nullable=False, server_default=""),
        sa.Column("civitai_checked_at", sa.DateTime()),
        sa.Column("civitai_status", sa.String(16), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_models_autov2", "models", ["autov2"])
    op.create_index("ix_models_autov1", "models", ["autov1"])
    op.create_index("ix_models_autov3", "models", ["autov3"])
    op.create_index("ix_models_type_name", "models", ["type", "name"])
    op.create_table(
        "model_locations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(100), nullable=False),
        sa.Column("path", sa.String(2000), nullable=False),
        sa.Column("backend_name", sa.String(2000), nullable=False, server_default=""),
        sa.Column("app", sa.String(16), nullable=False, server_default=""),
        sa.Column("type", sa.String(32), nullable=False, server_default=""),
        sa.Column("name_key", sa.String(500), nullable=False, server_default=""),
        sa.Column("sha256", sa.String(64)),
        sa.Column("verified", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        # A file on a host is one location, whatever its content turns out to be.
        sa.UniqueConstraint("host", "path", name="uq_locations_host_path"),
    )
    op.create_index("ix_locations_sha256", "model_locations", ["sha256"])
    op.create_index("ix_locations_name_key", "model_locations", ["name_key"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("model_sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("model_sha256")
    op.drop_table("model_locations")
    op.drop_table("models")
