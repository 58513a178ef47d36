"""The GitHub workflows: every `flags` command and option they run exists; they keep the security rules."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from flagops.cli import cli
from support import COMMIT, FLAGS, Repo, everything, execute, init_and_apply

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


# -- who holds which secret (docs/ci.md) ---------------------------------------------------------

ENVIRONMENTS = ("staging", "production")
WRITE_SECRETS = {
    "FLAGS_DATABASE_URL_STAGING": "staging",
    "FLAGS_DATABASE_URL_PRODUCTION": "production",
    "FLAGS_PROMOTE_TOKEN": "promote",
}
"""Each secret that can change something, and the one environment that holds it."""
PLAN_SECRETS = {
    "FLAGS_PLAN_DATABASE_URL_STAGING": "staging-plan",
    "FLAGS_PLAN_DATABASE_URL_PRODUCTION": "production-plan",
}
"""The read-only plan role's URLs, and the environment that holds each."""
HOME = {**WRITE_SECRETS, **PLAN_SECRETS}
UNTRUSTED_TRIGGERS = {"pull_request", "pull_request_target", "workflow_run", "issue_comment"}
"""Events whose runs execute, or act on, code that nobody has merged."""
SECRET = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)")
GUARDED_SECRET = re.compile(r"matrix\.environment == '([a-z-]+)' && secrets\.([A-Za-z_][A-Za-z0-9_]*)")
ZIZMOR_IGNORE = re.compile(r"#\s*zizmor:\s*ignore\[([a-z0-9-]+(?:,\s*[a-z0-9-]+)*)\](.*)$")


def jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(workflow file name, job id, job) of every job of every workflow."""
    for path in WORKFLOWS:
        for job_id, job in load(path)["jobs"].items():
            yield path.name, job_id, job


JOB_IDS = [f"{workflow}:{job_id}" for workflow, job_id, _ in jobs()]


def triggers(name: str) -> set[str]:
    on = load(ROOT / ".github" / "workflows" / name)[True]  # YAML 1.1 reads the key `on` as true
    return {on} if isinstance(on, str) else set(on)


def environments_of(job: dict[str, Any]) -> set[str]:
    """The environment names a job runs under, one per matrix value when it names the matrix."""
    environment = job.get("environment")
    if environment is None:
        return set()
    name = environment["name"] if isinstance(environment, dict) else environment
    if "${{ matrix.environment }}" not in name:
        assert "${{" not in name, name
        return {name}
    values = job["strategy"]["matrix"]["environment"]
    return {name.replace("${{ matrix.environment }}", value) for value in values}


def secrets_of(job: dict[str, Any]) -> set[str]:
    return set(SECRET.findall(yaml.safe_dump(job, width=10_000))) - {"GITHUB_TOKEN"}


def test_the_secret_tables_name_every_secret_the_workflows_use() -> None:
    used = set().union(*(secrets_of(job) for _, _, job in jobs()))
    assert used == set(HOME)


@pytest.mark.parametrize(("workflow", "job_id", "job"), list(jobs()), ids=JOB_IDS)
def test_no_job_outside_an_environment_holds_a_secret(
    workflow: str, job_id: str, job: dict[str, Any]
) -> None:
    if "environment" not in job:
        assert secrets_of(job) == set(), f"{workflow} job {job_id}"


@pytest.mark.parametrize(("workflow", "job_id", "job"), list(jobs()), ids=JOB_IDS)
def test_each_secret_is_read_only_under_the_environment_that_holds_it(
    workflow: str, job_id: str, job: dict[str, Any]
) -> None:
    """A job names only the secrets of its own environment; in a matrix, each leg only its own."""
    environments = environments_of(job)
    for secret in secrets_of(job):
        assert HOME[secret] in environments, f"{workflow} job {job_id}: {secret} under {environments}"
    if "strategy" in job:
        text = yaml.safe_dump(job, width=10_000)
        guarded = GUARDED_SECRET.findall(text)
        assert len(guarded) == len(SECRET.findall(text)), f"{workflow} job {job_id}: unguarded secret"
        for leg, secret in guarded:
            assert environments_of({**job, "strategy": {"matrix": {"environment": [leg]}}}) == {HOME[secret]}


@pytest.mark.parametrize(("workflow", "job_id", "job"), list(jobs()), ids=JOB_IDS)
def test_pull_requests_never_reach_a_write_credential(
    workflow: str, job_id: str, job: dict[str, Any]
) -> None:
    if triggers(workflow) & UNTRUSTED_TRIGGERS:
        assert not environments_of(job) & set(WRITE_SECRETS.values()), f"{workflow} job {job_id}"
        assert not secrets_of(job) & set(WRITE_SECRETS), f"{workflow} job {job_id}"


def test_write_environments_are_reached_only_from_main() -> None:
    """Jobs under a write environment run on pushes to main or on dispatches (the environments'
    deployment branch rule, main only, is what refuses a dispatch on another branch: docs/ci.md)."""
    for workflow, _, job in jobs():
        if not environments_of(job) & set(WRITE_SECRETS.values()):
            continue
        assert triggers(workflow) <= {"push", "workflow_dispatch"}, workflow
        if "push" in triggers(workflow):
            on = load(ROOT / ".github" / "workflows" / workflow)[True]
            assert on["push"]["branches"] == ["main"], workflow


# -- the merge and dispatch flow: plan, show, approve, apply exactly that -------------------------

APPLY = ROOT / ".github" / "workflows" / "flags-apply.yml"


def _step(job: dict[str, Any], uses: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(uses + "@")]


def _script(job: dict[str, Any]) -> str:
    return "\n".join(s["run"] for s in job["steps"] if "run" in s)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_apply_needs_the_plan_job_of_this_run_and_waits_behind_the_environment(environment: str) -> None:
    workflow = load(APPLY)["jobs"]
    plan, apply = workflow[f"plan-{environment}"], workflow[f"apply-{environment}"]
    assert apply["needs"] == f"plan-{environment}"
    assert apply["environment"] == environment
    assert plan["environment"] == f"{environment}-plan"
    assert secrets_of(plan) == {f"FLAGS_PLAN_DATABASE_URL_{environment.upper()}"}
    assert secrets_of(apply) == {f"FLAGS_DATABASE_URL_{environment.upper()}"}
    assert apply["if"] == f"needs.plan-{environment}.outputs.changes == 'true'"
    # Nothing else in the run can write: only the apply jobs hold a write credential.
    writers = {job_id for job_id, job in workflow.items() if secrets_of(job) & set(WRITE_SECRETS)}
    assert writers == {f"apply-{e}" for e in ENVIRONMENTS}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_plan_and_apply_check_out_the_same_commit(environment: str) -> None:
    workflow = load(APPLY)["jobs"]
    for job_id in (f"plan-{environment}", f"apply-{environment}"):
        (checkout,) = _step(workflow[job_id], "actions/checkout")
        assert checkout["with"]["ref"] == "${{ github.sha }}", job_id
        assert "path" not in checkout["with"], job_id


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_plan_is_shown_in_the_summary_and_saved_in_this_run(environment: str) -> None:
    plan = load(APPLY)["jobs"][f"plan-{environment}"]
    assert plan["env"] == {"ENVIRONMENT": environment}
    script = _script(plan)
    assert '--out "plan-$ENVIRONMENT.json" > "plan-$ENVIRONMENT.md"' in script
    assert 'cat "plan-$ENVIRONMENT.md"' in script and '>> "$GITHUB_STEP_SUMMARY"' in script
    assert plan["outputs"] == {
        "changes": "${{ steps.plan.outputs.changes }}",
        "sha256": "${{ steps.plan.outputs.sha256 }}",
    }
    (upload,) = _step(plan, "actions/upload-artifact")
    assert upload["with"]["name"] == f"plan-{environment}"
    assert f"plan-{environment}.json" in upload["with"]["path"].split()


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_apply_downloads_the_plan_of_this_run_and_applies_exactly_it(environment: str) -> None:
    apply = load(APPLY)["jobs"][f"apply-{environment}"]
    assert apply["env"] == {"ENVIRONMENT": environment}
    (download,) = _step(apply, "actions/download-artifact")
    # No run-id, repository or token: the artifact of this very run, uploaded by its plan job.
    assert download["with"] == {"name": f"plan-{environment}", "path": "planned"}
    applies = [i.args for i in invocations(_script(apply), "apply") if i.args[0] == "apply"]
    planned = "planned/plan-$ENVIRONMENT.json"
    assert applies == [("apply", "--env", "$ENVIRONMENT", planned, "--lock-timeout", "300")]
    step = next(s for s in apply["steps"] if "flags apply" in s.get("run", ""))
    assert step["env"]["PLAN_SHA256"] == f"${{{{ needs.plan-{environment}.outputs.sha256 }}}}"
    assert "sha256sum --check --strict" in step["run"]
    assert step["run"].index("sha256sum") < step["run"].index("flags apply")


def test_plan_and_apply_of_an_environment_take_turns() -> None:
    """A run's plan waits while another run's apply of that environment waits or runs, so that
    it plans against what that apply leaves."""
    workflow = load(APPLY)["jobs"]
    for environment in ENVIRONMENTS:
        for kind in ("plan", "apply"):
            assert workflow[f"{kind}-{environment}"]["concurrency"] == {
                "group": f"flags-{environment}",
                "cancel-in-progress": False,
            }


def test_the_two_environments_run_the_same_steps() -> None:
    """staging and production jobs differ only in their names, so a fix to one reaches the other."""
    workflow = load(APPLY)["jobs"]
    for kind in ("plan", "apply"):
        staging = yaml.safe_dump(workflow[f"{kind}-staging"], width=10_000)
        production = yaml.safe_dump(workflow[f"{kind}-production"], width=10_000)
        assert staging.replace("staging", "production").replace("STAGING", "PRODUCTION") == production, kind


def test_no_dispatch_applies_a_plan_from_another_run() -> None:
    on = load(APPLY)[True]
    assert on["workflow_dispatch"]["inputs"] == {
        "environment": {
            "description": on["workflow_dispatch"]["inputs"]["environment"]["description"],
            "required": True,
            "type": "choice",
            "options": list(ENVIRONMENTS),
        }
    }
    for path in WORKFLOWS:
        for job_id, step in run_steps(path):
            keys = set(step.get("with", {}))
            assert not keys & {"run-id", "repository", "github-token"}, f"{path.name} job {job_id}"


# -- the linters' exceptions ---------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_a_version_tag(path: Path) -> None:
    """zizmor's unpinned-uses is accepted for version tags only (scripts/lint-workflows.sh)."""
    for job_id, step in run_steps(path):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+(\.\d+){0,2}", step["uses"]), f"{path.name} {job_id}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_zizmor_ignore_says_why(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if "zizmor:" in line:
            match = ZIZMOR_IGNORE.search(line)
            assert match is not None, f"{path.name}:{number}: not an ignore comment zizmor reads"
            assert match.group(1) != "secrets-outside-env", f"{path.name}:{number}"
            assert len(match.group(2).split()) >= 4, f"{path.name}:{number}: give the reason"


def test_the_ci_page_names_every_environment_and_secret() -> None:
    page = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    names = set(HOME) | set(HOME.values()) | {p.name for p in WORKFLOWS}
    assert {name for name in names if f"`{name}`" not in page} == set()


# -- the plan and apply scripts themselves, run as the runner runs them ---------------------------

CHANGED_FLAGS = """
flags:
  lead_scoring: {name: Lead Scoring, owner: growth, rollout_percentage: 60}
  sms_campaigns: {name: SMS Campaigns, owner: growth}
"""


@dataclass
class Runner:
    """A job's `run:` steps executed the way a GitHub runner does, in a repository directory."""

    repo: Repo
    tmp: Path

    def run(self, job_id: str, needle: str, **env: str) -> tuple[int, str, dict[str, str], str]:
        """(exit status, stdout and stderr, GITHUB_OUTPUT entries, step summary) of the step of
        flags-apply.yml's `job_id` whose script contains `needle`."""
        job = load(APPLY)["jobs"][job_id]
        (step,) = [s for s in job["steps"] if needle in s.get("run", "")]
        script = self.tmp / f"{job_id}.sh"
        script.write_text(step["run"], encoding="utf-8")
        output, summary = self.tmp / "output", self.tmp / "summary"
        output.write_text("", encoding="utf-8")
        summary.write_text("", encoding="utf-8")
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=self.repo.path,
            env={
                "PATH": f"{Path(FLAGS).parent}{os.pathsep}{os.environ['PATH']}",
                "GITHUB_SHA": COMMIT,
                "GITHUB_OUTPUT": str(output),
                "GITHUB_STEP_SUMMARY": str(summary),
                **self.repo.env,
                "ENVIRONMENT": "test",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        outputs = dict(line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines())
        return done.returncode, done.stdout + done.stderr, outputs, summary.read_text(encoding="utf-8")

    def plan(self) -> tuple[int, str, dict[str, str], str]:
        return self.run("plan-staging", "flags plan")

    def apply(self, sha256: str) -> tuple[int, str, dict[str, str], str]:
        """The apply step, with the plan job's file handed over as the artifact download does."""
        planned = self.repo.path / "planned"
        planned.mkdir(exist_ok=True)
        shutil.copyfile(self.repo.path / "plan-test.json", planned / "plan-test.json")
        return self.run("apply-staging", "flags apply", PLAN_SHA256=sha256)


@pytest.fixture
def runner(pg_url: str, make_repo: Any, tmp_path: Path) -> Runner:
    repo = init_and_apply(make_repo(pg_url))
    repo.configure(CHANGED_FLAGS)
    return Runner(repo, tmp_path)


def test_the_apply_job_applies_the_plan_its_plan_job_showed(runner: Runner, pg_url: str) -> None:
    status, log, outputs, summary = runner.plan()
    assert status == 0, log
    saved = runner.repo.path / "plan-test.json"
    assert outputs == {"changes": "true", "sha256": hashlib.sha256(saved.read_bytes()).hexdigest()}
    assert summary.startswith("**Plan: 0 to add, 1 to change, 0 to destroy.** Environment `test`.")
    assert f"commit `{COMMIT}`, sha256 `{outputs['sha256']}`" in summary
    status, log, _, _ = runner.apply(outputs["sha256"])
    assert status == 0, log
    assert "Apply complete! 0 added, 1 changed, 0 destroyed in environment test" in log
    status, log, outputs, summary = runner.plan()
    assert (status, outputs["changes"]) == (0, "false"), log
    assert "No changes." in summary


def test_the_apply_job_refuses_a_file_other_than_the_one_planned(runner: Runner, pg_url: str) -> None:
    status, log, _, _ = runner.plan()
    assert status == 0, log
    before = everything(pg_url)
    status, log, _, _ = runner.apply("0" * 64)
    assert status == 1, log
    assert "planned/plan-test.json is not the plan the plan job saved" in log
    assert "Apply complete" not in log
    assert everything(pg_url) == before


def test_a_blocked_plan_fails_the_plan_job_and_is_not_offered(runner: Runner, pg_url: str) -> None:
    execute(pg_url, "UPDATE feature_flags SET rollout_percentage = 12.5 WHERE flag_key = 'lead_scoring'")
    status, log, outputs, summary = runner.plan()
    assert (status, outputs) == (5, {}), log
    assert "::error title=Blocked plan::a guard blocks the test plan" in log
    assert "Blocked" in summary and "sha256" in summary
