"""Locating dataset files on disk and the one-line errors users see when they are absent."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from rdskd_dist.errors import UserError

ENV_DATA_ROOT = "RDSKD_DATA_ROOT"
_FIX = f"pass --data-root DIR or set {ENV_DATA_ROOT}, or --download"


def resolve_data_root(root: str | os.PathLike[str] | None) -> Path | None:
    """The explicit root wins, then $RDSKD_DATA_ROOT; None means 'nowhere to look'."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_DATA_ROOT, "")
    return Path(env).expanduser() if env else None


def require_root(dataset: str, root: Path | None, download: bool, expected: str) -> Path:
    """Fail early with the fix when no directory was given at all."""
    if root is not None:
        return root
    if download:
        raise UserError(
            f"{dataset}: --download needs a directory to download into; "
            f"pass --data-root DIR or set {ENV_DATA_ROOT}"
        )
    raise UserError(
        f"{dataset}: no data directory given (no --data-root and {ENV_DATA_ROOT} is unset); "
        f"expected {expected}; {_FIX}"
    )


def find_first(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """First existing file, scanning directories in order, then alternative names in order."""
    for directory in dirs:
        for name in names:
            if (directory / name).is_file():
                return directory / name
    return None


def missing_error(dataset: str, alternatives: Sequence[tuple[str, Sequence[Path]]]) -> UserError:
    """One line naming what is missing, every directory searched, and how to fix it.

    Each alternative is (files, directories searched for them), e.g. binary vs pickle layouts.
    """
    where = ", or ".join(f"{files} in {', '.join(str(d) for d in dirs)}" for files, dirs in alternatives)
    return UserError(f"{dataset}: missing {where}; {_FIX}")


def fetch(dataset: str, root: Path, download: Callable[[], object]) -> None:
    """Run a torchvision download, turning network/IO failures into a one-line user error."""
    try:
        download()
    except (OSError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())
        raise UserError(f"{dataset}: download into {root} failed: {reason}") from exc
