"""Open an environment's store: its database as plan and apply see it (`flagops.db.store`), and the
commands that only read it or initialise its schema."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from flagops.config.load import Environment
from flagops.db import migrate
from flagops.db.engine import open_engine, resolve_url
from flagops.db.store import SqlStore

Database = SqlStore
"""An environment's database: its engine, and its URL (for messages, password hidden)."""


def open_database(
    env: Environment,
    *,
    config_dir: Path,
    environ: Mapping[str, str],
    application_name: str,
    write: bool = False,
    lock_timeout: float = 0.0,
) -> SqlStore:
    """The store of `env`'s database (no connection is made yet)."""
    url = resolve_url(env, config_dir, environ)
    engine = open_engine(
        url, application_name=application_name, immediate=write, timeout=max(lock_timeout, 0.05)
    )
    return SqlStore(env, engine, url)


@contextmanager
def reading(database: SqlStore, what: str) -> Iterator[sa.Connection]:
    """A transaction on the environment's database once its schema is known to be current; database
    errors inside become one line saying `what` was being done."""
    with database.transaction(what) as tx:
        tx.require_current()
        yield tx.connection


def init_schema(database: SqlStore, actor: str) -> migrate.Upgrade:
    """Create or upgrade the environment's schema (idempotent), completing legacy rows (see
    `migrate.upgrade`; `actor` names whoever runs it in the audit rows that writes)."""
    env = database.environment
    with database.transaction(f"initialising environment {env.name}") as tx:
        tx.lock(30.0)
        return migrate.upgrade(tx.connection, env.name, actor=actor)
