"""Shared fixtures: sample files, the secret, the shared data folder.

Sample files come from PyPI packages installed as test dependencies
(pydicom's bundled files, ``pydicom-data``, ``deid-data``) and, when it
exists, from ``../shared/data/dicom/`` next to the repository. Nothing from
``../shared`` is ever copied into the repository.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import SHARED_DICOM, SHARED_STANDARD, TEST_SECRET


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with a known secret in DICOMSCRUB_SECRET; tesseract single-threaded."""
    monkeypatch.setenv("DICOMSCRUB_SECRET", TEST_SECRET)
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")


@pytest.fixture
def secret() -> str:
    """The secret the tests run with."""
    return TEST_SECRET


@pytest.fixture(scope="session")
def shared_dicom() -> Path:
    """``../shared/data/dicom`` (tests skip with a reason when it is absent)."""
    if not (SHARED_DICOM / "manifest.csv").is_file():
        pytest.skip(f"shared sample folder {SHARED_DICOM} is absent on this machine")
    return SHARED_DICOM


@pytest.fixture(scope="session")
def shared_standard() -> Path:
    """``../shared/data/standard`` (skip when absent)."""
    if not SHARED_STANDARD.is_dir():
        pytest.skip(f"shared standard folder {SHARED_STANDARD} is absent on this machine")
    return SHARED_STANDARD


@pytest.fixture
def tmp_cwd(tmp_path: Path) -> Iterator[Path]:
    """Run a test inside its temporary directory."""
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


class S3Server:
    """moto's S3 server on a free loopback port (never a remote address)."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self.storage_options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint_url},
        }
        self._buckets = 0

    def make_bucket(self) -> str:
        """Create a fresh bucket; return ``s3://<name>``."""
        import s3fs

        self._buckets += 1
        name = f"dicomscrub-test-{os.getpid()}-{self._buckets}"
        s3fs.S3FileSystem(**self.storage_options).mkdir(name)
        return f"s3://{name}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A session-wide moto S3 server on 127.0.0.1 (tests pass ``storage_options`` to fsspec)."""
    import logging

    threaded = pytest.importorskip("moto.moto_server.threaded_moto_server")
    pytest.importorskip("s3fs")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = threaded.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the loopback S3 server, as ``s3://<name>``."""
    return s3_server.make_bucket()
