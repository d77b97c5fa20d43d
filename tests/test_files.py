"""rdskd_dist/files.py: atomic local writes, safe loading, and storage URIs (local paths and file://)."""

from __future__ import annotations

import os

import pytest
import torch

from rdskd_dist.errors import UserError
from rdskd_dist.files import (atomic_copy, atomic_torch_save, atomic_write, atomic_write_json, get_bytes, get_file,
                              is_uri, join, list_files, local_path, open_filesystem, path_kind, put_bytes, put_file,
                              read_json, read_text_at, safe_torch_load, write_text_at)


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "new" / "row.json"
    atomic_write_json({"a": 1}, path)
    atomic_write_json({"a": 2}, path)
    assert read_json(path) == {"a": 2}
    assert os.listdir(path.parent) == ["row.json"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "row.json"
    atomic_write_json({"a": 1}, path)

    def broken(f):
        f.write(b"{half")
        raise RuntimeError("disk died")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["row.json"]


def test_torch_save_and_safe_load(tmp_path):
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "m.pt")
    assert torch.equal(safe_torch_load(tmp_path / "m.pt", "model")["w"], torch.ones(2))
    atomic_copy(tmp_path / "m.pt", tmp_path / "copy" / "m.pt")
    assert torch.equal(safe_torch_load(tmp_path / "copy" / "m.pt", "model")["w"], torch.ones(2))
    with pytest.raises(UserError, match="model file not found"):
        safe_torch_load(tmp_path / "missing.pt", "model")


def test_one_rule_for_uris():
    assert is_uri("s3://bucket/x") and is_uri("file:///abs") and not is_uri("/abs/path") and not is_uri("rel")
    assert local_path("file:///a/b%20c") == local_path("/a/b c")
    assert local_path("gs://bucket/x") is None
    assert join("s3://bucket/", "sweep", "ledger") == "s3://bucket/sweep/ledger"
    with pytest.raises(UserError, match="storage nope://x: "):
        open_filesystem("nope://x")


@pytest.mark.parametrize("form", ["path", "file_uri"])
def test_put_get_and_text_under_a_storage(tmp_path, form):
    root = tmp_path / "store"
    location = str(root) if form == "path" else f"file://{root}"
    fs, base = open_filesystem(location)
    assert base == str(root)
    (tmp_path / "local.bin").write_bytes(b"abc")
    put_file(tmp_path / "local.bin", fs, join(base, "d", "one.bin"))
    put_bytes(b"xyz", fs, join(base, "d", "e", "two.bin"))
    assert path_kind(fs, join(base, "d")) == "folder" and path_kind(fs, join(base, "d", "one.bin")) == "file"
    assert path_kind(fs, join(base, "nothing")) is None
    assert list_files(fs, join(base, "d")) == [join(base, "d", "e", "two.bin"), join(base, "d", "one.bin")]
    assert get_bytes(fs, join(base, "d", "e", "two.bin")) == b"xyz" and get_bytes(fs, join(base, "none")) is None
    get_file(fs, join(base, "d", "one.bin"), tmp_path / "back" / "one.bin")
    assert (tmp_path / "back" / "one.bin").read_bytes() == b"abc"
    write_text_at(location, "run/location.json", "[]")
    assert read_text_at(location, "run/location.json") == "[]" and read_text_at(location, "run/none") is None
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
