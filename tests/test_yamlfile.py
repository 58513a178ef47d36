"""YAML loading: duplicate keys, YAML 1.2 booleans, alias bombs, unreadable scalars, positions."""

from __future__ import annotations

import datetime as dt

import pytest

from flagops.config.yamlfile import MAX_EXPANDED_NODES, UNREADABLE, Nth, Position, load, locate


def problems(text: str) -> list[tuple[int, int, str]]:
    return [(p.line, p.column, message) for p, message in load(text).problems]


def test_plain_document() -> None:
    loaded = load("flags:\n  a: {name: A, rollout_percentage: 12.5, expires: 2027-06-30}\n")
    assert loaded.problems == []
    assert loaded.data == {
        "flags": {"a": {"name": "A", "rollout_percentage": 12.5, "expires": dt.date(2027, 6, 30)}}
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: true", True),
        ("a: False", False),
        ("a: TRUE", True),
        ("a: yes", "yes"),
        ("a: no", "no"),
        ("a: on", "on"),
        ("a: Off", "Off"),
        ("a: y", "y"),
        ("a: 'true'", "true"),
    ],
)
def test_only_yaml_12_booleans(text: str, expected: object) -> None:
    assert load(text).data == {"a": expected}


def test_duplicate_keys_anywhere() -> None:
    text = "a: 1\nb:\n  c: [{d: 1, d: 2}]\n  c: 3\na: 4\n"
    assert sorted(problems(text)) == [
        (3, 14, "duplicate key 'd'"),
        (4, 3, "duplicate key 'c'"),
        (5, 1, "duplicate key 'a'"),
    ]


def test_keys_are_text_as_written() -> None:
    assert load("1: a\ntrue: b\n2027-01-01: c\nnull: d\n").data == {
        "1": "a",
        "true": "b",
        "2027-01-01": "c",
        "null": "d",
    }
    assert problems("1: a\n'1': b\n") == [(2, 1, "duplicate key '1'")]


def test_merge_keys_are_not_duplicates() -> None:
    loaded = load("base: &b {x: 1}\nitem:\n  <<: *b\n  y: 2\n")
    assert loaded.problems == []
    assert loaded.data["item"] == {"x": 1, "y": 2}


def test_syntax_error_points_at_the_problem_and_where_it_started() -> None:
    assert problems("a: [1, 2\nb: 3\n") == [
        (2, 2, "invalid YAML: while parsing a flow sequence started at 1:4, did not find expected ',' or ']'")
    ]
    assert problems("a: 'open\n") == [
        (2, 1, "invalid YAML: while scanning a quoted scalar started at 1:4, found unexpected end of stream")
    ]


def test_tab_indentation_is_named() -> None:
    assert problems("a:\n\tb: 1\n") == [
        (2, 1, "invalid YAML: tab character (YAML indents with spaces, never tabs)")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: 2027-02-30",
            (1, 4, "invalid YAML: cannot read '2027-02-30' as a date (day is out of range for month)"),
        ),
        (
            "a: 2027-13-01",
            (1, 4, "invalid YAML: cannot read '2027-13-01' as a date (month must be in 1..12)"),
        ),
        ("a:\n  b: 0x_", (2, 6, "invalid YAML: cannot read '0x_' as an integer")),
        ("a: 0b_", (1, 4, "invalid YAML: cannot read '0b_' as an integer")),
        ("a: !!int", (1, 4, "invalid YAML: cannot read '' as an integer")),
        ("a: !!int abc", (1, 4, "invalid YAML: cannot read 'abc' as an integer")),
        ("a: !!float abc", (1, 4, "invalid YAML: cannot read 'abc' as a number")),
        ("a: !!bool maybe", (1, 4, "invalid YAML: cannot read 'maybe' as true or false")),
        ("a: !!timestamp soon", (1, 4, "invalid YAML: cannot read 'soon' as a date")),
        ("a: !!map x", (1, 4, "invalid YAML: expected a mapping node, but found scalar")),
    ],
)
def test_unreadable_scalars_are_problems_not_crashes(text: str, expected: tuple[int, int, str]) -> None:
    assert problems(text) == [expected]


def test_unknown_tags_are_refused() -> None:
    assert problems("a: !!python/object/apply:os.system [ls]") == [
        (
            1,
            4,
            "invalid YAML: could not determine a constructor for the tag"
            " 'tag:yaml.org,2002:python/object/apply:os.system'",
        )
    ]


