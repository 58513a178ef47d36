"""Connections: the URL of an environment's database, engines, and library errors made safe to print."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from flagops.config.load import Environment
from flagops.errors import DatabaseError, FlagopsError, LockTimeoutError, UsageError


def resolve_url(environment: Environment, config_dir: Path, environ: Mapping[str, str]) -> URL:
    """The SQLAlchemy URL of an environment's database (driver chosen, SQLite paths made absolute)."""
    database = environment.spec.database
    if database.url_env is not None:
        raw = environ.get(database.url_env)
        if raw is None or not raw.strip():
            state = "not set" if raw is None else "set but empty"
            raise UsageError(
                f"{environment.path}: database.url_env names {database.url_env}, which is {state};"
                f" export the database URL of environment {environment.name} in it"
            )
        source = f"${database.url_env}"
    else:
        raw = database.url or ""
        source = f"database.url of {environment.path}"
    try:
        url = parse_url(raw)
    except ValueError as exc:
        reason = str(exc)
        raise UsageError(f"{source} is {reason}" if reason == NOT_A_URL else f"{source}: {reason}") from None
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path and path != ":memory:" and not Path(path).is_absolute():
            url = url.set(database=str(config_dir / path))
        folder = Path(url.database or "").parent
        if path and path != ":memory:" and not folder.is_dir():
            raise UsageError(
                f"{source}: the SQLite database's directory {folder} does not exist; create it"
                " (or correct the path) and run the command again"
            )
    return url


NOT_A_URL = "not a database URL"


def parse_url(raw: str | URL) -> URL:
    """The SQLAlchemy URL of a database URL (postgresql:// gets the psycopg driver).

    Raises ValueError, saying why without repeating the URL, for text that is not a database URL
    (a malformed port or host, an unencoded @ in the password) or names an unsupported database.
    """
    if isinstance(raw, str):
        _scheme, separator, rest = raw.partition("://")
        if separator and rest.split("/", 1)[0].count("@") > 1:
            # make_url would split at the first @ and take the rest of the password for the host.
            raise ValueError("the password holds an unencoded @; percent-encode it as %40")
    try:
        url = make_url(raw)
        url.port  # noqa: B018  (a malformed port raises here, not later)
    except (ArgumentError, ValueError):
        raise ValueError(NOT_A_URL) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise ValueError(f"unsupported database {backend!r} (use postgresql or sqlite)")


def _is_password(key: str) -> bool:
    return key.lower() == "password"


def redact(url: URL) -> str:
    """The URL as it may be printed: never with its password (in its userinfo or its query)."""
    query = {k: "***" if _is_password(k) else v for k, v in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def open_engine(
    url: URL, *, application_name: str, immediate: bool = False, timeout: float = 5.0
) -> sa.Engine:
    """An engine without a pool (one command, one connection).

    On SQLite, transactions begin with BEGIN (or BEGIN IMMEDIATE when `immediate`, taking the
    write lock up front, waiting up to `timeout` seconds) instead of the driver's implicit one.
    """
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": timeout})
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA foreign_keys = ON")

        @event.listens_for(engine, "begin")
        def _begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql(begin)

        return engine
    return sa.create_engine(
        url,
        poolclass=NullPool,
        connect_args={"application_name": application_name[:63], "connect_timeout": 10},
    )


def _scrub(message: str, url: URL) -> str:
    secrets = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if _is_password(key):
            secrets.extend([value] if isinstance(value, str) else value)
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", message)


def _driver_error(original: str, url: URL, action: str) -> FlagopsError:
    """One line from a driver's message: up to 3 lines before its CONTEXT (which quotes data)."""
    lines = original.strip().splitlines()
    context = next((i for i, line in enumerate(lines) if line.startswith("CONTEXT:")), len(lines))
    first = " ".join(line.strip() for line in lines[: min(context, 3)])
    if url.get_backend_name() == "sqlite" and "database is locked" in original:
        return LockTimeoutError(f"{action}: the SQLite database {redact(url)} is locked by another writer")
    return DatabaseError(f"{action}: {_scrub(first, url)} ({redact(url)})")


@contextlib.contextmanager
def translated(url: URL, action: str) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into one-line DatabaseErrors that hold no password."""
    try:
        yield
    except DBAPIError as exc:
        raise _driver_error(str(exc.orig) if exc.orig is not None else str(exc), url, action) from None
    except (psycopg.Error, sqlite3.Error) as exc:  # raised through raw driver cursors (COPY, fetches)
        raise _driver_error(str(exc), url, action) from None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{action}: {_scrub(str(exc).splitlines()[0], url)}") from None
