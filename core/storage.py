"""Storage helpers: fsspec URLs, safe path components and atomic writes.

Every path the batch runner touches is a local path or an fsspec URL
(``s3://``, ``gs://``, ``memory://``, ...); ``storage_options`` are passed to
fsspec unchanged. Three rules live here so that no other module re-implements
them:

* **Path components are validated** before they are joined into an output or
  audit path: no separators, no traversal, only ``[A-Za-z0-9._-]``
  (:func:`safe_component`). Partition keys get a stricter check that also
  refuses values that look like a calendar date (:func:`validate_partition_key`).
* **Writes are atomic**: data goes to a hidden temporary sibling
  (``.<name>.tmp-<random>``), which is then renamed over the final name
  (``os.replace`` locally, a server-side move on object stores, where a single
  object write is atomic). Readers see the old file or the new one, never half.
* **Hidden names are ours**: anything whose name starts with ``.`` is a
  temporary; pyarrow's dataset discovery ignores such names, so a crash never
  makes a half-written audit file visible.

Examples
--------
>>> join("s3://bucket/out", "p-1", "a.dcm")
's3://bucket/out/p-1/a.dcm'
>>> safe_component("2.25.1234", what="SOP UID")
'2.25.1234'
>>> try:
...     safe_component("../etc", what="partition")
... except ConfigurationError as exc:
...     print(str(exc)[:40])
partition is not a safe path component (
>>> fs = filesystem("memory://doctest-storage")
>>> write_bytes_atomic(fs, "memory://doctest-storage/a/b.txt", b"hello")
>>> fs.cat_file("memory://doctest-storage/a/b.txt")
b'hello'
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from .errors import ConfigurationError

__all__ = [
    "filesystem",
    "is_hidden",
    "join",
    "list_files",
    "open_atomic",
    "remove_empty_dirs",
    "remove_files",
    "replace_file",
    "safe_component",
    "sha256_of",
    "temp_sibling",
    "validate_partition_key",
    "write_bytes_atomic",
]

_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# A partition key is also a directory name inside the output tree: short and safe.
_PARTITION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Calendar dates in common spellings (19xx/20xx, month, day, with or without separators).
_DATE_LIKE = re.compile(
    r"(?<!\d)(19|20)\d{2}[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])(?!\d)"
)
_CHUNK = 1 << 20


def filesystem(
    url: str, storage_options: dict[str, Any] | None = None
) -> fsspec.AbstractFileSystem:
    """Return the fsspec filesystem for ``url`` (instances are cached by fsspec).

    Examples
    --------
    >>> type(filesystem("/tmp")).__name__
    'LocalFileSystem'
    """
    fs, _ = url_to_fs(url, **(storage_options or {}))
    return fs


def join(root: str, *parts: str) -> str:
    """Join URL or path components with ``/`` (no normalisation, no validation).

    Examples
    --------
    >>> join("/data/out/", "a", "b.dcm")
    '/data/out/a/b.dcm'
    """
    out = root.rstrip("/") if root not in ("/", "") else root
    for part in parts:
        out = f"{out}/{part.strip('/')}" if out else part
    return out


def safe_component(name: str, *, what: str) -> str:
    """Return ``name`` if it is a safe single path component, else raise.

    Safe means: 1-128 characters from ``[A-Za-z0-9._-]``, starting with a
    letter or digit (so never ``.``, ``..`` or a hidden name).

    Raises
    ------
    ConfigurationError
        Naming only ``what`` (never the value, which might hold PHI).
    """
    if not isinstance(name, str) or not _COMPONENT.fullmatch(name):
        raise ConfigurationError(
            f"{what} is not a safe path component (use letters, digits, '.', '_' and '-'; "
            "no leading '.', '-' or '_')"
        )
    return name


def validate_partition_key(key: str, *, allow_date_like: bool = False) -> str:
    """Return ``key`` if it is a valid partition key, else raise :class:`ConfigurationError`.

    A partition key becomes a directory of the output tree and of the audit
    (``partition=<key>``), so it must be a short safe path component (at most
    64 characters) and must not look like a calendar date (a study date in a
    de-identified tree would undo date shifting). Keys made by
    :func:`dicomscrub.core.manifest.build_manifest` always pass.

    Examples
    --------
    >>> validate_partition_key("s-0f3a9c2b7d1e4a56")
    's-0f3a9c2b7d1e4a56'
    >>> try:
    ...     validate_partition_key("2024-03-15")
    ... except ConfigurationError as exc:
    ...     print(str(exc)[:43])
    a partition key looks like a calendar date;
    """
    if not isinstance(key, str) or not _PARTITION.fullmatch(key):
        raise ConfigurationError(
            "a partition key must be 1-64 characters from letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if not allow_date_like and _DATE_LIKE.search(key):
        raise ConfigurationError(
            "a partition key looks like a calendar date; partition keys must not hold PHI "
            "(use study-date, which buckets by year)"
        )
    return key


def is_hidden(path: str) -> bool:
    """Whether the last component of ``path`` starts with ``.`` (our temporaries)."""
    return path.rstrip("/").rsplit("/", 1)[-1].startswith(".")


def temp_sibling(path: str) -> str:
    """A hidden, unique temporary name in the same folder as ``path``.

    Examples
    --------
    >>> temp_sibling("/out/a/b.parquet").startswith("/out/a/.b.parquet.tmp-")
    True
    """
    head, _, name = path.rstrip("/").rpartition("/")
    tmp = f".{name}.tmp-{uuid.uuid4().hex[:12]}"
    return f"{head}/{tmp}" if head or path.startswith("/") else tmp


def replace_file(fs: fsspec.AbstractFileSystem, tmp: str, final: str) -> None:
    """Rename ``tmp`` over ``final`` (``os.replace`` locally, a move on object stores)."""
    if isinstance(fs, LocalFileSystem):
        os.replace(fs._strip_protocol(tmp), fs._strip_protocol(final))
    else:
        fs.mv(tmp, final)


@contextmanager
def open_atomic(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary writing; it appears under its name only on success.

    The data is written to :func:`temp_sibling` and renamed over ``path`` when
    the block ends without an exception; on an exception the temporary is
    removed and ``path`` is left as it was.
    """
    parent = path.rstrip("/").rpartition("/")[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with fs.open(tmp, "wb") as handle:
            yield handle
        replace_file(fs, tmp, path)
    except BaseException:
        remove_files(fs, [tmp])
        raise


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`open_atomic`)."""
    with open_atomic(fs, path) as handle:
        handle.write(data)


def sha256_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks.

    Examples
    --------
    >>> fs = filesystem("memory://")
    >>> fs.pipe_file("memory://doctest-sha/x", b"abc")
    >>> sha256_of(fs, "memory://doctest-sha/x")[:12]
    'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Every file under ``root`` (recursively), as URLs/paths that start with ``root``.

    Returns an empty list when ``root`` does not exist. Hidden files are included
    (callers decide what to do with temporaries).
    """
    fs.invalidate_cache(root)  # other processes (workers) may have written meanwhile
    if not fs.exists(root):
        return []
    base = fs._strip_protocol(root).rstrip("/")
    prefix = root.rstrip("/")
    out = []
    for found in fs.find(root):
        stripped = fs._strip_protocol(found)
        if stripped == base:  # root itself is a file
            out.append(root)
        elif stripped.startswith(base + "/"):
            out.append(prefix + stripped[len(base) :])
    return sorted(out)


def remove_files(fs: fsspec.AbstractFileSystem, paths: list[str]) -> None:
    """Remove files, ignoring those already gone."""
    for path in paths:
        with suppress(FileNotFoundError):
            fs.rm_file(path)


def remove_empty_dirs(fs: fsspec.AbstractFileSystem, root: str) -> None:
    """Remove empty folders below ``root`` on a local filesystem (object stores have none)."""
    if not isinstance(fs, LocalFileSystem):
        return
    top = fs._strip_protocol(root)
    for current, _dirs, _files in os.walk(top, topdown=False):
        if current != top:
            with suppress(OSError):
                os.rmdir(current)
