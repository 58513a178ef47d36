"""The markdown plan (pull-request comment): golden files, escaping of user text and the size bound."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from flagops.plan.changes import Action, Blocked, Change, Drift, Plan, Subject
from flagops.plan.planfile import dumps
from flagops.render.markdown import MAX_CHARS, code, render_markdown, text

GOLDEN = Path(__file__).parent / "golden" / "markdown"
ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
GLOBEX = "0b5e8f7a-3c2d-4e1f-9a8b-7c6d5e4f3a2b"
FLAG_FIELDS = {
    "name": "Beta Inbox",
    "description": "Shared inbox for the beta",
    "owner": "growth",
    "enabled": False,
    "rollout_percentage": 5,
    "killed": False,
    "expires": None,
    "protected": False,
}


def make_plan(changes: list[Change], **extra: object) -> Plan:
    return Plan(
        environment=str(extra.pop("environment", "production")),
        plan_id="3f2a9c1e5b7d",
        created_at="2025-01-15T10:30:00+00:00",
        git_commit=str(extra.pop("git_commit", "9fceb02d0ae598e95dc970b74767f19372d61af8")),
        config_hash="sha256:" + "c" * 64,
        state_hash="sha256:" + "5" * 64,
        changes=tuple(changes),
        **extra,  # type: ignore[arg-type]
    )


def flag(
    action: Action, key: str, before: dict[str, object] | None, after: dict[str, object] | None
) -> Change:
    return Change(Subject.FLAG, action, key, None, before, after)


def override(action: Action, key: str, org: str, before: bool | None, after: bool | None) -> Change:
    return Change(
        Subject.OVERRIDE,
        action,
        key,
        org,
        None if before is None else {"enabled": before},
        None if after is None else {"enabled": after},
    )


def org(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


TYPICAL = make_plan(
    [
        flag(Action.CREATE, "beta_inbox", None, FLAG_FIELDS),
        flag(Action.UPDATE, "lead_scoring", {"rollout_percentage": 50}, {"rollout_percentage": 10}),
        flag(Action.DELETE, "old_dialer", {**FLAG_FIELDS, "name": "Old Dialer"}, None),
        override(Action.CREATE, "lead_scoring", ACME, None, False),
        override(Action.UPDATE, "sms_campaigns", GLOBEX, False, True),
        override(Action.DELETE, "sms_campaigns", ACME, True, None),
    ],
    drift=(
        Drift(
            Subject.FLAG,
            "lead_scoring",
            None,
            {"rollout_percentage": 50},
            {"rollout_percentage": 75},
            "alice",
            "2025-01-14T08:00:00+00:00",
            "out-of-band",
        ),
        Drift(Subject.OVERRIDE, "sms_campaigns", GLOBEX, None, {"enabled": False}),
    ),
    blocked=(
        Blocked(
            "flag.old_dialer",
            "would be deleted; pass --allow-delete or set allow_delete: true in environments/production.yaml",
        ),
    ),
    adopted=2,
)

HOSTILE = make_plan(
    [
        flag(
            Action.CREATE,
            "weird_text",
            None,
            {
                **FLAG_FIELDS,
                "name": "Pipes | <b>bold</b> & `ticks` ``double``",
                "description": "line one\nline two | *stars* _under_ [link](http://x) @team",
                "owner": "`",
            },
        ),
        flag(Action.UPDATE, "long_text", {"description": "short"}, {"description": "x" * 500}),
    ],
    drift=(
        Drift(
            Subject.FLAG,
            "weird_text",
            None,
            {"owner": "a"},
            {"owner": "b"},
            "<script>alert(1)</script> | *me*",
            "2025-01-14",
            "out-of-band",
        ),
    ),
    blocked=(Blocked("flag.weird_text", "reason with | pipe, <tag> and `tick`\nand a second line"),),
)

COLLAPSED = make_plan(
    [flag(Action.UPDATE, f"flag_{i:02d}", {"enabled": False}, {"enabled": True}) for i in range(25)]
    + [override(Action.CREATE, "flag_00", org(i), None, True) for i in range(30)]
    + [override(Action.UPDATE, "flag_01", org(i), True, False) for i in range(3)],
    targets=tuple(f"flag_{i:02d}" for i in range(12)),
)

CASES = {
    "no_changes": make_plan([]),
    "typical": TYPICAL,
    "hostile_text": HOSTILE,
    "collapsed": COLLAPSED,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_golden_file(name: str) -> None:
    rendered = render_markdown(CASES[name])
    golden = GOLDEN / f"{name}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")


def test_summary_line_comes_first() -> None:
    assert render_markdown(make_plan([])).splitlines()[0] == (
        "**No changes. Environment production matches the configuration.**"
    )
    first = render_markdown(TYPICAL).splitlines()[0]
    assert first == (
        "**Plan: 2 to add, 2 to change, 2 to destroy.** Environment `production`."
        " Blocked: 1 change(s) that apply refuses. Drift: 2 row(s) changed outside flags."
    )


def test_blocked_and_drift_come_before_the_tables() -> None:
    rendered = render_markdown(TYPICAL)
    assert rendered.index("> [!CAUTION]") < rendered.index("> [!WARNING]") < rendered.index("| Flag |")
    assert "> - `flag.old_dialer`: would be deleted;" in rendered
    assert (
        "> - `flag.lead_scoring`: `rollout_percentage`: `50` → `75`;"
        " changed by alice at 2025-01-14T08:00:00+00:00 (out-of-band)"
    ) in rendered
    assert f"> - `override.{GLOBEX}.sms_campaigns`: created outside flags" in rendered


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain words", "plain words"),
        ("a | b", "a \\| b"),
        ("<script>&amp;", "&lt;script&gt;&amp;amp;"),
        ("`x` *y* _z_ [l](u) ~s~ #h \\", "\\`x\\` \\*y\\* \\_z\\_ \\[l\\](u) \\~s\\~ \\#h \\\\"),
        ("two\nlines\r\nhere", "two lines here"),
    ],
)
def test_text_is_escaped(raw: str, escaped: str) -> None:
    assert text(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "cell", "span"),
    [
        ('"plain"', False, '`"plain"`'),
        ("a|b", True, "`a\\|b`"),
        ("a|b", False, "`a|b`"),
        ("has `one` tick", False, "``has `one` tick``"),
        ("``double``", False, "``` ``double`` ```"),
        ("`", False, "`` ` ``"),
        ("<b>", False, "`<b>`"),
    ],
)
def test_code_spans_hold_any_text(raw: str, cell: bool, span: str) -> None:
    assert code(raw, cell=cell) == span


def test_hostile_text_cannot_break_a_table_row() -> None:
    rendered = render_markdown(HOSTILE)
    rows = [line for line in rendered.splitlines() if line.startswith("| `weird_text`")]
    assert len(rows) == 1
    unescaped_pipes = re.findall(r"(?<!\\)\|", rows[0])
    assert len(unescaped_pipes) == 4  # the three cells' borders
    outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", rendered)
    tags = set(re.findall(r"</?([A-Za-z]+)", outside_code))
    assert tags == {"br", "sub"}  # only the renderer's own markup; user text's <b> and <script> are inert
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| \\*me\\*" in rendered
    assert "x" * 200 not in rendered and "x" * 198 + "…" in rendered


def test_hundred_thousand_override_changes_stay_under_the_limit() -> None:
    orgs = [org(i) for i in range(10_000)]
    changes = [flag(Action.UPDATE, f"flag_{f:02d}", {"enabled": False}, {"enabled": True}) for f in range(10)]
    changes += [
        Change(Subject.OVERRIDE, Action.CREATE, f"flag_{f:02d}", o, None, {"enabled": True})
        for f in range(10)
        for o in orgs
    ]
    rendered = render_markdown(make_plan(changes))
    assert len(rendered) < MAX_CHARS
    lines = rendered.splitlines()
    assert lines[0] == "**Plan: 100000 to add, 10 to change, 0 to destroy.** Environment `production`."
    shown_rows = sum(1 for line in lines if line.startswith("| `00000000-"))
    hidden = 100_000 - shown_rows
    assert 0 < shown_rows < 2_000
    assert lines[2] == "> [!NOTE]"
    assert lines[3] == (
        "> This comment shows part of the plan (it stays under 60,000 characters);"
        f" not shown: {hidden:,} of 100,000 override changes."
        " Run `flags plan --env production --format json` for every row."
    )
    assert (
        f"… {hidden:,} more override changes not shown in all (of 100,000);"
        " run `flags plan --format json` for every row."
    ) in lines
    assert sum(1 for line in lines if line.startswith("| `flag_")) == 10  # every flag change is shown
    assert rendered.count("<details>") == rendered.count("</details>")


@pytest.mark.parametrize("flags", [300, 3_000, 20_000])
def test_many_small_override_groups_stay_under_the_limit(flags: int) -> None:
    """Each group's closing lines and "more" line count against the limit too."""
    changes = [
        Change(Subject.OVERRIDE, Action.CREATE, f"flag_{f:05d}", org(f), None, {"enabled": True})
        for f in range(flags)
    ]
    rendered = render_markdown(make_plan(changes))
    assert len(rendered) < MAX_CHARS
    assert rendered.count("<details>") == rendered.count("</details>")


