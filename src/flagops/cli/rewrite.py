"""Write the YAML edits of `promote` and `import` into the configuration: all validated, then written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from flagops.config.load import ENVIRONMENTS_DIR, Config, load_config, load_environment
from flagops.edit.yamledit import Edit, apply_edits, flow_style_default
from flagops.errors import ConfigError, UsageError

BOM = b"\xef\xbb\xbf"


def edited_files(
    sources: Mapping[str, bytes],
    edits: Mapping[str, Sequence[Edit]],
    *,
    new_file_comment: str | None = None,
) -> dict[str, bytes]:
    """The new content of each file given its edits (relative path -> edits), made to the bytes
    the configuration was loaded from (`sources`).

    A file that does not exist yet starts as a flags file whose first line is the comment
    `new_file_comment`; without one a missing file is an error.
    """
    result: dict[str, bytes] = {}
    for relative, changes in edits.items():
        raw = sources.get(relative)
        bom = raw is not None and raw.startswith(BOM)
        if raw is not None:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise UsageError(f"{relative}: not UTF-8 text") from None
        elif new_file_comment is not None:
            text = f"# {new_file_comment}\nflags:\n"
        else:
            raise UsageError(f"{relative}: no such file")
        is_env = relative.startswith(f"{ENVIRONMENTS_DIR}/")
        flow = flow_style_default if is_env else (lambda path: False)
        new = apply_edits(text, changes, flow=flow, name=relative)
        result[relative] = (BOM if bom else b"") + new.encode("utf-8")
    return result


def validated(
    sources: Mapping[str, bytes], files: Mapping[str, bytes], *, environment: str | None = None
) -> Config:
    """The configuration `sources` make once `files` are written; UsageError when it would be invalid.

    With `environment`, `sources` are flags/ and that environment's file only (`load_environment`),
    and so is what is validated.
    """
    try:
        edited = {**sources, **files}
        return load_config(edited) if environment is None else load_environment(edited, environment)
    except ConfigError as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        raise UsageError(
            f"nothing was written: the edited configuration would not validate: {first}{more}"
        ) from None


def write_files(config_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write each file through a temporary file renamed over it, keeping its permissions."""
    for relative, content in files.items():
        path = config_dir / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(content)
                if path.exists():
                    shutil.copymode(path, temporary)
                else:
                    os.chmod(temporary, 0o666 & ~_umask())
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise UsageError(f"{relative}: cannot write: {exc.strerror}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
