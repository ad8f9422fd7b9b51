"""the ticket snapshot kept with an event; the per-tenant model budget meter

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("snapshot", sa.JSON(), nullable=True))
    usage = op.create_table(
        "budget_usage",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("model_calls", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "day", name=op.f("pk_budget_usage")),
    )
    _count_this_month(usage)


def _count_this_month(usage: sa.Table) -> None:
    """Start the meter with this month's model calls already in the audit log."""
    first = datetime.now(UTC).replace(tzinfo=None, day=1, hour=0, minute=0, second=0, microsecond=0)
    calls = sa.table(
        "model_calls",
        sa.column("tenant", sa.String),
        sa.column("engine", sa.String),
        sa.column("created_at", sa.DateTime),
        sa.column("cost_usd", sa.Float),
    )
    rows = op.get_bind().execute(
        sa.select(calls.c.tenant, calls.c.created_at, calls.c.cost_usd).where(
            calls.c.created_at >= first, calls.c.engine != "local"
        )
    )
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for tenant, created_at, cost in rows:
        total = totals[(tenant, created_at.strftime("%Y-%m-%d"))]
        total[0] += 1
        total[1] += float(cost or 0.0)
    if totals:
        op.bulk_insert(
            usage,
            [
                {"tenant": t, "day": d, "model_calls": int(n), "cost_usd": c}
                for (t, d), (n, c) in sorted(totals.items())
            ],
        )


def downgrade() -> None:
    op.drop_table("budget_usage")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("snapshot")
