"""Alembic environment: the engine comes from psatriage (``store.db.upgrade``), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from psatriage.store.tables import Base

engine: Engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
