"""What applications read: one org's view under row-level security, or the rules of some flags."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from flagops.db.engine import translated
from flagops.db.tables import feature_flags, org_feature_flags
from flagops.plan.state import percentage
from flagops.runtime.rollout import FlagRule

_T = TypeVar("_T")


class OrgFlags(NamedTuple):
    """Every flag's rule by key, and the org's overrides by flag key."""

    rules: dict[str, FlagRule]
    overrides: dict[str, bool]


def reader_engine(url: URL, *, timeout: float, application_name: str = "flagops client") -> sa.Engine:
    """A small pooled engine for a long-lived reader: connects and runs statements within `timeout`."""
    if url.get_backend_name() == "sqlite":
        return sa.create_engine(url, connect_args={"timeout": timeout})
    milliseconds = max(int(timeout * 1000), 1)
    given = url.query.get("options", "")
    options = " ".join(
        [*([given] if isinstance(given, str) else given), f"-c statement_timeout={milliseconds}"]
    )
    return sa.create_engine(
        url,
        pool_size=2,
        max_overflow=6,
        pool_timeout=timeout,
        pool_recycle=1800,
        connect_args={
            "application_name": application_name[:63],
            "connect_timeout": max(int(timeout + 0.999), 2),
            "options": options.strip(),
        },
    )


def read_org(connection: sa.Connection, org_id: str) -> OrgFlags:
    """One org's view in one SELECT: all flags, left-joined with the org's overrides.

    `org_id` must be a normalised (lowercase, hyphenated) UUID. On Postgres the transaction first
    sets `app.org_id` to it, so a role under row-level security sees that org's overrides.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.set_config("app.org_id", org_id, True)))
    f, o = feature_flags.c, org_feature_flags.c
    query = sa.select(f.flag_key, f.enabled_globally, f.rollout_percentage, f.killed, o.enabled).select_from(
        feature_flags.outerjoin(org_feature_flags, (o.flag_key == f.flag_key) & (o.org_id == org_id))
    )
    rules: dict[str, FlagRule] = {}
    overrides: dict[str, bool] = {}
    for key, enabled, rollout, killed, override in connection.execute(query):
        rules[key] = FlagRule(bool(enabled), percentage(rollout), bool(killed))
        if override is not None:
            overrides[key] = bool(override)
    return OrgFlags(rules, overrides)


def fetch_org(engine: sa.Engine, org_id: str) -> OrgFlags:
    """`read_org` in its own transaction; once more on a fresh connection when a pooled one was dead.

    Raises DatabaseError (its message never holds a password) when the database cannot be read.
    """
    return _fetched(engine, lambda connection: read_org(connection, org_id))


def _fetched(engine: sa.Engine, read: Callable[[sa.Connection], _T]) -> _T:
    with translated(engine.url, "reading flags"):
        try:
            with engine.begin() as connection:
                return read(connection)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with engine.begin() as connection:
            return read(connection)


def read_flags(connection: sa.Connection, keys: Collection[str] | None) -> dict[str, FlagRule]:
    """The rules of the flags named (of every flag when `keys` is None); a key missing from the
    result has no row. Needs no `app.org_id`: every role that reads flags sees every flag."""
    f = feature_flags.c
    query = sa.select(f.flag_key, f.enabled_globally, f.rollout_percentage, f.killed)
    if keys is not None:
        query = query.where(f.flag_key.in_(sorted(keys)))
    return {
        key: FlagRule(bool(enabled), percentage(rollout), bool(killed))
        for key, enabled, rollout, killed in connection.execute(query)
    }


def fetch_flags(engine: sa.Engine, keys: Collection[str] | None) -> dict[str, FlagRule]:
    """`read_flags` in its own transaction, retried once on a fresh connection like `fetch_org`."""
    return _fetched(engine, lambda connection: read_flags(connection, keys))
