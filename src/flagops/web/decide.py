"""What route protection decides for a request, the same for every web framework: pass, 401, 403/404 or 503.

`flagops.web.asgi` (Starlette, FastAPI) and `flagops.web.wsgi` (Flask) only resolve the org from the
request and turn a `Verdict` into their framework's response; the rules are here (docs/web.md):

- no org id (None or ""), or one the reader refuses as not a UUID: `Verdict.NO_ORG` (401);
- every required flag on (`require_all`), or at least one (`require_any`): `Verdict.ALLOW`;
- otherwise `Verdict.DENY` (403, or 404 when the application asks); a flag that does not exist is off;
- nothing could ever be read for the org (the database was down when the org was first asked about)
  or the reader raised: `Verdict.UNAVAILABLE` (503). When the reader has values from before an
  outage, it serves them (FlagClient's stale-on-error rule) and the route follows them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from flagops.config.keys import FLAG_KEY_RULE, is_flag_key

log = logging.getLogger("flagops.web")

OrgId = str | uuid.UUID
"""What an application's org resolver returns for an identified org."""


class _Evaluation(Protocol):
    @property
    def value(self) -> bool: ...


class _Lookup(Protocol):
    @property
    def evaluation(self) -> _Evaluation | None: ...

    @property
    def loaded(self) -> bool: ...


class FlagReader(Protocol):
    """What route protection needs of a flag client; `flagops.runtime.client.FlagClient` is one.

    `lookup(org, key)` returns the flag's evaluation (None for an unknown flag) and whether anything
    was ever read for the org (`loaded`); `enabled_flags(org)` the keys the org sees. Both raise
    ValueError for an org id that is not a UUID.
    """

    def lookup(self, org_id: str, flag_key: str, /) -> _Lookup: ...

    def enabled_flags(self, org_id: str, /) -> Iterable[str]: ...


class Verdict(Enum):
    ALLOW = "allow"
    NO_ORG = "no org"
    DENY = "deny"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Requirement:
    """Flags a route needs: all of them (`every`) or any one."""

    keys: tuple[str, ...]
    every: bool

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("name at least one flag key")
        for key in self.keys:
            if not isinstance(key, str) or not is_flag_key(key):
                raise ValueError(f"{key!r} is not a flag key ({FLAG_KEY_RULE})")


def refusals(denied_status: int = 403) -> Mapping[Verdict, int]:
    """The HTTP status of each verdict but ALLOW: 401, `denied_status` (403 or 404, else
    ValueError) and 503."""
    if denied_status not in (403, 404):
        raise ValueError(f"denied_status must be 403 or 404, not {denied_status!r}")
    return {Verdict.NO_ORG: 401, Verdict.DENY: denied_status, Verdict.UNAVAILABLE: 503}


def _org(org_id: OrgId | None) -> str | None:
    if org_id is None or org_id == "":
        return None
    return str(org_id)


def decide(reader: FlagReader, org_id: OrgId | None, requirement: Requirement) -> Verdict:
    """Whether the org may use a route that needs `requirement` (see the module's rules)."""
    org = _org(org_id)
    if org is None:
        return Verdict.NO_ORG
    try:
        for key in requirement.keys:
            found = reader.lookup(org, key)
            if not found.loaded:
                return Verdict.UNAVAILABLE
            on = found.evaluation is not None and found.evaluation.value
            if on != requirement.every:  # an off flag settles `all`, an on flag settles `any`
                return Verdict.ALLOW if on else Verdict.DENY
    except ValueError:
        return Verdict.NO_ORG
    except Exception:
        log.exception("flagops: reading flags for route protection failed; answering 503")
        return Verdict.UNAVAILABLE
    return Verdict.ALLOW if requirement.every else Verdict.DENY


def features(reader: FlagReader, org_id: OrgId | None) -> frozenset[str]:
    """The keys of the flags the org sees; empty without an org, for an org id that is not a UUID,
    when nothing could ever be read for the org, and when the reader raises (logged)."""
    org = _org(org_id)
    if org is None:
        return frozenset()
    try:
        return frozenset(reader.enabled_flags(org))
    except ValueError:
        return frozenset()
    except Exception:
        log.exception("flagops: reading the enabled flags failed; attaching none")
        return frozenset()
