"""Pixel engine on generated files: every encoding and photometric interpretation.

Each file is built here: an anatomy-like background with text burned into the
stored values (several fonts and sizes, corners, a banner, a rotated line, a
frame counter on a cine), then encoded in the transfer syntax under test with
pydicom's own encoders (Pillow for JPEG baseline). ``all_text`` mode must mask
every burned-in string on every frame, change nothing outside the masked
boxes, and leave a file that decodes with the same shape and frames. Both OCR
backends run the same tests.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from dicomscrub.core.errors import DeidError, ErrorCode
from dicomscrub.core.ocr import OcrBackend, PytesseractBackend, TesserocrBackend, get_backend
from dicomscrub.core.pixels import (
    check_declared_size,
    decode,
    hidden_overlay_bits,
    ocr_views,
    read_text,
    redact_pixels,
)
from dicomscrub.core.policy import FixedRegion, Policy

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
ALL_TEXT = Policy.named("all-text")


def _hmac(text: str) -> str:
    import hashlib

    return hashlib.sha256(b"k" + text.encode()).hexdigest()


def _font(kind: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font, or a DejaVu face when the system has it."""
    path = DEJAVU / {"mono": "DejaVuSansMono.ttf", "serif": "DejaVuSerif.ttf"}.get(kind, "")
    if kind != "sans" and path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


@dataclass
class Burned:
    """Where text was burned in: per frame, the ink mask and the strings."""

    ink: NDArray[np.bool_]  # (frames, rows, cols)
    strings: list[list[str]]


