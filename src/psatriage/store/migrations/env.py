"""Alembic environment: the engine comes from psatriage (``store.db.upgrade``), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

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
        if engine.dialect.name == "postgresql":
            # processes that start together (web and workers) migrate one after the other; the
            # later ones find the database at head and do nothing
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('psatriage:migrate'))"))
        context.run_migrations()
    connection.commit()
