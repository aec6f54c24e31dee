"""The byte-level re-read of written files: the same findings as pydicom + DenyList.find.

Every check compares :func:`scan_file` with the pydicom path it replaces in the
common case (``read_dataset`` then ``DenyList.find``) on real and generated
files; structural problems and unusual encodings must return None (pydicom
decides), never a clean result.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomscrub.core.errors import DeidError
from dicomscrub.core.pipeline import Engine
from dicomscrub.core.read import read_dataset
from dicomscrub.core.rescan import input_identifiers, scan_file
from dicomscrub.core.samples import generate_corpus
from dicomscrub.core.verify import DenyList, identifying_elements

UID_A = "1.2.826.0.1.3680043.2.1125.1.1"


def encode(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """``ds`` as a file, marked as de-identified (what every real output carries)."""
    ds.PatientIdentityRemoved = "YES"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "2.25.1"
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def pydicom_find(data: bytes, deny: DenyList, uids: list[str]) -> list[str]:
    return deny.find(read_dataset(data, defer_size=1 << 16), uids)


def deny_list() -> DenyList:
    return DenyList.from_elements(
        [
            ("PatientName", "PN", ("DOE^JANE",)),
            ("PatientID", "LO", ("MRN0012345",)),
            ("InstitutionName", "LO", ("Springfield General",)),
        ]
    )


def leaky() -> Dataset:
    """An output with identifiers left at every kind of location."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "PATIENT^ABCDEFGHIJ"
    ds.StudyDescription = "CT for [PERSON]"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = "DOE JANE"  # a whole value in a coded string
    ds.SOPInstanceUID = "2.25.99"
    inner = Dataset()
    inner.TextValue = "called jane at home"
    inner.ReferencedSOPInstanceUID = UID_A
    outer = Dataset()
    outer.ContentSequence = Sequence([Dataset(), inner])
    ds.ContentSequence = Sequence([outer])
    ds.add_new(0x00091010, "LO", "springfield general")
    ds.add_new(0x00091011, "UN", b"xx MRN0012345 xx")
    ds.add_new(0x00321030, "LO", "no identifier here")
    code = Dataset()
    code.CodeMeaning = "Jane"  # inside DeidentificationMethodCodeSequence: written by us
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    return ds


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
@pytest.mark.parametrize("undefined", [False, True])
def test_same_locations_as_pydicom_in_every_encoding(syntax: str, undefined: bool) -> None:
    ds = leaky()
    if undefined:  # sequences and items of undefined length, closed by delimiters
        ds["ContentSequence"].is_undefined_length = True
        ds.ContentSequence[0]["ContentSequence"].is_undefined_length = True
        for item in (ds.ContentSequence[0], *ds.ContentSequence[0].ContentSequence):
            item.is_undefined_length_sequence_item = True
    data = encode(ds, syntax)
    found = scan_file(data, deny_list(), [UID_A], max_depth=16)
    assert found == [  # file order: tags ascending, items depth first
        "(0009,1010)",
        "(0009,1011)",
        "BodyPartExamined",
        "ContentSequence[0].ContentSequence[1].ReferencedSOPInstanceUID",
        "ContentSequence[0].ContentSequence[1].TextValue",
    ]
    assert found == pydicom_find(data, deny_list(), [UID_A])
    assert scan_file(data, deny_list(), [], max_depth=16) == [h for h in found if "UID" not in h]


def test_file_meta_is_searched() -> None:
    ds = Dataset()
    ds.StudyDescription = "CT"
    data = encode(ds)
    meta = pydicom.dcmread(io.BytesIO(data))
    meta.file_meta.SourceApplicationEntityTitle = "MRN0012345"
    buffer = io.BytesIO()
    meta.save_as(buffer, enforce_file_format=True)
    found = scan_file(buffer.getvalue(), deny_list(), max_depth=16)
    assert found == ["FileMeta.SourceApplicationEntityTitle"]
    assert found == pydicom_find(buffer.getvalue(), deny_list(), [])


def test_clean_file_and_encapsulated_pixels() -> None:
    ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    ds.PatientName = "PATIENT^ABCDEFGHIJ"
    ds.InstitutionName = ""
    ds.remove_private_tags()
    data = encode(ds, str(ds.file_meta.TransferSyntaxUID))
    assert scan_file(data, deny_list(), max_depth=16) == []


def broken() -> Iterator[tuple[str, bytes]]:
    good = encode(leaky())
    yield "truncated", good[:-3]
    yield "trailing bytes", good + b"\x00\x00\x00\x00"
    yield "not DICOM", b"\x00" * 200
    at = good.index(b"CT for [PERSON]") - 2  # the StudyDescription length field
    yield "length past the end", good[:at] + b"\xff\x7f" + good[at + 2 :]
    yield "identity not removed", good.replace(b"YES ", b"NO  ")
    no_marker = leaky()
    plain = encode(no_marker)
    yield "identity element missing", plain.replace(b"\x12\x00\x62\x00CS\x04\x00YES ", b"")


