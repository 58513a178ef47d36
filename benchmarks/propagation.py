"""How fast a change reaches running applications: FlagClients in separate processes, warm, 300 s ttl.

Usage: python benchmarks/propagation.py [--small] [--clients N] [--rounds N] [--json FILE]
Loads the benchmark dataset (benchmarks/generate.py) plus two flags of its own into a scratch
Postgres database, starts N client processes (default 20), each a FlagClient with a 300 s ttl
holding the values of --warm orgs (default 100) and asking for two flags of one org every
millisecond, then repeats (default 20 rounds):
- `flags kill propagation_kill`: the kill reaches every client;
- a normal `flags apply --auto-approve --overwrite-drift` of an edit that turns `propagation_apply`
  on (off in the next round) and restores the killed flag: the apply reaches every client.
A change's latency is from its commit (when a LISTEN connection of this script receives its
notification) to the moment a client first serves the new value; reported as p50 / p99 / max over
every client and round, and as p50 / p99 of each round's slowest client. Also counted: the
changes every client served within 1 s. Clocks: CLOCK_MONOTONIC, shared by the processes.
Needs FLAGS_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres): a user
that may create databases; the benchmark creates and drops its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import write_repo  # noqa: E402
from run import FLAGS, PYTHON, Databases  # noqa: E402

KILL_FLAG = "propagation_kill"
APPLY_FLAG = "propagation_apply"
TTL = 300.0
POLL = 0.001
WITHIN = 1.0
READY = 900.0
"""Seconds the clients may take to start, connect and read their orgs (a loaded machine is slow)."""
WAIT = 30.0
"""Seconds a round waits for every client; a client that has not served the change by then counts
as never (its latency is infinite)."""


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# -- a client process --------------------------------------------------------------------------------


def worker(url: str, org: str, warm: list[str]) -> None:
    """Serve KILL_FLAG and APPLY_FLAG for `org` every POLL seconds; print each change it serves."""
    from flagops.runtime.client import FlagClient

    client = FlagClient(url, ttl=TTL)
    deadline = now() + WAIT
    while not client.listening and now() < deadline:
        time.sleep(0.01)
    for other in warm:
        client.enabled_flags(other)
    last = (client.is_enabled(org, KILL_FLAG), client.is_enabled(org, APPLY_FLAG))
    print(f"ready {int(client.listening)} {int(last[0])} {int(last[1])}", flush=True)
    parent = os.getppid()
    while os.getppid() == parent:  # ends with the benchmark
        served = (client.is_enabled(org, KILL_FLAG), client.is_enabled(org, APPLY_FLAG))
        if served != last:
            seen = now()
            for flag, before, after in zip((KILL_FLAG, APPLY_FLAG), last, served, strict=True):
                if before != after:
                    print(f"{flag} {int(after)} {seen:.6f}", flush=True)
            last = served
        time.sleep(POLL)


# -- the measurement ---------------------------------------------------------------------------------


@dataclass
class Summary:
    change: str
    rounds: int
    clients: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    slowest_p50_ms: float
    slowest_p99_ms: float
    rounds_all_within_1s: int
    command_p50_s: float


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Clients:
    """The client processes and what they print."""

    def __init__(self, url: str, orgs: list[str], count: int, warm: int) -> None:
        self.events: queue.Queue[tuple[int, str, bool, float]] = queue.Queue()
        self.log: list[tuple[int, str, bool, float]] = []
        self.processes: list[subprocess.Popen[str]] = []
        self.ready: queue.Queue[tuple[int, str]] = queue.Queue()
        for n in range(count):
            chunk = orgs[(n * warm) % len(orgs) :][:warm]
            process = subprocess.Popen(
                [PYTHON, __file__, "--worker", url, orgs[n % len(orgs)], *chunk],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.processes.append(process)
            threading.Thread(target=self._read, args=(n, process, self.ready), daemon=True).start()

    def wait_ready(self) -> None:
        """Wait until every client holds its orgs and listens (SystemExit when one does not)."""
        for _ in self.processes:
            try:
                n, line = self.ready.get(timeout=READY)
            except queue.Empty:
                raise SystemExit(f"a client was not ready within {READY:g}s") from None
            listening, kill_on, _apply_on = line.split()[1:]
            if listening != "1" or kill_on != "1":
                raise SystemExit(f"client {n} is not listening or does not serve {KILL_FLAG}: {line}")

    def _read(self, n: int, process: subprocess.Popen[str], ready: queue.Queue[tuple[int, str]]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("ready"):
                ready.put((n, line))
                continue
            flag, value, seen = line.split()
            self.events.put((n, flag, value == "1", float(seen)))

    def wait(self, flag: str, value: bool, started: float, committed: float) -> list[float]:
        """Each client's latency (s) from `committed` to serving `flag` = `value` (the first time
        after `started`; inf when not within WAIT). Within the clocks' precision a client may see the
        change before this script's own LISTEN connection does: a latency can be a little below 0."""
        seen: dict[int, float] = {}
        deadline = now() + WAIT
        while True:
            while True:
                try:
                    self.log.append(self.events.get_nowait())
                except queue.Empty:
                    break
            for n, got_flag, got_value, at in self.log:
                if (got_flag, got_value) == (flag, value) and at >= started and n not in seen:
                    seen[n] = at - committed
            if len(seen) == len(self.processes) or now() > deadline:
                return [seen.get(n, math.inf) for n in range(len(self.processes))]
            time.sleep(0.005)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


