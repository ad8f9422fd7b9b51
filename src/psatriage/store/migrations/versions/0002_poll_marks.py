"""poll marks, one automatic decision per ticket

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll_marks",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("mark", sa.DateTime(), nullable=False),
        sa.Column("next_poll_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_poll_marks")),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ticket_key", sa.String(length=160), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_decisions_ticket_key"), ["ticket_key"])


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_decisions_ticket_key"), type_="unique")
        batch_op.drop_column("ticket_key")

    op.drop_table("poll_marks")
