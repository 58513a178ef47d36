"""Run the benchmark: each step as a whole `flags` process beside its floor, as ratios, in one run.

Usage: python benchmarks/run.py [--small] [--backend postgres|sqlite|both] [--repeat N] [--json FILE]
Every step runs N times (default 5) by flags, the floor and the bare floor in turn, a step that
writes each time on a fresh copy of the same database; the best time of each counts. On Postgres
a copy is CHECKPOINTed before it is used, and the database the plan and the apply start from is
VACUUM ANALYZEd once after the first apply, as autovacuum would leave it.
Needs FLAGS_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres): a user
that may create databases; the benchmark creates and drops its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from generate import write_repo  # noqa: E402

PYTHON = sys.executable
FLAGS = str(Path(PYTHON).with_name("flags"))
ADMIN_URL = os.environ.get("FLAGS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGETS = {"plan": 1.5, "apply": 2.0, "first apply": 1.5}
STEPS = ("first apply", "plan", "apply")
MEMORY_LIMIT_MB = 400
VALIDATE_LIMIT_S = 0.3


@dataclass
class Row:
    step: str
    backend: str
    seconds: float
    peak_mb: float
    floor_seconds: float | None = None
    ratio: float | None = None
    target: str = ""
    ok: bool = True
    bare_floor_seconds: float | None = None
    bare_ratio: float | None = None


def measure(args: list[str], *, env: dict[str, str], repeat: int = 1) -> tuple[float, float]:
    """Best wall time of `repeat` runs and the peak resident memory (MB) of the process."""
    best = float("inf")
    peak = 0.0
    for _ in range(repeat):
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            start = time.perf_counter()
            proc = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - start
            stdout.seek(0)
            stderr.seek(0)
            out, err = stdout.read().decode(), stderr.read().decode()
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 2):
            raise SystemExit(f"{' '.join(args)} exited {code}:\n{out[-2000:]}\n{err[-2000:]}")
        best = min(best, elapsed)
        peak = max(peak, usage.ru_maxrss / 1024)
    return best, peak


def admin(sql: str) -> None:
    admin_on(ADMIN_URL, sql)


def admin_on(url: str, sql: str) -> None:
    """Run one statement outside a transaction on the database at `url`."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def settle() -> None:
    """Write out what copying a database left in the server's buffers (CHECKPOINT), so that the
    step measured next does not share the disk with it; without the privilege, runs are noisier."""
    import psycopg

    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        admin("CHECKPOINT")


def database_url(name: str) -> str:
    return ADMIN_URL.rpartition("/")[0] + "/" + name


class Databases:
    """Scratch databases of one backend, and copies of them, so that every run of a step that
    writes starts from the same state: Postgres databases made from templates, SQLite file copies."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.urls: list[str] = []

    def create(self, template: str | None = None) -> str:
        """A new database: empty, or a copy of the database at `template` (a URL from `create`)."""
        name = f"flagops_bench_{uuid.uuid4().hex[:8]}"
        if self.backend == "postgres":
            copy = f' TEMPLATE "{template.rpartition("/")[2]}"' if template else ""
            admin(f'CREATE DATABASE "{name}"{copy}')
            settle()
            url = database_url(name)
        else:
            path = self.tmp / f"{name}.db"
            if template:
                shutil.copyfile(template.removeprefix("sqlite:///"), path)
            url = f"sqlite:///{path}"
        self.urls.append(url)
        return url

    def drop(self, url: str) -> None:
        if self.backend == "postgres":
            admin(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
        else:
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        self.urls.remove(url)

    def drop_all(self) -> None:
        for url in list(self.urls):
            self.drop(url)


Command = Callable[[str], tuple[list[str], dict[str, str]]]
"""A step's process for a database URL: (arguments, environment)."""


def measure_on_copies(dbs: Databases, template: str, command: Command) -> tuple[float, float, str]:
    """Time and peak memory of one run of `command(url)` on a fresh copy of `template`, and the
    copy's URL (the caller drops it or keeps it)."""
    url = dbs.create(template)
    args, env = command(url)
    seconds, mb = measure(args, env=env)
    return seconds, mb, url


def initialised(dbs: Databases, base: Path, env: dict[str, str]) -> str:
    """A new database with the flagops schema."""
    url = dbs.create()
    subprocess.run(
        [FLAGS, "--config-dir", str(base), "init", "--env", "bench"],
        env={**env, "FLAGS_BENCH_URL": url},
        check=True,
        capture_output=True,
    )
    return url


def run(small: bool, backends: list[str], repeat: int) -> list[Row]:
    size = dict(flags=40, orgs=200, per_org=5) if small else dict(flags=2_000, orgs=10_000, per_org=10)
    rows: list[Row] = []
    env = {**os.environ, "FLAGS_ACTOR": "benchmark", "NO_COLOR": "1"}
    seconds, peak = measure([FLAGS, "--config-dir", str(ROOT), "validate"], env=env, repeat=max(repeat, 3))
    rows.append(
        Row(
            "validate (example repo)",
            "-",
            seconds,
            peak,
            target=f"< {VALIDATE_LIMIT_S} s",
            ok=seconds < VALIDATE_LIMIT_S and peak < MEMORY_LIMIT_MB,
        )
    )
    with tempfile.TemporaryDirectory(prefix="flagops-bench-") as tmp:
        base, changed = Path(tmp) / "base", Path(tmp) / "changed"
        write_repo(base, **size, seed=7, changed=False, url_env="FLAGS_BENCH_URL")
        counts = write_repo(changed, **size, seed=7, changed=True, url_env="FLAGS_BENCH_URL")
        seconds, peak = measure([FLAGS, "--config-dir", str(base), "validate"], env=env, repeat=repeat)
        rows.append(Row("validate (benchmark repo)", "-", seconds, peak))
        for backend in backends:
            rows += run_backend(backend, base, changed, Path(tmp), env, repeat)
        print(f"change set: {counts}", file=sys.stderr)
    return rows


