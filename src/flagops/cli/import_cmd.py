"""`flags import`: write an environment's database state into its file (adopt a database, or accept drift)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from flagops.cli.app import cli, context, env_option, err, out

if TYPE_CHECKING:
    from flagops.config.load import Config
    from flagops.edit.importer import Adoption, Assignment
    from flagops.plan.state import State


def assignment_line(a: Assignment) -> str:
    """One value written into a file, as import and rollback print it: `+`, `-` or `~`, address, values."""
    from flagops.render.common import value

    if a.before is None:
        return f"  + {a.address}: {value(a.after)}"
    if a.after is None:
        return f"  - {a.address} (was {value(a.before)})"
    return f"  ~ {a.address}: {value(a.before)} -> {value(a.after)}"


def _remaining(config: Config, environment: str, actual: State, adoption: Adoption) -> list[str]:
    """Rows of the database the edited configuration still does not describe, beyond the shared
    fields import reported and the flags it left out with a warning (it should be none)."""
    from flagops.plan.changes import Action, Subject
    from flagops.plan.diff import diff
    from flagops.plan.state import desired_state, restrict

    reported = {(d.flag_key, d.field) for d in adoption.differences}
    left = set(adoption.only_in_config) | set(adoption.skipped)
    desired = restrict(desired_state(config, environment), actual.flags)
    remaining = []
    for c in diff(desired, actual):
        if c.flag_key in left:
            continue
        if (
            c.subject == Subject.FLAG
            and c.action == Action.UPDATE
            and c.after is not None
            and all((c.flag_key, name) in reported for name in c.after)
        ):
            continue
        remaining.append(c.address)
    return remaining


@cli.command(name="import")
@env_option
@click.option("--dry-run", is_flag=True, help="Show what would be written without writing.")
def import_(environment: str, dry_run: bool) -> None:
    """Write the database state of an environment into its file.

    Per-environment values and org overrides go to environments/<env>.yaml; a flag only in the
    database gets a definition in flags/imported.yaml. Shared fields (name, description, owner,
    expires, protected) of flags defined in flags/ are never rewritten: differences are listed.
    Comments and formatting are kept. Afterwards `flags plan` shows no changes, except for the
    shared fields listed.
    """
    from flagops.cli.rewrite import edited_files, validated, write_files
    from flagops.db import read
    from flagops.edit.importer import adopt
    from flagops.plan.state import state_hash
    from flagops.reconcile import reading

    ctx = context()
    config = ctx.load()
    database = ctx.connect(config, environment, "import")
    with reading(database, f"reading environment {environment}") as conn:
        actual = read.read_state(conn)
        last = read.read_last_apply(conn, environment)
        applied = None if last is None else read.applied_state(conn, last, actual, state_hash(actual))
    adoption = adopt(config, environment, actual, applied)
    for warning in adoption.warnings:
        err(f"warning: {warning}")
    if not adoption.assignments:
        if adoption.differences or adoption.unmanaged or adoption.skipped:
            out(
                f"Nothing to import: {config.environment(environment).path} and flags/ already hold every"
                " value import writes; what import leaves alone follows."
            )
        else:
            out(f"Nothing to import: the configuration of environment {environment} matches its database.")
        _report(adoption, environment)
        return
    edits = adoption.edits()
    adopted = f"Flags adopted from the database of environment {environment} by `flags import`."
    files = edited_files(ctx.sources, edits, new_file_comment=adopted)
    edited = validated(ctx.sources, files)
    for path in edits:
        created = "" if (ctx.config_dir / path).exists() else " (new file)"
        out(f"{path}{created}:")
        for a in adoption.assignments:
            if a.path == path:
                out(assignment_line(a))
    for address in _remaining(edited, environment, actual, adoption):
        err(f"warning: {address} still differs from the database after the import")
    shared = sorted(p for p in edits if not p.startswith("environments/"))
    others = sorted(n for n in config.environments if n != environment)
    if shared and others:
        out(
            f"Note: {', '.join(shared)} {'is' if len(shared) == 1 else 'are'} shared by every environment:"
            f" plans for {', '.join(others)} will include these flags too, off until their environment"
            " files set them."
        )
    _report(adoption, environment)
    count = len(adoption.assignments)
    if dry_run:
        out(f"Would write {count} value(s) into {len(files)} file(s) (dry run: nothing was written).")
        return
    write_files(ctx.config_dir, files)
    out(
        f"Imported {count} value(s) from the database of environment {environment} into {len(files)} file(s)."
    )


def _report(adoption: Adoption, environment: str) -> None:
    """What import leaves alone: differing shared fields, flags only in the configuration, unmanaged rows."""
    from flagops.plan.changes import unmanaged_heading
    from flagops.render.common import value

    if adoption.differences:
        out(
            "Shared fields differ between flags/ and the database; import leaves flags/ alone"
            " (every environment uses it):"
        )
        for d in adoption.differences:
            drift = " (changed outside flags since the last apply)" if d.drifted else ""
            out(
                f"  {d.address}: {value(d.in_config)} in {d.path},"
                f" {value(d.in_database)} in the database{drift}"
            )
        out(
            f"The next plan for {environment} shows {len(adoption.differences)} field(s) as changes to its"
            " database (flags/ wins); to keep the database's values, edit flags/ for every environment."
        )
        if any(d.drifted for d in adoption.differences):
            out(
                "Fields changed outside flags are drift: apply refuses to overwrite them without"
                " --overwrite-drift."
            )
    if adoption.only_in_config:
        out(
            f"Not in the database, left in the configuration (the next plan creates them):"
            f" {', '.join(adoption.only_in_config)}"
        )
    if adoption.unmanaged:
        out(unmanaged_heading(len(adoption.unmanaged)))
        for u in adoption.unmanaged:
            out(f"  ? {u}")
