"""The `flags eval` command: what one org sees of each flag and why, from the YAML or the live database."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import click

from flagops.cli.app import cli, context, env_option, out, parse_org_id
from flagops.errors import UsageError

if TYPE_CHECKING:
    from flagops.runtime.rollout import Evaluation, FlagRule


def _from_config(environment: str, org: str) -> tuple[dict[str, FlagRule], dict[str, bool]]:
    from flagops.plan.state import desired_state
    from flagops.runtime.rollout import FlagRule

    ctx = context()
    state = desired_state(ctx.load(), environment)
    rules = {
        key: FlagRule(row.enabled, row.rollout_percentage, row.killed) for key, row in state.flags.items()
    }
    overrides = {key: on for (key, org_id), on in state.overrides.items() if org_id == org}
    return rules, overrides


def _from_database(environment: str, org: str) -> tuple[dict[str, FlagRule], dict[str, bool]]:
    from flagops.db import runtime
    from flagops.reconcile import reading

    ctx = context()
    database = ctx.connect(ctx.load_environment(environment), environment, "eval")
    try:
        with reading(database, f"reading environment {environment}") as connection:
            rules, overrides = runtime.read_org(connection, org)
    finally:
        database.engine.dispose()
    return rules, overrides


def _select(rules: Mapping[str, FlagRule], wanted: Sequence[str], where: str) -> list[str]:
    if not wanted:
        return sorted(rules)
    unknown = [key for key in dict.fromkeys(wanted) if key not in rules]
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        raise UsageError(f"unknown flag{'s' if len(unknown) > 1 else ''} {names} (not in {where})")
    return list(dict.fromkeys(wanted))


def _json(environment: str, org: str, source: str, results: Mapping[str, Evaluation]) -> str:
    flags = {
        key: {
            "enabled": e.value,
            "reason": e.reason.value,
            "bucket": e.bucket,
            "threshold": e.threshold,
            "explanation": e.explain(),
        }
        for key, e in results.items()
    }
    document = {"environment": environment, "org_id": org, "source": source, "flags": flags}
    return json.dumps(document, indent=2) + "\n"


def _text(environment: str, org: str, source: str, results: Mapping[str, Evaluation]) -> str:
    width = max((len(key) for key in results), default=0)
    lines = [f"Org {org} in environment {environment} (from the {source}):"]
    for key, e in results.items():
        lines.append(f"  {key:<{width}}  {'on ' if e.value else 'off'}  {e.explain()}")
    if not results:
        lines.append("  (no flags)")
    return "\n".join(lines) + "\n"


@cli.command("eval")
@env_option
@click.option("--org", "org_id", required=True, metavar="ORG_ID", help="The org (a UUID).")
@click.argument("flag_keys", nargs=-1, metavar="[FLAG]...")
@click.option("--live", is_flag=True, help="Read the environment's database instead of the YAML.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def eval_(environment: str, org_id: str, flag_keys: Sequence[str], live: bool, fmt: str) -> None:
    """Show what an org sees of each flag (or of the FLAGs named) and why."""
    from flagops.runtime.rollout import evaluate_rule

    org = parse_org_id(org_id)
    if live:
        rules, overrides = _from_database(environment, org)
        source, where = "database", f"the database of environment {environment}"
    else:
        rules, overrides = _from_config(environment, org)
        source, where = "configuration", "flags/"
    keys = _select(rules, flag_keys, where)
    results = {key: evaluate_rule(key, org, rules[key], overrides.get(key)) for key in keys}
    render = _json if fmt == "json" else _text
    out(render(environment, org, source, results))
