"""Every frame is checked: burned-in PHI must be unreadable on every output frame.

Each output frame is read on its own by tesseract over the **whole frame**
(not our proposals, not our view): a local-contrast rendering (so dim text on
a dark background reads too) upscaled and read in sparse-text mode. Before
redaction the same reading must find the PHI (so each test can fail); after
it, no frame may still show it. Cases: a generated 3-frame secondary capture,
a generated cine whose caption changes intensity and position from frame to
frame, one whose caption appears only on later frames (over moving anatomy),
and the real multi-frame files: ``OBXXXX1A_rle_2frame`` (frame 1 repeats the
text, dimmer), ``GREYSCALE_CINE_first10frames_RLE`` and pydicom's 30-frame
``examples_ybr_color`` (lossy JPEG, tiny text).
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid
from scipy import ndimage

from dicomscrub.core.ocr import SYSTEM_TESSDATA, OcrBackend, get_backend
from dicomscrub.core.pixels import PixelOutcome, decode, redact_pixels
from dicomscrub.core.policy import Policy

NAME, MRN, BIRTH = "ROSEWOOD^HARRIET", "83920417", "19510829"
GENERATED_PHI = ["ROSEWOOD", "HARRIET", MRN]


# --- the independent reading: tesseract over each whole frame ------------------------------------


@pytest.fixture(scope="module")
def tesseract() -> Any:
    """libtesseract in sparse-text mode (whole frames, no layout assumptions)."""
    tesserocr = pytest.importorskip("tesserocr")
    api = tesserocr.PyTessBaseAPI(path=SYSTEM_TESSDATA, lang="eng", psm=tesserocr.PSM.SPARSE_TEXT)
    yield api
    api.End()


def display_grey(ds: Dataset) -> NDArray[np.float32]:
    """Every frame as displayed, one grey value per pixel (pydicom's own decoding)."""
    frames = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        frames = frames[np.newaxis]
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        frames = np.stack([apply_color_lut(f, ds) for f in frames])
    if frames.ndim == 4:  # RGB (pydicom converts YBR to RGB): the brightest channel
        frames = frames.max(axis=-1)
    return np.asarray(frames, dtype=np.float32)


def frame_text(api: Any, grey: NDArray[np.float32], upscale: int = 2) -> str:
    """Tesseract's reading of one whole frame, upper case, whitespace removed.

    Each pixel is stretched between the minimum and maximum of its 25-pixel
    neighbourhood, so dim captions read like bright ones; then inverted
    (dark text on light) and upscaled.
    """
    low = ndimage.minimum_filter(grey, 25)
    high = ndimage.maximum_filter(grey, 25)
    local = np.clip((grey - low) * 255.0 / np.maximum(high - low, 3.0), 0, 255)
    image = Image.fromarray(255 - local.astype(np.uint8))
    if upscale != 1:
        size = (image.width * upscale, image.height * upscale)
        image = image.resize(size, Image.Resampling.LANCZOS)
    api.SetImage(image)
    return re.sub(r"\s+", "", str(api.GetUTF8Text())).upper()


def readable(text: str, phi: list[str]) -> list[str]:
    """The PHI strings found in ``text`` (compared without whitespace, upper case)."""
    return [p for p in phi if re.sub(r"\s+", "", p).upper() in text]


# --- running the pixel step ----------------------------------------------------------------------


def _hmac(text: str) -> str:
    return hashlib.sha256(b"k" + text.encode()).hexdigest()


def redact(
    original: Dataset, policy: Policy | None = None, backend: OcrBackend | None = None
) -> tuple[Dataset, PixelOutcome]:
    """Redact a copy of ``original`` (phi mode, the record's identifiers), write, read back."""
    from dicomscrub.core.text_detect import RecordIdentifiers, TextDetector

    policy = policy or Policy()
    detector = TextDetector(policy.text).with_identifiers(RecordIdentifiers.from_dataset(original))
    ds = copy.deepcopy(original)
    outcome = redact_pixels(
        ds, detector=detector, policy=policy, hmac=_hmac, backend=backend or get_backend()
    )
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue())), outcome


def assert_only_boxes_changed(before: Dataset, after: Dataset, outcome: PixelOutcome) -> None:
    """Same frames and shape; no stored value outside the masked boxes changed."""
    old, new = decode(before).frames, decode(after).frames
    assert new.shape == old.shape
    for f in range(old.shape[0]):
        area = np.zeros(old.shape[1:3], bool)
        for e in outcome.entities:
            if e.frame == f and e.box is not None:
                x, y, w, h = e.box
                area[y : y + h, x : x + w] = True
        diff = new[f] != old[f]
        if diff.ndim == 3:
            diff = diff.any(axis=-1)
        assert not np.any(diff & ~area), f"frame {f}: pixels outside the boxes changed"


def check_every_frame(
    api: Any,
    original: Dataset,
    redacted: Dataset,
    phi: list[str],
    *,
    shown_on: Callable[[int], bool] = lambda f: True,
    upscale: int = 2,
) -> None:
    """PHI readable before on the frames that show it; readable on no frame after.

    Before, up to six frames that show the PHI are read (first, last and some
    between): enough to know the reading can see it.
    """
    before, after = display_grey(original), display_grey(redacted)
    shown = [f for f in range(before.shape[0]) if shown_on(f)]
    for f in sorted({shown[int(i)] for i in np.linspace(0, len(shown) - 1, min(6, len(shown)))}):
        assert readable(frame_text(api, before[f], upscale), phi), f"frame {f}: no PHI before"
    for f in range(after.shape[0]):
        leaked = readable(frame_text(api, after[f], upscale), phi)
        assert not leaked, f"frame {f}: {leaked} still readable"


