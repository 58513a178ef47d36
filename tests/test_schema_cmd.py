"""`flags schema`: output, the committed schema/*.json files, and agreement with the validating loader."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"flags": "flags", "environment": "environments"}


def editor_view(text: str) -> Any:
    """A YAML document as a YAML 1.2 editor hands it to a JSON Schema validator (dates stay strings)."""

    def plain(node: Any) -> Any:
        if isinstance(node, dict):
            return {str(k): plain(v) for k, v in node.items()}
        if isinstance(node, list):
            return [plain(v) for v in node]
        if isinstance(node, dt.date):
            return node.isoformat()
        return node

    return plain(yaml.safe_load(text))


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "schema" / f"{kind}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_committed_schema_file_is_what_the_command_prints(make_repo: Any, sqlite_url: str, kind: str) -> None:
    result = make_repo(sqlite_url).flags("schema", "--kind", kind)
    assert result.exit_code == 0, result.stderr
    committed = (ROOT / "schema" / f"{kind}.schema.json").read_text(encoding="utf-8")
    assert result.stdout == committed, (
        f"schema/{kind}.schema.json is out of date: run"
        f" `flags schema --kind {kind} > schema/{kind}.schema.json`"
    )


def test_output_is_deterministic_sorted_and_ends_with_one_newline(make_repo: Any, sqlite_url: str) -> None:
    repo = make_repo(sqlite_url)
    first = repo.flags("schema", "--kind", "environment").stdout
    assert repo.flags("schema", "--kind", "environment").stdout == first
    assert first == json.dumps(json.loads(first), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert first.endswith("}\n") and not first.endswith("\n\n")


def test_without_kind_prints_both_keyed_by_kind(make_repo: Any, sqlite_url: str) -> None:
    repo = make_repo(sqlite_url)
    both = json.loads(repo.flags("schema").stdout)
    assert sorted(both) == ["environment", "flags"]
    for kind in KINDS:
        assert both[kind] == json.loads(repo.flags("schema", "--kind", kind).stdout)
    assert both["flags"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert both["flags"]["title"] == "flagops flags file"
    assert both["environment"]["title"] == "flagops environment file"


def test_unknown_kind_is_a_usage_error(make_repo: Any, sqlite_url: str) -> None:
    result = make_repo(sqlite_url).flags("schema", "--kind", "flag")
    assert result.exit_code == 1
    assert "Invalid value for '--kind': 'flag' is not one of 'flags', 'environment'." in result.stderr


@pytest.mark.parametrize(("kind", "folder"), sorted(KINDS.items()))
def test_example_files_point_editors_at_their_schema_and_pass_it(kind: str, folder: str) -> None:
    files = sorted((ROOT / folder).glob("*.yaml"))
    assert files
    check = validator(kind)
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert text.splitlines()[0] == f"# yaml-language-server: $schema=../schema/{kind}.schema.json", path
        assert (path.parent / f"../schema/{kind}.schema.json").resolve().is_file()
        errors = [e.message for e in check.iter_errors(editor_view(text))]
        assert errors == [], path


FLAG = "flags:\n  lead_scoring:\n    name: Lead Scoring\n"
DB = "database:\n  url_env: FLAGS_TEST_URL\n"
ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"

VALID = [
    ("flags", FLAG + "    rollout_percentage: 33.33\n    expires: 2027-06-30\n"),
    ("flags", FLAG + "    rollout_percentage: 0.07\n    enabled: true\n    protected: true\n"),
    ("environment", DB + "flags:\n  lead_scoring: {rollout_percentage: 12.5, killed: true}\n"),
    ("environment", DB + f"allow_delete: true\norgs:\n  {ORG}:\n    lead_scoring: false\n"),
    ("environment", DB + f"flags:\n  lead_scoring:\norgs:\n  {ORG}:\n"),
    ("environment", DB + "flags:\norgs:\n"),
    ("flags", "flags:\n"),
]

INVALID = [
    ("flags", FLAG + "    colour: red\n", "colour"),
    ("flags", FLAG + '    enabled: "yes"\n', "enabled"),
    ("flags", FLAG + "    rollout_percentage: 150\n", "rollout_percentage"),
    ("flags", FLAG + '    rollout_percentage: "50"\n', "rollout_percentage"),
    ("flags", FLAG + "  Lead Scoring:\n    name: Bad Key\n", "Lead Scoring"),
    ("flags", "flags:\n  lead_scoring:\n    description: no name\n", "name"),
    ("environment", DB + "colour: red\n", "colour"),
    ("environment", DB + "orgs:\n  not-a-uuid:\n    lead_scoring: true\n", "not-a-uuid"),
    ("environment", DB + f"orgs:\n  {ORG}:\n    lead_scoring: 1\n", "lead_scoring"),
    ("environment", DB + "promote_from: Staging Env\n", "promote_from"),
    ("environment", DB + "flags:\n  lead_scoring: {name: Renamed}\n", "name"),
]


@pytest.mark.parametrize(("kind", "text"), VALID)
def test_schema_accepts_what_validate_accepts(make_repo: Any, sqlite_url: str, kind: str, text: str) -> None:
    assert [e.message for e in validator(kind).iter_errors(editor_view(text))] == []
    result = _validate(make_repo(sqlite_url), kind, text)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(("kind", "text", "culprit"), INVALID)
def test_schema_rejects_what_validate_rejects(
    make_repo: Any, sqlite_url: str, kind: str, text: str, culprit: str
) -> None:
    errors = list(validator(kind).iter_errors(editor_view(text)))
    assert errors, "the schema accepted a document that validate rejects"
    assert any(culprit in (e.message + " ".join(map(str, e.absolute_path))) for e in errors)
    result = _validate(make_repo(sqlite_url), kind, text)
    assert result.exit_code == 1
    assert result.stderr.startswith("flags/" if kind == "flags" else "environments/test.yaml:")


def _validate(repo: Any, kind: str, text: str) -> Any:
    if kind == "flags":
        repo.write("flags/main.yaml", text)
    else:
        repo.write("flags/main.yaml", FLAG)
        repo.write("environments/test.yaml", text)
    return repo.flags("validate")


def test_schema_files_are_valid_json_schema() -> None:
    for kind in KINDS:
        validator(kind)
    assert {p.name for p in Path(ROOT / "schema").glob("*.json")} == {
        "flags.schema.json",
        "environment.schema.json",
    }
