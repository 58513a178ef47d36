"""What the test modules share: throwaway repositories and the CLI, test databases, SQL and table dumps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.pool import NullPool

from flagops.cli import cli
from flagops.db import migrate
from flagops.db.tables import applies, audit_log, feature_flags, org_feature_flags

ADMIN_URL = os.environ.get("FLAGS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

FLAGS = str(Path(sys.executable).parent / "flags")
"""The `flags` console script of the running interpreter's environment."""

COMMIT = "0123456789abcdef0123456789abcdef01234567"

HEADER = "database:\n  url_env: FLAGS_TEST_URL\n"
"""The start of environments/test.yaml: the database URL comes from FLAGS_TEST_URL."""

DEFAULT_FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 50
  sms_campaigns:
    name: SMS Campaigns
    owner: growth
"""


# -- repositories and the CLI ----------------------------------------------------------------------


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Repo:
    """A throwaway configuration repository with one environment `test` on a given database."""

    path: Path
    env: dict[str, str]

    def write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return target

    def configure(self, flags: str, env_body: str = "") -> None:
        """Write flags/main.yaml, and environments/test.yaml as HEADER followed by `env_body`."""
        self.write("flags/main.yaml", flags)
        self.write("environments/test.yaml", HEADER + textwrap.dedent(env_body).lstrip("\n"))

    def flags(self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None) -> Result:
        """Run `flags --config-dir <repo> ARGS...` in-process and capture its outcome."""
        runner = CliRunner()
        result = runner.invoke(
            cli,
            ["--config-dir", str(self.path), "--no-color", *args],
            input=input,
            env={**self.env, **(env or {})},
            catch_exceptions=False,
        )
        return Result(result.exit_code, result.stdout, result.stderr)


def ok(repo: Repo, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run `flags ARGS...`, which must exit 0 (its output is the failure message); its stdout."""
    result = repo.flags(*args, env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def initialised(repo: Repo) -> Repo:
    """`repo` after `flags init --env test`."""
    ok(repo, "init", "--env", "test")
    return repo


def init_and_apply(repo: Repo) -> Repo:
    """`repo` after `flags init` and `flags apply --auto-approve` of environment test."""
    ok(repo, "init", "--env", "test")
    ok(repo, "apply", "--env", "test", "--auto-approve")
    return repo


def stale_message(plan_file: Path, *differences: str) -> str:
    """What apply says of the saved plan `plan_file` once the database has changed since it was made,
    and the derived changes now differ from the saved ones at `differences` (`address: why`)."""
    created = json.loads(plan_file.read_text())["created_at"]
    found = "; ".join((f"environment test changed since the plan was made ({created})", *differences))
    return (
        f"the saved plan is not what the configuration and the database produce now ({found});"
        " nothing was written. Run flags plan again.\n"
    )


def assert_stale(result: Any, plan_file: Path) -> None:
    """`result` is apply's refusal (exit 3, one line, nothing on stdout) of the saved plan `plan_file`
    because the database changed since it was made (whatever changes that leaves to differ)."""
    assert (result.exit_code, result.stdout) == (3, ""), result.output
    assert result.stderr.count("\n") == 1, result.stderr
    ending = "; nothing was written. Run flags plan again.\n"
    assert result.stderr.startswith(stale_message(plan_file)[: -len(ending) - 1])
    assert result.stderr.endswith(ending)


def spawn(config_dir: Path, *args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start `flags --config-dir DIR --no-color ARGS...` as a real process (stdin closed)."""
    return subprocess.Popen(
        [FLAGS, "--config-dir", str(config_dir), "--no-color", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GITHUB_SHA": COMMIT, **env},
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    """Wait for a process: (exit code, stdout, stderr); killed when it outlives `timeout`."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"flags did not finish in {timeout}s: {out}\n{err}") from None
    return process.returncode, out, err


# -- databases: SQLAlchemy on Postgres or SQLite ---------------------------------------------------


def engine(url: str) -> sa.Engine:
    """An engine on a test database (Postgres through psycopg 3, or SQLite) that keeps no connection."""
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool)


@contextmanager
def connected(url: str) -> Iterator[sa.Connection]:
    """A connection in a transaction, committed when the block ends without an error."""
    test_engine = engine(url)
    try:
        with test_engine.begin() as conn:
            yield conn
    finally:
        test_engine.dispose()


def sql(url: str, *statements: str) -> None:
    """Run statements, as they are, in one transaction."""
    with connected(url) as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def rows(url: str, table: sa.Table) -> list[dict[str, Any]]:
    """Every row of a table as dicts, in primary key order."""
    with connected(url) as conn:
        query = sa.select(table).order_by(*table.primary_key.columns)
        return [dict(row._mapping) for row in conn.execute(query)]


def everything(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the four managed tables, to show that a refused command wrote nothing."""
    return {t.name: rows(url, t) for t in (feature_flags, org_feature_flags, audit_log, applies)}


def init_schema(url: str) -> None:
    """Migrate a database to the current schema without the CLI."""
    with connected(url) as conn:
        migrate.upgrade(conn, "test")


# -- Postgres: psycopg, databases and roles --------------------------------------------------------


def execute(url: str, *statements: str, params: Sequence[Any] | None = None) -> None:
    """Run statements in one autocommit session (out-of-band SQL, grants)."""
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement, params)


def as_user(url: str, user: str) -> str:
    """`url` logging in as `user` (no password: the test server trusts 127.0.0.1)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}@{rest.rpartition('@')[2]}"


def database_name(url: str) -> str:
    return url.rpartition("/")[2]


@contextmanager
def scratch_database(options: str = "") -> Iterator[str]:
    """A new, empty database on the test server (CREATE DATABASE `options`), dropped afterwards."""
    name = f"flagops_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" {options}')
    try:
        yield f"{ADMIN_URL.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def login_role(*member_of: str, granted_in: str | None = None, prefix: str = "app") -> Iterator[str]:
    """A new LOGIN role (cluster-wide, so uniquely named) in the given roles; dropped afterwards.

    `granted_in`: the URL of a database where the test grants the role privileges, revoked first.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    grant = f" IN ROLE {', '.join(member_of)}" if member_of else ""
    execute(ADMIN_URL, f"CREATE ROLE {name} LOGIN{grant}")
    try:
        yield name
    finally:
        execute(
            ADMIN_URL,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
            params=(name,),
        )
        if granted_in is not None:
            execute(granted_in, f"DROP OWNED BY {name}")
        execute(ADMIN_URL, f"DROP ROLE IF EXISTS {name}")