# --- generated files -----------------------------------------------------------------------------


def dataset(frames: NDArray[np.uint8]) -> Dataset:
    """An 8-bit multi-frame secondary capture holding ``frames``, read back from bytes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, MRN, BIRTH
    ds.BurnedInAnnotation = "YES"
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(frames, np.uint8).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def draw_frame(
    index: int, captions: list[tuple[tuple[int, int], str, int]], *, moving: bool = True
) -> NDArray[np.uint8]:
    """A 384 x 320 frame: dark background, a grey "anatomy" disc (moving), the captions."""
    font = ImageFont.load_default(size=28)
    image = Image.new("L", (384, 320), 0)
    draw = ImageDraw.Draw(image)
    dx = 6 * index if moving else 0
    draw.ellipse((110 + dx, 120, 300 + dx, 300), fill=90)
    for xy, text, value in captions:
        draw.text(xy, text, fill=value, font=font)
    return np.asarray(image)


def test_same_caption_on_three_frames() -> None:
    """The file of the drop-in API's test: name and MRN on every frame (was: no frame masked)."""
    captions = [((16, 16), "ROSEWOOD, HARRIET", 255), ((16, 56), f"MRN {MRN}", 255)]
    original = dataset(np.stack([draw_frame(0, captions, moving=False)] * 3))
    redacted, outcome = redact(original)
    assert {e.frame for e in outcome.entities} == {0, 1, 2}
    assert_only_boxes_changed(original, redacted, outcome)


@pytest.mark.parametrize("backend", ["tesserocr", "pytesseract"])
def test_generated_files_read_clean_on_every_frame(tesseract: Any, backend: str) -> None:
    captions = [((16, 16), "ROSEWOOD, HARRIET", 255), ((16, 56), f"MRN {MRN}", 255)]
    original = dataset(np.stack([draw_frame(0, captions, moving=False)] * 3))
    redacted, _ = redact(original, backend=get_backend(backend))  # type: ignore[arg-type]
    check_every_frame(tesseract, original, redacted, GENERATED_PHI)


def test_caption_changing_intensity_and_position(tesseract: Any) -> None:
    """The name dims and slides from frame to frame; the MRN stays. Every frame is clean."""
    frames = []
    for f in range(5):
        captions = [
            ((16 + 9 * f, 16 + 3 * f), "ROSEWOOD, HARRIET", 255 - 30 * f),
            ((16, 60), f"MRN {MRN}", 255),
        ]
        frames.append(draw_frame(f, captions))
    original = dataset(np.stack(frames))
    redacted, outcome = redact(original)
    assert {e.frame for e in outcome.entities if e.entity_type == "PERSON"} == set(range(5))
    assert_only_boxes_changed(original, redacted, outcome)
    check_every_frame(tesseract, original, redacted, GENERATED_PHI)


def test_caption_only_on_later_frames(tesseract: Any) -> None:
    """Frames 0-2 show no text; frames 3-5 show the name over the moving disc and the MRN."""
    frames = []
    for f in range(6):
        captions = []
        if f >= 3:
            captions = [((120, 180), "ROSEWOOD,", 250), ((120, 215), "HARRIET", 250)]
            captions.append(((16, 16), f"MRN {MRN}", 200))
        frames.append(draw_frame(f, captions))
    original = dataset(np.stack(frames))
    redacted, outcome = redact(original)
    assert {e.frame for e in outcome.entities} == {3, 4, 5}
    assert_only_boxes_changed(original, redacted, outcome)
    check_every_frame(tesseract, original, redacted, GENERATED_PHI, shown_on=lambda f: f >= 3)


# --- real multi-frame files ----------------------------------------------------------------------


@pytest.mark.shared_data
def test_palette_two_frames_dimmer_second_frame(tesseract: Any, shared_dicom: Path) -> None:
    """Frame 1 repeats the text of frame 0, much dimmer: both frames must read clean."""
    original = pydicom.dcmread(shared_dicom / "pydicom-data/OBXXXX1A_rle_2frame.dcm")
    redacted, outcome = redact(original)
    assert redacted.file_meta.TransferSyntaxUID == RLELossless
    assert_only_boxes_changed(original, redacted, outcome)
    phi = ["11-05-25-142825", "5/25/2011", "HEALTHCARE"]
    check_every_frame(tesseract, original, redacted, phi)


@pytest.mark.shared_data
def test_greyscale_cine_every_frame(tesseract: Any, shared_dicom: Path) -> None:
    original = pydicom.dcmread(
        shared_dicom / "derived-from-deid-data/GREYSCALE_CINE_first10frames_RLE.dcm"
    )
    redacted, outcome = redact(original)
    assert_only_boxes_changed(original, redacted, outcome)
    phi = ["PATIENTFI", "00079241539", "08/29/1951", "03/02/2017", "05:24:54"]
    check_every_frame(tesseract, original, redacted, phi)


def test_lossy_ybr_cine_all_text_every_frame(tesseract: Any) -> None:
    """30 JPEG frames with tiny captions: in all_text mode no caption survives on any frame."""
    from support import pydicom_test_file

    original = pydicom.dcmread(pydicom_test_file("examples_ybr_color.dcm"))
    redacted, outcome = redact(original, Policy.named("all-text"))
    assert {e.frame for e in outcome.entities} == set(range(30))
    assert_only_boxes_changed(original, redacted, outcome)
    # the words whole-frame tesseract can read on this file at 4x (the rest is too small)
    check_every_frame(tesseract, original, redacted, ["GEN", "CRD"], upscale=4)
