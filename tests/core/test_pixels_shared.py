"""Pixel engine on the real burned-in files of ``../shared/data/dicom`` (phi mode).

The manifest there transcribes the burned-in text by eye. After redaction, OCR
of the output must read none of the PHI strings, the non-PHI labels the OCR
could read before must still be readable, nothing outside the masked boxes may
change, and the file must decode with its frames, shape and colour model.
The MRNs burned into the deid-data images are not in the header: the detector
finds them by pattern.
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicomscrub.core.ocr import OcrBackend, get_backend
from dicomscrub.core.pixels import Decoded, decode, ocr_views, read_text, redact_pixels
from dicomscrub.core.policy import Policy

pytestmark = pytest.mark.shared_data

# file -> (PHI strings that must be gone, labels that must survive when readable before)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "deid-data/GREYSCALE_IMAGE.dcm": (
        ["PATIENTFI", "00079241539", "08/29/1951", "CLEVELAN", "03/02/2017", "05:24:57"],
        ["Breast", "L12-5", "TAC1", "Dyn"],
    ),
    "deid-data/RGB_IMAGE.dcm": (
        ["ZZZDOWNTIME", "MARY", "00047431395", "8:48:26", "4/14/2020", "120907058", "CLEVELAND"],
        ["Sag", "Liver", "SIEMENS", "Renal", "General"],
    ),
    "derived-from-deid-data/GREYSCALE_CINE_first10frames_RLE.dcm": (
        ["PATIENTFI", "00079241539", "08/29/1951", "03/02/2017", "05:24:54"],
        ["Breast", "L12-5"],
    ),
    "presidio/2_ORIGINAL.dcm": (["KAUFMAN", "SCOTT", "03.09.2012", "07.22.1943"], []),
    "pydicom-data/OBXXXX1A.dcm": (
        ["11-05-25-142825", "5/25/2011", "2:56:22", "Healthcare"],
        ["28Hz", "HGen", "Cist"],
    ),
    "pydicom-data/OBXXXX1A_rle_2frame.dcm": (
        ["11-05-25-142825", "5/25/2011", "2:56:22", "Healthcare"],
        ["28Hz", "HGen"],
    ),
    "pydicom-bundled/examples_palette.dcm": (["11-05-25-142825", "5/25/2011", "2:56:22"], []),
    "pydicom-data/US1_J2KR.dcm": (["BAPTIST"], ["LYMPH", "NODE"]),
    "pydicom-data/US1_J2KI.dcm": (["BAPTIST"], ["LYMPH", "NODE"]),
}


def _hmac(text: str) -> str:
    return hashlib.sha256(b"k" + text.encode()).hexdigest()


def _detector(ds: Dataset):  # type: ignore[no-untyped-def]
    from dicomscrub.core.text_detect import RecordIdentifiers, TextDetector

    return TextDetector(Policy().text).with_identifiers(RecordIdentifiers.from_dataset(ds))


def _words(ds: Dataset, backend: OcrBackend) -> str:
    """Every word OCR reads on any frame, joined by spaces."""
    frames = read_text(ocr_views(ds, decode(ds)), backend)
    return " ".join(w.text for f in frames for line in f.lines for w in line)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).upper()


@pytest.fixture(scope="module", params=["tesserocr", "pytesseract"])
def backend(request: pytest.FixtureRequest) -> OcrBackend:
    return get_backend(request.param)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_phi_text_is_masked_and_labels_survive(
    shared_dicom: Path, name: str, backend: OcrBackend
) -> None:
    original = pydicom.dcmread(shared_dicom / name)
    phi, labels = EXPECTED[name]
    ds = copy.deepcopy(original)
    outcome = redact_pixels(
        ds, detector=_detector(original), policy=Policy(), hmac=_hmac, backend=backend
    )
    assert outcome.changed
    buf = io.BytesIO()
    ds.save_as(buf)
    out = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    before: Decoded = decode(original)
    after = decode(out)
    # Geometry and colour model preserved; the output decodes.
    assert after.frames.shape == before.frames.shape
    assert outcome.frames == before.frames.shape[0]
    assert (out.SamplesPerPixel == 3) == (before.frames.ndim == 4)
    if original.PhotometricInterpretation.startswith(("MONOCHROME", "PALETTE")):
        assert out.PhotometricInterpretation == original.PhotometricInterpretation
    assert out.BurnedInAnnotation == "NO"
    # Nothing outside the masked boxes changed, on any frame.
    for f in range(before.frames.shape[0]):
        area = np.zeros(before.frames.shape[1:3], bool)
        for e in outcome.entities:
            if e.frame == f and e.box is not None:
                x, y, w, h = e.box
                area[y : y + h, x : x + w] = True
        diff = after.frames[f] != before.frames[f]
        if diff.ndim == 3:
            diff = diff.any(axis=-1)
        assert not np.any(diff & ~area), f"frame {f}: pixels changed outside the masked boxes"
    # OCR of the output reads none of the PHI; the labels it could read before survive.
    text_after = _norm(_words(out, backend))
    for value in phi:
        assert _norm(value) not in text_after, f"{value!r} still readable"
    text_before = _norm(_words(original, backend))
    for label in labels:
        if _norm(label) in text_before:
            assert _norm(label) in text_after, f"label {label!r} was masked"
    assert all(e.raw_text is None for e in outcome.entities)


def test_cine_reads_repeated_captions_once(shared_dicom: Path) -> None:
    """10 frames with the same captions: every frame masked, one OCR pass over unique regions."""
    original = pydicom.dcmread(
        shared_dicom / "derived-from-deid-data/GREYSCALE_CINE_first10frames_RLE.dcm"
    )
    ds = copy.deepcopy(original)
    outcome = redact_pixels(ds, detector=_detector(original), policy=Policy(), hmac=_hmac)
    per_frame = [sum(1 for e in outcome.entities if e.frame == f) for f in range(10)]
    assert min(per_frame) >= 4
    assert len(set(per_frame)) == 1  # the same captions on every frame
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless


def test_engine_runs_the_pixel_step(shared_dicom: Path, secret: str) -> None:
    """Through the header engine's pipeline: pixel entities, BurnedInAnnotation, a valid file."""
    from dicomscrub.core.pipeline import Engine

    ds = pydicom.dcmread(shared_dicom / "presidio/2_ORIGINAL.dcm")
    result = Engine(secret=secret).deidentify(ds)
    pixel = [e for e in result.entities if e.location == "pixel"]
    assert {e.entity_type for e in pixel} >= {"PERSON", "DATE"}
    assert result.pixels_changed
    assert result.dataset.BurnedInAnnotation == "NO"
    text = _norm(_words(result.dataset, get_backend()))
    assert "KAUFMAN" not in text
    assert "1943" not in text
