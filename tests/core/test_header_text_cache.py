"""The header step reuses cleaned free text across the files of a record, and only those."""

from __future__ import annotations

import pickle
from typing import Any

from pydicom.dataset import Dataset

from dicomscrub.core.header import HeaderStep
from dicomscrub.core.policy import Policy
from dicomscrub.core.pseudonyms import Pseudonymizer
from dicomscrub.core.verify import DenyList

TEXT = "CT CHEST - follow-up for SMITHERS"


class CountingDetector:
    """A text detector that finds nothing and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, text: str, *, ocr: bool = False, device: bool = False) -> list[Any]:
        self.calls += 1
        return []


def dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = "SMITHERS^WAYLON"
    ds.StudyDescription = TEXT
    return ds


def deny_for(name: str) -> DenyList:
    return DenyList.from_elements([("PatientName", "PN", (name,))])


def step() -> HeaderStep:
    return HeaderStep(Policy.load({"pixels": {"mode": "off"}}), Pseudonymizer("k" * 32))


def test_files_of_a_record_share_cleaned_text() -> None:
    header, detector, deny = step(), CountingDetector(), deny_for("SMITHERS^WAYLON")
    first = header.run(dataset(), patient_key="P1", detector=detector, deny=deny)
    ds = dataset()
    second = header.run(ds, patient_key="P1", detector=detector, deny=deny)
    assert detector.calls == 1  # the second file reused the first one's cleaned text
    assert first.entities == second.entities
    assert "SMITHERS" not in ds.StudyDescription
    fresh = step().run(dataset(), patient_key="P1", detector=CountingDetector(), deny=deny)
    assert fresh.entities == second.entities


def test_another_record_cleans_its_own_text() -> None:
    header, detector = step(), CountingDetector()
    header.run(dataset(), patient_key="P1", detector=detector, deny=deny_for("SMITHERS^WAYLON"))
    ds = dataset()
    header.run(ds, patient_key="P2", detector=detector, deny=deny_for("FLANDERS^NED"))
    assert detector.calls == 2
    assert ds.StudyDescription == TEXT  # not the first record's cleaned text


def test_pickled_step_leaves_cleaned_text_behind() -> None:
    header, detector, deny = step(), CountingDetector(), deny_for("SMITHERS^WAYLON")
    header.run(dataset(), patient_key="P1", detector=detector, deny=deny)
    clone = pickle.loads(pickle.dumps(header))
    assert clone.cleaned_texts(detector, deny) == {}
