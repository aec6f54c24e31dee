"""Storage helpers: safe path components, partition keys, atomic writes on local, memory and S3."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from dicomscrub.core.errors import ConfigurationError
from dicomscrub.core.storage import (
    filesystem,
    is_hidden,
    join,
    list_files,
    open_atomic,
    remove_empty_dirs,
    safe_component,
    sha256_of,
    temp_sibling,
    validate_partition_key,
    write_bytes_atomic,
)


@pytest.mark.parametrize(
    "name", ["2.25.123456789", "s-0f3a9c2b7d1e4a56", "a", "A_b-c.dcm", "x" * 128]
)
def test_safe_component_accepts(name: str) -> None:
    assert safe_component(name, what="component") == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-x", "_x", "a b", "é", "x" * 129, "a\x00"],
)
def test_safe_component_rejects_without_echoing_the_value(name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        safe_component(name, what="component")
    if len(name) > 2:
        assert name not in str(info.value)


@pytest.mark.parametrize("key", ["s-0f3a9c2b7d1e4a56", "y2024", "h07", "CT", "p-none"])
def test_partition_key_accepts(key: str) -> None:
    assert validate_partition_key(key) == key


@pytest.mark.parametrize(
    "key", ["2024-03-15", "20240315", "scan_1999.12.31", "../etc", "a/b", "", "x" * 65]
)
def test_partition_key_rejects_dates_and_unsafe_names(key: str) -> None:
    with pytest.raises(ConfigurationError):
        validate_partition_key(key)


def test_join_and_hidden_names() -> None:
    assert join("s3://b/root/", "p", "x.dcm") == "s3://b/root/p/x.dcm"
    assert join("/r", "a") == "/r/a"
    tmp = temp_sibling("memory://b/dir/file.parquet")
    assert tmp.startswith("memory://b/dir/.file.parquet.tmp-")
    assert is_hidden(tmp)
    assert not is_hidden("memory://b/dir/file.parquet")


def _crash_while_writing(fs: Any, target: str) -> None:
    with open_atomic(fs, target) as handle:
        handle.write(b"half of the new content")
        raise RuntimeError("crash while writing")


def test_atomic_write_local_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    fs = filesystem(str(tmp_path))
    target = str(tmp_path / "sub" / "out.bin")
    write_bytes_atomic(fs, target, b"first")
    write_bytes_atomic(fs, target, b"second")
    assert Path(target).read_bytes() == b"second"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.bin"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path) -> None:
    fs = filesystem(str(tmp_path))
    target = str(tmp_path / "out.bin")
    write_bytes_atomic(fs, target, b"old")
    with pytest.raises(RuntimeError):
        _crash_while_writing(fs, target)
    assert Path(target).read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_list_remove_and_hash_on_memory() -> None:
    root = f"memory://storage-test-{uuid.uuid4().hex[:8]}"
    fs = filesystem(root)
    assert list_files(fs, root) == []
    write_bytes_atomic(fs, f"{root}/a/b/c.dcm", b"abc")
    write_bytes_atomic(fs, f"{root}/d.dcm", b"d")
    assert list_files(fs, root) == [f"{root}/a/b/c.dcm", f"{root}/d.dcm"]
    assert sha256_of(fs, f"{root}/a/b/c.dcm").startswith("ba7816bf")


def test_remove_empty_dirs_keeps_root_and_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    remove_empty_dirs(filesystem(str(tmp_path)), str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_atomic_write_and_listing_on_loopback_s3(s3_server: Any, s3_bucket: str) -> None:
    options = s3_server.storage_options
    fs = filesystem(s3_bucket, options)
    target = join(s3_bucket, "audit", "part-0.parquet")
    write_bytes_atomic(fs, target, b"one")
    write_bytes_atomic(fs, target, b"two")
    assert fs.cat_file(target) == b"two"
    assert list_files(fs, join(s3_bucket, "audit")) == [target]
    with pytest.raises(RuntimeError):
        _crash_while_writing(fs, target)
    assert fs.cat_file(target) == b"two"
    assert list_files(fs, s3_bucket) == [target]
