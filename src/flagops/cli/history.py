"""`flags history`: an environment's audit log (applies, out-of-band changes, kills), newest first."""

from __future__ import annotations

import json

import click

from flagops.cli.app import cli, context, env_option, out, parse_org_id


@cli.command("history")
@env_option
@click.option("--flag", "flag_key", metavar="KEY", help="Only entries about this flag (and its overrides).")
@click.option("--org", "org_id", metavar="ORG", help="Only entries about this org's overrides.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many entries to show."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def history_command(environment: str, flag_key: str | None, org_id: str | None, limit: int, fmt: str) -> None:
    """Show the audit log of an environment, newest first: applies, out-of-band changes and kills."""
    from flagops.db.history import history
    from flagops.render.history import history_json, render_history

    if org_id is not None:
        org_id = parse_org_id(org_id)
    ctx = context()
    config = ctx.load_environment(environment)
    database = ctx.connect(config, environment, "history")
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
