"""Secrets: a database password never shows in output, errors, plan files, audit rows or logs."""

from __future__ import annotations

import json
import logging
import re
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from harness import PASSWORD, dump, with_password

from flagops.config.load import load_config
from flagops.config.sources import read_sources
from flagops.errors import ConfigError
from support import database_name, execute, finish, spawn

ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ENCODED = "S3cr%40t%3Apw%2F"
DECODED = "S3cr@t:pw/"
SECRETS = (PASSWORD, ENCODED, DECODED)
LOADER_CASES = Path(__file__).resolve().parent.parent / "loader_cases"
PLANTED = re.compile(r"s3cr3t[\w-]*|hunter2", re.IGNORECASE)
"""A password planted in a loader case: every one starts with s3cr3t (or is hunter2)."""


def _commands(plan_file: Path) -> list[list[str]]:
    """Every command that opens the environment's database."""
    return [
        ["init", "--env", "test"],
        ["plan", "--env", "test", "--out", str(plan_file)],
        ["plan", "--env", "test", "--format", "markdown"],
        ["apply", "--env", "test", str(plan_file)],
        ["apply", "--env", "test", "--auto-approve"],
        ["history", "--env", "test"],
        ["kill", "lead_scoring", "--env", "test", "--reason", "incident"],
        ["eval", "--env", "test", "--org", ORG, "--live"],
        ["import", "--env", "test"],
    ]


def _no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text)


UNREACHABLE = {
    "closed-port": (
        f"postgresql://flagops:{PASSWORD}@127.0.0.1:1/flags",
        'connection to server at "127.0.0.1", port 1 failed: Connection refused'
        " Is the server running on that host and accepting TCP/IP connections?"
        " (postgresql+psycopg://flagops:***@127.0.0.1:1/flags)",
    ),
    "password-in-query": (
        f"postgresql://flagops@127.0.0.1:1/flags?password={PASSWORD}",
        'connection to server at "127.0.0.1", port 1 failed: Connection refused'
        " Is the server running on that host and accepting TCP/IP connections?"
        " (postgresql+psycopg://flagops@127.0.0.1:1/flags?password=***)",
    ),
    "percent-encoded": (
        f"postgresql://flagops:{ENCODED}@127.0.0.1:1/flags",
        'connection to server at "127.0.0.1", port 1 failed: Connection refused'
        " Is the server running on that host and accepting TCP/IP connections?"
        " (postgresql+psycopg://flagops:***@127.0.0.1:1/flags)",
    ),
    "unknown-host": (
        f"postgresql://flagops:{PASSWORD}@flagops-no-such-host.invalid:5432/flags",
        "failed to resolve host 'flagops-no-such-host.invalid': [Errno -2] Name or service not known"
        " (postgresql+psycopg://flagops:***@flagops-no-such-host.invalid:5432/flags)",
    ),
    "unknown-database": (
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/flagops_no_such_database",
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "flagops_no_such_database"'
        " does not exist (postgresql+psycopg://postgres:***@127.0.0.1:5432/flagops_no_such_database)",
    ),
    "unknown-role": (
        f"postgresql://flagops_no_such_role:{PASSWORD}@127.0.0.1:5432/postgres",
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  role "flagops_no_such_role"'
        " does not exist (postgresql+psycopg://flagops_no_such_role:***@127.0.0.1:5432/postgres)",
    ),
}
ACTIONS = {
    "init": "initialising environment test",
    "plan": "reading environment test",
    "apply": "reading environment test",
    "history": "reading the history of environment test",
    "kill": "killing flag lead_scoring in environment test",
    "eval": "reading environment test",
    "import": "reading environment test",
}