def test_everything_huge_at_once_stays_under_the_limit_and_says_what_it_left_out() -> None:
    huge = "y" * 10_000
    changes = [
        flag(Action.CREATE, f"f{i:04d}", None, {**FLAG_FIELDS, "description": huge}) for i in range(2_000)
    ]
    changes += [
        override(Action.CREATE, f"f{i:04d}", org(j), None, True) for i in range(2_000) for j in range(5)
    ]
    drift = tuple(
        Drift(Subject.FLAG, f"f{i:04d}", None, {"description": "a"}, {"description": huge}, huge, huge, huge)
        for i in range(1_000)
    )
    blocked = tuple(Blocked(f"flag.f{i:04d}", huge) for i in range(1_000))
    rendered = render_markdown(make_plan(changes, drift=drift, blocked=blocked))
    assert len(rendered) < MAX_CHARS
    note = rendered.splitlines()[3]
    assert note.startswith(
        "> This comment shows part of the plan (it stays under 60,000 characters);"
        " not shown: 980 of 1,000 blocked changes"
    )
    assert "of 1,000 drifted rows" in note
    assert "of 2,000 flag changes" in note
    assert "10,000 of 10,000 override changes" in note
    assert rendered.count("<details>") == rendered.count("</details>")
    assert "> … 980 more blocked changes not shown; run `flags plan --format json` for every row." in rendered


