"""Model locations per source: each reporter of a host's models owns its own rows.

The health probe, an extension's or agent's SyncInventory, the coordinator's own
scan and node downloads each replace only the rows they reported; the library's
view of a host is their union.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_locations") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="probe"))
        batch.drop_constraint("uq_locations_host_path", type_="unique")
        batch.create_unique_constraint("uq_locations_host_source_path", ["host", "source", "path"])
    # Rows from before this revision: the coordinator's own files came from its scan;
    # everything else is replaced by the next probe or sync of its host.
    op.execute("UPDATE model_locations SET source = 'scan' WHERE host = 'coordinator'")
    op.create_index("ix_locations_host_path", "model_locations", ["host", "path"])


def downgrade() -> None:
    op.drop_index("ix_locations_host_path", "model_locations")
    op.execute("DELETE FROM model_locations WHERE source NOT IN ('probe', 'scan')")
    with op.batch_alter_table("model_locations") as batch:
        batch.drop_constraint("uq_locations_host_source_path", type_="unique")
        batch.create_unique_constraint("uq_locations_host_path", ["host", "path"])
        batch.drop_column("source")
