"""Write output bytes safely: temporary name in the target folder, re-read, verify, rename.

Works for local paths and fsspec URLs (``s3://``, ``memory://`` ...). The
temporary file sits next to the target (``.<name>.<random>.dicomscrub-tmp``)
so the final rename stays on the same file system; on object stores the rename
is a copy and delete, and readers only ever see the final name once it is
complete. On any failure the temporary file is removed and nothing is left at
the target.

Examples
--------
>>> import tempfile, os
>>> target = os.path.join(tempfile.mkdtemp(), "sub", "out.dcm")
>>> write_verified(b"data", target, check=lambda data: None)
>>> open(target, "rb").read()
b'data'
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Callable
from typing import Any

import fsspec

from .errors import DeidError, ErrorCode

TMP_SUFFIX = ".dicomscrub-tmp"


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Return ``(fsspec filesystem, path)`` for a local path or URL."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, path


def read_bytes(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """Read a whole file from a local path or URL."""
    fs, path = filesystem(url, storage_options)
    data: bytes = fs.cat_file(path)
    return data


def same_location(a: str, b: str) -> bool:
    """True when two local paths or URLs name the same file."""
    try:
        fs_a, path_a = filesystem(a)
        fs_b, path_b = filesystem(b)
    except Exception:
        return False
    if type(fs_a) is not type(fs_b):
        return False
    if _is_local(fs_a):
        return os.path.realpath(path_a) == os.path.realpath(path_b)
    return bool(path_a == path_b)


def write_verified(
    data: bytes,
    destination: str,
    *,
    check: Callable[[bytes], None],
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write ``data`` to ``destination`` via a temporary name, after ``check`` passes on re-read.

    ``check`` receives the bytes read back from the temporary file and raises
    :class:`DeidError` to refuse them. Raises :class:`DeidError`
    (``write_failed`` or the check's code); the target is untouched on failure.
    """
    try:
        fs, path = filesystem(destination, storage_options)
    except Exception as exc:
        raise DeidError(
            ErrorCode.WRITE_FAILED, f"cannot open the output location ({type(exc).__name__})"
        ) from None
    parent, name = posixpath.split(path)
    tmp = posixpath.join(parent, f".{name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
    try:
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(tmp, data)
        written = fs.cat_file(tmp)
        if written != data:
            raise DeidError(ErrorCode.WRITE_FAILED, "the bytes read back differ from those written")
        check(written)
        if _is_local(fs):
            os.replace(tmp, path)
        else:
            fs.mv(tmp, path)
    except DeidError:
        _remove_quietly(fs, tmp)
        raise
    except Exception as exc:
        _remove_quietly(fs, tmp)
        raise DeidError(
            ErrorCode.WRITE_FAILED, f"writing the output failed ({type(exc).__name__})"
        ) from None


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _remove_quietly(fs: Any, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm_file(path)
    except Exception:  # pragma: no cover - best effort cleanup
        pass