def test_a_plan_without_changes_for_many_targets_stays_under_the_limit() -> None:
    long = "x" * 50
    targets = tuple(f"{long}{i:05d}" for i in range(1_200))
    rendered = render_markdown(make_plan([], targets=targets))
    assert len(rendered) < MAX_CHARS
    assert f"{long}00009 and 1,190 more" in rendered


def test_plan_command_prints_the_comment_and_saves_the_json_plan(
    make_repo: Any, sqlite_url: str, tmp_path: Path
) -> None:
    repo = make_repo(sqlite_url, env_body=f"orgs:\n  {ACME}:\n    sms_campaigns: true\n")
    assert repo.flags("init", "--env", "test").exit_code == 0
    saved = tmp_path / "plan-test.json"
    result = repo.flags("plan", "--env", "test", "--format", "markdown", "--out", str(saved))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "**Plan: 3 to add, 0 to change, 0 to destroy.** Environment `test`."
    assert '| `lead_scoring` | create | `name`: `"Lead Scoring"`<br>' in result.stdout
    assert f"| `{ACME}` | create | `true` |" in lines
    assert json.loads(saved.read_text(encoding="utf-8"))["summary"] == {"add": 3, "change": 0, "destroy": 0}


def test_override_changes_that_fit_are_all_shown() -> None:
    changes = [override(Action.UPDATE, "lead_scoring", org(i), True, False) for i in range(600)]
    rendered = render_markdown(make_plan(changes))
    assert len(rendered) < MAX_CHARS
    assert sum(1 for line in rendered.splitlines() if line.startswith("| `00000000-")) == 600
    assert "not shown" not in rendered
    assert "<details><summary><code>lead_scoring</code>: 600 to change</summary>" in rendered


def test_many_flags_with_overrides_each_get_a_share() -> None:
    changes = [
        override(Action.CREATE, f"flag_{f:02d}", org(i), None, True) for f in range(5) for i in range(300)
    ]
    rendered = render_markdown(make_plan(changes))
    assert len(rendered) < MAX_CHARS
    for f in range(5):
        assert f"… 200 more override changes of `flag_{f:02d}` not shown." in rendered
    assert "not shown: 1,000 of 1,500 override changes." in rendered


def test_unmanaged_rows_are_named_in_the_summary_and_listed_once_each() -> None:
    from flagops.plan.changes import Unmanaged

    comment = render_markdown(make_plan([], unmanaged=(Unmanaged("9lives", 2), Unmanaged("bad|key`"))))
    lines = comment.splitlines()
    assert lines[0] == (
        "**No changes. Environment production matches the configuration.** 2 flag(s) unmanaged, left alone."
    )
    assert lines[2:6] == [
        "> [!NOTE]",
        "> Unmanaged: 2 flag(s) in the database have a key flags cannot manage;"
        " no plan changes or deletes them:",
        "> - `flag.9lives`: unmanaged, left alone (not a valid flag key: letters, digits, \\_, - and .,"
        " starting with a letter, at most 128 characters; with its 2 org override(s))",
        "> - `` flag.bad|key` ``: unmanaged, left alone (not a valid flag key: letters, digits, \\_, - and .,"
        " starting with a letter, at most 128 characters)",
    ]


@pytest.mark.parametrize("commit", [f"{'9fceb02d' * 5}-dirty", f"{'ab12' * 16}-dirty", "9fceb02"])
def test_the_footer_shows_the_commit_of_the_json_plan(commit: str) -> None:
    """A `-dirty` commit (of 40 or 64 hex digits) is shown whole, as the JSON plan holds it."""
    plan = make_plan([], git_commit=commit)
    footer = render_markdown(plan).splitlines()[-1]
    assert json.loads(dumps(plan))["git_commit"] == commit
    assert f" · commit `{commit}` · " in footer
