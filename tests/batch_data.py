"""Small generated studies for the batch-runner tests (importable as ``batch_data``).

Tiny pixel images (16x16, 16-bit) with header PHI, written with pydicom: fast
enough to run a few dozen through the engine in a test. Every value is
deterministic, so reruns produce identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class GeneratedFile:
    """One generated file and the PHI planted in it."""

    path: Path
    patient_name: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    study_date: str

    @property
    def phi(self) -> list[str]:
        """Values that must not survive anywhere in the outputs, paths or audit."""
        family = self.patient_name.split("^")[0]
        return [family, self.patient_id, self.study_uid, self.sop_uid, self.study_date]


def make_file(
    path: Path,
    *,
    patient: int,
    study: int,
    series: int,
    instance: int,
    modality: str = "CT",
) -> GeneratedFile:
    """Write one small CT-like instance with header PHI and return what was planted."""
    seed = f"dicomscrub-test/{patient}/{study}"
    study_uid = generate_uid(entropy_srcs=[seed])
    series_uid = generate_uid(entropy_srcs=[f"{seed}/series={series}"])
    sop_uid = generate_uid(entropy_srcs=[f"{seed}/series={series}/instance={instance}"])
    name = f"ZZTESTFAMILY{patient:03d}^JANE"
    patient_id = f"MRN{7300100 + patient}"
    study_date = f"2023{(study % 12) + 1:02d}{(patient % 27) + 1:02d}"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[f"{seed}/frame-of-reference"])
    ds.Modality = modality
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = f"19{50 + patient % 40}0{1 + patient % 9}15"
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"ACC{880000 + patient * 10 + study}"
    ds.StudyID = str(study + 1)
    ds.SeriesNumber = series + 1
    ds.InstanceNumber = instance + 1
    ds.InstitutionName = "Zzyzx General Hospital"
    ds.ReferringPhysicianName = "ZZDOCTOR^ALBERT"
    ds.StudyDescription = f"CT CHEST for {name.split('^')[0]}"
    ds.SeriesDescription = "AXIAL 1mm"
    ds.Rows = 16
    ds.Columns = 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    pixels = (np.arange(256, dtype=np.uint16).reshape(16, 16) * (instance + 1)) % 4096
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return GeneratedFile(path, name, patient_id, study_uid, series_uid, sop_uid, study_date)


def make_studies(
    root: Path,
    *,
    patients: int = 2,
    studies_per_patient: int = 1,
    series_per_study: int = 2,
    instances_per_series: int = 2,
    start: int = 0,
) -> list[GeneratedFile]:
    """Write a small study tree under ``root`` (``<patient>/<study>/<series>/<n>.dcm``)."""
    files = []
    for p in range(start, start + patients):
        for s in range(studies_per_patient):
            for se in range(series_per_study):
                for i in range(instances_per_series):
                    path = root / f"pat{p:03d}" / f"st{s}" / f"se{se}" / f"{i}.dcm"
                    files.append(make_file(path, patient=p, study=s, series=se, instance=i))
    return files
