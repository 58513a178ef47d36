"""Read a configuration directory from disk: the one place that turns a folder into file contents."""

from __future__ import annotations

from pathlib import Path

from flagops.config.load import ENVIRONMENTS_DIR, FLAGS_DIR, YAML_SUFFIXES, unknown_environment
from flagops.errors import UsageError

MAX_FILE_BYTES = 64 * 1024 * 1024


def read_sources(config_dir: Path, *, environment: str | None = None) -> dict[str, bytes]:
    """{relative path: bytes} of every flags/ and environments/ YAML file under `config_dir`.

    With `environment`, of flags/ and that environment's file only: the other environments' files
    are not even read (UsageError when no file is that environment's).
    """
    if not config_dir.is_dir():
        raise UsageError(f"{config_dir}: not a directory")
    sources: dict[str, bytes] = {}
    names: set[str] = set()
    for folder in (FLAGS_DIR, ENVIRONMENTS_DIR):
        base = config_dir / folder
        if not base.is_dir():
            continue
        for path in sorted(base.iterdir()):
            if path.suffix not in YAML_SUFFIXES or not path.is_file():
                continue
            if folder == ENVIRONMENTS_DIR and environment is not None:
                names.add(path.stem)
                if path.stem != environment:
                    continue
            relative = f"{folder}/{path.name}"
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise UsageError(f"{relative}: larger than {MAX_FILE_BYTES // 2**20} MiB")
                sources[relative] = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"{relative}: cannot read: {exc.strerror}") from exc
    if environment is not None and environment not in names:
        raise unknown_environment(environment, names)
    return sources
