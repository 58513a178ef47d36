"""`flags promote`: copy per-environment flag values from one environment's YAML into another's."""

from __future__ import annotations

from collections.abc import Sequence

import click

from flagops.cli.app import cli, context, out


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
    file are kept: only the lines of changed values change.
    """
    from flagops.cli.rewrite import edited_files, validated, write_files
    from flagops.promote import check_direction, promotions, select_flags
    from flagops.render.common import value

    ctx = context()
    config = ctx.load()
    check_direction(config, source, target)
    keys = select_flags(config, patterns)
    found = promotions(config, source, target, keys)
    env = config.environment(target)
    if not found:
        out(f"Nothing to promote: {target} already has the values of {source} for {len(keys)} flag(s).")
        return
    files = edited_files(ctx.sources, {env.path: [p.edit for p in found]})
    validated(ctx.sources, files)
    for p in found:
        out(f"~ {p.address}: {value(p.before)} -> {value(p.after)}")
    if dry_run:
        out(f"Would change {len(found)} value(s) in {env.path} (dry run: nothing was written).")
        return
    write_files(ctx.config_dir, files)
    out(f"Promoted {len(found)} value(s) from {source} to {target} in {env.path}.")
