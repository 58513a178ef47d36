"""Comment-keeping YAML edits: each kind of edit changes exactly its lines and nothing else."""

from __future__ import annotations

import datetime as dt
import difflib
import textwrap
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagops.config import yamlfile
from flagops.edit.yamledit import REMOVE, Edit, EditError, apply_edits, flow_style_default

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
BETA = "0b5e8d2a-3c4f-4e6a-9b1d-7a2c5e8f1d3b"
GAMMA = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

ENV = textwrap.dedent(
    f"""\
    # yaml-language-server: $schema=../schema/environment.schema.json
    # Production: Postgres, URL from a CI secret.
    database:
      url_env: FLAGS_DATABASE_URL_PRODUCTION
    promote_from: staging
    flags:
      lead_scoring: {{enabled: false, rollout_percentage: 10}}   # ramping up
      # SMS is paused until the carrier contract is signed
      sms_campaigns: {{killed: true}}
    orgs:
      {ACME}:   # Acme
        sms_campaigns: true
        lead_scoring: false
      # Beta Corp, pilot customer
      {BETA}:
        sms_campaigns: false
    # end of production
    """
)


def changed(before: str, after: str) -> list[str]:
    """The lines a `git diff` shows: '-old' and '+new', in order."""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def env_edit(text: str, *edits: Edit) -> str:
    return apply_edits(text, edits, flow=flow_style_default)


CASES: list[tuple[str, list[Edit], list[str]]] = [
    (
        "set a value in a flow mapping, keeping its comment",
        [Edit(("flags", "lead_scoring", "rollout_percentage"), 25)],
        [
            "-  lead_scoring: {enabled: false, rollout_percentage: 10}   # ramping up",
            "+  lead_scoring: {enabled: false, rollout_percentage: 25}   # ramping up",
        ],
    ),
    (
        "a decimal percentage is written as a number",
        [Edit(("flags", "lead_scoring", "rollout_percentage"), Decimal("12.50"))],
        [
            "-  lead_scoring: {enabled: false, rollout_percentage: 10}   # ramping up",
            "+  lead_scoring: {enabled: false, rollout_percentage: 12.5} # ramping up",
        ],
    ),
    (
        "a new field goes to its place in the flow mapping",
        [Edit(("flags", "sms_campaigns", "rollout_percentage"), 5)],
        [
            "-  sms_campaigns: {killed: true}",
            "+  sms_campaigns: {rollout_percentage: 5, killed: true}",
        ],
    ),
    (
        "remove one field of a flow mapping",
        [Edit(("flags", "lead_scoring", "enabled"), REMOVE)],
        [
            "-  lead_scoring: {enabled: false, rollout_percentage: 10}   # ramping up",
            "+  lead_scoring: {rollout_percentage: 10}                   # ramping up",
        ],
    ),
    (
        "removing the last field removes the flag's entry, not the comment above the next one",
        [Edit(("flags", "sms_campaigns", "killed"), REMOVE)],
        ["-  sms_campaigns: {killed: true}"],
    ),
    (
        "a new flag entry is a flow mapping like its siblings",
        [Edit(("flags", "call_recording", "enabled"), False)],
        ["+  call_recording: {enabled: false}"],
    ),
    (
        "change an org override",
        [Edit(("orgs", ACME, "lead_scoring"), True)],
        ["-    lead_scoring: false", "+    lead_scoring: true"],
    ),
    (
        "remove an org's last override keeps the comment of the org after it",
        [Edit(("orgs", ACME, "lead_scoring"), REMOVE)],
        ["-    lead_scoring: false"],
    ),
    (
        "an override added to an org lands right after its last one",
        [Edit(("orgs", ACME, "call_recording"), True)],
        ["+    call_recording: true"],
    ),
    (
        "removing every override of an org removes the org",
        [Edit(("orgs", BETA, "sms_campaigns"), REMOVE)],
        [f"-  {BETA}:", "-    sms_campaigns: false"],
    ),
    (
        "a new org is a block mapping, before the comment that ends the file",
        [Edit(("orgs", GAMMA, "lead_scoring"), True), Edit(("orgs", GAMMA, "sms_campaigns"), False)],
        [f"+  {GAMMA}:", "+    lead_scoring: true", "+    sms_campaigns: false"],
    ),
    (
        "removing an absent value changes nothing",
        [Edit(("orgs", GAMMA, "lead_scoring"), REMOVE), Edit(("flags", "nope", "killed"), REMOVE)],
        [],
    ),
    (
        "emptying a top-level section leaves it as an empty mapping",
        [
            Edit(("flags", "lead_scoring", "enabled"), REMOVE),
            Edit(("flags", "lead_scoring", "rollout_percentage"), REMOVE),
            Edit(("flags", "sms_campaigns", "killed"), REMOVE),
        ],
        [
            "-flags:",
            "-  lead_scoring: {enabled: false, rollout_percentage: 10}   # ramping up",
            "-  # SMS is paused until the carrier contract is signed",
            "-  sms_campaigns: {killed: true}",
            "+flags: {}",
        ],
    ),
]