class Commits:
    """A LISTEN connection of this script's own, on a thread: when each notification arrived, which is
    when the transaction that sent it committed (give or take the network's delay)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.arrivals: queue.Queue[float] = queue.Queue()
        self._stop = threading.Event()
        self._connection = psycopg.connect(url, autocommit=True)
        self._connection.execute("LISTEN flagops_changes")
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error):
            while not self._stop.is_set():
                for _notify in self._connection.notifies(timeout=0.2):
                    self.arrivals.put(now())
        self._connection.close()

    def run(self, args: list[str], env: dict[str, str]) -> tuple[float, float, float]:
        """Run `flags ARGS`: (when it started, its wall time, when its change was committed)."""
        while not self.arrivals.empty():
            self.arrivals.get()
        start = now()
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        elapsed = now() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        committed = self.arrivals.get(timeout=WAIT)
        return start, elapsed, committed

    def close(self) -> None:
        self._stop.set()


def run(small: bool, clients: int, rounds: int, warm: int) -> list[Summary]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        size = (
            {"flags": 20, "orgs": 100, "per_org": 2}
            if small
            else {"flags": 2_000, "orgs": 10_000, "per_org": 10}
        )
        write_repo(base, **size, seed=7, changed=False, url_env="FLAGS_BENCH_URL")
        orgs = [
            line.strip().rstrip(":")
            for line in (base / "environments" / "bench.yaml").read_text().splitlines()
            if line.startswith("  ") and not line.startswith("    ") and line.strip().endswith(":")
        ]
        dbs = Databases("postgres", base)
        url = dbs.create()
        env = {**os.environ, "FLAGS_BENCH_URL": url, "FLAGS_ACTOR": "benchmark", "GITHUB_SHA": "0" * 40}
        flags = [FLAGS, "--config-dir", str(base), "--no-color"]
        clients_ = None
        try:
            write_flags(base, apply_on=False)
            for step in (["init", "--env", "bench"], ["apply", "--env", "bench", "--auto-approve"]):
                subprocess.run([*flags, *step], env=env, check=True, capture_output=True)
            clients_ = Clients(url, orgs, clients, warm)
            clients_.wait_ready()
            kills: list[list[float]] = []
            applies: list[list[float]] = []
            kill_s: list[float] = []
            apply_s: list[float] = []
            commits = Commits(url)
            try:
                for n in range(rounds):
                    kill = [*flags, "kill", KILL_FLAG, "--env", "bench", "--reason", f"round {n}"]
                    started, elapsed, committed = commits.run(kill, env)
                    kills.append(clients_.wait(KILL_FLAG, False, started, committed))
                    kill_s.append(elapsed)
                    apply_on = n % 2 == 0
                    write_flags(base, apply_on=apply_on)
                    apply = [*flags, "apply", "--env", "bench", "--auto-approve", "--overwrite-drift"]
                    started, elapsed, committed = commits.run(apply, env)
                    applies.append(clients_.wait(APPLY_FLAG, apply_on, started, committed))
                    clients_.wait(KILL_FLAG, True, started, committed)  # restored by that apply
                    apply_s.append(elapsed)
                    print(
                        f"round {n + 1}/{rounds}: kill slowest {max(kills[-1]) * 1000:.0f} ms,"
                        f" apply slowest {max(applies[-1]) * 1000:.0f} ms",
                        file=sys.stderr,
                    )
            finally:
                commits.close()
            return [
                summarise("flags kill", kills, kill_s),
                summarise("flags apply", applies, apply_s),
            ]
        finally:
            if clients_ is not None:
                clients_.stop()
            dbs.drop_all()


def write_flags(base: Path, *, apply_on: bool) -> None:
    (base / "flags" / "propagation.yaml").write_text(
        "flags:\n"
        f"  {KILL_FLAG}:\n    name: Propagation Kill\n    owner: bench\n    enabled: true\n"
        f"  {APPLY_FLAG}:\n    name: Propagation Apply\n    owner: bench\n"
        f"    enabled: {'true' if apply_on else 'false'}\n"
    )


def summarise(change: str, rounds: list[list[float]], commands: list[float]) -> Summary:
    every = [latency for latencies in rounds for latency in latencies]
    slowest = [max(latencies) for latencies in rounds]
    return Summary(
        change=change,
        rounds=len(rounds),
        clients=len(rounds[0]),
        p50_ms=percentile(every, 50) * 1000,
        p99_ms=percentile(every, 99) * 1000,
        max_ms=max(every) * 1000,
        slowest_p50_ms=percentile(slowest, 50) * 1000,
        slowest_p99_ms=percentile(slowest, 99) * 1000,
        rounds_all_within_1s=sum(1 for s in slowest if s <= WITHIN),
        command_p50_s=percentile(commands, 50),
    )


def table(rows: list[Summary]) -> str:
    lines = [
        "| change | rounds x clients | p50 ms | p99 ms | max ms | slowest client p50 ms"
        " | slowest client p99 ms | rounds all within 1 s | command s (p50) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.change} | {r.rounds} x {r.clients} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.max_ms:.0f}"
            f" | {r.slowest_p50_ms:.0f} | {r.slowest_p99_ms:.0f} | {r.rounds_all_within_1s}/{r.rounds}"
            f" | {r.command_p50_s:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="a tiny dataset (for the test suite)")
    parser.add_argument("--clients", type=int, default=20, help="client processes (default 20)")
    parser.add_argument("--rounds", type=int, default=20, help="kills and applies measured (default 20)")
    parser.add_argument("--warm", type=int, default=100, help="orgs each client holds (default 100)")
    parser.add_argument("--json", type=Path, default=HERE / "out" / "propagation.json")
    args = parser.parse_args()
    rows = run(args.small, args.clients, args.rounds, args.warm)
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"small": args.small, "clients": args.clients, "rows": [asdict(r) for r in rows]}, indent=2
        )
        + "\n"
    )
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
