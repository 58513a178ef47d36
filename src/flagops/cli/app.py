"""The `flags` command group, its shared context and error handling: the only place that exits."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click

from flagops.errors import FlagopsError, UsageError

if TYPE_CHECKING:
    from flagops.config.load import Config, Environment
    from flagops.reconcile import Database


@dataclass
class Context:
    """Global options shared by every command (given before or after its name: see global_options)."""

    config_dir: Path = Path(".")
    no_color: bool = False
    actor_option: str | None = None
    sources: Mapping[str, bytes] = field(default_factory=dict)
    """The files `load` (or `load_environment`) read: commands that edit them edit these bytes, not a
    later read."""

    @property
    def color(self) -> bool:
        """Colored output on stdout: only on a terminal, without --no-color and NO_COLOR."""
        return self.color_on(sys.stdout)

    def color_on(self, stream: TextIO) -> bool:
        """Colored output on `stream`: only on a terminal, without --no-color and NO_COLOR."""
        return not self.no_color and "NO_COLOR" not in os.environ and stream.isatty()

    def load(self) -> Config:
        from flagops.config.load import load_config
        from flagops.config.sources import read_sources

        self.sources = read_sources(self.config_dir)
        return load_config(self.sources)

    def load_environment(self, name: str) -> Config:
        """flags/ and environment `name`'s file only, for the commands an emergency needs (kill,
        unkill, history, eval --live): another environment's file is not read, so a broken one never
        stops them. A problem in flags/ or in this environment's file still does (docs/configuration.md)."""
        from flagops.config.load import load_environment
        from flagops.config.sources import read_sources

        self.sources = read_sources(self.config_dir, environment=name)
        return load_environment(self.sources, name)

    @property
    def actor(self) -> str:
        from flagops.cli.provenance import actor

        return actor(self.actor_option, os.environ)

    def git_commit(self) -> str | None:
        from flagops.cli.provenance import git_commit

        return git_commit(self.config_dir, os.environ)

    def connect(
        self,
        config: Config | Environment,
        environment: str,
        command: str,
        *,
        write: bool = False,
        lock_timeout: float = 0.0,
    ) -> Database:
        """The database of `environment`, named in `config`, or given as an Environment itself."""
        from flagops.config.load import Environment
        from flagops.reconcile import open_database

        env = config if isinstance(config, Environment) else config.environment(environment)
        return open_database(
            env,
            config_dir=self.config_dir,
            environ=os.environ,
            application_name=f"flags {command} ({self.actor})",
            write=write,
            lock_timeout=lock_timeout,
        )


def context() -> Context:
    """The global options of the running command."""
    return click.get_current_context().find_object(Context)  # type: ignore[return-value]


def out(text: str) -> None:
    """Print to stdout without adding a newline to text that has one."""
    click.echo(text, nl=not text.endswith("\n"))


def err(text: str) -> None:
    """Print one line to stderr."""
    click.echo(text, err=True)


class FlagsGroup(click.Group):
    """The command group, running each command so that every failure is one clean message.

    Exit codes follow the table of docs/commands.md: usage errors and FlagopsErrors exit 1 (or the
    error's own code), never with a traceback; FLAGS_DEBUG=1 lets unexpected errors through for
    debugging. Every command added to the group takes the global options too, so that
    `flags plan --no-color ...` works like `flags --no-color plan ...`.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(global_options())
        super().add_command(cmd, name)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        try:
            code = super().main(
                args=args,
                prog_name=prog_name or "flags",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
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
            err(f"flags: internal error: {type(exc).__name__}: {exc} (set FLAGS_DEBUG=1 for details)")
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


def _store(attribute: str) -> Any:
    """An option callback keeping a given value in the shared Context (an absent one changes nothing,
    so that a value given before the command name stays when it is not repeated after it)."""

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:
            setattr(ctx.ensure_object(Context), attribute, value)

    return store


def global_options() -> list[click.Option]:
    """The options of the group, accepted before the command name and after it (the last one wins)."""
    return [
        click.Option(
            ["--config-dir"],
            type=click.Path(file_okay=False, path_type=Path),
            expose_value=False,
            callback=_store("config_dir"),
            help="Repository holding flags/ and environments/.  [default: .]",
        ),
        click.Option(
            ["--no-color"],
            is_flag=True,
            expose_value=False,
            callback=_store("no_color"),
            help="Plain output (also when NO_COLOR is set).",
        ),
        click.Option(
            ["--actor"],
            expose_value=False,
            callback=_store("actor_option"),
            help="Who is acting, for audit rows (default: FLAGS_ACTOR, GITHUB_ACTOR, user@host).",
        ),
    ]


@click.group(
    cls=FlagsGroup,
    params=global_options(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="flagops", prog_name="flags")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Feature flags as code: validate, plan and apply flags/ and environments/ to databases."""
    ctx.ensure_object(Context)


EXAMPLE_ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"


def parse_org_id(value: str) -> str:
    """An --org value as a lowercase hyphenated UUID (any spelling Postgres accepts), else UsageError."""
    from flagops.runtime.rollout import normalise_org_id

    try:
        return normalise_org_id(value.strip())
    except ValueError:
        raise UsageError(f"--org: {value!r} is not an org id (a UUID such as {EXAMPLE_ORG})") from None


env_option = click.option("--env", "environment", required=True, help="Environment name.")
target_option = click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="KEY",
    help="Limit to these flags and their overrides (repeatable).",
)


def main() -> NoReturn:
    """Entry point of the `flags` console command."""
    # A run builds hundreds of thousands of long-lived, acyclic containers (configuration, states,
    # plans) and little cyclic garbage: collect rarely instead of re-scanning them all the time.
    gc.set_threshold(100_000, 50, 100)
    try:
        cli.main(prog_name="flags")
    finally:
        # The process is about to end: spare the interpreter's last collection, which would scan every
        # object it still holds (about 0.07 s with the database stack loaded) to free nothing.
        gc.freeze()
    raise SystemExit(0)  # pragma: no cover - cli.main always exits
