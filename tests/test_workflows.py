"""The GitHub workflows: every `flags` command and option they run exists; they keep the security rules."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from flagops.cli import cli

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
SEPARATORS = {";", "&&", "||", "|", "(", ")", "{", "}", "&", "then", "do", "else", "elif", "if", "while", "!"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Invocation:
    """One `flags ...` command line found in a workflow's `run:` script."""

    where: str
    args: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: flags {' '.join(self.args)}"


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def run_steps(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(job id, step) of every step of every job."""
    for job_id, job in load(path)["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def invocations(script: str, where: str) -> list[Invocation]:
    """Every `flags` command in a shell script, including those inside `$( ... )`."""
    found: list[Invocation] = []
    arrays: dict[str, list[str]] = {}
    joined = re.sub(r"\\\n", " ", script)
    for number, line in enumerate(joined.splitlines(), 1):
        if not line.strip():
            continue
        try:
            tokens = _tokens(line)
        except ValueError as exc:
            raise AssertionError(f"{where} line {number}: cannot split {line!r}: {exc}") from None
        # `name+=(a b)` builds an array that a later `"${name[@]}"` expands into arguments
        if len(tokens) >= 3 and tokens[0].endswith("+=") and tokens[1] == "(":
            arrays.setdefault(tokens[0][:-2], []).extend(tokens[2 : tokens.index(")")])
        expanded: list[str] = []
        for token in tokens:
            array = re.fullmatch(r"\$\{(\w+)\[@\]\}", token)
            expanded += arrays.get(array.group(1), []) if array else [token]
        found += _commands(expanded, f"{where} line {number}")
    return found


def _commands(tokens: list[str], where: str) -> list[Invocation]:
    found: list[Invocation] = []
    command_position = True
    for i, token in enumerate(tokens):
        if "$(" in token and token != "$(":
            inner = token.split("$(", 1)[1].rstrip(")")
            found += _commands(_tokens(inner), where)
        if token in SEPARATORS or token.endswith("$"):
            command_position = True
            continue
        if command_position and ASSIGNMENT.match(token):
            continue
        if command_position and token == "flags":
            found.append(Invocation(where, tuple(_arguments(tokens[i + 1 :]))))
        command_position = False
    return found


def _arguments(tokens: list[str]) -> Iterator[str]:
    """The arguments of one command, up to a shell operator or redirection."""
    for i, token in enumerate(tokens):
        if token in SEPARATORS or token[0] in "<>":
            return
        if token.isdigit() and i + 1 < len(tokens) and tokens[i + 1][0] in "<>":
            return
        yield token


def workflow_invocations() -> list[Invocation]:
    found: list[Invocation] = []
    for path in WORKFLOWS:
        for job_id, step in run_steps(path):
            if "run" in step:
                where = f"{path.name} job {job_id} step {step.get('name', step['run'].splitlines()[0])!r}"
                found += invocations(step["run"], where)
    return found


def problems(invocation: Invocation) -> list[str]:
    """What is wrong with a `flags` command line, judged by the click command group itself."""
    args = list(invocation.args)
    ctx = click.Context(cli)
    out: list[str] = []
    while args and args[0].startswith("-"):
        if not _take_option(cli, args, out, "flags"):
            return [f"{invocation}: {p}" for p in out]
    if not args:
        return [f"{invocation}: no command"]
    name = args.pop(0)
    command = cli.get_command(ctx, name)
    if command is None:
        return [f"{invocation}: there is no command `flags {name}`"]
    seen: set[str] = set()
    positional = 0
    while args:
        if args[0].startswith("-") and args[0] != "-":
            option = _take_option(command, args, out, f"flags {name}")
            if option is not None:
                seen.add(option)
        else:
            args.pop(0)
            positional += 1
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if not any(a.nargs == -1 for a in arguments) and positional > len(arguments):
        out.append(f"`flags {name}` takes {len(arguments)} argument(s), got {positional}")
    for param in command.params:
        if isinstance(param, click.Option) and param.required and param.name not in seen:
            out.append(f"`flags {name}` needs {param.opts[0]}")
    return [f"{invocation}: {p}" for p in out]


def _take_option(command: click.Command, args: list[str], out: list[str], label: str) -> str | None:
    """Consume one option (and its value) from args; record a problem when it does not exist."""
    token = args.pop(0)
    flag, has_value, value = token.partition("=")
    for param in command.params:
        if isinstance(param, click.Option) and flag in (*param.opts, *param.secondary_opts):
            break
    else:
        if flag in ("-h", "--help") or (flag == "--version" and command is cli):
            return flag
        out.append(f"`{label}` has no option {flag}")
        return None
    takes_value = not (param.is_flag or param.count)
    if takes_value and not has_value:
        if not args:
            out.append(f"`{label}` option {flag} needs a value")
            return param.name
        value = args.pop(0)
    choices = param.type.choices if isinstance(param.type, click.Choice) else None
    if takes_value and choices is not None and "$" not in value and value not in choices:
        out.append(f"`{label}` option {flag} does not accept {value!r}")
    return param.name


# -- the parser and the checker themselves -------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("flags validate", [("validate",)]),
        ('FOO=1 flags plan --env "$E" > plan.md 2> err.txt || status=$?', [("plan", "--env", "$E")]),
        (
            "x=$(flags plan --env a --format json | jq -r .config_hash)",
            [("plan", "--env", "a", "--format", "json")],
        ),
        (
            'if [ "$(flags plan --env b)" = x ]; then flags apply --env b; fi',
            [("plan", "--env", "b"), ("apply", "--env", "b")],
        ),
        ("flags promote --from a \\\n  --to b", [("promote", "--from", "a", "--to", "b")]),
        ('echo "flags plan --bogus"; grep flags file  # flags apply', []),
        (
            'args=()\nargs+=(--flag "$g")\nflags promote --from a "${args[@]}"',
            [("promote", "--from", "a", "--flag", "$g")],
        ),
        ("python -m pip install .\nflags --no-color validate", [("--no-color", "validate")]),
    ],
)
def test_invocations_are_found_where_the_shell_runs_them(
    script: str, expected: list[tuple[str, ...]]
) -> None:
    assert [i.args for i in invocations(script, "t")] == expected


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("nosuch", "--env", "x"), "there is no command `flags nosuch`"),
        (("plan", "--env", "x", "--bogus"), "`flags plan` has no option --bogus"),
        (("plan", "--env", "x", "--format", "yaml"), "`flags plan` option --format does not accept 'yaml'"),
        (("plan", "--format=json"), "`flags plan` needs --env"),
        (("--colour", "validate"), "`flags` has no option --colour"),
        (("validate", "extra"), "`flags validate` takes 0 argument(s), got 1"),
    ],
)
def test_checker_reports_what_does_not_exist(args: tuple[str, ...], problem: str) -> None:
    assert problems(Invocation("t", args)) == [f"t: flags {' '.join(args)}: {problem}"]


def test_checker_accepts_real_command_lines() -> None:
    for args in [
        ("validate",),
        ("--config-dir", ".", "plan", "--env", "$E", "--format=markdown", "--out", "p.json", "--target", "k"),
        ("apply", "--env", "production", "plan.json", "--lock-timeout", "300", "--auto-approve"),
    ]:
        assert problems(Invocation("t", args)) == []


# -- the workflows -------------------------------------------------------------------------------


def test_the_four_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "flags-apply.yml", "flags-plan.yml", "flags-promote.yml"]


def test_workflows_call_the_commands_they_are_for() -> None:
    used = {(i.where.split(" ")[0], i.args[0]) for i in workflow_invocations()}
    assert {
        ("flags-plan.yml", "validate"),
        ("flags-plan.yml", "plan"),
        ("flags-apply.yml", "apply"),
        ("flags-apply.yml", "plan"),
        ("flags-promote.yml", "promote"),
        ("flags-promote.yml", "validate"),
    } <= used


@pytest.mark.parametrize("invocation", workflow_invocations(), ids=str)
def test_every_flags_command_and_option_in_the_workflows_exists(invocation: Invocation) -> None:
    assert problems(invocation) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_least_privilege(path: Path) -> None:
    workflow = load(path)
    top = workflow.get("permissions")
    assert top is not None, f"{path.name}: no top-level permissions"
    assert top == {} or all(v in ("read", "none") for v in top.values()), f"{path.name}: writes at the top"
    for job_id, job in workflow["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {job_id} states no permissions"
        assert job["permissions"] != "write-all"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_is_expanded_inside_a_script(path: Path) -> None:
    for job_id, step in run_steps(path):
        assert "${{" not in step.get("run", ""), f"{path.name} job {job_id}: pass values to run: via env"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_keep_no_credentials(path: Path) -> None:
    for job_id, step in run_steps(path):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{path.name} job {job_id}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_database_urls_come_only_from_secrets(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for name, value in re.findall(r"\b(FLAGS_DATABASE_URL_[A-Z0-9_]+):\s*(.+)", text):
        assert f"secrets.{name} " in value or f"secrets.{name}}}" in value, f"{path.name}: {name}: {value}"
    assert "postgresql://" not in text.replace("postgresql://postgres@127.0.0.1:5432/postgres", "")


def test_plan_comments_are_found_again_by_a_marker_per_environment() -> None:
    plan = load(ROOT / ".github" / "workflows" / "flags-plan.yml")
    environments = plan["jobs"]["plan"]["strategy"]["matrix"]["environment"]
    assert environments == ["staging", "production"]
    script = next(
        s["with"]["script"]
        for _, s in run_steps(ROOT / ".github/workflows/flags-plan.yml")
        if "with" in s and "script" in s["with"]
    )
    assert "const marker = `<!-- flags-plan:${environment} -->`;" in script
    assert "updateComment" in script and "createComment" in script


def test_production_applies_behind_the_environment_and_reports_a_stale_plan() -> None:
    apply = load(ROOT / ".github" / "workflows" / "flags-apply.yml")
    production = apply["jobs"]["production"]
    assert production["environment"] == "production"
    assert apply[True]["workflow_dispatch"]["inputs"]["plan_run_id"]["type"] == "string"
    script = production["steps"][-1]["run"]
    assert "exit 3" in script and 'exit "$status"' in script
    assert "Re-run the flags plan workflow" in script


def test_pre_commit_hook_runs_validate_on_the_flag_files() -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert (hook["id"], hook["language"], hook["pass_filenames"]) == ("flags-validate", "python", False)
    program, *args = shlex.split(hook["entry"])
    assert program == "flags"
    assert problems(Invocation(".pre-commit-hooks.yaml", tuple(args))) == []
    files = re.compile(hook["files"])
    for path in ["flags/growth.yaml", "environments/production.yaml", "flags/x.yml"]:
        assert files.search(path), path
    for path in ["README.md", "schema/flags.schema.json", "flags/sub/x.yaml", "src/flags/x.yaml"]:
        assert not files.search(path), path
