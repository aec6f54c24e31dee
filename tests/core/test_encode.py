"""Re-encoding changed pixels: lossless, with the transfer syntax and attributes updated."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicomscrub.core.encode import encode_pixels, target_syntax
from dicomscrub.core.pixels import decode


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (ExplicitVRLittleEndian, ExplicitVRLittleEndian),
        (ImplicitVRLittleEndian, ImplicitVRLittleEndian),
        (ExplicitVRBigEndian, ExplicitVRLittleEndian),
        (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian),
        (RLELossless, RLELossless),
        (JPEGBaseline8Bit, RLELossless),
        (JPEGExtended12Bit, RLELossless),
        (JPEGLosslessSV1, RLELossless),
        (JPEGLSLossless, JPEGLSLossless),
        (JPEGLSNearLossless, JPEGLSLossless),
        (JPEG2000Lossless, JPEG2000Lossless),
        (JPEG2000, JPEG2000Lossless),
    ],
)
def test_target_syntax(source: UID, target: UID) -> None:
    assert target_syntax(source) == target


def _dataset(frames: NDArray[np.generic], photometric: str, bits_stored: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.SamplesPerPixel = 3 if frames.ndim == 4 else 1
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 1  # must become 0: the encoders write interleaved
    if frames.shape[0] > 1:
        ds.NumberOfFrames = frames.shape[0]
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = frames.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(frames.dtype.kind == "i")
    ds.PixelData = b"placeholder"
    return ds


def _roundtrip(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


rng = np.random.default_rng(1)
ARRAYS = {
    "int16-12bit": (rng.integers(-2048, 2047, (2, 40, 48)).astype(np.int16), "MONOCHROME2", 12),
    "uint16": (rng.integers(0, 65535, (1, 40, 48)).astype(np.uint16), "MONOCHROME1", 16),
    "uint8-rgb": (rng.integers(0, 255, (3, 40, 48, 3)).astype(np.uint8), "RGB", 8),
    "uint8-ybr": (rng.integers(0, 255, (1, 40, 48, 3)).astype(np.uint8), "YBR_FULL", 8),
}


@pytest.mark.parametrize("source", [RLELossless, JPEG2000, JPEGLSLossless, ExplicitVRBigEndian])
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_lossless_roundtrip(source: UID, name: str) -> None:
    frames, photometric, bits = ARRAYS[name]
    ds = _dataset(frames, photometric, bits)
    used = encode_pixels(ds, frames, photometric=photometric, source=source)
    out = _roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == used
    decoded = decode(out)
    assert np.array_equal(decoded.frames, frames)
    assert out.PhotometricInterpretation == photometric
    if frames.ndim == 4:
        assert out.PlanarConfiguration == 0
    assert ("LossyImageCompression" in out) == (source == JPEG2000)
    if source == JPEG2000:
        assert out.LossyImageCompression == "01"
        assert out.LossyImageCompressionMethod == "ISO_15444_1"


def test_lossy_source_keeps_existing_lossy_attributes() -> None:
    frames, photometric, bits = ARRAYS["uint8-rgb"]
    ds = _dataset(frames, photometric, bits)
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = ["ISO_10918_1"]
    ds.LossyImageCompressionRatio = [12.0]
    encode_pixels(ds, frames, photometric="RGB", source=JPEGBaseline8Bit)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert ds.LossyImageCompressionRatio == 12.0


def test_falls_back_to_uncompressed_when_the_encoder_refuses() -> None:
    frames = rng.integers(0, 2**31, (1, 16, 16)).astype(np.uint32)
    ds = _dataset(frames, "MONOCHROME2", 32)
    used = encode_pixels(ds, frames, photometric="MONOCHROME2", source=JPEG2000Lossless)
    assert used == ExplicitVRLittleEndian
    assert np.array_equal(decode(_roundtrip(ds)).frames, frames)


def test_extended_offset_table_is_dropped() -> None:
    frames, photometric, bits = ARRAYS["int16-12bit"]
    ds = _dataset(frames, photometric, bits)
    ds.ExtendedOffsetTable = b"\0" * 16
    ds.ExtendedOffsetTableLengths = b"\0" * 16
    encode_pixels(ds, frames, photometric=photometric, source=RLELossless)
    assert "ExtendedOffsetTable" not in ds
    assert "ExtendedOffsetTableLengths" not in ds


@pytest.mark.parametrize(
    ("source", "name"),
    [(RLELossless, "uint8-rgb"), (RLELossless, "int16-12bit"), (JPEGLSLossless, "int16-12bit")],
)
def test_only_changed_frames_are_encoded_again(source: UID, name: str) -> None:
    """Frames without a masked box keep their original compressed bytes."""
    from pydicom.encaps import generate_frames

    frames, photometric, bits = ARRAYS[name]
    ds = _dataset(frames, photometric, bits)
    ds.PlanarConfiguration = 0 if frames.ndim == 4 else None
    if frames.ndim != 4:
        del ds.PlanarConfiguration
    ds.compress(source, frames, generate_instance_uid=False)
    ds = _roundtrip(ds)
    original = list(generate_frames(ds.PixelData, number_of_frames=frames.shape[0]))
    edited = frames.copy()
    edited[1, 5:9, 5:20] = edited[1, 0, 0]  # a masked box on frame 1 only
    changed = [i == 1 for i in range(frames.shape[0])]
    used = encode_pixels(ds, edited, photometric=photometric, source=source, changed=changed)
    assert used == source
    out = _roundtrip(ds)
    now = list(generate_frames(out.PixelData, number_of_frames=frames.shape[0]))
    assert now[0] == original[0]
    assert now[1] != original[1]
    assert np.array_equal(decode(out).frames, edited)
