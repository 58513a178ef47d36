"""`flags kill` and `flags unkill`: the emergency switch, written straight to a database and audited.

Both commands are one piece (`_switch`): the same row lock, the same audit row (source `kill`), the
same exit codes; only the value they write differs. See docs/emergencies.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from flagops.cli.app import cli, context, env_option, out
from flagops.errors import UsageError

if TYPE_CHECKING:
    from flagops.config.load import Config
    from flagops.db.kill import Kill

reason_option = click.option(
    "--reason", required=True, help="Why the switch is thrown (kept in the audit log)."
)


@cli.command("kill")
@click.argument("flag")
@env_option
@reason_option
def kill_command(flag: str, environment: str, reason: str) -> None:
    """Switch FLAG off for every org now, outside any plan; the next plan shows it as drift.

    One short transaction sets `killed` and writes a `kill` audit row with the reason and actor. It
    waits at most 5 seconds for an apply in progress (exit 4 after that). An apply will not switch
    the flag back on without --overwrite-drift; keep it off with `killed: true` in the environment
    file (or flags import). Undo it with `flags unkill`.
    """
    _switch(flag, environment, reason, killed=True)


@cli.command("unkill")
@click.argument("flag")
@env_option
@reason_option
def unkill_command(flag: str, environment: str, reason: str) -> None:
    """Undo a kill of FLAG now, outside any plan: its values and org overrides apply again.

    The same transaction, row lock, 5 second wait (exit 4) and `kill` audit row as `flags kill`,
    with `killed: true -> false`. While the configuration still says `killed: true` for the flag,
    the next plan wants to kill it again (as drift, which apply will not undo without
    --overwrite-drift, once the kill was applied): set `killed: false` in the environment file to
    keep the flag on.
    """
    _switch(flag, environment, reason, killed=False)


def _switch(flag: str, environment: str, reason: str, *, killed: bool) -> None:
    from flagops.db.kill import ROW_LOCK_TIMEOUT, set_killed

    verb = "kill" if killed else "unkill"
    if not reason.strip():
        raise UsageError(f"--reason must say why the flag is {verb}ed")
    ctx = context()
    config = ctx.load_environment(environment)
    database = ctx.connect(config, environment, verb, write=True, lock_timeout=ROW_LOCK_TIMEOUT)
    done = set_killed(
        database.engine, database.url, environment, flag, killed, actor=ctx.actor, reason=reason.strip()
    )
    if not done.done:
        out(_unchanged(done, environment))
        return
    if killed:
        out(
            f"Killed flag {flag} in environment {environment}: it is off for every org"
            f" (actor {done.actor}, reason: {done.reason})."
        )
    else:
        out(
            f"Unkilled flag {flag} in environment {environment}: its values and org overrides apply"
            f" again (actor {done.actor}, reason: {done.reason})."
        )
    out(_next_plan(config, environment, flag, killed))


def _unchanged(done: Kill, environment: str) -> str:
    from flagops.render.history import timestamp

    state = "already killed" if done.killed else "not killed"
    known = ""
    if done.actor is not None:
        when = f" at {timestamp(done.changed_at)}" if done.changed_at else ""
        why = f": {done.reason}" if done.reason else ""
        known = f" ({'killed' if done.killed else 'unkilled'} by {done.actor}{when}{why})"
    return f"Flag {done.flag_key} is {state} in environment {environment}{known}; nothing was written."


def _next_plan(config: Config, environment: str, flag: str, killed: bool) -> str:
    """What the next plan makes of the switch, from what the environment's configuration says."""
    from flagops.config.keys import is_flag_key
    from flagops.plan.changes import UNMANAGED
    from flagops.plan.state import rollout_values

    if not is_flag_key(flag):
        return f"Its key is not a valid flag key: plans leave it {UNMANAGED}, killed or not."
    env = config.environment(environment)
    definition = config.flags.get(flag)
    if definition is None:
        return f"Flag {flag} is not in the configuration: the next plan wants to delete it."
    configured = rollout_values(definition, env.spec.flags.get(flag))[2]
    if configured == killed:
        return (
            f"The configuration agrees (killed: {str(killed).lower()} for {flag} in environment"
            f" {environment}): the next plan shows no change for it."
        )
    if killed:
        return (
            "The next plan shows this as drift, which apply will not undo without --overwrite-drift;"
            f" to keep it, set killed: true for {flag} in {env.path} (or run"
            f" flags import --env {environment})."
        )
    return (
        f"The configuration still says killed: true for {flag} in environment {environment}: the next"
        " plan wants to kill it again (as drift, which apply will not undo without --overwrite-drift,"
        f" once the kill was applied); to keep the flag on, set killed: false for {flag} in {env.path}"
        f" (or run flags import --env {environment})."
    )
