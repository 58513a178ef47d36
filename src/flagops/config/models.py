"""Pydantic models of the two file kinds (flags/*.yaml, environments/*.yaml): validation and JSON Schema."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from flagops.config.credentials import HIDDEN, has_password, holds_password

# The key rule lives in flagops.config.keys (no pydantic); re-exported for the models and the loader.
from flagops.config.keys import FLAG_KEY_MAX as FLAG_KEY_MAX
from flagops.config.keys import FLAG_KEY_PATTERN as FLAG_KEY_PATTERN

ORG_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ENV_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

FlagKey = Annotated[str, StringConstraints(pattern=FLAG_KEY_PATTERN)]
OrgId = Annotated[str, StringConstraints(pattern=ORG_ID_PATTERN)]

_HUNDREDTH = Decimal("0.01")


def _percentage(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"expected a number from 0 to 100, got {describe(value)}")
    if isinstance(value, int) and not 0 <= value <= 100:  # before str(): it refuses huge integers
        shown = value if abs(value) < 10**30 else ("a huge number" if value > 0 else "a huge negative number")
        raise ValueError(f"must be between 0 and 100, got {shown}")
    number = Decimal(str(value))
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(100):
        raise ValueError(f"must be between 0 and 100, got {value}")
    if number != number.quantize(_HUNDREDTH):
        raise ValueError(f"must have at most 2 decimals, got {value}")
    return number.quantize(_HUNDREDTH)


def type_name(value: Any) -> str:
    """What kind of YAML value `value` is, for messages: `a mapping`, `nothing (null)`, ..."""
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number"}
    names[float] = "a number"
    if value is None:
        return "nothing (null)"
    return names.get(type(value), f"a {type(value).__name__}")


def shown(key: Any) -> str:
    """A key or value as quoted in a message, cut short when long, never when it holds a password."""
    if isinstance(key, str) and holds_password(key):
        return f"<{HIDDEN}>"
    text = repr(key)
    return text if len(text) <= 70 else text[:60] + "..." + text[-1]


def describe(value: Any) -> str:
    """A value as a message shows it: `the string 'x'`, `the number 5`, `the date 2027-06-30`, ..."""
    if isinstance(value, str):
        return HIDDEN if holds_password(value) else f"the string {shown(value)}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, dt.datetime):
        return f"a date and time ({value.isoformat(' ')})"
    if isinstance(value, dt.date):
        return f"the date {value.isoformat()}"
    return type_name(value)


def _calendar_date(value: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        raise ValueError("expected a date (YYYY-MM-DD), not a date and time")
    return value


Percentage = Annotated[
    Decimal,
    PlainValidator(_percentage),
    # No "multipleOf": 0.01 here: validators that divide binary floats reject 33.33 and 0.07.
    WithJsonSchema(
        {"type": "number", "minimum": 0, "maximum": 100, "description": "0 to 100, at most 2 decimals"}
    ),
]
CalendarDate = Annotated[dt.date, AfterValidator(_calendar_date)]


def _empty_when_null(value: Any) -> Any:
    return {} if value is None else value


EMPTY_WHEN_NULL = BeforeValidator(_empty_when_null)
"""A mapping left empty in YAML (`flags:` with nothing under it is null) means an empty mapping."""

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class FlagDefinition(BaseModel):
    """One flag as defined in flags/*.yaml; the global fields and the default values."""

    model_config = _STRICT

    name: Annotated[str, StringConstraints(min_length=1)]
    description: str = ""
    owner: str | None = None
    enabled: StrictBool = False
    rollout_percentage: Percentage = Decimal(0)
    killed: StrictBool = False
    expires: CalendarDate | None = None
    protected: StrictBool = False
    lint_ignore: dict[str, str] = Field(default_factory=dict)  # lint check code -> why it is suppressed


class FlagsFile(BaseModel):
    """A flags/*.yaml file: a mapping of flag key to definition."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, title="flagops flags file")

    flags: Annotated[dict[FlagKey, FlagDefinition], EMPTY_WHEN_NULL]


class EnvironmentValues(BaseModel):
    """The values of one flag that an environment may set over its definition."""

    model_config = _STRICT

    enabled: StrictBool | None = None
    rollout_percentage: Percentage | None = None
    killed: StrictBool | None = None


ENVIRONMENT_FIELDS: tuple[str, ...] = tuple(EnvironmentValues.model_fields)
"""The fields of a flag an environment may set over its definition (and promote copies)."""


# `${NAME}` anywhere, or a whole `$NAME`: a shell-style variable someone expected to be expanded.
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|^\$([A-Za-z_][A-Za-z0-9_]*)$")


_EnvironmentEntry = Annotated[EnvironmentValues, EMPTY_WHEN_NULL]
_OrgOverrides = Annotated[dict[FlagKey, StrictBool], EMPTY_WHEN_NULL]


class DatabaseConfig(BaseModel):
    """Where an environment's database is: a variable holding the URL, or a password-free URL."""

    model_config = _STRICT

    url_env: Annotated[str, StringConstraints(pattern=ENV_VAR_PATTERN)] | None = None
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _literal(cls, url: str | None) -> str | None:
        if url is not None and has_password(url):
            raise ValueError(
                "a literal database URL must not hold a password; put the URL in a variable"
                " and name it with 'url_env'"
            )
        variable = None if url is None else _VARIABLE.search(url)
        if variable is not None:
            raise ValueError(
                f"'url' is used as written, {variable[0]} is not expanded; to read the URL from"
                f" a variable, write 'url_env: {variable[1] or variable[2]}' instead"
            )
        return url

    @model_validator(mode="after")
    def _one_source(self) -> DatabaseConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of 'url_env' or 'url'")
        return self


class EnvironmentFile(BaseModel):
    """An environments/<name>.yaml file: database, per-environment values and org overrides."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, title="flagops environment file")

    database: DatabaseConfig
    allow_delete: StrictBool = False
    promote_from: Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)] | None = None
    flags: Annotated[dict[FlagKey, _EnvironmentEntry], EMPTY_WHEN_NULL] = Field(default_factory=dict)
    orgs: Annotated[dict[OrgId, _OrgOverrides], EMPTY_WHEN_NULL] = Field(default_factory=dict)


class _FileSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema, naming its dialect and, like validation, refusing keys off the pattern."""

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        return {"$schema": self.schema_dialect, **super().generate(schema, mode)}

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, Decimal):  # a percentage's default is a number, not the string "0"
            return int(dft) if dft == dft.to_integral_value() else float(dft)
        return super().encode_default(dft)

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        generated = super().function_before_schema(schema)
        if schema["function"]["function"] is _empty_when_null:
            return {"anyOf": [generated, {"type": "null"}]}
        return generated

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        generated = super().dict_schema(schema)
        if "patternProperties" in generated:
            generated["additionalProperties"] = False
        return generated


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one file kind ('flags' or 'environment'), from the validating models."""
    model = FlagsFile if kind == "flags" else EnvironmentFile
    return model.model_json_schema(schema_generator=_FileSchema)
