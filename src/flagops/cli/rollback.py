"""`flags rollback`: write the state an earlier apply left into the YAML, to be planned and applied."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from flagops.cli.app import cli, context, env_option, err, out
from flagops.errors import UsageError

if TYPE_CHECKING:
    from flagops.db.read import AppliedRecord
    from flagops.edit.rollback import Rollback

APPLY_ID_PATTERN = re.compile(r"[0-9a-f-]{8,36}")
"""An apply id (a UUID) or its first 8 or more characters, as `flags history --applies` shows them."""


def _apply_id(value: str) -> str:
    apply_id = value.strip().lower()
    if APPLY_ID_PATTERN.fullmatch(apply_id) is None:
        raise UsageError(
            f"--to: {value!r} is not an apply id (the APPLY column of flags history --applies;"
            " 8 characters or more)"
        )
    return apply_id


def _chosen(found: list[AppliedRecord], apply_id: str, environment: str) -> AppliedRecord:
    """The one apply of `environment` that `apply_id` names; UsageError otherwise."""
    listing = f"flags history --env {environment} --applies lists them"
    if not found:
        raise UsageError(f"no apply {apply_id} in the database of environment {environment} ({listing})")
    if len(found) > 1:
        raise UsageError(f"--to {apply_id} names more than one apply: give more of its id ({listing})")
    record = found[0]
    if record.environment != environment:
        raise UsageError(
            f"apply {record.apply_id} was an apply of environment {record.environment}, not of"
            f" {environment} ({listing})"
        )
    return record


@cli.command("rollback")
@env_option
@click.option(
    "--to",
    "apply_ref",
    required=True,
    metavar="APPLY_ID",
    help="The apply whose state to return to (flags history --env E --applies lists them).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be written without writing.")
def rollback_command(environment: str, apply_ref: str, dry_run: bool) -> None:
    """Write the state an earlier apply left into the YAML of an environment.

    Per-environment values and org overrides go to environments/<env>.yaml; a flag that existed
    then but is no longer defined gets its definition (its shared fields) back in
    flags/imported.yaml. Comments and formatting are kept. Nothing reaches the database: review
    the edits, then flags plan shows the way back and flags apply takes it, like any change.
    """
    from flagops.cli.import_cmd import assignment_line
    from flagops.cli.rewrite import edited_files, validated, write_files
    from flagops.db import read
    from flagops.edit.rollback import rollback
    from flagops.reconcile import reading
    from flagops.render.history import short_commit, timestamp

    apply_id = _apply_id(apply_ref)
    ctx = context()
    config = ctx.load_environment(environment)
    database = ctx.connect(config, environment, "rollback")
    with reading(database, f"reading environment {environment}") as conn:
        record = _chosen(read.find_applies(conn, apply_id), apply_id, environment)
        snapshot = read.snapshot_of(conn, record.apply_id)
        actual = read.read_state(conn)
    result = rollback(config, environment, snapshot, actual)
    edits = result.edits()
    restored = f"Flags restored from apply {record.apply_id} of environment {environment}"
    restored += " by `flags rollback`."
    files = edited_files(ctx.sources, edits, new_file_comment=restored)
    validated(ctx.sources, files, environment=environment)
    env = config.environment(environment)
    commit = f", commit {short_commit(record.git_commit)}" if record.git_commit else ""
    out(
        f"Rollback of environment {environment} to apply {record.apply_id}"
        f" ({timestamp(record.finished_at)} by {record.actor}{commit})."
    )
    if record.targets:
        out(
            f"Apply {record.apply_id} was a partial apply (--target {', '.join(record.targets)}): its"
            " snapshot holds those flags as it applied them and every other flag as the apply before"
            " it had left it; the rollback returns to all of it."
        )
    for warning in result.warnings:
        err(f"warning: {warning}")
    for path in edits:
        created = "" if path in ctx.sources else " (new file)"
        out(f"{path}{created}:")
        for a in result.assignments:
            if a.path == path:
                out(assignment_line(a))
    _report(result, environment, env.path)
    count = len(result.assignments)
    if not count:
        out(
            f"Nothing to write: the configuration of environment {environment} already describes"
            f" the state apply {record.apply_id} left. flags plan --env {environment} shows what the"
            " database still needs."
        )
        return
    if dry_run:
        out(f"Would write {count} value(s) into {len(files)} file(s) (dry run: nothing was written).")
        return
    write_files(ctx.config_dir, files)
    out(
        f"Wrote {count} value(s) into {len(files)} file(s). Review them (git diff), then"
        f" flags plan --env {environment} shows the way back and flags apply --env {environment}"
        " takes it."
    )


def _report(result: Rollback, environment: str, env_path: str) -> None:
    """What the rollback keeps as it is now, and what its edits mean for other environments."""
    from flagops.render.common import value

    for key in result.kept_kills:
        err(
            f"warning: flag {key} is killed now and was not then; the rollback keeps it killed"
            f" (a kill is undone only on purpose: set killed: false for it in {env_path}, then apply"
            f" it or run flags unkill {key} --env {environment} --reason TEXT)"
        )
    for key in result.added_since:
        err(
            f"warning: flag {key} did not exist then; flags/ is shared by every environment, so the"
            f" rollback keeps it, with its values and overrides: set killed: true for it in {env_path}"
            " to switch it off here, or delete its definition to delete it everywhere"
        )
    if result.shared:
        out(
            "Not rolled back (flags/ is shared by every environment; edit these by hand to return to"
            " them everywhere):"
        )
        for d in result.shared:
            out(f"  {d.address}: {value(d.in_config)} now, {value(d.in_database)} then ({d.path})")
    if result.restored:
        out(
            f"Note: the restored definitions ({', '.join(result.restored)}) are shared by every"
            " environment: the other environments' plans will include them too, off until their"
            " environment files set them."
        )
