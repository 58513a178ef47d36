"""Read an environment's state, its last apply and the provenance of drift from the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from flagops.db.tables import applies, audit_log, feature_flags
from flagops.plan import Drift
from flagops.state import FlagRow, OverrideKey, State, decode_snapshot

_HUNDREDTH = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class LastApply:
    """The most recent apply of an environment and the state it left."""

    apply_id: str
    finished_at: dt.datetime
    snapshot: State


def _percentage(value: object) -> Decimal:
    return Decimal(str(value if value is not None else 0)).quantize(_HUNDREDTH)


def _date(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def read_state(connection: sa.Connection) -> State:
    """The managed rows as a State: flags through Core, overrides as plain tuples in one SELECT."""
    flags: dict[str, FlagRow] = {}
    columns = feature_flags.c
    query = sa.select(
        columns.flag_key,
        columns.name,
        columns.description,
        columns.owner,
        columns.enabled_globally,
        columns.rollout_percentage,
        columns.killed,
        columns.expires_on,
        columns.protected,
    )
    for key, name, description, owner, enabled, rollout, killed, expires, protected in connection.execute(
        query
    ):
        flags[key] = FlagRow(
            name or "",
            description or "",
            owner,
            bool(enabled),
            _percentage(rollout),
            bool(killed),
            _date(expires),
            bool(protected),
        )
    org_id = "org_id::text" if connection.dialect.name == "postgresql" else "org_id"
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"SELECT flag_key, {org_id}, enabled FROM org_feature_flags")
        rows = cursor.fetchall()
    finally:
        cursor.close()
    overrides: dict[OverrideKey, bool] = {(key, org): bool(on) for key, org, on in rows}
    return State(flags, overrides)


def read_last_apply(connection: sa.Connection, environment: str) -> LastApply | None:
    """The newest apply recorded for `environment`, or None when it was never applied."""
    row = connection.execute(
        sa.select(applies.c.apply_id, applies.c.finished_at, applies.c.snapshot)
        .where(applies.c.environment == environment)
        .order_by(applies.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return LastApply(row.apply_id, row.finished_at, decode_snapshot(row.snapshot))


def with_provenance(connection: sa.Connection, drift: Iterable[Drift], since: dt.datetime) -> list[Drift]:
    """`drift` with who changed each row and when, from the newest audit row not written by apply."""
    entries = list(drift)
    if not entries:
        return entries
    wanted = {(d.flag_key, d.org_id) for d in entries}
    newest: dict[tuple[str, str | None], tuple[str, str, str]] = {}
    query = (
        sa.select(
            audit_log.c.flag_key,
            audit_log.c.org_id,
            audit_log.c.actor,
            audit_log.c.changed_at,
            audit_log.c.source,
        )
        .where(audit_log.c.source != "apply", audit_log.c.changed_at >= since)
        .order_by(audit_log.c.id)
    )
    for flag_key, org_id, actor, changed_at, source in connection.execute(query):
        key = (flag_key, str(org_id) if org_id is not None else None)
        if key in wanted:
            stamp = changed_at.isoformat() if isinstance(changed_at, dt.datetime) else str(changed_at)
            newest[key] = (actor, stamp, source)
    result = []
    for entry in entries:
        found = newest.get((entry.flag_key, entry.org_id))
        if found is not None:
            entry = entry._replace(changed_by=found[0], changed_at=found[1], source=found[2])
        result.append(entry)
    return result
