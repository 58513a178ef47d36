"""Run the benchmark: each step as a whole `flags` process beside its floor, as ratios, in one run.

Usage: python benchmarks/run.py [--small] [--backend postgres|sqlite|both] [--repeat N] [--json FILE]
Every step runs N times (a step that writes, each time on a fresh copy of its database) and
the best time counts.
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


def measure(
    args: list[str], *, env: dict[str, str], cwd: Path | None = None, repeat: int = 1
) -> tuple[float, float]:
    """Best wall time of `repeat` runs and the peak resident memory (MB) of the process."""
    best = float("inf")
    peak = 0.0
    for _ in range(repeat):
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            start = time.perf_counter()
            proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
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
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
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


def measure_on_copies(
    dbs: Databases, template: str, repeat: int, command: Callable[[str], tuple[list[str], dict[str, str]]]
) -> tuple[float, float, str]:
    """Best time and peak memory of `command(url)` run `repeat` times, each on a fresh copy of
    `template`; the copy the last run left stays (its URL is returned), the others are dropped."""
    best, peak, url = float("inf"), 0.0, ""
    for _ in range(repeat):
        if url:
            dbs.drop(url)
        url = dbs.create(template)
        args, env = command(url)
        seconds, mb = measure(args, env=env)
        best, peak = min(best, seconds), max(peak, mb)
    return best, peak, url


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


def floors(
    dbs: Databases, empty: str, paths: tuple[Path, Path, Path], env: dict[str, str], repeat: int, bare: bool
) -> dict[str, float]:
    """The floor's best seconds for each step (`bare`: see floor.py --bare)."""
    base, changed, plan_file = paths
    floor = [PYTHON, str(HERE / "floor.py"), *(["--bare"] if bare else [])]
    first, _, applied = measure_on_copies(
        dbs, empty, repeat, lambda url: ([*floor, "first_apply", str(base), url], env)
    )
    plan, _ = measure([*floor, "plan", str(changed), applied], env=env, repeat=repeat)
    done, _, _ = measure_on_copies(
        dbs, applied, repeat, lambda url: ([*floor, "apply", str(plan_file), url], env)
    )
    return {"first apply": first, "plan": plan, "apply": done}


def run_backend(
    backend: str, base: Path, changed: Path, tmp: Path, env: dict[str, str], repeat: int
) -> list[Row]:
    dbs = Databases(backend, tmp)
    plan_file = tmp / f"plan-{backend}.json"

    def flags(config: Path, *args: str) -> Callable[[str], tuple[list[str], dict[str, str]]]:
        return lambda url: (
            [FLAGS, "--config-dir", str(config), *args, "--env", "bench"],
            {**env, "FLAGS_BENCH_URL": url},
        )

    try:
        empty = initialised(dbs, base, env)
        first, first_peak, applied = measure_on_copies(
            dbs, empty, repeat, flags(base, "apply", "--auto-approve")
        )
        args, plan_env = flags(changed, "plan", "--out", str(plan_file))(applied)
        plan, plan_peak = measure(args, env=plan_env, repeat=repeat)
        done, apply_peak, _ = measure_on_copies(dbs, applied, repeat, flags(changed, "apply", str(plan_file)))
        measured = (
            ("first apply", first, first_peak),
            ("plan", plan, plan_peak),
            ("apply", done, apply_peak),
        )
        if backend != "postgres":
            return [Row(step, backend, sec, peak, ok=peak < MEMORY_LIMIT_MB) for step, sec, peak in measured]
        paths = (base, changed, plan_file)
        floor = floors(dbs, empty, paths, env, repeat, bare=False)
        bare = floors(dbs, empty, paths, env, repeat, bare=True)
    finally:
        dbs.drop_all()
    rows = []
    for step, sec, peak in measured:
        ratio = sec / floor[step]
        rows.append(
            Row(
                step,
                backend,
                sec,
                peak,
                floor[step],
                ratio,
                f"<= {TARGETS[step]}x floor",
                ratio <= TARGETS[step] and peak < MEMORY_LIMIT_MB,
                bare[step],
                sec / bare[step],
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
        "--repeat", type=int, default=3, help="runs of each step (writes on fresh copies); the best counts"
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
