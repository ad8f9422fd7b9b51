"""closed tickets and their hours, for reports

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ticket_facts",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("company_id", sa.String(length=64), nullable=True),
        sa.Column("company_name", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=False),
        sa.Column("category_key", sa.String(length=255), nullable=True),
        sa.Column("category_path", sa.JSON(), nullable=False),
        sa.Column("category_source", sa.String(length=16), nullable=False),
        sa.Column("hours", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decision_key", sa.String(length=255), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "ticket_id", name=op.f("pk_ticket_facts")),
    )
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ticket_facts_tenant_closed_at", ["tenant", "closed_at"], unique=False
        )
    op.create_table(
        "fact_refreshes",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("next_refresh_at", sa.DateTime(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(), nullable=True),
        sa.Column("covered_until", sa.DateTime(), nullable=True),
        sa.Column("hours_problem", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_fact_refreshes")),
    )


def downgrade() -> None:
    op.drop_table("fact_refreshes")
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_facts_tenant_closed_at")
    op.drop_table("ticket_facts")
