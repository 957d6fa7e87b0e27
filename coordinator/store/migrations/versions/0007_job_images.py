"""A batch's init images are stored once, not once per job of the batch.

Jobs stored before this revision keep their images inline; they are read as before.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_images",
        sa.Column("batch_id", sa.String(32), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    # Jobs stored since hold only placeholders: dropping the table would lose their images.
    if op.get_bind().execute(sa.text("SELECT 1 FROM job_images LIMIT 1")).first():
        raise RuntimeError(
            "job_images holds init images of stored jobs; delete those jobs before downgrading"
        )
    op.drop_table("job_images")
