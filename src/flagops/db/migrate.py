"""Schema versions: upgrade with the package's Alembic migrations, and check a database is current."""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa

from flagops.errors import SchemaError

VERSION_TABLE = "flagops_schema_version"
HEAD = "0007"
"""The newest migration; a test keeps it equal to Alembic's head."""


def current_revision(connection: sa.Connection) -> str | None:
    """The schema version of the database, None when flagops never initialised it."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    row = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").first()
    return None if row is None else str(row[0])


def require_current(connection: sa.Connection, environment: str) -> None:
    """Raise SchemaError, naming `flags init`, unless the schema is at HEAD."""
    revision = current_revision(connection)
    if revision == HEAD:
        return
    _refuse_newer(revision, environment)
    state = "has no flagops schema" if revision is None else f"has schema version {revision}"
    raise SchemaError(
        f"the database of environment {environment} {state} (this flagops needs {HEAD});"
        f" run: flags init --env {environment}"
    )


def _refuse_newer(revision: str | None, environment: str) -> None:
    if revision is not None and revision.isdigit() and int(revision) > int(HEAD):
        raise SchemaError(
            f"the database of environment {environment} has schema version {revision}, made by a newer"
            f" flagops (this one knows versions up to {HEAD}); upgrade flagops"
        )


class Upgrade(NamedTuple):
    """What `upgrade` did: the schema version before and after, and what it changed in the tables
    of the product flagops replaces (one sentence each; empty for a database flagops made)."""

    before: str | None
    after: str
    adopted: tuple[str, ...]


def upgrade(connection: sa.Connection, environment: str, *, actor: str = "flags init") -> Upgrade:
    """Upgrade the schema to HEAD inside the caller's transaction, then complete the rows of the
    product flagops replaces (`legacy.adopt`; its audit rows name `actor`)."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    from flagops.db import legacy

    before = current_revision(connection)
    _refuse_newer(before, environment)
    config = Config()
    config.set_main_option("script_location", "flagops.db:migrations")
    config.attributes["connection"] = connection
    notes: list[str] = []
    config.attributes["notes"] = notes
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise SchemaError(f"cannot upgrade the schema of environment {environment}: {exc}") from None
    notes += legacy.adopt(connection, environment, actor)
    return Upgrade(before, HEAD, tuple(notes))
