"""The core commands: validate, init, plan and apply."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flagops.cli.app import cli, context, env_option, err, out, target_option
from flagops.errors import BlockedError, UsageError

if TYPE_CHECKING:
    from flagops.plan.changes import Plan

EXIT_CHANGES = 2
EXIT_BLOCKED = 5


@cli.command()
def validate() -> None:
    """Check every file (no database needed); print each problem as path:line:column, or one OK line."""
    from flagops.render.common import plural

    config = context().load()
    flags, environments = plural(len(config.flags), "flag"), plural(len(config.environments), "environment")
    out(f"OK: {flags}, {environments}, {plural(len(config.files), 'file')}")


@cli.command()
@env_option
def init(environment: str) -> None:
    """Create or upgrade the schema of an environment's database (idempotent)."""
    from flagops.reconcile import init_schema

    ctx = context()
    config = ctx.load()
    database = ctx.connect(config, environment, "init", write=True, lock_timeout=30)
    before, after, adopted = init_schema(database, ctx.actor)
    if before == after:
        out(f"Schema of environment {environment} is up to date (version {after}).")
    elif before is None:
        out(f"Created the flagops schema (version {after}) for environment {environment}.")
    else:
        out(f"Upgraded the schema of environment {environment} from {before} to {after}.")
    if adopted:
        out(f"Adopted the existing rows of environment {environment}:")
        out("".join(f"  - {note}\n" for note in adopted))


def _render(plan: Plan, fmt: str, color: bool) -> str:
    if fmt == "json":
        from flagops.plan.planfile import dumps

        return dumps(plan)
    if fmt == "markdown":
        from flagops.render.markdown import render_markdown

        return render_markdown(plan)
    from flagops.render.text import render_text

    return render_text(plan, color=color)


@cli.command()
@env_option
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Save the plan (JSON) for `flags apply`; `-` writes it to stdout and the rendering to stderr.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True
)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when none.")
@target_option
def plan(
    environment: str, out_file: Path | None, fmt: str, detailed_exitcode: bool, targets: Sequence[str]
) -> int:
    """Show what apply would change in an environment (exit 5 when a guard blocks it).

    With `--out -` stdout carries only the plan file (for a pipe or a redirection) and the plan is
    shown on stderr.
    """
    from flagops.plan.apply import make_plan
    from flagops.plan.options import Options
    from flagops.plan.planfile import dumps

    ctx = context()
    config = ctx.load()
    database = ctx.connect(config, environment, "plan")
    result = make_plan(config, database, Options(targets=tuple(targets) or None, git_commit=ctx.git_commit()))
    if out_file is None:
        out(_render(result, fmt, ctx.color))
    elif str(out_file) == "-":  # stdout is the plan file: the rendering goes to stderr
        rendered = _render(result, fmt, ctx.color_on(sys.stderr))
        click.echo(rendered, err=True, nl=not rendered.endswith("\n"))
        out(dumps(result, indent=None))
    else:
        out(_render(result, fmt, ctx.color))
        try:
            out_file.write_text(dumps(result, indent=None), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{out_file}: cannot write the plan: {exc.strerror}") from None
    if out_file is not None:
        err(_saved(result, environment, str(out_file)))
    if result.blocked:
        return EXIT_BLOCKED
    return EXIT_CHANGES if detailed_exitcode and result.has_changes else 0


def _saved(result: Plan, environment: str, where: str) -> str:
    """What plan says of the plan it saved: how to apply it, unless apply would refuse it (exit 5)."""
    saved = "Wrote the plan to stdout" if where == "-" else f"Saved the plan to {where}"
    if result.blocked:
        return (
            f"{saved}; it is blocked, so flags apply refuses it as it stands (exit 5):"
            " each blocked change above says what it needs."
        )
    if where == "-":
        return f"{saved}; apply a saved copy with: flags apply --env {environment} PLAN_FILE"
    return f"{saved}; apply it with: flags apply --env {environment} {where}"


@cli.command()
@env_option
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--allow-delete", is_flag=True, help="Allow deleting flags and org overrides.")
@click.option("--overwrite-drift", is_flag=True, help="Replace values changed outside flags.")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another apply to finish.",
)
@target_option
def apply(
    environment: str,
    plan_file: Path | None,
    auto_approve: bool,
    allow_delete: bool,
    overwrite_drift: bool,
    lock_timeout: float,
    targets: Sequence[str],
) -> int:
    """Apply a saved plan, or plan and apply after confirmation, in one transaction."""
    from flagops.plan.apply import apply_saved, plan_and_apply
    from flagops.plan.options import Options
    from flagops.plan.planfile import loads
    from flagops.render.common import summary_line
    from flagops.render.text import render_text

    ctx = context()
    if plan_file is not None:
        if targets:
            raise UsageError("--target cannot be combined with a saved plan (plan with --target)")
        try:
            data = plan_file.read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{plan_file}: cannot read the plan: {exc}") from None
        reviewed = loads(text, str(plan_file))
        # The plan file is a claim: the configuration in the working tree and the database decide
        # what is applied, and where (docs/trust-model.md).
        config = ctx.load()
        database = ctx.connect(config, environment, "apply", write=True, lock_timeout=lock_timeout)
        options = Options(
            git_commit=ctx.git_commit(),
            allow_delete=allow_delete,
            overwrite_drift=overwrite_drift,
            actor=ctx.actor,
            lock_timeout=lock_timeout,
            plan_sha256=hashlib.sha256(data).hexdigest(),
        )
        result = apply_saved(config, database, reviewed, options)
    else:
        config = ctx.load()
        database = ctx.connect(config, environment, "apply", write=True, lock_timeout=lock_timeout)

        def review(plan: Plan) -> None:
            out(render_text(plan, color=ctx.color))
            if plan.blocked:  # refused before anyone is asked to approve it
                raise BlockedError([str(b) for b in plan.blocked])
            if plan.has_changes and not auto_approve:
                _confirm(environment)

        options = Options(
            targets=tuple(targets) or None,
            git_commit=ctx.git_commit(),
            allow_delete=allow_delete,
            overwrite_drift=overwrite_drift,
            actor=ctx.actor,
            lock_timeout=lock_timeout,
            unattended=auto_approve,
        )
        result = plan_and_apply(config, database, options, review)
    if result.apply_id is None:
        if plan_file is not None:
            out(summary_line(reviewed))
        return 0
    s = result.summary
    partial = f", only {', '.join(targets)}" if targets else ""
    out(
        f"Apply complete! {s['add']} added, {s['change']} changed, {s['destroy']} destroyed"
        f" in environment {environment} (apply {result.apply_id}{partial})."
    )
    return 0


def _confirm(environment: str) -> None:
    if not sys.stdin.isatty():
        raise UsageError(
            "refusing to ask for confirmation: stdin is not a terminal;"
            " pass --auto-approve or apply a saved plan file"
        )
    answer = click.prompt(
        f"Apply these changes to environment {environment}? Only 'yes' is accepted",
        default="",
        show_default=False,
    )
    if answer.strip() != "yes":
        raise UsageError("apply cancelled; nothing was written")
