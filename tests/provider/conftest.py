"""Airflow test harness: a temporary AIRFLOW_HOME with a fresh SQLite metadata DB.

Airflow reads its configuration when it is first imported, so the environment is set here,
at import time of this conftest (before any test module of this folder imports Airflow):

* ``AIRFLOW_HOME``: a temporary folder, removed at the end of the session;
* ``AIRFLOW__CORE__DAGS_FOLDER``: the repository's ``example_dags`` (``dag.test()`` only runs
  DAGs found in the dags folder: "dag is not serialized" otherwise);
* ``AIRFLOW_CONN_DICOMSCRUB_DEFAULT``: the ``dicomscrub_default`` connection holding
  :data:`AIRFLOW_SECRET`, a secret unique to this session that the leak checks look for.

The metadata DB is migrated once per session (``airflow db migrate``, the command users run)
by the :func:`airflow_db` fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from support import REPO_ROOT

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dicomscrub-airflow-home-"))
DAGS_FOLDER = REPO_ROOT / "example_dags"
AIRFLOW_SECRET = f"airflow-conn-secret-{uuid.uuid4().hex}"
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_DICOMSCRUB_DEFAULT": json.dumps(
            {"conn_type": "dicomscrub", "extra": {"secret": AIRFLOW_SECRET}}
        ),
    }
)


@pytest.fixture(scope="session", autouse=True)
def _remove_airflow_home() -> Iterator[None]:
    yield
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate a fresh SQLite metadata DB once per session; return AIRFLOW_HOME."""
    proc = subprocess.run(
        [str(AIRFLOW_BIN), "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_secret() -> str:
    """The secret in the ``dicomscrub_default`` connection (unique to this session)."""
    return AIRFLOW_SECRET


@pytest.fixture(scope="session")
def study_writer() -> type[StudyWriter]:
    """:class:`StudyWriter`: writes small CT studies with header PHI."""
    return StudyWriter


class StudyWriter:
    """Small generated CT studies with header PHI (pydicom; no external data)."""

    @staticmethod
    def write_instance(
        path: Path,
        *,
        patient_name: str,
        patient_id: str,
        study_uid: str,
        series_uid: str,
        truncate: bool = False,
    ) -> None:
        """Write a small CT instance with header PHI; ``truncate`` cuts it inside PixelData.

        A truncated file still has a readable header (so the manifest places it in its study's
        partition) but cannot be de-identified: the engine fails it with ``truncated``.
        """
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19610415"
        ds.PatientSex = "F"
        ds.StudyDate = "20240312"
        ds.StudyTime = "101500"
        ds.AccessionNumber = "ACC" + patient_id[-5:]
        ds.InstitutionName = "Saint Example Hospital"
        ds.ReferringPhysicianName = "House^Gregory"
        ds.StudyDescription = "CT CHEST"
        ds.Modality = "CT"
        ds.Rows = ds.Columns = 32
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = (np.arange(32 * 32, dtype=np.uint16) % 4096).tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        if truncate:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) - 700])

    @staticmethod
    def make_studies(root: Path, names: list[str], files_per_study: int = 2) -> dict[str, str]:
        """Write one study per patient name under ``root``; return {patient name: study UID}."""
        studies = {}
        for number, name in enumerate(names):
            study_uid, series_uid = generate_uid(), generate_uid()
            for index in range(files_per_study):
                StudyWriter.write_instance(
                    root / f"study{number}" / f"im{index}.dcm",
                    patient_name=name,
                    patient_id=f"MRN{40210 + number:07d}",
                    study_uid=study_uid,
                    series_uid=series_uid,
                )
            studies[name] = study_uid
        return studies