CONTENDERS = ("flags", "floor", "bare")


@dataclass
class Best:
    """The best time and the highest peak memory of one contender at one step."""

    seconds: float = float("inf")
    peak_mb: float = 0.0

    def add(self, seconds: float, peak_mb: float) -> None:
        self.seconds, self.peak_mb = min(self.seconds, seconds), max(self.peak_mb, peak_mb)


def run_backend(
    backend: str, base: Path, changed: Path, tmp: Path, env: dict[str, str], repeat: int
) -> list[Row]:
    """Each step run `repeat` times by flags, the floor and the bare floor in turn (so that a slow
    spell of the machine falls on all three), every write on a fresh copy of the same database."""
    dbs = Databases(backend, tmp)
    plan_file = tmp / f"plan-{backend}.json"
    floor_script = str(HERE / "floor.py")

    def flags(config: Path, *args: str) -> Command:
        return lambda url: (
            [FLAGS, "--config-dir", str(config), *args, "--env", "bench"],
            {**env, "FLAGS_BENCH_URL": url},
        )

    def floor(step: str, source: Path | str, *, bare: bool) -> Command:
        return lambda url: (
            [PYTHON, floor_script, *(["--bare"] if bare else []), step, str(source), url],
            env,
        )

    postgres = backend == "postgres"
    contenders = CONTENDERS if postgres else CONTENDERS[:1]
    best = {(step, who): Best() for step in STEPS for who in contenders}
    try:
        empty = initialised(dbs, base, env)
        first: dict[str, Command] = {
            "flags": flags(base, "apply", "--auto-approve"),
            "floor": floor("first_apply", base, bare=False),
            "bare": floor("first_apply", base, bare=True),
        }
        applied = ""
        for _ in range(repeat):
            for who in contenders:
                seconds, mb, url = measure_on_copies(dbs, empty, first[who])
                best["first apply", who].add(seconds, mb)
                if who == "flags" and not applied:
                    applied = url  # the database the next steps start from
                else:
                    dbs.drop(url)
        if postgres:
            # A database at rest, as autovacuum leaves it a minute after a load.
            admin_on(applied, "VACUUM (ANALYZE)")
        plan: dict[str, Command] = {
            "flags": flags(changed, "plan", "--out", str(plan_file)),
            "floor": floor("plan", changed, bare=False),
            "bare": floor("plan", changed, bare=True),
        }
        apply: dict[str, Command] = {
            "flags": flags(changed, "apply", str(plan_file)),
            "floor": floor("apply", f"{changed}:{plan_file}", bare=False),
            "bare": floor("apply", f"{changed}:{plan_file}", bare=True),
        }
        for _ in range(repeat):
            for who in contenders:
                args, step_env = plan[who](applied)
                best["plan", who].add(*measure(args, env=step_env))
        for _ in range(repeat):
            for who in contenders:
                seconds, mb, url = measure_on_copies(dbs, applied, apply[who])
                best["apply", who].add(seconds, mb)
                dbs.drop(url)
    finally:
        dbs.drop_all()
    rows = []
    for step in STEPS:
        mine = best[step, "flags"]
        if not postgres:
            rows.append(Row(step, backend, mine.seconds, mine.peak_mb, ok=mine.peak_mb < MEMORY_LIMIT_MB))
            continue
        floor_s, bare_s = best[step, "floor"].seconds, best[step, "bare"].seconds
        ratio = mine.seconds / floor_s
        rows.append(
            Row(
                step,
                backend,
                mine.seconds,
                mine.peak_mb,
                floor_s,
                ratio,
                f"<= {TARGETS[step]}x floor",
                ratio <= TARGETS[step] and mine.peak_mb < MEMORY_LIMIT_MB,
                bare_s,
                mine.seconds / bare_s,
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| step | backend | seconds | floor s | ratio | target | peak MB | ok | bare floor s | bare ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor = f"{r.floor_seconds:.2f}" if r.floor_seconds is not None else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        bare = f"{r.bare_floor_seconds:.2f}" if r.bare_floor_seconds is not None else ""
        bare_ratio = f"{r.bare_ratio:.2f}x" if r.bare_ratio is not None else ""
        lines.append(
            f"| {r.step} | {r.backend} | {r.seconds:.2f} | {floor} | {ratio} | {r.target} | {r.peak_mb:.0f} |"
            f" {'yes' if r.ok else 'NO'} | {bare} | {bare_ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="a tiny dataset (for the test suite)")
    parser.add_argument("--backend", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs of each step (writes on fresh copies); the best counts"
    )
    parser.add_argument("--json", type=Path, default=HERE / "out" / "results.json")
    args = parser.parse_args()
    backends = ["postgres", "sqlite"] if args.backend == "both" else [args.backend]
    rows = run(args.small, backends, args.repeat)
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"small": args.small, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
    )
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
