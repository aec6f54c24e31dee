"""Plain helpers for tests (importable as ``support``: pytest puts ``tests/`` on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DICOM = REPO_ROOT.parent / "shared" / "data" / "dicom"
SHARED_STANDARD = REPO_ROOT.parent / "shared" / "data" / "standard"

# A fixed test secret. Tests that check secrets never leak look for this value.
TEST_SECRET = "test-secret-8f2c1e0b7d4a"


def pydicom_test_file(name: str) -> Path:
    """Path of a file bundled with pydicom or shipped in ``pydicom-data`` (no network)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(str(path))


def deid_data_dir() -> Path:
    """Root of the ``deid-data`` package's DICOM files."""
    import deid_data

    return Path(deid_data.__file__).parent / "data"
