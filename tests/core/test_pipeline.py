"""The Engine contract: files, bytes, URLs, callable destinations, fail-closed writes."""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
from pathlib import Path
from typing import Any

import fsspec
import pydicom
import pytest

from dicomscrub.core.errors import DeidError, ErrorCode
from dicomscrub.core.pipeline import Engine, SourceDigest, patient_key_of
from dicomscrub.core.results import FileResult
from dicomscrub.core.write import write_verified
from support import pydicom_test_file

SECRET = "pipeline-test-secret"
HEADER_ONLY: dict[str, Any] = {"pixels": {"mode": "off"}}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(HEADER_ONLY, secret=SECRET)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_process_file_writes_a_verified_file(engine: Engine, tmp_path: Path) -> None:
    source = pydicom_test_file("CT_small.dcm")
    before = sha(source)
    target = tmp_path / "out" / "ct.dcm"
    result = engine.process_file(str(source), str(target))
    assert result.status == "ok"
    assert result.output == str(target)
    assert result.source_sha256 == before
    assert sha(source) == before
    assert result.modality == "CT"
    assert result.frames == 1
    assert set(result.uids) == {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}
    assert all(v.startswith("2.25.") for v in result.uids.values())
    assert {"read", "deidentify", "encode", "write", "total"} <= set(result.timings)
    out = pydicom.dcmread(target)
    assert out.SOPInstanceUID == result.uids["SOPInstanceUID"]
    assert out.preamble == b"\x00" * 128
    assert out.PatientIdentityRemoved == "YES"
    assert out.PixelData == pydicom.dcmread(source).PixelData  # pixels untouched when off
    assert [p.name for p in target.parent.iterdir()] == ["ct.dcm"]  # no temp file left


def test_callable_destination_sees_uids_and_modality(engine: Engine, tmp_path: Path) -> None:
    seen: list[FileResult] = []

    def layout(result: FileResult) -> str:
        seen.append(result)
        uids = result.uids
        return str(tmp_path / uids["StudyInstanceUID"] / f"{result.modality}.dcm")

    result = engine.process_file(str(pydicom_test_file("MR_small.dcm")), layout)
    assert result.status == "ok"
    assert seen[0].uids["StudyInstanceUID"].startswith("2.25.")
    assert Path(result.output or "").name == "MR.dcm"
    assert Path(result.output or "").is_file()


def test_failures_leave_nothing_behind(engine: Engine, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"")
    result = engine.process_file(str(bad), str(tmp_path / "out" / "bad.dcm"))
    assert (result.status, result.error_code) == ("failed", "empty_file")
    assert result.output is None
    assert result.entities == []
    assert not (tmp_path / "out").exists()
    missing = engine.process_file(str(tmp_path / "nope.dcm"), str(tmp_path / "x.dcm"))
    assert missing.error_code == "read_failed"
    assert "nope" not in (missing.error_message or "")


