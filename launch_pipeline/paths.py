"""Checks of the folders a command will write into, made before anything is created, deleted or
overwritten (staging deletes stale files, generation writes day files, a run creates the
warehouse and Dagster's instance): a refusal after the first write would leave a half-changed
folder behind.

Each check raises :class:`~launch_pipeline.errors.ConfigurationError` with one line that names
the folder, the problem and what to do."""

from __future__ import annotations

import os
from pathlib import Path

from launch_pipeline.errors import ConfigurationError

GLOB_CHARACTERS = "*?[]"
"""Dagster loads its instance settings (``DAGSTER_HOME/dagster.yaml``: pools, run queue) through
a glob pattern: under a folder whose path holds one of these characters the file is silently
not found and the run goes on without the DuckDB pool limit."""

SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr")


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_folder_for_writing(path: str | Path, what: str, *, globs_matter: bool = False) -> Path:
    """``path`` resolved (symlinks followed), after checking that a command may create and
    write it: not the filesystem root or a system folder, not a file, on a writable parent, and
    (``globs_matter``) free of glob characters."""
    given = Path(path).expanduser()
    real = given.resolve()
    shown = f"{given}" + (f" (-> {real})" if str(real) != str(given) else "")
    if globs_matter:
        bad = sorted({c for c in str(real) if c in GLOB_CHARACTERS})
        if bad:
            raise ConfigurationError(
                f"{what} {shown} contains {' '.join(bad)}: Dagster reads its instance settings "
                "(dagster.yaml) through a glob pattern and would silently ignore them under "
                "this folder; choose a folder whose path has none of * ? [ ]"
            )
    if real == Path(real.anchor) or any(_is_within(real, Path(d)) for d in SYSTEM_DIRS):
        raise ConfigurationError(
            f"{what} {shown} is the filesystem root or a system folder: choose a project "
            "folder such as ./data"
        )
    if real.exists() and not real.is_dir():
        raise ConfigurationError(
            f"{what} {shown} is a file, not a folder: pass a folder (it is created if missing)"
        )
    base = _nearest_existing(real)
    if not base.is_dir():
        raise ConfigurationError(
            f"{what} {shown} cannot be created: {base} is a file, not a folder"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"{what} {shown} is not writable ({base} is read-only for this user): pass a "
            "folder you can write to, or fix its permissions"
        )
    return real


def check_data_dirs(data_dir: str | Path, raw_dir: str | Path) -> tuple[Path, Path]:
    """The data directory and the raw data directory a command will write into, checked
    together (see :func:`check_folder_for_writing`; the raw directory must also stay inside the
    data directory or an allowed root, symlinks followed: ``validate_paths``)."""
    from launch_pipeline.defs.resources import validate_paths

    data = check_folder_for_writing(data_dir, "data directory", globs_matter=True)
    raw = check_folder_for_writing(raw_dir, "raw data directory")
    check_folder_for_writing(data / "lake", "partition folder (lake)")
    validate_paths(data, raw)
    return data, raw