def burn_text(
    rows: int, cols: int, frames: int, *, counter: bool = False, rotated: bool = True
) -> Burned:
    """Render the test captions into an ink mask (same captions on every frame)."""
    ink = np.zeros((frames, rows, cols), bool)
    strings: list[list[str]] = []
    for f in range(frames):
        img = Image.new("L", (cols, rows), 0)
        draw = ImageDraw.Draw(img)
        texts = [
            ((6, 6), "DOE^JANE 1234567", _font("sans", 16)),
            ((cols - 150, 8), "03/09/2012", _font("mono", 15)),
            ((8, rows - 26), "ST MARYS HOSP", _font("serif", 14)),
            ((cols // 2 - 60, rows // 2 + 20), "ACC 99887766", _font("sans", 20)),
        ]
        if counter:
            texts.append(((cols - 90, rows - 24), f"FR {f + 1:02d}", _font("mono", 14)))
        for xy, text, font in texts:
            draw.text(xy, text, fill=255, font=font)
        frame_strings = [t for _, t, _ in texts]
        if rotated:
            side = Image.new("L", (170, 24), 0)
            ImageDraw.Draw(side).text((2, 2), "SMITH JOHN", fill=255, font=_font("sans", 17))
            img.paste(side.rotate(90, expand=True), (cols - 30, rows // 2 - 120))
            frame_strings.append("SMITH JOHN")
        ink[f] = np.asarray(img) > 60
        strings.append(frame_strings)
    return Burned(ink, strings)


def anatomy(rows: int, cols: int, frames: int, seed: int = 0) -> NDArray[np.float64]:
    """A smooth blob with mild noise, moving a little per frame (0..1)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    out = np.empty((frames, rows, cols))
    for f in range(frames):
        cy, cx = rows * (0.55 + 0.01 * f), cols * 0.5
        r = np.hypot((y - cy) / (rows * 0.3), (x - cx) / (cols * 0.25))
        out[f] = np.clip(1.0 - r, 0, 1) * 0.6 + rng.normal(0, 0.02, (rows, cols)).clip(0, 1)
    return out.clip(0, 1)


def base_dataset(rows: int, cols: int, frames: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BurnedInAnnotation = "YES"
    return ds


def set_native(ds: Dataset, frames: NDArray[np.generic], ts: UID) -> None:
    """Store frames uncompressed in ``ts`` (little or big endian)."""
    ds.file_meta.TransferSyntaxUID = ts
    arr = frames[0] if frames.shape[0] == 1 else frames
    dtype = arr.dtype.newbyteorder(">" if ts == ExplicitVRBigEndian else "<")
    data = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
    ds["PixelData"].VR = "OW" if arr.dtype.itemsize > 1 else "OB"


def set_jpeg_baseline(ds: Dataset, frames: NDArray[np.uint8]) -> None:
    """Encode with Pillow's libjpeg: greyscale, or colour as YBR_FULL_422."""
    parts = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(
            buf, format="JPEG", quality=95, subsampling=1 if frame.ndim == 3 else 0
        )
        parts.append(buf.getvalue())
    ds.PixelData = encapsulate(parts)
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    if frames.ndim == 4:
        ds.PhotometricInterpretation = "YBR_FULL_422"


@dataclass
class Case:
    name: str
    ts: UID
    photometric: str
    bits_stored: int = 8
    signed: bool = False
    frames: int = 1
    rows: int = 256
    cols: int = 320


CASES = [
    Case("ct-int16-explicit", ExplicitVRLittleEndian, "MONOCHROME2", 12, True, rows=320, cols=320),
    Case("cr-mono1-implicit", ImplicitVRLittleEndian, "MONOCHROME1", 16),
    Case("mono-8bit-bigendian", ExplicitVRBigEndian, "MONOCHROME2", 8),
    Case("cine-rle", RLELossless, "MONOCHROME2", 8, frames=4),
    Case("rgb-j2k-lossless", JPEG2000Lossless, "RGB"),
    Case("rgb-j2k-lossy", JPEG2000, "RGB"),
    Case("ybr-full-rle", RLELossless, "YBR_FULL"),
    Case("ybr422-jpeg-baseline", JPEGBaseline8Bit, "RGB"),
    Case("mono-jpeg-baseline", JPEGBaseline8Bit, "MONOCHROME2", 8, frames=2),
    Case("palette-explicit", ExplicitVRLittleEndian, "PALETTE COLOR"),
    Case("mr-jpegls-16bit", JPEGLSLossless, "MONOCHROME2", 16),
]


def build(case: Case) -> tuple[Dataset, Burned]:
    """A dataset for ``case`` with burned-in text, and where the text is."""
    ds = base_dataset(case.rows, case.cols, case.frames)
    burned = burn_text(case.rows, case.cols, case.frames, counter=case.frames > 1)
    body = anatomy(case.rows, case.cols, case.frames)
    samples = 3 if case.photometric in ("RGB", "YBR_FULL") else 1
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = case.photometric
    bits = 8 if case.bits_stored <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, case.bits_stored, case.bits_stored - 1
    ds.PixelRepresentation = int(case.signed)
    if samples == 3:
        ds.PlanarConfiguration = 0
        rgb = np.stack([body * 200, body * 120, body * 160], axis=-1)
        rgb[burned.ink] = (250, 250, 60)  # yellow captions
        frames: NDArray[np.generic] = rgb.round().astype(np.uint8)
        if case.photometric == "YBR_FULL":
            from pydicom.pixels.processing import convert_color_space

            frames = np.stack([convert_color_space(f, "RGB", "YBR_FULL") for f in frames])
    else:
        top = 2**case.bits_stored - 1
        low = -(2 ** (case.bits_stored - 1)) if case.signed else 0
        values = low + body * (top if not case.signed else 2**case.bits_stored - 1) * 0.7
        ink_value = top if not case.signed else 2 ** (case.bits_stored - 1) - 1
        if case.photometric == "MONOCHROME1":  # text displays white: lowest stored value
            values = top - values
            ink_value = 0
        values[burned.ink] = ink_value
        dtype = f"{'i' if case.signed else 'u'}{bits // 8}"
        frames = values.round().astype(dtype)
    if case.photometric == "PALETTE COLOR":
        lut = np.arange(256, dtype=np.uint16) * 257
        for colour in ("Red", "Green", "Blue"):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", lut.tobytes())
    if case.ts == JPEGBaseline8Bit:
        set_jpeg_baseline(ds, np.asarray(frames, np.uint8))
    elif case.ts.is_compressed:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        kwargs = {"j2k_cr": [20]} if case.ts == JPEG2000 else {}
        arr = frames[0] if case.frames == 1 else frames
        ds.compress(case.ts, arr, generate_instance_uid=False, **kwargs)
    else:
        set_native(ds, frames, case.ts)
    ds.is_little_endian = case.ts != ExplicitVRBigEndian
    ds.is_implicit_VR = case.ts == ImplicitVRLittleEndian
    return roundtrip(ds), burned


def roundtrip(ds: Dataset) -> Dataset:
    """Write and read back, as a file on disk would be."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


def covered(boxes: list[tuple[int, int, int, int]], shape: tuple[int, int]) -> NDArray[np.bool_]:
    area = np.zeros(shape, bool)
    for x, y, w, h in boxes:
        area[y : y + h, x : x + w] = True
    return area


BACKENDS = ["pytesseract", "tesserocr"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> OcrBackend:
    return get_backend(request.param)


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[Dataset, Burned]]:
    return {case.name: build(case) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_all_text_masks_every_caption(
    case: Case, built: dict[str, tuple[Dataset, Burned]], backend: OcrBackend
) -> None:
    original, burned = built[case.name]
    before = decode(original).frames
    ds = copy.deepcopy(original)
    outcome = redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac, backend=backend)
    assert outcome.changed
    assert outcome.frames == case.frames
    out = roundtrip(ds)
    after = decode(out)
    # Same geometry, still decodes, colour stays colour.
    assert after.frames.shape == before.shape
    assert int(out.get("NumberOfFrames", 1)) == case.frames
    assert out.BurnedInAnnotation == "NO"
    assert (out.SamplesPerPixel == 3) == (before.ndim == 4)
    if case.photometric in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"):
        assert out.PhotometricInterpretation == case.photometric
    if case.ts in (JPEG2000, JPEGBaseline8Bit):
        assert out.LossyImageCompression == "01"
    for f in range(case.frames):
        boxes = [e.box for e in outcome.entities if e.frame == f and e.box is not None]
        area = covered(boxes, before.shape[1:3])
        # Every ink pixel of every caption is inside a masked box ...
        missed = burned.ink[f] & ~area
        assert missed.sum() == 0, f"frame {f}: {missed.sum()} caption pixels not masked"
        # ... and nothing outside the masked boxes changed.
        changed = (
            np.any(after.frames[f] != before[f], axis=-1)
            if before.ndim == 4
            else (after.frames[f] != before[f])
        )
        assert not np.any(changed & ~area)
    for e in outcome.entities:
        assert e.location == "pixel"
        assert e.tag == "(7FE0,0010)"
        assert e.action == "masked"
        assert e.raw_text is None
        assert len(e.value_hmac) == 64


def test_output_reads_no_caption(
    built: dict[str, tuple[Dataset, Burned]], backend: OcrBackend
) -> None:
    """OCR of the redacted cine finds none of the captions' words."""
    original, burned = built["cine-rle"]
    ds = copy.deepcopy(original)
    redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac, backend=backend)
    before_text = " ".join(
        w.text
        for line in read_text(ocr_views(original, decode(original)), backend)[0].lines
        for w in line
    )
    assert "DOE" in before_text or "JANE" in before_text  # the OCR could read it before
    frames = read_text(ocr_views(ds, decode(ds)), backend)
    words = {w.text for f in frames for line in f.lines for w in line}
    for caption in burned.strings[0]:
        for token in caption.replace("^", " ").split():
            assert token not in words


def test_rotated_text_is_read(
    built: dict[str, tuple[Dataset, Burned]], backend: OcrBackend
) -> None:
    original, _ = built["cr-mono1-implicit"]
    frames = read_text(ocr_views(original, decode(original)), backend)
    words = {w.text for line in frames[0].lines for w in line}
    assert {"SMITH", "JOHN"} <= words


def test_no_text_leaves_pixel_bytes_untouched(backend: OcrBackend) -> None:
    ds = base_dataset(128, 128, 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    set_native(ds, (anatomy(128, 128, 1) * 4000).astype(np.uint16), ExplicitVRLittleEndian)
    ds = roundtrip(ds)
    raw = ds.PixelData
    outcome = redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac, backend=backend)
    assert not outcome.changed
    assert outcome.entities == []
    assert ds.PixelData is raw
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_lossy_input_without_text_keeps_its_bytes(backend: OcrBackend) -> None:
    """No pixel changed: a JPEG stays the same JPEG (no generational loss)."""
    ds = base_dataset(96, 96, 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    set_jpeg_baseline(ds, (anatomy(96, 96, 1) * 200).astype(np.uint8))
    ds = roundtrip(ds)
    raw = ds.PixelData
    outcome = redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac, backend=backend)
    assert not outcome.changed
    assert ds.PixelData == raw
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit


# --- fixed regions, overlays, limits, failures (no OCR needed for most) -------------------------


def test_fixed_region_masks_on_every_frame(built: dict[str, tuple[Dataset, Burned]]) -> None:
    original, _ = built["cine-rle"]
    ds = copy.deepcopy(original)
    ds.Manufacturer = "ACME"
    region = FixedRegion(manufacturer="ACME", rows=256, boxes=((0, 0, 320, 30),))
    policy = Policy.load({"pixels": {"mode": "all_text", "regions": [region.model_dump()]}})
    outcome = redact_pixels(ds, detector=None, policy=policy, hmac=_hmac, backend=get_backend())
    fixed = [e for e in outcome.entities if e.detector == "region"]
    assert sorted(e.frame for e in fixed) == [0, 1, 2, 3]
    frames = decode(ds).frames
    for f in range(4):
        assert len(np.unique(frames[f, 0:30, :])) == 1
    other = copy.deepcopy(original)
    other.Manufacturer = "OTHER"
    out = redact_pixels(other, detector=None, policy=policy, hmac=_hmac, backend=get_backend())
    assert not [e for e in out.entities if e.detector == "region"]


def test_declared_size_is_checked_before_decoding() -> None:
    ds = base_dataset(4096, 4096, 50)
    ds.SamplesPerPixel = 3
    ds.PixelData = b"\0" * 16  # far too short: never decoded
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with pytest.raises(DeidError) as info:
        redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac)
    assert info.value.code == ErrorCode.TOO_MANY_PIXELS
    assert check_declared_size(base_dataset(10, 10, 2), 1000) == 200


def test_truncated_pixel_data_fails_closed(built: dict[str, tuple[Dataset, Burned]]) -> None:
    ds = copy.deepcopy(built["ct-int16-explicit"][0])
    ds.PixelData = ds.PixelData[:1000]
    with pytest.raises(DeidError) as info:
        redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac)
    assert info.value.code == ErrorCode.DECODE_FAILED


def test_unknown_transfer_syntax_fails_closed(built: dict[str, tuple[Dataset, Burned]]) -> None:
    ds = copy.deepcopy(built["cine-rle"][0])
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2: no decoder
    with pytest.raises(DeidError) as info:
        redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac)
    assert info.value.code == ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX


def test_missing_tesseract_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(DeidError) as info:
        PytesseractBackend(tesseract_cmd=str(tmp_path / "no-such-tesseract"))
    assert info.value.code == ErrorCode.OCR_UNAVAILABLE
    with pytest.raises(DeidError) as info:
        TesserocrBackend(tessdata=str(tmp_path))
    assert info.value.code == ErrorCode.OCR_UNAVAILABLE


def test_crashing_tesseract_fails_closed(
    built: dict[str, tuple[Dataset, Burned]], tmp_path: Path
) -> None:
    """A tesseract that starts but dies on the image: the file fails with ocr_failed."""
    script = tmp_path / "tesseract"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "tesseract 5.3.0"; exit 0; fi\n'
        "kill -SEGV $$\n"
    )
    script.chmod(0o755)
    broken = PytesseractBackend(tesseract_cmd=str(script))
    try:
        ds = copy.deepcopy(built["cine-rle"][0])
        with pytest.raises(DeidError) as info:
            redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac, backend=broken)
        assert info.value.code == ErrorCode.OCR_FAILED
    finally:
        import pytesseract

        pytesseract.pytesseract.tesseract_cmd = "tesseract"


def test_overlay_bits_above_high_bit_are_zeroed(backend: OcrBackend) -> None:
    ds = base_dataset(64, 64, 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    values = (anatomy(64, 64, 1) * 4000).astype(np.uint16)
    values[0, 10:20, 10:20] |= 1 << 15  # a retired in-pixel overlay plane (bit 15)
    set_native(ds, values, ExplicitVRLittleEndian)
    ds = roundtrip(ds)
    assert hidden_overlay_bits(ds)
    outcome = redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac, backend=backend)
    assert outcome.changed
    assert [e.entity_type for e in outcome.entities] == ["OVERLAY"]
    raw = np.frombuffer(ds.PixelData, "<u2")
    assert not np.any(raw >> 12)
    assert np.array_equal(raw.reshape(64, 64), values[0] & 0x0FFF)


