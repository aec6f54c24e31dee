"""The PS3.15 Table E.1-1 profile: generated file, combination rule, wildcards, options."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from pydicom.tag import Tag

from dicomscrub.core.policy import ProfileOptions
from dicomscrub.core.profile import PROFILE_RESOURCE, ProfileTable, resolve_options
from support import REPO_ROOT

GENERATOR = REPO_ROOT / "scripts" / "generate_profile.py"
COMMITTED = REPO_ROOT / "core" / "data" / PROFILE_RESOURCE


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("generate_profile", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table() -> ProfileTable:
    return ProfileTable.load()


def test_committed_file_is_what_the_generator_makes(shared_standard: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    source = shared_standard / "confidentiality_profile_attributes.json"
    assert _generator().main([str(source), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")


def test_all_rows_codes_and_attribution(table: ProfileTable) -> None:
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert document["row_count"] == len(table.rows) == 621
    assert document["attribution"]["source_commit"] == "7f4749d0"
    assert document["attribution"]["source_license"] == "MIT"
    assert "Table E.1-1" in document["attribution"]["standard"]
    basic = {row.basic_profile for row in table.rows}
    assert basic == {"D", "Z", "X", "U", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}
    assert {code for row in table.rows for code in row.options.values()} == {"K", "C"}
    assert {row.basic_action for row in table.rows} <= {"X", "Z", "D", "K", "C", "U"}
    assert table.private_row is not None
    assert table.private_row.options == {"retain_safe_private": "C"}


@pytest.mark.parametrize(
    ("code", "std", "vr", "expected"),
    [
        ("X/Z", "Y", "DA", "Z"),
        ("X/Z", "N", "DA", "X"),
        ("X/D", "Y", "LO", "D"),
        ("Z/D", "Y", "LO", "D"),
        ("X/Z/D", "Y", "LO", "D"),
        ("X/Z/D", "Y", "SQ", "Z"),
        ("X/D", "Y", "SQ", "D"),
        ("X/Z/U*", "Y", "SQ", "U"),
        ("X/Z/D", "N", "LO", "X"),
        ("K", "Y", "CS", "K"),
    ],
)
def test_combination_rule(code: str, std: str, vr: str, expected: str) -> None:
    assert _generator().resolve(code, std, vr) == expected


@pytest.mark.parametrize(
    ("keyword", "basic", "resolved"),
    [
        ("AcquisitionDate", "X/Z", "Z"),
        ("InstanceCreationDate", "X/D", "D"),
        ("InstitutionName", "X/Z/D", "D"),
        ("PatientID", "Z/D", "D"),
        ("ReferencedImageSequence", "X/Z/U*", "U"),
        ("ReferencedStudySequence", "X/Z", "Z"),
        ("InstitutionCodeSequence", "X/Z/D", "Z"),
        ("PatientName", "Z", "Z"),
        ("SOPInstanceUID", "U", "U"),
    ],
)
def test_rows_resolved(table: ProfileTable, keyword: str, basic: str, resolved: str) -> None:
    row = table.row(int(Tag(keyword)))
    assert row is not None
    assert row.keyword == keyword
    assert (row.basic_profile, row.basic_action) == (basic, resolved)


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        (0x60003000, "Overlay Data"),
        (0x601E3000, "Overlay Data"),
        (0x60024000, "Overlay Comments"),
        (0x50000005, "Curve Data"),
        (0x501E3000, "Curve Data"),
        (0x00091001, "Private Attributes"),
        (0x7FE10010, "Private Attributes"),
    ],
)
def test_wildcards_and_private_row(table: ProfileTable, tag: int, name: str) -> None:
    row = table.row(tag)
    assert row is not None
    assert row.name == name
    action = table.action(tag, ProfileOptions())
    assert action is not None
    assert action.code == "X"


def test_unlisted_tags(table: ProfileTable) -> None:
    assert table.row(int(Tag("Rows"))) is None
    assert table.row(0x60000010) is None  # OverlayRows: not in the table
    assert table.action(int(Tag("Modality")), ProfileOptions()) is None


@pytest.mark.parametrize(
    ("option", "keyword", "without", "with_option"),
    [
        ("retain_longitudinal_full_dates", "StudyDate", "C", "K"),
        ("retain_patient_characteristics", "PatientSex", "Z", "K"),
        ("retain_device_identity", "DeviceSerialNumber", "D", "K"),
        ("retain_institution_identity", "InstitutionName", "D", "K"),
        ("retain_uids", "SOPInstanceUID", "U", "K"),
        ("clean_graphics", "OverlayData", "X", "C"),
    ],
)
def test_each_option_changes_its_rows(
    table: ProfileTable, option: str, keyword: str, without: str, with_option: str
) -> None:
    tag = 0x60003000 if keyword == "OverlayData" else int(Tag(keyword))
    base = table.action(tag, ProfileOptions())
    changed = table.action(tag, ProfileOptions(**{option: True}))
    assert base is not None
    assert changed is not None
    assert (base.code, changed.code) == (without, with_option)
    assert changed.option == option


@pytest.mark.parametrize(
    ("option", "keyword", "without", "with_option"),
    [
        ("retain_longitudinal_modified_dates", "StudyDate", "Z", "C"),
        ("clean_descriptors", "StudyDescription", "X", "C"),
        ("clean_structured_content", "ContentSequence", "D", "C"),
    ],
)
def test_default_on_options(
    table: ProfileTable, option: str, keyword: str, without: str, with_option: str
) -> None:
    tag = int(Tag(keyword))
    off = table.action(tag, ProfileOptions(**{option: False}))
    on = table.action(tag, ProfileOptions(**{option: True}))
    assert off is not None
    assert on is not None
    assert (off.code, on.code) == (without, with_option)


def test_retain_beats_clean(table: ProfileTable) -> None:
    row = table.row(int(Tag("DateOfLastDetectorCalibration")))
    assert row is not None
    both = ProfileOptions(retain_device_identity=True, retain_longitudinal_modified_dates=True)
    assert resolve_options(row, both).code == "K"
    assert resolve_options(row, ProfileOptions()).code == "C"
