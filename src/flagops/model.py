"""Pydantic models of the two file kinds (flags/*.yaml, environments/*.yaml): validation and JSON Schema."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

FLAG_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
ORG_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ENV_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

FlagKey = Annotated[str, StringConstraints(pattern=FLAG_KEY_PATTERN)]
OrgId = Annotated[str, StringConstraints(pattern=ORG_ID_PATTERN)]

_HUNDREDTH = Decimal("0.01")


def _percentage(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"expected a number from 0 to 100, got {_describe(value)}")
    number = Decimal(str(value))
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(100):
        raise ValueError(f"must be between 0 and 100, got {value}")
    if number != number.quantize(_HUNDREDTH):
        raise ValueError(f"must have at most 2 decimals, got {value}")
    return number.quantize(_HUNDREDTH)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"[:80]


def _calendar_date(value: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        raise ValueError("expected a date (YYYY-MM-DD), not a date and time")
    return value


Percentage = Annotated[
    Decimal,
    PlainValidator(_percentage),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.01}),
]
CalendarDate = Annotated[dt.date, AfterValidator(_calendar_date)]

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
    lint_ignore: list[str] = Field(default_factory=list)


class FlagsFile(BaseModel):
    """A flags/*.yaml file: a mapping of flag key to definition."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, title="flagops flags file")

    flags: dict[FlagKey, FlagDefinition]


class EnvironmentValues(BaseModel):
    """The values of one flag that an environment may set over its definition."""

    model_config = _STRICT

    enabled: StrictBool | None = None
    rollout_percentage: Percentage | None = None
    killed: StrictBool | None = None


def has_password(url: str) -> bool:
    """True when a database URL carries a password, in its userinfo or its query string."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return False
    query = {k.lower() for k in parse_qs(parts.query)}
    return bool(password) or "password" in query


class DatabaseConfig(BaseModel):
    """Where an environment's database is: a variable holding the URL, or a password-free URL."""

    model_config = _STRICT

    url_env: Annotated[str, StringConstraints(pattern=ENV_VAR_PATTERN)] | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatabaseConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of 'url_env' or 'url'")
        if self.url is not None and has_password(self.url):
            raise ValueError(
                "a literal database URL must not hold a password; put the URL in a variable"
                " and name it with 'url_env'"
            )
        return self


class EnvironmentFile(BaseModel):
    """An environments/<name>.yaml file: database, per-environment values and org overrides."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, title="flagops environment file")

    database: DatabaseConfig
    allow_delete: StrictBool = False
    promote_from: Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)] | None = None
    flags: dict[FlagKey, EnvironmentValues] = Field(default_factory=dict)
    orgs: dict[OrgId, dict[FlagKey, StrictBool]] = Field(default_factory=dict)


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one file kind ('flags' or 'environment'), from the validating models."""
    model = FlagsFile if kind == "flags" else EnvironmentFile
    return model.model_json_schema()


def is_flag_key(value: str) -> bool:
    """True when `value` is a valid flag key."""
    return re.fullmatch(FLAG_KEY_PATTERN, value) is not None
