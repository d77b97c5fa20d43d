"""Files, local and remote, in one place: atomic writes, safe loading and storage URIs.

Local files
    `atomic_write(path, write)` and its forms `atomic_write_bytes`, `atomic_write_text`,
    `atomic_write_json`, `atomic_torch_save`, `atomic_copy`: the data goes to a temporary file in
    the destination folder, is flushed and fsynced, renamed over the destination (`os.replace`)
    and the folder is fsynced, so a crash leaves the old file or the new one, never half of one.
    `read_json`, `sha256_file`, and `safe_torch_load` (`torch.load(weights_only=True)`: nothing is
    unpickled; every bad file is a one-line `UserError`).

Storage (a pyarrow filesystem URI, s3://bucket/prefix, gs://..., file:///abs/path, ..., or a local path)
    One rule for what is a URI (`scheme://...`; anything else is a local path) and one place that opens
    a filesystem: `open_filesystem(location) -> (filesystem, path)`. On a filesystem:
    `put_file`/`put_bytes` (a reader never sees a half-written file: `atomic_write` on a local disk,
    elsewhere a temporary name moved into place), `get_file` (atomic locally), `get_bytes`,
    `path_kind`, `list_files`, `join`; and for a small text file under a storage URI,
    `write_text_at`/`read_text_at`.

Light on purpose: torch and pyarrow are imported only by the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import unquote, urlparse

from rdskd_dist.errors import UserError, one_line

if TYPE_CHECKING:
    import pyarrow.fs

_CHUNK = 1 << 20
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


# ---------------------------------------------------------------- local files: atomic writes

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; skipped where the filesystem cannot fsync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Write `path` with `write(binary_file)`: to a temporary file in the same folder, flushed and
    fsynced, renamed into place, the folder fsynced. Creates missing parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    atomic_write_bytes(text.encode(), path)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copy the local file `src` to `dest` atomically."""
    with open(src, "rb") as source:
        atomic_write(dest, lambda f: shutil.copyfileobj(source, f, _CHUNK))


# ---------------------------------------------------------------- local files: reading

def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_torch_load(path: str | os.PathLike, what: str) -> Any:
    """torch.load with weights_only=True; every failure becomes a one-line UserError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for bad files
        text = " ".join(str(exc).split())
        if "Weights only load failed" in text or "Unsupported global" in text or "UnpicklingError" in type(exc).__name__:
            raise UserError(f"refusing to load {what} {path}: it holds pickled objects other than tensors "
                            "(only weights-only checkpoints and state_dicts are accepted)") from None
        raise UserError(f"cannot read {what} {path}: not a valid torch checkpoint (truncated or corrupt?)") from None


# ---------------------------------------------------------------- storage URIs

def uri_scheme(location: str) -> Optional[str]:
    """The scheme of a `scheme://...` URI (lower case); None for a local path."""
    match = _URI.match(str(location))
    return match.group(1).lower() if match else None


def is_uri(location: str) -> bool:
    return uri_scheme(location) is not None


def local_path(location: str) -> Optional[Path]:
    """The local path a storage location names (a path, or a file:// URI); None for a remote URI."""
    scheme = uri_scheme(location)
    if scheme is None:
        return Path(location).expanduser()
    if scheme == "file":
        return Path(unquote(urlparse(location).path))
    return None


def open_filesystem(location: str, what: str = "storage") -> tuple["pyarrow.fs.FileSystem", str]:
    """(pyarrow filesystem, path inside it) of a URI or a local path (made absolute).

    A URI pyarrow rejects (unknown scheme, no region, no credentials, ...) fails as one line."""
    import pyarrow.fs as pafs

    location = str(location)
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as exc:  # noqa: BLE001 - ArrowInvalid, OSError (no region, no credentials), ...
        raise UserError(f"{what} {location}: {one_line(exc)}") from None


def join(root: str, *parts: str) -> str:
    """A path (or URI) under `root`, with `/` separators."""
    return "/".join([str(root).rstrip("/"), *parts])


def _is_local(fs: "pyarrow.fs.FileSystem") -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def path_kind(fs: "pyarrow.fs.FileSystem", path: str) -> Optional[str]:
    """"file", "folder", or None where nothing is at `path`."""
    import pyarrow.fs as pafs

    kind = fs.get_file_info(path).type
    return {pafs.FileType.File: "file", pafs.FileType.Directory: "folder"}.get(kind)


def list_files(fs: "pyarrow.fs.FileSystem", folder: str) -> list[str]:
    """Every file under `folder` (recursively), as full paths inside `fs`, sorted."""
    import pyarrow.fs as pafs

    return sorted(entry.path for entry in fs.get_file_info(pafs.FileSelector(folder, recursive=True))
                  if entry.type == pafs.FileType.File)


def _put(fs: "pyarrow.fs.FileSystem", dest: str, write: Callable[[Any], Any]) -> None:
    if _is_local(fs):
        atomic_write(dest, write)
        return
    parent, name = dest.rsplit("/", 1)
    tmp = f"{parent}/.{name}.{secrets.token_hex(4)}.tmp"
    fs.create_dir(parent, recursive=True)
    try:
        with fs.open_output_stream(tmp) as out:
            write(out)
        fs.move(tmp, dest)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.delete_file(tmp)
        raise


def put_bytes(data: bytes, fs: "pyarrow.fs.FileSystem", dest: str) -> None:
    """Write `data` at `dest` in `fs`; a reader never sees a half-written file."""
    _put(fs, dest, lambda out: out.write(data))


def put_file(local: str | os.PathLike, fs: "pyarrow.fs.FileSystem", dest: str) -> None:
    """Copy the local file `local` to `dest` in `fs`; a reader never sees a half-written file."""
    with open(local, "rb") as source:
        _put(fs, dest, lambda out: shutil.copyfileobj(source, out, _CHUNK))


def get_bytes(fs: "pyarrow.fs.FileSystem", src: str) -> Optional[bytes]:
    """The content of the file `src` in `fs`, or None where there is no file."""
    if path_kind(fs, src) != "file":
        return None
    with fs.open_input_stream(src) as stream:
        return stream.read()


def get_file(fs: "pyarrow.fs.FileSystem", src: str, local: str | os.PathLike) -> None:
    """Copy the file `src` in `fs` to the local path `local`, atomically."""
    with fs.open_input_stream(src) as stream:
        atomic_write(local, lambda f: shutil.copyfileobj(stream, f, _CHUNK))


def write_text_at(location: str, relative: str, text: str) -> None:
    """Write a small text file at `relative` under a storage URI or local folder."""
    fs, root = open_filesystem(location)
    put_bytes(text.encode(), fs, join(root, relative))


def read_text_at(location: str, relative: str) -> Optional[str]:
    """The text of the file `relative` under a storage URI or local folder, or None when there is none."""
    fs, root = open_filesystem(location)
    data = get_bytes(fs, join(root, relative))
    return None if data is None else data.decode()


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save",
           "atomic_copy", "read_json", "sha256_file", "safe_torch_load", "uri_scheme", "is_uri", "local_path",
           "open_filesystem", "join", "path_kind", "list_files", "put_bytes", "put_file", "get_bytes", "get_file",
           "write_text_at", "read_text_at"]
