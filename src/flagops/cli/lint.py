"""The `flags lint` command: findings about flags to clean up, as text, JSON or GitHub annotations."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flagops.cli.app import Context, cli, context, out
from flagops.errors import UsageError

if TYPE_CHECKING:
    from flagops.config.load import Config
    from flagops.lint import CodeSearch, LintSettings, RolloutHistory

EXIT_FINDINGS = 1


def _settings(config_dir: Path) -> LintSettings:
    from flagops.lint import CONFIG_FILE, LintSettings, parse_settings

    path = config_dir / CONFIG_FILE
    if not path.is_file():
        return LintSettings()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{CONFIG_FILE}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{CONFIG_FILE}: cannot read: {exc.strerror}") from None
    return parse_settings(text, CONFIG_FILE)


def _search_code(config: Config, config_dir: Path, roots: Sequence[Path]) -> CodeSearch:
    from flagops.config.load import ENVIRONMENTS_DIR, FLAGS_DIR
    from flagops.lint import CodeSearch
    from flagops.lint.codesearch import search, walk

    # The configuration names every flag: searching it would find them all.
    exclude = [config_dir / FLAGS_DIR, config_dir / ENVIRONMENTS_DIR]
    result = search(config.flags, walk(roots, exclude))
    return CodeSearch(tuple(str(root) for root in roots), result.found)


def _history(ctx: Context, config: Config, environment: str) -> RolloutHistory:
    from flagops.db import staleness
    from flagops.lint import RolloutHistory
    from flagops.reconcile import reading

    database = ctx.connect(config, environment, "lint")
    with reading(database, f"reading the audit log of environment {environment}") as connection:
        rollouts = staleness.read_rollouts(connection)
    return RolloutHistory(environment, rollouts)


def _texts(sources: Mapping[str, bytes], config: Config) -> dict[str, str]:
    return {path: sources[path].decode("utf-8-sig") for path in set(config.flag_paths.values())}


def _path_prefix(config_dir: Path) -> str:
    """Where the configuration directory is relative to the working directory (the checkout root in
    a GitHub workflow), as a prefix for annotation paths: "" when it is the working directory."""
    relative = os.path.relpath(config_dir.resolve(), Path.cwd().resolve())
    if relative == "." or relative.startswith(".."):
        return ""
    return relative.replace(os.sep, "/") + "/"


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="github: workflow commands that annotate the pull request.",
)
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@click.option(
    "--code",
    "code_paths",
    multiple=True,
    metavar="PATH",
    type=click.Path(exists=True, path_type=Path),
    help="Report flags no file under PATH mentions (FL005; repeatable).",
)
@click.option(
    "--env",
    "environment",
    metavar="ENV",
    help="Report flags whose rollout in this environment is stale (FL006).",
)
@click.option(
    "--stale-days",
    type=click.IntRange(min=1),
    metavar="DAYS",
    help="With --env: days without a rollout change before FL006 [default: 90, or lint.stale_days].",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="Check expiry and staleness as of this date (default: today).",
)
def lint(
    fmt: str,
    strict: bool,
    code_paths: Sequence[Path],
    environment: str | None,
    stale_days: int | None,
    today: dt.datetime | None,
) -> int:
    """Find flags to clean up: no owner, expired, fully rolled out, unused in code, stale rollout.

    Exits 1 when a finding is an error (with --strict, any finding), 0 otherwise. Settings come
    from the [lint] table of flags.toml in the config dir; a flag's `lint_ignore` maps a check code
    to the reason it does not apply.
    """
    from flagops.lint import lint as run_lint
    from flagops.render.lint import render_github, render_json, render_text

    if stale_days is not None and environment is None:
        raise UsageError("--stale-days needs --env (the environment whose audit log to read)")
    ctx = context()
    config = ctx.load()
    settings = _settings(ctx.config_dir)
    if stale_days is not None:
        settings = replace(settings, stale_days=stale_days)
    code = _search_code(config, ctx.config_dir, code_paths) if code_paths else None
    history = _history(ctx, config, environment) if environment is not None else None
    report = run_lint(
        config,
        _texts(ctx.sources, config),
        today=today.date() if today is not None else dt.date.today(),
        settings=settings,
        code=code,
        history=history,
    )
    if fmt == "json":
        out(render_json(report))
    elif fmt == "github":
        out(render_github(report, path_prefix=_path_prefix(ctx.config_dir)))
    else:
        out(render_text(report, color=ctx.color))
    return EXIT_FINDINGS if report.failed(strict=strict) else 0
