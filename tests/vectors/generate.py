"""Generate tests/vectors/rollout.json: the rollout rule's test vectors (run once; the output is committed).

The rule (docs/rollout-rule.md, "The rule") is written out again here, apart from the package, so the vectors
check flagops.runtime.rollout and the SQL functions against an independent statement of the contract:

    bucket(flag_key, org_id) = first 4 bytes of md5("<flag_key>:<org_id>") as a big-endian
                               unsigned int, mod 10000          (org_id: lowercase, hyphenated)
    enabled = false if killed; else the override if any; else true if enabled;
              else bucket < round(rollout_percentage * 100)

Run: python tests/vectors/generate.py  (deterministic: the same seed writes the same file)
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

SEED = 20240605
TARGET = Path(__file__).with_name("rollout.json")
WORDS = ["lead", "scoring", "sms", "voice", "beta", "calendar", "ai", "export", "v2", "new", "checkout", "x"]
FIXED_PERCENTAGES = ["0", "100", "0.01", "33.33", "99.99", "50", "0.5", "12.34", "66.67", "99.5"]


def bucket(flag_key: str, org_id: str) -> int:
    canonical = str(uuid.UUID(org_id))
    digest = hashlib.md5(f"{flag_key}:{canonical}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10000


def threshold(percentage: str) -> int:
    return int((Decimal(percentage) * 100).to_integral_value(rounding=ROUND_HALF_UP))


def case(
    flag_key: str, org_id: str, *, enabled: bool, percentage: str, killed: bool, override: bool | None
) -> dict[str, Any]:
    n = bucket(flag_key, org_id)
    limit = threshold(percentage)
    if killed:
        expected, reason = False, "killed"
    elif override is not None:
        expected, reason = override, "override"
    elif enabled:
        expected, reason = True, "enabled"
    else:
        expected, reason = n < limit, "rollout"
    number = Decimal(percentage)
    return {
        "flag_key": flag_key,
        "org_id": org_id,
        "enabled": enabled,
        "rollout_percentage": int(number) if number == number.to_integral_value() else float(number),
        "killed": killed,
        "override": override,
        "bucket": n,
        "threshold": limit,
        "expected": expected,
        "reason": reason,
    }


def main() -> None:
    rng = random.Random(SEED)
    used: set[str] = set()

    def key() -> str:
        while True:
            parts = rng.sample(WORDS, rng.randint(1, 3))
            candidate = "_".join(parts) + f"_{rng.randrange(10**6)}"
            if candidate not in used:
                used.add(candidate)
                return candidate

    def org() -> str:
        value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return value.upper() if rng.random() < 0.05 else value  # some in upper case: normalised

    def percentage() -> str:
        if rng.random() < 0.2:
            return str(rng.randint(0, 100))
        return str(Decimal(rng.randint(0, 10000)) / 100)

    cases: list[dict[str, Any]] = []
    # Every combination of the rule's inputs with the fixed percentages.
    for pct in FIXED_PERCENTAGES:
        for killed in (True, False):
            for override in (None, True, False):
                for enabled in (True, False):
                    for _ in range(4):
                        cases.append(
                            case(
                                key(),
                                org(),
                                enabled=enabled,
                                percentage=pct,
                                killed=killed,
                                override=override,
                            )
                        )
    # Boundaries: the org's bucket equal to the threshold (off) and one below it (on).
    for _ in range(150):
        flag_key, org_id = key(), org()
        n = bucket(flag_key, org_id)
        cases.append(
            case(
                flag_key, org_id, enabled=False, percentage=str(Decimal(n) / 100), killed=False, override=None
            )
        )
        flag_key = key()
        n = bucket(flag_key, org_id)
        cases.append(
            case(
                flag_key,
                org_id,
                enabled=False,
                percentage=str(Decimal(n + 1) / 100),
                killed=False,
                override=None,
            )
        )
    # Random cases, mostly plain rollouts.
    for _ in range(700):
        killed = rng.random() < 0.1
        override = rng.choice([None, None, None, None, True, False])
        enabled = rng.random() < 0.2
        cases.append(
            case(key(), org(), enabled=enabled, percentage=percentage(), killed=killed, override=override)
        )

    # Keys of every style (snake, kebab, camel, Pascal, dotted, upper case), hashed exactly as written:
    # the spellings of one name are different keys, each with its own bucket. A separate generator,
    # so the cases above stay as they were.
    styled = random.Random(SEED + 1)
    pairs = [(a, b) for a in WORDS[:-1] for b in WORDS[:-1] if a != b]
    for first, second in styled.sample(pairs, 20):
        org_id = str(uuid.UUID(int=styled.getrandbits(128), version=4))
        for spelling in (
            f"{first}_{second}",
            f"{first}-{second}",
            f"{first}{second.capitalize()}",
            f"{first.capitalize()}{second.capitalize()}",
            f"{first}.{second}",
            f"{first.upper()}_{second.upper()}",
        ):
            cases.append(case(spelling, org_id, enabled=False, percentage="50", killed=False, override=None))

    description = (
        "Rollout rule test vectors (docs/rollout-rule.md, The rule); generated by tests/vectors/generate.py"
    )
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases)
    text = f'{{"description": {json.dumps(description)},\n"seed": {SEED},\n"cases": [\n{lines}\n]}}\n'
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {len(cases)} cases to {TARGET}")


if __name__ == "__main__":
    main()