@pytest.mark.parametrize(("url", "message"), UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_connection_errors_never_show_the_password(
    make_repo: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str, message: str
) -> None:
    """Connection errors (nothing listening, no such host, database or role) are one line, password
    masked, in every command; the test server trusts 127.0.0.1, so see the fake server below for a
    refused password."""
    caplog.set_level(logging.DEBUG)
    repo = make_repo(url)
    for command in _commands(tmp_path / "plan.json"):
        if command[0] == "apply" and len(command) == 4:
            continue  # no plan file can be made without a database
        result = repo.flags(*command)
        action = ACTIONS[command[0]]
        prefix = "connection failed: " if "resolve host" not in message else ""
        assert (result.exit_code, result.stdout, result.stderr) == (
            1,
            "",
            f"{action}: {prefix}{message}\n",
        ), command
    _no_secret(caplog.text)


@dataclass
class FakeServer:
    """A Postgres look-alike on 127.0.0.1 that asks for a password and refuses it."""

    echo: bool
    port: int = 0
    received: list[str] = field(default_factory=list)


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _serve(server: FakeServer, conn: socket.socket) -> None:
    with conn:
        try:
            while True:  # SSL and GSS encryption requests are declined, then comes the startup packet
                (length,) = struct.unpack("!I", _read(conn, 4))
                body = _read(conn, length - 4)
                if struct.unpack("!I", body[:4])[0] in (80877103, 80877104):
                    conn.sendall(b"N")
                    continue
                break
            params = body[4:].split(b"\0")
            user = dict(zip(params[::2], params[1::2], strict=False)).get(b"user", b"?").decode()
            conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
            _kind, length = struct.unpack("!cI", _read(conn, 5))
            password = _read(conn, length - 4).rstrip(b"\0").decode()
            server.received.append(password)
            text = f'password authentication failed for user "{user}"'
            if server.echo:
                text += f' (got "{password}", a hostile server echoing it)'
            fields = b"SFATAL\0VFATAL\0C28P01\0M" + text.encode() + b"\0\0"
            conn.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)
        except (ConnectionError, OSError, struct.error):
            pass


@pytest.fixture(params=[False, True], ids=["refusing", "echoing"])
def fake_server(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    server = FakeServer(echo=request.param)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            _serve(server, self.request)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as listener:
        listener.daemon_threads = True
        server.port = listener.server_address[1]
        thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            listener.shutdown()
            thread.join()


def test_a_wrong_password_is_refused_in_one_line_without_the_password(
    fake_server: FakeServer, make_repo: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that wants a password refuses it: the client really sent it, no output shows it, not
    even when the server quotes it back in its error message."""
    caplog.set_level(logging.DEBUG)
    port = fake_server.port
    repo = make_repo(f"postgresql://flagops:{PASSWORD}@127.0.0.1:{port}/flags")
    refused = 'password authentication failed for user "flagops"'
    if fake_server.echo:
        refused += ' (got "***", a hostile server echoing it)'
    for command in _commands(tmp_path / "plan.json"):
        if command[0] == "apply" and len(command) == 4:
            continue
        result = repo.flags(*command)
        assert (result.exit_code, result.stdout) == (1, ""), command
        assert result.stderr == (
            f"{ACTIONS[command[0]]}: connection failed:"
            f' connection to server at "127.0.0.1", port {port} failed: FATAL:  {refused}'
            f" (postgresql+psycopg://flagops:***@127.0.0.1:{port}/flags)\n"
        ), command
    assert fake_server.received and set(fake_server.received) == {PASSWORD}
    _no_secret(caplog.text)
    # As a real process too: stderr is one line, no traceback, no password.
    code, out, err = finish(spawn(repo.path, "plan", "--env", "test", env=repo.env))
    assert (code, out, err.count("\n")) == (1, "", 1)
    _no_secret(err)


def test_a_working_password_url_leaves_no_trace(
    pg_url: str, make_repo: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every command run with a password in its URL (the server trusts 127.0.0.1 and ignores it): the
    output, the saved plan, every table flagops writes and the log records hold no password."""
    caplog.set_level(logging.DEBUG)
    repo = make_repo(with_password(pg_url), env_body=f"orgs:\n  {ORG}:\n    sms_campaigns: true\n")
    plan_file = tmp_path / "plan.json"
    outputs = []
    for command in _commands(plan_file):
        result = repo.flags(*command)
        assert result.exit_code == 0, (command, result.output)
        outputs.append(result.output)
    # Errors after the connection is made: a stale plan, a statement the server refuses mid-apply.
    execute(pg_url, "UPDATE feature_flags SET rollout_percentage = 1 WHERE flag_key = 'sms_campaigns'")
    stale = repo.flags("apply", "--env", "test", str(plan_file))
    assert stale.exit_code == 3, stale.output
    execute(
        pg_url,
        "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'refused by a test trigger'; END $$",
        "CREATE TRIGGER test_refuse BEFORE UPDATE ON feature_flags"
        " FOR EACH ROW EXECUTE FUNCTION test_refuse()",
    )
    before = dump(pg_url)
    code, out, err = finish(
        spawn(repo.path, "apply", "--env", "test", "--auto-approve", "--overwrite-drift", env=repo.env)
    )
    assert (code, err) == (
        1,
        "applying to environment test: refused by a test trigger"
        f" (postgresql+psycopg://postgres:***@127.0.0.1:5432/{database_name(pg_url)})\n",
    ), out
    assert dump(pg_url) == before
    _no_secret(*outputs, stale.output, out, plan_file.read_text(), caplog.text, repr(before))
    assert caplog.records, "SQLAlchemy logs at DEBUG: the check above saw real log records"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://flagops:{PASSWORD}@db.internal/flags",
        f"postgresql://flagops@db.internal/flags?password={PASSWORD}",
        f"host=db.internal user=flagops password={PASSWORD}",
        # libpq reads these as passwords although a URL parser ends the host part at # or ?
        "postgresql://flagops:p#ss@db.internal/flags",
        "postgresql://flagops:p?ss@db.internal/flags",
        "postgresql://flagops:p@ss@db.internal/flags",
    ],
)
def test_a_literal_url_with_a_password_is_refused_by_validate(make_repo: Any, url: str) -> None:
    repo = make_repo("unused")
    repo.write("environments/test.yaml", f"database:\n  url: '{url}'\n")
    result = repo.flags("validate")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "environments/test.yaml:2:8: database.url: a literal database URL must not hold a password;"
        " put the URL in a variable and name it with 'url_env'\n",
    )


