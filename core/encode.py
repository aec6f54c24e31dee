"""Write changed pixels back: lossless re-encoding and transfer-syntax bookkeeping.

The pixel step calls :func:`encode_pixels` only when a stored value changed;
otherwise the original pixel bytes stay untouched (no generational loss).

Target transfer syntax, by source:

==============================================  =====================================
source                                          written as
==============================================  =====================================
uncompressed (little/big endian, deflated)      Explicit VR Little Endian (Implicit
                                                VR Little Endian stays implicit)
RLE Lossless                                    RLE Lossless
JPEG baseline / extended / lossless             RLE Lossless
JPEG-LS lossless / near-lossless                JPEG-LS Lossless
JPEG 2000 (lossless, lossy), HTJ2K              JPEG 2000 Lossless
==============================================  =====================================

If the preferred lossless encoder refuses the data, the pixels are written
uncompressed (Explicit VR Little Endian). An input that was lossy keeps
``LossyImageCompression = "01"`` (and gains it when it was missing).

Examples
--------
>>> import numpy as np
>>> from pydicom.dataset import Dataset, FileMetaDataset
>>> from pydicom.uid import RLELossless
>>> ds = Dataset(); ds.file_meta = FileMetaDataset()
>>> ds.Rows, ds.Columns, ds.SamplesPerPixel = 4, 4, 1
>>> ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
>>> ds.PhotometricInterpretation = "MONOCHROME2"
>>> frames = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
>>> encode_pixels(ds, frames, photometric="MONOCHROME2", source=RLELossless).name
'RLE Lossless'
>>> ds.file_meta.TransferSyntaxUID == RLELossless
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from .errors import DeidError, ErrorCode, is_library_failure, quiet_codec_logs

#: Source transfer syntaxes whose decoded values already differ from the original acquisition.
LOSSY = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG extended
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # JPEG 2000
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",  # HTJ2K
}

_UNCOMPRESSED = {
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
}


def target_syntax(source: UID) -> UID:
    """Return the transfer syntax changed pixels of a ``source`` file are written in.

    Examples
    --------
    >>> from pydicom.uid import JPEGBaseline8Bit, JPEG2000
    >>> target_syntax(JPEGBaseline8Bit).name
    'RLE Lossless'
    >>> target_syntax(JPEG2000).name
    'JPEG 2000 Image Compression (Lossless Only)'
    """
    if source == ImplicitVRLittleEndian:
        return ImplicitVRLittleEndian
    if source in _UNCOMPRESSED or not source.is_compressed:
        return ExplicitVRLittleEndian
    if source.keyword.startswith(("JPEG2000", "HTJ2K")):
        return JPEG2000Lossless
    if source.keyword.startswith("JPEGLS"):
        return JPEGLSLossless
    return RLELossless


def encode_pixels(
    ds: Dataset,
    frames: NDArray[np.generic],
    *,
    photometric: str,
    source: UID,
    changed: Sequence[bool] | None = None,
) -> UID:
    """Store ``frames`` as the pixel data of ``ds``; return the transfer syntax used.

    Parameters
    ----------
    ds
        The dataset, modified in place: PixelData, TransferSyntaxUID,
        PhotometricInterpretation, PlanarConfiguration, LossyImageCompression
        (and Method); an extended offset table is dropped.
    frames
        Every frame, shape ``(frames, rows, columns[, samples])``, in the
        stored representation described by ``ds`` (BitsAllocated, BitsStored,
        PixelRepresentation).
    photometric
        PhotometricInterpretation of ``frames`` (``RGB`` after a JPEG 2000
        colour transform was undone, ``YBR_FULL`` after YBR_FULL_422 was
        upsampled, ...).
    source
        The transfer syntax the pixels were read from.
    changed
        Which frames changed. When the pixels are written back in their own
        compressed transfer syntax (RLE, JPEG-LS or JPEG 2000 lossless, one
        sample per pixel for the latter two) and the colour model is the
        stored one, unchanged frames keep their original compressed bytes and
        only the changed frames are encoded.

    Raises
    ------
    DeidError
        ``encode_failed`` when not even the uncompressed form can be written.
    """
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    stored_photometric = str(ds.get("PhotometricInterpretation", ""))
    ds.PhotometricInterpretation = photometric
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        ds.PlanarConfiguration = 0
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    if source in LOSSY:
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds:
            ds.LossyImageCompressionMethod = LOSSY[source]

    if not source.is_little_endian:
        _parse_every_element(ds)
    target = target_syntax(source)
    if (
        changed is not None
        and target == source
        and photometric == stored_photometric
        and (target == RLELossless or int(ds.get("SamplesPerPixel", 1)) == 1)
        and not all(changed)
    ):
        try:
            with quiet_codec_logs():
                _encode_changed_frames(ds, frames, changed, target)
            return target
        except BaseException as exc:  # fall back to encoding every frame
            if not is_library_failure(exc):
                raise
    if target.is_compressed:
        try:
            array = frames[0] if frames.shape[0] == 1 else frames
            with quiet_codec_logs():
                ds.compress(target, array, generate_instance_uid=False)
            return target
        except BaseException as exc:  # the encoder refused this data: fall back to uncompressed
            if not is_library_failure(exc):
                raise
            target = ExplicitVRLittleEndian
    try:
        _store_native(ds, frames)
    except (ValueError, TypeError) as exc:
        raise DeidError(
            ErrorCode.ENCODE_FAILED, f"cannot store pixel data ({type(exc).__name__})"
        ) from None
    ds.file_meta.TransferSyntaxUID = target
    return target


def _encode_changed_frames(
    ds: Dataset, frames: NDArray[np.generic], changed: Sequence[bool], target: UID
) -> None:
    """Encapsulate the original bytes of unchanged frames and newly encoded changed frames."""
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.pixels.encoders.base import get_encoder

    count = frames.shape[0]
    originals = list(generate_frames(ds.PixelData, number_of_frames=count))
    if len(originals) != count or len(changed) != count:
        raise ValueError("frame count mismatch")
    encoder = get_encoder(target)
    options: dict[str, Any] = {
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1)),
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.BitsStored),
        "pixel_representation": int(ds.get("PixelRepresentation", 0)),
        "photometric_interpretation": str(ds.PhotometricInterpretation),
        "number_of_frames": 1,
        "planar_configuration": 0,
    }
    fragments = [
        encoder.encode(np.ascontiguousarray(frames[i]), **options) if changed[i] else originals[i]
        for i in range(count)
    ]
    ds.PixelData = encapsulate(fragments)
    elem = ds["PixelData"]
    elem.VR = "OB"
    elem.is_undefined_length = True


def _parse_every_element(ds: Dataset) -> None:
    """Parse every raw element so the dataset can be written little endian afterwards."""

    def visit(dataset: Dataset, elem: object) -> None:
        return None

    ds.walk(visit)
    ds.set_original_encoding(None, None)


def _store_native(ds: Dataset, frames: NDArray[np.generic]) -> None:
    """Write ``frames`` uncompressed, little endian, interleaved samples."""
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if bits == 1:
        from pydicom.pixels.utils import pack_bits

        data = pack_bits(np.asarray(frames, dtype=np.uint8).ravel())
    elif bits in (8, 16, 32):
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        data = np.ascontiguousarray(frames, dtype=dtype).tobytes()
    else:
        raise ValueError(f"BitsAllocated {bits} is not supported")
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    elem = ds["PixelData"]
    elem.VR = "OW" if bits > 8 else "OB"
    elem.is_undefined_length = False
