"""Fail-fast checks that every output location can be written, before any training or Ray work.

A folder that does not exist yet is not created here (a run that fails on a later check leaves
nothing behind): its nearest existing parent must be a folder that accepts a new file. The probe
is a real temporary file, created and removed, so read-only mounts, permissions, ACLs and a path
running through a regular file are all caught. Light on purpose: no torch, no ray, no mlflow.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Optional

from rdskd_dist.errors import UserError
from rdskd_dist.files import local_path


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (a file or a folder)."""
    current = path
    while not current.exists() and not current.is_symlink():
        if current.parent == current:
            break
        current = current.parent
    return current


def _probe(folder: Path) -> None:
    """Create and remove a temporary file in `folder`; raises OSError if that is not possible."""
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    fd, name = tempfile.mkstemp(dir=folder, prefix=".rdskd-write-probe-", suffix=".tmp")
    os.close(fd)
    os.unlink(name)


def check_writable_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """The folder `path` (absolute), checked writable; a `UserError` in one line otherwise.

    An existing folder gets the probe file; a missing one is left uncreated, and its nearest
    existing parent gets the probe instead.
    """
    folder = Path(path).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"cannot write to {what} {folder}: it is a file, not a folder")
    try:
        _probe(_nearest_existing(folder))
    except OSError as exc:
        raise UserError(f"cannot write to {what} {folder}: {exc.strerror or exc}") from None
    return folder


def check_writable_file(path: str | os.PathLike, what: str = "file") -> Path:
    """The file `path` (absolute), checked creatable or replaceable; a `UserError` in one line otherwise."""
    file = Path(path).expanduser().absolute()
    if file.is_dir():
        raise UserError(f"cannot write to {what} {file}: it is a folder, not a file")
    try:
        _probe(_nearest_existing(file.parent))
    except OSError as exc:
        raise UserError(f"cannot write to {what} {file}: {exc.strerror or exc}") from None
    return file


def check_local_storage(storage: Optional[str], default: str, what: str = "storage folder") -> None:
    """A local storage folder (a path, or `file://`) checked writable; other URIs (s3://, gs://) are left
    to their own filesystem's check."""
    folder = local_path(storage or default)
    if folder is not None:
        check_writable_folder(folder, what)


__all__ = ["check_writable_folder", "check_writable_file", "check_local_storage"]
