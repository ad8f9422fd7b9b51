"""ticket fields beside the category, alert storms, and the scope of a decision

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fields", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("storm_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("followed", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("scope", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_decisions_tenant_storm", ["tenant", "storm_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_tenant_storm")
        batch_op.drop_column("scope")
        batch_op.drop_column("followed")
        batch_op.drop_column("storm_key")
        batch_op.drop_column("fields")