@pytest.mark.parametrize(
    "url",
    [f"postgresql://flagops:{PASSWORD}@127.0.0.1:1/flags", f"host=127.0.0.1 port=1 password={PASSWORD}"],
)
def test_a_saved_plan_naming_a_url_with_a_password_is_refused(
    pg_url: str, make_repo: Any, tmp_path: Path, url: str
) -> None:
    """A saved plan records its database settings, but apply takes them from the environment file:
    one edited to hold a password is refused (exit 3) without connecting to it or repeating it."""
    repo = make_repo(pg_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    plan = json.loads(saved.read_text())
    plan["settings"]["database"] = {"url": url}
    saved.write_text(json.dumps(plan))
    result = repo.flags("apply", "--env", "test", str(saved))
    assert (result.exit_code, result.stdout, result.stderr) == (
        3,
        "",
        "the saved plan is not what the configuration and the database produce now (settings: not those"
        " of environments/test.yaml now); nothing was written. Run flags plan again.\n",
    )
    _no_secret(result.output)


# -- validation ---------------------------------------------------------------------------------------


def _case_files(case: Path) -> list[Path]:
    return sorted(p for p in case.rglob("*") if p.is_file() and p.name != "expected.txt")


def _planted(case: Path) -> set[str]:
    found: set[str] = set()
    for path in _case_files(case):
        found.update(PLANTED.findall(path.read_bytes().decode("utf-8", errors="replace")))
    return found


def test_no_validation_message_of_any_loader_case_holds_a_planted_password() -> None:
    """Every message the loader gives for every case folder: none repeats a password planted in the
    case's files, wherever it was planted (a URL, url_env, a key, a wrong-typed value, a tag, a
    repeated key, a value long enough to be cut short)."""
    cases = sorted(p for kind in ("valid", "invalid") for p in (LOADER_CASES / kind).iterdir() if p.is_dir())
    planted_in = {case.name: _planted(case) for case in cases}
    messages = 0
    for case in cases:
        try:
            load_config(read_sources(case))
            continue
        except ConfigError as exc:
            lines = exc.lines()
        messages += len(lines)
        for line in lines:
            for secret in planted_in[case.name]:
                assert secret.lower() not in line.lower(), (case.name, line)
            assert PLANTED.search(line) is None, (case.name, line)
    # The check saw the planted passwords and the messages about them.
    assert len(planted_in["secrets_in_values"]) >= 19
    assert {"url_password", "several_files"} <= {name for name, found in planted_in.items() if found}
    assert messages > 150


def test_a_url_in_url_env_is_reported_with_the_hint_and_without_its_password(make_repo: Any) -> None:
    repo = make_repo("unused")
    repo.write("environments/test.yaml", "database:\n  url_env: postgresql://flags:s3cretpw@db/flags\n")
    result = repo.flags("validate")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "environments/test.yaml:2:12: database.url_env: names the environment variable that holds the"
        " database URL, not the URL itself; got a URL with a password (not shown); put the URL in a"
        " variable and write the variable's name here\n",
    )


def test_validate_prints_no_planted_password_of_the_secrets_case() -> None:
    """The same case through the command as a user runs it: stdout and stderr, as a real process."""
    case = LOADER_CASES / "invalid" / "secrets_in_values"
    code, out, err = finish(spawn(case, "validate", env={}))
    assert (code, out) == (1, ""), err
    assert err == (case / "expected.txt").read_text(encoding="utf-8")
    assert PLANTED.search(out + err) is None