def test_control_characters_are_one_line_with_a_position() -> None:
    assert problems("a: 1\nb: \u00e9\x01\n") == [
        (2, 5, "invalid YAML: unacceptable character U+0001: control characters are not allowed")
    ]


def test_nesting_beyond_libyaml_limit() -> None:
    assert problems("a: " + "[" * 1500 + "]" * 1500) == [(1, 1003, "invalid YAML: nested too deeply")]


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    assert problems("\n".join(lines)) == [
        (1, 1, f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values")
    ]


def test_modest_aliases_are_fine() -> None:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 5)]  # 10^5 values
    loaded = load("\n".join(lines))
    assert loaded.problems == []
    assert len(loaded.data["l4"]) == 10


def test_alias_with_deep_nesting_is_a_problem_or_data_never_an_exception() -> None:
    loaded = load("x: &x 1\ny: *x\nz: " + "[" * 995 + "]" * 995)
    assert loaded.problems in ([], [(Position(1, 1), "invalid YAML: nested too deeply")])


def test_empty_documents_are_none() -> None:
    assert load("").data is None
    assert load("# only a comment\n").data is None
    assert load("").problems == []


def test_multiple_documents_are_refused() -> None:
    assert problems("a: 1\n---\nb: 2\n") == [
        (2, 1, "invalid YAML: expected a single document in the stream but found another document")
    ]


# -- locate -------------------------------------------------------------------------------------

TEXT = """\
flags:
  lead_scoring:
    name: Lead Scoring
    lint_ignore: [a, b]
  caf\u00e9_x: {name: "\u00e9\u00e9", enabled: 3}
"""


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        ((), False, Position(1, 1)),
        (("flags",), True, Position(1, 1)),
        (("flags",), False, Position(2, 3)),
        (("flags", "lead_scoring"), True, Position(2, 3)),
        (("flags", "lead_scoring", "name"), False, Position(3, 11)),
        (("flags", "lead_scoring", "name"), True, Position(3, 5)),
        (("flags", "lead_scoring", "lint_ignore", 1), False, Position(4, 22)),
        (("flags", "lead_scoring", "lint_ignore", 9), False, Position(4, 18)),
        (("flags", "lead_scoring", "missing"), True, Position(3, 5)),
        (("flags", "caf\u00e9_x", "enabled"), False, Position(5, 33)),
    ],
)
def test_locate(path: tuple[object, ...], key: bool, expected: Position) -> None:
    assert locate(TEXT, [(path, key)]) == [expected]


def test_locate_follows_the_document_as_far_as_it_goes() -> None:
    """A path that leaves the document gives the deepest node found (here: the `name` key's mapping)."""
    assert locate(TEXT, [(("flags", "lead_scoring", "name", "deeper"), False)]) == [Position(3, 11)]


def test_locate_in_broken_text_falls_back_to_the_start() -> None:
    assert locate("a: [1,\n", [(("a",), False), (("b",), True)]) == [Position(1, 1), Position(1, 1)]


def test_an_unreadable_value_leaves_the_rest_of_the_document() -> None:
    loaded = load("a: 2027-02-30\nb: [1, !!int x]\nc: true\n")
    assert loaded.data == {"a": UNREADABLE, "b": [1, UNREADABLE], "c": True}
    assert [(p.line, p.column) for p, _ in loaded.problems] == [(1, 4), (2, 8)]


def test_of_a_repeated_key_the_first_value_counts_and_the_repeats_are_kept() -> None:
    loaded = load("m:\n  k: 1\n  k: 2\n  k: 3\n")
    assert loaded.data == {"m": {"k": 1}}
    assert [(s.key, s.occurrence, s.value) for s in loaded.shadowed] == [("k", 1, 2), ("k", 2, 3)]
    assert all(s.mapping is loaded.data["m"] for s in loaded.shadowed)
    assert [m for _, m in loaded.problems] == ["duplicate key 'k'", "duplicate key 'k'"]
    positions = locate(
        "m:\n  k: 1\n  k: 2\n  k: 3\n",
        [(("m", "k"), True), (("m", Nth("k", 2)), False), (("m", Nth("k", 5)), True)],
    )
    assert positions == [Position(2, 3), Position(4, 6), Position(2, 3)]
