"""`flags history`: an environment's audit log (applies, out-of-band changes, kills), or its applies."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from flagops.cli.app import cli, context, env_option, out, parse_org_id
from flagops.errors import UsageError

if TYPE_CHECKING:
    from flagops.reconcile import Database


@cli.command("history")
@env_option
@click.option("--flag", "flag_key", metavar="KEY", help="Only entries about this flag (and its overrides).")
@click.option("--org", "org_id", metavar="ORG", help="Only entries about this org's overrides.")
@click.option(
    "--applies",
    "list_applies",
    is_flag=True,
    help="List the applies instead, one line each (also those that changed no row): the ids flags"
    " rollback --to takes.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many entries to show."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def history_command(
    environment: str, flag_key: str | None, org_id: str | None, list_applies: bool, limit: int, fmt: str
) -> None:
    """Show the audit log of an environment, newest first: applies, out-of-band changes and kills.

    With --applies, list the environment's applies instead: id, time, actor, commit, counts and the
    saved plan each executed.
    """
    if list_applies and (flag_key is not None or org_id is not None):
        raise UsageError("--applies lists whole applies: it takes neither --flag nor --org")
    if org_id is not None:
        org_id = parse_org_id(org_id)
    ctx = context()
    config = ctx.load_environment(environment)
    database = ctx.connect(config, environment, "history")
    if list_applies:
        _applies(database, environment, limit, fmt)
        return
    from flagops.db.history import history
    from flagops.render.history import history_json, render_history

    entries = history(
        database.engine, database.url, environment, flag_key=flag_key, org_id=org_id, limit=limit
    )
    if fmt == "json":
        out(json.dumps(history_json(entries, environment), indent=2, ensure_ascii=False))
        return
    about = "".join(
        part
        for part in (
            f" for flag {flag_key}" if flag_key else "",
            f" for org {org_id}" if org_id else "",
        )
    )
    out(render_history(entries, environment, about=about, limit=limit))


def _applies(database: Database, environment: str, limit: int, fmt: str) -> None:
    from flagops.db.history import apply_history
    from flagops.render.history import applies_json, render_applies

    records = apply_history(database.engine, database.url, environment, limit=limit)
    if fmt == "json":
        out(json.dumps(applies_json(records, environment), indent=2, ensure_ascii=False))
        return
    out(render_applies(records, environment, limit=limit))
