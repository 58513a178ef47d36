"""Who runs a command and from which commit: the actor and git commit stamped on plans and audit rows."""

from __future__ import annotations

import getpass
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path


def actor(explicit: str | None, environ: Mapping[str, str]) -> str:
    """--actor, else FLAGS_ACTOR, else GITHUB_ACTOR, else user@host."""
    for candidate in (explicit, environ.get("FLAGS_ACTOR"), environ.get("GITHUB_ACTOR")):
        if candidate:
            return candidate
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def git_commit(config_dir: Path, environ: Mapping[str, str]) -> str | None:
    """GITHUB_SHA, else `git rev-parse HEAD` of the config dir (suffixed -dirty when the tree is)."""
    if environ.get("GITHUB_SHA"):
        return environ["GITHUB_SHA"]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(config_dir), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if not head:
        return None
    dirty = git("status", "--porcelain", "--", "flags", "environments")
    return f"{head}-dirty" if dirty else head
