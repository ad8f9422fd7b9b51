"""bulk runs (backfill, export), daily counts kept through purges, periodic job marks

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_runs")),
    )
    with op.batch_alter_table("bulk_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bulk_runs_tenant_key", ["tenant", "kind", "run_key"], unique=False
        )
    op.create_table(
        "bulk_items",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["bulk_runs.id"],
            name=op.f("fk_bulk_items_run_id_bulk_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "ticket_id", name=op.f("pk_bulk_items")),
    )
    op.create_table(
        "daily_counts",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("day", sa.DateTime(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "day", "name", name=op.f("pk_daily_counts")),
    )
    op.create_table(
        "job_marks",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("last_run_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "job", name=op.f("pk_job_marks")),
    )


def downgrade() -> None:
    op.drop_table("job_marks")
    op.drop_table("daily_counts")
    op.drop_table("bulk_items")
    with op.batch_alter_table("bulk_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_runs_tenant_key")
    op.drop_table("bulk_runs")
