"""Sweep storage (`--storage`): where Tune's and Ray Train's run state lives, and a copy of the sweep's files.

A storage is a pyarrow filesystem URI (s3://bucket/prefix, gs://..., abfs://..., hdfs://...,
file:///abs/path) or a local path. Under it, a sweep named NAME keeps

    <storage>/NAME/tune/     Tune's experiment folders (trial state, results)
    <storage>/NAME/train/    the Ray Train runs of trials with workers >= 1 (their checkpoints)
    <storage>/NAME/...       a copy of the sweep folder's files: spec.yaml, design.json, ledger/,
                             results.parquet, summary.json/.md, plots/, optuna.db

On a multi-node cluster every node must reach the storage (a bucket or a shared filesystem):
Train workers write checkpoints there and a retried trial restores from them. The ledger row and
results.parquet are copied after every finished trial, so the results survive the driver machine,
and `--resume` on a fresh driver pulls the ledger back first.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlparse

from rdskd_dist.errors import UserError, one_line
from rdskd_dist.files import get_file, list_files, open_filesystem, path_kind, put_file

# URI schemes pyarrow.fs.FileSystem.from_uri understands.
SCHEMES = ("file", "s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")
# Sweep-folder entries copied to the storage (files or folders, relative to the sweep folder).
SWEEP_FILES = ("spec.yaml", "design.json", "ledger", "results.parquet", "summary.json", "summary.md", "plots",
               "optuna.db")
# What --resume needs from the storage when the local sweep folder is missing (a new driver machine).
RESUME_FILES = ("spec.yaml", "design.json", "ledger", "optuna.db")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def check_storage(text: str) -> str:
    """The storage as the sweep will use it: a checked URI, or an absolute local path.

    Catches what can be checked without a network: a missing or unknown scheme, `scheme:/x`,
    an empty bucket, a relative or remote file:// URI. Fails as one line (UserError)."""
    text = str(text).strip()
    if not text:
        raise UserError("--storage is empty")
    match = _SCHEME.match(text)
    if match is None:  # a local path
        return str(Path(text).expanduser().resolve())
    scheme = match.group(1).lower()
    if scheme not in SCHEMES:
        raise UserError(f"unknown storage scheme {scheme!r} in {text} (use {', '.join(s + '://' for s in SCHEMES)} "
                        "or a local path)")
    if not text[match.end():].startswith("//"):
        raise UserError(f"malformed storage URI {text}: expected {scheme}://...")
    parsed = urlparse(text)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise UserError(f"malformed storage URI {text}: a file URI needs an absolute path (file:///abs/path)")
    elif not parsed.netloc:
        raise UserError(f"malformed storage URI {text}: no bucket or host after {scheme}://")
    return text


class SweepStorage:
    """One sweep's folder in the storage. Holds only strings, so Tune can pickle it with its callbacks;
    the pyarrow filesystem is opened on first use in each process."""

    def __init__(self, storage: str, sweep_name: str):
        self.uri = check_storage(storage)
        self.sweep_name = sweep_name
        self._fs: Any = None
        self._root: Optional[str] = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None, "_root": None}

    # ------------------------------------------------------------ where things live
    def _open(self) -> tuple[Any, str]:
        if self._fs is None:
            self._fs, self._root = open_filesystem(self.uri)
        return self._fs, self._root

    @property
    def filesystem(self):
        return self._open()[0]

    @property
    def sweep_path(self) -> str:
        """The sweep's folder inside the filesystem (no scheme)."""
        return f"{self._open()[1].rstrip('/')}/{self.sweep_name}"

    def sweep_uri(self, *parts: str) -> str:
        """The sweep's folder (or an entry under it) as a URI or local path, for Ray Train and for rows."""
        return "/".join([self.uri.rstrip("/"), self.sweep_name, *parts])

    def tune_run_kwargs(self) -> dict[str, Any]:
        """`storage_path` and `storage_filesystem` of Tune's RunConfig."""
        return {"storage_path": f"{self.sweep_path}/tune", "storage_filesystem": self.filesystem}

    # ------------------------------------------------------------ copying
    def check_writable(self) -> None:
        """Create the sweep folder and write a probe file: a wrong bucket or missing credentials fail
        here, in one line, before any trial starts."""
        fs = self.filesystem
        probe = f"{self.sweep_path}/.write-probe-{secrets.token_hex(4)}"
        try:
            fs.create_dir(self.sweep_path, recursive=True)
            with fs.open_output_stream(probe) as out:
                out.write(b"ok\n")
            fs.delete_file(probe)
        except Exception as exc:  # noqa: BLE001 - any filesystem error is the user's storage problem
            raise UserError(f"cannot write to storage {self.sweep_uri()}: {one_line(exc)}") from None

    def upload(self, folder: Path, names: Iterable[str] = SWEEP_FILES) -> None:
        """Copy the named files and folders of the local sweep folder into the storage (missing ones are skipped)."""
        for name in names:
            local = Path(folder) / name
            if local.is_dir():
                for file in sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith(".")):
                    self._put(file, f"{name}/{file.relative_to(local).as_posix()}")
            elif local.is_file():
                self._put(local, name)

    def _put(self, local: Path, relative: str) -> None:
        put_file(local, self.filesystem, f"{self.sweep_path}/{relative}")

    def download_missing(self, folder: Path, names: Iterable[str] = RESUME_FILES) -> list[str]:
        """Copy the named entries from the storage into `folder` where the local copy is missing
        (resuming on a new driver machine). Returns the entries copied."""
        fs = self.filesystem
        copied = []
        for name in names:
            src = f"{self.sweep_path}/{name}"
            kind = path_kind(fs, src)
            if kind is None or (Path(folder) / name).exists():
                continue
            if kind == "folder":
                for path in list_files(fs, src):
                    get_file(fs, path, Path(folder) / name / path[len(src) + 1:])
            else:
                get_file(fs, src, Path(folder) / name)
            copied.append(name)
        return copied