def test_signed_sign_extension_is_not_an_overlay() -> None:
    ds = base_dataset(8, 8, 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
    set_native(ds, np.full((1, 8, 8), -1000, np.int16), ExplicitVRLittleEndian)
    assert not hidden_overlay_bits(ds)


def _overlay_dataset() -> Dataset:
    ds = base_dataset(200, 320, 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    set_native(ds, (anatomy(200, 320, 1) * 50).astype(np.uint8), ExplicitVRLittleEndian)
    img = Image.new("L", (320, 200), 0)
    ImageDraw.Draw(img).text((20, 20), "DOE JANE 1234567", fill=255, font=_font("sans", 20))
    plane = (np.asarray(img) > 100).astype(np.uint8)
    from pydicom.pixels.utils import pack_bits

    ds.add_new(0x60000010, "US", 200)
    ds.add_new(0x60000011, "US", 320)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", pack_bits(plane.ravel()))
    return roundtrip(ds)


def test_overlay_plane_text_is_cleaned_under_clean_graphics(backend: OcrBackend) -> None:
    ds = _overlay_dataset()
    assert ds.overlay_array(0x6000).any()
    policy = Policy.load({"options": {"clean_graphics": True}, "pixels": {"mode": "all_text"}})
    outcome = redact_pixels(ds, detector=None, policy=policy, hmac=_hmac, backend=backend)
    assert outcome.changed
    overlay = [e for e in outcome.entities if e.detector == "overlay"]
    assert overlay
    assert all(e.tag == "(6000,3000)" for e in overlay)
    assert not ds.overlay_array(0x6000).any()
    # Without clean_graphics the overlay is left to the header step (which removes it).
    ds2 = _overlay_dataset()
    redact_pixels(ds2, detector=None, policy=ALL_TEXT, hmac=_hmac, backend=backend)
    assert ds2.overlay_array(0x6000).any()


def test_keep_raw_text_is_opt_in(built: dict[str, tuple[Dataset, Burned]]) -> None:
    ds = copy.deepcopy(built["ct-int16-explicit"][0])
    out = redact_pixels(
        ds, detector=None, policy=ALL_TEXT, hmac=_hmac, keep_raw_text=True, backend=get_backend()
    )
    texts = " ".join(e.raw_text or "" for e in out.entities)
    assert "99887766" in texts
    assert all("raw_text" not in e.to_record() for e in out.entities)


def test_auto_backend_prefers_tesserocr() -> None:
    assert get_backend("auto").name == "tesserocr"


Helper = Callable[[Dataset], Dataset]


def test_phi_mode_keeps_labels_and_masks_misread_dates() -> None:
    """phi mode with the real detector: a date OCR misread ("2618") is still masked, labels kept."""
    from dicomscrub.core.ocr import Word
    from dicomscrub.core.pixels import FrameText, classify
    from dicomscrub.core.text_detect import TextDetector

    def word(text: str, x: int) -> Word:
        return Word(text, (x, 10, 8 * len(text), 12), 0.9)

    lines = [[word("DOB", 0), word("07/15/2618", 40)], [word("MI", 0), word("1.4", 30)]]
    frame = FrameText(lines, [(0, 10, 130, 12), (0, 40, 60, 12)])
    found = classify([frame], TextDetector(Policy().text), mode="phi")
    assert [(f.entity_type, f.text) for f in found] == [("DATE", "07/15/2618")]


def test_month_name_date_with_a_misread_month_is_masked() -> None:
    """A bold mono font's 01-JAN-2024 read as "01-4AN-2024" or "014AN-2024", 17-JUL-2018 as
    "174JUL-2018", 01-JUL-2019 as "O1JUL-2019" (held-out fonts, seeds 934, 994, 1004, CT
    slices): no pattern parses them, their shape is a date's; the probe "C5-1" and a label
    of a day's shape but no month stay."""
    from dicomscrub.core.ocr import Word
    from dicomscrub.core.pixels import FrameText, classify
    from dicomscrub.core.text_detect import TextDetector

    read = ["01-4AN-2024", "014AN-2024", "174JUL-2018", "O1JUL-2019", "C5-1", "12-ABC-2019"]
    lines = [[Word(text, (400, 30 * i, 90, 12), 0.45)] for i, text in enumerate(read)]
    frame = FrameText(lines, [(400, 30 * i, 90, 12) for i in range(len(read))])
    found = classify([frame], TextDetector(Policy().text), mode="phi")
    assert [(f.entity_type, f.text) for f in found] == [
        ("DATE", "01-4AN-2024"),
        ("DATE", "014AN-2024"),
        ("DATE", "174JUL-2018"),
        ("DATE", "O1JUL-2019"),
    ]


def test_misread_date_with_a_stop_after_it_is_masked() -> None:
    """11/30/2019 in a mono oblique face read "11/38/2619." (held-out-1, seed 1010,
    pytesseract, after 1005-1009): two digits misread and a speck read as a full stop. The
    stop kept the word from the date's shape; a label ending in a stop stays."""
    from dicomscrub.core.ocr import Word
    from dicomscrub.core.pixels import FrameText, classify
    from dicomscrub.core.text_detect import TextDetector

    lines = [[Word("11/38/2619.", (8, 32, 66, 9), 0.74)], [Word("Fig.", (8, 60, 30, 9), 0.9)]]
    frame = FrameText(lines, [(8, 32, 66, 9), (8, 60, 30, 9)])
    found = classify([frame], TextDetector(Policy().text), mode="phi")
    assert [(f.entity_type, f.text) for f in found] == [("DATE", "11/38/2619.")]


def test_dates_read_in_pieces_or_garbled_are_masked_whole() -> None:
    """Readings of dates in small DejaVu faces (a probe of every face at 10-14 px): the day
    split from a found ``-MAR - 1988``, a comma read as a stop (``Dec 16.2017``), a day read
    as 99 or with ``@`` for 0, separators read as ``,.``, a year's last digit lost, a month
    read as letters (``OF`` for 07). Each is
    masked whole; times and
    labels with numbers stay."""
    from dicomscrub.core.ocr import Word
    from dicomscrub.core.pixels import FrameText, classify
    from dicomscrub.core.text_detect import TextDetector

    def line(y: int, *words: tuple[str, int, int]) -> list[Word]:
        return [Word(text, (x, y, width, 12), 0.6) for text, x, width in words]

    dates = [
        line(10, ("10", 165, 15), ("-MAR", 183, 73), ("-", 217, 7), ("1988", 224, 32)),
        line(40, ("Dec", 624, 26), ("16.2017", 657, 59)),
        line(70, ("Jul", 456, 17), ("99,", 480, 16), ("2013", 503, 25)),
        line(100, ("@9-JUL-2013", 120, 66)),
        line(130, ("69,.87,2013", 236, 60)),
        line(280, ("Sep", 445, 20), ("09,", 467, 15), ("199", 487, 24)),  # a digit lost
        line(340, ("OF", 10, 11), ("/09/2013", 23, 44)),  # 07 read as letters, split
    ]
    labels = [
        line(160, ("12:30:15", 10, 60)),
        line(190, ("WW", 10, 20), ("400", 34, 24), ("WL", 62, 20), ("40", 86, 16)),
        line(220, ("Se", 10, 16), ("2", 30, 8), ("Im", 42, 14), ("5", 60, 8)),
        line(250, ("1.5,", 10, 24), ("2.0", 38, 20)),
        line(310, ("CTDIvol", 381, 50), ("12.3", 435, 28), ("mGy", 467, 30)),  # not "May"
    ]
    lines = dates + labels
    regions = [(ln[0].box[0], ln[0].box[1], 300, 12) for ln in lines]
    found = classify([FrameText(lines, regions)], TextDetector(Policy().text), mode="phi")
    for ln in dates:
        left = min(w.box[0] for w in ln)
        right = max(w.box[0] + w.box[2] for w in ln)
        boxes = [
            f.box
            for f in found
            if f.entity_type == "DATE" and f.box[1] <= ln[0].box[1] < f.box[1] + f.box[3]
        ]
        assert any(b[0] <= left and b[0] + b[2] >= right for b in boxes), (ln, boxes)
    for ln in labels[1:]:
        y = ln[0].box[1] + 6
        assert not any(f.box[1] <= y < f.box[1] + f.box[3] for f in found), (ln, found)
    assert all(f.entity_type == "TIME" for f in found if f.box[1] <= 160 < f.box[1] + f.box[3])


def test_span_takes_its_line_when_the_rest_is_garbled() -> None:
    """A held-out font read "Williams Memorial Hospital" as "Wms Memo espa" (pytesseract, in
    one stacked page): "Wms Memo" was found, and "espa" (0.52), the misread "Hospital", must go
    with it; a confidently read label beside a PHI span on its line stays."""
    from dicomscrub.core.ocr import Word
    from dicomscrub.core.pixels import FrameText, classify
    from dicomscrub.core.text_detect import TextDetector

    garbled = [
        Word("Wms", (346, 8, 30, 13), 0.28),
        Word("Memo", (380, 8, 40, 13), 0.0),
        Word("espa", (450, 8, 54, 13), 0.52),
    ]
    dated = [Word("07/15/2018", (8, 40, 80, 12), 0.9), Word("C5-1", (100, 40, 30, 12), 0.9)]
    frame = FrameText([garbled, dated], [(346, 8, 158, 13), (8, 40, 122, 12)])
    found = classify([frame], TextDetector(Policy().text), mode="phi")
    boxes = {f.entity_type: f.box for f in found}
    assert set(boxes) == {"PERSON", "DATE"}
    x, _, w, _ = boxes["PERSON"]
    assert x <= 346  # the whole caption
    assert x + w >= 504
    x, _, w, _ = boxes["DATE"]
    assert x + w < 100  # not the label


def test_all_text_mode_masks_what_phi_mode_masks() -> None:
    """all_text masks every line read as text, and also the record's name read with too
    little confidence to count as text (tesseract gave "NGUYEN*SHEILA" 0.0); a name on a
    line masked anyway is recorded once, as that line."""
    from dicomscrub.core.ocr import Word
    from dicomscrub.core.pixels import FrameText, classify
    from dicomscrub.core.text_detect import RecordIdentifiers, TextDetector

    lines = [
        [Word("NGUYEN*SHEILA", (8, 8, 113, 10), 0.0)],
        [Word("SHEILA", (8, 40, 50, 10), 0.9), Word("5.0mm", (70, 40, 40, 10), 0.9)],
        [Word("MI", (8, 80, 16, 10), 0.9), Word("1.4", (30, 80, 20, 10), 0.9)],
    ]
    frame = FrameText(lines, [(8, 8, 113, 10), (8, 40, 102, 10), (8, 80, 42, 10)])
    detector = TextDetector(Policy().text).with_identifiers(
        RecordIdentifiers(names=("NGUYEN^SHEILA",))
    )
    phi = classify([frame], detector, mode="phi")
    assert sorted(f.box[1] for f in phi) == [8, 40]
    found = classify([frame], detector, mode="all_text")
    assert sorted((f.box[1], f.entity_type) for f in found) == [
        (8, "PERSON"),  # not a "real" word, but the record's name
        (40, "TEXT"),
        (80, "TEXT"),
    ]


def test_rotated_caption_is_one_line_in_reading_order() -> None:
    """A caption read turned keeps tesseract's word order (up the image here, not left to
    right by a pixel of jitter) and is a line of its own, so the institution is found whole
    and masked with its caption; the other turn's noise and the name beside it stay apart."""
    from dicomscrub.core.ocr import ROTATED_LINE_OFFSET, Word
    from dicomscrub.core.pixels import _frame_text, classify
    from dicomscrub.core.text_detect import RecordIdentifiers, TextDetector
    from dicomscrub.core.text_regions import Region

    up = [("Dean", 974, 250, 60), ("Memorial", 973, 160, 80), ("Hospital", 975, 120, 34)]
    turned = [Word(t, (x, y, 14, h), 0.97, 0) for t, x, y, h in up]
    noise = [Word("Jeudsoy", (973, 130, 14, 70), 0.4, ROTATED_LINE_OFFSET)]  # the other turn
    beside = [Word("WEEKS", (900, 200, 40, 12), 0.96, 0), Word("LISA", (945, 200, 30, 12), 0.96, 0)]
    frame = _frame_text(
        [turned + noise, beside],
        [Region((973, 120, 16, 190), rotated=True), Region((900, 200, 75, 12))],
    )
    text, _ = frame.text()
    assert "Dean Memorial Hospital\n" in text
    assert "WEEKS LISA\n" in text
    assert "Jeudsoy\n" in text
    ids = RecordIdentifiers(names=("WEEKS^LISA",), organizations=("Dean Memorial Hospital",))
    detector = TextDetector(Policy().text).with_identifiers(ids)
    found = classify([frame], detector, mode="phi")
    assert {(f.entity_type, f.text) for f in found} == {
        ("ORG", "Dean Memorial Hospital"),
        ("PERSON", "WEEKS LISA"),
    }
    # the institution's caption is its column (both readings), not the name beside it
    for box in [f.box for f in found if f.entity_type == "ORG"]:
        assert box[0] >= 973, box
        assert box[1] >= 120, box
        assert box[0] + box[2] <= 989, box
        assert box[1] + box[3] <= 310, box
    assert max(f.box[3] for f in found if f.entity_type == "ORG") >= 180  # the whole caption


def _busy_spot(frame: NDArray[np.generic]) -> tuple[int, int]:
    """Top-left corner of an 8 x 6 window whose values are not all equal."""
    rows, cols = frame.shape[:2]
    for y in range(0, rows - 6, 3):
        for x in range(0, cols - 8, 4):
            window = frame[y : y + 6, x : x + 8].reshape(48, -1)
            if np.any(window != window[0]):
                return x, y
    raise AssertionError("a flat image")


REAL_FILES = [
    # (pydicom test file, expected output transfer syntax, lossy source)
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", RLELossless, False),  # JPEG lossless
    ("SC_rgb_jpeg_gdcm.dcm", RLELossless, False),  # JPEG lossless, RGB
    ("JPEGLSNearLossless_16.dcm", JPEGLSLossless, True),
    ("image_dfl.dcm", ExplicitVRLittleEndian, False),  # deflated
    ("SC_ybr_full_422_uncompressed.dcm", ExplicitVRLittleEndian, False),
    ("MR_small_bigendian.dcm", ExplicitVRLittleEndian, False),  # signed 16-bit, big endian
    ("emri_small_RLE.dcm", RLELossless, False),  # enhanced MR, 10 frames, 12-bit
    ("eCT_Supplemental.dcm", ExplicitVRLittleEndian, False),  # enhanced CT, 2 frames
    ("SC_rgb_16bit_2frame.dcm", ExplicitVRLittleEndian, False),  # 16-bit RGB
    ("examples_jpeg2k.dcm", JPEG2000Lossless, False),  # YBR_RCT
    ("OBXXXX1A_rle_2frame.dcm", RLELossless, False),  # palette colour, 2 frames
]


@pytest.mark.parametrize(("name", "target", "lossy"), REAL_FILES, ids=[f[0] for f in REAL_FILES])
def test_real_encodings_mask_and_reencode(name: str, target: UID, lossy: bool) -> None:
    """A fixed region forces a change on real files of every remaining encoding."""
    from support import pydicom_test_file

    original = pydicom.dcmread(pydicom_test_file(name))
    before = decode(original)
    ds = copy.deepcopy(original)
    x, y = _busy_spot(before.frames[0])
    region = FixedRegion(rows=int(ds.Rows), columns=int(ds.Columns), boxes=((x, y, 8, 6),))
    policy = Policy.load({"pixels": {"mode": "all_text", "regions": [region.model_dump()]}})
    outcome = redact_pixels(ds, detector=None, policy=policy, hmac=_hmac, backend=get_backend())
    assert outcome.changed
    assert outcome.frames == before.frames.shape[0]
    out = roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == target
    after = decode(out)
    assert after.frames.shape == before.frames.shape
    area = covered([e.box for e in outcome.entities if e.box is not None], before.frames.shape[1:3])
    diff = after.frames != before.frames
    if diff.ndim == 4:
        diff = diff.any(axis=-1)
    assert not np.any(diff & ~area[np.newaxis])
    for frame in after.frames:  # the box holds one fill value per frame
        box = frame[y : y + 6, x : x + 8].reshape(48, -1)
        assert np.all(box == box[0])
    was_lossy = lossy or original.get("LossyImageCompression") == "01"
    assert (out.get("LossyImageCompression") == "01") == was_lossy
    if "PerFrameFunctionalGroupsSequence" in original:
        assert len(out.PerFrameFunctionalGroupsSequence) == len(
            original.PerFrameFunctionalGroupsSequence
        )


def test_undecodable_jpeg_fails_closed() -> None:
    """12-bit extended JPEG that none of the installed plugins decodes: decode_failed, no output."""
    from support import pydicom_test_file

    ds = pydicom.dcmread(pydicom_test_file("JPEG-lossy.dcm"))
    raw = ds.PixelData
    with pytest.raises(DeidError) as info:
        redact_pixels(ds, detector=None, policy=ALL_TEXT, hmac=_hmac, backend=get_backend())
    assert info.value.code == ErrorCode.DECODE_FAILED
    assert ds.PixelData == raw


@pytest.mark.parametrize("name", ["CANTU SCOTT", "BARRETT FELICIA"])
def test_last_glyph_the_proposal_misses_is_masked(name: str, backend: OcrBackend) -> None:
    """The row top-hat drops the joined bars of "TT" and the last stem stood too far from the
    rest: the proposal ended a glyph short and the final "T" of the name stayed readable
    (corpus seeds 64 and 73). The mask now follows the line's ink past the region."""
    from dicomscrub.core.text_detect import RecordIdentifiers, TextDetector

    rows, cols = 1200, 1000  # large enough to be searched at half resolution, like a CR
    background = 20 + 160 * anatomy(rows, cols, 1)[0]
    img = Image.new("L", (cols, rows), 0)
    draw = ImageDraw.Draw(img)
    draw.text((20, 20), name, fill=255, font=ImageFont.load_default(18))
    name_ink = np.asarray(img) > 60
    draw.text((450, 24), "CHEST PA", fill=255, font=ImageFont.load_default(20))
    label_ink = (np.asarray(img) > 60) & ~name_ink
    pixels = np.where(np.asarray(img) > 0, np.asarray(img), background).astype(np.uint8)
    ds = base_dataset(rows, cols, 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    set_native(ds, pixels[np.newaxis], ExplicitVRLittleEndian)
    family, given = name.split()
    ids = RecordIdentifiers(names=(f"{family}^{given}^N",))
    detector = TextDetector(Policy().text).with_identifiers(ids)
    outcome = redact_pixels(ds, detector=detector, policy=Policy(), hmac=_hmac, backend=backend)
    assert outcome.changed
    after = decode(ds).frames[0]
    assert np.all(after[name_ink] != pixels[name_ink]), "part of the name is still there"
    assert np.array_equal(after[label_ink], pixels[label_ink])


def test_caption_running_into_the_skull_rim_is_trimmed_to_its_glyphs() -> None:
    """An institution caption that ends on the bright rim of a head: the corpus' region
    finder took 13 pixels of the rim into the line (MR seeds 2, 43, 71 ... changed up to 214
    pixels past the scorer's 8-pixel margin). The rim is brighter than the midpoint of the
    caption's contrast, but wide: no stroke, so the box is trimmed to the glyphs."""
    from dicomscrub.core.pixels import Finding, trim_to_ink

    rows, cols = 80, 200
    rng = np.random.default_rng(5)
    base = Image.fromarray(rng.normal(4, 2, (rows, cols)).clip(0, 255).astype(np.uint8))
    rim = [(100, 44), (136, 33), (154, 28), (190, 25)]  # the top of a head, 135 in the view
    ImageDraw.Draw(base).line(rim, fill=135, width=7)
    text = Image.new("L", (cols, rows), 0)
    ImageDraw.Draw(text).text((6, 25), "Ray Medical Center", fill=206, font=_font("serif", 13))
    glyphs = np.asarray(text) > 60
    view = np.maximum(np.asarray(base), np.asarray(text))
    right = int(np.nonzero(glyphs)[1].max())
    box = trim_to_ink(view, Finding(0, (6, 25, right + 14 - 6, 16), "ORG", "ocr", 0.9, "x")).box
    assert right - 1 <= box[0] + box[2] - 1 <= right + 1, (box, right)
    ys, xs = np.nonzero(glyphs)
    assert box[0] <= xs.min()
    assert box[1] <= ys.min()
    assert box[1] + box[3] > ys.max()


def test_rotated_name_whose_last_word_is_short_is_masked_whole(backend: OcrBackend) -> None:
    """ "Lee, Terry" turned by 90 degrees on a radiograph: the finder split the column in two
    and "Lee," alone (30 x 14 pixels) was not tall enough to be read turned, so only "Terry"
    was masked (corpus seed 203). A short upright piece now joins the rotated piece it
    continues."""
    from dicomscrub.core.text_detect import RecordIdentifiers, TextDetector

    rows, cols = 1600, 1300
    background = 20 + 160 * anatomy(rows, cols, 1)[0]
    side = Image.new("L", (120, 24), 0)
    ImageDraw.Draw(side).text((2, 2), "Lee, Terry", fill=180, font=ImageFont.truetype(
        str(DEJAVU / "DejaVuSans.ttf"), 15) if (DEJAVU / "DejaVuSans.ttf").is_file()
        else _font("sans", 15))  # fmt: skip
    img = Image.new("L", (cols, rows), 0)
    img.paste(side.rotate(90, expand=True), (12, 760))
    glyphs = np.asarray(img) > 60
    pixels = np.where(np.asarray(img) > 0, np.asarray(img), background).astype(np.uint8)
    ds = base_dataset(rows, cols, 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    set_native(ds, pixels[np.newaxis], ExplicitVRLittleEndian)
    detector = TextDetector(Policy().text).with_identifiers(
        RecordIdentifiers(names=("Lee^Terry^V", "LOPEZ^BRANDON^I"))
    )
    redact_pixels(ds, detector=detector, policy=Policy(), hmac=_hmac, backend=backend)
    after = decode(ds).frames[0]
    assert np.all(after[glyphs] != pixels[glyphs]), "part of the name is still there"


def _dated_image(
    captions: list[tuple[str, str, bool]], rows: int = 400, cols: int = 520
) -> tuple[Dataset, NDArray[np.uint8], list[tuple[str, NDArray[np.bool_], bool]]]:
    """A CT-like 8-bit image with one caption per row in DejaVu mono: ``(label, text,
    is_phi)``, the label (kept) drawn before the text; gives each part's ink."""
    background = (20 + 120 * anatomy(rows, cols, 1)[0]).astype(np.uint8)
    font = _font("mono", 16)
    img = Image.new("L", (cols, rows), 0)
    inks: list[tuple[str, NDArray[np.bool_], bool]] = []
    for i, (label, text, is_phi) in enumerate(captions):
        x = 10
        for part, phi in ((label, False), (text, is_phi)):
            if not part:
                continue
            before = np.asarray(img) > 60
            ImageDraw.Draw(img).text((x, 10 + 34 * i), part, fill=230, font=font)
            inks.append((part, (np.asarray(img) > 60) & ~before, phi))
            x += int(font.getlength(part + "  "))
    pixels = np.where(np.asarray(img) > 0, np.asarray(img), background).astype(np.uint8)
    ds = base_dataset(rows, cols, 1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    set_native(ds, pixels[np.newaxis], ExplicitVRLittleEndian)
    return ds, pixels, inks


def _assert_masked_and_kept(
    after: NDArray[np.generic],
    pixels: NDArray[np.uint8],
    inks: list[tuple[str, NDArray[np.bool_], bool]],
) -> None:
    for text, ink, is_phi in inks:
        if is_phi:
            assert np.all(after[ink] != pixels[ink]), f"part of {text!r} is still there"
        else:
            assert np.array_equal(after[ink], pixels[ink]), f"{text!r} was changed"


def test_dates_split_or_lettered_by_ocr_are_masked(backend: OcrBackend) -> None:
    """Dates as OCR breaks them, with no date in the header: a space after a separator makes
    two words ("01/05/" and "2024") and letters for digits ("O1/O5/2O24", "05-JAN-2O24") parse
    as no date; each is masked whole. The labels and a spine level stay."""
    from dicomscrub.core.text_detect import TextDetector

    ds, pixels, inks = _dated_image(
        [
            ("Seen", "01/05/  2024", True),
            ("Exam", "O1/O5/2O24", True),
            ("Acq", "05-JAN-2O24", True),
            ("CHEST PA", "L5-S1", False),
        ]
    )
    detector = TextDetector(Policy().text)
    redact_pixels(ds, detector=detector, policy=Policy(), hmac=_hmac, backend=backend)
    _assert_masked_and_kept(decode(ds).frames[0], pixels, inks)


def test_record_dates_read_wrong_are_masked(backend: OcrBackend) -> None:
    """The record's own study and birth dates in forms OCR makes of them (a slash read as 1,
    a month one letter off): no pattern parses them, the record's dates match them. Numbers
    with the same digits in another order stay."""
    from dicomscrub.core.text_detect import RecordIdentifiers, TextDetector

    ds, pixels, inks = _dated_image(
        [
            ("", "01105/2024", True),
            ("Exam", "Jam 5. 2024", True),
            ("DOB", "05/1211944", True),
            ("WW 2024 WL 105", "", False),
        ]
    )
    ids = RecordIdentifiers.from_elements(
        [("StudyDate", "DA", ("20240105",)), ("PatientBirthDate", "DA", ("19440512",))]
    )
    detector = TextDetector(Policy().text).with_identifiers(ids)
    redact_pixels(ds, detector=detector, policy=Policy(), hmac=_hmac, backend=backend)
    _assert_masked_and_kept(decode(ds).frames[0], pixels, inks)


def test_a_failed_decode_is_one_error_code_not_pydicoms_logged_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pydicom logs every decoder that fails, traceback included, before it raises; in the
    engine that reached the user's console and task logs beside the file's error code."""
    from pydicom.pixels.decoders.base import get_decoder

    from dicomscrub.core.pipeline import Engine
    from support import pydicom_test_file

    data = pydicom_test_file("JPEG2000-embedded-sequence-delimiter.dcm").read_bytes()
    engine = Engine({"pixels": {"mode": "phi"}}, secret="pixel-test-secret")
    with caplog.at_level("DEBUG"):
        out, result = engine.process_bytes(data)
    assert out is None
    assert (result.error_code, result.error_message) == (
        "decode_failed",
        "cannot decode JPEG 2000 Image Compression (RuntimeError)",
    )
    assert [r for r in caplog.records if r.name.startswith("pydicom")] == []
    assert not any(r.exc_info for r in caplog.records)
    # pydicom used outside the engine still logs as it always did
    ds = pydicom.dcmread(io.BytesIO(data))
    with caplog.at_level("DEBUG"), pytest.raises(RuntimeError):
        get_decoder(ds.file_meta.TransferSyntaxUID).as_array(ds)
    assert any(r.name == "pydicom.pixels.decoders.base" for r in caplog.records)


def test_a_square_piece_of_a_rotated_caption_grows_down_the_caption() -> None:
    """The caption "Hill Medical Center" running down a CR's edge (held-out faces,
    pytesseract, corpus seed 1181): the proposal cut "Hi" off as a square region, read
    upright as "=", and left the two l's out of every region. Masked as part of the
    caption, the square piece was taken for an upright line and grew sideways; the l's
    stayed readable. It now grows the way its caption runs, over the ink that continues it."""
    from dicomscrub.core.ocr import Word
    from dicomscrub.core.pixels import FrameText, classify
    from dicomscrub.core.text_detect import RecordIdentifiers, TextDetector

    view = np.zeros((300, 1000), np.uint8)  # the OCR view: bright glyphs on a dark ground
    view[[120, 121, 127], 975:987] = 230  # "H", turned
    view[122:127, 980:982] = 230
    view[131:133, 975:984] = 230  # "i"
    view[[135, 136, 139, 140], 975:987] = 230  # "l", "l": in no proposed region
    view[147:256:3, 975:987] = 230  # "Medical Center"
    lines = [
        [Word("=", (976, 121, 10, 12), 0.9)],
        [Word("Medical", (974, 147, 14, 50), 0.96), Word("Center", (974, 200, 14, 56), 0.96)],
    ]
    frame = FrameText(lines, [(974, 120, 14, 14), (974, 146, 14, 110)], [False, True])
    ids = RecordIdentifiers(organizations=("Hill Medical Center",))
    detector = TextDetector(Policy().text).with_identifiers(ids)
    found = classify([frame], detector, mode="phi", views=view[np.newaxis])
    assert {f.entity_type for f in found} == {"ORG"}
    piece = next(f.box for f in found if f.box[1] < 130)
    top, bottom = piece[1], piece[1] + piece[3]
    assert (top <= 120, bottom >= 141) == (True, True), piece  # over "Hi" and both l's
    assert (piece[0] >= 974, piece[0] + piece[2] <= 988) == (True, True), piece  # not sideways
