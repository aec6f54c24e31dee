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
