"""`flags schema`: the JSON Schema of the two file kinds, for editors and for schema/*.schema.json."""

from __future__ import annotations

import json
from typing import Any

import click

from flagops.cli.app import cli, out

KINDS = ("flags", "environment")


def schema_text(kind: str | None) -> str:
    """One kind's schema, or both keyed by kind, as deterministic JSON (sorted keys, final newline)."""
    from flagops.config.models import json_schema

    document: dict[str, Any] = json_schema(kind) if kind is not None else {k: json_schema(k) for k in KINDS}
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@cli.command()
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="Print only this file kind's schema (default: one JSON object holding both, keyed by kind).",
)
def schema(kind: str | None) -> None:
    """Print the JSON Schema of the two file kinds, made from the models that validate them.

    \b
    Save each kind where the YAML files' first line points editors:
      flags schema --kind flags > schema/flags.schema.json
      flags schema --kind environment > schema/environment.schema.json
    """
    out(schema_text(kind))
