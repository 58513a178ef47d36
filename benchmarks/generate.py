"""Generate the seeded benchmark repository (many flags and org overrides) and its change set."""

from __future__ import annotations

import argparse
import random
import uuid
from pathlib import Path


def org_ids(count: int, rng: random.Random) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def write_repo(
    root: Path, *, flags: int, orgs: int, per_org: int, seed: int, changed: bool, url_env: str
) -> dict[str, int]:
    """Write flags/ and environments/bench.yaml under `root`; with `changed`, the edited version.

    The change set (when `changed`): 5% of overrides flipped or 100 flags' rollout changed
    (updates), new overrides and flags (adds), and overrides removed (deletes), in the proportions
    of the benchmark: 5,000 updates, 1,000 adds and 1,000 deletes at full size.
    """
    rng = random.Random(seed)
    keys = [f"flag_{i:05d}" for i in range(flags)]
    ids = org_ids(orgs, rng)
    overrides: dict[str, dict[str, bool]] = {}
    for org in ids:
        chosen = rng.sample(keys, per_org)
        overrides[org] = {k: rng.random() < 0.5 for k in chosen}
    rollout = {k: rng.choice([0, 5, 10, 25, 33.33, 50, 100]) for k in keys}
    counts = {"updates": 0, "adds": 0, "deletes": 0}
    if changed:
        crng = random.Random(seed + 1)
        total = sum(len(v) for v in overrides.values())
        n_updates = min(5_000 * total // 100_000, total)
        n_flag_updates = min(100 * flags // 2_000, flags)
        n_adds = 1_000 * total // 100_000
        n_flag_adds = 50 * flags // 2_000
        n_deletes = 1_000 * total // 100_000
        all_pairs = [(o, k) for o, m in overrides.items() for k in m]
        picked = crng.sample(all_pairs, n_updates - n_flag_updates + n_deletes)
        for org, key in picked[: n_updates - n_flag_updates]:
            overrides[org][key] = not overrides[org][key]
        for org, key in picked[n_updates - n_flag_updates :]:
            del overrides[org][key]
        for key in crng.sample(keys, n_flag_updates):
            rollout[key] = 1 if rollout[key] != 1 else 2
        new_keys = [f"new_flag_{i:05d}" for i in range(n_flag_adds)]
        keys = keys + new_keys
        rollout.update({k: 0 for k in new_keys})
        added = 0
        while added < n_adds - n_flag_adds:
            org = crng.choice(ids)
            key = crng.choice(keys)
            if key not in overrides[org]:
                overrides[org][key] = True
                added += 1
        counts = {
            "updates": n_updates,
            "adds": n_adds,
            "deletes": n_deletes,
        }
    (root / "flags").mkdir(parents=True, exist_ok=True)
    (root / "environments").mkdir(parents=True, exist_ok=True)
    for old in (root / "flags").glob("*.yaml"):
        old.unlink()
    per_file = 100
    for start in range(0, len(keys), per_file):
        lines = ["flags:"]
        for key in keys[start : start + per_file]:
            lines += [
                f"  {key}:",
                f"    name: {key.replace('_', ' ').title()}",
                f"    description: Benchmark flag {key}",
                "    owner: bench",
                f"    rollout_percentage: {rollout[key]}",
            ]
        (root / "flags" / f"part_{start // per_file:03d}.yaml").write_text("\n".join(lines) + "\n")
    lines = ["database:", f"  url_env: {url_env}", "allow_delete: true", "orgs:"]
    for org, mapping in overrides.items():
        if not mapping:
            continue
        lines.append(f"  {org}:")
        lines += [f"    {k}: {'true' if v else 'false'}" for k, v in sorted(mapping.items())]
    (root / "environments" / "bench.yaml").write_text("\n".join(lines) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--flags", type=int, default=2_000)
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--per-org", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--changed", action="store_true")
    parser.add_argument("--url-env", default="FLAGS_BENCH_URL")
    args = parser.parse_args()
    counts = write_repo(
        args.root,
        flags=args.flags,
        orgs=args.orgs,
        per_org=args.per_org,
        seed=args.seed,
        changed=args.changed,
        url_env=args.url_env,
    )
    print(counts)


if __name__ == "__main__":
    main()
