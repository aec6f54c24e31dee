"""Reading: bad input is rejected early with a clear code and a PHI-free message."""

from __future__ import annotations

import io
import struct
import zlib

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from dicomscrub.core.errors import DeidError, ErrorCode
from dicomscrub.core.read import (
    check_pixel_cap,
    codec_for,
    decode_values,
    element_vr,
    read_dataset,
    sequence_depth,
)
from support import pydicom_test_file


def _bytes(name: str) -> bytes:
    return pydicom_test_file(name).read_bytes()


def _code(data: bytes, **kwargs: int) -> ErrorCode:
    with pytest.raises(DeidError) as caught:
        read_dataset(data, **kwargs)
    assert "DOE" not in caught.value.message
    assert "CompressedSamples" not in caught.value.message
    return caught.value.code


def deep(levels: int) -> bytes:
    """An explicit-VR file whose sequences nest ``levels`` deep."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = "DOE^JANE"
    inner = Dataset()
    inner.CodeValue = "1"
    for _ in range(levels - 1):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = Sequence([inner])
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def raw_deep(levels: int) -> bytes:
    """Undefined-length nested sequences built byte by byte (too deep for pydicom's writer)."""
    item_start = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    seq_start = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
    body = (seq_start + item_start) * levels + (item_end + seq_end) * levels
    head = deep(1)
    return head + body


def test_valid_files() -> None:
    assert read_dataset(_bytes("CT_small.dcm")).Modality == "CT"
    assert read_dataset(_bytes("MR_small_implicit.dcm")).Modality == "MR"
    assert read_dataset(_bytes("image_dfl.dcm")).Rows > 0  # deflated transfer syntax
    ds = pydicom.dcmread(io.BytesIO(_bytes("CT_small.dcm")))
    del ds.file_meta
    raw = io.BytesIO()
    pydicom.dcmwrite(raw, Dataset(ds), implicit_vr=True, little_endian=True)  # no preamble
    assert raw.getvalue()[128:132] != b"DICM"
    assert read_dataset(raw.getvalue()).PatientName == "CompressedSamples^CT1"


def test_empty_and_not_dicom() -> None:
    assert _code(b"") is ErrorCode.EMPTY_FILE
    assert _code(b"hello world, this is not DICOM at all" * 10) is ErrorCode.NOT_DICOM
    assert _code(zlib.compress(_bytes("CT_small.dcm"))) is ErrorCode.NOT_DICOM
    assert _code(b"\x89PNG\r\n\x1a\n" + bytes(300)) is ErrorCode.NOT_DICOM


@pytest.mark.parametrize("cut", [132, 300, 2000, -1000, -1])
def test_truncated(cut: int) -> None:
    data = _bytes("CT_small.dcm")
    assert _code(data[:cut]) in (ErrorCode.TRUNCATED, ErrorCode.NOT_DICOM)


def test_truncated_files_from_pydicom() -> None:
    assert _code(_bytes("rtplan_truncated.dcm")) is ErrorCode.TRUNCATED
    assert _code(_bytes("MR_truncated.dcm")) is ErrorCode.TRUNCATED
    data = _bytes("JPEG2000.dcm")
    assert _code(data[:-200]) is ErrorCode.TRUNCATED  # inside encapsulated pixel data
    assert _code(data[:-300]) is ErrorCode.TRUNCATED  # inside an element before it


def test_unknown_transfer_syntax() -> None:
    ds = pydicom.dcmread(io.BytesIO(_bytes("CT_small.dcm")))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert _code(buffer.getvalue()) is ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX


def test_sequence_depth_limit() -> None:
    assert read_dataset(deep(16), max_sequence_depth=16).ContentSequence
    assert _code(deep(17), max_sequence_depth=16) is ErrorCode.SEQUENCE_TOO_DEEP


def test_absurd_depth_fails_cleanly() -> None:
    code = _code(raw_deep(5000), max_sequence_depth=16)
    assert code in (ErrorCode.SEQUENCE_TOO_DEEP, ErrorCode.TRUNCATED)


def test_pixel_cap_checked_from_the_header() -> None:
    data = _bytes("CT_small.dcm")  # 128 x 128
    assert read_dataset(data, max_pixels=128 * 128).Rows == 128
    assert _code(data, max_pixels=128 * 128 - 1) is ErrorCode.TOO_MANY_PIXELS
    ds = Dataset()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 1000, 1000, "1000"
    with pytest.raises(DeidError, match="1000000000"):
        check_pixel_cap(ds, 400_000_000)


def test_helpers() -> None:
    assert element_vr(0x00100010, None) == "PN"
    assert element_vr(0x00100010, "UN") == "PN"
    assert element_vr(0x00291010, None) == "UN"
    assert codec_for(("ISO_IR 100",)) == "latin_1"
    assert codec_for(("ISO_IR 192",)) == "UTF8"
    assert codec_for(("",)) == "iso8859" or codec_for(("",)) is not None
    ds = read_dataset(_bytes("CT_small.dcm"))
    raw = ds.get_item(0x00100010)
    assert decode_values(ds, 0x00100010, "PN", raw, "latin_1") == ["CompressedSamples^CT1"]
    assert type(ds.get_item(0x00100010)).__name__ == "RawDataElement"  # not decoded in place
    outer = Dataset()
    outer.ReferencedStudySequence = Sequence([Dataset()])
    assert sequence_depth(outer, 10) == 1
