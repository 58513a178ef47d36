"""Change notifications: one background connection per process and database LISTENs for flag changes.

Migration 0006 makes every statement that changes `feature_flags` or `org_feature_flags` send a
notification naming the flag keys or org ids it touched (see its docstring for the payloads).
`subscribe` hands them, parsed into `Change`s, to callbacks on a daemon thread. Every subscriber of
the same database (host, port, database name) in the process shares that thread and its one
connection, opened with the URL of the oldest subscriber still subscribed.

The thread waits with psycopg's `Connection.notifies`. When the connection fails (the server
restarts, an administrator terminates it) it connects again after a growing, jittered pause
(`BACKOFF_FIRST` doubling up to `BACKOFF_MAX` seconds) and then sends every subscriber
`EVERYTHING` once, since changes made while nobody listened were missed. The first connection
sends `EVERYTHING` too: values a subscriber read before the LISTEN took effect may be older than
the first notification. Subscribers are held weakly: an object that is garbage-collected stops
receiving, and the thread ends (closing its connection) once nobody subscribes.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import URL

from flagops.db.engine import redact, translated

log = logging.getLogger("flagops.runtime.client.listen")

CHANNEL = "flagops_changes"
"""The channel migration 0006's triggers notify."""

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
WAKE = 0.5
"""Seconds the thread waits for a notification before it checks whether it should stop."""


@dataclass(frozen=True, slots=True)
class Change:
    """What one notification says changed: flag keys and org ids; None means every one of them."""

    flags: frozenset[str] | None = frozenset()
    orgs: frozenset[str] | None = frozenset()


EVERYTHING = Change(None, None)
"""Anything may have changed (after a reconnection, or a notification that cannot be read)."""


def parse(payload: str) -> Change:
    """The Change a payload of migration 0006's triggers describes; EVERYTHING for any other text."""
    try:
        data = json.loads(payload)
    except ValueError:
        return EVERYTHING
    if not isinstance(data, dict) or len(data) != 1:
        return EVERYTHING
    [(field, value)] = data.items()
    if field not in ("flags", "orgs"):
        return EVERYTHING
    if value == "*":
        names = None
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = frozenset(value)
    else:
        return EVERYTHING
    return Change(flags=names) if field == "flags" else Change(orgs=names)


Callback = Callable[[Change], None]


class Subscription:
    """One subscriber's hold on its database's listener; `close()` ends it."""

    def __init__(self, listener: _Listener, url: URL, callback: Callback) -> None:
        self._listener = listener
        self.url = url
        self._callback: weakref.WeakMethod[Callback] | Callable[[], Callback] = (
            weakref.WeakMethod(callback) if hasattr(callback, "__self__") else (lambda: callback)
        )
        self.closed = False

    @property
    def listening(self) -> bool:
        """Whether the listener's connection is up and LISTENing (changes then arrive within moments)."""
        return not self.closed and self._listener.listening.is_set()

    def callback(self) -> Callback | None:
        return None if self.closed else self._callback()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._listener.drop(self)


class _Listener:
    """The thread and connection of one database, and its subscribers."""

    def __init__(self, key: tuple[object, ...]) -> None:
        self.key = key
        self.subscribers: list[Subscription] = []
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flagops listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def drop(self, subscription: Subscription) -> None:
        with _registry_lock:
            if subscription in self.subscribers:
                self.subscribers.remove(subscription)
            if not self.subscribers:
                self._stop.set()
                if _registry.get(self.key) is self:
                    del _registry[self.key]

    def _url(self) -> URL | None:
        with _registry_lock:
            live = [s for s in self.subscribers if s.callback() is not None]
            for gone in set(self.subscribers) - set(live):
                gone.closed = True
            self.subscribers = live
            if not live:
                self._stop.set()
                if _registry.get(self.key) is self:
                    del _registry[self.key]
                return None
            return live[0].url

    def _deliver(self, change: Change) -> None:
        with _registry_lock:
            callbacks = [s.callback() for s in self.subscribers]
        for callback in callbacks:
            if callback is None:
                continue
            try:
                callback(change)
            except Exception:  # one subscriber's failure must not stop the others' notifications
                log.exception("flagops: handling a flag change notification failed")

    def _run(self) -> None:
        delay = 0.0
        failing = False
        while not self._stop.is_set():
            url = self._url()
            if url is None:
                break
            try:
                with translated(url, "listening for flag changes"), _connect(url) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if failing:
                        log.info("flagops: listening for flag changes on %s again", redact(url))
                    failing, delay = False, 0.0
                    self._deliver(EVERYTHING)
                    while not self._stop.is_set():
                        for notify in connection.notifies(timeout=WAKE):
                            self._deliver(parse(notify.payload))
                        if self._url() is None:
                            break
            except Exception as exc:  # DatabaseError (password-free), or anything unforeseen
                self.listening.clear()
                if self._stop.is_set():
                    break  # closed while the database went away: nobody needs to hear of it
                if not failing:
                    log.warning(
                        "flagops: not listening for flag changes (%s); values follow the ttl until"
                        " the connection is back",
                        exc,
                    )
                failing = True
            finally:
                self.listening.clear()
            if self._stop.is_set():
                break
            delay = min(BACKOFF_MAX, max(BACKOFF_FIRST, delay * 2))
            self._stop.wait(delay * random.uniform(0.5, 1.0))


def _connect(url: URL) -> psycopg.Connection[tuple[object, ...]]:
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(
        conninfo,
        autocommit=True,
        application_name="flagops listener",
        connect_timeout=10,
        # A peer that vanishes without closing the connection is noticed within about a minute.
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )


_registry: dict[tuple[object, ...], _Listener] = {}
_registry_lock = threading.Lock()


def subscribe(url: URL, callback: Callback) -> Subscription:
    """Call `callback` with each Change of the Postgres database at `url`, on the process's listener
    thread for that database (started on the first subscription). `callback` must return soon and
    never block on the caller's locks for long: every subscriber of the database waits for it."""
    key = (url.host, url.port, url.database)
    with _registry_lock:
        listener = _registry.get(key)
        fresh = listener is None
        if listener is None:
            listener = _registry[key] = _Listener(key)
        subscription = Subscription(listener, url, callback)
        listener.subscribers.append(subscription)
    if fresh:
        listener.start()
    return subscription