def test_refuses_to_overwrite_the_input(engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "ct.dcm"
    source.write_bytes(pydicom_test_file("CT_small.dcm").read_bytes())
    before = sha(source)
    result = engine.process_file(str(source), str(source))
    assert result.error_code == "write_failed"
    assert sha(source) == before


def test_write_removes_the_temporary_file_when_the_check_fails(tmp_path: Path) -> None:
    def refuse(data: bytes) -> None:
        raise DeidError(ErrorCode.VERIFY_FAILED, "refused")

    target = tmp_path / "a" / "out.dcm"
    with pytest.raises(DeidError) as caught:
        write_verified(b"data", str(target), check=refuse)
    assert caught.value.code is ErrorCode.VERIFY_FAILED
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_fsspec_urls(engine: Engine) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/in/ct.dcm", pydicom_test_file("CT_small.dcm").read_bytes())
    result = engine.process_file("memory://in/ct.dcm", "memory://out/study/ct.dcm")
    assert result.status == "ok", result.error_message
    assert pydicom.dcmread(io.BytesIO(fs.cat("/out/study/ct.dcm"))).PatientIdentityRemoved == "YES"
    assert fs.ls("/out/study", detail=False) == ["/out/study/ct.dcm"]


def test_process_bytes(engine: Engine) -> None:
    data = pydicom_test_file("rtplan.dcm").read_bytes()
    out, result = engine.process_bytes(data, source="rtplan")
    assert out is not None
    assert result.status == "ok"
    assert result.source == "rtplan"
    assert result.frames == 0
    assert result.header_entities > 0
    assert result.pixel_entities == 0
    again, _ = engine.process_bytes(data)
    assert again == out  # deterministic
    assert engine.process_bytes(b"junk")[1].error_code == "not_dicom"


def test_engine_accepts_every_policy_form(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("base: basic\npixels:\n  mode: 'off'\n", encoding="utf-8")
    for policy in ("seed-compatible", str(policy_file), {"name": "x"}, None):
        assert Engine(policy, secret=SECRET).policy_hash
    assert Engine(str(policy_file), secret=SECRET).policy.options.clean_descriptors is False


def test_engine_pickles_for_worker_processes(engine: Engine) -> None:
    clone = pickle.loads(pickle.dumps(engine))
    data = pydicom_test_file("CT_small.dcm").read_bytes()
    assert clone.process_bytes(data)[0] == engine.process_bytes(data)[0]


def test_pixel_step_missing_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dicomscrub.core.pixels", None)  # import now fails
    engine = Engine({"name": "default"}, secret=SECRET)
    out, result = engine.process_bytes(pydicom_test_file("CT_small.dcm").read_bytes())
    assert out is None
    assert result.error_code == "ocr_unavailable"
    no_pixels = pydicom_test_file("rtplan.dcm").read_bytes()
    assert engine.process_bytes(no_pixels)[1].status == "ok"  # nothing to scan


def test_default_policy_runs_the_pixel_step() -> None:
    engine = Engine(None, secret=SECRET)
    out, result = engine.process_bytes(pydicom_test_file("CT_small.dcm").read_bytes())
    assert result.status == "ok", result.error_message
    assert out is not None
    codes = {
        i.CodeValue for i in pydicom.dcmread(io.BytesIO(out)).DeidentificationMethodCodeSequence
    }
    assert "113101" in codes  # Clean Pixel Data


def test_patient_key() -> None:
    ds = pydicom.Dataset()
    ds.PatientName = "Doe^Jane"
    assert patient_key_of(ds) == "name:DOE JANE"
    ds.PatientID = "123"
    assert patient_key_of(ds) == "id:123|"


def test_files_of_a_record_share_identifiers_and_detector(engine: Engine) -> None:
    """What follows from a record's identifying values is built once per record."""
    data = pydicom_test_file("CT_small.dcm").read_bytes()
    first = pydicom.dcmread(io.BytesIO(data))
    second = pydicom.dcmread(io.BytesIO(data))
    second.SOPInstanceUID = "1.2.3.4.5"  # another image of the same series
    record = engine._record(first)
    assert engine._record(second) is record
    third = pydicom.dcmread(io.BytesIO(data))
    third.PatientName = "OTHER^PATIENT"
    assert engine._record(third) is not record
    assert "OTHER" in engine._record(third).deny.types


def test_source_digest_of_large_inputs_is_computed_beside_the_work(tmp_path: Path) -> None:
    """Inputs of 128 KB and more are hashed in a thread; the audit gets the same SHA-256."""
    small, large = b"abc" * 10, b"\x01" * SourceDigest.THREAD_AT
    assert SourceDigest(small).hexdigest() == hashlib.sha256(small).hexdigest()
    assert SourceDigest(large).hexdigest() == hashlib.sha256(large).hexdigest()
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.add_new(0x00091010, "LO", "ACME")
    ds.add_new(0x00091011, "OB", b"\x00" * (2 * SourceDigest.THREAD_AT))  # removed: private
    source = tmp_path / "big.dcm"
    ds.save_as(source)
    data = source.read_bytes()
    engine = Engine({"pixels": {"mode": "off"}}, secret="s")
    result = engine.process_file(str(source), str(tmp_path / "out.dcm"))
    assert result.status == "ok"
    assert result.source_sha256 == hashlib.sha256(data).hexdigest()
    failed = engine.process_file(str(source), str(source))  # refused: the input itself
    assert failed.status == "failed"
    assert failed.source_sha256 == hashlib.sha256(data).hexdigest()
    assert engine.process_bytes(data)[1].source_sha256 == hashlib.sha256(data).hexdigest()


# ------------------------------------------------- damaged inputs found by fuzzing the corpus


def _digest_in_child(queue: Any) -> None:
    data = b"\x02" * SourceDigest.THREAD_AT
    queue.put(SourceDigest(data).hexdigest())


def test_source_digest_in_a_forked_process() -> None:
    """A process forked after the parent hashed in its thread gets a thread of its own
    (the parent's does not run in the child: waiting on it would never end)."""
    import multiprocessing

    large = b"\x02" * SourceDigest.THREAD_AT
    assert SourceDigest(large).hexdigest() == hashlib.sha256(large).hexdigest()  # parent's thread
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_digest_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == hashlib.sha256(large).hexdigest()


def _damaged(name: str, old: bytes, new: bytes) -> bytes:
    data = pydicom_test_file(name).read_bytes()
    assert data.count(old) == 1, old
    return data.replace(old, new)


def test_damaged_inputs_fail_with_their_own_code_not_internal_error() -> None:
    """Corruptions a fuzzer (random bytes flipped, cut, inserted in corpus and shared files)
    turned into ``internal_error`` or an exception escaping the engine: each now fails that
    file alone with the code of what is wrong with it."""
    engine = Engine(None, secret=SECRET)
    # a file meta value whose length does not fit its VR (UL of 5 bytes): pydicom raised
    # BytesLengthException, not a ValueError
    meta = _damaged(
        "CT_small.dcm",
        b"\x02\x00\x00\x00UL\x04\x00\xc0\x00\x00\x00",
        b"\x02\x00\x00\x00UL\x05\x00\xc0\x00\x00\x00\x00",
    )
    # an explicit VR that is no DICOM VR ("C}"): pydicom failed when the value was first used
    vr = _damaged("CT_small.dcm", b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00C}")
    # the same in the file meta (TransferSyntaxUID's "UI")
    meta_vr = _damaged("CT_small.dcm", b"\x02\x00\x10\x00UI", b"\x02\x00\x10\x00U\x8d")
    # RLE data the Rust decoder panics on (pyo3's PanicException is no Exception)
    rle = bytearray(pydicom_test_file("MR_small_RLE.dcm").read_bytes())
    rle[rle.rfind(b"\xe0\x7f\x10\x00") + 12 + 28] = 0
    # a deflated dataset whose stream is damaged (zlib.error)
    deflated = bytearray(pydicom_test_file("image_dfl.dcm").read_bytes())
    deflated[400] ^= 0xFF
    # a palette whose descriptor asks for 99-bit entries
    ds = pydicom.dcmread(pydicom_test_file("OBXXXX1A.dcm"))
    ds.RedPaletteColorLookupTableDescriptor = [256, 0, 99]
    buffer = io.BytesIO()
    ds.save_as(buffer)
    for data, code in (
        (meta, "invalid_value"),
        (vr, "invalid_value"),
        (meta_vr, "invalid_value"),
        (bytes(rle), "decode_failed"),
        (bytes(deflated), "truncated"),
        (buffer.getvalue(), "decode_failed"),
    ):
        out, result = engine.process_bytes(data)
        assert out is None
        assert result.error_code == code, result.error_message


# -- real files that are unusual but valid (pydicom's own test and palette files) ----------------


def test_standard_colour_palette_keeps_its_well_known_instance_uid(
    engine: Engine, tmp_path: Path
) -> None:
    """The standard palettes (Color Palette Storage) have well-known SOPInstanceUIDs
    (1.2.840.10008.1.5.x), which are kept; verify used to count them as surviving
    original UIDs and refused every such file."""
    from pydicom.data import get_palette_files

    source = Path(get_palette_files("spring.dcm")[0])
    result = engine.process_file(str(source), str(tmp_path / "spring.dcm"))
    assert result.status == "ok", result.error_message
    out = pydicom.dcmread(tmp_path / "spring.dcm")
    assert out.SOPInstanceUID == pydicom.dcmread(source).SOPInstanceUID == "1.2.840.10008.1.5.5"
    assert out.file_meta.MediaStorageSOPInstanceUID == "1.2.840.10008.1.5.5"


@pytest.mark.parametrize("pixels", ["off", "phi"])
def test_implicit_dataset_under_an_explicit_transfer_syntax_is_written_explicit(
    tmp_path: Path, pixels: str
) -> None:
    """SC_rgb_jpeg.dcm declares JPEG Baseline (explicit VR) but its dataset is implicit
    VR: pydicom reads it and cannot write it back (its elements have no VR)."""
    source = pydicom_test_file("SC_rgb_jpeg.dcm")
    before = pydicom.dcmread(source)
    assert not before.file_meta.TransferSyntaxUID.is_implicit_VR
    assert pydicom.dcmread(source).get_item(0x00080008).VR is None  # read as found: implicit
    engine = Engine({"pixels": {"mode": pixels}}, secret=SECRET)
    result = engine.process_file(str(source), str(tmp_path / "sc.dcm"))
    assert result.status == "ok", result.error_message
    data = (tmp_path / "sc.dcm").read_bytes()
    assert b"\x08\x00\x08\x00CS" in data  # ImageType written with its explicit VR
    out = pydicom.dcmread(tmp_path / "sc.dcm")
    assert out.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert list(out.ImageType) == list(before.ImageType)
    assert out.PixelData == before.PixelData  # no text in the image: the JPEG bytes as they were
    assert out.PatientIdentityRemoved == "YES"


def test_dicomdir_is_refused_with_a_message_that_says_what_to_do(
    engine: Engine, tmp_path: Path
) -> None:
    result = engine.process_file(str(pydicom_test_file("DICOMDIR")), str(tmp_path / "DICOMDIR"))
    assert (result.status, result.error_code) == ("failed", "invalid_value")
    assert "DICOMDIR" in (result.error_message or "")
    assert not (tmp_path / "DICOMDIR").exists()


def test_a_placeholder_birth_date_does_not_fail_the_dummy_dates(tmp_path: Path) -> None:
    """The basic profile writes the dummy date 19000101; a record whose birth date is that
    placeholder (deid-data's ultrasound files) was refused as if the dummy leaked it."""
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.PatientBirthDate = "19000101"
    source = tmp_path / "in.dcm"
    ds.save_as(source)
    engine = Engine({"base": "basic", "pixels": {"mode": "off"}}, secret=SECRET)
    result = engine.process_file(str(source), str(tmp_path / "out.dcm"))
    assert result.status == "ok", result.error_message
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.ContentDate == "19000101"
    # verify still finds a real birth date where it survives, and not the placeholder
    from pydicom.dataset import Dataset

    from dicomscrub.core.verify import find_residual_phi

    before, after = Dataset(), Dataset()
    before.PatientBirthDate = after.ContentDate = "19000101"
    assert find_residual_phi(before, after) == []
    before.PatientBirthDate = after.ContentDate = "19610312"
    assert find_residual_phi(before, after) == ["ContentDate"]
