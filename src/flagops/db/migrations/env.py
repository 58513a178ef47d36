"""Alembic environment: runs the package's migrations on the connection flagops hands it."""

from __future__ import annotations

from alembic import context

from flagops.db.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
