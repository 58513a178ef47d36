"""`flags promote`: copy per-environment flag values from one environment's YAML into another's."""

from __future__ import annotations

from collections.abc import Sequence

import click

from flagops.cli.app import cli, context, err, out


@cli.command()
@click.option("--from", "source", required=True, metavar="ENV", help="Environment to copy values from.")
@click.option("--to", "target", required=True, metavar="ENV", help="Environment whose YAML is edited.")
@click.option(
    "--flag",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="Only flags whose key matches this glob, e.g. 'lead_*' (repeatable; default: all flags).",
)
@click.option("--dry-run", is_flag=True, help="Show what would change without writing.")
def promote(source: str, target: str, patterns: Sequence[str], dry_run: bool) -> None:
    """Copy flag values from one environment into another's YAML.

    Copies enabled, rollout_percentage and killed of the matching flags. The target's promote_from
    must name the source. Org overrides are never copied. Comments and formatting of the target
    file are kept: only the lines of changed values change. A flag killed in the target and not in
    the source is held back, none of its values copied (said on stderr); the other flags are
    promoted. Undo a kill with `flags unkill` or by editing `killed` in the target's file.
    """
    from flagops.cli.rewrite import edited_files, validated, write_files
    from flagops.edit.promote import check_direction, promotions, select_flags
    from flagops.render.common import value

    ctx = context()
    config = ctx.load()
    check_direction(config, source, target)
    keys = select_flags(config, patterns)
    found = promotions(config, source, target, keys)
    env = config.environment(target)
    for key in found.kept_killed:
        err(
            f"refused: {key} is killed in {target} and not in {source}; promote never undoes a kill,"
            f" so none of its values were copied. To undo the kill, set killed: false for {key} in"
            f" {env.path} and apply it, or run flags unkill {key} --env {target} --reason TEXT"
            " first to undo it at once."
        )
    held = f"; held back (killed in {target}): {', '.join(found.kept_killed)}" if found.kept_killed else ""
    if not found.copied:
        if not found.kept_killed:
            out(f"Nothing to promote: {target} already has the values of {source} for {len(keys)} flag(s).")
            return
        others = len(keys) - len(found.kept_killed)
        rest = f"; the other {others} flag(s) already have the values of {source}" if others else ""
        out(f"Nothing promoted from {source} to {target}{held}{rest}.")
        return
    files = edited_files(ctx.sources, {env.path: [p.edit for p in found.copied]})
    validated(ctx.sources, files)
    for p in found.copied:
        out(f"~ {p.address}: {value(p.before)} -> {value(p.after)}")
    if dry_run:
        out(f"Would change {len(found.copied)} value(s) in {env.path} (dry run: nothing was written){held}.")
        return
    write_files(ctx.config_dir, files)
    out(f"Promoted {len(found.copied)} value(s) from {source} to {target} in {env.path}{held}.")