@pytest.mark.parametrize(("edits", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_edit_changes_only_its_lines(edits: list[Edit], expected: list[str]) -> None:
    after = env_edit(ENV, *edits)
    assert changed(ENV, after) == expected
    assert "# yaml-language-server: $schema=../schema/environment.schema.json\n" in after


def test_no_edits_returns_the_text_untouched() -> None:
    assert env_edit(ENV) is ENV


def test_a_missing_section_is_added_in_its_place() -> None:
    text = f"database:\n  url_env: X\norgs:\n  {ACME}: {{sms_campaigns: true}}\n"
    after = env_edit(text, Edit(("flags", "lead_scoring", "killed"), True), Edit(("orgs", BETA, "x"), False))
    assert after == (
        "database:\n  url_env: X\nflags:\n  lead_scoring: {killed: true}\norgs:\n"
        f"  {ACME}: {{sms_campaigns: true}}\n  {BETA}: {{x: false}}\n"
    )


def test_indentation_of_the_file_is_kept() -> None:
    text = "database:\n    url_env: X\nflags:\n    a:\n        enabled: true\n"
    text += f"orgs:\n    {ACME}:\n        a: true\n"
    after = env_edit(text, Edit(("orgs", BETA, "a"), False), Edit(("flags", "a", "killed"), True))
    assert changed(text, after) == ["+        killed: true", f"+    {BETA}:", "+        a: false"]


def test_lines_ruamel_would_reformat_are_kept_unless_edited() -> None:
    text = (
        "# yaml-language-server: $schema=x.json\n"
        "---\n"
        'database: {url: "sqlite:///x.db"}\n'
        "\n"
        "flags:\n"
        "  a:   {enabled:   true}\n"
        "  b: { rollout_percentage: 10.50 }\n"
        "orgs: {}"
    )
    after = env_edit(text, Edit(("flags", "b", "rollout_percentage"), 20))
    assert changed(text, after) == ["-  b: { rollout_percentage: 10.50 }", "+  b: {rollout_percentage: 20}"]
    added = env_edit(text, Edit(("flags", "c", "enabled"), False))
    assert changed(text, added) == ["+  c: {enabled: false}"]


def test_a_key_appended_after_an_unended_last_line_keeps_the_rest_of_the_file() -> None:
    text = (
        "# Production: reviewed by SRE\n---\ndatabase:\n    url: sqlite:///x\nflags:\n    a: {enabled: true}"
    )
    after = env_edit(text, Edit(("flags", "b", "enabled"), True))
    assert after == text + "\n    b: {enabled: true}"


def test_windows_line_ends_are_kept() -> None:
    text = "database:\r\n  url_env: X\r\nflags:\r\n  a: {enabled: true}\r\n"
    after = env_edit(text, Edit(("flags", "a", "killed"), True), Edit(("flags", "b", "killed"), True))
    assert after == (
        "database:\r\n  url_env: X\r\nflags:\r\n  a: {enabled: true, killed: true}\r\n  b: {killed: true}\r\n"
    )


FLAGS = textwrap.dedent(
    """\
    # Flags of the growth team.
    flags:
      lead_scoring:
        name: "Lead Scoring"
        # the team that answers for it
        owner: growth
        rollout_percentage: 50
        lint_ignore:
        - fully_rolled_out
      sms_campaigns:
        name: SMS Campaigns
        protected: true   # never delete
    """
)


def test_global_fields_of_a_flags_file() -> None:
    after = apply_edits(
        FLAGS,
        [
            Edit(("flags", "lead_scoring", "description"), "Scores leads: inbound"),
            Edit(("flags", "lead_scoring", "expires"), dt.date(2027, 6, 30)),
            Edit(("flags", "lead_scoring", "name"), "true"),
            Edit(("flags", "sms_campaigns", "protected"), False),
        ],
    )
    assert changed(FLAGS, after) == [
        '-    name: "Lead Scoring"',
        '+    name: "true"',
        "+    description: 'Scores leads: inbound'",
        "+    expires: 2027-06-30",
        "-    protected: true   # never delete",
        "+    protected: false  # never delete",
    ]
    assert yamlfile.load(after).data["flags"]["lead_scoring"]["name"] == "true"
    assert "    # the team that answers for it\n    owner: growth\n" in after


def test_a_new_definition_in_a_new_file_is_a_block_mapping() -> None:
    text = "# Flags adopted from the database.\nflags:\n"
    after = apply_edits(
        text,
        [
            Edit(("flags", "legacy", "name"), REMOVE),
            Edit(
                ("flags", "legacy"),
                {"name": "Legacy", "enabled": True, "rollout_percentage": Decimal("100.00")},
            ),
        ],
    )
    assert after == text + "  legacy:\n    name: Legacy\n    enabled: true\n    rollout_percentage: 100\n"


def test_an_edit_through_a_value_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(EditError, match=r"^environments/x.yaml: database.url_env is not a mapping$"):
        apply_edits(ENV, [Edit(("database", "url_env", "x"), 1)], name="environments/x.yaml")


def test_invalid_yaml_is_refused() -> None:
    with pytest.raises(EditError, match=r"^f.yaml: not a valid YAML mapping; run flags validate$"):
        apply_edits("a: [\n", [Edit(("a",), 1)], name="f.yaml")


# -- any sequence of edits: the file means exactly what the edits say, and comments survive --------------

FLAG_KEYS = st.sampled_from(["lead_scoring", "sms_campaigns", "call_recording"])
ORG_IDS = st.sampled_from([ACME, BETA, GAMMA])
VALUE_EDITS = st.one_of(
    st.builds(
        lambda k, f, v: Edit(("flags", k, f), v),
        FLAG_KEYS,
        st.sampled_from(["enabled", "killed"]),
        st.one_of(st.booleans(), st.just(REMOVE)),
    ),
    st.builds(
        lambda k, v: Edit(("flags", k, "rollout_percentage"), v),
        FLAG_KEYS,
        st.one_of(st.decimals(0, 100, places=2), st.just(REMOVE)),
    ),
    st.builds(
        lambda o, k, v: Edit(("orgs", o, k), v), ORG_IDS, FLAG_KEYS, st.one_of(st.booleans(), st.just(REMOVE))
    ),
)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


HAND_WRITTEN = (
    "# yaml-language-server: $schema=x.json\n"
    "---\n"
    "# Written by hand, four-space indents.\n"
    "database:\n"
    "    url_env:   FLAGS_DATABASE_URL_STAGING\n"
    "flags:\n"
    "    lead_scoring:   { enabled: false,  rollout_percentage: 10 }   # ramping up\n"
    "    # SMS is paused until the carrier contract is signed\n"
    "    sms_campaigns:\n"
    "        killed: true\n"
    "orgs:\n"
    f"    {ACME}:     # Acme\n"
    "        sms_campaigns: true\n"
    "        lead_scoring: false\n"
    "\n"
    "    # Beta Corp, pilot customer\n"
    f"    {BETA}: {{sms_campaigns: false}}\n"
    "# end of production"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([ENV, HAND_WRITTEN]), st.lists(VALUE_EDITS, min_size=1, max_size=8))
def test_any_edits_mean_what_they_say_and_keep_the_comments(text: str, edits: list[Edit]) -> None:
    after = env_edit(text, *edits)
    data = yamlfile.load(after).data
    expected = yamlfile.load(text).data
    for edit in edits:
        section, key, field = edit.path
        entries = expected[section]
        if edit.value is REMOVE:
            entries.get(key, {}).pop(field, None)
            if key in entries and not entries[key]:
                del entries[key]
        else:
            entries.setdefault(key, {})[field] = _plain(edit.value)
    assert data == expected
    head = text.splitlines(keepends=True)[:5]
    assert after.startswith("".join(head))
    assert "# end of production" in after
    # A comment goes only with what it is about: the flag entry or org it sits on or introduces.
    gone = {
        "# ramping up": "lead_scoring" not in data["flags"],
        "# Acme": ACME not in data["orgs"],
        "# Beta Corp, pilot customer": BETA not in data["orgs"],
        "# SMS is paused until the carrier contract is signed": "sms_campaigns" not in data["flags"],
    }
    for comment, away in gone.items():
        assert comment in after or away, comment


EXISTING_VALUES = st.one_of(
    st.builds(
        lambda k, f, v: Edit(("flags", k, f), v),
        st.sampled_from(["lead_scoring"]),
        st.sampled_from(["enabled"]),
        st.booleans(),
    ),
    st.builds(
        lambda v: Edit(("flags", "lead_scoring", "rollout_percentage"), v), st.decimals(0, 100, places=2)
    ),
    st.builds(lambda o, k, v: Edit(("orgs", ACME, k), v), ORG_IDS, FLAG_KEYS, st.booleans()).filter(
        lambda e: e.path[2] != "call_recording"
    ),
    st.builds(lambda v: Edit(("orgs", BETA, "sms_campaigns"), v), st.booleans()),
    st.builds(
        lambda v: Edit(("database", "url_env"), v), st.sampled_from(["X", "A_B", "with: colon", "it's"])
    ),
)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([ENV, HAND_WRITTEN]), st.lists(EXISTING_VALUES, min_size=1, max_size=6))
def test_setting_values_changes_only_their_lines_and_keeps_their_comments(
    text: str, edits: list[Edit]
) -> None:
    after = env_edit(text, *edits)
    lines, new_lines = text.splitlines(), after.splitlines()
    assert len(new_lines) == len(lines)
    edited = {p.line - 1 for p in yamlfile.locate(text, [(e.path, False) for e in edits])}
    for number, (line, new_line) in enumerate(zip(lines, new_lines, strict=True)):
        if number not in edited:
            assert new_line == line
            continue
        _, hash_, comment = line.partition("   #")
        if hash_:  # the comment keeps its column, or follows the grown line after one space
            new_code = new_line[: new_line.rindex(" #" + comment)].rstrip()
            assert (
                new_line
                == new_code + " " * max(1, len(line) - len(comment) - 1 - len(new_code)) + "#" + comment
            )


def test_a_replaced_string_keeps_its_quotes() -> None:
    text = "flags:\n  a:\n    name: 'Old name'\n    description: \"Old\"   # why\n    owner: plain\n"
    after = apply_edits(
        text,
        [
            Edit(("flags", "a", "name"), "New name"),
            Edit(("flags", "a", "description"), "New: it's"),
            Edit(("flags", "a", "owner"), "team"),
        ],
    )
    assert (
        after == "flags:\n  a:\n    name: 'New name'\n    description: \"New: it's\" # why\n    owner: team\n"
    )


def test_an_empty_section_that_gains_entries_becomes_a_block_mapping() -> None:
    text = "database:\n  url_env: X\nflags: {}   # none yet\norgs: {}\n"
    after = env_edit(text, Edit(("flags", "a", "enabled"), True), Edit(("orgs", ACME, "a"), False))
    assert after == (
        "database:\n  url_env: X\nflags:   # none yet\n  a: {enabled: true}\norgs:\n"
        f"  {ACME}:\n    a: false\n"
    )


def test_a_block_scalar_replaced_by_a_line_keeps_what_follows() -> None:
    text = "flags:\n  a:\n    description: |\n      Two\n      lines\n\n    owner: growth\n"
    after = apply_edits(text, [Edit(("flags", "a", "description"), "One, line")])
    assert after == "flags:\n  a:\n    description: One, line\n\n    owner: growth\n"


def test_a_flow_mapping_over_several_lines_is_written_on_one() -> None:
    text = "flags:\n  a: {enabled: true,\n      killed: false}\n  b: {enabled: true}\n"
    after = env_edit(text, Edit(("flags", "a", "killed"), True))
    assert after == "flags:\n  a: {enabled: true, killed: true}\n  b: {enabled: true}\n"
    commented = "flags:\n  a: {enabled: true,   # on\n      killed: false}\n"
    with pytest.raises(EditError, match="cannot write the change without altering other values"):
        env_edit(commented, Edit(("flags", "a", "killed"), True))


def test_a_value_shared_through_an_alias_is_not_edited_for_both() -> None:
    text = "defaults: &on {enabled: true}\nflags:\n  a: *on\n  b: {enabled: true}\n"
    with pytest.raises(EditError, match="cannot write the change without altering other values"):
        env_edit(text, Edit(("flags", "a", "enabled"), False))
    removed = env_edit(text, Edit(("flags", "b", "enabled"), REMOVE))
    assert removed == "defaults: &on {enabled: true}\nflags:\n  a: *on\n"