@pytest.mark.parametrize(("name", "data"), list(broken()), ids=[n for n, _ in broken()])
def test_anything_not_plainly_well_formed_goes_to_pydicom(name: str, data: bytes) -> None:
    assert scan_file(data, deny_list(), max_depth=16) is None


def test_deep_nesting_deflate_and_code_extensions_go_to_pydicom() -> None:
    ds = leaky()
    assert scan_file(encode(ds), deny_list(), max_depth=1) is None  # two levels of items
    assert scan_file(encode(ds), deny_list(), max_depth=2) is not None
    assert (
        scan_file(encode(leaky(), DeflatedExplicitVRLittleEndian), deny_list(), max_depth=16)
        is None
    )
    ds = leaky()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    assert scan_file(encode(ds), deny_list(), max_depth=16) is None


def real_files(shared: Path | None) -> list[Path]:
    files = [Path(f) for f in get_testdata_files("*.dcm")]
    if shared is not None and shared.is_dir():
        files += [p for p in sorted(shared.rglob("*")) if p.is_file()]
    return files


def test_same_findings_as_pydicom_on_real_and_generated_files(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Each file's own identifiers, searched in the file itself: scan == pydicom, or None."""
    shared = Path(__file__).parents[2].parent / "shared" / "data" / "dicom"
    generate_corpus(tmp_path / "c", seed=3, patients=2)
    files = real_files(shared) + sorted((tmp_path / "c" / "dicom").rglob("*.dcm"))
    compared = left_to_pydicom = 0
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                data = encode(ds, str(ds.file_meta.TransferSyntaxUID))
                source = read_dataset(data, defer_size=1 << 16)
        except (DeidError, Exception):
            continue  # not a readable file in the first place
        deny = DenyList.from_elements(identifying_elements(source), ["ORIGINAL", "PRIMARY"])
        uids = [str(source.get("SOPInstanceUID", "")), str(source.get("StudyInstanceUID", ""))]
        found = scan_file(data, deny, uids, max_depth=16)
        if found is None:
            left_to_pydicom += 1
            continue
        assert found == deny.find(source, uids), path.name
        compared += 1
    assert compared >= 60
    assert left_to_pydicom <= compared // 10


def test_engine_outputs_are_scanned_and_a_bad_output_still_fails_closed() -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    engine = Engine({"pixels": {"mode": "off"}}, secret="s")
    out, result = engine.process_bytes(data)
    assert out is not None
    assert result.status == "ok"
    assert scan_file(out, DenyList(None, None), max_depth=16) == []
    source = read_dataset(data)
    done = engine.deidentify(source)
    with pytest.raises(DeidError) as raised:
        engine.verify_bytes(out[:-5], done)  # a cut-off file: pydicom reads it and refuses
    assert raised.value.code.value == "verify_failed"


def test_input_identifiers_are_identifying_elements_from_the_bytes(tmp_path: Path) -> None:
    """On each real and generated file: the walk's identifiers == pydicom's, or None."""
    shared = Path(__file__).parents[2].parent / "shared" / "data" / "dicom"
    generate_corpus(tmp_path / "c", seed=5, patients=2)
    files = real_files(shared) + sorted((tmp_path / "c" / "dicom").rglob("*.dcm"))
    compared = left_to_pydicom = 0
    for path in files:
        data = path.read_bytes()
        try:
            source = read_dataset(data, defer_size=1 << 16)
        except DeidError:
            continue
        found = input_identifiers(data, max_depth=16)
        if found is None:
            left_to_pydicom += 1
            continue
        assert found == identifying_elements(source), path.name
        compared += 1
    assert compared >= 60
    assert left_to_pydicom <= compared // 4


def test_input_sequences_stay_undecoded_until_the_header_step_needs_them() -> None:
    ds = leaky()
    del ds[0x00091011]  # an element encoded as UN: reading it is left to pydicom
    ds.OtherPatientIDsSequence = Sequence([Dataset()])  # removed by the profile (X)
    ds.OtherPatientIDsSequence[0].PatientID = "MRN-OTHER-1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    data = encode(ds)
    found = input_identifiers(data, max_depth=16)
    assert found is not None
    assert ("PatientID", "LO", ("MRN-OTHER-1",)) in found  # read from the undecoded bytes
    assert input_identifiers(data, max_depth=1) is None  # too deep: pydicom decides
    engine = Engine({"pixels": {"mode": "off"}}, secret="s")
    source = read_dataset(data, defer_size=1 << 16, parse_sequences=False)
    assert type(source.get_item(0x00101002)).__name__ == "RawDataElement"
    out, result = engine.process_bytes(data)
    assert result.status == "ok", result.error_message
    assert out is not None
    assert b"MRN-OTHER-1" not in out


def test_too_deep_inputs_still_fail_with_their_code() -> None:
    inner = Dataset()
    inner.CodeValue = "1"
    for _ in range(5):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    inner.PatientName = "DOE^JANE"
    engine = Engine({"pixels": {"mode": "off"}, "max_sequence_depth": 3}, secret="s")
    out, result = engine.process_bytes(encode(inner))
    assert out is None
    assert result.error_code == "sequence_too_deep"
