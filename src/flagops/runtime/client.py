"""FlagClient: what an application calls to read flags, cached per org, thread-safe, never raising on outages.

Each org's view (every flag's rule and that org's overrides) is read with one SELECT (on Postgres
after setting `app.org_id` in the same transaction) the first time the org is asked about and
again once it is `ttl` seconds old; calls in between are answered from memory. The flag rules are
held once for every org (the newest read of them counts), so memory is one copy of the flags plus
under 1 KB per cached org (measured: 10,000 orgs with three overrides each, about 4 MB); at most
`max_orgs` orgs are kept, the least recently used go first.

Reading per org rather than the whole table keeps memory to the orgs the process serves and works
under row-level security: the read sets `app.org_id`, so a role such as `flagops_reader` sees that
org's overrides and nothing else.

On Postgres the client also listens for changes (`flagops.db.listen`: one background connection
per process and database, shared by every client): a change to some flags re-reads those flags,
a change to an org's overrides re-reads that org if it is cached, each once, on the listener's
thread, so a `flags kill` or an apply reaches the cached values within moments instead of at the
end of the ttl. Calls never wait for the listener: they take the client's lock only to look up and
store entries. When the listener cannot connect (or a connection pooler in transaction mode swallows
the notifications) the ttl is what brings changes, as without it; after a lost connection the
listener reconnects with backoff and every cached value is read again once.

When the database cannot be read the client serves the last values it read (false / nothing for an
org it never read), tries again after `retry` seconds (one read for all orgs, so an outage costs
the application at most one `timeout` per `retry` interval), and logs one warning per outage on
the `flagops.runtime.client` logger (and one info line when reads work again).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import NamedTuple

from flagops.db.engine import parse_url, redact
from flagops.db.listen import Change, Subscription, subscribe
from flagops.db.runtime import OrgFlags, fetch_flags, fetch_org, reader_engine
from flagops.errors import DatabaseError
from flagops.runtime.rollout import Evaluation, FlagRule, evaluate_rule, normalise_org_id

log = logging.getLogger("flagops.runtime.client")


class CacheStats(NamedTuple):
    """Calls answered from memory, calls that needed a refresh (a read, unless an outage holds reads
    back for `retry` seconds), and orgs held."""

    hits: int
    misses: int
    size: int


class Lookup(NamedTuple):
    """One flag for one org, as the client knows it.

    `evaluation` is None when the flag does not exist, or when nothing could be read for the org
    (`loaded` is then False). `stale` is True when the values are past their ttl because the
    database could not be read.
    """

    evaluation: Evaluation | None
    loaded: bool
    stale: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    loaded: bool  # False: nothing was ever read for this org
    overrides: Mapping[str, bool]
    expires: float
    stale: bool
    seq: int  # the client's sequence number when the read began (0: never read)


_NO_RULES: Mapping[str, FlagRule] = {}


class FlagClient:
    """Flag values for applications, read from a flagops database (Postgres or SQLite).

    `url` is a SQLAlchemy or libpq style URL (postgresql://user@host/db). Org ids are UUIDs in any
    spelling Postgres accepts; anything else raises ValueError, the only exception the reading
    methods raise. `listen=False` turns change notifications off (the ttl alone then refreshes).
    """

    def __init__(
        self,
        url: str,
        ttl: float = 300,
        *,
        timeout: float = 5.0,
        retry: float = 30.0,
        max_orgs: int = 10_000,
        listen: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or retry < 0 or max_orgs < 1 or timeout <= 0:
            raise ValueError("ttl and retry must be >= 0, timeout > 0 and max_orgs >= 1")
        parsed = parse_url(url)
        self._engine = reader_engine(parsed, timeout=timeout)
        self._where = redact(parsed)
        self._ttl = float(ttl)
        self._retry = min(float(retry), self._ttl)
        self._max_orgs = max_orgs
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._rules: Mapping[str, FlagRule] = _NO_RULES
        # Every read and every notified change takes the next number, so that a read that began
        # before a change was notified can be told from one that began after it.
        self._seq = 0
        self._rules_seq = 0  # the number of the read the rules come from
        self._notified = 0  # the number of the last change notified
        self._hits = 0
        self._misses = 0
        self._failing = False
        self._retry_at = 0.0  # while the database is failing, no read is tried before this time
        self._subscription: Subscription | None = None
        if listen and parsed.get_backend_name() == "postgresql":
            self._subscription = subscribe(parsed, self._changed)

    # -- the application's API ------------------------------------------------------------------

    def is_enabled(self, org_id: str | uuid.UUID, flag_key: str) -> bool:
        """Whether the org sees the flag; False for an unknown flag or when nothing could be read."""
        evaluation = self.lookup(org_id, flag_key).evaluation
        return evaluation is not None and evaluation.value

    def enabled_flags(self, org_id: str | uuid.UUID) -> list[str]:
        """The keys of the flags the org sees, sorted; empty when nothing could be read."""
        org = normalise_org_id(org_id)
        entry, rules = self._entry(org)
        if not entry.loaded:
            return []
        return sorted(
            key
            for key, rule in rules.items()
            if evaluate_rule(key, org, rule, entry.overrides.get(key)).value
        )

    def lookup(self, org_id: str | uuid.UUID, flag_key: str) -> Lookup:
        """The flag's value for the org with the reason, and how current the client's values are."""
        org = normalise_org_id(org_id)
        entry, rules = self._entry(org)
        if not entry.loaded:
            return Lookup(None, False, entry.stale)
        rule = rules.get(flag_key)
        if rule is None:
            return Lookup(None, True, entry.stale)
        return Lookup(evaluate_rule(flag_key, org, rule, entry.overrides.get(flag_key)), True, entry.stale)

    @property
    def listening(self) -> bool:
        """Whether changes are being notified right now (False on SQLite, with `listen=False`,
        after `close()`, and while the listener's connection is down: the ttl applies then)."""
        return self._subscription is not None and self._subscription.listening

    def clear_cache(self) -> None:
        """Forget every org's values: the next call for an org reads the database (counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._rules = _NO_RULES
            self._rules_seq = 0

    def cache_stats(self) -> CacheStats:
        """Hits (answered from memory), misses (needed a refresh) and size (orgs held)."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries))

    def close(self) -> None:
        """Stop listening for changes and close the client's database connections (a later call
        opens new ones, and values then follow the ttl)."""
        if self._subscription is not None:
            self._subscription.close()
        self._engine.dispose()

    def __enter__(self) -> FlagClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the cache ------------------------------------------------------------------------------

    def _fresh(self, org: str) -> _Entry | None:
        """The org's entry when it is still current (counted as a hit); call with the lock held."""
        entry = self._entries.get(org)
        if entry is None or entry.expires <= self._clock():
            return None
        self._hits += 1
        self._entries.move_to_end(org)
        return entry

    def _next(self) -> int:
        """The next sequence number; call with the lock held."""
        self._seq += 1
        return self._seq

    def _entry(self, org: str) -> tuple[_Entry, Mapping[str, FlagRule]]:
        """The org's entry, read first when it is missing or old, and the flag rules to use with it."""
        with self._lock:
            entry = self._fresh(org)
            if entry is not None:
                return entry, self._rules
            gate = self._loading.setdefault(org, threading.Lock())
        with gate:  # one refresh per org at a time; other orgs are not held up
            with self._lock:
                entry = self._fresh(org)
                if entry is not None:
                    return entry, self._rules
                self._misses += 1
                seq = self._next()
            read = self._read(org) if self._clock() >= self._retry_at else None
            with self._lock:
                self._loading.pop(org, None)
                if read is not None:
                    return self._store(org, seq, read, use=True), self._rules
                previous = self._entries.get(org)
                if previous is not None:
                    entry = _Entry(
                        previous.loaded, previous.overrides, self._clock() + self._retry, True, previous.seq
                    )
                else:
                    entry = _Entry(False, {}, self._clock() + self._retry, True, 0)
                self._entries[org] = entry
                self._entries.move_to_end(org)
                self._trim()
            return entry, self._rules

    def _store(self, org: str, seq: int, read: OrgFlags, *, use: bool) -> _Entry:
        """Keep what the read numbered `seq` found for `org` (a call's read when `use`, which marks
        the org as just used); call with the lock held. A read never replaces what a read that
        began after it stored, and values read before a change was notified are kept only until
        the next call, which reads again."""
        if seq > self._rules_seq:
            if read.rules != self._rules:
                self._rules = read.rules
            self._rules_seq = seq
        entry = self._entries.get(org)
        if entry is None or entry.seq < seq or not entry.loaded or entry.stale:
            now = self._clock()
            entry = _Entry(True, read.overrides, now if self._notified > seq else now + self._ttl, False, seq)
            self._entries[org] = entry
        if use:
            self._entries.move_to_end(org)
            self._trim()
        return entry

    def _trim(self) -> None:
        while len(self._entries) > self._max_orgs:
            self._entries.popitem(last=False)

    def _read(self, org: str) -> OrgFlags | None:
        try:
            read = fetch_org(self._engine, org)
        except DatabaseError as exc:
            self._failed(str(exc))
            return None
        except Exception as exc:  # an application must never see a flag read fail
            self._failed(f"{type(exc).__name__}: {exc}")
            return None
        with self._lock:
            recovered, self._failing = self._failing, False
        if recovered:
            log.info("flagops: reading flags from %s again", self._where)
        return read

    def _failed(self, message: str) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
            self._retry_at = self._clock() + self._retry
        if first:
            log.warning(
                "flagops: cannot read flags (%s); serving the last values read (false where none were),"
                " retrying every %gs",
                message,
                self._retry,
            )

    # -- change notifications (on the listener's thread) -------------------------------------------

    def _changed(self, change: Change) -> None:
        """Read again what `change` names of what the client holds: the flags named, and the cached
        orgs named (all of them most recently used first). What cannot be read is left to the next
        call: it reads the database again."""
        with self._lock:
            self._notified = self._next()
            if not self._entries:
                return
            if change.orgs is None:
                orgs = list(reversed(self._entries))
            else:
                orgs = [org for org in sorted(change.orgs) if org in self._entries]
        if change.flags is None or change.flags:
            self._refresh_flags(change.flags)
        for done, org in enumerate(orgs):
            if not self._refresh_org(org):
                # The database is failing: do not wait on it once per org; each org left reads
                # again on its next call (which the retry interval paces).
                for rest in orgs[done + 1 :]:
                    self._expire(rest)
                return

    def _refresh_flags(self, keys: frozenset[str] | None) -> None:
        with self._lock:
            seq = self._next()
        try:
            fresh = fetch_flags(self._engine, keys)
        except Exception:  # the database is failing: every org reads again on its next call
            self._expire(None)
            return
        with self._lock:
            if seq <= self._rules_seq:
                return  # a read that began after this one, so after the change, stored every rule
            if keys is None:
                rules = fresh
            else:
                rules = {key: rule for key, rule in self._rules.items() if key not in keys}
                rules.update(fresh)
            self._rules = rules
            self._rules_seq = seq

    def _refresh_org(self, org: str) -> bool:
        """Read `org` again; False when the database could not be read (the org then expires)."""
        with self._lock:
            if org not in self._entries:
                return True  # dropped meanwhile: the next call reads it
            seq = self._next()
        try:
            read = fetch_org(self._engine, org)
        except Exception:
            self._expire(org)
            return False
        with self._lock:
            if org in self._entries:
                self._store(org, seq, read, use=False)
        return True

    def _expire(self, org: str | None) -> None:
        """Make the next call for `org` (for every org when None) read the database."""
        now = self._clock()
        with self._lock:
            for key in list(self._entries) if org is None else [org]:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries[key] = replace(entry, expires=now)
