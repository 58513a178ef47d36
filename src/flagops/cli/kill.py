"""`flags kill`: the emergency off switch, written straight to an environment's database and audited."""

from __future__ import annotations

import click

from flagops.cli.app import cli, context, env_option, out
from flagops.errors import UsageError


@cli.command("kill")
@click.argument("flag")
@env_option
@click.option("--reason", required=True, help="Why the flag is switched off (kept in the audit log).")
def kill_command(flag: str, environment: str, reason: str) -> None:
    """Switch FLAG off for every org now, outside any plan; the next plan shows it as drift.

    One short transaction sets `killed` and writes a `kill` audit row with the reason and actor. It
    waits at most 5 seconds for an apply in progress (exit 4 after that). An apply will not switch
    the flag back on without --overwrite-drift; keep it off with `killed: true` in the environment
    file (or flags import).
    """
    from flagops.db.kill import ROW_LOCK_TIMEOUT, kill
    from flagops.render.history import timestamp

    if not reason.strip():
        raise UsageError("--reason must say why the flag is killed")
    ctx = context()
    config = ctx.load()
    database = ctx.connect(config, environment, "kill", write=True, lock_timeout=ROW_LOCK_TIMEOUT)
    done = kill(database.engine, database.url, environment, flag, actor=ctx.actor, reason=reason.strip())
    if not done.done:
        known = ""
        if done.actor is not None:
            when = f" at {timestamp(done.changed_at)}" if done.changed_at else ""
            known = f" (killed by {done.actor}{when}: {done.reason})"
        out(f"Flag {flag} is already killed in environment {environment}{known}; nothing was written.")
        return
    out(
        f"Killed flag {flag} in environment {environment}: it is off for every org"
        f" (actor {done.actor}, reason: {done.reason})."
    )
    from flagops.keys import is_flag_key
    from flagops.plan import UNMANAGED

    if not is_flag_key(flag):
        out(f"Its key is not a valid flag key: plans leave it {UNMANAGED}, killed or not.")
        return
    out(
        "The next plan shows this as drift, which apply will not undo without --overwrite-drift;"
        f" to keep it, set killed: true for {flag} in {database.environment.path} (or run"
        f" flags import --env {environment})."
    )
