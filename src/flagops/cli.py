"""The `flags` command line: the only module that prints or exits."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from flagops.errors import FlagopsError, UsageError

if TYPE_CHECKING:
    from flagops.load import Config
    from flagops.plan import Plan
    from flagops.reconcile import Database

EXIT_CHANGES = 2
EXIT_BLOCKED = 5


@dataclass
class Context:
    """Global options shared by every command."""

    config_dir: Path
    color: bool
    actor_option: str | None

    def load(self) -> Config:
        from flagops.load import load_config
        from flagops.sources import read_sources

        return load_config(read_sources(self.config_dir))

    @property
    def actor(self) -> str:
        from flagops.provenance import actor

        return actor(self.actor_option, os.environ)

    def git_commit(self) -> str | None:
        from flagops.provenance import git_commit

        return git_commit(self.config_dir, os.environ)

    def connect(
        self, config: Config, environment: str, command: str, *, write: bool = False,
        lock_timeout: float = 0.0,
    ) -> Database:
        from flagops.reconcile import connect

        return connect(
            config, environment, config_dir=self.config_dir, environ=os.environ,
            application_name=f"flags {command} ({self.actor})", write=write,
            lock_timeout=lock_timeout,
        )


def _context() -> Context:
    return click.get_current_context().find_object(Context)  # type: ignore[return-value]


def out(text: str) -> None:
    """Print to stdout without adding a newline to text that has one."""
    click.echo(text, nl=not text.endswith("\n"))


def err(text: str) -> None:
    click.echo(text, err=True)


class FlagsGroup(click.Group):
    """The command group, running each command so that every failure is one clean message.

    Exit codes follow DESIGN.md: usage errors and FlagopsErrors exit 1 (or the error's own code),
    never with a traceback; FLAGS_DEBUG=1 lets unexpected errors through for debugging.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> NoReturn:
        try:
            code = super().main(args=args, prog_name=prog_name or "flags",
                                complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.exceptions.Abort:
            err("Aborted; nothing was written.")
            code = 1
        except click.ClickException as exc:
            exc.show()
            code = 1
        except FlagopsError as exc:
            for line in exc.lines():
                err(line)
            code = exc.exit_code
        except KeyboardInterrupt:
            err("Interrupted; an apply in progress was rolled back.")
            code = 130
        except Exception as exc:  # the last line of defence: one line, never a traceback
            if os.environ.get("FLAGS_DEBUG"):
                raise
            err(f"flags: internal error: {type(exc).__name__}: {exc}"
                " (set FLAGS_DEBUG=1 for details)")
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=FlagsGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
    show_default=True, help="Repository holding flags/ and environments/.",
)
@click.option("--no-color", is_flag=True, help="Plain output (also when NO_COLOR is set).")
@click.option("--actor", help="Who is acting, for audit rows (default: FLAGS_ACTOR, GITHUB_ACTOR, user@host).")
@click.version_option(package_name="flagops", prog_name="flags")
@click.pass_context
def cli(ctx: click.Context, config_dir: Path, no_color: bool, actor: str | None) -> None:
    """Feature flags as code: validate, plan and apply flags/ and environments/ to databases."""
    color = not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    ctx.obj = Context(config_dir, color, actor)


env_option = click.option("--env", "environment", required=True, help="Environment name.")
target_option = click.option(
    "--target", "targets", multiple=True, metavar="KEY",
    help="Limit to these flags and their overrides (repeatable).",
)


@cli.command()
def validate() -> None:
    """Check every file (no database needed); print each problem as path:line:column."""
    _context().load()


@cli.command()
@env_option
def init(environment: str) -> None:
    """Create or upgrade the schema of an environment's database (idempotent)."""
    from flagops.reconcile import init_schema

    ctx = _context()
    config = ctx.load()
    database = ctx.connect(config, environment, "init", write=True, lock_timeout=30)
    before, after = init_schema(database)
    if before == after:
        out(f"Schema of environment {environment} is up to date (version {after}).")
    elif before is None:
        out(f"Created the flagops schema (version {after}) for environment {environment}.")
    else:
        out(f"Upgraded the schema of environment {environment} from {before} to {after}.")


def _render(plan: Plan, fmt: str, color: bool) -> str:
    if fmt == "json":
        from flagops.planfile import dumps

        return dumps(plan)
    if fmt == "markdown":
        from flagops.render.markdown import render_markdown

        return render_markdown(plan)
    from flagops.render.text import render_text

    return render_text(plan, color=color)


@cli.command()
@env_option
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the plan (JSON) for `flags apply`.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when none.")
@target_option
def plan(environment: str, out_file: Path | None, fmt: str, detailed_exitcode: bool,
         targets: Sequence[str]) -> int:
    """Show what apply would change in an environment (exit 5 when a guard blocks it)."""
    from flagops.planfile import dumps
    from flagops.reconcile import make_plan

    ctx = _context()
    config = ctx.load()
    database = ctx.connect(config, environment, "plan")
    result = make_plan(config, database, targets=list(targets) or None,
                       git_commit=ctx.git_commit())
    out(_render(result, fmt, ctx.color))
    if out_file is not None:
        try:
            out_file.write_text(dumps(result), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{out_file}: cannot write the plan: {exc.strerror}") from None
        err(f"Saved the plan to {out_file}; apply it with: flags apply --env {environment} {out_file}")
    if result.blocked:
        return EXIT_BLOCKED
    return EXIT_CHANGES if detailed_exitcode and result.has_changes else 0


@cli.command()
@env_option
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--allow-delete", is_flag=True, help="Allow deleting flags and org overrides.")
@click.option("--overwrite-drift", is_flag=True, help="Replace values changed outside flags.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0.0, show_default=True,
              metavar="SECONDS", help="How long to wait for another apply to finish.")
@target_option
def apply(environment: str, plan_file: Path | None, auto_approve: bool, allow_delete: bool,
          overwrite_drift: bool, lock_timeout: float, targets: Sequence[str]) -> int:
    """Apply a saved plan, or plan and apply after confirmation, in one transaction."""
    from flagops.planfile import loads
    from flagops.reconcile import apply_plan, make_plan
    from flagops.render.text import render_text

    ctx = _context()
    config = ctx.load()
    database = ctx.connect(config, environment, "apply", write=True, lock_timeout=lock_timeout)
    if plan_file is not None:
        if targets:
            raise UsageError("--target cannot be combined with a saved plan (plan with --target)")
        try:
            text = plan_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{plan_file}: cannot read the plan: {exc}") from None
        reviewed = loads(text, str(plan_file))
    else:
        reviewed = make_plan(config, database, targets=list(targets) or None,
                             git_commit=ctx.git_commit())
        out(render_text(reviewed, color=ctx.color))
        if reviewed.has_changes and not auto_approve:
            _confirm(environment)
    result = apply_plan(
        database, reviewed, actor=ctx.actor, allow_delete=allow_delete,
        overwrite_drift=overwrite_drift, lock_timeout=lock_timeout,
    )
    if result.apply_id is None:
        out(f"No changes. Environment {environment} matches the configuration.")
        return 0
    s = result.summary
    out(
        f"Apply complete! {s['add']} added, {s['change']} changed, {s['destroy']} destroyed"
        f" in environment {environment} (apply {result.apply_id})."
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
        default="", show_default=False,
    )
    if answer.strip() != "yes":
        raise UsageError("apply cancelled; nothing was written")


def main() -> NoReturn:
    """Entry point of the `flags` console command."""
    cli.main(prog_name="flags")
    raise SystemExit(0)  # pragma: no cover - cli.main always exits
