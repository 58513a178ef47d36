"""What the web framework tests share: a database applied once per module, the orgs' expected flags,
and readers that fail or record the thread they run on."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flagops.runtime.client import FlagClient, Lookup
from support import Repo, init_and_apply, scratch_database
from test_rls import ACME, FLAGS, GLOBEX, OVERRIDES

__all__ = ["ACME", "GLOBEX", "NOWHERE", "expected_features"]

NOWHERE = "7d3c9b8a-0f1e-4d2c-9b8a-7f6e5d4c3b2a"
"""An org with no overrides: it sees only call_recording (enabled for everyone)."""

ROUTES = [
    # path, org, status: which org passes which requirement (the flags of tests/test_rls.py)
    ("/calls", GLOBEX, 200),  # call_recording: enabled
    ("/calls", ACME, 403),  # overridden off
    ("/calls", NOWHERE, 200),
    ("/both", GLOBEX, 200),  # lead_scoring (override) and call_recording
    ("/both", ACME, 403),  # neither
    ("/both", NOWHERE, 403),  # call_recording only: lead_scoring's bucket is above 50%
    ("/either", ACME, 200),  # sms_campaigns
    ("/either", GLOBEX, 200),  # call_recording
    ("/sms-and-calls", ACME, 403),  # sms_campaigns on, call_recording off
    ("/sms-and-calls", GLOBEX, 403),  # the other way round
    ("/sms-or-missing", ACME, 200),
    ("/sms-or-missing", GLOBEX, 403),  # sms_campaigns off, the other flag does not exist
    ("/missing", GLOBEX, 403),  # a flag that does not exist is off
]
"""Each app under test routes these paths with these requirements: /calls call_recording; /both all of
lead_scoring and call_recording; /either any of sms_campaigns and call_recording; /sms-and-calls all of
sms_campaigns and call_recording; /sms-or-missing any of sms_campaigns and no_such_flag; /missing
no_such_flag."""


def expected_features(org: str) -> frozenset[str]:
    return {
        ACME: frozenset({"sms_campaigns"}),
        GLOBEX: frozenset({"call_recording", "lead_scoring"}),
        NOWHERE: frozenset({"call_recording"}),
    }[org]


@contextmanager
def applied_database(directory: Path) -> Iterator[str]:
    """A new database that `flags init` and `flags apply` gave the flags and overrides of test_rls."""
    with scratch_database() as url:
        repo = Repo(directory, {"FLAGS_TEST_URL": url, "FLAGS_ACTOR": "tester"})
        repo.configure(FLAGS, OVERRIDES)
        init_and_apply(repo)
        yield url


class BrokenReader:
    """A reader whose every read raises, as a client of some other design might."""

    def lookup(self, org_id: str, flag_key: str) -> Lookup:
        raise ConnectionError("the flag service is unreachable")

    def enabled_flags(self, org_id: str) -> Iterable[str]:
        raise ConnectionError("the flag service is unreachable")


class RecordingReader:
    """A FlagClient wrapper recording the threads its reads run on."""

    def __init__(self, client: FlagClient) -> None:
        self.client = client
        self.threads: list[threading.Thread] = []

    def lookup(self, org_id: str, flag_key: str) -> Lookup:
        self.threads.append(threading.current_thread())
        return self.client.lookup(org_id, flag_key)

    def enabled_flags(self, org_id: str) -> Iterable[str]:
        self.threads.append(threading.current_thread())
        return self.client.enabled_flags(org_id)
