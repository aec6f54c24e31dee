"""Encoding the output from the input's own bytes, and writing it (local paths and URLs)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomscrub.core.pipeline import DEFER_SIZE, Engine, encode
from dicomscrub.core.read import raw_value, read_dataset
from dicomscrub.core.write import (
    element_bytes,
    encode_number_element,
    encode_parts,
    encode_sequence,
    original_spans,
    read_bytes,
    same_location,
)
from support import deid_data_dir, pydicom_test_file

SECRET = "write-test-secret"
# little and big endian, implicit VR, encapsulated pixel data, undefined-length sequences
# changed in place (deid-data), nested sequences (rtplan), an SR document
FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "ExplVR_BigEnd.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "reportsi.dcm",
    "deid:ultrasounds/ultrasound-multiframe.dcm",
    "deid:humans/ctbrain1.dcm",
]

WITH_CHANGED_SEQUENCES = {
    "rtplan.dcm",
    "reportsi.dcm",
    "deid:ultrasounds/ultrasound-multiframe.dcm",
    "deid:humans/ctbrain1.dcm",
}


def _path(name: str) -> Path:
    if name.startswith("deid:"):
        return deid_data_dir() / name.removeprefix("deid:")
    return pydicom_test_file(name)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine({"pixels": {"mode": "off"}}, secret=SECRET)


def _flat(ds: Dataset, path: str = "") -> Iterator[tuple[str, str, Any]]:
    for element in ds:
        where = f"{path}{element.tag}"
        if element.VR == "SQ":
            for index, item in enumerate(element.value or ()):
                yield from _flat(item, f"{where}[{index}].")
        else:
            yield where, element.VR, element.value


@pytest.mark.parametrize("name", FILES)
def test_kept_elements_are_written_from_the_input_bytes(engine: Engine, name: str) -> None:
    data = _path(name).read_bytes()
    ds = read_dataset(data, defer_size=DEFER_SIZE, keep_originals=True)
    spans = original_spans(ds, data)
    assert spans, name
    engine.deidentify(ds)
    parts = encode_parts(ds, data, spans)
    assert any(isinstance(p, memoryview) for p in parts)  # input bytes, not a re-encoding
    spliced = pydicom.dcmread(io.BytesIO(b"".join(parts)))
    plain = pydicom.dcmread(io.BytesIO(encode(ds)))  # pydicom writes every element
    assert list(_flat(spliced.file_meta)) == list(_flat(plain.file_meta))
    assert list(_flat(spliced)) == list(_flat(plain))


def test_unchanged_elements_keep_their_exact_bytes(engine: Engine) -> None:
    data = _path("CT_small.dcm").read_bytes()
    ds = read_dataset(data, defer_size=1024, keep_originals=True)
    spans = original_spans(ds, data)
    pixels = ds.get_item(0x7FE00010, keep_deferred=True)
    assert pixels.value is None  # deferred: never copied out of the input
    engine.deidentify(ds)
    out = b"".join(encode_parts(ds, data, spans))
    for tag in (0x00280010, 0x00180050, 0x7FE00010):  # Rows, SliceThickness, PixelData
        _, start, end = spans[tag]
        assert data[start:end] in out
    _, start, end = spans[0x00100010]
    assert data[start:end] not in out  # PatientName changed
    assert raw_value(ds, pixels) == pydicom.dcmread(io.BytesIO(out)).PixelData


def test_engine_output_matches_across_paths(engine: Engine, tmp_path: Path) -> None:
    data = _path("rtplan.dcm").read_bytes()
    out, result = engine.process_bytes(data)
    assert result.status == "ok"
    assert out is not None
    target = tmp_path / "a" / "rt.dcm"
    assert engine.process_file(str(_path("rtplan.dcm")), str(target)).status == "ok"
    assert target.read_bytes() == out
    assert [p.name for p in target.parent.iterdir()] == ["rt.dcm"]
    assert read_bytes(str(target)) == out
    assert same_location(str(target), str(tmp_path / "a" / ".." / "a" / "rt.dcm"))
    assert not same_location(str(target), "memory://a/rt.dcm")


@pytest.mark.parametrize("name", FILES)
def test_sequences_are_encoded_as_pydicom_encodes_them(engine: Engine, name: str) -> None:
    """encode_sequence writes changed sequences byte for byte as pydicom's writer does."""
    data = _path(name).read_bytes()
    ds = read_dataset(data, defer_size=DEFER_SIZE, keep_originals=True)
    engine.deidentify(ds)
    encoding = (bool(ds.original_encoding[0]), bool(ds.original_encoding[1]))
    compared = 0
    for tag in sorted(ds._dict):
        element = ds._dict[tag]
        if element.is_raw or element.VR != "SQ":
            continue
        ours = encode_sequence(element, encoding)
        if ours is None:
            continue  # items pydicom must write (another encoding or character set)
        assert ours == element_bytes(element, *encoding, ["iso8859"]), f"{name} {tag}"
        compared += 1
    if name in WITH_CHANGED_SEQUENCES:
        assert compared > 0, name


@pytest.mark.parametrize(
    ("vr", "value"),
    [
        ("US", 1),
        ("US", [0, 65535]),
        ("SS", -3),
        ("UL", 4_000_000_000),
        ("SL", [-1, 2]),
        ("FL", 1.5),
        ("FD", [0.1, -2]),
        ("US", None),
        ("SS", []),
    ],
)
@pytest.mark.parametrize("encoding", [(False, True), (True, True), (False, False)])
def test_numbers_are_encoded_as_pydicom_encodes_them(
    vr: str, value: Any, encoding: tuple[bool, bool]
) -> None:
    element = DataElement(0x00181234, vr, value)
    assert encode_number_element(element, *encoding) == element_bytes(
        element, *encoding, ["iso8859"]
    )


@pytest.mark.parametrize(
    ("vr", "value"),
    [("US", 70000), ("SS", 1.5), ("US", True), ("LO", "x"), ("US", "3")],
)
def test_numbers_pydicom_must_write_are_left_to_it(vr: str, value: Any) -> None:
    element = DataElement(0x00181234, vr, value, validation_mode=0)
    assert encode_number_element(element, False, True) is None


def test_same_location_sees_links_and_new_files(tmp_path: Path) -> None:
    source = tmp_path / "in.dcm"
    source.write_bytes(b"x")
    (tmp_path / "hard.dcm").hardlink_to(source)
    (tmp_path / "soft.dcm").symlink_to(source)
    assert same_location(str(source), str(tmp_path / "hard.dcm"))
    assert same_location(str(source), str(tmp_path / "soft.dcm"))
    assert same_location(str(source), str(tmp_path / "sub" / ".." / "in.dcm"))
    assert not same_location(str(source), str(tmp_path / "new.dcm"))  # not written yet
    assert not same_location(str(source), str(tmp_path / "missing" / "in.dcm"))
